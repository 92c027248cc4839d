//! Orders, their status history and idempotency records.
//!
//! Orders are placed by group commit ([`IntakeWriter`]): concurrent requests'
//! orders go to PostgreSQL together, one statement for the whole batch (a chain
//! of data-modifying CTEs, atomic as any statement): each order's idempotency
//! record, then the order, its first history row and its `order-created`
//! outbox event, those only if its idempotency record was inserted (a
//! conflicting, unexpired key inserts nothing), so a duplicate can never create
//! a second order. A batch that fails is placed again one order at a time, so
//! one bad order fails alone.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use database::{HotPool, group::GroupCommit};
use envelope::{Address, LineItem};
use futures::future::join_all;
use outbox::OutboxMessage;
use serde_json::Value;
use sqlx::{PgPool, types::Json};
use tracing::Instrument;
use uuid::Uuid;

use crate::{
    domain::{HistoryEntry, Order, OrderStatus, Shipment},
    metrics,
};

/// The response stored with an idempotency key, replayed on a retry.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StoredResponse {
    /// Hex SHA-256 of the canonical request.
    pub request_hash: String,
    pub order_id: Uuid,
    pub status: u16,
    pub body: Value,
}

/// The idempotency record to write with an order.
#[derive(Debug, Clone)]
pub struct IdempotencyRecord {
    pub key: String,
    pub request_hash: [u8; 32],
    pub expires_at: DateTime<Utc>,
}

/// One order to place, with everything written beside it.
#[derive(Debug)]
pub struct Placement {
    pub order: Order,
    /// The 201 body, stored with the idempotency record.
    pub body: Value,
    pub idempotency: Option<IdempotencyRecord>,
    pub event: OutboxMessage,
    /// The request's span: the batch's `db.place_orders` span is a child of the
    /// first order's and linked from the others'.
    pub span: tracing::Span,
}

/// What placing an order did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placed {
    Created,
    /// The key was held (and not expired): nothing was written for this order;
    /// [`find_idempotent`] reads the holder's response.
    KeyTaken,
}

/// Places orders by group commit: what `POST /orders` submits to.
pub type IntakeWriter = GroupCommit<Placement, Result<Placed, sqlx::Error>>;

/// Starts the intake's group commit: at most `writers` transactions at once,
/// each of at most `max_batch` orders.
pub fn intake_writer(db: HotPool, writers: usize, max_batch: usize) -> IntakeWriter {
    GroupCommit::start(writers, max_batch, move |batch| place_group(db.clone(), batch))
}

/// Places one batch and answers each order: the orders whose idempotency key
/// repeats an earlier one of the batch wait for the rest (one statement cannot
/// touch a key twice); if the batch fails, each of its orders is placed alone.
pub async fn place_group(db: HotPool, batch: Vec<Placement>) -> Vec<Result<Placed, sqlx::Error>> {
    let (together, after) = split_repeated_keys(&batch);
    let mut answers: Vec<Option<Result<Placed, sqlx::Error>>> = batch.iter().map(|_| None).collect();
    let first: Vec<&Placement> = together.iter().map(|&i| &batch[i]).collect();
    match place_all(&db, &first).await {
        Ok(placed) => {
            for (&i, placed) in together.iter().zip(placed) {
                answers[i] = Some(Ok(placed));
            }
        }
        Err(e) if first.len() == 1 => answers[together[0]] = Some(Err(e)),
        Err(e) => {
            tracing::warn!(error = %e, orders = first.len(), "placing a batch of orders failed; placing each alone");
            let alone = join_all(first.iter().map(|p| place_one(&db, p))).await;
            for (&i, answer) in together.iter().zip(alone) {
                answers[i] = Some(answer);
            }
        }
    }
    for i in after {
        answers[i] = Some(place_one(&db, &batch[i]).await);
    }
    answers.into_iter().map(|a| a.expect("every order of the batch is answered")).collect()
}

async fn place_one(db: &HotPool, placement: &Placement) -> Result<Placed, sqlx::Error> {
    Ok(place_all(db, &[placement]).await?[0])
}

/// Splits a batch into the orders that can be written together and those
/// (indexes, in order) whose customer and idempotency key repeat an earlier
/// order's.
pub fn split_repeated_keys(batch: &[Placement]) -> (Vec<usize>, Vec<usize>) {
    let mut seen = HashSet::new();
    (0..batch.len()).partition(|&i| match &batch[i].idempotency {
        Some(record) => seen.insert((batch[i].order.customer_id, record.key.as_str())),
        None => true,
    })
}

/// Writes each order with its first history row, idempotency record and
/// `order-created` event in one statement, committed before it returns: on its
/// own on a direct connection (one round trip), in BEGIN ... COMMIT through a
/// transaction pooler ([`HotPool::run_committed`]). Answers each order, in order. No two orders
/// may share a customer and idempotency key ([`split_repeated_keys`]).
pub async fn place_all(db: &HotPool, placements: &[&Placement]) -> Result<Vec<Placed>, sqlx::Error> {
    let span = tracing::info_span!(
        parent: placements.first().and_then(|p| p.span.id()),
        "db.place_orders",
        db.system = "postgresql",
        orders = placements.len()
    );
    for placement in placements.iter().skip(1) {
        span.follows_from(&placement.span);
    }
    write(db, placements).instrument(span).await
}

async fn write(db: &HotPool, placements: &[&Placement]) -> Result<Vec<Placed>, sqlx::Error> {
    let orders = || placements.iter().map(|p| &p.order);
    let keys = || placements.iter().map(|p| p.idempotency.as_ref());
    let events = outbox::Columns::of(placements.iter().map(|p| &p.event));
    // The event of an order goes to the outbox only if the order was inserted.
    let statement = sqlx::query_scalar!(
        r#"
        WITH input AS (
            SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::jsonb[], $5::int8[], $6::jsonb[],
                                 $7::timestamptz[], $8::text[], $9::bytea[], $10::jsonb[], $11::timestamptz[],
                                 $12::uuid[], $13::text[], $14::text[], $15::text[], $16::text[], $17::text[], $18::text[])
              WITH ORDINALITY
              AS i (id, customer_id, currency, items, total_minor, shipping_address, created_at,
                    key, request_hash, response_body, expires_at,
                    event_id, destination, group_id, event_type, event_body, traceparent, tracestate, n)
        ), idem AS (
            INSERT INTO idempotency_keys (customer_id, key, request_hash, order_id, response_status, response_body, expires_at)
            SELECT customer_id, key, request_hash, id, 201, response_body, expires_at FROM input WHERE key IS NOT NULL
            ON CONFLICT (customer_id, key) DO UPDATE
               SET request_hash = EXCLUDED.request_hash, order_id = EXCLUDED.order_id,
                   response_status = EXCLUDED.response_status, response_body = EXCLUDED.response_body,
                   expires_at = EXCLUDED.expires_at
             WHERE idempotency_keys.expires_at < now()
            RETURNING order_id
        ), ins AS (
            INSERT INTO orders (id, customer_id, status, currency, items, total_minor, shipping_address, created_at, updated_at)
            SELECT id, customer_id, 'PENDING_SHIPMENT', currency, items, total_minor, shipping_address, created_at, created_at
              FROM input WHERE key IS NULL OR id IN (SELECT order_id FROM idem)
            RETURNING id, created_at
        ), hist AS (
            INSERT INTO order_status_history (order_id, seq, status, at)
            SELECT id, 1, 'PENDING_SHIPMENT', created_at FROM ins
        ), events AS (
            INSERT INTO outbox (event_id, destination, group_id, event_type, body, traceparent, tracestate)
            SELECT event_id, destination, group_id, event_type, event_body, traceparent, tracestate
              FROM input WHERE id IN (SELECT id FROM ins) ORDER BY n
        )
        SELECT id AS "id!" FROM ins
        "#,
        &orders().map(|o| o.id).collect::<Vec<_>>(),
        &orders().map(|o| o.customer_id).collect::<Vec<_>>(),
        &orders().map(|o| o.currency.as_str()).collect::<Vec<_>>() as _,
        orders().map(|o| Json(&o.items)).collect::<Vec<_>>() as _,
        &orders().map(|o| o.total_minor).collect::<Vec<_>>(),
        orders().map(|o| Json(&o.shipping_address)).collect::<Vec<_>>() as _,
        &orders().map(|o| o.created_at).collect::<Vec<_>>(),
        keys().map(|k| k.map(|k| k.key.as_str())).collect::<Vec<_>>() as _,
        keys().map(|k| k.map(|k| k.request_hash.as_slice())).collect::<Vec<_>>() as _,
        placements.iter().map(|p| Json(&p.body)).collect::<Vec<_>>() as _,
        keys().map(|k| k.map(|k| k.expires_at)).collect::<Vec<_>>() as _,
        &events.event_id,
        &events.destination,
        &events.group_id,
        &events.event_type,
        &events.body,
        &events.traceparent as _,
        &events.tracestate as _,
    );
    let created: Vec<Uuid> = db.run_committed(async |conn| statement.fetch_all(conn).await).await?;
    metrics::INTAKE_TRANSACTIONS.as_counter().increment(1);
    Ok(orders().map(|o| if created.contains(&o.id) { Placed::Created } else { Placed::KeyTaken }).collect())
}

/// The stored response for `key`, if the key is held and not expired.
#[tracing::instrument(name = "db.find_idempotent", skip(pool), fields(db.system = "postgresql"))]
pub async fn find_idempotent(
    pool: &PgPool,
    customer_id: Uuid,
    key: &str,
) -> Result<Option<StoredResponse>, sqlx::Error> {
    let row = sqlx::query!(
        r#"SELECT request_hash, order_id, response_status, response_body AS "response_body: Json<Value>"
           FROM idempotency_keys WHERE customer_id = $1 AND key = $2 AND expires_at >= now()"#,
        customer_id,
        key,
    )
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|r| StoredResponse {
        request_hash: hex::encode(r.request_hash),
        order_id: r.order_id,
        status: r.response_status as u16,
        body: r.response_body.0,
    }))
}

struct OrderRow {
    id: Uuid,
    customer_id: Uuid,
    status: String,
    currency: String,
    items: Json<Vec<LineItem>>,
    total_minor: i64,
    shipping_address: Json<Address>,
    carrier: Option<String>,
    tracking_number: Option<String>,
    history: Json<Vec<HistoryEntry>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<OrderRow> for Order {
    fn from(r: OrderRow) -> Self {
        Order {
            id: r.id,
            customer_id: r.customer_id,
            status: OrderStatus::parse(&r.status).unwrap_or(OrderStatus::PendingShipment),
            currency: r.currency.trim().to_owned(),
            items: r.items.0,
            total_minor: r.total_minor,
            shipping_address: r.shipping_address.0,
            shipment: Shipment { carrier: r.carrier, tracking_number: r.tracking_number },
            history: r.history.0,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

/// One order of `customer_id`; another customer's order is `None`, like a missing one.
#[tracing::instrument(name = "db.get_order", skip(db), fields(db.system = "postgresql"))]
pub async fn get(db: &HotPool, customer_id: Uuid, id: Uuid) -> Result<Option<Order>, sqlx::Error> {
    // The history comes from `order_history(id)` (see the migrations), so both
    // readers share its definition.
    let row = sqlx::query_as!(
        OrderRow,
        r#"SELECT id, customer_id, status, currency, items AS "items: Json<Vec<LineItem>>", total_minor,
                  shipping_address AS "shipping_address: Json<Address>", carrier, tracking_number,
                  order_history(id) AS "history!: Json<Vec<HistoryEntry>>", created_at, updated_at
             FROM orders WHERE id = $1 AND customer_id = $2"#,
        id,
        customer_id,
    );
    let row = db.run(async |conn| row.fetch_optional(conn).await).await?;
    Ok(row.map(Order::from))
}

/// Up to `limit` orders of `customer_id`, newest first, older than `before`.
#[tracing::instrument(name = "db.list_orders", skip(db), fields(db.system = "postgresql"))]
pub async fn list(
    db: &HotPool,
    customer_id: Uuid,
    limit: u32,
    before: Option<Uuid>,
) -> Result<Vec<Order>, sqlx::Error> {
    let rows = sqlx::query_as!(
        OrderRow,
        r#"SELECT id, customer_id, status, currency, items AS "items: Json<Vec<LineItem>>", total_minor,
                  shipping_address AS "shipping_address: Json<Address>", carrier, tracking_number,
                  order_history(id) AS "history!: Json<Vec<HistoryEntry>>", created_at, updated_at
             FROM orders WHERE customer_id = $1 AND ($2::uuid IS NULL OR id < $2) ORDER BY id DESC LIMIT $3"#,
        customer_id,
        before,
        i64::from(limit),
    );
    let rows = db.run(async |conn| rows.fetch_all(conn).await).await?;
    Ok(rows.into_iter().map(Order::from).collect())
}

/// Deletes up to `batch` expired idempotency records; returns how many.
pub async fn prune_idempotency(pool: &PgPool, batch: i64) -> Result<u64, sqlx::Error> {
    let deleted = sqlx::query!(
        "DELETE FROM idempotency_keys WHERE (customer_id, key) IN (
           SELECT customer_id, key FROM idempotency_keys WHERE expires_at < now() LIMIT $1)",
        batch,
    )
    .execute(pool)
    .await?
    .rows_affected();
    Ok(deleted)
}
