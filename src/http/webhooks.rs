//! `POST /api/webhooks/zoom`: verify on the raw body, store the event in the
//! durable inbox, answer. 200 means stored (it will take effect); when it
//! cannot be stored the answer is a 503 and nothing remains of it, so Zoom's
//! retry is processed.

use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::HeaderMap;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::error::{AppError, AppResult};
use crate::inbox::{AppendError, Appended};
use crate::metrics::{StoreOp, WebhookOutcome, webhook_event_label};
use crate::state::AppState;
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
    let started = Instant::now();
    let (answer, event, outcome) = match body {
        Ok(body) => answer(&state, &headers, &body).await,
        Err(e) => {
            let refused = match e.status() {
                StatusCode::PAYLOAD_TOO_LARGE => AppError::PayloadTooLarge(format!(
                    "webhook body is larger than {} bytes",
                    webhook::MAX_BODY
                )),
                _ => AppError::BadRequest(format!("webhook body could not be read: {e}")),
            };
            let unknown = webhook_event_label(None);
            (Err(refused), unknown, WebhookOutcome::Malformed)
        }
    };
    state.metrics.webhook(event, outcome, started.elapsed());
    answer
}

/// The answer, with the event's kind and outcome for the metrics.
async fn answer(
    state: &AppState,
    headers: &HeaderMap,
    body: &[u8],
) -> (AppResult<Json<Value>>, &'static str, WebhookOutcome) {
    let unknown = webhook_event_label(None);
    let secret = state.config.zoom.secret_token.expose();
    if let Err(e) = webhook::verify(
        secret,
        header(headers, "x-zm-request-timestamp"),
        header(headers, "x-zm-signature"),
        body,
        now_secs(),
    ) {
        tracing::warn!(reason = %e, "webhook rejected");
        let refused = AppError::Unauthorized(e.to_string());
        return (Err(refused), unknown, WebhookOutcome::Rejected);
    }
    let envelope = match webhook::parse(body) {
        Ok(envelope) => envelope,
        Err(e) => {
            let refused = AppError::BadRequest(e.to_string());
            return (Err(refused), unknown, WebhookOutcome::Malformed);
        }
    };
    let event = webhook_event_label(Some(&envelope.body));

    if let WebhookEvent::UrlValidation { plain_token } = &envelope.body {
        let answer = Json(json!({
            "plainToken": plain_token,
            "encryptedToken": webhook::url_validation_token(secret, plain_token),
        }));
        return (Ok(answer), event, WebhookOutcome::Validated);
    }
    let storing = Instant::now();
    let appended = state.inbox.append(&envelope, body).await;
    let stored = !matches!(appended, Err(AppendError::Store(_)));
    state
        .metrics
        .store_call(StoreOp::InboxAppend, storing.elapsed(), stored);
    let (answer, outcome) = match appended {
        Ok(Appended::Stored) => {
            tracing::info!(event = %envelope.event, "webhook stored");
            let answer = Json(json!({ "status": "accepted" }));
            (Ok(answer), WebhookOutcome::Stored)
        }
        Ok(Appended::Duplicate) => {
            tracing::info!(event = %envelope.event, "duplicate webhook dropped");
            let answer = Json(json!({ "status": "duplicate" }));
            (Ok(answer), WebhookOutcome::Duplicate)
        }
        Err(AppendError::Closed) => {
            let refused = AppError::Unavailable("shutting down; Zoom will retry".into());
            (Err(refused), WebhookOutcome::Unavailable)
        }
        Err(AppendError::Store(e)) => {
            tracing::error!(error = %e, event = %envelope.event, "storing a webhook failed");
            let refused =
                AppError::Unavailable("the webhook could not be stored; Zoom will retry".into());
            (Err(refused), WebhookOutcome::Unavailable)
        }
    };
    (answer, event, outcome)
}
