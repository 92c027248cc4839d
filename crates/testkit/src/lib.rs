//! Test fixtures over the real servers: a throw-away PostgreSQL database per
//! test, uniquely named SQS queues per test, a TCP proxy that can cut a
//! connection on demand (to play an SQS or Redis outage), a private
//! `redis-server` that a test may stop, a private PostgreSQL that takes only
//! TLS (its CA made by the test), service binaries as real processes, and
//! [`eventually`], the one way tests wait for a condition.
//!
//! Everything a fixture creates is removed when it is dropped, so parallel tests
//! never see each other's state and a run leaves nothing behind. Endpoints come
//! from `TEST_DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`)
//! and `TEST_SQS_ENDPOINT` (default `http://127.0.0.1:9324`).

pub mod db;
pub mod process;
pub mod proxy;
pub mod queues;
pub mod redis_server;
pub mod tls_postgres;
pub mod upgrade;

pub use db::TestDb;
pub use process::{ServiceProcess, Spawn};
pub use proxy::Proxy;
pub use queues::TestQueues;
pub use redis_server::RedisServer;
pub use tls_postgres::TlsPostgres;

/// The local PostgreSQL's admin URL (database `postgres`) the tests connect to.
pub fn database_url() -> String {
    std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// The SQS emulator the tests talk to.
pub fn sqs_endpoint() -> String {
    std::env::var("TEST_SQS_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:9324".into())
}

/// The Redis the tests share (keys are namespaced per test by the caller).
pub fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A short random tag for names: database, queue and key prefixes.
pub fn unique_tag() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_owned()
}

/// Polls `check` every `every` until it returns `Some`, for at most `within`.
/// Tests wait for conditions this way, never by sleeping a fixed time and
/// hoping the condition holds by then.
pub async fn eventually<T, F, Fut>(within: std::time::Duration, every: std::time::Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(every).await;
    }
}

/// An access token from a real order-service at `base` for a client
/// (OAuth2 client credentials, HTTP Basic), for tests over real processes.
pub async fn token(base: &str, client_id: &str, client_secret: &str) -> String {
    let response: serde_json::Value = reqwest::Client::new()
        .post(format!("{base}/auth/token"))
        .basic_auth(client_id, Some(client_secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("the token endpoint answers")
        .json()
        .await
        .expect("a JSON token response");
    response["access_token"].as_str().unwrap_or_else(|| panic!("no token issued: {response}")).to_owned()
}

/// Runs a clean-up future to completion from a `Drop`, whether or not a tokio
/// runtime is running on this thread.
///
/// Tests that use the SQS fixtures run on the multi-thread runtime: the SDK
/// pools connections process-wide, and a pooled connection is driven by a task
/// of the runtime that opened it, which must keep running while this blocks.
pub(crate) fn block_on_cleanup<F: std::future::Future<Output = ()> + Send + 'static>(f: F) {
    let _ = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("cleanup runtime").block_on(f)
    })
    .join();
}
