//! The delivery-service's HTTP side: `/healthz`, `/readyz` (PostgreSQL required,
//! SQS optional), `/metrics`, and the internal operator API
//! `GET /shipments/{order_id}`.

use std::time::Duration;

use axum::{
    Json, Router,
    extract::{Path, State},
    response::{IntoResponse, Response},
    routing::get,
};
use messaging::Publisher;
use sqlx::PgPool;
use web::{Accepting, Probe, Problem};

use crate::storage;

#[derive(Clone)]
pub struct AppState {
    pub db: PgPool,
    pub publisher: Publisher,
    pub queues: [String; 2],
    pub accepting: Accepting,
    pub metrics: telemetry::Metrics,
}

const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

pub fn router(state: AppState, request_timeout: Duration) -> Router {
    let router = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/shipments/{order_id}", get(shipment))
        .with_state(state);
    web::layered(router, request_timeout)
}

async fn readyz(State(state): State<AppState>) -> Response {
    let db = state.db.clone();
    let (publisher, [orders, status]) = (state.publisher.clone(), state.queues.clone());
    let probes = vec![
        Probe::required("postgres", async move { database::ping(&db, PROBE_TIMEOUT).await }),
        Probe::optional("sqs", async move {
            publisher.queue_url(&orders).await.map_err(|e| e.to_string())?;
            publisher.queue_url(&status).await.map(drop).map_err(|e| e.to_string())
        }),
    ];
    web::readiness(&state.accepting, PROBE_TIMEOUT, probes).await
}

async fn metrics(State(state): State<AppState>) -> Response {
    database::record_pool_gauges(&state.db);
    let db = state.db.clone();
    let gauges = async move {
        if let Ok(backlog) = outbox::backlog(&db).await {
            metrics::gauge!("outbox_backlog").set(backlog as f64);
        }
        let by_status: Vec<(String, i64)> = sqlx::query_as("SELECT status, count(*) FROM shipments GROUP BY status")
            .fetch_all(&db)
            .await
            .unwrap_or_default();
        for status in ["PROCESSING", "SHIPPED", "DELIVERED"] {
            let n = by_status.iter().find(|(s, _)| s == status).map_or(0, |(_, n)| *n);
            metrics::gauge!("shipments_by_status", "status" => status).set(n as f64);
        }
    };
    let _ = tokio::time::timeout(PROBE_TIMEOUT, gauges).await;
    state.publisher.record_queue_depths(&state.queues, PROBE_TIMEOUT).await;
    web::metrics_response(&state.metrics)
}

async fn shipment(State(state): State<AppState>, Path(order_id): Path<String>) -> Response {
    let Ok(order_id) = uuid::Uuid::parse_str(&order_id) else {
        return Problem::not_found("No shipment for this order id.").into_response();
    };
    match storage::shipment_by_order(&state.db, order_id).await {
        Ok(Some(view)) => Json(view).into_response(),
        Ok(None) => Problem::not_found("No shipment for this order id.").into_response(),
        Err(e) => {
            tracing::error!(error = %e, "shipment lookup failed");
            Problem::internal().into_response()
        }
    }
}
