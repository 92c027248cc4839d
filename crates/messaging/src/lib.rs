//! Messaging mechanics shared by every orderflow service: building the SQS
//! client (with an endpoint override for the local emulator), provisioning
//! FIFO queues with their dead-letter queues, publishing batches of events, the
//! consumer loop that reads a queue into a service's handler, and the consumer's
//! inbox (the PostgreSQL table that makes handling exactly-once).
//!
//! The transactional outbox that feeds [`Publisher`] lives in the `outbox`
//! crate; this one owns everything on the receiving side.

pub mod client;
pub mod consumer;
pub mod inbox;
pub mod metrics;
pub mod provision;
pub mod publish;
pub mod redrive;

pub use client::{SqsSettings, connect};
pub use consumer::{
    ApplyBatch, ConsumeError, Consumer, ConsumerConfig, Disposition, Handler, PollOutcome, RETRY_AFTER, Received,
    Settle, decode_event, is_transient, settle,
};
pub use provision::{QueueUrls, dlq_name, ensure_fifo_queue, ensure_fifo_queues};
pub use publish::{BatchOutcome, OutgoingMessage, PublishError, Publisher, QueueDepth};
pub use redrive::{DeadLetter, DlqCommand, RedriveReport, redrive};

pub use aws_sdk_sqs::Client as SqsClient;

/// The message attribute carrying the event type, so consumers and operators can
/// filter without parsing the body.
pub const ATTR_EVENT_TYPE: &str = "event_type";
/// W3C trace context attributes.
pub const ATTR_TRACEPARENT: &str = "traceparent";
pub const ATTR_TRACESTATE: &str = "tracestate";

/// SQS allows at most ten entries per batch call.
pub const MAX_BATCH: usize = 10;
