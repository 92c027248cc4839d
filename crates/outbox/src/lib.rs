//! The transactional outbox: events written in the same database transaction as
//! the state change that caused them, then published to SQS by a relay.
//!
//! - [`enqueue`] adds an event inside the caller's transaction (services with a
//!   single-statement write path insert into the `outbox` table in their own SQL,
//!   with the same columns).
//! - [`Relay`] claims pending rows with `FOR UPDATE SKIP LOCKED`, so any number
//!   of replicas relay at once without double-sending, and publishes them in
//!   batches. Only the oldest pending row of each message group is claimed, so
//!   per-order order survives retries and concurrent relays.
//! - A [`breaker::Breaker`] stops hammering an unreachable SQS and probes it.
//!
//! The table layout is fixed by the migrations of each service's database (see
//! `migrations/*/..._outbox.sql`); this crate owns the queries on it.

pub mod breaker;
pub mod relay;

pub use relay::{Outcome, Relay, RelayConfig, RelayError, Waker};

use sqlx::PgConnection;
use uuid::Uuid;

/// One event to publish.
#[derive(Debug, Clone)]
pub struct OutboxMessage {
    pub event_id: Uuid,
    /// Destination queue name, e.g. `orders-queue.fifo`. The relay resolves its
    /// URL when publishing, so rows survive a change of endpoint.
    pub destination: String,
    /// FIFO message group: the order id.
    pub group_id: String,
    pub event_type: String,
    pub body: String,
    /// W3C trace context of the transaction that wrote the row.
    pub traceparent: Option<String>,
    pub tracestate: Option<String>,
}

/// Adds `message` to the outbox within the caller's transaction.
pub async fn enqueue(conn: &mut PgConnection, message: &OutboxMessage) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO outbox (event_id, destination, group_id, event_type, body, traceparent, tracestate)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(message.event_id)
    .bind(&message.destination)
    .bind(&message.group_id)
    .bind(&message.event_type)
    .bind(&message.body)
    .bind(&message.traceparent)
    .bind(&message.tracestate)
    .execute(conn)
    .await?;
    Ok(())
}

/// Rows still waiting to be published: the relay's backlog.
pub async fn backlog(pool: &sqlx::PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM outbox").fetch_one(pool).await
}

pub mod inbox {
    //! The inbox half of exactly-once handling: a consumer records each event id
    //! in `processed_messages` inside the transaction that applies the event. A
    //! redelivered or re-sent event finds its id there and changes nothing.

    use sqlx::PgConnection;
    use uuid::Uuid;

    /// Deletes up to `batch` inbox rows older than `older_than`; returns how
    /// many. Past SQS's longest retention (14 days) a message cannot come back,
    /// so its id need not be remembered.
    pub async fn prune(pool: &sqlx::PgPool, older_than: std::time::Duration, batch: i64) -> Result<u64, sqlx::Error> {
        let deleted = sqlx::query(
            "DELETE FROM processed_messages WHERE event_id IN (
               SELECT event_id FROM processed_messages WHERE processed_at < now() - make_interval(secs => $1) LIMIT $2)",
        )
        .bind(older_than.as_secs_f64())
        .bind(batch)
        .execute(pool)
        .await?
        .rows_affected();
        Ok(deleted)
    }

    /// Records `event_id`; `false` if it was processed before (skip it).
    pub async fn record_once(conn: &mut PgConnection, event_id: Uuid) -> Result<bool, sqlx::Error> {
        let inserted = sqlx::query("INSERT INTO processed_messages (event_id) VALUES ($1) ON CONFLICT DO NOTHING")
            .bind(event_id)
            .execute(conn)
            .await?
            .rows_affected();
        Ok(inserted == 1)
    }
}
