//! The HTTP API: shared state, the router that merges every module's routes,
//! and the OpenAPI document generated from the handlers' annotations.

pub mod auth;
pub mod error;
pub mod events;
pub mod extract;
pub mod health;
pub mod orders;

use std::{sync::Arc, time::Duration};

use axum::{Json, Router, routing::get};
use sqlx::PgPool;
use tokio::sync::Semaphore;
use utoipa::{
    Modify, OpenApi,
    openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
};
use utoipa_axum::router::OpenApiRouter;

use crate::{auth::KeySet, idempotency::Idempotency};

/// Everything a handler may need, cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub db: PgPool,
    pub keys: Arc<KeySet>,
    pub token_ttl: Duration,
    pub idempotency: Idempotency,
    pub idempotency_ttl: Duration,
    pub duplicate_window: Duration,
    /// Wakes the outbox relay after an order commits.
    pub outbox: outbox::Waker,
    pub orders_queue: String,
    /// The queue status events come from (for the queue-depth gauge).
    pub status_queue: String,
    /// Bounds concurrent argon2 checks (CPU and ~19 MiB each).
    pub hash_limiter: Arc<Semaphore>,
    /// Used by `/readyz` to check SQS.
    pub publisher: messaging::Publisher,
    /// Cleared when shutdown begins; `/readyz` then answers 503.
    pub accepting: web::Accepting,
    pub metrics: telemetry::Metrics,
    /// Fans order changes out to live streams.
    pub live: crate::live::LiveHub,
    /// Keep-alive comment interval of live streams.
    pub sse_keepalive: Duration,
    /// Live streams re-read the order at least this often, whatever the notifications.
    pub sse_recheck: Duration,
}

#[derive(OpenApi)]
#[openapi(
    info(title = "orderflow order-service", description = "Order intake: OAuth2 client credentials, orders, idempotency. Errors are RFC 9457 problem+json (RFC 6749 on /auth/token)."),
    modifiers(&BearerAuth),
    tags((name = "auth"), (name = "orders"), (name = "operations"))
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()),
        );
    }
}

/// The full router with middleware, and the OpenAPI document it serves.
pub fn router(state: AppState, request_timeout: Duration) -> Router {
    let (api, openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(auth::router())
        .merge(orders::router())
        .merge(events::router())
        .merge(health::router())
        .split_for_parts();
    let openapi = Arc::new(openapi);
    let router =
        api.route("/openapi.json", get(move || async move { Json(openapi.as_ref().clone()) })).with_state(state);
    web::layered(router, request_timeout)
}

/// The router of a status-consumer-only process: health and metrics.
pub fn operations_router(state: AppState, request_timeout: Duration) -> Router {
    let (router, _) = OpenApiRouter::new().merge(health::router()).split_for_parts();
    web::layered(router.with_state(state), request_timeout)
}

/// The OpenAPI document, for tooling (`order-service openapi`).
pub fn openapi_json() -> String {
    let (_, openapi) = OpenApiRouter::<AppState>::with_openapi(ApiDoc::openapi())
        .merge(auth::router())
        .merge(orders::router())
        .merge(events::router())
        .merge(health::router())
        .split_for_parts();
    openapi.to_pretty_json().expect("OpenAPI document serialises")
}
