//! Per-test SQS FIFO queues on the emulator, deleted on `Drop`.

use std::time::Duration;

use aws_sdk_sqs::{
    Client,
    types::{Message, MessageSystemAttributeName},
};
use messaging::{QueueUrls, SqsSettings};

pub struct TestQueues {
    pub client: Client,
    pub prefix: String,
    created: Vec<QueueUrls>,
}

impl TestQueues {
    pub async fn new() -> Self {
        let client = messaging::connect(&SqsSettings::local(crate::sqs_endpoint())).await;
        Self { client, prefix: format!("t{}", crate::unique_tag()), created: Vec::new() }
    }

    /// The per-test name of a contract queue: `orders-queue.fifo` -> `t<tag>-orders-queue.fifo`.
    pub fn name(&self, queue: &str) -> String {
        format!("{}-{queue}", self.prefix)
    }

    /// Creates the per-test copy of `queue` with its DLQ.
    pub async fn create(&mut self, queue: &str, max_receive_count: u32) -> QueueUrls {
        let urls = messaging::ensure_fifo_queue(&self.client, &self.name(queue), max_receive_count)
            .await
            .expect("create test queue on the SQS emulator (is it running? make sqs-up)");
        self.created.push(urls.clone());
        urls
    }

    /// Approximate `(visible, in_flight)` messages of the per-test copy of `queue`.
    pub async fn depth(&self, queue: &str) -> (u64, u64) {
        let depth =
            messaging::Publisher::new(self.client.clone()).queue_depth(&self.name(queue)).await.expect("queue depth");
        (depth.visible, depth.in_flight)
    }

    /// Receives, deletes and returns messages until `want` have arrived or
    /// `within` passes (long polls; no sleeps).
    pub async fn drain(&self, url: &str, want: usize, within: Duration) -> Vec<Message> {
        let deadline = tokio::time::Instant::now() + within;
        let mut out = Vec::new();
        while out.len() < want && tokio::time::Instant::now() < deadline {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let resp = self
                .client
                .receive_message()
                .queue_url(url)
                .max_number_of_messages(10)
                .wait_time_seconds(left.as_secs().clamp(1, 5) as i32)
                .message_attribute_names("All")
                .message_system_attribute_names(MessageSystemAttributeName::All)
                .send()
                .await
                .expect("receive from test queue");
            for m in resp.messages.unwrap_or_default() {
                if let Some(handle) = &m.receipt_handle {
                    self.client.delete_message().queue_url(url).receipt_handle(handle).send().await.expect("delete");
                }
                out.push(m);
            }
        }
        out
    }
}

impl Drop for TestQueues {
    fn drop(&mut self) {
        let client = self.client.clone();
        let urls: Vec<String> = self.created.iter().flat_map(|q| [q.url.clone(), q.dlq_url.clone()]).collect();
        crate::block_on_cleanup(async move {
            for url in urls {
                let _ = client.delete_queue().queue_url(url).send().await;
            }
        });
    }
}
