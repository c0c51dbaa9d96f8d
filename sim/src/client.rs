//! The Zoom client stand-in: what the Zoom web client (PWA) is to the app.
//!
//! The real SDK in the web client runs the app in an **iframe** and talks to
//! the parent window with `postMessage` (`docs/zoom-platform.md` §3.5). So:
//!
//! * `GET /sim/client?app=<app URL>[&user=<user id>][&context=tampered]` is
//!   the host page: it frames the app and answers the SDK's messages
//!   (`config`, engagement context/status, `getAppContext`) and pushes
//!   `onEngagementStatusChange` / `onEngagementContextChange` with only the
//!   fields that changed. Its data comes from the JSON/SSE endpoints below.
//! * `GET /sim/appssdk.js` is the Apps SDK script the app loads in place of
//!   `appssdk.zoom.us/sdk.min.js`: Zoom's own SDK when the simulator is
//!   given the npm package's CommonJS build ([`SimConfig::apps_sdk`], the
//!   browser tests do), wrapped to define the global `zoomSdk` as the CDN
//!   script does; otherwise the stand-in, a global `zoomSdk` with the same
//!   surface speaking the same messages to `window.parent` (offline, demo).
//! * `POST /sim/client/authorize` is the client's side of in-client OAuth:
//!   the host page turns `authorize({codeChallenge, state})` into a code for
//!   its agent and hands it to the app in `onAuthorized`.
//!
//! Owns only the client side; engagements, users and contexts come from the
//! [`SimHandle`]. It never talks to the app except through the browser.

use std::borrow::Cow;
use std::convert::Infallible;
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use axum::extract::{Query, State};
use axum::http::{HeaderName, HeaderValue, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use futures_util::Stream;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;

use super::SimHandle;
use super::state::lock;

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
        .route("/sim/client/authorize", post(authorize))
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

/// The script for `/sim/appssdk.js`: Zoom's SDK read from `path` (the
/// `@zoom/appssdk` CommonJS build) and wrapped, or the stand-in.
pub(crate) fn sdk_script(path: Option<&Path>) -> anyhow::Result<Cow<'static, str>> {
    let Some(path) = path else {
        return Ok(Cow::Borrowed(SDK_JS));
    };
    let cjs = std::fs::read_to_string(path)
        .with_context(|| format!("reading the Apps SDK at {}", path.display()))?;
    anyhow::ensure!(
        cjs.contains("exports[\"default\"]") || cjs.contains("exports.default"),
        "{} is not the CommonJS build of @zoom/appssdk (it exports no default)",
        path.display()
    );
    Ok(Cow::Owned(wrap_commonjs_sdk(&cjs)))
}

/// The npm package ships ES-module and CommonJS builds only; the CDN script
/// the app loads defines a global `zoomSdk`. Run the CommonJS build as a
/// classic script with its own `exports` and expose the default export.
fn wrap_commonjs_sdk(cjs: &str) -> String {
    format!(
        "/* @zoom/appssdk (MIT, Zoom Video Communications), its CommonJS build served by the \
         zcc-rtms simulator with the default export as the global zoomSdk. */\n\
         (function () {{\n\
         var sdkExports = {{}};\n\
         (function (exports, require) {{\n{cjs}\n}})(sdkExports, function (name) {{\n\
         throw new Error(\"the Apps SDK asked for \" + name + \", which a browser does not have\");\n}});\n\
         if (!window.zoomSdk) window.zoomSdk = sdkExports[\"default\"];\n\
         }})();\n"
    )
}

/// The SDK script is loaded by the app page, which has COEP `require-corp`:
/// it must be explicitly shareable cross-origin.
async fn sdk(State(handle): State<SimHandle>) -> Response {
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
        handle.shared.sdk_js.to_string(),
    )
        .into_response()
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AuthorizeBody {
    code_challenge: String,
    redirect_uri: String,
    #[serde(default)]
    user: Option<String>,
}

/// In-client OAuth as the Zoom client does it for its signed-in agent: the
/// app's scopes count as granted (no consent screen), the code is bound to
/// the page URL and the challenge, PKCE `plain` (what Zoom's client uses).
async fn authorize(State(handle): State<SimHandle>, body: axum::body::Bytes) -> Response {
    let Ok(body) = serde_json::from_slice::<AuthorizeBody>(&body) else {
        return bad_request("expected JSON {codeChallenge, redirectUri, user?}");
    };
    if body.code_challenge.is_empty() || body.code_challenge.len() > 256 {
        return bad_request("codeChallenge is required (at most 256 characters)");
    }
    match url::Url::parse(&body.redirect_uri) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => {}
        _ => return bad_request("redirectUri must be an http(s) URL"),
    }
    let user = match body.user.filter(|u| !u.is_empty()) {
        None => handle.default_user().user_id,
        Some(u) if lock(&handle.shared.state).users.contains_key(&u) => u,
        Some(u) => return bad_request(format!("unknown user {u:?}")),
    };
    let code = super::oauth::issue_code(
        &handle.shared,
        user,
        &body.redirect_uri,
        Some((body.code_challenge, "plain".to_owned())),
    );
    Json(json!({ "code": code })).into_response()
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
    fn the_wrapped_sdk_runs_its_commonjs_build_and_exposes_the_default_export() {
        let js = wrap_commonjs_sdk("'use strict';\nexports[\"default\"] = { ok: true };");
        assert!(
            js.contains("(function (exports, require) {\n'use strict';"),
            "{js}"
        );
        assert!(
            js.contains("window.zoomSdk = sdkExports[\"default\"]"),
            "{js}"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sdk.module.js");
        std::fs::write(&path, "exports.other = 1;").expect("write");
        let err = sdk_script(Some(&path)).expect_err("no default export");
        assert!(err.to_string().contains("exports no default"), "{err}");
        assert!(
            sdk_script(None)
                .expect("stand-in")
                .contains("window.zoomSdk = new Proxy(sdk")
        );
    }

    #[test]
    fn tampering_keeps_length_and_alphabet_but_changes_the_bytes() {
        let url = "DAABAgMEBQYHCAkKCwAAmAAAAKidwJpti63zlSGT64lnFIP-cIBjfLbDHLBjL6Fry_Xho0Q2fAn59r7A4tj-pgFD2qhtKShTvCDr2VG-DoEav0rjF7aTglFDUnYpzwBwgBK5mhYLe6jppoXa26uuYxhHrXdLMZrDDJxlcv0A7wp4zAYZzXnHD5Mjm1_kaOSLDxLu_XtMJ3aQPU3XZRwgXUwPsWXZ0SPUD02lOQXaoFklEctYMvQTtbWKWg";
        let t = tamper(url);
        assert_ne!(t, url);
        assert_eq!(t.len(), url.len());
        // That the app refuses it is checked on the app's side (`context.rs`).
    }
}
