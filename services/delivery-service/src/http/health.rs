//! `/healthz`, `/metrics` (shared handlers from `web`) and `/readyz`:
//! PostgreSQL, with every migration this binary embeds applied, is required;
//! SQS is optional (its loss is reported as degraded:
//! shipments still advance and their events wait in the outbox).

use std::time::Duration;

use axum::{extract::State, response::Response};
use utoipa_axum::{router::OpenApiRouter, routes};
use web::Probe;

use super::AppState;

const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(web::health::healthz))
        .routes(routes!(readyz))
        .routes(routes!(web::health::metrics))
}

/// Readiness: `{"status": "ready"|"degraded"|"unavailable", "checks": {...}}`;
/// 503 without PostgreSQL, while its migrations are pending (`schema` down,
/// its detail names the versions) or while shutting down.
#[utoipa::path(get, path = "/readyz", tag = "operations", responses(
    (status = 200, description = "Ready or degraded", content_type = "application/json", body = Object),
    (status = 503, description = "Not ready", content_type = "application/json", body = Object)))]
pub async fn readyz(State(state): State<AppState>) -> Response {
    let (db, schema) = (state.db.clone(), state.schema.clone());
    let (publisher, queues) = (state.publisher.clone(), state.queues.clone());
    let probes = vec![
        Probe::required("postgres", async move { database::ping(&db, PROBE_TIMEOUT).await }),
        Probe::required("schema", async move { schema.check().await }),
        Probe::optional("sqs", async move { publisher.probe_all(&queues).await }),
    ];
    web::readiness(&state.accepting, PROBE_TIMEOUT, probes).await
}
