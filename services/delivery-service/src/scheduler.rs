//! The shipment scheduler: moves due shipments on, by the durable timers in
//! their rows (`next_step_at`), never by in-memory sleeps, so a restart resumes
//! exactly where the last process stopped and replicas share the work.
//!
//! Between steps it sleeps until the earliest timer falls due (at most
//! `interval`, which stays the bound for timers set by other replicas), and a
//! shipment created here that is due sooner than that wakes it at once
//! ([`DueWaker`]), so a zero shipping delay costs no poll interval.

use std::{
    sync::{
        Arc,
        atomic::{AtomicI64, Ordering},
    },
    time::Duration,
};

use chrono::{DateTime, Utc};
use database::HotPool;
use shutdown::CancellationToken;
use tokio::sync::Notify;

use crate::storage::{self, StepPlan};

/// Tells the scheduler about a timer it may not be waiting for.
#[derive(Clone, Default)]
pub struct DueWaker {
    notify: Arc<Notify>,
    /// When the scheduler will look next (Unix milliseconds).
    next_look_ms: Arc<AtomicI64>,
}

impl DueWaker {
    /// A shipment step falls due at `at`: wake the scheduler if it would look later.
    pub fn due_at(&self, at: DateTime<Utc>) {
        if at.timestamp_millis() < self.next_look_ms.load(Ordering::Relaxed) {
            self.notify.notify_one();
        }
    }
}

/// How long to wait after a step that moved `moved` of at most `batch`
/// shipments, given the earliest pending timer: none after a full batch (more
/// are due), else until that timer, bounded by `interval`.
pub fn pause_after(
    moved: usize,
    batch: u32,
    next_due: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    interval: Duration,
) -> Duration {
    if moved >= batch as usize {
        return Duration::ZERO;
    }
    match next_due {
        Some(at) => (at - now).to_std().unwrap_or(Duration::ZERO).min(interval),
        None => interval,
    }
}

pub struct Scheduler {
    db: HotPool,
    plan: StepPlan,
    batch: u32,
    interval: Duration,
    /// Wakes the outbox relay after a step wrote status events.
    relay: outbox::Waker,
    due: DueWaker,
}

impl Scheduler {
    pub fn new(db: HotPool, plan: StepPlan, batch: u32, interval: Duration, relay: outbox::Waker) -> Self {
        Self { db, plan, batch, interval, relay, due: DueWaker::default() }
    }

    /// For whoever sets timers in this process (the order-created handler).
    pub fn due_waker(&self) -> DueWaker {
        self.due.clone()
    }

    /// Advances what is due now; returns how many shipments moved.
    pub async fn try_advance_once(&self) -> Result<usize, sqlx::Error> {
        let moved = storage::advance_due(&self.db, self.batch, &self.plan).await?;
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
                // A full batch: more are due; no need to ask when.
                Ok(moved) if moved >= self.batch as usize => Duration::ZERO,
                Ok(moved) => {
                    // Unknown (the query failed): fall back to the interval.
                    let next_due = storage::next_due(&self.db).await.unwrap_or(Some(Utc::now() + self.interval));
                    pause_after(moved, self.batch, next_due, Utc::now(), self.interval)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "scheduler step failed");
                    self.interval.max(Duration::from_secs(1))
                }
            };
            let look_at = Utc::now() + pause;
            self.due.next_look_ms.store(look_at.timestamp_millis(), Ordering::Relaxed);
            tokio::select! {
                () = stop.cancelled() => break,
                () = tokio::time::sleep(pause) => {}
                () = self.due.notify.notified() => {}
            }
        }
        tracing::info!("shipment scheduler stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_sleeps_until_the_earliest_timer_but_never_past_the_interval() {
        let now = Utc::now();
        let interval = Duration::from_millis(250);
        let soon = now + chrono::Duration::milliseconds(40);
        let late = now + chrono::Duration::seconds(30);
        let past = now - chrono::Duration::seconds(1);
        assert_eq!(pause_after(3, 50, Some(soon), now, interval), Duration::from_millis(40));
        assert_eq!(pause_after(3, 50, Some(late), now, interval), interval);
        assert_eq!(pause_after(0, 50, Some(past), now, interval), Duration::ZERO, "overdue: at once");
        assert_eq!(pause_after(0, 50, None, now, interval), interval, "nothing pending: the interval");
        assert_eq!(pause_after(50, 50, Some(late), now, interval), Duration::ZERO, "a full batch: more are due");
    }

    #[tokio::test]
    async fn a_timer_due_before_the_next_look_wakes_the_scheduler_and_a_later_one_does_not() {
        let waker = DueWaker::default();
        let now = Utc::now();
        waker.next_look_ms.store((now + chrono::Duration::milliseconds(250)).timestamp_millis(), Ordering::Relaxed);
        waker.due_at(now + chrono::Duration::seconds(5));
        let woken = tokio::time::timeout(Duration::from_millis(20), waker.notify.notified()).await;
        assert!(woken.is_err(), "a timer after the next look needs no wake");
        waker.due_at(now);
        tokio::time::timeout(Duration::from_secs(1), waker.notify.notified()).await.expect("woken for a due timer");
    }
}
