//! `POST /auth/token` (OAuth2 client credentials, RFC 6749 section 4.4) and
//! `GET /.well-known/jwks.json`.
//!
//! Errors here follow RFC 6749 section 5.2 (`{"error", "error_description"}`),
//! not problem+json, because OAuth2 client libraries expect that shape.
//!
//! The endpoint cannot be used to starve others: requests are limited per
//! source address (the socket's: behind a proxy, the proxy's) and, once the
//! client id is known to be well-formed, per client id, answering 429
//! `slow_down` with `Retry-After`; a generated secret is checked with one
//! HMAC (no shared resource at all), and a wait for one of the few argon2
//! slots is bounded by `AUTH_HASH_WAIT`, then 503 `temporarily_unavailable`
//! with `Retry-After`. A malformed client id is refused before it is looked
//! up or logged. A disabled client gets `invalid_client`.

use std::collections::HashMap;

use axum::{
    Json,
    body::Bytes,
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use base64::{Engine, engine::general_purpose::STANDARD};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{AppState, extract::SourceAddr};
use crate::{
    auth::{
        clients::{self, Check},
        limits::RetryAfter,
    },
    metrics,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(issue_token)).routes(routes!(jwks))
}

/// The form of a token request (documentation only: the handler reads the raw
/// form, refusing repeated parameters). The client authenticates with HTTP
/// Basic, or with `client_id` and `client_secret` here, not both.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct TokenForm {
    #[schema(schema_with = grant_type)]
    grant_type: String,
    /// Space-separated scopes, a subset of the client's (default: all of them).
    #[schema(example = "orders:read", nullable = false)]
    scope: Option<String>,
    /// 1..=64 of `[A-Za-z0-9._-]`.
    #[schema(pattern = "^[A-Za-z0-9._-]{1,64}$", max_length = 64, min_length = 1, nullable = false)]
    client_id: Option<String>,
    #[schema(nullable = false)]
    client_secret: Option<String>,
}

fn grant_type() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::SchemaType::Type(utoipa::openapi::Type::String))
        .enum_values(Some(["client_credentials"]))
        .build()
}

/// A successful token response (RFC 6749 section 5.1).
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    #[schema(example = "Bearer")]
    pub token_type: &'static str,
    /// Seconds until the token expires.
    pub expires_in: u64,
    #[schema(example = "orders:read orders:write")]
    pub scope: String,
}

/// An RFC 6749 section 5.2 error.
#[derive(Debug, Serialize, ToSchema)]
pub struct OAuthError {
    #[schema(example = "invalid_client")]
    pub error: &'static str,
    pub error_description: String,
    #[serde(skip)]
    #[schema(ignore)]
    status: StatusCode,
    #[serde(skip)]
    #[schema(ignore)]
    retry_after: Option<u64>,
}

impl OAuthError {
    fn new(status: StatusCode, error: &'static str, description: impl Into<String>) -> Self {
        Self { error, error_description: description.into(), status, retry_after: None }
    }
    fn invalid_request(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", description)
    }
    fn invalid_client() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "invalid_client", "Client authentication failed.")
    }
    fn slow_down(wait: RetryAfter) -> Self {
        let mut e = Self::new(StatusCode::TOO_MANY_REQUESTS, "slow_down", "Too many token requests; retry later.");
        e.retry_after = Some(wait.seconds());
        e
    }
    fn unavailable(retry_after: u64) -> Self {
        let mut e = Self::new(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable", "Try again shortly.");
        e.retry_after = Some(retry_after);
        e
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let mut response = (self.status, no_store(), Json(&self)).into_response();
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(r#"Basic realm="orderflow", charset="UTF-8""#),
            );
        }
        response
    }
}

fn no_store() -> [(header::HeaderName, HeaderValue); 2] {
    [
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        (header::PRAGMA, HeaderValue::from_static("no-cache")),
    ]
}

/// Client id and secret from HTTP Basic (RFC 6749 section 2.3.1: both parts
/// form-urlencoded before base64).
fn basic_credentials(headers: &HeaderMap) -> Result<Option<(String, String)>, OAuthError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value.to_str().map_err(|_| OAuthError::invalid_client())?;
    let Some((scheme, encoded)) = value.split_once(' ') else {
        return Err(OAuthError::invalid_client());
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(OAuthError::invalid_client());
    }
    let decoded = STANDARD.decode(encoded.trim()).map_err(|_| OAuthError::invalid_client())?;
    let decoded = String::from_utf8(decoded).map_err(|_| OAuthError::invalid_client())?;
    let (id, secret) = decoded.split_once(':').ok_or_else(OAuthError::invalid_client)?;
    let unescape = |s: &str| {
        form_urlencoded::parse(format!("x={s}").as_bytes()).next().map(|(_, v)| v.into_owned()).unwrap_or_default()
    };
    Ok(Some((unescape(id), unescape(secret))))
}

/// Parses the form, refusing repeated parameters (RFC 6749 section 3.2).
fn parse_form(body: &[u8]) -> Result<HashMap<String, String>, OAuthError> {
    let mut form = HashMap::new();
    for (key, value) in form_urlencoded::parse(body) {
        if form.insert(key.to_string(), value.into_owned()).is_some() {
            return Err(OAuthError::invalid_request(format!("parameter {key} is repeated")));
        }
    }
    Ok(form)
}

/// A 429 for a request over a rate limit.
fn refused(reason: &'static str, wait: RetryAfter) -> OAuthError {
    // Debug only: under a flood, one line per refusal would flood the logs too.
    tracing::debug!(retry_after_s = wait.seconds(), "token request over its rate limit");
    metrics::TOKEN_FAILURES.counter_with(&[reason]).increment(1);
    OAuthError::slow_down(wait)
}

/// Issue an access token (OAuth2 client credentials grant).
///
/// The client authenticates with HTTP Basic or with `client_id` and
/// `client_secret` form fields (not both). `scope` narrows the token to a subset
/// of the client's scopes; without it the token gets all of them.
#[utoipa::path(
    post, path = "/auth/token", tag = "auth",
    request_body(content = TokenForm, content_type = "application/x-www-form-urlencoded", description = "grant_type=client_credentials[&scope=...][&client_id=...&client_secret=...]"),
    responses(
        (status = 200, description = "Token issued", body = TokenResponse),
        (status = 400, description = "invalid_request, unsupported_grant_type or invalid_scope", body = OAuthError),
        (status = 401, description = "invalid_client (also for a disabled client)", body = OAuthError),
        (status = 429, description = "slow_down: over the rate limit of this client id or source address", body = OAuthError,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 503, description = "temporarily_unavailable: no password-hash slot in time", body = OAuthError,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    )
)]
#[tracing::instrument(name = "auth.token", skip_all, fields(client_id, source))]
pub async fn issue_token(
    State(state): State<AppState>,
    SourceAddr(source): SourceAddr,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, OAuthError> {
    if let Some(ip) = source {
        tracing::Span::current().record("source", tracing::field::display(ip));
        state.auth.address_limit.check(&ip).map_err(|wait| refused("rate_limited", wait))?;
    }
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !content_type.to_ascii_lowercase().starts_with("application/x-www-form-urlencoded") {
        return Err(OAuthError::invalid_request("The body must be application/x-www-form-urlencoded."));
    }
    let mut form = parse_form(&body)?;
    let from_basic = basic_credentials(&headers)?;
    let from_form = (form.remove("client_id"), form.remove("client_secret"));
    let (client_id, secret) = match (from_basic, from_form) {
        (Some(_), (Some(_), _) | (_, Some(_))) => {
            return Err(OAuthError::invalid_request("Use one client authentication method, not both."));
        }
        (Some(pair), _) => pair,
        (None, (Some(id), Some(secret))) => (id, secret),
        (None, (Some(_), None)) => return Err(OAuthError::invalid_client()),
        (None, _) => return Err(OAuthError::invalid_client()),
    };
    // Nothing unchecked from the request reaches a lookup, a limiter or a log.
    if !clients::valid_id(&client_id) {
        metrics::TOKEN_FAILURES.counter_with(&["invalid_client"]).increment(1);
        return Err(OAuthError::invalid_client());
    }
    tracing::Span::current().record("client_id", client_id.as_str());
    state.auth.client_limit.check(&client_id).map_err(|wait| refused("rate_limited", wait))?;

    match form.get("grant_type").map(String::as_str) {
        None => return Err(OAuthError::invalid_request("grant_type is required.")),
        Some("client_credentials") => {}
        Some(other) => {
            return Err(OAuthError::new(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                format!("grant_type {other:?} is not supported; use client_credentials."),
            ));
        }
    }

    let client = clients::find(&state.db, &client_id).await.map_err(|e| {
        tracing::error!(error = %e, "client lookup failed");
        OAuthError::new(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable", "Try again shortly.")
    })?;
    let matches = match clients::check(client.as_ref(), state.auth.secret_key.as_ref())(&secret) {
        Check::Done(matches) => matches,
        Check::Argon2(hash) => {
            // Unknown ids are checked against a decoy hash too, so timing does not reveal which ids exist.
            let slot = tokio::time::timeout(state.auth.hash_wait, state.auth.hash_limiter.clone().acquire_owned());
            let Ok(permit) = slot.await else {
                tracing::warn!("no argon2 slot within AUTH_HASH_WAIT; refusing");
                metrics::TOKEN_FAILURES.counter_with(&["busy"]).increment(1);
                return Err(OAuthError::unavailable(1));
            };
            let permit = permit.expect("semaphore is never closed");
            tokio::task::spawn_blocking(move || {
                let _permit = permit;
                clients::verify_secret(&hash, &secret)
            })
            .await
            .unwrap_or(false)
        }
    };
    let client = match client {
        Some(c) if matches && !c.disabled => c,
        Some(c) if matches => {
            tracing::info!(client_id = %c.client_id, "refused a token to a disabled client");
            metrics::TOKEN_FAILURES.counter_with(&["disabled"]).increment(1);
            return Err(OAuthError::invalid_client());
        }
        _ => {
            tracing::info!("client authentication failed");
            metrics::TOKEN_FAILURES.counter_with(&["invalid_client"]).increment(1);
            return Err(OAuthError::invalid_client());
        }
    };

    let scope = match form.get("scope").map(|s| s.split_whitespace().collect::<Vec<_>>()) {
        None => client.scopes.join(" "),
        Some(requested) if requested.is_empty() => client.scopes.join(" "),
        Some(requested) => {
            if let Some(bad) = requested.iter().find(|s| !client.scopes.iter().any(|c| c == *s)) {
                return Err(OAuthError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_scope",
                    format!("Scope {bad:?} is not granted to this client."),
                ));
            }
            requested.join(" ")
        }
    };

    let (access_token, _) = state.auth.keys.issue(&client.client_id, client.customer_id, &scope, state.auth.token_ttl);
    metrics::TOKENS_ISSUED.as_counter().increment(1);
    let body = TokenResponse { access_token, token_type: "Bearer", expires_in: state.auth.token_ttl.as_secs(), scope };
    Ok((no_store(), Json(body)).into_response())
}

/// The public keys that verify access tokens (JWK Set).
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "auth",
    responses((status = 200, description = "JWK Set", content_type = "application/json", body = Object)))]
pub async fn jwks(State(state): State<AppState>) -> Response {
    ([(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"))], Json(state.auth.keys.jwks()))
        .into_response()
}
