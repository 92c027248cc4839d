//! The metrics this crate records for every service: HTTP traffic by route
//! template, and the last result of each readiness probe.

use telemetry::Metric;

pub const HTTP_REQUESTS: Metric = Metric::counter(
    "http_server_requests_total",
    "HTTP requests by method, route template (never the raw path) and status",
    &["method", "route", "status"],
);
pub const HTTP_DURATION: Metric = Metric::histogram(
    "http_server_request_duration_seconds",
    "HTTP request latency by method, route template and status",
    &["method", "route", "status"],
);
pub const DEPENDENCY_UP: Metric =
    Metric::gauge("dependency_up", "Last readiness probe result per dependency: 1 up, 0 down", &["dependency"]);

pub const ALL: &[Metric] = &[HTTP_REQUESTS, HTTP_DURATION, DEPENDENCY_UP];
