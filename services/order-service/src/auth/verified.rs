//! Access tokens already verified, so a client that presents the same token on
//! every request pays for the Ed25519 signature check once, not per request.
//!
//! The cache is keyed by the whole token string: a hit needs the exact bytes that
//! were verified, so a token with one character changed (signature, claims,
//! header) is a miss and goes through full verification. It is bounded (the
//! least useful entries are evicted first) and never extends a token's life: a
//! hit counts only while `nbf <= now < exp` with no leeway; outside that window
//! the token is verified again, which applies the usual rules (and leeway). What
//! is checked per request regardless (scopes, disabled clients) is not cached
//! here.

use quick_cache::sync::Cache;

use super::Claims;

/// How many verified tokens a process remembers (each entry is the token and its
/// claims, well under 1 KiB).
pub const CAPACITY: usize = 4096;

pub struct VerifiedTokens {
    cache: Cache<String, Claims>,
}

impl VerifiedTokens {
    pub fn new(capacity: usize) -> Self {
        Self { cache: Cache::new(capacity.max(1)) }
    }

    /// The claims of `token` if it was verified before and is valid at `now`
    /// (Unix seconds) without leeway.
    pub fn get(&self, token: &str, now: i64) -> Option<Claims> {
        let claims = self.cache.get(token)?;
        if claims.nbf <= now && now < claims.exp {
            Some(claims)
        } else {
            self.cache.remove(token);
            None
        }
    }

    /// Remembers a token that passed full verification.
    pub fn insert(&self, token: &str, claims: &Claims) {
        self.cache.insert(token.to_owned(), claims.clone());
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    fn claims(nbf: i64, exp: i64) -> Claims {
        Claims {
            iss: "orderflow".into(),
            aud: "orderflow-api".into(),
            sub: "demo".into(),
            customer_id: Uuid::now_v7(),
            scope: "orders:read".into(),
            iat: nbf,
            nbf,
            exp,
            jti: Uuid::now_v7(),
        }
    }

    #[test]
    fn a_hit_needs_the_exact_token_and_the_validity_window() {
        let cache = VerifiedTokens::new(16);
        let c = claims(100, 200);
        cache.insert("a.b.c", &c);
        assert_eq!(cache.get("a.b.c", 150), Some(c.clone()));
        assert_eq!(cache.get("a.b.d", 150), None, "another signature is a miss");
        assert_eq!(cache.get("a.b.c", 99), None, "not valid yet: verify again");
        cache.insert("a.b.c", &c);
        assert_eq!(cache.get("a.b.c", 200), None, "expired at exp, with no leeway");
        assert_eq!(cache.get("a.b.c", 150), None, "an expired entry is dropped");
    }

    #[test]
    fn it_stays_bounded() {
        let cache = VerifiedTokens::new(8);
        for i in 0..1000 {
            cache.insert(&format!("token-{i}"), &claims(0, 10));
        }
        let kept = (0..1000).filter(|i| cache.get(&format!("token-{i}"), 5).is_some()).count();
        assert!(kept <= 8, "kept {kept} of 1000 with a capacity of 8");
        assert!(kept > 0);
    }
}
