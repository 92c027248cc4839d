//! The hot paths' pool on the real PostgreSQL: a connection whose work
//! finished is lent again as it is; one whose work failed or was cut short is
//! closed, never lent in an unknown state; one the server dropped while it sat
//! idle is replaced; a caller waits at most the acquire timeout; through a
//! pooler the shared pool lends.

use std::time::Duration;

use database::{DatabaseSettings, HotPool, PING_AFTER_IDLE};
use settings::Env;
use sqlx::{Connection, PgConnection};

fn settings(pairs: &[(&str, &str)]) -> DatabaseSettings {
    let url = testkit::database_url();
    let mut all = vec![("DATABASE_URL", url.as_str()), ("DATABASE_ACQUIRE_TIMEOUT", "300ms")];
    all.extend_from_slice(pairs);
    let mut env = Env::from_pairs(all);
    let s = DatabaseSettings::from_env(&mut env, "postgres", 2);
    env.finish().expect("valid settings");
    s
}

/// A hot pool of one connection, with the shared pool it was split from.
fn one_connection() -> HotPool {
    let s = settings(&[("DATABASE_MAX_CONNECTIONS", "2")]);
    assert_eq!(s.split(), (1, 1));
    s.hot_pool(&s.pool().unwrap()).unwrap()
}

async fn backend(hot: &HotPool) -> i32 {
    hot.run(async |c| sqlx::query_scalar::<_, i32>("SELECT pg_backend_pid()").fetch_one(c).await).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_whose_work_finished_is_lent_again_as_it_is() {
    let hot = one_connection();
    let first = backend(&hot).await;
    for _ in 0..3 {
        assert_eq!(backend(&hot).await, first, "one connection, reused");
    }
    // A transaction committed inside the work leaves the connection idle.
    hot.run(async |c| {
        let mut tx = c.begin().await?;
        sqlx::query("SELECT 1").execute(&mut *tx).await?;
        tx.commit().await
    })
    .await
    .unwrap();
    assert_eq!(backend(&hot).await, first);
    let (size, idle, max) = hot.status();
    assert_eq!((size, idle, max), (1, 1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_whose_work_failed_is_closed_and_replaced() {
    let hot = one_connection();
    let first = backend(&hot).await;
    let failed = hot
        .run(async |c| {
            let mut tx = c.begin().await?;
            sqlx::query("INSERT INTO no_such_table VALUES (1)").execute(&mut *tx).await?;
            tx.commit().await
        })
        .await;
    assert!(matches!(failed, Err(sqlx::Error::Database(_))), "{failed:?}");
    let second = backend(&hot).await;
    assert_ne!(second, first, "the failed work's connection is not lent again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_whose_work_was_cut_short_is_closed_and_replaced() {
    let hot = one_connection();
    let first = backend(&hot).await;
    // The caller goes away mid-query (a client disconnects, a timeout fires).
    let cut = tokio::time::timeout(
        Duration::from_millis(100),
        hot.run(async |c| sqlx::query("SELECT pg_sleep(2)").execute(c).await),
    )
    .await;
    assert!(cut.is_err(), "the query was still running");
    let second = backend(&hot).await;
    assert_ne!(second, first, "a connection with a query in flight is never lent again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_the_server_dropped_while_idle_is_replaced_before_use() {
    let hot = one_connection();
    let first = backend(&hot).await;
    let mut admin = PgConnection::connect(&testkit::database_url()).await.unwrap();
    let ended: bool =
        sqlx::query_scalar("SELECT pg_terminate_backend($1)").bind(first).fetch_one(&mut admin).await.unwrap();
    assert!(ended);
    tokio::time::sleep(PING_AFTER_IDLE + Duration::from_millis(200)).await;
    let second = backend(&hot).await;
    assert_ne!(second, first, "the dead connection is replaced, not lent out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_waits_at_most_the_acquire_timeout_and_a_closed_pool_refuses() {
    let hot = one_connection();
    let (let_go, release) = tokio::sync::oneshot::channel::<()>();
    let (taken, is_taken) = tokio::sync::oneshot::channel::<()>();
    let holder = {
        let hot = hot.clone();
        tokio::spawn(async move {
            hot.run(async |c| {
                sqlx::query("SELECT 1").execute(&mut *c).await?;
                taken.send(()).unwrap();
                let _ = release.await;
                Ok(())
            })
            .await
        })
    };
    is_taken.await.unwrap();
    let waited = hot.run(async |c| sqlx::query("SELECT 1").execute(c).await).await;
    assert!(matches!(waited, Err(sqlx::Error::PoolTimedOut)), "{waited:?}");
    let_go.send(()).unwrap();
    holder.await.unwrap().unwrap();
    backend(&hot).await;

    hot.close();
    let refused = hot.run(async |c| sqlx::query("SELECT 1").execute(c).await).await;
    assert!(matches!(refused, Err(sqlx::Error::PoolClosed)), "{refused:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_a_pooler_the_shared_pool_lends() {
    // The pooler's address is never dialled: the work runs on the shared pool
    // given, here a direct one standing in for it.
    let s = settings(&[("DATABASE_MAX_CONNECTIONS", "4"), ("DATABASE_POOLER", "127.0.0.1:1")]);
    let direct = settings(&[("DATABASE_MAX_CONNECTIONS", "4")]).pool().unwrap();
    let hot = s.hot_pool(&direct).unwrap();
    assert_eq!(hot.status(), (0, 0, 0), "no connections of its own");
    let one: i32 = hot.run(async |c| sqlx::query_scalar("SELECT 1").fetch_one(c).await).await.unwrap();
    assert_eq!(one, 1);
}
