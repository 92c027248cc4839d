//! `/healthz` and `/metrics` (shared handlers from `web`) and `/readyz` (can it
//! serve: PostgreSQL, with every migration this binary embeds applied, is
//! required; Redis and SQS are optional, their loss is reported as degraded).
//! Served by API and status-consumer processes alike.

use std::time::Duration;

use axum::{
    extract::{FromRef, State},
    response::Response,
};
use utoipa_axum::{router::OpenApiRouter, routes};
use web::Probe;

use super::Operations;

const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

pub fn router<S>() -> OpenApiRouter<S>
where
    S: Clone + Send + Sync + 'static,
    Operations: FromRef<S>,
{
    OpenApiRouter::new()
        .routes(routes!(web::health::healthz))
        .routes(routes!(readyz))
        .routes(routes!(web::health::metrics))
}

/// Readiness: `{"status": "ready"|"degraded"|"unavailable", "checks": {"postgres": {"status": "up"|"down", ...}, "schema": ..., "redis": ..., "sqs": ...}}`.
/// 200 while PostgreSQL answers with this binary's schema (Redis or SQS down
/// is `degraded`: orders are still accepted), 503 without PostgreSQL, while
/// its migrations are pending (`schema` down, its detail names the versions)
/// or while shutting down.
#[utoipa::path(get, path = "/readyz", tag = "operations", responses(
    (status = 200, description = "Ready or degraded", content_type = "application/json", body = Object),
    (status = 503, description = "Not ready", content_type = "application/json", body = Object)))]
pub async fn readyz(State(ops): State<Operations>) -> Response {
    let (db, publisher, queues) = (ops.db.clone(), ops.publisher.clone(), ops.queues.clone());
    let schema = ops.schema.clone();
    let mut probes = vec![
        Probe::required("postgres", async move { database::ping(&db, PROBE_TIMEOUT).await }),
        Probe::required("schema", async move { schema.check().await }),
        Probe::optional("sqs", async move { publisher.probe_all(&queues).await }),
    ];
    if let Some(redis) = ops.redis.clone() {
        probes.push(Probe::optional("redis", async move { redis.ping().await }));
    }
    web::readiness(&ops.accepting, PROBE_TIMEOUT, probes).await
}
