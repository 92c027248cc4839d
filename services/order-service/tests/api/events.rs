//! `GET /orders/{id}/events`: the history first, then each change live,
//! closing after DELIVERED; `Last-Event-ID` resumes without gaps or repeats.

use std::time::Duration;

use eventsource_stream::{Event, Eventsource};
use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::Value;

use crate::{
    helpers::{Options, TestApp, problem, spawn_app, spawn_app_with},
    status::{delivered, place, shipped},
};

async fn open(app: &TestApp, token: &str, id: uuid::Uuid, last: Option<&str>) -> reqwest::Response {
    let mut req = app.http.get(app.url(&format!("/orders/{id}/events"))).bearer_auth(token);
    if let Some(last) = last {
        req = req.header("Last-Event-ID", last);
    }
    req.send().await.unwrap()
}

async fn next(
    stream: &mut (impl futures::Stream<Item = Result<Event, impl std::fmt::Debug>> + Unpin),
) -> Option<Event> {
    tokio::time::timeout(Duration::from_secs(10), stream.next()).await.expect("an event within 10s").map(|e| e.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_history_then_live_changes_and_closes_after_delivered() {
    let app =
        spawn_app_with(Options { env: vec![("STATUS_CONSUMER_ENABLED".into(), "true".into())], ..Default::default() })
            .await;
    let (token, _) = app.customer().await;
    let id = place(&app, &token).await;
    let resp = open(&app, &token, id, None).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let mut events = resp.bytes_stream().eventsource();

    let first = next(&mut events).await.unwrap();
    assert_eq!((first.event.as_str(), first.id.as_str()), ("PENDING_SHIPMENT", "1"));
    let data: Value = serde_json::from_str(&first.data).unwrap();
    assert_eq!(data["status"], "PENDING_SHIPMENT");
    assert!(data["carrier"].is_null());

    app.send_status(&shipped(id)).await; // the in-process consumer applies it
    let second = next(&mut events).await.unwrap();
    assert_eq!((second.event.as_str(), second.id.as_str()), ("SHIPPED", "2"));
    let data: Value = serde_json::from_str(&second.data).unwrap();
    assert_eq!(data["tracking_number"], "OF123");
    assert_eq!(data["carrier"], "DHL");

    app.send_status(&delivered(id)).await;
    let third = next(&mut events).await.unwrap();
    assert_eq!((third.event.as_str(), third.id.as_str()), ("DELIVERED", "3"));
    assert!(next(&mut events).await.is_none(), "the stream closes after DELIVERED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_event_id_resumes_without_gaps_or_repeats() {
    let app = spawn_app().await;
    let (token, _) = app.customer().await;
    let id = place(&app, &token).await;
    app.send_status(&shipped(id)).await;
    app.send_status(&delivered(id)).await;
    while app.poll_status().await.acked > 0 {}

    let all: Vec<Event> =
        open(&app, &token, id, None).await.bytes_stream().eventsource().map(|e| e.unwrap()).collect().await;
    assert_eq!(all.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), ["1", "2", "3"]);
    let rest: Vec<Event> =
        open(&app, &token, id, Some("1")).await.bytes_stream().eventsource().map(|e| e.unwrap()).collect().await;
    assert_eq!(rest.iter().map(|e| e.event.as_str()).collect::<Vec<_>>(), ["SHIPPED", "DELIVERED"]);
    let none: Vec<Event> =
        open(&app, &token, id, Some("3")).await.bytes_stream().eventsource().map(|e| e.unwrap()).collect().await;
    assert!(none.is_empty());
    problem(open(&app, &token, id, Some("two")).await, StatusCode::BAD_REQUEST).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_are_private_and_limited() {
    let app = spawn_app_with(Options { env: vec![("SSE_MAX_STREAMS".into(), "1".into())], ..Default::default() }).await;
    let (alice, _) = app.customer().await;
    let (bob, _) = app.customer().await;
    let id = place(&app, &alice).await;
    problem(open(&app, &bob, id, None).await, StatusCode::NOT_FOUND).await;
    let held = open(&app, &alice, id, None).await;
    assert_eq!(held.status(), StatusCode::OK);
    let resp = open(&app, &alice, id, None).await;
    assert!(resp.headers().contains_key("retry-after"));
    problem(resp, StatusCode::SERVICE_UNAVAILABLE).await;
    drop(held);
    // The slot frees when the client goes away.
    let mut reopened = None;
    for _ in 0..50 {
        let resp = open(&app, &alice, id, None).await;
        if resp.status() == StatusCode::OK {
            reopened = Some(resp);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(reopened.is_some(), "the slot was released");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_customer_cannot_take_every_stream() {
    let env = vec![("SSE_MAX_STREAMS".into(), "10".into()), ("SSE_MAX_STREAMS_PER_CUSTOMER".into(), "2".into())];
    let app = spawn_app_with(Options { env, ..Default::default() }).await;
    let (alice, _) = app.customer().await;
    let (bob, _) = app.customer().await;
    let alice_order = place(&app, &alice).await;
    let bob_order = place(&app, &bob).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let resp = open(&app, &alice, alice_order, None).await;
        assert_eq!(resp.status(), StatusCode::OK);
        held.push(resp);
    }
    let resp = open(&app, &alice, alice_order, None).await;
    assert!(resp.headers().contains_key("retry-after"));
    let body = problem(resp, StatusCode::TOO_MANY_REQUESTS).await;
    assert!(body["type"].as_str().unwrap().ends_with("too-many-streams"), "{body}");
    let resp = open(&app, &bob, bob_order, None).await;
    assert_eq!(resp.status(), StatusCode::OK, "another customer is not held back");
    drop(held.pop());
    let reopened = testkit::eventually(Duration::from_secs(5), Duration::from_millis(100), || async {
        let resp = open(&app, &alice, alice_order, None).await;
        (resp.status() == StatusCode::OK).then_some(())
    })
    .await;
    assert!(reopened.is_some(), "a closed stream frees its customer's slot");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_ends_when_its_token_expires() {
    let env = vec![("JWT_TTL".into(), "3s".into()), ("SSE_KEEPALIVE".into(), "1s".into())];
    let app = spawn_app_with(Options { env, ..Default::default() }).await;
    let (token, _) = app.customer().await;
    let id = place(&app, &token).await;
    let resp = open(&app, &token, id, None).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let opened = std::time::Instant::now();
    let mut events = resp.bytes_stream().eventsource();
    assert_eq!(next(&mut events).await.unwrap().id, "1");
    // Nothing else happens to the order; the stream still ends at the token's `exp`.
    assert!(next(&mut events).await.is_none(), "the stream ends");
    let lasted = opened.elapsed();
    assert!(lasted <= Duration::from_secs(4), "the stream outlived its token: {lasted:?}");
}
