//! The key material orderflow generates, in the formats the order-service
//! reads, and checks that material given to it is usable. Shared by
//! `order-service keys ...` and the controller, which creates the key Secrets
//! of an OrderPipeline; knows nothing of Kubernetes, HTTP or databases.
//!
//! - [`ed25519_private_key_pem`]: a JWT signing key, Ed25519 as PKCS#8 PEM
//!   (`JWT_PRIVATE_KEY`), from aws-lc-rs, the services' crypto provider;
//! - [`client_secret_key`]: a `CLIENT_SECRET_KEY`, the HMAC-SHA-256 key
//!   generated client secrets are stored under: 256 random bits as
//!   URL-safe base64 (43 characters, no padding), so it is plain text in a
//!   file or a variable and longer than [`CLIENT_SECRET_KEY_MIN_LEN`].

use aws_lc_rs::{
    rand::{SecureRandom, SystemRandom},
    signature::Ed25519KeyPair,
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};

/// The shortest `CLIENT_SECRET_KEY` the order-service accepts, in bytes of
/// text (after trimming surrounding whitespace).
pub const CLIENT_SECRET_KEY_MIN_LEN: usize = 32;

/// The PEM tag of a PKCS#8 private key.
const PRIVATE_KEY: &str = "PRIVATE KEY";

/// A new random Ed25519 private key as PKCS#8 PEM (`order-service keys generate`).
pub fn ed25519_private_key_pem() -> String {
    let der = Ed25519KeyPair::generate_pkcs8v1(&SystemRandom::new()).expect("the system RNG works");
    // LF line endings (the pem crate's default is CRLF), as openssl writes them.
    let config = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
    pem::encode_config(&pem::Pem::new(PRIVATE_KEY, der.as_ref()), config)
}

/// A new random `CLIENT_SECRET_KEY` (`order-service keys client-secret-key`).
pub fn client_secret_key() -> String {
    let mut raw = [0u8; 32];
    SystemRandom::new().fill(&mut raw).expect("the system RNG works");
    URL_SAFE_NO_PAD.encode(raw)
}

/// Whether `bundle` can sign: its first PEM block is an Ed25519 private key
/// in PKCS#8 (later blocks, e.g. a retired signer's public key, are the
/// order-service's to check). The error says what is wrong, never the key.
pub fn check_signing_key(bundle: &str) -> Result<(), String> {
    let blocks = pem::parse_many(bundle).map_err(|e| format!("not PEM ({e})"))?;
    let first = blocks.first().ok_or("no PEM block")?;
    if first.tag() != PRIVATE_KEY {
        return Err(format!("the first PEM block is a {}, not a PRIVATE KEY (PKCS#8)", first.tag()));
    }
    Ed25519KeyPair::from_pkcs8_maybe_unchecked(first.contents())
        .map(drop)
        .map_err(|_| "the first PRIVATE KEY is not an Ed25519 key in PKCS#8".to_owned())
}

/// Whether `text` is a usable `CLIENT_SECRET_KEY` (long enough once trimmed).
pub fn check_client_secret_key(text: &str) -> Result<(), String> {
    let len = text.trim().len();
    if len < CLIENT_SECRET_KEY_MIN_LEN {
        return Err(format!("{len} bytes; a CLIENT_SECRET_KEY needs at least {CLIENT_SECRET_KEY_MIN_LEN}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::signature::{ED25519, KeyPair, UnparsedPublicKey};

    #[test]
    fn a_generated_signing_key_is_ed25519_pkcs8_pem_that_signs() {
        let pem_text = ed25519_private_key_pem();
        assert!(pem_text.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{pem_text}");
        assert!(!pem_text.contains('\r'), "LF line endings");
        let der = pem::parse(&pem_text).unwrap();
        let pair = Ed25519KeyPair::from_pkcs8(der.contents()).expect("Ed25519 PKCS#8");
        let signature = pair.sign(b"token");
        UnparsedPublicKey::new(&ED25519, pair.public_key().as_ref()).verify(b"token", signature.as_ref()).unwrap();
        assert_ne!(ed25519_private_key_pem(), pem_text, "each call makes a new key");
        assert_eq!(check_signing_key(&pem_text), Ok(()));
    }

    #[test]
    fn a_bundle_signs_with_its_first_key_and_anything_else_is_refused() {
        let bundle = format!("{}{}", ed25519_private_key_pem(), ed25519_private_key_pem());
        assert_eq!(check_signing_key(&bundle), Ok(()));
        assert_eq!(check_signing_key(""), Err("no PEM block".into()));
        let public = pem::encode(&pem::Pem::new("PUBLIC KEY", vec![0u8; 44]));
        assert!(check_signing_key(&public).unwrap_err().contains("not a PRIVATE KEY"));
        let junk = pem::encode(&pem::Pem::new("PRIVATE KEY", b"not a key".to_vec()));
        assert!(check_signing_key(&junk).unwrap_err().contains("not an Ed25519 key"));
    }

    #[test]
    fn a_generated_client_secret_key_is_256_url_safe_bits() {
        let key = client_secret_key();
        assert_eq!(key.len(), 43);
        assert_eq!(URL_SAFE_NO_PAD.decode(&key).unwrap().len(), 32);
        assert!(key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "{key}");
        assert_ne!(client_secret_key(), key);
        assert_eq!(check_client_secret_key(&format!("{key}\n")), Ok(()));
        assert!(check_client_secret_key("  short  ").unwrap_err().starts_with("5 bytes"));
    }
}
