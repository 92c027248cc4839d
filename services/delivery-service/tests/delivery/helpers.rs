//! A delivery-service per test with its own database and queues, and the
//! calls tests make to it and to the queues.

use std::time::Duration;

use aws_sdk_sqs::types::Message;
use chrono::Utc;
use delivery_service::{Application, MIGRATOR, Settings};
use envelope::{Address, Envelope, LineItem, OrderCreated};
use messaging::QueueUrls;
use serde_json::Value;
use shutdown::CancellationToken;
use testkit::{TestDb, TestQueues};
use uuid::Uuid;

pub const ORDERS: &str = "orders-queue.fifo";
pub const STATUS: &str = "delivery-status-queue.fifo";

pub struct TestDelivery {
    pub db: TestDb,
    pub queues: TestQueues,
    pub orders: QueueUrls,
    pub status: QueueUrls,
    pub address: String,
    pub app: Option<Application>,
    stop: CancellationToken,
    pub consumer: std::sync::Arc<messaging::Consumer<delivery_service::consume::OrderCreatedHandler>>,
    pub scheduler: std::sync::Arc<delivery_service::scheduler::Scheduler>,
    pub relay: std::sync::Arc<outbox::Relay>,
}

/// Environment for a delivery-service under test, loops off and no delays.
pub fn env_for(db: &TestDb, queues: &TestQueues) -> Vec<(String, String)> {
    [
        ("HTTP_ADDR", "127.0.0.1:0".to_owned()),
        ("DATABASE_URL", db.url.clone()),
        ("SQS_ENDPOINT_URL", testkit::sqs_endpoint()),
        ("ORDERS_QUEUE", queues.name(ORDERS)),
        ("DELIVERY_STATUS_QUEUE", queues.name(STATUS)),
        ("SHIP_AFTER", "0s".to_owned()),
        ("DELIVER_AFTER", "0s".to_owned()),
        ("STEP_JITTER", "0s".to_owned()),
        ("CONSUMER_WAIT_TIME", "1s".to_owned()),
        ("CONSUMER_VISIBILITY_TIMEOUT", "2s".to_owned()),
        ("SCHEDULER_INTERVAL", "50ms".to_owned()),
        ("OUTBOX_POLL_INTERVAL", "100ms".to_owned()),
        ("OUTBOX_BREAKER_COOLDOWN", "200ms".to_owned()),
        // A crashed relay's claims are taken over quickly.
        ("OUTBOX_LEASE", "2s".to_owned()),
        ("SHUTDOWN_TIMEOUT", "10s".to_owned()),
        ("CONSUMER_ENABLED", "false".to_owned()),
        ("SCHEDULER_ENABLED", "false".to_owned()),
        ("OUTBOX_RELAY_ENABLED", "false".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// A database and queues (max receive count `max_receive`) without a service.
pub async fn fixtures(max_receive: u32) -> (TestDb, TestQueues, QueueUrls, QueueUrls) {
    telemetry::init_test_logging("warn");
    let db = TestDb::create(&MIGRATOR).await.expect("test database");
    let mut queues = TestQueues::new().await;
    let orders = queues.create(ORDERS, max_receive).await;
    let status = queues.create(STATUS, max_receive).await;
    (db, queues, orders, status)
}

/// A delivery-service with every loop off (tests drive the steps), plus `env` overrides.
pub async fn spawn(max_receive: u32, env: Vec<(&str, &str)>) -> TestDelivery {
    let (db, queues, orders, status) = fixtures(max_receive).await;
    let mut vars = env_for(&db, &queues);
    vars.extend(env.into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())));
    let settings = Settings::from_env(settings::Env::from_pairs(vars)).expect("valid settings");
    let app = Application::build(settings).await.expect("build delivery-service");
    let address = format!("http://{}", app.local_addr());
    let (consumer, scheduler, relay) = (app.consumer.clone(), app.scheduler.clone(), app.relay.clone());
    TestDelivery {
        db,
        queues,
        orders,
        status,
        address,
        app: Some(app),
        stop: CancellationToken::new(),
        consumer,
        scheduler,
        relay,
    }
}

/// Per-message connections to `url`, as the service's own hot pool lends them.
pub fn hot(url: &str, max: usize, timeout: Duration) -> database::HotPool {
    database::HotPool::new(url.parse().expect("a postgres URL"), max, timeout)
}

/// A shipment of `event` due now, for tests that write one directly.
pub fn shipment(event: &Envelope<OrderCreated>) -> delivery_service::storage::NewShipment<'_> {
    delivery_service::storage::NewShipment { event, ship_at: Utc::now(), trace: Default::default() }
}

pub fn order_created(order_id: Uuid) -> Envelope<OrderCreated> {
    Envelope::new(
        order_id,
        Utc::now(),
        OrderCreated {
            customer_id: Uuid::now_v7(),
            currency: "EUR".into(),
            items: vec![LineItem { sku: "SKU-1".into(), quantity: 1, unit_price_minor: 500 }],
            total_minor: 500,
            shipping_address: Address {
                name: "Ada".into(),
                line1: "1 Test Road".into(),
                line2: None,
                city: "London".into(),
                postal_code: "N1".into(),
                country: "GB".into(),
            },
        },
    )
}

impl TestDelivery {
    /// Starts the HTTP server (and any loops enabled by the env) in the background.
    pub fn start(&mut self) {
        let app = self.app.take().expect("started once");
        let stop = self.stop.clone();
        tokio::spawn(async move { app.run_until_stopped(stop).await.expect("delivery-service runs") });
    }

    /// Sends a message body to the orders queue as the order-service would.
    pub async fn send(&self, body: &str, group: &str, dedup: &str, event_type: &str) {
        send_to(&self.queues, &self.orders.url, body, group, dedup, event_type).await;
    }

    pub async fn send_event(&self, event: &Envelope<OrderCreated>) {
        self.send(&event.to_json(), &event.order_id.to_string(), &event.event_id.to_string(), "order-created").await;
    }

    pub async fn poll(&self) -> messaging::PollOutcome {
        self.consumer.poll_once(&CancellationToken::new()).await.expect("poll")
    }

    /// Advances and publishes until nothing moves.
    pub async fn advance_and_flush(&self) {
        while self.scheduler.try_advance_once().await.expect("advance") > 0 {}
        flush(&self.relay).await;
    }

    /// The one number a test's `SELECT count(*) ...` returns.
    pub async fn count(&self, sql: &'static str) -> i64 {
        sqlx::query_scalar(sql).fetch_one(&self.db.pool().await).await.unwrap()
    }

    pub async fn status_messages(&self, want: usize, within: Duration) -> Vec<Message> {
        self.queues.drain(&self.status.url, want, within).await
    }

    pub async fn shipment(&self, order_id: Uuid) -> (reqwest::StatusCode, Value) {
        let resp = reqwest::get(format!("{}/shipments/{order_id}", self.address)).await.unwrap();
        (resp.status(), resp.json().await.unwrap_or(Value::Null))
    }
}

impl Drop for TestDelivery {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

pub async fn send_to(queues: &TestQueues, url: &str, body: &str, group: &str, dedup: &str, event_type: &str) {
    queues
        .client
        .send_message()
        .queue_url(url)
        .message_body(body)
        .message_group_id(group)
        .message_deduplication_id(dedup)
        .message_attributes(
            "event_type",
            aws_sdk_sqs::types::MessageAttributeValue::builder()
                .data_type("String")
                .string_value(event_type)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .expect("send to test queue");
}

pub async fn flush(relay: &outbox::Relay) -> usize {
    let mut sent = 0;
    loop {
        match relay.try_publish_once().await.expect("relay step") {
            outbox::Outcome::Published { sent: n, .. } => sent += n,
            outbox::Outcome::Idle => return sent,
            outbox::Outcome::CircuitOpen(wait) => panic!("circuit open ({wait:?})"),
        }
    }
}

/// `(event_type, order_id, body)` of each message, in receive order.
pub fn events(messages: &[Message]) -> Vec<(String, String, Value)> {
    messages
        .iter()
        .map(|m| {
            let body: Value = serde_json::from_str(m.body.as_deref().unwrap()).unwrap();
            (body["event_type"].as_str().unwrap().to_owned(), body["order_id"].as_str().unwrap().to_owned(), body)
        })
        .collect()
}
