//! W3C trace context (`traceparent`, `tracestate`) in and out of spans, for
//! every boundary that is not an in-process call: HTTP headers, outbox rows,
//! SQS message attributes, shipment rows. Without trace export the span
//! contexts are invalid and these functions return `None` / do nothing.

use std::collections::HashMap;

use opentelemetry::{global, trace::TraceContextExt};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// A serialised trace context.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraceContext {
    pub traceparent: Option<String>,
    pub tracestate: Option<String>,
}

/// The context of `span`, to store or send along.
pub fn context_of(span: &tracing::Span) -> TraceContext {
    let cx = span.context();
    if !cx.span().span_context().is_valid() {
        return TraceContext::default();
    }
    let mut carrier: HashMap<String, String> = HashMap::new();
    global::get_text_map_propagator(|p| p.inject_context(&cx, &mut carrier));
    TraceContext {
        traceparent: carrier.remove("traceparent"),
        tracestate: carrier.remove("tracestate").filter(|s| !s.is_empty()),
    }
}

/// The context of the current span.
pub fn current() -> TraceContext {
    context_of(&tracing::Span::current())
}

/// Makes `span` a child of the given remote context, if there is one.
pub fn set_parent(span: &tracing::Span, traceparent: Option<&str>, tracestate: Option<&str>) {
    let Some(traceparent) = traceparent else { return };
    let mut carrier: HashMap<String, String> = HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
    if let Some(ts) = tracestate {
        carrier.insert("tracestate".to_owned(), ts.to_owned());
    }
    let cx = global::get_text_map_propagator(|p| p.extract(&carrier));
    if cx.span().span_context().is_valid() {
        let _ = span.set_parent(cx);
    }
}

/// Records `trace_id` and `span_id` on `span` (declared `Empty` there), so every
/// log line inside it names them. Does nothing when traces are off.
pub fn record_ids(span: &tracing::Span) {
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    if sc.is_valid() {
        span.record("trace_id", sc.trace_id().to_string());
        span.record("span_id", sc.span_id().to_string());
    }
}
