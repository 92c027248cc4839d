//! The HTTP API: shared state, the router that merges every module's routes,
//! and the OpenAPI document generated from the handlers' annotations.

pub mod auth;
pub mod contract;
pub mod error;
pub mod events;
pub mod extract;
pub mod health;
pub mod orders;

use std::{net::IpAddr, sync::Arc, time::Duration};

use axum::{Router, extract::FromRef};
use messaging::Publisher;
use sqlx::PgPool;
use tokio::sync::Semaphore;
use utoipa::{
    Modify, OpenApi,
    openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
};
use utoipa_axum::router::OpenApiRouter;
use web::Accepting;

use crate::{
    auth::{KeySet, Revocations, clients::ClientSecretKey, limits::KeyedLimiter},
    idempotency::Idempotency,
    live::LiveHub,
    storage::orders::IntakeWriter,
};

/// What handlers share, in a few cohesive parts; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// The orders database (the shared pool: clients, idempotency lookups).
    pub db: PgPool,
    /// Its connections for the per-request paths (reads, placing orders).
    pub hot: database::HotPool,
    pub auth: Arc<Auth>,
    pub intake: Arc<Intake>,
    pub live: Live,
    pub ops: Operations,
}

/// Issuing and checking tokens.
pub struct Auth {
    pub keys: KeySet,
    /// Lifetime of issued tokens.
    pub token_ttl: Duration,
    /// Bounds concurrent argon2 checks (CPU and ~19 MiB each).
    pub hash_limiter: Arc<Semaphore>,
    /// Longest wait for an argon2 slot; then 503.
    pub hash_wait: Duration,
    /// Token requests per client id.
    pub client_limit: KeyedLimiter<String>,
    /// Token requests per source address.
    pub address_limit: KeyedLimiter<IpAddr>,
    /// Key of HMAC-stored generated secrets.
    pub secret_key: Option<ClientSecretKey>,
    /// Disabled clients, whose tokens are refused.
    pub revocations: Revocations,
}

/// Placing orders.
pub struct Intake {
    /// The Redis fast path of idempotency.
    pub idempotency: Idempotency,
    /// How long an `Idempotency-Key` is remembered.
    pub idempotency_ttl: Duration,
    /// Double-submit window for orders without a key (zero: off).
    pub duplicate_window: Duration,
    /// Writes orders, concurrent requests' together (group commit).
    pub writer: IntakeWriter,
    /// Wakes the outbox relay after an order commits.
    pub outbox: outbox::Waker,
    /// Where `order-created` events go.
    pub orders_queue: String,
}

/// Live streams.
#[derive(Clone)]
pub struct Live {
    pub hub: LiveHub,
    /// Keep-alive comment interval.
    pub keepalive: Duration,
    /// Streams re-read their order at least this often, whatever the notifications.
    pub recheck: Duration,
}

/// What the operations endpoints need; the whole state of a status-consumer process.
#[derive(Clone)]
pub struct Operations {
    pub db: PgPool,
    /// `/readyz` waits until the database has every migration this binary embeds.
    pub schema: database::SchemaCheck,
    /// `/readyz` checks that SQS answers for these queues.
    pub publisher: Publisher,
    pub queues: Arc<[String]>,
    /// Redis, checked by `/readyz` when this process uses it.
    pub redis: Option<Idempotency>,
    /// Cleared when shutdown begins; `/readyz` then answers 503.
    pub accepting: Accepting,
}

impl FromRef<AppState> for Operations {
    fn from_ref(state: &AppState) -> Self {
        state.ops.clone()
    }
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

fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(auth::router())
        .merge(orders::router())
        .merge(events::router())
        .merge(health::router())
}

/// The full router with middleware, serving its OpenAPI document.
pub fn router(state: AppState, request_timeout: Duration) -> Router {
    web::with_openapi(api(), state, request_timeout)
}

/// The router of a status-consumer-only process: health and metrics.
pub fn operations_router(state: Operations, request_timeout: Duration) -> Router {
    let (router, _) = health::router().split_for_parts();
    web::layered(router.with_state(state), request_timeout)
}

/// The OpenAPI document, for tooling (`order-service openapi`).
pub fn openapi_json() -> String {
    api().split_for_parts().1.to_pretty_json().expect("OpenAPI document serialises")
}
