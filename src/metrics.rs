//! Prometheus metrics: every metric name (in [`names`], all `zcc_rtms_`),
//! their labels (closed sets: event kinds, outcomes, reasons, backends —
//! never an engagement, stream, account or user id), and the text
//! exposition served at `GET /metrics`.
//!
//! Cheap where it matters: what other modules already count (the RTMS
//! engine's frames and reconnects, the Zoom client's refreshes, the live
//! feed's subscribers, the inbox's depth) is read when Prometheus scrapes,
//! never added to a shared registry per frame. Only events nothing else
//! counts (webhooks and their answer time, store calls on the webhook path,
//! status-bus lag) are counted here as they happen. Never serves HTTP.
//!
//! Here: the names, what is counted as it happens ([`Metrics`]) with its
//! label sets, and the exposition; what is read at scrape time, with its
//! own label sets, is in `scraped`.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::webhook::WebhookEvent;

mod scraped;
pub use scraped::Scraped;
use scraped::scraped_registry;

/// Every metric's name. Counters are exposed with `_total` appended;
/// histograms as `_bucket`, `_sum`, `_count`.
pub mod names {
    pub const WEBHOOKS_RECEIVED: &str = "zcc_rtms_webhooks_received";
    pub const WEBHOOK_ANSWER_SECONDS: &str = "zcc_rtms_webhook_answer_seconds";
    pub const INBOX_DEPTH: &str = "zcc_rtms_inbox_depth";
    pub const STREAMS_ACTIVE: &str = "zcc_rtms_rtms_streams_active";
    pub const SESSIONS_STARTED: &str = "zcc_rtms_rtms_sessions_started";
    pub const SESSIONS_FAILED: &str = "zcc_rtms_rtms_sessions_failed";
    pub const FRAMES: &str = "zcc_rtms_rtms_frames";
    pub const TRANSCRIPT_LINES: &str = "zcc_rtms_rtms_transcript_lines";
    pub const RECONNECTS: &str = "zcc_rtms_rtms_reconnects";
    pub const HANDSHAKE_FAILURES: &str = "zcc_rtms_rtms_handshake_failures";
    pub const LEASE_TAKEOVERS: &str = "zcc_rtms_rtms_lease_takeovers";
    pub const LEASES_HELD: &str = "zcc_rtms_rtms_leases_held";
    pub const KEEPALIVE_ANSWER_SECONDS: &str = "zcc_rtms_rtms_keepalive_answer_seconds";
    pub const KEEPALIVE_AGE_SECONDS: &str = "zcc_rtms_rtms_keepalive_age_seconds";
    pub const STATUS_BUS_LAGGED: &str = "zcc_rtms_status_bus_lagged_events";
    pub const SSE_SUBSCRIBERS: &str = "zcc_rtms_sse_subscribers";
    pub const STORE_OPERATION_SECONDS: &str = "zcc_rtms_store_operation_seconds";
    pub const STORE_ERRORS: &str = "zcc_rtms_store_errors";
    pub const TOKEN_REFRESHES: &str = "zcc_rtms_token_refreshes";
    pub const RECORDING_FRAMES_WRITTEN: &str = "zcc_rtms_recording_frames_written";
    pub const RECORDING_FRAMES_DROPPED: &str = "zcc_rtms_recording_frames_dropped";
    pub const RECORDING_BYTES_WRITTEN: &str = "zcc_rtms_recording_bytes_written";
    pub const RECORDING_WRITE_ERRORS: &str = "zcc_rtms_recording_write_errors";
    pub const RECORDING_FILES_DELETED: &str = "zcc_rtms_recording_files_deleted";
    pub const SINK_PUBLISHED: &str = "zcc_rtms_sink_published";
    pub const SINK_DROPPED: &str = "zcc_rtms_sink_dropped";
}

/// The content type of the exposition (OpenMetrics text, which Prometheus
/// asks for and parses).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What became of a webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WebhookOutcome {
    /// Stored in the inbox (answered 200).
    Stored,
    /// Already stored once (answered 200, not stored again).
    Duplicate,
    /// Zoom's URL validation, answered.
    Validated,
    /// Signature or timestamp wrong (401).
    Rejected,
    /// Not a webhook we can read (400), or too large (413).
    Malformed,
    /// Could not be stored, or shutting down (503: Zoom retries).
    Unavailable,
}

impl WebhookOutcome {
    fn as_str(self) -> &'static str {
        match self {
            Self::Stored => "stored",
            Self::Duplicate => "duplicate",
            Self::Validated => "validated",
            Self::Rejected => "rejected",
            Self::Malformed => "malformed",
            Self::Unavailable => "unavailable",
        }
    }
}

/// The `event` label of a webhook: its kind, `other` for events the app does
/// not act on, `unknown` when it could not be read or verified.
pub fn webhook_event_label(event: Option<&WebhookEvent>) -> &'static str {
    match event {
        None => "unknown",
        Some(WebhookEvent::UrlValidation { .. }) => "endpoint.url_validation",
        Some(WebhookEvent::EngagementStarted { .. }) => "engagement_started",
        Some(WebhookEvent::EngagementEnded { .. }) => "engagement_ended",
        Some(WebhookEvent::RtmsStarted { .. }) => "voice_rtms_started",
        Some(WebhookEvent::RtmsStopped { .. }) => "voice_rtms_stopped",
        Some(WebhookEvent::RtmsInterrupted { .. }) => "voice_rtms_interrupted",
        Some(WebhookEvent::AppDeauthorized { .. }) => "app_deauthorized",
        Some(WebhookEvent::Other { .. }) => "other",
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct WebhookLabels {
    event: &'static str,
    outcome: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct StoreLabels {
    backend: &'static str,
    operation: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ConsumerLabels {
    consumer: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct SinkKindLabels {
    kind: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

/// Who read the status bus too slowly.
#[derive(Debug, Clone, Copy)]
pub enum BusConsumer {
    /// A page's live feed (it gets a fresh snapshot).
    Sse,
    /// The Redis fan-out to other instances.
    Fanout,
}

/// Store calls timed here (those on the webhook and readiness paths).
#[derive(Debug, Clone, Copy)]
pub enum StoreOp {
    InboxAppend,
    ReadyCheck,
}

/// Times store calls into the store metrics (cheap to clone).
#[derive(Debug, Clone)]
pub struct StoreTimer {
    backend: &'static str,
    seconds: Family<StoreLabels, Histogram>,
    errors: Family<StoreLabels, Counter>,
}

impl StoreTimer {
    /// One call: `operation` is a name from a closed set (the backend's
    /// primitives, the inbox append, the readiness check).
    pub fn observe(&self, operation: &'static str, took: Duration, ok: bool) {
        let labels = StoreLabels {
            backend: self.backend,
            operation,
        };
        self.seconds
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
        if !ok {
            self.errors.get_or_create(&labels).inc();
        }
    }
}

/// The metrics counted as they happen. Cheap to clone (shared handles).
#[derive(Debug, Clone)]
pub struct Metrics {
    backend: &'static str,
    webhooks: Family<WebhookLabels, Counter>,
    webhook_seconds: Histogram,
    store_seconds: Family<StoreLabels, Histogram>,
    store_errors: Family<StoreLabels, Counter>,
    bus_lagged: Family<ConsumerLabels, Counter>,
    recording: crate::recording::RecordingCounters,
    sink: crate::sink::SinkCounters,
    registry: std::sync::Arc<Registry>,
}

fn latency_buckets() -> Histogram {
    // 0.5 ms … ~8 s.
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.0005, 2.0, 15,
    ))
}

impl Metrics {
    /// `backend`: `embedded` or `redis`, the store's label.
    pub fn new(backend: &'static str) -> Self {
        let webhooks = Family::<WebhookLabels, Counter>::default();
        let webhook_seconds = latency_buckets();
        let store_seconds =
            Family::<StoreLabels, Histogram>::new_with_constructor(latency_buckets as fn() -> _);
        let store_errors = Family::<StoreLabels, Counter>::default();
        let bus_lagged = Family::<ConsumerLabels, Counter>::default();
        // `get_or_create_owned`: a guard of `get_or_create` held while
        // creating a second label set deadlocks the family's lock.
        let sink_published = Family::<SinkKindLabels, Counter>::default();
        let published = |kind| sink_published.get_or_create_owned(&SinkKindLabels { kind });
        let sink_dropped = Family::<ReasonLabels, Counter>::default();
        let dropped = |reason| sink_dropped.get_or_create_owned(&ReasonLabels { reason });
        let sink = crate::sink::SinkCounters {
            events_published: published("events"),
            audio_published: published("audio"),
            dropped_queue_full: dropped("queue_full"),
            dropped_lagged: dropped("lagged"),
            dropped_redis: dropped("redis"),
        };
        let mut registry = Registry::default();
        let recording = register_recording(&mut registry);
        registry.register(
            names::SINK_PUBLISHED,
            "Entries appended to the downstream feed (SINK_REDIS_URL), by kind",
            sink_published.clone(),
        );
        registry.register(
            names::SINK_DROPPED,
            "Entries the downstream feed dropped: queue full, fell behind, or Redis did not take them",
            sink_dropped.clone(),
        );
        registry.register(
            names::WEBHOOKS_RECEIVED,
            "Zoom webhooks received, by event and what became of them",
            webhooks.clone(),
        );
        registry.register(
            names::WEBHOOK_ANSWER_SECONDS,
            "Time from a webhook's arrival to its answer, in seconds",
            webhook_seconds.clone(),
        );
        registry.register(
            names::STORE_OPERATION_SECONDS,
            "Store calls, in seconds, by backend and operation (every call to the backend, the inbox append, the readiness check)",
            store_seconds.clone(),
        );
        registry.register(
            names::STORE_ERRORS,
            "Store calls that failed, by backend and operation",
            store_errors.clone(),
        );
        registry.register(
            names::STATUS_BUS_LAGGED,
            "Status events a slow consumer skipped (a page gets a fresh snapshot)",
            bus_lagged.clone(),
        );
        Self {
            backend,
            webhooks,
            webhook_seconds,
            store_seconds,
            store_errors,
            bus_lagged,
            recording,
            sink,
            registry: std::sync::Arc::new(registry),
        }
    }

    /// The call recorder's counters, to hand to it.
    pub fn recording_counters(&self) -> crate::recording::RecordingCounters {
        self.recording.clone()
    }

    pub fn webhook(&self, event: &'static str, outcome: WebhookOutcome, took: Duration) {
        self.webhooks
            .get_or_create(&WebhookLabels {
                event,
                outcome: outcome.as_str(),
            })
            .inc();
        self.webhook_seconds.observe(took.as_secs_f64());
    }

    pub fn store_call(&self, op: StoreOp, took: Duration, ok: bool) {
        let operation = match op {
            StoreOp::InboxAppend => "inbox_append",
            StoreOp::ReadyCheck => "ready_check",
        };
        self.store_timer().observe(operation, took, ok);
    }

    /// What the store times each of its calls to the backend with.
    pub fn store_timer(&self) -> StoreTimer {
        StoreTimer {
            backend: self.backend,
            seconds: self.store_seconds.clone(),
            errors: self.store_errors.clone(),
        }
    }

    /// The downstream feed's counters, to hand to it.
    pub fn sink_counters(&self) -> crate::sink::SinkCounters {
        self.sink.clone()
    }

    /// The lag counter of one consumer, to hand to it.
    pub fn bus_lagged(&self, consumer: BusConsumer) -> Counter {
        self.bus_lagged
            .get_or_create(&ConsumerLabels {
                consumer: match consumer {
                    BusConsumer::Sse => "sse",
                    BusConsumer::Fanout => "fanout",
                },
            })
            .clone()
    }

    /// The whole exposition: what is counted here, then `scraped`.
    pub fn render(&self, scraped: &Scraped) -> String {
        let mut out = String::with_capacity(8 * 1024);
        // Writing to a String cannot fail.
        let _ = encode_registry(&mut out, &self.registry);
        let _ = encode_registry(&mut out, &scraped_registry(scraped));
        let _ = encode_eof(&mut out);
        out
    }
}

/// The recorder's counters, registered.
fn register_recording(registry: &mut Registry) -> crate::recording::RecordingCounters {
    let deleted = Family::<ReasonLabels, Counter>::default();
    let by = |reason| deleted.get_or_create(&ReasonLabels { reason }).clone();
    let c = crate::recording::RecordingCounters {
        frames_written: Counter::default(),
        frames_dropped: Counter::default(),
        bytes_written: Counter::default(),
        write_errors: Counter::default(),
        deleted_revoked: by("revoked"),
        deleted_deauthorized: by("deauthorized"),
        deleted_retention: by("retention"),
    };
    for (name, help, counter) in [
        (
            names::RECORDING_FRAMES_WRITTEN,
            "Audio frames written to call recordings",
            &c.frames_written,
        ),
        (
            names::RECORDING_FRAMES_DROPPED,
            "Audio frames not recorded: the writer fell behind, or a file could not be written",
            &c.frames_dropped,
        ),
        (
            names::RECORDING_BYTES_WRITTEN,
            "Audio bytes written to call recordings (silence for gaps included)",
            &c.bytes_written,
        ),
        (
            names::RECORDING_WRITE_ERRORS,
            "Recording files that could not be created, written or closed",
            &c.write_errors,
        ),
    ] {
        registry.register(name, help, counter.clone());
    }
    registry.register(
        names::RECORDING_FILES_DELETED,
        "Recordings deleted, by reason (revoked by Zoom, app removed, retention)",
        deleted,
    );
    c
}

/// Every family name in an exposition (`# TYPE name kind` lines).
pub fn family_names(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_has_the_prefix_and_is_exposed_once() {
        let m = Metrics::new("embedded");
        m.webhook(
            "voice_rtms_started",
            WebhookOutcome::Stored,
            Duration::from_millis(3),
        );
        m.store_call(StoreOp::InboxAppend, Duration::from_millis(1), false);
        let _ = m.bus_lagged(BusConsumer::Sse);
        let text = m.render(&Scraped {
            inbox_depth: Some(2),
            reconnects: vec![("connection_lost", 1)],
            handshake_failures: vec![("INVALID_SIGNATURE", 1)],
            by_role: vec![("caller", 3, 1), ("agent", 2, 0), ("unknown", 0, 0)],
            keepalive: Some((latency_buckets(), latency_buckets())),
            ..Scraped::default()
        });
        let names = family_names(&text);
        assert_eq!(names.len(), 26, "{text}");
        for n in &names {
            assert!(n.starts_with("zcc_rtms_"), "{n}");
            assert_eq!(names.iter().filter(|m| *m == n).count(), 1, "{n} twice");
        }
        assert!(text.ends_with("# EOF\n"));
        assert!(text.contains(
            "zcc_rtms_webhooks_received_total{event=\"voice_rtms_started\",outcome=\"stored\"} 1"
        ));
        assert!(text.contains(
            "zcc_rtms_store_errors_total{backend=\"embedded\",operation=\"inbox_append\"} 1"
        ));
        assert!(text.contains("zcc_rtms_inbox_depth 2"));
        assert!(text.contains("zcc_rtms_rtms_frames_total{kind=\"audio\",channel=\"caller\"} 3"));
        assert!(text.contains("zcc_rtms_rtms_transcript_lines_total{channel=\"caller\"} 1"));
    }
}
