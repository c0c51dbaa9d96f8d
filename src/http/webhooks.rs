//! `POST /api/webhooks/zoom`: verify on the raw body, answer at once, queue
//! the work.

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::HeaderMap;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};
use tokio::sync::mpsc::error::TrySendError;

use crate::app::AppState;
use crate::error::{AppError, AppResult};
use crate::time::now_secs;
use crate::webhook::{self, WebhookEvent};

pub fn router() -> Router<AppState> {
    Router::new().route(
        "/api/webhooks/zoom",
        post(receive).layer(DefaultBodyLimit::max(webhook::MAX_BODY)),
    )
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

async fn receive(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> AppResult<Json<Value>> {
    let secret = state.config.zoom.secret_token.expose();
    webhook::verify(
        secret,
        header(&headers, "x-zm-request-timestamp"),
        header(&headers, "x-zm-signature"),
        &body,
        now_secs(),
    )
    .map_err(|e| {
        tracing::warn!(reason = %e, "webhook rejected");
        AppError::Unauthorized(e.to_string())
    })?;
    let envelope = webhook::parse(&body).map_err(|e| AppError::BadRequest(e.to_string()))?;

    if let WebhookEvent::UrlValidation { plain_token } = &envelope.body {
        return Ok(Json(json!({
            "plainToken": plain_token,
            "encryptedToken": webhook::url_validation_token(secret, plain_token),
        })));
    }
    if !state.dedup.first_seen(&envelope.dedup_key()).await {
        tracing::info!(event = %envelope.event, "duplicate webhook dropped");
        return Ok(Json(json!({ "status": "duplicate" })));
    }
    tracing::info!(event = %envelope.event, "webhook accepted");
    match state.webhooks.try_send(envelope) {
        Ok(()) => Ok(Json(json!({ "status": "accepted" }))),
        Err(TrySendError::Full(_)) => Err(AppError::Unavailable(
            "webhook queue is full; Zoom will retry".into(),
        )),
        Err(TrySendError::Closed(_)) => Err(AppError::Unavailable(
            "shutting down; Zoom will retry".into(),
        )),
    }
}
