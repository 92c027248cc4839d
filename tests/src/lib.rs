//! The end-to-end harness: the real `order-service` and `delivery-service`
//! binaries as processes, on their own databases and queues, against the real
//! PostgreSQL, Redis and SQS emulator. Set `E2E_LOGS=1` to see the services'
//! logs.
//!
//! The binaries are the ones cargo built beside this test (`cargo test
//! --workspace` builds every binary before running any test).
//!
//! `TEST_DATABASE_POOLER=127.0.0.1:6432` runs the same suite with both services'
//! pools going through PgBouncer in transaction mode (`make test-pgbouncer`).

use std::{path::PathBuf, time::Duration};

use serde_json::{Value, json};
pub use testkit::ServiceProcess as Service;
use testkit::{Spawn, TestDb, TestQueues};
use uuid::Uuid;

pub const ORDERS: &str = "orders-queue.fifo";
pub const STATUS: &str = "delivery-status-queue.fifo";

/// `target/<profile>/`, where cargo put the service binaries.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe.parent().and_then(|deps| deps.parent()).expect("target/<profile>/deps/<test>");
    let path = dir.join(name);
    assert!(path.exists(), "{} is missing: build the services first (cargo build --bins)", path.display());
    path
}

/// Starts `binary` with `args` and `env` and waits until it is ready.
pub async fn start(binary: &str, args: &[&str], env: Vec<(String, String)>, log_level: &str) -> Service {
    let service = Spawn::new(bin(binary), env).args(args).log_level(log_level).start().await;
    service.wait_ready(Duration::from_secs(30)).await;
    service
}

/// Options of a system under test.
pub struct Options {
    /// order-service processes; the first applies status events, the others
    /// only serve (so a stream on them sees changes applied elsewhere).
    pub order_replicas: usize,
    pub ship_after: &'static str,
    pub deliver_after: &'static str,
    /// Extra environment for every service process.
    pub env: Vec<(String, String)>,
    /// Apply status events in a separate `order-service status-consumer`
    /// process instead of in the first API replica.
    pub separate_status_consumer: bool,
    /// `RUST_LOG` of the services (`E2E_LOGS` overrides it).
    pub log_level: &'static str,
    /// A password to put in the database URLs (trust authentication ignores
    /// it), to check that connection strings never reach the logs.
    pub db_password: Option<&'static str>,
    /// Where the services reach SQS and Redis instead of the shared servers
    /// (a [`testkit::Proxy`] in front of them, for outages).
    pub sqs_endpoint: Option<String>,
    pub redis_url: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            order_replicas: 1,
            ship_after: "300ms",
            deliver_after: "300ms",
            env: Vec::new(),
            separate_status_consumer: false,
            log_level: "warn",
            db_password: None,
            sqs_endpoint: None,
            redis_url: None,
        }
    }
}

/// Both services, their databases and queues, and a registered client.
pub struct System {
    pub orders_db: TestDb,
    pub delivery_db: TestDb,
    pub queues: TestQueues,
    pub order_services: Vec<Service>,
    /// The `order-service status-consumer` process, when started separately.
    pub status_consumer: Option<Service>,
    pub delivery: Service,
    pub client_id: String,
    pub client_secret: String,
    pub customer_id: Uuid,
    /// The JWT signing key the order-services use.
    pub signing_key: String,
    pub http: reqwest::Client,
    /// How each process was started, to start it again after a kill.
    delivery_env: Vec<(String, String)>,
    order_envs: Vec<Vec<(String, String)>>,
    log_level: &'static str,
}

impl System {
    pub async fn start(options: Options) -> Self {
        telemetry::init_test_logging("warn");
        let orders_db = TestDb::create(&order_service::storage::MIGRATOR).await.expect("orders database");
        let delivery_db = TestDb::create(&delivery_service::MIGRATOR).await.expect("delivery database");
        let mut queues = TestQueues::new().await;
        queues.create(ORDERS, 5).await;
        queues.create(STATUS, 5).await;
        let key = order_service::auth::keys::generate_private_key_pem();
        let customer_id = Uuid::now_v7();
        let pool = orders_db.pool().await;
        let client =
            order_service::auth::clients::create(&pool, customer_id, "orders:read orders:write", None, None, false)
                .await
                .expect("register client");

        let common = |db: &TestDb| {
            let mut env = options.env.clone();
            env.extend(database_env(&match options.db_password {
                Some(pw) => db.url.replacen("postgres://postgres@", &format!("postgres://postgres:{pw}@"), 1),
                None => db.url.clone(),
            }));
            env.extend([
                ("SQS_ENDPOINT_URL".to_owned(), options.sqs_endpoint.clone().unwrap_or_else(testkit::sqs_endpoint)),
                ("ORDERS_QUEUE".to_owned(), queues.name(ORDERS)),
                ("DELIVERY_STATUS_QUEUE".to_owned(), queues.name(STATUS)),
                ("CONSUMER_WAIT_TIME".to_owned(), "2s".to_owned()),
                ("OUTBOX_POLL_INTERVAL".to_owned(), "200ms".to_owned()),
                ("OUTBOX_LEASE".to_owned(), "3s".to_owned()),
            ]);
            env
        };
        let delivery = {
            let mut env = common(&delivery_db);
            env.extend([
                ("SHIP_AFTER".to_owned(), options.ship_after.to_owned()),
                ("DELIVER_AFTER".to_owned(), options.deliver_after.to_owned()),
                ("STEP_JITTER".to_owned(), "100ms".to_owned()),
                ("SCHEDULER_INTERVAL".to_owned(), "100ms".to_owned()),
            ]);
            (start("delivery-service", &[], env.clone(), options.log_level).await, env)
        };
        let (delivery, delivery_env) = delivery;
        let mut order_envs = Vec::new();
        let mut order_services = Vec::new();
        let mut status_consumer = None;
        for replica in 0..options.order_replicas.max(1) {
            let mut env = common(&orders_db);
            env.extend([
                ("JWT_PRIVATE_KEY".to_owned(), key.clone()),
                ("REDIS_URL".to_owned(), options.redis_url.clone().unwrap_or_else(testkit::redis_url)),
                ("REDIS_KEY_PREFIX".to_owned(), format!("{}:", queues.prefix)),
                ("STATUS_CONSUMER_ENABLED".to_owned(), (replica == 0 && !options.separate_status_consumer).to_string()),
            ]);
            order_services.push(start("order-service", &[], env.clone(), options.log_level).await);
            order_envs.push(env.clone());
            if replica == 0 && options.separate_status_consumer {
                // The consumer role needs no signing key and no Redis: it gets none.
                env.retain(|(k, _)| !matches!(k.as_str(), "JWT_PRIVATE_KEY" | "REDIS_URL" | "REDIS_KEY_PREFIX"));
                status_consumer = Some(start("order-service", &["status-consumer"], env, options.log_level).await);
            }
        }
        Self {
            orders_db,
            delivery_db,
            queues,
            order_services,
            status_consumer,
            delivery,
            client_id: client.client_id,
            client_secret: client.client_secret,
            customer_id,
            signing_key: key,
            http: reqwest::Client::new(),
            delivery_env,
            order_envs,
            log_level: options.log_level,
        }
    }

    /// SIGKILLs the delivery-service and starts it again on the same database
    /// and queues; returns when the new process is ready.
    pub async fn kill_and_restart_delivery(&mut self) {
        self.delivery.kill();
        self.delivery.exited(Duration::from_secs(10)).await;
        self.delivery = start("delivery-service", &[], self.delivery_env.clone(), self.log_level).await;
    }

    /// SIGKILLs order-service replica `i` and starts it again (on a new port:
    /// see its `url`); returns when the new process is ready.
    pub async fn kill_and_restart_order_service(&mut self, i: usize) {
        self.order_services[i].kill();
        self.order_services[i].exited(Duration::from_secs(10)).await;
        self.order_services[i] = start("order-service", &[], self.order_envs[i].clone(), self.log_level).await;
    }

    /// The first order-service's base URL.
    pub fn api(&self) -> &str {
        &self.order_services[0].url
    }

    pub async fn token(&self) -> String {
        testkit::token(self.api(), &self.client_id, &self.client_secret).await
    }

    /// Places an order with a distinct SKU; returns the created order.
    pub async fn place(&self, token: &str, sku: &str) -> Value {
        let resp = self
            .http
            .post(format!("{}/orders", self.api()))
            .bearer_auth(token)
            .json(&order_body(sku))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), reqwest::StatusCode::CREATED);
        resp.json().await.unwrap()
    }

    /// Scrapes `/metrics` of `base`.
    pub async fn metrics(&self, base: &str) -> String {
        self.http.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap()
    }

    pub async fn order(&self, token: &str, id: &str) -> Value {
        self.http
            .get(format!("{}/orders/{id}", self.api()))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

/// The database environment of a service process whose database is `url`:
/// `DATABASE_URL`, and `DATABASE_POOLER` when `TEST_DATABASE_POOLER` names a
/// transaction-pooling PgBouncer (it must route every database to the same
/// PostgreSQL, e.g. `* = host=127.0.0.1 port=5432`).
pub fn database_env(url: &str) -> Vec<(String, String)> {
    let mut env = vec![("DATABASE_URL".to_owned(), url.to_owned())];
    if let Some(pooler) = std::env::var("TEST_DATABASE_POOLER").ok().filter(|p| !p.trim().is_empty()) {
        env.push(("DATABASE_POOLER".to_owned(), pooler));
    }
    env
}

pub fn order_body(sku: &str) -> Value {
    json!({
        "currency": "EUR",
        "items": [{"sku": sku, "quantity": 2, "unit_price_minor": 1299}],
        "shipping_address": {"name": "Ada Lovelace", "line1": "12 Example Street", "line2": null,
                             "city": "London", "postal_code": "N1 9GU", "country": "GB"}
    })
}

/// The value of the Prometheus sample `name` whose labels include `labels`.
pub fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
        if metric != name {
            return None;
        }
        labels.iter().all(|(k, v)| rest.contains(&format!("{k}=\"{v}\""))).then(|| value.parse().ok())?
    })
}
