//! `POST /auth/token`: issuance with both client authentication methods, scope
//! narrowing, and every RFC 6749 section 5.2 error.

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::spawn_app;

async fn oauth_error(resp: reqwest::Response, status: StatusCode, error: &str) -> Value {
    assert_eq!(resp.status(), status);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], error, "{body}");
    assert!(body["error_description"].as_str().is_some_and(|d| !d.is_empty()));
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issues_a_bearer_token_with_basic_or_form_authentication() {
    let app = spawn_app().await;
    let client = app.create_client("orders:read orders:write").await;

    let basic =
        app.token_request(&[("grant_type", "client_credentials")], Some((&client.client_id, &client.secret))).await;
    assert_eq!(basic.status(), StatusCode::OK);
    assert_eq!(basic.headers()["cache-control"], "no-store");
    let body: Value = basic.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 86400);
    assert_eq!(body["scope"], "orders:read orders:write");

    // The token carries the documented claims and verifies with the JWKS key.
    let token = body["access_token"].as_str().unwrap();
    let header = jsonwebtoken::decode_header(token).unwrap();
    assert_eq!(header.alg, jsonwebtoken::Algorithm::EdDSA);
    let jwks: jsonwebtoken::jwk::JwkSet =
        app.http.get(app.url("/.well-known/jwks.json")).send().await.unwrap().json().await.unwrap();
    let jwk = jwks.find(header.kid.as_deref().unwrap()).expect("kid is published");
    assert_eq!(jwk.common.public_key_use, Some(jsonwebtoken::jwk::PublicKeyUse::Signature));
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
    validation.set_audience(&["orderflow-api"]);
    validation.set_issuer(&["orderflow"]);
    let claims: Value =
        jsonwebtoken::decode(token, &jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap(), &validation).unwrap().claims;
    assert_eq!(claims["sub"], client.client_id.as_str());
    assert_eq!(claims["customer_id"], client.customer_id.to_string());
    for claim in ["iss", "aud", "scope", "iat", "exp", "jti", "nbf"] {
        assert!(!claims[claim].is_null(), "claim {claim} missing");
    }

    let form = app
        .token_request(
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &client.client_id),
                ("client_secret", &client.secret),
            ],
            None,
        )
        .await;
    assert_eq!(form.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn narrows_scope_on_request_and_refuses_scopes_not_granted() {
    let app = spawn_app().await;
    let client = app.create_client("orders:read orders:write").await;
    let creds = Some((client.client_id.as_str(), client.secret.as_str()));
    let resp = app.token_request(&[("grant_type", "client_credentials"), ("scope", "orders:read")], creds).await;
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["scope"], "orders:read");

    let reader = app.create_client("orders:read").await;
    let resp = app
        .token_request(
            &[("grant_type", "client_credentials"), ("scope", "orders:write")],
            Some((&reader.client_id, &reader.secret)),
        )
        .await;
    oauth_error(resp, StatusCode::BAD_REQUEST, "invalid_scope").await;
    let resp = app.token_request(&[("grant_type", "client_credentials"), ("scope", "admin")], creds).await;
    oauth_error(resp, StatusCode::BAD_REQUEST, "invalid_scope").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_bad_clients_with_401_invalid_client_and_a_challenge() {
    let app = spawn_app().await;
    let client = app.create_client("orders:read").await;
    type Case<'a> = (Vec<(&'a str, &'a str)>, Option<(&'a str, &'a str)>);
    let cases: Vec<Case> = vec![
        (vec![("grant_type", "client_credentials")], Some((&client.client_id, "wrong-secret"))),
        (vec![("grant_type", "client_credentials")], Some(("no-such-client", "whatever-secret"))),
        (vec![("grant_type", "client_credentials")], None),
        (vec![("grant_type", "client_credentials"), ("client_id", &client.client_id)], None),
        (vec![("grant_type", "client_credentials"), ("client_id", &client.client_id), ("client_secret", "nope")], None),
    ];
    for (form, basic) in cases {
        let resp = app.token_request(&form, basic).await;
        let challenge = resp.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_owned());
        oauth_error(resp, StatusCode::UNAUTHORIZED, "invalid_client").await;
        assert!(challenge.unwrap().starts_with("Basic"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_malformed_requests_with_rfc6749_errors() {
    let app = spawn_app().await;
    let client = app.create_client("orders:read").await;
    let creds = Some((client.client_id.as_str(), client.secret.as_str()));

    let resp = app.token_request(&[("grant_type", "password")], creds).await;
    oauth_error(resp, StatusCode::BAD_REQUEST, "unsupported_grant_type").await;
    let resp = app.token_request(&[("scope", "orders:read")], creds).await;
    oauth_error(resp, StatusCode::BAD_REQUEST, "invalid_request").await;
    let resp =
        app.token_request(&[("grant_type", "client_credentials"), ("grant_type", "client_credentials")], creds).await;
    oauth_error(resp, StatusCode::BAD_REQUEST, "invalid_request").await;
    // Two authentication methods at once.
    let resp = app
        .token_request(
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &client.client_id),
                ("client_secret", &client.secret),
            ],
            creds,
        )
        .await;
    oauth_error(resp, StatusCode::BAD_REQUEST, "invalid_request").await;
    // JSON instead of a form.
    let resp = app
        .http
        .post(app.url("/auth/token"))
        .basic_auth(&client.client_id, Some(&client.secret))
        .json(&serde_json::json!({"grant_type": "client_credentials"}))
        .send()
        .await
        .unwrap();
    oauth_error(resp, StatusCode::BAD_REQUEST, "invalid_request").await;
}
