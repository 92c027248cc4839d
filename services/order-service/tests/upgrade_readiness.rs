//! An upgrade's order-service pod against the schema the previous release left:
//! it starts with `DATABASE_MIGRATE=false` (the controller migrates), is alive
//! (`/healthz`) but not ready (`/readyz` 503, the `schema` check naming the
//! versions) until every migration it embeds is applied, then ready.

use order_service::{Application, Settings, auth::keys::generate_private_key_pem, config::Role, storage::MIGRATOR};
use testkit::TestQueues;
use tokio_util::sync::CancellationToken;

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
        ("REDIS_URL", testkit::redis_url()),
        ("REDIS_KEY_PREFIX", format!("{}:", queues.prefix)),
        ("SQS_ENDPOINT_URL", testkit::sqs_endpoint()),
        ("ORDERS_QUEUE", queues.name(ORDERS_QUEUE)),
        ("DELIVERY_STATUS_QUEUE", queues.name(STATUS_QUEUE)),
        ("STATUS_CONSUMER_ENABLED", "false".to_owned()),
        ("JWT_PRIVATE_KEY", generate_private_key_pem()),
        ("CLIENT_SECRET_KEY", "test-client-secret-key-0123456789abcdef".to_owned()),
    ];
    let mut settings = Settings::from_env(settings::Env::from_pairs(env), Role::Api).expect("valid settings");
    settings.api.as_mut().expect("an API process").relay_enabled = false;
    let app = Application::build(settings).await.expect("builds without migrating");
    let base = format!("http://127.0.0.1:{}", app.port());
    let stop = CancellationToken::new();
    let task = tokio::spawn(app.run_until_stopped(stop.clone()));

    testkit::upgrade::assert_ready_only_once_migrated(&base, &db, &MIGRATOR).await;

    stop.cancel();
    task.await.expect("app task").expect("clean shutdown");
}
