//! The revocation set: ids of disabled clients, held in memory and refreshed
//! from PostgreSQL in the background (`CLIENT_REVOCATION_REFRESH`), so that every
//! authenticated request checks it without a database read, and a disabled
//! client's tokens stop working within one refresh. A failed refresh keeps the
//! last set. [`Revocations::refresh_once`] is the step tests drive.

use std::{
    collections::HashSet,
    sync::{Arc, RwLock},
    time::Duration,
};

use shutdown::CancellationToken;
use sqlx::PgPool;

use super::clients;

#[derive(Clone, Default)]
pub struct Revocations {
    disabled: Arc<RwLock<Arc<HashSet<String>>>>,
}

impl Revocations {
    /// Whether tokens of `client_id` are refused.
    pub fn is_revoked(&self, client_id: &str) -> bool {
        self.disabled.read().expect("revocations lock").contains(client_id)
    }

    /// Replaces the set.
    pub fn replace(&self, ids: impl IntoIterator<Item = String>) {
        *self.disabled.write().expect("revocations lock") = Arc::new(ids.into_iter().collect());
    }

    /// Reads the disabled clients once; returns how many there are.
    pub async fn refresh_once(&self, pool: &PgPool) -> Result<usize, sqlx::Error> {
        let ids = clients::disabled_ids(pool).await?;
        let count = ids.len();
        self.replace(ids);
        Ok(count)
    }

    /// Refreshes every `interval` until `stop`.
    pub async fn run(&self, pool: PgPool, interval: Duration, stop: CancellationToken) {
        shutdown::every("revocations", interval, stop, || async { self.refresh_once(&pool).await.map(|_| false) })
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replaced_set_revokes_exactly_its_ids() {
        let revocations = Revocations::default();
        assert!(!revocations.is_revoked("a"));
        revocations.replace(["a".to_owned(), "b".to_owned()]);
        assert!(revocations.is_revoked("a") && revocations.is_revoked("b") && !revocations.is_revoked("c"));
        revocations.replace([]);
        assert!(!revocations.is_revoked("a"), "an enabled client is let in again");
    }
}
