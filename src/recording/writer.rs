//! The recording thread: takes batches of frames in order, decodes them and
//! writes each channel's WAV file; closes a stream's files when it ends;
//! deletes what it is told to.
//!
//! A file starts at its channel's first frame and follows Zoom's timestamps:
//! a gap is written as silence (at most [`MAX_GAP_MS`] per gap) and audio it
//! already has (replayed again after a reconnection) is skipped, so the file
//! stays aligned with the call's clock ([`place`], pure). Audio Zoom replays
//! from its buffer at stream start is real call audio and is recorded like
//! live audio (it comes first, in timestamp order). After every batch the
//! files it touched are flushed, which rewrites their WAV header: a process
//! killed at any moment leaves files that play up to the last batch. A
//! write error (disk full) is counted, logged once per file, and ends that
//! file only. A plain thread, never the async runtime: file IO blocks.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::BufWriter;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::Receiver;

use base64::Engine as _;
use hound::{SampleFormat, WavSpec, WavWriter};

use super::{RecordingCounters, layout};

/// 16 kHz, 16-bit, mono: what the app asks Zoom for.
pub const SPEC: WavSpec = WavSpec {
    channels: 1,
    sample_rate: 16_000,
    bits_per_sample: 16,
    sample_format: SampleFormat::Int,
};
/// Samples per millisecond.
const PER_MS: i64 = 16;
/// One frame's length in Zoom's timestamps.
const FRAME_MS: i64 = 20;
/// Longest silence written for one gap (a paused stream, a long outage):
/// beyond it the file stops following the clock rather than grow.
pub const MAX_GAP_MS: i64 = 10 * 60 * 1000;
/// Longest file (24 h), well inside the WAV format's 4 GiB.
const MAX_SAMPLES: u64 = 24 * 3600 * 16_000;
/// Silence is written in pieces of this many samples (1 s).
const SILENCE_PIECE: u64 = 16_000;

/// One frame in a batch: which channel, Zoom's timestamp, payload length.
#[derive(Debug, Clone, Copy)]
pub struct FrameMeta {
    slot: u8,
    ts: i64,
    len: u32,
}

/// Frames of one stream, their base64 payloads back to back.
#[derive(Debug)]
pub struct Batch {
    pub frames: Vec<FrameMeta>,
    pub b64: Vec<u8>,
    /// Channel ids by slot.
    pub channels: Arc<[Box<str>]>,
}

impl Batch {
    pub fn new() -> Self {
        Self {
            frames: Vec::with_capacity(super::BATCH_FRAMES),
            // A default frame's base64 is 856 bytes.
            b64: Vec::with_capacity(super::BATCH_FRAMES * 864),
            channels: Arc::from(Vec::new()),
        }
    }

    pub fn push(&mut self, slot: usize, ts: i64, b64: &[u8]) {
        self.frames.push(FrameMeta {
            slot: slot as u8,
            ts,
            len: b64.len() as u32,
        });
        self.b64.extend_from_slice(b64);
    }
}

impl Default for Batch {
    fn default() -> Self {
        Self::new()
    }
}

pub enum Msg {
    Batch {
        key: u64,
        dir: Arc<str>,
        batch: Batch,
    },
    /// The stream ended: finalize its files.
    Close {
        key: u64,
    },
    /// Drop open files of this engagement directory and remove it.
    Delete {
        dir: String,
    },
    Shutdown,
}

/// Where a frame goes, given where the file's audio ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// Audio the file already has.
    Skip,
    /// Write it after this many samples of silence.
    Write { silence: u64 },
}

/// Place a frame with timestamp `ts` in a file whose audio ends at
/// `next_ts` (both Zoom's ms). Within half a frame counts as on time.
pub fn place(next_ts: i64, ts: i64) -> Place {
    let gap = ts.saturating_sub(next_ts);
    if gap <= -FRAME_MS / 2 {
        Place::Skip
    } else if gap >= FRAME_MS / 2 {
        Place::Write {
            silence: (gap.min(MAX_GAP_MS) * PER_MS) as u64,
        }
    } else {
        Place::Write { silence: 0 }
    }
}

struct ChannelFile {
    wav: WavWriter<BufWriter<File>>,
    /// Zoom's timestamp where the written audio ends.
    next_ts: i64,
    dirty: bool,
}

enum Slot {
    Open(Box<ChannelFile>),
    /// Could not be created or written: frames are dropped.
    Failed,
}

struct StreamFiles {
    dir: Arc<str>,
    slots: Vec<Option<Slot>>,
}

pub struct Writer {
    root: PathBuf,
    counters: RecordingCounters,
    pending: Arc<AtomicUsize>,
    streams: HashMap<u64, StreamFiles>,
    /// Streams whose recordings were deleted: what they still send is dropped.
    dead: HashSet<u64>,
    pcm: Vec<u8>,
}

impl Writer {
    pub fn new(root: PathBuf, counters: RecordingCounters, pending: Arc<AtomicUsize>) -> Self {
        Self {
            root,
            counters,
            pending,
            streams: HashMap::new(),
            dead: HashSet::new(),
            pcm: Vec::with_capacity(1024),
        }
    }

    /// Until shutdown, or until every sender is gone.
    pub fn run(mut self, rx: Receiver<Msg>) {
        for msg in rx.iter() {
            match msg {
                Msg::Batch { key, dir, batch } => {
                    self.pending.fetch_sub(1, Ordering::Relaxed);
                    self.batch(key, dir, &batch);
                }
                Msg::Close { key } => {
                    self.dead.remove(&key);
                    if let Some(stream) = self.streams.remove(&key) {
                        self.finalize(stream);
                    }
                }
                Msg::Delete { dir } => self.delete(&dir),
                Msg::Shutdown => break,
            }
        }
        for (_, stream) in std::mem::take(&mut self.streams) {
            self.finalize(stream);
        }
    }

    fn finalize(&self, stream: StreamFiles) {
        for slot in stream.slots.into_iter().flatten() {
            if let Slot::Open(file) = slot
                && let Err(e) = file.wav.finalize()
            {
                self.counters.write_errors.inc();
                tracing::warn!(error = %e, "closing a recording");
            }
        }
    }

    fn delete(&mut self, dir: &str) {
        let keys: Vec<u64> = self
            .streams
            .iter()
            .filter(|(_, s)| &*s.dir == dir)
            .map(|(k, _)| *k)
            .collect();
        for key in keys {
            // Dropped, not finalized: the files are being deleted.
            self.streams.remove(&key);
            self.dead.insert(key);
        }
        layout::remove_dir(&self.root.join(dir));
    }

    fn batch(&mut self, key: u64, dir: Arc<str>, batch: &Batch) {
        if self.dead.contains(&key) {
            return;
        }
        let mut stream = self.streams.remove(&key).unwrap_or_else(|| StreamFiles {
            dir,
            slots: Vec::new(),
        });
        let (mut written, mut dropped, mut bytes) = (0u64, 0u64, 0u64);
        let mut offset = 0usize;
        for f in &batch.frames {
            let b64 = &batch.b64[offset..offset + f.len as usize];
            offset += f.len as usize;
            let slot = f.slot as usize;
            if stream.slots.len() <= slot {
                stream.slots.resize_with(slot + 1, || None);
            }
            if stream.slots[slot].is_none() {
                let channel = batch.channels.get(slot).map_or("", |c| &**c);
                stream.slots[slot] = Some(self.open(&stream.dir, channel, f.ts));
            }
            let Some(Slot::Open(file)) = &mut stream.slots[slot] else {
                dropped += 1;
                continue;
            };
            let need = b64.len() / 4 * 3 + 3;
            if self.pcm.len() < need {
                self.pcm.resize(need, 0);
            }
            let Ok(n) = base64::engine::general_purpose::STANDARD.decode_slice(b64, &mut self.pcm)
            else {
                dropped += 1;
                continue;
            };
            match write_frame(file, f.ts, &self.pcm[..n & !1]) {
                Ok(n) => {
                    written += 1;
                    bytes += n;
                }
                Err(e) => {
                    self.failed(&e);
                    stream.slots[slot] = Some(Slot::Failed);
                    dropped += 1;
                }
            }
        }
        for slot in &mut stream.slots {
            if let Some(Slot::Open(file)) = slot
                && file.dirty
            {
                file.dirty = false;
                if let Err(e) = file.wav.flush() {
                    self.failed(&e);
                    *slot = Some(Slot::Failed);
                }
            }
        }
        self.counters.frames_written.inc_by(written);
        self.counters.frames_dropped.inc_by(dropped);
        self.counters.bytes_written.inc_by(bytes);
        self.streams.insert(key, stream);
    }

    fn failed(&self, e: &dyn std::fmt::Display) {
        self.counters.write_errors.inc();
        tracing::warn!(error = %e, "writing a recording failed; this channel is no longer recorded");
    }

    fn open(&self, dir: &str, channel: &str, ts: i64) -> Slot {
        match self.try_open(dir, channel, ts) {
            Ok(file) => Slot::Open(Box::new(file)),
            Err(e) => {
                self.failed(&e);
                Slot::Failed
            }
        }
    }

    fn try_open(&self, dir: &str, channel: &str, ts: i64) -> anyhow::Result<ChannelFile> {
        let dir = self.root.join(dir);
        layout::create_private_dir(&dir)?;
        // A second stream of the same engagement starting in the same
        // millisecond gets the next one: a file is never replaced.
        let mut last = None;
        for start in ts..ts + 5 {
            let name = layout::file_name(start, channel)
                .ok_or_else(|| anyhow::anyhow!("channel id unfit for a file name"))?;
            match layout::create_file(&dir.join(name)) {
                Ok(file) => {
                    let wav = WavWriter::new(BufWriter::with_capacity(8 * 1024, file), SPEC)?;
                    return Ok(ChannelFile {
                        wav,
                        next_ts: start,
                        dirty: true,
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
                Err(e) => return Err(e.into()),
            }
        }
        Err(last.map_or_else(|| anyhow::anyhow!("no file name left"), Into::into))
    }
}

/// Write one frame's PCM (and the silence before it); bytes written.
fn write_frame(file: &mut ChannelFile, ts: i64, pcm: &[u8]) -> hound::Result<u64> {
    let Place::Write { silence } = place(file.next_ts, ts) else {
        return Ok(0);
    };
    let samples = (pcm.len() / 2) as u64;
    if u64::from(file.wav.len()) + silence + samples > MAX_SAMPLES {
        return Ok(0);
    }
    let mut left = silence;
    while left > 0 {
        let n = left.min(SILENCE_PIECE);
        let mut w = file.wav.get_i16_writer(n as u32);
        for _ in 0..n {
            w.write_sample(0i16);
        }
        w.flush()?;
        left -= n;
    }
    let mut w = file.wav.get_i16_writer(samples as u32);
    for p in pcm.chunks_exact(2) {
        w.write_sample(i16::from_le_bytes([p[0], p[1]]));
    }
    w.flush()?;
    let written = silence + samples;
    file.next_ts += (written as i64) / PER_MS;
    file.dirty = true;
    Ok(written * 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_become_silence_and_repeats_are_skipped() {
        assert_eq!(place(1000, 1000), Place::Write { silence: 0 });
        assert_eq!(place(1000, 1009), Place::Write { silence: 0 });
        assert_eq!(place(1000, 991), Place::Write { silence: 0 });
        assert_eq!(place(1000, 1020), Place::Write { silence: 320 });
        assert_eq!(place(1000, 3000), Place::Write { silence: 32_000 });
        assert_eq!(place(1000, 990), Place::Skip);
        assert_eq!(place(1000, 0), Place::Skip);
        assert_eq!(
            place(0, i64::MAX),
            Place::Write {
                silence: (MAX_GAP_MS * PER_MS) as u64
            },
            "one gap is capped"
        );
    }

    #[test]
    fn a_file_that_cannot_be_written_is_counted_once_and_the_rest_goes_on() {
        let root = tempfile::tempdir().expect("tempdir");
        // Where the engagement's directory should be, a file: nothing can be
        // created under it (as on a full or read-only disk).
        std::fs::write(root.path().join("bad"), "x").expect("write");
        let counters = RecordingCounters::default();
        let mut w = Writer::new(
            root.path().to_owned(),
            counters.clone(),
            Arc::new(AtomicUsize::new(2)),
        );
        let mut batch = Batch::new();
        batch.channels = Arc::from(vec!["1".into()]);
        for i in 0..3 {
            batch.push(0, 1_000 + 20 * i, frame_b64(1).as_bytes());
        }
        w.batch(1, "bad".into(), &batch);
        w.batch(1, "bad".into(), &batch);
        assert_eq!(
            counters.write_errors.get(),
            1,
            "one error per file, not per frame"
        );
        assert_eq!(counters.frames_dropped.get(), 6);
        w.batch(2, "good".into(), &batch);
        assert_eq!(
            counters.frames_written.get(),
            3,
            "other streams are recorded"
        );
    }

    fn frame_b64(value: i16) -> String {
        let pcm: Vec<u8> = (0..320).flat_map(|_| value.to_le_bytes()).collect();
        base64::engine::general_purpose::STANDARD.encode(pcm)
    }

    #[test]
    fn a_file_follows_the_timestamps_and_plays_after_every_batch() {
        let root = tempfile::tempdir().expect("tempdir");
        let counters = RecordingCounters::default();
        let mut w = Writer::new(
            root.path().to_owned(),
            counters.clone(),
            Arc::new(AtomicUsize::new(3)),
        );
        let channels: Arc<[Box<str>]> = Arc::from(vec!["1".into(), "2".into()]);
        let mut batch = Batch::new();
        batch.channels = channels.clone();
        batch.push(0, 1_000, frame_b64(7).as_bytes());
        batch.push(1, 1_000, frame_b64(-7).as_bytes());
        // Channel 0 loses one frame (1_020) and repeats one (1_000).
        batch.push(0, 1_040, frame_b64(8).as_bytes());
        batch.push(0, 1_000, frame_b64(9).as_bytes());
        w.batch(1, "e".into(), &batch);
        // Not closed: the header is already right.
        let read = |name: &str| -> Vec<i16> {
            hound::WavReader::open(root.path().join("e").join(name))
                .expect("valid header")
                .into_samples::<i16>()
                .map(|s| s.expect("sample"))
                .collect()
        };
        let caller = read("1000-1.wav");
        assert_eq!(caller.len(), 3 * 320);
        assert!(caller[..320].iter().all(|s| *s == 7));
        assert!(
            caller[320..640].iter().all(|s| *s == 0),
            "the gap is silence"
        );
        assert!(caller[640..].iter().all(|s| *s == 8));
        assert_eq!(read("1000-2.wav").len(), 320);
        assert_eq!(
            counters.frames_written.get(),
            4,
            "the repeat counts as handled"
        );
        w.delete("e");
        assert!(!root.path().join("e").exists());
        w.batch(1, "e".into(), &batch);
        assert!(
            !root.path().join("e").exists(),
            "a deleted stream writes no more"
        );
    }
}
