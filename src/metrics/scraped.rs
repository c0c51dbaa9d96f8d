//! The values other modules own and count anyway (the RTMS engine's
//! sessions, frames, reconnects and keep-alives, leases, the live feed's
//! subscribers, the inbox's depth, the Zoom client's refreshes), read when
//! Prometheus scrapes into a registry made fresh for that scrape.
//!
//! Never counts anything itself and never keeps a value between scrapes.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::{ReasonLabels, names};

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct FrameLabels {
    kind: &'static str,
    channel: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ChannelLabels {
    channel: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct StatusLabels {
    status: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

/// Values owned elsewhere, read when Prometheus scrapes.
#[derive(Debug, Clone, Default)]
pub struct Scraped {
    pub streams_active: u64,
    pub sessions_started: u64,
    pub sessions_failed: u64,
    /// (channel role, frames, transcript lines), every role.
    pub by_role: Vec<(&'static str, u64, u64)>,
    /// By the engine's closed set of reasons.
    pub reconnects: Vec<(&'static str, u64)>,
    /// By RTMS status name.
    pub handshake_failures: Vec<(&'static str, u64)>,
    pub lease_takeovers: u64,
    pub leases_held: u64,
    /// The engine's keep-alive histograms (answer time, request age).
    pub keepalive: Option<(Histogram, Histogram)>,
    pub sse_subscribers: u64,
    /// None when the inbox did not answer in time.
    pub inbox_depth: Option<u64>,
    pub token_refreshes_ok: u64,
    pub token_refreshes_failed: u64,
    pub token_refreshes_revoked: u64,
}

/// A registry of this scrape's values (fresh each time: the values are
/// owned by other modules, which count them anyway).
pub(super) fn scraped_registry(s: &Scraped) -> Registry {
    let mut r = Registry::default();
    let gauge = |v: u64| {
        let g = Gauge::<i64>::default();
        g.set(i64::try_from(v).unwrap_or(i64::MAX));
        g
    };
    let counter = |v: u64| {
        let c = Counter::<u64>::default();
        c.inc_by(v);
        c
    };
    r.register(
        names::STREAMS_ACTIVE,
        "RTMS streams this instance consumes now",
        gauge(s.streams_active),
    );
    r.register(
        names::SESSIONS_STARTED,
        "RTMS sessions started",
        counter(s.sessions_started),
    );
    r.register(
        names::SESSIONS_FAILED,
        "RTMS sessions that gave up (refused for good or reconnection window spent)",
        counter(s.sessions_failed),
    );
    let frames = Family::<FrameLabels, Counter>::default();
    let lines = Family::<ChannelLabels, Counter>::default();
    for (channel, f, t) in &s.by_role {
        let kind = "audio";
        frames
            .get_or_create(&FrameLabels { kind, channel })
            .inc_by(*f);
        lines.get_or_create(&ChannelLabels { channel }).inc_by(*t);
    }
    r.register(
        names::FRAMES,
        "RTMS media frames received, by kind and channel (caller, agent, unknown)",
        frames,
    );
    r.register(
        names::TRANSCRIPT_LINES,
        "Transcript lines received, by channel (caller, agent, unknown)",
        lines,
    );
    let reconnects = Family::<ReasonLabels, Counter>::default();
    for (reason, n) in &s.reconnects {
        reconnects
            .get_or_create(&ReasonLabels { reason })
            .inc_by(*n);
    }
    r.register(
        names::RECONNECTS,
        "RTMS reconnections, by why the connection ended",
        reconnects,
    );
    let refused = Family::<StatusLabels, Counter>::default();
    for (status, n) in &s.handshake_failures {
        refused.get_or_create(&StatusLabels { status }).inc_by(*n);
    }
    r.register(
        names::HANDSHAKE_FAILURES,
        "RTMS handshakes Zoom refused, by RTMS status",
        refused,
    );
    r.register(
        names::LEASE_TAKEOVERS,
        "Streams taken over from an instance that died (with Redis)",
        counter(s.lease_takeovers),
    );
    r.register(
        names::LEASES_HELD,
        "Stream leases this instance holds now (with Redis)",
        gauge(s.leases_held),
    );
    if let Some((answer, age)) = &s.keepalive {
        r.register(
            names::KEEPALIVE_ANSWER_SECONDS,
            "RTMS keep-alives: from reading Zoom's request to the answer written to the socket, in seconds",
            answer.clone(),
        );
        r.register(
            names::KEEPALIVE_AGE_SECONDS,
            "RTMS keep-alives: age of Zoom's request when answered, by its timestamp (network delay plus clock offset), in seconds",
            age.clone(),
        );
    }
    r.register(
        names::SSE_SUBSCRIBERS,
        "Live feeds (pages) connected now",
        gauge(s.sse_subscribers),
    );
    if let Some(depth) = s.inbox_depth {
        r.register(
            names::INBOX_DEPTH,
            "Stored webhooks not yet applied",
            gauge(depth),
        );
    }
    let refreshes = Family::<OutcomeLabels, Counter>::default();
    for (outcome, n) in [
        ("ok", s.token_refreshes_ok),
        ("failed", s.token_refreshes_failed),
        ("revoked", s.token_refreshes_revoked),
    ] {
        refreshes
            .get_or_create(&OutcomeLabels { outcome })
            .inc_by(n);
    }
    r.register(
        names::TOKEN_REFRESHES,
        "Zoom token refreshes, by outcome",
        refreshes,
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;

    #[test]
    fn an_inbox_that_did_not_answer_is_left_out_not_shown_as_zero() {
        let text = Metrics::new("redis").render(&Scraped::default());
        assert!(!text.contains(names::INBOX_DEPTH), "{text}");
    }
}
