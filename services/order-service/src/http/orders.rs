//! `POST /orders`, `GET /orders/{id}` and `GET /orders`.
//!
//! Placing an order: authenticate (extractor) -> check scope -> read and
//! validate the body -> claim the idempotency key (Redis, one round trip) ->
//! hand the order to the intake's group commit, which writes it with its
//! history, outbox event and idempotency record in one transaction shared with
//! concurrent requests -> wake the outbox relay -> 201 (committed). No handler
//! talks to SQS.

use axum::{
    Json,
    body::Body,
    extract::{Path, RawQuery, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{SubsecRound, Utc};
use envelope::{Envelope, OrderCreated};
use outbox::OutboxMessage;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;
use web::FieldError;

use super::{AppState, contract, error::ApiError, extract::AuthUser};
use crate::{
    auth::{SCOPE_READ, SCOPE_WRITE},
    domain::{Order, order::OrderPage, validate_new_order},
    idempotency::Claim,
    metrics,
    storage::orders::{self, IdempotencyRecord, Placed, Placement, StoredResponse},
};

/// Largest accepted `POST /orders` body.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
const DEFAULT_PAGE: u32 = 20;
const MAX_PAGE: u32 = 100;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(create_order, list_orders)).routes(routes!(get_order))
}

/// The `Idempotency-Key` header, checked: 1..=255 printable ASCII characters.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let bytes = value.as_bytes();
    if bytes.is_empty() || bytes.len() > 255 || !bytes.iter().all(|b| (0x20..=0x7e).contains(b)) {
        return Err(ApiError::BadRequest("Idempotency-Key must be 1 to 255 printable ASCII characters.".into()));
    }
    Ok(Some(String::from_utf8_lossy(bytes).into_owned()))
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|m| m.trim().eq_ignore_ascii_case("application/json"))
        .unwrap_or(false)
}

async fn read_body(headers: &HeaderMap, body: Body) -> Result<serde_json::Value, ApiError> {
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES) {
        return Err(ApiError::TooLarge(MAX_BODY_BYTES));
    }
    let bytes = axum::body::to_bytes(body, MAX_BODY_BYTES).await.map_err(|_| ApiError::TooLarge(MAX_BODY_BYTES))?;
    serde_json::from_slice(&bytes).map_err(|e| ApiError::BadRequest(format!("The body is not valid JSON: {e}.")))
}

fn created_response(stored: &StoredResponse, replayed: bool) -> Response {
    let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::CREATED);
    let location =
        HeaderValue::from_str(&format!("/orders/{}", stored.order_id)).expect("uuid paths are valid headers");
    let mut response = (status, [(header::LOCATION, location)], Json(&stored.body)).into_response();
    if replayed {
        response.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}

/// Place an order.
///
/// The customer is the token's `customer_id`. With an `Idempotency-Key`, a retry
/// with the same body gets the first response (and `Idempotent-Replayed: true`);
/// without one, an identical order from the same customer within the
/// double-submit window is answered with the first order.
#[utoipa::path(
    post, path = "/orders", tag = "orders",
    params(("Idempotency-Key" = Option<String>, Header, nullable = false, pattern = "^[!-~](?:[ -~]*[!-~])?$", min_length = 1, max_length = 255,
        description = "1..=255 printable ASCII; kept 24 h per customer")),
    request_body(content = NewOrderBody, content_type = "application/json"),
    responses(
        (status = 201, description = "Order placed (or replayed)", body = Order, headers(("Location" = String, description = "/orders/{id}"))),
        (status = 400, description = "Malformed JSON or bad Idempotency-Key", content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid token", content_type = "application/problem+json"),
        (status = 403, description = "Token lacks orders:write", content_type = "application/problem+json"),
        (status = 409, description = "Same key still in flight", content_type = "application/problem+json"),
        (status = 413, description = "Body over 64 KiB", content_type = "application/problem+json"),
        (status = 415, description = "Body is not application/json", content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields, or key reused with another body", content_type = "application/problem+json"),
    ),
    security(("bearer" = ["orders:write"]))
)]
#[tracing::instrument(name = "orders.create", skip_all, fields(customer_id = %user.customer_id(), order_id))]
pub async fn create_order(
    State(state): State<AppState>,
    user: AuthUser,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    user.require(SCOPE_WRITE)?;
    if !is_json(&headers) {
        return Err(ApiError::UnsupportedMediaType);
    }
    let explicit_key = idempotency_key(&headers)?;
    let value = read_body(&headers, body).await?;
    let new_order = validate_new_order(&value).map_err(ApiError::Validation)?;

    let customer_id = user.customer_id();
    let hash = new_order.fingerprint();
    let hash_hex = hex::encode(hash);
    let now = Utc::now().trunc_subsecs(6);
    // An explicit key is kept for the idempotency TTL; without one, the request
    // fingerprint acts as a key for the double-submit window.
    let (key, ttl) = match &explicit_key {
        Some(k) => (Some(format!("k:{k}")), state.intake.idempotency_ttl),
        None if !state.intake.duplicate_window.is_zero() => {
            (Some(format!("f:{hash_hex}")), state.intake.duplicate_window)
        }
        None => (None, state.intake.duplicate_window),
    };

    if let Some(key) = &key {
        match state.intake.idempotency.claim(customer_id, key, &hash_hex).await {
            Claim::Claimed | Claim::Unavailable => {}
            Claim::Done(stored) if stored.request_hash == hash_hex => {
                return Ok(created_response(&stored, true));
            }
            Claim::Done(_) => return Err(ApiError::IdempotencyMismatch),
            Claim::InFlight { request_hash } if request_hash != hash_hex => {
                return Err(ApiError::IdempotencyMismatch);
            }
            Claim::InFlight { .. } => {
                // The holder may have committed before writing its result to Redis.
                return match orders::find_idempotent(&state.db, customer_id, key).await? {
                    Some(stored) => Ok(created_response(&stored, true)),
                    None => Err(ApiError::IdempotencyInFlight),
                };
            }
        }
    }

    let order = new_order.into_order(Uuid::now_v7(), customer_id, now);
    tracing::Span::current().record("order_id", tracing::field::display(order.id));
    let body = serde_json::to_value(&order).expect("orders serialise");
    let event = Envelope::new(
        order.id,
        now,
        OrderCreated {
            customer_id,
            currency: order.currency.clone(),
            items: order.items.clone(),
            total_minor: order.total_minor,
            shipping_address: order.shipping_address.clone(),
        },
    );
    // The relay's publish span continues this request's trace.
    let trace = telemetry::propagation::current();
    let message = OutboxMessage {
        event_id: event.event_id,
        destination: state.intake.orders_queue.clone(),
        group_id: order.id.to_string(),
        event_type: event.event_type.clone(),
        body: event.to_json(),
        traceparent: trace.traceparent,
        tracestate: trace.tracestate,
    };
    let record = key.as_ref().map(|key| IdempotencyRecord {
        key: key.clone(),
        request_hash: hash,
        expires_at: now + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::hours(24)),
    });

    let order_id = order.id;
    let event_id = message.event_id;
    let placement =
        Placement { order, body: body.clone(), idempotency: record, event: message, span: tracing::Span::current() };
    let placed = state.intake.writer.submit(placement).await.unwrap_or(Err(sqlx::Error::PoolClosed));
    let stored = match placed {
        Ok(Placed::Created) => {
            state.intake.outbox.wake();
            metrics::ORDERS_CREATED.as_counter().increment(1);
            tracing::debug!(%event_id, "order placed");
            StoredResponse { request_hash: hash_hex, order_id, status: 201, body }
        }
        Ok(Placed::KeyTaken) => {
            let key = key.as_deref().unwrap_or_default();
            // The holder expired and was replaced between our statement and this
            // read: vanishingly rare; answered as a retryable error.
            let stored = orders::find_idempotent(&state.db, customer_id, key).await?.ok_or(sqlx::Error::RowNotFound)?;
            // PostgreSQL holds the truth for this key: put it back in Redis,
            // replacing our own pending claim, before answering either way (a
            // mismatch must not leave its claim to refuse the original's retry).
            state.intake.idempotency.store(customer_id, key, stored.clone(), ttl).await;
            if stored.request_hash != hash_hex {
                return Err(ApiError::IdempotencyMismatch);
            }
            return Ok(created_response(&stored, true));
        }
        Err(e) => {
            if let Some(key) = &key {
                state.intake.idempotency.release(customer_id, key);
            }
            return Err(e.into());
        }
    };
    if let Some(key) = &key {
        state.intake.idempotency.complete(customer_id, key, stored.clone(), ttl);
    }
    Ok(created_response(&stored, false))
}

/// Body of `POST /orders` (documentation only: the handler validates the raw
/// JSON so it can report every bad field at once). Every constraint of
/// `domain::validation` is stated here, and no other, so that a request is
/// valid by this schema exactly when the API accepts it: a schema fuzzer checks
/// both directions (tests/e2e/fuzz.rs).
#[derive(utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct NewOrderBody {
    /// An active ISO 4217 currency code.
    #[schema(schema_with = contract::currency)]
    currency: String,
    #[schema(min_items = 1, max_items = 100)]
    items: Vec<NewLineItem>,
    shipping_address: NewAddress,
}

/// One line of a new order.
#[derive(utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct NewLineItem {
    /// `[A-Za-z0-9._-]`; surrounding white space is trimmed.
    #[schema(schema_with = contract::sku)]
    sku: String,
    #[schema(minimum = 1, maximum = 999)]
    quantity: u32,
    /// Price of one unit in minor units of the order's currency.
    #[schema(minimum = 0, maximum = 100_000_000)]
    unit_price_minor: i64,
}

/// Where a new order ships to. Text is trimmed; what remains must not be
/// empty or hold control characters.
#[derive(utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct NewAddress {
    #[schema(schema_with = contract::text)]
    name: String,
    #[schema(schema_with = contract::text)]
    line1: String,
    #[schema(schema_with = contract::optional_text)]
    line2: Option<String>,
    #[schema(schema_with = contract::text)]
    city: String,
    #[schema(schema_with = contract::text)]
    postal_code: String,
    /// An ISO 3166-1 alpha-2 country code, upper case.
    #[schema(schema_with = contract::country)]
    country: String,
}

/// Get one of the caller's orders.
#[utoipa::path(
    get, path = "/orders/{id}", tag = "orders",
    params(("id" = Uuid, Path, description = "Order id")),
    responses(
        (status = 200, description = "The order", body = Order),
        (status = 401, description = "Missing or invalid token", content_type = "application/problem+json"),
        (status = 403, description = "Token lacks orders:read", content_type = "application/problem+json"),
        (status = 404, description = "No such order for this customer", content_type = "application/problem+json"),
    ),
    security(("bearer" = ["orders:read"]))
)]
#[tracing::instrument(name = "orders.get", skip_all, fields(order_id = %id))]
pub async fn get_order(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<Json<Order>, ApiError> {
    user.require(SCOPE_READ)?;
    let id = Uuid::parse_str(&id).map_err(|_| ApiError::NotFound)?;
    orders::get(&state.hot, user.customer_id(), id).await?.map(Json).ok_or(ApiError::NotFound)
}

/// List the caller's orders, newest first.
#[utoipa::path(
    get, path = "/orders", tag = "orders",
    params(
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 100, description = "Page size (default 20)"),
        ("cursor" = Option<String>, Query, pattern = "^[A-Za-z0-9_-]{21}[AQgw]$", description = "`next_cursor` of the previous page"),
    ),
    responses(
        (status = 200, description = "A page of orders", body = OrderPage),
        (status = 401, description = "Missing or invalid token", content_type = "application/problem+json"),
        (status = 403, description = "Token lacks orders:read", content_type = "application/problem+json"),
        (status = 422, description = "Bad limit or cursor", content_type = "application/problem+json"),
    ),
    security(("bearer" = ["orders:read"]))
)]
#[tracing::instrument(name = "orders.list", skip_all)]
pub async fn list_orders(
    State(state): State<AppState>,
    user: AuthUser,
    RawQuery(query): RawQuery,
) -> Result<Json<OrderPage>, ApiError> {
    user.require(SCOPE_READ)?;
    let mut limit = DEFAULT_PAGE;
    let mut before = None;
    let mut errors = Vec::new();
    for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match key.as_ref() {
            "limit" => match value.parse::<u32>() {
                Ok(n) if (1..=MAX_PAGE).contains(&n) => limit = n,
                _ => errors.push(FieldError::new("limit", format!("must be a whole number from 1 to {MAX_PAGE}"))),
            },
            "cursor" => match decode_cursor(&value) {
                Some(id) => before = Some(id),
                None => errors.push(FieldError::new("cursor", "is not a cursor this API returned")),
            },
            other => errors.push(FieldError::new(other, "unknown query parameter")),
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    // One extra row tells whether another page exists.
    let mut data = orders::list(&state.hot, user.customer_id(), limit + 1, before).await?;
    let next_cursor = if data.len() > limit as usize {
        data.truncate(limit as usize);
        data.last().map(|o| encode_cursor(o.id))
    } else {
        None
    };
    Ok(Json(OrderPage { data, next_cursor }))
}

fn encode_cursor(id: Uuid) -> String {
    URL_SAFE_NO_PAD.encode(id.as_bytes())
}

fn decode_cursor(cursor: &str) -> Option<Uuid> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor).ok()?;
    Uuid::from_slice(&bytes).ok()
}
