//! The one retry pacing of every orderflow loop that talks to a dependency: the
//! consumer's receives, the outbox relay's steps, the LISTEN reconnect, the
//! CLI's stream reconnects. Exponential from 100 ms, doubling, capped at 10 s,
//! with jitter so replicas that failed together do not retry together, and no
//! limit on attempts (a background loop keeps trying until it is stopped).
//!
//! [`Backoff`] is the loop-shaped form: ask for the next pause after a failure,
//! [`Backoff::reset`] after any success. The pacing itself comes from `backon`.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};

/// First pause after a failure.
pub const MIN_DELAY: Duration = Duration::from_millis(100);
/// Longest pause between attempts.
pub const MAX_DELAY: Duration = Duration::from_secs(10);

/// The policy, for callers that retry one operation with `backon::Retryable`.
pub fn policy() -> ExponentialBuilder {
    ExponentialBuilder::new().with_min_delay(MIN_DELAY).with_max_delay(MAX_DELAY).with_jitter().without_max_times()
}

/// Pauses between failed attempts of a long-running loop.
#[derive(Debug)]
pub struct Backoff {
    builder: ExponentialBuilder,
    delays: ExponentialBackoff,
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new(policy())
    }
}

impl Backoff {
    /// Pauses paced by `builder` (tests shorten them; services use the default).
    pub fn new(builder: ExponentialBuilder) -> Self {
        Self { builder, delays: builder.build() }
    }

    /// The pause before the next attempt, after a failure.
    pub fn next_delay(&mut self) -> Duration {
        self.delays.next().unwrap_or(MAX_DELAY)
    }

    /// After a success: the next failure starts again from the shortest pause.
    pub fn reset(&mut self) {
        self.delays = self.builder.build();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_the_cap_and_starts_over_after_a_success() {
        let mut b = Backoff::default();
        let first = b.next_delay();
        assert!(first >= MIN_DELAY && first <= MIN_DELAY * 2, "{first:?}");
        let later: Vec<Duration> = (0..20).map(|_| b.next_delay()).collect();
        assert!(later.iter().all(|d| *d <= MAX_DELAY * 2), "capped (jitter adds at most the delay): {later:?}");
        assert!(later.last().unwrap() >= &MAX_DELAY, "reaches the cap: {later:?}");
        b.reset();
        assert!(b.next_delay() <= MIN_DELAY * 2, "a success starts the pacing over");
    }
}
