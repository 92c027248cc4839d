//! `/healthz` (the process is alive), `/readyz` (can it serve: PostgreSQL is
//! required; Redis and SQS are optional, their loss is reported as degraded)
//! and `/metrics` (Prometheus text format).

use std::{sync::Arc, time::Duration};

use axum::{Json, extract::State, http::StatusCode, response::IntoResponse};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::AppState;

/// Probes for `/readyz`, each bounded by a timeout.
#[derive(Clone)]
pub struct Readiness {
    pub sqs: messaging::Publisher,
    pub queue: String,
    pub timeout: Duration,
    pub ready: Arc<std::sync::atomic::AtomicBool>,
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
}

/// Liveness: answers while the process runs.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "Alive", body = String)))]
pub async fn healthz() -> &'static str {
    "ok"
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Check {
    /// `up` or `down`.
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReadyReport {
    /// `ready`, `degraded` (serving, some optional dependency down) or `unavailable`.
    pub status: &'static str,
    pub postgres: Check,
    pub redis: Check,
    pub sqs: Check,
}

fn check(result: Result<(), String>) -> Check {
    match result {
        Ok(()) => Check {
            status: "up",
            detail: None,
        },
        Err(detail) => Check {
            status: "down",
            detail: Some(detail),
        },
    }
}

/// Readiness: 200 while PostgreSQL answers (naming any optional dependency that
/// is down), 503 without PostgreSQL or while shutting down.
#[utoipa::path(get, path = "/readyz", tag = "operations", responses(
    (status = 200, description = "Ready or degraded", body = ReadyReport),
    (status = 503, description = "Not ready", body = ReadyReport)))]
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let r = &state.readiness;
    let postgres = async {
        match tokio::time::timeout(r.timeout, sqlx::query("SELECT 1").execute(&state.db)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("no answer in time".to_owned()),
        }
    };
    let redis = async {
        tokio::time::timeout(r.timeout, state.idempotency.ping())
            .await
            .unwrap_or(Err("no answer in time".into()))
    };
    let sqs = async {
        match tokio::time::timeout(r.timeout, r.sqs.queue_url(&r.queue)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("no answer in time".to_owned()),
        }
    };
    let (postgres, redis, sqs) = tokio::join!(postgres, redis, sqs);
    let (postgres, redis, sqs) = (check(postgres), check(redis), check(sqs));
    let accepting = r.ready.load(std::sync::atomic::Ordering::Relaxed);
    let (code, status) = if postgres.status == "down" || !accepting {
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
    } else if redis.status == "down" || sqs.status == "down" {
        (StatusCode::OK, "degraded")
    } else {
        (StatusCode::OK, "ready")
    };
    metrics::gauge!("dependency_up", "dependency" => "redis").set(if redis.status == "up" {
        1.0
    } else {
        0.0
    });
    metrics::gauge!("dependency_up", "dependency" => "sqs").set(if sqs.status == "up" {
        1.0
    } else {
        0.0
    });
    metrics::gauge!("dependency_up", "dependency" => "postgres").set(if postgres.status == "up" {
        1.0
    } else {
        0.0
    });
    (
        code,
        Json(ReadyReport {
            status,
            postgres,
            redis,
            sqs,
        }),
    )
}

/// Prometheus metrics in the text exposition format.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus text format", body = String)))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let pool = &state.db;
    metrics::gauge!("db_pool_connections", "state" => "idle").set(pool.num_idle() as f64);
    metrics::gauge!("db_pool_connections", "state" => "total").set(f64::from(pool.size()));
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        state.metrics.render(),
    )
}
