//! The Zoom API client: OAuth code exchange and refresh, `users/me`, and the
//! REST calls the app makes (RTMS start/stop on an engagement).
//!
//! Keeps no tokens itself: every call loads the account's tokens from the
//! [`Store`] and every refresh writes the rotated pair back *before* it is
//! used. Refreshes are single-flight per account user — an in-process mutex
//! plus the store's lock (which spans instances on Redis) — because Zoom
//! rotates refresh tokens: two concurrent refreshes would log the user out.
//! The refresh runs in its own task so a caller that goes away cannot cancel
//! it between Zoom's answer and the store write; if that write keeps failing
//! the rotated pair is held in memory, used, and stored by a background task
//! as soon as the store takes it. A dead refresh token marks the account
//! "needs re-authorization" and deletes nothing.
//!
//! Every HTTP call has a timeout (the client's, and [`CALL_TIMEOUT`] per request).

pub mod oauth;
mod unsaved;

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use url::Url;

use crate::error::AppError;
use crate::secret::Secret;
use crate::store::{Store, StoreError, TokenRecord};
use crate::time::now_ms;

/// Upper bound of any single HTTP call to Zoom.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(15);
/// Refresh this long before the access token expires.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(60);
/// Lifetime of the cross-instance refresh lock (longer than a refresh takes).
const LOCK_TTL: Duration = Duration::from_secs(30);
/// How long a caller waits for another instance's refresh.
const LOCK_WAIT: Duration = Duration::from_secs(20);

/// Who a call is made for: the caller's account and, when known, user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub account_id: String,
    pub user_id: Option<String>,
}

/// RTMS control actions of `PUT /contact_center/{id}/rtms_app/status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RtmsAction {
    Start,
    Stop,
    Pause,
    Resume,
}

impl RtmsAction {
    pub fn parse(raw: &str) -> Option<Self> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "start" => Some(Self::Start),
            "stop" => Some(Self::Stop),
            "pause" => Some(Self::Pause),
            "resume" => Some(Self::Resume),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Start => "start",
            Self::Stop => "stop",
            Self::Pause => "pause",
            Self::Resume => "resume",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ZoomError {
    /// No usable authorization for the account: install (again).
    #[error("{0}")]
    NeedsAuth(String),
    /// The token endpoint refused a grant.
    #[error("Zoom's token endpoint answered {status}: {error} ({reason})")]
    Token {
        status: u16,
        error: String,
        reason: String,
    },
    /// A REST call answered with an error.
    #[error("Zoom answered {status}: {message}")]
    Api {
        status: u16,
        code: Option<i64>,
        message: String,
    },
    #[error("Zoom did not answer: {0}")]
    Transport(#[source] reqwest::Error),
    #[error("unexpected answer from Zoom: {0}")]
    Malformed(String),
    #[error("another refresh of this account's token is taking too long")]
    LockTimeout,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ZoomError {
    pub fn is_invalid_grant(&self) -> bool {
        matches!(self, ZoomError::Token { error, .. } if error == "invalid_grant")
    }
}

impl From<ZoomError> for AppError {
    fn from(e: ZoomError) -> Self {
        match e {
            ZoomError::NeedsAuth(reason) => AppError::NeedsAuth(reason),
            ZoomError::Token { .. } => AppError::Upstream {
                status: StatusCode::BAD_GATEWAY,
                message: e.to_string(),
            },
            ZoomError::Api { status: 429, .. } => {
                AppError::TooManyRequests("Zoom's rate limit was reached; try again shortly".into())
            }
            ZoomError::Api { .. } | ZoomError::Malformed(_) => AppError::Upstream {
                status: StatusCode::BAD_GATEWAY,
                message: e.to_string(),
            },
            ZoomError::Transport(ref t) if t.is_timeout() => AppError::Upstream {
                status: StatusCode::GATEWAY_TIMEOUT,
                message: "Zoom did not answer in time".into(),
            },
            ZoomError::Transport(_) => AppError::Upstream {
                status: StatusCode::BAD_GATEWAY,
                message: "Zoom could not be reached".into(),
            },
            ZoomError::LockTimeout => AppError::Unavailable(e.to_string()),
            ZoomError::Store(s) => s.into(),
        }
    }
}

/// The token endpoint's success answer.
#[derive(Deserialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in: i64,
    #[serde(default)]
    pub scope: Option<String>,
    #[serde(default)]
    pub api_url: Option<String>,
}

impl fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenResponse")
            .field("expires_in", &self.expires_in)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct ZoomUser {
    pub id: String,
    pub account_id: String,
    #[serde(default)]
    pub email: Option<String>,
    /// `Owner`, `Admin`, `Member` or a custom role: owners and admins
    /// supervise their account.
    #[serde(default)]
    pub role_name: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ZoomClientConfig {
    pub host: Url,
    pub api_url: Url,
    pub client_id: String,
    pub client_secret: Secret,
    pub redirect_url: Url,
}

/// Counters for tests and diagnostics.
#[derive(Debug, Default)]
pub struct ZoomCounters {
    pub refreshes: AtomicU64,
    pub refresh_failures: AtomicU64,
    /// Refreshes Zoom refused for good (`invalid_grant`: the account must
    /// authorize the app again); not among the failures.
    pub refresh_revoked: AtomicU64,
    pub rest_calls: AtomicU64,
}

#[derive(Clone)]
pub struct ZoomClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    config: ZoomClientConfig,
    store: Store,
    /// Distinguishes this process's lock ownership from other instances'.
    instance_id: String,
    /// One refresh mutex per account user (by opaque id).
    refresh_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    counters: ZoomCounters,
    /// Rotated pairs the store has not taken yet.
    unsaved: unsaved::Unsaved,
}

impl ZoomClient {
    pub fn new(http: reqwest::Client, config: ZoomClientConfig, store: Store) -> Self {
        Self {
            inner: Arc::new(Inner {
                http,
                config,
                store,
                instance_id: crate::util::random_hex(8),
                refresh_locks: Mutex::default(),
                counters: ZoomCounters::default(),
                unsaved: unsaved::Unsaved::default(),
            }),
        }
    }

    pub fn config(&self) -> &ZoomClientConfig {
        &self.inner.config
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn counters(&self) -> &ZoomCounters {
        &self.inner.counters
    }

    /// The Zoom authorize URL (web flow). `extra` adds parameters (the
    /// simulator's `sim_user`).
    pub fn authorize_url(
        &self,
        state: Option<&str>,
        code_challenge: Option<(&str, oauth::PkceMethod)>,
        extra: &[(&str, &str)],
    ) -> Url {
        let c = &self.inner.config;
        let mut url = c.host.clone();
        url.set_path("/oauth/authorize");
        {
            let mut q = url.query_pairs_mut();
            q.clear();
            q.append_pair("response_type", "code")
                .append_pair("client_id", &c.client_id)
                .append_pair("redirect_uri", c.redirect_url.as_str());
            if let Some(state) = state {
                q.append_pair("state", state);
            }
            if let Some((challenge, method)) = code_challenge {
                q.append_pair("code_challenge", challenge)
                    .append_pair("code_challenge_method", method.as_str());
            }
            for (k, v) in extra {
                q.append_pair(k, v);
            }
        }
        url
    }

    async fn token_request(&self, form: &[(&str, &str)]) -> Result<TokenResponse, ZoomError> {
        let c = &self.inner.config;
        let mut url = c.host.clone();
        url.set_path("/oauth/token");
        url.set_query(None);
        let resp = self
            .inner
            .http
            .post(url)
            .basic_auth(&c.client_id, Some(c.client_secret.expose()))
            .form(form)
            .timeout(CALL_TIMEOUT)
            .send()
            .await
            .map_err(ZoomError::Transport)?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(ZoomError::Transport)?;
        if status.is_success() {
            return serde_json::from_slice(&body).map_err(|e| {
                ZoomError::Malformed(format!("token response without the expected fields ({e})"))
            });
        }
        let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let text = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
        Err(ZoomError::Token {
            status: status.as_u16(),
            error: text("error"),
            reason: text("reason"),
        })
    }

    /// Exchange an authorization code (web or in-client flow).
    pub async fn exchange_code(
        &self,
        code: &str,
        redirect_uri: &str,
        verifier: Option<&str>,
    ) -> Result<TokenResponse, ZoomError> {
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
        ];
        if let Some(v) = verifier {
            form.push(("code_verifier", v));
        }
        self.token_request(&form).await
    }

    fn api_url(&self, segments: &[&str]) -> Url {
        let mut url = self.inner.config.api_url.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    pub async fn users_me(&self, access_token: &str) -> Result<ZoomUser, ZoomError> {
        let resp = self
            .inner
            .http
            .get(self.api_url(&["users", "me"]))
            .bearer_auth(access_token)
            .timeout(CALL_TIMEOUT)
            .send()
            .await
            .map_err(ZoomError::Transport)?;
        let resp = api_result(resp).await?;
        resp.json()
            .await
            .map_err(|e| ZoomError::Malformed(format!("users/me: {e}")))
    }

    /// The whole install after Zoom's redirect: exchange the code, learn who
    /// installed, store the tokens keyed by account and user.
    pub async fn install(
        &self,
        code: &str,
        redirect_uri: &str,
        verifier: Option<&str>,
    ) -> Result<TokenRecord, ZoomError> {
        let tokens = self.exchange_code(code, redirect_uri, verifier).await?;
        let user = self.users_me(&tokens.access_token).await?;
        let record = record_from(tokens, &user.account_id, &user.id);
        self.save_with_retry(&record, true).await?;
        // The role only widens what the user may see; without it they are an
        // agent, so a failure here does not fail the install.
        let role = user.role_name.as_deref().unwrap_or("");
        if let Err(e) = self.inner.store.save_user_role(&user.id, role).await {
            tracing::warn!(error = %e, "storing the installing user's role");
        }
        tracing::info!("Zoom app installed for an account");
        Ok(record)
    }

    async fn save_with_retry(&self, record: &TokenRecord, install: bool) -> Result<(), ZoomError> {
        let store = &self.inner.store;
        let mut last = None;
        for attempt in 0..3u32 {
            let result = if install {
                store.save_tokens(record).await
            } else {
                store.update_tokens(record).await
            };
            match result {
                Ok(()) => return Ok(()),
                Err(e) => {
                    tracing::warn!(error = %e, attempt, "storing tokens failed");
                    last = Some(e);
                    tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
                }
            }
        }
        Err(last.map_or(ZoomError::LockTimeout, ZoomError::Store))
    }

    /// The tokens a caller uses; errors say what the user must do.
    pub async fn tokens_for(&self, caller: &Caller) -> Result<TokenRecord, ZoomError> {
        let record = match self
            .inner
            .store
            .load_account_tokens(&caller.account_id, caller.user_id.as_deref())
            .await
        {
            Ok(r) => r,
            Err(StoreError::Corrupt { .. }) => {
                return Err(ZoomError::NeedsAuth(
                    "the stored Zoom authorization is unreadable; install the app again".into(),
                ));
            }
            Err(e) => return Err(e.into()),
        };
        let record = record.ok_or_else(|| {
            ZoomError::NeedsAuth("this Zoom account has not installed the app yet".into())
        })?;
        let record = self.newest(record);
        if record.needs_auth {
            return Err(ZoomError::NeedsAuth(needs_auth_text(&record)));
        }
        Ok(record)
    }

    /// Make an authorized REST call for `caller`: refresh shortly before
    /// expiry; on a 401 refresh once (single-flight) and retry once.
    pub async fn call(
        &self,
        caller: &Caller,
        build: impl Fn(&reqwest::Client, &str) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ZoomError> {
        let mut record = self.tokens_for(caller).await?;
        if record.expires_at_ms - now_ms() < REFRESH_MARGIN.as_millis() as i64 {
            match self.refresh(&record).await {
                Ok(fresh) => record = fresh,
                // A transient failure while the token still has a little
                // life left: use it rather than fail the call.
                Err(e)
                    if !matches!(e, ZoomError::NeedsAuth(_)) && record.expires_at_ms > now_ms() =>
                {
                    tracing::warn!(error = %e, "early refresh failed; using the current token");
                }
                Err(e) => return Err(e),
            }
        }
        let send = |token: &str| {
            self.inner
                .counters
                .rest_calls
                .fetch_add(1, Ordering::Relaxed);
            build(&self.inner.http, token).timeout(CALL_TIMEOUT).send()
        };
        let resp = send(&record.access_token)
            .await
            .map_err(ZoomError::Transport)?;
        if resp.status() != reqwest::StatusCode::UNAUTHORIZED {
            return Ok(resp);
        }
        tracing::info!("Zoom refused the access token; refreshing");
        let record = self.refresh(&record).await?;
        send(&record.access_token)
            .await
            .map_err(ZoomError::Transport)
    }

    /// Start/stop/pause/resume RTMS on an engagement.
    pub async fn set_rtms_status(
        &self,
        caller: &Caller,
        engagement_id: &str,
        action: RtmsAction,
    ) -> Result<(), ZoomError> {
        let url = self.api_url(&["contact_center", engagement_id, "rtms_app", "status"]);
        let body = json!({
            "action": action.as_str(),
            "settings": { "client_id": self.inner.config.client_id },
        });
        let resp = self
            .call(caller, |http, token| {
                http.put(url.clone()).bearer_auth(token).json(&body)
            })
            .await?;
        api_result(resp).await.map(drop)
    }

    /// Refresh `stale`'s tokens, at most one refresh per account user at a
    /// time across this process and (through the store's lock) all
    /// instances. If someone else refreshed meanwhile, their tokens are used.
    pub async fn refresh(&self, stale: &TokenRecord) -> Result<TokenRecord, ZoomError> {
        let this = self.clone();
        let stale = stale.clone();
        // Own task: never cancelled between Zoom's answer and the store
        // write. Short-lived and bounded by the HTTP and lock timeouts, so it
        // needs no tracker.
        tokio::spawn(async move { this.refresh_inner(stale).await })
            .await
            .map_err(|e| ZoomError::Malformed(format!("refresh task failed: {e}")))?
    }

    fn local_lock(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self
            .inner
            .refresh_locks
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        locks.entry(id.to_owned()).or_default().clone()
    }

    async fn refresh_inner(&self, stale: TokenRecord) -> Result<TokenRecord, ZoomError> {
        let store = &self.inner.store;
        let id = store.token_id(&stale.account_id, &stale.user_id);
        let local = self.local_lock(&id);
        let _local = local.lock().await;

        let lock_name = format!("refresh:{id}");
        let owner = format!("{}:{}", self.inner.instance_id, crate::util::random_hex(4));
        let deadline = tokio::time::Instant::now() + LOCK_WAIT;
        while !store.try_lock(&lock_name, &owner, LOCK_TTL).await? {
            if tokio::time::Instant::now() >= deadline {
                return Err(ZoomError::LockTimeout);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let result = self.refresh_locked(&stale).await;
        if let Err(e) = store.unlock(&lock_name, &owner).await {
            tracing::warn!(error = %e, "releasing the refresh lock (it expires by itself)");
        }
        result
    }

    async fn refresh_locked(&self, stale: &TokenRecord) -> Result<TokenRecord, ZoomError> {
        let id = self.inner.store.token_id(&stale.account_id, &stale.user_id);
        let current = match self.inner.unsaved.get(&id) {
            Some(held) => held,
            None => self
                .inner
                .store
                .load_tokens(&stale.account_id, &stale.user_id)
                .await?
                .ok_or_else(|| ZoomError::NeedsAuth("the Zoom authorization was removed".into()))?,
        };
        if current.needs_auth {
            return Err(ZoomError::NeedsAuth(needs_auth_text(&current)));
        }
        let fresh_enough = current.expires_at_ms - now_ms() >= REFRESH_MARGIN.as_millis() as i64;
        if current.access_token != stale.access_token && fresh_enough {
            return Ok(current);
        }
        self.inner
            .counters
            .refreshes
            .fetch_add(1, Ordering::Relaxed);
        match self
            .token_request(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", &current.refresh_token),
            ])
            .await
        {
            Ok(tokens) => {
                let record = record_from(tokens, &current.account_id, &current.user_id);
                // Persist the rotated pair before anyone uses it; the old
                // one is dead at Zoom, so if the store refuses it is held
                // and stored later — never dropped.
                if let Err(e) = self.save_with_retry(&record, false).await {
                    tracing::error!(error = %e, "storing refreshed tokens failed; holding them and retrying");
                    self.inner.unsaved.hold(&id, record.clone());
                    self.keep_saving(id, record.clone());
                } else {
                    self.inner.unsaved.stored(&id, &record);
                }
                tracing::info!("Zoom access token refreshed");
                Ok(record)
            }
            Err(e) if e.is_invalid_grant() => {
                self.inner
                    .counters
                    .refresh_revoked
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "refresh token refused; the account must re-authorize");
                let mut marked = current.clone();
                marked.needs_auth = true;
                marked.needs_auth_reason = Some(
                    "Zoom no longer accepts this app's authorization (it was revoked or replaced)"
                        .into(),
                );
                marked.updated_at_ms = now_ms();
                self.save_with_retry(&marked, false).await?;
                Err(ZoomError::NeedsAuth(needs_auth_text(&marked)))
            }
            Err(e) => {
                self.inner
                    .counters
                    .refresh_failures
                    .fetch_add(1, Ordering::Relaxed);
                Err(e)
            }
        }
    }
}

impl ZoomClient {
    /// `stored`, or the newer pair held in memory for the same user.
    fn newest(&self, stored: TokenRecord) -> TokenRecord {
        let id = self
            .inner
            .store
            .token_id(&stored.account_id, &stored.user_id);
        self.inner.unsaved.get(&id).unwrap_or(stored)
    }

    /// Store a held pair in the background until the store takes it (or a
    /// newer pair, or a deauthorization, replaces it).
    fn keep_saving(&self, id: String, record: TokenRecord) {
        let this = self.clone();
        tokio::spawn(async move {
            let mut failures = 0u32;
            while this.inner.unsaved.is_current(&id, &record) {
                match this.inner.store.update_tokens(&record).await {
                    Ok(()) => {
                        if this.inner.unsaved.stored(&id, &record) {
                            tracing::info!("held Zoom tokens are stored now");
                        }
                        return;
                    }
                    Err(e) => {
                        failures = failures.saturating_add(1);
                        tracing::warn!(error = %e, failures, "storing held Zoom tokens failed; will retry");
                        tokio::time::sleep(crate::inbox::backoff(failures)).await;
                    }
                }
            }
        });
    }

    /// Rotated pairs held in memory because the store refused them.
    pub fn unsaved_tokens(&self) -> usize {
        self.inner.unsaved.count()
    }

    /// Forget a user's held pair (the app was deauthorized).
    pub fn forget_user(&self, account_id: &str, user_id: &str) {
        let id = self.inner.store.token_id(account_id, user_id);
        self.inner.unsaved.forget(&id);
    }
}

fn needs_auth_text(record: &TokenRecord) -> String {
    format!(
        "{}; re-authorize the app (install it again)",
        record
            .needs_auth_reason
            .as_deref()
            .unwrap_or("the Zoom authorization is no longer valid")
    )
}

fn record_from(tokens: TokenResponse, account_id: &str, user_id: &str) -> TokenRecord {
    let now = now_ms();
    TokenRecord {
        account_id: account_id.to_owned(),
        user_id: user_id.to_owned(),
        access_token: tokens.access_token,
        refresh_token: tokens.refresh_token,
        expires_at_ms: now + tokens.expires_in.clamp(0, 366 * 24 * 3600) * 1000,
        scope: tokens.scope.unwrap_or_default(),
        api_url: tokens.api_url,
        needs_auth: false,
        needs_auth_reason: None,
        updated_at_ms: now,
    }
}

/// A REST answer: success passes through, errors become [`ZoomError::Api`]
/// with Zoom's `{code, message}` when present.
async fn api_result(resp: reqwest::Response) -> Result<reqwest::Response, ZoomError> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let body = resp.bytes().await.unwrap_or_default();
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let message = v
        .get("message")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_owned());
    Err(ZoomError::Api {
        status: status.as_u16(),
        code: v.get("code").and_then(Value::as_i64),
        message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_parse_case_insensitively_and_reject_others() {
        assert_eq!(RtmsAction::parse("Start"), Some(RtmsAction::Start));
        assert_eq!(RtmsAction::parse("resume"), Some(RtmsAction::Resume));
        assert_eq!(RtmsAction::parse("launch"), None);
        assert_eq!(RtmsAction::parse(""), None);
    }

    #[test]
    fn zoom_errors_map_to_clear_http_answers() {
        let e: AppError = ZoomError::NeedsAuth("x".into()).into();
        assert_eq!(e.status(), StatusCode::UNAUTHORIZED);
        let e: AppError = ZoomError::Api {
            status: 500,
            code: None,
            message: "boom".into(),
        }
        .into();
        assert_eq!(e.status(), StatusCode::BAD_GATEWAY);
        let e: AppError = ZoomError::Api {
            status: 429,
            code: None,
            message: "slow down".into(),
        }
        .into();
        assert_eq!(e.status(), StatusCode::TOO_MANY_REQUESTS);
    }
}
