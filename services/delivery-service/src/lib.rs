//! The delivery-service: takes `order-created` events from `orders-queue.fifo`,
//! runs one shipment per order through `PROCESSING -> SHIPPED -> DELIVERED` by
//! durable timers, and publishes each change to `delivery-status-queue.fifo`.
//!
//! Reading order: [`startup`] builds the [`Application`] from [`config::Settings`];
//! [`consume`] handles incoming events; [`scheduler`] advances shipments;
//! [`storage`] holds the SQL; [`domain`] the status machine; [`http`] the
//! operator API. The consumer loop, outbox relay and inbox are shared crates.

pub mod config;
pub mod consume;
pub mod domain;
pub mod http;
pub mod scheduler;
pub mod startup;
pub mod storage;

pub use config::Settings;
pub use startup::{Application, MIGRATOR};
