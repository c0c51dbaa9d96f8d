//! The downstream feed (`SINK_REDIS_URL`) against a real `redis-server`: a
//! simulated call's lifecycle and transcript lines land on
//! `{prefix}sink:events` in the order the page showed them; with
//! `SINK_AUDIO` every frame lands on `{prefix}sink:audio:{id}` with the
//! bytes the simulator sent; with the sink's Redis gone, frames keep coming
//! in, the page keeps showing status lines, the lost entries are counted,
//! and publishing resumes once Redis is back.

use std::collections::HashMap;
use std::time::Duration;

use prometheus_parse::Scrape;
use redis::Value;
use tokio::time::Instant;
use zoom_sim::audio;

use crate::support::install::new_engagement;
use crate::support::metrics::sample;
use crate::support::redis::RedisServer;
use crate::support::{Options, Sse, SseRead, TestApp, eventually_within};

/// Generous bound for everything here (the suite runs on a loaded box).
const LONG_WAIT: Duration = Duration::from_secs(40);

#[derive(Clone)]
struct SinkArgs {
    url: String,
    audio: bool,
}

tokio::task_local! {
    /// `Options::tweak` is a plain `fn`: the sink's settings reach it this way.
    static SINK: SinkArgs;
}

async fn app_with_sink(redis: &RedisServer, audio: bool) -> TestApp {
    let opts = Options {
        tweak: |args| {
            let sink = SINK.with(Clone::clone);
            args.sink_redis_url = Some(sink.url);
            args.sink_audio = Some(sink.audio.to_string());
        },
        ..Options::default()
    };
    let args = SinkArgs {
        url: redis.url(),
        audio,
    };
    SINK.scope(args, TestApp::spawn_with(opts)).await
}

type Entry = HashMap<String, Value>;

fn text(entry: &Entry, field: &str) -> String {
    match entry.get(field) {
        Some(v) => redis::from_redis_value_ref::<String>(v).expect("text field"),
        None => String::new(),
    }
}

fn bytes(entry: &Entry, field: &str) -> Vec<u8> {
    redis::from_redis_value_ref::<Vec<u8>>(entry.get(field).expect("field")).expect("bytes")
}

/// Every entry of `key`, oldest first (bounded: the server is local).
async fn entries(redis: &RedisServer, key: &str) -> Vec<Entry> {
    let read = async {
        let client = redis::Client::open(redis.url()).expect("client");
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("connect");
        let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
            .arg(key)
            .arg("-")
            .arg("+")
            .query_async(&mut conn)
            .await
            .expect("XRANGE");
        reply.ids.into_iter().map(|id| id.map).collect()
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("XRANGE in time")
}

fn of<'a>(list: &'a [Entry], kind: &str, engagement: &str) -> Vec<&'a Entry> {
    list.iter()
        .filter(|e| text(e, "type") == kind && text(e, "engagement") == engagement)
        .collect()
}

fn value(s: &Scrape, metric: &str, label: (&str, &str)) -> f64 {
    sample(s, metric, &[label])
}

/// [`eventually_within`] [`LONG_WAIT`].
async fn within<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    eventually_within(what, LONG_WAIT, check).await
}

/// N of a "Received N audio chunks" status line.
fn chunks(status: &str) -> Option<u64> {
    status
        .strip_prefix("Received ")?
        .strip_suffix(" audio chunks")?
        .parse()
        .ok()
}

/// Read the page's feed until `done` says so (within [`LONG_WAIT`]),
/// keeping the transcript lines of `engagement` in the order shown.
async fn read_page(
    feed: &mut Sse,
    engagement: &str,
    lines: &mut Vec<String>,
    mut done: impl FnMut(&[String], &str) -> bool,
) {
    let deadline = Instant::now() + LONG_WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ev = match feed.read_within(left).await {
            SseRead::Event(ev) => ev,
            SseRead::Ended => panic!("the page's feed ended"),
            SseRead::TimedOut => panic!("the page's feed: nothing more within {LONG_WAIT:?}"),
        };
        let status = if ev.event == "status" {
            ev.data["message"].as_str().unwrap_or_default().to_owned()
        } else {
            String::new()
        };
        if ev.event == "transcript" && ev.data["engagement_id"] == engagement {
            lines.push(ev.data["text"].as_str().expect("text").to_owned());
        }
        if done(lines, &status) {
            return;
        }
    }
}

#[tokio::test]
async fn a_calls_lifecycle_and_transcript_lines_reach_the_events_stream_in_order() {
    let redis = RedisServer::start().await;
    let app = app_with_sink(&redis, false).await;
    let id = new_engagement(&app, None).await;
    let mut feed = app.events(Some(&id)).await;
    // Audio began 12 s ago: Zoom's buffer replays several utterances at once.
    app.sim
        .start_rtms_started_ago(&id, Duration::from_secs(12))
        .await
        .expect("rtms start");
    let mut shown = Vec::new();
    read_page(&mut feed, &id, &mut shown, |lines, _| lines.len() >= 3).await;
    app.sim.stop_rtms(&id).await.expect("rtms stop");
    read_page(&mut feed, &id, &mut shown, |_, status| {
        status == "RTMS stopped"
    })
    .await;
    app.sim.end_engagement(&id).await.expect("end");

    let key = zcc_rtms::sink::events_key(zcc_rtms::store::DEFAULT_PREFIX);
    let list = within("the feed holds the call's end", || async {
        let list = entries(&redis, &key).await;
        let ended = of(&list, "engagement", &id)
            .iter()
            .any(|e| text(e, "state") == "ended");
        ended.then_some(list)
    })
    .await;
    let lines = of(&list, "transcript", &id);
    let texts: Vec<String> = lines.iter().map(|e| text(e, "text")).collect();
    assert_eq!(texts, shown, "the feed's lines are the page's, in order");
    let mut last_ts = i64::MIN;
    for line in &lines {
        assert!(audio::SCRIPT.contains(&text(line, "text").as_str()));
        // The simulator's caller speaks on channel 1, its agent on 2; a line
        // that came before Zoom said who a channel is says `unknown`.
        let role = match text(line, "channel_id").as_str() {
            "1" => "caller",
            "2" => "agent",
            other => panic!("channel {other}"),
        };
        assert!([role, "unknown"].contains(&text(line, "channel").as_str()));
        assert!(!text(line, "stream").is_empty());
        let ts: i64 = text(line, "ts").parse().expect("ts");
        assert!(ts >= last_ts, "Zoom's times ascend");
        last_ts = ts;
        let published: i64 = text(line, "published_at").parse().expect("published_at");
        assert!(published >= ts, "published after Zoom timed it");
    }
    let states: Vec<String> = of(&list, "stream", &id)
        .iter()
        .map(|e| text(e, "state"))
        .collect();
    assert_eq!(states.first().map(String::as_str), Some("connecting"));
    assert!(states.iter().any(|s| s == "streaming"), "{states:?}");
    assert_eq!(states.last().map(String::as_str), Some("stopped"));
    let engagement: Vec<String> = of(&list, "engagement", &id)
        .iter()
        .map(|e| text(e, "state"))
        .collect();
    assert_eq!(engagement, ["active", "ended"]);

    let s = app.scrape().await;
    assert!(value(&s, "zcc_rtms_sink_published_total", ("kind", "events")) >= list.len() as f64);
    assert_eq!(
        value(&s, "zcc_rtms_sink_dropped_total", ("reason", "redis")),
        0.0
    );
    app.shutdown().await;
}

#[tokio::test]
async fn audio_entries_carry_the_bytes_the_simulator_sent() {
    let redis = RedisServer::start().await;
    let app = app_with_sink(&redis, true).await;
    let id = new_engagement(&app, None).await;
    let stream = app.sim.start_rtms(&id).await.expect("rtms start");
    let key = zcc_rtms::sink::audio_key(zcc_rtms::store::DEFAULT_PREFIX, &id);
    let list = within("a hundred frames in the audio stream", || async {
        let list = entries(&redis, &key).await;
        (list.len() >= 100).then_some(list)
    })
    .await;
    app.sim.stop_rtms(&id).await.expect("rtms stop");
    let mut last_seq = HashMap::new();
    for entry in &list {
        assert_eq!(text(entry, "stream"), stream);
        let channel = text(entry, "channel");
        let ts: i64 = text(entry, "ts").parse().expect("ts");
        let expected = audio::expected_frame(&stream, &channel, ts).expect("a known channel");
        assert_eq!(bytes(entry, "pcm"), expected, "frame at {ts} on {channel}");
        let seq: u64 = text(entry, "seq").parse().expect("seq");
        let last = last_seq.insert(channel.clone(), seq).unwrap_or(0);
        assert!(seq > last, "sequence numbers ascend per stream");
    }
    assert_eq!(last_seq.len(), 2, "both channels");
    let events = zcc_rtms::sink::events_key(zcc_rtms::store::DEFAULT_PREFIX);
    assert!(
        entries(&redis, &events)
            .await
            .iter()
            .all(|e| !e.contains_key("pcm")),
        "audio stays off the events stream"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn with_the_sinks_redis_gone_frames_and_the_page_carry_on_and_drops_are_counted() {
    let mut redis = RedisServer::start().await;
    let app = app_with_sink(&redis, true).await;
    redis.kill9().await;

    let id = new_engagement(&app, None).await;
    let mut feed = app.events(Some(&id)).await;
    app.sim.start_rtms(&id).await.expect("rtms start");
    let mut lines = Vec::new();
    let mut received = 0;
    read_page(&mut feed, &id, &mut lines, |_, status| {
        received = chunks(status).unwrap_or(received);
        received >= 100
    })
    .await;
    let page = app.get("/").await;
    assert_eq!(page.status(), 200);
    within("drops counted, nothing published", || async {
        let s = app.scrape().await;
        let dropped = value(&s, "zcc_rtms_sink_dropped_total", ("reason", "redis"));
        let published = value(&s, "zcc_rtms_sink_published_total", ("kind", "audio"));
        (dropped >= 50.0 && published == 0.0).then_some(())
    })
    .await;

    // Back up: the feed reconnects by itself and publishes again.
    redis.restart().await;
    let before = received;
    read_page(&mut feed, &id, &mut lines, |_, status| {
        received = chunks(status).unwrap_or(received);
        received > before
    })
    .await;
    within("publishing again", || async {
        let s = app.scrape().await;
        (value(&s, "zcc_rtms_sink_published_total", ("kind", "audio")) > 0.0).then_some(())
    })
    .await;
    let key = zcc_rtms::sink::audio_key(zcc_rtms::store::DEFAULT_PREFIX, &id);
    assert!(!entries(&redis, &key).await.is_empty());
    app.sim.stop_rtms(&id).await.expect("rtms stop");
    app.shutdown().await;
}
