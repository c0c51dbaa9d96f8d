//! `GET /api/engagement/active`: the engagements webhooks say are active —
//! the caller's own when the browser has a session (per agent, never one
//! global "latest"), every one otherwise (a plain browser outside Zoom).

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::app::AppState;
use crate::error::{AppError, AppResult};
use crate::session::MaybeSession;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/engagement/active", get(active))
}

async fn active(
    State(state): State<AppState>,
    MaybeSession(session): MaybeSession,
) -> AppResult<Json<Value>> {
    let all = state.engagements.active().await.map_err(|e| {
        tracing::warn!(error = %e, "listing active engagements");
        AppError::Unavailable("the store is unreachable; engagements are unknown".into())
    })?;
    let active: Vec<_> = all
        .iter()
        .filter(|e| {
            session
                .as_ref()
                .is_none_or(|s| e.visible_to(&s.user_id, s.account_id.as_deref()))
        })
        .map(|e| e.view())
        .collect();
    let latest = active.first().cloned();
    Ok(Json(json!({
        "active": latest.is_some(),
        "engagementId": latest.as_ref().map(|e| e.engagement_id.clone()),
        "engagement": latest,
        "engagements": active,
    })))
}
