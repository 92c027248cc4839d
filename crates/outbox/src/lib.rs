//! The transactional outbox: events written in the same database transaction as
//! the state change that caused them, then published to SQS by a relay.
//!
//! - [`enqueue`] adds an event inside the caller's transaction: the way a
//!   service writes to the `outbox` table ([`Columns`] lays events out for the
//!   one writer that inserts them in the same statement as its own rows).
//! - [`Relay`] claims pending rows with `FOR UPDATE SKIP LOCKED`, so any number
//!   of replicas relay at once without double-sending, and publishes them in
//!   batches. Only the oldest pending row of each message group is claimed, so
//!   per-order order survives retries and concurrent relays.
//! - A [`breaker::Breaker`] stops hammering an unreachable SQS and probes it.
//! - [`parked`] and [`requeue`] are the operators' view of rows SQS refused
//!   `OUTBOX_MAX_ATTEMPTS` times (the services' `outbox parked` and
//!   `outbox requeue` subcommands).
//!
//! The table layout is fixed by the migrations of each service's database (see
//! `migrations/*/..._outbox.sql`); this crate owns the queries on it.

pub mod admin;
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
    enqueue_all(conn, std::slice::from_ref(message)).await
}

/// Adds `messages` to the outbox, in order, within the caller's transaction:
/// one statement however many there are.
pub async fn enqueue_all(conn: &mut PgConnection, messages: &[OutboxMessage]) -> Result<(), sqlx::Error> {
    if messages.is_empty() {
        return Ok(());
    }
    let c = Columns::of(messages);
    sqlx::query!(
        "INSERT INTO outbox (event_id, destination, group_id, event_type, body, traceparent, tracestate)
         SELECT event_id, destination, group_id, event_type, body, traceparent, tracestate
           FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[])
           WITH ORDINALITY AS m (event_id, destination, group_id, event_type, body, traceparent, tracestate, n)
          ORDER BY n",
        &c.event_id,
        &c.destination,
        &c.group_id,
        &c.event_type,
        &c.body,
        &c.traceparent as _,
        &c.tracestate as _,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Messages as the column arrays an `INSERT INTO outbox ... SELECT ... FROM
/// unnest(...)` binds, in `enqueue_all`'s column order. For a writer that must
/// add its events in the same statement as its own rows (the order intake: one
/// round trip per batch instead of four); everyone else calls [`enqueue_all`].
#[derive(Debug, Default)]
pub struct Columns {
    pub event_id: Vec<Uuid>,
    pub destination: Vec<String>,
    pub group_id: Vec<String>,
    pub event_type: Vec<String>,
    pub body: Vec<String>,
    pub traceparent: Vec<Option<String>>,
    pub tracestate: Vec<Option<String>>,
}

impl Columns {
    pub fn of<'a>(messages: impl IntoIterator<Item = &'a OutboxMessage>) -> Self {
        let mut c = Self::default();
        for m in messages {
            c.event_id.push(m.event_id);
            c.destination.push(m.destination.clone());
            c.group_id.push(m.group_id.clone());
            c.event_type.push(m.event_type.clone());
            c.body.push(m.body.clone());
            c.traceparent.push(m.traceparent.clone());
            c.tracestate.push(m.tracestate.clone());
        }
        c
    }
}

/// Rows still waiting to be published: the relay's backlog.
pub async fn backlog(pool: &sqlx::PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(r#"SELECT count(*) AS "count!" FROM outbox"#).fetch_one(pool).await
}

/// Sets the `outbox_backlog` and `outbox_parked_rows` gauges; keeps the last
/// values if the database does not answer.
pub async fn record_backlog(pool: &sqlx::PgPool) {
    let counts = sqlx::query!(
        r#"SELECT count(*) AS "all!", count(*) FILTER (WHERE parked_at IS NOT NULL) AS "parked!" FROM outbox"#
    )
    .fetch_one(pool)
    .await;
    if let Ok(c) = counts {
        metrics::BACKLOG.as_gauge().set(c.all as f64);
        metrics::PARKED_ROWS.as_gauge().set(c.parked as f64);
    }
}

/// A parked row, as `outbox parked` lists it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ParkedRow {
    pub id: i64,
    pub event_id: Uuid,
    pub destination: String,
    pub group_id: String,
    pub event_type: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub parked_at: chrono::DateTime<chrono::Utc>,
    /// Later rows of the same group waiting behind this one.
    pub held_back: i64,
}

impl std::fmt::Display for ParkedRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} event={} type={} to={} group={} attempts={} parked_at={} held_back={} last_error={}",
            self.id,
            self.event_id,
            self.event_type,
            self.destination,
            self.group_id,
            self.attempts,
            self.parked_at.to_rfc3339(),
            self.held_back,
            self.last_error.as_deref().unwrap_or("-"),
        )
    }
}

/// Every parked row, oldest first.
pub async fn parked(pool: &sqlx::PgPool) -> Result<Vec<ParkedRow>, sqlx::Error> {
    sqlx::query_as!(
        ParkedRow,
        r#"SELECT id, event_id, destination, group_id, event_type, attempts, last_error, created_at,
                  parked_at AS "parked_at!",
                  (SELECT count(*) FROM outbox l WHERE l.group_id = o.group_id AND l.id > o.id) AS "held_back!"
           FROM outbox o WHERE parked_at IS NOT NULL ORDER BY id"#
    )
    .fetch_all(pool)
    .await
}

/// Which parked rows to re-queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requeue {
    One(i64),
    All,
}

/// Un-parks rows: their attempts start again from 0 and the relay picks them
/// up on its next step. Returns the ids re-queued (empty: nothing parked matched).
pub async fn requeue(pool: &sqlx::PgPool, which: Requeue) -> Result<Vec<i64>, sqlx::Error> {
    let one = match which {
        Requeue::One(id) => Some(id),
        Requeue::All => None,
    };
    sqlx::query_scalar!(
        "UPDATE outbox SET parked_at = NULL, attempts = 0, next_attempt_at = now(), claimed_until = NULL
         WHERE parked_at IS NOT NULL AND ($1::bigint IS NULL OR id = $1) RETURNING id",
        one,
    )
    .fetch_all(pool)
    .await
}
