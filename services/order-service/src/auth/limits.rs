//! Rate limits of the token endpoint, keyed by client id and by source
//! address: `governor`'s keyed GCRA limiter, in memory, per process.
//!
//! A limit of `n` per minute lets a key make `n` requests at once, then one
//! every `60/n` seconds. Keys whose bucket is full again are equivalent to
//! absent ones; they are pruned (`retain_recent`) whenever the map has doubled
//! since the last prune, so invented keys cannot grow it without bound: at most
//! about the keys seen within the last minute are kept.

use std::{
    hash::Hash,
    num::NonZeroU32,
    sync::atomic::{AtomicUsize, Ordering},
    time::Duration,
};

use governor::{
    Quota, RateLimiter,
    clock::{Clock, DefaultClock},
    middleware::NoOpMiddleware,
    state::keyed::DashMapStateStore,
};

type Keyed<K, C> = RateLimiter<K, DashMapStateStore<K>, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// A per-key limit of `per_minute` requests (0: unlimited).
pub struct KeyedLimiter<K: Hash + Eq + Clone, C: Clock = DefaultClock> {
    /// `None`: unlimited.
    limiter: Option<Keyed<K, C>>,
    clock: C,
    /// Size at which the next prune runs.
    prune_at: AtomicUsize,
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
        Self::with_clock(per_minute, DefaultClock::default())
    }
}

impl<K: Hash + Eq + Clone, C: Clock + Clone> KeyedLimiter<K, C> {
    fn with_clock(per_minute: u32, clock: C) -> Self {
        let limiter =
            NonZeroU32::new(per_minute).map(|n| RateLimiter::dashmap_with_clock(Quota::per_minute(n), clock.clone()));
        Self { limiter, clock, prune_at: AtomicUsize::new(MIN_PRUNE) }
    }

    /// Counts one request of `key`, or refuses it.
    pub fn check(&self, key: &K) -> Result<(), RetryAfter> {
        let Some(limiter) = &self.limiter else { return Ok(()) };
        if limiter.len() >= self.prune_at.load(Ordering::Relaxed) {
            limiter.retain_recent();
            limiter.shrink_to_fit();
            self.prune_at.store((limiter.len() * 2).max(MIN_PRUNE), Ordering::Relaxed);
        }
        limiter.check_key(key).map_err(|not_until| RetryAfter(not_until.wait_time_from(self.clock.now())))
    }
}

#[cfg(test)]
mod tests {
    use governor::clock::FakeRelativeClock;

    use super::*;

    fn limiter<K: Hash + Eq + Clone>(per_minute: u32) -> (KeyedLimiter<K, FakeRelativeClock>, FakeRelativeClock) {
        let clock = FakeRelativeClock::default();
        (KeyedLimiter::with_clock(per_minute, clock.clone()), clock)
    }

    fn tracked<K: Hash + Eq + Clone>(limiter: &KeyedLimiter<K, FakeRelativeClock>) -> usize {
        limiter.limiter.as_ref().map_or(0, |l| l.len())
    }

    #[test]
    fn allows_a_burst_then_one_per_interval() {
        let (limiter, clock) = limiter(3);
        for _ in 0..3 {
            assert_eq!(limiter.check(&"a"), Ok(()));
        }
        let refused = limiter.check(&"a").unwrap_err();
        assert_eq!(refused, RetryAfter(Duration::from_secs(20)));
        assert_eq!(refused.seconds(), 20);
        assert_eq!(limiter.check(&"b"), Ok(()), "keys are independent");
        clock.advance(Duration::from_secs(19));
        assert!(limiter.check(&"a").is_err());
        clock.advance(Duration::from_secs(1));
        assert_eq!(limiter.check(&"a"), Ok(()));
        assert!(limiter.check(&"a").is_err());
        // A minute of quiet refills the whole burst.
        clock.advance(Duration::from_secs(100));
        for _ in 0..3 {
            assert_eq!(limiter.check(&"a"), Ok(()));
        }
        assert!(limiter.check(&"a").is_err());
    }

    #[test]
    fn zero_means_unlimited() {
        let (limiter, _) = limiter(0);
        assert!((0..10_000).all(|_| limiter.check(&1).is_ok()));
        assert_eq!(tracked(&limiter), 0);
    }

    #[test]
    fn stale_keys_are_pruned() {
        let (limiter, clock) = limiter(60);
        for key in 0..(MIN_PRUNE * 3) {
            limiter.check(&key).unwrap();
        }
        assert_eq!(tracked(&limiter), MIN_PRUNE * 3);
        // Two seconds later each of those keys has its bucket full again: the
        // next prune (at twice the size left by the last one) drops them all.
        clock.advance(Duration::from_secs(2));
        for key in (MIN_PRUNE * 3)..=(MIN_PRUNE * 4) {
            limiter.check(&key).unwrap();
        }
        assert!(tracked(&limiter) <= MIN_PRUNE + 1, "{} keys kept", tracked(&limiter));
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(RetryAfter(Duration::from_millis(1)).seconds(), 1);
        assert_eq!(RetryAfter(Duration::from_millis(1500)).seconds(), 2);
        assert_eq!(RetryAfter(Duration::from_secs(3)).seconds(), 3);
        assert_eq!(RetryAfter(Duration::ZERO).seconds(), 1);
    }
}
