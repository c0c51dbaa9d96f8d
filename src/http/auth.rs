//! OAuth install and status: `/api/auth/install`, `/callback`, `/status`,
//! and the in-client (`zoomSdk.authorize`) pair `/challenge` + `/exchange`.
//!
//! Owns the browser-facing side of the install; the token work is the Zoom
//! client's. A callback without `state` (Marketplace "Add", Local Test) is a
//! normal install: the tokens are stored, but nobody is signed in by it.
//! Each `state` is tied to the browser that asked for it by a short-lived,
//! encrypted nonce cookie: a callback or exchange only signs in the browser
//! that started the install (no login CSRF with someone else's `state`).

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum_extra::extract::cookie::PrivateCookieJar;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::{AppError, AppResult};
use crate::http::session::{MaybeSession, SESSION_TTL_MS, SessionData};
use crate::state::AppState;
use crate::store::TokenRecord;
use crate::time::{now_ms, now_secs};
use crate::zoom::oauth::{self, PkceMethod, STATE_TTL_SECS, StateError, StateSigner};
use crate::zoom::{Caller, ZoomError};

/// The cookie that ties an install's `state` to its browser.
pub const NONCE_COOKIE: &str = "zcc_oauth";

/// The nonce cookie for a freshly issued `state`: encrypted, HttpOnly,
/// gone after the state's lifetime. `SameSite=None` because the in-client
/// flow runs in the Zoom web client's frame.
fn nonce_cookie(nonce: &str) -> axum_extra::extract::cookie::Cookie<'static> {
    axum_extra::extract::cookie::Cookie::build((NONCE_COOKIE, nonce.to_owned()))
        .path("/api/auth")
        .secure(true)
        .http_only(true)
        .same_site(axum_extra::extract::cookie::SameSite::None)
        .max_age(time_max_age())
        .build()
}

fn time_max_age() -> cookie::time::Duration {
    cookie::time::Duration::seconds(STATE_TTL_SECS)
}

/// Was this `state`'s nonce issued to this browser?
fn nonce_matches(jar: &PrivateCookieJar, nonce: &str) -> bool {
    use subtle::ConstantTimeEq as _;
    jar.get(NONCE_COOKIE)
        .is_some_and(|c| bool::from(c.value().as_bytes().ct_eq(nonce.as_bytes())))
}

fn without_nonce(jar: PrivateCookieJar) -> PrivateCookieJar {
    jar.remove(axum_extra::extract::cookie::Cookie::build(NONCE_COOKIE).path("/api/auth"))
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/auth/install", get(install))
        .route("/api/auth/callback", get(callback))
        .route("/api/auth/status", get(status))
        .route("/api/auth/challenge", get(challenge))
        .route("/api/auth/exchange", post(exchange))
}

/// Who the caller is, as far as Zoom calls are concerned.
pub enum CallerOf {
    /// A session bound to a Zoom user and account.
    Session(Caller),
    /// Demo mode without a session: the simulator's default user.
    Demo(Caller),
    /// Demo mode before the automatic install finished.
    DemoPending,
    /// Zoom mode without a session: the page must pass its app context.
    NoContext,
}

pub fn caller_of(state: &AppState, session: &MaybeSession) -> CallerOf {
    if let Some(s) = &session.0
        && let Some(account_id) = &s.account_id
    {
        return CallerOf::Session(Caller {
            account_id: account_id.clone(),
            user_id: Some(s.user_id.clone()),
        });
    }
    if let Some(user) = &state.demo_user {
        return match user.caller() {
            Some(c) => CallerOf::Demo(c),
            None => CallerOf::DemoPending,
        };
    }
    CallerOf::NoContext
}

/// The caller for a Zoom call, or a 401 saying what to do.
pub fn require_caller(state: &AppState, session: &MaybeSession) -> AppResult<Caller> {
    match caller_of(state, session) {
        CallerOf::Session(c) | CallerOf::Demo(c) => Ok(c),
        CallerOf::DemoPending => Err(AppError::Unavailable(
            "the demo is still installing itself on the simulator; try again in a moment".into(),
        )),
        CallerOf::NoContext => Err(AppError::Unauthorized(
            "no Zoom user for this request: open the app inside Zoom".into(),
        )),
    }
}

fn signer(state: &AppState) -> StateSigner {
    StateSigner::new(state.config.session_secret.expose())
}

fn no_store(mut resp: Response) -> Response {
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// `GET /api/auth/install`: off to Zoom's authorize page with a signed
/// state and a PKCE S256 challenge (the verifier stays in the store).
async fn install(State(state): State<AppState>, jar: PrivateCookieJar) -> AppResult<Response> {
    let (state_param, nonce) = signer(&state).issue(now_secs());
    let verifier = oauth::new_verifier();
    state
        .store
        .put_verifier(
            &nonce,
            &verifier,
            std::time::Duration::from_secs(STATE_TTL_SECS as u64),
        )
        .await?;
    let challenge = oauth::challenge(&verifier, PkceMethod::S256);
    let url = state.zoom.authorize_url(
        Some(&state_param),
        Some((&challenge, PkceMethod::S256)),
        &[],
    );
    let jar = jar.add(nonce_cookie(&nonce));
    Ok(no_store((jar, Redirect::to(url.as_str())).into_response()))
}

#[derive(Debug, Deserialize)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

/// Where the browser lands after the install, with `auth=success` or
/// `auth=error&reason=…`.
fn frontend(state: &AppState, outcome: Result<(), &str>) -> String {
    let base = state.config.frontend_url.as_deref().unwrap_or("/");
    let sep = if base.contains('?') { '&' } else { '?' };
    match outcome {
        Ok(()) => format!("{base}{sep}auth=success"),
        Err(reason) => format!(
            "{base}{sep}auth=error&reason={}",
            url::form_urlencoded::byte_serialize(reason.as_bytes()).collect::<String>()
        ),
    }
}

fn state_reason(e: &StateError) -> &'static str {
    match e {
        StateError::Malformed | StateError::BadSignature => "invalid_state",
        StateError::Expired => "state_expired",
    }
}

fn install_reason(e: &ZoomError) -> &'static str {
    match e {
        e if e.is_invalid_grant() => "code_rejected",
        ZoomError::Token { .. } => "token_exchange_failed",
        ZoomError::Api { .. } | ZoomError::Malformed(_) => "user_lookup_failed",
        ZoomError::Transport(_) => "zoom_unreachable",
        ZoomError::Store(_) => "storage_failed",
        ZoomError::NeedsAuth(_) | ZoomError::LockTimeout => "install_failed",
    }
}

/// Sign the browser in as the installing user.
fn signed_in(jar: PrivateCookieJar, record: &TokenRecord) -> PrivateCookieJar {
    jar.add(crate::http::session::cookie(&SessionData {
        user_id: record.user_id.clone(),
        account_id: Some(record.account_id.clone()),
        expires_at_ms: now_ms() + SESSION_TTL_MS,
    }))
}

/// `GET /api/auth/callback`: Zoom's redirect after consent.
async fn callback(
    State(state): State<AppState>,
    jar: PrivateCookieJar,
    query: Result<Query<CallbackQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let fail = |reason: &str| {
        tracing::warn!(%reason, "install callback refused");
        no_store(Redirect::to(&frontend(&state, Err(reason))).into_response())
    };
    let Ok(Query(q)) = query else {
        return fail("malformed_callback");
    };
    if let Some(error) = q.error.as_deref() {
        return fail(if error == "access_denied" {
            "access_denied"
        } else {
            "zoom_error"
        });
    }
    let Some(code) = q
        .code
        .as_deref()
        .filter(|c| !c.is_empty() && c.len() <= 2048)
    else {
        return fail("missing_code");
    };
    let verifier = match q.state.as_deref().filter(|s| !s.is_empty()) {
        // Zoom-initiated installs carry no state and used no PKCE.
        None => None,
        Some(raw) => {
            let nonce = match signer(&state).verify(raw, now_secs()) {
                Ok(n) => n,
                Err(e) => return fail(state_reason(&e)),
            };
            if !nonce_matches(&jar, &nonce) {
                return fail("state_not_for_this_browser");
            }
            match state.store.take_verifier(&nonce).await {
                Ok(Some(v)) => Some(v),
                Ok(None) => return fail("state_used"),
                Err(e) => {
                    tracing::error!(error = %e, "reading the install verifier");
                    return fail("storage_failed");
                }
            }
        }
    };
    let redirect_uri = state.zoom.config().redirect_url.to_string();
    let browser_started_it = verifier.is_some();
    match state
        .zoom
        .install(code, &redirect_uri, verifier.as_deref())
        .await
    {
        // Only the browser that started the install is signed in; a
        // Zoom-initiated one proves nothing about this browser.
        Ok(record) if browser_started_it => {
            let jar = signed_in(without_nonce(jar), &record);
            no_store((jar, Redirect::to(&frontend(&state, Ok(())))).into_response())
        }
        Ok(_) => no_store(Redirect::to(&frontend(&state, Ok(()))).into_response()),
        Err(e) => {
            tracing::warn!(error = %e, "install failed");
            fail(install_reason(&e))
        }
    }
}

/// `GET /api/auth/status` for the caller's account.
async fn status(State(state): State<AppState>, session: MaybeSession) -> Response {
    let mode = state.config.mode.as_str();
    let answer = |authenticated: bool, needs_auth: bool, caller: Option<&Caller>, extra: Value| {
        let mut body = json!({
            "authenticated": authenticated,
            "needsAuth": needs_auth,
            "accountId": caller.map(|c| c.account_id.clone()),
            "userId": caller.and_then(|c| c.user_id.clone()),
            "installUrl": "/api/auth/install",
            "mode": mode,
        });
        if let (Some(b), Value::Object(extra)) = (body.as_object_mut(), extra) {
            b.extend(extra);
        }
        no_store(Json(body).into_response())
    };
    let caller = match caller_of(&state, &session) {
        CallerOf::Session(c) | CallerOf::Demo(c) => c,
        CallerOf::DemoPending => {
            return answer(
                false,
                false,
                None,
                json!({ "reason": "the demo is installing itself" }),
            );
        }
        CallerOf::NoContext => {
            return answer(
                false,
                false,
                None,
                json!({ "needsContext": true, "reason": "open the app inside Zoom" }),
            );
        }
    };
    match state.zoom.tokens_for(&caller).await {
        Ok(record) => answer(
            true,
            false,
            Some(&Caller {
                account_id: caller.account_id.clone(),
                user_id: caller.user_id.clone().or(Some(record.user_id)),
            }),
            json!({}),
        ),
        Err(ZoomError::NeedsAuth(reason)) => {
            answer(false, true, Some(&caller), json!({ "reason": reason }))
        }
        Err(e) => {
            tracing::error!(error = %e, "reading the account's authorization");
            let mut resp = answer(
                false,
                false,
                Some(&caller),
                json!({ "reason": "the token store is unavailable" }),
            );
            *resp.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            resp
        }
    }
}

#[derive(Debug, Deserialize)]
struct ChallengeQuery {
    method: Option<String>,
}

/// `GET /api/auth/challenge` for `zoomSdk.authorize`: a PKCE challenge and a
/// state naming the verifier kept in the store. Zoom's docs disagree on the
/// in-client method; `plain` is what works in the field, `?method=S256` is
/// available.
async fn challenge(
    State(state): State<AppState>,
    jar: PrivateCookieJar,
    query: Result<Query<ChallengeQuery>, axum::extract::rejection::QueryRejection>,
) -> AppResult<Response> {
    let Query(q) = query.map_err(|e| AppError::BadRequest(e.body_text()))?;
    let method = match q.method.as_deref() {
        None | Some("") => PkceMethod::Plain,
        Some(m) => PkceMethod::parse(m)
            .ok_or_else(|| AppError::BadRequest("method must be \"plain\" or \"S256\"".into()))?,
    };
    let (state_param, nonce) = signer(&state).issue(now_secs());
    let verifier = oauth::new_verifier();
    state
        .store
        .put_verifier(
            &nonce,
            &verifier,
            std::time::Duration::from_secs(STATE_TTL_SECS as u64),
        )
        .await?;
    Ok(no_store(
        (
            jar.add(nonce_cookie(&nonce)),
            Json(json!({
                "codeChallenge": oauth::challenge(&verifier, method),
                "codeChallengeMethod": method.as_str(),
                "state": state_param,
            })),
        )
            .into_response(),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ExchangeBody {
    code: String,
    state: String,
    #[serde(default)]
    redirect_uri: Option<String>,
}

/// `POST /api/auth/exchange {code, state, redirectUri}`: the code from
/// `onAuthorized`, exchanged with the stored verifier.
async fn exchange(
    State(state): State<AppState>,
    jar: PrivateCookieJar,
    body: Bytes,
) -> AppResult<Response> {
    let body: ExchangeBody = serde_json::from_slice(&body).map_err(|e| {
        AppError::BadRequest(format!(
            "expected JSON {{\"code\", \"state\", \"redirectUri\"}}: {e}"
        ))
    })?;
    if body.code.is_empty() || body.code.len() > 2048 {
        return Err(AppError::BadRequest("code is empty or too long".into()));
    }
    let nonce = signer(&state)
        .verify(&body.state, now_secs())
        .map_err(|e| AppError::BadRequest(e.to_string()))?;
    if !nonce_matches(&jar, &nonce) {
        return Err(AppError::Forbidden(
            "this authorization was started in another browser; start again here".into(),
        ));
    }
    let verifier = state.store.take_verifier(&nonce).await?.ok_or_else(|| {
        AppError::BadRequest(
            "this authorization was already used or has expired; start again".into(),
        )
    })?;
    let redirect_uri = match body.redirect_uri.as_deref().map(str::trim) {
        None | Some("") => state.zoom.config().redirect_url.to_string(),
        Some(raw) => {
            let url = url::Url::parse(raw)
                .ok()
                .filter(|u| matches!(u.scheme(), "https" | "http") && raw.len() <= 2048)
                .ok_or_else(|| AppError::BadRequest("redirectUri is not an http(s) URL".into()))?;
            url.to_string()
        }
    };
    let record = state
        .zoom
        .install(&body.code, &redirect_uri, Some(&verifier))
        .await
        .map_err(|e| {
            if e.is_invalid_grant() {
                AppError::BadRequest(
                    "Zoom refused the authorization code (used, expired, or a PKCE mismatch)"
                        .into(),
                )
            } else {
                e.into()
            }
        })?;
    let jar = signed_in(without_nonce(jar), &record);
    Ok(no_store(
        (
            jar,
            Json(json!({
                "ok": true,
                "accountId": record.account_id,
                "userId": record.user_id,
            })),
        )
            .into_response(),
    ))
}
