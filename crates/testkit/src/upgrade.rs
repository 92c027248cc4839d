//! The upgrade-readiness scenario both services' tests play: a pod of the new
//! release started on the schema the previous release left (`DATABASE_MIGRATE=false`)
//! is alive but not ready, naming the migration it waits for, until the
//! controller's migration has run; then it is ready. The services' tests start
//! their own application; this owns the database at the older schema and the checks.

use reqwest::StatusCode;
use serde_json::Value;
use sqlx::migrate::Migrator;

use crate::TestDb;

/// The newest up-migration `migrator` embeds and the one before it.
pub fn previous_and_newest(migrator: &Migrator) -> (i64, i64) {
    let versions: Vec<i64> =
        migrator.iter().filter(|m| m.migration_type.is_up_migration()).map(|m| m.version).collect();
    assert!(versions.len() >= 2, "an upgrade needs at least two migrations");
    (versions[versions.len() - 2], versions[versions.len() - 1])
}

/// A database migrated only up to the migration before the newest, as the
/// previous release left it.
pub async fn previous_release_database(migrator: &Migrator) -> TestDb {
    let (previous, _) = previous_and_newest(migrator);
    TestDb::create_to(migrator, Some(previous)).await.expect("a database at the previous release's schema")
}

async fn readyz(base: &str) -> (StatusCode, Value) {
    let resp = reqwest::get(format!("{base}/readyz")).await.expect("/readyz answers");
    (resp.status(), resp.json().await.expect("a JSON report"))
}

/// The app at `base` on `db` (the previous release's schema) is alive and not
/// ready, its `schema` check naming both versions; after `migrator` runs (as
/// the new release's controller runs it) it is ready.
pub async fn assert_ready_only_once_migrated(base: &str, db: &TestDb, migrator: &Migrator) {
    let (previous, newest) = previous_and_newest(migrator);
    let (status, body) = readyz(base).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["status"], "unavailable", "{body}");
    assert_eq!(body["checks"]["postgres"]["status"], "up", "{body}");
    assert_eq!(body["checks"]["schema"]["status"], "down", "{body}");
    assert_eq!(body["checks"]["schema"]["required"], true, "{body}");
    let detail = body["checks"]["schema"]["detail"].as_str().unwrap_or_default();
    assert!(detail.contains(&format!("schema at migration {previous}, this binary needs {newest}")), "{body}");
    let alive = reqwest::get(format!("{base}/healthz")).await.unwrap();
    assert_eq!(alive.status(), StatusCode::OK, "liveness does not wait for the schema");

    migrator.run(&db.pool().await).await.expect("migrate to the binary's schema");
    let (status, body) = readyz(base).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "ready", "{body}");
    assert_eq!(body["checks"]["schema"]["status"], "up", "{body}");
}
