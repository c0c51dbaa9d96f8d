//! Zoom's HTTP side: `GET /oauth/authorize`, `POST /oauth/token`,
//! `GET /v2/users/me` and `PUT /v2/contact_center/{id}/rtms_app/status`,
//! with Zoom's error shapes (`docs/zoom-platform.md` §1, §5.1).

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use base64::Engine as _;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use tokio::time::Instant;

use super::SimHandle;
use super::state::{AccessToken, AuthCode, RefreshToken, lock};
use crate::util::random_hex;

/// Authorization codes live five minutes (Zoom error 4733 after that).
const CODE_TTL: std::time::Duration = std::time::Duration::from_secs(300);
const SCOPES: &str = "contact_center:read:zcc_voice_audio contact_center:read:zcc_voice_transcript contact_center:update:engagement_rtms_app_status user:read:user";

pub(crate) fn router(sim: SimHandle) -> Router<SimHandle> {
    let rest = Router::new()
        .route("/v2/users/me", get(users_me))
        .route(
            "/v2/contact_center/{engagement_id}/rtms_app/status",
            put(rtms_app_status),
        )
        .route_layer(middleware::from_fn_with_state(sim, count_rest));
    Router::new()
        .route("/oauth/authorize", get(authorize))
        .route("/oauth/token", post(token))
        .merge(rest)
}

fn oauth_error(status: StatusCode, error: &str, reason: &str) -> Response {
    (status, Json(json!({"reason": reason, "error": error}))).into_response()
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

fn query_pairs(raw: Option<&str>) -> Vec<(String, String)> {
    url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

fn param<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

async fn authorize(State(sim): State<SimHandle>, RawQuery(raw): RawQuery) -> Response {
    let shared = &sim.shared;
    let q = query_pairs(raw.as_deref());
    if param(&q, "response_type") != Some("code") {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_response_type",
            "response_type must be code",
        );
    }
    if param(&q, "client_id") != Some(shared.cfg.client_id.as_str()) {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_client",
            "Invalid client_id.",
        );
    }
    let Some(redirect_uri) = param(&q, "redirect_uri") else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "redirect_uri is required",
        );
    };
    let Ok(mut target) = url::Url::parse(redirect_uri) else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Invalid redirect: redirect_uri is not a URL",
        );
    };
    if !matches!(target.scheme(), "http" | "https") {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Invalid redirect: must be http or https",
        );
    }
    let pkce = match param(&q, "code_challenge") {
        None => None,
        Some(challenge) => {
            let method = param(&q, "code_challenge_method").unwrap_or("plain");
            if method != "S256" && method != "plain" {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "code_challenge_method must be S256 or plain",
                );
            }
            Some((challenge.to_owned(), method.to_owned()))
        }
    };
    let user_id = {
        let st = lock(&shared.state);
        match param(&q, "sim_user") {
            None => st.default_user.clone(),
            Some(u) if st.users.contains_key(u) => u.to_owned(),
            Some(u) => {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    &format!("unknown sim_user {u}"),
                );
            }
        }
    };
    let code = issue_code(shared, user_id, redirect_uri, pkce);
    {
        let mut pairs = target.query_pairs_mut();
        pairs.append_pair("code", &code);
        if let Some(state) = param(&q, "state") {
            pairs.append_pair("state", state);
        }
    }
    Redirect::to(target.as_str())
        .into_response()
        .with_status(StatusCode::FOUND)
}

/// A one-shot authorization code for `user_id`, bound to `redirect_uri`
/// and the PKCE challenge (also what the simulated client's in-client
/// `authorize` hands out).
pub(crate) fn issue_code(
    shared: &super::state::Shared,
    user_id: String,
    redirect_uri: &str,
    pkce: Option<(String, String)>,
) -> String {
    let code = random_hex(16);
    lock(&shared.state).codes.insert(
        code.clone(),
        AuthCode {
            user_id,
            redirect_uri: redirect_uri.to_owned(),
            pkce,
            expires: Instant::now() + CODE_TTL,
        },
    );
    code
}

trait WithStatus {
    fn with_status(self, status: StatusCode) -> Response;
}
impl WithStatus for Response {
    fn with_status(mut self, status: StatusCode) -> Response {
        *self.status_mut() = status;
        self
    }
}

fn basic_auth(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    Some((id.to_owned(), secret.to_owned()))
}

async fn token(State(sim): State<SimHandle>, headers: HeaderMap, body: Bytes) -> Response {
    let shared = &sim.shared;
    let form: Vec<(String, String)> = url::form_urlencoded::parse(&body).into_owned().collect();
    let grant = param(&form, "grant_type").unwrap_or("missing").to_owned();
    shared.stats.token_request(&grant);
    if let Some(status) = lock(&shared.faults).take_token_failure() {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return oauth_error(status, "server_error", "Simulated failure.");
    }
    let client_ok = basic_auth(&headers).is_some_and(|(id, secret)| {
        id == shared.cfg.client_id && super::sign::same(&secret, shared.cfg.client_secret.expose())
    });
    if !client_ok {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "Invalid client_id or client_secret",
        );
    }
    let user_id = match grant.as_str() {
        "authorization_code" => {
            let Some(code) = param(&form, "code") else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "code is required",
                );
            };
            // Single use: the code is gone whatever happens next.
            let Some(stored) = lock(&shared.state).codes.remove(code) else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "Invalid authorization code",
                );
            };
            if Instant::now() >= stored.expires {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "Invalid authorization code",
                );
            }
            if param(&form, "redirect_uri") != Some(stored.redirect_uri.as_str()) {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "Redirect URI mismatch.",
                );
            }
            if let Some((challenge, method)) = &stored.pkce {
                let Some(verifier) = param(&form, "code_verifier") else {
                    return oauth_error(
                        StatusCode::BAD_REQUEST,
                        "invalid_grant",
                        "code_verifier is required",
                    );
                };
                let computed = if method == "S256" {
                    base64::engine::general_purpose::URL_SAFE_NO_PAD
                        .encode(Sha256::digest(verifier.as_bytes()))
                } else {
                    verifier.to_owned()
                };
                if !super::sign::same(&computed, challenge) {
                    return oauth_error(
                        StatusCode::BAD_REQUEST,
                        "invalid_grant",
                        "Invalid code_verifier",
                    );
                }
            }
            stored.user_id
        }
        "refresh_token" => {
            let Some(rt) = param(&form, "refresh_token") else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "refresh_token is required",
                );
            };
            // Rotation: the old refresh token stops working now.
            match lock(&shared.state).refresh.remove(rt) {
                Some(r) => r.user_id,
                None => {
                    return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "Invalid Token!");
                }
            }
        }
        _ => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "Unsupported grant type",
            );
        }
    };
    match sim.issue_tokens(&user_id) {
        Some(t) => Json(json!({
            "access_token": t.access_token,
            "token_type": "bearer",
            "refresh_token": t.refresh_token,
            "expires_in": t.expires_in,
            "scope": SCOPES,
            "api_url": shared.base_url.as_str().trim_end_matches('/'),
        }))
        .into_response(),
        None => oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "The user no longer exists",
        ),
    }
}

impl SimHandle {
    /// Issue an access/refresh token pair for a user, as a successful token
    /// request would (tests may use it to skip the OAuth dance).
    pub fn issue_tokens(&self, user_id: &str) -> Option<super::TokenPair> {
        let shared = &self.shared;
        let mut st = lock(&shared.state);
        let user = st.users.get(user_id)?.clone();
        let access_token = format!("sim_at_{}", random_hex(24));
        let refresh_token = format!("sim_rt_{}", random_hex(24));
        st.access.insert(
            access_token.clone(),
            AccessToken {
                user_id: user.user_id.clone(),
                account_id: user.account_id.clone(),
                expires: Instant::now() + shared.cfg.access_token_ttl,
            },
        );
        st.refresh.insert(
            refresh_token.clone(),
            RefreshToken {
                user_id: user.user_id,
            },
        );
        Some(super::TokenPair {
            access_token,
            refresh_token,
            expires_in: shared.cfg.access_token_ttl.as_secs(),
        })
    }
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
        "start" => sim.start_stream(&engagement_id).map(|_| ()),
        "stop" => sim.stop_stream(
            &engagement_id,
            super::protocol::stop_reason::MANUAL_API_TRIGGERED,
        ),
        "pause" => sim.pause_stream(&engagement_id, true),
        _ => sim.pause_stream(&engagement_id, false),
    };
    match result {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => rest_error(StatusCode::BAD_REQUEST, 300, &e.to_string()),
    }
}
