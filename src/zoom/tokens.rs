//! The token lifecycle: the authorize URL, the code exchange and the whole
//! install, the tokens a caller uses, and the refresh — single-flight per
//! account user (an in-process mutex plus the store's lock, which spans
//! instances on Redis), in its own task, the rotated pair stored before it is
//! used, a refused refresh token marked "needs re-authorization".
//!
//! Never makes a REST call but `users/me` of an install (that is `rest`) and
//! never deletes tokens.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::Value;
use url::Url;

use super::{CALL_TIMEOUT, Caller, REFRESH_MARGIN, TokenResponse, ZoomClient, ZoomError, oauth};
use crate::store::{StoreError, TokenRecord};
use crate::time::now_ms;

/// Lifetime of the cross-instance refresh lock (longer than a refresh takes).
const LOCK_TTL: Duration = Duration::from_secs(30);
/// How long a caller waits for another instance's refresh.
const LOCK_WAIT: Duration = Duration::from_secs(20);

impl ZoomClient {
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
