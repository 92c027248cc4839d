//! Applying delivery status events (`order-shipped`, `order-delivered` from
//! `delivery-status-queue.fifo`) to orders, with the shared consumer loop.
//!
//! The events of a received batch (distinct orders) are applied with one
//! statement (one round trip): each order moves one step forward, and only
//! from the step before (compare-and-set, so applying an event twice changes
//! nothing), records the event in the inbox,
//! gains a history row stamped with the event's time, and a
//! `pg_notify('order_events', '<order_id> <traceparent>')` wakes every
//! replica's live streams at commit (the trace context lets their push spans
//! join the order's trace). A duplicate or stale event (the order is already
//! there or beyond) is acknowledged and changes nothing. An event for an unknown order,
//! or one that would skip a step, is logged, counted and rejected so it ends in
//! the dead-letter queue instead of being retried forever.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use database::HotPool;
use envelope::Event;
use messaging::{ApplyBatch, Disposition, Received};
use sqlx::PgConnection;
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
    pub db: HotPool,
}

/// What applying one event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    /// The order moved under the statement (another consumer had the same
    /// event): nothing was applied; the message is handled again later.
    Raced,
}

#[derive(Debug)]
struct Change {
    order_id: Uuid,
    event_id: Uuid,
    to: OrderStatus,
    at: DateTime<Utc>,
    carrier: Option<String>,
    tracking_number: Option<String>,
    /// The trace context of the message's `process` span, for the notification.
    traceparent: Option<String>,
}

impl ApplyBatch for StatusHandler {
    const WORK: &'static str = "apply status events";

    /// Applies the well-formed events of `messages` in one transaction and
    /// answers each message.
    async fn apply(&self, messages: &[Received]) -> Result<Vec<Disposition>, sqlx::Error> {
        let mut answers: Vec<Option<Disposition>> = vec![None; messages.len()];
        let (mut at, mut changes) = (Vec::with_capacity(messages.len()), Vec::with_capacity(messages.len()));
        for (i, message) in messages.iter().enumerate() {
            match change_of(message) {
                Ok(change) => {
                    at.push(i);
                    changes.push(change);
                }
                Err(rejected) => answers[i] = Some(rejected),
            }
        }
        if !changes.is_empty() {
            let applied = apply(&self.db, &changes).await?;
            for ((i, change), applied) in at.into_iter().zip(&changes).zip(applied) {
                answers[i] = Some(answer(change, applied));
            }
        }
        Ok(answers.into_iter().map(|a| a.expect("every message answered")).collect())
    }
}

/// The status change a message carries, or its rejection.
fn change_of(message: &Received) -> Result<Change, Disposition> {
    let change = match messaging::decode_event(message)? {
        Event::OrderShipped(e) => Change {
            order_id: e.order_id,
            event_id: e.event_id,
            to: OrderStatus::Shipped,
            at: e.payload.shipped_at,
            carrier: Some(e.payload.carrier),
            tracking_number: Some(e.payload.tracking_number),
            traceparent: message.trace.traceparent.clone(),
        },
        Event::OrderDelivered(e) => Change {
            order_id: e.order_id,
            event_id: e.event_id,
            to: OrderStatus::Delivered,
            at: e.payload.delivered_at,
            carrier: None,
            tracking_number: None,
            traceparent: message.trace.traceparent.clone(),
        },
        other => {
            return Err(Disposition::reject(
                "unexpected_type",
                format!("unexpected {} event on the status queue", other.event_type()),
            ));
        }
    };
    Ok(change)
}

/// The consumer's answer for what applying a change did.
fn answer(change: &Change, applied: Applied) -> Disposition {
    match applied {
        Applied::Moved(status) => {
            tracing::debug!(order_id = %change.order_id, event_id = %change.event_id, status = status.as_str(), "order status changed");
            Disposition::Ack
        }
        Applied::Unchanged => {
            tracing::debug!(order_id = %change.order_id, event_id = %change.event_id, "duplicate or stale status event skipped");
            Disposition::Duplicate
        }
        Applied::Raced => Disposition::Retry { after: messaging::RETRY_AFTER },
        Applied::UnknownOrder => Disposition::reject("unknown_order", format!("no order {}", change.order_id)),
        Applied::Impossible { from, to } => Disposition::reject(
            "impossible_transition",
            format!("order {} cannot go from {} to {}", change.order_id, from.as_str(), to.as_str()),
        ),
    }
}

/// What an event does to an order at `from` (`None`: no such order), before
/// its inbox record is looked at.
fn decide(from: Option<OrderStatus>, to: OrderStatus) -> Applied {
    match from {
        None => Applied::UnknownOrder,
        Some(from) if from >= to => Applied::Unchanged,
        Some(from) if from.next() != Some(to) => Applied::Impossible { from, to },
        Some(_) => Applied::Moved(to),
    }
}

/// Applies status changes of distinct orders with one statement
/// ([`move_orders`]): each order moves only from the status right before the
/// change's (a compare-and-set, so an event applied before, or one racing
/// another consumer, changes nothing), gains its history row, its event is
/// recorded in the inbox and the live streams are notified at commit. Every
/// change not applied is then decided ([`decide`]) on the order's status as
/// the statement found it. Changes for the same order twice are applied one by
/// one.
#[tracing::instrument(name = "db.apply_status", skip_all, fields(db.system = "postgresql", changes = changes.len()))]
async fn apply(db: &HotPool, changes: &[Change]) -> Result<Vec<Applied>, sqlx::Error> {
    let ids: Vec<Uuid> = changes.iter().map(|c| c.order_id).collect();
    if ids.iter().collect::<HashSet<_>>().len() < ids.len() {
        let mut applied = Vec::with_capacity(changes.len());
        for change in changes {
            applied.extend(Box::pin(apply(db, std::slice::from_ref(change))).await?);
        }
        return Ok(applied);
    }
    let found: HashMap<Uuid, Found> = db.run_committed(async |conn| move_orders(conn, changes).await).await?;
    let applied: Vec<Applied> = changes
        .iter()
        .map(|c| match found.get(&c.order_id) {
            Some(f) if f.moved => Applied::Moved(c.to),
            Some(f) => match decide(OrderStatus::parse(&f.status), c.to) {
                // The order was a step behind when the statement began but
                // had moved by the time its row was locked (a concurrent
                // consumer): the change is looked at again on redelivery.
                Applied::Moved(_) => Applied::Raced,
                other => other,
            },
            None => Applied::UnknownOrder,
        })
        .collect();
    for (change, applied) in changes.iter().zip(&applied) {
        if !matches!(applied, Applied::Moved(_)) {
            continue;
        }
        metrics::STATUS_CHANGES.counter_with(&[change.to.as_str()]).increment(1);
        if let (OrderStatus::Delivered, Some(found)) = (change.to, found.get(&change.order_id)) {
            let took = (change.at - found.created_at).to_std().unwrap_or_default();
            metrics::DELIVERY_DURATION.as_histogram().record(took.as_secs_f64());
        }
    }
    Ok(applied)
}

/// An order a batch named, as [`move_orders`] found it.
struct Found {
    /// Its status before the statement.
    status: String,
    created_at: DateTime<Utc>,
    /// Whether the statement moved it.
    moved: bool,
}

/// One statement: moves each order of `changes` that is at the status right
/// before its change's to that status (updated row, history row, the event
/// in the inbox, see [`messaging::inbox`], and `pg_notify` with the message's
/// trace context so the live streams' push spans continue the order's trace).
/// Returns every named order that exists, with its status before the
/// statement and whether it moved.
async fn move_orders(conn: &mut PgConnection, changes: &[Change]) -> Result<HashMap<Uuid, Found>, sqlx::Error> {
    // In id order, so two batches lock shared orders in the same order as far as
    // the plan follows its input (FIFO groups keep an order to one batch at a
    // time; a deadlock would be a transient error: the batch is held and retried).
    let mut changes: Vec<&Change> = changes.iter().collect();
    changes.sort_by_key(|c| c.order_id);
    // A status with no step before it (PENDING_SHIPMENT) matches no order.
    let from = |c: &Change| c.to.previous().map_or("", OrderStatus::as_str).to_owned();
    let rows = sqlx::query!(
        r#"WITH i AS (
             SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[], $7::timestamptz[], $8::text[])
               AS i (event_id, order_id, from_status, status, carrier, tracking_number, at, payload)
           ), moved AS (
             UPDATE orders o SET status = i.status, carrier = COALESCE(i.carrier, o.carrier),
                    tracking_number = COALESCE(i.tracking_number, o.tracking_number), updated_at = i.at
               FROM i WHERE o.id = i.order_id AND o.status = i.from_status
                AND o.id = ANY($2) -- ANY: an index scan, not a join over every order
             RETURNING o.id, i.event_id, pg_notify($9, i.payload)
           ), inbox AS (
             INSERT INTO processed_messages (event_id) SELECT event_id FROM moved ON CONFLICT DO NOTHING
           ), history AS (
             INSERT INTO order_status_history (order_id, seq, status, at)
             SELECT i.order_id, COALESCE((SELECT max(seq) FROM order_status_history h WHERE h.order_id = i.order_id), 0) + 1,
                    i.status, i.at
               FROM i WHERE i.order_id IN (SELECT id FROM moved)
           )
           SELECT o.id, o.status, o.created_at, o.id IN (SELECT id FROM moved) AS "moved!"
             FROM orders o WHERE o.id = ANY($2)"#,
        &changes.iter().map(|c| c.event_id).collect::<Vec<_>>(),
        &changes.iter().map(|c| c.order_id).collect::<Vec<_>>(),
        &changes.iter().map(|c| from(c)).collect::<Vec<_>>(),
        &changes.iter().map(|c| c.to.as_str().to_owned()).collect::<Vec<_>>(),
        changes.iter().map(|c| c.carrier.clone()).collect::<Vec<_>>() as _,
        changes.iter().map(|c| c.tracking_number.clone()).collect::<Vec<_>>() as _,
        &changes.iter().map(|c| c.at).collect::<Vec<_>>(),
        &changes.iter().map(|c| notify_payload(c.order_id, c.traceparent.as_deref())).collect::<Vec<_>>(),
        NOTIFY_CHANNEL,
    )
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(|r| (r.id, Found { status: r.status, created_at: r.created_at, moved: r.moved })).collect())
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

    #[test]
    fn an_event_moves_an_order_one_step_and_only_forward() {
        use OrderStatus::*;
        assert_eq!(decide(None, Shipped), Applied::UnknownOrder);
        assert_eq!(decide(Some(PendingShipment), Shipped), Applied::Moved(Shipped));
        assert_eq!(decide(Some(Shipped), Delivered), Applied::Moved(Delivered));
        // Already there or beyond: a stale or repeated event changes nothing.
        assert_eq!(decide(Some(Shipped), Shipped), Applied::Unchanged);
        assert_eq!(decide(Some(Delivered), Shipped), Applied::Unchanged);
        // The compare-and-set of `move_orders` moves an order from the step before.
        assert_eq!(Shipped.previous(), Some(PendingShipment));
        assert_eq!(Delivered.previous(), Some(Shipped));
        assert_eq!(PendingShipment.previous(), None);
        // Delivered before shipped would skip a step.
        assert_eq!(
            decide(Some(PendingShipment), Delivered),
            Applied::Impossible { from: PendingShipment, to: Delivered }
        );
    }
}
