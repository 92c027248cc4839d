//! Rate limits of the token endpoint, keyed by client id and by source
//! address: a generic cell rate algorithm (GCRA) per key, in memory, per process.
//!
//! A limit of `n` per minute lets a key make `n` requests at once, then one
//! every `60/n` seconds. The state of a key is one instant (when its bucket is
//! full again); keys whose instant has passed are equivalent to absent ones
//! and are pruned, so invented keys cannot grow the map without bound: at most
//! the keys seen within the last minute are kept. Pure: `now` is a parameter.

use std::{
    collections::HashMap,
    hash::Hash,
    sync::Mutex,
    time::{Duration, Instant},
};

/// A per-key limit of `per_minute` requests (0: unlimited).
pub struct KeyedLimiter<K> {
    /// Time one request costs.
    interval: Duration,
    /// How far ahead of now a key's state may run: the burst.
    tolerance: Duration,
    state: Mutex<State<K>>,
}

struct State<K> {
    /// Per key, when it would have a full bucket again.
    full_at: HashMap<K, Instant>,
    /// Size at which the next prune runs.
    prune_at: usize,
}

/// Refused; retry after this long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter(pub Duration);

impl RetryAfter {
    /// Whole seconds for a `Retry-After` header, at least 1.
    pub fn seconds(self) -> u64 {
        (self.0.as_secs() + u64::from(self.0.subsec_nanos() > 0)).max(1)
    }
}

const MIN_PRUNE: usize = 1024;

impl<K: Hash + Eq + Clone> KeyedLimiter<K> {
    pub fn per_minute(per_minute: u32) -> Self {
        let (interval, tolerance) = match per_minute {
            0 => (Duration::ZERO, Duration::ZERO),
            n => {
                let interval = Duration::from_secs(60) / n;
                (interval, interval * (n - 1))
            }
        };
        Self { interval, tolerance, state: Mutex::new(State { full_at: HashMap::new(), prune_at: MIN_PRUNE }) }
    }

    /// Counts one request of `key` at `now`, or refuses it.
    pub fn check(&self, key: &K, now: Instant) -> Result<(), RetryAfter> {
        if self.interval.is_zero() {
            return Ok(());
        }
        let mut state = self.state.lock().expect("limiter lock");
        if state.full_at.len() >= state.prune_at {
            state.full_at.retain(|_, full_at| *full_at > now);
            state.prune_at = (state.full_at.len() * 2).max(MIN_PRUNE);
        }
        let full_at = state.full_at.get(key).copied().filter(|t| *t > now).unwrap_or(now);
        let allowed_from = full_at.checked_sub(self.tolerance).unwrap_or(now);
        if allowed_from > now {
            return Err(RetryAfter(allowed_from - now));
        }
        state.full_at.insert(key.clone(), full_at + self.interval);
        Ok(())
    }

    /// Keys currently tracked (the unit tests' view of pruning).
    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.state.lock().expect("limiter lock").full_at.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_a_burst_then_one_per_interval() {
        let limiter = KeyedLimiter::per_minute(3);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.check(&"a", t0), Ok(()));
        }
        let refused = limiter.check(&"a", t0).unwrap_err();
        assert_eq!(refused, RetryAfter(Duration::from_secs(20)));
        assert_eq!(refused.seconds(), 20);
        assert_eq!(limiter.check(&"b", t0), Ok(()), "keys are independent");
        assert!(limiter.check(&"a", t0 + Duration::from_secs(19)).is_err());
        assert_eq!(limiter.check(&"a", t0 + Duration::from_secs(20)), Ok(()));
        assert!(limiter.check(&"a", t0 + Duration::from_secs(20)).is_err());
        // A minute of quiet refills the whole burst.
        let later = t0 + Duration::from_secs(120);
        for _ in 0..3 {
            assert_eq!(limiter.check(&"a", later), Ok(()));
        }
        assert!(limiter.check(&"a", later).is_err());
    }

    #[test]
    fn zero_means_unlimited() {
        let limiter = KeyedLimiter::per_minute(0);
        let now = Instant::now();
        assert!((0..10_000).all(|_| limiter.check(&1, now).is_ok()));
        assert_eq!(limiter.tracked(), 0);
    }

    #[test]
    fn stale_keys_are_pruned() {
        let limiter = KeyedLimiter::per_minute(60);
        let t0 = Instant::now();
        for key in 0..(MIN_PRUNE * 3) {
            limiter.check(&key, t0).unwrap();
        }
        assert_eq!(limiter.tracked(), MIN_PRUNE * 3);
        // Two seconds later each of those keys has its bucket full again: the
        // next prune (at twice the size left by the last one) drops them all.
        let later = t0 + Duration::from_secs(2);
        for key in (MIN_PRUNE * 3)..=(MIN_PRUNE * 4) {
            limiter.check(&key, later).unwrap();
        }
        assert!(limiter.tracked() <= MIN_PRUNE + 1, "{} keys kept", limiter.tracked());
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(RetryAfter(Duration::from_millis(1)).seconds(), 1);
        assert_eq!(RetryAfter(Duration::from_millis(1500)).seconds(), 2);
        assert_eq!(RetryAfter(Duration::from_secs(3)).seconds(), 3);
        assert_eq!(RetryAfter(Duration::ZERO).seconds(), 1);
    }
}
