//! SCRAM-SHA-256 password verifiers (RFC 5802 / RFC 7677), the form in which
//! PostgreSQL stores passwords.
//!
//! The controller sends `ALTER ROLE ... PASSWORD 'SCRAM-SHA-256$...'` rather
//! than the password itself, as `psql`'s `\password` does: a server that logs
//! DDL (`log_statement = 'ddl'`) then never writes a usable password to its
//! log. PostgreSQL recognises the verifier format and stores it as given.

use base64::{Engine, engine::general_purpose::STANDARD};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// PostgreSQL's default `scram_iterations`.
pub const ITERATIONS: u32 = 4096;

/// `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` for `password`.
pub fn verifier(password: &str, salt: &[u8], iterations: u32) -> String {
    let mut salted = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt, iterations, &mut salted);
    let client_key = hmac(&salted, b"Client Key");
    let stored_key = Sha256::digest(client_key);
    let server_key = hmac(&salted, b"Server Key");
    format!(
        "SCRAM-SHA-256${iterations}:{}${}:{}",
        STANDARD.encode(salt),
        STANDARD.encode(stored_key),
        STANDARD.encode(server_key)
    )
}

/// A verifier with a fresh random salt.
pub fn new_verifier(password: &str) -> String {
    let salt: [u8; 16] = rand::random();
    verifier(password, &salt, ITERATIONS)
}

fn hmac(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// The salt and iteration count of a stored verifier.
pub fn parse(stored: &str) -> Option<(Vec<u8>, u32)> {
    let rest = stored.strip_prefix("SCRAM-SHA-256$")?;
    let (params, _) = rest.split_once('$')?;
    let (iterations, salt) = params.split_once(':')?;
    Some((STANDARD.decode(salt).ok()?, iterations.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_format_is_what_postgresql_stores() {
        let v = verifier("secret", b"0123456789abcdef", 4096);
        assert!(v.starts_with("SCRAM-SHA-256$4096:MDEyMzQ1Njc4OWFiY2RlZg==$"), "{v}");
        let (salt, iterations) = parse(&v).unwrap();
        assert_eq!((salt.as_slice(), iterations), (b"0123456789abcdef".as_slice(), 4096));
        assert_eq!(v.matches('$').count(), 2);
        assert_eq!(
            v.rsplit_once('$').unwrap().1.split(':').map(|k| STANDARD.decode(k).unwrap().len()).collect::<Vec<_>>(),
            [32, 32]
        );
    }

    #[test]
    fn each_verifier_has_its_own_salt() {
        assert_ne!(new_verifier("same"), new_verifier("same"));
    }
}
