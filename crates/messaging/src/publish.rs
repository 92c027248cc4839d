//! Publishing events to a FIFO queue in batches of up to ten.
//!
//! Every message carries `MessageGroupId` = order id (per-order ordering),
//! `MessageDeduplicationId` = event id (SQS drops a re-send within its 5-minute
//! window) and the `event_type`/`traceparent`/`tracestate` attributes. A batch
//! call can succeed for some entries and fail for others; [`BatchOutcome`] says
//! which, so the caller retries only the failed ones.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use aws_sdk_sqs::{
    Client,
    types::{MessageAttributeValue, SendMessageBatchRequestEntry},
};

use crate::{ATTR_EVENT_TYPE, ATTR_TRACEPARENT, ATTR_TRACESTATE, MAX_BATCH};

/// One message to send.
#[derive(Debug, Clone)]
pub struct OutgoingMessage {
    /// Caller's handle for this entry, unique within the batch (e.g. the outbox row id).
    pub entry_id: String,
    pub body: String,
    pub group_id: String,
    pub dedup_id: String,
    pub event_type: String,
    pub traceparent: Option<String>,
    pub tracestate: Option<String>,
}

/// Which entries of a batch SQS accepted and which it refused.
#[derive(Debug, Default)]
pub struct BatchOutcome {
    /// `(entry_id, SQS message id)` of each accepted entry.
    pub sent: Vec<(String, String)>,
    /// `(entry_id, reason)` of each refused entry.
    pub failed: Vec<(String, String)>,
}

/// How many messages a queue holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueDepth {
    pub visible: u64,
    pub in_flight: u64,
    /// The queue its redrive policy sends poison messages to.
    pub dead_letter_queue: Option<String>,
}

/// The queue name in a redrive policy's `deadLetterTargetArn`
/// (`arn:aws:sqs:region:account:name`).
fn dead_letter_queue_name(redrive_policy: &str) -> Option<String> {
    let policy: serde_json::Value = serde_json::from_str(redrive_policy).ok()?;
    let arn = policy.get("deadLetterTargetArn")?.as_str()?;
    arn.rsplit(':').next().filter(|n| !n.is_empty()).map(str::to_owned)
}

/// The whole call failed (SQS unreachable, throttled, credentials...).
#[derive(Debug, thiserror::Error)]
#[error("publishing to {queue} failed: {detail}")]
pub struct PublishError {
    pub queue: String,
    /// The SDK error with its whole cause chain (its plain `Display` says only
    /// "unhandled error" or "dispatch failure").
    pub detail: String,
}

impl PublishError {
    fn new(queue: &str, error: impl std::error::Error) -> Self {
        Self { queue: queue.to_owned(), detail: aws_sdk_sqs::error::DisplayErrorContext(error).to_string() }
    }
}

/// Sends messages to queues named by their queue name; resolves and caches
/// each queue's URL on first use, so it can be built while SQS is down. Cheap
/// to clone (clones share the cache).
#[derive(Debug, Clone)]
pub struct Publisher {
    client: Client,
    urls: Arc<Mutex<HashMap<String, String>>>,
}

impl Publisher {
    pub fn new(client: Client) -> Self {
        Self { client, urls: Arc::default() }
    }

    /// Asks SQS now whether queue `name` exists and answers (an uncached
    /// `GetQueueUrl`), for readiness probes: a cached URL says nothing about
    /// whether SQS is reachable at this moment.
    pub async fn probe(&self, name: &str) -> Result<(), PublishError> {
        self.client.get_queue_url().queue_name(name).send().await.map(drop).map_err(|e| PublishError::new(name, e))
    }

    /// [`Publisher::probe`] for each of `queues`; the first failure, as text for a readiness report.
    pub async fn probe_all(&self, queues: &[String]) -> Result<(), String> {
        for queue in queues {
            self.probe(queue).await.map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// The URL of queue `name`, from the cache or `GetQueueUrl`.
    pub async fn queue_url(&self, name: &str) -> Result<String, PublishError> {
        if let Some(url) = self.urls.lock().expect("url cache lock").get(name) {
            return Ok(url.clone());
        }
        let url = self
            .client
            .get_queue_url()
            .queue_name(name)
            .send()
            .await
            .map_err(|e| PublishError::new(name, e))?
            .queue_url
            .unwrap_or_default();
        self.urls.lock().expect("url cache lock").insert(name.to_owned(), url.clone());
        Ok(url)
    }

    /// Approximate `(visible, in_flight)` message counts of queue `name` (SQS
    /// reports these as approximations), and the name of its dead-letter queue
    /// if it has a redrive policy.
    pub async fn queue_depth(&self, name: &str) -> Result<QueueDepth, PublishError> {
        use aws_sdk_sqs::types::QueueAttributeName as A;
        let url = self.queue_url(name).await?;
        let attrs = self
            .client
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(A::ApproximateNumberOfMessages)
            .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
            .attribute_names(A::RedrivePolicy)
            .send()
            .await
            .map_err(|e| PublishError::new(name, e))?
            .attributes
            .unwrap_or_default();
        let count = |a: A| attrs.get(&a).and_then(|v| v.parse().ok()).unwrap_or(0);
        Ok(QueueDepth {
            visible: count(A::ApproximateNumberOfMessages),
            in_flight: count(A::ApproximateNumberOfMessagesNotVisible),
            dead_letter_queue: attrs.get(&A::RedrivePolicy).and_then(|p| dead_letter_queue_name(p)),
        })
    }

    /// Sets the `sqs_queue_messages{queue, state}` gauges for `queues` and for
    /// their dead-letter queues, each call bounded by `timeout`; a queue that
    /// does not answer keeps its last value.
    pub async fn record_queue_depths(&self, queues: &[String], timeout: std::time::Duration) {
        let record = |queue: &str, depth: &QueueDepth| {
            crate::metrics::QUEUE_MESSAGES.gauge_with(&[queue, "visible"]).set(depth.visible as f64);
            crate::metrics::QUEUE_MESSAGES.gauge_with(&[queue, "in_flight"]).set(depth.in_flight as f64);
        };
        for queue in queues {
            let Ok(Ok(depth)) = tokio::time::timeout(timeout, self.queue_depth(queue)).await else { continue };
            record(queue, &depth);
            if let Some(dlq) = &depth.dead_letter_queue
                && let Ok(Ok(dlq_depth)) = tokio::time::timeout(timeout, self.queue_depth(dlq)).await
            {
                record(dlq, &dlq_depth);
            }
        }
    }

    /// Sends up to [`MAX_BATCH`] messages to queue `queue` in one `SendMessageBatch` call.
    #[tracing::instrument(skip_all, fields(messaging.system = "aws_sqs", messaging.destination.name = queue, messaging.operation.type = "send", messaging.batch.message_count = messages.len()))]
    pub async fn send_batch(&self, queue: &str, messages: &[OutgoingMessage]) -> Result<BatchOutcome, PublishError> {
        assert!(messages.len() <= MAX_BATCH, "SQS batches hold at most {MAX_BATCH} messages");
        if messages.is_empty() {
            return Ok(BatchOutcome::default());
        }
        let queue_url = self.queue_url(queue).await?;
        let entries = messages.iter().map(entry).collect::<Vec<_>>();
        let response = self
            .client
            .send_message_batch()
            .queue_url(queue_url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| PublishError::new(queue, e))?;
        Ok(BatchOutcome {
            sent: response.successful.into_iter().map(|s| (s.id, s.message_id)).collect(),
            failed: response
                .failed
                .into_iter()
                .map(|f| (f.id, format!("{}: {}", f.code, f.message.unwrap_or_default())))
                .collect(),
        })
    }
}

fn string_attr(value: &str) -> MessageAttributeValue {
    MessageAttributeValue::builder().data_type("String").string_value(value).build().expect("data_type is set")
}

fn entry(m: &OutgoingMessage) -> SendMessageBatchRequestEntry {
    let mut builder = SendMessageBatchRequestEntry::builder()
        .id(&m.entry_id)
        .message_body(&m.body)
        .message_group_id(&m.group_id)
        .message_deduplication_id(&m.dedup_id)
        .message_attributes(ATTR_EVENT_TYPE, string_attr(&m.event_type));
    if let Some(tp) = &m.traceparent {
        builder = builder.message_attributes(ATTR_TRACEPARENT, string_attr(tp));
    }
    if let Some(ts) = m.tracestate.as_deref().filter(|s| !s.is_empty()) {
        builder = builder.message_attributes(ATTR_TRACESTATE, string_attr(ts));
    }
    builder.build().expect("id and body are set")
}

#[cfg(test)]
mod tests {
    #[test]
    fn finds_the_dead_letter_queue_in_a_redrive_policy() {
        let policy = r#"{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:000000000000:orders-queue-dlq.fifo","maxReceiveCount":"5"}"#;
        assert_eq!(super::dead_letter_queue_name(policy).as_deref(), Some("orders-queue-dlq.fifo"));
        assert_eq!(super::dead_letter_queue_name("{}"), None);
        assert_eq!(super::dead_letter_queue_name("not json"), None);
    }
}
