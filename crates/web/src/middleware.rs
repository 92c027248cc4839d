//! The middleware stack every service router gets: `X-Request-Id` accepted (when
//! short and plain, see [`acceptable_request_id`]) or generated, and echoed; one
//! log span per request carrying that id; HTTP metrics by method (a bounded
//! set), route template and status, recorded outside the request timeout so
//! 408s are counted; the timeout itself; and problem+json answers for unknown
//! routes and methods.

use std::time::{Duration, Instant};

use axum::{
    Router,
    extract::{MatchedPath, Request},
    http::{HeaderName, Method, StatusCode},
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

/// Longest `X-Request-Id` accepted from a caller.
pub const MAX_REQUEST_ID_LEN: usize = 64;

/// Wraps a service's router in the common stack. Layers added last run first:
/// a caller's unacceptable request id is dropped, then the id is set before the
/// span is opened, so every log line of the request carries it. The metrics
/// layer sits outside the timeout, so a request cut off with 408 is counted and
/// timed like any other.
pub fn layered(router: Router, request_timeout: Duration) -> Router {
    router
        .fallback(|| async { Problem::not_found("No route matches this path.") })
        .method_not_allowed_fallback(|| async {
            Problem::new(StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed", "Method Not Allowed")
                .with_detail("This path does not support the request method.")
        })
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, request_timeout))
        .layer(middleware::from_fn(record_http_metrics))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|req: &Request| {
                    let request_id =
                        req.extensions().get::<RequestId>().and_then(|id| id.header_value().to_str().ok()).unwrap_or_default();
                    let route = req.extensions().get::<MatchedPath>().map(MatchedPath::as_str).unwrap_or("");
                    let span = tracing::info_span!(
                        "http.request",
                        // Span names stay a bounded set too: invented methods are OTHER.
                        otel.name = format!("{} {}", method_label(req.method()), if route.is_empty() { req.uri().path() } else { route }),
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
        .layer(middleware::map_request(drop_unacceptable_request_id))
}

/// Whether a caller's `X-Request-Id` may be kept: 1 to [`MAX_REQUEST_ID_LEN`]
/// characters of `[A-Za-z0-9._-]`, so it can go into logs, spans and response
/// headers as is. Anything else is replaced by a generated id.
pub fn acceptable_request_id(value: &[u8]) -> bool {
    (1..=MAX_REQUEST_ID_LEN).contains(&value.len())
        && value.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

async fn drop_unacceptable_request_id(mut req: Request) -> Request {
    let headers = req.headers_mut();
    let values: Vec<_> = headers.get_all(&REQUEST_ID).iter().collect();
    if values.len() > 1 || values.first().is_some_and(|v| !acceptable_request_id(v.as_bytes())) {
        headers.remove(&REQUEST_ID);
    }
    req
}

/// The method as a metric label: the standard methods by name, anything a
/// caller invents as `OTHER`, so label values stay a small fixed set.
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "OTHER",
    }
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
/// status. The template (never the raw path) and [`method_label`] keep label
/// cardinality bounded.
async fn record_http_metrics(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(req.method());
    let route =
        req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned()).unwrap_or_else(|| "unmatched".to_owned());
    let response = next.run(req).await.into_response();
    let status = response.status();
    let labels = [method, route.as_str(), status.as_str()];
    metrics::HTTP_REQUESTS.counter_with(&labels).increment(1);
    metrics::HTTP_DURATION.histogram_with(&labels).record(started.elapsed().as_secs_f64());
    response
}

#[cfg(test)]
mod tests {
    use axum::{body::Body, routing::get};
    use tower::ServiceExt;

    use super::*;

    fn app() -> Router {
        let router = Router::new()
            .route("/mw-fast", get(|| async { "ok" }))
            .route("/mw-slow", get(|| async { tokio::time::sleep(Duration::from_secs(30)).await }));
        layered(router, Duration::from_millis(100))
    }

    async fn call(method: &str, path: &str, request_id: Option<&str>) -> Response {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(id) = request_id {
            req = req.header(REQUEST_ID, id);
        }
        app().oneshot(req.body(Body::empty()).unwrap()).await.unwrap()
    }

    fn series(rendered: &str, name: &str, labels: &str) -> Option<f64> {
        let prefix = format!("{name}{{{labels}}} ");
        rendered.lines().find_map(|l| l.strip_prefix(&prefix)).map(|v| v.parse().unwrap())
    }

    #[tokio::test]
    async fn invented_methods_are_labelled_other() {
        let registry = telemetry::Metrics::global();
        let response = call("FROBNICATE", "/mw-fast", None).await;
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        let rendered = registry.render();
        let labels = r#"method="OTHER",route="/mw-fast",status="405""#;
        assert_eq!(series(&rendered, "http_server_requests_total", labels), Some(1.0), "{rendered}");
        assert!(!rendered.contains("FROBNICATE"), "{rendered}");
        assert_eq!(method_label(&Method::PATCH), "PATCH");
        assert_eq!(method_label(&Method::from_bytes(b"get").unwrap()), "OTHER");
    }

    #[tokio::test]
    async fn timed_out_requests_are_counted_and_timed() {
        let registry = telemetry::Metrics::global();
        let response = call("GET", "/mw-slow", None).await;
        assert_eq!(response.status(), StatusCode::REQUEST_TIMEOUT);
        let rendered = registry.render();
        let labels = r#"method="GET",route="/mw-slow",status="408""#;
        assert_eq!(series(&rendered, "http_server_requests_total", labels), Some(1.0), "{rendered}");
        let count = series(&rendered, "http_server_request_duration_seconds_count", labels);
        assert_eq!(count, Some(1.0), "{rendered}");
        let sum = series(&rendered, "http_server_request_duration_seconds_sum", labels).unwrap();
        assert!(sum >= 0.1, "the latency includes the time until the timeout: {sum}");
    }

    #[tokio::test]
    async fn request_ids_are_kept_only_when_short_and_plain() {
        let echoed = |r: &Response| r.headers()[REQUEST_ID].to_str().unwrap().to_owned();
        let kept = call("GET", "/mw-fast", Some("abc-123_x.Y")).await;
        assert_eq!(echoed(&kept), "abc-123_x.Y");
        let max = "a".repeat(MAX_REQUEST_ID_LEN);
        assert_eq!(echoed(&call("GET", "/mw-fast", Some(&max)).await), max);
        for bad in ["a".repeat(MAX_REQUEST_ID_LEN + 1), "has space".to_owned(), "quote\"".to_owned(), "a/b".to_owned()]
        {
            let response = call("GET", "/mw-fast", Some(&bad)).await;
            let id = echoed(&response);
            assert_ne!(id, bad);
            assert!(uuid_like(&id), "{bad:?} was replaced by a generated id, got {id:?}");
        }
        assert!(uuid_like(&echoed(&call("GET", "/mw-fast", None).await)));
    }

    fn uuid_like(id: &str) -> bool {
        id.len() == 36 && id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
    }
}
