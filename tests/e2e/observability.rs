//! Metrics after real traffic, and no secret in the logs of a full run.

use std::time::Duration;

use e2e::{Options, System, sample};

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
    tokio::time::sleep(Duration::from_millis(500)).await; // let the last relay step settle its counters

    let orders = sys.metrics(sys.api()).await;
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

    let delivery = sys.metrics(&sys.delivery.url).await;
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
