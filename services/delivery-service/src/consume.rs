//! Handling `order-created` messages from `orders-queue.fifo`: decode strictly,
//! then create the shipment in one transaction with the inbox record. The
//! shared consumer loop (`messaging::consumer`) deletes the message only after
//! this returns `Ack`, i.e. after the commit.

use std::time::Duration;

use chrono::Utc;
use envelope::Event;
use messaging::{Disposition, Handler, Received};
use sqlx::PgPool;

use crate::{
    scheduler::DueWaker,
    storage::{self, Applied},
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
        let event = match messaging::decode_event(message) {
            Ok(Event::OrderCreated(event)) => event,
            Ok(other) => {
                let reason = format!("unexpected {} event on the orders queue", other.event_type());
                return Disposition::reject("unexpected_type", reason);
            }
            Err(rejected) => return rejected,
        };
        let ship_at = storage::due_after(Utc::now(), self.ship_after, self.jitter);
        match storage::create_shipment(&self.pool, &event, ship_at).await {
            Ok(Applied::Created(shipment_id)) => {
                tracing::debug!(order_id = %event.order_id, event_id = %event.event_id, %shipment_id, "shipment created");
                self.due.due_at(ship_at);
                Disposition::Ack
            }
            Ok(Applied::Duplicate) => {
                tracing::debug!(order_id = %event.order_id, event_id = %event.event_id, "duplicate order-created skipped");
                Disposition::Duplicate
            }
            // The database is away: hold the message (no receive count spent) until it is back.
            Err(e) if messaging::is_transient(&e) => Disposition::unavailable(format!("database unavailable: {e}")),
            Err(e) => {
                tracing::warn!(order_id = %event.order_id, error = %e, "could not create the shipment; will retry");
                Disposition::Retry { after: RETRY_AFTER }
            }
        }
    }
}
