//! Validation of a `POST /orders` body, field by field.
//!
//! The body is walked as JSON rather than deserialised into a struct, so that
//! one response can name every bad field (with its path, e.g.
//! `items[2].quantity`) and unknown fields, instead of stopping at the first
//! serde error. Text is trimmed before it is checked and stored; its length
//! limit counts the white space around it too. The OpenAPI document states
//! these rules exactly (`http::contract`).

use chrono::{DateTime, Utc};
use envelope::{Address, LineItem};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use uuid::Uuid;
use web::FieldError;

use super::{HistoryEntry, Order, OrderStatus, Shipment, iso};

pub const MAX_ITEMS: usize = 100;
pub const MAX_SKU_LEN: usize = 64;
pub const MAX_QUANTITY: u64 = 999;
pub const MAX_UNIT_PRICE_MINOR: u64 = 100_000_000;
pub const MAX_TEXT_LEN: usize = 200;

/// A validated order request.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct NewOrder {
    pub currency: String,
    pub items: Vec<LineItem>,
    pub shipping_address: Address,
}

impl NewOrder {
    /// Sum of quantity x unit price. Limits keep it far below `i64::MAX`.
    pub fn total_minor(&self) -> i64 {
        self.items.iter().map(|i| i64::from(i.quantity) * i.unit_price_minor).sum()
    }

    /// SHA-256 of the canonical request: currency, items sorted, address. Two
    /// requests with the same hash ask for the same order, whatever their JSON
    /// key order, whitespace or item order.
    pub fn fingerprint(&self) -> [u8; 32] {
        let mut items = self.items.clone();
        items.sort_by(|a, b| (&a.sku, a.quantity, a.unit_price_minor).cmp(&(&b.sku, b.quantity, b.unit_price_minor)));
        let canonical = serde_json::json!([self.currency, items, self.shipping_address]);
        Sha256::digest(canonical.to_string().as_bytes()).into()
    }

    /// The order this request places: `id`, for `customer_id`, placed `now`,
    /// in `PENDING_SHIPMENT`.
    pub fn into_order(self, id: Uuid, customer_id: Uuid, now: DateTime<Utc>) -> Order {
        let total_minor = self.total_minor();
        Order {
            id,
            customer_id,
            status: OrderStatus::PendingShipment,
            currency: self.currency,
            items: self.items,
            total_minor,
            shipping_address: self.shipping_address,
            shipment: Shipment::default(),
            history: vec![HistoryEntry { status: OrderStatus::PendingShipment, at: now }],
            created_at: now,
            updated_at: now,
        }
    }
}

/// Collects field errors while walking the body.
struct Checker {
    errors: Vec<FieldError>,
}

impl Checker {
    fn fail(&mut self, field: &str, message: impl Into<String>) {
        self.errors.push(FieldError::new(field, message));
    }

    fn object<'a>(&mut self, value: &'a Value, path: &str, allowed: &[&str]) -> Option<&'a Map<String, Value>> {
        let Some(map) = value.as_object() else {
            self.fail(path, "must be a JSON object");
            return None;
        };
        for key in map.keys().filter(|k| !allowed.contains(&k.as_str())) {
            self.fail(&join(path, key), "unknown field");
        }
        Some(map)
    }

    /// A required, trimmed, non-empty string of at most `max` characters.
    fn text(&mut self, map: &Map<String, Value>, path: &str, key: &str, max: usize) -> Option<String> {
        let field = join(path, key);
        match map.get(key) {
            None | Some(Value::Null) => {
                self.fail(&field, "is required");
                None
            }
            Some(value) => self.text_value(value, &field, max),
        }
    }

    fn text_value(&mut self, value: &Value, field: &str, max: usize) -> Option<String> {
        let Some(s) = value.as_str() else {
            self.fail(field, "must be a string");
            return None;
        };
        // The limit counts surrounding white space too, as the OpenAPI schema's maxLength does.
        let length = s.chars().count();
        let s = s.trim();
        if s.is_empty() {
            self.fail(field, "must not be empty");
            None
        } else if length > max {
            self.fail(field, format!("must be at most {max} characters"));
            None
        } else if s.chars().any(char::is_control) {
            self.fail(field, "must not contain control characters");
            None
        } else {
            Some(s.to_owned())
        }
    }

    fn integer(&mut self, map: &Map<String, Value>, path: &str, key: &str, min: u64, max: u64) -> Option<u64> {
        let field = join(path, key);
        match map.get(key) {
            None | Some(Value::Null) => self.fail(&field, "is required"),
            // JSON has one number type: 2.0 is the whole number 2 (as JSON Schema says).
            Some(v) => match v.as_u64().or_else(|| whole(v.as_f64()?)) {
                Some(n) if (min..=max).contains(&n) => return Some(n),
                _ if v.is_number() => self.fail(&field, format!("must be a whole number from {min} to {max}")),
                _ => self.fail(&field, "must be a number"),
            },
        }
        None
    }
}

/// `f` as a whole number, if it is one (and not negative).
fn whole(f: f64) -> Option<u64> {
    (f.fract() == 0.0 && (0.0..=9_007_199_254_740_992.0).contains(&f)).then_some(f as u64)
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_owned() } else { format!("{path}.{key}") }
}

fn valid_sku(sku: &str) -> bool {
    sku.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// Checks a parsed body; `Err` lists every problem found.
pub fn validate_new_order(body: &Value) -> Result<NewOrder, Vec<FieldError>> {
    let mut c = Checker { errors: Vec::new() };
    let Some(root) = c.object(body, "", &["currency", "items", "shipping_address"]) else {
        return Err(c.errors);
    };

    let currency = c.text(root, "", "currency", 3).and_then(|code| {
        if iso::is_currency(&code) {
            Some(code)
        } else {
            c.fail("currency", "must be an ISO 4217 currency code, e.g. EUR");
            None
        }
    });

    let mut items = Vec::new();
    match root.get("items") {
        None | Some(Value::Null) => c.fail("items", "is required"),
        Some(Value::Array(list)) if list.is_empty() || list.len() > MAX_ITEMS => {
            c.fail("items", format!("must hold 1 to {MAX_ITEMS} items"))
        }
        Some(Value::Array(list)) => {
            for (i, value) in list.iter().enumerate() {
                let path = format!("items[{i}]");
                let Some(item) = c.object(value, &path, &["sku", "quantity", "unit_price_minor"]) else {
                    continue;
                };
                let sku = c.text(item, &path, "sku", MAX_SKU_LEN).and_then(|sku| {
                    if valid_sku(&sku) {
                        Some(sku)
                    } else {
                        c.fail(&join(&path, "sku"), "may contain only letters, digits, '.', '_' and '-'");
                        None
                    }
                });
                let quantity = c.integer(item, &path, "quantity", 1, MAX_QUANTITY);
                let price = c.integer(item, &path, "unit_price_minor", 0, MAX_UNIT_PRICE_MINOR);
                if let (Some(sku), Some(quantity), Some(price)) = (sku, quantity, price) {
                    items.push(LineItem { sku, quantity: quantity as u32, unit_price_minor: price as i64 });
                }
            }
        }
        Some(_) => c.fail("items", "must be an array"),
    }

    let mut address = None;
    match root.get("shipping_address") {
        None | Some(Value::Null) => c.fail("shipping_address", "is required"),
        Some(value) => {
            let path = "shipping_address";
            if let Some(a) = c.object(value, path, &["name", "line1", "line2", "city", "postal_code", "country"]) {
                let name = c.text(a, path, "name", MAX_TEXT_LEN);
                let line1 = c.text(a, path, "line1", MAX_TEXT_LEN);
                let line2 = match a.get("line2") {
                    None | Some(Value::Null) => Some(None),
                    Some(v) => c.text_value(v, "shipping_address.line2", MAX_TEXT_LEN).map(Some),
                };
                let city = c.text(a, path, "city", MAX_TEXT_LEN);
                let postal_code = c.text(a, path, "postal_code", MAX_TEXT_LEN);
                let country = c.text(a, path, "country", 2).and_then(|code| {
                    if iso::is_country(&code) {
                        Some(code)
                    } else {
                        c.fail("shipping_address.country", "must be an ISO 3166-1 alpha-2 country code, e.g. GB");
                        None
                    }
                });
                if let (Some(name), Some(line1), Some(line2), Some(city), Some(postal_code), Some(country)) =
                    (name, line1, line2, city, postal_code, country)
                {
                    address = Some(Address { name, line1, line2, city, postal_code, country });
                }
            }
        }
    }

    match (currency, address, c.errors.is_empty()) {
        (Some(currency), Some(shipping_address), true) => Ok(NewOrder { currency, items, shipping_address }),
        _ => Err(c.errors),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn valid() -> Value {
        json!({
            "currency": "EUR",
            "items": [{"sku": "SKU-123", "quantity": 2, "unit_price_minor": 1299}],
            "shipping_address": {"name": "Ada Lovelace", "line1": "12 Example Street", "line2": null,
                                 "city": "London", "postal_code": "N1 9GU", "country": "GB"}
        })
    }

    fn fields(body: Value) -> Vec<String> {
        validate_new_order(&body).unwrap_err().into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn accepts_the_contract_example_and_totals_it() {
        let order = validate_new_order(&valid()).unwrap();
        assert_eq!(order.total_minor(), 2598);
        assert_eq!(order.shipping_address.line2, None);
    }

    #[test]
    fn trims_text() {
        let mut body = valid();
        body["shipping_address"]["city"] = json!("  London  ");
        assert_eq!(validate_new_order(&body).unwrap().shipping_address.city, "London");
    }

    #[test]
    fn whole_numbers_written_with_a_fraction_are_whole_numbers() {
        let mut body = valid();
        body["items"][0]["quantity"] = json!(2.0);
        body["items"][0]["unit_price_minor"] = json!(1.299e3);
        assert_eq!(validate_new_order(&body).unwrap().total_minor(), 2598);
        body["items"][0]["quantity"] = json!(2.5);
        assert_eq!(fields(body), ["items[0].quantity"]);
    }

    #[test]
    fn names_every_bad_field_at_once() {
        let body = json!({
            "currency": "EURO",
            "items": [{"sku": "bad sku!", "quantity": 0, "unit_price_minor": 100000001, "colour": "red"},
                      {"sku": "", "quantity": 1000, "unit_price_minor": -1}],
            "shipping_address": {"name": " ", "line1": "x".repeat(201), "city": "London", "postal_code": "N1",
                                 "country": "UK", "line2": ""},
            "customer_id": "00000000-0000-0000-0000-000000000000"
        });
        let mut got = fields(body);
        got.sort();
        let mut want = vec![
            "currency",
            "customer_id",
            "items[0].colour",
            "items[0].quantity",
            "items[0].sku",
            "items[0].unit_price_minor",
            "items[1].quantity",
            "items[1].sku",
            "items[1].unit_price_minor",
            "shipping_address.country",
            "shipping_address.line1",
            "shipping_address.line2",
            "shipping_address.name",
        ];
        want.sort();
        assert_eq!(got, want);
    }

    #[test]
    fn enforces_item_count_and_sku_limits() {
        let mut body = valid();
        body["items"] = json!([]);
        assert_eq!(fields(body.clone()), ["items"]);
        body["items"] = Value::Array(vec![json!({"sku": "A", "quantity": 1, "unit_price_minor": 1}); 101]);
        assert_eq!(fields(body.clone()), ["items"]);
        body["items"] = Value::Array(vec![json!({"sku": "A", "quantity": 1, "unit_price_minor": 1}); 100]);
        assert!(validate_new_order(&body).is_ok());
        body["items"] = json!([{"sku": "S".repeat(65), "quantity": 999, "unit_price_minor": 100000000}]);
        assert_eq!(fields(body.clone()), ["items[0].sku"]);
        body["items"] = json!([{"sku": "S".repeat(64), "quantity": 999, "unit_price_minor": 100000000}]);
        assert!(validate_new_order(&body).is_ok());
    }

    #[test]
    fn rejects_wrong_shapes_and_missing_fields() {
        assert_eq!(fields(json!([1, 2])), [""]);
        let mut got = fields(json!({}));
        got.sort();
        assert_eq!(got, ["currency", "items", "shipping_address"]);
        let mut body = valid();
        body["items"][0]["quantity"] = json!("2");
        body["shipping_address"]["country"] = json!(44);
        let mut got = fields(body);
        got.sort();
        assert_eq!(got, ["items[0].quantity", "shipping_address.country"]);
    }

    #[test]
    fn fingerprint_ignores_key_and_item_order_but_not_content() {
        let a = validate_new_order(&json!({
            "items": [{"sku": "A", "quantity": 1, "unit_price_minor": 5}, {"sku": "B", "quantity": 2, "unit_price_minor": 7}],
            "currency": "EUR", "shipping_address": valid()["shipping_address"].clone()
        }))
        .unwrap();
        let b = validate_new_order(&json!({
            "currency": "EUR", "shipping_address": valid()["shipping_address"].clone(),
            "items": [{"unit_price_minor": 7, "quantity": 2, "sku": "B"}, {"sku": "A", "quantity": 1, "unit_price_minor": 5}]
        }))
        .unwrap();
        assert_eq!(a.fingerprint(), b.fingerprint());
        let mut c = a.clone();
        c.items[0].quantity = 3;
        assert_ne!(a.fingerprint(), c.fingerprint());
    }
}
