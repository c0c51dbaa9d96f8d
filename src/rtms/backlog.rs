//! Buffered audio at stream start: when we connect after a stream began,
//! Zoom first replays up to 60 s of the audio it buffered, all at once. This
//! tells those replayed frames from live ones and says when a replay is
//! over and how much audio it held, so the session can count the backlog
//! without measuring it (the level meter shows the call as it is now) and
//! report it as one line instead of a flood of chunk counts.
//!
//! A replay starts with a frame whose timestamp (Zoom's clock) lags ours by
//! more than [`LIVE_LAG_MS`], and ends when frames lag less than
//! [`CAUGHT_UP_LAG_MS`] or arrive at the pace of real time again (over
//! [`PACE_WINDOW_MS`]), which a replay never does. The gap between the two
//! thresholds keeps the tail of a replay, processed under load, from
//! counting as a second one. Should the clocks disagree, late frames would
//! arrive at real-time pace from the start: once [`SKEW_WINDOWS`] windows in
//! a row show that pace with no progress, the lag is learnt as clock skew
//! (and unlearnt as soon as a frame shows less), no replay is reported, and
//! the frames count as live. One such window is not enough: a replay starved
//! of CPU for a moment (many streams connecting at once on a busy machine)
//! shows it too, and speeds up after.
//!
//! Pure: no IO; the caller passes its clock (Unix ms).

/// A frame later than this (by our clock) starts a replay.
pub const LIVE_LAG_MS: i64 = 2_000;
/// A replay is over once a frame is no later than this.
pub const CAUGHT_UP_LAG_MS: i64 = 1_000;
/// Over this much of our time, a replay delivers more audio than that, even
/// on a busy machine; less than 1.25 times as much is real-time pace: the
/// replay is over.
pub const PACE_WINDOW_MS: i64 = 3_000;
/// Pace windows in a row at real-time pace, with less than [`LIVE_LAG_MS`]
/// of progress, before a lag is taken for clock skew.
pub const SKEW_WINDOWS: u32 = 3;

/// What to do with one audio frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// Replayed from the buffer: count it, neither measure nor report it.
    Buffered,
    /// Live; `caught_up` when it ends a replay.
    Live { caught_up: Option<CaughtUp> },
}

/// A replay that just ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaughtUp {
    /// How much audio was buffered: how far behind its first frame was.
    pub audio_ms: i64,
    /// Frames it held (every channel).
    pub frames: u64,
}

impl CaughtUp {
    /// The status line, e.g. "Caught up 43 s of buffered audio" (whole
    /// seconds, rounded down).
    pub fn message(&self) -> String {
        let secs = self.audio_ms.max(0) / 1000;
        format!("Caught up {secs} s of buffered audio")
    }
}

/// The current run of late frames: how late its first frame was, where
/// its pace window began (a frame's timestamp and our time) and how many
/// frames it has had.
#[derive(Debug, Clone, Copy)]
struct Run {
    first_lag: i64,
    window_ts: i64,
    window_at: i64,
    frames: u64,
    /// Windows in a row at real-time pace so far.
    slow_windows: u32,
}

/// One stream's view of its frames' lateness; lives across reconnections.
#[derive(Debug, Default)]
pub struct Backlog {
    run: Option<Run>,
    /// How far Zoom's clock is behind ours, as far as the frames show.
    skew_ms: i64,
}

impl Backlog {
    /// How late a frame with timestamp `ts` arrives at `now`, as far as
    /// the clocks are known to agree.
    pub fn lag(&self, ts: i64, now: i64) -> i64 {
        now - self.skew_ms - ts
    }

    /// Classify a frame with timestamp `ts` (Zoom's clock, ms) arriving at
    /// `now` (ours, Unix ms).
    pub fn frame(&mut self, ts: i64, now: i64) -> Frame {
        let lag = self.lag(ts, now);
        let Some(run) = self.run.as_mut() else {
            if lag > LIVE_LAG_MS {
                self.run = Some(Run {
                    first_lag: lag,
                    window_ts: ts,
                    window_at: now,
                    frames: 1,
                    slow_windows: 0,
                });
                return Frame::Buffered;
            }
            // A frame earlier than the skew allows: the clocks are closer.
            self.skew_ms += lag.min(0);
            return Frame::Live { caught_up: None };
        };
        run.frames += 1;
        if lag <= CAUGHT_UP_LAG_MS {
            let caught_up = self.end_run();
            return Frame::Live { caught_up };
        }
        let wall = now - run.window_at;
        if wall < PACE_WINDOW_MS {
            return Frame::Buffered;
        }
        let replayed = run.first_lag - lag >= LIVE_LAG_MS;
        let fast = 4 * (ts - run.window_ts) >= 5 * wall;
        if fast || (!replayed && run.slow_windows + 1 < SKEW_WINDOWS) {
            run.slow_windows = if fast { 0 } else { run.slow_windows + 1 };
            run.window_ts = ts;
            run.window_at = now;
            return Frame::Buffered;
        }
        // Real-time pace at this lag: whatever was replayed is over, and the
        // rest of the lag is the clocks'.
        if !replayed {
            tracing::warn!(
                lag_ms = lag,
                "audio timestamps lag our clock but arrive in real time: clock skew assumed"
            );
        }
        let caught_up = self.end_run().filter(|_| replayed);
        self.skew_ms += lag;
        Frame::Live { caught_up }
    }

    fn end_run(&mut self) -> Option<CaughtUp> {
        self.run.take().map(|r| CaughtUp {
            audio_ms: r.first_lag,
            frames: r.frames - 1,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAME: i64 = 20;

    #[test]
    fn live_frames_stay_live_with_no_catch_up_line() {
        let mut b = Backlog::default();
        let now = 1_000_000;
        for i in 0..500 {
            // Up to 2 s late (a slow moment) is still live.
            let late = if i == 250 { LIVE_LAG_MS } else { 40 };
            let ts = now + i * FRAME - late;
            assert_eq!(
                b.frame(ts, now + i * FRAME),
                Frame::Live { caught_up: None }
            );
        }
    }

    /// 43 s of two-channel audio replayed within half a second: all of it
    /// buffered until a frame is within a second of now.
    fn replay(b: &mut Backlog, now: i64) -> u64 {
        let first = now - 43_000;
        let mut buffered = 0;
        for i in 0..(42_000 / FRAME - 5) {
            for _channel in 0..2 {
                assert_eq!(
                    b.frame(first + i * FRAME, now + i / 10),
                    Frame::Buffered,
                    "{i}"
                );
                buffered += 1;
            }
        }
        buffered
    }

    #[test]
    fn a_replay_is_counted_as_buffered_then_reported_once_when_live_audio_comes() {
        let mut b = Backlog::default();
        let now = 10_000_000;
        let buffered = replay(&mut b, now);
        // The tail between 2 s and 1 s late is still the replay.
        assert_eq!(b.frame(now - 1_500, now + 400), Frame::Buffered);
        let f = b.frame(now - 500, now + 410);
        let Frame::Live { caught_up: Some(c) } = f else {
            panic!("expected the end of the replay, got {f:?}");
        };
        assert_eq!(c.frames, buffered + 1);
        assert_eq!(c.audio_ms, 43_000);
        assert_eq!(c.message(), "Caught up 43 s of buffered audio");
        // Then live, even through a slow moment of up to 2 s.
        assert_eq!(
            b.frame(now - 1_580, now + 420),
            Frame::Live { caught_up: None }
        );
        assert_eq!(
            b.frame(now + 440, now + 440),
            Frame::Live { caught_up: None }
        );
    }

    #[test]
    fn a_replay_whose_tail_arrives_at_real_time_pace_ends_without_reaching_a_second() {
        let mut b = Backlog::default();
        let now = 20_000_000;
        let buffered = replay(&mut b, now);
        // Under load the last frames come 1.5 s late, at real-time pace.
        let mut i = 0;
        let c = loop {
            let at = now + 1_000 + i * FRAME;
            match b.frame(at - 1_500, at) {
                Frame::Buffered => i += 1,
                Frame::Live { caught_up } => break caught_up,
            }
            assert!(i < 1_000, "the replay never ended");
        };
        // Within two pace windows (the first began with the fast part).
        assert!(
            (PACE_WINDOW_MS / FRAME..=2 * PACE_WINDOW_MS / FRAME).contains(&i),
            "{i}"
        );
        let c = c.expect("the replay is reported");
        assert_eq!((c.audio_ms, c.frames), (43_000, buffered + i as u64));
        // That lag is no replay any more; a real one still is.
        let at = now + 5_000;
        assert_eq!(
            b.frame(at - 1_500 - LIVE_LAG_MS, at),
            Frame::Live { caught_up: None }
        );
        assert_eq!(b.frame(at - 30_000, at), Frame::Buffered);
    }

    #[test]
    fn the_message_counts_whole_seconds() {
        let c = |audio_ms| {
            CaughtUp {
                audio_ms,
                frames: 1,
            }
            .message()
        };
        assert_eq!(c(60_000), "Caught up 60 s of buffered audio");
        assert_eq!(c(60_999), "Caught up 60 s of buffered audio");
        assert_eq!(c(42_500), "Caught up 42 s of buffered audio");
        assert_eq!(c(-5), "Caught up 0 s of buffered audio");
    }

    #[test]
    fn a_clock_ahead_of_zooms_is_learnt_as_skew_not_taken_for_a_replay() {
        let mut b = Backlog::default();
        let start = 5_000_000;
        let skew = 7_000;
        let mut buffered = 0;
        let mut i = 0;
        loop {
            let now = start + i * FRAME;
            match b.frame(now - skew, now) {
                Frame::Buffered => buffered += 1,
                Frame::Live { caught_up } => {
                    assert_eq!(caught_up, None, "no replay to report");
                    break;
                }
            }
            i += 1;
            assert!(i < 1_000, "never recognised as skew");
        }
        assert_eq!(buffered, i64::from(SKEW_WINDOWS) * PACE_WINDOW_MS / FRAME);
        // From then on, frames with that lag are live at once.
        for j in 0..100 {
            let now = start + (i + j) * FRAME;
            assert_eq!(b.frame(now - skew, now), Frame::Live { caught_up: None });
        }
        // A real replay is still told apart afterwards.
        let now = start + 1_000_000;
        assert_eq!(b.frame(now - skew - 30_000, now), Frame::Buffered);
    }

    #[test]
    fn a_frame_showing_less_skew_unlearns_it() {
        let mut b = Backlog::default();
        let start = 7_000_000;
        let mut i = 0;
        while b.frame(start + i * FRAME - 7_000, start + i * FRAME) == Frame::Buffered {
            i += 1;
        }
        // The clocks were 7 s apart; now a frame comes in time.
        let now = start + 10_000;
        assert_eq!(b.frame(now, now), Frame::Live { caught_up: None });
        // So 3 s late is a replay again.
        assert_eq!(b.frame(now - 3_000, now + 20), Frame::Buffered);
    }

    #[test]
    fn a_replay_starved_for_a_window_then_fast_is_not_mistaken_for_skew() {
        let mut b = Backlog::default();
        let now = 4_000_000;
        let first = now - 60_000;
        // The first 3.1 s of our time bring only 3 s of audio (the machine
        // is busy elsewhere)...
        let mut i = 0;
        while i * FRAME < 3_000 {
            assert_eq!(
                b.frame(first + i * FRAME, now + i * FRAME * 31 / 30),
                Frame::Buffered
            );
            i += 1;
        }
        // ...then the rest comes fast, and the replay is reported whole.
        let resumed = now + 3_100;
        let mut caught = None;
        for j in 0..3_000 {
            let ts = first + (i + j) * FRAME;
            if let Frame::Live { caught_up } = b.frame(ts, resumed + j / 10) {
                caught = caught_up;
                break;
            }
        }
        assert_eq!(caught.map(|c| c.audio_ms), Some(60_000));
    }

    #[test]
    fn a_long_slow_replay_is_not_mistaken_for_skew() {
        let mut b = Backlog::default();
        let now = 3_000_000;
        let first = now - 60_000;
        // 60 s of audio over 8 s of our time: far ahead of real time.
        for i in 0..2_500 {
            let at = now + i * 8_000 / 3_000;
            assert_eq!(b.frame(first + i * FRAME, at), Frame::Buffered, "frame {i}");
        }
    }
}
