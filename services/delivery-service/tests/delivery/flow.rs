//! In-process flow: an `order-created` message becomes one shipment and, in
//! order, one `order-shipped` and one `order-delivered`; duplicates change
//! nothing; garbage reaches the dead-letter queue; an SQS outage loses nothing.

use std::{collections::HashMap, time::Duration};

use aws_sdk_sqs::types::MessageSystemAttributeName as Sys;
use reqwest::StatusCode;
use testkit::Proxy;
use uuid::Uuid;

use crate::helpers::{events, hot, order_created, shipment, spawn};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_becomes_one_shipment_and_two_status_events_in_order() {
    let mut d = spawn(5, vec![]).await;
    d.start();
    let order_id = Uuid::now_v7();
    d.send_event(&order_created(order_id)).await;
    let polled = d.poll().await;
    assert_eq!((polled.received, polled.acked), (1, 1));
    let (status, shipment) = d.shipment(order_id).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(shipment["status"], "PROCESSING");
    assert_eq!(d.count("SELECT count(*) FROM outbox").await, 0, "PROCESSING is not announced");

    d.advance_and_flush().await;
    let messages = d.status_messages(2, Duration::from_secs(10)).await;
    let got = events(&messages);
    assert_eq!(got.iter().map(|(t, _, _)| t.as_str()).collect::<Vec<_>>(), ["order-shipped", "order-delivered"]);
    let (_, shipment) = d.shipment(order_id).await;
    assert_eq!(shipment["status"], "DELIVERED");
    let history: Vec<&str> =
        shipment["history"].as_array().unwrap().iter().map(|h| h["status"].as_str().unwrap()).collect();
    assert_eq!(history, ["PROCESSING", "SHIPPED", "DELIVERED"]);

    let shipped = &got[0].2;
    assert_eq!(shipped["order_id"], order_id.to_string());
    assert_eq!(shipped["event_version"], 1);
    assert_eq!(shipped["payload"]["shipment_id"], shipment["id"]);
    assert_eq!(shipped["payload"]["carrier"], shipment["carrier"]);
    assert_eq!(shipped["payload"]["tracking_number"], shipment["tracking_number"]);
    assert!(shipped["payload"]["shipped_at"].is_string());
    assert!(got[1].2["payload"]["delivered_at"].is_string());
    for (m, (_, _, body)) in messages.iter().zip(&got) {
        let sys = m.attributes.as_ref().unwrap();
        assert_eq!(sys[&Sys::MessageGroupId], order_id.to_string());
        assert_eq!(sys[&Sys::MessageDeduplicationId], body["event_id"].as_str().unwrap());
        let attrs = m.message_attributes.as_ref().unwrap();
        assert_eq!(attrs["event_type"].string_value.as_deref(), body["event_type"].as_str());
        assert!(envelope::Event::decode(m.body.as_deref().unwrap()).is_ok());
    }
    let (status, _) = d.shipment(Uuid::now_v7()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_event_makes_one_shipment_and_one_set_of_events() {
    let d = spawn(5, vec![]).await;
    let order_id = Uuid::now_v7();
    let event = order_created(order_id);
    // The same event re-sent with a new deduplication id (SQS cannot drop it).
    d.send_event(&event).await;
    d.send(&event.to_json(), &order_id.to_string(), "resent-with-new-dedup-id", "order-created").await;
    // And the same event applied before its message was deleted: a redelivery after a commit.
    let redelivered = order_created(Uuid::now_v7());
    delivery_service::storage::create_shipments(&hot(&d.db.url, 1, Duration::from_secs(3)), &[shipment(&redelivered)])
        .await
        .unwrap();
    d.send_event(&redelivered).await;

    let mut acked = 0;
    for _ in 0..10 {
        acked += d.poll().await.acked;
        if acked == 3 {
            break;
        }
    }
    assert_eq!(acked, 3, "duplicates are acknowledged, not retried");
    assert_eq!(d.count("SELECT count(*) FROM shipments").await, 2);
    d.advance_and_flush().await;
    let got = events(&d.status_messages(4, Duration::from_secs(10)).await);
    assert_eq!(got.len(), 4, "one shipped + one delivered per order: {got:?}");
    assert!(d.status_messages(1, Duration::from_secs(1)).await.is_empty(), "and nothing more");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_unknown_types_reach_the_dead_letter_queue_while_valid_messages_flow() {
    let d = spawn(2, vec![]).await; // DLQ after 2 receives
    let valid: Vec<Uuid> = (0..2).map(|_| Uuid::now_v7()).collect();
    d.send("this is not json", "garbage-group", "garbage-1", "order-created").await;
    d.send_event(&order_created(valid[0])).await;
    let mut unknown = serde_json::to_value(order_created(Uuid::now_v7())).unwrap();
    unknown["event_type"] = "order-teleported".into();
    d.send(&unknown.to_string(), "unknown-group", "unknown-1", "order-teleported").await;
    let mut future = serde_json::to_value(order_created(Uuid::now_v7())).unwrap();
    future["event_version"] = 2.into();
    d.send(&future.to_string(), "future-group", "future-1", "order-created").await;
    d.send_event(&order_created(valid[1])).await;

    let mut rejected = 0;
    let mut dead = Vec::new();
    for _ in 0..20 {
        rejected += d.poll().await.rejected;
        dead.extend(d.queues.drain(&d.orders.dlq_url, 3 - dead.len(), Duration::from_millis(200)).await);
        if dead.len() == 3 && d.count("SELECT count(*) FROM shipments").await == 2 {
            break;
        }
    }
    assert_eq!(d.count("SELECT count(*) FROM shipments").await, 2, "valid messages were processed");
    assert!(rejected >= 3, "each bad message was rejected at least once");
    let mut bodies: Vec<String> = dead.iter().map(|m| m.body.clone().unwrap()).collect();
    bodies.sort();
    assert_eq!(bodies.len(), 3, "all three bad messages are in the DLQ");
    assert!(bodies.iter().any(|b| b == "this is not json"));
    assert!(bodies.iter().any(|b| b.contains("order-teleported")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sqs_outage_loses_nothing() {
    let proxy = Proxy::start(testkit::sqs_endpoint().trim_start_matches("http://")).await;
    let url = proxy.http_url();
    let mut d = spawn(
        5,
        vec![
            ("SQS_ENDPOINT_URL", url.as_str()),
            ("CONSUMER_ENABLED", "true"),
            ("SCHEDULER_ENABLED", "true"),
            ("OUTBOX_RELAY_ENABLED", "true"),
            ("SHIP_AFTER", "300ms"),
        ],
    )
    .await;
    d.start();
    let orders: Vec<Uuid> = (0..4).map(|_| Uuid::now_v7()).collect();
    for id in &orders[..2] {
        d.send_event(&order_created(*id)).await; // the test's own client bypasses the proxy
    }
    // Wait until the first two shipments exist, then cut SQS while they ship.
    let two = testkit::eventually(Duration::from_secs(10), Duration::from_millis(50), || async {
        (d.count("SELECT count(*) FROM shipments").await == 2).then_some(())
    })
    .await;
    assert!(two.is_some(), "the first two shipments were created");
    proxy.down();
    for id in &orders[2..] {
        d.send_event(&order_created(*id)).await;
    }
    // The service keeps trying (and failing) to reach SQS meanwhile.
    let tried = testkit::eventually(Duration::from_secs(10), Duration::from_millis(50), || async {
        (proxy.refused() >= 3).then_some(())
    })
    .await;
    assert!(tried.is_some(), "the service kept trying SQS while it was away");
    assert_eq!(d.count("SELECT count(*) FROM shipments").await, 2, "nothing consumed while SQS is away");
    proxy.up();

    let got = events(&d.status_messages(8, Duration::from_secs(30)).await);
    let mut per_order: HashMap<String, Vec<String>> = HashMap::new();
    for (t, order, _) in got {
        per_order.entry(order).or_default().push(t);
    }
    assert_eq!(per_order.len(), 4, "{per_order:?}");
    for (order, types) in per_order {
        assert_eq!(types, ["order-shipped", "order-delivered"], "order {order}");
    }
    assert_eq!(d.count("SELECT count(*) FROM shipments WHERE status = 'DELIVERED'").await, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_shutdown_a_long_poll_in_flight_releases_what_it_brings() {
    let d = spawn(5, vec![("CONSUMER_WAIT_TIME", "3s")]).await;
    // Shutdown has begun when the long poll is in flight: whatever it brings
    // is released at once, unstarted.
    let stop = shutdown::CancellationToken::new();
    stop.cancel();
    let poll = tokio::spawn({
        let (consumer, stop) = (d.consumer.clone(), stop.clone());
        async move { consumer.poll_once(&stop).await.unwrap() }
    });
    let order_id = Uuid::now_v7();
    d.send_event(&order_created(order_id)).await;
    let outcome = poll.await.unwrap();
    assert_eq!((outcome.released, outcome.acked), (1, 0), "received after stop: released unstarted");
    assert_eq!(d.count("SELECT count(*) FROM shipments").await, 0);
    // Released means visible again now, not after the visibility timeout.
    let again = d.poll().await;
    assert_eq!(again.acked, 1);
    assert_eq!(d.count("SELECT count(*) FROM shipments").await, 1);
}

/// A handler slower than the visibility timeout: the heartbeat keeps its
/// message invisible, so no other consumer gets it meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_heartbeat_keeps_a_slow_message_invisible() {
    struct Slow(Duration);
    impl messaging::Handler for Slow {
        async fn handle(&self, _: &messaging::Received) -> messaging::Disposition {
            tokio::time::sleep(self.0).await;
            messaging::Disposition::Ack
        }
    }
    let d = spawn(5, vec![]).await;
    let config = messaging::ConsumerConfig {
        wait_time: Duration::from_secs(1),
        visibility_timeout: Duration::from_secs(2),
        heartbeat_interval: Duration::from_millis(500),
        ..messaging::ConsumerConfig::new(d.queues.name(crate::helpers::ORDERS))
    };
    let slow = messaging::Consumer::new(d.queues.client.clone(), config, Slow(Duration::from_secs(5)));
    d.send_event(&order_created(Uuid::now_v7())).await;
    let handling = tokio::spawn(async move { slow.poll_once(&shutdown::CancellationToken::new()).await.unwrap() });
    // The slow handler holds the message once it is in flight.
    let in_hand = testkit::eventually(Duration::from_secs(10), Duration::from_millis(50), || async {
        let depth = d.queues.depth(crate::helpers::ORDERS).await;
        (depth == (0, 1)).then_some(())
    })
    .await;
    assert!(in_hand.is_some(), "the message was received");
    // Well past the 2 s visibility timeout, another receiver still sees nothing.
    let stolen = d.queues.drain(&d.orders.url, 1, Duration::from_secs(4)).await;
    assert!(stolen.is_empty(), "the message was redelivered while still in hand");
    let outcome = handling.await.unwrap();
    assert_eq!((outcome.received, outcome.acked), (1, 1));
}
