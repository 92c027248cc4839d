//! Batches, dependency outages and handler panics in the consumer loop, on the
//! real PostgreSQL and SQS emulator: a received batch is applied together, one
//! message per order at a time; a batch that fails or panics as a whole falls
//! back to one message at a time, so only the bad message is retried; a
//! database outage far longer than `maxReceiveCount` x visibility dead-letters
//! nothing and spends no receive count; a panicking handler releases its
//! message at once and the poller carries on.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use delivery_service::consume::OrderCreatedHandler;
use messaging::{Consumer, ConsumerConfig, Disposition, Handler, Publisher, Received};
use shutdown::CancellationToken;
use uuid::Uuid;

use crate::helpers::{ORDERS, fixtures, hot, order_created, send_to, shipment};

/// Delegates to the real handler and records each attempt's receive count and outcome.
struct Recording<H> {
    inner: H,
    attempts: Arc<Mutex<Vec<(String, u32, String)>>>,
}

impl<H> Recording<H> {
    fn record(&self, message: &Received, d: &Disposition) {
        let outcome = format!("{d:?}").split([' ', '{', '(']).next().unwrap_or_default().to_owned();
        self.attempts.lock().unwrap().push((message.message_id.clone(), message.receive_count, outcome));
    }
}

impl<H: Handler> Handler for Recording<H> {
    async fn handle(&self, message: &Received) -> Disposition {
        let d = self.inner.handle(message).await;
        self.record(message, &d);
        d
    }

    async fn handle_batch(&self, messages: &[Received]) -> Option<Vec<Disposition>> {
        let answers = self.inner.handle_batch(messages).await?;
        for (m, d) in messages.iter().zip(&answers) {
            self.record(m, d);
        }
        Some(answers)
    }
}

fn config(queue: String) -> ConsumerConfig {
    ConsumerConfig {
        wait_time: Duration::from_secs(1),
        visibility_timeout: Duration::from_secs(2),
        heartbeat_interval: Duration::from_millis(500),
        hold_max_delay: Duration::from_millis(500),
        ..ConsumerConfig::new(queue)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_longer_than_the_redrive_window_dead_letters_nothing() {
    // Redrive after 2 receives of 2 s visibility: a 4 s outage would dead-letter
    // a message that was handed back on each failure. This one lasts 10 s.
    let (db, queues, orders, _) = fixtures(2).await;
    let attempts = Arc::new(Mutex::new(Vec::new()));
    let handler = Recording {
        inner: OrderCreatedHandler {
            db: hot(&db.url, 4, Duration::from_secs(1)),
            ship_after: Duration::ZERO,
            jitter: Duration::ZERO,
            due: Default::default(),
        },
        attempts: attempts.clone(),
    };
    let consumer = Arc::new(Consumer::new(queues.client.clone(), config(queues.name(ORDERS)), handler));

    db.refuse_connections().await;
    let order_ids: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
    for id in &order_ids {
        let event = order_created(*id);
        send_to(&queues, &orders.url, &event.to_json(), &id.to_string(), &event.event_id.to_string(), "order-created")
            .await;
    }
    let stop = CancellationToken::new();
    let running = tokio::spawn(consumer.clone().run(stop.clone()));

    let held = testkit::eventually(Duration::from_secs(20), Duration::from_millis(50), || {
        let paused = consumer.paused();
        async move { paused.then_some(()) }
    })
    .await;
    assert!(held.is_some(), "the consumer holds a message and pauses while the database is down");
    // The outage itself: a fault held for a fixed time, far past 2 x 2 s.
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(consumer.paused(), "still holding, not handing messages back");
    db.allow_connections().await;

    let check = db.pool().await;
    let done = testkit::eventually(Duration::from_secs(30), Duration::from_millis(200), || {
        let check = check.clone();
        async move {
            let n: i64 = sqlx::query_scalar("SELECT count(*) FROM shipments").fetch_one(&check).await.ok()?;
            (n == 3).then_some(())
        }
    })
    .await;
    assert!(done.is_some(), "every order got its shipment once the database was back");
    stop.cancel();
    running.await.unwrap();
    assert!(!consumer.paused(), "receiving resumed");

    let attempts = attempts.lock().unwrap().clone();
    assert!(attempts.iter().any(|(_, _, o)| o == "Unavailable"), "handling failed during the outage: {attempts:?}");
    assert!(
        attempts.iter().all(|(_, count, _)| *count == 1),
        "every attempt was on the first receive: no receive count spent: {attempts:?}"
    );
    let dlq =
        Publisher::new(queues.client.clone()).queue_depth(&messaging::dlq_name(&queues.name(ORDERS))).await.unwrap();
    assert_eq!((dlq.visible, dlq.in_flight), (0, 0), "nothing dead-lettered");
    let (visible, in_flight) = queues.depth(ORDERS).await;
    assert_eq!((visible, in_flight), (0, 0), "every message was deleted");
}

/// Panics on a message's first handling, acknowledges it after.
struct PanicsOnce {
    calls: AtomicUsize,
}

impl Handler for PanicsOnce {
    async fn handle(&self, _message: &Received) -> Disposition {
        if self.calls.fetch_add(1, Ordering::SeqCst) == 0 {
            panic!("handler bug (test)");
        }
        Disposition::Ack
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_releases_its_messages_and_the_poller_restarts() {
    let (_db, queues, orders, _) = fixtures(5).await;
    // A visibility far longer than the test: only an explicit release brings
    // the message back in time, and a heartbeat left running would hide it again.
    let config = ConsumerConfig {
        visibility_timeout: Duration::from_secs(120),
        heartbeat_interval: Duration::from_millis(200),
        ..config(queues.name(ORDERS))
    };
    let consumer = Arc::new(Consumer::new(queues.client.clone(), config, PanicsOnce { calls: AtomicUsize::new(0) }));
    let id = Uuid::now_v7();
    let event = order_created(id);
    send_to(&queues, &orders.url, &event.to_json(), &id.to_string(), &event.event_id.to_string(), "order-created")
        .await;

    // The step that met the panic fails (so the run loop restarts the poller) ...
    let stop = CancellationToken::new();
    let first = testkit::eventually(Duration::from_secs(10), Duration::ZERO, || {
        let (consumer, stop) = (consumer.clone(), stop.clone());
        async move {
            match consumer.poll_once(&stop).await {
                Ok(outcome) if outcome.received == 0 => None,
                other => Some(other),
            }
        }
    })
    .await
    .expect("the message arrives");
    assert!(first.is_err(), "a panic fails the step: {first:?}");
    // ... and the message is back at once, handled by the restarted loop.
    let running = tokio::spawn(consumer.clone().run(stop.clone()));
    let emptied = testkit::eventually(Duration::from_secs(15), Duration::from_millis(200), || {
        let queues = &queues;
        async move { (queues.depth(ORDERS).await == (0, 0)).then_some(()) }
    })
    .await;
    stop.cancel();
    running.await.unwrap();
    assert!(emptied.is_some(), "the released message was handled and deleted, not hidden for the visibility timeout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_shipment_whose_step_fails_does_not_stall_the_others() {
    let d = crate::helpers::spawn(5, vec![("SCHEDULER_RETRY_AFTER", "1h")]).await;
    let pool = d.db.pool().await;
    let orders: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
    let db = hot(&d.db.url, 1, Duration::from_secs(3));
    for id in &orders {
        delivery_service::storage::create_shipments(&db, &[shipment(&order_created(*id))]).await.unwrap();
    }
    // A row the step cannot write (here a trigger refuses it; in life a bad row).
    let bad = orders[1];
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'bad row'; END $$;
         CREATE TRIGGER refuse BEFORE UPDATE OF status ON shipments FOR EACH ROW
           WHEN (OLD.order_id = '{bad}') EXECUTE FUNCTION refuse();"
    )))
    .execute(&pool)
    .await
    .unwrap();

    assert_eq!(d.scheduler.try_advance_once().await.unwrap(), 2, "the two good shipments moved");
    let statuses: Vec<(Uuid, String, bool)> = sqlx::query_as(
        "SELECT order_id, status, next_step_at > now() + interval '30 minutes' FROM shipments ORDER BY order_id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    for (order, status, later) in statuses {
        if order == bad {
            assert_eq!((status.as_str(), later), ("PROCESSING", true), "rolled back alone, retried later");
        } else {
            assert_eq!(status, "SHIPPED");
        }
    }
    assert_eq!(d.count("SELECT count(*) FROM outbox").await, 2, "one event per moved shipment, none for the bad one");

    // Fixed: it moves on its next turn (with the other two, now due for delivery).
    sqlx::raw_sql("DROP TRIGGER refuse ON shipments").execute(&pool).await.unwrap();
    sqlx::query("UPDATE shipments SET next_step_at = now() WHERE order_id = $1")
        .bind(bad)
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(d.scheduler.try_advance_once().await.unwrap(), 3);
    let status: String = sqlx::query_scalar("SELECT status FROM shipments WHERE order_id = $1")
        .bind(bad)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(status, "SHIPPED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlq_redrive_moves_dead_letters_back_in_order_per_group_and_says_what_it_moved() {
    let (_db, queues, orders, _) = fixtures(5).await;
    // Three dead letters: two of order A (in order), one of order B.
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
    let sent = [(a, "a-1"), (a, "a-2"), (b, "b-1")];
    for (group, dedup) in sent {
        send_to(
            &queues,
            &orders.dlq_url,
            &format!(r#"{{"dedup":"{dedup}"}}"#),
            &group.to_string(),
            dedup,
            "order-created",
        )
        .await;
    }
    let redrive = |dry_run: bool| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_delivery-service"));
        command
            .env_clear()
            .args(["dlq", "redrive"])
            .env("SQS_ENDPOINT_URL", testkit::sqs_endpoint())
            .env("ORDERS_QUEUE", queues.name(ORDERS))
            .env("RUST_LOG", "error");
        if dry_run {
            command.arg("--dry-run");
        }
        let output = command.output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let listed = redrive(true);
    // A FIFO queue hands out no more of a group while some of it is in flight,
    // so a dry run sees at least the oldest message of each group.
    assert!(listed.starts_with("would move ") && listed.lines().count() >= 3, "{listed}");
    assert_eq!(queues.drain(&orders.url, 1, Duration::from_secs(1)).await.len(), 0, "a dry run moves nothing");

    let moved = redrive(false);
    assert!(
        moved.starts_with(&format!(
            "moved 3 message(s) from {} to {}",
            messaging::dlq_name(&queues.name(ORDERS)),
            queues.name(ORDERS)
        )),
        "{moved}"
    );
    let back = queues.drain(&orders.url, 3, Duration::from_secs(10)).await;
    let got: Vec<(String, String)> = back
        .iter()
        .map(|m| {
            let sys = m.attributes.as_ref().unwrap();
            let group = sys[&aws_sdk_sqs::types::MessageSystemAttributeName::MessageGroupId].clone();
            let dedup = sys[&aws_sdk_sqs::types::MessageSystemAttributeName::MessageDeduplicationId].clone();
            assert!(dedup.contains("-redrive-"), "a fresh deduplication id: {dedup}");
            (group, m.body.clone().unwrap())
        })
        .collect();
    assert_eq!(got.len(), 3);
    let of_a: Vec<&str> = got.iter().filter(|(g, _)| *g == a.to_string()).map(|(_, b)| b.as_str()).collect();
    assert_eq!(of_a, [r#"{"dedup":"a-1"}"#, r#"{"dedup":"a-2"}"#], "order A's messages in order");
    let attrs = back[0].message_attributes.as_ref().unwrap();
    assert_eq!(attrs["event_type"].string_value.as_deref(), Some("order-created"), "attributes kept");
    assert!(queues.drain(&orders.dlq_url, 1, Duration::from_secs(1)).await.is_empty(), "the DLQ is empty");
    assert!(redrive(false).starts_with("moved 0 message(s)"));
}

/// Records the group ids of every batch the consumer offers, then delegates.
struct Batches<H> {
    inner: H,
    offered: Arc<Mutex<Vec<Vec<String>>>>,
}

impl<H: Handler> Handler for Batches<H> {
    async fn handle(&self, message: &Received) -> Disposition {
        self.inner.handle(message).await
    }

    async fn handle_batch(&self, messages: &[Received]) -> Option<Vec<Disposition>> {
        self.offered.lock().unwrap().push(messages.iter().map(|m| m.group_id.clone()).collect());
        self.inner.handle_batch(messages).await
    }
}

fn real_handler(url: &str) -> OrderCreatedHandler {
    OrderCreatedHandler {
        db: hot(url, 4, Duration::from_secs(3)),
        ship_after: Duration::from_secs(3600),
        jitter: Duration::ZERO,
        due: Default::default(),
    }
}

/// Polls until `n` messages were received (the emulator may split them over receives).
async fn poll_until<H: Handler>(consumer: &Consumer<H>, n: usize) -> messaging::PollOutcome {
    let mut total = messaging::PollOutcome::default();
    for _ in 0..20 {
        let o = consumer.poll_once(&CancellationToken::new()).await.expect("poll");
        total.received += o.received;
        total.acked += o.acked;
        total.retried += o.retried;
        total.released += o.released;
        if total.received >= n {
            break;
        }
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_received_batch_is_applied_together_one_message_per_order_at_a_time() {
    let (db, queues, orders, _) = fixtures(5).await;
    let offered = Arc::new(Mutex::new(Vec::new()));
    let handler = Batches { inner: real_handler(&db.url), offered: offered.clone() };
    let consumer = Consumer::new(queues.client.clone(), config(queues.name(ORDERS)), handler);
    let ids: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
    for id in &ids {
        let event = order_created(*id);
        send_to(&queues, &orders.url, &event.to_json(), &id.to_string(), &event.event_id.to_string(), "order-created")
            .await;
    }
    // The first order's event again, re-sent under a new deduplication id: same group.
    let again = order_created(ids[0]);
    send_to(&queues, &orders.url, &again.to_json(), &ids[0].to_string(), "re-sent", "order-created").await;

    let outcome = poll_until(&consumer, 4).await;
    assert_eq!((outcome.received, outcome.acked), (4, 4), "{outcome:?}");
    let offered = offered.lock().unwrap().clone();
    assert!(offered.iter().any(|batch| batch.len() > 1), "messages were handled together: {offered:?}");
    for batch in &offered {
        let mut groups = batch.clone();
        groups.dedup();
        groups.sort();
        groups.dedup();
        assert_eq!(groups.len(), batch.len(), "one message per order in a batch: {offered:?}");
    }
    assert_eq!(offered.iter().flatten().filter(|g| **g == ids[0].to_string()).count(), 2, "{offered:?}");
    let pool = db.pool().await;
    let shipments: i64 = sqlx::query_scalar("SELECT count(*) FROM shipments").fetch_one(&pool).await.unwrap();
    let history: i64 =
        sqlx::query_scalar("SELECT count(*) FROM shipment_status_history").fetch_one(&pool).await.unwrap();
    assert_eq!((shipments, history), (3, 3), "one shipment and one history row per order, the re-sent event skipped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_that_fails_as_a_whole_is_retried_one_by_one_so_only_the_bad_message_waits() {
    let (db, queues, orders, _) = fixtures(5).await;
    let pool = db.pool().await;
    let ids: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
    // A shipment the database refuses (here a trigger; in life a bad row): it
    // fails the whole batch's statement.
    let bad = ids[1];
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'bad row'; END $$;
         CREATE TRIGGER refuse BEFORE INSERT ON shipments FOR EACH ROW
           WHEN (NEW.order_id = '{bad}') EXECUTE FUNCTION refuse();"
    )))
    .execute(&pool)
    .await
    .unwrap();
    let attempts = Arc::new(Mutex::new(Vec::new()));
    let handler = Recording { inner: real_handler(&db.url), attempts: attempts.clone() };
    let consumer = Consumer::new(queues.client.clone(), config(queues.name(ORDERS)), handler);
    for id in &ids {
        let event = order_created(*id);
        send_to(&queues, &orders.url, &event.to_json(), &id.to_string(), &event.event_id.to_string(), "order-created")
            .await;
    }

    let outcome = poll_until(&consumer, 3).await;
    assert_eq!((outcome.received, outcome.acked, outcome.retried), (3, 2, 1), "{outcome:?}");
    let shipped: Vec<Uuid> =
        sqlx::query_scalar("SELECT order_id FROM shipments ORDER BY order_id").fetch_all(&pool).await.unwrap();
    assert_eq!(shipped, vec![ids[0], ids[2]], "the good orders got their shipments");
    let retried: Vec<String> =
        attempts.lock().unwrap().iter().filter(|(_, _, o)| o == "Retry").map(|(id, _, _)| id.clone()).collect();
    assert_eq!(retried.len(), 1, "only the bad message is retried: {:?}", attempts.lock().unwrap());
}

/// A batch handler with a bug: it panics; each message alone is fine.
struct BatchPanics;

impl Handler for BatchPanics {
    async fn handle(&self, _message: &Received) -> Disposition {
        Disposition::Ack
    }

    async fn handle_batch(&self, _messages: &[Received]) -> Option<Vec<Disposition>> {
        panic!("batch handler bug (test)");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_that_panics_is_handled_one_by_one() {
    let (_db, queues, orders, _) = fixtures(5).await;
    let consumer = Consumer::new(queues.client.clone(), config(queues.name(ORDERS)), BatchPanics);
    for _ in 0..3 {
        let id = Uuid::now_v7();
        let event = order_created(id);
        send_to(&queues, &orders.url, &event.to_json(), &id.to_string(), &event.event_id.to_string(), "order-created")
            .await;
    }
    let outcome = poll_until(&consumer, 3).await;
    assert_eq!((outcome.received, outcome.acked), (3, 3), "{outcome:?}");
    assert_eq!(queues.depth(ORDERS).await, (0, 0), "every message deleted");
}
