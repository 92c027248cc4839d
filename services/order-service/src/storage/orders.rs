//! Orders, their status history and idempotency records.
//!
//! Placing an order is one SQL statement: the idempotency record, the order,
//! its first history row and its `order-created` outbox row are inserted by one
//! chain of data-modifying CTEs, i.e. one round trip and one commit. The order
//! is inserted only if the idempotency record was (a conflicting, unexpired key
//! inserts nothing), so a duplicate can never create a second order.

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

/// Inserts order + first history row + outbox row (+ idempotency record) in one statement.
#[tracing::instrument(name = "db.insert_order", skip_all, fields(db.system = "postgresql", order_id = %order.id))]
pub async fn place(
    pool: &PgPool,
    order: &Order,
    response_body: &Value,
    idempotency: Option<&IdempotencyRecord>,
    event: &OutboxMessage,
) -> Result<Placed, sqlx::Error> {
    let inserted: i64 = sqlx::query_scalar(
        r#"
        WITH idem AS (
            INSERT INTO idempotency_keys (customer_id, key, request_hash, order_id, response_status, response_body, expires_at)
            SELECT $2, $13, $14, $1, 201, $15, $16 WHERE $13::text IS NOT NULL
            ON CONFLICT (customer_id, key) DO UPDATE
               SET request_hash = EXCLUDED.request_hash, order_id = EXCLUDED.order_id,
                   response_status = EXCLUDED.response_status, response_body = EXCLUDED.response_body,
                   expires_at = EXCLUDED.expires_at
             WHERE idempotency_keys.expires_at < now()
            RETURNING 1
        ), ins AS (
            INSERT INTO orders (id, customer_id, status, currency, items, total_minor, shipping_address, created_at, updated_at)
            SELECT $1, $2, 'PENDING_SHIPMENT', $3, $4, $5, $6, $7, $7
             WHERE $13::text IS NULL OR EXISTS (SELECT 1 FROM idem)
            RETURNING id
        ), hist AS (
            INSERT INTO order_status_history (order_id, seq, status, at)
            SELECT id, 1, 'PENDING_SHIPMENT', $7 FROM ins
        ), event AS (
            INSERT INTO outbox (event_id, destination, group_id, event_type, body, traceparent, tracestate)
            SELECT $8, $9, $10, 'order-created', $11, $12, $17 FROM ins
        )
        SELECT count(*) FROM ins
        "#,
    )
    .bind(order.id) // $1
    .bind(order.customer_id)
    .bind(&order.currency)
    .bind(Json(&order.items))
    .bind(order.total_minor) // $5
    .bind(Json(&order.shipping_address))
    .bind(order.created_at)
    .bind(event.event_id)
    .bind(&event.destination)
    .bind(&event.group_id) // $10
    .bind(&event.body)
    .bind(&event.traceparent)
    .bind(idempotency.map(|i| i.key.as_str()))
    .bind(idempotency.map(|i| i.request_hash.to_vec()))
    .bind(Json(response_body)) // $15
    .bind(idempotency.map(|i| i.expires_at))
    .bind(&event.tracestate)
    .fetch_one(pool)
    .await?;
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
    let row: Option<(Vec<u8>, Uuid, i16, Json<Value>)> = sqlx::query_as(
        "SELECT request_hash, order_id, response_status, response_body FROM idempotency_keys
         WHERE customer_id = $1 AND key = $2 AND expires_at >= now()",
    )
    .bind(customer_id)
    .bind(key)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|(hash, order_id, status, Json(body))| StoredResponse {
        request_hash: hex(&hash),
        order_id,
        status: status as u16,
        body,
    }))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(sqlx::FromRow)]
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

const SELECT_ORDER: &str = r#"
    SELECT o.id, o.customer_id, o.status, o.currency, o.items, o.total_minor, o.shipping_address,
           o.carrier, o.tracking_number, o.created_at, o.updated_at,
           COALESCE((SELECT json_agg(json_build_object('status', h.status, 'at', h.at) ORDER BY h.seq)
                       FROM order_status_history h WHERE h.order_id = o.id), '[]') AS history
      FROM orders o"#;

/// One order of `customer_id`; another customer's order is `None`, like a missing one.
#[tracing::instrument(name = "db.get_order", skip(pool), fields(db.system = "postgresql"))]
pub async fn get(pool: &PgPool, customer_id: Uuid, id: Uuid) -> Result<Option<Order>, sqlx::Error> {
    let row: Option<OrderRow> =
        sqlx::query_as(sqlx::AssertSqlSafe(format!("{SELECT_ORDER} WHERE o.id = $1 AND o.customer_id = $2")))
            .bind(id)
            .bind(customer_id)
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
    let rows: Vec<OrderRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{SELECT_ORDER} WHERE o.customer_id = $1 AND ($2::uuid IS NULL OR o.id < $2) ORDER BY o.id DESC LIMIT $3"
    )))
    .bind(customer_id)
    .bind(before)
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(Order::from).collect())
}

/// Deletes up to `batch` expired idempotency records; returns how many.
pub async fn prune_idempotency(pool: &PgPool, batch: i64) -> Result<u64, sqlx::Error> {
    let deleted = sqlx::query(
        "DELETE FROM idempotency_keys WHERE (customer_id, key) IN (
           SELECT customer_id, key FROM idempotency_keys WHERE expires_at < now() LIMIT $1)",
    )
    .bind(batch)
    .execute(pool)
    .await?
    .rows_affected();
    Ok(deleted)
}
