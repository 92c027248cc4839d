//! Live order updates for Server-Sent Event streams, across replicas.
//!
//! The status consumer commits each change with `pg_notify('order_events',
//! '<order_id> <traceparent>')`. Every order-service process LISTENs on that channel (one
//! connection per process, in [`LiveHub::listen`]) and bumps a per-order
//! `watch` channel that the streams of that order in this process wait on. So
//! a change applied by any replica reaches streams held by every replica, and
//! only after its transaction committed (PostgreSQL delivers notifications at
//! commit), which is why PostgreSQL, not Redis pub/sub, carries them: the
//! notification can never overtake the data, and Redis is optional here.
//!
//! A `watch` channel keeps only the latest value, so a slow stream costs one
//! slot however many changes it misses; it re-reads the history from the
//! database when it wakes. If the LISTEN connection drops, every stream is
//! woken on reconnect to re-check, and streams also re-check periodically.
//!
//! Streams are capped per process (`SSE_MAX_STREAMS`) and per customer
//! (`SSE_MAX_STREAMS_PER_CUSTOMER`), so one customer cannot take every slot.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
};

use shutdown::{CancellationToken, retry::Backoff};
use sqlx::{PgPool, postgres::PgListener};
use tokio::sync::watch;
use uuid::Uuid;

use crate::{
    metrics,
    status::{NOTIFY_CHANNEL, parse_notify_payload},
};

#[derive(Clone)]
pub struct LiveHub {
    inner: Arc<Inner>,
}

struct Inner {
    orders: Mutex<HashMap<Uuid, watch::Sender<Change>>>,
    /// Open streams per customer; a customer with none has no entry.
    customers: Mutex<HashMap<Uuid, usize>>,
    open: AtomicUsize,
    max_streams: usize,
    max_per_customer: usize,
    /// Cancelled when the process begins to shut down: streams end so that
    /// graceful shutdown is not held open (clients resume with Last-Event-ID).
    closing: CancellationToken,
}

/// The latest change of an order: a counter (streams re-read on any bump) and
/// the trace context of the change, when known.
#[derive(Debug, Clone, Default)]
pub struct Change {
    pub seq: u64,
    pub traceparent: Option<String>,
}

/// Why a stream was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum AtCapacity {
    /// This process holds `SSE_MAX_STREAMS` streams.
    Process,
    /// This customer holds `SSE_MAX_STREAMS_PER_CUSTOMER` streams here.
    Customer,
}

/// One stream's interest in one order; dropping it frees the slot.
pub struct Subscription {
    hub: LiveHub,
    order_id: Uuid,
    customer_id: Uuid,
    pub changes: watch::Receiver<Change>,
}

impl LiveHub {
    pub fn new(max_streams: usize, max_per_customer: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                orders: Mutex::default(),
                customers: Mutex::default(),
                open: AtomicUsize::new(0),
                max_streams,
                max_per_customer,
                closing: CancellationToken::new(),
            }),
        }
    }

    /// Streams open in this process.
    pub fn open_streams(&self) -> usize {
        self.inner.open.load(Ordering::Relaxed)
    }

    pub fn closing(&self) -> CancellationToken {
        self.inner.closing.clone()
    }

    /// Registers a stream of `customer_id` for `order_id`, unless the
    /// customer or the process is at its limit.
    pub fn subscribe(&self, order_id: Uuid, customer_id: Uuid) -> Result<Subscription, AtCapacity> {
        {
            let mut customers = self.inner.customers.lock().expect("hub lock");
            let held = customers.entry(customer_id).or_insert(0);
            if *held >= self.inner.max_per_customer {
                if *held == 0 {
                    customers.remove(&customer_id);
                }
                return Err(AtCapacity::Customer);
            }
            *held += 1;
        }
        let open = self.inner.open.fetch_add(1, Ordering::SeqCst);
        if open >= self.inner.max_streams {
            self.inner.open.fetch_sub(1, Ordering::SeqCst);
            self.release_customer(customer_id);
            return Err(AtCapacity::Process);
        }
        metrics::SSE_STREAMS_OPEN.as_gauge().set((open + 1) as f64);
        let changes = self
            .inner
            .orders
            .lock()
            .expect("hub lock")
            .entry(order_id)
            .or_insert_with(|| watch::channel(Change::default()).0)
            .subscribe();
        Ok(Subscription { hub: self.clone(), order_id, customer_id, changes })
    }

    fn release_customer(&self, customer_id: Uuid) {
        let mut customers = self.inner.customers.lock().expect("hub lock");
        if let Some(held) = customers.get_mut(&customer_id) {
            *held -= 1;
            if *held == 0 {
                customers.remove(&customer_id);
            }
        }
    }

    /// Streams `customer_id` holds in this process.
    pub fn customer_streams(&self, customer_id: Uuid) -> usize {
        self.inner.customers.lock().expect("hub lock").get(&customer_id).copied().unwrap_or(0)
    }

    /// Wakes the streams of `order_id` in this process.
    pub fn notify(&self, order_id: Uuid, traceparent: Option<String>) {
        if let Some(tx) = self.inner.orders.lock().expect("hub lock").get(&order_id) {
            tx.send_modify(|c| {
                c.seq += 1;
                c.traceparent = traceparent;
            });
        }
    }

    fn notify_all(&self) {
        for tx in self.inner.orders.lock().expect("hub lock").values() {
            tx.send_modify(|c| c.seq += 1);
        }
    }

    /// LISTENs for order changes until `stop`, reconnecting after failures.
    pub async fn listen(self, pool: PgPool, stop: CancellationToken) {
        let mut backoff = Backoff::default();
        while !stop.is_cancelled() {
            let connected = async {
                let mut listener = PgListener::connect_with(&pool).await?;
                listener.listen(NOTIFY_CHANNEL).await?;
                Ok::<_, sqlx::Error>(listener)
            };
            let mut listener = match connected.await {
                Ok(l) => l,
                Err(e) => {
                    let pause = backoff.next_delay();
                    tracing::warn!(error = %e, retry_in_ms = pause.as_millis() as u64, "cannot LISTEN for order changes; retrying");
                    tokio::select! { () = stop.cancelled() => break, () = tokio::time::sleep(pause) => {} }
                    continue;
                }
            };
            backoff.reset();
            // Anything may have changed while we were not listening.
            self.notify_all();
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    n = listener.try_recv() => match n {
                        Ok(Some(n)) => match parse_notify_payload(n.payload()) {
                            Some((id, traceparent)) => self.notify(id, traceparent),
                            None => tracing::warn!(payload = n.payload(), "ignoring a malformed order notification"),
                        },
                        Ok(None) => { self.notify_all(); } // connection lost and re-established by sqlx
                        Err(e) => {
                            tracing::warn!(error = %e, "order notification listener failed; reconnecting");
                            break;
                        }
                    }
                }
            }
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let inner = &self.hub.inner;
        let open = inner.open.fetch_sub(1, Ordering::SeqCst) - 1;
        metrics::SSE_STREAMS_OPEN.as_gauge().set(open as f64);
        self.hub.release_customer(self.customer_id);
        let mut orders = inner.orders.lock().expect("hub lock");
        // The receiver in `self.changes` is still alive here, hence `<= 1`.
        if orders.get(&self.order_id).is_some_and(|tx| tx.receiver_count() <= 1) {
            orders.remove(&self.order_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn limits_open_streams_and_frees_slots_on_drop() {
        let hub = LiveHub::new(2, 10);
        let id = Uuid::now_v7();
        let customer = Uuid::now_v7();
        let a = hub.subscribe(id, customer).unwrap();
        let _b = hub.subscribe(Uuid::now_v7(), customer).unwrap();
        assert_eq!(hub.subscribe(id, Uuid::now_v7()).err(), Some(AtCapacity::Process));
        assert_eq!(hub.customer_streams(customer), 2, "a refusal takes no customer slot");
        drop(a);
        assert_eq!(hub.open_streams(), 1);
        let mut c = hub.subscribe(id, customer).unwrap();
        hub.notify(id, None);
        assert!(c.changes.has_changed().unwrap());
        c.changes.mark_unchanged();
        hub.notify(Uuid::now_v7(), None);
        assert!(!c.changes.has_changed().unwrap(), "other orders' changes do not wake this stream");
    }

    #[test]
    fn limits_streams_per_customer() {
        let hub = LiveHub::new(10, 2);
        let (greedy, other, order) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let a = hub.subscribe(order, greedy).unwrap();
        let _b = hub.subscribe(order, greedy).unwrap();
        assert_eq!(hub.subscribe(order, greedy).err(), Some(AtCapacity::Customer));
        assert_eq!(hub.open_streams(), 2);
        let _c = hub.subscribe(order, other).expect("another customer still gets a stream");
        drop(a);
        assert_eq!(hub.customer_streams(greedy), 1);
        let _d = hub.subscribe(order, greedy).expect("a freed slot is reusable");
        drop(_d);
        drop(_b);
        assert_eq!(hub.customer_streams(greedy), 0);
        assert!(hub.inner.customers.lock().unwrap().get(&greedy).is_none(), "no entry is kept for idle customers");
    }
}
