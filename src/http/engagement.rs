//! `GET /api/engagement/active`: the engagements webhooks say are active.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::app::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/engagement/active", get(active))
}

async fn active(State(state): State<AppState>) -> Json<Value> {
    let active: Vec<_> = state
        .engagements
        .active()
        .await
        .iter()
        .map(|e| e.view())
        .collect();
    let latest = active.first().cloned();
    Json(json!({
        "active": latest.is_some(),
        "engagementId": latest.as_ref().map(|e| e.engagement_id.clone()),
        "engagement": latest,
        "engagements": active,
    }))
}
