//! Runs the built `orderflow` binary against a small in-test axum server that
//! mimics the order API (token, create, get, list, a 422 problem, SSE streams),
//! and checks what people and scripts see: stdout, stderr and exit codes.
//!
//! `cargo test -p orderflow --test cli`

use std::{
    convert::Infallible,
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode, header},
    response::{
        IntoResponse, Response,
        sse::{Event, Sse},
    },
    routing::{get, post},
};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

const ORDER_ID: &str = "01a21313-7121-7284-af8f-074dbf1a5a5b";
const OLDER_ID: &str = "01a21301-c080-72b5-bb7c-b1d5c1c997b4";
/// Its stream drops after two events unless resumed with `Last-Event-ID`.
const FLAKY_ID: &str = "01a21301-aa5c-7544-85c0-7cc55feffecf";
const MISSING_ID: &str = "01a21301-0000-7000-8000-000000000000";
const TOKEN: &str = "test-token";
/// `demo:demo-secret`.
const BASIC: &str = "Basic ZGVtbzpkZW1vLXNlY3JldA==";

#[derive(Default)]
struct Seen {
    idempotency_keys: Vec<String>,
    last_event_ids: Vec<Option<String>>,
}

type Shared = Arc<Mutex<Seen>>;

fn problem(status: StatusCode, title: &str, detail: &str, errors: Value) -> Response {
    let body = json!({"type": "https://orderflow.dev/problems/test", "title": title, "status": status.as_u16(),
                      "detail": detail, "errors": errors});
    (status, [(header::CONTENT_TYPE, "application/problem+json")], body.to_string()).into_response()
}

fn authorised(headers: &HeaderMap) -> bool {
    headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) == Some(&format!("Bearer {TOKEN}"))
}

fn order(id: &str, body: &Value) -> Value {
    let items = body["items"].clone();
    let total: i64 = items
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|i| i["quantity"].as_i64().unwrap_or(0) * i["unit_price_minor"].as_i64().unwrap_or(0))
                .sum()
        })
        .unwrap_or(0);
    json!({"id": id, "customer_id": "01900000-0000-7000-8000-00000000d3a0", "status": "PENDING_SHIPMENT",
           "currency": body["currency"], "items": items, "total_minor": total,
           "shipping_address": body["shipping_address"],
           "shipment": {"carrier": null, "tracking_number": null},
           "history": [{"status": "PENDING_SHIPMENT", "at": "2026-11-25T14:00:05.980026Z"}],
           "created_at": "2026-11-25T14:00:05.980026Z", "updated_at": "2026-11-25T14:00:05.980026Z"})
}

fn sample_body() -> Value {
    json!({"currency": "EUR", "items": [{"sku": "SKU-123", "quantity": 2, "unit_price_minor": 1299}],
           "shipping_address": {"name": "Ada Lovelace", "line1": "12 Example Street", "line2": null,
                                "city": "London", "postal_code": "N1 9GU", "country": "GB"}})
}

async fn token(headers: HeaderMap, body: String) -> Response {
    if headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) != Some(BASIC) {
        let body = json!({"error": "invalid_client", "error_description": "Client authentication failed."});
        return (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, "Basic")], Json(body)).into_response();
    }
    if !body.split('&').any(|pair| pair == "grant_type=client_credentials") {
        let body = json!({"error": "unsupported_grant_type", "error_description": "Only client_credentials."});
        return (StatusCode::BAD_REQUEST, Json(body)).into_response();
    }
    Json(json!({"access_token": TOKEN, "token_type": "Bearer", "expires_in": 86400, "scope": "orders:read orders:write"}))
        .into_response()
}

async fn create(State(seen): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    if !authorised(&headers) {
        return problem(StatusCode::UNAUTHORIZED, "Unauthorized", "Missing token.", json!([]));
    }
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return problem(StatusCode::BAD_REQUEST, "Bad request", "Malformed JSON.", json!([]));
    };
    if let Some(key) = headers.get("idempotency-key").and_then(|v| v.to_str().ok()) {
        seen.lock().expect("lock").idempotency_keys.push(key.to_owned());
    }
    if body["items"][0]["quantity"].as_i64().unwrap_or(0) > 999 {
        return problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid request",
            "2 fields failed validation",
            json!([{"field": "items[0].quantity", "message": "must be from 1 to 999"},
                   {"field": "shipping_address.country", "message": "must be an ISO 3166-1 alpha-2 code"}]),
        );
    }
    let location = format!("/orders/{ORDER_ID}");
    (StatusCode::CREATED, [(header::LOCATION, location)], Json(order(ORDER_ID, &body))).into_response()
}

async fn get_order(headers: HeaderMap, Path(id): Path<String>) -> Response {
    if !authorised(&headers) {
        return problem(StatusCode::UNAUTHORIZED, "Unauthorized", "Missing token.", json!([]));
    }
    if id != ORDER_ID {
        return problem(
            StatusCode::NOT_FOUND,
            "Not Found",
            "No order with this id exists for this customer.",
            json!([]),
        );
    }
    Json(order(ORDER_ID, &sample_body())).into_response()
}

async fn list(headers: HeaderMap, Query(query): Query<Vec<(String, String)>>) -> Response {
    if !authorised(&headers) {
        return problem(StatusCode::UNAUTHORIZED, "Unauthorized", "Missing token.", json!([]));
    }
    let cursor = query.iter().find(|(k, _)| k == "cursor").map(|(_, v)| v.as_str());
    match cursor {
        None => Json(json!({"data": [order(ORDER_ID, &sample_body())], "next_cursor": "page-2"})).into_response(),
        Some("page-2") => Json(json!({"data": [order(OLDER_ID, &sample_body())], "next_cursor": null})).into_response(),
        Some(_) => problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid request",
            "1 field failed validation",
            json!([{"field": "cursor", "message": "is not a cursor this API returned"}]),
        ),
    }
}

fn status_event(seq: usize) -> Event {
    let (status, at, carrier, tracking) = match seq {
        1 => ("PENDING_SHIPMENT", "2026-11-25T14:00:05Z", Value::Null, Value::Null),
        2 => ("SHIPPED", "2026-11-25T14:19:35Z", json!("DHL"), json!("OF1234")),
        _ => ("DELIVERED", "2026-11-25T15:02:10Z", json!("DHL"), json!("OF1234")),
    };
    let data = json!({"status": status, "at": at, "carrier": carrier, "tracking_number": tracking});
    Event::default().event(status).id(seq.to_string()).data(data.to_string())
}

async fn events(State(seen): State<Shared>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if !authorised(&headers) {
        return problem(StatusCode::UNAUTHORIZED, "Unauthorized", "Missing token.", json!([]));
    }
    let last = headers.get("last-event-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
    seen.lock().expect("lock").last_event_ids.push(last.clone());
    let after: usize = last.as_deref().and_then(|s| s.parse().ok()).unwrap_or(0);
    let until = match id.as_str() {
        ORDER_ID => 3,
        FLAKY_ID if after == 0 => 2,
        FLAKY_ID => 3,
        _ => return problem(StatusCode::NOT_FOUND, "Not Found", "No order with this id exists.", json!([])),
    };
    let events: Vec<Result<Event, Infallible>> = (after + 1..=until).map(|seq| Ok(status_event(seq))).collect();
    Sse::new(futures::stream::iter(events)).into_response()
}

struct Server {
    url: String,
    seen: Shared,
}

async fn start() -> Server {
    let seen = Shared::default();
    let app = Router::new()
        .route("/auth/token", post(token))
        .route("/orders", post(create).get(list))
        .route("/orders/{id}", get(get_order))
        .route("/orders/{id}/events", get(events))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    Server { url, seen }
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `orderflow` against `url` with the demo credentials in the environment.
async fn orderflow(url: &str, args: &[&str]) -> Run {
    orderflow_with(url, args, &[], None).await
}

async fn orderflow_with(url: &str, args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Run {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_orderflow"));
    command
        .args(args)
        .env("ORDERFLOW_URL", url)
        .env("ORDERFLOW_CLIENT_ID", "demo")
        .env("ORDERFLOW_CLIENT_SECRET", "demo-secret")
        .env("TZ", "UTC")
        .envs(env.iter().copied())
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn().expect("run orderflow");
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes()).await.expect("write stdin");
    }
    let output = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("orderflow finished in time")
        .expect("orderflow output");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

const CREATE_FLAGS: &[&str] = &[
    "orders",
    "create",
    "--item",
    "SKU-123:2:1299",
    "--name",
    "Ada Lovelace",
    "--line1",
    "12 Example Street",
    "--city",
    "London",
    "--postal-code",
    "N1 9GU",
    "--country",
    "GB",
];

fn with<'a>(base: &[&'a str], extra: &[&'a str]) -> Vec<&'a str> {
    base.iter().chain(extra).copied().collect()
}

#[tokio::test]
async fn create_json_is_the_server_reply() {
    let server = start().await;
    let run = orderflow(&server.url, &with(CREATE_FLAGS, &["--json", "--idempotency-key", "k-1"])).await;
    assert_eq!(run.code, 0, "stderr: {}", run.stderr);
    let printed: Value = serde_json::from_str(&run.stdout).expect("stdout is JSON");
    assert_eq!(printed, order(ORDER_ID, &sample_body()));
    assert_eq!(server.seen.lock().expect("lock").idempotency_keys, ["k-1"]);
}

#[tokio::test]
async fn create_human_shows_the_key_fields() {
    let server = start().await;
    let run = orderflow(&server.url, CREATE_FLAGS).await;
    assert_eq!(run.code, 0, "stderr: {}", run.stderr);
    for expected in
        [ORDER_ID, "PENDING_SHIPMENT", "25.98 EUR", "12.99 EUR", "SKU-123", "Ada Lovelace", "2026-11-25 14:00:05"]
    {
        assert!(run.stdout.contains(expected), "{expected:?} missing from:\n{}", run.stdout);
    }
}

#[tokio::test]
async fn create_from_stdin_sends_the_file_as_is() {
    let server = start().await;
    let body = sample_body().to_string();
    let run = orderflow_with(&server.url, &["--json", "orders", "create", "--file", "-"], &[], Some(&body)).await;
    assert_eq!(run.code, 0, "stderr: {}", run.stderr);
    let printed: Value = serde_json::from_str(&run.stdout).expect("stdout is JSON");
    assert_eq!(printed["total_minor"], 2598);
}

#[tokio::test]
async fn invalid_fields_exit_1_and_list_every_field() {
    let server = start().await;
    let mut args = CREATE_FLAGS.to_vec();
    args[3] = "SKU-123:1000:1299";
    let run = orderflow(&server.url, &args).await;
    assert_eq!(run.code, 1, "stderr: {}", run.stderr);
    assert!(run.stdout.is_empty());
    assert!(run.stderr.contains("Invalid request: 2 fields failed validation (HTTP 422)"), "{}", run.stderr);
    assert!(run.stderr.contains("items[0].quantity: must be from 1 to 999"), "{}", run.stderr);
    assert!(run.stderr.contains("shipping_address.country: must be an ISO 3166-1 alpha-2 code"), "{}", run.stderr);
}

#[tokio::test]
async fn bad_item_is_a_usage_error_before_any_request() {
    let run = orderflow("http://127.0.0.1:1", &["orders", "create", "--item", "SKU-1:2", "--file", "x"]).await;
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("SKU:QTY:PRICE_MINOR"), "{}", run.stderr);
}

#[tokio::test]
async fn watch_prints_three_events_and_exits_0() {
    let server = start().await;
    let run = orderflow(&server.url, &["orders", "watch", ORDER_ID]).await;
    assert_eq!(run.code, 0, "stderr: {}", run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "14:00:05  PENDING_SHIPMENT",
            "14:19:35  SHIPPED           DHL OF1234",
            "15:02:10  DELIVERED         DHL OF1234"
        ]
    );
}

#[tokio::test]
async fn watch_json_is_one_object_per_line() {
    let server = start().await;
    let run = orderflow(&server.url, &["orders", "watch", ORDER_ID, "--json"]).await;
    assert_eq!(run.code, 0, "stderr: {}", run.stderr);
    let events: Vec<Value> = run.stdout.lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect();
    assert_eq!(events.len(), 3);
    assert_eq!(
        events[1],
        json!({"id": 2, "status": "SHIPPED", "at": "2026-11-25T14:19:35Z", "carrier": "DHL", "tracking_number": "OF1234"})
    );
    assert_eq!(events.iter().map(|e| e["id"].clone()).collect::<Vec<_>>(), [json!(1), json!(2), json!(3)]);
    assert_eq!(events[2]["status"], "DELIVERED");
}

#[tokio::test]
async fn watch_resumes_after_the_last_event_seen() {
    let server = start().await;
    let run = orderflow(&server.url, &["--json", "orders", "watch", FLAKY_ID]).await;
    assert_eq!(run.code, 0, "stderr: {}", run.stderr);
    let ids: Vec<Value> =
        run.stdout.lines().map(|l| serde_json::from_str::<Value>(l).expect("a JSON line")["id"].clone()).collect();
    assert_eq!(ids, [json!(1), json!(2), json!(3)], "no event lost or repeated");
    assert_eq!(server.seen.lock().expect("lock").last_event_ids, [None, Some("2".to_owned())]);
    assert!(run.stderr.contains("reconnecting after event 2"), "{}", run.stderr);
}

#[tokio::test]
async fn watch_gives_up_after_max_reconnects() {
    let server = start().await;
    let run = orderflow(&server.url, &["orders", "watch", FLAKY_ID, "--max-reconnects", "0"]).await;
    assert_eq!(run.code, 3, "stderr: {}", run.stderr);
    assert!(run.stderr.contains("last event seen: 2"), "{}", run.stderr);
}

#[tokio::test]
async fn get_json_and_not_found() {
    let server = start().await;
    let run = orderflow(&server.url, &["--json", "orders", "get", ORDER_ID]).await;
    assert_eq!(run.code, 0, "stderr: {}", run.stderr);
    assert_eq!(serde_json::from_str::<Value>(&run.stdout).expect("JSON")["id"], ORDER_ID);

    let run = orderflow(&server.url, &["orders", "get", MISSING_ID]).await;
    assert_eq!(run.code, 4);
    assert!(run.stderr.contains("Not Found: No order with this id exists for this customer."), "{}", run.stderr);
}

#[tokio::test]
async fn list_pages_and_all() {
    let server = start().await;
    let run = orderflow(&server.url, &["orders", "list"]).await;
    assert_eq!(run.code, 0, "stderr: {}", run.stderr);
    assert!(run.stdout.starts_with("ID"), "{}", run.stdout);
    assert!(run.stdout.contains(ORDER_ID) && run.stdout.contains("25.98 EUR") && !run.stdout.contains(OLDER_ID));
    assert!(run.stderr.contains("--cursor page-2"), "{}", run.stderr);

    let run = orderflow(&server.url, &["--json", "orders", "list"]).await;
    assert_eq!(serde_json::from_str::<Value>(&run.stdout).expect("JSON")["next_cursor"], "page-2");

    let run = orderflow(&server.url, &["--json", "orders", "list", "--all", "--limit", "1"]).await;
    assert_eq!(run.code, 0, "stderr: {}", run.stderr);
    let page: Value = serde_json::from_str(&run.stdout).expect("JSON");
    let ids: Vec<&str> = page["data"].as_array().expect("data").iter().filter_map(|o| o["id"].as_str()).collect();
    assert_eq!(ids, [ORDER_ID, OLDER_ID]);
    assert_eq!(page["next_cursor"], Value::Null);
}

#[tokio::test]
async fn token_human_and_json() {
    let server = start().await;
    let run = orderflow(&server.url, &["token"]).await;
    assert_eq!((run.code, run.stdout.as_str()), (0, "test-token\n"), "stderr: {}", run.stderr);
    assert!(run.stderr.contains("orders:read orders:write") && run.stderr.contains("24h"), "{}", run.stderr);

    let run = orderflow(&server.url, &["token", "--json"]).await;
    let reply: Value = serde_json::from_str(&run.stdout).expect("JSON");
    assert_eq!(reply["access_token"], TOKEN);
    assert_eq!(reply["expires_in"], 86400);
}

#[tokio::test]
async fn wrong_credentials_exit_1_with_the_oauth_error() {
    let server = start().await;
    let run = orderflow_with(&server.url, &["orders", "list"], &[("ORDERFLOW_CLIENT_SECRET", "wrong")], None).await;
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("invalid_client: Client authentication failed."), "{}", run.stderr);
}

#[tokio::test]
async fn missing_credentials_are_a_usage_error() {
    let run = orderflow_with("http://127.0.0.1:1", &["token"], &[("ORDERFLOW_CLIENT_ID", "")], None).await;
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("ORDERFLOW_CLIENT_ID"), "{}", run.stderr);
}

#[tokio::test]
async fn unreachable_server_exits_3_and_names_the_url() {
    // A port that was just free: nothing listens there.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    drop(listener);
    let run = orderflow(&url, &["orders", "get", ORDER_ID]).await;
    assert_eq!(run.code, 3);
    assert!(run.stderr.contains(&format!("cannot reach the order-service at {url}/auth/token")), "{}", run.stderr);
}

#[tokio::test]
async fn help_has_examples_and_exit_codes_and_hides_the_secret() {
    let run =
        orderflow_with("http://127.0.0.1:1", &["--help"], &[("ORDERFLOW_CLIENT_SECRET", "s3cret-value")], None).await;
    assert_eq!(run.code, 0);
    assert!(run.stdout.contains("Examples:") && run.stdout.contains("Exit codes:"));
    assert!(!run.stdout.contains("s3cret-value"), "the secret leaked into --help");
    let run = orderflow("http://127.0.0.1:1", &["orders", "create", "--help"]).await;
    assert!(run.stdout.contains("orderflow orders create --file order.json"), "{}", run.stdout);
}
