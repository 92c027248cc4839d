//! Creating a FIFO queue together with its dead-letter queue and redrive policy.
//! Idempotent: creating a queue that exists with the same attributes returns it.
//! Used by the services in development (`SQS_CREATE_QUEUES=true`), by tests and
//! by the controller.

use aws_sdk_sqs::{Client, types::QueueAttributeName};

/// A queue and its dead-letter queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueUrls {
    pub url: String,
    pub dlq_url: String,
}

/// `orders-queue.fifo` -> `orders-queue-dlq.fifo` (the naming in API.md).
pub fn dlq_name(queue: &str) -> String {
    format!("{}-dlq.fifo", queue.strip_suffix(".fifo").unwrap_or(queue))
}

/// How long a received message stays invisible before SQS offers it again.
const VISIBILITY_TIMEOUT_SECS: &str = "30";
/// Dead letters are kept for the maximum SQS allows (14 days) for inspection.
const DLQ_RETENTION_SECS: &str = "1209600";

/// Ensures `name` (must end in `.fifo`) exists with a DLQ and a redrive policy
/// of `max_receive_count` receives.
#[tracing::instrument(skip(client))]
pub async fn ensure_fifo_queue(
    client: &Client,
    name: &str,
    max_receive_count: u32,
) -> Result<QueueUrls, aws_sdk_sqs::Error> {
    assert!(name.ends_with(".fifo"), "FIFO queue names end in .fifo: {name}");
    let dlq_url = client
        .create_queue()
        .queue_name(dlq_name(name))
        .attributes(QueueAttributeName::FifoQueue, "true")
        .attributes(QueueAttributeName::MessageRetentionPeriod, DLQ_RETENTION_SECS)
        .send()
        .await?
        .queue_url
        .unwrap_or_default();
    let dlq_arn = client
        .get_queue_attributes()
        .queue_url(&dlq_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await?
        .attributes
        .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
        .unwrap_or_default();
    let redrive = serde_json::json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receive_count}).to_string();
    let url = client
        .create_queue()
        .queue_name(name)
        .attributes(QueueAttributeName::FifoQueue, "true")
        .attributes(QueueAttributeName::VisibilityTimeout, VISIBILITY_TIMEOUT_SECS)
        .attributes(QueueAttributeName::RedrivePolicy, redrive)
        .send()
        .await?
        .queue_url
        .unwrap_or_default();
    Ok(QueueUrls { url, dlq_url })
}

/// Ensures each of `queues` with [`ensure_fifo_queue`], logging the outcome;
/// a failure is only a warning (the services start while SQS is away and use
/// the queues once it is back). For `SQS_CREATE_QUEUES` in development.
pub async fn ensure_fifo_queues(client: &Client, queues: &[&str], max_receive_count: u32) {
    for queue in queues {
        match ensure_fifo_queue(client, queue, max_receive_count).await {
            Ok(urls) => tracing::info!(queue = %urls.url, dlq = %urls.dlq_url, "queue ready"),
            Err(e) => {
                tracing::warn!(queue, error = %aws_sdk_sqs::error::DisplayErrorContext(&e), "could not create the queue now; will use it once SQS is reachable")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn dead_letter_queue_names_follow_the_contract() {
        assert_eq!(super::dlq_name("orders-queue.fifo"), "orders-queue-dlq.fifo");
        assert_eq!(super::dlq_name("delivery-status-queue.fifo"), "delivery-status-queue-dlq.fifo");
    }
}
