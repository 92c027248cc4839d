//! The API's error type: every way a request can fail, each mapped to a status
//! code and an RFC 9457 problem document. 5xx causes are logged here, once, and
//! never sent to the client. (The token endpoint has its own RFC 6749 errors in
//! `http::auth`.)

use axum::{
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use web::{FieldError, Problem};

use crate::auth::TokenError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("missing bearer token")]
    MissingToken,
    #[error(transparent)]
    InvalidToken(#[from] TokenError),
    #[error("the token lacks scope {0}")]
    MissingScope(&'static str),
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    BadRequest(String),
    #[error("request body larger than {0} bytes")]
    TooLarge(usize),
    #[error("unsupported content type")]
    UnsupportedMediaType,
    #[error("invalid fields")]
    Validation(Vec<FieldError>),
    #[error("a request with this Idempotency-Key is still in flight")]
    IdempotencyInFlight,
    #[error("this Idempotency-Key was used with a different request body")]
    IdempotencyMismatch,
    #[error("too many open event streams")]
    TooManyStreams,
    #[error("this customer holds too many open event streams")]
    TooManyCustomerStreams,
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

fn bearer_challenge(error: Option<(&str, &str)>) -> HeaderValue {
    let value = match error {
        None => r#"Bearer realm="orderflow""#.to_owned(),
        Some((code, description)) => {
            format!(r#"Bearer realm="orderflow", error="{code}", error_description="{description}""#)
        }
    };
    HeaderValue::from_str(&value).expect("static challenge text is a valid header")
}

impl ApiError {
    pub fn problem(&self) -> Problem {
        match self {
            ApiError::MissingToken => Problem::new(StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized")
                .with_detail("This endpoint needs a Bearer access token from POST /auth/token.")
                .with_header(header::WWW_AUTHENTICATE, bearer_challenge(None)),
            ApiError::InvalidToken(why) => Problem::new(StatusCode::UNAUTHORIZED, "invalid-token", "Invalid token")
                .with_detail(format!("{why}."))
                .with_header(header::WWW_AUTHENTICATE, bearer_challenge(Some(("invalid_token", &why.to_string())))),
            ApiError::MissingScope(scope) => {
                Problem::new(StatusCode::FORBIDDEN, "insufficient-scope", "Insufficient scope")
                    .with_detail(format!("This request needs the {scope} scope."))
                    .with_header(
                        header::WWW_AUTHENTICATE,
                        HeaderValue::from_str(&format!(
                            r#"Bearer realm="orderflow", error="insufficient_scope", scope="{scope}""#
                        ))
                        .expect("scope names are valid header text"),
                    )
            }
            ApiError::NotFound => Problem::not_found("No order with this id exists for this customer."),
            ApiError::BadRequest(detail) => Problem::bad_request(detail.clone()),
            ApiError::TooLarge(limit) => Problem::new(StatusCode::PAYLOAD_TOO_LARGE, "too-large", "Payload Too Large")
                .with_detail(format!("The request body may be at most {limit} bytes.")),
            ApiError::UnsupportedMediaType => {
                Problem::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported-media-type", "Unsupported Media Type")
                    .with_detail("Send the body as application/json.")
            }
            ApiError::Validation(errors) => Problem::validation(errors.clone()),
            ApiError::IdempotencyInFlight => {
                Problem::new(StatusCode::CONFLICT, "idempotency-in-flight", "Request in flight")
                    .with_detail("A request with this Idempotency-Key is still being processed; retry shortly.")
                    .with_header(header::RETRY_AFTER, HeaderValue::from_static("1"))
            }
            ApiError::IdempotencyMismatch => {
                Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "idempotency-mismatch", "Idempotency-Key reused")
                    .with_detail("This Idempotency-Key was already used with a different request body.")
            }
            ApiError::TooManyStreams => Problem::unavailable(
                "This server holds as many live streams as it may; retry shortly or poll GET /orders/{id}.",
            )
            .with_header(header::RETRY_AFTER, HeaderValue::from_static("5")),
            ApiError::TooManyCustomerStreams => {
                Problem::new(StatusCode::TOO_MANY_REQUESTS, "too-many-streams", "Too Many Streams")
                    .with_detail(
                        "This customer holds as many live streams as it may; close one, or poll GET /orders/{id}.",
                    )
                    .with_header(header::RETRY_AFTER, HeaderValue::from_static("5"))
            }
            ApiError::Database(sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed) => {
                Problem::unavailable("The service is overloaded; retry shortly.")
                    .with_header(header::RETRY_AFTER, HeaderValue::from_static("1"))
            }
            ApiError::Database(_) => Problem::internal(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let problem = self.problem();
        match problem.status {
            503 => tracing::warn!(error = %self, "request refused: service unavailable"),
            500.. => tracing::error!(error = %self, "request failed"),
            _ => {}
        }
        problem.into_response()
    }
}
