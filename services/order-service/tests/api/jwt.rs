//! Protected routes accept only valid EdDSA tokens from our keys: every forged,
//! stale or misaddressed token is a 401 with a Bearer challenge; a missing
//! scope is a 403.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::Utc;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use order_service::auth::{Claims, keys::generate_private_key_pem};
use reqwest::StatusCode;
use uuid::Uuid;

use crate::helpers::{TestApp, problem, spawn_app, valid_order};

fn claims(customer_id: Uuid) -> Claims {
    let now = Utc::now().timestamp();
    Claims {
        iss: "orderflow".into(),
        aud: "orderflow-api".into(),
        sub: "test-client".into(),
        customer_id,
        scope: "orders:read orders:write".into(),
        iat: now,
        nbf: now,
        exp: now + 600,
        jti: Uuid::now_v7(),
    }
}

/// Signs `claims` with the app's real key and kid.
fn sign(app: &TestApp, kid: &str, claims: &Claims) -> String {
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_ed_pem(app.keys_pem.as_bytes()).unwrap()).unwrap()
}

async fn assert_rejected(app: &TestApp, token: &str, case: &str) {
    let resp = app.http.get(app.url("/orders")).bearer_auth(token).send().await.unwrap();
    let challenge = resp.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{case} was not rejected");
    assert!(challenge.starts_with("Bearer"), "{case}: challenge {challenge:?}");
    problem(resp, StatusCode::UNAUTHORIZED).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepts_a_token_signed_here_and_rejects_every_forgery() {
    let app = spawn_app().await;
    let (real, client) = app.customer().await;
    let kid = jsonwebtoken::decode_header(&real).unwrap().kid.unwrap();
    let good = claims(client.customer_id);
    assert_eq!(app.get(&sign(&app, &kid, &good), "/orders").await.status(), StatusCode::OK);

    // Missing and garbled Authorization headers.
    let resp = app.http.get(app.url("/orders")).send().await.unwrap();
    assert_eq!(resp.headers()["www-authenticate"], r#"Bearer realm="orderflow""#);
    problem(resp, StatusCode::UNAUTHORIZED).await;
    for header in ["Bearer", "Bearer ", "Basic abc", "Token x.y.z", "bearer not-a-jwt"] {
        let resp = app.http.get(app.url("/orders")).header("authorization", header).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{header}");
    }
    assert_rejected(&app, "a.b.c", "garbled token").await;

    // Signed by another key under our kid.
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(kid.clone());
    let other = EncodingKey::from_ed_pem(generate_private_key_pem().as_bytes()).unwrap();
    assert_rejected(&app, &jsonwebtoken::encode(&header, &good, &other).unwrap(), "foreign signature").await;

    // Tampered payload: a real signature over other claims.
    let mut parts: Vec<String> = real.split('.').map(str::to_owned).collect();
    let mut payload: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&parts[1]).unwrap()).unwrap();
    payload["customer_id"] = serde_json::json!(Uuid::now_v7());
    parts[1] = URL_SAFE_NO_PAD.encode(payload.to_string());
    assert_rejected(&app, &parts.join("."), "tampered payload").await;

    // alg: none.
    let none_header = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"none","typ":"JWT","kid":"{kid}"}}"#));
    let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&good).unwrap());
    assert_rejected(&app, &format!("{none_header}.{body}."), "alg none").await;

    // HS256 "signed" with the public key (the classic key-confusion attack).
    let jwks: serde_json::Value =
        app.http.get(app.url("/.well-known/jwks.json")).send().await.unwrap().json().await.unwrap();
    let x = jwks["keys"][0]["x"].as_str().unwrap();
    for secret in [x.as_bytes().to_vec(), URL_SAFE_NO_PAD.decode(x).unwrap(), jwks["keys"][0].to_string().into_bytes()]
    {
        let mut hs = Header::new(Algorithm::HS256);
        hs.kid = Some(kid.clone());
        let forged = jsonwebtoken::encode(&hs, &good, &EncodingKey::from_secret(&secret)).unwrap();
        assert_rejected(&app, &forged, "HS256 with the public key").await;
    }

    // Unknown or missing kid.
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = None;
    let signer = EncodingKey::from_ed_pem(app.keys_pem.as_bytes()).unwrap();
    assert_rejected(&app, &jsonwebtoken::encode(&header, &good, &signer).unwrap(), "no kid").await;

    // Expired, not yet valid, wrong issuer, wrong audience.
    let now = Utc::now().timestamp();
    let expired = Claims { iat: now - 7200, nbf: now - 7200, exp: now - 3600, ..good.clone() };
    assert_rejected(&app, &sign(&app, &kid, &expired), "expired").await;
    let early = Claims { nbf: now + 3600, exp: now + 7200, ..good.clone() };
    assert_rejected(&app, &sign(&app, &kid, &early), "not yet valid").await;
    let issuer = Claims { iss: "someone-else".into(), ..good.clone() };
    assert_rejected(&app, &sign(&app, &kid, &issuer), "wrong issuer").await;
    let audience = Claims { aud: "another-api".into(), ..good.clone() };
    assert_rejected(&app, &sign(&app, &kid, &audience), "wrong audience").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_scope_is_403_with_insufficient_scope() {
    let app = spawn_app().await;
    let (reader, _) = app.customer_with_scope("orders:read").await;
    let resp = app.post_order(&reader, &valid_order(), None).await;
    assert!(resp.headers()["www-authenticate"].to_str().unwrap().contains(r#"error="insufficient_scope""#));
    problem(resp, StatusCode::FORBIDDEN).await;

    let (writer, _) = app.customer_with_scope("orders:write").await;
    problem(app.get(&writer, "/orders").await, StatusCode::FORBIDDEN).await;
    assert_eq!(app.post_order(&writer, &valid_order(), None).await.status(), StatusCode::CREATED);
}
