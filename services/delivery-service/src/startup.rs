//! Building and running the delivery-service: database and migrations, SQS
//! (optionally creating both queues), then its loops — the orders-queue
//! consumer, the shipment scheduler, the outbox relay, housekeeping and the
//! gauge refresh — beside a small HTTP server. Tests build the same
//! [`Application`] and may drive each loop's single step instead of running it.

use std::{net::SocketAddr, sync::Arc};

use anyhow::Context;
use messaging::{Consumer, Publisher};
use outbox::Relay;
use shutdown::{Background, CancellationToken};
use tokio::net::TcpListener;
use web::Accepting;

use crate::{
    config::Settings,
    consume::OrderCreatedHandler,
    http,
    janitor::Janitor,
    metrics::{self, Gauges},
    scheduler::Scheduler,
    storage::{MIGRATOR, StepPlan},
};

/// A built, not yet running, delivery-service.
pub struct Application {
    listener: TcpListener,
    router: axum::Router,
    pub consumer: Arc<Consumer<OrderCreatedHandler>>,
    pub scheduler: Arc<Scheduler>,
    pub relay: Arc<Relay>,
    pub janitor: Arc<Janitor>,
    pub gauges: Arc<Gauges>,
    settings: Settings,
    accepting: Accepting,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        metrics::declare();
        let pool = settings.database.pool().context("DATABASE_URL: invalid connection string")?;
        if settings.database.migrate_on_start {
            // The migrator's advisory lock needs a session: never through `DATABASE_POOLER`.
            let direct = settings.database.session_pool(&pool).context("DATABASE_URL: invalid connection string")?;
            MIGRATOR.run(&direct).await.context("failed to apply database migrations")?;
        }
        // Events in, steps on: the per-message paths.
        let hot = settings.database.hot_pool(&pool).context("DATABASE_URL: invalid connection string")?;
        let sqs = messaging::connect(&settings.sqs).await;
        if settings.sqs_create_queues {
            messaging::ensure_fifo_queues(
                &sqs,
                &[&settings.orders_queue, &settings.status_queue],
                settings.sqs_max_receive_count,
            )
            .await;
        }
        let publisher = Publisher::new(sqs.clone());
        let relay = Arc::new(Relay::new(hot.clone(), publisher.clone(), settings.relay.clone()));
        let scheduler = Arc::new(Scheduler::new(
            hot.clone(),
            StepPlan {
                deliver_after: settings.deliver_after,
                jitter: settings.step_jitter,
                status_queue: settings.status_queue.clone(),
                retry_after: settings.scheduler_retry_after,
            },
            settings.scheduler_batch,
            settings.scheduler_interval,
            relay.waker(),
        ));
        let consumer = Arc::new(Consumer::new(
            sqs,
            settings.consumer.clone(),
            OrderCreatedHandler {
                db: hot.clone(),
                ship_after: settings.ship_after,
                jitter: settings.step_jitter,
                due: scheduler.due_waker(),
            },
        ));
        let queues = vec![settings.orders_queue.clone(), settings.status_queue.clone()];
        let accepting = Accepting::default();
        let state = http::AppState {
            db: pool.clone(),
            schema: database::SchemaCheck::new(pool.clone(), &MIGRATOR),
            publisher: publisher.clone(),
            queues: queues.clone().into(),
            accepting: accepting.clone(),
        };
        let router = http::router(state, settings.request_timeout);
        let listener = TcpListener::bind(settings.http_addr)
            .await
            .with_context(|| format!("HTTP_ADDR: cannot listen on {}", settings.http_addr))?;
        Ok(Self {
            listener,
            router,
            consumer,
            scheduler,
            relay,
            janitor: Arc::new(Janitor { pool: pool.clone(), inbox_retention: settings.inbox_retention }),
            gauges: Arc::new(Gauges { pool, hot, publisher, queues }),
            settings,
            accepting,
        })
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
        let janitor = self.janitor.clone();
        background.spawn("janitor", move |token| async move { janitor.run(token).await });
        let gauges = self.gauges.clone();
        background.spawn("gauges", move |token| async move { gauges.run(token).await });
        if self.settings.relay_enabled {
            let (relay, drain) = (self.relay.clone(), self.settings.shutdown_timeout / 2);
            background.spawn_last("outbox-relay", move |token| relay.run(token, drain));
        }
        web::serve::run(
            "delivery-service",
            self.listener,
            self.router,
            &self.settings.serve,
            background,
            self.accepting,
            stop,
            self.settings.shutdown_timeout,
        )
        .await?;
        Ok(())
    }
}
