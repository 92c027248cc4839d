//! Integration tests of the order-service against the real PostgreSQL, Redis
//! and SQS emulator on loopback. Each test starts its own application on port 0
//! with its own database and queues (see `helpers`).

mod abuse;
mod auth;
mod cli;
mod events;
mod health;
mod helpers;
mod idempotency;
mod intake;
mod jwt;
mod orders;
mod outbox;
mod status;
