//! The order-service: order intake over HTTP with OAuth2 client credentials,
//! idempotency, and a transactional outbox to `orders-queue.fifo`.
//!
//! Reading order: [`startup`] builds the [`Application`] from [`config::Settings`];
//! [`http`] holds the routes and handlers; [`domain`] the order rules; [`auth`]
//! keys, tokens and clients; [`idempotency`] the Redis fast path; [`storage`]
//! the SQL; [`status`] applies delivery status events; [`live`] fans order
//! changes out to Server-Sent Event streams; [`janitor`] the housekeeping;
//! [`metrics`] declares every metric. Shared mechanics (consumer loop, inbox,
//! outbox relay, SQS, telemetry, shutdown) come from the workspace's crates.

pub mod auth;
pub mod config;
pub mod domain;
pub mod http;
pub mod idempotency;
pub mod janitor;
pub mod live;
pub mod metrics;
pub mod startup;
pub mod status;
pub mod storage;

pub use config::Settings;
pub use startup::Application;
