//! `loadgen sqs`: the ceiling of an SQS endpoint with batches of ten, the
//! yardstick the consumers' rates are read against. A throw-away FIFO queue
//! gets `concurrency` senders of `SendMessageBatch` for the duration, then as
//! many receivers of `ReceiveMessage` (10) + `DeleteMessageBatch` drain it.
//! Message groups are spread (as order ids are), so FIFO ordering does not
//! serialise the receivers.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context;
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, QueueAttributeName, SendMessageBatchRequestEntry};
use messaging::SqsSettings;
use serde_json::json;

use crate::stats::Report;

/// Groups the messages are spread over.
const GROUPS: u64 = 1000;

pub async fn ceiling(endpoint: &str, concurrency: usize, duration: Duration) -> anyhow::Result<Report> {
    let client = messaging::connect(&SqsSettings::local(endpoint)).await;
    let name = format!("loadgen-ceiling-{}.fifo", std::process::id());
    let url = client
        .create_queue()
        .queue_name(&name)
        .attributes(QueueAttributeName::FifoQueue, "true")
        .send()
        .await
        .context("cannot create the measuring queue")?
        .queue_url
        .context("no queue URL")?;
    let measured = measure(&client, &url, concurrency, duration).await;
    let _ = client.delete_queue().queue_url(&url).send().await;
    let (sent, send_secs, received, receive_secs) = measured?;
    let (send_rate, receive_rate) = (sent as f64 / send_secs, received as f64 / receive_secs);
    Ok(Report {
        human: format!(
            "SQS ceiling (batches of 10, {concurrency} callers): send {send_rate:.0} msg/s, receive + delete {receive_rate:.0} msg/s"
        ),
        json: json!({"what": "sqs ceiling", "send_per_s": send_rate, "receive_delete_per_s": receive_rate,
                     "sent": sent, "received": received, "concurrency": concurrency}),
    })
}

/// Deletes the queues named `prefix...` (their dead-letter queues included).
pub async fn delete_queues(endpoint: &str, prefix: &str) -> anyhow::Result<Report> {
    anyhow::ensure!(!prefix.is_empty(), "--prefix must not be empty");
    let client = messaging::connect(&SqsSettings::local(endpoint)).await;
    let urls = client.list_queues().queue_name_prefix(prefix).send().await?.queue_urls.unwrap_or_default();
    for url in &urls {
        client.delete_queue().queue_url(url).send().await?;
    }
    Ok(Report { human: format!("deleted {} queues", urls.len()), json: json!({"deleted": urls.len()}) })
}

async fn measure(
    client: &aws_sdk_sqs::Client,
    url: &str,
    concurrency: usize,
    duration: Duration,
) -> anyhow::Result<(u64, f64, u64, f64)> {
    let (next, sent) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let started = Instant::now();
    let senders: Vec<_> = (0..concurrency.max(1))
        .map(|_| {
            let (client, url, next, sent) = (client.clone(), url.to_owned(), next.clone(), sent.clone());
            tokio::spawn(async move {
                while started.elapsed() < duration {
                    let entries = (0..10)
                        .map(|j| {
                            let n = next.fetch_add(1, Ordering::Relaxed);
                            SendMessageBatchRequestEntry::builder()
                                .id(format!("m{j}"))
                                .message_body(format!(r#"{{"n":{n},"padding":"{}"}}"#, "x".repeat(500)))
                                .message_group_id(format!("g{}", n % GROUPS))
                                .message_deduplication_id(format!("d{n}"))
                                .build()
                                .expect("id and body are set")
                        })
                        .collect();
                    let out = client.send_message_batch().queue_url(&url).set_entries(Some(entries)).send().await?;
                    sent.fetch_add(out.successful.len() as u64, Ordering::Relaxed);
                }
                Ok::<_, aws_sdk_sqs::Error>(())
            })
        })
        .collect();
    for s in senders {
        s.await?.context("sending")?;
    }
    let (sent, send_secs) = (sent.load(Ordering::Relaxed), started.elapsed().as_secs_f64());

    let received = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let receivers: Vec<_> = (0..concurrency.max(1))
        .map(|_| {
            let (client, url, received) = (client.clone(), url.to_owned(), received.clone());
            tokio::spawn(async move {
                while received.load(Ordering::Relaxed) < sent && started.elapsed() < duration * 3 {
                    let messages = client
                        .receive_message()
                        .queue_url(&url)
                        .max_number_of_messages(10)
                        .wait_time_seconds(1)
                        .send()
                        .await?
                        .messages
                        .unwrap_or_default();
                    if messages.is_empty() {
                        continue;
                    }
                    let entries = messages
                        .iter()
                        .enumerate()
                        .filter_map(|(i, m)| {
                            DeleteMessageBatchRequestEntry::builder()
                                .id(i.to_string())
                                .receipt_handle(m.receipt_handle.clone()?)
                                .build()
                                .ok()
                        })
                        .collect();
                    let out = client.delete_message_batch().queue_url(&url).set_entries(Some(entries)).send().await?;
                    received.fetch_add(out.successful.len() as u64, Ordering::Relaxed);
                }
                Ok::<_, aws_sdk_sqs::Error>(())
            })
        })
        .collect();
    for r in receivers {
        r.await?.context("receiving")?;
    }
    Ok((sent, send_secs, received.load(Ordering::Relaxed), started.elapsed().as_secs_f64()))
}
