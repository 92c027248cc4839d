//! The inbox: the consumer's half of exactly-once handling. A handler records
//! each event id in `processed_messages` inside the transaction that applies
//! the event; a redelivered or re-sent event finds its id there, changes
//! nothing, and is answered with [`crate::Disposition::Duplicate`].
//!
//! Each service's migrations create the table (the same definition in each
//! database; a test holds them equal). This module owns the queries on it.

use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

/// Records `event_id`; `false` if it was processed before (skip it).
pub async fn record_once(conn: &mut PgConnection, event_id: Uuid) -> Result<bool, sqlx::Error> {
    let inserted =
        sqlx::query!("INSERT INTO processed_messages (event_id) VALUES ($1) ON CONFLICT DO NOTHING", event_id)
            .execute(conn)
            .await?
            .rows_affected();
    Ok(inserted == 1)
}

/// Deletes up to `batch` inbox rows older than `older_than`; returns how many.
/// Past SQS's longest retention (14 days) a message cannot come back, so its
/// id need not be remembered.
pub async fn prune(pool: &PgPool, older_than: std::time::Duration, batch: i64) -> Result<u64, sqlx::Error> {
    let deleted = sqlx::query!(
        "DELETE FROM processed_messages WHERE event_id IN (
           SELECT event_id FROM processed_messages WHERE processed_at < now() - make_interval(secs => $1) LIMIT $2)",
        older_than.as_secs_f64(),
        batch,
    )
    .execute(pool)
    .await?
    .rows_affected();
    Ok(deleted)
}
