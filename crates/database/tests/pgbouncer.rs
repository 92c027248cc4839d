//! The pool through a transaction-pooling PgBouncer (`DATABASE_POOLER`): many
//! concurrent parameterised queries, explicit transactions that commit or roll
//! back, and failed statements, all on a proxy that hands server connections
//! from one client to another between transactions. Runs when
//! `TEST_DATABASE_POOLER` names such a PgBouncer (`make test-pgbouncer` starts
//! one); skipped with a message otherwise.

use database::DatabaseSettings;
use settings::Env;
use sqlx::PgPool;

fn settings(pooler: &str) -> DatabaseSettings {
    let url = testkit::database_url();
    let mut env = Env::from_pairs([
        ("DATABASE_URL", url.as_str()),
        ("DATABASE_POOLER", pooler),
        ("DATABASE_MAX_CONNECTIONS", "8"),
    ]);
    let s = DatabaseSettings::from_env(&mut env, "postgres", 8);
    env.finish().expect("valid settings");
    s
}

async fn count(pool: &PgPool, table: &str, v: i32) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table} WHERE v = $1")))
        .bind(v)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_and_transactions_work_through_transaction_pooling() {
    let Some(pooler) = std::env::var("TEST_DATABASE_POOLER").ok().filter(|p| !p.is_empty()) else {
        eprintln!(
            "skipped: set TEST_DATABASE_POOLER=127.0.0.1:6432 (a PgBouncer in transaction mode; make test-pgbouncer)"
        );
        return;
    };
    let s = settings(&pooler);
    let pool = s.pool().unwrap();
    let direct = s.direct_pool(1).unwrap();
    let table = format!("pgbouncer_check_{}", std::process::id());
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE TABLE {table} (v int PRIMARY KEY)")))
        .execute(&direct)
        .await
        .unwrap();

    // Parameterised statements (Parse, Sync, Bind, Sync) from many tasks at once:
    // without one transaction per checkout, PgBouncer hands the server to another
    // client between the two Syncs and the Bind finds no statement.
    let tasks: Vec<_> = (0..16)
        .map(|t| {
            let pool = pool.clone();
            tokio::spawn(async move {
                for i in 0..50 {
                    let got: i32 =
                        sqlx::query_scalar("SELECT $1::int4 + 1").bind(t * 1000 + i).fetch_one(&pool).await.unwrap();
                    assert_eq!(got, t * 1000 + i + 1);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }

    // An explicit transaction commits with its own COMMIT, and rolls back.
    let insert = format!("INSERT INTO {table} (v) VALUES ($1)");
    let mut tx = pool.begin().await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(insert.clone())).bind(1).execute(&mut *tx).await.unwrap();
    tx.commit().await.unwrap();
    let mut tx = pool.begin().await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(insert.clone())).bind(2).execute(&mut *tx).await.unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(
        (count(&direct, &table, 1).await, count(&direct, &table, 2).await),
        (1, 0),
        "committed when commit returned"
    );

    // A write outside a transaction commits when its connection returns to the
    // pool, which sqlx does in the background: soon, but not before it returns.
    sqlx::query(sqlx::AssertSqlSafe(insert.clone())).bind(3).execute(&pool).await.unwrap();
    let mut seen = 0;
    for _ in 0..50 {
        seen = count(&direct, &table, 3).await;
        if seen == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(seen, 1, "the checkout's transaction committed on release");

    // A failed statement leaves every connection usable (its checkout rolls back).
    for _ in 0..20 {
        let err = sqlx::query(sqlx::AssertSqlSafe(insert.clone())).bind(1).execute(&pool).await.unwrap_err();
        assert!(err.as_database_error().is_some_and(|e| e.is_unique_violation()), "{err}");
    }
    let ok: i32 = sqlx::query_scalar("SELECT $1::int4").bind(7).fetch_one(&pool).await.unwrap();
    assert_eq!(ok, 7);

    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP TABLE {table}"))).execute(&direct).await.unwrap();
}
