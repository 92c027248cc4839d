//! Shipments: creating one from an `order-created` event (with the inbox
//! check), advancing due shipments (with their outbox events), and reading one
//! for the operator API. Every change to a shipment and the event announcing it
//! are written in one transaction.

use std::time::Duration;

use chrono::{DateTime, Utc};
use database::HotPool;
use envelope::{Envelope, OrderCreated, OrderDelivered, OrderShipped};
use outbox::OutboxMessage;
use serde::Serialize;
use sqlx::{Connection, PgPool, types::Json};
use uuid::Uuid;

use crate::{
    domain::{ShipmentStatus, carrier_for, tracking_number_for},
    metrics,
};

/// What applying an `order-created` event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Created(Uuid),
    /// The event (or another event for the same order) was applied before.
    Duplicate,
}

/// A shipment to create from an `order-created` event.
#[derive(Debug, Clone)]
pub struct NewShipment<'a> {
    pub event: &'a Envelope<OrderCreated>,
    /// When it ships.
    pub ship_at: DateTime<Utc>,
    /// The trace the scheduler's later steps continue (the message's).
    pub trace: telemetry::propagation::TraceContext,
}

/// Records each event in the inbox and creates its order's shipment in
/// `PROCESSING`, due to ship at `ship_at`, with its first history row: one
/// statement for the whole batch, committed before it returns
/// ([`HotPool::run_committed`]). An event seen before, or one for an order
/// that already has a shipment, is a [`Applied::Duplicate`] (its inbox record
/// is kept). Answers each input, in order.
#[tracing::instrument(name = "db.create_shipments", skip_all, fields(db.system = "postgresql", shipments = new.len()))]
pub async fn create_shipments(db: &HotPool, new: &[NewShipment<'_>]) -> Result<Vec<Applied>, sqlx::Error> {
    let ids: Vec<Uuid> = new.iter().map(|_| Uuid::now_v7()).collect();
    let column = |f: fn(&NewShipment<'_>) -> Uuid| new.iter().map(f).collect::<Vec<Uuid>>();
    // The inbox records every event; only the fresh ones create a shipment.
    let statement = sqlx::query_scalar!(
        r#"WITH fresh AS (
             INSERT INTO processed_messages (event_id) SELECT unnest($1::uuid[])
             ON CONFLICT DO NOTHING RETURNING event_id
           ), input AS (
             SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::jsonb[], $6::timestamptz[],
                                  $7::text[], $8::text[])
               AS i (event_id, id, order_id, customer_id, shipping_address, next_step_at, traceparent, tracestate)
              WHERE i.event_id IN (SELECT event_id FROM fresh)
           ), created AS (
             INSERT INTO shipments (id, order_id, customer_id, status, shipping_address, created_at, updated_at,
                                    next_step_at, traceparent, tracestate)
             SELECT i.id, i.order_id, i.customer_id, 'PROCESSING', i.shipping_address, $9, $9, i.next_step_at,
                    i.traceparent, i.tracestate
               FROM input i
             ON CONFLICT (order_id) DO NOTHING RETURNING id
           ), history AS (
             INSERT INTO shipment_status_history (shipment_id, seq, status, at) SELECT id, 1, 'PROCESSING', $9 FROM created
           )
           SELECT id AS "id!" FROM created"#,
        &column(|n| n.event.event_id),
        &ids,
        &column(|n| n.event.order_id),
        &column(|n| n.event.payload.customer_id),
        new.iter().map(|n| Json(&n.event.payload.shipping_address)).collect::<Vec<_>>() as _,
        &new.iter().map(|n| n.ship_at).collect::<Vec<_>>(),
        new.iter().map(|n| n.trace.traceparent.clone()).collect::<Vec<_>>() as _,
        new.iter().map(|n| n.trace.tracestate.clone()).collect::<Vec<_>>() as _,
        Utc::now(),
    );
    let created: Vec<Uuid> = db.run_committed(async |conn| statement.fetch_all(conn).await).await?;
    Ok(ids
        .into_iter()
        .map(|id| if created.contains(&id) { Applied::Created(id) } else { Applied::Duplicate })
        .collect())
}

/// How long until the next step, and where status events go.
#[derive(Debug, Clone)]
pub struct StepPlan {
    pub deliver_after: Duration,
    pub jitter: Duration,
    pub status_queue: String,
    /// When a shipment whose step failed is tried again.
    pub retry_after: Duration,
}

struct Due {
    id: Uuid,
    order_id: Uuid,
    status: String,
    next_step_at: DateTime<Utc>,
    traceparent: Option<String>,
    tracestate: Option<String>,
}

/// When a step `delay` after `now` falls due, plus a random extra of up to `jitter`
/// (so shipments created together do not all move at once).
pub fn due_after(now: DateTime<Utc>, delay: Duration, jitter: Duration) -> DateTime<Utc> {
    let extra = if jitter.is_zero() { 0 } else { rand::random_range(0..=jitter.as_millis() as i64) };
    now + chrono::Duration::from_std(delay).unwrap_or_default() + chrono::Duration::milliseconds(extra)
}

/// When the earliest pending shipment step falls due (`None`: nothing pending),
/// so the scheduler sleeps no longer than it must.
pub async fn next_due(db: &HotPool) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    let query = sqlx::query_scalar!("SELECT min(next_step_at) FROM shipments WHERE next_step_at IS NOT NULL");
    db.run(async |conn| query.fetch_one(conn).await).await
}

/// One shipment's step, decided without I/O: its next status (`None`: it is
/// done, only a stray timer is cleared), what to write, and the event.
struct Step {
    id: Uuid,
    order_id: Uuid,
    status: Option<ShipmentStatus>,
    carrier: Option<String>,
    tracking_number: Option<String>,
    next_step_at: Option<DateTime<Utc>>,
    event: Option<OutboxMessage>,
    /// How late the step runs.
    lag: Duration,
    /// The step's span in the order's trace (the shipment row keeps its context).
    span: tracing::Span,
}

/// Decides a claimed shipment's step at `now`.
fn plan_step(shipment: &Due, plan: &StepPlan, now: DateTime<Utc>) -> Step {
    let next = ShipmentStatus::parse(&shipment.status).and_then(ShipmentStatus::next);
    let span = tracing::info_span!(
        "shipment.advance",
        otel.name = format!("shipment {}", next.map(ShipmentStatus::as_str).unwrap_or("done")),
        order_id = %shipment.order_id,
        shipment_id = %shipment.id,
        from = %shipment.status,
    );
    telemetry::propagation::set_parent(&span, shipment.traceparent.as_deref(), shipment.tracestate.as_deref());
    let trace = telemetry::propagation::context_of(&span);
    let message = |event_id: Uuid, event_type: String, body: String| OutboxMessage {
        event_id,
        destination: plan.status_queue.clone(),
        group_id: shipment.order_id.to_string(),
        event_type,
        body,
        traceparent: trace.traceparent.clone(),
        tracestate: trace.tracestate.clone(),
    };
    let mut step = Step {
        id: shipment.id,
        order_id: shipment.order_id,
        status: next,
        carrier: None,
        tracking_number: None,
        next_step_at: None,
        event: None,
        lag: (now - shipment.next_step_at).to_std().unwrap_or_default(),
        span: span.clone(),
    };
    match next {
        Some(ShipmentStatus::Shipped) => {
            let (carrier, tracking) = (carrier_for(shipment.id), tracking_number_for(shipment.id));
            let event = Envelope::new(
                shipment.order_id,
                now,
                OrderShipped {
                    shipment_id: shipment.id,
                    carrier: carrier.to_owned(),
                    tracking_number: tracking.clone(),
                    shipped_at: now,
                },
            );
            step.event = Some(message(event.event_id, event.event_type.clone(), event.to_json()));
            step.carrier = Some(carrier.to_owned());
            step.tracking_number = Some(tracking);
            step.next_step_at = Some(due_after(now, plan.deliver_after, plan.jitter));
        }
        Some(_) => {
            let event =
                Envelope::new(shipment.order_id, now, OrderDelivered { shipment_id: shipment.id, delivered_at: now });
            step.event = Some(message(event.event_id, event.event_type.clone(), event.to_json()));
        }
        None => {}
    }
    step
}

/// Claims up to `batch` due shipments (`FOR UPDATE SKIP LOCKED`, so replicas
/// share the work) and moves each one step on, writing its history row and its
/// status event to the outbox in the same transaction: the whole batch in three
/// statements. If that fails, each shipment's step runs in its own savepoint:
/// one that fails (a bad row, a trigger, a constraint) is rolled back alone,
/// counted in `shipment_step_failures_total`, logged, and tried again after
/// `plan.retry_after`, while the others move on. Returns how many moved.
#[tracing::instrument(name = "shipments.advance", level = "debug", skip_all, fields(db.system = "postgresql", advanced, failed))]
pub async fn advance_due(db: &HotPool, batch: u32, plan: &StepPlan) -> Result<usize, sqlx::Error> {
    // `moved`: indexes into `steps`.
    let (steps, moved, failed) = db
        .run(async |conn| {
            let mut tx = conn.begin().await?;
            let due = sqlx::query_as!(
                Due,
                r#"SELECT id, order_id, status, next_step_at AS "next_step_at!", traceparent, tracestate FROM shipments
                    WHERE next_step_at IS NOT NULL AND next_step_at <= now()
                    ORDER BY next_step_at LIMIT $1 FOR UPDATE SKIP LOCKED"#,
                i64::from(batch),
            )
            .fetch_all(&mut *tx)
            .await?;
            let now = Utc::now();
            let steps: Vec<Step> = due.iter().map(|shipment| plan_step(shipment, plan, now)).collect();
            let (mut moved, mut failed) = (Vec::new(), 0);
            let mut together = sqlx::Connection::begin(&mut *tx).await?;
            match write_steps(&mut together, &steps, now).await {
                Ok(()) => {
                    together.commit().await?;
                    moved.extend(0..steps.len());
                }
                Err(e) => {
                    // A broken connection fails the rollback too, and with it the whole step.
                    together.rollback().await?;
                    tracing::debug!(error = %e, shipments = steps.len(), "the batch of steps failed; one by one instead");
                    for (i, step) in steps.iter().enumerate() {
                        let mut savepoint = sqlx::Connection::begin(&mut *tx).await?;
                        match write_steps(&mut savepoint, std::slice::from_ref(step), now).await {
                            Ok(()) => {
                                savepoint.commit().await?;
                                moved.push(i);
                            }
                            Err(e) => {
                                savepoint.rollback().await?;
                                failed += 1;
                                metrics::STEP_FAILURES.as_counter().increment(1);
                                tracing::error!(parent: &step.span, order_id = %step.order_id, shipment_id = %step.id, error = %e,
                                    retry_in_s = plan.retry_after.as_secs(), "shipment step failed; the others move on, this one is retried later");
                                sqlx::query!(
                                    "UPDATE shipments SET next_step_at = now() + make_interval(secs => $2) WHERE id = $1",
                                    step.id,
                                    plan.retry_after.as_secs_f64(),
                                )
                                .execute(&mut *tx)
                                .await?;
                            }
                        }
                    }
                }
            }
            // Crash tests: the steps are written but not committed.
            fail::fail_point!("scheduler-before-commit", !due.is_empty(), |_| std::process::abort());
            tx.commit().await?;
            Ok((steps, moved, failed))
        })
        .await?;
    for step in moved.iter().map(|&i| &steps[i]) {
        metrics::STEP_LAG.as_histogram().record(step.lag.as_secs_f64());
        if let Some(status) = step.status {
            metrics::ADVANCED.counter_with(&[status.as_str()]).increment(1);
            tracing::debug!(parent: &step.span, order_id = %step.order_id, shipment_id = %step.id, status = status.as_str(), "shipment advanced");
        }
    }
    tracing::Span::current().record("advanced", moved.len()).record("failed", failed);
    Ok(moved.len())
}

/// Writes planned steps inside the caller's transaction: the shipments'
/// new status and timers, their history rows and their events, one statement
/// each for all of them.
async fn write_steps(tx: &mut sqlx::PgConnection, steps: &[Step], now: DateTime<Utc>) -> Result<(), sqlx::Error> {
    if steps.is_empty() {
        return Ok(());
    }
    sqlx::query!(
        "WITH input AS (
           SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::timestamptz[])
             AS i (id, status, carrier, tracking_number, next_step_at)
         ), moved AS (
           UPDATE shipments s
              SET status = COALESCE(i.status, s.status),
                  carrier = COALESCE(i.carrier, s.carrier),
                  tracking_number = COALESCE(i.tracking_number, s.tracking_number),
                  shipped_at = CASE WHEN i.status = 'SHIPPED' THEN $6 ELSE s.shipped_at END,
                  delivered_at = CASE WHEN i.status = 'DELIVERED' THEN $6 ELSE s.delivered_at END,
                  updated_at = CASE WHEN i.status IS NULL THEN s.updated_at ELSE $6 END,
                  next_step_at = i.next_step_at
             FROM input i WHERE s.id = i.id AND s.id = ANY($1) -- ANY: an index scan, not a join over every shipment
         )
         INSERT INTO shipment_status_history (shipment_id, seq, status, at)
         SELECT i.id, COALESCE((SELECT max(seq) FROM shipment_status_history h WHERE h.shipment_id = i.id), 0) + 1,
                i.status, $6
           FROM input i WHERE i.status IS NOT NULL",
        &steps.iter().map(|s| s.id).collect::<Vec<_>>(),
        steps.iter().map(|s| s.status.map(|st| st.as_str().to_owned())).collect::<Vec<_>>() as _,
        steps.iter().map(|s| s.carrier.clone()).collect::<Vec<_>>() as _,
        steps.iter().map(|s| s.tracking_number.clone()).collect::<Vec<_>>() as _,
        steps.iter().map(|s| s.next_step_at).collect::<Vec<_>>() as _,
        now,
    )
    .execute(&mut *tx)
    .await?;
    let events: Vec<OutboxMessage> = steps.iter().filter_map(|s| s.event.clone()).collect();
    outbox::enqueue_all(tx, &events).await
}

/// A shipment with its history, for `GET /shipments/{order_id}`.
#[derive(Debug, Serialize)]
pub struct ShipmentView {
    pub id: Uuid,
    pub order_id: Uuid,
    pub customer_id: Uuid,
    pub status: String,
    pub carrier: Option<String>,
    pub tracking_number: Option<String>,
    pub created_at: DateTime<Utc>,
    pub shipped_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
    pub next_step_at: Option<DateTime<Utc>>,
    pub history: Json<serde_json::Value>,
}

#[tracing::instrument(name = "db.get_shipment", skip(pool), fields(db.system = "postgresql"))]
pub async fn shipment_by_order(pool: &PgPool, order_id: Uuid) -> Result<Option<ShipmentView>, sqlx::Error> {
    sqlx::query_as!(
        ShipmentView,
        r#"SELECT s.id, s.order_id, s.customer_id, s.status, s.carrier, s.tracking_number, s.created_at, s.shipped_at,
                  s.delivered_at, s.updated_at, s.next_step_at,
                  COALESCE((SELECT json_agg(json_build_object('seq', h.seq, 'status', h.status, 'at', h.at) ORDER BY h.seq)
                              FROM shipment_status_history h WHERE h.shipment_id = s.id), '[]') AS "history!: Json<serde_json::Value>"
             FROM shipments s WHERE s.order_id = $1"#,
        order_id,
    )
    .fetch_optional(pool)
    .await
}
