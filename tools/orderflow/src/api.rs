//! The HTTP client of the order API: the token request (client credentials), create,
//! get and list orders, and following an order's Server-Sent Events with resumption.
//! Also the wire types the CLI reads and the typed [`Error`] every call returns:
//! a problem+json refusal, an OAuth2 error, an unreachable server, or a reply that
//! is not what the contract (`shared/API.md`) promises.
//!
//! Successful replies are returned with their raw text next to the parsed value, so
//! `--json` can print exactly what the server sent.

use std::{fmt, time::Duration};

use eventsource_stream::Eventsource;
use futures::StreamExt;
use reqwest::{StatusCode, header};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// How long to wait for the TCP (and TLS) connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest silence on an event stream before it counts as dropped (the server sends
/// a keep-alive comment every 15 s by default).
const STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a request did not give the expected answer.
#[derive(Debug)]
pub enum Error {
    /// An RFC 9457 problem document (any route but the token endpoint).
    Problem { status: StatusCode, problem: Problem },
    /// An RFC 6749 error from `POST /auth/token`.
    OAuth { status: StatusCode, error: OAuthError },
    /// An error status with a body that is neither of the two.
    Status { status: StatusCode, url: String, body: String },
    /// The server could not be reached, or the connection failed mid-request.
    Transport { url: String, source: reqwest::Error },
    /// A 2xx reply that does not match the contract.
    InvalidResponse { url: String, detail: String },
    /// `orders watch`: the stream dropped more often in a row than allowed.
    StreamLost { url: String, attempts: u32, last_event_id: Option<String>, reason: String },
}

impl Error {
    /// The HTTP status, when the server answered with an error.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Error::Problem { status, .. } | Error::OAuth { status, .. } | Error::Status { status, .. } => Some(*status),
            Error::Transport { .. } | Error::InvalidResponse { .. } | Error::StreamLost { .. } => None,
        }
    }
}

/// RFC 9457 problem details.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Problem {
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub detail: Option<String>,
    #[serde(default)]
    pub errors: Vec<FieldError>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// RFC 6749 section 5.2 error response.
#[derive(Debug, Clone, Deserialize)]
pub struct OAuthError {
    pub error: String,
    #[serde(default)]
    pub error_description: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct TokenResponse {
    pub access_token: String,
    #[serde(default)]
    pub token_type: Option<String>,
    #[serde(default)]
    pub expires_in: Option<u64>,
    #[serde(default)]
    pub scope: Option<String>,
}

/// An order as the API returns it (lenient: only `id` is required, so that a
/// newer server with more or fewer fields still prints).
#[derive(Debug, Clone, Deserialize)]
pub struct Order {
    pub id: String,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub currency: String,
    #[serde(default)]
    pub items: Vec<LineItem>,
    #[serde(default)]
    pub total_minor: i64,
    #[serde(default)]
    pub shipping_address: Option<Address>,
    #[serde(default)]
    pub shipment: Option<Shipment>,
    #[serde(default)]
    pub history: Vec<HistoryEntry>,
    #[serde(default)]
    pub created_at: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LineItem {
    pub sku: String,
    pub quantity: i64,
    pub unit_price_minor: i64,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct Address {
    pub name: String,
    pub line1: String,
    #[serde(default)]
    pub line2: Option<String>,
    pub city: String,
    pub postal_code: String,
    pub country: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Shipment {
    #[serde(default)]
    pub carrier: Option<String>,
    #[serde(default)]
    pub tracking_number: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct HistoryEntry {
    pub status: String,
    pub at: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct OrderPage {
    pub data: Vec<Order>,
    #[serde(default)]
    pub next_cursor: Option<String>,
}

/// A successful reply: the body as sent and as parsed.
#[derive(Debug)]
pub struct Reply<T> {
    pub raw: String,
    pub value: T,
}

/// One event of `GET /orders/{id}/events`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatusEvent {
    /// The history sequence number (`id:`), a number when the server sent one.
    pub id: Value,
    pub status: String,
    pub at: Option<String>,
    pub carrier: Option<String>,
    pub tracking_number: Option<String>,
}

/// What `watch` reports to its caller.
#[derive(Debug)]
pub enum WatchUpdate<'a> {
    Event(&'a StatusEvent),
    /// The stream dropped; the client waits and reconnects.
    Reconnecting {
        attempt: u32,
        max: u32,
        reason: &'a str,
        last_event_id: Option<&'a str>,
    },
}

pub struct Credentials {
    pub client_id: String,
    pub client_secret: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials").field("client_id", &self.client_id).finish_non_exhaustive()
    }
}

/// The order API, authenticated with client credentials.
pub struct Client {
    http: reqwest::Client,
    base: String,
    credentials: Credentials,
    timeout: Duration,
    token: Option<String>,
}

impl Client {
    pub fn new(base: &reqwest::Url, credentials: Credentials, timeout: Duration) -> Result<Self, Error> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("orderflow-cli/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(CONNECT_TIMEOUT.min(timeout))
            .read_timeout(STREAM_IDLE_TIMEOUT.max(timeout))
            .build()
            .map_err(|source| Error::Transport { url: base.to_string(), source })?;
        Ok(Self { http, base: base.as_str().trim_end_matches('/').to_owned(), credentials, timeout, token: None })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `POST /auth/token`, client credentials with HTTP Basic authentication.
    pub async fn token(&self, scope: Option<&str>) -> Result<Reply<TokenResponse>, Error> {
        let url = self.url("/auth/token");
        let mut form = vec![("grant_type", "client_credentials")];
        if let Some(scope) = scope {
            form.push(("scope", scope));
        }
        let request = self
            .http
            .post(&url)
            .basic_auth(&self.credentials.client_id, Some(&self.credentials.client_secret))
            .form(&form)
            .timeout(self.timeout);
        let response = send(request, &url).await?;
        read_json(response, &url, StatusCode::OK).await
    }

    /// A bearer token for the order routes, fetched once and reused.
    async fn bearer(&mut self) -> Result<String, Error> {
        if let Some(token) = &self.token {
            return Ok(token.clone());
        }
        let token = self.token(None).await?.value.access_token;
        self.token = Some(token.clone());
        Ok(token)
    }

    /// `POST /orders` with `body` sent as is.
    pub async fn create_order(&mut self, body: &Value, idempotency_key: Option<&str>) -> Result<Reply<Order>, Error> {
        let url = self.url("/orders");
        let token = self.bearer().await?;
        let mut request = self.http.post(&url).bearer_auth(token).json(body).timeout(self.timeout);
        if let Some(key) = idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        let response = send(request, &url).await?;
        read_json(response, &url, StatusCode::CREATED).await
    }

    /// `GET /orders/{id}`.
    pub async fn get_order(&mut self, id: Uuid) -> Result<Reply<Order>, Error> {
        let url = self.url(&format!("/orders/{id}"));
        let token = self.bearer().await?;
        let response = send(self.http.get(&url).bearer_auth(token).timeout(self.timeout), &url).await?;
        read_json(response, &url, StatusCode::OK).await
    }

    /// `GET /orders?limit=&cursor=`: one page, newest first.
    pub async fn list_orders(&mut self, limit: Option<u32>, cursor: Option<&str>) -> Result<Reply<OrderPage>, Error> {
        let mut url = reqwest::Url::parse(&self.url("/orders"))
            .map_err(|e| Error::InvalidResponse { url: self.url("/orders"), detail: e.to_string() })?;
        {
            let mut query = url.query_pairs_mut();
            if let Some(limit) = limit {
                query.append_pair("limit", &limit.to_string());
            }
            if let Some(cursor) = cursor {
                query.append_pair("cursor", cursor);
            }
        }
        let url = url.to_string().trim_end_matches('?').to_owned();
        let token = self.bearer().await?;
        let response = send(self.http.get(&url).bearer_auth(token).timeout(self.timeout), &url).await?;
        read_json(response, &url, StatusCode::OK).await
    }

    /// Follows `GET /orders/{id}/events` until `DELIVERED`, calling `on_update` for each
    /// event and each reconnect. A stream that drops (or ends early) is reopened with
    /// `Last-Event-ID` of the last event seen, at most `max_reconnects` times in a row;
    /// an event received resets the count.
    pub async fn watch<E: From<Error>>(
        &mut self,
        id: Uuid,
        max_reconnects: u32,
        mut on_update: impl FnMut(WatchUpdate<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        let url = self.url(&format!("/orders/{id}/events"));
        let mut last_event_id: Option<String> = None;
        let mut failures = 0u32;
        let mut backoff = shutdown::retry::Backoff::default();
        loop {
            let reason = match self.open_stream(&url, last_event_id.as_deref()).await {
                Err(e @ (Error::Transport { .. } | Error::InvalidResponse { .. })) => error_summary(&e),
                Err(e) if e.status().is_some_and(|s| s.is_server_error()) => error_summary(&e),
                Err(e) => return Err(e.into()),
                Ok(response) => {
                    let mut events = response.bytes_stream().eventsource();
                    let mut reason = "the server closed the stream before DELIVERED".to_owned();
                    while let Some(item) = events.next().await {
                        match item {
                            Ok(event) => {
                                let parsed = parse_event(&event)
                                    .map_err(|detail| Error::InvalidResponse { url: url.clone(), detail })?;
                                if !event.id.is_empty() {
                                    last_event_id = Some(event.id.clone());
                                }
                                failures = 0;
                                backoff.reset();
                                on_update(WatchUpdate::Event(&parsed))?;
                                if parsed.status == "DELIVERED" {
                                    return Ok(());
                                }
                            }
                            Err(e) => {
                                reason = format!("the stream broke: {}", root_cause(&e));
                                break;
                            }
                        }
                    }
                    reason
                }
            };
            failures += 1;
            if failures > max_reconnects {
                return Err(Error::StreamLost { url, attempts: failures, last_event_id, reason }.into());
            }
            on_update(WatchUpdate::Reconnecting {
                attempt: failures,
                max: max_reconnects,
                reason: &reason,
                last_event_id: last_event_id.as_deref(),
            })?;
            tokio::time::sleep(backoff.next_delay()).await;
        }
    }

    /// Opens the event stream; a 401 (say, the token expired during a long watch)
    /// gets one retry with a fresh token.
    async fn open_stream(&mut self, url: &str, last_event_id: Option<&str>) -> Result<reqwest::Response, Error> {
        let mut retried = false;
        loop {
            let token = self.bearer().await?;
            let mut request = self.http.get(url).bearer_auth(token).header(header::ACCEPT, "text/event-stream");
            if let Some(id) = last_event_id {
                request = request.header("Last-Event-ID", id);
            }
            let response = send(request, url).await?;
            let status = response.status();
            if status == StatusCode::UNAUTHORIZED && !retried {
                retried = true;
                self.token = None;
                continue;
            }
            if !status.is_success() {
                return Err(error_from_response(response, url).await);
            }
            return Ok(response);
        }
    }
}

async fn send(request: reqwest::RequestBuilder, url: &str) -> Result<reqwest::Response, Error> {
    request.send().await.map_err(|source| Error::Transport { url: url.to_owned(), source })
}

/// Reads a JSON reply that should have status `expected`, or the error it carries.
async fn read_json<T: for<'de> Deserialize<'de>>(
    response: reqwest::Response,
    url: &str,
    expected: StatusCode,
) -> Result<Reply<T>, Error> {
    let status = response.status();
    if !status.is_success() {
        return Err(error_from_response(response, url).await);
    }
    let raw = response.text().await.map_err(|source| Error::Transport { url: url.to_owned(), source })?;
    if status != expected {
        return Err(Error::InvalidResponse {
            url: url.to_owned(),
            detail: format!("expected {expected}, got {status}"),
        });
    }
    let value = serde_json::from_str(&raw)
        .map_err(|e| Error::InvalidResponse { url: url.to_owned(), detail: format!("unexpected JSON: {e}") })?;
    Ok(Reply { raw, value })
}

async fn error_from_response(response: reqwest::Response, url: &str) -> Error {
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    classify_error(status, url, &body)
}

/// Recognises an error body: problem+json, an OAuth2 error, or neither.
pub fn classify_error(status: StatusCode, url: &str, body: &str) -> Error {
    if let Ok(json) = serde_json::from_str::<Value>(body) {
        if json.get("error").is_some_and(Value::is_string)
            && let Ok(error) = serde_json::from_value(json.clone())
        {
            return Error::OAuth { status, error };
        }
        if (json.get("title").is_some() || json.get("type").is_some())
            && let Ok(problem) = serde_json::from_value(json)
        {
            return Error::Problem { status, problem };
        }
    }
    let body: String = body.trim().chars().take(500).collect();
    Error::Status { status, url: url.to_owned(), body }
}

/// Turns one SSE event into a [`StatusEvent`]: the `data:` JSON plus the `id:`.
fn parse_event(event: &eventsource_stream::Event) -> Result<StatusEvent, String> {
    #[derive(Deserialize)]
    struct Data {
        status: Option<String>,
        at: Option<String>,
        carrier: Option<String>,
        tracking_number: Option<String>,
    }
    let data: Data = serde_json::from_str(&event.data)
        .map_err(|e| format!("event data is not the promised JSON ({e}): {}", event.data))?;
    let status = data.status.unwrap_or_else(|| event.event.clone());
    let id = match event.id.parse::<u64>() {
        Ok(n) => Value::from(n),
        Err(_) if event.id.is_empty() => Value::Null,
        Err(_) => Value::from(event.id.clone()),
    };
    Ok(StatusEvent { id, status, at: data.at, carrier: data.carrier, tracking_number: data.tracking_number })
}

/// The innermost cause of an error chain, which is what a person can act on
/// ("Connection refused" rather than "error sending request").
pub fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    let text = cause.to_string();
    if text.is_empty() { error.to_string() } else { text }
}

/// One line for a recoverable error (used when reconnecting).
fn error_summary(error: &Error) -> String {
    match error {
        Error::Transport { source, .. } => root_cause(source),
        Error::InvalidResponse { detail, .. } => detail.clone(),
        other => match other.status() {
            Some(status) => format!("HTTP {status}"),
            None => "error".to_owned(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problem_bodies_are_recognised() {
        let body = r#"{"type":"https://orderflow.dev/problems/validation","title":"Invalid request","status":422,
                       "detail":"2 fields are invalid","errors":[{"field":"items[0].quantity","message":"must be 1..=999"}]}"#;
        let Error::Problem { status, problem } = classify_error(StatusCode::UNPROCESSABLE_ENTITY, "u", body) else {
            panic!("not a problem")
        };
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(problem.title.as_deref(), Some("Invalid request"));
        assert_eq!(problem.errors[0].field, "items[0].quantity");
    }

    #[test]
    fn oauth_bodies_are_recognised() {
        let body = r#"{"error":"invalid_client","error_description":"Client authentication failed."}"#;
        let Error::OAuth { error, .. } = classify_error(StatusCode::UNAUTHORIZED, "u", body) else {
            panic!("not oauth")
        };
        assert_eq!(error.error, "invalid_client");
    }

    #[test]
    fn other_bodies_are_kept_short() {
        let body = "x".repeat(2000);
        let Error::Status { body, .. } = classify_error(StatusCode::BAD_GATEWAY, "u", &body) else {
            panic!("wrong kind")
        };
        assert_eq!(body.len(), 500);
    }

    #[test]
    fn events_parse() {
        let event = eventsource_stream::Event {
            event: "SHIPPED".into(),
            data: r#"{"status":"SHIPPED","at":"2026-11-25T14:19:35Z","carrier":"DHL","tracking_number":"OF1"}"#.into(),
            id: "2".into(),
            retry: None,
        };
        let parsed = parse_event(&event).expect("valid event");
        assert_eq!(parsed.id, Value::from(2));
        assert_eq!(parsed.carrier.as_deref(), Some("DHL"));
        let bad = eventsource_stream::Event { data: "nope".into(), ..event };
        assert!(parse_event(&bad).is_err());
    }
}
