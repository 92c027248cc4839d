//! The status consumer: `order-shipped` and `order-delivered` move orders
//! forward with history stamped by the event's time; duplicates and stale
//! events change nothing; unknown orders and impossible transitions go to the
//! dead-letter queue.

use std::time::Duration;

use chrono::{SubsecRound, Utc};
use envelope::{Envelope, OrderDelivered, OrderShipped};
use reqwest::StatusCode;
use serde_json::Value;
use uuid::Uuid;

use crate::helpers::{TestApp, spawn_app, valid_order};

pub fn shipped(order_id: Uuid) -> Envelope<OrderShipped> {
    let at = Utc::now().trunc_subsecs(6);
    Envelope::new(
        order_id,
        at,
        OrderShipped {
            shipment_id: Uuid::now_v7(),
            carrier: "DHL".into(),
            tracking_number: "OF123".into(),
            shipped_at: at,
        },
    )
}

pub fn delivered(order_id: Uuid) -> Envelope<OrderDelivered> {
    let at = Utc::now().trunc_subsecs(6);
    Envelope::new(order_id, at, OrderDelivered { shipment_id: Uuid::now_v7(), delivered_at: at })
}

pub async fn place(app: &TestApp, token: &str) -> Uuid {
    let order: Value = app.post_order(token, &valid_order(), None).await.json().await.unwrap();
    Uuid::parse_str(order["id"].as_str().unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_events_move_the_order_forward_with_their_times() {
    let app = spawn_app().await;
    let (token, _) = app.customer().await;
    let id = place(&app, &token).await;
    let ship = shipped(id);
    app.send_status(&ship).await;
    assert_eq!(app.poll_status().await.acked, 1);
    let order: Value = app.get(&token, &format!("/orders/{id}")).await.json().await.unwrap();
    assert_eq!(order["status"], "SHIPPED");
    assert_eq!(order["shipment"]["carrier"], "DHL");
    assert_eq!(order["shipment"]["tracking_number"], "OF123");
    assert_eq!(order["history"][1]["status"], "SHIPPED");
    let at: chrono::DateTime<Utc> = serde_json::from_value(order["history"][1]["at"].clone()).unwrap();
    assert_eq!(at, ship.payload.shipped_at, "history carries the event's time");

    app.send_status(&delivered(id)).await;
    assert_eq!(app.poll_status().await.acked, 1);
    let order: Value = app.get(&token, &format!("/orders/{id}")).await.json().await.unwrap();
    assert_eq!(order["status"], "DELIVERED");
    let statuses: Vec<&str> =
        order["history"].as_array().unwrap().iter().map(|h| h["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["PENDING_SHIPMENT", "SHIPPED", "DELIVERED"]);
    assert_eq!(order["shipment"]["carrier"], "DHL", "delivery keeps the carrier");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_and_stale_events_are_acknowledged_and_change_nothing() {
    let app = spawn_app().await;
    let (token, _) = app.customer().await;
    let id = place(&app, &token).await;
    let ship = shipped(id);
    app.send_status(&ship).await;
    app.send_status(&delivered(id)).await;
    let mut acked = 0;
    for _ in 0..5 {
        acked += app.poll_status().await.acked;
        if acked == 2 {
            break;
        }
    }
    // The same shipped event again (a redelivery) and a stale, different shipped event.
    let mut again = ship.clone();
    again.payload.carrier = "Other".into();
    app.queues
        .client
        .send_message()
        .queue_url(&app.status_queue.url)
        .message_body(again.to_json())
        .message_group_id(id.to_string())
        .message_deduplication_id("redelivered-with-new-dedup")
        .send()
        .await
        .unwrap();
    app.send_status(&shipped(id)).await;
    let mut acked = 0;
    for _ in 0..5 {
        acked += app.poll_status().await.acked;
        if acked == 2 {
            break;
        }
    }
    assert_eq!(acked, 2);
    let order: Value = app.get(&token, &format!("/orders/{id}")).await.json().await.unwrap();
    assert_eq!(order["status"], "DELIVERED");
    assert_eq!(order["history"].as_array().unwrap().len(), 3);
    assert_eq!(order["shipment"]["carrier"], "DHL");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_orders_and_impossible_transitions_go_to_the_dead_letter_queue() {
    let app = spawn_app().await; // status queue: DLQ after 3 receives
    let (token, _) = app.customer().await;
    let id = place(&app, &token).await;
    app.send_status(&shipped(Uuid::now_v7())).await; // no such order
    app.send_status(&delivered(id)).await; // delivered before shipped
    let mut dead = Vec::new();
    for _ in 0..15 {
        app.poll_status().await;
        dead.extend(app.queues.drain(&app.status_queue.dlq_url, 2 - dead.len(), Duration::from_millis(200)).await);
        if dead.len() == 2 {
            break;
        }
    }
    assert_eq!(dead.len(), 2, "both bad events were dead-lettered");
    let order: Value = app.get(&token, &format!("/orders/{id}")).await.json().await.unwrap();
    assert_eq!(order["status"], "PENDING_SHIPMENT", "nothing was applied");
    let text = app.http.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let queue = &app.queues.name(crate::helpers::STATUS_QUEUE);
    assert!(text.contains(&format!(r#"messages_rejected_total{{queue="{queue}",reason="unknown_order"}}"#)), "{text}");
    assert!(text.contains(&format!(r#"messages_rejected_total{{queue="{queue}",reason="impossible_transition"}}"#)));
    let _ = StatusCode::OK;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_that_races_another_consumer_is_retried_and_applied_once() {
    let app = spawn_app().await;
    let (token, _) = app.customer().await;
    let id = place(&app, &token).await;
    // Another consumer moves the order to SHIPPED and holds its row lock...
    let pool = app.db.pool().await;
    let mut other = pool.begin().await.unwrap();
    sqlx::query("UPDATE orders SET status = 'SHIPPED' WHERE id = $1").bind(id).execute(&mut *other).await.unwrap();
    sqlx::query("INSERT INTO order_status_history (order_id, seq, status, at) VALUES ($1, 2, 'SHIPPED', now())")
        .bind(id)
        .execute(&mut *other)
        .await
        .unwrap();
    // ...while this one applies the same shipment: its statement starts with the
    // order still PENDING_SHIPMENT and waits for the lock.
    app.send_status(&shipped(id)).await;
    let poll = tokio::spawn({
        let consumer = app.status_consumer.clone();
        async move { consumer.poll_once(&tokio_util::sync::CancellationToken::new()).await.unwrap() }
    });
    let waiting = "SELECT count(*) FROM pg_stat_activity \
                   WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%moved AS%'";
    for _ in 0..200 {
        if app.count(waiting).await == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(app.count(waiting).await, 1, "the status statement waits for the order's row lock");
    other.commit().await.unwrap();

    let outcome = poll.await.unwrap();
    assert_eq!((outcome.acked, outcome.retried), (0, 1), "raced: left for redelivery, not acknowledged");
    let order: Value = app.get(&token, &format!("/orders/{id}")).await.json().await.unwrap();
    assert_eq!(order["status"], "SHIPPED");
    assert_eq!(order["history"].as_array().unwrap().len(), 2, "the move was applied once");
    assert_eq!(app.count("SELECT count(*) FROM processed_messages").await, 0, "nothing recorded for it");
}
