//! `GET /orders/{id}/events`: an order's status as Server-Sent Events.
//!
//! One event per history entry: `event:` the status, `id:` the entry's
//! sequence number (1, 2, 3), `data:` `{status, at, carrier, tracking_number}`.
//! The history so far comes first, then each change as it happens; the stream
//! closes after `DELIVERED`. `Last-Event-ID: N` sends only the entries after N,
//! so a reconnecting client misses nothing and sees nothing twice. Keep-alive
//! comments stop proxies from cutting an idle stream.
//!
//! A stream ends no later than the `exp` of the token that opened it (the
//! client resumes with a fresh token and `Last-Event-ID`), so a token that is
//! no longer valid, or a disabled client's, cannot watch for ever. Streams are
//! capped per process (503) and per customer (429); each re-reads its order at
//! a jittered interval around `SSE_RECHECK`, so streams opened together do not
//! query together.

use std::{collections::VecDeque, convert::Infallible, time::Duration};

use tokio::time::Instant;

use axum::{
    extract::{Path, State},
    http::HeaderMap,
    response::sse::{Event, KeepAlive, Sse},
};
use futures::{Stream, stream};
use serde_json::json;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::{AppState, error::ApiError, extract::AuthUser};
use crate::{
    auth::SCOPE_READ,
    domain::{Order, OrderStatus},
    live::{AtCapacity, Subscription},
    metrics,
    storage::orders,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(order_events))
}

/// One event of the stream, as an SSE reader sees it (OpenAPI before 3.2 has
/// a `text/event-stream` schema describe each event).
#[derive(utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct OrderEvent {
    /// The status the history entry records.
    event: OrderStatus,
    /// The entry's sequence number in the order's history, from 1.
    #[schema(pattern = "^[1-9][0-9]*$", example = "2")]
    id: String,
    /// The entry as JSON.
    #[schema(schema_with = event_data)]
    data: String,
}

/// The `data` of an [`OrderEvent`].
#[derive(utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct OrderEventData {
    status: OrderStatus,
    at: chrono::DateTime<chrono::Utc>,
    /// Null before the order ships.
    #[schema(required = true)]
    carrier: Option<String>,
    /// Null before the order ships.
    #[schema(required = true)]
    tracking_number: Option<String>,
}

fn event_data() -> utoipa::openapi::Object {
    use utoipa::{
        PartialSchema,
        openapi::{ObjectBuilder, Type, schema::SchemaType},
    };
    ObjectBuilder::new()
        .schema_type(SchemaType::Type(Type::String))
        .content_media_type("application/json")
        .content_schema(Some(OrderEventData::schema()))
        .build()
}

/// The entries of `order` after sequence number `after`, as SSE events.
fn events_after(order: &Order, after: usize) -> VecDeque<(OrderStatus, Event)> {
    order
        .history
        .iter()
        .enumerate()
        .skip(after)
        .map(|(i, entry)| {
            let shipped = entry.status != OrderStatus::PendingShipment;
            let data = json!({
                "status": entry.status,
                "at": entry.at,
                "carrier": if shipped { order.shipment.carrier.clone() } else { None },
                "tracking_number": if shipped { order.shipment.tracking_number.clone() } else { None },
            });
            let event = Event::default().event(entry.status.as_str()).id((i + 1).to_string()).data(data.to_string());
            (entry.status, event)
        })
        .collect()
}

struct Feed {
    /// Trace context of the change that woke the stream, for the push span.
    cause: Option<String>,
    state: AppState,
    customer_id: Uuid,
    order_id: Uuid,
    sent: usize,
    queue: VecDeque<(OrderStatus, Event)>,
    done: bool,
    subscription: Subscription,
    recheck: Duration,
    /// When the token that opened the stream expires: the stream ends then.
    deadline: Instant,
}

/// `base` scaled by a factor from 0.75 to 1.25 (`unit` in `0..1`), so
/// periodic re-checks of many streams spread out.
fn jittered(base: Duration, unit: f64) -> Duration {
    base.mul_f64(0.75 + 0.5 * unit.clamp(0.0, 1.0))
}

/// How long a stream opened now may last under a token expiring at `exp`
/// (Unix seconds); zero once it has expired.
fn time_left(exp: i64, now: i64) -> Duration {
    Duration::from_secs(u64::try_from(exp.saturating_sub(now)).unwrap_or(0))
}

impl Feed {
    /// Waits for a change (or the periodic re-check), then loads new entries.
    async fn refill(&mut self) -> bool {
        let closing = self.state.live.hub.closing();
        tokio::select! {
            changed = self.subscription.changes.changed() => {
                if changed.is_err() {
                    return false;
                }
                self.cause = self.subscription.changes.borrow_and_update().traceparent.clone();
            }
            () = tokio::time::sleep(jittered(self.recheck, rand::random())) => {}
            () = tokio::time::sleep_until(self.deadline) => return false,
            () = closing.cancelled() => return false,
        }
        match orders::get(&self.state.hot, self.customer_id, self.order_id).await {
            Ok(Some(order)) => {
                self.queue = events_after(&order, self.sent);
                true
            }
            Ok(None) => false,
            Err(e) => {
                tracing::warn!(order_id = %self.order_id, error = %e, "live stream could not reload the order; will retry");
                true
            }
        }
    }
}

fn feed_stream(feed: Feed) -> impl Stream<Item = Result<Event, Infallible>> {
    stream::unfold(feed, |mut feed| async move {
        loop {
            if Instant::now() >= feed.deadline {
                return None;
            }
            if let Some((status, event)) = feed.queue.pop_front() {
                // A push span in the trace of the change that caused it.
                let span = tracing::info_span!("sse.push", order_id = %feed.order_id, status = status.as_str(), sse.id = feed.sent + 1);
                telemetry::propagation::set_parent(&span, feed.cause.as_deref(), None);
                drop(span.entered());
                feed.sent += 1;
                feed.done = status == OrderStatus::Delivered;
                metrics::SSE_EVENTS_SENT.as_counter().increment(1);
                return Some((Ok(event), feed));
            }
            if feed.done || !feed.refill().await {
                return None;
            }
        }
    })
}

/// Follow an order's status live (Server-Sent Events).
#[utoipa::path(
    get, path = "/orders/{id}/events", tag = "orders",
    params(
        ("id" = Uuid, Path, description = "Order id"),
        ("Last-Event-ID" = Option<u32>, Header, nullable = false, minimum = 0, maximum = 2147483647, description = "Resume after this history entry"),
    ),
    responses(
        (status = 200, description = "text/event-stream: one event per history entry (the schema describes one event), closing after DELIVERED or when the token expires", content_type = "text/event-stream", body = OrderEvent),
        (status = 400, description = "Malformed Last-Event-ID", content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid token", content_type = "application/problem+json"),
        (status = 403, description = "Token lacks orders:read", content_type = "application/problem+json"),
        (status = 404, description = "No such order for this customer", content_type = "application/problem+json"),
        (status = 429, description = "This customer holds SSE_MAX_STREAMS_PER_CUSTOMER streams", content_type = "application/problem+json"),
        (status = 503, description = "This process holds SSE_MAX_STREAMS streams", content_type = "application/problem+json"),
    ),
    security(("bearer" = ["orders:read"]))
)]
#[tracing::instrument(name = "orders.events", skip_all, fields(order_id = %id))]
pub async fn order_events(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    user.require(SCOPE_READ)?;
    let order_id = Uuid::parse_str(&id).map_err(|_| ApiError::NotFound)?;
    let after = match headers.get("last-event-id") {
        None => 0,
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
            .filter(|n| i32::try_from(*n).is_ok())
            .map(|n| n as usize)
            .ok_or_else(|| ApiError::BadRequest("Last-Event-ID must be a history sequence number.".into()))?,
    };
    // Subscribe before reading, so a change between the read and the wait is not missed.
    let subscription = state.live.hub.subscribe(order_id, user.customer_id()).map_err(|e| match e {
        AtCapacity::Process => ApiError::TooManyStreams,
        AtCapacity::Customer => ApiError::TooManyCustomerStreams,
    })?;
    let order = orders::get(&state.hot, user.customer_id(), order_id).await?.ok_or(ApiError::NotFound)?;
    let queue = events_after(&order, after);
    let done = after >= order.history.len() && order.status == OrderStatus::Delivered;
    let feed = Feed {
        cause: None,
        customer_id: user.customer_id(),
        order_id,
        sent: after.min(order.history.len()),
        queue,
        done,
        subscription,
        recheck: state.live.recheck,
        deadline: Instant::now() + time_left(user.0.exp, chrono::Utc::now().timestamp()),
        state: state.clone(),
    };
    Ok(Sse::new(feed_stream(feed)).keep_alive(KeepAlive::new().interval(state.live.keepalive)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rechecks_spread_around_the_interval() {
        let base = Duration::from_secs(10);
        assert_eq!(jittered(base, 0.0), Duration::from_millis(7500));
        assert_eq!(jittered(base, 0.5), base);
        assert_eq!(jittered(base, 0.999_999), base.mul_f64(0.75 + 0.5 * 0.999_999));
        assert_eq!(jittered(base, 7.0), Duration::from_millis(12500), "out-of-range input is clamped");
    }

    #[test]
    fn a_stream_lasts_until_its_token_expires() {
        assert_eq!(time_left(1_000, 940), Duration::from_secs(60));
        assert_eq!(time_left(1_000, 1_000), Duration::ZERO);
        assert_eq!(time_left(1_000, 1_020), Duration::ZERO, "accepted within the leeway, but already expired");
    }
}
