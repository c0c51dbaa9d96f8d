//! The Zoom client stand-in: what the Zoom web client (PWA) is to the app.
//!
//! The real SDK in the web client runs the app in an **iframe** and talks to
//! the parent window with `postMessage` (zoom-platform.md §3.5). So:
//!
//! * `GET /sim/client?app=<app URL>[&user=<user id>][&context=tampered]` is
//!   the host page: it frames the app and answers the SDK's messages
//!   (`config`, engagement context/status, `getAppContext`) and pushes
//!   `onEngagementStatusChange` / `onEngagementContextChange` with only the
//!   fields that changed. Its data comes from the JSON/SSE endpoints below.
//! * `GET /sim/appssdk.js` is the stand-in for `appssdk.zoom.us/sdk.min.js`:
//!   a global `zoomSdk` with the same surface, speaking the same messages to
//!   `window.parent`. Outside a frame `config()` rejects like the real one.
//!
//! Owns only the client side; engagements, users and contexts come from the
//! [`SimHandle`]. It never talks to the app except through the browser.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderName, HeaderValue, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine as _;
use futures_util::Stream;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;

use super::SimHandle;

const HOST_HTML: &str = include_str!("client/host.html");
const HOST_JS: &str = include_str!("client/host.js");
const HOST_CSS: &str = include_str!("client/host.css");
const SDK_JS: &str = include_str!("client/appssdk.js");
const ICON_SVG: &str = include_str!("client/icon.svg");

pub fn router() -> Router<SimHandle> {
    Router::new()
        .route("/sim/client", get(host_page))
        .route(
            "/sim/client/host.js",
            get(|| asset(HOST_JS, "text/javascript")),
        )
        .route("/sim/client/host.css", get(|| asset(HOST_CSS, "text/css")))
        .route(
            "/sim/client/icon.svg",
            get(|| asset(ICON_SVG, "image/svg+xml")),
        )
        .route("/sim/client/state", get(state))
        .route("/sim/client/context", get(context))
        .route("/sim/client/events", get(events))
        .route("/sim/appssdk.js", get(sdk))
}

fn bad_request(reason: impl Into<String>) -> Response {
    (
        axum::http::StatusCode::BAD_REQUEST,
        Json(json!({ "error": reason.into() })),
    )
        .into_response()
}

async fn asset(body: &'static str, mime: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(mime)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response()
}

#[derive(Debug, Deserialize)]
struct HostQuery {
    app: Option<String>,
}

async fn host_page(Query(q): Query<HostQuery>) -> Response {
    let Some(app) = q.app.filter(|a| !a.is_empty()) else {
        return bad_request("app is required: /sim/client?app=<URL of the Zoom App>");
    };
    match url::Url::parse(&app) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => {}
        _ => return bad_request(format!("app must be an http(s) URL, got {app:?}")),
    }
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        HOST_HTML,
    )
        .into_response()
}

/// The SDK script is loaded by the app page, which has COEP `require-corp`:
/// it must be explicitly shareable cross-origin.
async fn sdk() -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/javascript; charset=utf-8"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                HeaderName::from_static("cross-origin-resource-policy"),
                HeaderValue::from_static("cross-origin"),
            ),
            (
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                HeaderValue::from_static("*"),
            ),
        ],
        SDK_JS,
    )
        .into_response()
}

fn client_state(handle: &SimHandle) -> Value {
    json!({
        "user": handle.default_user(),
        "engagements": handle.engagements(),
    })
}

async fn state(State(handle): State<SimHandle>) -> Json<Value> {
    Json(client_state(&handle))
}

#[derive(Debug, Deserialize)]
struct ContextQuery {
    user: Option<String>,
    /// `tampered`: flip one ciphertext bit, as an attacker would.
    mode: Option<String>,
}

async fn context(State(handle): State<SimHandle>, Query(q): Query<ContextQuery>) -> Response {
    let user = q
        .user
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| handle.default_user().user_id);
    let token = handle.app_context(&user);
    let token = match q.mode.as_deref() {
        None | Some("") => token,
        Some("tampered") => tamper(&token),
        Some(other) => return bad_request(format!("unknown context mode {other:?}")),
    };
    Json(json!({ "context": token })).into_response()
}

/// Flip one bit of the ciphertext (just before the 16-byte tag); the
/// token keeps its length and alphabet, only authentication can tell.
pub fn tamper(token: &str) -> String {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    let url_safe = token.contains('-') || token.contains('_') || !token.ends_with('=');
    let normalized: String = token
        .trim()
        .trim_end_matches('=')
        .chars()
        .map(|c| match c {
            '-' => '+',
            '_' => '/',
            c => c,
        })
        .collect();
    let Ok(mut bytes) = base64::engine::general_purpose::STANDARD_NO_PAD.decode(normalized) else {
        return format!("{token}tampered");
    };
    if bytes.len() > 17 {
        let i = bytes.len() - 17;
        bytes[i] ^= 0x01;
    } else if let Some(b) = bytes.last_mut() {
        *b ^= 0x01;
    }
    if url_safe {
        URL_SAFE_NO_PAD.encode(bytes)
    } else {
        STANDARD.encode(bytes)
    }
}

/// SSE for the host page: a `state` event on connect and after every client
/// event (the host reconciles against what it last saw, so a missed event
/// or a reconnect cannot leave it wrong).
async fn events(
    State(handle): State<SimHandle>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let rx = handle.client_events();
    // Ends with the simulator, so its graceful shutdown never waits on us.
    let cancel = handle.shared.cancel.clone();
    let first = state_event(&handle);
    let stream =
        futures_util::stream::unfold((handle, rx, Some(first)), move |(handle, mut rx, first)| {
            let cancel = cancel.clone();
            async move {
                if let Some(ev) = first {
                    return Some((Ok(ev), (handle, rx, None)));
                }
                let next = tokio::select! {
                    _ = cancel.cancelled() => return None,
                    next = rx.recv() => next,
                };
                match next {
                    Err(RecvError::Closed) => None,
                    Ok(_) | Err(RecvError::Lagged(_)) => {
                        let ev = state_event(&handle);
                        Some((Ok(ev), (handle, rx, None)))
                    }
                }
            }
        });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

fn state_event(handle: &SimHandle) -> Event {
    Event::default()
        .event("state")
        .retry(Duration::from_millis(300))
        .json_data(client_state(handle))
        .unwrap_or_else(|_| Event::default().comment("unserializable"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tampering_keeps_length_and_alphabet_but_changes_the_bytes() {
        let url = "DAABAgMEBQYHCAkKCwAAmAAAAKidwJpti63zlSGT64lnFIP-cIBjfLbDHLBjL6Fry_Xho0Q2fAn59r7A4tj-pgFD2qhtKShTvCDr2VG-DoEav0rjF7aTglFDUnYpzwBwgBK5mhYLe6jppoXa26uuYxhHrXdLMZrDDJxlcv0A7wp4zAYZzXnHD5Mjm1_kaOSLDxLu_XtMJ3aQPU3XZRwgXUwPsWXZ0SPUD02lOQXaoFklEctYMvQTtbWKWg";
        let t = tamper(url);
        assert_ne!(t, url);
        assert_eq!(t.len(), url.len());
        let err = crate::context::decrypt(&t, "test_client_secret_123").expect_err("tampered");
        assert_eq!(err, crate::context::ContextError::Decrypt);
    }
}
