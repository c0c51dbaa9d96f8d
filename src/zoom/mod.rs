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
//!
//! Here: the client itself (its configuration, counters and shared parts).
//! What it exchanges with Zoom is in `types`, the token lifecycle (install,
//! refresh) in `tokens`, the authorized REST calls in `rest`, the pairs the
//! store has not taken yet in `unsaved`, and the IO-free OAuth pieces in
//! [`oauth`].

pub mod oauth;
mod rest;
mod tokens;
mod types;
mod unsaved;

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use url::Url;

use crate::secret::Secret;
use crate::store::Store;

pub use types::{Caller, RtmsAction, TokenResponse, ZoomError, ZoomUser};

/// Upper bound of any single HTTP call to Zoom.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(15);
/// Refresh this long before the access token expires.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(60);

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
}
