//! Payloads of the three orderflow events, and the value types they share with
//! the order API (line items, shipping address). With the `openapi` feature the
//! shared types also describe themselves for the OpenAPI document, so the API and
//! the wire format cannot drift apart.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::EventPayload;

/// One line of an order: a product, how many, and the price of one unit.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct LineItem {
    /// Stock keeping unit: 1..=64 of `[A-Za-z0-9._-]`.
    #[cfg_attr(feature = "openapi", schema(example = "SKU-123"))]
    pub sku: String,
    /// 1..=999.
    pub quantity: u32,
    /// Price of one unit in minor units of the order's currency, 0..=100000000.
    pub unit_price_minor: i64,
}

/// Where an order ships to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Address {
    pub name: String,
    pub line1: String,
    pub line2: Option<String>,
    pub city: String,
    pub postal_code: String,
    /// ISO 3166-1 alpha-2 country code, upper case.
    #[cfg_attr(feature = "openapi", schema(example = "GB"))]
    pub country: String,
}

/// `order-created`, on `orders-queue.fifo`: an order was accepted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderCreated {
    pub customer_id: Uuid,
    pub currency: String,
    pub items: Vec<LineItem>,
    pub total_minor: i64,
    pub shipping_address: Address,
}

impl EventPayload for OrderCreated {
    const EVENT_TYPE: &'static str = "order-created";
}

/// `order-shipped`, on `delivery-status-queue.fifo`: the shipment left the warehouse.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderShipped {
    pub shipment_id: Uuid,
    pub carrier: String,
    pub tracking_number: String,
    pub shipped_at: DateTime<Utc>,
}

impl EventPayload for OrderShipped {
    const EVENT_TYPE: &'static str = "order-shipped";
}

/// `order-delivered`, on `delivery-status-queue.fifo`: the customer has the parcel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderDelivered {
    pub shipment_id: Uuid,
    pub delivered_at: DateTime<Utc>,
}

impl EventPayload for OrderDelivered {
    const EVENT_TYPE: &'static str = "order-delivered";
}
