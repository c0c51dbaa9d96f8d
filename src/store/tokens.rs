//! What the store keeps about the people who installed the app: each
//! account user's Zoom tokens (sealed, looked up by opaque ids), the
//! account's current installer, a user's account and role, and when a user's
//! browser sessions were revoked.
//!
//! Decides nothing about when to refresh or whom to trust (that is the Zoom
//! client and the access policy); the raw accessors exist for corruption
//! tests only.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Store, StoreError};

/// One account user's Zoom tokens, as stored.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub account_id: String,
    pub user_id: String,
    pub access_token: String,
    pub refresh_token: String,
    /// When the access token expires (Unix ms).
    pub expires_at_ms: i64,
    #[serde(default)]
    pub scope: String,
    #[serde(default)]
    pub api_url: Option<String>,
    /// The refresh token was refused: the user must install again. The
    /// tokens are kept as they were.
    #[serde(default)]
    pub needs_auth: bool,
    #[serde(default)]
    pub needs_auth_reason: Option<String>,
    pub updated_at_ms: i64,
}

impl fmt::Debug for TokenRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenRecord")
            .field("access_token", &"***")
            .field("refresh_token", &"***")
            .field("expires_at_ms", &self.expires_at_ms)
            .field("needs_auth", &self.needs_auth)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// The opaque id of an account user (names their locks).
    pub fn token_id(&self, account_id: &str, user_id: &str) -> String {
        self.sealer.key_id(&[account_id, user_id])
    }

    fn token_key(&self, account_id: &str, user_id: &str) -> String {
        self.key("tokens", &self.sealer.key_id(&[account_id, user_id]))
    }

    fn account_key(&self, account_id: &str) -> String {
        self.key("account", &self.sealer.key_id(&[account_id]))
    }

    fn user_key(&self, user_id: &str) -> String {
        self.key("user", &self.sealer.key_id(&[user_id]))
    }

    /// Store a user's tokens (durable when this returns), make that user the
    /// account's current installer, and remember the user's account.
    pub async fn save_tokens(&self, record: &TokenRecord) -> Result<(), StoreError> {
        let key = self.token_key(&record.account_id, &record.user_id);
        self.put_sealed(key, record, None).await?;
        self.put_sealed(self.account_key(&record.account_id), &record.user_id, None)
            .await?;
        self.put_sealed(self.user_key(&record.user_id), &record.account_id, None)
            .await
    }

    fn role_key(&self, user_id: &str) -> String {
        self.key("role", &self.sealer.key_id(&[user_id]))
    }

    /// Remember the user's Zoom role (`role_name` of `users/me`) from their install.
    pub async fn save_user_role(&self, user_id: &str, role_name: &str) -> Result<(), StoreError> {
        self.put_sealed(self.role_key(user_id), &role_name, None)
            .await
    }

    /// The user's Zoom role as of their latest install.
    pub async fn user_role(&self, user_id: &str) -> Result<Option<String>, StoreError> {
        self.get_sealed(self.role_key(user_id)).await
    }

    /// The account a user installed the app in (a Zoom app context names
    /// the user only).
    pub async fn account_of_user(&self, user_id: &str) -> Result<Option<String>, StoreError> {
        self.get_sealed(self.user_key(user_id)).await
    }

    /// Store tokens for an existing user without changing the account's
    /// current installer (a refresh).
    pub async fn update_tokens(&self, record: &TokenRecord) -> Result<(), StoreError> {
        let key = self.token_key(&record.account_id, &record.user_id);
        self.put_sealed(key, record, None).await
    }

    pub async fn load_tokens(
        &self,
        account_id: &str,
        user_id: &str,
    ) -> Result<Option<TokenRecord>, StoreError> {
        let record: Option<TokenRecord> =
            self.get_sealed(self.token_key(account_id, user_id)).await?;
        Ok(record.filter(|r| r.account_id == account_id && r.user_id == user_id))
    }

    /// The user whose install the account uses when the caller has none.
    pub async fn account_installer(&self, account_id: &str) -> Result<Option<String>, StoreError> {
        self.get_sealed(self.account_key(account_id)).await
    }

    /// The tokens to use for a caller: their own when they installed,
    /// otherwise the account's current installer's.
    pub async fn load_account_tokens(
        &self,
        account_id: &str,
        user_id: Option<&str>,
    ) -> Result<Option<TokenRecord>, StoreError> {
        if let Some(user_id) = user_id
            && let Some(own) = self.load_tokens(account_id, user_id).await?
        {
            return Ok(Some(own));
        }
        match self.account_installer(account_id).await? {
            Some(installer) => self.load_tokens(account_id, &installer).await,
            None => Ok(None),
        }
    }

    /// Delete what is kept about a user who removed the app: their tokens,
    /// their user → account entry, and the account's installer entry when it
    /// names them. Browser sessions issued before `at_ms` stop resolving
    /// (a revocation kept as long as a session lives). Idempotent.
    pub async fn forget_user(
        &self,
        account_id: &str,
        user_id: &str,
        at_ms: i64,
    ) -> Result<(), StoreError> {
        backend!(self.take(self.token_key(account_id, user_id)))?;
        backend!(self.take(self.user_key(user_id)))?;
        if self.account_installer(account_id).await?.as_deref() == Some(user_id) {
            backend!(self.take(self.account_key(account_id)))?;
        }
        let ttl = Duration::from_millis(crate::http::session::SESSION_TTL_MS.unsigned_abs());
        self.put_sealed(self.revoked_key(user_id), &at_ms, Some(ttl))
            .await
    }

    fn revoked_key(&self, user_id: &str) -> String {
        self.key("revoked", &self.sealer.key_id(&[user_id]))
    }

    /// When a user's sessions were revoked (they removed the app), if within
    /// a session's lifetime.
    pub async fn sessions_revoked_at(&self, user_id: &str) -> Result<Option<i64>, StoreError> {
        self.get_sealed(self.revoked_key(user_id)).await
    }

    /// Write raw bytes where a user's tokens live (for corruption tests).
    #[doc(hidden)]
    pub async fn put_raw_tokens(
        &self,
        account_id: &str,
        user_id: &str,
        raw: Vec<u8>,
    ) -> Result<(), StoreError> {
        backend!(self.put(self.token_key(account_id, user_id), raw, None))
    }

    /// The raw sealed bytes of a user's tokens (for corruption tests).
    #[doc(hidden)]
    pub async fn get_raw_tokens(
        &self,
        account_id: &str,
        user_id: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        backend!(self.get(self.token_key(account_id, user_id)))
    }
}
