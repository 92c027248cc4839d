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
    metrics::gauge!("db_pool_connections", "state" => "idle").set(state.db.num_idle() as f64);
    metrics::gauge!("db_pool_connections", "state" => "total").set(f64::from(state.db.size()));
    metrics::gauge!("redis_up").set(if state.idempotency.healthy() { 1.0 } else { 0.0 });
    web::metrics_response(&state.metrics)
}
