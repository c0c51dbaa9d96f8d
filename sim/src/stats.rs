//! Counters behind `GET /sim/stats`.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

#[derive(Default)]
pub(crate) struct Stats {
    token_requests: Mutex<BTreeMap<String, u64>>,
    rest_calls: Mutex<BTreeMap<String, u64>>,
    signaling_handshakes: Mutex<BTreeMap<String, u64>>,
    media_handshakes: Mutex<BTreeMap<String, u64>>,
    keepalives_answered_by_socket: Mutex<BTreeMap<String, u64>>,
    pub webhooks_sent: AtomicU64,
    pub webhooks_failed: AtomicU64,
    pub webhooks_dropped: AtomicU64,
    pub signaling_open: AtomicI64,
    pub signaling_total: AtomicU64,
    pub media_open: AtomicI64,
    pub media_total: AtomicU64,
    pub frames_sent: AtomicU64,
    pub frames_dropped: AtomicU64,
    pub frames_skipped: AtomicU64,
    pub frames_buffered: AtomicU64,
    pub keepalives_late: AtomicU64,
    pub keepalive_max_ms: AtomicU64,
    pub transcripts_sent: AtomicU64,
    pub events_sent: AtomicU64,
    pub keepalives_sent: AtomicU64,
    pub keepalives_answered: AtomicU64,
    pub streams_started: AtomicU64,
    pub streams_active: AtomicI64,
}

fn bump(map: &Mutex<BTreeMap<String, u64>>, key: &str) {
    let mut m = map.lock().unwrap_or_else(|p| p.into_inner());
    *m.entry(key.to_owned()).or_default() += 1;
}

fn copy(map: &Mutex<BTreeMap<String, u64>>) -> BTreeMap<String, u64> {
    map.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

pub(crate) fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl Stats {
    pub fn token_request(&self, grant: &str) {
        bump(&self.token_requests, grant);
    }
    pub fn rest_call(&self, status: u16) {
        bump(&self.rest_calls, &status.to_string());
    }
    pub fn signaling_handshake(&self, code: i64) {
        bump(&self.signaling_handshakes, &code.to_string());
    }
    pub fn media_handshake(&self, code: i64) {
        bump(&self.media_handshakes, &code.to_string());
    }
    /// A keep-alive answered on a socket of this kind (`signaling`,
    /// `audio`, `transcript`, `all`).
    pub fn keepalive_answered(&self, socket: &str) {
        inc(&self.keepalives_answered);
        bump(&self.keepalives_answered_by_socket, socket);
    }

    pub fn snapshot(&self) -> SimStats {
        let signaling = copy(&self.signaling_handshakes);
        let media = copy(&self.media_handshakes);
        let mut all = signaling.clone();
        for (k, v) in &media {
            *all.entry(k.clone()).or_default() += v;
        }
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let open = |c: &AtomicI64| c.load(Ordering::Relaxed).max(0) as u64;
        SimStats {
            token_requests: copy(&self.token_requests),
            rest_calls: copy(&self.rest_calls),
            webhooks: WebhookStats {
                sent: get(&self.webhooks_sent),
                failed: get(&self.webhooks_failed),
                dropped: get(&self.webhooks_dropped),
            },
            signaling: ConnStats {
                open: open(&self.signaling_open),
                total: get(&self.signaling_total),
            },
            media: ConnStats {
                open: open(&self.media_open),
                total: get(&self.media_total),
            },
            handshakes: all,
            signaling_handshakes: signaling,
            media_handshakes: media,
            frames_sent: get(&self.frames_sent),
            frames_dropped: get(&self.frames_dropped),
            frames_skipped: get(&self.frames_skipped),
            frames_buffered: get(&self.frames_buffered),
            transcripts_sent: get(&self.transcripts_sent),
            events_sent: get(&self.events_sent),
            keepalives: KeepAliveStats {
                sent: get(&self.keepalives_sent),
                answered: get(&self.keepalives_answered),
                answered_by_socket: copy(&self.keepalives_answered_by_socket),
                late: get(&self.keepalives_late),
                max_answer_ms: get(&self.keepalive_max_ms),
            },
            streams: StreamStats {
                started: get(&self.streams_started),
                active: open(&self.streams_active),
            },
        }
    }
}

/// `GET /sim/stats`. Maps are keyed by grant type, HTTP status or RTMS
/// status code (as strings).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SimStats {
    pub token_requests: BTreeMap<String, u64>,
    pub rest_calls: BTreeMap<String, u64>,
    pub webhooks: WebhookStats,
    pub signaling: ConnStats,
    pub media: ConnStats,
    /// Signaling and media handshakes together, by status code.
    pub handshakes: BTreeMap<String, u64>,
    pub signaling_handshakes: BTreeMap<String, u64>,
    pub media_handshakes: BTreeMap<String, u64>,
    /// Audio frames (msg 14) sent.
    pub frames_sent: u64,
    /// Audio frames not sent because a client did not keep up.
    pub frames_dropped: u64,
    /// 20 ms slots a stream never sent because its driver stalled (each is
    /// one frame lost on every channel).
    #[serde(default)]
    pub frames_skipped: u64,
    /// Audio frames (of `frames_sent`) replayed from the buffer to a
    /// consumer that connected after the stream began.
    #[serde(default)]
    pub frames_buffered: u64,
    pub transcripts_sent: u64,
    pub events_sent: u64,
    pub keepalives: KeepAliveStats,
    pub streams: StreamStats,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct WebhookStats {
    /// Deliveries answered with 2xx.
    pub sent: u64,
    /// Attempts that got a non-2xx, a timeout or no connection.
    pub failed: u64,
    /// Webhooks given up after the last retry.
    pub dropped: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ConnStats {
    pub open: u64,
    pub total: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct KeepAliveStats {
    pub sent: u64,
    pub answered: u64,
    /// `answered` by the kind of socket: `signaling`, `audio`,
    /// `transcript`, or `all` (one media socket for both).
    #[serde(default)]
    pub answered_by_socket: BTreeMap<String, u64>,
    /// Answers that came after the next keep-alive was due.
    #[serde(default)]
    pub late: u64,
    /// Slowest answer, in ms.
    #[serde(default)]
    pub max_answer_ms: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct StreamStats {
    pub started: u64,
    pub active: u64,
}
