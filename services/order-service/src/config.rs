//! The order-service's settings: one struct, filled from environment variables
//! with defaults for local development, validated at start-up. Every variable is
//! listed, with its default and meaning, in docs/CONFIGURATION.md, generated
//! from these reads and the [`SETTINGS`] descriptions.

use std::{net::SocketAddr, time::Duration};

use database::DatabaseSettings;
use messaging::{ConsumerConfig, SqsSettings};
use outbox::RelayConfig;
use settings::{Env, ExposeSecret, SecretString};

use crate::auth::clients::ClientSecretKey;

/// The local database's name, used when `DATABASE_URL` is unset.
pub const DEFAULT_DATABASE: &str = "orderflow_orders";

/// The order-service's own variables, for the configuration reference (the
/// shared ones are described by the crates that own them).
pub const SETTINGS: &[settings::Doc] = &[
    settings::Doc::development(
        "STATUS_CONSUMER_ENABLED",
        "apply status events in the API process; the chart turns it off when `order-service status-consumer` runs as its own Deployment",
    ),
    settings::Doc::deployer(
        "REDIS_URL",
        "Redis of the idempotency fast path; optional at run time (PostgreSQL alone keeps requests idempotent while it is down)",
    ),
    settings::Doc::tuning("REDIS_TIMEOUT", "longest wait for one Redis call before going on without it"),
    settings::Doc::tuning("REDIS_KEY_PREFIX", "prefix of every Redis key"),
    settings::Doc::deployer(
        "JWT_PRIVATE_KEY",
        "PEM bundle of Ed25519 keys: the first private key signs, all verify (rotation); `order-service keys generate` makes one",
    ),
    settings::Doc::tuning("JWT_ISSUER", "`iss` issued and required"),
    settings::Doc::tuning("JWT_AUDIENCE", "`aud` issued and required"),
    settings::Doc::tuning("JWT_TTL", "access token lifetime"),
    settings::Doc::tuning("IDEMPOTENCY_TTL", "how long an `Idempotency-Key` is remembered"),
    settings::Doc::tuning("DUPLICATE_WINDOW", "double-submit window for orders without a key (`0` disables)"),
    settings::Doc::tuning(
        "INTAKE_WRITERS",
        "transactions placing orders at once; concurrent requests share them (group commit); by default two thirds of the per-request connections, at most 8",
    ),
    settings::Doc::tuning("INTAKE_MAX_BATCH", "most orders one intake transaction places"),
    settings::Doc::tuning("SSE_MAX_STREAMS", "live streams per process (past it 503)"),
    settings::Doc::tuning(
        "SSE_MAX_STREAMS_PER_CUSTOMER",
        "live streams one customer may hold per process (past it 429)",
    ),
    settings::Doc::tuning("SSE_KEEPALIVE", "interval of a live stream's keep-alive comments"),
    settings::Doc::tuning("SSE_RECHECK", "a live stream re-reads its order at least this often (jittered by ±25 %)"),
    settings::Doc::tuning("AUTH_HASH_CONCURRENCY", "argon2 checks at once (each ~19 MiB)"),
    settings::Doc::tuning(
        "AUTH_HASH_WAIT",
        "longest wait for an argon2 slot; then 503 `temporarily_unavailable` with `Retry-After`",
    ),
    settings::Doc::tuning(
        "AUTH_RATE_PER_CLIENT",
        "token requests per minute per client id (all at once, then evenly); over it 429 `slow_down` with `Retry-After`; `0` = no limit",
    ),
    settings::Doc::deployer(
        "AUTH_RATE_PER_ADDRESS",
        "token requests per minute per source address as the socket sees it: behind a proxy or ingress that is the proxy's, so raise it or set `0` there (forwarded headers are not trusted)",
    ),
    settings::Doc::deployer(
        "CLIENT_SECRET_KEY",
        "at least 32 bytes (`order-service keys client-secret-key` prints one): generated client secrets are stored as HMAC-SHA-256 under it and checked without argon2; unset, every secret is argon2-hashed; changing it invalidates HMAC-stored secrets",
    ),
    settings::Doc::tuning(
        "CLIENT_REVOCATION_REFRESH",
        "how often the set of disabled clients is re-read (1 s to 60 s); their tokens stop within this",
    ),
];

/// Which job a process does; each reads (and demands) only what it uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `order-service` / `serve`: the API, the outbox relay and (unless
    /// `STATUS_CONSUMER_ENABLED=false`) the status consumer.
    Api,
    /// `order-service status-consumer`: only applies status events; needs no
    /// signing key and no Redis.
    StatusConsumer,
}

/// Everything an order-service process needs to run.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where HTTP listens (`HTTP_ADDR`). Port 0 picks a free port (tests).
    pub http_addr: SocketAddr,
    /// The orders database (`DATABASE_URL`, `DATABASE_MAX_CONNECTIONS`,
    /// `DATABASE_MIGRATE`: off when the controller or a `migrate` job owns
    /// schema changes, `DATABASE_ACQUIRE_TIMEOUT`).
    pub database: DatabaseSettings,
    /// SQS endpoint and region (`SQS_ENDPOINT_URL`, `AWS_REGION`, `SQS_TIMEOUT`).
    pub sqs: SqsSettings,
    /// Create the queues (with DLQs) at start-up (`SQS_CREATE_QUEUES`): for
    /// tests; locally and in Kubernetes the controller owns the queues.
    pub sqs_create_queues: bool,
    /// Receives before a message moves to its DLQ, when creating queues (`SQS_MAX_RECEIVE_COUNT`).
    pub sqs_max_receive_count: u32,
    /// Queue that `order-created` events go to (`ORDERS_QUEUE`).
    pub orders_queue: String,
    /// Reading `delivery-status-queue.fifo` (`DELIVERY_STATUS_QUEUE`,
    /// `CONSUMER_POLLERS`, `CONSUMER_WAIT_TIME`, `CONSUMER_VISIBILITY_TIMEOUT`).
    pub status_consumer: ConsumerConfig,
    /// Apply status events in this process (`STATUS_CONSUMER_ENABLED`); turn it
    /// off on the API when a separate `order-service status-consumer` does it.
    pub status_consumer_enabled: bool,
    /// Longest time one HTTP request may take (`HTTP_REQUEST_TIMEOUT`).
    pub request_timeout: Duration,
    /// Limits of the HTTP listener against slow, idle and numerous clients
    /// (`HTTP_HEADER_READ_TIMEOUT`, `HTTP_IDLE_TIMEOUT`, `HTTP_MAX_CONNECTIONS`).
    pub serve: web::serve::ServeSettings,
    /// Longest time from SIGTERM to exit (`SHUTDOWN_TIMEOUT`).
    pub shutdown_timeout: Duration,
    /// How long applied event ids stay in the inbox (`INBOX_RETENTION`); past
    /// SQS's longest retention (14 days) a message cannot be redelivered.
    pub inbox_retention: Duration,
    /// The order API; `None` in a status-consumer process.
    pub api: Option<ApiSettings>,
}

/// What only the order API needs.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// Token signing and verification.
    pub jwt: JwtSettings,
    /// Redis for the idempotency fast path (`REDIS_URL`). Optional at run time:
    /// when it is down, PostgreSQL alone keeps requests idempotent.
    pub redis_url: SecretString,
    /// Longest wait for one Redis call before going on without it (`REDIS_TIMEOUT`).
    pub redis_timeout: Duration,
    /// Prefix of every Redis key this service writes (`REDIS_KEY_PREFIX`).
    pub redis_key_prefix: String,
    /// How long an `Idempotency-Key` is remembered (`IDEMPOTENCY_TTL`).
    pub idempotency_ttl: Duration,
    /// Window in which an identical order without a key is taken for a double
    /// submit and answered with the first order (`DUPLICATE_WINDOW`; 0 disables).
    pub duplicate_window: Duration,
    /// Transactions placing orders at once (`INTAKE_WRITERS`; by default two
    /// thirds of the hot connections, at most 8): concurrent `POST /orders`
    /// requests share them (group commit), so a few suffice.
    pub intake_writers: usize,
    /// Most orders placed by one transaction (`INTAKE_MAX_BATCH`).
    pub intake_max_batch: usize,
    /// Live streams allowed open in one process (`SSE_MAX_STREAMS`).
    pub sse_max_streams: usize,
    /// Live streams one customer may hold open in one process
    /// (`SSE_MAX_STREAMS_PER_CUSTOMER`).
    pub sse_max_streams_per_customer: usize,
    /// Keep-alive comment interval of live streams (`SSE_KEEPALIVE`).
    pub sse_keepalive: Duration,
    /// A live stream re-reads its order at least this often (`SSE_RECHECK`).
    pub sse_recheck: Duration,
    /// Argon2 verifications allowed at once (`AUTH_HASH_CONCURRENCY`); each takes
    /// ~19 MiB, so this bounds the token endpoint's memory.
    pub hash_concurrency: usize,
    /// Longest wait for an argon2 slot before answering 503 (`AUTH_HASH_WAIT`).
    pub hash_wait: Duration,
    /// Token requests per minute per client id (`AUTH_RATE_PER_CLIENT`; 0: no limit).
    pub rate_per_client: u32,
    /// Token requests per minute per source address, as the socket sees it
    /// (`AUTH_RATE_PER_ADDRESS`; 0: no limit, e.g. behind a proxy).
    pub rate_per_address: u32,
    /// Key of HMAC-stored generated client secrets (`CLIENT_SECRET_KEY` or
    /// `CLIENT_SECRET_KEY_FILE`); without it every secret is argon2-hashed.
    pub client_secret_key: Option<ClientSecretKey>,
    /// How often the set of disabled clients is re-read (`CLIENT_REVOCATION_REFRESH`).
    pub revocation_refresh: Duration,
    /// Run the outbox relay in this process (`OUTBOX_RELAY_ENABLED`).
    pub relay_enabled: bool,
    /// Outbox relay tuning (`OUTBOX_POLL_INTERVAL`, `OUTBOX_BREAKER_COOLDOWN`, `OUTBOX_RELAY_CONCURRENCY`,
    /// `OUTBOX_LEASE`, `OUTBOX_MAX_ATTEMPTS`).
    pub relay: RelayConfig,
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

fn fifo_queue(env: &mut Env, name: &str, default: &str) -> String {
    let queue: String = env.get(name, default.to_owned());
    if !queue.ends_with(".fifo") {
        env.invalid(name, "must name a FIFO queue (ending in .fifo)");
    }
    queue
}

impl Settings {
    /// Reads and validates every variable `role` uses; the error names each bad one.
    pub fn from_env(mut env: Env, role: Role) -> Result<Self, settings::ConfigError> {
        let status_queue = fifo_queue(&mut env, "DELIVERY_STATUS_QUEUE", "delivery-status-queue.fifo");
        let mut settings = Settings {
            http_addr: env.get("HTTP_ADDR", SocketAddr::from(([127, 0, 0, 1], 8080))),
            database: DatabaseSettings::from_env(&mut env, DEFAULT_DATABASE, 16),
            sqs: SqsSettings::from_env(&mut env),
            sqs_create_queues: env.flag("SQS_CREATE_QUEUES", false),
            sqs_max_receive_count: env.get("SQS_MAX_RECEIVE_COUNT", 5),
            orders_queue: fifo_queue(&mut env, "ORDERS_QUEUE", "orders-queue.fifo"),
            status_consumer: ConsumerConfig::from_env(&mut env, status_queue),
            status_consumer_enabled: role == Role::StatusConsumer || env.flag("STATUS_CONSUMER_ENABLED", true),
            request_timeout: env.duration("HTTP_REQUEST_TIMEOUT", Duration::from_secs(10)),
            serve: web::serve::ServeSettings::from_env(&mut env),
            shutdown_timeout: env.duration("SHUTDOWN_TIMEOUT", Duration::from_secs(20)),
            inbox_retention: env.duration("INBOX_RETENTION", Duration::from_secs(14 * 24 * 3600)),
            api: None,
        };
        // Reads, intake and status events share these (see `DatabaseSettings::split`).
        let hot = settings.database.hot_connections() as usize;
        if role == Role::Api {
            settings.api = Some(ApiSettings::from_env(&mut env, hot));
        }
        if settings.serve.idle_timeout <= settings.request_timeout {
            env.invalid("HTTP_IDLE_TIMEOUT", "must be longer than HTTP_REQUEST_TIMEOUT");
        }
        if let Some(api) = &settings.api {
            if settings.serve.idle_timeout <= api.sse_keepalive {
                env.invalid("HTTP_IDLE_TIMEOUT", "must be longer than SSE_KEEPALIVE, or idle live streams are cut");
            }
            if api.intake_writers > hot {
                env.invalid(
                    "INTAKE_WRITERS",
                    format!(
                        "must be at most {hot}, the connections of the per-request paths \
                         (DATABASE_MAX_CONNECTIONS less the shared pool's)"
                    ),
                );
            }
            if settings.serve.max_connections <= api.sse_max_streams {
                env.invalid(
                    "HTTP_MAX_CONNECTIONS",
                    "must be more than SSE_MAX_STREAMS, or streams take every connection",
                );
            }
        }
        env.finish()?;
        Ok(settings)
    }
}

impl ApiSettings {
    /// `hot`: the per-request paths' connections, two thirds of which (up to 8)
    /// place orders by default.
    fn from_env(env: &mut Env, hot: usize) -> Self {
        let api = ApiSettings {
            jwt: JwtSettings::from_env(env),
            redis_url: env.secret_or("REDIS_URL", "redis://127.0.0.1:6379"),
            redis_timeout: env.duration("REDIS_TIMEOUT", Duration::from_millis(200)),
            redis_key_prefix: env.get("REDIS_KEY_PREFIX", "orderflow:".to_owned()),
            idempotency_ttl: env.duration("IDEMPOTENCY_TTL", Duration::from_secs(24 * 3600)),
            duplicate_window: env.duration("DUPLICATE_WINDOW", Duration::from_secs(10)),
            intake_writers: env.get("INTAKE_WRITERS", (hot * 2 / 3).clamp(1, 8)),
            intake_max_batch: env.get("INTAKE_MAX_BATCH", 64),
            sse_max_streams: env.get("SSE_MAX_STREAMS", 1000),
            sse_max_streams_per_customer: env.get("SSE_MAX_STREAMS_PER_CUSTOMER", 20),
            sse_keepalive: env.duration("SSE_KEEPALIVE", Duration::from_secs(15)),
            sse_recheck: env.duration("SSE_RECHECK", Duration::from_secs(10)),
            hash_concurrency: env.get("AUTH_HASH_CONCURRENCY", 2),
            hash_wait: env.duration("AUTH_HASH_WAIT", Duration::from_secs(2)),
            rate_per_client: env.get("AUTH_RATE_PER_CLIENT", 30),
            rate_per_address: env.get("AUTH_RATE_PER_ADDRESS", 300),
            client_secret_key: client_secret_key(env),
            revocation_refresh: env.duration("CLIENT_REVOCATION_REFRESH", Duration::from_secs(20)),
            relay_enabled: env.flag("OUTBOX_RELAY_ENABLED", true),
            relay: RelayConfig::from_env(env),
        };
        if api.sse_max_streams_per_customer == 0 {
            env.invalid("SSE_MAX_STREAMS_PER_CUSTOMER", "must be at least 1");
        }
        if api.intake_writers == 0 {
            env.invalid("INTAKE_WRITERS", "must be at least 1");
        }
        if api.intake_max_batch == 0 {
            env.invalid("INTAKE_MAX_BATCH", "must be at least 1");
        }
        if api.hash_concurrency == 0 {
            env.invalid("AUTH_HASH_CONCURRENCY", "must be at least 1");
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(60)).contains(&api.revocation_refresh) {
            env.invalid("CLIENT_REVOCATION_REFRESH", "must be from 1s to 60s (disabled clients stop within a minute)");
        }
        api
    }
}

/// `CLIENT_SECRET_KEY` (at least 32 bytes of text) or the contents of the file
/// named by `CLIENT_SECRET_KEY_FILE` (surrounding whitespace trimmed); `None`
/// when neither is set. Also read by `order-service clients create`.
pub fn client_secret_key(env: &mut Env) -> Option<ClientSecretKey> {
    let material = env.secret_or_file("CLIENT_SECRET_KEY")?;
    let material = material.expose_secret().trim();
    let key = ClientSecretKey::new(material.as_bytes());
    if key.is_none() {
        env.invalid(
            "CLIENT_SECRET_KEY",
            format!(
                "must be at least {} bytes (`order-service keys client-secret-key` prints one)",
                crate::auth::clients::MIN_KEY_LEN
            ),
        );
    }
    key
}

impl JwtSettings {
    fn from_env(env: &mut Env) -> Self {
        let keys_pem = env
            .required_secret_or_file(
                "JWT_PRIVATE_KEY",
                "an Ed25519 private key in PEM; `order-service keys generate` makes one",
            )
            .unwrap_or_else(|| SecretString::from(String::new()));
        let jwt = JwtSettings {
            keys_pem,
            issuer: env.get("JWT_ISSUER", "orderflow".to_owned()),
            audience: env.get("JWT_AUDIENCE", "orderflow-api".to_owned()),
            ttl: env.duration("JWT_TTL", Duration::from_secs(86_400)),
        };
        if jwt.ttl.is_zero() {
            env.invalid("JWT_TTL", "must be longer than 0s");
        }
        jwt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_need_only_a_signing_key() {
        let s = Settings::from_env(Env::from_pairs([("JWT_PRIVATE_KEY", "pem")]), Role::Api).unwrap();
        assert_eq!(s.http_addr.port(), 8080);
        assert_eq!(s.orders_queue, "orders-queue.fifo");
        assert_eq!(s.api.unwrap().duplicate_window, Duration::from_secs(10));
    }

    #[test]
    fn a_status_consumer_needs_no_signing_key_and_ignores_api_settings() {
        let s = Settings::from_env(
            Env::from_pairs([
                ("REDIS_URL", "not a url"),
                ("STATUS_CONSUMER_ENABLED", "false"),
                ("IDEMPOTENCY_TTL", "soon"),
            ]),
            Role::StatusConsumer,
        )
        .unwrap();
        assert!(s.api.is_none());
        assert!(s.status_consumer_enabled, "the status-consumer role always consumes");
    }

    #[test]
    fn every_bad_variable_is_named_and_secrets_stay_hidden() {
        let err = Settings::from_env(
            Env::from_pairs([
                ("HTTP_ADDR", "nowhere"),
                ("ORDERS_QUEUE", "orders"),
                ("DATABASE_URL", "mysql://root:hunter2@db/x"),
            ]),
            Role::Api,
        )
        .unwrap_err()
        .to_string();
        for name in ["HTTP_ADDR", "ORDERS_QUEUE", "DATABASE_URL", "JWT_PRIVATE_KEY"] {
            assert!(err.contains(name), "{name} not named in: {err}");
        }
        assert!(!err.contains("hunter2"));
        let s = Settings::from_env(
            Env::from_pairs([("JWT_PRIVATE_KEY", "pem"), ("DATABASE_URL", "postgres://u:hunter2@h/d")]),
            Role::Api,
        )
        .unwrap();
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    #[test]
    fn intake_writers_leave_connections_for_the_rest() {
        let s = Settings::from_env(Env::from_pairs([("JWT_PRIVATE_KEY", "pem")]), Role::Api).unwrap();
        let api = s.api.unwrap();
        assert_eq!((api.intake_writers, api.intake_max_batch), (8, 64));
        let small_pool = Settings::from_env(
            Env::from_pairs([("JWT_PRIVATE_KEY", "pem"), ("DATABASE_MAX_CONNECTIONS", "6")]),
            Role::Api,
        )
        .unwrap();
        assert_eq!(small_pool.api.unwrap().intake_writers, 2, "two thirds of the 4 hot connections by default");
        let err = Settings::from_env(
            Env::from_pairs([
                ("JWT_PRIVATE_KEY", "pem"),
                ("DATABASE_MAX_CONNECTIONS", "4"),
                ("INTAKE_WRITERS", "4"),
                ("INTAKE_MAX_BATCH", "0"),
            ]),
            Role::Api,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("INTAKE_WRITERS: must be at most 2"), "{err}");
        assert!(err.contains("INTAKE_MAX_BATCH"), "{err}");
    }
}
