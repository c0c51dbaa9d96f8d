//! The simulated call's sound: two parties (caller on channel "1", agent on
//! channel "2") taking turns, each turn a run of syllable-like voiced bursts
//! with pauses, the other party silent meanwhile.
//!
//! A 20-second loop of L16 16 kHz mono PCM per channel is synthesised once
//! per process and its base64 kept per 20 ms frame, so sending a frame costs
//! one JSON string. Which part of the loop a stream plays is a pure function
//! of its stream id and the frame timestamp (`timestamp / 20 ms`), so tests
//! can recompute exactly the bytes that were sent ([`expected_frame`]).

use std::sync::OnceLock;

use base64::Engine as _;

pub const SAMPLE_RATE: u32 = 16_000;
pub const FRAME_MS: i64 = 20;
pub const FRAME_SAMPLES: usize = 320;
pub const FRAME_BYTES: usize = FRAME_SAMPLES * 2;
/// 20 s of audio.
pub const LOOP_FRAMES: usize = 1000;
/// One speaking turn: 2.5 s.
pub const TURN_FRAMES: usize = 125;
const TURNS: usize = LOOP_FRAMES / TURN_FRAMES;
/// Within a turn, speech runs over these frames; the rest is silence.
const SPEECH_START: usize = 5;
const SPEECH_END: usize = 118;

/// `channel_id` of each party, caller first.
pub const CHANNEL_IDS: [&str; 2] = ["1", "2"];

/// What each turn says (turn k is spoken by party k % 2).
pub const SCRIPT: [&str; TURNS] = [
    "Hi, I'm calling about an order that hasn't arrived yet.",
    "I'm sorry to hear that. Can I have your order number, please?",
    "Sure, it's four five seven two one nine.",
    "Thank you. I can see it left our warehouse on Monday.",
    "Monday? It was supposed to be here yesterday.",
    "It's been delayed at the carrier. It should arrive tomorrow morning.",
    "Okay, that works. Will I get a tracking update?",
    "Yes, I'll send the tracking link to your email right now.",
];

struct Bank {
    /// PCM samples of the loop, per channel.
    pcm: [Vec<i16>; 2],
    /// base64 of each 20 ms frame, per channel.
    b64: [Vec<Box<str>>; 2],
}

fn bank() -> &'static Bank {
    static BANK: OnceLock<Bank> = OnceLock::new();
    BANK.get_or_init(|| {
        let pcm = [synthesize(0), synthesize(1)];
        let engine = base64::engine::general_purpose::STANDARD;
        let b64 = std::array::from_fn(|c| {
            pcm[c]
                .chunks(FRAME_SAMPLES)
                .map(|f| engine.encode(le_bytes(f)).into_boxed_str())
                .collect()
        });
        Bank { pcm, b64 }
    })
}

/// Synthesise the loop now (it takes a moment in debug builds) rather than
/// on a stream's first frame.
pub fn warm() {
    let _ = bank();
}

fn le_bytes(samples: &[i16]) -> Vec<u8> {
    samples.iter().flat_map(|s| s.to_le_bytes()).collect()
}

/// Where in the loop a stream starts: a turn boundary picked by its id.
pub fn stream_offset(stream_id: &str) -> usize {
    // FNV-1a: stable across runs and platforms.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in stream_id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (h % TURNS as u64) as usize * TURN_FRAMES
}

/// Loop position of the frame starting at `timestamp_ms`.
pub fn position(offset: usize, timestamp_ms: i64) -> usize {
    let frame = timestamp_ms.div_euclid(FRAME_MS) as u64;
    ((frame + offset as u64) % LOOP_FRAMES as u64) as usize
}

/// The precomputed base64 of one default (16 kHz mono L16, 20 ms) frame.
pub fn frame_b64(channel: usize, pos: usize) -> &'static str {
    &bank().b64[channel & 1][pos % LOOP_FRAMES]
}

/// The bytes of the default frame a stream sends on `channel_id` at `timestamp_ms`.
pub fn expected_frame(stream_id: &str, channel_id: &str, timestamp_ms: i64) -> Option<Vec<u8>> {
    let channel = CHANNEL_IDS.iter().position(|c| *c == channel_id)?;
    let pos = position(stream_offset(stream_id), timestamp_ms);
    Some(le_bytes(
        &bank().pcm[channel][pos * FRAME_SAMPLES..(pos + 1) * FRAME_SAMPLES],
    ))
}

/// PCM for `frames` consecutive 20 ms frames from loop position `pos`, at a
/// sample rate (Hz) and channel count other than the default.
pub fn render(channel: usize, pos: usize, frames: usize, rate: u32, stereo: bool) -> Vec<u8> {
    let src = &bank().pcm[channel & 1];
    let per_frame = (rate as usize) / 50;
    let mut out = Vec::with_capacity(frames * per_frame * 2 * if stereo { 2 } else { 1 });
    for f in 0..frames {
        let base = ((pos + f) % LOOP_FRAMES) * FRAME_SAMPLES;
        for i in 0..per_frame {
            // Linear interpolation within the 16 kHz frame.
            let x = i as f64 * FRAME_SAMPLES as f64 / per_frame as f64;
            let j = x.floor() as usize;
            let frac = x - j as f64;
            let a = f64::from(src[base + j.min(FRAME_SAMPLES - 1)]);
            let b = f64::from(src[base + (j + 1).min(FRAME_SAMPLES - 1)]);
            let s = (a + (b - a) * frac).round() as i16;
            out.extend_from_slice(&s.to_le_bytes());
            if stereo {
                out.extend_from_slice(&s.to_le_bytes());
            }
        }
    }
    out
}

/// A transcript is due at this loop position: (speaking channel, turn).
pub fn utterance_ending_at(pos: usize) -> Option<(usize, usize)> {
    (pos % TURN_FRAMES == SPEECH_END).then(|| {
        let turn = pos / TURN_FRAMES;
        (turn % 2, turn)
    })
}

/// Frames from the start of an utterance's speech to its end.
pub const UTTERANCE_FRAMES: usize = SPEECH_END - SPEECH_START;

/// Deterministic xorshift noise.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }
}

/// Vowel formants (F1, F2) in Hz.
const VOWELS: [(f64, f64); 6] = [
    (730.0, 1090.0),
    (270.0, 2290.0),
    (300.0, 870.0),
    (530.0, 1840.0),
    (640.0, 1190.0),
    (400.0, 1900.0),
];

fn synthesize(channel: usize) -> Vec<i16> {
    let sr = f64::from(SAMPLE_RATE);
    let mut out = vec![0i16; LOOP_FRAMES * FRAME_SAMPLES];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ ((channel as u64 + 1) * 0x1234_5678));
    // Comfort noise everywhere, like a quiet phone line.
    for s in out.iter_mut() {
        *s = (rng.range(-24.0, 24.0)) as i16;
    }
    let base_f0 = if channel == 0 { 205.0 } else { 118.0 };
    for turn in (0..TURNS).filter(|t| t % 2 == channel) {
        let start = (turn * TURN_FRAMES + SPEECH_START) * FRAME_SAMPLES;
        let end = (turn * TURN_FRAMES + SPEECH_END) * FRAME_SAMPLES;
        let mut t = start;
        let mut in_word = 0;
        while t < end {
            let syl = (rng.range(0.12, 0.26) * sr) as usize;
            let syl_end = (t + syl).min(end);
            let (f1, f2) = VOWELS[(rng.next() % VOWELS.len() as u64) as usize];
            let f0_start = base_f0 * rng.range(0.92, 1.12);
            let f0_end = f0_start * rng.range(0.85, 1.0);
            let loud = rng.range(0.55, 1.0);
            voiced_burst(
                &mut out[t..syl_end],
                &mut rng,
                f0_start,
                f0_end,
                f1,
                f2,
                loud,
            );
            in_word += 1;
            let gap = if in_word >= 2 + (rng.next() % 3) as usize {
                in_word = 0;
                rng.range(0.14, 0.24)
            } else {
                rng.range(0.04, 0.09)
            };
            t = syl_end + (gap * sr) as usize;
        }
    }
    out
}

fn voiced_burst(
    buf: &mut [i16],
    rng: &mut Rng,
    f0_start: f64,
    f0_end: f64,
    f1: f64,
    f2: f64,
    loud: f64,
) {
    let sr = f64::from(SAMPLE_RATE);
    let n = buf.len();
    if n == 0 {
        return;
    }
    let harmonics = (3600.0 / f0_start).floor() as usize;
    let weights: Vec<f64> = (1..=harmonics)
        .map(|h| {
            let f = h as f64 * f0_start;
            let formant = |c: f64, bw: f64| (-((f - c) / bw).powi(2)).exp();
            (formant(f1, 110.0) + 0.7 * formant(f2, 160.0) + 0.25 * formant(2600.0, 250.0))
                / (1.0 + h as f64 * 0.08)
        })
        .collect();
    let norm: f64 = weights.iter().sum::<f64>().max(1e-6);
    let attack = (0.025 * sr) as usize;
    let release = (0.05 * sr) as usize;
    let onset_noise = (0.012 * sr) as usize;
    let mut phase = 0.0f64;
    for (i, s) in buf.iter_mut().enumerate() {
        let progress = i as f64 / n as f64;
        let f0 = f0_start + (f0_end - f0_start) * progress;
        phase += std::f64::consts::TAU * f0 / sr;
        if phase > std::f64::consts::TAU * 1000.0 {
            phase -= std::f64::consts::TAU * 1000.0;
        }
        let mut v = 0.0;
        for (k, w) in weights.iter().enumerate() {
            v += w * ((k + 1) as f64 * phase).sin();
        }
        v /= norm;
        let env = if i < attack {
            0.5 - 0.5 * (std::f64::consts::PI * i as f64 / attack as f64).cos()
        } else if i + release > n {
            let r = (n - i) as f64 / release as f64;
            0.5 - 0.5 * (std::f64::consts::PI * r).cos()
        } else {
            1.0
        };
        let mut sample = v * env * loud * 9000.0;
        if i < onset_noise {
            sample += rng.range(-1.0, 1.0) * 1800.0 * loud;
        }
        *s = (f64::from(*s) + sample).clamp(-32767.0, 32767.0) as i16;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rms(b: &[u8]) -> f64 {
        let n = b.len() / 2;
        let sum: f64 = b
            .chunks(2)
            .map(|c| f64::from(i16::from_le_bytes([c[0], c[1]])).powi(2))
            .sum();
        (sum / n as f64).sqrt()
    }

    #[test]
    fn frames_are_640_bytes_and_match_their_base64() {
        let bytes = expected_frame("abc", "1", 0).expect("channel 1");
        assert_eq!(bytes.len(), FRAME_BYTES);
        let pos = position(stream_offset("abc"), 0);
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(frame_b64(0, pos))
            .expect("b64");
        assert_eq!(decoded, bytes);
    }

    #[test]
    fn parties_take_turns_with_silences_between_bursts() {
        // In turn 0 the caller talks and the agent is silent.
        let loud = |c: usize, pos: usize| {
            rms(
                &bank().pcm[c][pos * FRAME_SAMPLES..(pos + 1) * FRAME_SAMPLES]
                    .iter()
                    .flat_map(|s| s.to_le_bytes())
                    .collect::<Vec<_>>(),
            )
        };
        let caller: Vec<f64> = (SPEECH_START..SPEECH_END).map(|p| loud(0, p)).collect();
        let agent: Vec<f64> = (SPEECH_START..SPEECH_END).map(|p| loud(1, p)).collect();
        assert!(agent.iter().all(|r| *r < 50.0), "agent silent in turn 0");
        let speaking = caller.iter().filter(|r| **r > 500.0).count();
        let quiet = caller.iter().filter(|r| **r < 100.0).count();
        assert!(speaking > caller.len() / 3, "caller speaks: {speaking}");
        assert!(quiet > 3, "caller pauses between syllables: {quiet}");
        // In turn 1 it is the other way round.
        let t1 = TURN_FRAMES + 40;
        assert!(loud(0, t1) < 50.0 || loud(1, t1) > loud(0, t1));
    }

    #[test]
    fn the_same_stream_and_timestamp_give_the_same_bytes() {
        let a = expected_frame("0123456789abcdef0123456789abcdef", "2", 1_700_000_000_020);
        let b = expected_frame("0123456789abcdef0123456789abcdef", "2", 1_700_000_000_020);
        assert_eq!(a, b);
        assert!(expected_frame("x", "3", 0).is_none());
    }

    #[test]
    fn render_at_the_default_rate_equals_the_bank() {
        let pos = 17;
        let r = render(1, pos, 1, SAMPLE_RATE, false);
        let b = base64::engine::general_purpose::STANDARD
            .decode(frame_b64(1, pos))
            .expect("b64");
        assert_eq!(r, b);
        assert_eq!(render(0, 0, 2, 48_000, true).len(), 2 * 960 * 4);
    }
}
