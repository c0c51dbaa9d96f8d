//! `POST /api/webhooks/zoom`: verify on the raw body, store the event in the
//! durable inbox, answer. 200 means stored (it will take effect); when it
//! cannot be stored the answer is a 503 and nothing remains of it, so Zoom's
//! retry is processed.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::HeaderMap;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::app::AppState;
use crate::error::{AppError, AppResult};
use crate::inbox::{AppendError, Appended};
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
    body: Result<Bytes, BytesRejection>,
) -> AppResult<Json<Value>> {
    let body = body.map_err(|e| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => AppError::PayloadTooLarge(format!(
            "webhook body is larger than {} bytes",
            webhook::MAX_BODY
        )),
        _ => AppError::BadRequest(format!("webhook body could not be read: {e}")),
    })?;
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
    match state.inbox.append(&envelope, &body).await {
        Ok(Appended::Stored) => {
            tracing::info!(event = %envelope.event, "webhook stored");
            Ok(Json(json!({ "status": "accepted" })))
        }
        Ok(Appended::Duplicate) => {
            tracing::info!(event = %envelope.event, "duplicate webhook dropped");
            Ok(Json(json!({ "status": "duplicate" })))
        }
        Err(AppendError::Closed) => Err(AppError::Unavailable(
            "shutting down; Zoom will retry".into(),
        )),
        Err(AppendError::Store(e)) => {
            tracing::error!(error = %e, event = %envelope.event, "storing a webhook failed");
            Err(AppError::Unavailable(
                "the webhook could not be stored; Zoom will retry".into(),
            ))
        }
    }
}
