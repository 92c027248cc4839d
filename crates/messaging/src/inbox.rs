//! The inbox: the consumer's half of exactly-once handling. A handler records
//! each event id in `processed_messages` inside the transaction that applies
//! the event; a redelivered or re-sent event finds its id there, changes
//! nothing, and is answered with [`crate::Disposition::Duplicate`].
//!
//! Each service's migrations create the table (the same definition in each
//! database; a test holds them equal). This module owns the queries on it.

use std::collections::HashSet;

use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

/// Records each of `event_ids`; returns those not processed before (the
/// others are skipped). One statement for a whole batch.
pub async fn record_new(conn: &mut PgConnection, event_ids: &[Uuid]) -> Result<HashSet<Uuid>, sqlx::Error> {
    if event_ids.is_empty() {
        return Ok(HashSet::new());
    }
    let fresh = sqlx::query_scalar!(
        r#"INSERT INTO processed_messages (event_id) SELECT unnest($1::uuid[])
           ON CONFLICT DO NOTHING RETURNING event_id AS "event_id!""#,
        event_ids
    )
    .fetch_all(conn)
    .await?;
    Ok(fresh.into_iter().collect())
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
