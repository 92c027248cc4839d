//! The order domain: what a valid order is ([`validation`]), how it is
//! represented to clients ([`order`]), and the code lists it checks ([`iso`]).
//! Pure logic; no I/O.

pub mod iso;
pub mod order;
pub mod validation;

pub use order::{HistoryEntry, Order, OrderStatus, Shipment};
pub use validation::{NewOrder, validate_new_order};
