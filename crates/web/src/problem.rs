//! RFC 9457 `application/problem+json` responses.
//!
//! `type` is a stable URI per kind of problem (documented in docs/API.md, "Errors"), so a
//! client can branch on it; `detail` is for humans. 422 responses list every bad
//! field at once in `errors`.

use axum::{
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;

/// The media type of a problem document.
pub const CONTENT_TYPE: &str = "application/problem+json";

/// One invalid field of a request, named by its JSON path (`items[0].quantity`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(serde::Deserialize))]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}

/// An RFC 9457 problem document.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// Extra response headers (e.g. `WWW-Authenticate`); not part of the body.
    #[serde(skip)]
    pub headers: Vec<(header::HeaderName, HeaderValue)>,
}

/// Base of the `type` URIs; each kind is listed in docs/API.md, "Errors".
const TYPE_BASE: &str = "https://orderflow.dev/problems/";

impl Problem {
    /// A problem of the given status; `kind` becomes the last segment of `type`.
    pub fn new(status: StatusCode, kind: &str, title: impl Into<String>) -> Self {
        Self {
            kind: format!("{TYPE_BASE}{kind}"),
            title: title.into(),
            status: status.as_u16(),
            detail: None,
            errors: Vec::new(),
            headers: Vec::new(),
        }
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub fn with_errors(mut self, errors: Vec<FieldError>) -> Self {
        self.errors = errors;
        self
    }

    pub fn with_header(mut self, name: header::HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", "Not Found").with_detail(detail)
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad-request", "Bad Request").with_detail(detail)
    }

    /// A 422 naming every invalid field.
    pub fn validation(errors: Vec<FieldError>) -> Self {
        let n = errors.len();
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "validation", "Invalid request")
            .with_detail(format!("{n} field{} failed validation", if n == 1 { "" } else { "s" }))
            .with_errors(errors)
    }

    /// A 500 with an opaque body; the caller logs the cause.
    pub fn internal() -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "Internal Server Error")
            .with_detail("The server failed to handle the request; it has been logged.")
    }

    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "Service Unavailable").with_detail(detail)
    }

    pub fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status_code();
        let body = serde_json::to_vec(&self).expect("problem documents always serialise");
        let mut response =
            (status, [(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE))], body).into_response();
        for (name, value) in self.headers {
            response.headers_mut().append(name, value);
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_rfc9457_with_field_errors() {
        let response =
            Problem::validation(vec![FieldError::new("items[0].quantity", "must be 1..=999")]).into_response();
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(response.headers()[header::CONTENT_TYPE], CONTENT_TYPE);
        let p = serde_json::to_value(Problem::validation(vec![FieldError::new("a", "b")])).unwrap();
        assert_eq!(p["status"], 422);
        assert_eq!(p["type"], "https://orderflow.dev/problems/validation");
        assert_eq!(p["errors"][0]["field"], "a");
    }
}
