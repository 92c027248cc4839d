//! Group commit of order intake on the real PostgreSQL: a batch places each of
//! its orders once, with its history, idempotency record and outbox event, in
//! one transaction; a repeated key inside a batch and a bad order each get
//! their own answer without costing the others theirs; concurrent requests
//! through the API all commit.

use std::collections::HashSet;

use chrono::{SubsecRound, Utc};
use database::{Commit, HotPool};
use futures::future::join_all;
use order_service::{
    domain::validate_new_order,
    storage::orders::{self, IdempotencyRecord, Placed, Placement},
};
use outbox::OutboxMessage;
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{Options, hot_pool, spawn_app, spawn_app_with, valid_order};

/// An order of `customer` for `sku`, with an idempotency key if given.
fn placement(customer: Uuid, sku: &str, key: Option<&str>) -> Placement {
    let mut body = valid_order();
    body["items"][0]["sku"] = json!(sku);
    let now = Utc::now().trunc_subsecs(6);
    let order = validate_new_order(&body).unwrap().into_order(Uuid::now_v7(), customer, now);
    let event = OutboxMessage {
        event_id: Uuid::now_v7(),
        destination: "orders-queue.fifo".into(),
        group_id: order.id.to_string(),
        event_type: "order-created".into(),
        body: json!({"order_id": order.id}).to_string(),
        traceparent: None,
        tracestate: None,
    };
    Placement {
        body: serde_json::to_value(&order).unwrap(),
        idempotency: key.map(|key| IdempotencyRecord {
            key: key.to_owned(),
            request_hash: [7; 32],
            expires_at: now + chrono::Duration::hours(1),
        }),
        order,
        event,
        span: tracing::Span::none(),
    }
}

/// The event ids in the outbox.
async fn queued_events(pool: &sqlx::PgPool) -> HashSet<Uuid> {
    sqlx::query_scalar("SELECT event_id FROM outbox").fetch_all(pool).await.unwrap().into_iter().collect()
}

#[test]
fn a_key_repeated_within_a_batch_waits_for_the_rest() {
    let (alice, bob) = (Uuid::now_v7(), Uuid::now_v7());
    let batch = [
        placement(alice, "A", Some("k1")),
        placement(alice, "B", Some("k1")),
        placement(bob, "C", Some("k1")),
        placement(alice, "D", None),
        placement(alice, "E", Some("k2")),
        placement(alice, "F", Some("k1")),
    ];
    assert_eq!(orders::split_repeated_keys(&batch), (vec![0, 2, 3, 4], vec![1, 5]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_places_each_order_once_with_its_history_key_and_event() {
    places_each_order_once(Commit::Statement).await;
}

/// Through a transaction pooler the statement runs in BEGIN ... COMMIT; the
/// same batch gives the same rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_explicitly_committed_batch_writes_the_same() {
    places_each_order_once(Commit::Explicit).await;
}

/// The per-request connections of `pool`'s database: its own (a statement
/// commits on its own), or `pool`'s as through a pooler (BEGIN ... COMMIT).
fn hot(pool: &sqlx::PgPool, commit: Commit) -> HotPool {
    let hot = match commit {
        Commit::Statement => hot_pool(pool),
        Commit::Explicit => HotPool::shared(pool.clone()),
    };
    assert_eq!(hot.commit(), commit);
    hot
}

async fn places_each_order_once(commit: Commit) {
    let app = spawn_app().await;
    let pool = app.db.pool().await;
    let db = hot(&pool, commit);
    let (alice, bob) = (Uuid::now_v7(), Uuid::now_v7());
    let batch = vec![
        placement(alice, "A", Some("k1")),
        placement(bob, "B", Some("k1")),
        placement(alice, "C", None),
        placement(alice, "D", Some("k1")),
    ];
    let ids: Vec<Uuid> = batch.iter().map(|p| p.order.id).collect();
    let events: Vec<Uuid> = batch.iter().map(|p| p.event.event_id).collect();

    let answers = orders::place_group(db, batch).await;
    let answers: Vec<Placed> = answers.into_iter().map(Result::unwrap).collect();
    assert_eq!(answers, [Placed::Created, Placed::Created, Placed::Created, Placed::KeyTaken]);

    let placed: HashSet<Uuid> =
        sqlx::query_scalar("SELECT id FROM orders").fetch_all(&pool).await.unwrap().into_iter().collect();
    assert_eq!(placed, HashSet::from([ids[0], ids[1], ids[2]]));
    let history: i64 =
        sqlx::query_scalar("SELECT count(*) FROM order_status_history WHERE seq = 1 AND status = 'PENDING_SHIPMENT'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(history, 3);
    let queued = queued_events(&pool).await;
    assert_eq!(queued, HashSet::from([events[0], events[1], events[2]]), "an event for each order placed, no other");
    // Alice's k1 names her first order, whose response the repeat replays.
    let stored = orders::find_idempotent(&pool, alice, "k1").await.unwrap().expect("alice's key is held");
    assert_eq!(stored.order_id, ids[0]);
    assert_eq!(stored.body["items"][0]["sku"], "A");
    assert_eq!(orders::find_idempotent(&pool, bob, "k1").await.unwrap().unwrap().order_id, ids[1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_order_fails_alone_and_the_rest_of_its_batch_commits() {
    let app = spawn_app().await;
    let pool = app.db.pool().await;
    let db = hot(&pool, Commit::Statement);
    let customer = Uuid::now_v7();
    let first = placement(customer, "FIRST", None);
    let taken_id = first.order.id;
    assert!(matches!(orders::place_group(db.clone(), vec![first]).await[..], [Ok(Placed::Created)]));

    // The middle order reuses a placed order's id: the batch's statement fails
    // on it, and each order is then placed alone.
    let mut clash = placement(customer, "CLASH", None);
    clash.order.id = taken_id;
    let batch = vec![placement(customer, "G1", Some("g1")), clash, placement(customer, "G2", None)];
    let good = [batch[0].order.id, batch[2].order.id];
    let good_events = [batch[0].event.event_id, batch[2].event.event_id];
    let clash_event = batch[1].event.event_id;
    let answers = orders::place_group(db, batch).await;
    assert!(matches!(answers[0], Ok(Placed::Created)), "{:?}", answers[0]);
    assert!(
        matches!(&answers[1], Err(sqlx::Error::Database(e)) if e.is_unique_violation()),
        "the clash fails with its own error: {:?}",
        answers[1]
    );
    assert!(matches!(answers[2], Ok(Placed::Created)), "{:?}", answers[2]);

    let placed: i64 = sqlx::query_scalar("SELECT count(*) FROM orders WHERE id = ANY($1)")
        .bind(&good[..])
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(placed, 2);
    let queued = queued_events(&pool).await;
    assert!(good_events.iter().all(|e| queued.contains(e)), "the good orders' events are queued");
    assert!(!queued.contains(&clash_event), "nothing of the failed order is written");
    let sku: String = sqlx::query_scalar("SELECT items->0->>'sku' FROM orders WHERE id = $1")
        .bind(taken_id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(sku, "FIRST", "the placed order is untouched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_orders_through_one_writer_all_commit_with_their_events() {
    let app = spawn_app_with(Options {
        env: vec![("INTAKE_WRITERS".into(), "1".into()), ("INTAKE_MAX_BATCH".into(), "8".into())],
        ..Default::default()
    })
    .await;
    let (token, _) = app.customer().await;
    let bodies: Vec<Value> = (0..40)
        .map(|i| {
            let mut body = valid_order();
            body["items"][0]["sku"] = json!(format!("C-{i}"));
            body
        })
        .collect();
    let responses = join_all(bodies.iter().map(|body| app.post_order(&token, body, None))).await;
    let mut ids = HashSet::new();
    for resp in responses {
        assert_eq!(resp.status(), StatusCode::CREATED);
        ids.insert(resp.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids.len(), 40);
    // Every 201 was committed, each order with exactly one event.
    assert_eq!(app.count("SELECT count(*) FROM orders").await, 40);
    assert_eq!(app.count("SELECT count(DISTINCT group_id) FROM outbox").await, 40);
    assert_eq!(app.count("SELECT count(*) FROM outbox").await, 40);
}
