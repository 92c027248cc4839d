//! `Idempotency-Key` and the double-submit window, with Redis up, unreachable,
//! and stopped mid-run (PostgreSQL's unique key is the backstop).

use std::time::Duration;

use futures::future::join_all;
use order_service::domain::validate_new_order;
use redis::AsyncCommands;
use reqwest::StatusCode;
use serde_json::{Value, json};
use testkit::RedisServer;

use crate::helpers::{Options, TestApp, problem, spawn_app, spawn_app_with, valid_order};

fn other_order() -> Value {
    let mut body = valid_order();
    body["items"][0]["quantity"] = json!(3);
    body
}

/// Same key and body: the stored response again, and still one order.
async fn assert_replays(app: &TestApp, token: &str, key: Option<&str>) -> Value {
    let first = app.post_order(token, &valid_order(), key).await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let location = first.headers()["location"].clone();
    let body: Value = first.json().await.unwrap();
    let again = app.post_order(token, &valid_order(), key).await;
    assert_eq!(again.status(), StatusCode::CREATED);
    assert_eq!(again.headers()["location"], location);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.json::<Value>().await.unwrap(), body);
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_with_the_same_key_gets_the_stored_response_and_no_second_order() {
    let app = spawn_app().await;
    let (token, _) = app.customer().await;
    assert_replays(&app, &token, Some("order-42")).await;
    assert_eq!(app.count("SELECT count(*) FROM orders").await, 1);
    assert_eq!(app.outbox_rows().await, 1, "one event only");

    // The same key with another body is refused and creates nothing.
    let p =
        problem(app.post_order(&token, &other_order(), Some("order-42")).await, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert!(p["type"].as_str().unwrap().ends_with("idempotency-mismatch"));
    assert_eq!(app.count("SELECT count(*) FROM orders").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_belong_to_one_customer() {
    let app = spawn_app().await;
    let (alice, _) = app.customer().await;
    let (bob, _) = app.customer().await;
    let a: Value = app.post_order(&alice, &valid_order(), Some("shared-key")).await.json().await.unwrap();
    let b: Value = app.post_order(&bob, &valid_order(), Some("shared-key")).await.json().await.unwrap();
    assert_ne!(a["id"], b["id"]);
    assert_eq!(app.count("SELECT count(*) FROM orders").await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_still_in_flight_is_409_and_a_different_body_422() {
    let app = spawn_app().await;
    let (token, client) = app.customer().await;
    // Play a first request that has claimed the key and not finished.
    let hash: String =
        validate_new_order(&valid_order()).unwrap().fingerprint().iter().map(|b| format!("{b:02x}")).collect();
    let mut redis =
        redis::Client::open(testkit::redis_url()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let key = format!("{}:idem:{}:k:slow", app.queues.prefix, client.customer_id);
    let _: () = redis.set_ex(&key, json!({"state": "pending", "request_hash": hash}).to_string(), 30).await.unwrap();

    let resp = app.post_order(&token, &valid_order(), Some("slow")).await;
    assert_eq!(resp.headers()["retry-after"], "1");
    problem(resp, StatusCode::CONFLICT).await;
    problem(app.post_order(&token, &other_order(), Some("slow")).await, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(app.count("SELECT count(*) FROM orders").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_with_one_key_make_one_order() {
    let app = spawn_app().await;
    let (token, _) = app.customer().await;
    let body = valid_order();
    let responses = join_all((0..10).map(|_| app.post_order(&token, &body, Some("burst")))).await;
    let mut bodies = Vec::new();
    for resp in responses {
        match resp.status() {
            StatusCode::CREATED => bodies.push(resp.json::<Value>().await.unwrap()),
            StatusCode::CONFLICT => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert!(!bodies.is_empty());
    assert!(bodies.iter().all(|b| b["id"] == bodies[0]["id"]));
    assert_eq!(app.count("SELECT count(*) FROM orders").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_double_submit_without_a_key_returns_the_first_order_within_the_window() {
    let app =
        spawn_app_with(Options { env: vec![("DUPLICATE_WINDOW".into(), "1s".into())], ..Default::default() }).await;
    let (token, _) = app.customer().await;
    let first = assert_replays(&app, &token, None).await;
    // Key order and item order do not make a different order.
    let reordered = json!({
        "shipping_address": valid_order()["shipping_address"].clone(),
        "items": valid_order()["items"].clone(),
        "currency": "EUR"
    });
    let same: Value = app.post_order(&token, &reordered, None).await.json().await.unwrap();
    assert_eq!(same["id"], first["id"]);
    // A different order is a different order.
    let other: Value = app.post_order(&token, &other_order(), None).await.json().await.unwrap();
    assert_ne!(other["id"], first["id"]);
    // After the window the same body is a new order. Poll: every try inside
    // the window is answered with the first order and creates nothing.
    let later = testkit::eventually(Duration::from_secs(10), Duration::from_millis(100), || async {
        let order: Value = app.post_order(&token, &valid_order(), None).await.json().await.unwrap();
        (order["id"] != first["id"]).then_some(order)
    })
    .await;
    assert!(later.is_some(), "the same body makes a new order once the window has passed");
    assert_eq!(app.count("SELECT count(*) FROM orders").await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_window_can_be_disabled() {
    let app =
        spawn_app_with(Options { env: vec![("DUPLICATE_WINDOW".into(), "0s".into())], ..Default::default() }).await;
    let (token, _) = app.customer().await;
    for _ in 0..2 {
        assert_eq!(app.post_order(&token, &valid_order(), None).await.status(), StatusCode::CREATED);
    }
    assert_eq!(app.count("SELECT count(*) FROM orders").await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_unreachable_orders_are_accepted_and_stay_idempotent() {
    let app =
        spawn_app_with(Options { env: vec![("REDIS_URL".into(), "redis://127.0.0.1:1".into())], ..Default::default() })
            .await;
    let (token, _) = app.customer().await;
    assert_replays(&app, &token, Some("k1")).await;
    problem(app.post_order(&token, &other_order(), Some("k1")).await, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_replays(&app, &token, None).await;
    assert_eq!(app.count("SELECT count(*) FROM orders").await, 2);
    let ready: Value = app.http.get(app.url("/readyz")).send().await.unwrap().json().await.unwrap();
    assert_eq!(ready["status"], "degraded");
    assert_eq!(ready["checks"]["redis"]["status"], "down");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_stopped_mid_run_keys_are_still_honoured() {
    let mut redis = RedisServer::start().await;
    let app = spawn_app_with(Options { env: vec![("REDIS_URL".into(), redis.url())], ..Default::default() }).await;
    let (token, _) = app.customer().await;
    let first: Value = app.post_order(&token, &valid_order(), Some("before-outage")).await.json().await.unwrap();

    redis.stop().await;
    let retry = app.post_order(&token, &valid_order(), Some("before-outage")).await;
    assert_eq!(retry.status(), StatusCode::CREATED);
    assert_eq!(retry.json::<Value>().await.unwrap()["id"], first["id"], "replayed from PostgreSQL");
    problem(app.post_order(&token, &other_order(), Some("before-outage")).await, StatusCode::UNPROCESSABLE_ENTITY)
        .await;
    assert_replays(&app, &token, Some("during-outage")).await;
    let ready: Value = app.http.get(app.url("/readyz")).send().await.unwrap().json().await.unwrap();
    assert_eq!(ready["status"], "degraded");

    redis.restart().await;
    let ready: Value = app.http.get(app.url("/readyz")).send().await.unwrap().json().await.unwrap();
    assert_eq!(ready["status"], "ready", "{ready}");
    assert_replays(&app, &token, Some("after-outage")).await;
    assert_eq!(app.count("SELECT count(*) FROM orders").await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn housekeeping_forgets_expired_keys_and_old_inbox_rows_only() {
    let app = spawn_app().await;
    let (token, _) = app.customer().await;
    app.post_order(&token, &valid_order(), Some("old-key")).await;
    app.post_order(&token, &other_order(), Some("live-key")).await;
    let pool = app.db.pool().await;
    sqlx::query("UPDATE idempotency_keys SET expires_at = now() - interval '1 second' WHERE key = 'k:old-key'")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO processed_messages (event_id, processed_at) VALUES ($1, now() - interval '15 days'), ($2, now())",
    )
    .bind(uuid::Uuid::now_v7())
    .bind(uuid::Uuid::now_v7())
    .execute(&pool)
    .await
    .unwrap();
    assert_eq!(app.janitor.try_clean_once().await.unwrap(), 2);
    assert_eq!(app.count("SELECT count(*) FROM idempotency_keys WHERE key = 'k:live-key'").await, 1);
    assert_eq!(app.count("SELECT count(*) FROM idempotency_keys WHERE key = 'k:old-key'").await, 0);
    assert_eq!(app.count("SELECT count(*) FROM processed_messages").await, 1, "recent inbox rows stay");
    assert_eq!(app.count("SELECT count(*) FROM orders").await, 2, "orders are never touched");
    assert_eq!(app.janitor.try_clean_once().await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_redis_loses_a_key_a_mismatch_does_not_poison_the_original_retry() {
    let app = spawn_app().await;
    let (token, client) = app.customer().await;
    let first: Value = app.post_order(&token, &valid_order(), Some("k-lost")).await.json().await.unwrap();
    // Redis forgets the key (eviction, failover, flush); PostgreSQL still has it.
    let mut redis =
        redis::Client::open(testkit::redis_url()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let redis_key = format!("{}:idem:{}:k:k-lost", app.queues.prefix, client.customer_id);
    for _ in 0..50 {
        let gone: i64 = redis.del(&redis_key).await.unwrap();
        if gone == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await; // the completion is written off the request path
    }
    problem(app.post_order(&token, &other_order(), Some("k-lost")).await, StatusCode::UNPROCESSABLE_ENTITY).await;
    // The original request's retry still gets its stored response, at once.
    let retry = app.post_order(&token, &valid_order(), Some("k-lost")).await;
    assert_eq!(retry.status(), StatusCode::CREATED);
    assert_eq!(retry.json::<Value>().await.unwrap()["id"], first["id"]);
    assert_eq!(app.count("SELECT count(*) FROM orders").await, 1);
}
