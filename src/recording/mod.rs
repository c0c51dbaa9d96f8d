//! Call recording (opt-in, `RECORDINGS_DIR`): one WAV file per engagement
//! and channel, 16 kHz 16-bit mono, written as frames arrive.
//!
//! Owns the files under the recordings directory: their layout ([`layout`]:
//! names built only from validated, encoded ids), the writer thread
//! ([`writer`]: decoding, silence for gaps, header kept valid), the per-stream
//! hand-off on the read path ([`StreamRecorder`]: copies a frame's payload
//! into a batch; a full batch goes to the writer through a bounded queue, or
//! is dropped and counted), listing, deletion (Zoom revoked the stream, the
//! user removed the app) and the retention sweep. Never blocks frame intake,
//! never decides who may read a recording (the HTTP layer asks the access
//! policy), never serves HTTP.

pub mod layout;
pub mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use tokio_util::sync::CancellationToken;

use writer::{Batch, Msg};

/// Default of `RECORDINGS_RETENTION_DAYS`.
pub const DEFAULT_RETENTION_DAYS: u64 = 30;
/// Audio frames per batch handed to the writer (both channels: about half
/// a second of a two-party call). The writer updates each file's header once
/// per batch, so a crash loses at most this much.
pub const BATCH_FRAMES: usize = 50;
/// Batches waiting for the writer, all streams together (about 20 s of 500
/// calls); more are dropped and counted.
pub const QUEUE_BATCHES: usize = 20_000;
/// Channels recorded per stream (ZCC sends two: caller and agent).
pub const MAX_CHANNELS: usize = 4;

#[derive(Debug, Clone)]
pub struct RecordingConfig {
    pub dir: PathBuf,
    /// Recordings older than this (since their last write) are deleted.
    pub retention: Duration,
}

/// Counters exposed in `/metrics` (handed over by [`crate::metrics`]).
#[derive(Debug, Clone, Default)]
pub struct RecordingCounters {
    /// Frames written to a file.
    pub frames_written: Counter,
    /// Frames dropped: the writer's queue was full, or the file could not be
    /// written.
    pub frames_dropped: Counter,
    /// Bytes of audio (and inserted silence) written.
    pub bytes_written: Counter,
    /// Failed file operations (create, write, flush).
    pub write_errors: Counter,
    /// Recordings deleted, by reason.
    pub deleted_revoked: Counter,
    pub deleted_deauthorized: Counter,
    pub deleted_retention: Counter,
}

/// Why recordings are deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deletion {
    /// Zoom said STREAM_REVOKED: assets must go at once.
    Revoked,
    /// The agent removed the app.
    Deauthorized,
}

struct Inner {
    dir: PathBuf,
    tx: mpsc::Sender<Msg>,
    /// Batches sent and not yet taken by the writer.
    pending: Arc<AtomicUsize>,
    /// Most batches pending ([`QUEUE_BATCHES`]).
    capacity: usize,
    next_key: AtomicU64,
    counters: RecordingCounters,
    thread: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// The recorder: shared by every session (cheap to clone).
#[derive(Clone)]
pub struct Recorder {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("dir", &self.inner.dir)
            .finish_non_exhaustive()
    }
}

impl Recorder {
    /// Create the directory (owner only) and start the writer thread.
    pub fn start(config: &RecordingConfig, counters: RecordingCounters) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        layout::create_private_dir(&config.dir)
            .with_context(|| format!("creating RECORDINGS_DIR {}", config.dir.display()))?;
        let (recorder, writer, rx) = Self::unstarted(&config.dir, counters, QUEUE_BATCHES);
        let inner = &recorder.inner;
        let thread = std::thread::Builder::new()
            .name("recorder".into())
            .spawn(move || writer.run(rx))
            .context("starting the recording thread")?;
        *inner
            .thread
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(thread);
        Ok(recorder)
    }

    /// The recorder and its writer, not yet running.
    fn unstarted(
        dir: &Path,
        counters: RecordingCounters,
        capacity: usize,
    ) -> (Self, writer::Writer, mpsc::Receiver<Msg>) {
        let (tx, rx) = mpsc::channel();
        let pending = Arc::new(AtomicUsize::new(0));
        let writer = writer::Writer::new(dir.to_owned(), counters.clone(), pending.clone());
        let inner = Arc::new(Inner {
            dir: dir.to_owned(),
            tx,
            pending,
            capacity,
            next_key: AtomicU64::new(1),
            counters,
            thread: std::sync::Mutex::new(None),
        });
        (Self { inner }, writer, rx)
    }

    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The hand-off for one stream of `engagement_id`; None (and a warning)
    /// when the id cannot name a directory.
    pub fn stream(&self, engagement_id: &str) -> Option<StreamRecorder> {
        let Some(dir) = layout::engagement_dir(engagement_id) else {
            tracing::warn!("engagement id unfit for a file name: this call is not recorded");
            return None;
        };
        Some(StreamRecorder {
            recorder: self.clone(),
            key: self.inner.next_key.fetch_add(1, Ordering::Relaxed),
            dir: dir.into(),
            channels: Arc::from(Vec::new()),
            batch: Batch::new(),
        })
    }

    /// Queue a batch unless the writer is `capacity` batches behind.
    fn send_batch(&self, key: u64, dir: &Arc<str>, batch: Batch) {
        let frames = batch.frames.len() as u64;
        if self.inner.pending.fetch_add(1, Ordering::Relaxed) >= self.inner.capacity {
            self.inner.pending.fetch_sub(1, Ordering::Relaxed);
            self.inner.counters.frames_dropped.inc_by(frames);
            return;
        }
        let msg = Msg::Batch {
            key,
            dir: dir.clone(),
            batch,
        };
        if self.inner.tx.send(msg).is_err() {
            self.inner.pending.fetch_sub(1, Ordering::Relaxed);
            self.inner.counters.frames_dropped.inc_by(frames);
        }
    }

    /// Delete an engagement's recordings now (and tell the writer to drop
    /// its open files and anything still queued for them).
    pub async fn delete(&self, engagement_id: &str, why: Deletion) {
        let Some(name) = layout::engagement_dir(engagement_id) else {
            return;
        };
        let path = self.inner.dir.join(&name);
        let removed = tokio::task::spawn_blocking(move || layout::remove_dir(&path))
            .await
            .unwrap_or(0);
        // Then the writer drops its open files and removes whatever it
        // wrote meanwhile.
        let _ = self.inner.tx.send(Msg::Delete { dir: name });
        if removed > 0 {
            let counter = match why {
                Deletion::Revoked => &self.inner.counters.deleted_revoked,
                Deletion::Deauthorized => &self.inner.counters.deleted_deauthorized,
            };
            counter.inc_by(removed as u64);
            tracing::info!(%engagement_id, ?why, files = removed, "recordings deleted");
        }
    }

    /// Note who the engagement's agent is, for [`Recorder::delete_agent`].
    pub async fn note_agent(&self, engagement_id: &str, agent_user_id: &str) {
        let Some(name) = layout::engagement_dir(engagement_id) else {
            return;
        };
        let dir = self.inner.dir.join(name);
        let user = agent_user_id.to_owned();
        let written = tokio::task::spawn_blocking(move || layout::write_agent(&dir, &user)).await;
        if !matches!(written, Ok(Ok(()))) {
            self.inner.counters.write_errors.inc();
            tracing::warn!("noting a recording's agent failed");
        }
    }

    /// Delete every recording whose agent is `user_id` (they removed the
    /// app), including those of engagements the store no longer knows.
    pub async fn delete_agent(&self, user_id: &str) {
        let root = self.inner.dir.clone();
        let user = user_id.to_owned();
        let dirs = tokio::task::spawn_blocking(move || {
            layout::dirs_of_agent(&root, &user)
                .into_iter()
                .map(|d| {
                    let n = layout::remove_dir(&root.join(&d));
                    (d, n)
                })
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        for (dir, n) in dirs {
            let _ = self.inner.tx.send(Msg::Delete { dir });
            self.inner.counters.deleted_deauthorized.inc_by(n as u64);
        }
    }

    /// The recordings of one engagement, oldest first.
    pub async fn list(&self, engagement_id: &str) -> Vec<layout::Recording> {
        let Some(name) = layout::engagement_dir(engagement_id) else {
            return Vec::new();
        };
        let path = self.inner.dir.join(name);
        tokio::task::spawn_blocking(move || layout::list(&path))
            .await
            .unwrap_or_default()
    }

    /// The path of one recording, when `file` is a recording's name and it
    /// exists.
    pub fn file(&self, engagement_id: &str, file: &str) -> Option<PathBuf> {
        let dir = layout::engagement_dir(engagement_id)?;
        layout::parse_file_name(file)?;
        Some(self.inner.dir.join(dir).join(file))
    }

    /// Write out what is queued, close every file and stop the thread
    /// (graceful shutdown; a crash leaves files valid up to the last batch).
    pub async fn close(&self) {
        let _ = self.inner.tx.send(Msg::Shutdown);
        let thread = self
            .inner
            .thread
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(thread) = thread {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }

    /// Delete recordings past retention, now and every `every`, until
    /// cancelled. Its clock is the runtime's (so tests can pause it),
    /// anchored at the wall clock when it starts.
    pub async fn sweep(self, retention: Duration, every: Duration, cancel: CancellationToken) {
        let wall0 = crate::time::now_ms();
        let t0 = tokio::time::Instant::now();
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            let now = wall0 + i64::try_from(t0.elapsed().as_millis()).unwrap_or(i64::MAX);
            let root = self.inner.dir.clone();
            // A file being written is never past retention: the writer
            // need not know.
            let files = tokio::task::spawn_blocking(move || layout::sweep(&root, now, retention))
                .await
                .unwrap_or_default();
            if files > 0 {
                self.inner.counters.deleted_retention.inc_by(files as u64);
                tracing::info!(files, "recordings past retention deleted");
            }
        }
    }
}

/// One stream's hand-off to the writer, owned by its session. Per frame it
/// copies the base64 payload into the current batch (no allocation once the
/// batch's buffers have grown, no lock, no system call); a full batch is
/// sent as one message.
pub struct StreamRecorder {
    recorder: Recorder,
    key: u64,
    dir: Arc<str>,
    /// Channel ids seen, by slot (shared with every batch sent).
    channels: Arc<[Box<str>]>,
    batch: Batch,
}

impl StreamRecorder {
    /// Hand over one audio frame (`b64`: its payload as Zoom sent it).
    pub fn frame(&mut self, channel: &str, timestamp: i64, b64: &[u8]) {
        let slot = match self.channels.iter().position(|c| &**c == channel) {
            Some(slot) => slot,
            None if self.channels.len() < MAX_CHANNELS => {
                let mut all = self.channels.to_vec();
                all.push(channel.into());
                self.channels = all.into();
                self.channels.len() - 1
            }
            None => return,
        };
        self.batch.push(slot, timestamp, b64);
        if self.batch.frames.len() >= BATCH_FRAMES {
            self.send();
        }
    }

    fn send(&mut self) {
        let mut batch = std::mem::take(&mut self.batch);
        batch.channels = self.channels.clone();
        self.recorder.send_batch(self.key, &self.dir, batch);
    }
}

impl Drop for StreamRecorder {
    /// The stream is over: send the rest and close its files.
    fn drop(&mut self) {
        if !self.batch.frames.is_empty() {
            self.send();
        }
        let _ = self.recorder.inner.tx.send(Msg::Close { key: self.key });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_go_in_batches_and_a_full_queue_drops_and_counts_them() {
        use base64::Engine as _;
        let root = tempfile::tempdir().expect("tempdir");
        let counters = RecordingCounters::default();
        // The writer is not running: two batches fit, the third is dropped.
        let (recorder, writer, rx) = Recorder::unstarted(root.path(), counters.clone(), 2);
        let frame = base64::engine::general_purpose::STANDARD.encode([1u8; 640]);
        let mut stream = recorder.stream("eng/1").expect("a fit id");
        for i in 0..3 * BATCH_FRAMES as i64 {
            stream.frame("1", 1_000 + 20 * i, frame.as_bytes());
        }
        assert_eq!(counters.frames_dropped.get(), BATCH_FRAMES as u64);
        assert!(
            recorder.stream(&"x".repeat(200)).is_none(),
            "an id too long"
        );
        drop((stream, recorder));
        writer.run(rx);
        assert_eq!(counters.frames_written.get(), 2 * BATCH_FRAMES as u64);
        let files = layout::list(&root.path().join("eng%2F1"));
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].file, "1000-1.wav");
        let wav = hound::WavReader::open(root.path().join("eng%2F1/1000-1.wav")).expect("wav");
        assert_eq!(wav.duration() as usize, 2 * BATCH_FRAMES * 320);
    }

    #[tokio::test(start_paused = true)]
    async fn recordings_past_retention_are_swept_and_newer_ones_kept() {
        let root = tempfile::tempdir().expect("tempdir");
        let day = Duration::from_secs(86_400);
        let counters = RecordingCounters::default();
        let config = RecordingConfig {
            dir: root.path().join("rec"),
            retention: day,
        };
        let recorder = Recorder::start(&config, counters.clone()).expect("recorder");
        let eng = config.dir.join("e1");
        layout::create_private_dir(&eng).expect("dir");
        let file = eng.join("10-1.wav");
        layout::create_file(&file).expect("file");
        let cancel = CancellationToken::new();
        let sweep = tokio::spawn(recorder.clone().sweep(
            day,
            Duration::from_secs(3600),
            cancel.clone(),
        ));
        tokio::time::sleep(Duration::from_secs(23 * 3600 + 60)).await;
        assert!(file.exists(), "kept within retention");
        tokio::time::sleep(Duration::from_secs(2 * 3600)).await;
        for _ in 0..600 {
            if !file.exists() {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        assert!(!file.exists(), "deleted past retention");
        assert!(!eng.exists(), "its empty directory too");
        assert_eq!(counters.deleted_retention.get(), 1);
        cancel.cancel();
        sweep.await.expect("sweep ends on cancel");
        recorder.close().await;
    }
}
