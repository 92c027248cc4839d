//! The metrics this crate records for every service: HTTP traffic by route
//! template, open connections, and the last result of each readiness probe.

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
pub const HTTP_CONNECTIONS: Metric = Metric::gauge(
    "http_server_connections_open",
    "HTTP connections open; at HTTP_MAX_CONNECTIONS new ones wait to be accepted",
    &[],
);
pub const DEPENDENCY_UP: Metric =
    Metric::gauge("dependency_up", "Last readiness probe result per dependency: 1 up, 0 down", &["dependency"]);

pub const ALL: &[Metric] = &[HTTP_REQUESTS, HTTP_DURATION, HTTP_CONNECTIONS, DEPENDENCY_UP];
