//! Building and running the delivery-service: database and migrations, SQS
//! (optionally creating both queues), then three loops — the orders-queue
//! consumer, the shipment scheduler and the outbox relay — beside a small HTTP
//! server. Tests build the same [`Application`] and may drive each loop's
//! single step instead of running the loops.

use std::{net::SocketAddr, sync::Arc};

use anyhow::Context;
use messaging::{Consumer, Publisher};
use outbox::Relay;
use shutdown::{Background, CancellationToken};
use tokio::net::TcpListener;
use web::Accepting;

use crate::{config::Settings, consume::OrderCreatedHandler, http, scheduler::Scheduler, storage::StepPlan};

/// Migrations of the delivery database (embedded by the `database` crate).
pub use database::migrations::DELIVERY as MIGRATOR;

pub struct Application {
    listener: TcpListener,
    router: axum::Router,
    pub consumer: Arc<Consumer<OrderCreatedHandler>>,
    pub scheduler: Arc<Scheduler>,
    pub relay: Arc<Relay>,
    settings: Settings,
    accepting: Accepting,
    pool: sqlx::PgPool,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let pool = settings.database.pool().context("DATABASE_URL: invalid connection string")?;
        if settings.database.migrate_on_start {
            MIGRATOR.run(&pool).await.context("failed to apply database migrations")?;
        }
        let sqs = messaging::connect(&settings.sqs).await;
        if settings.sqs_create_queues {
            for queue in [&settings.orders_queue, &settings.status_queue] {
                match messaging::ensure_fifo_queue(&sqs, queue, settings.sqs_max_receive_count).await {
                    Ok(urls) => tracing::info!(queue = %urls.url, dlq = %urls.dlq_url, "queue ready"),
                    Err(e) => tracing::warn!(error = %e, "could not create queues now; will retry on use"),
                }
            }
        }
        let publisher = Publisher::new(sqs.clone());
        let relay = Arc::new(Relay::new(pool.clone(), publisher.clone(), settings.relay.clone()));
        let consumer = Arc::new(Consumer::new(
            sqs,
            settings.consumer.clone(),
            OrderCreatedHandler { pool: pool.clone(), ship_after: settings.ship_after, jitter: settings.step_jitter },
        ));
        let scheduler = Arc::new(Scheduler::new(
            pool.clone(),
            StepPlan {
                deliver_after: settings.deliver_after,
                jitter: settings.step_jitter,
                status_queue: settings.status_queue.clone(),
            },
            settings.scheduler_batch,
            settings.scheduler_interval,
            relay.waker(),
        ));
        let accepting = Accepting::default();
        let state_pool = pool.clone();
        let state = http::AppState {
            db: pool,
            publisher,
            queues: [settings.orders_queue.clone(), settings.status_queue.clone()],
            accepting: accepting.clone(),
            metrics: telemetry::Metrics::global(),
        };
        let router = http::router(state, settings.request_timeout);
        let listener = TcpListener::bind(settings.http_addr)
            .await
            .with_context(|| format!("HTTP_ADDR: cannot listen on {}", settings.http_addr))?;
        Ok(Self { listener, router, consumer, scheduler, relay, settings, accepting, pool: state_pool })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("bound listener has an address")
    }

    /// Serves and runs the enabled loops until `stop`; then stops receiving
    /// (releasing unstarted messages), finishes the scheduler step in hand,
    /// and lets the relay flush, within the shutdown timeout.
    pub async fn run_until_stopped(self, stop: CancellationToken) -> anyhow::Result<()> {
        let mut background = Background::new();
        if self.settings.consumer_enabled {
            let consumer = self.consumer.clone();
            background.spawn("consumer", move |token| consumer.run(token));
        }
        if self.settings.scheduler_enabled {
            let scheduler = self.scheduler.clone();
            background.spawn("scheduler", move |token| scheduler.run(token));
        }
        // Housekeeping: forget applied event ids past their retention.
        let (pool, retention) = (self.pool.clone(), self.settings.inbox_retention);
        background.spawn("janitor", move |token| {
            shutdown::every("janitor", std::time::Duration::from_secs(60), token, move || {
                let pool = pool.clone();
                async move { outbox::inbox::prune(&pool, retention, 1000).await.map(|n| n > 0) }
            })
        });
        if self.settings.relay_enabled {
            let (relay, drain) = (self.relay.clone(), self.settings.shutdown_timeout / 2);
            background.spawn_last("outbox-relay", move |token| relay.run(token, drain));
        }
        web::serve::run(
            "delivery-service",
            self.listener,
            self.router,
            background,
            self.accepting,
            stop,
            self.settings.shutdown_timeout,
        )
        .await?;
        Ok(())
    }
}
