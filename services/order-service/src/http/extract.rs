//! The `AuthUser` extractor: a verified Bearer token, so handlers never parse
//! headers or check signatures themselves.

use axum::{extract::FromRequestParts, http::request::Parts};

use super::{AppState, error::ApiError};
use crate::auth::Claims;

/// The caller, proven by a valid access token.
#[derive(Debug, Clone)]
pub struct AuthUser(pub Claims);

impl AuthUser {
    /// `Ok` if the token carries `scope`, else 403.
    pub fn require(&self, scope: &'static str) -> Result<(), ApiError> {
        if self.0.has_scope(scope) { Ok(()) } else { Err(ApiError::MissingScope(scope)) }
    }

    pub fn customer_id(&self) -> uuid::Uuid {
        self.0.customer_id
    }
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let header = parts.headers.get(axum::http::header::AUTHORIZATION).ok_or(ApiError::MissingToken)?;
        let value = header.to_str().map_err(|_| crate::auth::TokenError::Malformed)?;
        let (scheme, token) = value.split_once(' ').ok_or(crate::auth::TokenError::Malformed)?;
        if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
            return Err(ApiError::MissingToken);
        }
        let claims = state.keys.verify(token.trim())?;
        tracing::Span::current().record("client_id", claims.sub.as_str());
        Ok(AuthUser(claims))
    }
}
