//! One trace per order across both services, checked with a real OTLP/HTTP
//! receiver on loopback that decodes the exporters' protobuf.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{Router, body::Bytes, extract::State, routing::post};
use e2e::{Options, System};
use opentelemetry_proto::tonic::{
    collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse},
    common::v1::{AnyValue, any_value::Value as Any},
};
use prost::Message;

/// A span as received.
#[derive(Debug, Clone)]
struct Span {
    service: String,
    name: String,
    kind: i32,
    trace_id: String,
    span_id: String,
    parent: String,
    attributes: HashMap<String, String>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn text(v: &Option<AnyValue>) -> String {
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(Any::StringValue(s)) => s.clone(),
        Some(Any::IntValue(i)) => i.to_string(),
        Some(Any::BoolValue(b)) => b.to_string(),
        Some(Any::DoubleValue(d)) => d.to_string(),
        _ => String::new(),
    }
}

type Received = Arc<Mutex<Vec<Span>>>;

async fn export(State(spans): State<Received>, body: Bytes) -> Vec<u8> {
    let request = ExportTraceServiceRequest::decode(body).expect("OTLP protobuf");
    let mut out = spans.lock().unwrap();
    for rs in request.resource_spans {
        let service = rs
            .resource
            .as_ref()
            .and_then(|r| r.attributes.iter().find(|a| a.key == "service.name"))
            .map(|a| text(&a.value))
            .unwrap_or_default();
        for ss in rs.scope_spans {
            for s in ss.spans {
                out.push(Span {
                    service: service.clone(),
                    name: s.name,
                    kind: s.kind,
                    trace_id: hex(&s.trace_id),
                    span_id: hex(&s.span_id),
                    parent: hex(&s.parent_span_id),
                    attributes: s.attributes.iter().map(|a| (a.key.clone(), text(&a.value))).collect(),
                });
            }
        }
    }
    ExportTraceServiceResponse::default().encode_to_vec()
}

/// OTLP span kinds.
const SERVER: i32 = 2;
const PRODUCER: i32 = 4;
const CONSUMER: i32 = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_follows_an_order_through_both_services() {
    let received: Received = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let app = Router::new().route("/v1/traces", post(export)).with_state(received.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let sys = System::start(Options {
        env: vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT".into(), endpoint),
            ("OTEL_EXPORTER_OTLP_PROTOCOL".into(), "http/protobuf".into()),
            ("OTEL_BSP_SCHEDULE_DELAY".into(), "100".into()),
        ],
        ..Default::default()
    })
    .await;
    let token = sys.token().await;
    // The caller's own trace context is honoured: the order joins its trace.
    let (caller_trace, caller_span) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    let resp = sys
        .http
        .post(format!("{}/orders", sys.api()))
        .bearer_auth(&token)
        .header("traceparent", format!("00-{caller_trace}-{caller_span}-01"))
        .json(&e2e::order_body("TRACED-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), reqwest::StatusCode::CREATED);
    let order: serde_json::Value = resp.json().await.unwrap();
    let id = order["id"].as_str().unwrap().to_owned();
    // A customer follows the order live: each change pushed to the stream is a
    // span in the order's trace (the context rides in the NOTIFY payload).
    let stream = sys.http.get(format!("{}/orders/{id}/events", sys.api())).bearer_auth(&token).send().await.unwrap();
    assert_eq!(stream.status(), reqwest::StatusCode::OK);
    let watching = tokio::spawn(stream.text());

    // Wait for the last hops: the order-service applying order-delivered, and
    // every span of both services in the trace.
    let status_queue = sys.queues.name(e2e::STATUS);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let (trace_id, spans) = loop {
        let spans = received.lock().unwrap().clone();
        let root = spans.iter().find(|s| s.service == "order-service" && s.name == "POST /orders" && s.kind == SERVER);
        if let Some(root) = root {
            let in_trace: Vec<Span> = spans.iter().filter(|s| s.trace_id == root.trace_id).cloned().collect();
            let applied = in_trace
                .iter()
                .filter(|s| {
                    s.service == "order-service"
                        && s.kind == CONSUMER
                        && s.attributes.get("messaging.destination.name") == Some(&status_queue)
                })
                .count();
            let pushed = in_trace.iter().filter(|s| s.name == "sse.push").count();
            // Each service exports on its own schedule: the delivery-service's step
            // and status-send spans may arrive after the order-service's, so wait
            // for them too.
            let steps = in_trace.iter().filter(|s| s.name.starts_with("shipment ")).count();
            let status_sends =
                in_trace.iter().filter(|s| s.service == "delivery-service" && s.kind == PRODUCER).count();
            if applied == 2 && pushed == 2 && steps >= 2 && status_sends >= 2 {
                break (root.trace_id.clone(), in_trace);
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the order's trace did not complete; got {} spans",
            spans.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let find = |service: &str, pred: &dyn Fn(&Span) -> bool| -> Vec<Span> {
        spans.iter().filter(|s| s.service == service && pred(s)).cloned().collect()
    };
    let orders_queue = sys.queues.name(e2e::ORDERS);

    // order-service: the HTTP server span, with semantic-convention attributes.
    let root = &find("order-service", &|s| s.name == "POST /orders")[0];
    assert_eq!(root.attributes["http.route"], "/orders");
    assert_eq!(root.attributes["http.request.method"], "POST");
    assert_eq!(root.attributes["http.response.status_code"], "201");
    assert_eq!(
        (root.trace_id.as_str(), root.parent.as_str()),
        (caller_trace, caller_span),
        "the incoming traceparent is the parent"
    );

    // order-service publishes order-created: a producer span with messaging attributes.
    let send = find("order-service", &|s| s.kind == PRODUCER);
    assert_eq!(send.len(), 1, "{send:?}");
    assert_eq!(send[0].name, format!("send {orders_queue}"));
    for (k, v) in [("messaging.system", "aws_sqs"), ("messaging.operation.type", "send")] {
        assert_eq!(send[0].attributes[k], v);
    }
    assert_eq!(send[0].attributes["messaging.destination.name"], orders_queue);
    assert!(!send[0].attributes["messaging.message.id"].is_empty());
    assert_eq!(send[0].attributes["messaging.message.conversation_id"], id);

    // delivery-service consumes it as a child of that send span.
    let consume = find("delivery-service", &|s| s.kind == CONSUMER);
    assert_eq!(consume.len(), 1, "{consume:?}");
    assert_eq!(consume[0].parent, send[0].span_id, "process is a child of send");
    assert_eq!(consume[0].attributes["messaging.operation.type"], "process");

    // The scheduler's steps and the status publishes join the same trace.
    let steps: Vec<String> =
        find("delivery-service", &|s| s.name.starts_with("shipment ")).into_iter().map(|s| s.name).collect();
    assert!(
        steps.contains(&"shipment SHIPPED".to_owned()) && steps.contains(&"shipment DELIVERED".to_owned()),
        "{steps:?}"
    );
    let status_sends = find("delivery-service", &|s| s.kind == PRODUCER);
    assert_eq!(status_sends.len(), 2);
    assert!(status_sends.iter().all(|s| s.attributes["messaging.destination.name"] == status_queue));

    // And the order-service applies both status events in it, each a child of its send span.
    let applied = find("order-service", &|s| s.kind == CONSUMER);
    assert_eq!(applied.len(), 2);
    for a in &applied {
        assert!(status_sends.iter().any(|s| s.span_id == a.parent), "apply span {a:?} has a send parent");
    }

    // The live stream's pushes of SHIPPED and DELIVERED are children of the
    // order-service spans that applied those changes.
    let pushes = find("order-service", &|s| s.name == "sse.push");
    let statuses: Vec<&str> = pushes.iter().map(|p| p.attributes["status"].as_str()).collect();
    assert_eq!(statuses.len(), 2, "{pushes:?}");
    assert!(statuses.contains(&"SHIPPED") && statuses.contains(&"DELIVERED"), "{statuses:?}");
    for push in &pushes {
        assert!(
            spans.iter().any(|s| s.service == "order-service" && s.span_id == push.parent),
            "push {push:?} has a parent in the order's trace"
        );
    }
    let streamed = watching.await.unwrap().unwrap();
    assert!(streamed.contains("event: DELIVERED"), "the stream saw the order delivered: {streamed}");
    assert!(spans.iter().all(|s| s.trace_id == trace_id));
}
