//! Housekeeping of the delivery database: inbox rows past their retention are
//! deleted in small batches, so the table does not grow without bound. One step
//! ([`Janitor::try_clean_once`]) for tests; the loop runs it every minute.

use std::time::Duration;

use shutdown::CancellationToken;
use sqlx::PgPool;

/// Rows deleted per statement: small, so no long locks.
const BATCH: i64 = 1000;
const INTERVAL: Duration = Duration::from_secs(60);

pub struct Janitor {
    pub pool: PgPool,
    /// How long applied `order-created` events are remembered.
    pub inbox_retention: Duration,
}

impl Janitor {
    /// Deletes one batch; returns how many rows went.
    pub async fn try_clean_once(&self) -> Result<u64, sqlx::Error> {
        let inbox = messaging::inbox::prune(&self.pool, self.inbox_retention, BATCH).await?;
        if inbox > 0 {
            tracing::debug!(inbox, "housekeeping deleted expired rows");
        }
        Ok(inbox)
    }

    pub async fn run(&self, stop: CancellationToken) {
        shutdown::every("janitor", INTERVAL, stop, || async { Ok::<_, sqlx::Error>(self.try_clean_once().await? > 0) })
            .await;
    }
}
