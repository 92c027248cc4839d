//! `loadgen fill`: a queue full of events as the services send them, so a
//! consumer's drain rate can be read against the SQS ceiling. `order-created`
//! events go to the orders queue (the delivery-service's work), `order-shipped`
//! events for existing orders to the status queue (the order-service's status
//! consumer's work). Sent with the services' own publisher, ten per call.

use std::{path::Path, time::Instant};

use anyhow::Context;
use chrono::Utc;
use envelope::{Address, Envelope, LineItem, OrderCreated, OrderShipped};
use futures::{StreamExt, stream};
use messaging::{OutgoingMessage, Publisher, SqsSettings};
use serde_json::json;
use uuid::Uuid;

use crate::stats::Report;

/// Which event each order gets.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Event {
    OrderCreated,
    OrderShipped,
}

/// One event for `order_id`, as its service would publish it.
fn message(event: Event, order_id: Uuid) -> OutgoingMessage {
    let now = Utc::now();
    let (event_id, event_type, body) = match event {
        Event::OrderCreated => {
            let e = Envelope::new(
                order_id,
                now,
                OrderCreated {
                    customer_id: Uuid::now_v7(),
                    currency: "EUR".into(),
                    items: vec![LineItem { sku: "FILL-1".into(), quantity: 1, unit_price_minor: 1000 }],
                    total_minor: 1000,
                    shipping_address: Address {
                        name: "Load Test".into(),
                        line1: "1 Bench Road".into(),
                        line2: None,
                        city: "London".into(),
                        postal_code: "N1".into(),
                        country: "GB".into(),
                    },
                },
            );
            (e.event_id, e.event_type.clone(), e.to_json())
        }
        Event::OrderShipped => {
            let e = Envelope::new(
                order_id,
                now,
                OrderShipped {
                    shipment_id: Uuid::now_v7(),
                    carrier: "DHL".into(),
                    tracking_number: "FILL0000001".into(),
                    shipped_at: now,
                },
            );
            (e.event_id, e.event_type.clone(), e.to_json())
        }
    };
    OutgoingMessage {
        entry_id: String::new(),
        body,
        group_id: order_id.to_string(),
        dedup_id: event_id.to_string(),
        event_type,
        traceparent: None,
        tracestate: None,
    }
}

/// The order ids in `path` (one per line), or `count` new ones without it.
pub fn order_ids(path: Option<&Path>, count: usize) -> anyhow::Result<Vec<Uuid>> {
    let Some(path) = path else {
        return Ok((0..count).map(|_| Uuid::now_v7()).collect());
    };
    std::fs::read_to_string(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| Uuid::parse_str(l).with_context(|| format!("not an order id: {l}")))
        .collect()
}

/// Sends one `event` per order id (eight calls in flight) to `queue`.
pub async fn fill(endpoint: &str, queue: &str, event: Event, ids: Vec<Uuid>) -> anyhow::Result<Report> {
    let publisher = Publisher::new(messaging::connect(&SqsSettings::local(endpoint)).await);
    let started = Instant::now();
    let batches: Vec<Vec<OutgoingMessage>> = ids
        .chunks(messaging::MAX_BATCH)
        .map(|chunk| {
            chunk
                .iter()
                .enumerate()
                .map(|(i, id)| OutgoingMessage { entry_id: format!("m{i}"), ..message(event, *id) })
                .collect()
        })
        .collect();
    let sent: Vec<usize> = stream::iter(batches)
        .map(|batch| {
            let publisher = &publisher;
            async move {
                let outcome = publisher.send_batch(queue, &batch).await.context("sending a batch")?;
                anyhow::ensure!(outcome.failed.is_empty(), "SQS refused entries: {:?}", outcome.failed);
                Ok(outcome.sent.len())
            }
        })
        .buffer_unordered(8)
        .collect::<Vec<anyhow::Result<usize>>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
    let sent: usize = sent.iter().sum();
    let secs = started.elapsed().as_secs_f64();
    Ok(Report {
        human: format!("sent {sent} {event:?} events to {queue} in {secs:.1} s"),
        json: json!({"what": "fill", "sent": sent, "queue": queue, "seconds": secs}),
    })
}
