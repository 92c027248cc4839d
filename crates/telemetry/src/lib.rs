//! Logging and metrics set-up shared by every orderflow binary.
//!
//! - Logs: JSON objects on stdout (one per line) by default, human-readable when
//!   stdout is a terminal or `LOG_FORMAT=pretty`; the level comes from `RUST_LOG`.
//! - Traces: with `OTEL_EXPORTER_OTLP_ENDPOINT` (or `..._TRACES_ENDPOINT`) set,
//!   spans go to an OTLP collector (Jaeger ingests OTLP) through a batch
//!   processor (a background task on the runtime), so export never blocks a
//!   request and an unreachable collector costs a warning. `OTEL_EXPORTER_OTLP_PROTOCOL`
//!   (`http/protobuf`, the default, or `grpc`), `OTEL_SERVICE_NAME`,
//!   `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER`/`_ARG` and
//!   `OTEL_BSP_*` are the standard variables. Without an endpoint, tracing is off.
//!   W3C trace context travels through [`propagation`].
//! - Metrics: one process-wide Prometheus recorder for the `metrics` facade; a
//!   service renders it at `GET /metrics` through [`Metrics::render`].

use std::{io::IsTerminal, sync::OnceLock};

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::{Resource, propagation::TraceContextPropagator, trace::SdkTracerProvider};
use tracing_subscriber::{EnvFilter, Layer as _, fmt, layer::SubscriberExt, util::SubscriberInitExt};

pub mod metric;
pub mod propagation;

pub use metric::{Kind, Metric};

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

/// Installed telemetry; [`Telemetry::shutdown`] flushes pending spans.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Flushes and stops the span exporter (bounded by the exporter's timeout).
    pub fn shutdown(self) {
        if let Some(Err(e)) = self.provider.map(|p| p.shutdown()) {
            eprintln!("trace exporter shutdown: {e}");
        }
    }
}

/// Installs logging (and OTLP tracing when configured) for `service`.
/// `default_filter` applies when `RUST_LOG` is unset, e.g. `"info,sqlx=warn"`.
pub fn init(service: &str, format: LogFormat, default_filter: &str) -> Telemetry {
    let provider = tracer_provider(service);
    // Traces and logs are filtered apart: `RUST_LOG=warn` quietens the logs
    // without emptying the traces. `TRACES_FILTER` tunes the spans exported.
    let trace_filter = std::env::var("TRACES_FILTER").unwrap_or_else(|_| DEFAULT_TRACES_FILTER.to_owned());
    let otel = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer(service.to_owned()))
            .with_filter(EnvFilter::try_new(&trace_filter).unwrap_or_else(|_| EnvFilter::new(DEFAULT_TRACES_FILTER)))
    });
    let log_filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let registry = tracing_subscriber::registry().with(otel);
    let _ = match format {
        // The span list carries request_id / trace_id / order_id of every enclosing span.
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .with_span_list(true)
                    .with_filter(log_filter),
            )
            .try_init(),
        LogFormat::Pretty => registry.with(fmt::layer().with_target(false).with_filter(log_filter)).try_init(),
    };
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    if provider.is_some() {
        tracing::info!(service, "exporting traces over OTLP");
    }
    Telemetry { provider }
}

/// Spans exported by default: our own at info, libraries' only when they warn.
const DEFAULT_TRACES_FILTER: &str = "info,sqlx=warn,aws_config=warn,aws_smithy_runtime=warn,aws_sdk_sqs=warn,hyper=warn,h2=warn,tower=warn,tonic=warn,reqwest=warn,opentelemetry=warn";

fn env_set(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !v.trim().is_empty())
}

/// An OTLP tracer provider, or `None` when no endpoint is configured.
fn tracer_provider(service: &str) -> Option<SdkTracerProvider> {
    if !env_set("OTEL_EXPORTER_OTLP_ENDPOINT") && !env_set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
        return None;
    }
    let protocol = std::env::var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        .or_else(|_| std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL"))
        .unwrap_or_else(|_| "http/protobuf".into());
    let builder = opentelemetry_otlp::SpanExporter::builder();
    let exporter = match protocol.as_str() {
        "grpc" => builder.with_tonic().build(),
        _ => builder.with_http().build(),
    };
    let exporter = match exporter {
        Ok(e) => e,
        Err(e) => {
            eprintln!("{service}: OTLP trace exporter not started ({e}); continuing without traces");
            return None;
        }
    };
    let mut resource = Resource::builder();
    if !env_set("OTEL_SERVICE_NAME") {
        resource = resource.with_service_name(service.to_owned());
    }
    // The batch processor runs on the tokio runtime: both exporters (reqwest,
    // tonic) need it, and the SDK's default processor thread has none.
    let processor = opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor::builder(
        exporter,
        opentelemetry_sdk::runtime::Tokio,
    )
    .build();
    Some(SdkTracerProvider::builder().with_span_processor(processor).with_resource(resource.build()).build())
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
