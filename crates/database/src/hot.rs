//! The hot paths' connections: lent and taken back without a round trip.
//!
//! sqlx's pool pings every connection as it comes back (unconditionally, in
//! sqlx 0.9), so a query on it costs two round trips to PostgreSQL: its own
//! and the ping, plus a task to send it. For the paths that run per request or
//! per message (reading an order, placing a batch of orders, applying a batch
//! of events) that is most of the cost besides the query itself, so they
//! borrow from a [`HotPool`] instead: a connection whose work finished goes
//! back as it is; one whose work failed or was cut short (its caller went
//! away mid-query) is closed instead, since its state is unknown (a result
//! half read, a transaction open); and one idle for [`PING_AFTER_IDLE`] is
//! pinged before it is lent again, so a server restart meanwhile is noticed
//! before a query fails on it.
//!
//! Through a transaction-pooling proxy every checkout must be one transaction,
//! which the shared pool's hooks take care of ([`crate::CHECKOUT_BEGIN`]), so
//! there a `HotPool` lends from that pool.

use std::time::Duration;

use deadpool::managed::{self, Metrics, PoolError, RecycleError, RecycleResult, Timeouts};
use sqlx::{Connection, PgConnection, PgPool, postgres::PgConnectOptions};

use crate::{Commit, needs_ping};

/// Connections for the hot paths; cheap to clone.
#[derive(Clone)]
pub struct HotPool(Lender);

#[derive(Clone)]
enum Lender {
    /// Its own connections, straight to PostgreSQL.
    Own(managed::Pool<Connector>),
    /// Through a transaction pooler: the shared pool, whose checkouts are transactions.
    Shared(PgPool),
}

/// Opens connections for a [`HotPool`] and checks them before they are lent.
struct Connector {
    options: PgConnectOptions,
}

/// A connection and whether the last work lent it finished.
struct Lent {
    conn: PgConnection,
    finished: bool,
}

impl managed::Manager for Connector {
    type Type = Lent;
    type Error = sqlx::Error;

    async fn create(&self) -> Result<Lent, sqlx::Error> {
        Ok(Lent { conn: PgConnection::connect_with(&self.options).await?, finished: true })
    }

    async fn recycle(&self, lent: &mut Lent, metrics: &Metrics) -> RecycleResult<sqlx::Error> {
        if !lent.finished {
            return Err(RecycleError::message("its last work was cut short"));
        }
        if needs_ping(metrics.last_used()) {
            lent.conn.ping().await?;
        }
        Ok(())
    }
}

impl HotPool {
    /// At most `max` connections of their own, opened lazily with `options`;
    /// a caller waits at most `timeout` for one (then [`sqlx::Error::PoolTimedOut`]).
    pub fn new(options: PgConnectOptions, max: usize, timeout: Duration) -> Self {
        let pool = managed::Pool::builder(Connector { options })
            .max_size(max.max(1))
            .timeouts(Timeouts { wait: Some(timeout), create: Some(timeout), recycle: Some(timeout) })
            .runtime(deadpool::Runtime::Tokio1)
            .build()
            .expect("a runtime is set, so the pool builds");
        Self(Lender::Own(pool))
    }

    /// Lends the connections of `pool` (a transaction pooler's, whose checkouts are transactions).
    pub fn shared(pool: PgPool) -> Self {
        Self(Lender::Shared(pool))
    }

    /// Runs `work` on a connection. The connection goes back for the next
    /// caller only if `work` succeeded; after an error, or if this future is
    /// dropped before `work` ends, it is closed.
    pub async fn run<R>(
        &self,
        work: impl AsyncFnOnce(&mut PgConnection) -> Result<R, sqlx::Error>,
    ) -> Result<R, sqlx::Error> {
        match &self.0 {
            Lender::Shared(pool) => work(&mut *pool.acquire().await?).await,
            Lender::Own(pool) => {
                let mut lent = pool.get().await.map_err(lend_error)?;
                lent.finished = false;
                let result = work(&mut lent.conn).await;
                lent.finished = result.is_ok();
                result
            }
        }
    }

    /// Runs `work`, a single statement, committed before this returns: on its
    /// own on a connection of this pool's own (one round trip), in BEGIN ...
    /// COMMIT through a pooler ([`Self::commit`]).
    pub async fn run_committed<R>(
        &self,
        work: impl AsyncFnOnce(&mut PgConnection) -> Result<R, sqlx::Error>,
    ) -> Result<R, sqlx::Error> {
        self.run(async |conn| match self.commit() {
            Commit::Statement => work(conn).await,
            Commit::Explicit => {
                let mut tx = conn.begin().await?;
                let done = work(&mut tx).await?;
                tx.commit().await?;
                Ok(done)
            }
        })
        .await
    }

    /// How a single statement run on this pool becomes durable: on its own
    /// on a connection of its own; in BEGIN ... COMMIT through a pooler.
    pub fn commit(&self) -> Commit {
        match self.0 {
            Lender::Own(_) => Commit::Statement,
            Lender::Shared(_) => Commit::Explicit,
        }
    }

    /// Connections open and idle, and the most there may be.
    pub fn status(&self) -> (u32, u32, u32) {
        match &self.0 {
            Lender::Shared(_) => (0, 0, 0), // counted with the shared pool
            Lender::Own(pool) => {
                let s = pool.status();
                (s.size as u32, s.available as u32, s.max_size as u32)
            }
        }
    }

    /// Closes the idle connections and refuses new work ([`sqlx::Error::PoolClosed`]).
    pub fn close(&self) {
        if let Lender::Own(pool) = &self.0 {
            pool.close();
        }
    }
}

/// The error a caller of [`HotPool::run`] sees when no connection could be
/// lent: the same as sqlx's pool gives, so callers classify both alike.
fn lend_error(e: PoolError<sqlx::Error>) -> sqlx::Error {
    match e {
        PoolError::Backend(e) => e,
        PoolError::Timeout(_) => sqlx::Error::PoolTimedOut,
        PoolError::Closed => sqlx::Error::PoolClosed,
        PoolError::NoRuntimeSpecified | PoolError::PostCreateHook(_) => {
            sqlx::Error::Configuration(e.to_string().into())
        }
    }
}
