//! `/healthz` (the process is alive), `/readyz` (can it serve: PostgreSQL is
//! required; Redis and SQS are optional, their loss is reported as degraded)
//! and `/metrics` (Prometheus text format).

use std::time::Duration;

use axum::{extract::State, response::Response};
use utoipa_axum::{router::OpenApiRouter, routes};
use web::Probe;

use super::AppState;

const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(healthz)).routes(routes!(readyz)).routes(routes!(metrics))
}

/// Liveness: answers while the process runs.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "Alive", body = String)))]
pub async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: `{"status": "ready"|"degraded"|"unavailable", "checks": {"postgres": {"status": "up"|"down", ...}, "redis": ..., "sqs": ...}}`.
/// 200 while PostgreSQL answers (Redis or SQS down is `degraded`: orders are
/// still accepted), 503 without PostgreSQL or while shutting down.
#[utoipa::path(get, path = "/readyz", tag = "operations", responses(
    (status = 200, description = "Ready or degraded", content_type = "application/json", body = Object),
    (status = 503, description = "Not ready", content_type = "application/json", body = Object)))]
pub async fn readyz(State(state): State<AppState>) -> Response {
    let (db, idempotency, publisher, queue) =
        (state.db.clone(), state.idempotency.clone(), state.publisher.clone(), state.orders_queue.clone());
    let probes = vec![
        Probe::required("postgres", async move { database::ping(&db, PROBE_TIMEOUT).await }),
        Probe::optional("redis", async move { idempotency.ping().await }),
        Probe::optional("sqs", async move { publisher.queue_url(&queue).await.map(drop).map_err(|e| e.to_string()) }),
    ];
    web::readiness(&state.accepting, PROBE_TIMEOUT, probes).await
}

/// Prometheus metrics in the text exposition format.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus text format", body = String)))]
pub async fn metrics(State(state): State<AppState>) -> Response {
    database::record_pool_gauges(&state.db);
    metrics::gauge!("redis_up").set(if state.idempotency.healthy() { 1.0 } else { 0.0 });
    // Scrape-time gauges from the database and SQS, each bounded so a slow
    // dependency cannot stall the scrape.
    let db = state.db.clone();
    let gauges = async move {
        if let Ok(backlog) = outbox::backlog(&db).await {
            metrics::gauge!("outbox_backlog").set(backlog as f64);
        }
        let by_status: Vec<(String, i64)> = sqlx::query_as("SELECT status, count(*) FROM orders GROUP BY status")
            .fetch_all(&db)
            .await
            .unwrap_or_default();
        for status in ["PENDING_SHIPMENT", "SHIPPED", "DELIVERED"] {
            let n = by_status.iter().find(|(s, _)| s == status).map_or(0, |(_, n)| *n);
            metrics::gauge!("orders_by_status", "status" => status).set(n as f64);
        }
    };
    let _ = tokio::time::timeout(PROBE_TIMEOUT, gauges).await;
    state.publisher.record_queue_depths(&[state.orders_queue.clone(), state.status_queue.clone()], PROBE_TIMEOUT).await;
    web::metrics_response(&state.metrics)
}
