//! Logging and metrics set-up shared by every orderflow binary.
//!
//! - Logs: JSON objects on stdout (one per line) by default, human-readable when
//!   stdout is a terminal or `LOG_FORMAT=pretty`; the level comes from `RUST_LOG`.
//! - Metrics: one process-wide Prometheus recorder for the `metrics` facade; a
//!   service renders it at `GET /metrics` through [`Metrics::render`].
//!
//! Trace export over OTLP is added here too (not per service) when it lands.

use std::{io::IsTerminal, sync::OnceLock};

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::{EnvFilter, fmt, layer::SubscriberExt, util::SubscriberInitExt};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

impl LogFormat {
    /// `LOG_FORMAT` if set (`json`/`pretty`), else pretty on a terminal and JSON otherwise.
    pub fn from_env() -> Self {
        match std::env::var("LOG_FORMAT").as_deref() {
            Ok("json") => LogFormat::Json,
            Ok("pretty") | Ok("text") => LogFormat::Pretty,
            _ if std::io::stdout().is_terminal() => LogFormat::Pretty,
            _ => LogFormat::Json,
        }
    }
}

/// Installs the global tracing subscriber. `default_filter` applies when
/// `RUST_LOG` is unset, e.g. `"info,sqlx=warn"`. Safe to call more than once
/// (later calls do nothing), which tests rely on.
pub fn init_logging(format: LogFormat, default_filter: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let registry = tracing_subscriber::registry().with(filter);
    let _ = match format {
        LogFormat::Json => registry
            .with(fmt::layer().json().flatten_event(true).with_current_span(true).with_span_list(false))
            .try_init(),
        LogFormat::Pretty => registry.with(fmt::layer().with_target(false)).try_init(),
    };
}

/// Logging for tests: pretty, written through the test harness so it is shown
/// only for failing tests. `RUST_LOG` overrides `default_filter`.
pub fn init_test_logging(default_filter: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let _ =
        tracing_subscriber::registry().with(filter).with(fmt::layer().with_target(false).with_test_writer()).try_init();
}

/// The process-wide Prometheus registry behind the `metrics` macros.
#[derive(Clone)]
pub struct Metrics {
    handle: PrometheusHandle,
}

impl Metrics {
    /// Installs the recorder on first call; every later call shares it, so
    /// several applications in one test process report into one registry.
    pub fn global() -> Self {
        static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
        let handle = HANDLE
            .get_or_init(|| {
                let recorder = PrometheusBuilder::new()
                    .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), LATENCY_BUCKETS)
                    .expect("static bucket list is valid")
                    .build_recorder();
                let handle = recorder.handle();
                metrics::set_global_recorder(recorder).expect("no other metrics recorder is installed");
                handle
            })
            .clone();
        Self { handle }
    }

    /// The Prometheus text exposition of every metric recorded so far.
    pub fn render(&self) -> String {
        self.handle.render()
    }
}

/// Histogram buckets for latencies: 1 ms to 30 s, dense where requests live.
const LATENCY_BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
