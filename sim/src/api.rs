//! Zoom's REST API: `GET /v2/users/me` and `PUT
//! /v2/contact_center/{id}/rtms_app/status`, with Zoom's error shapes
//! (`docs/zoom-platform.md` §5.1), every call counted and subject to the
//! `fail_rest` fault. Accepts the access tokens OAuth (`oauth.rs`) issued;
//! issues none.

use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::SimHandle;
use crate::state::lock;

pub(crate) fn router(sim: SimHandle) -> Router<SimHandle> {
    Router::new()
        .route("/v2/users/me", get(users_me))
        .route(
            "/v2/contact_center/{engagement_id}/rtms_app/status",
            put(rtms_app_status),
        )
        .route_layer(middleware::from_fn_with_state(sim, count_rest))
}

fn rest_error(status: StatusCode, code: i64, message: &str) -> Response {
    (status, Json(json!({"code": code, "message": message}))).into_response()
}

fn invalid_token() -> Response {
    rest_error(StatusCode::UNAUTHORIZED, 124, "Invalid access token.")
}

/// Count REST calls by status; apply the `fail_rest` fault.
async fn count_rest(State(sim): State<SimHandle>, req: Request, next: Next) -> Response {
    let failure = lock(&sim.shared.faults).take_rest_failure();
    let resp = match failure {
        Some(status) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let code = if status == StatusCode::TOO_MANY_REQUESTS {
                429
            } else {
                i64::from(status.as_u16())
            };
            rest_error(status, code, "Simulated failure.")
        }
        None => next.run(req).await,
    };
    sim.shared.stats.rest_call(resp.status().as_u16());
    resp
}

/// The user and account of a valid bearer token.
fn bearer(sim: &SimHandle, headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))?
        .trim();
    let st = lock(&sim.shared.state);
    let t = st.access.get(token)?;
    (Instant::now() < t.expires).then(|| (t.user_id.clone(), t.account_id.clone()))
}

async fn users_me(State(sim): State<SimHandle>, headers: HeaderMap) -> Response {
    let Some((user_id, _)) = bearer(&sim, &headers) else {
        return invalid_token();
    };
    let Some(u) = sim.shared.user(&user_id) else {
        return rest_error(StatusCode::NOT_FOUND, 1001, "User does not exist.");
    };
    Json(json!({
        "id": u.user_id,
        "account_id": u.account_id,
        "email": u.email,
        "first_name": u.first_name,
        "last_name": u.last_name,
        "display_name": u.display_name,
        "type": 1,
        "status": "active",
        "role_name": u.role_name,
        "timezone": "UTC",
        "language": "en-US",
    }))
    .into_response()
}

async fn rtms_app_status(
    State(sim): State<SimHandle>,
    Path(engagement_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some((_, account_id)) = bearer(&sim, &headers) else {
        return invalid_token();
    };
    let shared = &sim.shared;
    // Another account's engagement is as good as unknown to this token.
    let engagement = match shared.engagement(&engagement_id) {
        Some(e) if e.account_id == account_id => e,
        _ => return rest_error(StatusCode::NOT_FOUND, 1001, "Engagement does not exist."),
    };
    let body: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return rest_error(
                StatusCode::BAD_REQUEST,
                300,
                &format!("Invalid request body: {e}"),
            );
        }
    };
    let action = body["action"].as_str().unwrap_or_default();
    if !matches!(action, "start" | "stop" | "pause" | "resume") {
        return rest_error(
            StatusCode::BAD_REQUEST,
            300,
            "Invalid field: action must be start, stop, pause or resume.",
        );
    }
    if body["settings"]["client_id"].as_str() != Some(shared.cfg.client_id.as_str()) {
        return rest_error(
            StatusCode::BAD_REQUEST,
            300,
            "Invalid field: settings.client_id.",
        );
    }
    if engagement.state != "active" {
        return rest_error(
            StatusCode::BAD_REQUEST,
            300,
            "The engagement is not active.",
        );
    }
    let result = match action {
        "start" => shared.start_stream(&engagement_id).map(|_| ()),
        "stop" => shared.stop_stream(
            &engagement_id,
            crate::protocol::stop_reason::MANUAL_API_TRIGGERED,
        ),
        "pause" => shared.pause_stream(&engagement_id, true),
        _ => shared.pause_stream(&engagement_id, false),
    };
    match result {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => rest_error(StatusCode::BAD_REQUEST, 300, &e.to_string()),
    }
}
