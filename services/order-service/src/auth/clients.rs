//! Registered OAuth2 clients: creation (`order-service clients create`),
//! disabling and enabling, lookup, and secret checks. The plain secret is
//! returned once, at creation, and stored only as a one-way value of one of
//! two kinds:
//! - `hmac-sha256`: secrets the service generates (256 random bits) are stored
//!   as HMAC-SHA-256 under the server's `CLIENT_SECRET_KEY` and checked with one
//!   constant-time comparison: guessing is hopeless at that entropy, so a slow
//!   hash would only hand attackers a way to burn CPU;
//! - `argon2id`: secrets people chose (`--client-secret`), or any secret when no
//!   key is configured, keep the deliberately slow hash.

use argon2::{
    Argon2,
    password_hash::{PasswordHasher, PasswordVerifier},
};
use aws_lc_rs::hmac;
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use sqlx::PgPool;
use uuid::Uuid;

/// A client as stored.
#[derive(Debug, Clone)]
pub struct Client {
    pub client_id: String,
    pub secret_hash: String,
    /// [`SecretKind::as_str`] of `secret_hash`.
    pub secret_kind: String,
    pub customer_id: Uuid,
    pub scopes: Vec<String>,
    /// Set by `clients disable`: no tokens for this client.
    pub disabled: bool,
}

/// How a client's secret is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretKind {
    Argon2id,
    HmacSha256,
}

impl SecretKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SecretKind::Argon2id => "argon2id",
            SecretKind::HmacSha256 => "hmac-sha256",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [SecretKind::Argon2id, SecretKind::HmacSha256].into_iter().find(|k| k.as_str() == s)
    }
}

/// The server-side key under which generated secrets are stored
/// (`CLIENT_SECRET_KEY`). Its `Debug` output shows nothing of it.
#[derive(Clone)]
pub struct ClientSecretKey(hmac::Key);

/// The shortest accepted `CLIENT_SECRET_KEY`, in bytes.
pub const MIN_KEY_LEN: usize = keygen::CLIENT_SECRET_KEY_MIN_LEN;

impl ClientSecretKey {
    /// A key from at least [`MIN_KEY_LEN`] bytes (the variable's text as is).
    pub fn new(material: &[u8]) -> Option<Self> {
        (material.len() >= MIN_KEY_LEN).then(|| Self(hmac::Key::new(hmac::HMAC_SHA256, material)))
    }

    /// A fresh random key, printed by `order-service keys client-secret-key`
    /// (the controller makes its key Secrets with the same function).
    pub fn generate_text() -> String {
        keygen::client_secret_key()
    }

    fn tag(&self, secret: &str) -> String {
        hex::encode(hmac::sign(&self.0, secret.as_bytes()).as_ref())
    }

    /// Whether `secret` is the one whose stored value is `stored`, in constant time.
    fn verify(&self, stored: &str, secret: &str) -> bool {
        hex::decode(stored).is_ok_and(|tag| hmac::verify(&self.0, secret.as_bytes(), &tag).is_ok())
    }
}

impl std::fmt::Debug for ClientSecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientSecretKey(..)")
    }
}

/// What checking a presented secret needs.
#[derive(Debug, PartialEq, Eq)]
pub enum Check {
    /// Decided at once (an HMAC comparison).
    Done(bool),
    /// Needs an argon2 verification against this PHC string (slow: run it off
    /// the async runtime, under the hash limiter).
    Argon2(String),
}

/// How to check `secret` for `client` (`None`: an unknown id, checked against a
/// decoy argon2 hash so that timing does not tell which ids exist).
pub fn check(client: Option<&Client>, key: Option<&ClientSecretKey>) -> impl FnOnce(&str) -> Check {
    let plan = match client {
        None => Err(decoy_hash().to_owned()),
        Some(c) => match SecretKind::parse(&c.secret_kind) {
            Some(SecretKind::HmacSha256) => Ok((c.secret_hash.clone(), key.cloned())),
            _ => Err(c.secret_hash.clone()),
        },
    };
    move |secret: &str| match plan {
        Ok((stored, Some(key))) => Check::Done(key.verify(&stored, secret)),
        Ok((_, None)) => {
            tracing::error!("a client's secret is HMAC-stored but CLIENT_SECRET_KEY is not set");
            Check::Done(false)
        }
        Err(phc) => Check::Argon2(phc),
    }
}

/// A freshly created client with its one-time plain secret.
#[derive(Debug, serde::Serialize)]
pub struct NewClient {
    pub client_id: String,
    pub client_secret: String,
    pub customer_id: Uuid,
    pub scope: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("a client with id {0:?} already exists (use --replace to overwrite it)")]
    Exists(String),
    #[error("unknown scope {0:?}; known scopes: orders:read orders:write")]
    UnknownScope(String),
    #[error("client ids are 1..=64 of [A-Za-z0-9._-]")]
    BadId,
    #[error("client secrets must be at least 8 characters")]
    WeakSecret,
    #[error("no client with id {0:?}")]
    Unknown(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Hashes a secret with argon2id (default, OWASP-recommended parameters).
pub fn hash_secret(secret: &str) -> String {
    Argon2::default().hash_password(secret.as_bytes()).expect("argon2 with default parameters cannot fail").to_string()
}

/// Checks a secret against its stored hash in constant time for the hash.
pub fn verify_secret(hash: &str, secret: &str) -> bool {
    Argon2::default().verify_password(secret.as_bytes(), hash).is_ok()
}

/// A hash of a random secret, checked against when the client id is unknown so
/// that a wrong id and a wrong secret take the same time.
pub fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash_secret(&random_token(32)))
}

fn random_token(bytes: usize) -> String {
    let raw: Vec<u8> = (0..bytes).map(|_| rand::random::<u8>()).collect();
    URL_SAFE_NO_PAD.encode(raw)
}

/// Whether `id` can be a client id: 1..=64 of `[A-Za-z0-9._-]`. Checked before
/// an id from a request is looked up, limited or logged.
pub fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// Creates a client. Without `client_id`/`secret`, random ones are generated;
/// every secret is stored with argon2id (see [`create_with_key`]).
pub async fn create(
    pool: &PgPool,
    customer_id: Uuid,
    scope: &str,
    client_id: Option<String>,
    secret: Option<String>,
    replace: bool,
) -> Result<NewClient, ClientError> {
    create_with_key(pool, customer_id, scope, client_id, secret, replace, None).await
}

/// Creates a client. Without `client_id`/`secret`, random ones are generated;
/// a generated secret is stored under `key` (HMAC-SHA-256) when there is one,
/// a chosen secret always with argon2id.
pub async fn create_with_key(
    pool: &PgPool,
    customer_id: Uuid,
    scope: &str,
    client_id: Option<String>,
    secret: Option<String>,
    replace: bool,
    key: Option<&ClientSecretKey>,
) -> Result<NewClient, ClientError> {
    let scopes: Vec<String> = scope.split_whitespace().map(str::to_owned).collect();
    if let Some(bad) = scopes.iter().find(|s| !super::KNOWN_SCOPES.contains(&s.as_str())) {
        return Err(ClientError::UnknownScope(bad.clone()));
    }
    let client_id = client_id.unwrap_or_else(|| format!("cl_{}", Uuid::now_v7().simple()));
    if !valid_id(&client_id) {
        return Err(ClientError::BadId);
    }
    let (secret, key) = match secret {
        Some(chosen) => (chosen, None),
        None => (random_token(32), key),
    };
    if secret.len() < 8 {
        return Err(ClientError::WeakSecret);
    }
    let (hash, kind) = match key {
        Some(key) => (key.tag(&secret), SecretKind::HmacSha256),
        None => {
            let hash = tokio::task::spawn_blocking({
                let secret = secret.clone();
                move || hash_secret(&secret)
            })
            .await
            .expect("hashing task does not panic");
            (hash, SecretKind::Argon2id)
        }
    };
    // One statement per mode: `ON CONFLICT` cannot be a parameter.
    let inserted = if replace {
        sqlx::query!(
            "INSERT INTO clients (client_id, secret_hash, secret_kind, customer_id, scopes) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (client_id) DO UPDATE
                SET secret_hash = EXCLUDED.secret_hash, secret_kind = EXCLUDED.secret_kind,
                    customer_id = EXCLUDED.customer_id, scopes = EXCLUDED.scopes",
            client_id,
            hash,
            kind.as_str(),
            customer_id,
            &scopes,
        )
        .execute(pool)
        .await?
    } else {
        sqlx::query!(
            "INSERT INTO clients (client_id, secret_hash, secret_kind, customer_id, scopes) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (client_id) DO NOTHING",
            client_id,
            hash,
            kind.as_str(),
            customer_id,
            &scopes,
        )
        .execute(pool)
        .await?
    }
    .rows_affected();
    if inserted == 0 {
        return Err(ClientError::Exists(client_id));
    }
    Ok(NewClient { client_id, client_secret: secret, customer_id, scope: scopes.join(" ") })
}

/// Looks a client up by id.
#[tracing::instrument(skip(pool))]
pub async fn find(pool: &PgPool, client_id: &str) -> Result<Option<Client>, sqlx::Error> {
    sqlx::query_as!(
        Client,
        r#"SELECT client_id, secret_hash, secret_kind, customer_id, scopes, disabled_at IS NOT NULL AS "disabled!"
           FROM clients WHERE client_id = $1"#,
        client_id
    )
    .fetch_optional(pool)
    .await
}

/// Disables (`true`) or enables a client (`order-service clients disable|enable`).
/// Disabling again keeps the first time.
pub async fn set_disabled(pool: &PgPool, client_id: &str, disabled: bool) -> Result<(), ClientError> {
    let updated = sqlx::query!(
        "UPDATE clients SET disabled_at = CASE WHEN $2 THEN COALESCE(disabled_at, now()) END WHERE client_id = $1",
        client_id,
        disabled,
    )
    .execute(pool)
    .await?
    .rows_affected();
    if updated == 0 {
        return Err(ClientError::Unknown(client_id.to_owned()));
    }
    Ok(())
}

/// The ids of every disabled client (the API's revocation set).
pub async fn disabled_ids(pool: &PgPool) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar!("SELECT client_id FROM clients WHERE disabled_at IS NOT NULL").fetch_all(pool).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(kind: SecretKind, hash: String) -> Client {
        Client {
            client_id: "c".into(),
            secret_hash: hash,
            secret_kind: kind.as_str().into(),
            customer_id: Uuid::nil(),
            scopes: vec![],
            disabled: false,
        }
    }

    #[test]
    fn generated_secrets_are_checked_by_hmac_without_argon2() {
        let key = ClientSecretKey::new(&[7u8; 32]).unwrap();
        let secret = random_token(32);
        let stored = client(SecretKind::HmacSha256, key.tag(&secret));
        assert_eq!(check(Some(&stored), Some(&key))(&secret), Check::Done(true));
        assert_eq!(check(Some(&stored), Some(&key))("wrong"), Check::Done(false));
        let other = ClientSecretKey::new(&[8u8; 32]).unwrap();
        assert_eq!(check(Some(&stored), Some(&other))(&secret), Check::Done(false), "another key");
        assert_eq!(check(Some(&stored), None)(&secret), Check::Done(false), "no key configured");
        assert!(ClientSecretKey::new(&[1u8; 31]).is_none(), "short keys are refused");
        assert_eq!(format!("{key:?}"), "ClientSecretKey(..)");
    }

    #[test]
    fn chosen_secrets_and_unknown_ids_go_through_argon2() {
        let key = ClientSecretKey::new(&[7u8; 32]).unwrap();
        let stored = client(SecretKind::Argon2id, "$argon2id$phc".into());
        assert_eq!(check(Some(&stored), Some(&key))("x"), Check::Argon2("$argon2id$phc".into()));
        assert_eq!(check(None, Some(&key))("x"), Check::Argon2(decoy_hash().to_owned()));
    }

    #[test]
    fn client_ids_are_short_and_plain() {
        assert!(valid_id("cl_0190abc.DEF-9"));
        assert!(!valid_id(""));
        assert!(!valid_id(&"a".repeat(65)));
        assert!(!valid_id("a b") && !valid_id("a\nb") && !valid_id("ü"));
    }

    #[test]
    fn hashes_verify_only_the_right_secret() {
        let hash = super::hash_secret("demo-secret");
        assert!(hash.starts_with("$argon2id$"));
        assert!(super::verify_secret(&hash, "demo-secret"));
        assert!(!super::verify_secret(&hash, "demo-secreT"));
        assert!(!super::verify_secret("not a hash", "demo-secret"));
    }
}
