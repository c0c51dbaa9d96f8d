//! The feed for downstream consumers (opt-in, `SINK_REDIS_URL`): lifecycle
//! events and transcript lines, as they happen on this instance, appended to
//! one Redis stream, `{STORE_PREFIX}sink:events`; with `SINK_AUDIO` also
//! every audio frame, to `{STORE_PREFIX}sink:audio:{engagement_id}`. Every
//! stream is capped with `XADD … MAXLEN ~`.
//!
//! Never blocks frame intake: events come from the status bus like any
//! subscriber; audio frames reach the publisher through a bounded queue that
//! a session only `try_send`s to ([`AudioTap`]). One task, on a thread of
//! its own, batches what is waiting into one pipeline of XADDs per round
//! trip. What cannot be
//! published (the queue was full, the task fell behind the bus, Redis did
//! not take it) is counted as dropped, never retried into memory; a Redis
//! that fails is tried again with a growing pause ([`entries::Backoff`]).
//! Never serves HTTP, never decides what a consumer may see: the sink is a
//! destination the operator configured, trusted with transcripts.

pub mod entries;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use prometheus_client::metrics::counter::Counter;
use redis::aio::MultiplexedConnection;
use tokio::sync::broadcast::{self, error::TryRecvError};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::rtms::StreamSpec;
use crate::rtms::protocol::AudioFrame;
use crate::secret::Secret;
use crate::status::{BusEvent, StatusBus};
use crate::store::StoreError;
use crate::time::now_ms;
use entries::{Backoff, Entries, Fields};

/// About how many entries the events stream keeps, by default.
pub const DEFAULT_EVENTS_MAX_LEN: u64 = 100_000;
/// About how many frames each engagement's audio stream keeps, by default
/// (both channels at 50 frames/s: five minutes).
pub const DEFAULT_AUDIO_MAX_LEN: u64 = 30_000;
/// Audio frames waiting for the publisher, at most (about 0.3 s of 1,000
/// two-channel streams); past it new frames are dropped and counted.
pub const AUDIO_QUEUE: usize = 32_768;
/// Entries sent to Redis in one pipeline, at most.
const MAX_BATCH: usize = 1024;
/// Longest wait for Redis to connect or to answer one pipeline; past it the
/// batch is dropped and the connection redone.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// The feed's settings (from `SINK_*`).
#[derive(Debug, Clone)]
pub struct SinkConfig {
    pub redis_url: Secret,
    /// Publish audio frames too (`SINK_AUDIO`).
    pub audio: bool,
    pub events_max_len: u64,
    pub audio_max_len: u64,
}

/// The events stream's key.
pub fn events_key(prefix: &str) -> String {
    format!("{prefix}sink:events")
}

/// An engagement's audio stream key.
pub fn audio_key(prefix: &str, engagement_id: &str) -> String {
    format!("{prefix}sink:audio:{engagement_id}")
}

/// The feed's counters (in the metrics).
#[derive(Debug, Clone, Default)]
pub struct SinkCounters {
    pub events_published: Counter,
    pub audio_published: Counter,
    /// An audio frame found the queue full.
    pub dropped_queue_full: Counter,
    /// The publisher fell behind the status bus.
    pub dropped_lagged: Counter,
    /// Redis did not take them (down, slow, refused).
    pub dropped_redis: Counter,
}

/// One audio frame on its way to Redis (still base64: decoded by the
/// publisher, off the read path).
#[derive(Debug)]
pub struct AudioEntry {
    engagement_id: String,
    stream_id: String,
    channel: String,
    timestamp: i64,
    sequence: u64,
    data: String,
}

/// What a session holds to hand audio frames to the feed: a bounded queue
/// it never waits on.
#[derive(Debug, Clone)]
pub struct AudioTap {
    tx: mpsc::Sender<AudioEntry>,
    dropped: Counter,
}

impl AudioTap {
    /// Queue one frame (`sequence`: the frame's number in its stream), or
    /// count it dropped when the queue is full. Never waits.
    pub fn frame(&self, spec: &StreamSpec, frame: &AudioFrame<'_>, sequence: u64) {
        // A full queue costs no allocation.
        if self.tx.capacity() == 0 {
            self.dropped.inc();
            return;
        }
        let entry = AudioEntry {
            engagement_id: spec.engagement_id.clone(),
            stream_id: spec.rtms_stream_id.clone(),
            channel: frame.channel.clone().into_owned(),
            timestamp: frame.timestamp,
            sequence,
            data: frame.data.clone().into_owned(),
        };
        if self.tx.try_send(entry).is_err() {
            self.dropped.inc();
        }
    }
}

/// Start the feed; it ends with `cancel`. Returns the audio tap for the
/// sessions when audio is published.
pub fn start(
    config: &SinkConfig,
    ca_cert: Option<&std::path::Path>,
    prefix: &str,
    bus: &StatusBus,
    counters: SinkCounters,
    cancel: CancellationToken,
    tracker: &TaskTracker,
) -> Result<Option<AudioTap>, StoreError> {
    let client = crate::store::redis_client(config.redis_url.expose(), ca_cert)?;
    let (tap, audio_rx) = if config.audio {
        let (tx, rx) = mpsc::channel(AUDIO_QUEUE);
        let tap = AudioTap {
            tx,
            dropped: counters.dropped_queue_full.clone(),
        };
        (Some(tap), Some(rx))
    } else {
        (None, None)
    };
    let publisher = Publisher {
        client,
        conn: None,
        next_try: Instant::now(),
        backoff: Backoff::default(),
        events_key: events_key(prefix),
        prefix: prefix.to_owned(),
        config: config.clone(),
        counters,
    };
    // Its own thread and runtime: on a busy instance a task among thousands
    // of stream tasks is polled too rarely to keep up with their frames.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| StoreError::Backend(format!("the feed's runtime: {e}")))?;
    let bus = bus.subscribe_local();
    tracker.spawn_blocking(move || runtime.block_on(run(publisher, bus, audio_rx, cancel)));
    Ok(tap)
}

/// What one round publishes.
enum Item {
    Event(Fields),
    Audio(AudioEntry),
}

async fn run(
    mut publisher: Publisher,
    mut bus: broadcast::Receiver<Arc<BusEvent>>,
    mut audio: Option<mpsc::Receiver<AudioEntry>>,
    cancel: CancellationToken,
) {
    let mut entries = Entries::default();
    let mut batch: Vec<Item> = Vec::with_capacity(MAX_BATCH);
    loop {
        // Wait for the first item, then take whatever else is waiting.
        tokio::select! {
            _ = cancel.cancelled() => return,
            next = bus.recv() => match next {
                Ok(event) => {
                    if let Some(fields) = entries.entry(&event, now_ms()) {
                        batch.push(Item::Event(fields));
                    }
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    publisher.counters.dropped_lagged.inc_by(n);
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            Some(frame) = recv_opt(&mut audio) => batch.push(Item::Audio(frame)),
        }
        while batch.len() < MAX_BATCH {
            let before = batch.len();
            match bus.try_recv() {
                Ok(event) => {
                    if let Some(fields) = entries.entry(&event, now_ms()) {
                        batch.push(Item::Event(fields));
                    }
                }
                Err(TryRecvError::Lagged(n)) => {
                    publisher.counters.dropped_lagged.inc_by(n);
                }
                Err(TryRecvError::Empty | TryRecvError::Closed) => {}
            }
            if let Some(rx) = audio.as_mut()
                && let Ok(frame) = rx.try_recv()
            {
                batch.push(Item::Audio(frame));
            }
            if batch.len() == before {
                break;
            }
        }
        if !batch.is_empty() {
            tokio::select! {
                _ = cancel.cancelled() => return,
                () = publisher.publish(&batch) => batch.clear(),
            }
        }
    }
}

async fn recv_opt(rx: &mut Option<mpsc::Receiver<AudioEntry>>) -> Option<AudioEntry> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Appends batches to Redis, reconnecting with backoff.
struct Publisher {
    client: redis::Client,
    conn: Option<MultiplexedConnection>,
    next_try: Instant,
    backoff: Backoff,
    events_key: String,
    prefix: String,
    config: SinkConfig,
    counters: SinkCounters,
}

impl Publisher {
    async fn publish(&mut self, batch: &[Item]) {
        let (events, frames) = batch.iter().fold((0u64, 0u64), |(e, a), item| match item {
            Item::Event(_) => (e + 1, a),
            Item::Audio(_) => (e, a + 1),
        });
        if self.conn.is_none() && Instant::now() < self.next_try {
            self.counters.dropped_redis.inc_by(events + frames);
            return;
        }
        let pipe = self.pipeline(batch);
        let Some(conn) = self.connection().await else {
            self.counters.dropped_redis.inc_by(events + frames);
            return;
        };
        match tokio::time::timeout(CALL_TIMEOUT, pipe.exec_async(conn)).await {
            Ok(Ok(())) => {
                self.backoff.succeeded();
                self.counters.events_published.inc_by(events);
                self.counters.audio_published.inc_by(frames);
            }
            failed => {
                let why = match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => "no answer in time".to_owned(),
                };
                self.counters.dropped_redis.inc_by(events + frames);
                self.failed(&why);
            }
        }
    }

    /// The connection, (re)made when it is time to try; None while Redis
    /// is failing.
    async fn connection(&mut self) -> Option<&mut MultiplexedConnection> {
        if self.conn.is_none() {
            if Instant::now() < self.next_try {
                return None;
            }
            let config = redis::AsyncConnectionConfig::new()
                .set_connection_timeout(Some(CALL_TIMEOUT))
                .set_response_timeout(Some(CALL_TIMEOUT));
            let connecting = self
                .client
                .get_multiplexed_async_connection_with_config(&config);
            match tokio::time::timeout(CALL_TIMEOUT, connecting).await {
                Ok(Ok(c)) => {
                    if self.backoff.failures() > 0 {
                        tracing::info!("downstream feed: connected to Redis again");
                    }
                    self.conn = Some(c);
                }
                Ok(Err(e)) => self.failed(&e.to_string()),
                Err(_) => self.failed("connecting timed out"),
            }
        }
        self.conn.as_mut()
    }

    fn failed(&mut self, why: &str) {
        self.conn = None;
        let pause = self.backoff.failed();
        self.next_try = Instant::now() + pause;
        let failures = self.backoff.failures();
        // One line per burst of failures, not one per batch.
        if failures.is_power_of_two() {
            tracing::warn!(error = %why, failures, retry_in = ?pause, "downstream feed: Redis failed; dropping entries meanwhile");
        }
    }

    fn pipeline(&self, batch: &[Item]) -> redis::Pipeline {
        let mut pipe = redis::pipe();
        let engine = base64::engine::general_purpose::STANDARD;
        for item in batch {
            match item {
                Item::Event(fields) => {
                    let cmd = pipe
                        .cmd("XADD")
                        .arg(&self.events_key)
                        .arg("MAXLEN")
                        .arg("~")
                        .arg(self.config.events_max_len)
                        .arg("*");
                    for (name, value) in fields {
                        cmd.arg(*name).arg(value);
                    }
                    cmd.ignore();
                }
                Item::Audio(a) => {
                    let pcm = engine.decode(&a.data).unwrap_or_default();
                    pipe.cmd("XADD")
                        .arg(audio_key(&self.prefix, &a.engagement_id))
                        .arg("MAXLEN")
                        .arg("~")
                        .arg(self.config.audio_max_len)
                        .arg("*")
                        .arg("stream")
                        .arg(&a.stream_id)
                        .arg("channel")
                        .arg(&a.channel)
                        .arg("ts")
                        .arg(a.timestamp)
                        .arg("seq")
                        .arg(a.sequence)
                        .arg("pcm")
                        .arg(pcm)
                        .ignore();
                }
            }
        }
        pipe
    }
}
