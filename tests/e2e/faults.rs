//! The fault suite: both services as real processes under sustained order load
//! from concurrent clients, one fault injected per test: the delivery-service
//! SIGKILLed and restarted, the order-service SIGKILLed and restarted, SQS
//! unreachable for 10 s, Redis unreachable for 10 s, and each database
//! refusing connections for 40 s. SQS and Redis are reached through a
//! [`testkit::Proxy`] (the shared servers keep serving other tests); a
//! database outage is `ALTER DATABASE ... ALLOW_CONNECTIONS false` with its
//! backends terminated, on that test's own database.
//!
//! Clients retry whatever got no answer (an error, a 5xx, a 409 "still in
//! flight") with the same `Idempotency-Key`. After the fault, the test waits
//! (bounded) for the system to settle, prints accepted / delivered /
//! duplicated / lost / dead-lettered, and asserts that every accepted order is
//! DELIVERED with exactly one shipment and one history entry per status, that
//! both databases hold the same orders, that nothing was dead-lettered and
//! that no order exists half-made (every order the orders database holds,
//! answered or not, went all the way).

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc, RwLock,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use e2e::{ORDERS, Options, STATUS, System, order_body};
use reqwest::StatusCode;
use serde_json::Value;
use testkit::Proxy;
use uuid::Uuid;

/// Concurrent clients, each placing an order every `PACE`: about 20 orders/s.
const CLIENTS: usize = 4;
const PACE: Duration = Duration::from_millis(200);
/// How long one order may take to get an answer, retries included (a killed
/// order-service leaves its in-flight keys pending in Redis for up to 30 s).
const ANSWER_WITHIN: Duration = Duration::from_secs(90);

#[derive(Debug, Clone, Copy)]
enum Fault {
    KillDelivery,
    KillOrderService,
    SqsDown,
    RedisDown,
    OrdersDbDown,
    DeliveryDbDown,
}

/// What the clients saw.
#[derive(Default)]
struct Placed {
    /// Order ids of answered requests, by SKU (one SKU per idempotency key).
    accepted: HashMap<String, String>,
    /// SKUs that never got an answer within [`ANSWER_WITHIN`].
    unanswered: Vec<String>,
}

/// Places one order, retrying with the same key until it gets an answer.
async fn place(http: &reqwest::Client, base: &RwLock<String>, token: &str, sku: &str) -> Option<String> {
    let key = Uuid::new_v4().to_string();
    let deadline = tokio::time::Instant::now() + ANSWER_WITHIN;
    while tokio::time::Instant::now() < deadline {
        let url = format!("{}/orders", base.read().unwrap());
        let sent = http
            .post(url)
            .bearer_auth(token)
            .header("Idempotency-Key", &key)
            .timeout(Duration::from_secs(10))
            .json(&order_body(sku))
            .send()
            .await;
        match sent {
            Ok(resp) if resp.status() == StatusCode::CREATED || resp.status() == StatusCode::OK => {
                let body: Value = resp.json().await.ok()?;
                return body["id"].as_str().map(str::to_owned);
            }
            // No answer yet: the same request again, after a pause.
            Ok(resp) if resp.status().is_server_error() || resp.status() == StatusCode::CONFLICT => {}
            Ok(resp) if resp.status() == StatusCode::TOO_MANY_REQUESTS => {}
            Ok(resp) => panic!("unexpected answer {} for {sku}: {:?}", resp.status(), resp.text().await),
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    None
}

/// Clients placing orders until `stop`.
struct Load {
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicUsize>,
    clients: Vec<tokio::task::JoinHandle<Placed>>,
}

impl Load {
    fn start(base: Arc<RwLock<String>>, token: String) -> Self {
        let (stop, accepted) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)));
        let http = reqwest::Client::new();
        let clients = (0..CLIENTS)
            .map(|c| {
                let (http, base, token, stop, accepted) =
                    (http.clone(), base.clone(), token.clone(), stop.clone(), accepted.clone());
                tokio::spawn(async move {
                    let mut placed = Placed::default();
                    let mut i = 0;
                    while !stop.load(Ordering::SeqCst) {
                        let sku = format!("FAULT-{c}-{i}");
                        i += 1;
                        let started = tokio::time::Instant::now();
                        match place(&http, &base, &token, &sku).await {
                            Some(id) => {
                                placed.accepted.insert(sku, id);
                                accepted.fetch_add(1, Ordering::SeqCst);
                            }
                            None => placed.unanswered.push(sku),
                        }
                        tokio::time::sleep(PACE.saturating_sub(started.elapsed())).await;
                    }
                    placed
                })
            })
            .collect();
        Self { stop, accepted, clients }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Waits (bounded) until `n` more orders than now were accepted.
    async fn wait_for_more(&self, n: usize, within: Duration) {
        let target = self.accepted() + n;
        let reached = testkit::eventually(within, Duration::from_millis(100), || {
            let got = self.accepted();
            async move { (got >= target).then_some(()) }
        })
        .await;
        assert!(reached.is_some(), "the load stalled: {} accepted, wanted {target}", self.accepted());
    }

    async fn finish(self) -> Placed {
        self.stop.store(true, Ordering::SeqCst);
        let mut all = Placed::default();
        for client in self.clients {
            let placed = client.await.expect("a load client");
            all.accepted.extend(placed.accepted);
            all.unanswered.extend(placed.unanswered);
        }
        all
    }
}

/// One order as the orders database holds it.
struct OrderRow {
    sku: String,
    status: String,
    history: Vec<String>,
}

async fn orders_state(pool: &sqlx::PgPool) -> HashMap<String, OrderRow> {
    let rows: Vec<(String, String, String, Vec<String>)> = sqlx::query_as(
        "SELECT o.id::text, o.items->0->>'sku', o.status,
                COALESCE((SELECT array_agg(h.status ORDER BY h.seq) FROM order_status_history h WHERE h.order_id = o.id), '{}')
           FROM orders o",
    )
    .fetch_all(pool)
    .await
    .expect("read orders");
    rows.into_iter().map(|(id, sku, status, history)| (id, OrderRow { sku, status, history })).collect()
}

/// `order_id -> (shipments, status, history)` in the delivery database.
async fn shipments_state(pool: &sqlx::PgPool) -> HashMap<String, (i64, String, Vec<String>)> {
    let rows: Vec<(String, i64, String, Vec<String>)> = sqlx::query_as(
        "SELECT s.order_id::text, count(*) OVER (PARTITION BY s.order_id), s.status,
                COALESCE((SELECT array_agg(h.status ORDER BY h.seq) FROM shipment_status_history h WHERE h.shipment_id = s.id), '{}')
           FROM shipments s",
    )
    .fetch_all(pool)
    .await
    .expect("read shipments");
    rows.into_iter().map(|(order, n, status, history)| (order, (n, status, history))).collect()
}

async fn dead_lettered(sys: &System) -> u64 {
    let publisher = messaging::Publisher::new(sys.queues.client.clone());
    let mut total = 0;
    for queue in [ORDERS, STATUS] {
        let depth = publisher.queue_depth(&messaging::dlq_name(&sys.queues.name(queue))).await.expect("DLQ depth");
        total += depth.visible + depth.in_flight;
    }
    total
}

async fn run(fault: Fault) {
    let sqs = Proxy::start(testkit::sqs_endpoint().trim_start_matches("http://")).await;
    let redis_url = testkit::redis_url();
    let redis = Proxy::start(redis_url.trim_start_matches("redis://")).await;
    let mut sys = System::start(Options {
        sqs_endpoint: Some(sqs.http_url()),
        redis_url: Some(format!("redis://{}", redis.addr())),
        env: [
            // Short enough that the old behaviour (hand a failed message back,
            // 5 receives) would dead-letter within a 40 s database outage.
            ("CONSUMER_VISIBILITY_TIMEOUT", "3s"),
            ("OUTBOX_BREAKER_COOLDOWN", "300ms"),
            ("DATABASE_ACQUIRE_TIMEOUT", "1s"),
            ("SHUTDOWN_TIMEOUT", "5s"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .to_vec(),
        ..Options::default()
    })
    .await;
    let token = sys.token().await;
    let base = Arc::new(RwLock::new(sys.api().to_owned()));
    let load = Load::start(base.clone(), token);
    load.wait_for_more(20, Duration::from_secs(30)).await;

    match fault {
        Fault::KillDelivery => sys.kill_and_restart_delivery().await,
        Fault::KillOrderService => {
            sys.kill_and_restart_order_service(0).await;
            *base.write().unwrap() = sys.api().to_owned();
        }
        Fault::SqsDown | Fault::RedisDown => {
            let proxy = if matches!(fault, Fault::SqsDown) { &sqs } else { &redis };
            proxy.down();
            // The outage is the fault itself: held for a fixed time.
            tokio::time::sleep(Duration::from_secs(10)).await;
            proxy.up();
        }
        Fault::OrdersDbDown | Fault::DeliveryDbDown => {
            let db = if matches!(fault, Fault::OrdersDbDown) { &sys.orders_db } else { &sys.delivery_db };
            db.refuse_connections().await;
            tokio::time::sleep(Duration::from_secs(40)).await;
            db.allow_connections().await;
        }
    }
    // The load goes on after the fault, then stops.
    load.wait_for_more(20, Duration::from_secs(60)).await;
    let placed = load.finish().await;

    // Settle: every order either database holds reaches DELIVERED on both sides.
    let (orders_pool, delivery_pool) = (sys.orders_db.pool().await, sys.delivery_db.pool().await);
    let settled = testkit::eventually(Duration::from_secs(90), Duration::from_millis(500), || {
        let (orders_pool, delivery_pool) = (orders_pool.clone(), delivery_pool.clone());
        async move {
            let orders = orders_state(&orders_pool).await;
            let shipments = shipments_state(&delivery_pool).await;
            let done = orders.values().all(|o| o.status == "DELIVERED")
                && orders.len() == shipments.len()
                && shipments.values().all(|(_, status, _)| status == "DELIVERED");
            done.then_some(())
        }
    })
    .await;

    let orders = orders_state(&orders_pool).await;
    let shipments = shipments_state(&delivery_pool).await;
    let delivered =
        placed.accepted.values().filter(|id| orders.get(*id).is_some_and(|o| o.status == "DELIVERED")).count();
    let lost: Vec<&String> = placed
        .accepted
        .values()
        .filter(|id| orders.get(*id).is_none_or(|o| o.status != "DELIVERED") || !shipments.contains_key(*id))
        .collect();
    let mut per_sku: HashMap<&str, usize> = HashMap::new();
    for o in orders.values() {
        *per_sku.entry(o.sku.as_str()).or_default() += 1;
    }
    let duplicated: usize = per_sku.values().map(|n| n - 1).sum();
    let dead = dead_lettered(&sys).await;
    println!(
        "fault {fault:?}: accepted {} / delivered {delivered} / duplicated {duplicated} / lost {} / dead-lettered {dead} \
         (unanswered {}, orders in the database {})",
        placed.accepted.len(),
        lost.len(),
        placed.unanswered.len(),
        orders.len(),
    );

    assert!(settled.is_some(), "{fault:?}: the system did not settle within 90 s");
    assert!(placed.unanswered.is_empty(), "{fault:?}: requests never answered: {:?}", placed.unanswered);
    assert!(lost.is_empty(), "{fault:?}: accepted orders not delivered: {lost:?}");
    assert_eq!(delivered, placed.accepted.len());
    assert_eq!(duplicated, 0, "{fault:?}: one order per idempotency key");
    assert_eq!(dead, 0, "{fault:?}: nothing dead-lettered");
    let want = ["PENDING_SHIPMENT", "SHIPPED", "DELIVERED"];
    for (id, o) in &orders {
        assert_eq!(o.history, want, "{fault:?}: order {id} has one history entry per status");
    }
    let order_ids: HashSet<&String> = orders.keys().collect();
    let shipment_ids: HashSet<&String> = shipments.keys().collect();
    assert_eq!(order_ids, shipment_ids, "{fault:?}: both databases hold the same orders");
    for (id, (n, _, history)) in &shipments {
        assert_eq!(*n, 1, "{fault:?}: one shipment for order {id}");
        assert_eq!(history, &["PROCESSING", "SHIPPED", "DELIVERED"], "{fault:?}: shipment history of {id}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_delivery_service_sigkill_and_restart() {
    run(Fault::KillDelivery).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_order_service_sigkill_and_restart() {
    run(Fault::KillOrderService).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_sqs_unreachable_for_10s() {
    run(Fault::SqsDown).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_redis_unreachable_for_10s() {
    run(Fault::RedisDown).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_orders_database_refuses_connections_for_40s() {
    run(Fault::OrdersDbDown).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_delivery_database_refuses_connections_for_40s() {
    run(Fault::DeliveryDbDown).await;
}
