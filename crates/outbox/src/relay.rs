//! The outbox relay: pending rows -> `SendMessageBatch` -> rows deleted.
//!
//! One step ([`Relay::try_publish_once`]) claims a batch with a lease (one short
//! statement sets `claimed_until`; no transaction, lock or pooled connection is
//! held across the call to SQS), publishes it, then deletes what SQS accepted.
//! Entries SQS refused get a per-row back-off; a row refused
//! `max_attempts` times is parked (`parked_at`, counted in
//! `outbox_parked_total`) until an operator re-queues it ([`requeue`]). Rows of
//! a failed call are released for the next attempt. If the process dies after
//! the send but before the delete, the lease runs out and the rows are sent
//! again with the same deduplication id; SQS drops the copy.
//!
//! Per-group order and no concurrent double sends, with any number of relay
//! loops and replicas: a row is claimable only if no older row of its group
//! exists at all (pending, leased, backing off or parked), so at most one row
//! per group is ever leased, and the next one only becomes claimable once its
//! predecessor is deleted, i.e. accepted by SQS. The claim locks candidates
//! `FOR UPDATE SKIP LOCKED` and re-checks the lease on the row it locked, so two
//! claims never take the same row. [`Relay::run`] loops the step: woken at once
//! by [`Waker::wake`] when this process writes a row, polling slowly for rows
//! written elsewhere, pausing while the circuit is open, and draining what it
//! can on shutdown.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use database::HotPool;
use messaging::{MAX_BATCH, OutgoingMessage, PublishError, Publisher};
use sqlx::Connection;
use tokio::sync::{Mutex, Notify};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{
    breaker::{Breaker, Permit},
    metrics,
};

/// Tuning of a relay. Defaults suit production; tests shorten the waits.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Rows per batch, 1..=10 (the SQS batch limit).
    pub batch_size: usize,
    /// How often to look for rows nobody woke us for (written by another replica,
    /// or due for a retry).
    pub poll_interval: Duration,
    /// How long a woken loop waits for more rows before it claims, so a busy
    /// relay sends fuller batches (fewer SQS calls per event); zero sends at
    /// once. A relay whose last batch held a single row is not busy and does
    /// not wait ([`linger_after`]).
    pub linger: Duration,
    /// Consecutive failed calls that open the circuit.
    pub breaker_threshold: u32,
    /// First cool-down of an open circuit; doubles per failed probe up to `breaker_max_cooldown`.
    pub breaker_cooldown: Duration,
    pub breaker_max_cooldown: Duration,
    /// First per-row back-off after SQS refused an entry; doubles per refusal.
    pub row_backoff: Duration,
    /// Longest per-row back-off after SQS refused an entry.
    pub max_row_backoff: Duration,
    /// Relay loops per process. Each claims its own batch (`SKIP LOCKED`), so
    /// under load several `SendMessageBatch` calls are in flight at once.
    pub concurrency: usize,
    /// How long a claim holds rows: longer than the slowest `SendMessageBatch`
    /// (its retries included). A relay that died mid-send leaves its rows to
    /// others after this long.
    pub lease: Duration,
    /// Refusals by SQS after which a row is parked.
    pub max_attempts: i32,
}

/// The `OUTBOX_*` variables, for the configuration reference.
pub const SETTINGS: &[settings::Doc] = &[
    settings::Doc::development(
        "OUTBOX_RELAY_ENABLED",
        "run the outbox relay in this process (the intake-only benchmark turns it off; some process must run it)",
    ),
    settings::Doc::tuning("OUTBOX_POLL_INTERVAL", "how often the relay looks for rows it was not woken for"),
    settings::Doc::tuning(
        "OUTBOX_LINGER",
        "how long a woken relay waits for more rows, so busy relays send fuller batches (a relay whose last batch held one row sends at once)",
    ),
    settings::Doc::tuning(
        "OUTBOX_BREAKER_COOLDOWN",
        "first pause after SQS fails (doubles per failed probe, up to 30 s)",
    ),
    settings::Doc::tuning("OUTBOX_RELAY_CONCURRENCY", "relay loops per process (each claims its own batch)"),
    settings::Doc::tuning(
        "OUTBOX_LEASE",
        "how long a relay's claim holds rows while it sends them (longer than the slowest `SendMessageBatch`); a crashed relay's rows are sent by another after it",
    ),
    settings::Doc::tuning("OUTBOX_MAX_ATTEMPTS", "refusals by SQS after which a row is parked (docs/RUNBOOK.md)"),
];

impl RelayConfig {
    /// Reads `OUTBOX_POLL_INTERVAL`, `OUTBOX_LINGER`, `OUTBOX_BREAKER_COOLDOWN`,
    /// `OUTBOX_RELAY_CONCURRENCY`, `OUTBOX_LEASE` and `OUTBOX_MAX_ATTEMPTS` over
    /// the defaults.
    pub fn from_env(env: &mut settings::Env) -> Self {
        let d = Self::default();
        let c = Self {
            poll_interval: env.duration("OUTBOX_POLL_INTERVAL", d.poll_interval),
            linger: env.duration("OUTBOX_LINGER", d.linger),
            breaker_cooldown: env.duration("OUTBOX_BREAKER_COOLDOWN", d.breaker_cooldown),
            concurrency: env.get("OUTBOX_RELAY_CONCURRENCY", d.concurrency),
            lease: env.duration("OUTBOX_LEASE", d.lease),
            max_attempts: env.get("OUTBOX_MAX_ATTEMPTS", d.max_attempts),
            ..d
        };
        if c.concurrency == 0 {
            env.invalid("OUTBOX_RELAY_CONCURRENCY", "must be at least 1");
        }
        if c.lease < Duration::from_secs(1) {
            env.invalid("OUTBOX_LEASE", "must be at least 1s");
        }
        if c.max_attempts < 1 {
            env.invalid("OUTBOX_MAX_ATTEMPTS", "must be at least 1");
        }
        c
    }
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            batch_size: MAX_BATCH,
            poll_interval: Duration::from_secs(1),
            linger: Duration::from_millis(10),
            breaker_threshold: 3,
            breaker_cooldown: Duration::from_secs(1),
            breaker_max_cooldown: Duration::from_secs(30),
            row_backoff: Duration::from_millis(200),
            max_row_backoff: Duration::from_secs(60),
            concurrency: 4,
            lease: Duration::from_secs(60),
            max_attempts: 10,
        }
    }
}

/// What one step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing was due.
    Idle,
    /// A batch went out: `sent` rows were accepted and deleted, `refused` rows
    /// were refused by SQS and will be retried after a back-off (or were
    /// parked, see `outbox_parked_total`).
    Published { sent: usize, refused: usize },
    /// SQS is failing; the step did not call it. Try again after the duration.
    CircuitOpen(Duration),
}

impl Outcome {
    /// Rows the step's batch held (sent or refused).
    pub fn rows(&self) -> usize {
        match *self {
            Outcome::Published { sent, refused } => sent + refused,
            Outcome::Idle | Outcome::CircuitOpen(_) => 0,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("outbox database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Publish(#[from] PublishError),
}

/// Wakes a relay at once (after this process commits an outbox row).
#[derive(Debug, Clone, Default)]
pub struct Waker(Arc<Notify>);

impl Waker {
    pub fn wake(&self) {
        self.0.notify_one();
    }
}

/// Publishes the outbox of one database.
pub struct Relay {
    /// The per-message connections (claims and settlements run per batch).
    db: HotPool,
    publisher: Publisher,
    config: RelayConfig,
    breaker: Mutex<Breaker>,
    waker: Waker,
    /// When this relay last looked for expired leases (`None`: never).
    expired_looked: std::sync::Mutex<Option<Instant>>,
}

/// How often, at most, a relay looks for leases that ran out.
const EXPIRED_LOOK_EVERY: Duration = Duration::from_secs(1);

struct Row {
    id: i64,
    event_id: Uuid,
    destination: String,
    group_id: String,
    event_type: String,
    body: String,
    traceparent: Option<String>,
    tracestate: Option<String>,
    created_at: DateTime<Utc>,
}

impl Relay {
    pub fn new(db: HotPool, publisher: Publisher, config: RelayConfig) -> Self {
        let breaker = Breaker::new(config.breaker_threshold, config.breaker_cooldown, config.breaker_max_cooldown);
        Self {
            db,
            publisher,
            config,
            breaker: Mutex::new(breaker),
            waker: Waker::default(),
            expired_looked: std::sync::Mutex::new(None),
        }
    }

    /// A handle that wakes this relay.
    pub fn waker(&self) -> Waker {
        self.waker.clone()
    }

    /// Claims, publishes and settles one batch.
    #[tracing::instrument(name = "outbox.relay", level = "debug", skip(self), fields(sent, refused))]
    pub async fn try_publish_once(&self) -> Result<Outcome, RelayError> {
        let limit = match self.breaker.lock().await.permit() {
            Permit::Wait(d) => return Ok(Outcome::CircuitOpen(d)),
            Permit::Probe => 1,
            Permit::Call => self.config.batch_size.clamp(1, MAX_BATCH),
        };
        let rows = self.claim(limit).await?;
        if rows.is_empty() {
            return Ok(Outcome::Idle);
        }

        // Group by destination queue; a batch call goes to one queue.
        let mut by_queue: HashMap<&str, Vec<OutgoingMessage>> = HashMap::new();
        let mut refused: Vec<(i64, String)> = Vec::new();
        // One producer span per message, a child of the transaction that wrote
        // the row; its context travels in the message attributes.
        let mut spans = HashMap::new();
        for row in &rows {
            let span = tracing::info_span!(
                "message.send",
                otel.name = format!("send {}", row.destination),
                otel.kind = "producer",
                messaging.system = "aws_sqs",
                messaging.destination.name = %row.destination,
                messaging.operation.type = "send",
                messaging.message.id = tracing::field::Empty,
                messaging.message.conversation_id = %row.group_id,
                event_id = %row.event_id,
                event_type = %row.event_type,
            );
            telemetry::propagation::set_parent(&span, row.traceparent.as_deref(), row.tracestate.as_deref());
            let cx = telemetry::propagation::context_of(&span);
            by_queue.entry(row.destination.as_str()).or_default().push(OutgoingMessage {
                entry_id: row.id.to_string(),
                body: row.body.clone(),
                group_id: row.group_id.clone(),
                dedup_id: row.event_id.to_string(),
                event_type: row.event_type.clone(),
                traceparent: cx.traceparent.or_else(|| row.traceparent.clone()),
                tracestate: cx.tracestate.or_else(|| row.tracestate.clone()),
            });
            spans.insert(row.id, span);
        }

        let mut sent: Vec<i64> = Vec::new();
        let mut unsent: Vec<i64> = Vec::new();
        let mut failure = None;
        for (queue, messages) in by_queue {
            let result = self.publisher.send_batch(queue, &messages).await;
            match result {
                Ok(outcome) => {
                    for (id, message_id) in &outcome.sent {
                        if let Some(span) = id.parse::<i64>().ok().and_then(|id| spans.get(&id)) {
                            span.record("messaging.message.id", message_id.as_str());
                        }
                    }
                    sent.extend(outcome.sent.iter().filter_map(|(id, _)| id.parse::<i64>().ok()));
                    refused.extend(outcome.failed.into_iter().filter_map(|(id, why)| Some((id.parse().ok()?, why))));
                }
                Err(e) => {
                    // Nothing was sent to this queue: release these rows (no
                    // attempt counted: SQS is away, nothing is wrong with them).
                    self.breaker.lock().await.on_failure();
                    metrics::PUBLISH_FAILURES.as_counter().increment(messages.len() as u64);
                    unsent.extend(messages.iter().filter_map(|m| m.entry_id.parse::<i64>().ok()));
                    failure = Some(e);
                }
            }
        }
        if !sent.is_empty() {
            self.breaker.lock().await.on_success();
        }
        // Crash tests: SQS has the messages, the rows are not deleted yet.
        fail::fail_point!("relay-after-send", |_| std::process::abort());

        let parked = self.settle(&sent, &unsent, &refused).await?;
        if let Some(e) = failure.filter(|_| sent.is_empty() && refused.is_empty()) {
            return Err(e.into());
        } else if !unsent.is_empty() {
            tracing::warn!("batch to one queue failed; other queues' rows settled");
        }

        let now = Utc::now();
        for row in rows.iter().filter(|r| sent.contains(&r.id)) {
            let age = (now - row.created_at).to_std().unwrap_or_default();
            metrics::PUBLISH_DELAY.as_histogram().record(age.as_secs_f64());
            tracing::debug!(event_id = %row.event_id, order_id = %row.group_id, "event published");
        }
        metrics::PUBLISHED.as_counter().increment(sent.len() as u64);
        metrics::REFUSED.as_counter().increment(refused.len() as u64);
        metrics::PARKED.as_counter().increment(parked);
        tracing::Span::current().record("sent", sent.len()).record("refused", refused.len());
        Ok(Outcome::Published { sent: sent.len(), refused: refused.len() })
    }

    /// Settles a sent batch in one transaction: deletes the sent rows,
    /// releases the unsent ones (SQS was away: no attempt counted), and counts
    /// an attempt on each refused row, parking it after `max_attempts`; only
    /// the statements with rows to touch run (usually just the delete).
    /// Returns how many were parked.
    async fn settle(&self, sent: &[i64], unsent: &[i64], refused: &[(i64, String)]) -> Result<u64, sqlx::Error> {
        self.db
            .run(async |conn| {
                let mut tx = conn.begin().await?;
                let mut parked = 0;
                if !sent.is_empty() {
                    sqlx::query!("DELETE FROM outbox WHERE id = ANY($1)", sent).execute(&mut *tx).await?;
                }
                if !unsent.is_empty() {
                    sqlx::query!("UPDATE outbox SET claimed_until = NULL WHERE id = ANY($1)", unsent).execute(&mut *tx).await?;
                }
                for (id, why) in refused {
                    let now_parked = sqlx::query_scalar!(
                        r#"UPDATE outbox SET attempts = attempts + 1, last_error = $2, claimed_until = NULL,
                           next_attempt_at = now() + least(make_interval(secs => $3 * power(2, least(attempts, 20))), make_interval(secs => $4)),
                           parked_at = CASE WHEN attempts + 1 >= $5 THEN now() END
                         WHERE id = $1
                         RETURNING parked_at IS NOT NULL AS "parked!""#,
                        id,
                        why,
                        self.config.row_backoff.as_secs_f64(),
                        self.config.max_row_backoff.as_secs_f64(),
                        self.config.max_attempts,
                    )
                    .fetch_optional(&mut *tx)
                    .await?
                    .unwrap_or(false);
                    if now_parked {
                        parked += 1;
                        tracing::error!(outbox_id = id, reason = %why, max_attempts = self.config.max_attempts,
                            "SQS refused an outbox entry too often; parked (list: `outbox parked`, retry: `outbox requeue`)");
                    } else {
                        tracing::warn!(outbox_id = id, reason = %why, "SQS refused an outbox entry; will retry");
                    }
                }
                tx.commit().await?;
                Ok(parked)
            })
            .await
    }

    /// Leases up to `limit` rows: each the oldest row of its group, due, not
    /// parked, not leased. One statement, so nothing is held after it returns;
    /// it walks the `outbox_ready` index in id order and stops after `limit`
    /// rows, so its cost does not grow with the backlog. Rows whose lease ran
    /// out (their relay died mid-send) are looked for when the ready rows do
    /// not fill the batch, at most once a second: under a saturating load they
    /// wait for the first lull, holding back only their own group.
    async fn claim(&self, limit: usize) -> Result<Vec<Row>, sqlx::Error> {
        let lease = self.config.lease.as_secs_f64();
        let ready = sqlx::query_as!(
            Row,
            "UPDATE outbox SET claimed_until = now() + make_interval(secs => $2)
             WHERE id IN (
               SELECT id FROM outbox o
               WHERE parked_at IS NULL AND claimed_until IS NULL
                 AND next_attempt_at <= now()
                 AND NOT EXISTS (SELECT 1 FROM outbox e WHERE e.group_id = o.group_id AND e.id < o.id)
               ORDER BY id
               LIMIT $1
               FOR UPDATE OF o SKIP LOCKED)
             RETURNING id, event_id, destination, group_id, event_type, body, traceparent, tracestate, created_at",
            limit as i64,
            lease,
        );
        let mut rows = self.db.run(async |conn| ready.fetch_all(conn).await).await?;
        if rows.len() < limit && self.time_to_look_for_expired_leases() {
            let expired = sqlx::query_as!(
                Row,
                "UPDATE outbox SET claimed_until = now() + make_interval(secs => $2)
                 WHERE id IN (
                   SELECT id FROM outbox o
                   WHERE claimed_until < now() AND parked_at IS NULL
                     AND next_attempt_at <= now()
                     AND NOT EXISTS (SELECT 1 FROM outbox e WHERE e.group_id = o.group_id AND e.id < o.id)
                   ORDER BY id
                   LIMIT $1
                   FOR UPDATE OF o SKIP LOCKED)
                 RETURNING id, event_id, destination, group_id, event_type, body, traceparent, tracestate, created_at",
                (limit - rows.len()) as i64,
                lease,
            );
            rows.extend(self.db.run(async |conn| expired.fetch_all(conn).await).await?);
        }
        rows.sort_by_key(|r| r.id);
        Ok(rows)
    }

    fn time_to_look_for_expired_leases(&self) -> bool {
        let mut looked = self.expired_looked.lock().expect("expired_looked lock");
        let due = looked.is_none_or(|at| at.elapsed() >= EXPIRED_LOOK_EVERY);
        if due {
            *looked = Some(Instant::now());
        }
        due
    }

    /// Runs `concurrency` loops until `cancel`, then drains for at most `drain_for`.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken, drain_for: Duration) {
        tracing::info!(loops = self.config.concurrency, "outbox relay started");
        let loops: Vec<_> =
            (0..self.config.concurrency.max(1)).map(|_| tokio::spawn(self.clone().run_loop(cancel.clone()))).collect();
        for l in loops {
            let _ = l.await;
        }
        let drained = shutdown_drain(&self, drain_for).await;
        tracing::info!(drained, "outbox relay stopped");
    }

    async fn run_loop(self: Arc<Self>, cancel: CancellationToken) {
        let mut backoff = shutdown::retry::Backoff::default();
        // Rows in this loop's last batch: whether lingering can fill the next one.
        let mut last_batch = 0;
        loop {
            let step = self.try_publish_once().await;
            let pause = match &step {
                Ok(outcome) => {
                    // Any step that did not fail ends a run of errors.
                    backoff.reset();
                    last_batch = outcome.rows();
                    let (wake, pause) = after_step(outcome, self.config.batch_size, self.config.poll_interval);
                    if wake {
                        self.waker.wake();
                    }
                    pause
                }
                Err(e) => {
                    let pause = backoff.next_delay();
                    tracing::warn!(error = %e, retry_in_ms = pause.as_millis() as u64, "outbox relay step failed");
                    pause
                }
            };
            if pause.is_zero() {
                if cancel.is_cancelled() {
                    break;
                }
                continue;
            }
            tokio::select! {
                () = cancel.cancelled() => break,
                () = self.waker.0.notified() => {
                    // Woken by a commit: when busy, let the rows of the next few commits join the batch.
                    let linger = linger_after(last_batch, self.config.linger);
                    if !linger.is_zero() {
                        tokio::select! {
                            () = cancel.cancelled() => break,
                            () = tokio::time::sleep(linger) => {}
                        }
                    }
                }
                () = tokio::time::sleep(pause) => {}
            }
        }
    }
}

/// What a loop does after a step that did not fail: whether it wakes a loop
/// (another, or itself) and how long it then waits for a wake-up.
pub fn after_step(outcome: &Outcome, batch_size: usize, poll_interval: Duration) -> (bool, Duration) {
    match *outcome {
        // A full batch: more is probably waiting; go on, and let another loop help.
        Outcome::Published { .. } if outcome.rows() >= batch_size => (true, Duration::ZERO),
        // The rows of the same orders queued behind the ones just sent (a claim
        // takes only the oldest row of each order) can go now: look again.
        Outcome::Published { sent, .. } => (sent > 0, poll_interval),
        Outcome::Idle => (false, poll_interval),
        Outcome::CircuitOpen(wait) => (false, wait),
    }
}

/// How long a loop woken by a commit waits before it claims, given how many
/// rows its last batch held: `linger` while rows come faster than one per
/// batch (waiting fills the next batch, so fewer SQS calls carry the same
/// events), nothing when the last batch held one row or none (a quiet relay
/// would only add `linger` to each event's latency).
pub fn linger_after(last_batch: usize, linger: Duration) -> Duration {
    if last_batch >= 2 { linger } else { Duration::ZERO }
}

/// Publishes what is pending until the outbox is empty, SQS fails, or time is up.
async fn shutdown_drain(relay: &Relay, limit: Duration) -> bool {
    let drain = async {
        loop {
            match relay.try_publish_once().await {
                Ok(Outcome::Published { .. }) => continue,
                Ok(Outcome::Idle) => return true,
                Ok(Outcome::CircuitOpen(_)) | Err(_) => return false,
            }
        }
    };
    tokio::time::timeout(limit, drain).await.unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sent_batch_wakes_a_loop_for_the_rows_queued_behind_it() {
        let poll = Duration::from_secs(1);
        let after = |outcome| after_step(&outcome, 10, poll);
        assert_eq!(after(Outcome::Published { sent: 10, refused: 0 }), (true, Duration::ZERO), "full: go on");
        assert_eq!(after(Outcome::Published { sent: 3, refused: 7 }), (true, Duration::ZERO));
        // A later event of an order just sent (shipped, then delivered) was
        // skipped by the claim; it goes at once, not a poll interval later.
        assert_eq!(after(Outcome::Published { sent: 1, refused: 0 }), (true, poll));
        assert_eq!(after(Outcome::Published { sent: 0, refused: 2 }), (false, poll), "refused rows back off");
        assert_eq!(after(Outcome::Idle), (false, poll));
        let wait = Duration::from_millis(700);
        assert_eq!(after(Outcome::CircuitOpen(wait)), (false, wait));
    }

    #[test]
    fn only_a_busy_relay_lingers() {
        let linger = Duration::from_millis(10);
        assert_eq!(linger_after(0, linger), Duration::ZERO, "idle: the woken row goes at once");
        assert_eq!(linger_after(1, linger), Duration::ZERO, "one row per batch: nothing to gather");
        assert_eq!(linger_after(2, linger), linger);
        assert_eq!(linger_after(10, linger), linger);
        assert_eq!(linger_after(10, Duration::ZERO), Duration::ZERO, "OUTBOX_LINGER=0 never waits");
    }

    #[test]
    fn lease_and_parking_come_from_the_environment_and_are_checked() {
        let mut env = settings::Env::from_pairs([("OUTBOX_LEASE", "90s"), ("OUTBOX_MAX_ATTEMPTS", "3")]);
        let c = RelayConfig::from_env(&mut env);
        assert!(env.finish().is_ok());
        assert_eq!((c.lease, c.max_attempts), (Duration::from_secs(90), 3));

        let mut env = settings::Env::from_pairs([("OUTBOX_LEASE", "0s"), ("OUTBOX_MAX_ATTEMPTS", "0")]);
        RelayConfig::from_env(&mut env);
        let err = env.finish().unwrap_err().to_string();
        assert!(err.contains("OUTBOX_LEASE") && err.contains("OUTBOX_MAX_ATTEMPTS"), "{err}");

        let d = RelayConfig::default();
        assert_eq!((d.lease, d.max_attempts), (Duration::from_secs(60), 10));
    }
}
