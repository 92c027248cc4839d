//! The controller's decisions, free of Kubernetes, SQS and PostgreSQL clients:
//! each function takes what was observed and returns what to do. They are
//! tested for a fresh pipeline, one that is up to date (nothing to do) and one
//! that drifted.
//!
//! - [`queues`]: which queues to create and which attributes to set back;
//! - [`databases`]: which roles, databases, grants, ownership changes and
//!   migrations;
//! - [`publish`]: the ConfigMap and Secrets for the services, and whether the
//!   live ones need publishing again;
//! - [`keys`]: the order API's key Secrets, created once when absent and
//!   never changed;
//! - [`conditions`]: the status conditions;
//! - [`backoff`]: how long to wait after a failed reconcile.

pub mod conditions;
pub mod databases;
pub mod keys;
pub mod publish;
pub mod queues;

use std::time::Duration;

/// The wait before retrying after the `failures`-th consecutive failure:
/// 1 s, 2 s, 4 s ... up to 5 minutes.
pub fn backoff(failures: u32) -> Duration {
    const FIRST: Duration = Duration::from_secs(1);
    const MAX: Duration = Duration::from_secs(300);
    FIRST.saturating_mul(2u32.saturating_pow(failures.saturating_sub(1))).min(MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_five_minutes() {
        let waits: Vec<u64> = (1..=11).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        assert_eq!(backoff(u32::MAX), Duration::from_secs(300));
    }
}
