//! The `AuthUser` extractor: a verified Bearer token, so handlers never parse
//! headers or check signatures themselves. The header is parsed by axum-extra's
//! typed `Authorization<Bearer>`; a missing or non-Bearer header is 401 with a
//! Bearer challenge. A token of a disabled client (the in-memory revocation
//! set, no database read) is 401 too.

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
        if state.auth.revocations.is_revoked(&claims.sub) {
            return Err(TokenError::ClientDisabled.into());
        }
        tracing::Span::current().record("client_id", claims.sub.as_str());
        Ok(AuthUser(claims))
    }
}

/// The source address of the request as the socket saw it (behind a proxy,
/// the proxy's): `None` when the router is called without a socket (tests).
pub struct SourceAddr(pub Option<std::net::IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for SourceAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let peer = parts.extensions.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>();
        Ok(SourceAddr(peer.map(|c| c.0.ip())))
    }
}
