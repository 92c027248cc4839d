//! OAuth2 client credentials and JWT access tokens: the key set that signs and
//! verifies tokens ([`keys`]), and the registered clients with their
//! argon2id-hashed secrets ([`clients`]). The HTTP side lives in `http::auth`.

pub mod clients;
pub mod keys;

pub use keys::{Claims, KeySet, TokenError};

/// Scopes this service knows. A token carries a subset of its client's scopes.
pub const SCOPE_READ: &str = "orders:read";
pub const SCOPE_WRITE: &str = "orders:write";
pub const KNOWN_SCOPES: [&str; 2] = [SCOPE_READ, SCOPE_WRITE];
