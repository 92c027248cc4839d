//! Shipments: the status machine (`PROCESSING -> SHIPPED -> DELIVERED`, only
//! forward) and the simulated carrier assignment. Pure logic; no I/O.

use serde::Serialize;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ShipmentStatus {
    Processing,
    Shipped,
    Delivered,
}

impl ShipmentStatus {
    /// Every status, in order.
    pub const ALL: [ShipmentStatus; 3] =
        [ShipmentStatus::Processing, ShipmentStatus::Shipped, ShipmentStatus::Delivered];

    pub fn as_str(self) -> &'static str {
        match self {
            ShipmentStatus::Processing => "PROCESSING",
            ShipmentStatus::Shipped => "SHIPPED",
            ShipmentStatus::Delivered => "DELIVERED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "PROCESSING" => Some(ShipmentStatus::Processing),
            "SHIPPED" => Some(ShipmentStatus::Shipped),
            "DELIVERED" => Some(ShipmentStatus::Delivered),
            _ => None,
        }
    }

    /// The status a due shipment moves to, if any.
    pub fn next(self) -> Option<Self> {
        match self {
            ShipmentStatus::Processing => Some(ShipmentStatus::Shipped),
            ShipmentStatus::Shipped => Some(ShipmentStatus::Delivered),
            ShipmentStatus::Delivered => None,
        }
    }
}

const CARRIERS: [&str; 4] = ["DHL", "UPS", "FedEx", "Royal Mail"];

/// The simulated carrier for a shipment: stable per shipment.
pub fn carrier_for(shipment_id: Uuid) -> &'static str {
    CARRIERS[(shipment_id.as_u128() % CARRIERS.len() as u128) as usize]
}

/// A tracking number: `OF` and 16 upper-case hex digits of the shipment id's random bits.
pub fn tracking_number_for(shipment_id: Uuid) -> String {
    format!("OF{:016X}", shipment_id.as_u128() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moves_only_forward_and_ends_at_delivered() {
        assert_eq!(ShipmentStatus::Processing.next(), Some(ShipmentStatus::Shipped));
        assert_eq!(ShipmentStatus::Shipped.next(), Some(ShipmentStatus::Delivered));
        assert_eq!(ShipmentStatus::Delivered.next(), None);
        for s in [ShipmentStatus::Processing, ShipmentStatus::Shipped, ShipmentStatus::Delivered] {
            assert_eq!(ShipmentStatus::parse(s.as_str()), Some(s));
        }
    }

    #[test]
    fn carrier_and_tracking_are_stable_per_shipment() {
        let id = Uuid::now_v7();
        assert_eq!(carrier_for(id), carrier_for(id));
        let tracking = tracking_number_for(id);
        assert_eq!(tracking.len(), 18);
        assert!(tracking.starts_with("OF"));
        assert_ne!(tracking, tracking_number_for(Uuid::now_v7()));
    }
}
