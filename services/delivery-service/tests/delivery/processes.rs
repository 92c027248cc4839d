//! The real `delivery-service` binary: crashed at each critical moment (by
//! failpoints) and restarted, and two processes sharing one database and queue.
//! Either way every order gets exactly one shipment that reaches DELIVERED and
//! each status event is on the queue exactly once.

use std::{collections::HashMap, time::Duration};

use testkit::{ServiceProcess, Spawn};
use uuid::Uuid;

use crate::helpers::{env_for, events, fixtures, order_created, send_to};

/// The real binary with every loop running and short shipping delays; `extra`
/// adds to (or overrides) the environment.
fn spawn(env: &[(String, String)], extra: &[(&str, &str)]) -> Spawn {
    let mut vars: Vec<(String, String)> = env.to_vec();
    vars.extend(
        [
            ("CONSUMER_ENABLED", "true"),
            ("SCHEDULER_ENABLED", "true"),
            ("OUTBOX_RELAY_ENABLED", "true"),
            ("SHIP_AFTER", "200ms"),
            ("DELIVER_AFTER", "200ms"),
            ("STEP_JITTER", "100ms"),
        ]
        .iter()
        .chain(extra)
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    Spawn::new(env!("CARGO_BIN_EXE_delivery-service"), vars)
}

async fn start(env: &[(String, String)], extra: &[(&str, &str)]) -> ServiceProcess {
    spawn(env, extra).start().await
}

/// Sends an `order-created` for each order, as the order-service would.
async fn send_orders(queues: &testkit::TestQueues, url: &str, orders: &[Uuid]) {
    for id in orders {
        let event = order_created(*id);
        send_to(queues, url, &event.to_json(), &id.to_string(), &event.event_id.to_string(), "order-created").await;
    }
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
async fn crashed_at_each_critical_moment_and_restarted_every_order_ships_exactly_once() {
    let (db, queues, orders_q, status_q) = fixtures(10).await;
    let env = env_for(&db, &queues);
    let pool = db.pool().await;
    let orders: Vec<Uuid> = (0..40).map(|_| Uuid::now_v7()).collect();
    send_orders(&queues, &orders_q.url, &orders).await;
    // The process dies (abort, like SIGKILL: no clean-up) exactly at each
    // moment where a crash could lose or double work, one per run, then
    // restarts. Each failpoint trips on its first hit, so every window is hit
    // on every run of this test.
    for failpoint in ["consumer-after-receive", "consumer-before-delete", "scheduler-before-commit", "relay-after-send"]
    {
        // It may crash before it even listens (work is due at once), so only its end is awaited.
        let failpoints = format!("{failpoint}=1*return");
        let (status, log) = spawn(&env, &[("FAILPOINTS", &failpoints)]).run_to_exit(Duration::from_secs(60)).await;
        assert!(!status.success(), "{failpoint}: the process crashed there ({status:?}; log {})", log.display());
    }
    let _survivor = start(&env, &[]).await;
    wait_all_delivered(&pool, orders.len() as i64, Duration::from_secs(60)).await;

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
    let _a = start(&env, &[]).await;
    let _b = start(&env, &[]).await;
    let orders: Vec<Uuid> = (0..40).map(|_| Uuid::now_v7()).collect();
    send_orders(&queues, &orders_q.url, &orders).await;
    wait_all_delivered(&pool, orders.len() as i64, Duration::from_secs(60)).await;
    let shipments: i64 = sqlx::query_scalar("SELECT count(*) FROM shipments").fetch_one(&pool).await.unwrap();
    assert_eq!(shipments, orders.len() as i64);
    let messages = queues.drain(&status_q.url, orders.len() * 2, Duration::from_secs(30)).await;
    assert_exactly_once(&events(&messages), &orders);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_releases_work_and_exits_cleanly() {
    let (db, queues, orders_q, _status_q) = fixtures(10).await;
    let env = env_for(&db, &queues);
    let pool = db.pool().await;
    let mut process = start(&env, &[("SHIP_AFTER", "1h")]).await;
    process.wait_ready(Duration::from_secs(30)).await;
    let id = Uuid::now_v7();
    let event = order_created(id);
    send_to(&queues, &orders_q.url, &event.to_json(), &id.to_string(), &event.event_id.to_string(), "order-created")
        .await;
    // Work in hand: the shipment exists (the message was handled).
    let created = testkit::eventually(Duration::from_secs(30), Duration::from_millis(50), || {
        let query = sqlx::query_scalar::<_, i64>("SELECT count(*) FROM shipments").fetch_one(&pool);
        async move { query.await.ok().filter(|n| *n == 1) }
    })
    .await;
    assert!(created.is_some(), "the order-created was handled");
    process.terminate();
    let status = process.exited(Duration::from_secs(15)).await;
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");
}
