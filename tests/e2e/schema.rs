//! The outbox and inbox tables are defined in each database's own migrations
//! (migrations are never shared between databases), but the `outbox` and
//! `messaging::inbox` code runs the same queries on both: this holds the two
//! definitions equal, column by column and index by index.

use testkit::TestDb;

/// `(column, type, nullable, default)` of `table`, and its index definitions
/// with the table name stripped, from a migrated database.
async fn shape(db: &TestDb, table: &str) -> (Vec<(String, String, String, Option<String>)>, Vec<String>) {
    let pool = db.pool().await;
    let columns = sqlx::query_as(
        "SELECT column_name::text, data_type::text, is_nullable::text, column_default::text
           FROM information_schema.columns WHERE table_schema = 'public' AND table_name = $1 ORDER BY ordinal_position",
    )
    .bind(table)
    .fetch_all(&pool)
    .await
    .unwrap();
    let indexes: Vec<String> = sqlx::query_scalar(
        "SELECT indexdef FROM pg_indexes WHERE schemaname = 'public' AND tablename = $1 ORDER BY indexname",
    )
    .bind(table)
    .fetch_all(&pool)
    .await
    .unwrap();
    (columns, indexes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_databases_define_the_outbox_and_inbox_alike() {
    let orders = TestDb::create(&order_service::storage::MIGRATOR).await.unwrap();
    let delivery = TestDb::create(&delivery_service::MIGRATOR).await.unwrap();
    for table in ["outbox", "processed_messages"] {
        let (a, b) = (shape(&orders, table).await, shape(&delivery, table).await);
        assert!(!a.0.is_empty(), "the orders database has a {table} table");
        assert_eq!(a, b, "{table} differs between migrations/orders and migrations/delivery");
    }
}
