//! The durable webhook inbox: a verified webhook is stored here *before*
//! Zoom gets its 200, and applied from here afterwards.
//!
//! Owns the inbox end to end: appending (atomically with the delivery's
//! de-duplication key, so a key exists only for a stored event), and the
//! worker that applies entries through the [`Dispatcher`] — at least once,
//! in order per engagement — and removes an entry only once its effect is
//! stored. Never verifies or parses requests (the HTTP handler does) and
//! never decides what an event means (the dispatcher does).
//!
//! Embedded: a redb table in the store's file, appends grouped into one
//! commit. Redis: a stream with a consumer group shared by every instance;
//! entries a dead instance had taken are claimed by a live one.
//!
//! Shutdown stops taking new entries (503, Zoom retries), finishes the entry
//! in hand and leaves the rest for the next start (or another instance).

mod embedded;
mod redis;

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::dispatch::Dispatcher;
use crate::store::{Store, StoreError};
use crate::webhook::{self, Envelope, WebhookEvent};

/// How long a delivery's key is kept. Zoom retries after 5, 20 and 60
/// minutes, so keys live for 90 minutes.
pub const DEDUP_TTL: Duration = Duration::from_secs(90 * 60);

/// Entries taken per read.
const BATCH: usize = 64;

/// What an append did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// Stored; it will take effect.
    Stored,
    /// This delivery was stored before (a retry): nothing to do.
    Duplicate,
}

#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    #[error("the webhook inbox is closed (shutting down)")]
    Closed,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Tuning of the inbox worker.
#[derive(Debug, Clone)]
pub struct InboxConfig {
    /// Redis: entries another consumer has held this long without
    /// finishing are taken over (their instance is presumed dead).
    pub claim_idle: Duration,
}

impl Default for InboxConfig {
    fn default() -> Self {
        Self {
            claim_idle: Duration::from_secs(15),
        }
    }
}

/// One stored delivery: the verified body, exactly as Zoom sent it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    body: String,
}

#[derive(Clone)]
pub struct Inbox {
    inner: Inner,
}

#[derive(Clone)]
enum Inner {
    Embedded(embedded::EmbeddedInbox),
    Redis(redis::RedisInbox),
}

impl Inbox {
    /// The inbox of `store`'s backend. `instance` names this instance as a
    /// consumer (Redis).
    pub async fn open(
        store: &Store,
        instance: &str,
        config: InboxConfig,
    ) -> Result<Self, StoreError> {
        let inner = if store.embedded().is_some() {
            Inner::Embedded(embedded::EmbeddedInbox::open(store.clone()).await?)
        } else {
            Inner::Redis(redis::RedisInbox::open(store.clone(), instance, config).await?)
        };
        Ok(Self { inner })
    }

    /// Store a verified delivery; durable when this returns `Stored`.
    pub async fn append(&self, envelope: &Envelope, body: &[u8]) -> Result<Appended, AppendError> {
        let entry = Entry {
            body: String::from_utf8_lossy(body).into_owned(),
        };
        let plain = serde_json::to_vec(&entry).map_err(|e| StoreError::Backend(e.to_string()))?;
        let dedup = envelope.dedup_key();
        let group = ordering_key(envelope);
        match &self.inner {
            Inner::Embedded(i) => i.append(dedup, plain).await,
            Inner::Redis(i) => i.append(&dedup, group.as_deref(), &plain).await,
        }
    }

    /// Entries stored and not yet applied (for tests and diagnostics).
    pub async fn backlog(&self) -> Result<usize, StoreError> {
        match &self.inner {
            Inner::Embedded(i) => i.backlog().await,
            Inner::Redis(i) => i.backlog().await,
        }
    }

    /// Start the worker. It stops at `cancel` after the entry in hand.
    pub fn spawn_worker(
        &self,
        dispatcher: Dispatcher,
        cancel: CancellationToken,
        tracker: &TaskTracker,
    ) {
        match &self.inner {
            Inner::Embedded(i) => {
                tracker.spawn(i.clone().run(dispatcher, cancel));
            }
            Inner::Redis(i) => {
                tracker.spawn(i.clone().run(dispatcher, cancel));
            }
        }
    }

    /// Stop taking new entries (appends answer `Closed`).
    pub fn close(&self) {
        if let Inner::Embedded(i) = &self.inner {
            i.close();
        }
    }
}

/// Entries with the same key are applied in their order: the engagement.
fn ordering_key(envelope: &Envelope) -> Option<String> {
    match &envelope.body {
        WebhookEvent::EngagementStarted { engagement_id, .. }
        | WebhookEvent::EngagementEnded { engagement_id, .. }
        | WebhookEvent::RtmsStarted { engagement_id, .. }
        | WebhookEvent::RtmsStopped { engagement_id, .. }
        | WebhookEvent::RtmsInterrupted { engagement_id, .. } => Some(engagement_id.clone()),
        WebhookEvent::AppDeauthorized { user_id, .. } => Some(format!("user:{user_id}")),
        WebhookEvent::UrlValidation { .. } | WebhookEvent::Other { .. } => None,
    }
}

/// Apply one stored entry. An entry that no longer parses (it did when it
/// was stored) is dropped with an error line rather than retried forever.
async fn apply(dispatcher: &Dispatcher, plain: &[u8]) -> Result<(), StoreError> {
    let entry: Entry = match serde_json::from_slice(plain) {
        Ok(e) => e,
        Err(e) => {
            tracing::error!(error = %e, "unreadable inbox entry dropped");
            return Ok(());
        }
    };
    match webhook::parse(entry.body.as_bytes()) {
        Ok(envelope) => dispatcher.apply(envelope).await,
        Err(e) => {
            tracing::error!(error = %e, "inbox entry no longer parses; dropped");
            Ok(())
        }
    }
}

/// Wait before retrying after `failures` failed attempts in a row: doubling
/// from 100 ms, at most 5 s.
pub fn backoff(failures: u32) -> Duration {
    let ms = 100u64.saturating_mul(1u64 << failures.saturating_sub(1).min(6));
    Duration::from_millis(ms.min(5_000))
}

/// Sleep unless cancelled; false when cancelled.
async fn pause(cancel: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        _ = cancel.cancelled() => false,
        _ = tokio::time::sleep(d) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_100_ms_up_to_5_s() {
        let got: Vec<u64> = (1..=9).map(|n| backoff(n).as_millis() as u64).collect();
        assert_eq!(got, [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
        assert_eq!(backoff(0), Duration::from_millis(100));
        assert_eq!(backoff(u32::MAX), Duration::from_secs(5));
    }

    #[test]
    fn entries_are_ordered_by_engagement() {
        let started = webhook::parse(
            br#"{"event":"contact_center.voice_rtms_started","payload":{"engagement_id":"E","rtms_stream_id":"S","server_urls":"wss://x"}}"#,
        )
        .expect("parses");
        assert_eq!(ordering_key(&started).as_deref(), Some("E"));
        let other = webhook::parse(br#"{"event":"meeting.started","payload":{}}"#).expect("parses");
        assert_eq!(ordering_key(&other), None);
    }
}
