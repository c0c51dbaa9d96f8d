//! Buffered audio at stream start through the whole app: 50 streams that
//! began 60 s before the app connects, all at once, next to live streams.
//! Every frame is counted, each backlog is one "Caught up" line (no flood of
//! chunk counts), no keep-alive is held up by the replay and no live frame is
//! handled late (a live frame handled more than 2 s after Zoom made it would
//! itself be reported as caught-up audio).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use zoom_sim::SimStats;

use crate::support::{Options, TestApp};

const BACKLOG_STREAMS: usize = 50;
const LIVE_STREAMS: usize = 5;
const BUFFERED: Duration = Duration::from_secs(60);
/// Bound on the whole burst (it takes a few seconds even in a debug build).
const BURST_WAIT: Duration = Duration::from_secs(180);
/// The simulator's keep-alive period in this test.
const KEEPALIVE: Duration = Duration::from_secs(2);

/// Every status line seen per engagement (by id, so repeated polls of the
/// bounded per-engagement history lose nothing).
#[derive(Default)]
struct Lines(HashMap<String, BTreeMap<u64, String>>);

impl Lines {
    fn poll(&mut self, app: &TestApp, ids: &[String]) {
        for id in ids {
            let seen = self.0.entry(id.clone()).or_default();
            for line in app.state.bus.status_lines(Some(id)) {
                seen.insert(line.id, line.message);
            }
        }
    }

    /// This engagement's lines starting with `prefix`, oldest first, with ids.
    fn with(&self, id: &str, prefix: &str) -> Vec<(u64, String)> {
        self.0
            .get(id)
            .map(|l| {
                l.iter()
                    .filter(|(_, m)| m.starts_with(prefix))
                    .map(|(i, m)| (*i, m.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Poll until `done` holds for the lines, within `wait`.
async fn poll_until(
    app: &TestApp,
    lines: &mut Lines,
    ids: &[String],
    wait: Duration,
    what: &str,
    done: impl Fn(&Lines) -> bool,
) {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        lines.poll(app, ids);
        if done(lines) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn app_frames(app: &TestApp) -> u64 {
    app.state.rtms.counters().snapshot()["frames"]
        .as_u64()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_seconds_of_backlog_on_fifty_streams_is_counted_without_delaying_anything() {
    let app = TestApp::spawn_with(Options {
        tls: false,
        // Short enough that keep-alives come during even a quick burst
        // (about 4 s on a quiet machine).
        keepalive: KEEPALIVE,
        ..Options::default()
    })
    .await;
    let mut lines = Lines::default();

    let mut live = Vec::new();
    for _ in 0..LIVE_STREAMS {
        let id = app.sim.create_engagement().await.expect("engagement");
        app.sim.start_rtms(&id).await.expect("live stream");
        live.push(id);
    }
    poll_until(&app, &mut lines, &live, BURST_WAIT, "live audio", |l| {
        live.iter().all(|id| !l.with(id, "Received").is_empty())
    })
    .await;

    let started = tokio::time::Instant::now();
    let mut backlog = Vec::new();
    for _ in 0..BACKLOG_STREAMS {
        let id = app.sim.create_engagement().await.expect("engagement");
        app.sim
            .start_rtms_started_ago(&id, BUFFERED)
            .await
            .expect("backlog stream");
        backlog.push(id);
    }
    let all: Vec<String> = live.iter().chain(&backlog).cloned().collect();
    poll_until(
        &app,
        &mut lines,
        &all,
        BURST_WAIT,
        "every backlog caught up",
        |l| backlog.iter().all(|id| !l.with(id, "Caught up").is_empty()),
    )
    .await;
    let caught_up_in = started.elapsed();
    // Some live audio after the burst, on every stream.
    poll_until(
        &app,
        &mut lines,
        &all,
        BURST_WAIT,
        "live audio after the burst",
        |l| {
            backlog.iter().all(|id| {
                let caught = l.with(id, "Caught up")[0].0;
                l.with(id, "Received").iter().any(|(i, _)| *i > caught)
            })
        },
    )
    .await;

    // However quick the burst, keep-alives were sent and answered.
    crate::support::eventually_within("keep-alives answered", BURST_WAIT, || async {
        (app.sim.stats_snapshot().keepalives.answered > 0).then_some(())
    })
    .await;

    for id in &all {
        app.sim.stop_rtms(id).await.expect("stop");
    }
    let deadline = tokio::time::Instant::now() + BURST_WAIT;
    let stats: SimStats = loop {
        let stats = app.sim.stats_snapshot();
        if stats.streams.active == 0
            && app.state.rtms.active_streams() == 0
            && app_frames(&app) == stats.frames_sent
        {
            break stats;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the app counted {} of {} frames sent",
            app_frames(&app),
            stats.frames_sent
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    lines.poll(&app, &all);
    eprintln!(
        "{BACKLOG_STREAMS} backlogs of {} s caught up in {caught_up_in:.1?}; frames sent {} \
         (buffered {}), counted {}; keep-alives sent {} answered {} late {} slowest {} ms",
        BUFFERED.as_secs(),
        stats.frames_sent,
        stats.frames_buffered,
        app_frames(&app),
        stats.keepalives.sent,
        stats.keepalives.answered,
        stats.keepalives.late,
        stats.keepalives.max_answer_ms,
    );

    // Every frame: the buffered ones were sent (60 s, two channels, each
    // stream) and the app counted all that was sent.
    let per_stream = BUFFERED.as_secs() * 50 * 2;
    assert!(
        stats.frames_buffered >= BACKLOG_STREAMS as u64 * per_stream,
        "{stats:?}"
    );
    assert_eq!(
        stats.frames_dropped, 0,
        "no socket fell 2.5 s behind: {stats:?}"
    );
    // Keep-alives: answered, none held up by the replay. One queued behind
    // its stream's replay would wait for most of it; scheduling alone on a
    // loaded box can delay an answer past the next keep-alive (3.7 s was
    // seen at load 10, while the replay took 37 s). So the slowest answer
    // must be within the period or a quarter of the replay, whichever is
    // longer.
    assert!(stats.keepalives.answered > 0, "{stats:?}");
    let bound = KEEPALIVE.max(caught_up_in / 4);
    assert!(
        u128::from(stats.keepalives.max_answer_ms) <= bound.as_millis(),
        "slowest keep-alive answer {} ms, bound {bound:?}: {stats:?}",
        stats.keepalives.max_answer_ms
    );
    for id in &backlog {
        let caught = lines.with(id, "Caught up");
        let texts: Vec<&str> = caught.iter().map(|(_, m)| m.as_str()).collect();
        assert!(
            texts == ["Caught up 60 s of buffered audio"]
                || texts == ["Caught up 61 s of buffered audio"],
            "{id}: one line for the backlog, then live audio on time: {texts:?}"
        );
        let first_received = lines.with(id, "Received")[0].0;
        assert!(
            first_received > caught[0].0,
            "{id}: no chunk counts while the backlog was replayed"
        );
    }
    for id in &live {
        assert!(
            lines.with(id, "Caught up").is_empty(),
            "{id}: a live stream's frames were handled more than 2 s late"
        );
    }
    app.shutdown().await;
}
