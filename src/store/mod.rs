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
//!
//! Here: the `Store` handle, its backend and errors, and the sealed-value
//! helpers every typed method uses. The typed methods are grouped by the data
//! they keep: `tokens` (tokens, installers, roles, revoked sessions),
//! `engagements` (records and their indexes), `coordination` (PKCE verifiers,
//! webhook de-duplication keys, locks and stream leases).

pub mod crypto;
pub(crate) mod embedded;
pub(crate) mod redis;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use crypto::{SealError, Sealer, TokenKey};
pub use embedded::FILE_NAME as EMBEDDED_FILE_NAME;
pub use redis::client as redis_client;

pub const DEFAULT_PREFIX: &str = "zcc-rtms:";

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
            $crate::store::Inner::Embedded(b) => b.$method($($arg),*).await,
            $crate::store::Inner::Redis(b) => b.$method($($arg),*).await,
        };
        if let (Some(timer), Some(started)) = (&$self.timer, started) {
            timer.observe(stringify!($method), started.elapsed(), result.is_ok());
        }
        result
    }};
}

// After the macro, so that they can use it.
mod coordination;
mod engagements;
mod tokens;

pub use engagements::{ActiveIndex, ENDED_ENGAGEMENT_TTL};
pub use tokens::TokenRecord;

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
}
