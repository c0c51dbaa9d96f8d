//! Liveness.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::app::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/health", get(health))
}

async fn health(State(state): State<AppState>) -> Json<Value> {
    Json(json!({
        "status": "ok",
        "mode": if state.config.is_demo() { "demo" } else { "zoom" },
        "version": env!("CARGO_PKG_VERSION"),
    }))
}
