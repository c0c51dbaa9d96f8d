//! The audio driver: one interval per stream that sends both channels' audio
//! and the transcripts to every ready media socket, and replays the audio
//! buffered before a stream's first consumer (`buffer_data`) at once.
//!
//! Only reads the stream's state and queues messages on its sockets (a full
//! queue drops the frame and counts it); never awaits while holding the
//! stream's lock, never changes the stream's phase.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use base64::Engine as _;
use tokio::time::{Instant, MissedTickBehavior};

use super::{CALLER_NAME, CHANNEL_USER_IDS, OUT_QUEUE};
use crate::audio;
use crate::protocol::{self, MEDIA_AUDIO, MEDIA_TRANSCRIPT};
use crate::state::{MediaPeer, Phase, Shared, Stream};
use crate::stats::inc;
use crate::util::now_ms;

/// Most 20 ms frames the driver catches up after a stall.
const MAX_CATCH_UP: u64 = 10;
/// Free queue slots a socket owed buffered audio keeps (one frame is up to
/// three messages; signaling-side events share nothing with it, but a stop
/// must still fit).
const CATCH_UP_HEADROOM: usize = 8;

/// One interval per stream drives both channels' audio and transcripts to
/// every ready media socket. Frame content is a pure function of the stream
/// id and the frame's timestamp, so buffered audio is just older frames: a
/// socket that is owed them (a `cursor`) is sent them in order, as fast as
/// its queue takes them, until it has caught up with the live frame.
pub(super) async fn drive(shared: Arc<Shared>, stream: Arc<Stream>) {
    let _ = tokio::task::spawn_blocking(audio::warm).await;
    let start = Instant::now();
    let epoch_frame = (now_ms() / audio::FRAME_MS) as u64;
    let mut next_frame = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(audio::FRAME_MS as u64));
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = shared.cancel.cancelled() => return,
            _ = stream.cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let due = (start.elapsed().as_millis() / audio::FRAME_MS as u128) as u64;
        if due < next_frame {
            continue;
        }
        // After a stall, catch up a little; older frames are lost like packets.
        let from = next_frame.max(due.saturating_sub(MAX_CATCH_UP - 1));
        if from > next_frame {
            shared
                .stats
                .frames_skipped
                .fetch_add(from - next_frame, Ordering::Relaxed);
        }
        next_frame = due + 1;
        if shared.stop_answering() {
            continue;
        }
        let mut inner = stream.lock();
        if inner.phase != Phase::Active {
            continue;
        }
        for m in inner.media.iter_mut().filter(|m| m.ready) {
            match m.cursor {
                None => {
                    for f in from..=due {
                        send_frame(&shared, &stream, m, epoch_frame + f, false);
                    }
                }
                Some(cursor) => m.cursor = catch_up(&shared, &stream, m, cursor, epoch_frame + due),
            }
        }
    }
}

/// Send the owed frames `cursor..=live` while the socket's queue has room
/// (none is dropped: the rest waits for the next tick). Returns the next
/// owed frame, or None once the socket follows the live frames: when all is
/// sent and its queue has drained to half, so live frames (which a full
/// queue drops) do not land on a replay still in flight.
fn catch_up(
    shared: &Shared,
    stream: &Stream,
    m: &MediaPeer,
    cursor: u64,
    live: u64,
) -> Option<u64> {
    let mut next = cursor;
    while next <= live {
        if m.peer.tx.capacity() < CATCH_UP_HEADROOM {
            return Some(next);
        }
        send_frame(shared, stream, m, next, true);
        next += 1;
    }
    (m.peer.tx.capacity() < OUT_QUEUE / 2).then_some(next)
}

/// One frame's messages (both channels' audio, a transcript when an
/// utterance ends) for one socket; `buffered` when it is owed audio.
fn send_frame(shared: &Shared, stream: &Stream, m: &MediaPeer, frame: u64, buffered: bool) {
    let ts = frame as i64 * audio::FRAME_MS;
    let pos = audio::position(stream.offset, ts);
    {
        if let Some(params) = m.req.audio.filter(|_| m.req.kinds & MEDIA_AUDIO != 0) {
            let fpp = params.frames_per_packet() as u64;
            if (frame + 1).is_multiple_of(fpp) {
                let first = frame + 1 - fpp;
                let first_ts = first as i64 * audio::FRAME_MS;
                let first_pos = audio::position(stream.offset, first_ts);
                for (ch, channel_id) in audio::CHANNEL_IDS.iter().enumerate() {
                    let user = params.multi_stream().then(|| {
                        (
                            CHANNEL_USER_IDS[ch],
                            if ch == 0 {
                                CALLER_NAME
                            } else {
                                stream.agent.display_name.as_str()
                            },
                        )
                    });
                    let text = if params.is_default_format() {
                        protocol::audio_frame(
                            audio::frame_b64(ch, first_pos),
                            first_ts,
                            channel_id,
                            user,
                        )
                    } else {
                        let pcm = audio::render(
                            ch,
                            first_pos,
                            fpp as usize,
                            params.rate_hz(),
                            params.channel == 2,
                        );
                        let b64 = base64::engine::general_purpose::STANDARD.encode(pcm);
                        protocol::audio_frame(&b64, first_ts, channel_id, user)
                    };
                    if m.peer.send(text) {
                        inc(&shared.stats.frames_sent);
                        if buffered {
                            inc(&shared.stats.frames_buffered);
                        }
                    } else {
                        inc(&shared.stats.frames_dropped);
                    }
                }
            }
        }
        if m.req.kinds & MEDIA_TRANSCRIPT != 0
            && let Some((ch, turn)) = audio::utterance_ending_at(pos)
        {
            let start = ts - (audio::UTTERANCE_FRAMES as i64) * audio::FRAME_MS;
            let multi = m.req.audio.is_some_and(|a| a.multi_stream());
            let user = multi.then(|| {
                (
                    CHANNEL_USER_IDS[ch],
                    if ch == 0 {
                        CALLER_NAME
                    } else {
                        stream.agent.display_name.as_str()
                    },
                )
            });
            if m.peer.send(protocol::transcript(
                audio::SCRIPT[turn],
                start,
                ts,
                audio::CHANNEL_IDS[ch],
                user,
            )) {
                inc(&shared.stats.transcripts_sent);
            }
        }
    }
}
