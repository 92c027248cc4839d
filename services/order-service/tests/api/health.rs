//! `/healthz`, `/readyz`, `/openapi.json`, `/metrics` and the problem+json
//! fallbacks.

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{Options, problem, spawn_app, spawn_app_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_with_every_dependency_up() {
    let app = spawn_app().await;
    assert_eq!(app.http.get(app.url("/healthz")).send().await.unwrap().status(), StatusCode::OK);
    let resp = app.http.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["status"], "ready", "{body}");
    for dep in ["postgres", "redis", "sqs"] {
        assert_eq!(body["checks"][dep]["status"], "up", "{dep}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn degraded_but_serving_without_redis_and_sqs() {
    let app = spawn_app_with(Options {
        env: vec![
            ("REDIS_URL".into(), "redis://127.0.0.1:1".into()),
            ("SQS_ENDPOINT_URL".into(), "http://127.0.0.1:1".into()),
        ],
        ..Default::default()
    })
    .await;
    let resp = app.http.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["status"], "degraded");
    assert_eq!(body["checks"]["postgres"]["status"], "up");
    assert_eq!(body["checks"]["redis"]["status"], "down");
    assert_eq!(body["checks"]["sqs"]["status"], "down");
    assert!(body["checks"]["sqs"]["detail"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unavailable_without_postgres() {
    let app = spawn_app_with(Options {
        env: vec![
            ("DATABASE_URL".into(), "postgres://postgres@127.0.0.1:1/none".into()),
            ("DATABASE_MIGRATE".into(), "false".into()),
        ],
        ..Default::default()
    })
    .await;
    let resp = app.http.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["checks"]["postgres"]["status"], "down");
    assert_eq!(app.http.get(app.url("/healthz")).send().await.unwrap().status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_an_openapi_document_of_the_real_routes() {
    let app = spawn_app().await;
    let doc: Value = app.http.get(app.url("/openapi.json")).send().await.unwrap().json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for (path, method) in [
        ("/auth/token", "post"),
        ("/orders", "post"),
        ("/orders", "get"),
        ("/orders/{id}", "get"),
        ("/.well-known/jwks.json", "get"),
        ("/readyz", "get"),
    ] {
        assert!(doc["paths"][path][method].is_object(), "{method} {path} missing from the OpenAPI document");
    }
    assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_routes_and_methods_are_problems_and_requests_get_ids() {
    let app = spawn_app().await;
    let resp = app.http.get(app.url("/nope")).send().await.unwrap();
    assert!(resp.headers().contains_key("x-request-id"));
    problem(resp, StatusCode::NOT_FOUND).await;
    problem(app.http.delete(app.url("/orders")).send().await.unwrap(), StatusCode::METHOD_NOT_ALLOWED).await;
    let resp = app.http.get(app.url("/healthz")).header("x-request-id", "req-123").send().await.unwrap();
    assert_eq!(resp.headers()["x-request-id"], "req-123");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exposes_prometheus_metrics() {
    let app = spawn_app().await;
    let (token, _) = app.customer().await;
    app.post_order(&token, &crate::helpers::valid_order(), None).await;
    let text = app.http.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(text.contains("orders_created_total"), "{text}");
    assert!(text.contains("http_server_requests_total"));
    assert!(text.contains(r#"route="/orders""#));
}
