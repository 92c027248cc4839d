//! PostgreSQL access of the order-service: orders with their history and
//! idempotency records ([`orders`]). Clients are in `auth::clients`; the outbox
//! relay's queries are in the `outbox` crate.

pub mod orders;

/// Migrations of the orders database (embedded by the `database` crate).
pub use database::migrations::ORDERS as MIGRATOR;
