//! The operations endpoints every service serves: `/healthz` and `/metrics`
//! (the same in every service, so defined here once, with their OpenAPI
//! description), and the readiness report behind each service's `/readyz`:
//! the service names its dependency probes and whether each is required; this
//! module runs them concurrently under one timeout and renders the JSON report.
//!
//! 200 `ready` when all are up, 200 `degraded` when only optional ones are down
//! (the service still does its job), 503 `unavailable` when a required one is
//! down or the service is shutting down.

use std::{
    collections::BTreeMap,
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use axum::{
    Json,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;

type ProbeFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// One dependency check.
pub struct Probe {
    name: &'static str,
    required: bool,
    check: ProbeFuture,
}

impl Probe {
    /// A dependency the service cannot serve without.
    pub fn required(name: &'static str, check: impl Future<Output = Result<(), String>> + Send + 'static) -> Self {
        Self { name, required: true, check: Box::pin(check) }
    }

    /// A dependency whose loss degrades but does not stop the service.
    pub fn optional(name: &'static str, check: impl Future<Output = Result<(), String>> + Send + 'static) -> Self {
        Self { name, required: false, check: Box::pin(check) }
    }
}

#[derive(Serialize)]
struct Check {
    status: &'static str,
    required: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
}

#[derive(Serialize)]
struct Report {
    status: &'static str,
    checks: BTreeMap<&'static str, Check>,
}

/// Whether the service still takes work; cleared when shutdown begins.
#[derive(Clone, Debug)]
pub struct Accepting(Arc<AtomicBool>);

impl Default for Accepting {
    fn default() -> Self {
        Self(Arc::new(AtomicBool::new(true)))
    }
}

impl Accepting {
    pub fn stop(&self) {
        self.0.store(false, Ordering::Relaxed);
    }
    pub fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Runs the probes and renders `/readyz`. Also sets the `dependency_up` gauge.
pub async fn readiness(accepting: &Accepting, timeout: Duration, probes: Vec<Probe>) -> Response {
    let results = futures::future::join_all(probes.into_iter().map(|p| async move {
        let result = tokio::time::timeout(timeout, p.check)
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {timeout:?}")));
        (p.name, p.required, result)
    }))
    .await;
    let mut checks = BTreeMap::new();
    let (mut required_down, mut optional_down) = (false, false);
    for (name, required, result) in results {
        crate::metrics::DEPENDENCY_UP.gauge_with(&[name]).set(if result.is_ok() { 1.0 } else { 0.0 });
        match result {
            Ok(()) => checks.insert(name, Check { status: "up", required, detail: None }),
            Err(detail) => {
                if required {
                    required_down = true
                } else {
                    optional_down = true
                }
                checks.insert(name, Check { status: "down", required, detail: Some(detail) })
            }
        };
    }
    let (code, status) = if required_down || !accepting.get() {
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
    } else if optional_down {
        (StatusCode::OK, "degraded")
    } else {
        (StatusCode::OK, "ready")
    };
    (code, Json(Report { status, checks })).into_response()
}

/// Liveness: answers while the process runs.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "Alive", body = String)))]
pub async fn healthz() -> &'static str {
    "ok"
}

/// Prometheus metrics in the text exposition format. Gauges that need a
/// database or SQS call are refreshed in the background, never by a scrape.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus text format", body = String)))]
pub async fn metrics() -> Response {
    let body = telemetry::Metrics::global().render();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}
