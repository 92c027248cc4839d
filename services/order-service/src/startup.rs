//! Building and running the order-service: connect to PostgreSQL, SQS and (for
//! the API) Redis, apply migrations, assemble the HTTP router and the
//! background loops, then serve until shutdown. A status-consumer process
//! builds only what it uses: no signing keys, no Redis, no live streams. Tests
//! build the same [`Application`] on port 0.

use std::{net::SocketAddr, sync::Arc};

use anyhow::Context;
use messaging::{Consumer, Publisher};
use outbox::Relay;
use redis::aio::ConnectionManagerConfig;
use settings::ExposeSecret;
use shutdown::{Background, CancellationToken};
use tokio::{net::TcpListener, sync::Semaphore};
use web::Accepting;

use crate::{
    auth::{KeySet, Revocations, limits::KeyedLimiter},
    config::{ApiSettings, Settings},
    http::{self, AppState, Auth, Intake, Live, Operations},
    idempotency::Idempotency,
    janitor::Janitor,
    live::LiveHub,
    metrics::{self, Gauges},
    status::StatusHandler,
    storage::{MIGRATOR, orders},
};

/// A built, not yet running, order-service.
pub struct Application {
    listener: TcpListener,
    router: axum::Router,
    status_consumer: Arc<Consumer<StatusHandler>>,
    janitor: Arc<Janitor>,
    gauges: Arc<Gauges>,
    /// The API's parts; `None` in a status-consumer process.
    api: Option<Api>,
    status_consumer_enabled: bool,
    accepting: Accepting,
    serve: web::serve::ServeSettings,
    shutdown_timeout: std::time::Duration,
}

/// What only an API process runs.
struct Api {
    relay: Arc<Relay>,
    /// Run the relay loop (tests may drive the relay step by step instead).
    relay_enabled: bool,
    live: LiveHub,
    /// The pool the live hub LISTENs on (a direct connection).
    listen_pool: sqlx::PgPool,
    /// Disabled clients, refreshed in the background.
    revocations: Revocations,
    revocation_refresh: std::time::Duration,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        metrics::declare();
        let pool = settings.database.pool().context("DATABASE_URL: invalid connection string")?;
        // LISTEN and the migrator's advisory lock need a session: never through
        // a transaction-pooling proxy (`DATABASE_POOLER`).
        let direct = settings.database.session_pool(&pool).context("DATABASE_URL: invalid connection string")?;
        // Reads, intake and status events: the per-request and per-message paths.
        let hot = settings.database.hot_pool(&pool).context("DATABASE_URL: invalid connection string")?;
        if settings.database.migrate_on_start {
            MIGRATOR.run(&direct).await.context("failed to apply database migrations")?;
        }
        let sqs = messaging::connect(&settings.sqs).await;
        if settings.sqs_create_queues {
            let queues = [settings.orders_queue.as_str(), settings.status_consumer.queue.as_str()];
            messaging::ensure_fifo_queues(&sqs, &queues, settings.sqs_max_receive_count).await;
        }
        let status_consumer =
            Arc::new(Consumer::new(sqs.clone(), settings.status_consumer.clone(), StatusHandler { db: hot.clone() }));
        let publisher = Publisher::new(sqs);
        let queues = vec![settings.orders_queue.clone(), settings.status_consumer.queue.clone()];
        let accepting = Accepting::default();
        let mut ops = Operations {
            db: pool.clone(),
            schema: database::SchemaCheck::new(pool.clone(), &MIGRATOR),
            publisher: publisher.clone(),
            queues: queues.clone().into(),
            redis: None,
            accepting: accepting.clone(),
        };

        let (router, api) = match &settings.api {
            Some(api_settings) => {
                let relay = Arc::new(Relay::new(hot.clone(), publisher.clone(), api_settings.relay.clone()));
                let idempotency = connect_redis(api_settings);
                ops.redis = Some(idempotency.clone());
                // Refused tokens from the first request on: read the set before serving.
                let revocations = Revocations::default();
                if let Err(e) = revocations.refresh_once(&pool).await {
                    tracing::warn!(error = %e, "cannot read the disabled clients yet; the background refresh retries");
                }
                let live = LiveHub::new(api_settings.sse_max_streams, api_settings.sse_max_streams_per_customer);
                let state = AppState {
                    db: pool.clone(),
                    hot: hot.clone(),
                    auth: Arc::new(Auth {
                        keys: KeySet::from_pem_bundle(
                            api_settings.jwt.keys_pem.expose_secret(),
                            &api_settings.jwt.issuer,
                            &api_settings.jwt.audience,
                        )
                        .context("JWT_PRIVATE_KEY: cannot load the signing keys")?,
                        token_ttl: api_settings.jwt.ttl,
                        hash_limiter: Arc::new(Semaphore::new(api_settings.hash_concurrency)),
                        hash_wait: api_settings.hash_wait,
                        client_limit: KeyedLimiter::per_minute(api_settings.rate_per_client),
                        address_limit: KeyedLimiter::per_minute(api_settings.rate_per_address),
                        secret_key: api_settings.client_secret_key.clone(),
                        revocations: revocations.clone(),
                    }),
                    intake: Arc::new(Intake {
                        idempotency,
                        idempotency_ttl: api_settings.idempotency_ttl,
                        duplicate_window: api_settings.duplicate_window,
                        writer: orders::intake_writer(
                            hot.clone(),
                            api_settings.intake_writers,
                            api_settings.intake_max_batch,
                        ),
                        outbox: relay.waker(),
                        orders_queue: settings.orders_queue.clone(),
                    }),
                    live: Live {
                        hub: live.clone(),
                        keepalive: api_settings.sse_keepalive,
                        recheck: api_settings.sse_recheck,
                    },
                    ops: ops.clone(),
                };
                let api = Api {
                    relay,
                    relay_enabled: api_settings.relay_enabled,
                    live,
                    listen_pool: direct.clone(),
                    revocations,
                    revocation_refresh: api_settings.revocation_refresh,
                };
                (http::router(state, settings.request_timeout), Some(api))
            }
            None => (http::operations_router(ops.clone(), settings.request_timeout), None),
        };
        let listener = TcpListener::bind(settings.http_addr)
            .await
            .with_context(|| format!("HTTP_ADDR: cannot listen on {}", settings.http_addr))?;
        Ok(Self {
            listener,
            router,
            status_consumer,
            janitor: Arc::new(Janitor { pool: pool.clone(), inbox_retention: settings.inbox_retention }),
            gauges: Arc::new(Gauges { pool, hot, publisher, queues, redis: ops.redis }),
            api,
            status_consumer_enabled: settings.status_consumer_enabled,
            accepting,
            serve: settings.serve.clone(),
            shutdown_timeout: settings.shutdown_timeout,
        })
    }

    pub fn port(&self) -> u16 {
        self.local_addr().port()
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("bound listener has an address")
    }

    /// The relay, for tests that drive it step by step (API processes only).
    pub fn relay(&self) -> Arc<Relay> {
        self.api.as_ref().expect("an API process has a relay").relay.clone()
    }

    /// The revocation set, whose refresh step tests drive (API processes only).
    pub fn revocations(&self) -> Revocations {
        self.api.as_ref().expect("an API process has a revocation set").revocations.clone()
    }

    /// The housekeeping step, for tests.
    pub fn janitor(&self) -> Arc<Janitor> {
        self.janitor.clone()
    }

    /// The gauge refresh step, for tests.
    pub fn gauges(&self) -> Arc<Gauges> {
        self.gauges.clone()
    }

    /// The status consumer, for tests that drive it step by step.
    pub fn status_consumer(&self) -> Arc<Consumer<StatusHandler>> {
        self.status_consumer.clone()
    }

    /// Serves until `stop` is cancelled, then: stop accepting, finish in-flight
    /// requests, stop the loops and flush the outbox, all within the shutdown timeout.
    pub async fn run_until_stopped(self, stop: CancellationToken) -> anyhow::Result<()> {
        let mut background = Background::new();
        let janitor = self.janitor.clone();
        background.spawn("janitor", move |token| async move { janitor.run(token).await });
        let gauges = self.gauges.clone();
        background.spawn("gauges", move |token| async move { gauges.run(token).await });
        if self.status_consumer_enabled {
            let consumer = self.status_consumer.clone();
            background.spawn("status-consumer", move |token| consumer.run(token));
        }
        if let Some(api) = self.api {
            // Live streams end when shutdown begins, so they do not hold it open.
            let (closing, stop_watch) = (api.live.closing(), stop.clone());
            tokio::spawn(async move {
                stop_watch.cancelled().await;
                closing.cancel();
            });
            let (live, pool) = (api.live.clone(), api.listen_pool.clone());
            background.spawn("live-updates", move |token| live.listen(pool, token));
            let (revocations, pool, every) =
                (api.revocations.clone(), self.janitor.pool.clone(), api.revocation_refresh);
            background.spawn("revocations", move |token| async move { revocations.run(pool, every, token).await });
            if api.relay_enabled {
                let (relay, drain) = (api.relay.clone(), self.shutdown_timeout / 2);
                background.spawn_last("outbox-relay", move |token| relay.run(token, drain));
            }
        }
        web::serve::run(
            "order-service",
            self.listener,
            self.router,
            &self.serve,
            background,
            self.accepting,
            stop,
            self.shutdown_timeout,
        )
        .await?;
        Ok(())
    }
}

/// The idempotency fast path over a lazily connecting Redis; an unusable
/// `REDIS_URL` leaves PostgreSQL alone to keep requests idempotent.
fn connect_redis(api: &ApiSettings) -> Idempotency {
    let conn = redis::Client::open(api.redis_url.expose_secret())
        .map_err(|e| tracing::warn!(error = %e, "REDIS_URL is not usable; idempotency runs on PostgreSQL alone"))
        .ok()
        .and_then(|client| {
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(api.redis_timeout))
                .set_response_timeout(Some(api.redis_timeout))
                .set_number_of_retries(1);
            client.get_connection_manager_lazy(config).ok()
        });
    Idempotency::new(conn, api.redis_key_prefix.clone(), api.redis_timeout)
}
