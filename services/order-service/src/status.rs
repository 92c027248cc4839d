//! Applying delivery status events (`order-shipped`, `order-delivered` from
//! `delivery-status-queue.fifo`) to orders, with the shared consumer loop.
//!
//! Each event is applied in one transaction with its inbox record: the order
//! moves one step forward, gains a history row stamped with the event's time,
//! and a `pg_notify('order_events', '<order_id> <traceparent>')` wakes every
//! replica's live streams at commit (the trace context lets their push spans
//! join the order's trace). A duplicate or stale event (the order is already there or
//! beyond) is acknowledged and changes nothing. An event for an unknown order,
//! or one that would skip a step, is logged, counted and rejected so it ends in
//! the dead-letter queue instead of being retried forever.

use std::time::Duration;

use chrono::{DateTime, Utc};
use envelope::Event;
use messaging::{Disposition, Handler, Received};
use sqlx::PgPool;
use uuid::Uuid;

use crate::{domain::OrderStatus, metrics};

/// The PostgreSQL channel that announces order changes to live streams.
pub const NOTIFY_CHANNEL: &str = "order_events";

/// A notification's payload: the order id, then the W3C `traceparent` of the
/// change when it was traced (`<uuid>` or `<uuid> <traceparent>`).
pub fn notify_payload(order_id: Uuid, traceparent: Option<&str>) -> String {
    match traceparent {
        Some(tp) => format!("{order_id} {tp}"),
        None => order_id.to_string(),
    }
}

/// The order id and trace context of a notification's payload.
pub fn parse_notify_payload(payload: &str) -> Option<(Uuid, Option<String>)> {
    let mut parts = payload.split(' ');
    let order_id = Uuid::parse_str(parts.next()?).ok()?;
    Some((order_id, parts.next().filter(|tp| !tp.is_empty()).map(str::to_owned)))
}

pub struct StatusHandler {
    pub pool: PgPool,
}

/// What applying one event did.
#[derive(Debug, PartialEq, Eq)]
pub enum Applied {
    Moved(OrderStatus),
    /// Seen before, or the order is already at or past this status.
    Unchanged,
    UnknownOrder,
    /// The event would skip a step (e.g. delivered before shipped).
    Impossible {
        from: OrderStatus,
        to: OrderStatus,
    },
}

struct Change {
    order_id: Uuid,
    event_id: Uuid,
    to: OrderStatus,
    at: DateTime<Utc>,
    carrier: Option<String>,
    tracking_number: Option<String>,
}

const RETRY_AFTER: Duration = Duration::from_secs(5);

impl Handler for StatusHandler {
    async fn handle(&self, message: &Received) -> Disposition {
        let change = match messaging::decode_event(message) {
            Ok(Event::OrderShipped(e)) => Change {
                order_id: e.order_id,
                event_id: e.event_id,
                to: OrderStatus::Shipped,
                at: e.payload.shipped_at,
                carrier: Some(e.payload.carrier),
                tracking_number: Some(e.payload.tracking_number),
            },
            Ok(Event::OrderDelivered(e)) => Change {
                order_id: e.order_id,
                event_id: e.event_id,
                to: OrderStatus::Delivered,
                at: e.payload.delivered_at,
                carrier: None,
                tracking_number: None,
            },
            Ok(other) => {
                return Disposition::reject(
                    "unexpected_type",
                    format!("unexpected {} event on the status queue", other.event_type()),
                );
            }
            Err(rejected) => return rejected,
        };
        match apply(&self.pool, &change).await {
            Ok(Applied::Moved(status)) => {
                tracing::debug!(order_id = %change.order_id, event_id = %change.event_id, status = status.as_str(), "order status changed");
                Disposition::Ack
            }
            Ok(Applied::Unchanged) => {
                tracing::debug!(order_id = %change.order_id, event_id = %change.event_id, "duplicate or stale status event skipped");
                Disposition::Duplicate
            }
            Ok(Applied::UnknownOrder) => Disposition::reject("unknown_order", format!("no order {}", change.order_id)),
            Ok(Applied::Impossible { from, to }) => Disposition::reject(
                "impossible_transition",
                format!("order {} cannot go from {} to {}", change.order_id, from.as_str(), to.as_str()),
            ),
            // The database is away: hold the message (no receive count spent) until it is back.
            Err(e) if messaging::is_transient(&e) => Disposition::unavailable(format!("database unavailable: {e}")),
            Err(e) => {
                tracing::warn!(order_id = %change.order_id, error = %e, "could not apply the status event; will retry");
                Disposition::Retry { after: RETRY_AFTER }
            }
        }
    }
}

#[tracing::instrument(name = "db.apply_status", skip_all, fields(db.system = "postgresql", order_id = %change.order_id, event_id = %change.event_id))]
async fn apply(pool: &PgPool, change: &Change) -> Result<Applied, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let current = sqlx::query!("SELECT status, created_at FROM orders WHERE id = $1 FOR UPDATE", change.order_id)
        .fetch_optional(&mut *tx)
        .await?;
    let Some(current) = current else {
        return Ok(Applied::UnknownOrder); // rolled back: nothing recorded
    };
    let from = OrderStatus::parse(&current.status).unwrap_or(OrderStatus::PendingShipment);
    if from >= change.to {
        messaging::inbox::record_once(&mut tx, change.event_id).await?;
        tx.commit().await?;
        return Ok(Applied::Unchanged);
    }
    if from.next() != Some(change.to) {
        return Ok(Applied::Impossible { from, to: change.to });
    }
    if !messaging::inbox::record_once(&mut tx, change.event_id).await? {
        tx.commit().await?;
        return Ok(Applied::Unchanged);
    }
    sqlx::query!(
        "UPDATE orders SET status = $2, carrier = COALESCE($3, carrier), tracking_number = COALESCE($4, tracking_number),
           updated_at = $5 WHERE id = $1",
        change.order_id,
        change.to.as_str(),
        change.carrier,
        change.tracking_number,
        change.at,
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query!(
        "INSERT INTO order_status_history (order_id, seq, status, at)
         SELECT $1, COALESCE(max(seq), 0) + 1, $2, $3 FROM order_status_history WHERE order_id = $1",
        change.order_id,
        change.to.as_str(),
        change.at,
    )
    .execute(&mut *tx)
    .await?;
    // Delivered at commit; the payload carries this span's trace context so
    // the streams' push spans continue the order's trace.
    let payload = notify_payload(change.order_id, telemetry::propagation::current().traceparent.as_deref());
    sqlx::query!("SELECT pg_notify($1, $2)", NOTIFY_CHANNEL, payload).execute(&mut *tx).await?;
    tx.commit().await?;
    metrics::STATUS_CHANGES.counter_with(&[change.to.as_str()]).increment(1);
    if change.to == OrderStatus::Delivered {
        let took = (change.at - current.created_at).to_std().unwrap_or_default();
        metrics::DELIVERY_DURATION.as_histogram().record(took.as_secs_f64());
    }
    Ok(Applied::Moved(change.to))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notification_payloads_round_trip_with_and_without_trace_context() {
        let id = Uuid::now_v7();
        let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        assert_eq!(parse_notify_payload(&notify_payload(id, Some(tp))), Some((id, Some(tp.to_owned()))));
        assert_eq!(parse_notify_payload(&notify_payload(id, None)), Some((id, None)));
        assert_eq!(parse_notify_payload("not-a-uuid"), None);
    }
}
