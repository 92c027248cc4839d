//! OAuth2 client credentials and JWT access tokens: the key set that signs and
//! verifies tokens ([`keys`], remembering verified ones in [`verified`]), the
//! registered clients with their hashed secrets ([`clients`]), the set of
//! disabled clients ([`revocations`]) and the token endpoint's rate limits
//! ([`limits`]). The HTTP side lives in `http::auth`.

pub mod clients;
pub mod keys;
pub mod limits;
pub mod revocations;
pub mod verified;

pub use keys::{Claims, KeySet, TokenError};
pub use revocations::Revocations;

/// Scopes this service knows. A token carries a subset of its client's scopes.
pub const SCOPE_READ: &str = "orders:read";
pub const SCOPE_WRITE: &str = "orders:write";
pub const KNOWN_SCOPES: [&str; 2] = [SCOPE_READ, SCOPE_WRITE];
