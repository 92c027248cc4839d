//! An order as clients see it, and its status machine
//! (`PENDING_SHIPMENT -> SHIPPED -> DELIVERED`, only forward).

use chrono::{DateTime, Utc};
use envelope::{Address, LineItem};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderStatus {
    PendingShipment,
    Shipped,
    Delivered,
}

impl OrderStatus {
    /// Every status, in order.
    pub const ALL: [OrderStatus; 3] = [OrderStatus::PendingShipment, OrderStatus::Shipped, OrderStatus::Delivered];

    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::PendingShipment => "PENDING_SHIPMENT",
            OrderStatus::Shipped => "SHIPPED",
            OrderStatus::Delivered => "DELIVERED",
        }
    }

    /// The one status an order may move to from this one.
    pub fn next(self) -> Option<Self> {
        match self {
            OrderStatus::PendingShipment => Some(OrderStatus::Shipped),
            OrderStatus::Shipped => Some(OrderStatus::Delivered),
            OrderStatus::Delivered => None,
        }
    }

    /// The one status an order must be at to move to this one.
    pub fn previous(self) -> Option<Self> {
        OrderStatus::ALL.into_iter().find(|s| s.next() == Some(self))
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "PENDING_SHIPMENT" => Some(OrderStatus::PendingShipment),
            "SHIPPED" => Some(OrderStatus::Shipped),
            "DELIVERED" => Some(OrderStatus::Delivered),
            _ => None,
        }
    }
}

/// Carrier details, known once the order has shipped.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Shipment {
    pub carrier: Option<String>,
    pub tracking_number: Option<String>,
}

/// One status the order has had, with when it took it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HistoryEntry {
    pub status: OrderStatus,
    pub at: DateTime<Utc>,
}

/// The order representation of API.md.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Order {
    pub id: Uuid,
    pub customer_id: Uuid,
    pub status: OrderStatus,
    /// ISO 4217 code.
    #[schema(example = "EUR")]
    pub currency: String,
    pub items: Vec<LineItem>,
    /// Sum of quantity x unit price, in minor units.
    pub total_minor: i64,
    pub shipping_address: Address,
    pub shipment: Shipment,
    /// Every status so far, oldest first; entry n has SSE id n.
    pub history: Vec<HistoryEntry>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A page of the caller's orders.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct OrderPage {
    pub data: Vec<Order>,
    /// Pass as `cursor` to get the next (older) page; null on the last page.
    pub next_cursor: Option<String>,
}
