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

use std::{
    collections::HashMap,
    future::Future,
    sync::{Arc, Mutex},
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
}

impl Disposition {
    /// A rejection, counted in `messages_rejected_total{queue, reason=label}`.
    pub fn reject(label: &'static str, reason: impl Into<String>) -> Self {
        Disposition::Reject { label, reason: reason.into() }
    }

    /// Whether the message is done with and can be deleted.
    fn settled(&self) -> bool {
        matches!(self, Disposition::Ack | Disposition::Duplicate)
    }
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
}

impl<H: Handler> Consumer<H> {
    pub fn new(client: Client, config: ConsumerConfig, handler: H) -> Self {
        // This queue's series exist (at 0) before the first message, so a
        // dashboard or an alert sees "no rejections yet" rather than nothing.
        let queue = config.queue.as_str();
        metrics::RECEIVED.counter_with(&[queue]).increment(0);
        metrics::DUPLICATE.counter_with(&[queue]).increment(0);
        for outcome in ["ack", "retry", "reject"] {
            metrics::PROCESSED.counter_with(&[queue, outcome]).increment(0);
        }
        for reason in envelope::DecodeError::KINDS {
            metrics::REJECTED.counter_with(&[queue, reason]).increment(0);
        }
        Self { client, config, handler: Arc::new(handler), url: OnceCell::new() }
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
        let heartbeat = self.spawn_heartbeat(url.clone(), pending.clone());

        let results = join_all(groups.into_iter().map(|(_, list)| {
            let pending = pending.clone();
            async move {
                let mut settled = Vec::new();
                let mut blocked = false;
                for m in list {
                    let disposition = if blocked || stop.is_cancelled() {
                        None
                    } else {
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
                        let d = self.handler.handle(&m).instrument(span).await;
                        let queue = self.config.queue.as_str();
                        let outcome = match &d {
                            Disposition::Ack => "ack",
                            Disposition::Duplicate => {
                                metrics::DUPLICATE.counter_with(&[queue]).increment(1);
                                "ack"
                            }
                            Disposition::Retry { .. } => "retry",
                            Disposition::Reject { label, reason } => {
                                metrics::REJECTED.counter_with(&[queue, label]).increment(1);
                                tracing::error!(message_id = %m.message_id, receive_count = m.receive_count, %reason,
                                    "rejected message; it will reach the dead-letter queue after the redrive count");
                                "reject"
                            }
                        };
                        metrics::HANDLING.histogram_with(&[queue]).record(started.elapsed().as_secs_f64());
                        metrics::PROCESSED.counter_with(&[queue, outcome]).increment(1);
                        blocked = !d.settled();
                        Some(d)
                    };
                    pending.lock().expect("pending lock").retain(|h| *h != m.receipt_handle);
                    settled.push((m, disposition));
                }
                settled
            }
        }))
        .await;
        heartbeat.abort();

        let mut outcome = PollOutcome::default();
        let mut delete = Vec::new();
        let mut visibility: Vec<(String, i32)> = Vec::new();
        for (m, d) in results.into_iter().flatten() {
            outcome.received += 1;
            match d {
                Some(Disposition::Ack | Disposition::Duplicate) => {
                    outcome.acked += 1;
                    delete.push(m.receipt_handle);
                }
                Some(Disposition::Retry { after }) => {
                    outcome.retried += 1;
                    visibility.push((m.receipt_handle, after.as_secs().min(43_199) as i32));
                }
                Some(Disposition::Reject { .. }) => {
                    outcome.rejected += 1;
                    visibility.push((m.receipt_handle, 0));
                }
                None => {
                    outcome.released += 1;
                    visibility.push((m.receipt_handle, 0));
                }
            }
        }
        // Crash tests: the handlers committed, the messages are not deleted yet.
        fail::fail_point!("consumer-before-delete", |_| std::process::abort());
        self.delete_batch(&url, delete).await?;
        self.change_visibility(&url, visibility).await?;
        Ok(outcome)
    }

    fn spawn_heartbeat(&self, url: String, pending: Arc<Mutex<Vec<String>>>) -> tokio::task::JoinHandle<()> {
        let client = self.client.clone();
        let (every, extend_to) = (self.config.heartbeat_interval, self.config.visibility_timeout.as_secs() as i32);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
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
                    if let Err(e) =
                        client.change_message_visibility_batch().queue_url(&url).set_entries(Some(entries)).send().await
                    {
                        tracing::warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(e), "visibility heartbeat failed");
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
                tracing::warn!(code = %f.code, "delete failed; the message will be redelivered and skipped as a duplicate");
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

    /// Runs `pollers` loops until `stop`; each finishes the batch in hand.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        tracing::info!(queue = %self.config.queue, pollers = self.config.pollers, "consumer started");
        let loops = (0..self.config.pollers.max(1)).map(|_| {
            let (this, stop) = (self.clone(), stop.clone());
            tokio::spawn(async move {
                let mut backoff = shutdown::retry::Backoff::default();
                while !stop.is_cancelled() {
                    match this.poll_once(&stop).await {
                        Ok(_) => backoff.reset(),
                        Err(e) => {
                            let pause = backoff.next_delay();
                            tracing::warn!(error = %e, retry_in_ms = pause.as_millis() as u64, "receive failed; retrying");
                            tokio::select! {
                                () = stop.cancelled() => {}
                                () = tokio::time::sleep(pause) => {}
                            }
                        }
                    }
                }
            })
        });
        join_all(loops).await;
        tracing::info!(queue = %self.config.queue, "consumer stopped");
    }
}

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
