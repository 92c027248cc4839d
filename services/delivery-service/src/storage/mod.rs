//! PostgreSQL access of the delivery-service: shipments with their history and
//! timers ([`shipments`]). The outbox relay's queries are in the `outbox` crate,
//! the inbox's in `messaging::inbox`.

pub mod shipments;

pub use shipments::{
    Applied, NewShipment, ShipmentView, StepPlan, advance_due, create_shipments, due_after, next_due, shipment_by_order,
};

/// Migrations of the delivery database (embedded by the `database` crate).
pub use database::migrations::DELIVERY as MIGRATOR;
