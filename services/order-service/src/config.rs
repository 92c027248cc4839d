//! The order-service's settings: one struct, filled from environment variables
//! with defaults for local development, validated at start-up. Every variable is
//! listed, with its default and meaning, in the README's configuration table.

use std::{net::SocketAddr, time::Duration};

use database::DatabaseSettings;
use messaging::{ConsumerConfig, SqsSettings};
use outbox::RelayConfig;
use settings::{Env, SecretString};

/// Everything the order-service needs to run.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where the HTTP API listens (`HTTP_ADDR`). Port 0 picks a free port (tests).
    pub http_addr: SocketAddr,
    /// The orders database (`DATABASE_URL`, `DATABASE_MAX_CONNECTIONS`,
    /// `DATABASE_MIGRATE`: off when a separate `order-service migrate` job owns
    /// schema changes, `DATABASE_ACQUIRE_TIMEOUT`).
    pub database: DatabaseSettings,
    /// Redis for the idempotency fast path (`REDIS_URL`). Optional at run time:
    /// when it is down, PostgreSQL alone keeps requests idempotent.
    pub redis_url: SecretString,
    /// Longest wait for one Redis call before going on without it (`REDIS_TIMEOUT`).
    pub redis_timeout: Duration,
    /// Prefix of every Redis key this service writes (`REDIS_KEY_PREFIX`).
    pub redis_key_prefix: String,
    /// SQS endpoint and region (`SQS_ENDPOINT_URL`, `AWS_REGION`).
    pub sqs: SqsSettings,
    /// Create the queues (with DLQs) at start-up (`SQS_CREATE_QUEUES`): for local
    /// development; in Kubernetes the controller owns the queues.
    pub sqs_create_queues: bool,
    /// Receives before a message moves to its DLQ, when creating queues (`SQS_MAX_RECEIVE_COUNT`).
    pub sqs_max_receive_count: u32,
    /// Queue that `order-created` events go to (`ORDERS_QUEUE`).
    pub orders_queue: String,
    /// Reading `delivery-status-queue.fifo` (`DELIVERY_STATUS_QUEUE`,
    /// `CONSUMER_POLLERS`, `CONSUMER_WAIT_TIME`, `CONSUMER_VISIBILITY_TIMEOUT`).
    pub status_consumer: ConsumerConfig,
    /// Apply status events in this process (`STATUS_CONSUMER_ENABLED`); turn it
    /// off when a separate `order-service status-consumer` Deployment does it.
    pub status_consumer_enabled: bool,
    /// Serve the order API (off in `order-service status-consumer`).
    pub api_enabled: bool,
    /// Live streams allowed open in one process (`SSE_MAX_STREAMS`).
    pub sse_max_streams: usize,
    /// Keep-alive comment interval of live streams (`SSE_KEEPALIVE`).
    pub sse_keepalive: Duration,
    /// A live stream re-reads its order at least this often (`SSE_RECHECK`).
    pub sse_recheck: Duration,
    /// Token signing and verification.
    pub jwt: JwtSettings,
    /// How long an `Idempotency-Key` is remembered (`IDEMPOTENCY_TTL`).
    pub idempotency_ttl: Duration,
    /// Window in which an identical order without a key is taken for a double
    /// submit and answered with the first order (`DUPLICATE_WINDOW`; 0 disables).
    pub duplicate_window: Duration,
    /// Longest time one HTTP request may take (`HTTP_REQUEST_TIMEOUT`).
    pub request_timeout: Duration,
    /// Longest time from SIGTERM to exit (`SHUTDOWN_TIMEOUT`).
    pub shutdown_timeout: Duration,
    /// How long applied event ids stay in the inbox (`INBOX_RETENTION`); past
    /// SQS's longest retention (14 days) a message cannot be redelivered.
    pub inbox_retention: Duration,
    /// Run the outbox relay in this process (`OUTBOX_RELAY_ENABLED`).
    pub relay_enabled: bool,
    /// Outbox relay tuning (`OUTBOX_POLL_INTERVAL`, `OUTBOX_BREAKER_COOLDOWN`, `OUTBOX_RELAY_CONCURRENCY`).
    pub relay: RelayConfig,
    /// Argon2 verifications allowed at once (`AUTH_HASH_CONCURRENCY`); each takes
    /// ~19 MiB, so this bounds the token endpoint's memory.
    pub hash_concurrency: usize,
}

/// How tokens are signed and checked.
#[derive(Debug, Clone)]
pub struct JwtSettings {
    /// PEM bundle of Ed25519 keys (`JWT_PRIVATE_KEY`, or a path in `JWT_PRIVATE_KEY_FILE`).
    /// The first private key signs; every key (private or public) verifies and is
    /// published in the JWKS, which is how keys rotate without downtime.
    pub keys_pem: SecretString,
    /// `iss` of issued tokens, required on presented ones (`JWT_ISSUER`).
    pub issuer: String,
    /// `aud` of issued tokens, required on presented ones (`JWT_AUDIENCE`).
    pub audience: String,
    /// Lifetime of an access token (`JWT_TTL`).
    pub ttl: Duration,
}

impl Settings {
    /// Reads and validates every variable; the error names each bad one.
    pub fn from_env(mut env: Env) -> Result<Self, settings::ConfigError> {
        let keys_pem = match (env.secret("JWT_PRIVATE_KEY"), env.optional::<String>("JWT_PRIVATE_KEY_FILE")) {
            (Some(pem), None) => pem,
            (None, Some(path)) => match std::fs::read_to_string(&path) {
                Ok(pem) => SecretString::from(pem),
                Err(e) => {
                    env.invalid("JWT_PRIVATE_KEY_FILE", format!("cannot read {path}: {e}"));
                    SecretString::from(String::new())
                }
            },
            (Some(_), Some(_)) => {
                env.invalid("JWT_PRIVATE_KEY_FILE", "set either JWT_PRIVATE_KEY or JWT_PRIVATE_KEY_FILE, not both");
                SecretString::from(String::new())
            }
            (None, None) => {
                env.invalid(
                    "JWT_PRIVATE_KEY",
                    "required (an Ed25519 private key in PEM; `order-service keys generate` makes one), or set JWT_PRIVATE_KEY_FILE",
                );
                SecretString::from(String::new())
            }
        };
        let status_queue: String = env.get("DELIVERY_STATUS_QUEUE", "delivery-status-queue.fifo".to_owned());
        let settings = Settings {
            http_addr: env.get("HTTP_ADDR", SocketAddr::from(([127, 0, 0, 1], 8080))),
            database: DatabaseSettings::from_env(&mut env, "orderflow_orders", 16),
            redis_url: env.secret("REDIS_URL").unwrap_or_else(|| "redis://127.0.0.1:6379".into()),
            redis_timeout: env.duration("REDIS_TIMEOUT", Duration::from_millis(200)),
            redis_key_prefix: env.get("REDIS_KEY_PREFIX", "orderflow:".to_owned()),
            sqs: SqsSettings::from_env(&mut env),
            sqs_create_queues: env.flag("SQS_CREATE_QUEUES", false),
            sqs_max_receive_count: env.get("SQS_MAX_RECEIVE_COUNT", 5),
            orders_queue: env.get("ORDERS_QUEUE", "orders-queue.fifo".to_owned()),
            status_consumer: ConsumerConfig::from_env(&mut env, status_queue.clone()),
            status_consumer_enabled: env.flag("STATUS_CONSUMER_ENABLED", true),
            api_enabled: true,
            sse_max_streams: env.get("SSE_MAX_STREAMS", 1000),
            sse_keepalive: env.duration("SSE_KEEPALIVE", Duration::from_secs(15)),
            sse_recheck: env.duration("SSE_RECHECK", Duration::from_secs(10)),
            jwt: JwtSettings {
                keys_pem,
                issuer: env.get("JWT_ISSUER", "orderflow".to_owned()),
                audience: env.get("JWT_AUDIENCE", "orderflow-api".to_owned()),
                ttl: env.duration("JWT_TTL", Duration::from_secs(86_400)),
            },
            idempotency_ttl: env.duration("IDEMPOTENCY_TTL", Duration::from_secs(24 * 3600)),
            duplicate_window: env.duration("DUPLICATE_WINDOW", Duration::from_secs(10)),
            request_timeout: env.duration("HTTP_REQUEST_TIMEOUT", Duration::from_secs(10)),
            shutdown_timeout: env.duration("SHUTDOWN_TIMEOUT", Duration::from_secs(20)),
            relay_enabled: env.flag("OUTBOX_RELAY_ENABLED", true),
            relay: RelayConfig::from_env(&mut env),
            hash_concurrency: env.get("AUTH_HASH_CONCURRENCY", 2),
            inbox_retention: env.duration("INBOX_RETENTION", Duration::from_secs(14 * 24 * 3600)),
        };
        if !settings.orders_queue.ends_with(".fifo") {
            env.invalid("ORDERS_QUEUE", "must name a FIFO queue (ending in .fifo)");
        }
        if !status_queue.ends_with(".fifo") {
            env.invalid("DELIVERY_STATUS_QUEUE", "must name a FIFO queue (ending in .fifo)");
        }
        if settings.jwt.ttl.is_zero() {
            env.invalid("JWT_TTL", "must be longer than 0s");
        }
        if settings.hash_concurrency == 0 {
            env.invalid("AUTH_HASH_CONCURRENCY", "must be at least 1");
        }
        env.finish()?;
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_need_only_a_signing_key() {
        let s = Settings::from_env(Env::from_pairs([("JWT_PRIVATE_KEY", "pem")])).unwrap();
        assert_eq!(s.http_addr.port(), 8080);
        assert_eq!(s.orders_queue, "orders-queue.fifo");
        assert_eq!(s.duplicate_window, Duration::from_secs(10));
    }

    #[test]
    fn every_bad_variable_is_named_and_secrets_stay_hidden() {
        let err = Settings::from_env(Env::from_pairs([
            ("HTTP_ADDR", "nowhere"),
            ("ORDERS_QUEUE", "orders"),
            ("DATABASE_URL", "mysql://root:hunter2@db/x"),
        ]))
        .unwrap_err()
        .to_string();
        for name in ["HTTP_ADDR", "ORDERS_QUEUE", "DATABASE_URL", "JWT_PRIVATE_KEY"] {
            assert!(err.contains(name), "{name} not named in: {err}");
        }
        assert!(!err.contains("hunter2"));
        let s = Settings::from_env(Env::from_pairs([
            ("JWT_PRIVATE_KEY", "pem"),
            ("DATABASE_URL", "postgres://u:hunter2@h/d"),
        ]))
        .unwrap();
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
