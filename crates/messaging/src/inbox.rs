//! The inbox: the consumer's half of exactly-once handling. A handler records
//! each event id in `processed_messages` in the statement that applies the
//! event (`INSERT INTO processed_messages (event_id) SELECT unnest($1::uuid[])
//! ON CONFLICT DO NOTHING RETURNING event_id`, a CTE whose output picks the
//! events to apply, so recording and applying a batch is one round trip; a
//! service's checked query cannot borrow SQL from this crate, so each writes
//! that CTE itself); a redelivered or re-sent event finds its id there,
//! changes nothing, and is answered with [`crate::Disposition::Duplicate`].
//! Where the applied change is itself a compare-and-set (the order-service's
//! status moves: an order moves only from the step before), that guard makes a
//! repeat a no-op and the inbox records the events applied, after the fact.
//!
//! Each service's migrations create the table (the same definition in each
//! database; a test holds them equal). This module owns its upkeep.

use sqlx::PgPool;

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
