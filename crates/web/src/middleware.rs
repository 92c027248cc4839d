//! The middleware stack every service router gets: `X-Request-Id` accepted or
//! generated and echoed, one log span per request carrying that id, HTTP metrics
//! by route template and status, a request timeout, and problem+json answers for
//! unknown routes and methods.

use std::time::{Duration, Instant};

use axum::{
    Router,
    extract::{MatchedPath, Request},
    http::{HeaderName, StatusCode},
    middleware::{self, Next},
    response::{IntoResponse, Response},
};
use tower_http::{
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, RequestId, SetRequestIdLayer},
    timeout::TimeoutLayer,
    trace::TraceLayer,
};

use crate::{Problem, metrics};

/// The request id header, accepted from callers and echoed on every response.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Wraps a service's router in the common stack. Layers added last run first:
/// the request id is set before the span is opened, so every log line of the
/// request carries it.
pub fn layered(router: Router, request_timeout: Duration) -> Router {
    router
        .fallback(|| async { Problem::not_found("No route matches this path.") })
        .method_not_allowed_fallback(|| async {
            Problem::new(StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed", "Method Not Allowed")
                .with_detail("This path does not support the request method.")
        })
        .layer(middleware::from_fn(record_http_metrics))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, request_timeout))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|req: &Request| {
                    let request_id =
                        req.extensions().get::<RequestId>().and_then(|id| id.header_value().to_str().ok()).unwrap_or_default();
                    let route = req.extensions().get::<MatchedPath>().map(MatchedPath::as_str).unwrap_or("");
                    let span = tracing::info_span!(
                        "http.request",
                        otel.name = format!("{} {}", req.method(), if route.is_empty() { req.uri().path() } else { route }),
                        otel.kind = "server",
                        http.request.method = %req.method(),
                        http.route = route,
                        url.path = req.uri().path(),
                        http.response.status_code = tracing::field::Empty,
                        request_id,
                        trace_id = tracing::field::Empty,
                        span_id = tracing::field::Empty,
                    );
                    // Continue the caller's trace (W3C traceparent), if any.
                    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
                    telemetry::propagation::set_parent(&span, header("traceparent"), header("tracestate"));
                    telemetry::propagation::record_ids(&span);
                    span
                })
                .on_response(|response: &Response, latency: Duration, span: &tracing::Span| {
                    span.record("http.response.status_code", response.status().as_u16());
                    tracing::debug!(status = response.status().as_u16(), latency_ms = latency.as_millis() as u64, "response");
                }),
        )
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
}

/// A service's router from its OpenAPI-annotated routes: serves the document
/// generated from them at `/openapi.json` and wraps everything in [`layered`].
pub fn with_openapi<S>(api: utoipa_axum::router::OpenApiRouter<S>, state: S, request_timeout: Duration) -> Router
where
    S: Clone + Send + Sync + 'static,
{
    let (api, openapi) = api.split_for_parts();
    let openapi = std::sync::Arc::new(openapi);
    let router = api
        .route("/openapi.json", axum::routing::get(move || async move { axum::Json(openapi.as_ref().clone()) }))
        .with_state(state);
    layered(router, request_timeout)
}

/// Counts requests and records their latency by method, route template and
/// status. The template (never the raw path) keeps label cardinality bounded.
async fn record_http_metrics(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().as_str().to_owned();
    let route =
        req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned()).unwrap_or_else(|| "unmatched".to_owned());
    let response = next.run(req).await.into_response();
    let status = response.status();
    let labels = [method.as_str(), route.as_str(), status.as_str()];
    metrics::HTTP_REQUESTS.counter_with(&labels).increment(1);
    metrics::HTTP_DURATION.histogram_with(&labels).record(started.elapsed().as_secs_f64());
    response
}
