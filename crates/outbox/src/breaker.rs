//! A small circuit breaker for the relay's calls to SQS.
//!
//! Closed: calls go through; `threshold` consecutive failures open it. Open: no
//! calls until the cool-down passes. Half-open: one probe call; success closes
//! it, failure re-opens it with the cool-down doubled (capped), so a long outage
//! costs a handful of calls, not thousands.

use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Closed,
    Open { until: Instant },
    HalfOpen,
}

#[derive(Debug)]
pub struct Breaker {
    state: State,
    failures: u32,
    threshold: u32,
    base_cooldown: Duration,
    max_cooldown: Duration,
    cooldown: Duration,
}

/// What the breaker allows now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permit {
    /// Call normally.
    Call,
    /// Make one small probe call.
    Probe,
    /// Do not call; try again after this long.
    Wait(Duration),
}

impl Breaker {
    pub fn new(threshold: u32, base_cooldown: Duration, max_cooldown: Duration) -> Self {
        Self {
            state: State::Closed,
            failures: 0,
            threshold: threshold.max(1),
            base_cooldown,
            max_cooldown,
            cooldown: base_cooldown,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn permit(&mut self) -> Permit {
        match self.state {
            State::Closed => Permit::Call,
            State::HalfOpen => Permit::Probe,
            State::Open { until } => {
                let now = Instant::now();
                if now >= until {
                    self.state = State::HalfOpen;
                    Permit::Probe
                } else {
                    Permit::Wait(until - now)
                }
            }
        }
    }

    pub fn on_success(&mut self) {
        if self.state != State::Closed {
            tracing::info!("SQS reachable again; circuit closed");
        }
        self.state = State::Closed;
        self.failures = 0;
        self.cooldown = self.base_cooldown;
    }

    pub fn on_failure(&mut self) {
        self.failures += 1;
        match self.state {
            State::HalfOpen => {
                self.cooldown = (self.cooldown * 2).min(self.max_cooldown);
                self.open();
            }
            State::Closed if self.failures >= self.threshold => self.open(),
            _ => {}
        }
    }

    fn open(&mut self) {
        tracing::warn!(
            failures = self.failures,
            cooldown_ms = self.cooldown.as_millis() as u64,
            "SQS failing; circuit open"
        );
        self.state = State::Open { until: Instant::now() + self.cooldown };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn opens_after_threshold_probes_after_cooldown_and_backs_off() {
        let mut b = Breaker::new(3, Duration::from_secs(1), Duration::from_secs(4));
        for _ in 0..2 {
            b.on_failure();
            assert_eq!(b.permit(), Permit::Call);
        }
        b.on_failure();
        assert!(matches!(b.permit(), Permit::Wait(d) if d <= Duration::from_secs(1)));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(b.permit(), Permit::Probe);
        b.on_failure(); // probe failed: cool-down doubles
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(matches!(b.permit(), Permit::Wait(_)));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(b.permit(), Permit::Probe);
        b.on_success();
        assert_eq!(b.state(), State::Closed);
        assert_eq!(b.permit(), Permit::Call);
    }
}
