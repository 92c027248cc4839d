//! The transactional outbox to `orders-queue.fifo`, on the real SQS emulator:
//! message shape, SQS outages, refused entries, concurrent relays and SIGTERM
//! under load.

use std::{
    collections::HashSet,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use futures::future::join_all;
use messaging::Publisher;
use outbox::{Outcome, Relay, RelayConfig};
use reqwest::StatusCode;
use serde_json::{Value, json};
use testkit::Proxy;

use crate::helpers::{ORDERS_QUEUE, Options, TestApp, base_env, hot_pool, spawn_app, spawn_app_with, valid_order};

fn attr(m: &aws_sdk_sqs::types::Message, name: &str) -> Option<String> {
    m.message_attributes.as_ref()?.get(name)?.string_value.clone()
}

fn sys_attr(m: &aws_sdk_sqs::types::Message, name: aws_sdk_sqs::types::MessageSystemAttributeName) -> Option<String> {
    m.attributes.as_ref()?.get(&name).cloned()
}

/// Places `n` distinct orders (SKUs `<tag>-<i>`) and returns their ids.
async fn place_orders(app: &TestApp, token: &str, tag: &str, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let mut body = valid_order();
        body["items"][0]["sku"] = json!(format!("{tag}-{i}"));
        let resp = app.post_order(token, &body, None).await;
        assert_eq!(resp.status(), StatusCode::CREATED);
        ids.push(resp.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned());
    }
    ids
}

fn order_ids(messages: &[aws_sdk_sqs::types::Message]) -> Vec<String> {
    messages
        .iter()
        .map(|m| {
            serde_json::from_str::<Value>(m.body.as_deref().unwrap()).unwrap()["order_id"].as_str().unwrap().to_owned()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_created_event_reaches_the_queue_with_the_contract_shape() {
    let app = spawn_app().await;
    let (token, client) = app.customer().await;
    let order: Value = app.post_order(&token, &valid_order(), None).await.json().await.unwrap();
    assert_eq!(app.outbox_rows().await, 1, "written in the order's transaction");
    assert_eq!(app.flush_outbox().await, 1);
    assert_eq!(app.outbox_rows().await, 0, "sent rows are removed");

    let messages = app.receive(1).await;
    assert_eq!(messages.len(), 1);
    let m = &messages[0];
    let body: Value = serde_json::from_str(m.body.as_deref().unwrap()).unwrap();
    let order_id = order["id"].as_str().unwrap();
    assert_eq!(body["event_type"], "order-created");
    assert_eq!(body["event_version"], 1);
    assert_eq!(body["order_id"], order_id);
    assert!(chrono::DateTime::parse_from_rfc3339(body["occurred_at"].as_str().unwrap()).is_ok());
    assert_eq!(body["payload"]["customer_id"], client.customer_id.to_string());
    assert_eq!(body["payload"]["total_minor"], 2598);
    assert_eq!(body["payload"]["currency"], "EUR");
    assert_eq!(body["payload"]["items"], order["items"]);
    assert_eq!(body["payload"]["shipping_address"], order["shipping_address"]);
    use aws_sdk_sqs::types::MessageSystemAttributeName as S;
    assert_eq!(sys_attr(m, S::MessageGroupId).as_deref(), Some(order_id));
    assert_eq!(sys_attr(m, S::MessageDeduplicationId).as_deref(), body["event_id"].as_str());
    assert_eq!(attr(m, "event_type").as_deref(), Some("order-created"));
    // Decodes with the shared envelope, as consumers will.
    assert!(matches!(envelope::Event::decode(m.body.as_deref().unwrap()), Ok(envelope::Event::OrderCreated(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_wakes_at_once_when_an_order_commits() {
    // A poll interval far longer than the test: only the wake-up can publish in time.
    let app =
        spawn_app_with(Options { env: vec![("OUTBOX_POLL_INTERVAL".into(), "1h".into())], relay_loop: true }).await;
    let (token, _) = app.customer().await;
    let ids = place_orders(&app, &token, "A", 3).await;
    let got = order_ids(&app.receive(3).await);
    assert_eq!(got.into_iter().collect::<HashSet<_>>(), ids.into_iter().collect::<HashSet<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_are_accepted_while_sqs_is_down_and_each_event_arrives_once_after() {
    let target = testkit::sqs_endpoint().trim_start_matches("http://").to_owned();
    let proxy = Proxy::start(&target).await;
    let app =
        spawn_app_with(Options { env: vec![("SQS_ENDPOINT_URL".into(), proxy.http_url())], relay_loop: true }).await;
    let (token, _) = app.customer().await;

    proxy.down();
    let during = place_orders(&app, &token, "DURING", 12).await;
    let ready: Value = app.http.get(app.url("/readyz")).send().await.unwrap().json().await.unwrap();
    assert_eq!(ready["checks"]["sqs"]["status"], "down");
    assert_eq!(app.outbox_rows().await, 12, "nothing could be sent");

    proxy.up();
    let after = place_orders(&app, &token, "AFTER", 3).await;
    let messages = app.receive(15).await;
    let got = order_ids(&messages);
    let unique: HashSet<_> = got.iter().cloned().collect();
    assert_eq!(got.len(), 15, "every accepted order's event arrived");
    assert_eq!(unique, during.iter().chain(&after).cloned().collect::<HashSet<_>>());
    // And nothing more follows.
    assert!(app.queues.drain(&app.queue_url, 1, Duration::from_secs(2)).await.is_empty());
    assert_eq!(app.outbox_rows().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_sqs_refuses_is_retried_alone_while_the_rest_go_out() {
    let app = spawn_app().await;
    let (token, _) = app.customer().await;
    let good = place_orders(&app, &token, "GOOD", 2).await;
    // A body SQS refuses (control characters are not allowed in message bodies).
    sqlx::query("INSERT INTO outbox (event_id, destination, group_id, event_type, body) VALUES ($1, $2, 'poison', 'order-created', $3)")
        .bind(uuid::Uuid::now_v7())
        .bind(app.queues.name(ORDERS_QUEUE))
        .bind("bad \u{1} body")
        .execute(&app.db.pool().await)
        .await
        .unwrap();

    // A refused row waits at least a minute here, so "not retried at once"
    // holds however slow the machine is.
    let config = RelayConfig { row_backoff: Duration::from_secs(60), ..RelayConfig::default() };
    let relay = Relay::new(hot_pool(&app.db.pool().await), Publisher::new(app.queues.client.clone()), config);
    assert_eq!(relay.try_publish_once().await.unwrap(), Outcome::Published { sent: 2, refused: 1 });
    let (attempts, error): (i32, Option<String>) =
        sqlx::query_as("SELECT attempts, last_error FROM outbox WHERE group_id = 'poison'")
            .fetch_one(&app.db.pool().await)
            .await
            .unwrap();
    assert_eq!(attempts, 1);
    assert!(error.is_some());
    // Backed off: not retried at once.
    assert_eq!(relay.try_publish_once().await.unwrap(), Outcome::Idle);
    let got = order_ids(&app.receive(2).await);
    assert_eq!(got.into_iter().collect::<HashSet<_>>(), good.into_iter().collect::<HashSet<_>>());
}

/// Adds an outbox row for `group` directly (as `outbox::enqueue` would).
async fn enqueue_raw(pool: &sqlx::PgPool, queue: &str, group: &str, body: &str) -> i64 {
    sqlx::query_scalar(
        "INSERT INTO outbox (event_id, destination, group_id, event_type, body) VALUES ($1, $2, $3, 'test', $4) RETURNING id",
    )
    .bind(uuid::Uuid::now_v7())
    .bind(queue)
    .bind(group)
    .bind(body)
    .fetch_one(pool)
    .await
    .unwrap()
}

fn order_service_admin(app: &TestApp, args: &[&str]) -> (bool, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_order-service"))
        .env_clear()
        .args(args)
        .env("DATABASE_URL", &app.db.url)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_sqs_always_refuses_is_parked_holds_back_its_order_and_is_requeued_by_an_operator() {
    let app = spawn_app().await;
    let pool = app.db.pool().await;
    let queue = app.queues.name(ORDERS_QUEUE);
    // Order P: a first event SQS refuses every time (control characters), then a good one.
    let poison = enqueue_raw(&pool, &queue, "P", "bad \u{1} body").await;
    enqueue_raw(&pool, &queue, "P", r#"{"group":"P","seq":2}"#).await;
    enqueue_raw(&pool, &queue, "Q", r#"{"group":"Q","seq":1}"#).await;
    let config = RelayConfig { row_backoff: Duration::ZERO, max_attempts: 3, ..RelayConfig::default() };
    let relay = Relay::new(hot_pool(&pool), Publisher::new(app.queues.client.clone()), config);

    assert_eq!(
        relay.try_publish_once().await.unwrap(),
        Outcome::Published { sent: 1, refused: 1 },
        "Q goes, P's first is refused"
    );
    assert_eq!(relay.try_publish_once().await.unwrap(), Outcome::Published { sent: 0, refused: 1 });
    assert_eq!(
        relay.try_publish_once().await.unwrap(),
        Outcome::Published { sent: 0, refused: 1 },
        "third refusal parks it"
    );
    assert_eq!(
        relay.try_publish_once().await.unwrap(),
        Outcome::Idle,
        "parked: skipped, and P's second event may not overtake it"
    );
    let parked = outbox::parked(&pool).await.unwrap();
    assert_eq!(parked.len(), 1);
    assert_eq!((parked[0].id, parked[0].attempts, parked[0].held_back), (poison, 3, 1));
    assert!(parked[0].last_error.is_some());

    // The operator lists it, fixes the cause, re-queues it.
    let (ok, listed) = order_service_admin(&app, &["outbox", "parked"]);
    assert!(ok, "{listed}");
    assert!(listed.contains("1 parked outbox row(s)") && listed.contains(&format!("{poison} ")), "{listed}");
    let (ok, missing) = order_service_admin(&app, &["outbox", "requeue", "999999"]);
    assert!(!ok && missing.contains("no parked outbox row 999999"), "{missing}");
    sqlx::query("UPDATE outbox SET body = $2 WHERE id = $1")
        .bind(poison)
        .bind(r#"{"group":"P","seq":1}"#)
        .execute(&pool)
        .await
        .unwrap();
    let (ok, requeued) = order_service_admin(&app, &["outbox", "requeue", &poison.to_string()]);
    assert!(ok, "{requeued}");
    assert!(requeued.contains(&format!("re-queued 1 outbox row(s): [{poison}]")), "{requeued}");
    assert!(outbox::parked(&pool).await.unwrap().is_empty());

    assert_eq!(relay.try_publish_once().await.unwrap(), Outcome::Published { sent: 1, refused: 0 });
    assert_eq!(relay.try_publish_once().await.unwrap(), Outcome::Published { sent: 1, refused: 0 });
    assert_eq!(outbox::backlog(&pool).await.unwrap(), 0);
    let bodies: Vec<Value> = app
        .queues
        .drain(&app.queue_url, 3, Duration::from_secs(10))
        .await
        .iter()
        .map(|m| serde_json::from_str(m.body.as_deref().unwrap()).unwrap())
        .collect();
    let p: Vec<i64> = bodies.iter().filter(|b| b["group"] == "P").map(|b| b["seq"].as_i64().unwrap()).collect();
    assert_eq!(p, [1, 2], "order P's events in order after the re-queue");
    let (ok, none) = order_service_admin(&app, &["outbox", "requeue", "--all"]);
    assert!(ok && none.contains("re-queued 0 outbox row(s)"), "{none}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_is_a_lease_not_a_transaction_and_a_failed_send_releases_it() {
    let app = spawn_app().await;
    let pool = app.db.pool().await;
    let queue = app.queues.name(ORDERS_QUEUE);
    let id = enqueue_raw(&pool, &queue, "L", r#"{"group":"L"}"#).await;
    let target = testkit::sqs_endpoint().trim_start_matches("http://").to_owned();
    let proxy = Proxy::start(&target).await;
    let client = messaging::connect(&messaging::SqsSettings::local(proxy.http_url())).await;
    let relay = Relay::new(hot_pool(&pool), Publisher::new(client), RelayConfig::default());
    proxy.down();
    assert!(relay.try_publish_once().await.is_err(), "SQS is away");
    let (claimed, attempts): (Option<chrono::DateTime<chrono::Utc>>, i32) =
        sqlx::query_as("SELECT claimed_until, attempts FROM outbox WHERE id = $1")
            .bind(id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!((claimed, attempts), (None, 0), "released for the next attempt, no attempt counted");
    // While one relay holds a lease no other relay claims the row, and no lock is held meanwhile.
    sqlx::query("UPDATE outbox SET claimed_until = now() + interval '1 hour' WHERE id = $1")
        .bind(id)
        .execute(&pool)
        .await
        .unwrap();
    let other = Relay::new(hot_pool(&pool), Publisher::new(app.queues.client.clone()), RelayConfig::default());
    assert_eq!(other.try_publish_once().await.unwrap(), Outcome::Idle);
    let locked: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation WHERE c.relname = 'outbox' AND l.mode = 'RowShareLock'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(locked, 0, "no transaction holds outbox rows");
    // An expired lease (its relay died mid-send) is taken over at the relay's
    // next look for expired leases (at most once a second).
    sqlx::query("UPDATE outbox SET claimed_until = now() - interval '1 second' WHERE id = $1")
        .bind(id)
        .execute(&pool)
        .await
        .unwrap();
    let taken_over = testkit::eventually(Duration::from_secs(5), Duration::from_millis(100), || async {
        match other.try_publish_once().await.unwrap() {
            Outcome::Idle => None,
            outcome => Some(outcome),
        }
    })
    .await;
    assert_eq!(taken_over, Some(Outcome::Published { sent: 1, refused: 0 }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_relays_at_once_send_every_row_exactly_once_and_in_order_per_order() {
    let app = spawn_app().await;
    let pool = app.db.pool().await;
    let queue = app.queues.name(ORDERS_QUEUE);
    // 60 orders with two events each: per order, event 1 must precede event 2.
    for i in 0..60 {
        let group = format!("order-{i}");
        for seq in 1..=2 {
            outbox::enqueue(
                &mut pool.acquire().await.unwrap(),
                &outbox::OutboxMessage {
                    event_id: uuid::Uuid::now_v7(),
                    destination: queue.clone(),
                    group_id: group.clone(),
                    event_type: "test".into(),
                    body: json!({"group": group, "seq": seq}).to_string(),
                    traceparent: None,
                    tracestate: None,
                },
            )
            .await
            .unwrap();
        }
    }
    let publisher = Publisher::new(app.queues.client.clone());
    let relays: Vec<Arc<Relay>> =
        (0..2).map(|_| Arc::new(Relay::new(hot_pool(&pool), publisher.clone(), RelayConfig::default()))).collect();
    let sent = join_all(relays.iter().map(|relay| async move {
        let mut sent = 0;
        let mut idle_rounds = 0;
        while idle_rounds < 3 {
            match relay.try_publish_once().await.unwrap() {
                Outcome::Published { sent: n, refused } => {
                    assert_eq!(refused, 0);
                    sent += n;
                    idle_rounds = 0;
                }
                _ => idle_rounds += 1,
            }
        }
        sent
    }))
    .await;
    assert_eq!(sent.iter().sum::<usize>(), 120, "each row sent once: {sent:?}");
    assert_eq!(outbox::backlog(&pool).await.unwrap(), 0);

    let messages = app.queues.drain(&app.queue_url, 120, Duration::from_secs(20)).await;
    assert_eq!(messages.len(), 120);
    let mut last_seq = std::collections::HashMap::new();
    for m in &messages {
        let body: Value = serde_json::from_str(m.body.as_deref().unwrap()).unwrap();
        let prev = last_seq.insert(body["group"].as_str().unwrap().to_owned(), body["seq"].as_i64().unwrap());
        assert!(prev.is_none_or(|p| p < body["seq"].as_i64().unwrap()), "order within a group");
    }
}

/// The real binary under load gets SIGTERM: every order it answered 201 for
/// has its event on the queue once it has exited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_loses_no_accepted_order() {
    let app = spawn_app().await; // provides the database, queue and a client
    let (_, client) = app.customer().await;
    let mut env = base_env(&app.db, &app.queues, &app.keys_pem);
    env.retain(|(k, _)| k != "HTTP_ADDR");
    let process = testkit::Spawn::new(env!("CARGO_BIN_EXE_order-service"), env).start().await;
    process.wait_ready(Duration::from_secs(30)).await;
    let mut process = process;
    let base = process.url.clone();
    let http = reqwest::Client::new();
    let token = testkit::token(&base, &client.client_id, &client.secret).await;

    // 8 clients place orders until the server goes away.
    let placed = Arc::new(AtomicUsize::new(0));
    let workers = (0..8).map(|w| {
        let (http, base, token, placed) = (http.clone(), base.clone(), token.clone(), placed.clone());
        tokio::spawn(async move {
            let mut accepted = Vec::new();
            for i in 0..400 {
                let mut body = valid_order();
                body["items"][0]["sku"] = json!(format!("W{w}-{i}"));
                match http.post(format!("{base}/orders")).bearer_auth(&token).json(&body).send().await {
                    Ok(resp) if resp.status() == StatusCode::CREATED => {
                        accepted.push(resp.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned());
                        placed.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            accepted
        })
    });
    let workers: Vec<_> = workers.collect();
    // SIGTERM while the load is running: once a good number of orders are in.
    let under_load = testkit::eventually(Duration::from_secs(30), Duration::from_millis(10), || {
        let n = placed.load(Ordering::Relaxed);
        async move { (n >= 100).then_some(()) }
    })
    .await;
    assert!(under_load.is_some(), "the load is running");
    process.terminate();
    let status = process.exited(Duration::from_secs(15)).await;
    assert!(status.success(), "clean exit within the shutdown timeout: {status:?}");

    let accepted: Vec<String> = join_all(workers).await.into_iter().flat_map(Result::unwrap).collect();
    assert!(accepted.len() >= 100, "load ran before SIGTERM");
    assert_eq!(app.outbox_rows().await, 0, "the relay flushed before exit");
    let got: HashSet<String> =
        order_ids(&app.queues.drain(&app.queue_url, accepted.len(), Duration::from_secs(30)).await)
            .into_iter()
            .collect();
    let missing: Vec<_> = accepted.iter().filter(|id| !got.contains(*id)).collect();
    assert!(missing.is_empty(), "{} of {} accepted orders have no event", missing.len(), accepted.len());
}
