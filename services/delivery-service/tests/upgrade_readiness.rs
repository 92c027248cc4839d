//! An upgrade's delivery-service pod against the schema the previous release
//! left: it starts with `DATABASE_MIGRATE=false` (the controller migrates), is
//! alive (`/healthz`) but not ready (`/readyz` 503, the `schema` check naming
//! the versions) until every migration it embeds is applied, then ready.

use delivery_service::{Application, MIGRATOR, Settings};
use shutdown::CancellationToken;
use testkit::TestQueues;

const ORDERS_QUEUE: &str = "orders-queue.fifo";
const STATUS_QUEUE: &str = "delivery-status-queue.fifo";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_ready_on_the_previous_schema_then_ready_once_migrated() {
    telemetry::init_test_logging("error");
    let db = testkit::upgrade::previous_release_database(&MIGRATOR).await;
    let mut queues = TestQueues::new().await;
    queues.create(ORDERS_QUEUE, 5).await;
    queues.create(STATUS_QUEUE, 3).await;
    let env = [
        ("HTTP_ADDR", "127.0.0.1:0".to_owned()),
        ("DATABASE_URL", db.url.clone()),
        ("DATABASE_MIGRATE", "false".to_owned()),
        ("SQS_ENDPOINT_URL", testkit::sqs_endpoint()),
        ("ORDERS_QUEUE", queues.name(ORDERS_QUEUE)),
        ("DELIVERY_STATUS_QUEUE", queues.name(STATUS_QUEUE)),
        // Only the HTTP side: the loops would run against the old schema.
        ("CONSUMER_ENABLED", "false".to_owned()),
        ("SCHEDULER_ENABLED", "false".to_owned()),
        ("OUTBOX_RELAY_ENABLED", "false".to_owned()),
    ];
    let settings = Settings::from_env(settings::Env::from_pairs(env)).expect("valid settings");
    let app = Application::build(settings).await.expect("builds without migrating");
    let base = format!("http://{}", app.local_addr());
    let stop = CancellationToken::new();
    let task = tokio::spawn(app.run_until_stopped(stop.clone()));

    testkit::upgrade::assert_ready_only_once_migrated(&base, &db, &MIGRATOR).await;

    stop.cancel();
    task.await.expect("app task").expect("clean shutdown");
}
