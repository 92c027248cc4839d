//! The direct pool on the real PostgreSQL: a pooled connection the server
//! dropped while it sat idle is replaced before a query runs on it, although
//! connections in steady use are lent out without a ping.

use std::time::Duration;

use database::{DatabaseSettings, PING_AFTER_IDLE};
use settings::Env;
use sqlx::{Connection, PgConnection};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_the_server_dropped_while_idle_is_replaced_before_use() {
    let url = testkit::database_url();
    let mut env = Env::from_pairs([("DATABASE_URL", url.as_str()), ("DATABASE_MAX_CONNECTIONS", "2")]);
    let s = DatabaseSettings::from_env(&mut env, "postgres", 2);
    env.finish().expect("valid settings");
    let pool = s.pool().unwrap();
    assert_eq!(pool.options().get_max_connections(), 1, "one shared connection, the other is the hot pool's");
    let backend = || sqlx::query_scalar::<_, i32>("SELECT pg_backend_pid()").fetch_one(&pool);
    let first = backend().await.unwrap();
    assert_eq!(backend().await.unwrap(), first, "one connection, reused");

    // The server ends that connection (a restart, an idle timeout, an operator)
    // while it waits in the pool.
    let mut admin = PgConnection::connect(&url).await.unwrap();
    let ended: bool =
        sqlx::query_scalar("SELECT pg_terminate_backend($1)").bind(first).fetch_one(&mut admin).await.unwrap();
    assert!(ended);
    tokio::time::sleep(PING_AFTER_IDLE + Duration::from_millis(200)).await;

    let second = backend().await.expect("the dead connection is replaced, not lent out");
    assert_ne!(second, first);
}
