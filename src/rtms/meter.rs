//! The measurements of one stream: frames and transcripts counted, audio
//! level and peak per channel, who each channel is (caller or agent).
//!
//! Pure bookkeeping on data already read: no IO, no clock, no allocation per
//! audio frame (the base64 payload is decoded into a buffer kept across
//! frames). Never publishes anything itself; the session decides when.

use super::StreamSpec;
use super::protocol::voice_event;
use crate::status::{ChannelView, StreamView};
use crate::time::{now_ms, rfc3339_ms};

/// Every how many audio frames a "Received N audio chunks" line is published.
pub const CHUNK_REPORT_EVERY: u64 = 50;

/// PCM bytes the scratch buffer starts with (16 kHz mono, 20 ms; it grows
/// for larger frames).
const PCM_SCRATCH: usize = 1024;

/// Who speaks on a channel, as the page names them.
pub const CALLER: &str = "caller";
pub const AGENT: &str = "agent";
/// Roles as the metrics count them: caller, agent, not known yet.
pub const ROLES: [&str; 3] = [CALLER, AGENT, "unknown"];

fn role_index(role: &str) -> usize {
    match role {
        CALLER => 0,
        AGENT => 1,
        _ => 2,
    }
}

/// Counts not yet added to the engine-wide counters, by role ([`ROLES`]
/// order).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Unflushed {
    pub frames: [u64; 3],
    pub transcripts: [u64; 3],
}

impl Unflushed {
    /// (frames, transcripts), every role.
    pub fn totals(&self) -> (u64, u64) {
        (self.frames.iter().sum(), self.transcripts.iter().sum())
    }
}

#[derive(Debug, Default)]
struct Channel {
    id: String,
    role: &'static str,
    frames: u64,
    transcripts: u64,
    /// Frames / transcripts already added to the engine counters.
    flushed: (u64, u64),
    level: f32,
    peak: f32,
}

/// Per-stream counters and the scratch buffer; lives across reconnections.
#[derive(Debug)]
pub struct Meter {
    channels: Vec<Channel>,
    frames: u64,
    transcripts: u64,
    /// Transcript lines of channels no audio came on yet (role unknown),
    /// and how many of them were added to the engine counters.
    stray: (u64, u64),
    pcm: Vec<u8>,
    dirty: bool,
}

impl Default for Meter {
    fn default() -> Self {
        Self::new()
    }
}

impl Meter {
    pub fn new() -> Self {
        Self {
            channels: Vec::with_capacity(2),
            frames: 0,
            transcripts: 0,
            stray: (0, 0),
            pcm: vec![0; PCM_SCRATCH],
            dirty: true,
        }
    }

    pub fn frames(&self) -> u64 {
        self.frames
    }

    pub fn transcripts(&self) -> u64 {
        self.transcripts
    }

    /// Something changed since the last [`Meter::view`].
    pub fn dirty(&self) -> bool {
        self.dirty
    }

    fn channel(&mut self, id: &str) -> &mut Channel {
        let pos = match self.channels.iter().position(|c| c.id == id) {
            Some(pos) => pos,
            None => {
                self.channels.push(Channel {
                    id: id.to_owned(),
                    ..Channel::default()
                });
                self.channels.len() - 1
            }
        };
        &mut self.channels[pos]
    }

    /// Count and measure one audio frame (`data`: its base64 payload).
    /// Returns true on every [`CHUNK_REPORT_EVERY`]th frame.
    pub fn audio(&mut self, channel: &str, data: &[u8]) -> bool {
        let need = data.len() / 4 * 3 + 3;
        if need > self.pcm.len() {
            self.pcm.resize(need, 0);
        }
        // Room for the padded length's bytes: the decoder panics without it.
        let level =
            match base64_simd::STANDARD.decode(data, base64_simd::Out::from_slice(&mut self.pcm)) {
                Ok(pcm) => l16_rms(pcm),
                Err(_) => 0.0,
            };
        let ch = self.channel(channel);
        ch.frames += 1;
        ch.level = level;
        ch.peak = ch.peak.max(level);
        self.frames += 1;
        self.dirty = true;
        self.frames.is_multiple_of(CHUNK_REPORT_EVERY)
    }

    /// Count a frame Zoom replayed from its buffer: it adds to the counts,
    /// not to the levels, which show the call as it is now.
    pub fn buffered(&mut self, channel: &str) {
        self.channel(channel).frames += 1;
        self.frames += 1;
        self.dirty = true;
    }

    /// Count one transcript line; returns the role of its channel ("" when
    /// not known yet).
    pub fn transcript(&mut self, channel: &str) -> &'static str {
        self.transcripts += 1;
        self.dirty = true;
        match self.channels.iter_mut().find(|c| c.id == channel) {
            Some(c) => {
                c.transcripts += 1;
                c.role
            }
            None => {
                self.stray.0 += 1;
                ""
            }
        }
    }

    /// Apply a voice event: it may say who a channel is.
    pub fn event(
        &mut self,
        event_type: i64,
        participant_mode: Option<&str>,
        channel: Option<&str>,
    ) {
        if let (Some(role), Some(ch)) = (role_of(event_type, participant_mode), channel) {
            let c = self.channel(ch);
            if c.role != role {
                c.role = role;
                self.dirty = true;
            }
        }
    }

    /// Counts not yet added to the engine-wide counters, by the role each
    /// channel has now (and mark them added).
    pub fn unflushed(&mut self) -> Unflushed {
        let mut delta = Unflushed::default();
        for c in &mut self.channels {
            let r = role_index(c.role);
            delta.frames[r] += c.frames - c.flushed.0;
            delta.transcripts[r] += c.transcripts - c.flushed.1;
            c.flushed = (c.frames, c.transcripts);
        }
        delta.transcripts[2] += self.stray.0 - self.stray.1;
        self.stray.1 = self.stray.0;
        delta
    }

    /// The stream view to publish; starts a new peak interval.
    pub fn view(&mut self, spec: &StreamSpec, state: &str) -> StreamView {
        let mut view = StreamView {
            engagement_id: spec.engagement_id.clone(),
            rtms_stream_id: spec.rtms_stream_id.clone(),
            state: state.to_owned(),
            frames: 0,
            transcripts: 0,
            channels: Vec::with_capacity(self.channels.len()),
            updated_at: String::new(),
        };
        self.refresh(&mut view);
        view
    }

    /// Bring `view` up to date in place (its strings are reused when they
    /// did not change); starts a new peak interval like [`Meter::view`].
    pub fn refresh(&mut self, view: &mut StreamView) {
        view.frames = self.frames;
        view.transcripts = self.transcripts;
        view.channels
            .resize_with(self.channels.len(), ChannelView::default);
        for (v, c) in view.channels.iter_mut().zip(&mut self.channels) {
            if v.channel_id != c.id {
                v.channel_id.clone_from(&c.id);
            }
            if v.role != c.role {
                v.role = c.role.to_owned();
            }
            v.frames = c.frames;
            v.level = c.level;
            v.peak = c.peak;
            c.peak = c.level;
        }
        view.updated_at = rfc3339_ms(now_ms());
        self.dirty = false;
    }
}

/// Who a voice event is about: the caller (consumer) or the agent (user),
/// from its type or, failing that, the participant mode Zoom names.
pub fn role_of(event_type: i64, participant_mode: Option<&str>) -> Option<&'static str> {
    match (event_type, participant_mode) {
        (voice_event::CONSUMER_ANSWERED | voice_event::CONSUMER_END, _) | (_, Some("caller")) => {
            Some(CALLER)
        }
        (voice_event::USER_ANSWERED | voice_event::USER_END, _) | (_, Some("callee")) => {
            Some(AGENT)
        }
        _ => None,
    }
}

/// RMS of little-endian 16-bit PCM as a fraction of full scale (0.0 … 1.0).
pub fn l16_rms(pcm: &[u8]) -> f32 {
    let samples = pcm.len() / 2;
    if samples == 0 {
        return 0.0;
    }
    // A square is at most 2^30: it fits an i32 (cheaper to vectorise than
    // i64 products), and 2^33 of them fit the sum.
    let sum: u64 = pcm
        .chunks_exact(2)
        .map(|p| {
            let s = i32::from(i16::from_le_bytes([p[0], p[1]]));
            u64::from((s * s) as u32)
        })
        .sum();
    ((sum as f64 / samples as f64).sqrt() / 32768.0) as f32
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use proptest::prelude::*;

    use super::*;

    /// The level of a base64 payload as the plain decoder reads it (0 for
    /// what it refuses).
    fn level_by_the_book(data: &[u8]) -> f32 {
        match base64::engine::general_purpose::STANDARD.decode(data) {
            Ok(pcm) => l16_rms(&pcm),
            Err(_) => 0.0,
        }
    }

    fn level(data: &[u8]) -> f32 {
        let mut m = Meter::new();
        m.audio("1", data);
        m.channels[0].level
    }

    proptest! {
        #[test]
        fn the_simd_decoder_reads_every_payload_as_the_plain_one_does(
            pcm in prop::collection::vec(any::<u8>(), 0..2100),
            cut in 0usize..4,
            flip in prop::option::of((any::<prop::sample::Index>(), "[A-Za-z0-9+/=\\-_ .]")),
        ) {
            let mut data = b64(&pcm);
            data.truncate(data.len().saturating_sub(cut));
            if let Some((at, c)) = flip && !data.is_empty() {
                let i = at.index(data.len());
                data[i] = c.as_bytes()[0];
            }
            prop_assert_eq!(level(&data).to_bits(), level_by_the_book(&data).to_bits());
        }
    }

    fn b64(pcm: &[u8]) -> Vec<u8> {
        base64::engine::general_purpose::STANDARD
            .encode(pcm)
            .into_bytes()
    }

    #[test]
    fn rms_of_full_scale_square_is_one_and_silence_is_zero() {
        let loud: Vec<u8> = (0..320)
            .flat_map(|i| if i % 2 == 0 { i16::MAX } else { -i16::MAX }.to_le_bytes())
            .collect();
        assert!((l16_rms(&loud) - 1.0).abs() < 0.001);
        assert_eq!(l16_rms(&[0u8; 640]), 0.0);
        assert_eq!(l16_rms(&[]), 0.0);
        let min: Vec<u8> = (0..320).flat_map(|_| i16::MIN.to_le_bytes()).collect();
        assert!((l16_rms(&min) - 1.0).abs() < 0.001);
    }

    #[test]
    fn every_fiftieth_frame_is_reported_and_levels_follow_the_audio() {
        let mut m = Meter::new();
        let half: Vec<u8> = (0..320).flat_map(|_| 16384i16.to_le_bytes()).collect();
        let frame = b64(&half);
        let mut reports = Vec::new();
        for _ in 0..120 {
            if m.audio("1", &frame) {
                reports.push(m.frames());
            }
        }
        assert_eq!(reports, [50, 100]);
        assert_eq!(m.frames(), 120);
        let spec = StreamSpec {
            engagement_id: "E".into(),
            rtms_stream_id: "S".into(),
            server_urls: "wss://x".into(),
        };
        let v = m.view(&spec, "streaming");
        assert_eq!(v.channels.len(), 1);
        assert!((v.channels[0].level - 0.5).abs() < 0.001);
        assert_eq!(v.channels[0].frames, 120);
        assert!(!m.dirty());
        assert_eq!(m.unflushed().totals(), (120, 0));
        assert_eq!(m.unflushed().totals(), (0, 0));
    }

    #[test]
    fn a_view_refreshed_in_place_matches_a_new_one_and_restarts_the_peak() {
        let spec = StreamSpec {
            engagement_id: "E".into(),
            rtms_stream_id: "S".into(),
            server_urls: String::new(),
        };
        let pcm = |v: i16| b64(&(0..320).flat_map(|_| v.to_le_bytes()).collect::<Vec<u8>>());
        let (mut a, mut b) = (Meter::new(), Meter::new());
        for m in [&mut a, &mut b] {
            m.audio("1", &pcm(16384));
            m.audio("1", &pcm(8192));
        }
        let mut kept = a.view(&spec, "streaming");
        let _ = b.view(&spec, "streaming");
        for m in [&mut a, &mut b] {
            m.event(voice_event::CONSUMER_ANSWERED, None, Some("1"));
            m.audio("2", &pcm(4096));
        }
        a.refresh(&mut kept);
        let fresh = b.view(&spec, "streaming");
        assert_eq!(kept.channels, fresh.channels);
        assert_eq!((kept.frames, kept.channels[0].role.as_str()), (3, CALLER));
        assert!(!a.dirty());
        // The peak interval restarted at the first view.
        assert!((kept.channels[0].peak - 0.25).abs() < 0.001);
    }

    #[test]
    fn buffered_frames_are_counted_but_leave_the_levels_alone() {
        let mut m = Meter::new();
        let half: Vec<u8> = (0..320).flat_map(|_| 16384i16.to_le_bytes()).collect();
        m.audio("1", &b64(&half));
        for _ in 0..99 {
            m.buffered("1");
        }
        m.buffered("2");
        let spec = StreamSpec {
            engagement_id: "E".into(),
            rtms_stream_id: "S".into(),
            server_urls: String::new(),
        };
        let v = m.view(&spec, "streaming");
        assert_eq!(v.frames, 101);
        assert_eq!((v.channels[0].frames, v.channels[1].frames), (100, 1));
        assert!((v.channels[0].level - 0.5).abs() < 0.001);
        assert_eq!(v.channels[1].level, 0.0);
    }

    #[test]
    fn bad_base64_counts_the_frame_at_level_zero() {
        let mut m = Meter::new();
        m.audio("2", b"!!not base64!!");
        let spec = StreamSpec {
            engagement_id: "E".into(),
            rtms_stream_id: "S".into(),
            server_urls: String::new(),
        };
        let v = m.view(&spec, "streaming");
        assert_eq!((v.frames, v.channels[0].level), (1, 0.0));
        // A frame larger than the scratch buffer is still measured.
        let big = vec![0x10u8; 12_000];
        m.audio("2", &b64(&big));
        assert!(m.view(&spec, "streaming").channels[0].level > 0.0);
    }

    #[test]
    fn voice_events_name_the_channels() {
        assert_eq!(role_of(voice_event::CONSUMER_ANSWERED, None), Some(CALLER));
        assert_eq!(role_of(voice_event::USER_ANSWERED, None), Some(AGENT));
        assert_eq!(role_of(voice_event::USER_HOLD, Some("callee")), Some(AGENT));
        assert_eq!(role_of(voice_event::USER_HOLD, None), None);
        let mut m = Meter::new();
        m.event(voice_event::USER_ANSWERED, None, Some("7"));
        assert_eq!(m.transcript("7"), AGENT);
        assert_eq!(m.transcript("8"), "");
        assert_eq!(m.transcripts(), 2);
    }

    #[test]
    fn counts_are_flushed_by_the_role_their_channel_has_by_then() {
        let mut m = Meter::new();
        let frame = b64(&[0u8; 640]);
        m.audio("1", &frame);
        m.audio("2", &frame);
        m.transcript("9");
        // Channel 1 is named before the flush: its frame counts as the caller's.
        m.event(voice_event::CONSUMER_ANSWERED, None, Some("1"));
        let d = m.unflushed();
        assert_eq!(d.frames, [1, 0, 1]);
        assert_eq!(d.transcripts, [0, 0, 1]);
        m.event(voice_event::USER_ANSWERED, None, Some("2"));
        m.audio("2", &frame);
        m.transcript("2");
        let d = m.unflushed();
        assert_eq!((d.frames, d.transcripts), ([0, 1, 0], [0, 1, 0]));
        assert_eq!(m.unflushed(), Unflushed::default());
    }
}
