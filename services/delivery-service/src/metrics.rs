//! Every metric the delivery-service exposes, declared in one place: its own
//! (shipments) and those the shared crates record for it (HTTP, pool, consumer,
//! outbox). Also the background refresh of the gauges that need a query, so a
//! scrape never waits on the database or SQS.

use std::time::Duration;

use messaging::Publisher;
use shutdown::CancellationToken;
use sqlx::PgPool;
use telemetry::Metric;

use crate::domain::ShipmentStatus;

pub const SHIPMENTS_BY_STATUS: Metric =
    Metric::gauge("shipments_by_status", "Shipments in each status, refreshed in the background", &["status"]);
pub const ADVANCED: Metric =
    Metric::counter("shipments_advanced_total", "Scheduler steps, by the status a shipment moved to", &["to"]);
pub const STEP_LAG: Metric =
    Metric::histogram("shipment_step_lag_seconds", "How late due shipments were moved on", &[]);

pub const STEP_FAILURES: Metric = Metric::counter(
    "shipment_step_failures_total",
    "Scheduler steps that failed for one shipment (rolled back alone, retried later)",
    &[],
);

const OWN: &[Metric] = &[SHIPMENTS_BY_STATUS, ADVANCED, STEP_LAG, STEP_FAILURES];

/// Every metric this service exposes.
pub fn all() -> Vec<Metric> {
    [OWN, web::metrics::ALL, database::metrics::ALL, messaging::metrics::ALL, outbox::metrics::ALL].concat()
}

/// Registers help texts, and zero series for every status and step.
pub fn declare() {
    telemetry::metric::declare(&all());
    STEP_FAILURES.as_counter().increment(0);
    SHIPMENTS_BY_STATUS.set_counts(&ShipmentStatus::ALL.map(ShipmentStatus::as_str), &[]);
    for status in ShipmentStatus::ALL {
        // A step moves a shipment *to* SHIPPED or DELIVERED.
        if status != ShipmentStatus::Processing {
            ADVANCED.counter_with(&[status.as_str()]).increment(0);
        }
    }
}

/// Gauges that need a query: pool, outbox backlog, shipments by status, queue
/// depths (with their dead-letter queues).
pub struct Gauges {
    pub pool: PgPool,
    pub hot: database::HotPool,
    pub publisher: Publisher,
    pub queues: Vec<String>,
}

/// How often [`Gauges`] are refreshed.
const REFRESH_EVERY: Duration = Duration::from_secs(5);
/// Longest wait for one SQS call of a refresh.
const SQS_TIMEOUT: Duration = Duration::from_secs(2);

impl Gauges {
    /// Refreshes every gauge once.
    pub async fn refresh_once(&self) -> Result<(), sqlx::Error> {
        database::record_pool_gauges(&self.pool, &self.hot);
        outbox::record_backlog(&self.pool).await;
        self.publisher.record_queue_depths(&self.queues, SQS_TIMEOUT).await;
        let counts = sqlx::query!(r#"SELECT status, count(*) AS "count!" FROM shipments GROUP BY status"#)
            .fetch_all(&self.pool)
            .await?;
        let counts: Vec<(String, i64)> = counts.into_iter().map(|r| (r.status, r.count)).collect();
        SHIPMENTS_BY_STATUS.set_counts(&ShipmentStatus::ALL.map(ShipmentStatus::as_str), &counts);
        Ok(())
    }

    pub async fn run(&self, stop: CancellationToken) {
        shutdown::every("gauges", REFRESH_EVERY, stop, || async { self.refresh_once().await.map(|()| false) }).await;
    }
}
