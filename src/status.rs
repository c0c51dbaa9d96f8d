//! The live status bus: what the page shows, as events plus a snapshot.
//!
//! Producers (webhook processing, the RTMS engine, engagement tracking)
//! publish here; SSE subscribers get a consistent snapshot followed by live
//! events. A subscriber that falls behind gets a fresh snapshot rather than an
//! error. The bus decides nothing; it only carries and remembers, and
//! knows who watches (a [`Watch`]), so that the periodic stream views nobody
//! would receive are not built: their remembered copies are kept current
//! in place instead, for the next snapshot.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::time::{now_ms, rfc3339_ms};

/// How many status lines the snapshot keeps (newest first on the wire).
pub const RECENT_STATUS: usize = 200;
const CHANNEL_CAPACITY: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Info,
    Success,
    Warning,
    Error,
}

/// One line of the terminal-style status list (the seed's shape).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StatusEvent {
    pub id: u64,
    pub timestamp: String,
    pub message: String,
    #[serde(rename = "type")]
    pub level: Level,
    pub engagement_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EngagementView {
    pub engagement_id: String,
    /// `active` or `ended`.
    pub state: String,
    pub started_at: String,
    pub ended_at: Option<String>,
    pub account_id: Option<String>,
    #[serde(default)]
    pub agent_user_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct ChannelView {
    pub channel_id: String,
    /// `caller`, `agent` or empty when not known yet.
    pub role: String,
    pub frames: u64,
    /// RMS level of the latest frame, 0.0 … 1.0 of full scale.
    pub level: f32,
    /// Highest level seen over the latest reporting interval.
    pub peak: f32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StreamView {
    pub engagement_id: String,
    pub rtms_stream_id: String,
    /// `connecting`, `streaming`, `reconnecting`, `stopped` or `failed`.
    pub state: String,
    pub frames: u64,
    pub transcripts: u64,
    pub channels: Vec<ChannelView>,
    pub updated_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TranscriptLine {
    pub engagement_id: String,
    pub rtms_stream_id: String,
    pub channel_id: String,
    pub role: String,
    pub text: String,
    pub timestamp: i64,
}

/// What travels on the bus. The SSE event name is the `kind`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BusEvent {
    Status(StatusEvent),
    Engagement(EngagementView),
    Stream(StreamView),
    Transcript(TranscriptLine),
}

impl BusEvent {
    pub fn kind(&self) -> &'static str {
        match self {
            BusEvent::Status(_) => "status",
            BusEvent::Engagement(_) => "engagement",
            BusEvent::Stream(_) => "stream",
            BusEvent::Transcript(_) => "transcript",
        }
    }

    pub fn engagement_id(&self) -> Option<&str> {
        match self {
            BusEvent::Status(s) => s.engagement_id.as_deref(),
            BusEvent::Engagement(e) => Some(&e.engagement_id),
            BusEvent::Stream(s) => Some(&s.engagement_id),
            BusEvent::Transcript(t) => Some(&t.engagement_id),
        }
    }
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct Snapshot {
    /// Newest first.
    pub status: Vec<StatusEvent>,
    pub engagements: Vec<EngagementView>,
    pub streams: Vec<StreamView>,
    pub transcripts: Vec<TranscriptLine>,
}

/// How many status lines are kept per engagement.
pub const RECENT_PER_ENGAGEMENT: usize = 100;
/// How many engagements keep their own history.
const MAX_HISTORIES: usize = 2000;
/// How many engagements the snapshot remembers.
const MAX_ENGAGEMENTS: usize = 1000;

#[derive(Default)]
struct State {
    /// Every line, newest first (bounded).
    recent: VecDeque<StatusEvent>,
    /// Lines per engagement, newest first, so a busy instance cannot push one
    /// engagement's history out.
    by_engagement: HashMap<String, VecDeque<StatusEvent>>,
    engagements: BTreeMap<String, EngagementView>,
    streams: HashMap<String, StreamView>,
    transcripts: VecDeque<TranscriptLine>,
    /// Watches per engagement (only those with one).
    watched: HashMap<String, usize>,
}

/// What [`StatusBus::refresh_stream`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refreshed {
    /// Updated and sent (someone watches).
    Sent,
    /// Updated for the next snapshot only.
    Kept,
    /// No view of the stream is remembered; nothing changed.
    Unknown,
}

/// Cheap to clone; all clones share one bus.
#[derive(Clone)]
pub struct StatusBus {
    inner: Arc<Inner>,
}

struct Inner {
    tx: broadcast::Sender<Arc<BusEvent>>,
    /// Only the events that originate here (what fan-out forwards).
    local_tx: broadcast::Sender<Arc<BusEvent>>,
    state: Mutex<State>,
    next_id: AtomicU64,
    /// Watches of every engagement, and of single ones (in `State`).
    watch_all: AtomicUsize,
    watch_some: AtomicUsize,
}

/// Someone following the live views: a page's feed (of one engagement or
/// of all), or the fan-out (pages on other instances). While one is held,
/// the periodic views of what it follows are published; it only decides
/// what is sent on the bus, never who may see it (each feed still filters).
pub struct Watch {
    bus: StatusBus,
    engagement_id: Option<String>,
}

impl Drop for Watch {
    fn drop(&mut self) {
        let inner = &self.bus.inner;
        match &self.engagement_id {
            None => {
                inner.watch_all.fetch_sub(1, Ordering::Relaxed);
            }
            Some(id) => {
                let mut state = self.bus.state();
                if let Some(n) = state.watched.get_mut(id) {
                    *n -= 1;
                    if *n == 0 {
                        state.watched.remove(id);
                    }
                }
                inner.watch_some.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}

impl Default for StatusBus {
    fn default() -> Self {
        Self::new()
    }
}

impl StatusBus {
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(CHANNEL_CAPACITY);
        let (local_tx, _) = broadcast::channel(CHANNEL_CAPACITY);
        Self {
            inner: Arc::new(Inner {
                tx,
                local_tx,
                state: Mutex::new(State::default()),
                next_id: AtomicU64::new(1),
                watch_all: AtomicUsize::new(0),
                watch_some: AtomicUsize::new(0),
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the state half-written
        // in a way that matters (it is a cache of views), so recover.
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Publish a status line.
    pub fn status(&self, engagement_id: Option<&str>, level: Level, message: impl Into<String>) {
        self.record(
            BusEvent::Status(StatusEvent {
                id: 0,
                timestamp: rfc3339_ms(now_ms()),
                message: message.into(),
                level,
                engagement_id: engagement_id.map(str::to_owned),
            }),
            true,
        );
    }

    pub fn engagement(&self, view: EngagementView) {
        self.record(BusEvent::Engagement(view), true);
    }

    pub fn stream(&self, view: StreamView) {
        self.record(BusEvent::Stream(view), true);
    }

    /// Follow one engagement's views, or every one's (`None`), while the
    /// returned [`Watch`] is held.
    pub fn watch(&self, engagement_id: Option<&str>) -> Watch {
        match engagement_id {
            None => {
                self.inner.watch_all.fetch_add(1, Ordering::Relaxed);
            }
            Some(id) => {
                *self.state().watched.entry(id.to_owned()).or_default() += 1;
                self.inner.watch_some.fetch_add(1, Ordering::Relaxed);
            }
        }
        Watch {
            bus: self.clone(),
            engagement_id: engagement_id.map(str::to_owned),
        }
    }

    /// Whether anyone follows this engagement's views.
    pub fn watched(&self, engagement_id: &str) -> bool {
        self.inner.watch_all.load(Ordering::Relaxed) > 0
            || (self.inner.watch_some.load(Ordering::Relaxed) > 0
                && self.state().watched.contains_key(engagement_id))
    }

    /// Update the remembered view of a stream in place (no new view is
    /// built, none dropped), and send a copy of it when someone watches its
    /// engagement; unsent, the next snapshot still shows it current. The
    /// watch is checked under the same lock as the update.
    pub fn refresh_stream(
        &self,
        rtms_stream_id: &str,
        update: impl FnOnce(&mut StreamView),
    ) -> Refreshed {
        let mut state = self.state();
        let State {
            streams, watched, ..
        } = &mut *state;
        let Some(view) = streams.get_mut(rtms_stream_id) else {
            return Refreshed::Unknown;
        };
        update(view);
        let watched = self.inner.watch_all.load(Ordering::Relaxed) > 0
            || watched.contains_key(&view.engagement_id);
        if !watched {
            return Refreshed::Kept;
        }
        let event = Arc::new(BusEvent::Stream(view.clone()));
        // Sent under the lock, as `record` does.
        let _ = self.inner.local_tx.send(event.clone());
        let _ = self.inner.tx.send(event);
        Refreshed::Sent
    }

    pub fn transcript(&self, line: TranscriptLine) {
        self.record(BusEvent::Transcript(line), true);
    }

    /// Drop what is older than `cutoff_ms`: status lines, the histories of
    /// engagements quiet since, views of engagements that ended before,
    /// transcripts. Returns how many histories went.
    pub fn forget_before(&self, cutoff_ms: i64) -> usize {
        // RFC 3339 in one fixed format sorts as the time does.
        let cutoff = rfc3339_ms(cutoff_ms);
        let mut state = self.state();
        state.recent.retain(|l| l.timestamp >= cutoff);
        let before = state.by_engagement.len();
        state
            .by_engagement
            .retain(|_, h| h.front().is_some_and(|l| l.timestamp >= cutoff));
        state
            .engagements
            .retain(|_, v| v.ended_at.as_ref().is_none_or(|end| *end >= cutoff));
        state.transcripts.retain(|t| t.timestamp >= cutoff_ms);
        before - state.by_engagement.len()
    }

    /// Drop everything kept about an engagement (its data was deleted):
    /// its lines, view, streams and transcripts.
    pub fn forget_engagement(&self, engagement_id: &str) {
        let mut state = self.state();
        let mine = |id: &Option<String>| id.as_deref() == Some(engagement_id);
        state.recent.retain(|l| !mine(&l.engagement_id));
        state.by_engagement.remove(engagement_id);
        state.engagements.remove(engagement_id);
        state
            .streams
            .retain(|_, v| v.engagement_id != engagement_id);
        state
            .transcripts
            .retain(|t| t.engagement_id != engagement_id);
    }

    /// An event from another instance (Redis fan-out): shown here, not sent
    /// back out.
    pub fn apply_remote(&self, event: BusEvent) {
        self.record(event, false);
    }

    /// Events that originate on this instance, for fan-out.
    pub fn subscribe_local(&self) -> broadcast::Receiver<Arc<BusEvent>> {
        self.inner.local_tx.subscribe()
    }

    /// Remember the event in the snapshot state and send it to subscribers.
    fn record(&self, mut event: BusEvent, local: bool) {
        let mut state = self.state();
        match &mut event {
            BusEvent::Status(line) => {
                // Ids order lines on this instance (remote ones are re-stamped).
                line.id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
                state.recent.push_front(line.clone());
                state.recent.truncate(RECENT_STATUS);
                if let Some(id) = &line.engagement_id {
                    let history = state.by_engagement.entry(id.clone()).or_default();
                    history.push_front(line.clone());
                    history.truncate(RECENT_PER_ENGAGEMENT);
                    if state.by_engagement.len() > MAX_HISTORIES {
                        Self::prune_histories(&mut state);
                    }
                }
            }
            BusEvent::Engagement(view) => {
                state
                    .engagements
                    .insert(view.engagement_id.clone(), view.clone());
                if state.engagements.len() > MAX_ENGAGEMENTS {
                    Self::prune_engagements(&mut state);
                }
            }
            BusEvent::Stream(view) => {
                if view.state == "stopped" || view.state == "failed" {
                    state.streams.remove(&view.rtms_stream_id);
                } else {
                    state
                        .streams
                        .insert(view.rtms_stream_id.clone(), view.clone());
                }
            }
            BusEvent::Transcript(line) => {
                state.transcripts.push_front(line.clone());
                state.transcripts.truncate(RECENT_STATUS);
            }
        }
        let event = Arc::new(event);
        // Sending under the lock keeps snapshot + stream gap-free for subscribers.
        if local {
            let _ = self.inner.local_tx.send(event.clone());
        }
        let _ = self.inner.tx.send(event);
    }

    /// Keep the engagement map bounded: drop the oldest ended engagements.
    fn prune_engagements(state: &mut State) {
        let mut ended: Vec<(String, String)> = state
            .engagements
            .values()
            .filter(|e| e.state != "active")
            .map(|e| {
                (
                    e.ended_at.clone().unwrap_or_default(),
                    e.engagement_id.clone(),
                )
            })
            .collect();
        ended.sort();
        for (_, id) in ended.into_iter().take(MAX_ENGAGEMENTS / 10) {
            state.engagements.remove(&id);
        }
    }

    /// Drop the histories that were quiet the longest.
    fn prune_histories(state: &mut State) {
        let mut by_age: Vec<(u64, String)> = state
            .by_engagement
            .iter()
            .map(|(id, h)| (h.front().map_or(0, |e| e.id), id.clone()))
            .collect();
        by_age.sort_unstable();
        for (_, id) in by_age.into_iter().take(MAX_HISTORIES / 10) {
            state.by_engagement.remove(&id);
        }
    }

    /// Status lines of one engagement plus the global ones, newest first.
    fn lines_for(state: &State, engagement_id: &str) -> Vec<StatusEvent> {
        let mut lines: Vec<StatusEvent> = state
            .by_engagement
            .get(engagement_id)
            .map(|h| h.iter().cloned().collect())
            .unwrap_or_default();
        lines.extend(
            state
                .recent
                .iter()
                .filter(|e| e.engagement_id.is_none())
                .cloned(),
        );
        lines.sort_unstable_by_key(|e| std::cmp::Reverse(e.id));
        lines.truncate(RECENT_STATUS);
        lines
    }

    /// Status lines, newest first: all of them, or one engagement's (with the
    /// global lines).
    pub fn status_lines(&self, engagement_id: Option<&str>) -> Vec<StatusEvent> {
        let state = self.state();
        match engagement_id {
            Some(id) => Self::lines_for(&state, id),
            None => state.recent.iter().cloned().collect(),
        }
    }

    /// The engagement as the bus last saw it (with its account and agent).
    pub fn engagement_view(&self, engagement_id: &str) -> Option<EngagementView> {
        self.state().engagements.get(engagement_id).cloned()
    }

    /// The snapshot for one engagement, or for everything.
    pub fn snapshot_for(&self, engagement_id: Option<&str>) -> Snapshot {
        let state = self.state();
        Self::snapshot_of_for(&state, engagement_id)
    }

    fn snapshot_of_for(state: &State, engagement_id: Option<&str>) -> Snapshot {
        match engagement_id {
            None => Self::snapshot_of(state),
            Some(id) => Snapshot {
                status: Self::lines_for(state, id),
                engagements: state.engagements.get(id).cloned().into_iter().collect(),
                streams: state
                    .streams
                    .values()
                    .filter(|s| s.engagement_id == id)
                    .cloned()
                    .collect(),
                transcripts: state
                    .transcripts
                    .iter()
                    .filter(|t| t.engagement_id == id)
                    .cloned()
                    .collect(),
            },
        }
    }

    pub fn snapshot(&self) -> Snapshot {
        let state = self.state();
        Self::snapshot_of(&state)
    }

    fn snapshot_of(state: &State) -> Snapshot {
        Snapshot {
            status: state.recent.iter().cloned().collect(),
            engagements: state.engagements.values().cloned().collect(),
            streams: state.streams.values().cloned().collect(),
            transcripts: state.transcripts.iter().cloned().collect(),
        }
    }

    /// A snapshot and a receiver that starts exactly after it.
    pub fn subscribe(
        &self,
        engagement_id: Option<&str>,
    ) -> (Snapshot, broadcast::Receiver<Arc<BusEvent>>) {
        let state = self.state();
        let rx = self.inner.tx.subscribe();
        (Self::snapshot_of_for(&state, engagement_id), rx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_lists_status_newest_first_and_is_bounded() {
        let bus = StatusBus::new();
        for i in 0..(RECENT_STATUS + 10) {
            bus.status(Some("e1"), Level::Info, format!("m{i}"));
        }
        let snap = bus.snapshot();
        assert_eq!(snap.status.len(), RECENT_STATUS);
        assert_eq!(snap.status[0].message, format!("m{}", RECENT_STATUS + 9));
        assert!(snap.status[0].id > snap.status[1].id);
    }

    #[tokio::test]
    async fn subscriber_sees_events_after_its_snapshot_without_gap() {
        let bus = StatusBus::new();
        bus.status(None, Level::Info, "before");
        let (snap, mut rx) = bus.subscribe(None);
        bus.status(None, Level::Success, "after");
        assert_eq!(snap.status.len(), 1);
        let ev = rx.recv().await.expect("event");
        assert!(matches!(&*ev, BusEvent::Status(s) if s.message == "after"));
    }

    #[test]
    fn lines_and_histories_older_than_the_cutoff_are_forgotten() {
        let bus = StatusBus::new();
        let old = |id: &str, ms: i64| {
            BusEvent::Status(StatusEvent {
                id: 0,
                timestamp: rfc3339_ms(ms),
                message: format!("at {ms}"),
                level: Level::Info,
                engagement_id: Some(id.into()),
            })
        };
        bus.apply_remote(old("stale", 1_000));
        bus.apply_remote(old("fresh", 1_000));
        bus.apply_remote(old("fresh", 5_000));
        assert_eq!(bus.forget_before(2_000), 1);
        assert!(bus.status_lines(Some("stale")).is_empty());
        assert_eq!(bus.status_lines(Some("fresh")).len(), 2, "kept whole");
        assert_eq!(bus.status_lines(None).len(), 1, "only the fresh line");
        assert_eq!(bus.forget_before(i64::MAX), 1);
    }

    #[test]
    fn a_busy_engagement_does_not_push_out_another_ones_history() {
        let bus = StatusBus::new();
        bus.status(Some("quiet"), Level::Info, "Engagement started");
        for i in 0..(RECENT_STATUS * 3) {
            bus.status(
                Some("busy"),
                Level::Success,
                format!("Received {i} audio chunks"),
            );
        }
        assert_eq!(bus.status_lines(Some("quiet")).len(), 1);
        assert_eq!(bus.status_lines(Some("busy")).len(), RECENT_PER_ENGAGEMENT);
        assert_eq!(bus.status_lines(None).len(), RECENT_STATUS);
    }

    #[tokio::test]
    async fn remote_events_are_shown_but_not_forwarded_again() {
        let bus = StatusBus::new();
        let mut local = bus.subscribe_local();
        let (_, mut all) = bus.subscribe(None);
        bus.status(Some("e"), Level::Info, "here");
        bus.apply_remote(BusEvent::Status(StatusEvent {
            id: 999_999,
            timestamp: rfc3339_ms(0),
            message: "there".into(),
            level: Level::Success,
            engagement_id: Some("e".into()),
        }));
        let first = all.recv().await.expect("local event");
        let second = all.recv().await.expect("remote event");
        assert!(matches!(&*first, BusEvent::Status(s) if s.message == "here"));
        assert!(matches!(&*second, BusEvent::Status(s) if s.message == "there" && s.id < 999_999));
        let forwarded = local.recv().await.expect("local only");
        assert!(matches!(&*forwarded, BusEvent::Status(s) if s.message == "here"));
        assert!(
            local.try_recv().is_err(),
            "the remote event is not forwarded"
        );
        assert_eq!(bus.status_lines(Some("e")).len(), 2);
    }

    #[test]
    fn watches_say_whose_views_are_followed_until_dropped() {
        let bus = StatusBus::new();
        assert!(!bus.watched("a"));
        let a = bus.watch(Some("a"));
        let a2 = bus.watch(Some("a"));
        assert!(bus.watched("a") && !bus.watched("b"));
        drop(a);
        assert!(bus.watched("a"), "one watch of a is left");
        let all = bus.watch(None);
        assert!(bus.watched("b"));
        drop(all);
        drop(a2);
        assert!(!bus.watched("a") && !bus.watched("b"));
        assert!(bus.state().watched.is_empty());
    }

    #[tokio::test]
    async fn a_refreshed_view_is_in_the_snapshot_and_sent_only_when_published() {
        let bus = StatusBus::new();
        let view = |frames| StreamView {
            engagement_id: "e".into(),
            rtms_stream_id: "s".into(),
            state: "streaming".into(),
            frames,
            transcripts: 0,
            channels: Vec::new(),
            updated_at: rfc3339_ms(0),
        };
        bus.stream(view(1));
        let (_, mut rx) = bus.subscribe(None);
        let mut local = bus.subscribe_local();
        let other = bus.watch(Some("another"));
        assert_eq!(bus.refresh_stream("s", |v| v.frames = 250), Refreshed::Kept);
        assert_eq!(
            bus.refresh_stream("unknown", |v| v.frames = 1),
            Refreshed::Unknown
        );
        assert_eq!(bus.snapshot().streams, vec![view(250)]);
        assert!(rx.try_recv().is_err(), "nothing was sent");
        drop(other);

        // Watched: the same copy goes to pages and to the fan-out.
        let watch = bus.watch(Some("e"));
        assert_eq!(bus.refresh_stream("s", |v| v.frames = 300), Refreshed::Sent);
        drop(watch);
        assert_eq!(bus.snapshot().streams, vec![view(300)]);
        for got in [rx.try_recv(), local.try_recv()] {
            assert_eq!(
                got.ok().as_deref(),
                Some(&BusEvent::Stream(view(300))),
                "sent once to each"
            );
        }
        assert!(rx.try_recv().is_err() && local.try_recv().is_err());
    }

    #[test]
    fn engagement_filter_keeps_global_lines() {
        let bus = StatusBus::new();
        bus.status(None, Level::Info, "global");
        bus.status(Some("a"), Level::Info, "for a");
        bus.status(Some("b"), Level::Info, "for b");
        let snap = bus.snapshot_for(Some("a"));
        let msgs: Vec<_> = snap.status.iter().map(|s| s.message.as_str()).collect();
        assert_eq!(msgs, vec!["for a", "global"]);
    }
}
