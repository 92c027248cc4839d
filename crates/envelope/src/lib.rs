//! The versioned JSON envelope every orderflow event travels in, and the typed
//! payloads of the events the services exchange (`order-created`,
//! `order-shipped`, `order-delivered`).
//!
//! This crate is the wire contract of `docs/API.md` ("Queue messages") and
//! nothing else: it knows no queue, database or HTTP framework, so both services
//! and any future consumer can depend on it cheaply. Decoding is strict: an
//! unknown event type or schema version is an error the caller must route to the
//! dead-letter queue, never a silent skip.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use uuid::Uuid;

pub mod payload;

pub use payload::{Address, LineItem, OrderCreated, OrderDelivered, OrderShipped};

/// Schema version written by this build for every event type. A consumer that
/// meets a higher version refuses the message instead of misreading it.
pub const EVENT_VERSION: u32 = 1;

/// The envelope as it appears on the queue, with the payload still undecoded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope<P = serde_json::Value> {
    pub event_id: Uuid,
    pub event_type: String,
    pub event_version: u32,
    pub occurred_at: DateTime<Utc>,
    pub order_id: Uuid,
    pub payload: P,
}

/// A payload type that knows its own event name.
pub trait EventPayload: Serialize + DeserializeOwned {
    /// The `event_type` string, e.g. `order-created`.
    const EVENT_TYPE: &'static str;
}

impl<P: EventPayload> Envelope<P> {
    /// Wraps a payload in a fresh envelope with a new time-ordered event id.
    pub fn new(order_id: Uuid, occurred_at: DateTime<Utc>, payload: P) -> Self {
        Self {
            event_id: Uuid::now_v7(),
            event_type: P::EVENT_TYPE.to_owned(),
            event_version: EVENT_VERSION,
            occurred_at,
            order_id,
            payload,
        }
    }

    /// Serialises the envelope to the JSON text that goes into the message body.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("envelope types always serialise")
    }
}

/// Why a message body could not be turned into a known event.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("message body is not a valid event envelope: {0}")]
    Malformed(#[source] serde_json::Error),
    #[error("unknown event type `{0}`")]
    UnknownType(String),
    #[error("unsupported version {version} of event `{event_type}` (this build reads up to {EVENT_VERSION})")]
    UnsupportedVersion { event_type: String, version: u32 },
    #[error("payload of `{event_type}` does not match its schema: {source}")]
    BadPayload {
        event_type: String,
        #[source]
        source: serde_json::Error,
    },
}

/// Every event this build understands, decoded.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    OrderCreated(Envelope<OrderCreated>),
    OrderShipped(Envelope<OrderShipped>),
    OrderDelivered(Envelope<OrderDelivered>),
}

impl Event {
    /// Decodes a message body, checking the event type and schema version.
    pub fn decode(body: &str) -> Result<Self, DecodeError> {
        let raw: Envelope = serde_json::from_str(body).map_err(DecodeError::Malformed)?;
        if raw.event_version == 0 || raw.event_version > EVENT_VERSION {
            return Err(DecodeError::UnsupportedVersion { event_type: raw.event_type, version: raw.event_version });
        }
        match raw.event_type.as_str() {
            OrderCreated::EVENT_TYPE => typed(raw).map(Event::OrderCreated),
            OrderShipped::EVENT_TYPE => typed(raw).map(Event::OrderShipped),
            OrderDelivered::EVENT_TYPE => typed(raw).map(Event::OrderDelivered),
            _ => Err(DecodeError::UnknownType(raw.event_type)),
        }
    }

    pub fn event_id(&self) -> Uuid {
        match self {
            Event::OrderCreated(e) => e.event_id,
            Event::OrderShipped(e) => e.event_id,
            Event::OrderDelivered(e) => e.event_id,
        }
    }

    pub fn event_type(&self) -> &str {
        match self {
            Event::OrderCreated(e) => &e.event_type,
            Event::OrderShipped(e) => &e.event_type,
            Event::OrderDelivered(e) => &e.event_type,
        }
    }

    pub fn order_id(&self) -> Uuid {
        match self {
            Event::OrderCreated(e) => e.order_id,
            Event::OrderShipped(e) => e.order_id,
            Event::OrderDelivered(e) => e.order_id,
        }
    }
}

impl DecodeError {
    /// A short, low-cardinality name for metrics labels.
    /// Every [`DecodeError::kind`], for metrics that list them up front.
    pub const KINDS: [&'static str; 4] = ["malformed", "unknown_type", "unsupported_version", "bad_payload"];

    pub fn kind(&self) -> &'static str {
        match self {
            DecodeError::Malformed(_) => "malformed",
            DecodeError::UnknownType(_) => "unknown_type",
            DecodeError::UnsupportedVersion { .. } => "unsupported_version",
            DecodeError::BadPayload { .. } => "bad_payload",
        }
    }
}

fn typed<P: EventPayload>(raw: Envelope) -> Result<Envelope<P>, DecodeError> {
    let payload = serde_json::from_value(raw.payload)
        .map_err(|source| DecodeError::BadPayload { event_type: raw.event_type.clone(), source })?;
    Ok(Envelope {
        event_id: raw.event_id,
        event_type: raw.event_type,
        event_version: raw.event_version,
        occurred_at: raw.occurred_at,
        order_id: raw.order_id,
        payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn created() -> OrderCreated {
        OrderCreated {
            customer_id: Uuid::now_v7(),
            currency: "EUR".into(),
            items: vec![LineItem { sku: "SKU-1".into(), quantity: 2, unit_price_minor: 1299 }],
            total_minor: 2598,
            shipping_address: Address {
                name: "Ada".into(),
                line1: "12 Example Street".into(),
                line2: None,
                city: "London".into(),
                postal_code: "N1 9GU".into(),
                country: "GB".into(),
            },
        }
    }

    #[test]
    fn round_trips_through_the_wire_format() {
        let env = Envelope::new(Uuid::now_v7(), Utc::now(), created());
        let json = env.to_json();
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["event_type"], "order-created");
        assert_eq!(value["event_version"], 1);
        assert_eq!(value["payload"]["total_minor"], 2598);
        assert_eq!(Event::decode(&json).unwrap(), Event::OrderCreated(env));
    }

    #[test]
    fn refuses_unknown_types_versions_and_garbage() {
        let mut env = Envelope::new(Uuid::now_v7(), Utc::now(), created());
        env.event_type = "order-teleported".into();
        assert!(matches!(Event::decode(&env.to_json()), Err(DecodeError::UnknownType(t)) if t == "order-teleported"));

        let mut env = Envelope::new(Uuid::now_v7(), Utc::now(), created());
        env.event_version = 2;
        assert!(matches!(Event::decode(&env.to_json()), Err(DecodeError::UnsupportedVersion { version: 2, .. })));

        assert!(matches!(Event::decode("not json"), Err(DecodeError::Malformed(_))));

        let mut value = serde_json::to_value(Envelope::new(Uuid::now_v7(), Utc::now(), created())).unwrap();
        value["payload"]["items"] = serde_json::json!("nope");
        assert!(matches!(Event::decode(&value.to_string()), Err(DecodeError::BadPayload { .. })));
    }

    #[test]
    fn every_decode_error_kind_is_listed() {
        let mut unknown = Envelope::new(Uuid::now_v7(), Utc::now(), created());
        unknown.event_type = "order-teleported".into();
        let mut newer = Envelope::new(Uuid::now_v7(), Utc::now(), created());
        newer.event_version = 2;
        let mut bad = serde_json::to_value(Envelope::new(Uuid::now_v7(), Utc::now(), created())).unwrap();
        bad["payload"]["items"] = serde_json::json!("nope");
        let kinds: Vec<&str> = [unknown.to_json(), newer.to_json(), "not json".to_owned(), bad.to_string()]
            .iter()
            .map(|body| Event::decode(body).unwrap_err().kind())
            .collect();
        assert_eq!(kinds.len(), DecodeError::KINDS.len());
        assert!(kinds.iter().all(|k| DecodeError::KINDS.contains(k)), "{kinds:?}");
    }
}
