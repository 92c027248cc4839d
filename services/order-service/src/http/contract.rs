//! The schemas of the OpenAPI document that the derive attributes cannot say:
//! the exact text rules of `domain::validation` as patterns, and the ISO code
//! lists as enums. They must accept exactly what the validators accept (a
//! schema fuzzer checks both directions, tests/e2e/fuzz.rs), so each rule here
//! names the validator rule it mirrors, and unit tests hold the two together.
//!
//! Patterns are ECMA-262 (as JSON Schema says) and read the same in Python's
//! `re`, which schemathesis uses: only explicit character classes, no `\s`
//! or `\p{..}`, whose meanings differ between engines.

use utoipa::openapi::{Object, ObjectBuilder, Type, schema::SchemaType};

use crate::domain::{iso, validation};

/// White space as Rust's `str::trim` removes it (Unicode `White_Space`).
pub const WHITE_SPACE: &str = r"\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000";
/// Control characters, as `char::is_control` finds them (Unicode `Cc`).
pub const CONTROL: &str = r"\x00-\x1f\x7f-\x9f";

/// Text the validator keeps: after trimming, not empty and free of control characters.
pub fn text_pattern() -> String {
    let (w, c) = (WHITE_SPACE, CONTROL);
    format!("^[{w}]*[^{w}{c}](?:[^{c}]*[^{w}{c}])?[{w}]*$")
}

/// A SKU: `[A-Za-z0-9._-]` after trimming.
pub fn sku_pattern() -> String {
    let w = WHITE_SPACE;
    format!("^[{w}]*[A-Za-z0-9._-]+[{w}]*$")
}

fn string() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(SchemaType::Type(Type::String))
}

/// A required text field (`validation::MAX_TEXT_LEN` characters at most, white space included).
pub fn text() -> Object {
    string()
        .pattern(Some(text_pattern()))
        .min_length(Some(1))
        .max_length(Some(validation::MAX_TEXT_LEN))
        .examples(["12 Example Street"])
        .build()
}

/// An optional text field: absent, null, or as [`text`].
pub fn optional_text() -> Object {
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
        .pattern(Some(text_pattern()))
        .min_length(Some(1))
        .max_length(Some(validation::MAX_TEXT_LEN))
        .build()
}

/// A SKU (`validation::MAX_SKU_LEN` characters at most, white space included).
pub fn sku() -> Object {
    string()
        .pattern(Some(sku_pattern()))
        .min_length(Some(1))
        .max_length(Some(validation::MAX_SKU_LEN))
        .examples(["SKU-123"])
        .build()
}

/// An active ISO 4217 currency code.
pub fn currency() -> Object {
    string().enum_values(Some(iso::currencies())).examples(["EUR"]).build()
}

/// An ISO 3166-1 alpha-2 country code.
pub fn country() -> Object {
    string().enum_values(Some(iso::countries())).examples(["GB"]).build()
}

#[cfg(test)]
mod tests {
    use regex::Regex;
    use serde_json::json;

    use super::*;
    use crate::domain::validate_new_order;

    fn accepted_as_name(name: &str) -> bool {
        let body = json!({
            "currency": "EUR",
            "items": [{"sku": "SKU-1", "quantity": 1, "unit_price_minor": 1}],
            "shipping_address": {"name": name, "line1": "1 Street", "city": "London", "postal_code": "N1", "country": "GB"}
        });
        validate_new_order(&body).is_ok()
    }

    fn accepted_as_sku(sku: &str) -> bool {
        let body = json!({
            "currency": "EUR",
            "items": [{"sku": sku, "quantity": 1, "unit_price_minor": 1}],
            "shipping_address": {"name": "A", "line1": "1 Street", "city": "London", "postal_code": "N1", "country": "GB"}
        });
        validate_new_order(&body).is_ok()
    }

    #[test]
    fn the_text_schema_accepts_exactly_what_the_validator_accepts() {
        let pattern = Regex::new(&text_pattern()).unwrap();
        let by_schema = |s: &str| pattern.is_match(s) && (1..=validation::MAX_TEXT_LEN).contains(&s.chars().count());
        let samples = [
            "Ada",
            " Ada ",
            "\tAda\n",
            "A d a",
            "",
            " ",
            "\t",
            "\u{3000}",
            "A\u{0}b",
            "Ada\u{7f}",
            "\u{85}Ada",
            "A\u{85}b",
            "\u{a0}Ada\u{a0}",
            "A\u{2028}b",
            "\u{1c}Ada",
            "Zoë",
            "東京",
            "a\tb",
        ];
        let long = "x".repeat(validation::MAX_TEXT_LEN);
        let too_long = format!(" {long}");
        for sample in samples.iter().copied().chain([long.as_str(), too_long.as_str()]) {
            assert_eq!(by_schema(sample), accepted_as_name(sample), "{sample:?}");
        }
    }

    #[test]
    fn the_sku_schema_accepts_exactly_what_the_validator_accepts() {
        let pattern = Regex::new(&sku_pattern()).unwrap();
        let by_schema = |s: &str| pattern.is_match(s) && (1..=validation::MAX_SKU_LEN).contains(&s.chars().count());
        let long = "S".repeat(validation::MAX_SKU_LEN);
        let too_long = format!("{long} ");
        for sample in ["SKU-1", " SKU-1 ", "S K U", "", " ", "SKU/1", "sku_1.2", long.as_str(), too_long.as_str()] {
            assert_eq!(by_schema(sample), accepted_as_sku(sample), "{sample:?}");
        }
    }

    #[test]
    fn code_lists_are_the_validators() {
        assert!(iso::currencies().all(iso::is_currency) && iso::currencies().count() > 150);
        assert!(iso::countries().all(iso::is_country) && iso::countries().count() > 240);
    }
}
