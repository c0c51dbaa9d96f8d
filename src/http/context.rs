//! `GET /api/context?token=…`: the page hands over the app context it got from
//! `zoomSdk.getAppContext()` (the PWA sends no `X-Zoom-App-Context` header,
//! so a GET with the token is the way in). A valid context binds the browser
//! session to the Zoom user; anything else is a 401 with the reason and the
//! session cookie is left as it was.
//!
//! The header is accepted as a fallback when no token is given, never
//! required. Decryption and claim checks live in `crate::context`.

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::routing::get;
use axum::{Json, Router};
use axum_extra::extract::PrivateCookieJar;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::context;
use crate::error::{AppError, AppResult};
use crate::http::session::{self, SessionData};
use crate::state::AppState;
use crate::time::now_ms;

pub const CONTEXT_HEADER: &str = "x-zoom-app-context";

pub fn router() -> Router<AppState> {
    Router::new().route("/api/context", get(bind))
}

#[derive(Debug, Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

async fn bind(
    State(state): State<AppState>,
    jar: PrivateCookieJar,
    headers: HeaderMap,
    Query(q): Query<TokenQuery>,
) -> AppResult<(PrivateCookieJar, Json<Value>)> {
    let token = q
        .token
        .filter(|t| !t.trim().is_empty())
        .or_else(|| {
            headers
                .get(CONTEXT_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        })
        .ok_or_else(|| {
            AppError::BadRequest(
                "token is required: pass getAppContext().context as ?token=".into(),
            )
        })?;
    let zoom = &state.config.zoom;
    let now = now_ms();
    let ctx = context::verify(&token, &zoom.client_id, zoom.client_secret.expose(), now).map_err(
        |e| {
            tracing::info!(reason = %e, "app context refused");
            AppError::Unauthorized(e.to_string())
        },
    )?;
    // A ZCC context names no account: take the one this user installed the
    // app in (the install is often done in another browser than Zoom's
    // webview), else the one this browser's session knows for the same user.
    let known = session::read(&jar)
        .filter(|s| s.user_id == ctx.user_id())
        .and_then(|s| s.account_id);
    let account_id = match state.store.account_of_user(ctx.user_id()).await {
        Ok(Some(account)) => Some(account),
        Ok(None) => known,
        Err(e) => {
            tracing::warn!(error = %e, "looking up the user's account");
            known
        }
    };
    let data = SessionData {
        user_id: ctx.user_id().to_owned(),
        account_id,
        expires_at_ms: now + session::SESSION_TTL_MS,
    };
    tracing::debug!(typ = ?ctx.typ, "app context accepted");
    let body = json!({
        "userId": data.user_id,
        "accountId": data.account_id,
        "expiresAt": data.expires_at_ms,
        "runningContext": ctx.typ,
    });
    Ok((jar.add(session::cookie(&data)), Json(body)))
}
