//! Starting a real order-service per test, and the calls tests make to it.

use std::time::Duration;

use order_service::{Application, Settings, auth::keys::generate_private_key_pem, config::Role, storage::MIGRATOR};
use reqwest::{Client, Response, StatusCode};
use serde_json::{Value, json};
use testkit::{TestDb, TestQueues};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub const ORDERS_QUEUE: &str = "orders-queue.fifo";
pub const STATUS_QUEUE: &str = "delivery-status-queue.fifo";
/// The `CLIENT_SECRET_KEY` of apps under test.
pub const TEST_CLIENT_SECRET_KEY: &str = "test-client-secret-key-0123456789abcdef";

pub struct TestApp {
    pub address: String,
    pub db: TestDb,
    pub queues: TestQueues,
    pub queue_url: String,
    pub status_queue: messaging::QueueUrls,
    pub status_consumer: std::sync::Arc<messaging::Consumer<order_service::status::StatusHandler>>,
    pub http: Client,
    pub keys_pem: String,
    pub stop: CancellationToken,
    pub relay: std::sync::Arc<outbox::Relay>,
    pub janitor: std::sync::Arc<order_service::janitor::Janitor>,
    /// The disabled-client set, whose refresh step tests drive.
    pub revocations: order_service::auth::Revocations,
    /// The key generated client secrets are stored under.
    pub secret_key: Option<order_service::auth::clients::ClientSecretKey>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// Options for [`spawn_app_with`].
#[derive(Default)]
pub struct Options {
    /// Extra or overriding environment variables.
    pub env: Vec<(String, String)>,
    /// Run the relay loop in the background (off: tests drive it step by step).
    pub relay_loop: bool,
}

/// Connections of their own to `pool`'s database, as the service's hot pool
/// lends them (reads, intake, status events, the relay).
pub fn hot_pool(pool: &sqlx::PgPool) -> database::HotPool {
    database::HotPool::new((*pool.connect_options()).clone(), 4, Duration::from_secs(3))
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(Options::default()).await
}

/// The environment an app under test gets, before overrides.
pub fn base_env(db: &TestDb, queues: &TestQueues, keys_pem: &str) -> Vec<(String, String)> {
    [
        ("HTTP_ADDR", "127.0.0.1:0".to_owned()),
        ("DATABASE_URL", db.url.clone()),
        ("DATABASE_MAX_CONNECTIONS", "8".to_owned()),
        ("REDIS_URL", testkit::redis_url()),
        ("REDIS_KEY_PREFIX", format!("{}:", queues.prefix)),
        ("SQS_ENDPOINT_URL", testkit::sqs_endpoint()),
        ("ORDERS_QUEUE", queues.name(ORDERS_QUEUE)),
        ("DELIVERY_STATUS_QUEUE", queues.name(STATUS_QUEUE)),
        ("STATUS_CONSUMER_ENABLED", "false".to_owned()),
        ("CONSUMER_WAIT_TIME", "1s".to_owned()),
        ("CONSUMER_VISIBILITY_TIMEOUT", "2s".to_owned()),
        ("JWT_PRIVATE_KEY", keys_pem.to_owned()),
        ("OUTBOX_POLL_INTERVAL", "100ms".to_owned()),
        ("OUTBOX_BREAKER_COOLDOWN", "200ms".to_owned()),
        ("OUTBOX_LEASE", "2s".to_owned()),
        ("SHUTDOWN_TIMEOUT", "10s".to_owned()),
        ("CLIENT_SECRET_KEY", TEST_CLIENT_SECRET_KEY.to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

pub async fn spawn_app_with(options: Options) -> TestApp {
    telemetry::init_test_logging("warn");
    let db = TestDb::create(&MIGRATOR).await.expect("create test database");
    let mut queues = TestQueues::new().await;
    let urls = queues.create(ORDERS_QUEUE, 5).await;
    let status_queue = queues.create(STATUS_QUEUE, 3).await;
    let keys_pem = generate_private_key_pem();
    let mut env = base_env(&db, &queues, &keys_pem);
    env.extend(options.env);
    let mut settings = Settings::from_env(settings::Env::from_pairs(env), Role::Api).expect("valid test settings");
    settings.api.as_mut().expect("an API process").relay_enabled = options.relay_loop;
    let secret_key = settings.api.as_ref().and_then(|api| api.client_secret_key.clone());
    let app = Application::build(settings).await.expect("build app");
    let revocations = app.revocations();
    let address = format!("http://127.0.0.1:{}", app.port());
    let relay = app.relay();
    let status_consumer = app.status_consumer();
    let janitor = app.janitor();
    let stop = CancellationToken::new();
    let task = tokio::spawn({
        let stop = stop.clone();
        async move { app.run_until_stopped(stop).await.expect("app runs") }
    });
    TestApp {
        address,
        db,
        queues,
        queue_url: urls.url,
        status_queue,
        status_consumer,
        janitor,
        revocations,
        secret_key,
        http: Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap(),
        keys_pem,
        stop,
        relay,
        task: Some(task),
    }
}

/// A client registered for a customer.
pub struct TestClient {
    pub client_id: String,
    pub secret: String,
    pub customer_id: Uuid,
}

pub fn valid_order() -> Value {
    json!({
        "currency": "EUR",
        "items": [{"sku": "SKU-123", "quantity": 2, "unit_price_minor": 1299}],
        "shipping_address": {"name": "Ada Lovelace", "line1": "12 Example Street", "line2": null,
                             "city": "London", "postal_code": "N1 9GU", "country": "GB"}
    })
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// Registers a client with `scope` for a new customer.
    pub async fn create_client(&self, scope: &str) -> TestClient {
        let pool = self.db.pool().await;
        let customer_id = Uuid::now_v7();
        let created = order_service::auth::clients::create_with_key(
            &pool,
            customer_id,
            scope,
            None,
            None,
            false,
            self.secret_key.as_ref(),
        )
        .await
        .unwrap();
        TestClient { client_id: created.client_id, secret: created.client_secret, customer_id }
    }

    pub async fn token_request(&self, form: &[(&str, &str)], basic: Option<(&str, &str)>) -> Response {
        let mut req = self.http.post(self.url("/auth/token")).form(form);
        if let Some((id, secret)) = basic {
            req = req.basic_auth(id, Some(secret));
        }
        req.send().await.unwrap()
    }

    /// A token for a fresh client with both scopes; returns (token, client).
    pub async fn customer(&self) -> (String, TestClient) {
        self.customer_with_scope("orders:read orders:write").await
    }

    pub async fn customer_with_scope(&self, scope: &str) -> (String, TestClient) {
        let client = self.create_client(scope).await;
        let resp = self
            .token_request(&[("grant_type", "client_credentials")], Some((&client.client_id, &client.secret)))
            .await;
        assert_eq!(resp.status(), StatusCode::OK);
        let body: Value = resp.json().await.unwrap();
        (body["access_token"].as_str().unwrap().to_owned(), client)
    }

    pub async fn post_order(&self, token: &str, body: &Value, key: Option<&str>) -> Response {
        let mut req = self.http.post(self.url("/orders")).bearer_auth(token).json(body);
        if let Some(key) = key {
            req = req.header("Idempotency-Key", key);
        }
        req.send().await.unwrap()
    }

    pub async fn get(&self, token: &str, path: &str) -> Response {
        self.http.get(self.url(path)).bearer_auth(token).send().await.unwrap()
    }

    /// Drives the outbox relay until it has nothing left (no sleeps).
    pub async fn flush_outbox(&self) -> usize {
        let relay = &self.relay;
        let mut sent = 0;
        loop {
            match relay.try_publish_once().await.expect("relay step") {
                outbox::Outcome::Published { sent: n, .. } => sent += n,
                outbox::Outcome::Idle => return sent,
                outbox::Outcome::CircuitOpen(wait) => {
                    panic!("circuit open ({wait:?}) while SQS should be up")
                }
            }
        }
    }

    pub async fn outbox_rows(&self) -> i64 {
        outbox::backlog(&self.db.pool().await).await.unwrap()
    }

    /// The one number a test's `SELECT count(*) ...` returns.
    pub async fn count(&self, sql: &'static str) -> i64 {
        sqlx::query_scalar(sql).fetch_one(&self.db.pool().await).await.unwrap()
    }

    /// Receives (and deletes) messages from the test's orders queue.
    pub async fn receive(&self, want: usize) -> Vec<aws_sdk_sqs::types::Message> {
        self.queues.drain(&self.queue_url, want, Duration::from_secs(10)).await
    }
}

impl TestApp {
    /// Sends a delivery status event to the test's status queue.
    pub async fn send_status<P: envelope::EventPayload>(&self, event: &envelope::Envelope<P>) {
        self.queues
            .client
            .send_message()
            .queue_url(&self.status_queue.url)
            .message_body(event.to_json())
            .message_group_id(event.order_id.to_string())
            .message_deduplication_id(event.event_id.to_string())
            .send()
            .await
            .expect("send status event");
    }

    /// One receive-and-handle step of the status consumer.
    pub async fn poll_status(&self) -> messaging::PollOutcome {
        self.status_consumer.poll_once(&tokio_util::sync::CancellationToken::new()).await.expect("poll status queue")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Asserts a problem+json response and returns its body.
pub async fn problem(resp: Response, status: StatusCode) -> Value {
    assert_eq!(resp.status(), status, "unexpected status");
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["status"], status.as_u16());
    assert!(body["type"].as_str().unwrap().starts_with("https://"));
    assert!(body["title"].is_string());
    body
}
