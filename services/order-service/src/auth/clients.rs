//! Registered OAuth2 clients: creation (`order-service clients create`), lookup,
//! and secret checks. Secrets are random 256-bit strings, stored only as
//! argon2id PHC hashes; the plain secret is returned once, at creation.

use argon2::{
    Argon2,
    password_hash::{PasswordHasher, PasswordVerifier},
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use sqlx::PgPool;
use uuid::Uuid;

/// A client as stored.
#[derive(Debug, Clone)]
pub struct Client {
    pub client_id: String,
    pub secret_hash: String,
    pub customer_id: Uuid,
    pub scopes: Vec<String>,
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

fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// Creates a client. Without `client_id`/`secret`, random ones are generated.
pub async fn create(
    pool: &PgPool,
    customer_id: Uuid,
    scope: &str,
    client_id: Option<String>,
    secret: Option<String>,
    replace: bool,
) -> Result<NewClient, ClientError> {
    let scopes: Vec<String> = scope.split_whitespace().map(str::to_owned).collect();
    if let Some(bad) = scopes.iter().find(|s| !super::KNOWN_SCOPES.contains(&s.as_str())) {
        return Err(ClientError::UnknownScope(bad.clone()));
    }
    let client_id = client_id.unwrap_or_else(|| format!("cl_{}", Uuid::now_v7().simple()));
    if !valid_id(&client_id) {
        return Err(ClientError::BadId);
    }
    let secret = secret.unwrap_or_else(|| random_token(32));
    if secret.len() < 8 {
        return Err(ClientError::WeakSecret);
    }
    let hash = tokio::task::spawn_blocking({
        let secret = secret.clone();
        move || hash_secret(&secret)
    })
    .await
    .expect("hashing task does not panic");
    // One statement per mode: `ON CONFLICT` cannot be a parameter.
    let inserted = if replace {
        sqlx::query!(
            "INSERT INTO clients (client_id, secret_hash, customer_id, scopes) VALUES ($1, $2, $3, $4)
             ON CONFLICT (client_id) DO UPDATE
                SET secret_hash = EXCLUDED.secret_hash, customer_id = EXCLUDED.customer_id, scopes = EXCLUDED.scopes",
            client_id,
            hash,
            customer_id,
            &scopes,
        )
        .execute(pool)
        .await?
    } else {
        sqlx::query!(
            "INSERT INTO clients (client_id, secret_hash, customer_id, scopes) VALUES ($1, $2, $3, $4)
             ON CONFLICT (client_id) DO NOTHING",
            client_id,
            hash,
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
        "SELECT client_id, secret_hash, customer_id, scopes FROM clients WHERE client_id = $1",
        client_id
    )
    .fetch_optional(pool)
    .await
}

#[cfg(test)]
mod tests {
    #[test]
    fn hashes_verify_only_the_right_secret() {
        let hash = super::hash_secret("demo-secret");
        assert!(hash.starts_with("$argon2id$"));
        assert!(super::verify_secret(&hash, "demo-secret"));
        assert!(!super::verify_secret(&hash, "demo-secreT"));
        assert!(!super::verify_secret("not a hash", "demo-secret"));
    }
}
