//! Building and running the order-service: connect to PostgreSQL, Redis and
//! SQS, apply migrations, assemble the HTTP router and the outbox relay, then
//! serve until shutdown. Tests build the same [`Application`] on port 0.

use std::{
    net::SocketAddr,
    sync::{Arc, atomic::AtomicBool},
    time::Duration,
};

use anyhow::Context;
use messaging::Publisher;
use outbox::Relay;
use redis::aio::ConnectionManagerConfig;
use settings::ExposeSecret;
use sqlx::{PgPool, postgres::PgPoolOptions};
use tokio::{net::TcpListener, sync::Semaphore};
use tokio_util::sync::CancellationToken;

use crate::{
    auth::KeySet,
    config::Settings,
    http::{self, AppState, health::Readiness},
    idempotency::Idempotency,
    storage::MIGRATOR,
};

/// A built, not yet running, order-service.
pub struct Application {
    listener: TcpListener,
    router: axum::Router,
    relay: Arc<Relay>,
    /// Run the relay loop (tests may drive the relay step by step instead).
    relay_enabled: bool,
    ready: Arc<AtomicBool>,
    shutdown_timeout: Duration,
    pool: PgPool,
}

/// A lazily connecting pool: the service starts even while PostgreSQL is
/// briefly unreachable, and `/readyz` says so.
pub fn pool(settings: &Settings) -> PgPool {
    PgPoolOptions::new()
        .max_connections(settings.database_max_connections)
        .acquire_timeout(Duration::from_secs(3))
        .connect_lazy(settings.database_url.expose_secret())
        .expect("DATABASE_URL was validated at start-up")
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let pool = pool(&settings);
        if settings.migrate_on_start {
            MIGRATOR
                .run(&pool)
                .await
                .context("failed to apply database migrations")?;
        }
        let keys = KeySet::from_pem_bundle(
            settings.jwt.keys_pem.expose_secret(),
            &settings.jwt.issuer,
            &settings.jwt.audience,
        )
        .context("JWT_PRIVATE_KEY: cannot load the signing keys")?;

        let redis = redis::Client::open(settings.redis_url.expose_secret())
            .map_err(|e| tracing::warn!(error = %e, "REDIS_URL is not usable; idempotency runs on PostgreSQL alone"))
            .ok()
            .and_then(|client| {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(settings.redis_timeout))
                    .set_response_timeout(Some(settings.redis_timeout))
                    .set_number_of_retries(1);
                client.get_connection_manager_lazy(config).ok()
            });
        let idempotency = Idempotency::new(
            redis,
            settings.redis_key_prefix.clone(),
            settings.redis_timeout,
        );

        let sqs = messaging::connect(&settings.sqs).await;
        if settings.sqs_create_queues {
            match messaging::ensure_fifo_queue(
                &sqs,
                &settings.orders_queue,
                settings.sqs_max_receive_count,
            )
            .await
            {
                Ok(urls) => tracing::info!(queue = %urls.url, dlq = %urls.dlq_url, "queue ready"),
                Err(e) => {
                    tracing::warn!(error = %e, "could not create queues now; the relay will publish once SQS is reachable")
                }
            }
        }
        let publisher = Publisher::new(sqs);
        let relay = Arc::new(Relay::new(
            pool.clone(),
            publisher.clone(),
            settings.relay.clone(),
        ));

        let ready = Arc::new(AtomicBool::new(true));
        let state = AppState {
            db: pool.clone(),
            keys: Arc::new(keys),
            token_ttl: settings.jwt.ttl,
            idempotency,
            idempotency_ttl: settings.idempotency_ttl,
            duplicate_window: settings.duplicate_window,
            outbox: relay.waker(),
            orders_queue: settings.orders_queue.clone(),
            hash_limiter: Arc::new(Semaphore::new(settings.hash_concurrency)),
            readiness: Readiness {
                sqs: publisher,
                queue: settings.orders_queue.clone(),
                timeout: Duration::from_secs(2),
                ready: ready.clone(),
            },
            metrics: telemetry::Metrics::global(),
        };
        let router = http::router(state, settings.request_timeout);
        let listener = TcpListener::bind(settings.http_addr)
            .await
            .with_context(|| format!("HTTP_ADDR: cannot listen on {}", settings.http_addr))?;
        Ok(Self {
            listener,
            router,
            relay,
            relay_enabled: settings.relay_enabled,
            ready,
            shutdown_timeout: settings.shutdown_timeout,
            pool,
        })
    }

    pub fn port(&self) -> u16 {
        self.local_addr().port()
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("bound listener has an address")
    }

    /// The relay, for tests that drive it step by step.
    pub fn relay(&self) -> Arc<Relay> {
        self.relay.clone()
    }

    /// Serves until `stop` is cancelled, then: stop accepting, finish in-flight
    /// requests, flush the outbox, all within the shutdown timeout.
    pub async fn run_until_stopped(self, stop: CancellationToken) -> anyhow::Result<()> {
        let addr = self.local_addr();
        tracing::info!(%addr, "order-service listening");
        let loops = CancellationToken::new();
        let relay_task = self.relay_enabled.then(|| {
            let relay = self.relay.clone();
            let (token, drain) = (loops.clone(), self.shutdown_timeout / 2);
            tokio::spawn(relay.run(token, drain))
        });
        let ready = self.ready.clone();
        let server_stop = stop.clone();
        let server = axum::serve(self.listener, self.router).with_graceful_shutdown(async move {
            server_stop.cancelled().await;
            ready.store(false, std::sync::atomic::Ordering::Relaxed);
        });
        let served = tokio::spawn(async move { server.await });

        stop.cancelled().await;
        let finished = shutdown::drain_deadline(self.shutdown_timeout, async {
            match served.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "HTTP server failed"),
                Err(e) => tracing::error!(error = %e, "HTTP server task panicked"),
            }
            // Requests are done: no new outbox rows. Let the relay flush.
            loops.cancel();
            if let Some(task) = relay_task {
                let _ = task.await;
            }
        })
        .await;
        self.pool.close().await;
        tracing::info!(clean = finished, "order-service stopped");
        Ok(())
    }
}
