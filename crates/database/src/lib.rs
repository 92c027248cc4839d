//! PostgreSQL connection settings and pool construction shared by the services:
//! the `DATABASE_*` variables, a lazily connecting pool (a service starts while
//! its database is briefly away, and `/readyz` says so), and a bounded ping.
//! Each service owns its migrations and queries.

use std::time::Duration;

pub mod metrics;

use settings::{Env, ExposeSecret, SecretString};
use sqlx::{PgPool, postgres::PgPoolOptions};

/// How to reach a service's database.
#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    /// Connection string (`DATABASE_URL`); a secret, since it may hold a password.
    pub url: SecretString,
    /// Pool size (`DATABASE_MAX_CONNECTIONS`).
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
        let url = env
            .secret("DATABASE_URL")
            .unwrap_or_else(|| format!("postgres://postgres@127.0.0.1:5432/{default_db}").into());
        if !url.expose_secret().starts_with("postgres://") && !url.expose_secret().starts_with("postgresql://") {
            env.invalid("DATABASE_URL", "must be a postgres:// URL");
        }
        let max_connections = env.get("DATABASE_MAX_CONNECTIONS", default_pool);
        if max_connections == 0 {
            env.invalid("DATABASE_MAX_CONNECTIONS", "must be at least 1");
        }
        Self {
            url,
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

    /// A pool that connects on first use.
    pub fn pool(&self) -> Result<PgPool, sqlx::Error> {
        PgPoolOptions::new()
            .max_connections(self.max_connections)
            .acquire_timeout(self.acquire_timeout)
            .connect_lazy(self.url.expose_secret())
    }
}

/// `SELECT 1` within `timeout`, for readiness probes.
pub async fn ping(pool: &PgPool, timeout: Duration) -> Result<(), String> {
    match tokio::time::timeout(timeout, sqlx::query!("SELECT 1 AS one").fetch_one(pool)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {timeout:?}")),
    }
}

/// Sets the `db_pool_connections{state}` gauges from `pool`.
pub fn record_pool_gauges(pool: &PgPool) {
    let (size, idle) = (pool.size(), pool.num_idle() as u32);
    let gauge = |state| metrics::POOL_CONNECTIONS.gauge_with(&[state]);
    gauge("idle").set(f64::from(idle));
    gauge("in_use").set(f64::from(size.saturating_sub(idle)));
    gauge("max").set(f64::from(pool.options().get_max_connections()));
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
