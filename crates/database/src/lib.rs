//! PostgreSQL connection settings and pool construction shared by the services:
//! the `DATABASE_*` variables, a lazily connecting pool (a service starts while
//! its database is briefly away, and `/readyz` says so), a bounded ping, and
//! [`SchemaCheck`]: `/readyz` waits until the binary's migrations are applied.
//! Each service owns its migrations and queries.
//!
//! The paths that run per request or per message borrow from a [`HotPool`]
//! instead of sqlx's pool (which spends a round trip on every connection it
//! takes back); `DATABASE_MAX_CONNECTIONS` is shared out between the two
//! ([`DatabaseSettings::split`]).
//!
//! The pool may go through a transaction-pooling proxy (PgBouncer with
//! `pool_mode = transaction`, `DATABASE_POOLER`). Such a proxy lends a server
//! connection for one transaction only, so two things change for the pool:
//! no prepared statement is cached (the next transaction may run on another
//! server), and every checkout is one transaction ([`CHECKOUT_BEGIN`]), because
//! sqlx sends a query's Parse and its Bind behind two separate Syncs and the
//! proxy may hand the server to someone else in between. A caller's own
//! transaction (`pool.begin()`) runs inside it and its COMMIT is the real one;
//! a write outside any transaction commits when its connection returns to the
//! pool, which sqlx does in the background, so writes that must be durable when
//! the call returns belong in a transaction (every write path of the services
//! is one; the janitors' batch deletes need not be). What needs a session
//! (LISTEN, the migrator's advisory lock, one-shot admin commands) uses
//! [`DatabaseSettings::direct_pool`].

use std::{str::FromStr, time::Duration};

pub mod group;
mod hot;
pub mod metrics;
mod schema;

pub use hot::HotPool;
pub use schema::SchemaCheck;

use settings::{Env, ExposeSecret, SecretString};
use sqlx::{
    Connection, PgPool,
    postgres::{PgConnectOptions, PgPoolOptions, PgSslMode},
};

/// Prepared statements a direct connection keeps by default (sqlx's own default).
pub const DEFAULT_STATEMENT_CACHE: usize = 100;
/// The port PgBouncer listens on unless told otherwise.
pub const PGBOUNCER_PORT: u16 = 6432;

/// Where a transaction-pooling proxy (PgBouncer) listens.
#[derive(Debug, Clone)]
pub enum Pooler {
    /// Its own connection string (its user and password may differ).
    Url(SecretString),
    /// `DATABASE_URL`'s user, password, database and TLS mode at this address
    /// (`host[:port]`): how the chart points the pool at its PgBouncer while the
    /// controller's Secret holds one URL. `ssl_mode` (`DATABASE_POOLER_SSLMODE`)
    /// replaces the TLS mode for this hop alone: a PgBouncer without client TLS
    /// in front of a server reached with `verify-full`.
    Address { host: String, port: u16, ssl_mode: Option<PgSslMode> },
}

/// The `DATABASE_*` variables, for the configuration reference.
pub const SETTINGS: &[settings::Doc] = &[
    settings::Doc::deployer(
        "DATABASE_URL",
        "the service's database; also the direct connection for LISTEN, migrations and admin commands when `DATABASE_POOLER` is set",
    ),
    settings::Doc::deployer(
        "DATABASE_MAX_CONNECTIONS",
        "connections to PostgreSQL in all (at least 2): a quarter, two to four, for the shared pool (LISTEN, clients, janitors, gauges), the rest for the per-request and per-message paths; through `DATABASE_POOLER` one pool of this size",
    ),
    settings::Doc::tuning(
        "DATABASE_POOLER",
        "a PgBouncer in transaction pooling mode for the pool: `host[:port]` (`DATABASE_URL`'s role, password and database there; port 6432 by default) or its own `postgres://` URL",
    ),
    settings::Doc::tuning(
        "DATABASE_POOLER_SSLMODE",
        "with `DATABASE_POOLER=host[:port]`: the `sslmode` of the pool's hop to the pooler alone (e.g. `prefer` for a PgBouncer without client TLS while `DATABASE_URL` says `verify-full`); unset, `DATABASE_URL`'s",
    ),
    settings::Doc::tuning(
        "DATABASE_STATEMENT_CACHE",
        "prepared statements cached per pooled connection; must be 0 (its default there) through a pooler",
    ),
    settings::Doc::development(
        "DATABASE_MIGRATE",
        "apply migrations at start-up (local runs and tests); the controller, or a `migrate` job, owns schema changes in a cluster and the chart sets it `false`",
    ),
    settings::Doc::tuning("DATABASE_ACQUIRE_TIMEOUT", "longest wait for a pooled connection (then 503)"),
];

/// How to reach a service's database.
#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    /// Connection string (`DATABASE_URL`); a secret, since it may hold a password.
    /// The direct connection to PostgreSQL, and the pool's too unless a pooler is set.
    pub url: SecretString,
    /// A transaction-pooling proxy the pool goes through (`DATABASE_POOLER`);
    /// `None`: the pool connects directly.
    pub pooler: Option<Pooler>,
    /// Prepared statements cached per pooled connection (`DATABASE_STATEMENT_CACHE`;
    /// 0 turns the cache off, and it is always off through a pooler).
    pub statement_cache: usize,
    /// Connections to PostgreSQL at most, both pools together
    /// (`DATABASE_MAX_CONNECTIONS`; see [`Self::split`]).
    pub max_connections: u32,
    /// Apply migrations at start-up (`DATABASE_MIGRATE`).
    pub migrate_on_start: bool,
    /// Longest wait for a pooled connection before a request fails with 503
    /// (`DATABASE_ACQUIRE_TIMEOUT`).
    pub acquire_timeout: Duration,
}

impl DatabaseSettings {
    /// Reads the `DATABASE_*` variables; `default_db` names the local database.
    pub fn from_env(env: &mut Env, default_db: &str, default_pool: u32) -> Self {
        let url = env.secret_or("DATABASE_URL", &format!("postgres://postgres@127.0.0.1:5432/{default_db}"));
        let direct = parse_url(url.expose_secret());
        if let Err(e) = &direct {
            env.invalid("DATABASE_URL", e);
        }
        let mut pooler = env.secret("DATABASE_POOLER").and_then(|raw| match parse_pooler(raw.expose_secret()) {
            Ok(pooler) => Some(pooler),
            Err(e) => {
                env.invalid("DATABASE_POOLER", e);
                None
            }
        });
        if let Some(mode) = env.optional::<PgSslMode>("DATABASE_POOLER_SSLMODE") {
            match &mut pooler {
                Some(Pooler::Address { ssl_mode, .. }) => *ssl_mode = Some(mode),
                _ => env.invalid(
                    "DATABASE_POOLER_SSLMODE",
                    "only with DATABASE_POOLER=host[:port] (a pooler URL names its own sslmode)",
                ),
            }
        }
        let statement_cache = match pooler {
            Some(_) => {
                if env.get("DATABASE_STATEMENT_CACHE", 0usize) != 0 {
                    env.invalid(
                        "DATABASE_STATEMENT_CACHE",
                        "must be 0 with DATABASE_POOLER: a transaction-pooling proxy cannot keep prepared statements",
                    );
                }
                0
            }
            None => env.get("DATABASE_STATEMENT_CACHE", DEFAULT_STATEMENT_CACHE),
        };
        let max_connections = env.get("DATABASE_MAX_CONNECTIONS", default_pool);
        if max_connections < 2 {
            env.invalid("DATABASE_MAX_CONNECTIONS", "must be at least 2 (the hot paths' pool and the shared one)");
        }
        Self {
            url,
            pooler,
            statement_cache,
            max_connections,
            migrate_on_start: env.flag("DATABASE_MIGRATE", true),
            acquire_timeout: env.duration("DATABASE_ACQUIRE_TIMEOUT", Duration::from_secs(3)),
        }
    }

    /// Reads only the `DATABASE_*` variables, for commands that need nothing
    /// else (`migrate`, `clients create`); the error names every bad variable.
    pub fn from_process(default_db: &str) -> Result<Self, settings::ConfigError> {
        let mut env = Env::from_process();
        let database = Self::from_env(&mut env, default_db, 2);
        env.finish()?;
        Ok(database)
    }

    /// Whether the pool goes through a transaction-pooling proxy.
    pub fn through_pooler(&self) -> bool {
        self.pooler.is_some()
    }

    /// How `DATABASE_MAX_CONNECTIONS` is shared out: `(shared, hot)`, the
    /// connections of [`Self::pool`] and of [`Self::hot_pool`]. Connected
    /// directly, the hot paths get all but a quarter of them (the shared pool
    /// keeps two to four, for the live streams' LISTEN and the background
    /// work); through a pooler the hot paths borrow from the shared pool,
    /// which has them all.
    pub fn split(&self) -> (u32, u32) {
        let max = self.max_connections.max(2);
        if self.through_pooler() {
            return (max, 0);
        }
        let shared = (max / 4).clamp(2, 4).min(max - 1);
        (shared, max - shared)
    }

    /// The connections the per-request and per-message paths may hold at
    /// once: the hot pool's, or through a pooler the one pool's.
    pub fn hot_connections(&self) -> u32 {
        match self.split() {
            (shared, 0) => shared,
            (_, hot) => hot,
        }
    }

    /// The pool for the per-request and per-message paths (see [`HotPool`]):
    /// connected directly, its own connections (lazily opened); through a
    /// pooler, `shared`'s.
    pub fn hot_pool(&self, shared: &PgPool) -> Result<HotPool, sqlx::Error> {
        if self.through_pooler() {
            return Ok(HotPool::shared(shared.clone()));
        }
        let connect = connect_options(self.url.expose_secret())?.statement_cache_capacity(self.statement_cache);
        Ok(HotPool::new(connect, self.hot_connections() as usize, self.acquire_timeout))
    }

    /// The pool of everything else (and of everything through a pooler); it
    /// connects on first use. Through a pooler, each checkout is one
    /// transaction and no statement is cached.
    pub fn pool(&self) -> Result<PgPool, sqlx::Error> {
        // sqlx pings every connection as it comes back to the pool; its ping
        // before lending one out too would cost a round trip per query, so it is
        // off, and `before_acquire` checks the connection instead.
        let options = PgPoolOptions::new()
            .max_connections(self.split().0)
            .acquire_timeout(self.acquire_timeout)
            .test_before_acquire(false);
        let Some(pooler) = &self.pooler else {
            let connect = connect_options(self.url.expose_secret())?.statement_cache_capacity(self.statement_cache);
            // Only a connection idle a while is pinged (a server restart
            // meanwhile is then noticed before a query fails on it).
            return Ok(options
                .before_acquire(|conn, meta| {
                    Box::pin(async move { Ok(!needs_ping(meta.idle_for) || conn.ping().await.is_ok()) })
                })
                .connect_lazy_with(connect));
        };
        let connect = match pooler {
            Pooler::Url(url) => connect_options(url.expose_secret()),
            Pooler::Address { host, port, ssl_mode } => connect_options(self.url.expose_secret()).map(|o| {
                let o = o.host(host).port(*port);
                match ssl_mode {
                    Some(mode) => o.ssl_mode(*mode),
                    None => o,
                }
            }),
        }?
        .statement_cache_capacity(0);
        Ok(options
            // The checkout's BEGIN is the test that the connection works.
            .after_connect(|conn, _| {
                Box::pin(async move { sqlx::raw_sql(CHECKOUT_BEGIN).execute(conn).await.map(drop) })
            })
            .before_acquire(|conn, _| {
                Box::pin(async move { sqlx::raw_sql(CHECKOUT_BEGIN).execute(conn).await.map(|_| true) })
            })
            .after_release(|conn, _| Box::pin(end_checkout(conn)))
            .connect_lazy_with(connect))
    }

    /// The pool for what needs a session of its own (LISTEN; the migrator's
    /// advisory lock): `pooled` itself when it connects directly, otherwise one
    /// lazy connection straight to PostgreSQL (`DATABASE_URL`).
    pub fn session_pool(&self, pooled: &PgPool) -> Result<PgPool, sqlx::Error> {
        if self.through_pooler() { self.direct_pool(1) } else { Ok(pooled.clone()) }
    }

    /// A lazy pool of `max` connections straight to PostgreSQL (`DATABASE_URL`),
    /// whether or not the service's pool goes through a pooler.
    pub fn direct_pool(&self, max: u32) -> Result<PgPool, sqlx::Error> {
        // A direct session keeps its statements, whatever the pooled side does.
        let cache = if self.pooler.is_some() { DEFAULT_STATEMENT_CACHE } else { self.statement_cache };
        let connect = connect_options(self.url.expose_secret())?.statement_cache_capacity(cache);
        Ok(PgPoolOptions::new()
            .max_connections(max.max(1))
            .acquire_timeout(self.acquire_timeout)
            .connect_lazy_with(connect))
    }
}

/// How a single statement becomes durable before its caller answers anyone
/// ([`HotPool::commit`], [`HotPool::run_committed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commit {
    /// A direct connection: a statement on its own is its own transaction,
    /// committed before its result comes back (one round trip).
    Statement,
    /// Through a transaction pooler each checkout is one transaction (see
    /// [`CHECKOUT_BEGIN`]), committed only when the connection goes back, after
    /// the caller has moved on: wrap the statement in BEGIN and COMMIT.
    Explicit,
}

/// A pooled connection idle this long is pinged before it is lent out.
pub const PING_AFTER_IDLE: Duration = Duration::from_secs(1);

/// Whether a connection idle for `idle_for` is pinged before it is lent out.
pub fn needs_ping(idle_for: Duration) -> bool {
    idle_for >= PING_AFTER_IDLE
}

/// Opens the transaction a checkout runs in when the pool goes through a
/// transaction-pooling proxy. Warnings are not sent to the client within it, so
/// a caller's own `BEGIN` inside it ("there is already a transaction in
/// progress") stays quiet; the caller's COMMIT or ROLLBACK is the real one.
pub const CHECKOUT_BEGIN: &str = "BEGIN; SET LOCAL client_min_messages = error";
/// Ends a checkout's transaction: commits what the checkout's statements did
/// and, when the caller already ended the transaction, does nothing (quietly:
/// in the implicit block of this one message).
pub const CHECKOUT_END: &str = "SET LOCAL client_min_messages = error; COMMIT";

/// Ends a returned connection's checkout transaction. A transaction aborted by
/// a failed statement refuses `SET`, so it is rolled back instead; the
/// connection stays usable.
async fn end_checkout(conn: &mut sqlx::PgConnection) -> Result<bool, sqlx::Error> {
    match sqlx::raw_sql(CHECKOUT_END).execute(&mut *conn).await {
        Ok(_) => Ok(true),
        Err(sqlx::Error::Database(_)) => sqlx::raw_sql("ROLLBACK").execute(conn).await.map(|_| true),
        Err(e) => Err(e),
    }
}

fn parse_url(url: &str) -> Result<PgConnectOptions, String> {
    if !url.starts_with("postgres://") && !url.starts_with("postgresql://") {
        return Err("must be a postgres:// URL".to_owned());
    }
    PgConnectOptions::from_str(url).map_err(|e| format!("not a usable connection string: {e}"))
}

fn connect_options(url: &str) -> Result<PgConnectOptions, sqlx::Error> {
    parse_url(url).map_err(|e| sqlx::Error::Configuration(e.into()))
}

/// Reads `DATABASE_POOLER`: a URL, or `host[:port]` (port 6432 by default).
fn parse_pooler(raw: &str) -> Result<Pooler, String> {
    let raw = raw.trim();
    if raw.contains("://") {
        parse_url(raw)?;
        return Ok(Pooler::Url(raw.to_owned().into()));
    }
    let (host, port) = match raw.rsplit_once(':') {
        Some((host, port)) => {
            (host, port.parse::<u16>().map_err(|_| format!("{port:?} is not a port (want host:port)"))?)
        }
        None => (raw, PGBOUNCER_PORT),
    };
    if host.is_empty() || host.contains(['/', '@', ' ', '?']) {
        return Err(format!("{raw:?} is neither a postgres:// URL nor host:port"));
    }
    Ok(Pooler::Address { host: host.to_owned(), port, ssl_mode: None })
}

/// `SELECT 1` within `timeout`, for readiness probes.
pub async fn ping(pool: &PgPool, timeout: Duration) -> Result<(), String> {
    match tokio::time::timeout(timeout, sqlx::query!("SELECT 1 AS one").fetch_one(pool)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {timeout:?}")),
    }
}

/// Sets the `db_pool_connections{state}` gauges from both pools together.
pub fn record_pool_gauges(pool: &PgPool, hot: &HotPool) {
    let (hot_size, hot_idle, hot_max) = hot.status();
    let (size, idle) = (pool.size() + hot_size, pool.num_idle() as u32 + hot_idle);
    let gauge = |state| metrics::POOL_CONNECTIONS.gauge_with(&[state]);
    gauge("idle").set(f64::from(idle));
    gauge("in_use").set(f64::from(size.saturating_sub(idle)));
    gauge("max").set(f64::from(pool.options().get_max_connections() + hot_max));
}

/// The schema of each database, embedded from the top-level `migrations/<database>/`
/// folders. The services apply their own at start-up (`DATABASE_MIGRATE`) or with
/// their `migrate` subcommand; the controller applies both when it provisions the
/// databases. One definition, so all three always agree on what "up to date" means.
pub mod migrations {
    use sqlx::migrate::Migrator;

    /// `migrations/orders`: the order-service's database.
    pub static ORDERS: Migrator = sqlx::migrate!("../../migrations/orders");
    /// `migrations/delivery`: the delivery-service's database.
    pub static DELIVERY: Migrator = sqlx::migrate!("../../migrations/delivery");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(pairs: &[(&str, &str)]) -> Result<DatabaseSettings, settings::ConfigError> {
        let mut env = Env::from_pairs(pairs.iter().copied());
        let s = DatabaseSettings::from_env(&mut env, "orderflow_orders", 4);
        env.finish().map(|()| s)
    }

    #[test]
    fn direct_by_default_with_the_statement_cache() {
        let s = read(&[]).unwrap();
        assert!(!s.through_pooler());
        assert_eq!(s.statement_cache, DEFAULT_STATEMENT_CACHE);
        assert_eq!(read(&[("DATABASE_STATEMENT_CACHE", "0")]).unwrap().statement_cache, 0);
    }

    #[test]
    fn a_pooler_is_a_url_or_an_address_and_turns_the_cache_off() {
        let s = read(&[("DATABASE_URL", "postgres://u:pw@db:5432/orders"), ("DATABASE_POOLER", "pgbouncer")]).unwrap();
        assert!(matches!(&s.pooler, Some(Pooler::Address { host, port: 6432, ssl_mode: None }) if host == "pgbouncer"));
        assert_eq!(s.statement_cache, 0);
        let s = read(&[("DATABASE_POOLER", "127.0.0.1:7432")]).unwrap();
        assert!(matches!(&s.pooler, Some(Pooler::Address { host, port: 7432, .. }) if host == "127.0.0.1"));
        let s = read(&[("DATABASE_POOLER", "postgres://app.x:secret@pooler.example:6543/orders")]).unwrap();
        assert!(matches!(&s.pooler, Some(Pooler::Url(_))));
        assert!(!format!("{s:?}").contains("secret"), "the pooler URL is a secret");
    }

    #[test]
    fn bad_values_are_named() {
        let err = read(&[
            ("DATABASE_URL", "mysql://root:hunter2@db/x"),
            ("DATABASE_POOLER", "pgbouncer:sixty"),
            ("DATABASE_MAX_CONNECTIONS", "0"),
        ])
        .unwrap_err()
        .to_string();
        for name in ["DATABASE_URL", "DATABASE_POOLER", "DATABASE_MAX_CONNECTIONS"] {
            assert!(err.contains(name), "{name} missing from {err}");
        }
        assert!(!err.contains("hunter2"));
        let err = read(&[("DATABASE_POOLER", "pgbouncer"), ("DATABASE_STATEMENT_CACHE", "100")]).unwrap_err();
        assert!(err.to_string().contains("DATABASE_STATEMENT_CACHE"), "{err}");
    }

    #[test]
    fn the_hot_paths_get_most_connections_and_the_shared_pool_two_to_four() {
        let split = |max: &str, pooler: Option<&str>| {
            let mut pairs = vec![("DATABASE_MAX_CONNECTIONS", max)];
            pairs.extend(pooler.map(|p| ("DATABASE_POOLER", p)));
            read(&pairs).unwrap().split()
        };
        assert_eq!(split("16", None), (4, 12));
        assert_eq!(split("8", None), (2, 6));
        assert_eq!(split("40", None), (4, 36));
        assert_eq!(split("3", None), (2, 1));
        assert_eq!(split("2", None), (1, 1));
        // Through a pooler the hot paths borrow from the one pool.
        assert_eq!(split("16", Some("pgbouncer")), (16, 0));
        let hot = |pairs: &[(&str, &str)]| read(pairs).unwrap().hot_connections();
        assert_eq!(hot(&[("DATABASE_MAX_CONNECTIONS", "16")]), 12);
        assert_eq!(hot(&[("DATABASE_MAX_CONNECTIONS", "16"), ("DATABASE_POOLER", "pgbouncer")]), 16);
        assert!(read(&[("DATABASE_MAX_CONNECTIONS", "1")]).unwrap_err().to_string().contains("at least 2"));
    }

    #[test]
    fn only_a_connection_idle_a_while_is_pinged_before_it_is_lent() {
        assert!(!needs_ping(Duration::ZERO));
        assert!(!needs_ping(PING_AFTER_IDLE - Duration::from_millis(1)));
        assert!(needs_ping(PING_AFTER_IDLE));
        assert!(needs_ping(Duration::from_secs(3600)));
    }

    #[tokio::test]
    async fn pools_are_lazy_and_point_where_configured() {
        let s =
            read(&[("DATABASE_URL", "postgres://u:pw@db:5432/orders"), ("DATABASE_POOLER", "pgbouncer:6432")]).unwrap();
        let pooled = s.pool().unwrap();
        assert_eq!((pooled.connect_options().get_host(), pooled.connect_options().get_port()), ("pgbouncer", 6432));
        assert_eq!(pooled.connect_options().get_database(), Some("orders"));
        let direct = s.direct_pool(1).unwrap();
        assert_eq!((direct.connect_options().get_host(), direct.connect_options().get_port()), ("db", 5432));
    }

    #[tokio::test]
    async fn the_poolers_tls_mode_may_differ_from_the_servers() {
        let url = ("DATABASE_URL", "postgres://u:pw@db:5432/orders?sslmode=verify-full");
        let s = read(&[url, ("DATABASE_POOLER", "pgbouncer"), ("DATABASE_POOLER_SSLMODE", "prefer")]).unwrap();
        assert!(matches!(s.pool().unwrap().connect_options().get_ssl_mode(), PgSslMode::Prefer));
        assert!(matches!(s.direct_pool(1).unwrap().connect_options().get_ssl_mode(), PgSslMode::VerifyFull));
        let s = read(&[url, ("DATABASE_POOLER", "pgbouncer")]).unwrap();
        assert!(matches!(s.pool().unwrap().connect_options().get_ssl_mode(), PgSslMode::VerifyFull), "kept by default");
        for bad in [
            vec![url, ("DATABASE_POOLER_SSLMODE", "prefer")],
            vec![url, ("DATABASE_POOLER", "postgres://p@pooler:6432/orders"), ("DATABASE_POOLER_SSLMODE", "prefer")],
            vec![url, ("DATABASE_POOLER", "pgbouncer"), ("DATABASE_POOLER_SSLMODE", "sometimes")],
        ] {
            let err = read(&bad).unwrap_err().to_string();
            assert!(err.contains("DATABASE_POOLER_SSLMODE"), "{err}");
        }
    }
}
