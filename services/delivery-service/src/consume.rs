//! Handling `order-created` messages from `orders-queue.fifo`: decode strictly,
//! then create the shipments of a whole received batch in one statement with
//! their inbox records. The shared consumer loop (`messaging::consumer`)
//! deletes a message only after this answers `Ack`, i.e. after the commit.

use std::time::Duration;

use chrono::Utc;
use envelope::Event;
use messaging::{Disposition, Handler, Received};
use sqlx::PgPool;

use crate::{
    scheduler::DueWaker,
    storage::{self, Applied, NewShipment},
};

/// Turns `order-created` events into shipments.
pub struct OrderCreatedHandler {
    pub pool: PgPool,
    /// Delay before the shipment ships.
    pub ship_after: Duration,
    /// Random extra delay, up to this.
    pub jitter: Duration,
    /// Wakes the scheduler when a new shipment is due before it would look.
    pub due: DueWaker,
}

/// Wait before a message whose handling failed for a transient reason (the
/// database) is delivered again.
const RETRY_AFTER: Duration = Duration::from_secs(5);

impl Handler for OrderCreatedHandler {
    async fn handle(&self, message: &Received) -> Disposition {
        match self.apply(std::slice::from_ref(message)).await {
            Ok(mut answers) => answers.pop().expect("one answer per message"),
            Err(e) => {
                tracing::warn!(message_id = %message.message_id, error = %e, "could not create the shipment; will retry");
                Disposition::Retry { after: RETRY_AFTER }
            }
        }
    }

    async fn handle_batch(&self, messages: &[Received]) -> Option<Vec<Disposition>> {
        match self.apply(messages).await {
            Ok(answers) => Some(answers),
            Err(e) => {
                tracing::warn!(messages = messages.len(), error = %e, "creating a batch of shipments failed; one by one instead");
                None
            }
        }
    }
}

impl OrderCreatedHandler {
    /// Creates the shipments of every well-formed message in one statement and
    /// answers each message; a transient database error answers
    /// [`Disposition::Unavailable`] for all (held, no receive count spent), any
    /// other is returned.
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
            match storage::create_shipments(&self.pool, &new).await {
                Ok(applied) => {
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
                // The database is away: hold the messages (no receive count spent) until it is back.
                Err(e) if messaging::is_transient(&e) => {
                    let reason = format!("database unavailable: {e}");
                    for (i, _) in &events {
                        answers[*i] = Some(Disposition::unavailable(reason.clone()));
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(answers.into_iter().map(|a| a.expect("every message answered")).collect())
    }
}
