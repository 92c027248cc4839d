//! An upgrade's delivery-service pod against the schema the previous release
//! left: it starts with `DATABASE_MIGRATE=false` (the controller migrates), is
//! alive (`/healthz`) but not ready (`/readyz` 503, the `schema` check naming
//! the versions) until every migration it embeds is applied, then ready.

use delivery_service::{Application, MIGRATOR, Settings};
use reqwest::StatusCode;
use serde_json::Value;
use shutdown::CancellationToken;
use testkit::{TestDb, TestQueues};

const ORDERS_QUEUE: &str = "orders-queue.fifo";
const STATUS_QUEUE: &str = "delivery-status-queue.fifo";

/// The newest embedded migration and the one before it.
fn older_and_newest() -> (i64, i64) {
    let versions: Vec<i64> =
        MIGRATOR.iter().filter(|m| m.migration_type.is_up_migration()).map(|m| m.version).collect();
    (versions[versions.len() - 2], versions[versions.len() - 1])
}

async fn readyz(base: &str) -> (StatusCode, Value) {
    let resp = reqwest::get(format!("{base}/readyz")).await.expect("/readyz answers");
    (resp.status(), resp.json().await.expect("a JSON report"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_ready_on_the_previous_schema_then_ready_once_migrated() {
    telemetry::init_test_logging("error");
    let (older, newest) = older_and_newest();
    let db = TestDb::create_to(&MIGRATOR, Some(older)).await.expect("a database at the previous release's schema");
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

    let (status, body) = readyz(&base).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["status"], "unavailable", "{body}");
    assert_eq!(body["checks"]["postgres"]["status"], "up", "{body}");
    assert_eq!(body["checks"]["schema"]["status"], "down", "{body}");
    assert_eq!(body["checks"]["schema"]["required"], true, "{body}");
    let detail = body["checks"]["schema"]["detail"].as_str().unwrap_or_default();
    assert!(detail.contains(&format!("schema at migration {older}, this binary needs {newest}")), "{body}");
    let alive = reqwest::get(format!("{base}/healthz")).await.unwrap();
    assert_eq!(alive.status(), StatusCode::OK, "liveness does not wait for the schema");

    // The controller's migration, as the new release's controller applies it.
    MIGRATOR.run(&db.pool().await).await.expect("migrate to the binary's schema");
    let (status, body) = readyz(&base).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "ready", "{body}");
    assert_eq!(body["checks"]["schema"]["status"], "up", "{body}");

    stop.cancel();
    task.await.expect("app task").expect("clean shutdown");
}
