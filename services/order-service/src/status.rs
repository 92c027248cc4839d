//! Applying delivery status events (`order-shipped`, `order-delivered` from
//! `delivery-status-queue.fifo`) to orders, with the shared consumer loop.
//!
//! The events of a received batch (distinct orders) are applied in one
//! transaction with their inbox records (four round trips: BEGIN, the lock,
//! one statement for the inbox and the moves, COMMIT): each order moves one step forward,
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
use sqlx::{Connection, PgConnection};
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

/// Applies status changes of distinct orders in one transaction: the orders
/// are locked and each change decided ([`decide`]); then one statement records
/// the events of the moves and of the stale ones in the inbox and, for each
/// move whose event was not seen before, updates its order, appends its
/// history row and notifies the live streams at commit. Unknown orders and
/// impossible transitions record nothing. Changes for the same order twice
/// are applied one by one.
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
    let (applied, current) = db
        .run(async |conn| {
            let mut tx = conn.begin().await?;
            // In id order, so two transactions never wait on each other's locks.
            let current: HashMap<Uuid, (String, DateTime<Utc>)> = sqlx::query!(
                "SELECT id, status, created_at FROM orders WHERE id = ANY($1) ORDER BY id FOR UPDATE",
                &ids
            )
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .map(|row| (row.id, (row.status, row.created_at)))
            .collect();
            let mut applied: Vec<Applied> = changes
                .iter()
                .map(|c| {
                    let from = current
                        .get(&c.order_id)
                        .map(|(s, _)| OrderStatus::parse(s).unwrap_or(OrderStatus::PendingShipment));
                    decide(from, c.to)
                })
                .collect();
            let record: Vec<Uuid> = changes
                .iter()
                .zip(&applied)
                .filter(|(_, a)| matches!(a, Applied::Moved(_) | Applied::Unchanged))
                .map(|(c, _)| c.event_id)
                .collect();
            if !record.is_empty() {
                let moves: Vec<&Change> = changes
                    .iter()
                    .zip(&applied)
                    .filter(|(_, a)| matches!(a, Applied::Moved(_)))
                    .map(|(c, _)| c)
                    .collect();
                let fresh: HashSet<Uuid> = record_and_move(&mut tx, &record, &moves).await?;
                for (c, a) in changes.iter().zip(applied.iter_mut()) {
                    if matches!(a, Applied::Moved(_)) && !fresh.contains(&c.event_id) {
                        *a = Applied::Unchanged; // seen before
                    }
                }
            }
            tx.commit().await?;
            Ok((applied, current))
        })
        .await?;
    for (change, applied) in changes.iter().zip(&applied) {
        if !matches!(applied, Applied::Moved(_)) {
            continue;
        }
        metrics::STATUS_CHANGES.counter_with(&[change.to.as_str()]).increment(1);
        if let (OrderStatus::Delivered, Some((_, created_at))) = (change.to, current.get(&change.order_id)) {
            let took = (change.at - *created_at).to_std().unwrap_or_default();
            metrics::DELIVERY_DURATION.as_histogram().record(took.as_secs_f64());
        }
    }
    Ok(applied)
}

/// One statement: records `record` in the inbox (see [`messaging::inbox`]) and
/// applies each of `moves` whose event was not recorded before: the order is
/// updated, its history row appended, and the live streams notified at commit
/// with the message's trace context (so their push spans continue the order's
/// trace). Returns the events recorded now.
async fn record_and_move(
    conn: &mut PgConnection,
    record: &[Uuid],
    moves: &[&Change],
) -> Result<HashSet<Uuid>, sqlx::Error> {
    let fresh = sqlx::query_scalar!(
        r#"WITH fresh AS (
             INSERT INTO processed_messages (event_id) SELECT unnest($1::uuid[])
             ON CONFLICT DO NOTHING RETURNING event_id
           ), todo AS (
             SELECT * FROM unnest($2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::text[], $7::timestamptz[], $8::text[])
               AS i (event_id, order_id, status, carrier, tracking_number, at, payload)
              WHERE i.event_id IN (SELECT event_id FROM fresh)
           ), moved AS (
             UPDATE orders o SET status = i.status, carrier = COALESCE(i.carrier, o.carrier),
                    tracking_number = COALESCE(i.tracking_number, o.tracking_number), updated_at = i.at
               FROM todo i WHERE o.id = i.order_id AND o.id = ANY($3) -- ANY: an index scan, not a join over every order
             RETURNING pg_notify($9, i.payload)
           ), history AS (
             INSERT INTO order_status_history (order_id, seq, status, at)
             SELECT i.order_id, COALESCE((SELECT max(seq) FROM order_status_history h WHERE h.order_id = i.order_id), 0) + 1,
                    i.status, i.at
               FROM todo i
           )
           SELECT event_id AS "event_id!" FROM fresh"#,
        record,
        &moves.iter().map(|c| c.event_id).collect::<Vec<_>>(),
        &moves.iter().map(|c| c.order_id).collect::<Vec<_>>(),
        &moves.iter().map(|c| c.to.as_str().to_owned()).collect::<Vec<_>>(),
        moves.iter().map(|c| c.carrier.clone()).collect::<Vec<_>>() as _,
        moves.iter().map(|c| c.tracking_number.clone()).collect::<Vec<_>>() as _,
        &moves.iter().map(|c| c.at).collect::<Vec<_>>(),
        &moves.iter().map(|c| notify_payload(c.order_id, c.traceparent.as_deref())).collect::<Vec<_>>(),
        NOTIFY_CHANNEL,
    )
    .fetch_all(conn)
    .await?;
    Ok(fresh.into_iter().collect())
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
        // Delivered before shipped would skip a step.
        assert_eq!(
            decide(Some(PendingShipment), Delivered),
            Applied::Impossible { from: PendingShipment, to: Delivered }
        );
    }
}
