//! Liveness, readiness, and the operator's engine counters.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::app::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(super::HEALTH_PATH, get(health))
        .route("/ready", get(ready))
        .route("/api/stats", get(stats))
}

async fn health(State(state): State<AppState>) -> Json<Value> {
    let demo = state.config.is_demo();
    Json(json!({
        "status": "ok",
        "mode": if demo { "demo" } else { "zoom" },
        // Demo data is simulated and belongs to no one, so demo mode is open.
        "access": if demo { "open (demo mode: simulated data, no sign-in)" } else { "signed-in callers see only their own engagements" },
        "version": env!("CARGO_PKG_VERSION"),
    }))
}

/// Readiness: a value written to the store is read back (503 with the
/// reason otherwise), so webhooks can be stored. Anonymous, so it tells
/// nothing about the calls going on (that is `/api/stats`, for the operator).
async fn ready(State(state): State<AppState>) -> Result<Json<Value>, crate::error::AppError> {
    state.store.check_write().await.map_err(|e| {
        crate::error::AppError::Unavailable(format!("{} store: {e}", state.store.backend_name()))
    })?;
    Ok(Json(json!({
        "status": "ready",
        "store": state.store.backend_name(),
        "instance": &*state.instance,
    })))
}

/// Engine counters: streams running, frames and transcripts received.
async fn stats(State(state): State<AppState>) -> Json<Value> {
    let mut v = state.rtms.counters().snapshot();
    v["streams_active"] = json!(state.rtms.active_streams());
    Json(v)
}
