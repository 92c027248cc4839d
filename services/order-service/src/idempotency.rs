//! The Redis fast path of request idempotency.
//!
//! One round trip per order: `SET key <pending> NX GET PX <in-flight ttl>`
//! either claims the key (nil back) or returns what holds it: a pending claim
//! (another request with that key is in flight: 409, or 422 if its body
//! differs) or a finished response (replayed without touching PostgreSQL).
//! The finished response is written after the commit, off the request path.
//!
//! PostgreSQL's unique `(customer_id, key)` is the durable backstop, so Redis
//! may be down, flushed or slow: every call has a short timeout, failures are
//! logged and skipped for a few seconds (no call per request to a dead server),
//! and [`Idempotency::healthy`] feeds `/readyz`.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicI64, Ordering},
    },
    time::Duration,
};

use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::storage::orders::StoredResponse;

/// What Redis knows about a key.
#[derive(Debug)]
pub enum Claim {
    /// This request holds the key now.
    Claimed,
    /// Another request with the key is in flight; its request hash.
    InFlight { request_hash: String },
    /// The key's request finished; replay this.
    Done(StoredResponse),
    /// Redis could not answer; go on with PostgreSQL alone.
    Unavailable,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
enum Entry {
    Pending { request_hash: String },
    Done(StoredResponse),
}

/// How long a pending claim lives if its request dies without finishing.
const IN_FLIGHT_TTL: Duration = Duration::from_secs(30);
/// After a Redis failure, skip Redis for this long before trying again.
const SKIP_AFTER_FAILURE: Duration = Duration::from_secs(2);

#[derive(Clone)]
pub struct Idempotency {
    conn: Option<ConnectionManager>,
    prefix: String,
    timeout: Duration,
    skip_until_ms: Arc<AtomicI64>,
    healthy: Arc<AtomicBool>,
}

impl Idempotency {
    /// `conn` is `None` when the Redis URL itself was unusable.
    pub fn new(conn: Option<ConnectionManager>, prefix: String, timeout: Duration) -> Self {
        let healthy = Arc::new(AtomicBool::new(conn.is_some()));
        Self { conn, prefix, timeout, skip_until_ms: Arc::default(), healthy }
    }

    fn redis_key(&self, customer_id: Uuid, key: &str) -> String {
        format!("{}idem:{customer_id}:{key}", self.prefix)
    }

    /// Was the last Redis call successful?
    pub fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Runs one command unless Redis is being skipped; records health.
    async fn call<T: redis::FromRedisValue>(&self, cmd: redis::Cmd) -> Option<T> {
        let conn = self.conn.as_ref()?;
        let now = chrono::Utc::now().timestamp_millis();
        if now < self.skip_until_ms.load(Ordering::Relaxed) {
            return None;
        }
        let mut conn = conn.clone();
        let result = tokio::time::timeout(self.timeout, cmd.query_async::<T>(&mut conn)).await;
        match result {
            Ok(Ok(value)) => {
                if !self.healthy.swap(true, Ordering::Relaxed) {
                    tracing::info!("Redis reachable again; idempotency fast path restored");
                }
                Some(value)
            }
            failure => {
                let why = match failure {
                    Ok(Err(e)) => e.to_string(),
                    _ => format!("no answer within {:?}", self.timeout),
                };
                if self.healthy.swap(false, Ordering::Relaxed) {
                    tracing::warn!(error = %why, "Redis unavailable; idempotency continues on PostgreSQL alone");
                }
                crate::metrics::REDIS_ERRORS.as_counter().increment(1);
                self.skip_until_ms.store(now + SKIP_AFTER_FAILURE.as_millis() as i64, Ordering::Relaxed);
                None
            }
        }
    }

    /// Claims `key` for a request with `request_hash`, or says who holds it.
    pub async fn claim(&self, customer_id: Uuid, key: &str, request_hash: &str) -> Claim {
        let pending =
            serde_json::to_string(&Entry::Pending { request_hash: request_hash.to_owned() }).expect("serialisable");
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.redis_key(customer_id, key))
            .arg(pending)
            .arg("NX")
            .arg("GET")
            .arg("PX")
            .arg(IN_FLIGHT_TTL.as_millis() as u64);
        match self.call::<Option<String>>(cmd).await {
            None => Claim::Unavailable,
            Some(None) => Claim::Claimed,
            Some(Some(held)) => match serde_json::from_str(&held) {
                Ok(Entry::Pending { request_hash }) => Claim::InFlight { request_hash },
                Ok(Entry::Done(stored)) => Claim::Done(stored),
                Err(_) => Claim::Unavailable,
            },
        }
    }

    /// Records the finished response for `ttl`, off the request path.
    pub fn complete(&self, customer_id: Uuid, key: &str, stored: StoredResponse, ttl: Duration) {
        let (this, key) = (self.clone(), key.to_owned());
        tokio::spawn(async move { this.store(customer_id, &key, stored, ttl).await });
    }

    /// Records the finished response for `ttl` now.
    pub async fn store(&self, customer_id: Uuid, key: &str, stored: StoredResponse, ttl: Duration) {
        let value = serde_json::to_string(&Entry::Done(stored)).expect("serialisable");
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.redis_key(customer_id, key)).arg(value).arg("PX").arg(ttl.as_millis().max(1) as u64);
        self.call::<()>(cmd).await;
    }

    /// Drops a claim whose request failed, so a retry can go ahead at once.
    pub fn release(&self, customer_id: Uuid, key: &str) {
        let this = self.clone();
        let redis_key = self.redis_key(customer_id, key);
        tokio::spawn(async move {
            let mut cmd = redis::cmd("DEL");
            cmd.arg(redis_key);
            this.call::<()>(cmd).await;
        });
    }

    /// A `PING` for `/readyz`.
    pub async fn ping(&self) -> Result<(), String> {
        if self.conn.is_none() {
            return Err("REDIS_URL is not usable".into());
        }
        // Health checks bypass the skip window: they are how recovery is noticed.
        self.skip_until_ms.store(0, Ordering::Relaxed);
        match self.call::<String>(redis::cmd("PING")).await {
            Some(_) => Ok(()),
            None => Err("no answer to PING".into()),
        }
    }
}
