//! Starts, stops and supervises RTMS sessions by stream id.
//!
//! One session task per stream, each with its own cancel token (a child of
//! the app's) and tracked so shutdown waits for sockets to close. A repeated
//! `voice_rtms_started` for a running stream restarts its connection (Zoom's
//! server failover); the number of concurrent streams is capped.
//!
//! With a shared store (Redis) every stream is leased: exactly one instance
//! consumes it, renews the lease while it does, and releases it at the end;
//! when the owner dies its lease lapses and the next `started` webhook,
//! wherever it lands, takes the stream over.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

use super::lease::Leases;
use super::protocol;
use super::session::Session;
use super::transport::RtmsWs;
use super::{Control, EngineCounters, Outcome, SessionDeps, StreamSpec};
use crate::status::Level;

/// How long an instance tries to adopt an interrupted stream whose owner
/// is gone (Zoom waits about 60 s for a reconnection).
const ADOPT_WINDOW: Duration = Duration::from_secs(60);

struct Entry {
    engagement_id: String,
    server_urls: String,
    generation: u64,
    cancel: CancellationToken,
    control: mpsc::Sender<Control>,
}

#[derive(Clone)]
pub struct RtmsManager {
    inner: Arc<Inner>,
}

struct Inner {
    deps: SessionDeps,
    cancel: CancellationToken,
    tracker: TaskTracker,
    streams: Mutex<HashMap<String, Entry>>,
    generation: AtomicU64,
    leases: Option<Leases>,
}

/// What `start` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Started {
    New,
    Restarted,
    AtCapacity,
}

impl RtmsManager {
    /// `leases`: stream ownership through a shared store (several
    /// instances); `None` for a single instance.
    pub fn new(
        deps: SessionDeps,
        cancel: CancellationToken,
        tracker: TaskTracker,
        leases: Option<Leases>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                deps,
                cancel,
                tracker,
                streams: Mutex::new(HashMap::new()),
                generation: AtomicU64::new(0),
                leases,
            }),
        }
    }

    fn streams(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.inner.streams.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Start consuming a stream, or restart a running one (failover).
    pub fn start(&self, spec: StreamSpec) -> Started {
        let mut streams = self.streams();
        if let Some(entry) = streams.get_mut(&spec.rtms_stream_id) {
            tracing::info!(rtms_stream_id = %spec.rtms_stream_id, "stream already running: reconnecting");
            entry.server_urls = spec.server_urls.clone();
            let _ = entry.control.try_send(Control::Restart {
                server_urls: spec.server_urls,
            });
            return Started::Restarted;
        }
        if streams.len() >= self.inner.deps.config.max_streams {
            drop(streams);
            tracing::warn!(rtms_stream_id = %spec.rtms_stream_id, "stream limit reached");
            self.inner.deps.bus.status(
                Some(&spec.engagement_id),
                Level::Error,
                "RTMS not started: this instance is at its stream limit",
            );
            return Started::AtCapacity;
        }
        let generation = self.inner.generation.fetch_add(1, Ordering::Relaxed);
        self.inner
            .deps
            .counters
            .sessions_started
            .fetch_add(1, Ordering::Relaxed);
        let cancel = self.inner.cancel.child_token();
        let (control, control_rx) = mpsc::channel(4);
        streams.insert(
            spec.rtms_stream_id.clone(),
            Entry {
                engagement_id: spec.engagement_id.clone(),
                server_urls: spec.server_urls.clone(),
                generation,
                cancel: cancel.clone(),
                control,
            },
        );
        drop(streams);

        let span = tracing::info_span!("rtms", engagement_id = %spec.engagement_id, rtms_stream_id = %spec.rtms_stream_id);
        let stream_id = spec.rtms_stream_id.clone();
        let lease_spec = spec.clone();
        let connector = RtmsWs::new(self.inner.deps.tls.clone());
        let session = Session::new(
            spec,
            self.inner.deps.clone(),
            connector,
            cancel.clone(),
            control_rx,
        );
        let manager = self.clone();
        self.inner.tracker.spawn(
            async move {
                let held = match &manager.inner.leases {
                    None => None,
                    Some(leases) => {
                        let deps = &manager.inner.deps;
                        // Boxed: it would take room in the task all along.
                        let claimed = Box::pin(leases.claim(
                            &lease_spec,
                            deps.config.lease_ttl,
                            &cancel,
                            &deps.bus,
                            &manager.inner.tracker,
                        ))
                        .await;
                        if claimed.is_none() {
                            manager.finished(&stream_id, generation);
                            return Outcome::Stopped;
                        }
                        claimed
                    }
                };
                let counters = &manager.inner.deps.counters;
                if held.is_some() {
                    counters.leases_held.fetch_add(1, Ordering::Relaxed);
                }
                let outcome: Outcome = session.run().await;
                // Zoom: a revoked stream's assets are deleted at once.
                if let (
                    Outcome::Terminated {
                        reason: protocol::stop_reason::STREAM_REVOKED,
                    },
                    Some(r),
                ) = (&outcome, &manager.inner.deps.recorder)
                {
                    r.delete(
                        &lease_spec.engagement_id,
                        crate::recording::Deletion::Revoked,
                    )
                    .await;
                }
                if let Some(held) = held {
                    held.release().await;
                    counters.leases_held.fetch_sub(1, Ordering::Relaxed);
                }
                if matches!(outcome, Outcome::Failed(_)) {
                    manager
                        .inner
                        .deps
                        .counters
                        .sessions_failed
                        .fetch_add(1, Ordering::Relaxed);
                }
                manager.finished(&stream_id, generation);
                outcome
            }
            .instrument(span),
        );
        Started::New
    }

    fn finished(&self, stream_id: &str, generation: u64) {
        let mut streams = self.streams();
        if streams
            .get(stream_id)
            .is_some_and(|e| e.generation == generation)
        {
            streams.remove(stream_id);
        }
    }

    /// Stop one stream (stopped webhook). Returns false when it was not running.
    pub fn stop_stream(&self, rtms_stream_id: &str) -> bool {
        match self.streams().get(rtms_stream_id) {
            Some(entry) => {
                entry.cancel.cancel();
                let _ = entry.control.try_send(Control::Stop);
                true
            }
            None => false,
        }
    }

    /// Stop every stream of an engagement (engagement ended).
    pub fn stop_engagement(&self, engagement_id: &str) {
        for entry in self.streams().values() {
            if entry.engagement_id == engagement_id {
                entry.cancel.cancel();
                let _ = entry.control.try_send(Control::Stop);
            }
        }
    }

    /// Zoom says the stream's signaling dropped: reconnect it. A stream that
    /// runs elsewhere is adopted once its owner's lease lapses (the owner
    /// died); a live owner reconnects it itself.
    pub fn interrupted(&self, rtms_stream_id: &str) {
        if let Some(entry) = self.streams().get(rtms_stream_id) {
            let _ = entry.control.try_send(Control::Interrupted);
            return;
        }
        if self.inner.leases.is_some() {
            let manager = self.clone();
            let id = rtms_stream_id.to_owned();
            self.inner
                .tracker
                .spawn(async move { manager.adopt(&id).await });
        }
    }

    async fn adopt(&self, stream_id: &str) {
        let Some(leases) = &self.inner.leases else {
            return;
        };
        let held = match leases.holder(stream_id).await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(rtms_stream_id = %stream_id, error = %e, "reading the stream lease");
                None
            }
        };
        let Some(held) = held else {
            tracing::info!(rtms_stream_id = %stream_id, "interrupted stream unknown here; waiting for Zoom to start it again");
            return;
        };
        if held.owner == leases.owner {
            return;
        }
        let deadline = tokio::time::Instant::now() + ADOPT_WINDOW;
        let step = (self.inner.deps.config.lease_ttl / 3).min(Duration::from_secs(2));
        while tokio::time::Instant::now() < deadline {
            tokio::select! {
                _ = self.inner.cancel.cancelled() => return,
                _ = tokio::time::sleep(step) => {}
            }
            match leases.store.stream_lease(stream_id).await {
                Ok(None) => {
                    tracing::info!(rtms_stream_id = %stream_id, "owner of an interrupted stream is gone; taking it over");
                    self.inner
                        .deps
                        .counters
                        .lease_takeovers
                        .fetch_add(1, Ordering::Relaxed);
                    self.start(StreamSpec {
                        engagement_id: held.engagement_id,
                        rtms_stream_id: stream_id.to_owned(),
                        server_urls: held.server_urls,
                    });
                    return;
                }
                // Still held: the owner is alive and reconnects by itself.
                Ok(Some(_)) => {}
                Err(e) => tracing::warn!(error = %e, "reading the stream lease"),
            }
        }
    }

    /// The call recorder, when recording is on.
    pub fn recorder(&self) -> Option<&crate::recording::Recorder> {
        self.inner.deps.recorder.as_ref()
    }

    pub fn counters(&self) -> &EngineCounters {
        &self.inner.deps.counters
    }

    pub fn active_streams(&self) -> usize {
        self.streams().len()
    }

    pub fn is_running(&self, rtms_stream_id: &str) -> bool {
        self.streams().contains_key(rtms_stream_id)
    }

    /// The signaling URL a running stream uses.
    pub fn server_urls(&self, rtms_stream_id: &str) -> Option<String> {
        self.streams()
            .get(rtms_stream_id)
            .map(|e| e.server_urls.clone())
    }
}
