//! Handling `order-created` messages from `orders-queue.fifo`: decode strictly,
//! then create the shipments of a whole received batch in one transaction with
//! their inbox records. The shared consumer loop (`messaging::consumer`)
//! deletes a message only after this answers `Ack`, i.e. after the commit.

use std::time::Duration;

use chrono::Utc;
use database::HotPool;
use envelope::Event;
use messaging::{ApplyBatch, Disposition, Received};

use crate::{
    scheduler::DueWaker,
    storage::{self, Applied, NewShipment},
};

/// Turns `order-created` events into shipments.
pub struct OrderCreatedHandler {
    pub db: HotPool,
    /// Delay before the shipment ships.
    pub ship_after: Duration,
    /// Random extra delay, up to this.
    pub jitter: Duration,
    /// Wakes the scheduler when a new shipment is due before it would look.
    pub due: DueWaker,
}

impl ApplyBatch for OrderCreatedHandler {
    const WORK: &'static str = "create shipments";

    /// Creates the shipments of every well-formed message in one transaction and
    /// answers each message.
    async fn apply(&self, messages: &[Received]) -> Result<Vec<Disposition>, sqlx::Error> {
        let now = Utc::now();
        let mut answers: Vec<Option<Disposition>> = vec![None; messages.len()];
        let mut events = Vec::with_capacity(messages.len());
        for (i, message) in messages.iter().enumerate() {
            match messaging::decode_event(message) {
                Ok(Event::OrderCreated(event)) => events.push((i, event)),
                Ok(other) => {
                    let reason = format!("unexpected {} event on the orders queue", other.event_type());
                    answers[i] = Some(Disposition::reject("unexpected_type", reason));
                }
                Err(rejected) => answers[i] = Some(rejected),
            }
        }
        let new: Vec<NewShipment<'_>> = events
            .iter()
            .map(|(i, event)| NewShipment {
                event,
                ship_at: storage::due_after(now, self.ship_after, self.jitter),
                trace: messages[*i].trace.clone(),
            })
            .collect();
        if !new.is_empty() {
            let applied = storage::create_shipments(&self.db, &new).await?;
            for ((i, event), (applied, shipment)) in events.iter().zip(applied.into_iter().zip(&new)) {
                answers[*i] = Some(match applied {
                    Applied::Created(shipment_id) => {
                        tracing::debug!(order_id = %event.order_id, event_id = %event.event_id, %shipment_id, "shipment created");
                        self.due.due_at(shipment.ship_at);
                        Disposition::Ack
                    }
                    Applied::Duplicate => {
                        tracing::debug!(order_id = %event.order_id, event_id = %event.event_id, "duplicate order-created skipped");
                        Disposition::Duplicate
                    }
                });
            }
        }
        Ok(answers.into_iter().map(|a| a.expect("every message answered")).collect())
    }
}
