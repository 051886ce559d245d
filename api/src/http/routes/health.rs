//! `/healthz`, `/readyz` and `/metrics`: answered without a token.

use std::time::Duration;

use actix_web::{web, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

use crate::http::metrics::OPENMETRICS_CONTENT_TYPE;
use crate::http::problem::{ApiError, Problem};
use crate::http::state::AppState;

/// A projection may lag at most this much for Berth to count as ready.
pub const MAX_READY_LAG_SECONDS: f64 = 5.0;

/// How long the readiness probe waits for the database.
const DATABASE_TIMEOUT: Duration = Duration::from_secs(2);

/// The body of `/healthz` and `/readyz`.
#[derive(Debug, Serialize, ToSchema)]
pub struct HealthStatus {
    /// `ok` (alive) or `ready`.
    pub status: &'static str,
}

/// Answers 200 while the process lives.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "health",
    security(()),
    responses((status = 200, description = "The process is alive", body = HealthStatus))
)]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(HealthStatus { status: "ok" })
}

/// Answers 200 when the database answers and every projection lags less than 5 s.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "health",
    security(()),
    responses(
        (status = 200, description = "Ready to serve", body = HealthStatus),
        (status = 503, description = "Not ready; the detail says why", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let statuses = tokio::time::timeout(DATABASE_TIMEOUT, berth_projections::status(&state.pool))
        .await
        .map_err(|_| ApiError::Unavailable("the database did not answer in time".into()))?
        .map_err(|e| {
            tracing::warn!(error = %e, "readiness check: the database does not answer");
            ApiError::Unavailable("the database does not answer".into())
        })?;
    let behind: Vec<String> = statuses
        .iter()
        .filter(|s| s.lag_seconds >= MAX_READY_LAG_SECONDS)
        .map(|s| format!("{} ({:.1} s behind)", s.name, s.lag_seconds))
        .collect();
    if behind.is_empty() {
        Ok(HttpResponse::Ok().json(HealthStatus { status: "ready" }))
    } else {
        Err(ApiError::Unavailable(format!(
            "projections lag {MAX_READY_LAG_SECONDS} s or more: {}",
            behind.join(", ")
        )))
    }
}

/// Prometheus metrics in the OpenMetrics text format.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "health",
    security(()),
    responses((status = 200, description = "Metrics", content_type = "application/openmetrics-text", body = String))
)]
pub async fn metrics(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    // Store gauges keep their last values when the database cannot be read, so a
    // scrape still returns the HTTP metrics.
    if let Err(e) = state.metrics.refresh_store_gauges(&state.pool).await {
        tracing::warn!(error = %e, "metrics: could not read the store's state");
    }
    state.metrics.set_circuits(
        state
            .gateway
            .guards()
            .tripped()
            .into_iter()
            .map(|(id, circuit)| (id.to_string(), circuit.name())),
    );
    let text = state.metrics.render().map_err(ApiError::internal)?;
    Ok(HttpResponse::Ok()
        .content_type(OPENMETRICS_CONTENT_TYPE)
        .body(text))
}
