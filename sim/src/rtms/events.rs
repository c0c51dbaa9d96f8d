//! ZCC voice events on a stream's signaling socket (`docs/rtms-protocol.md`):
//! the client's subscriptions, the events the call's parties cause, and how
//! ZCC describes those parties. Only queues messages; never changes the
//! stream's phase.

use std::sync::Arc;

use serde_json::{Value, json};

use super::CALLER_NAME;
use crate::audio;
use crate::protocol;
use crate::state::{Shared, Stream, lock};
use crate::stats::inc;
use crate::util::now_ms;

impl Shared {
    pub(crate) fn subscribe(&self, stream: &Arc<Stream>, events: &[(i64, bool)]) {
        let newly: Vec<i64> = {
            let mut inner = stream.lock();
            let mut newly = Vec::new();
            for &(t, on) in events {
                if !(0..64).contains(&t) {
                    continue;
                }
                let bit = 1u64 << t;
                if on {
                    if inner.subscribed & bit == 0 {
                        newly.push(t);
                    }
                    inner.subscribed |= bit;
                } else {
                    inner.subscribed &= !bit;
                }
            }
            newly
        };
        // The call is already answered by both parties when the stream starts.
        for t in newly {
            if t == 8 || t == 10 {
                let bit = 1u64 << t;
                let first = {
                    let mut inner = stream.lock();
                    let first = inner.announced & bit == 0;
                    inner.announced |= bit;
                    first
                };
                if first {
                    self.voice_event(stream, t);
                }
            }
        }
    }

    /// Send a ZCC voice event (8–34) if the client subscribed to it.
    pub(crate) fn voice_event(&self, stream: &Stream, event_type: i64) -> bool {
        if !(8..=34).contains(&event_type) {
            return false;
        }
        let keys = lock(&self.faults).participant_info.keys();
        let inner = stream.lock();
        if inner.subscribed & (1u64 << event_type) == 0 {
            return false;
        }
        let Some(sig) = &inner.signaling else {
            return false;
        };
        // Consumer events describe the caller; the rest the agent.
        let p = match event_type {
            8 => Some(participant(stream, 0, true)),
            9 => Some(participant(stream, 0, false)),
            _ => Some(participant(stream, 1, true)),
        };
        let sent = sig.send(protocol::zcc_event(event_type, now_ms(), p.as_ref(), keys));
        if sent {
            inc(&self.stats.events_sent);
        }
        sent
    }
}

/// The caller (consumer) and agent as ZCC events describe them.
fn participant(stream: &Stream, channel: usize, with_channel: bool) -> Value {
    let mut p = if channel == 0 {
        json!({
            "participant_mode": "caller",
            "phone_number": "+15550100123",
            "user_id": format!("contact-{}", &stream.id[..8]),
            "display_name": CALLER_NAME,
        })
    } else {
        json!({
            "participant_mode": "callee",
            "user_id": stream.agent.user_id,
            "display_name": stream.agent.display_name,
        })
    };
    p["queue_id"] = json!("sim-queue-support");
    p["queue_name"] = json!("Support");
    p["account_id"] = json!(stream.account_id);
    if with_channel {
        p["channel_id"] = json!(audio::CHANNEL_IDS[channel]);
    }
    p
}
