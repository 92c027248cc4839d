//! The real `delivery-service` binary: killed abruptly (SIGKILL) at arbitrary
//! moments and restarted, and two processes sharing one database and queue.
//! Either way every order gets exactly one shipment that reaches DELIVERED and
//! each status event is on the queue exactly once.

use std::{collections::HashMap, process::Stdio, time::Duration};

use tokio::process::{Child, Command};
use uuid::Uuid;

use crate::helpers::{env_for, events, fixtures, order_created, send_to};

fn start(env: &[(String, String)], port: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_delivery-service"))
        .envs(env.iter().cloned())
        .env("HTTP_ADDR", format!("127.0.0.1:{port}"))
        .env("CONSUMER_ENABLED", "true")
        .env("SCHEDULER_ENABLED", "true")
        .env("OUTBOX_RELAY_ENABLED", "true")
        .env("SHIP_AFTER", "200ms")
        .env("DELIVER_AFTER", "200ms")
        .env("STEP_JITTER", "100ms")
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start delivery-service")
}

/// Sends an `order-created` for each order, as the order-service would.
async fn send_orders(queues: &testkit::TestQueues, url: &str, orders: &[Uuid]) {
    for id in orders {
        let event = order_created(*id);
        send_to(queues, url, &event.to_json(), &id.to_string(), &event.event_id.to_string(), "order-created").await;
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Every order has exactly one `order-shipped` then one `order-delivered`.
fn assert_exactly_once(messages: &[(String, String, serde_json::Value)], orders: &[Uuid]) {
    let mut per_order: HashMap<&str, Vec<&str>> = HashMap::new();
    for (t, order, _) in messages {
        per_order.entry(order.as_str()).or_default().push(t.as_str());
    }
    for id in orders {
        let types = per_order.get(id.to_string().as_str()).cloned().unwrap_or_default();
        assert_eq!(types, ["order-shipped", "order-delivered"], "events of order {id}");
    }
    assert_eq!(per_order.len(), orders.len());
}

async fn wait_all_delivered(pool: &sqlx::PgPool, n: i64, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let delivered: i64 = sqlx::query_scalar("SELECT count(*) FROM shipments WHERE status = 'DELIVERED'")
            .fetch_one(pool)
            .await
            .unwrap();
        let backlog = outbox::backlog(pool).await.unwrap();
        if delivered == n && backlog == 0 {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "only {delivered} of {n} delivered, outbox backlog {backlog}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_at_any_moment_and_restarted_every_order_ships_exactly_once() {
    let (db, queues, orders_q, status_q) = fixtures(10).await;
    let env = env_for(&db, &queues);
    let pool = db.pool().await;
    let orders: Vec<Uuid> = (0..40).map(|_| Uuid::now_v7()).collect();
    send_orders(&queues, &orders_q.url, &orders).await;
    // Kill -9 the process at staggered moments: mid-receive, between commit and
    // delete, mid-schedule, mid-publish; restart each time.
    let port = free_port();
    for (round, after_ms) in [150u64, 400, 250, 600, 350].into_iter().enumerate() {
        let mut child = start(&env, port);
        tokio::time::sleep(Duration::from_millis(after_ms + 300)).await; // start-up + work
        child.start_kill().unwrap();
        let status = child.wait().await.unwrap();
        assert!(!status.success(), "round {round}: killed, not exited");
    }
    let mut child = start(&env, port);
    wait_all_delivered(&pool, orders.len() as i64, Duration::from_secs(60)).await;
    child.start_kill().unwrap();

    let shipments: i64 = sqlx::query_scalar("SELECT count(*) FROM shipments").fetch_one(&pool).await.unwrap();
    assert_eq!(shipments, orders.len() as i64, "one shipment per order");
    let histories: Vec<i64> = sqlx::query_scalar("SELECT count(*) FROM shipment_status_history GROUP BY shipment_id")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert!(histories.iter().all(|n| *n == 3), "each shipment went PROCESSING, SHIPPED, DELIVERED once");
    let messages = queues.drain(&status_q.url, orders.len() * 2, Duration::from_secs(30)).await;
    assert_exactly_once(&events(&messages), &orders);
    assert!(queues.drain(&status_q.url, 1, Duration::from_secs(1)).await.is_empty(), "no extra status events");
    assert!(
        queues.drain(&orders_q.dlq_url, 1, Duration::from_millis(500)).await.is_empty(),
        "no valid order dead-lettered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_on_one_database_and_queue_ship_every_order_once() {
    let (db, queues, orders_q, status_q) = fixtures(10).await;
    let env = env_for(&db, &queues);
    let pool = db.pool().await;
    let mut a = start(&env, free_port());
    let mut b = start(&env, free_port());
    let orders: Vec<Uuid> = (0..40).map(|_| Uuid::now_v7()).collect();
    send_orders(&queues, &orders_q.url, &orders).await;
    wait_all_delivered(&pool, orders.len() as i64, Duration::from_secs(60)).await;
    a.start_kill().unwrap();
    b.start_kill().unwrap();
    let shipments: i64 = sqlx::query_scalar("SELECT count(*) FROM shipments").fetch_one(&pool).await.unwrap();
    assert_eq!(shipments, orders.len() as i64);
    let messages = queues.drain(&status_q.url, orders.len() * 2, Duration::from_secs(30)).await;
    assert_exactly_once(&events(&messages), &orders);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_releases_work_and_exits_cleanly() {
    let (db, queues, orders_q, _status_q) = fixtures(10).await;
    let env = env_for(&db, &queues);
    let port = free_port();
    let mut child = start(&env, port);
    for _ in 0..50 {
        if reqwest::get(format!("http://127.0.0.1:{port}/readyz")).await.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let id = Uuid::now_v7();
    let event = order_created(id);
    send_to(&queues, &orders_q.url, &event.to_json(), &id.to_string(), &event.event_id.to_string(), "order-created")
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pid = child.id().unwrap().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait()).await.expect("exits in time").unwrap();
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");
}
