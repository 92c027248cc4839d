//! Moving messages from a dead-letter queue back to its source queue, once the
//! cause that dead-lettered them is fixed (the services' `dlq redrive`
//! subcommand).
//!
//! A hand loop rather than `StartMessageMoveTask`, which SQS (and the
//! emulator) offer for standard queues only: receive a batch from the DLQ,
//! send it to the source with the same message group (so per-order order is
//! kept: a FIFO DLQ hands out one group's messages in order, one in flight at
//! a time) and a fresh deduplication id derived from the original (the
//! source queue would drop the original id inside its 5-minute window), then
//! delete what was sent from the DLQ. A message whose send failed is released
//! and the run stops, so nothing is lost and nothing loops.

use std::time::{SystemTime, UNIX_EPOCH};

use aws_sdk_sqs::{
    Client,
    types::{DeleteMessageBatchRequestEntry, Message, MessageSystemAttributeName as Sys},
};

use crate::{ATTR_EVENT_TYPE, ATTR_TRACEPARENT, ATTR_TRACESTATE, OutgoingMessage, PublishError, Publisher, dlq_name};

/// The `dlq` admin subcommand both services offer, on the dead-letter queue of
/// the queue the service consumes.
#[derive(Debug, clap::Subcommand)]
pub enum DlqCommand {
    /// Move every message of the dead-letter queue of the queue this service
    /// consumes back to it, with its message group and a fresh deduplication
    /// id; prints what moved. Needs only the SQS settings.
    Redrive {
        /// Only list what would move.
        #[arg(long)]
        dry_run: bool,
    },
}

/// A message found in a dead-letter queue.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DeadLetter {
    pub message_id: String,
    pub group_id: String,
    pub dedup_id: String,
    pub event_type: String,
    /// Receives so far, the DLQ's included.
    pub receive_count: u32,
}

/// What a run did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RedriveReport {
    pub source: String,
    pub dead_letter_queue: String,
    /// Moved back to the source (or, in a dry run, found).
    pub messages: Vec<DeadLetter>,
    /// Refused by the source queue, left in the DLQ: `(message id, reason)`.
    pub failed: Vec<(String, String)>,
    pub dry_run: bool,
}

impl std::fmt::Display for RedriveReport {
    /// What an operator reads: a count line, then one line per message.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (verb, n) = if self.dry_run { ("would move", self.messages.len()) } else { ("moved", self.messages.len()) };
        writeln!(f, "{verb} {n} message(s) from {} to {}", self.dead_letter_queue, self.source)?;
        for m in &self.messages {
            writeln!(f, "  {} group={} type={} receives={}", m.message_id, m.group_id, m.event_type, m.receive_count)?;
        }
        if !self.failed.is_empty() {
            writeln!(f, "{} message(s) refused by {} and left in the DLQ:", self.failed.len(), self.source)?;
            for (id, why) in &self.failed {
                writeln!(f, "  {id}: {why}")?;
            }
        }
        Ok(())
    }
}

/// The deduplication id of a redriven message: the original's with a suffix
/// naming this run, so the source queue does not drop it as a copy, and a
/// retry of the same run does not send it twice. At most 128 characters.
pub fn redrive_dedup_id(original: &str, run: u64) -> String {
    let suffix = format!("-redrive-{run}");
    let keep = 128usize.saturating_sub(suffix.len());
    let original: String = original.chars().take(keep).collect();
    format!("{original}{suffix}")
}

fn dead_letter(m: &Message) -> DeadLetter {
    let system = m.attributes.clone().unwrap_or_default();
    let attr = |name: &str| {
        m.message_attributes.as_ref().and_then(|a| a.get(name)).and_then(|v| v.string_value.clone()).unwrap_or_default()
    };
    DeadLetter {
        message_id: m.message_id.clone().unwrap_or_default(),
        group_id: system.get(&Sys::MessageGroupId).cloned().unwrap_or_default(),
        dedup_id: system.get(&Sys::MessageDeduplicationId).cloned().unwrap_or_default(),
        event_type: attr(ATTR_EVENT_TYPE),
        receive_count: system.get(&Sys::ApproximateReceiveCount).and_then(|c| c.parse().ok()).unwrap_or(0),
    }
}

/// Moves every message of `source`'s dead-letter queue back to `source`; with
/// `dry_run`, only lists them (each is made visible again at once). In a
/// FIFO DLQ a dry run sees at least the oldest message of each group (a group
/// with messages in flight hands out no more).
pub async fn redrive(client: &Client, source: &str, dry_run: bool) -> Result<RedriveReport, PublishError> {
    let publisher = Publisher::new(client.clone());
    let dlq = dlq_name(source);
    let dlq_url = publisher.queue_url(&dlq).await?;
    let fail = |e: &dyn std::error::Error| PublishError {
        queue: dlq.clone(),
        detail: aws_sdk_sqs::error::DisplayErrorContext(e).to_string(),
    };
    let run = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64;
    let mut report =
        RedriveReport { source: source.to_owned(), dead_letter_queue: dlq.clone(), dry_run, ..Default::default() };
    let mut listed_handles = Vec::new();
    loop {
        let received = client
            .receive_message()
            .queue_url(&dlq_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .visibility_timeout(60)
            .message_attribute_names("All")
            .message_system_attribute_names(Sys::All)
            .send()
            .await
            .map_err(|e| fail(&e))?
            .messages
            .unwrap_or_default();
        if received.is_empty() {
            break;
        }
        if dry_run {
            for m in &received {
                report.messages.push(dead_letter(m));
                listed_handles.extend(m.receipt_handle.clone());
            }
            continue;
        }
        let outgoing: Vec<OutgoingMessage> = received
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let d = dead_letter(m);
                let attr = |name: &str| {
                    m.message_attributes.as_ref().and_then(|a| a.get(name)).and_then(|v| v.string_value.clone())
                };
                let original = if d.dedup_id.is_empty() { d.message_id.clone() } else { d.dedup_id.clone() };
                OutgoingMessage {
                    entry_id: i.to_string(),
                    body: m.body.clone().unwrap_or_default(),
                    group_id: d.group_id,
                    dedup_id: redrive_dedup_id(&original, run),
                    event_type: d.event_type,
                    traceparent: attr(ATTR_TRACEPARENT),
                    tracestate: attr(ATTR_TRACESTATE),
                }
            })
            .collect();
        let outcome = publisher.send_batch(source, &outgoing).await?;
        let mut delete = Vec::new();
        for (entry, _) in &outcome.sent {
            let Some(m) = entry.parse::<usize>().ok().and_then(|i| received.get(i)) else { continue };
            report.messages.push(dead_letter(m));
            delete.push(
                DeleteMessageBatchRequestEntry::builder()
                    .id(entry)
                    .receipt_handle(m.receipt_handle.clone().unwrap_or_default())
                    .build()
                    .expect("id and handle are set"),
            );
        }
        if !delete.is_empty() {
            client
                .delete_message_batch()
                .queue_url(&dlq_url)
                .set_entries(Some(delete))
                .send()
                .await
                .map_err(|e| fail(&e))?;
        }
        if !outcome.failed.is_empty() {
            for (entry, why) in outcome.failed {
                let Some(m) = entry.parse::<usize>().ok().and_then(|i| received.get(i)) else { continue };
                report.failed.push((m.message_id.clone().unwrap_or_default(), why));
                listed_handles.extend(m.receipt_handle.clone());
            }
            break;
        }
    }
    // Listed or refused messages are made visible again at once.
    for handle in listed_handles {
        client
            .change_message_visibility()
            .queue_url(&dlq_url)
            .receipt_handle(handle)
            .visibility_timeout(0)
            .send()
            .await
            .map_err(|e| fail(&e))?;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redriven_dedup_ids_are_fresh_per_run_stable_within_one_and_fit_sqs() {
        let a = redrive_dedup_id("0190a1b2-event", 1);
        assert_eq!(a, "0190a1b2-event-redrive-1");
        assert_eq!(a, redrive_dedup_id("0190a1b2-event", 1));
        assert_ne!(a, redrive_dedup_id("0190a1b2-event", 2));
        assert_eq!(redrive_dedup_id(&"x".repeat(200), u64::MAX).len(), 128);
    }
}
