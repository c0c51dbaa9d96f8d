//! Buffered audio at stream start (Zoom since 2026-05, `buffer_data`): a
//! consumer that connects N s after the stream began gets min(N, 60) s of
//! audio at once, in order, then the live frames; `buffer_data: false` or a
//! simulator without buffering gives only live audio.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::sim::*;

/// Audio frames (msg 14) on `ws` until one is at least `until_ms`: their
/// timestamps per channel, in arrival order.
async fn frames_until(ws: &mut Ws, until_ms: i64) -> Vec<(String, i64, Value)> {
    let mut seen = Vec::new();
    loop {
        let f = recv_type(ws, 14).await;
        let ts = f["content"]["timestamp"].as_i64().expect("timestamp");
        let channel = f["content"]["channel_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let length = f["content"]["length"].clone();
        seen.push((channel, ts, length));
        if ts >= until_ms {
            return seen;
        }
        assert!(seen.len() < 20_000, "no end to the frames");
    }
}

async fn late_join(sim: &TestSim, started_ago: Duration, extra: Value) -> (Joined, i64) {
    let engagement_id = sim.handle.create_engagement().await.expect("engagement");
    let stream_id = sim
        .handle
        .start_rtms_started_ago(&engagement_id, started_ago)
        .await
        .expect("stream");
    let joined_at = zcc_rtms::time::now_ms();
    let j = join_stream(sim, engagement_id, stream_id, 1, l16_default(), extra).await;
    (j, joined_at)
}

#[tokio::test]
async fn a_late_consumer_gets_the_last_60_s_at_once_in_order_then_live_audio() {
    let sim = TestSim::start(|_| {}).await;
    let (mut j, joined_at) = late_join(&sim, Duration::from_secs(90), json!({})).await;
    let got = tokio::time::timeout(WAIT, frames_until(&mut j.media, joined_at))
        .await
        .expect("60 s of buffered audio arrives well within 10 s");
    for channel in ["1", "2"] {
        let ts: Vec<i64> = got.iter().filter(|f| f.0 == channel).map(|f| f.1).collect();
        let first = ts[0];
        assert!(
            (joined_at - 60_000 - 40..=joined_at - 60_000 + 1_000).contains(&first),
            "channel {channel}: first frame {} ms before the join",
            joined_at - first
        );
        assert!(
            ts.windows(2).all(|w| w[1] - w[0] == 20),
            "channel {channel}: frames in order, none missing"
        );
        assert!(ts.len() >= 2_950, "channel {channel}: {} frames", ts.len());
    }
    assert!(
        got.iter().all(|f| f.2 == 640),
        "every frame says its length (640 bytes)"
    );
    let stats = sim.handle.stats_snapshot();
    assert!(stats.frames_buffered >= 5_900, "{stats:?}");
    assert_eq!(stats.frames_dropped, 0, "{stats:?}");
    sim.stop().await;
}

#[tokio::test]
async fn a_stream_started_5_s_before_gets_5_s_replayed() {
    let sim = TestSim::start(|_| {}).await;
    let (mut j, joined_at) = late_join(&sim, Duration::from_secs(5), json!({})).await;
    let first = recv_type(&mut j.media, 14).await["content"]["timestamp"]
        .as_i64()
        .expect("timestamp");
    let behind = joined_at - first;
    assert!(
        (4_900..=6_000).contains(&behind),
        "first frame {behind} ms before the join"
    );
    sim.stop().await;
}

#[tokio::test]
async fn buffer_data_false_or_a_simulator_without_buffering_gives_only_live_audio() {
    for (no_buffering, extra) in [(false, json!({"buffer_data": false})), (true, json!({}))] {
        let sim = TestSim::start(|c| {
            if no_buffering {
                c.max_buffered = Duration::ZERO;
            }
        })
        .await;
        let (mut j, joined_at) = late_join(&sim, Duration::from_secs(30), extra).await;
        let first = recv_type(&mut j.media, 14).await["content"]["timestamp"]
            .as_i64()
            .expect("timestamp");
        assert!(
            first >= joined_at - 100,
            "no buffered frame: the first is {} ms before the join",
            joined_at - first
        );
        assert_eq!(sim.handle.stats_snapshot().frames_buffered, 0);
        sim.stop().await;
    }
}
