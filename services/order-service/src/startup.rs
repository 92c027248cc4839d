//! Building and running the order-service: connect to PostgreSQL, Redis and
//! SQS, apply migrations, assemble the HTTP router and the outbox relay, then
//! serve until shutdown. Tests build the same [`Application`] on port 0.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context;
use messaging::{Consumer, Publisher};
use outbox::Relay;
use redis::aio::ConnectionManagerConfig;
use settings::ExposeSecret;
use shutdown::{Background, CancellationToken};
use tokio::{net::TcpListener, sync::Semaphore};
use web::Accepting;

use crate::{
    auth::KeySet,
    config::Settings,
    http::{self, AppState},
    idempotency::Idempotency,
    live::LiveHub,
    status::StatusHandler,
    storage::MIGRATOR,
};

/// A built, not yet running, order-service.
pub struct Application {
    listener: TcpListener,
    router: axum::Router,
    relay: Arc<Relay>,
    status_consumer: Arc<Consumer<StatusHandler>>,
    live: LiveHub,
    pool: sqlx::PgPool,
    janitor: Arc<crate::janitor::Janitor>,
    /// Run the relay loop (tests may drive the relay step by step instead).
    relay_enabled: bool,
    status_consumer_enabled: bool,
    accepting: Accepting,
    shutdown_timeout: Duration,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let pool = settings.database.pool().context("DATABASE_URL: invalid connection string")?;
        if settings.database.migrate_on_start {
            MIGRATOR.run(&pool).await.context("failed to apply database migrations")?;
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
        let idempotency = Idempotency::new(redis, settings.redis_key_prefix.clone(), settings.redis_timeout);

        let sqs = messaging::connect(&settings.sqs).await;
        if settings.sqs_create_queues {
            for queue in [&settings.orders_queue, &settings.status_consumer.queue] {
                match messaging::ensure_fifo_queue(&sqs, queue, settings.sqs_max_receive_count).await {
                    Ok(urls) => tracing::info!(queue = %urls.url, dlq = %urls.dlq_url, "queue ready"),
                    Err(e) => {
                        tracing::warn!(error = %e, "could not create the queues now; will use them once SQS is reachable")
                    }
                }
            }
        }
        let status_consumer = Arc::new(Consumer::new(
            sqs.clone(),
            settings.status_consumer.clone(),
            StatusHandler { pool: pool.clone() },
        ));
        let publisher = Publisher::new(sqs);
        let relay = Arc::new(Relay::new(pool.clone(), publisher.clone(), settings.relay.clone()));

        let accepting = Accepting::default();
        let live = LiveHub::new(settings.sse_max_streams);
        let state = AppState {
            db: pool.clone(),
            keys: Arc::new(keys),
            token_ttl: settings.jwt.ttl,
            idempotency,
            idempotency_ttl: settings.idempotency_ttl,
            duplicate_window: settings.duplicate_window,
            outbox: relay.waker(),
            orders_queue: settings.orders_queue.clone(),
            status_queue: settings.status_consumer.queue.clone(),
            hash_limiter: Arc::new(Semaphore::new(settings.hash_concurrency)),
            publisher,
            accepting: accepting.clone(),
            metrics: telemetry::Metrics::global(),
            live: live.clone(),
            sse_keepalive: settings.sse_keepalive,
            sse_recheck: settings.sse_recheck,
        };
        let router = if settings.api_enabled {
            http::router(state, settings.request_timeout)
        } else {
            http::operations_router(state, settings.request_timeout)
        };
        let listener = TcpListener::bind(settings.http_addr)
            .await
            .with_context(|| format!("HTTP_ADDR: cannot listen on {}", settings.http_addr))?;
        Ok(Self {
            listener,
            router,
            relay,
            status_consumer,
            live,
            janitor: Arc::new(crate::janitor::Janitor {
                pool: pool.clone(),
                inbox_retention: settings.inbox_retention,
            }),
            pool,
            relay_enabled: settings.relay_enabled && settings.api_enabled,
            status_consumer_enabled: settings.status_consumer_enabled,
            accepting,
            shutdown_timeout: settings.shutdown_timeout,
        })
    }

    pub fn port(&self) -> u16 {
        self.local_addr().port()
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("bound listener has an address")
    }

    /// The relay, for tests that drive it step by step.
    pub fn relay(&self) -> Arc<Relay> {
        self.relay.clone()
    }

    /// The housekeeping step, for tests.
    pub fn janitor(&self) -> Arc<crate::janitor::Janitor> {
        self.janitor.clone()
    }

    /// The status consumer, for tests that drive it step by step.
    pub fn status_consumer(&self) -> Arc<Consumer<StatusHandler>> {
        self.status_consumer.clone()
    }

    /// Serves until `stop` is cancelled, then: stop accepting, finish in-flight
    /// requests, flush the outbox, all within the shutdown timeout.
    pub async fn run_until_stopped(self, stop: CancellationToken) -> anyhow::Result<()> {
        let mut background = Background::new();
        // Live streams end when shutdown begins, so they do not hold it open.
        let (closing, stop_watch) = (self.live.closing(), stop.clone());
        tokio::spawn(async move {
            stop_watch.cancelled().await;
            closing.cancel();
        });
        let (live, pool) = (self.live.clone(), self.pool.clone());
        background.spawn("live-updates", move |token| live.listen(pool, token));
        let janitor = self.janitor.clone();
        background.spawn("janitor", move |token| janitor.run(token));
        if self.status_consumer_enabled {
            let consumer = self.status_consumer.clone();
            background.spawn("status-consumer", move |token| consumer.run(token));
        }
        if self.relay_enabled {
            let (relay, drain) = (self.relay.clone(), self.shutdown_timeout / 2);
            background.spawn_last("outbox-relay", move |token| relay.run(token, drain));
        }
        web::serve::run(
            "order-service",
            self.listener,
            self.router,
            background,
            self.accepting,
            stop,
            self.shutdown_timeout,
        )
        .await?;
        Ok(())
    }
}
