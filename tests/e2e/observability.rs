//! Metrics after real traffic, docs/OBSERVABILITY.md's metrics table held to the
//! declarations, and no secret in the logs of a full run.

use std::{collections::BTreeSet, time::Duration};

use e2e::{Options, System, sample};
use telemetry::Metric;

/// The metric names of docs/OBSERVABILITY.md's metrics table (first column, before any `{`).
fn readme_metrics() -> BTreeSet<String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/OBSERVABILITY.md"))
        .expect("docs/OBSERVABILITY.md");
    let table = readme.split("**Metrics.**").nth(1).expect("docs/OBSERVABILITY.md has a Metrics section");
    table
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2) // header and separator
        .flat_map(|row| {
            let first = row.split('|').nth(1).unwrap_or_default();
            first.split('`').skip(1).step_by(2).map(|code| code.split('{').next().unwrap_or_default().to_owned())
        })
        .collect()
}

fn names(metrics: &[Metric]) -> BTreeSet<String> {
    metrics.iter().map(|m| m.name.to_owned()).collect()
}

#[test]
fn the_observability_table_lists_exactly_the_declared_metrics() {
    let declared: BTreeSet<String> =
        names(&order_service::metrics::all()).union(&names(&delivery_service::metrics::all())).cloned().collect();
    let documented = readme_metrics();
    let undocumented: Vec<_> = declared.difference(&documented).collect();
    let unknown: Vec<_> = documented.difference(&declared).collect();
    assert!(undocumented.is_empty(), "declared but not in the OBSERVABILITY.md table: {undocumented:?}");
    assert!(unknown.is_empty(), "in the OBSERVABILITY.md table but declared nowhere: {unknown:?}");
}

/// Whether a scrape carries a sample of every metric in `metrics`.
fn missing_from(text: &str, metrics: &[Metric]) -> Vec<&'static str> {
    metrics
        .iter()
        .filter(|m| !text.lines().any(|l| !l.starts_with('#') && l.starts_with(m.name)))
        .map(|m| m.name)
        .collect()
}

/// Scrapes `base` until `settled` holds for the text (gauges refresh in the
/// background every few seconds).
async fn scrape_until(sys: &System, base: &str, settled: impl Fn(&str) -> bool) -> String {
    let scraped = testkit::eventually(Duration::from_secs(20), Duration::from_millis(250), || async {
        let text = sys.metrics(base).await;
        settled(&text).then_some(text)
    })
    .await;
    match scraped {
        Some(text) => text,
        None => panic!("metrics of {base} did not settle: {}", sys.metrics(base).await),
    }
}

async fn wait_delivered(sys: &System, n: i64) {
    let pool = sys.orders_db.pool().await;
    for _ in 0..300 {
        let delivered: i64 = sqlx::query_scalar("SELECT count(*) FROM orders WHERE status = 'DELIVERED'")
            .fetch_one(&pool)
            .await
            .unwrap();
        if delivered == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("orders did not reach DELIVERED in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_services_expose_the_metric_families_with_values_that_match_the_traffic() {
    let sys = System::start(Options::default()).await;
    let token = sys.token().await;
    for i in 0..3 {
        sys.place(&token, &format!("METRICS-{i}")).await;
    }
    wait_delivered(&sys, 3).await;
    // Counters settle when the last relay step ends; gauges when the background refresh runs.
    let orders = scrape_until(&sys, sys.api(), |t| {
        sample(t, "orders_by_status", &[("status", "DELIVERED")]) == Some(3.0)
            && sample(t, "outbox_published_total", &[]) == Some(3.0)
    })
    .await;
    let m = |name: &str, labels: &[(&str, &str)]| sample(&orders, name, labels);
    assert_eq!(m("orders_created_total", &[]), Some(3.0), "{orders}");
    assert_eq!(
        m("http_server_requests_total", &[("route", "/orders"), ("method", "POST"), ("status", "201")]),
        Some(3.0)
    );
    assert_eq!(m("http_server_request_duration_seconds_count", &[("route", "/orders"), ("status", "201")]), Some(3.0));
    assert_eq!(m("outbox_published_total", &[]), Some(3.0));
    assert_eq!(m("outbox_publish_delay_seconds_count", &[]), Some(3.0));
    assert_eq!(m("outbox_backlog", &[]), Some(0.0));
    let status_queue = sys.queues.name(e2e::STATUS);
    assert_eq!(m("messages_processed_total", &[("queue", &status_queue), ("outcome", "ack")]), Some(6.0));
    assert!(m("message_handling_seconds_count", &[("queue", &status_queue)]).is_some());
    assert_eq!(m("order_delivery_duration_seconds_count", &[]), Some(3.0));
    assert_eq!(m("orders_by_status", &[("status", "DELIVERED")]), Some(3.0));
    assert_eq!(m("sqs_queue_messages", &[("queue", &status_queue), ("state", "visible")]), Some(0.0));
    assert!(m("db_pool_connections", &[("state", "max")]).is_some_and(|v| v >= 1.0));
    assert_eq!(m("redis_up", &[]), Some(1.0));
    assert_eq!(m("auth_tokens_issued_total", &[]), Some(1.0));

    let delivery = scrape_until(&sys, &sys.delivery.url, |t| {
        sample(t, "shipments_by_status", &[("status", "DELIVERED")]) == Some(3.0)
            && sample(t, "outbox_published_total", &[]) == Some(6.0)
    })
    .await;
    let d = |name: &str, labels: &[(&str, &str)]| sample(&delivery, name, labels);
    let orders_queue = sys.queues.name(e2e::ORDERS);
    assert_eq!(d("messages_received_total", &[("queue", &orders_queue)]), Some(3.0), "{delivery}");
    assert_eq!(d("messages_processed_total", &[("queue", &orders_queue), ("outcome", "ack")]), Some(3.0));
    assert_eq!(d("shipments_advanced_total", &[("to", "SHIPPED")]), Some(3.0));
    assert_eq!(d("shipments_advanced_total", &[("to", "DELIVERED")]), Some(3.0));
    assert_eq!(d("shipment_step_lag_seconds_count", &[]), Some(6.0));
    assert_eq!(d("shipments_by_status", &[("status", "DELIVERED")]), Some(3.0));
    assert_eq!(d("outbox_published_total", &[]), Some(6.0));
    assert_eq!(d("sqs_queue_messages", &[("queue", &orders_queue), ("state", "visible")]), Some(0.0));
    // Dead-letter queues are watched too (found through each queue's redrive policy).
    let orders_dlq = messaging::dlq_name(&orders_queue);
    assert_eq!(d("sqs_queue_messages", &[("queue", &orders_dlq), ("state", "visible")]), Some(0.0), "{delivery}");
    // Every declared metric is exposed (counters and gauges from start-up at 0).
    assert_eq!(missing_from(&orders, &order_service::metrics::all()), Vec::<&str>::new(), "{orders}");
    assert_eq!(missing_from(&delivery, &delivery_service::metrics::all()), Vec::<&str>::new(), "{delivery}");
    // Conventions: latencies in seconds, counters end in _total, no order id in any label.
    for text in [&orders, &delivery] {
        for line in text.lines().filter(|l| l.starts_with("# TYPE")) {
            let parts: Vec<&str> = line.split_whitespace().collect();
            if parts[3] == "counter" {
                assert!(parts[2].ends_with("_total"), "counter {} should end in _total", parts[2]);
            }
        }
        assert!(!text.contains("order_id"), "no order ids in labels");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_appears_in_the_logs_of_a_full_run() {
    let sys = System::start(Options {
        log_level: "debug,hyper=info,h2=info,aws_smithy_runtime=info,aws_config=info,tower=info",
        db_password: Some("db-pw-d41d8cd98f"),
        // Tracing on, towards a collector that is not there: orders still flow,
        // and log lines carry trace ids.
        env: vec![("OTEL_EXPORTER_OTLP_ENDPOINT".into(), "http://127.0.0.1:9".into())],
        ..Default::default()
    })
    .await;
    let token = sys.token().await;
    // A failed login too: the wrong secret must not be logged either.
    let _ = sys
        .http
        .post(format!("{}/auth/token", sys.api()))
        .basic_auth(&sys.client_id, Some("wrong-secret-5f4dcc3b5a"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    let order = sys.place(&token, "SECRETS-1").await;
    wait_delivered(&sys, 1).await;
    let _ = sys.order(&token, order["id"].as_str().unwrap()).await;

    let mut logs = String::new();
    for service in sys.order_services.iter().chain([&sys.delivery]) {
        logs.push_str(&std::fs::read_to_string(&service.log).unwrap());
    }
    assert!(logs.contains("order placed"), "the logs were captured");
    assert!(
        logs.contains("\"trace_id\"") || !logs.contains("exporting traces"),
        "lines in a request carry trace ids when tracing is on"
    );
    let key_body: String = sys.signing_key.lines().filter(|l| !l.starts_with("-----")).collect();
    for (what, secret) in [
        ("client secret", sys.client_secret.as_str()),
        ("wrong client secret", "wrong-secret-5f4dcc3b5a"),
        ("access token", token.as_str()),
        ("access token signature", token.rsplit('.').next().unwrap()),
        ("JWT signing key", key_body.as_str()),
        ("database password", "db-pw-d41d8cd98f"),
    ] {
        assert!(!logs.contains(secret), "the {what} appears in the logs");
    }
    // Every line inside request handling names its request id.
    let placed = logs.lines().find(|l| l.contains("order placed")).unwrap();
    for field in ["request_id", "order_id", "trace_id", "span_id"] {
        assert!(placed.contains(&format!("\"{field}\"")), "{field} missing from {placed}");
    }
}
