//! The delivery-service's settings: one struct filled from environment
//! variables with local defaults, validated at start-up. Listed with defaults in
//! docs/CONFIGURATION.md, generated from these reads and the [`SETTINGS`]
//! descriptions (the shared variables are described by the crates that own them).

use std::{net::SocketAddr, time::Duration};

use database::DatabaseSettings;
use messaging::{ConsumerConfig, SqsSettings};
use outbox::RelayConfig;
use settings::Env;

/// The local database's name, used when `DATABASE_URL` is unset.
pub const DEFAULT_DATABASE: &str = "orderflow_delivery";

/// The delivery-service's own variables, for the configuration reference.
pub const SETTINGS: &[settings::Doc] = &[
    settings::Doc::tuning("SHIP_AFTER", "simulated delay before a shipment ships (0 is allowed)"),
    settings::Doc::tuning("DELIVER_AFTER", "simulated delay before a shipped parcel is delivered (0 is allowed)"),
    settings::Doc::tuning("STEP_JITTER", "random extra delay per step, up to this"),
    settings::Doc::tuning(
        "SCHEDULER_INTERVAL",
        "longest sleep between looks for due shipments (the scheduler sleeps until the earliest timer, and a new shipment due sooner wakes it)",
    ),
    settings::Doc::tuning("SCHEDULER_BATCH", "due shipments advanced per transaction"),
    settings::Doc::tuning(
        "SCHEDULER_RETRY_AFTER",
        "when a shipment whose step failed is tried again (the others move on)",
    ),
    settings::Doc::development("CONSUMER_ENABLED", "consume the orders queue in this process"),
    settings::Doc::development("SCHEDULER_ENABLED", "advance due shipments in this process"),
];

#[derive(Debug, Clone)]
pub struct Settings {
    /// Health, metrics and the internal read API (`HTTP_ADDR`).
    pub http_addr: SocketAddr,
    /// The delivery database (`DATABASE_*`).
    pub database: DatabaseSettings,
    /// SQS endpoint and region (`SQS_ENDPOINT_URL`, `AWS_REGION`, `SQS_TIMEOUT`).
    pub sqs: SqsSettings,
    /// Create both queues with their DLQs at start-up (`SQS_CREATE_QUEUES`; development).
    pub sqs_create_queues: bool,
    /// Receives before a message moves to its DLQ, when creating queues (`SQS_MAX_RECEIVE_COUNT`).
    pub sqs_max_receive_count: u32,
    /// Where `order-created` events come from (`ORDERS_QUEUE`).
    pub orders_queue: String,
    /// Where status events go (`DELIVERY_STATUS_QUEUE`).
    pub status_queue: String,
    /// Reading the orders queue (`CONSUMER_POLLERS`, `CONSUMER_WAIT_TIME`,
    /// `CONSUMER_VISIBILITY_TIMEOUT`).
    pub consumer: ConsumerConfig,
    /// Delay from `PROCESSING` to `SHIPPED` (`SHIP_AFTER`).
    pub ship_after: Duration,
    /// Delay from `SHIPPED` to `DELIVERED` (`DELIVER_AFTER`).
    pub deliver_after: Duration,
    /// Random extra delay added to each step, up to this (`STEP_JITTER`).
    pub step_jitter: Duration,
    /// How often the scheduler looks for due shipments (`SCHEDULER_INTERVAL`).
    pub scheduler_interval: Duration,
    /// Shipments advanced per scheduler transaction (`SCHEDULER_BATCH`).
    pub scheduler_batch: u32,
    /// When a shipment whose step failed is tried again (`SCHEDULER_RETRY_AFTER`).
    pub scheduler_retry_after: Duration,
    /// Outbox relay tuning (`OUTBOX_POLL_INTERVAL`, `OUTBOX_BREAKER_COOLDOWN`, `OUTBOX_RELAY_CONCURRENCY`,
    /// `OUTBOX_LEASE`, `OUTBOX_MAX_ATTEMPTS`).
    pub relay: RelayConfig,
    /// Which loops run in this process (`CONSUMER_ENABLED`, `SCHEDULER_ENABLED`,
    /// `OUTBOX_RELAY_ENABLED`); tests drive them step by step instead.
    pub consumer_enabled: bool,
    pub scheduler_enabled: bool,
    pub relay_enabled: bool,
    /// Longest HTTP request (`HTTP_REQUEST_TIMEOUT`).
    pub request_timeout: Duration,
    /// Limits of the HTTP listener against slow, idle and numerous clients
    /// (`HTTP_HEADER_READ_TIMEOUT`, `HTTP_IDLE_TIMEOUT`, `HTTP_MAX_CONNECTIONS`).
    pub serve: web::serve::ServeSettings,
    /// Longest time from SIGTERM to exit (`SHUTDOWN_TIMEOUT`).
    pub shutdown_timeout: Duration,
    /// How long applied event ids stay in the inbox (`INBOX_RETENTION`); past
    /// SQS's longest retention (14 days) a message cannot be redelivered.
    pub inbox_retention: Duration,
}

impl Settings {
    pub fn from_env(mut env: Env) -> Result<Self, settings::ConfigError> {
        let orders_queue: String = env.get("ORDERS_QUEUE", "orders-queue.fifo".to_owned());
        let s = Settings {
            http_addr: env.get("HTTP_ADDR", SocketAddr::from(([127, 0, 0, 1], 8081))),
            database: DatabaseSettings::from_env(&mut env, DEFAULT_DATABASE, 8),
            sqs: SqsSettings::from_env(&mut env),
            sqs_create_queues: env.flag("SQS_CREATE_QUEUES", false),
            sqs_max_receive_count: env.get("SQS_MAX_RECEIVE_COUNT", 5),
            consumer: ConsumerConfig::from_env(&mut env, orders_queue.clone()),
            orders_queue,
            status_queue: env.get("DELIVERY_STATUS_QUEUE", "delivery-status-queue.fifo".to_owned()),
            ship_after: env.duration("SHIP_AFTER", Duration::from_secs(3)),
            deliver_after: env.duration("DELIVER_AFTER", Duration::from_secs(3)),
            step_jitter: env.duration("STEP_JITTER", Duration::from_millis(500)),
            scheduler_interval: env.duration("SCHEDULER_INTERVAL", Duration::from_millis(250)),
            scheduler_batch: env.get("SCHEDULER_BATCH", 50),
            scheduler_retry_after: env.duration("SCHEDULER_RETRY_AFTER", Duration::from_secs(30)),
            relay: RelayConfig::from_env(&mut env),
            consumer_enabled: env.flag("CONSUMER_ENABLED", true),
            scheduler_enabled: env.flag("SCHEDULER_ENABLED", true),
            relay_enabled: env.flag("OUTBOX_RELAY_ENABLED", true),
            request_timeout: env.duration("HTTP_REQUEST_TIMEOUT", Duration::from_secs(10)),
            serve: web::serve::ServeSettings::from_env(&mut env),
            shutdown_timeout: env.duration("SHUTDOWN_TIMEOUT", Duration::from_secs(20)),
            inbox_retention: env.duration("INBOX_RETENTION", Duration::from_secs(14 * 24 * 3600)),
        };
        for (name, queue) in [("ORDERS_QUEUE", &s.orders_queue), ("DELIVERY_STATUS_QUEUE", &s.status_queue)] {
            if !queue.ends_with(".fifo") {
                env.invalid(name, "must name a FIFO queue (ending in .fifo)");
            }
        }
        if s.scheduler_batch == 0 {
            env.invalid("SCHEDULER_BATCH", "must be at least 1");
        }
        if s.serve.idle_timeout <= s.request_timeout {
            env.invalid("HTTP_IDLE_TIMEOUT", "must be longer than HTTP_REQUEST_TIMEOUT");
        }
        env.finish()?;
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_suit_the_local_demo() {
        let s = Settings::from_env(Env::from_pairs::<_, &str, &str>([])).unwrap();
        assert_eq!(s.http_addr.port(), 8081);
        assert_eq!(s.status_queue, "delivery-status-queue.fifo");
        assert_eq!(s.ship_after, Duration::from_secs(3));
    }

    #[test]
    fn names_every_bad_variable() {
        let err = Settings::from_env(Env::from_pairs([
            ("DELIVERY_STATUS_QUEUE", "status"),
            ("CONSUMER_WAIT_TIME", "30s"),
            ("SHIP_AFTER", "soon"),
        ]))
        .unwrap_err()
        .to_string();
        for name in ["DELIVERY_STATUS_QUEUE", "CONSUMER_WAIT_TIME", "SHIP_AFTER"] {
            assert!(err.contains(name), "{name} missing from {err}");
        }
    }
}
