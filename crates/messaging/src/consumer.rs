//! The consumer loop every service uses to read a FIFO queue.
//!
//! One step ([`Consumer::poll_once`]) long-polls a batch, hands each message to
//! the service's [`Handler`] and settles it by the returned [`Disposition`]:
//! acknowledged messages are deleted in one batch call after the handler has
//! committed its work; a retry leaves the message for redelivery after a
//! delay; a rejected (poison) message is made visible again at once so it
//! reaches the dead-letter queue through the redrive policy after the
//! configured receive count, instead of being silently dropped.
//!
//! Ordering: messages of one group (one order) are handled one after another in
//! queue order; different groups run concurrently. If a message of a group is
//! not acknowledged, the later messages of that group in the batch are released
//! untouched, so they can never overtake it.
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
    collections::HashMap,
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

        let results = join_all(groups.into_iter().map(|(_, list)| {
            let pending = pending.clone();
            async move {
                let mut settled = Vec::new();
                let mut blocked = false;
                let (mut unavailable, mut panicked) = (0, false);
                for m in list {
                    let disposition = if blocked || stop.is_cancelled() {
                        None
                    } else {
                        let mut held: Option<Held<'_>> = None;
                        let mut backoff = shutdown::retry::Backoff::new(
                            shutdown::retry::policy().with_max_delay(self.config.hold_max_delay),
                        );
                        loop {
                            match self.handle_one(&m).await {
                                None => {
                                    panicked = true;
                                    break None;
                                }
                                Some(Disposition::Unavailable { reason }) => {
                                    unavailable += 1;
                                    let pause = backoff.next_delay();
                                    if held.is_none() {
                                        tracing::warn!(message_id = %m.message_id, %reason, retry_in_ms = pause.as_millis() as u64,
                                            "a dependency is down: holding the message and pausing receives until it is back");
                                        held = Some(Held::new(&self.holding, &self.config.queue));
                                    }
                                    tokio::select! {
                                        () = stop.cancelled() => break None,
                                        () = tokio::time::sleep(pause) => {}
                                    }
                                }
                                Some(d) => {
                                    if held.is_some() {
                                        tracing::info!(message_id = %m.message_id, "dependency back: held message handled, receiving resumes");
                                    }
                                    break Some(d);
                                }
                            }
                        }
                    };
                    blocked = !disposition.as_ref().is_some_and(Disposition::settled);
                    pending.lock().expect("pending lock").retain(|h| *h != m.receipt_handle);
                    settled.push((m, disposition));
                }
                (settled, unavailable, panicked)
            }
        }))
        .await;
        drop(heartbeat);

        let mut outcome = PollOutcome::default();
        let mut delete = Vec::new();
        let mut visibility: Vec<(String, i32)> = Vec::new();
        let mut panicked = false;
        for (settled, unavailable, group_panicked) in results {
            outcome.unavailable += unavailable;
            panicked |= group_panicked;
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
                    // Not reached (the loop above holds until another answer); released to be safe.
                    Settle::HoldAndRetry => visibility.push((m.receipt_handle, 0)),
                }
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

    /// One handling attempt in its own task, so a panic is caught (`None`)
    /// instead of unwinding through the poller; records the outcome metrics.
    async fn handle_one(&self, m: &Received) -> Option<Disposition> {
        let started = Instant::now();
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
        // Each message continues the trace of the event it carries (child, not link:
        // the batch is only a transport detail here; each message is handled alone).
        telemetry::propagation::set_parent(
            &span,
            m.attributes.get(crate::ATTR_TRACEPARENT).map(String::as_str),
            m.attributes.get(crate::ATTR_TRACESTATE).map(String::as_str),
        );
        telemetry::propagation::record_ids(&span);
        let (handler, message) = (self.handler.clone(), m.clone());
        let result = tokio::spawn(async move { handler.handle(&message).await }.instrument(span)).await;
        let queue = self.config.queue.as_str();
        metrics::HANDLING.histogram_with(&[queue]).record(started.elapsed().as_secs_f64());
        let d = match result {
            Ok(d) => d,
            Err(e) => {
                metrics::PROCESSED.counter_with(&[queue, "panic"]).increment(1);
                tracing::error!(message_id = %m.message_id, receive_count = m.receive_count, error = %e,
                    "message handler panicked; releasing the message");
                return None;
            }
        };
        match &d {
            Disposition::Duplicate => metrics::DUPLICATE.counter_with(&[queue]).increment(1),
            Disposition::Reject { label, reason } => {
                metrics::REJECTED.counter_with(&[queue, label]).increment(1);
                tracing::error!(message_id = %m.message_id, receive_count = m.receive_count, %reason,
                    "rejected message; it will reach the dead-letter queue after the redrive count");
            }
            _ => {}
        }
        metrics::PROCESSED.counter_with(&[queue, d.outcome()]).increment(1);
        Some(d)
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
