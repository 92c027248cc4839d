//! The consumer loop every service uses to read a FIFO queue.
//!
//! One step ([`Consumer::poll_once`]) long-polls a batch, hands its messages to
//! the service's [`Handler`] (together, one message per group at a time, so a
//! handler can apply them in one transaction) and settles each by the
//! [`Disposition`] it answered:
//! acknowledged messages are deleted in one batch call after the handler has
//! committed its work; a retry leaves the message for redelivery after a
//! delay; a rejected (poison) message is made visible again at once so it
//! reaches the dead-letter queue through the redrive policy after the
//! configured receive count, instead of being silently dropped.
//!
//! Ordering: messages of one group (one order) are handled one after another in
//! queue order, in successive rounds; the messages of one round belong to
//! different groups and are handled together. If a message of a group is not
//! acknowledged, the later messages of that group in the batch are released
//! untouched, so they can never overtake it. A batch that fails as a whole or
//! panics is retried message by message, so one bad message cannot hold back
//! the others.
//!
//! While a batch is being handled, a heartbeat extends the visibility of the
//! messages not yet settled, so slow work is not redelivered under our feet.
//! On shutdown no new batch is received; messages not yet started are released
//! (visibility 0) for another consumer, and the ones in hand are finished.
//!
//! Outages of a dependency (the database) must not spend the receive count that
//! only poison messages should spend: a handler answers
//! [`Disposition::Unavailable`], and the consumer keeps that message in hand
//! (the heartbeat keeps it invisible, its receive count unchanged), stops
//! receiving on every poller (a consumer-side breaker), and retries the
//! message with back-off until it is handled; then receiving resumes. Only a
//! message that fails for a reason of its own ([`Disposition::Reject`], or a
//! [`Disposition::Retry`] repeated past the redrive count) reaches the DLQ.
//!
//! A handler that panics is caught (each handling runs in its own task): its
//! message and the rest of its group are released at once (visibility 0), the
//! heartbeat stops, and the step fails, so the poller starts again after a
//! back-off. A redelivered message that panics every time ends in the DLQ.

use std::{
    collections::{HashMap, VecDeque},
    future::Future,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use aws_sdk_sqs::{
    Client,
    types::{
        ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry, Message, MessageSystemAttributeName,
    },
};
use futures::future::join_all;
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::metrics;

/// A received message, as a handler sees it.
#[derive(Debug, Clone)]
pub struct Received {
    pub message_id: String,
    pub body: String,
    pub group_id: String,
    /// How many times SQS has delivered it, this time included.
    pub receive_count: u32,
    /// String message attributes (`event_type`, `traceparent`, ...).
    pub attributes: HashMap<String, String>,
    /// The trace context of this message's `process` span: what the handler
    /// stores or sends on, so later work continues the order's trace (empty
    /// when traces are off).
    pub trace: telemetry::propagation::TraceContext,
    receipt_handle: String,
}

/// What to do with a message after handling it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// Handled: delete it.
    Ack,
    /// Handled before (its event id is in the inbox): delete it, counted as a
    /// duplicate.
    Duplicate,
    /// A transient failure: let SQS deliver it again after `after`.
    Retry { after: Duration },
    /// It can never be handled (garbage, unknown type): leave it to the
    /// dead-letter queue via the redrive policy. `label` is the metric's
    /// `reason` (a small fixed set); `reason` the full explanation for the log.
    Reject { label: &'static str, reason: String },
    /// A dependency the handler needs is down (the database refuses
    /// connections): nothing is wrong with the message. The consumer keeps it
    /// in hand, pauses receiving and tries again with back-off; its receive
    /// count is not spent.
    Unavailable { reason: String },
}

impl Disposition {
    /// A rejection, counted in `messages_rejected_total{queue, reason=label}`.
    pub fn reject(label: &'static str, reason: impl Into<String>) -> Self {
        Disposition::Reject { label, reason: reason.into() }
    }

    /// A dependency outage (see [`Disposition::Unavailable`]).
    pub fn unavailable(reason: impl Into<String>) -> Self {
        Disposition::Unavailable { reason: reason.into() }
    }

    /// Whether the message is done with and can be deleted.
    fn settled(&self) -> bool {
        matches!(self, Disposition::Ack | Disposition::Duplicate)
    }

    /// The `outcome` label of `messages_processed_total`.
    fn outcome(&self) -> &'static str {
        match self {
            Disposition::Ack | Disposition::Duplicate => "ack",
            Disposition::Retry { .. } => "retry",
            Disposition::Reject { .. } => "reject",
            Disposition::Unavailable { .. } => "unavailable",
        }
    }
}

/// What the consumer does with a message after a handling attempt: the pure
/// decision the loop follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    /// Delete it (handled).
    Delete,
    /// Make it visible again after this many seconds (0 = at once).
    Visible(i32),
    /// Keep it in hand (its visibility extended) and handle it again after a
    /// back-off; the consumer stops receiving meanwhile.
    HoldAndRetry,
}

/// The decision for one handling attempt; `None` is a message never started
/// (shutdown, blocked behind its group, or its handler panicked): released.
pub fn settle(disposition: Option<&Disposition>) -> Settle {
    match disposition {
        Some(Disposition::Ack | Disposition::Duplicate) => Settle::Delete,
        Some(Disposition::Retry { after }) => Settle::Visible(after.as_secs().min(43_199) as i32),
        Some(Disposition::Reject { .. }) | None => Settle::Visible(0),
        Some(Disposition::Unavailable { .. }) => Settle::HoldAndRetry,
    }
}

/// Classifies a database error: `true` when the database is unreachable or
/// refusing work for the moment (connection refused or reset, pool timeout or
/// closed, shutting down, not accepting connections, too many connections), so
/// the message should be held, not retried against its receive count.
pub fn is_transient(error: &sqlx::Error) -> bool {
    match error {
        // PoolClosed: the process is stopping; the held message is released, not retried.
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| transient_sqlstate(&code)),
        _ => false,
    }
}

/// SQLSTATEs of a database that is away or overloaded rather than of a bad
/// statement: class 08 (connection exception), 57P01..57P03 (admin or crash
/// shutdown, cannot connect now), 53300 (too many connections), 55000 (the
/// database does not allow connections), and 40001/40P01 (serialization
/// failure, deadlock: try again).
pub fn transient_sqlstate(code: &str) -> bool {
    code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03" | "53300" | "55000" | "40001" | "40P01")
}

/// Decodes the event a message carries; a body that is not a known event of
/// a supported version is a counted rejection (it goes to the DLQ).
pub fn decode_event(message: &Received) -> Result<envelope::Event, Disposition> {
    envelope::Event::decode(&message.body).map_err(|e| Disposition::reject(e.kind(), e.to_string()))
}

/// A service's message handler.
pub trait Handler: Send + Sync + 'static {
    /// Handles one message. Commit any effect before returning [`Disposition::Ack`].
    fn handle(&self, message: &Received) -> impl Future<Output = Disposition> + Send;

    /// Handles messages of different groups together (typically in one
    /// transaction), answering each, in order. `None` asks the consumer to
    /// hand each to [`Handler::handle`] instead: the handler does not batch, or
    /// the batch failed as a whole for a reason it cannot pin on one message.
    /// A message answered [`Disposition::Unavailable`] is handled alone
    /// afterwards (held while the dependency is down). Commit before answering.
    fn handle_batch(&self, messages: &[Received]) -> impl Future<Output = Option<Vec<Disposition>>> + Send {
        let _ = messages;
        std::future::ready(None)
    }
}

/// A handler that applies a batch of messages with one database transaction
/// (or statement) and answers each; implementing it gives the [`Handler`]
/// both ways: a batch that fails with a transient database error is held
/// (every message [`Disposition::Unavailable`]), one that fails otherwise is
/// handed back to be handled message by message, and a message alone that
/// fails is retried after [`RETRY_AFTER`].
pub trait ApplyBatch: Send + Sync + 'static {
    /// What the work is, for the log ("create shipments").
    const WORK: &'static str;

    /// Answers each message of `messages` (decoding and rejections included),
    /// having committed what it applied, or fails as a whole.
    fn apply(&self, messages: &[Received]) -> impl Future<Output = Result<Vec<Disposition>, sqlx::Error>> + Send;
}

/// When a message whose handling failed for a reason of its own (not a
/// database outage) is delivered again.
pub const RETRY_AFTER: Duration = Duration::from_secs(5);

fn database_unavailable(e: &sqlx::Error) -> Disposition {
    Disposition::unavailable(format!("database unavailable: {e}"))
}

impl<T: ApplyBatch> Handler for T {
    async fn handle(&self, message: &Received) -> Disposition {
        match self.apply(std::slice::from_ref(message)).await {
            Ok(mut answers) => answers.pop().expect("one answer per message"),
            Err(e) if is_transient(&e) => database_unavailable(&e),
            Err(e) => {
                tracing::warn!(message_id = %message.message_id, error = %e, work = T::WORK, "failed; will retry");
                Disposition::Retry { after: RETRY_AFTER }
            }
        }
    }

    async fn handle_batch(&self, messages: &[Received]) -> Option<Vec<Disposition>> {
        match self.apply(messages).await {
            Ok(answers) => Some(answers),
            Err(e) if is_transient(&e) => Some(vec![database_unavailable(&e); messages.len()]),
            Err(e) => {
                tracing::warn!(messages = messages.len(), error = %e, work = T::WORK, "a batch failed; one by one instead");
                None
            }
        }
    }
}

/// What one round of a poll did: each message's answer (`None`: not handled),
/// the attempts that found a dependency down, and whether a handler panicked.
struct Round {
    answers: Vec<Option<Disposition>>,
    unavailable: usize,
    panicked: bool,
}

/// Tuning of a consumer.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// Queue name (not URL).
    pub queue: String,
    /// Long-poll wait, at most 20 s.
    pub wait_time: Duration,
    /// Messages per receive, 1..=10.
    pub batch_size: i32,
    /// Concurrent pollers, each with its own batch in hand.
    pub pollers: usize,
    /// Visibility of received messages (set on each receive), which the
    /// heartbeat keeps extending while they are in hand. A crashed consumer's
    /// messages reappear after this long.
    pub visibility_timeout: Duration,
    /// How often the heartbeat extends it.
    pub heartbeat_interval: Duration,
    /// Longest pause between attempts at a message held while a dependency is down.
    pub hold_max_delay: Duration,
}

/// The `CONSUMER_*` variables, for the configuration reference.
pub const CONSUMER_SETTINGS: &[settings::Doc] = &[
    settings::Doc::tuning("CONSUMER_POLLERS", "concurrent long polls of the consumed queue"),
    settings::Doc::tuning("CONSUMER_WAIT_TIME", "long-poll wait (at most 20 s)"),
    settings::Doc::tuning(
        "CONSUMER_VISIBILITY_TIMEOUT",
        "visibility of received messages, extended by a heartbeat while in hand; a crashed consumer's messages reappear after it",
    ),
    settings::Doc::tuning(
        "INBOX_RETENTION",
        "how long applied event ids are remembered (past SQS's 14-day retention nothing is redelivered); older inbox rows, and the order API's expired idempotency records, are deleted every minute in small batches",
    ),
];

impl ConsumerConfig {
    /// Reads `CONSUMER_POLLERS`, `CONSUMER_WAIT_TIME` and
    /// `CONSUMER_VISIBILITY_TIMEOUT` for reading `queue`.
    pub fn from_env(env: &mut settings::Env, queue: String) -> Self {
        let defaults = Self::new(queue);
        let c = Self {
            pollers: env.get("CONSUMER_POLLERS", defaults.pollers),
            wait_time: env.duration("CONSUMER_WAIT_TIME", defaults.wait_time),
            visibility_timeout: env.duration("CONSUMER_VISIBILITY_TIMEOUT", defaults.visibility_timeout),
            ..defaults
        };
        if c.wait_time > Duration::from_secs(20) {
            env.invalid("CONSUMER_WAIT_TIME", "SQS long polls wait at most 20s");
        }
        if c.pollers == 0 {
            env.invalid("CONSUMER_POLLERS", "must be at least 1");
        }
        if c.visibility_timeout < Duration::from_secs(1) {
            env.invalid("CONSUMER_VISIBILITY_TIMEOUT", "must be at least 1s");
        }
        Self { heartbeat_interval: c.visibility_timeout / 3, ..c }
    }

    pub fn new(queue: impl Into<String>) -> Self {
        Self {
            queue: queue.into(),
            wait_time: Duration::from_secs(20),
            batch_size: 10,
            pollers: 2,
            visibility_timeout: Duration::from_secs(30),
            heartbeat_interval: Duration::from_secs(10),
            hold_max_delay: Duration::from_secs(5),
        }
    }
}

/// What one step did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PollOutcome {
    pub received: usize,
    pub acked: usize,
    pub retried: usize,
    pub rejected: usize,
    /// Released untouched (shutdown, or behind an unacknowledged message of its group).
    pub released: usize,
    /// Handling attempts that found a dependency down (the message was held and retried).
    pub unavailable: usize,
    /// Not received: the consumer is paused while a dependency is down.
    pub paused: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("consuming {queue} failed: {detail}")]
pub struct ConsumeError {
    pub queue: String,
    pub detail: String,
}

/// Reads one queue with a handler.
pub struct Consumer<H> {
    client: Client,
    config: ConsumerConfig,
    handler: Arc<H>,
    url: OnceCell<String>,
    /// Messages held because a dependency is down; while any is, no poller
    /// receives (the consumer-side breaker).
    holding: AtomicUsize,
}

/// Aborts a background task when dropped, so a step that ends any way
/// (including a panic or cancellation) never leaves its heartbeat running.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Counts a held message (and sets `consumer_messages_held`) for as long as it lives.
struct Held<'a> {
    count: &'a AtomicUsize,
    queue: &'a str,
}

impl<'a> Held<'a> {
    fn new(count: &'a AtomicUsize, queue: &'a str) -> Self {
        let now = count.fetch_add(1, Ordering::SeqCst) + 1;
        metrics::HELD.gauge_with(&[queue]).set(now as f64);
        Self { count, queue }
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        let now = self.count.fetch_sub(1, Ordering::SeqCst) - 1;
        metrics::HELD.gauge_with(&[self.queue]).set(now as f64);
    }
}

impl<H: Handler> Consumer<H> {
    pub fn new(client: Client, config: ConsumerConfig, handler: H) -> Self {
        // This queue's series exist (at 0) before the first message, so a
        // dashboard or an alert sees "no rejections yet" rather than nothing.
        let queue = config.queue.as_str();
        metrics::RECEIVED.counter_with(&[queue]).increment(0);
        metrics::DUPLICATE.counter_with(&[queue]).increment(0);
        for outcome in ["ack", "retry", "reject", "unavailable", "panic"] {
            metrics::PROCESSED.counter_with(&[queue, outcome]).increment(0);
        }
        for reason in envelope::DecodeError::KINDS {
            metrics::REJECTED.counter_with(&[queue, reason]).increment(0);
        }
        metrics::HELD.gauge_with(&[queue]).set(0.0);
        Self { client, config, handler: Arc::new(handler), url: OnceCell::new(), holding: AtomicUsize::new(0) }
    }

    /// Whether receiving is paused because a message is held during a dependency outage.
    pub fn paused(&self) -> bool {
        self.holding.load(Ordering::SeqCst) > 0
    }

    fn error(&self, e: impl std::error::Error) -> ConsumeError {
        ConsumeError {
            queue: self.config.queue.clone(),
            detail: aws_sdk_sqs::error::DisplayErrorContext(e).to_string(),
        }
    }

    async fn queue_url(&self) -> Result<&str, ConsumeError> {
        self.url
            .get_or_try_init(|| async {
                let out = self
                    .client
                    .get_queue_url()
                    .queue_name(&self.config.queue)
                    .send()
                    .await
                    .map_err(|e| self.error(e))?;
                Ok(out.queue_url.unwrap_or_default())
            })
            .await
            .map(String::as_str)
    }

    /// Receives one batch (waiting up to the long-poll time, or until `stop`),
    /// handles it and settles every message.
    #[tracing::instrument(name = "consumer.poll", level = "debug", skip_all, fields(messaging.system = "aws_sqs", messaging.destination.name = %self.config.queue, received))]
    pub async fn poll_once(&self, stop: &CancellationToken) -> Result<PollOutcome, ConsumeError> {
        if self.paused() {
            // Another poller holds a message while a dependency is down: any
            // message received now would only be held too (or worse, retried).
            return Ok(PollOutcome { paused: true, ..PollOutcome::default() });
        }
        let url = self.queue_url().await?.to_owned();
        let receive = self
            .client
            .receive_message()
            .queue_url(&url)
            .max_number_of_messages(self.config.batch_size.clamp(1, 10))
            .wait_time_seconds(self.config.wait_time.as_secs().min(20) as i32)
            .visibility_timeout(self.config.visibility_timeout.as_secs().max(1) as i32)
            .message_attribute_names("All")
            .message_system_attribute_names(MessageSystemAttributeName::MessageGroupId)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send();
        // On shutdown an in-flight long poll is not abandoned: SQS would still
        // hand it messages, which would then stay invisible until their
        // visibility timeout. It is awaited (at most its wait time) and whatever
        // it brings is released at once, unstarted.
        tokio::pin!(receive);
        let (messages, stopping) = tokio::select! {
            result = &mut receive => (result.map_err(|e| self.error(e))?.messages.unwrap_or_default(), false),
            () = stop.cancelled() => (receive.await.map_err(|e| self.error(e))?.messages.unwrap_or_default(), true),
        };
        if stopping {
            let handles: Vec<(String, i32)> =
                messages.into_iter().filter_map(|m| Some((m.receipt_handle?, 0))).collect();
            let released = handles.len();
            self.change_visibility(&url, handles).await?;
            return Ok(PollOutcome { received: released, released, ..PollOutcome::default() });
        }
        tracing::Span::current().record("received", messages.len());
        if messages.is_empty() {
            return Ok(PollOutcome::default());
        }
        // Crash tests: the process dies holding received, unhandled messages.
        fail::fail_point!("consumer-after-receive", |_| std::process::abort());
        metrics::RECEIVED.counter_with(&[&self.config.queue]).increment(messages.len() as u64);

        // Group in queue order.
        let mut groups: Vec<(String, Vec<Received>)> = Vec::new();
        for m in messages.into_iter().map(received) {
            match groups.iter_mut().find(|(g, _)| *g == m.group_id) {
                Some((_, list)) => list.push(m),
                None => groups.push((m.group_id.clone(), vec![m])),
            }
        }

        let pending: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(
            groups.iter().flat_map(|(_, ms)| ms.iter().map(|m| m.receipt_handle.clone())).collect(),
        ));
        // Aborted however this step ends (a panic, a dropped future).
        let heartbeat = AbortOnDrop(self.spawn_heartbeat(url.clone(), pending.clone()));

        // Rounds: each takes the next message of every group still going and
        // hands them to the handler together (different groups, so one
        // transaction can apply them all). A group whose message is not settled
        // releases the rest of its messages untouched, so none overtakes it.
        let mut lanes: Vec<VecDeque<Received>> = groups.into_iter().map(|(_, list)| list.into()).collect();
        let mut settled: Vec<(Received, Option<Disposition>)> = Vec::new();
        let (mut unavailable, mut panicked) = (0, false);
        loop {
            let (lane_of, heads): (Vec<usize>, Vec<Received>) =
                lanes.iter_mut().enumerate().filter_map(|(i, lane)| Some((i, lane.pop_front()?))).unzip();
            if heads.is_empty() {
                break;
            }
            let answers = if stop.is_cancelled() {
                vec![None; heads.len()]
            } else {
                let round = self.handle_round(&heads, stop).await;
                unavailable += round.unavailable;
                panicked |= round.panicked;
                round.answers
            };
            for ((lane, m), d) in lane_of.into_iter().zip(heads).zip(answers) {
                if !d.as_ref().is_some_and(Disposition::settled) {
                    settled.extend(lanes[lane].drain(..).map(|later| (later, None)));
                }
                settled.push((m, d));
            }
            // The heartbeat keeps extending only what is still to be handled.
            *pending.lock().expect("pending lock") =
                lanes.iter().flat_map(|lane| lane.iter().map(|m| m.receipt_handle.clone())).collect();
        }
        drop(heartbeat);

        let mut outcome = PollOutcome { unavailable, ..PollOutcome::default() };
        let mut delete = Vec::new();
        let mut visibility: Vec<(String, i32)> = Vec::new();
        for (m, d) in settled {
            outcome.received += 1;
            match &d {
                Some(Disposition::Ack | Disposition::Duplicate) => outcome.acked += 1,
                Some(Disposition::Retry { .. }) => outcome.retried += 1,
                Some(Disposition::Reject { .. }) => outcome.rejected += 1,
                Some(Disposition::Unavailable { .. }) | None => outcome.released += 1,
            }
            match settle(d.as_ref()) {
                Settle::Delete => delete.push(m.receipt_handle),
                Settle::Visible(secs) => visibility.push((m.receipt_handle, secs)),
                // Not reached (a held message is handled until another answer); released to be safe.
                Settle::HoldAndRetry => visibility.push((m.receipt_handle, 0)),
            }
        }
        // Crash tests: the handlers committed, the messages are not deleted yet.
        fail::fail_point!("consumer-before-delete", |_| std::process::abort());
        self.delete_batch(&url, delete).await?;
        self.change_visibility(&url, visibility).await?;
        if panicked {
            return Err(ConsumeError {
                queue: self.config.queue.clone(),
                detail: "a message handler panicked; its messages were released and the poller restarts".into(),
            });
        }
        Ok(outcome)
    }

    /// One round: messages of different groups, first offered to the handler
    /// as one batch (in its own task, so a panic is caught); any message the
    /// batch did not answer (the handler does not batch, the batch panicked or
    /// failed as a whole) or answered [`Disposition::Unavailable`] is then
    /// handled alone, held while its dependency is down.
    async fn handle_round(&self, heads: &[Received], stop: &CancellationToken) -> Round {
        let started = Instant::now();
        // Each message continues the trace of the event it carries (a child of
        // its send span, not a link: the batch is only a transport detail), and
        // hands its own context on through `Received::trace`.
        let spans: Vec<tracing::Span> = heads.iter().map(|m| self.process_span(m)).collect();
        let batch: Vec<Received> = heads
            .iter()
            .zip(&spans)
            .map(|(m, span)| Received { trace: telemetry::propagation::context_of(span), ..m.clone() })
            .collect();
        let (handler, n) = (self.handler.clone(), batch.len());
        let batch_span = tracing::debug_span!("message.batch", messaging.batch.message_count = n);
        let answered = tokio::spawn(
            async move { handler.handle_batch(&batch).await.map(|ds| (ds, batch)) }.instrument(batch_span),
        )
        .await;
        let answered = match answered {
            Ok(Some((ds, batch))) if ds.len() == n => Some((ds, batch)),
            Ok(Some((ds, _))) => {
                tracing::error!(queue = %self.config.queue, messages = n, answers = ds.len(),
                    "the batch handler answered for the wrong number of messages; handling them one by one");
                None
            }
            Ok(None) => None,
            Err(e) => {
                tracing::error!(queue = %self.config.queue, messages = n, error = %e,
                    "a batch handler panicked; handling its messages one by one to find the one at fault");
                None
            }
        };
        let mut answers: Vec<Option<Disposition>> = vec![None; n];
        let mut alone = Vec::new();
        match answered {
            Some((ds, batch)) => {
                let took = started.elapsed();
                for (i, (d, m)) in ds.into_iter().zip(batch).enumerate() {
                    if matches!(d, Disposition::Unavailable { .. }) {
                        alone.push(i);
                    } else {
                        self.record(&m, &d, took);
                        answers[i] = Some(d);
                    }
                }
            }
            None => alone.extend(0..n),
        }
        let results = join_all(alone.iter().map(|&i| self.handle_alone(&heads[i], &spans[i], stop))).await;
        let mut round = Round { answers, unavailable: 0, panicked: false };
        for (i, (d, unavailable, panicked)) in alone.into_iter().zip(results) {
            round.answers[i] = d;
            round.unavailable += unavailable;
            round.panicked |= panicked;
        }
        round
    }

    /// Handles one message alone (in its `process` span) until it gets an
    /// answer other than [`Disposition::Unavailable`]: while a dependency is
    /// down the message is held (receiving pauses) and tried again with
    /// back-off. Returns the answer (`None`: panicked, or stopped while held),
    /// the unavailable attempts, and whether the handler panicked.
    async fn handle_alone(
        &self,
        m: &Received,
        span: &tracing::Span,
        stop: &CancellationToken,
    ) -> (Option<Disposition>, usize, bool) {
        let message = Received { trace: telemetry::propagation::context_of(span), ..m.clone() };
        let mut held: Option<Held<'_>> = None;
        let mut backoff =
            shutdown::retry::Backoff::new(shutdown::retry::policy().with_max_delay(self.config.hold_max_delay));
        let mut unavailable = 0;
        loop {
            match self.handle_one(&message, span).await {
                None => return (None, unavailable, true),
                Some(Disposition::Unavailable { reason }) => {
                    unavailable += 1;
                    let pause = backoff.next_delay();
                    if held.is_none() {
                        tracing::warn!(message_id = %m.message_id, %reason, retry_in_ms = pause.as_millis() as u64,
                            "a dependency is down: holding the message and pausing receives until it is back");
                        held = Some(Held::new(&self.holding, &self.config.queue));
                    }
                    tokio::select! {
                        () = stop.cancelled() => return (None, unavailable, false),
                        () = tokio::time::sleep(pause) => {}
                    }
                }
                Some(d) => {
                    if held.is_some() {
                        tracing::info!(message_id = %m.message_id, "dependency back: held message handled, receiving resumes");
                    }
                    return (Some(d), unavailable, false);
                }
            }
        }
    }

    /// The `process` span of one message, a child of the span that sent it.
    fn process_span(&self, m: &Received) -> tracing::Span {
        let span = tracing::info_span!(
            "message.process",
            otel.name = format!("process {}", self.config.queue),
            otel.kind = "consumer",
            messaging.system = "aws_sqs",
            messaging.destination.name = %self.config.queue,
            messaging.operation.type = "process",
            messaging.message.id = %m.message_id,
            messaging.message.conversation_id = %m.group_id,
            trace_id = tracing::field::Empty,
            span_id = tracing::field::Empty,
        );
        telemetry::propagation::set_parent(
            &span,
            m.attributes.get(crate::ATTR_TRACEPARENT).map(String::as_str),
            m.attributes.get(crate::ATTR_TRACESTATE).map(String::as_str),
        );
        telemetry::propagation::record_ids(&span);
        span
    }

    /// One handling attempt of one message in its own task, so a panic is
    /// caught (`None`) instead of unwinding through the poller.
    async fn handle_one(&self, m: &Received, span: &tracing::Span) -> Option<Disposition> {
        let started = Instant::now();
        let (handler, message) = (self.handler.clone(), m.clone());
        let result = tokio::spawn(async move { handler.handle(&message).await }.instrument(span.clone())).await;
        match result {
            Ok(d) => {
                self.record(m, &d, started.elapsed());
                Some(d)
            }
            Err(e) => {
                let queue = self.config.queue.as_str();
                metrics::HANDLING.histogram_with(&[queue]).record(started.elapsed().as_secs_f64());
                metrics::PROCESSED.counter_with(&[queue, "panic"]).increment(1);
                tracing::error!(message_id = %m.message_id, receive_count = m.receive_count, error = %e,
                    "message handler panicked; releasing the message");
                None
            }
        }
    }

    /// The metrics (and the log line of a rejection) of one answered message.
    fn record(&self, m: &Received, d: &Disposition, took: Duration) {
        let queue = self.config.queue.as_str();
        metrics::HANDLING.histogram_with(&[queue]).record(took.as_secs_f64());
        match d {
            Disposition::Duplicate => metrics::DUPLICATE.counter_with(&[queue]).increment(1),
            Disposition::Reject { label, reason } => {
                metrics::REJECTED.counter_with(&[queue, label]).increment(1);
                tracing::error!(message_id = %m.message_id, receive_count = m.receive_count, %reason,
                    "rejected message; it will reach the dead-letter queue after the redrive count");
            }
            _ => {}
        }
        metrics::PROCESSED.counter_with(&[queue, d.outcome()]).increment(1);
    }

    fn spawn_heartbeat(&self, url: String, pending: Arc<Mutex<Vec<String>>>) -> tokio::task::JoinHandle<()> {
        let client = self.client.clone();
        let (every, visibility) = (self.config.heartbeat_interval, self.config.visibility_timeout.as_secs());
        let received_at = Instant::now();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let extend_to = heartbeat_visibility(visibility, received_at.elapsed().as_secs());
                let handles = pending.lock().expect("pending lock").clone();
                for chunk in handles.chunks(10) {
                    let entries = chunk
                        .iter()
                        .enumerate()
                        .map(|(i, h)| {
                            ChangeMessageVisibilityBatchRequestEntry::builder()
                                .id(i.to_string())
                                .receipt_handle(h)
                                .visibility_timeout(extend_to)
                                .build()
                                .expect("id and handle are set")
                        })
                        .collect::<Vec<_>>();
                    match client
                        .change_message_visibility_batch()
                        .queue_url(&url)
                        .set_entries(Some(entries))
                        .send()
                        .await
                    {
                        Ok(out) => {
                            for f in out.failed {
                                tracing::warn!(code = %f.code, detail = f.message.as_deref().unwrap_or_default(),
                                    "visibility heartbeat refused for a message");
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(e), "visibility heartbeat failed")
                        }
                    }
                }
            }
        })
    }

    async fn delete_batch(&self, url: &str, handles: Vec<String>) -> Result<(), ConsumeError> {
        for chunk in handles.chunks(10) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, h)| {
                    DeleteMessageBatchRequestEntry::builder().id(i.to_string()).receipt_handle(h).build().expect("set")
                })
                .collect::<Vec<_>>();
            let out = self
                .client
                .delete_message_batch()
                .queue_url(url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| self.error(e))?;
            // A failed delete means a redelivery, which the handler's inbox absorbs.
            for f in out.failed {
                tracing::warn!(code = %f.code, detail = f.message.as_deref().unwrap_or_default(),
                    "delete failed; the message will be redelivered and skipped as a duplicate");
            }
        }
        Ok(())
    }

    async fn change_visibility(&self, url: &str, handles: Vec<(String, i32)>) -> Result<(), ConsumeError> {
        for chunk in handles.chunks(10) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, (h, secs))| {
                    ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(h)
                        .visibility_timeout(*secs)
                        .build()
                        .expect("set")
                })
                .collect::<Vec<_>>();
            self.client
                .change_message_visibility_batch()
                .queue_url(url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| self.error(e))?;
        }
        Ok(())
    }

    /// Runs `pollers` loops until `stop`; each finishes the batch in hand. A
    /// poller that fails (or panics) starts again after a back-off; while a
    /// message is held during a dependency outage the others do not receive.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        tracing::info!(queue = %self.config.queue, pollers = self.config.pollers, "consumer started");
        let loops = (0..self.config.pollers.max(1)).map(|_| {
            let (this, stop) = (self.clone(), stop.clone());
            tokio::spawn(async move {
                // The supervisor: a poller task that panicked is started again.
                while !stop.is_cancelled() {
                    let poller = tokio::spawn(this.clone().poll_loop(stop.clone()));
                    match poller.await {
                        Err(e) if e.is_panic() => {
                            tracing::error!(queue = %this.config.queue, "consumer poller panicked; restarting it");
                            tokio::select! {
                                () = stop.cancelled() => {}
                                () = tokio::time::sleep(shutdown::retry::MIN_DELAY) => {}
                            }
                        }
                        _ => break,
                    }
                }
            })
        });
        join_all(loops).await;
        tracing::info!(queue = %self.config.queue, "consumer stopped");
    }

    async fn poll_loop(self: Arc<Self>, stop: CancellationToken) {
        let mut backoff = shutdown::retry::Backoff::default();
        while !stop.is_cancelled() {
            let pause = match self.poll_once(&stop).await {
                Ok(PollOutcome { paused: true, .. }) => PAUSED_POLL,
                Ok(_) => {
                    backoff.reset();
                    continue;
                }
                Err(e) => {
                    let pause = backoff.next_delay();
                    tracing::warn!(error = %e, retry_in_ms = pause.as_millis() as u64, "consumer step failed; retrying");
                    pause
                }
            };
            tokio::select! {
                () = stop.cancelled() => {}
                () = tokio::time::sleep(pause) => {}
            }
        }
    }
}

/// The visibility timeout a heartbeat sets, `held` seconds after the receive:
/// the configured one plus the time in hand. SQS counts a new timeout from
/// now, so the time in hand is not needed there, but the emulator (LocalStack)
/// refuses to delete a FIFO message whose receipt handle is older than its
/// latest visibility timeout, which a message held through a long outage
/// would be. Capped so the total stays under SQS's 12 hours from the receive.
pub fn heartbeat_visibility(visibility: u64, held: u64) -> i32 {
    const MAX: u64 = 43_199;
    (visibility + held).min(MAX.saturating_sub(held)).max(1) as i32
}

/// How often a paused poller looks whether the held messages are handled.
const PAUSED_POLL: Duration = Duration::from_millis(250);

fn received(m: Message) -> Received {
    let system = m.attributes.unwrap_or_default();
    let attributes =
        m.message_attributes.unwrap_or_default().into_iter().filter_map(|(k, v)| Some((k, v.string_value?))).collect();
    Received {
        message_id: m.message_id.unwrap_or_default(),
        body: m.body.unwrap_or_default(),
        group_id: system.get(&MessageSystemAttributeName::MessageGroupId).cloned().unwrap_or_default(),
        receive_count: system
            .get(&MessageSystemAttributeName::ApproximateReceiveCount)
            .and_then(|c| c.parse().ok())
            .unwrap_or(1),
        attributes,
        trace: Default::default(),
        receipt_handle: m.receipt_handle.unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_outcome_settles_its_own_way() {
        assert_eq!(settle(Some(&Disposition::Ack)), Settle::Delete);
        assert_eq!(settle(Some(&Disposition::Duplicate)), Settle::Delete);
        assert_eq!(settle(Some(&Disposition::Retry { after: Duration::from_secs(5) })), Settle::Visible(5));
        assert_eq!(settle(Some(&Disposition::Retry { after: Duration::from_secs(1 << 20) })), Settle::Visible(43_199));
        // A poison message is handed back at once, so the redrive policy moves it.
        assert_eq!(settle(Some(&Disposition::reject("garbage", "x"))), Settle::Visible(0));
        // Never started (shutdown, behind its group, handler panicked): released at once.
        assert_eq!(settle(None), Settle::Visible(0));
        // An outage spends no receive count: the message stays in hand.
        assert_eq!(settle(Some(&Disposition::unavailable("db down"))), Settle::HoldAndRetry);
    }

    #[test]
    fn the_heartbeat_covers_the_time_in_hand_within_twelve_hours() {
        assert_eq!(heartbeat_visibility(30, 0), 30);
        assert_eq!(heartbeat_visibility(30, 100), 130);
        assert_eq!(heartbeat_visibility(30, 30_000), 13_199, "never past 12 h after the receive");
        assert_eq!(heartbeat_visibility(30, 50_000), 1);
    }

    #[test]
    fn database_outages_are_transient_and_bad_statements_are_not() {
        for code in ["08006", "08001", "57P01", "57P03", "53300", "55000", "40001", "40P01"] {
            assert!(transient_sqlstate(code), "{code}");
        }
        for code in ["23505", "23503", "42P01", "22P02", "3D000"] {
            assert!(!transient_sqlstate(code), "{code}");
        }
        assert!(is_transient(&sqlx::Error::PoolTimedOut));
        assert!(is_transient(&sqlx::Error::PoolClosed));
        assert!(is_transient(&sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused))));
        assert!(!is_transient(&sqlx::Error::RowNotFound));
    }

    #[test]
    fn only_handled_messages_are_settled_and_each_has_an_outcome_label() {
        assert!(Disposition::Ack.settled() && Disposition::Duplicate.settled());
        assert!(!Disposition::unavailable("x").settled());
        assert_eq!(Disposition::unavailable("x").outcome(), "unavailable");
        assert_eq!(Disposition::Duplicate.outcome(), "ack");
    }
}
