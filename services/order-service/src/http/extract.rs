//! The `AuthUser` extractor: a verified Bearer token, so handlers never parse
//! headers or check signatures themselves. The header is parsed by axum-extra's
//! typed `Authorization<Bearer>`; a missing or non-Bearer header is 401 with a
//! Bearer challenge.

use axum::{extract::FromRequestParts, http::request::Parts};
use axum_extra::{
    TypedHeader,
    headers::{Authorization, authorization::Bearer},
    typed_header::TypedHeaderRejectionReason,
};

use super::{AppState, error::ApiError};
use crate::auth::{Claims, TokenError};

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
        let TypedHeader(Authorization(bearer)) =
            TypedHeader::<Authorization<Bearer>>::from_request_parts(parts, state).await.map_err(|e| {
                match e.reason() {
                    TypedHeaderRejectionReason::Missing => ApiError::MissingToken,
                    // Present but not `Bearer <token>` (another scheme, bad bytes).
                    _ => TokenError::Malformed.into(),
                }
            })?;
        let claims = state.auth.keys.verify(bearer.token())?;
        tracing::Span::current().record("client_id", claims.sub.as_str());
        Ok(AuthUser(claims))
    }
}
