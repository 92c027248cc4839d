//! The metrics the consumer loop and the queue-depth probe record. `queue` is
//! always the queue's name (e.g. `orders-queue.fifo`).

use telemetry::Metric;

pub const RECEIVED: Metric =
    Metric::counter("messages_received_total", "Messages received from a queue by the consumer", &["queue"]);
pub const PROCESSED: Metric = Metric::counter(
    "messages_processed_total",
    "Message handling attempts, by outcome: ack (deleted), retry (redelivered later), reject (left for the DLQ), unavailable (a dependency was down: held and tried again), panic (released)",
    &["queue", "outcome"],
);
pub const HANDLING: Metric = Metric::histogram("message_handling_seconds", "Time to handle one message", &["queue"]);
pub const REJECTED: Metric = Metric::counter(
    "messages_rejected_total",
    "Poison messages left for the dead-letter queue, by reason",
    &["queue", "reason"],
);
pub const DUPLICATE: Metric = Metric::counter(
    "messages_duplicate_total",
    "Redelivered or re-sent messages found in the inbox and skipped",
    &["queue"],
);
pub const QUEUE_MESSAGES: Metric = Metric::gauge(
    "sqs_queue_messages",
    "Approximate messages in a queue: visible (waiting) or in_flight (received, not yet deleted)",
    &["queue", "state"],
);

pub const HELD: Metric = Metric::gauge(
    "consumer_messages_held",
    "Messages held in hand while a dependency is down; receiving is paused while above 0",
    &["queue"],
);

pub const ALL: &[Metric] = &[RECEIVED, PROCESSED, HANDLING, REJECTED, DUPLICATE, QUEUE_MESSAGES, HELD];
