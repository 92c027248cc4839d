//! The delivery-service: takes `order-created` events from `orders-queue.fifo`,
//! runs one shipment per order through `PROCESSING -> SHIPPED -> DELIVERED` by
//! durable timers, and publishes each change to `delivery-status-queue.fifo`.
//!
//! Reading order: [`startup`] builds the [`Application`] from [`config::Settings`];
//! [`http`] is the operator API; [`consume`] handles incoming events;
//! [`scheduler`] advances shipments; [`domain`] holds the status machine;
//! [`storage`] the SQL; [`janitor`] the housekeeping; [`metrics`] declares every
//! metric. The consumer loop, inbox and outbox relay are shared crates.

pub mod config;
pub mod consume;
pub mod domain;
pub mod http;
pub mod janitor;
pub mod metrics;
pub mod scheduler;
pub mod startup;
pub mod storage;

pub use config::Settings;
pub use startup::Application;
pub use storage::MIGRATOR;
