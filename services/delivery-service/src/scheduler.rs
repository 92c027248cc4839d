//! The shipment scheduler: moves due shipments on, by the durable timers in
//! their rows (`next_step_at`), never by in-memory sleeps, so a restart resumes
//! exactly where the last process stopped and replicas share the work.

use std::{sync::Arc, time::Duration};

use shutdown::CancellationToken;
use sqlx::PgPool;

use crate::storage::{self, StepPlan};

pub struct Scheduler {
    pool: PgPool,
    plan: StepPlan,
    batch: u32,
    interval: Duration,
    /// Wakes the outbox relay after a step wrote status events.
    relay: outbox::Waker,
}

impl Scheduler {
    pub fn new(pool: PgPool, plan: StepPlan, batch: u32, interval: Duration, relay: outbox::Waker) -> Self {
        Self { pool, plan, batch, interval, relay }
    }

    /// Advances what is due now; returns how many shipments moved.
    pub async fn try_advance_once(&self) -> Result<usize, sqlx::Error> {
        let moved = storage::advance_due(&self.pool, self.batch, &self.plan).await?;
        if moved > 0 {
            self.relay.wake();
        }
        Ok(moved)
    }

    /// Steps until `stop`; a full batch is followed at once by another.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        tracing::info!(interval_ms = self.interval.as_millis() as u64, "shipment scheduler started");
        while !stop.is_cancelled() {
            let pause = match self.try_advance_once().await {
                Ok(n) if n >= self.batch as usize => Duration::ZERO,
                Ok(_) => self.interval,
                Err(e) => {
                    tracing::warn!(error = %e, "scheduler step failed");
                    self.interval.max(Duration::from_secs(1))
                }
            };
            tokio::select! {
                () = stop.cancelled() => break,
                () = tokio::time::sleep(pause) => {}
            }
        }
        tracing::info!("shipment scheduler stopped");
    }
}
