//! End-to-end against a deployed system (a kind cluster under Tilt, the Docker
//! Compose stack, `make run`): set `ORDERFLOW_URL` (e.g. http://localhost:8080)
//! and the client in `ORDERFLOW_CLIENT_ID` / `ORDERFLOW_CLIENT_SECRET` (default
//! demo / demo-secret). Unset, the tests print why and pass: they need a system
//! this suite did not start. Tilt's `e2e-cluster` button runs them:
//! `ORDERFLOW_URL=http://localhost:8080 cargo test -p e2e --test e2e cluster`.

use std::time::Duration;

use eventsource_stream::Eventsource;
use futures::StreamExt;
use serde_json::Value;

/// Where the deployed system is and who to be, or `None` (with a message) to skip.
fn deployed() -> Option<(String, String, String)> {
    let Some(url) = std::env::var("ORDERFLOW_URL").ok().filter(|u| !u.trim().is_empty()) else {
        eprintln!("skipped: set ORDERFLOW_URL (e.g. http://localhost:8080) to test a deployed orderflow");
        return None;
    };
    let var = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.to_owned());
    Some((
        url.trim_end_matches('/').to_owned(),
        var("ORDERFLOW_CLIENT_ID", "demo"),
        var("ORDERFLOW_CLIENT_SECRET", "demo-secret"),
    ))
}

#[tokio::test]
async fn cluster_a_placed_order_reaches_delivered() {
    let Some((url, client_id, secret)) = deployed() else { return };
    let http = reqwest::Client::new();
    let ready = http.get(format!("{url}/readyz")).send().await.expect("the API answers");
    assert!(ready.status().is_success(), "/readyz is {}", ready.status());

    let token = testkit::token(&url, &client_id, &secret).await;
    let key = format!("cluster-e2e-{}", uuid::Uuid::now_v7());
    let created = http
        .post(format!("{url}/orders"))
        .bearer_auth(&token)
        .header("Idempotency-Key", &key)
        .json(&e2e::order_body("CLUSTER-E2E"))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), reqwest::StatusCode::CREATED);
    let order: Value = created.json().await.unwrap();
    let id = order["id"].as_str().expect("an order id").to_owned();

    // The live stream closes after DELIVERED; the whole trip has two minutes.
    let stream = http.get(format!("{url}/orders/{id}/events")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(stream.status(), reqwest::StatusCode::OK);
    let statuses: Vec<String> = tokio::time::timeout(
        Duration::from_secs(120),
        stream.bytes_stream().eventsource().map(|e| e.expect("well-formed SSE").event).collect(),
    )
    .await
    .expect("DELIVERED within 120 s");
    assert_eq!(statuses.last().map(String::as_str), Some("DELIVERED"), "{statuses:?}");

    let read: Value =
        http.get(format!("{url}/orders/{id}")).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    assert_eq!(read["status"], "DELIVERED");
    let history: Vec<&str> =
        read["history"].as_array().unwrap().iter().map(|h| h["status"].as_str().unwrap()).collect();
    assert_eq!(history, ["PENDING_SHIPMENT", "SHIPPED", "DELIVERED"]);
}

#[tokio::test]
async fn cluster_the_same_idempotency_key_returns_the_same_order() {
    let Some((url, client_id, secret)) = deployed() else { return };
    let http = reqwest::Client::new();
    let token = testkit::token(&url, &client_id, &secret).await;
    let key = format!("cluster-e2e-{}", uuid::Uuid::now_v7());
    let mut ids = Vec::new();
    for _ in 0..2 {
        let response = http
            .post(format!("{url}/orders"))
            .bearer_auth(&token)
            .header("Idempotency-Key", &key)
            .json(&e2e::order_body("CLUSTER-IDEMPOTENT"))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{}", response.status());
        let order: Value = response.json().await.unwrap();
        ids.push(order["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids[0], ids[1], "a retried request must not create a second order");
}
