//! Orders, their status history and idempotency records.
//!
//! Placing an order is one transaction of one statement (a chain of
//! data-modifying CTEs): it inserts the idempotency record, the order, its
//! first history row and its `order-created` event in the outbox. The
//! order is inserted only if the idempotency record was (a conflicting,
//! unexpired key inserts nothing), so a duplicate can never create a second
//! order. The outbox row has the columns `outbox::enqueue` writes; it is
//! inlined here so that intake costs one statement.

use chrono::{DateTime, Utc};
use envelope::{Address, LineItem};
use outbox::OutboxMessage;
use serde_json::Value;
use sqlx::{PgPool, types::Json};
use uuid::Uuid;

use crate::domain::{HistoryEntry, Order, OrderStatus, Shipment};

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

/// What placing an order did.
#[derive(Debug)]
pub enum Placed {
    Created,
    /// The key was taken (and not expired): nothing was written.
    KeyTaken(StoredResponse),
}

/// Writes order + first history row (+ idempotency record) + the
/// `order-created` outbox row in one statement, committed before it returns
/// (an explicit transaction: through a transaction-pooling proxy a bare
/// statement would commit only when its connection goes back to the pool, see
/// the `database` crate); the order and the rest are
/// inserted only if the idempotency record was (a key already held inserts
/// nothing, and the stored response is returned).
#[tracing::instrument(name = "db.insert_order", skip_all, fields(db.system = "postgresql", order_id = %order.id))]
pub async fn place(
    pool: &PgPool,
    order: &Order,
    response_body: &Value,
    idempotency: Option<&IdempotencyRecord>,
    event: &OutboxMessage,
) -> Result<Placed, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let inserted = sqlx::query_scalar!(
        r#"
        WITH idem AS (
            INSERT INTO idempotency_keys (customer_id, key, request_hash, order_id, response_status, response_body, expires_at)
            SELECT $2, $8, $9, $1, 201, $10, $11 WHERE $8::text IS NOT NULL
            ON CONFLICT (customer_id, key) DO UPDATE
               SET request_hash = EXCLUDED.request_hash, order_id = EXCLUDED.order_id,
                   response_status = EXCLUDED.response_status, response_body = EXCLUDED.response_body,
                   expires_at = EXCLUDED.expires_at
             WHERE idempotency_keys.expires_at < now()
            RETURNING 1
        ), ins AS (
            INSERT INTO orders (id, customer_id, status, currency, items, total_minor, shipping_address, created_at, updated_at)
            SELECT $1, $2, 'PENDING_SHIPMENT', $3, $4, $5, $6, $7, $7
             WHERE $8::text IS NULL OR EXISTS (SELECT 1 FROM idem)
            RETURNING id
        ), hist AS (
            INSERT INTO order_status_history (order_id, seq, status, at)
            SELECT id, 1, 'PENDING_SHIPMENT', $7 FROM ins
        ), event AS (
            INSERT INTO outbox (event_id, destination, group_id, event_type, body, traceparent, tracestate)
            SELECT $12, $13, $14, $15, $16, $17, $18 FROM ins
        )
        SELECT count(*) AS "count!" FROM ins
        "#,
        order.id,
        order.customer_id,
        order.currency,
        Json(&order.items) as _,
        order.total_minor,
        Json(&order.shipping_address) as _,
        order.created_at,
        idempotency.map(|i| i.key.as_str()),
        idempotency.map(|i| i.request_hash.as_slice()),
        Json(response_body) as _,
        idempotency.map(|i| i.expires_at),
        event.event_id,
        event.destination,
        event.group_id,
        event.event_type,
        event.body,
        event.traceparent,
        event.tracestate,
    )
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    if inserted == 1 {
        return Ok(Placed::Created);
    }
    let key = idempotency.map(|i| i.key.as_str()).unwrap_or_default();
    match find_idempotent(pool, order.customer_id, key).await? {
        Some(stored) => Ok(Placed::KeyTaken(stored)),
        // The holder expired and was replaced between our statement and this
        // read: vanishingly rare; surface it as a retryable error.
        None => Err(sqlx::Error::RowNotFound),
    }
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
#[tracing::instrument(name = "db.get_order", skip(pool), fields(db.system = "postgresql"))]
pub async fn get(pool: &PgPool, customer_id: Uuid, id: Uuid) -> Result<Option<Order>, sqlx::Error> {
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
    )
    .fetch_optional(pool)
    .await?;
    Ok(row.map(Order::from))
}

/// Up to `limit` orders of `customer_id`, newest first, older than `before`.
#[tracing::instrument(name = "db.list_orders", skip(pool), fields(db.system = "postgresql"))]
pub async fn list(
    pool: &PgPool,
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
    )
    .fetch_all(pool)
    .await?;
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
