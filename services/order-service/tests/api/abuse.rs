//! Hostile and careless clients of the token endpoint and the API: a burst of
//! wrong secrets is refused with 429/503 without starving a good client from
//! another address; malformed client ids are refused unlooked-up; a disabled
//! client gets no token at once, and its tokens stop at the next refresh of the
//! revocation set (driven here as a step, no sleeping).

use std::{
    net::{IpAddr, Ipv4Addr},
    process::Command,
    time::{Duration, Instant},
};

use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{Options, TestApp, spawn_app_with};

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

async fn token_from(app: &TestApp, http: &reqwest::Client, id: &str, secret: &str) -> reqwest::Response {
    http.post(app.url("/auth/token"))
        .basic_auth(id, Some(secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_wrong_secrets_does_not_starve_a_good_client_elsewhere() {
    let app = spawn_app_with(Options {
        env: env(&[
            ("AUTH_RATE_PER_ADDRESS", "30"),
            ("AUTH_RATE_PER_CLIENT", "5"),
            ("AUTH_HASH_CONCURRENCY", "1"),
            ("AUTH_HASH_WAIT", "200ms"),
        ]),
        ..Default::default()
    })
    .await;
    let good = app.create_client("orders:read").await;
    // A client whose secret a person chose (argon2), the attacker's target.
    let pool = app.db.pool().await;
    let victim = order_service::auth::clients::create(
        &pool,
        uuid::Uuid::now_v7(),
        "orders:read",
        Some("victim".into()),
        Some("a-chosen-secret".into()),
        false,
    )
    .await
    .unwrap();

    // From 127.0.0.1: 80 wrong secrets at once, at the victim and at invented ids.
    let attacker = reqwest::Client::new();
    let burst = join_all((0..80).map(|i| {
        let (app, attacker) = (&app, &attacker);
        let id = if i % 2 == 0 { victim.client_id.clone() } else { format!("invented-{i}") };
        async move { token_from(app, attacker, &id, "wrong-secret").await }
    }));
    // From 127.0.0.2, while the burst is in flight: the good client.
    let good_http = reqwest::Client::builder().local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2))).build().unwrap();
    let good_call = async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let started = Instant::now();
        let resp = token_from(&app, &good_http, &good.client_id, &good.secret).await;
        (resp.status(), started.elapsed())
    };
    let (responses, (good_status, good_took)) = tokio::join!(burst, good_call);

    assert_eq!(good_status, StatusCode::OK, "the good client got its token");
    assert!(good_took < Duration::from_secs(1), "the good client waited {good_took:?}");
    let mut by_status = std::collections::BTreeMap::<u16, usize>::new();
    for resp in responses {
        let status = resp.status();
        *by_status.entry(status.as_u16()).or_default() += 1;
        if matches!(status, StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE) {
            let retry: u64 = resp.headers()["retry-after"].to_str().unwrap().parse().unwrap();
            assert!(retry >= 1);
            let body: Value = resp.json().await.unwrap();
            let error = body["error"].as_str().unwrap();
            assert!(["slow_down", "temporarily_unavailable"].contains(&error), "{body}");
        }
    }
    assert!(!by_status.contains_key(&200), "a wrong secret got a token: {by_status:?}");
    assert!(by_status.get(&429).copied().unwrap_or(0) >= 40, "the address limit of 30 held: {by_status:?}");
    assert!(by_status.keys().all(|s| [401, 429, 503].contains(s)), "{by_status:?}");

    // The victim's id is limited on its own too: from a third address, right away.
    let third = reqwest::Client::builder().local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3))).build().unwrap();
    let resp = token_from(&app, &third, &victim.client_id, "a-chosen-secret").await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS, "the per-client-id limit of 5 held");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_client_ids_are_refused_before_any_lookup() {
    let app = spawn_app_with(Options::default()).await;
    for id in ["a".repeat(65), "has space".to_owned(), "semi;colon".to_owned(), String::new()] {
        let resp = token_from(&app, &app.http, &id, "whatever-secret").await;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{id:?}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"], "invalid_client");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_client_gets_no_token_and_its_tokens_stop_at_the_next_refresh() {
    let app = spawn_app_with(Options::default()).await;
    let (token, client) = app.customer().await;
    let (other_token, _) = app.customer().await;
    assert_eq!(app.get(&token, "/orders").await.status(), StatusCode::OK);

    let cli = |verb: &str| {
        let output = Command::new(env!("CARGO_BIN_EXE_order-service"))
            .env_clear()
            .args(["clients", verb, &client.client_id])
            .env("DATABASE_URL", &app.db.url)
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    };
    cli("disable");
    // The token endpoint reads the client: refused at once.
    let resp = token_from(&app, &app.http, &client.client_id, &client.secret).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(resp.json::<Value>().await.unwrap()["error"], "invalid_client");
    // Its tokens stop at the next refresh of the in-memory set (every
    // CLIENT_REVOCATION_REFRESH in the background; one step here).
    assert_eq!(app.revocations.refresh_once(&app.db.pool().await).await.unwrap(), 1);
    let resp = app.get(&token, "/orders").await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(resp.headers()["www-authenticate"].to_str().unwrap().contains("invalid_token"));
    assert_eq!(app.get(&other_token, "/orders").await.status(), StatusCode::OK, "other clients are untouched");

    cli("enable");
    app.revocations.refresh_once(&app.db.pool().await).await.unwrap();
    assert_eq!(app.get(&token, "/orders").await.status(), StatusCode::OK);
    assert_eq!(token_from(&app, &app.http, &client.client_id, &client.secret).await.status(), StatusCode::OK);

    let output = Command::new(env!("CARGO_BIN_EXE_order-service"))
        .env_clear()
        .args(["clients", "disable", "no-such-client"])
        .env("DATABASE_URL", &app.db.url)
        .output()
        .unwrap();
    assert!(!output.status.success(), "disabling an unknown client fails");
}
