//! `GET /shipments/{order_id}`: the operators' view of an order's shipment and
//! its history.

use axum::{
    Json,
    extract::{Path, State},
    response::{IntoResponse, Response},
};
use utoipa_axum::{router::OpenApiRouter, routes};
use web::Problem;

use super::AppState;
use crate::storage;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(shipment))
}

/// The shipment of an order, with its status history.
#[utoipa::path(
    get, path = "/shipments/{order_id}", tag = "shipments",
    params(("order_id" = uuid::Uuid, Path, description = "The order's id")),
    responses(
        (status = 200, description = "The shipment", content_type = "application/json", body = Object),
        (status = 404, description = "No shipment for this order", content_type = "application/problem+json"),
    )
)]
pub async fn shipment(State(state): State<AppState>, Path(order_id): Path<String>) -> Response {
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
