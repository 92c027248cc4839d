//! The delivery-service's HTTP side, for operators only (never routed from an
//! ingress): health, readiness, metrics, and `GET /shipments/{order_id}`. The
//! router is built with the same OpenAPI style as the order-service's and
//! serves its document at `/openapi.json`.

pub mod health;
pub mod shipments;

use std::{sync::Arc, time::Duration};

use axum::Router;
use messaging::Publisher;
use sqlx::PgPool;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use web::Accepting;

/// What handlers share.
#[derive(Clone)]
pub struct AppState {
    pub db: PgPool,
    /// `/readyz` waits until the database has every migration this binary embeds.
    pub schema: database::SchemaCheck,
    /// `/readyz` checks that SQS answers for these queues.
    pub publisher: Publisher,
    pub queues: Arc<[String]>,
    /// Cleared when shutdown begins; `/readyz` then answers 503.
    pub accepting: Accepting,
}

#[derive(OpenApi)]
#[openapi(
    info(title = "orderflow delivery-service", description = "Operator API of the delivery-service: health, metrics and shipments. Errors are RFC 9457 problem+json."),
    tags((name = "shipments"), (name = "operations"))
)]
struct ApiDoc;

fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi()).merge(shipments::router()).merge(health::router())
}

/// The router with the common middleware, serving its OpenAPI document.
pub fn router(state: AppState, request_timeout: Duration) -> Router {
    web::with_openapi(api(), state, request_timeout)
}

/// The OpenAPI document, for tooling.
pub fn openapi_json() -> String {
    api().split_for_parts().1.to_pretty_json().expect("OpenAPI document serialises")
}
