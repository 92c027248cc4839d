//! The schema check behind `/readyz` on the real PostgreSQL: a database an
//! older release migrated is not the binary's schema (the reason names both
//! versions), nor is one never migrated; once every embedded migration is
//! applied the check passes and keeps passing without asking again.

use database::{SchemaCheck, migrations::ORDERS};
use testkit::TestDb;

/// The embedded versions, oldest first.
fn versions() -> Vec<i64> {
    ORDERS.iter().filter(|m| m.migration_type.is_up_migration()).map(|m| m.version).collect()
}

#[tokio::test]
async fn an_older_schema_is_not_ready_until_migrated_then_stays_ready() {
    let versions = versions();
    let (older, newest) = (versions[versions.len() - 2], versions[versions.len() - 1]);
    let db = TestDb::create_to(&ORDERS, Some(older)).await.unwrap();
    let pool = db.pool().await;
    let schema = SchemaCheck::new(pool.clone(), &ORDERS);
    assert_eq!(schema.wanted(), Some(newest));

    let reason = schema.check().await.unwrap_err();
    assert!(reason.contains(&format!("schema at migration {older}, this binary needs {newest}")), "{reason}");
    assert!(!schema.reached());

    ORDERS.run(&pool).await.unwrap();
    schema.check().await.expect("every embedded migration is applied");
    assert!(schema.reached());

    // Remembered: the check no longer reads the table (a fresh one does).
    sqlx::query("DELETE FROM _sqlx_migrations WHERE version = $1").bind(newest).execute(&pool).await.unwrap();
    schema.check().await.expect("once reached, kept");
    let fresh = SchemaCheck::new(pool, &ORDERS).check().await.unwrap_err();
    assert!(fresh.contains(&format!("migration {newest} is not applied")), "{fresh}");
}

#[tokio::test]
async fn a_database_never_migrated_is_not_ready() {
    let db = TestDb::create_to(&ORDERS, Some(0)).await.unwrap();
    let pool = db.pool().await;
    sqlx::raw_sql("DROP TABLE _sqlx_migrations").execute(&pool).await.unwrap();
    let reason = SchemaCheck::new(pool, &ORDERS).check().await.unwrap_err();
    assert!(reason.starts_with("no migration applied, this binary needs"), "{reason}");
}

#[tokio::test]
async fn a_missing_older_migration_is_named_although_the_newest_is_applied() {
    let db = TestDb::create(&ORDERS).await.unwrap();
    let pool = db.pool().await;
    let first = versions()[0];
    sqlx::query("DELETE FROM _sqlx_migrations WHERE version = $1").bind(first).execute(&pool).await.unwrap();
    let reason = SchemaCheck::new(pool, &ORDERS).check().await.unwrap_err();
    assert!(reason.contains(&format!("migration {first} is not applied")), "{reason}");
}
