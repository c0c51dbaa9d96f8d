//! Zoom's OAuth: `GET /oauth/authorize` (codes, PKCE) and `POST /oauth/token`
//! (code exchange, refresh with rotation), with Zoom's error shapes
//! (`docs/zoom-platform.md` §1). Issues the tokens the REST API (`api.rs`)
//! accepts; serves no REST call itself.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use serde_json::json;
use sha2::{Digest as _, Sha256};
use tokio::time::Instant;

use super::SimHandle;
use super::state::{AccessToken, AuthCode, RefreshToken, lock};
use crate::util::random_hex;

/// Authorization codes live five minutes (Zoom error 4733 after that).
const CODE_TTL: std::time::Duration = std::time::Duration::from_secs(300);
const SCOPES: &str = "contact_center:read:zcc_voice_audio contact_center:read:zcc_voice_transcript contact_center:update:engagement_rtms_app_status user:read:user";

pub(crate) fn router() -> Router<SimHandle> {
    Router::new()
        .route("/oauth/authorize", get(authorize))
        .route("/oauth/token", post(token))
}

fn oauth_error(status: StatusCode, error: &str, reason: &str) -> Response {
    (status, Json(json!({"reason": reason, "error": error}))).into_response()
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
