//! End-to-end: both services as real processes, on the real PostgreSQL, Redis
//! and SQS emulator. A customer places an order and watches it reach DELIVERED
//! without polling; across replicas; resuming; and 200 orders at once.

use std::{collections::HashMap, time::Duration};

mod cluster;
mod controller;
mod faults;
mod fuzz;
mod observability;
mod schema;
mod traces;

use e2e::{Options, System};
use eventsource_stream::{Event, Eventsource};
use futures::{Stream, StreamExt};
use serde_json::Value;

async fn open_stream(
    sys: &System,
    base: &str,
    token: &str,
    id: &str,
    last: Option<&str>,
) -> impl Stream<Item = Event> + Unpin {
    let mut req = sys.http.get(format!("{base}/orders/{id}/events")).bearer_auth(token);
    if let Some(last) = last {
        req = req.header("Last-Event-ID", last);
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), reqwest::StatusCode::OK);
    Box::pin(resp.bytes_stream().eventsource().map(|e| e.expect("well-formed SSE")))
}

async fn next(stream: &mut (impl Stream<Item = Event> + Unpin)) -> Option<Event> {
    tokio::time::timeout(Duration::from_secs(30), stream.next()).await.expect("an event within 30s")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_watches_an_order_reach_delivered() {
    let sys = System::start(Options::default()).await;
    let token = sys.token().await;
    let order = sys.place(&token, "E2E-1").await;
    let id = order["id"].as_str().unwrap();
    let mut events = open_stream(&sys, sys.api(), &token, id, None).await;

    let mut seen = Vec::new();
    while let Some(event) = next(&mut events).await {
        seen.push(event);
    }
    let names: Vec<&str> = seen.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(names, ["PENDING_SHIPMENT", "SHIPPED", "DELIVERED"], "the stream closes after DELIVERED");
    assert_eq!(seen.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), ["1", "2", "3"]);
    let shipped: Value = serde_json::from_str(&seen[1].data).unwrap();
    assert!(shipped["tracking_number"].as_str().is_some_and(|t| t.starts_with("OF")), "{shipped}");
    assert!(shipped["carrier"].is_string());

    let order = sys.order(&token, id).await;
    assert_eq!(order["status"], "DELIVERED");
    let history: Vec<&str> =
        order["history"].as_array().unwrap().iter().map(|h| h["status"].as_str().unwrap()).collect();
    assert_eq!(history, ["PENDING_SHIPMENT", "SHIPPED", "DELIVERED"]);
    assert_eq!(order["shipment"]["tracking_number"], shipped["tracking_number"]);

    let shipment: Value =
        reqwest::get(format!("{}/shipments/{id}", sys.delivery.url)).await.unwrap().json().await.unwrap();
    assert_eq!(shipment["status"], "DELIVERED");
    assert_eq!(shipment["tracking_number"], shipped["tracking_number"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_on_another_replica_sees_changes_applied_elsewhere() {
    let sys = System::start(Options { order_replicas: 2, ..Default::default() }).await;
    let token = sys.token().await;
    let order = sys.place(&token, "E2E-REPLICA").await;
    let id = order["id"].as_str().unwrap();
    // Replica 1 does not consume status events: every change reaches it through PostgreSQL NOTIFY.
    let mut events = open_stream(&sys, &sys.order_services[1].url, &token, id, None).await;
    let mut names = Vec::new();
    while let Some(event) = next(&mut events).await {
        names.push(event.event);
    }
    assert_eq!(names, ["PENDING_SHIPMENT", "SHIPPED", "DELIVERED"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_separate_status_consumer_process_moves_orders_on() {
    let sys = System::start(Options { separate_status_consumer: true, ..Default::default() }).await;
    let consumer = sys.status_consumer.as_ref().unwrap();
    // The consumer-only process serves operations endpoints, not the order API.
    let api = sys.http.get(format!("{}/orders", consumer.url)).send().await.unwrap();
    assert_eq!(api.status(), reqwest::StatusCode::NOT_FOUND);
    // Its gauges are refreshed in the background.
    let pool_gauges = testkit::eventually(Duration::from_secs(15), Duration::from_millis(200), || async {
        sys.metrics(&consumer.url).await.contains("db_pool_connections").then_some(())
    })
    .await;
    assert!(pool_gauges.is_some(), "the consumer process reports its pool");

    let token = sys.token().await;
    let order = sys.place(&token, "E2E-SPLIT").await;
    let id = order["id"].as_str().unwrap();
    let mut events = open_stream(&sys, sys.api(), &token, id, None).await;
    let mut names = Vec::new();
    while let Some(event) = next(&mut events).await {
        names.push(event.event);
    }
    assert_eq!(names, ["PENDING_SHIPMENT", "SHIPPED", "DELIVERED"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_resumes_with_last_event_id_without_gaps_or_repeats() {
    let sys = System::start(Options { ship_after: "200ms", deliver_after: "2s", ..Default::default() }).await;
    let token = sys.token().await;
    let order = sys.place(&token, "E2E-RESUME").await;
    let id = order["id"].as_str().unwrap();
    let mut events = open_stream(&sys, sys.api(), &token, id, None).await;
    let first = next(&mut events).await.unwrap();
    let second = next(&mut events).await.unwrap();
    assert_eq!((first.id.as_str(), second.event.as_str()), ("1", "SHIPPED"));
    drop(events); // the connection drops before DELIVERED

    let mut resumed = open_stream(&sys, sys.api(), &token, id, Some(&second.id)).await;
    let mut rest = Vec::new();
    while let Some(event) = next(&mut resumed).await {
        rest.push((event.id, event.event));
    }
    assert_eq!(rest, [("3".to_owned(), "DELIVERED".to_owned())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_orders_all_reach_delivered_consistently() {
    let sys = System::start(Options { ship_after: "200ms", deliver_after: "200ms", ..Default::default() }).await;
    let token = sys.token().await;
    let placed = futures::future::join_all((0..200).map(|i| {
        let (sys, token) = (&sys, &token);
        async move { sys.place(token, &format!("BULK-{i}")).await["id"].as_str().unwrap().to_owned() }
    }))
    .await;
    assert_eq!(placed.len(), 200);

    let orders_pool = sys.orders_db.pool().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let delivered: i64 = sqlx::query_scalar("SELECT count(*) FROM orders WHERE status = 'DELIVERED'")
            .fetch_one(&orders_pool)
            .await
            .unwrap();
        if delivered == 200 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "only {delivered} of 200 orders delivered in time");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // Exactly one shipment per order, and both databases agree on every order.
    let delivery_pool = sys.delivery_db.pool().await;
    let shipments: Vec<(uuid::Uuid, String, Option<String>, Option<String>)> =
        sqlx::query_as("SELECT order_id, status, carrier, tracking_number FROM shipments")
            .fetch_all(&delivery_pool)
            .await
            .unwrap();
    assert_eq!(shipments.len(), 200, "one shipment per order");
    let orders: HashMap<uuid::Uuid, (String, Option<String>, Option<String>, i64)> = sqlx::query_as::<_, (uuid::Uuid, String, Option<String>, Option<String>, i64)>(
        "SELECT o.id, o.status, o.carrier, o.tracking_number, (SELECT count(*) FROM order_status_history h WHERE h.order_id = o.id)
           FROM orders o",
    )
    .fetch_all(&orders_pool)
    .await
    .unwrap()
    .into_iter()
    .map(|(id, s, c, t, n)| (id, (s, c, t, n)))
    .collect();
    assert_eq!(orders.len(), 200);
    for (order_id, status, carrier, tracking) in shipments {
        assert_eq!(status, "DELIVERED");
        let (o_status, o_carrier, o_tracking, history) = &orders[&order_id];
        assert_eq!(o_status, "DELIVERED");
        assert_eq!((o_carrier, o_tracking), (&carrier, &tracking), "order {order_id} agrees with its shipment");
        assert_eq!(*history, 3);
    }
    let unsent: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox").fetch_one(&delivery_pool).await.unwrap();
    assert_eq!(unsent, 0);
}

/// The command-line client against the real services: create, then watch to DELIVERED.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_places_an_order_and_watches_it_to_delivered() {
    let sys = System::start(Options::default()).await;
    let cli = |args: &[&str]| {
        let mut cmd = tokio::process::Command::new(e2e::bin("orderflow"));
        cmd.args(args)
            .env("ORDERFLOW_URL", sys.api())
            .env("ORDERFLOW_CLIENT_ID", &sys.client_id)
            .env("ORDERFLOW_CLIENT_SECRET", &sys.client_secret);
        cmd
    };
    let created = cli(&[
        "--json",
        "orders",
        "create",
        "--item",
        "CLI-1:3:250",
        "--name",
        "Ada Lovelace",
        "--line1",
        "12 Example Street",
        "--city",
        "London",
        "--postal-code",
        "N1 9GU",
        "--country",
        "GB",
        "--idempotency-key",
        "cli-e2e",
    ])
    .output()
    .await
    .unwrap();
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    let order: Value = serde_json::from_slice(&created.stdout).unwrap();
    assert_eq!(order["total_minor"], 750);
    let id = order["id"].as_str().unwrap();

    let watched = tokio::time::timeout(Duration::from_secs(60), cli(&["--json", "orders", "watch", id]).output())
        .await
        .expect("watch ends after DELIVERED")
        .unwrap();
    assert!(watched.status.success(), "{}", String::from_utf8_lossy(&watched.stderr));
    let lines: Vec<Value> =
        String::from_utf8(watched.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let statuses: Vec<&str> = lines.iter().map(|l| l["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["PENDING_SHIPMENT", "SHIPPED", "DELIVERED"]);

    let missing = cli(&["orders", "get", &uuid::Uuid::now_v7().to_string()]).output().await.unwrap();
    assert_eq!(missing.status.code(), Some(4), "not found has its own exit code");
}
