//! Durable state: OAuth tokens per account and user, engagements, webhook
//! de-duplication keys, OAuth verifiers, locks and stream ownership.
//!
//! One [`Store`] type; the backend is chosen by config: an embedded redb file
//! in `DATA_DIR` (default) or Redis (`REDIS_URL`, shared by many instances).
//! Both implement the same few primitives (get/put with expiry, insert-if-absent,
//! take, leases, sets); the typed methods here are written once on top of them,
//! and the same integration suite runs against both.
//!
//! Tokens, engagements and verifiers are sealed (AES-256-GCM, see [`crypto`]);
//! keys are namespaced by a prefix and never contain account or user ids in
//! clear. Holds no business logic: *when* to refresh a token or start a
//! stream is decided by the Zoom client and the RTMS manager.

pub mod crypto;
pub(crate) mod embedded;
pub(crate) mod redis;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub use crypto::{SealError, Sealer, TokenKey};
pub use embedded::FILE_NAME as EMBEDDED_FILE_NAME;
pub use redis::client as redis_client;

use crate::engagements::Engagement;

pub const DEFAULT_PREFIX: &str = "zcc-rtms:";
/// How long an ended engagement is remembered.
pub const ENDED_ENGAGEMENT_TTL: Duration = Duration::from_secs(24 * 60 * 60);

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store: {0}")]
    Backend(String),
    #[error("embedded store: {0}")]
    Embedded(#[from] redb::Error),
    #[error("redis: {0}")]
    Redis(#[from] ::redis::RedisError),
    /// A stored value could not be read back: tampered, sealed under another
    /// key, or not ours. Never a panic.
    #[error("stored value under {key} is unreadable: {reason}")]
    Corrupt { key: String, reason: String },
}

/// The store being unreachable is a 503 with a reason (retry later); an
/// unreadable value is a 500.
impl From<StoreError> for crate::error::AppError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Corrupt { .. } => {
                crate::error::AppError::Internal(anyhow::Error::new(e).context("store"))
            }
            other => {
                tracing::warn!(error = %other, "store unavailable");
                crate::error::AppError::Unavailable(format!(
                    "the {} store is unavailable",
                    match other {
                        StoreError::Redis(_) => "Redis",
                        _ => "data",
                    }
                ))
            }
        }
    }
}

/// Which active engagements to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActiveIndex<'a> {
    All,
    /// Assigned to this agent (Zoom user id).
    Agent(&'a str),
    /// In this Zoom account.
    Account(&'a str),
}

/// Where the store lives.
#[derive(Debug, Clone)]
pub enum Backend {
    Embedded {
        dir: PathBuf,
    },
    Redis {
        url: crate::secret::Secret,
        /// Trusted root (PEM) for `rediss://`; the system's roots otherwise.
        ca_cert: Option<PathBuf>,
    },
}

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

#[derive(Clone)]
enum Inner {
    Embedded(embedded::Embedded),
    Redis(redis::RedisBackend),
}

#[derive(Clone)]
pub struct Store {
    inner: Inner,
    prefix: Arc<str>,
    sealer: Arc<Sealer>,
    /// Times every call to the backend (the metrics), when set.
    timer: Option<crate::metrics::StoreTimer>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend_name())
            .field("prefix", &self.prefix)
            .finish()
    }
}

/// Dispatch a primitive to the backend, timed (operation = the primitive's
/// name) when the store has a timer.
macro_rules! backend {
    ($self:ident . $method:ident ( $($arg:expr),* )) => {{
        let started = $self.timer.as_ref().map(|_| std::time::Instant::now());
        let result = match &$self.inner {
            Inner::Embedded(b) => b.$method($($arg),*).await,
            Inner::Redis(b) => b.$method($($arg),*).await,
        };
        if let (Some(timer), Some(started)) = (&$self.timer, started) {
            timer.observe(stringify!($method), started.elapsed(), result.is_ok());
        }
        result
    }};
}

impl Store {
    pub async fn open(backend: &Backend, key: &TokenKey, prefix: &str) -> Result<Self, StoreError> {
        let inner = match backend {
            Backend::Embedded { dir } => Inner::Embedded(embedded::Embedded::open(dir).await?),
            Backend::Redis { url, ca_cert } => Inner::Redis(
                redis::RedisBackend::connect(&redis::client(url.expose(), ca_cert.as_deref())?)
                    .await?,
            ),
        };
        Ok(Self {
            inner,
            prefix: prefix.into(),
            sealer: Arc::new(Sealer::new(key)),
            timer: None,
        })
    }

    /// Time every call to the backend from now on.
    pub fn timed(mut self, timer: crate::metrics::StoreTimer) -> Self {
        self.timer = Some(timer);
        self
    }

    pub async fn open_embedded(dir: &Path, key: &TokenKey) -> Result<Self, StoreError> {
        Self::open(
            &Backend::Embedded {
                dir: dir.to_owned(),
            },
            key,
            DEFAULT_PREFIX,
        )
        .await
    }

    pub fn backend_name(&self) -> &'static str {
        match self.inner {
            Inner::Embedded(_) => "embedded",
            Inner::Redis(_) => "redis",
        }
    }

    pub fn is_shared(&self) -> bool {
        matches!(self.inner, Inner::Redis(_))
    }

    /// Run a call that does not go through [`backend!`], timed like it.
    async fn time<T>(
        &self,
        operation: &'static str,
        call: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let Some(timer) = &self.timer else {
            return call.await;
        };
        let started = std::time::Instant::now();
        let result = call.await;
        timer.observe(operation, started.elapsed(), result.is_ok());
        result
    }

    /// Readiness: the store answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        backend!(self.ping())
    }

    /// Delete expired values (only the embedded file needs it; Redis expires
    /// keys by itself). Returns how many went.
    pub async fn sweep_expired(&self) -> Result<usize, StoreError> {
        let sweep = async {
            match &self.inner {
                Inner::Embedded(b) => {
                    let gone = b.sweep_expired().await?;
                    b.prune_sets(self.ended_set_prefix(), self.key("engagement", ""))
                        .await?;
                    Ok(gone)
                }
                Inner::Redis(_) => Ok(0),
            }
        };
        self.time("sweep_expired", sweep).await
    }

    pub(crate) fn key(&self, kind: &str, id: &str) -> String {
        format!("{}{kind}:{id}", self.prefix)
    }

    /// The embedded backend, for modules that keep tables of their own in
    /// the same file (the webhook inbox).
    pub(crate) fn embedded(&self) -> Option<&embedded::Embedded> {
        match &self.inner {
            Inner::Embedded(b) => Some(b),
            Inner::Redis(_) => None,
        }
    }

    /// The Redis backend, for modules with structures of their own there.
    pub(crate) fn redis(&self) -> Option<&redis::RedisBackend> {
        match &self.inner {
            Inner::Redis(b) => Some(b),
            Inner::Embedded(_) => None,
        }
    }

    /// Seal `plain` bound to `key` (what [`Store::open_value`] checks).
    pub(crate) fn seal_value(&self, key: &str, plain: &[u8]) -> Vec<u8> {
        self.sealer.seal(key, plain)
    }

    pub(crate) fn open_value(&self, key: &str, sealed: &[u8]) -> Result<Vec<u8>, StoreError> {
        self.sealer
            .open(key, sealed)
            .map_err(|e| StoreError::Corrupt {
                key: key.to_owned(),
                reason: e.to_string(),
            })
    }

    /// Readiness: a value written is read back (a real write round-trip on
    /// the embedded file, a round-trip to Redis).
    pub async fn check_write(&self) -> Result<(), StoreError> {
        let key = self.key("ready", &crate::util::random_hex(8));
        let nonce = crate::util::random_hex(8).into_bytes();
        backend!(self.put(key.clone(), nonce.clone(), Some(Duration::from_secs(60))))?;
        let back = backend!(self.take(key))?;
        if back.as_deref() == Some(nonce.as_slice()) {
            Ok(())
        } else {
            Err(StoreError::Backend(
                "a value written was not read back".into(),
            ))
        }
    }

    // ---- sealed JSON values ----

    async fn put_sealed<T: Serialize>(
        &self,
        key: String,
        value: &T,
        ttl: Option<Duration>,
    ) -> Result<(), StoreError> {
        let plain = serde_json::to_vec(value).map_err(|e| StoreError::Backend(e.to_string()))?;
        let sealed = self.sealer.seal(&key, &plain);
        backend!(self.put(key, sealed, ttl))
    }

    fn open_sealed<T: DeserializeOwned>(&self, key: &str, raw: &[u8]) -> Result<T, StoreError> {
        let corrupt = |reason: String| StoreError::Corrupt {
            key: key.to_owned(),
            reason,
        };
        let plain = self
            .sealer
            .open(key, raw)
            .map_err(|e| corrupt(e.to_string()))?;
        serde_json::from_slice(&plain).map_err(|e| corrupt(format!("not a valid record: {e}")))
    }

    async fn get_sealed<T: DeserializeOwned>(&self, key: String) -> Result<Option<T>, StoreError> {
        match backend!(self.get(key.clone()))? {
            None => Ok(None),
            Some(raw) => self.open_sealed(&key, &raw).map(Some),
        }
    }

    // ---- tokens ----

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

    /// Delete an engagement's record and its index entries. Idempotent.
    pub async fn delete_engagement(&self, engagement: &Engagement) -> Result<(), StoreError> {
        let id = &engagement.engagement_id;
        for set in self.indexes_of(engagement) {
            backend!(self.set_remove(set, id.clone()))?;
        }
        if let Some(agent) = &engagement.agent_user_id {
            backend!(self.set_remove(self.ended_set(agent), id.clone()))?;
        }
        backend!(self.take(self.key("engagement", id))).map(drop)
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

    // ---- one-time OAuth values (PKCE verifiers) ----

    pub async fn put_verifier(
        &self,
        nonce: &str,
        verifier: &str,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        self.put_sealed(self.key("pkce", nonce), &verifier, Some(ttl))
            .await
    }

    /// The verifier for `nonce`, at most once.
    pub async fn take_verifier(&self, nonce: &str) -> Result<Option<String>, StoreError> {
        let key = self.key("pkce", nonce);
        match backend!(self.take(key.clone()))? {
            None => Ok(None),
            Some(raw) => self.open_sealed(&key, &raw).map(Some),
        }
    }

    // ---- webhook de-duplication ----

    /// True the first time `key` is seen within `ttl`.
    pub async fn first_seen(&self, key: &str, ttl: Duration) -> Result<bool, StoreError> {
        backend!(self.insert_if_absent(self.key("dedup", key), b"1".to_vec(), Some(ttl)))
    }

    // ---- leases: refresh locks and stream ownership ----

    /// Take the named lock for `ttl` (free, expired or already ours).
    pub async fn try_lock(
        &self,
        name: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        backend!(self.lease_claim(self.key("lock", name), owner.to_owned(), ttl))
    }

    pub async fn unlock(&self, name: &str, owner: &str) -> Result<bool, StoreError> {
        backend!(self.lease_release(self.key("lock", name), owner.to_owned()))
    }

    /// Claim a stream for `owner` (an instance id) for `ttl`. False when
    /// another owner holds a live lease.
    pub async fn claim_stream(
        &self,
        stream_id: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        backend!(self.lease_claim(self.key("stream", stream_id), owner.to_owned(), ttl))
    }

    /// Extend `owner`'s lease. False when the lease is lost (expired and
    /// possibly taken by another instance): stop consuming.
    pub async fn renew_stream(
        &self,
        stream_id: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        backend!(self.lease_renew(self.key("stream", stream_id), owner.to_owned(), ttl))
    }

    /// Who holds a stream's lease now (the owner string), if anyone.
    pub async fn stream_lease(&self, stream_id: &str) -> Result<Option<String>, StoreError> {
        let raw = backend!(self.get(self.key("stream", stream_id)))?;
        Ok(raw.and_then(|v| String::from_utf8(v).ok()))
    }

    /// Give up `owner`'s lease (compare-and-delete: never someone else's).
    pub async fn release_stream(&self, stream_id: &str, owner: &str) -> Result<bool, StoreError> {
        backend!(self.lease_release(self.key("stream", stream_id), owner.to_owned()))
    }

    // ---- engagements ----

    fn active_set(&self) -> String {
        format!("{}engagements:active", self.prefix)
    }

    /// The set an index lives in: all active engagements, or one agent's,
    /// or one account's (ids kept opaque, like every key).
    fn index_set(&self, index: ActiveIndex<'_>) -> String {
        match index {
            ActiveIndex::All => self.active_set(),
            ActiveIndex::Agent(user) => format!(
                "{}:agent:{}",
                self.active_set(),
                self.sealer.key_id(&[user])
            ),
            ActiveIndex::Account(account) => format!(
                "{}:account:{}",
                self.active_set(),
                self.sealer.key_id(&[account])
            ),
        }
    }

    fn ended_set_prefix(&self) -> String {
        format!("{}engagements:ended:agent:", self.prefix)
    }

    /// One agent's ended engagements: kept as long as an ended engagement
    /// is, so removing the app can delete them too.
    fn ended_set(&self, agent: &str) -> String {
        format!(
            "{}{}",
            self.ended_set_prefix(),
            self.sealer.key_id(&[agent])
        )
    }

    /// The indexes an engagement belongs in.
    fn indexes_of(&self, engagement: &Engagement) -> Vec<String> {
        let mut sets = vec![self.index_set(ActiveIndex::All)];
        if let Some(agent) = &engagement.agent_user_id {
            sets.push(self.index_set(ActiveIndex::Agent(agent)));
        }
        if let Some(account) = &engagement.account_id {
            sets.push(self.index_set(ActiveIndex::Account(account)));
        }
        sets
    }

    pub async fn save_engagement(&self, engagement: &Engagement) -> Result<(), StoreError> {
        let key = self.key("engagement", &engagement.engagement_id);
        let id = engagement.engagement_id.clone();
        if engagement.is_active() {
            self.put_sealed(key, engagement, None).await?;
            for set in self.indexes_of(engagement) {
                backend!(self.set_add(set, id.clone()))?;
            }
        } else {
            self.put_sealed(key, engagement, Some(ENDED_ENGAGEMENT_TTL))
                .await?;
            if let Some(agent) = &engagement.agent_user_id {
                let set = self.ended_set(agent);
                let add = async {
                    match &self.inner {
                        // The embedded sweep drops members whose record expired.
                        Inner::Embedded(b) => b.set_add(set, id.clone()).await,
                        Inner::Redis(b) => {
                            b.set_add_for(set, id.clone(), ENDED_ENGAGEMENT_TTL).await
                        }
                    }
                };
                self.time("set_add", add).await?;
            }
            for set in self.indexes_of(engagement) {
                backend!(self.set_remove(set, id.clone()))?;
            }
        }
        Ok(())
    }

    pub async fn load_engagement(
        &self,
        engagement_id: &str,
    ) -> Result<Option<Engagement>, StoreError> {
        self.get_sealed(self.key("engagement", engagement_id)).await
    }

    /// Active engagements (unordered). Unreadable entries are skipped with a
    /// warning rather than hiding all the others.
    pub async fn active_engagements(&self) -> Result<Vec<Engagement>, StoreError> {
        self.active_engagements_in(ActiveIndex::All).await
    }

    /// Active engagements of one index: the cost is the size of that index
    /// (an agent's own, an account's), never a scan of all. Entries that
    /// ended or moved are dropped from the index on the way.
    pub async fn active_engagements_in(
        &self,
        index: ActiveIndex<'_>,
    ) -> Result<Vec<Engagement>, StoreError> {
        let set = self.index_set(index);
        let ids = backend!(self.set_members(set.clone()))?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            match self.load_engagement(&id).await {
                Ok(Some(e)) if e.is_active() && self.indexes_of(&e).contains(&set) => out.push(e),
                Ok(_) => {
                    backend!(self.set_remove(set.clone(), id))?;
                }
                Err(e) => tracing::warn!(error = %e, "skipping unreadable engagement"),
            }
        }
        Ok(out)
    }

    /// One agent's ended engagements still kept (unordered). Entries whose
    /// record expired or moved are dropped on the way.
    pub async fn ended_engagements_of(&self, agent: &str) -> Result<Vec<Engagement>, StoreError> {
        let set = self.ended_set(agent);
        let ids = backend!(self.set_members(set.clone()))?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            match self.load_engagement(&id).await {
                Ok(Some(e)) if !e.is_active() && e.agent_user_id.as_deref() == Some(agent) => {
                    out.push(e)
                }
                Ok(_) => {
                    backend!(self.set_remove(set.clone(), id))?;
                }
                Err(e) => tracing::warn!(error = %e, "skipping unreadable engagement"),
            }
        }
        Ok(out)
    }
}
