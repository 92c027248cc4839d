//! Every metric the order-service exposes, declared in one place: its own
//! (orders, tokens, live streams, Redis) and those the shared crates record for
//! it (HTTP, pool, consumer, outbox). Also the background refresh of the gauges
//! that need a query, so a scrape never waits on the database, Redis or SQS.

use std::time::Duration;

use messaging::Publisher;
use shutdown::CancellationToken;
use sqlx::PgPool;
use telemetry::Metric;

use crate::{domain::OrderStatus, idempotency::Idempotency};

pub const ORDERS_CREATED: Metric = Metric::counter("orders_created_total", "Orders placed", &[]);
pub const INTAKE_TRANSACTIONS: Metric = Metric::counter(
    "orders_intake_transactions_total",
    "Committed transactions that placed orders; orders_created_total over this is the mean group-commit batch",
    &[],
);
pub const ORDERS_BY_STATUS: Metric =
    Metric::gauge("orders_by_status", "Orders in each status, refreshed in the background", &["status"]);
pub const STATUS_CHANGES: Metric = Metric::counter(
    "orders_status_changes_total",
    "Orders moved on by status events, by the status they moved to",
    &["status"],
);
pub const DELIVERY_DURATION: Metric =
    Metric::histogram("order_delivery_duration_seconds", "Time from an order's placement to its delivery", &[]);
pub const TOKENS_ISSUED: Metric = Metric::counter("auth_tokens_issued_total", "Access tokens issued", &[]);
pub const TOKEN_FAILURES: Metric = Metric::counter(
    "auth_token_failures_total",
    "Refused token requests, by reason: invalid_client, disabled, rate_limited (429), busy (503)",
    &["reason"],
);
pub const SSE_STREAMS_OPEN: Metric = Metric::gauge("sse_streams_open", "Live streams open in this process", &[]);
pub const SSE_EVENTS_SENT: Metric = Metric::counter("sse_events_sent_total", "Server-Sent Events sent", &[]);
pub const REDIS_UP: Metric =
    Metric::gauge("redis_up", "Whether the last Redis call succeeded: 1 yes, 0 no (PostgreSQL carries on)", &[]);
pub const REDIS_ERRORS: Metric =
    Metric::counter("redis_errors_total", "Redis calls that failed or timed out (skipped, not retried)", &[]);

const OWN: &[Metric] = &[
    ORDERS_CREATED,
    INTAKE_TRANSACTIONS,
    ORDERS_BY_STATUS,
    STATUS_CHANGES,
    DELIVERY_DURATION,
    TOKENS_ISSUED,
    TOKEN_FAILURES,
    SSE_STREAMS_OPEN,
    SSE_EVENTS_SENT,
    REDIS_UP,
    REDIS_ERRORS,
];

/// Every metric this service exposes.
pub fn all() -> Vec<Metric> {
    [OWN, web::metrics::ALL, database::metrics::ALL, messaging::metrics::ALL, outbox::metrics::ALL].concat()
}

/// Registers help texts, and zero series for every status.
pub fn declare() {
    telemetry::metric::declare(&all());
    ORDERS_BY_STATUS.set_counts(&OrderStatus::ALL.map(OrderStatus::as_str), &[]);
    for status in OrderStatus::ALL {
        if status != OrderStatus::PendingShipment {
            STATUS_CHANGES.counter_with(&[status.as_str()]).increment(0);
        }
    }
    for reason in ["invalid_client", "disabled", "rate_limited", "busy"] {
        TOKEN_FAILURES.counter_with(&[reason]).increment(0);
    }
}

/// Gauges that need a query: pool, outbox backlog, orders by status, queue
/// depths (with their dead-letter queues), Redis health.
pub struct Gauges {
    pub pool: PgPool,
    pub hot: database::HotPool,
    pub publisher: Publisher,
    pub queues: Vec<String>,
    /// Redis, when this process uses it.
    pub redis: Option<Idempotency>,
}

/// How often [`Gauges`] are refreshed.
const REFRESH_EVERY: Duration = Duration::from_secs(5);
/// Longest wait for one SQS call of a refresh.
const SQS_TIMEOUT: Duration = Duration::from_secs(2);

impl Gauges {
    /// Refreshes every gauge once.
    pub async fn refresh_once(&self) -> Result<(), sqlx::Error> {
        database::record_pool_gauges(&self.pool, &self.hot);
        if let Some(redis) = &self.redis {
            REDIS_UP.as_gauge().set(if redis.healthy() { 1.0 } else { 0.0 });
        }
        outbox::record_backlog(&self.pool).await;
        self.publisher.record_queue_depths(&self.queues, SQS_TIMEOUT).await;
        let counts = sqlx::query!(r#"SELECT status, count(*) AS "count!" FROM orders GROUP BY status"#)
            .fetch_all(&self.pool)
            .await?;
        let counts: Vec<(String, i64)> = counts.into_iter().map(|r| (r.status, r.count)).collect();
        ORDERS_BY_STATUS.set_counts(&OrderStatus::ALL.map(OrderStatus::as_str), &counts);
        Ok(())
    }

    pub async fn run(&self, stop: CancellationToken) {
        shutdown::every("gauges", REFRESH_EVERY, stop, || async { self.refresh_once().await.map(|()| false) }).await;
    }
}
