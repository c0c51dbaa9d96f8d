//! `GET /api/engagement/active`: the active engagements the caller may see —
//! an agent's own (the agent Zoom named), a supervisor's account's, every
//! one for the operator — read from the matching store index, never one
//! global "latest".

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::access::Caller;
use crate::error::{AppError, AppResult};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/engagement/active", get(active))
}

async fn active(State(state): State<AppState>, caller: Caller) -> AppResult<Json<Value>> {
    let mut list = crate::access::active_engagements(&state.store, &caller)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "listing active engagements");
            AppError::Unavailable("the store is unreachable; engagements are unknown".into())
        })?;
    list.sort_by_key(|e| std::cmp::Reverse(e.started_at_ms));
    let active: Vec<_> = list.iter().map(|e| e.view()).collect();
    let latest = active.first().cloned();
    Ok(Json(json!({
        "active": latest.is_some(),
        "engagementId": latest.as_ref().map(|e| e.engagement_id.clone()),
        "engagement": latest,
        "engagements": active,
    })))
}
