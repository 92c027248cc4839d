//! The JWT key set: Ed25519 (EdDSA) keys decoded once at start-up.
//!
//! Configuration is a PEM bundle. The first `PRIVATE KEY` signs new tokens; every
//! key in the bundle (private, or `PUBLIC KEY` for a retired signer) verifies
//! tokens and is published at `/.well-known/jwks.json`. Each key's `kid` is its
//! RFC 7638 thumbprint, so it needs no configuration and cannot collide.
//! Rotation: add the new private key first and keep the old one after it until
//! the old tokens expire, then drop it.

use std::collections::HashMap;

use aws_lc_rs::{
    encoding::{AsDer, PublicKeyX509Der},
    signature::{Ed25519KeyPair, KeyPair},
};
use chrono::Utc;
use jsonwebtoken::{
    Algorithm, DecodingKey, EncodingKey, Header, Validation,
    jwk::{Jwk, JwkSet, KeyAlgorithm, PublicKeyUse, ThumbprintHash},
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::verified::{self, VerifiedTokens};

/// The only algorithm tokens may use; anything else (`none`, HS256 forged with
/// the public key, RS256) is rejected before any signature check.
pub const ALGORITHM: Algorithm = Algorithm::EdDSA;

/// Claims of an orderflow access token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    /// The OAuth2 client id.
    pub sub: String,
    /// The customer the client acts for; orders belong to it.
    pub customer_id: Uuid,
    /// Space-separated granted scopes.
    pub scope: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    pub jti: Uuid,
}

impl Claims {
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scope.split(' ').any(|s| s == scope)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("the key bundle is not valid PEM: {0}")]
    Pem(#[from] pem::PemError),
    #[error("the key bundle holds no PRIVATE KEY to sign with")]
    NoSigningKey,
    #[error("PEM block {index} ({tag}) is not an Ed25519 key: {source}{detail}")]
    BadKey { index: usize, tag: String, source: jsonwebtoken::errors::Error, detail: String },
    #[error("PEM block {index} has tag {tag:?}; expected PRIVATE KEY or PUBLIC KEY")]
    UnknownBlock { index: usize, tag: String },
}

/// Why a presented token was refused. Every variant means 401.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the token is malformed")]
    Malformed,
    #[error("the token uses a forbidden algorithm")]
    Algorithm,
    #[error("the token names no known key")]
    UnknownKey,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token was issued for another issuer or audience")]
    WrongIssuerOrAudience,
    #[error("the token signature is invalid")]
    Signature,
    #[error("the token's client is disabled")]
    ClientDisabled,
}

/// Signs and verifies access tokens.
pub struct KeySet {
    signing_kid: String,
    signing_key: EncodingKey,
    verifying: HashMap<String, DecodingKey>,
    jwks: JwkSet,
    validation: Validation,
    issuer: String,
    audience: String,
    verified: VerifiedTokens,
}

impl KeySet {
    /// Decodes a PEM bundle (see the module docs).
    pub fn from_pem_bundle(bundle: &str, issuer: &str, audience: &str) -> Result<Self, KeyError> {
        let mut signing = None;
        let mut verifying = HashMap::new();
        let mut jwks = Vec::new();
        for (index, block) in pem::parse_many(bundle)?.into_iter().enumerate() {
            let bad = |source| KeyError::BadKey { index, tag: block.tag().to_owned(), source, detail: String::new() };
            let mut jwk = match block.tag() {
                "PRIVATE KEY" => {
                    let key = EncodingKey::from_ed_der(block.contents());
                    let jwk = Jwk::from_encoding_key(&key, ALGORITHM).map_err(bad)?;
                    if signing.is_none() {
                        signing = Some((key, jwk.clone()));
                    }
                    jwk
                }
                "PUBLIC KEY" => {
                    let key = DecodingKey::from_ed_pem(pem::encode(&block).as_bytes()).map_err(bad)?;
                    Jwk::from_decoding_key(&key, Some(ALGORITHM)).map_err(bad)?
                }
                tag => {
                    return Err(KeyError::UnknownBlock { index, tag: tag.to_owned() });
                }
            };
            let kid = jwk.thumbprint(ThumbprintHash::SHA256).map_err(bad)?;
            jwk.common.key_id = Some(kid.clone());
            jwk.common.public_key_use = Some(PublicKeyUse::Signature);
            jwk.common.key_algorithm = Some(KeyAlgorithm::EdDSA);
            verifying.insert(kid, DecodingKey::from_jwk(&jwk).map_err(bad)?);
            jwks.push(jwk);
        }
        let (signing_key, signing_jwk) = signing.ok_or(KeyError::NoSigningKey)?;
        let signing_kid = signing_jwk.thumbprint(ThumbprintHash::SHA256).expect("thumbprint computed above");

        let mut validation = Validation::new(ALGORITHM);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = 30;
        Ok(Self {
            signing_kid,
            signing_key,
            verifying,
            jwks: JwkSet { keys: jwks },
            validation,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            verified: VerifiedTokens::new(verified::CAPACITY),
        })
    }

    /// The public keys, for `/.well-known/jwks.json`.
    pub fn jwks(&self) -> &JwkSet {
        &self.jwks
    }

    /// Issues a token for `client_id` acting for `customer_id` with `scope`.
    pub fn issue(&self, client_id: &str, customer_id: Uuid, scope: &str, ttl: std::time::Duration) -> (String, Claims) {
        let now = Utc::now().timestamp();
        let claims = Claims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: client_id.to_owned(),
            customer_id,
            scope: scope.to_owned(),
            iat: now,
            nbf: now,
            exp: now + ttl.as_secs() as i64,
            jti: Uuid::now_v7(),
        };
        let mut header = Header::new(ALGORITHM);
        header.kid = Some(self.signing_kid.clone());
        let token = jsonwebtoken::encode(&header, &claims, &self.signing_key).expect("Ed25519 signing cannot fail");
        (token, claims)
    }

    /// Verifies a presented token: algorithm, key, signature, times, issuer,
    /// audience. A token verified before and still inside its validity window is
    /// answered from [`VerifiedTokens`] without checking its signature again.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        if let Some(claims) = self.verified.get(token, Utc::now().timestamp()) {
            return Ok(claims);
        }
        let claims = self.verify_fully(token)?;
        self.verified.insert(token, &claims);
        Ok(claims)
    }

    fn verify_fully(&self, token: &str) -> Result<Claims, TokenError> {
        use jsonwebtoken::errors::ErrorKind as K;
        let header = jsonwebtoken::decode_header(token).map_err(|e| match e.kind() {
            K::InvalidAlgorithmName => TokenError::Algorithm,
            _ => TokenError::Malformed,
        })?;
        if header.alg != ALGORITHM {
            return Err(TokenError::Algorithm);
        }
        let key = header.kid.as_deref().and_then(|kid| self.verifying.get(kid)).ok_or(TokenError::UnknownKey)?;
        jsonwebtoken::decode::<Claims>(token, key, &self.validation).map(|data| data.claims).map_err(|e| {
            match e.kind() {
                K::ExpiredSignature => TokenError::Expired,
                K::ImmatureSignature => TokenError::NotYetValid,
                K::InvalidIssuer | K::InvalidAudience => TokenError::WrongIssuerOrAudience,
                K::InvalidSignature => TokenError::Signature,
                K::InvalidAlgorithm => TokenError::Algorithm,
                _ => TokenError::Malformed,
            }
        })
    }
}

/// A new random Ed25519 private key as PKCS#8 PEM (`order-service keys generate`;
/// the controller makes its key Secrets with the same function).
pub fn generate_private_key_pem() -> String {
    keygen::ed25519_private_key_pem()
}

/// The public half of a PEM private key as `PUBLIC KEY` (SubjectPublicKeyInfo)
/// PEM, for keeping a retired signer's tokens valid.
pub fn public_key_pem(private_pem: &str) -> Result<String, KeyError> {
    let block = pem::parse(private_pem)?;
    let bad = |detail: String| KeyError::BadKey {
        index: 0,
        tag: block.tag().to_owned(),
        source: jsonwebtoken::errors::ErrorKind::InvalidKeyFormat.into(),
        detail,
    };
    let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(block.contents()).map_err(|e| bad(e.to_string()))?;
    let spki: PublicKeyX509Der<'static> = pair.public_key().as_der().map_err(|e| bad(e.to_string()))?;
    Ok(pem::encode(&pem::Pem::new("PUBLIC KEY", spki.as_ref())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn keyset(bundle: &str) -> KeySet {
        KeySet::from_pem_bundle(bundle, "orderflow", "orderflow-api").unwrap()
    }

    #[test]
    fn issues_tokens_that_verify_with_a_kid_from_the_jwks() {
        let keys = keyset(&generate_private_key_pem());
        let customer = Uuid::now_v7();
        let (token, claims) = keys.issue("demo", customer, "orders:read", Duration::from_secs(60));
        let verified = keys.verify(&token).unwrap();
        assert_eq!(verified, claims);
        assert_eq!(verified.customer_id, customer);
        let kid = jsonwebtoken::decode_header(&token).unwrap().kid.unwrap();
        assert_eq!(keys.jwks().keys[0].common.key_id.as_deref(), Some(kid.as_str()));
    }

    #[test]
    fn rotation_keeps_old_tokens_valid_while_the_old_key_is_listed() {
        let old = generate_private_key_pem();
        let new = generate_private_key_pem();
        let (old_token, _) = keyset(&old).issue("c", Uuid::now_v7(), "orders:read", Duration::from_secs(60));
        let rotated = keyset(&format!("{new}{}", public_key_pem(&old).unwrap()));
        assert_eq!(rotated.jwks().keys.len(), 2);
        assert!(rotated.verify(&old_token).is_ok(), "old token still valid after rotation");
        let (new_token, _) = rotated.issue("c", Uuid::now_v7(), "orders:read", Duration::from_secs(60));
        assert!(matches!(keyset(&old).verify(&new_token), Err(TokenError::UnknownKey)));
    }

    #[test]
    fn a_remembered_token_does_not_vouch_for_a_tampered_copy() {
        let keys = keyset(&generate_private_key_pem());
        let (token, claims) = keys.issue("demo", Uuid::now_v7(), "orders:read", Duration::from_secs(60));
        assert_eq!(keys.verify(&token).unwrap(), claims);
        assert_eq!(keys.verify(&token).unwrap(), claims, "answered from the cache");
        let mut tampered = token.clone();
        let last = tampered.pop().unwrap();
        tampered.push(if last == 'A' { 'B' } else { 'A' });
        assert!(matches!(keys.verify(&tampered), Err(TokenError::Signature | TokenError::Malformed)));
        let foreign = keyset(&generate_private_key_pem());
        assert!(matches!(foreign.verify(&token), Err(TokenError::UnknownKey)), "the cache is per key set");
    }

    #[test]
    fn refuses_bundles_without_a_signer() {
        let public = public_key_pem(&generate_private_key_pem()).unwrap();
        assert!(matches!(KeySet::from_pem_bundle(&public, "i", "a"), Err(KeyError::NoSigningKey)));
        assert!(KeySet::from_pem_bundle("garbage", "i", "a").is_err());
    }
}
