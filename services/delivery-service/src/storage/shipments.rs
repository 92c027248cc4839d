//! Shipments: creating one from an `order-created` event (with the inbox
//! check), advancing due shipments (with their outbox events), and reading one
//! for the operator API. Every change to a shipment and the event announcing it
//! are written in one transaction.

use std::time::Duration;

use chrono::{DateTime, Utc};
use envelope::{Envelope, OrderCreated, OrderDelivered, OrderShipped};
use outbox::OutboxMessage;
use serde::Serialize;
use sqlx::{PgPool, types::Json};
use tracing::Instrument;
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

/// Records the event in the inbox and creates the order's shipment in
/// `PROCESSING`, due to ship at `ship_at`; one transaction.
#[tracing::instrument(name = "db.create_shipment", skip_all, fields(db.system = "postgresql", order_id = %event.order_id, event_id = %event.event_id))]
pub async fn create_shipment(
    pool: &PgPool,
    event: &Envelope<OrderCreated>,
    ship_at: DateTime<Utc>,
) -> Result<Applied, sqlx::Error> {
    let mut tx = pool.begin().await?;
    if !messaging::inbox::record_once(&mut tx, event.event_id).await? {
        tx.commit().await?;
        return Ok(Applied::Duplicate);
    }
    let id = Uuid::now_v7();
    let now = Utc::now();
    // The scheduler's later steps continue this (the message's) trace.
    let trace = telemetry::propagation::current();
    let created = sqlx::query_scalar!(
        "INSERT INTO shipments (id, order_id, customer_id, status, shipping_address, created_at, updated_at, next_step_at,
                                traceparent, tracestate)
         VALUES ($1, $2, $3, 'PROCESSING', $4, $5, $5, $6, $7, $8)
         ON CONFLICT (order_id) DO NOTHING RETURNING id",
        id,
        event.order_id,
        event.payload.customer_id,
        Json(&event.payload.shipping_address) as _,
        now,
        ship_at,
        trace.traceparent,
        trace.tracestate,
    )
    .fetch_optional(&mut *tx)
    .await?;
    let Some(id) = created else {
        tx.commit().await?;
        return Ok(Applied::Duplicate);
    };
    sqlx::query!(
        "INSERT INTO shipment_status_history (shipment_id, seq, status, at) VALUES ($1, 1, 'PROCESSING', $2)",
        id,
        now,
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Applied::Created(id))
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
pub async fn next_due(pool: &PgPool) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    sqlx::query_scalar!("SELECT min(next_step_at) FROM shipments WHERE next_step_at IS NOT NULL").fetch_one(pool).await
}

/// Claims up to `batch` due shipments (`FOR UPDATE SKIP LOCKED`, so replicas
/// share the work) and moves each one step on, writing its history row and its
/// status event to the outbox in the same transaction. Each shipment's step runs
/// in its own savepoint: one that fails (a bad row, a trigger, a constraint) is
/// rolled back alone, counted in `shipment_step_failures_total`, logged, and
/// tried again after `plan.retry_after`, while the others move on. Returns how
/// many moved.
#[tracing::instrument(name = "shipments.advance", level = "debug", skip_all, fields(db.system = "postgresql", advanced, failed))]
pub async fn advance_due(pool: &PgPool, batch: u32, plan: &StepPlan) -> Result<usize, sqlx::Error> {
    let mut tx = pool.begin().await?;
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
    let (mut moved, mut failed) = (0, 0);
    for shipment in &due {
        // Each step is a span in the order's trace (the shipment row keeps its context).
        let span = tracing::info_span!(
            "shipment.advance",
            otel.name = format!("shipment {}", ShipmentStatus::parse(&shipment.status).and_then(ShipmentStatus::next).map(ShipmentStatus::as_str).unwrap_or("done")),
            order_id = %shipment.order_id,
            shipment_id = %shipment.id,
            from = %shipment.status,
        );
        telemetry::propagation::set_parent(&span, shipment.traceparent.as_deref(), shipment.tracestate.as_deref());
        let trace = telemetry::propagation::context_of(&span);
        let mut savepoint = sqlx::Connection::begin(&mut *tx).await?;
        match advance_one(&mut savepoint, shipment, plan, now, trace).instrument(span).await {
            Ok(()) => {
                savepoint.commit().await?;
                moved += 1;
            }
            Err(e) => {
                // A broken connection fails the rollback too, and with it the whole step.
                savepoint.rollback().await?;
                failed += 1;
                metrics::STEP_FAILURES.as_counter().increment(1);
                tracing::error!(order_id = %shipment.order_id, shipment_id = %shipment.id, error = %e,
                    retry_in_s = plan.retry_after.as_secs(), "shipment step failed; the others move on, this one is retried later");
                sqlx::query!(
                    "UPDATE shipments SET next_step_at = now() + make_interval(secs => $2) WHERE id = $1",
                    shipment.id,
                    plan.retry_after.as_secs_f64(),
                )
                .execute(&mut *tx)
                .await?;
            }
        }
    }
    // Crash tests: the steps are written but not committed.
    fail::fail_point!("scheduler-before-commit", !due.is_empty(), |_| std::process::abort());
    tx.commit().await?;
    tracing::Span::current().record("advanced", moved).record("failed", failed);
    Ok(moved)
}

/// Moves one claimed shipment a step on, inside the caller's transaction.
async fn advance_one(
    tx: &mut sqlx::PgConnection,
    shipment: &Due,
    plan: &StepPlan,
    now: DateTime<Utc>,
    trace: telemetry::propagation::TraceContext,
) -> Result<(), sqlx::Error> {
    let lag = (now - shipment.next_step_at).to_std().unwrap_or_default();
    metrics::STEP_LAG.as_histogram().record(lag.as_secs_f64());
    let Some(next) = ShipmentStatus::parse(&shipment.status).and_then(ShipmentStatus::next) else {
        // Nothing further: clear a stray timer.
        sqlx::query!("UPDATE shipments SET next_step_at = NULL WHERE id = $1", shipment.id).execute(&mut *tx).await?;
        return Ok(());
    };
    let (body, event_type, event_id) = match next {
        ShipmentStatus::Shipped => {
            let (carrier, tracking) = (carrier_for(shipment.id), tracking_number_for(shipment.id));
            sqlx::query!(
                "UPDATE shipments SET status = 'SHIPPED', carrier = $2, tracking_number = $3, shipped_at = $4,
                   updated_at = $4, next_step_at = $5 WHERE id = $1",
                shipment.id,
                carrier,
                tracking,
                now,
                due_after(now, plan.deliver_after, plan.jitter),
            )
            .execute(&mut *tx)
            .await?;
            let event = Envelope::new(
                shipment.order_id,
                now,
                OrderShipped {
                    shipment_id: shipment.id,
                    carrier: carrier.to_owned(),
                    tracking_number: tracking,
                    shipped_at: now,
                },
            );
            (event.to_json(), event.event_type, event.event_id)
        }
        _ => {
            sqlx::query!(
                "UPDATE shipments SET status = 'DELIVERED', delivered_at = $2, updated_at = $2, next_step_at = NULL WHERE id = $1",
                shipment.id,
                now,
            )
            .execute(&mut *tx)
            .await?;
            let event =
                Envelope::new(shipment.order_id, now, OrderDelivered { shipment_id: shipment.id, delivered_at: now });
            (event.to_json(), event.event_type, event.event_id)
        }
    };
    sqlx::query!(
        "INSERT INTO shipment_status_history (shipment_id, seq, status, at)
         SELECT $1, coalesce(max(seq), 0) + 1, $2, $3 FROM shipment_status_history WHERE shipment_id = $1",
        shipment.id,
        next.as_str(),
        now,
    )
    .execute(&mut *tx)
    .await?;
    outbox::enqueue(
        tx,
        &OutboxMessage {
            event_id,
            destination: plan.status_queue.clone(),
            group_id: shipment.order_id.to_string(),
            event_type,
            body,
            traceparent: trace.traceparent.clone(),
            tracestate: trace.tracestate.clone(),
        },
    )
    .await?;
    metrics::ADVANCED.counter_with(&[next.as_str()]).increment(1);
    tracing::debug!(order_id = %shipment.order_id, shipment_id = %shipment.id, status = next.as_str(), "shipment advanced");
    Ok(())
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
