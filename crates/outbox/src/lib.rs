//! The transactional outbox: events written in the same database transaction as
//! the state change that caused them, then published to SQS by a relay.
//!
//! - [`enqueue`] adds an event inside the caller's transaction: the only way a
//!   service writes to the `outbox` table.
//! - [`Relay`] claims pending rows with `FOR UPDATE SKIP LOCKED`, so any number
//!   of replicas relay at once without double-sending, and publishes them in
//!   batches. Only the oldest pending row of each message group is claimed, so
//!   per-order order survives retries and concurrent relays.
//! - A [`breaker::Breaker`] stops hammering an unreachable SQS and probes it.
//!
//! The table layout is fixed by the migrations of each service's database (see
//! `migrations/*/..._outbox.sql`); this crate owns the queries on it.

pub mod breaker;
pub mod metrics;
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

/// Adds `message` to the outbox within the caller's transaction, so the event
/// is published if and only if the caller commits.
pub async fn enqueue(conn: &mut PgConnection, message: &OutboxMessage) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO outbox (event_id, destination, group_id, event_type, body, traceparent, tracestate)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        message.event_id,
        message.destination,
        message.group_id,
        message.event_type,
        message.body,
        message.traceparent,
        message.tracestate,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Rows still waiting to be published: the relay's backlog.
pub async fn backlog(pool: &sqlx::PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(r#"SELECT count(*) AS "count!" FROM outbox"#).fetch_one(pool).await
}

/// Sets the `outbox_backlog` gauge from [`backlog`]; keeps the last value if
/// the database does not answer.
pub async fn record_backlog(pool: &sqlx::PgPool) {
    if let Ok(n) = backlog(pool).await {
        metrics::BACKLOG.as_gauge().set(n as f64);
    }
}
