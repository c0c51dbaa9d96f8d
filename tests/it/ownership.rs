//! Several instances on one Redis: a stream is consumed by exactly one, and
//! another takes it over once the owner is gone.

use serde_json::json;

use crate::support::Kind;
use crate::support::rig::Rig;
use crate::support::rig::stat;
use crate::support::rig::{
    fanout_connected, operator_json_at, second_instance, status_lines, stop_both,
};
use crate::support::{eventually, now_secs};

/// POST a signed `voice_rtms_started` (as Zoom's fail-over re-send) to
/// `base`, repeated while it is answered 5xx (as Zoom retries).
async fn post_started(rig: &Rig, base: &str, engagement: &str, stream: &str, ts_ms: i64) {
    let status = eventually("the announcement is stored", || async {
        let status = post_started_once(rig, base, engagement, stream, ts_ms).await;
        (!status.is_server_error()).then_some(status)
    })
    .await;
    assert_eq!(status, 200);
}

async fn post_started_once(
    rig: &Rig,
    base: &str,
    engagement: &str,
    stream: &str,
    ts_ms: i64,
) -> reqwest::StatusCode {
    let app = &rig.app;
    let event = json!({
        "event": "contact_center.voice_rtms_started",
        "event_ts": ts_ms,
        "payload": {
            "engagement_id": engagement,
            "rtms_stream_id": stream,
            "server_urls": app.sim.rtms_url().as_str(),
        }
    });
    app.post_webhook_at(base, &event).await.status()
}

async fn streams_active(rig: &Rig, base: &str) -> u64 {
    let v = operator_json_at(&rig.app, base, "/api/stats").await;
    v["streams_active"].as_u64().expect("count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stream_is_consumed_by_one_instance_and_taken_over_when_it_stops() {
    let rig = Rig::spawn(Kind::Redis).await;
    let app = &rig.app;
    let id = app.sim.create_engagement().await.expect("engagement");
    let mut feed = app.events(Some(&id)).await;
    let stream = app.sim.start_rtms(&id).await.expect("start");
    feed.wait_for_status("Received 50 audio chunks").await;
    assert_eq!(stat(app, "/signaling/total"), 1);
    assert_eq!(app.state.rtms.active_streams(), 1);
    // Started once the stream is owned here (the webhook inbox is shared).
    let (other, stop_other, other_task) = second_instance(&rig).await;

    // The same stream announced again, through the other instance. Any
    // instance may apply it (the inbox is shared): the owner reconnects its
    // own stream, another declines it. Either way one consumer remains.
    post_started(&rig, &other, &id, &stream, now_secs() * 1000 + 1).await;
    eventually("the announcement is applied", || async {
        (app.state.inbox.backlog().await.ok()? == 0).then_some(())
    })
    .await;
    eventually("one consumer of the stream, the owner", || async {
        (streams_active(&rig, &other).await == 0
            && app.state.rtms.active_streams() == 1
            && stat(app, "/signaling/open") == 1)
            .then_some(())
    })
    .await;

    // The owner stops (releasing its lease); the next announcement is
    // taken by the other.
    let mut rig = rig;
    rig.app.stop_app().await;
    post_started(&rig, &other, &id, &stream, now_secs() * 1000 + 2).await;
    eventually("the other instance consumes the stream", || async {
        (streams_active(&rig, &other).await == 1 && stat(&rig.app, "/signaling/open") == 1)
            .then_some(())
    })
    .await;
    assert!(stat(&rig.app, "/signaling/total") >= 2);
    stop_both(rig, stop_other, other_task).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_page_on_another_instance_sees_the_stream_live() {
    let rig = Rig::spawn(Kind::Redis).await;
    let (other, stop_other, other_task) = second_instance(&rig).await;
    let app = &rig.app;
    fanout_connected(app, &other).await;

    let id = app.sim.create_engagement().await.expect("engagement");
    let mut feed = crate::support::Sse::open_with(
        crate::support::streaming_client()
            .get(format!("{other}/api/events?engagement_id={id}"))
            .bearer_auth(&app.admin_token),
    )
    .await;
    app.sim.start_rtms(&id).await.expect("start");
    feed.wait_for_status("Starting RTMS connection").await;
    feed.wait_for_status("Received 50 audio chunks").await;
    let view = feed
        .wait_for("a stream view with both channels", |ev| {
            ev.event == "stream" && ev.data["channels"].as_array().is_some_and(|c| c.len() == 2)
        })
        .await;
    assert_eq!(view.data["engagement_id"], id.as_str());
    // Consumed by one instance only (either: the inbox is shared).
    assert_eq!(
        streams_active(&rig, &other).await + app.state.rtms.active_streams() as u64,
        1
    );
    let lines = status_lines(app, &other, &format!("?engagement_id={id}")).await;
    assert!(
        lines.contains(&"Received 50 audio chunks".to_owned()),
        "{lines:?}"
    );
    stop_both(rig, stop_other, other_task).await;
}

tokio::task_local! {
    /// `Options::tweak` is a plain `fn`: the Redis URL reaches it this way.
    static OUTAGE_REDIS_URL: String;
}

/// An instance on Redis with a 1.5 s stream lease.
async fn short_lease_rig() -> Rig {
    let redis = crate::support::redis::RedisServer::start().await;
    let opts = crate::support::Options {
        tweak: |args| {
            args.redis_url = Some(OUTAGE_REDIS_URL.with(Clone::clone));
            args.rtms_lease_ttl_ms = Some("1500".into());
        },
        ..crate::support::Options::default()
    };
    let app = OUTAGE_REDIS_URL
        .scope(redis.url(), crate::support::TestApp::spawn_with(opts))
        .await;
    Rig {
        app,
        redis: Some(redis),
    }
}

fn frames(rig: &Rig) -> u64 {
    rig.app
        .state
        .rtms
        .counters()
        .frames
        .load(std::sync::atomic::Ordering::Relaxed)
}

async fn lease_owner(rig: &Rig, stream: &str) -> Option<String> {
    let raw = rig.app.state.store.stream_lease(stream).await.ok()??;
    zcc_rtms::rtms::lease::LeaseRecord::decode(&raw).map(|r| r.owner)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redis_outage_longer_than_the_lease_leaves_every_stream_with_its_owner() {
    let mut rig = short_lease_rig().await;
    let app = &rig.app;
    let mut streams = Vec::new();
    for _ in 0..3 {
        let id = app.sim.create_engagement().await.expect("engagement");
        let stream = app.sim.start_rtms(&id).await.expect("start");
        streams.push((id, stream));
    }
    eventually("three streams flowing", || async {
        (stat(app, "/signaling/open") == 3 && frames(&rig) >= 3 * 100).then_some(())
    })
    .await;
    let owner = eventually("the leases are written", || async {
        lease_owner(&rig, &streams[0].1).await
    })
    .await;
    // Started once the three are owned here: the webhook inbox is shared, so
    // an instance present earlier could have taken some of them.
    let (other, stop_other, other_task) = second_instance(&rig).await;

    // Redis goes away for more than twice the lease's lifetime, measured
    // by the audio that keeps arriving meanwhile (100 frames/s per stream).
    rig.redis.as_mut().expect("redis").kill9().await;
    let before = frames(&rig);
    eventually("3.5 s of audio during the outage", || async {
        (frames(&rig) >= before + 3 * 350).then_some(())
    })
    .await;
    assert_eq!(rig.app.state.rtms.active_streams(), 3);
    // Back, empty: every lease lapsed with the data.
    rig.redis.as_mut().expect("redis").restart().await;
    for (_, stream) in &streams {
        let back = eventually("the owner claims its stream again", || async {
            lease_owner(&rig, stream).await
        })
        .await;
        assert_eq!(back, owner);
    }

    // Zoom announces the streams again, through the other instance. The
    // inbox is shared: the owner may apply an announcement (it reconnects
    // its own stream) or the other instance (it declines). Either way no
    // second consumer appears and the owner keeps every stream.
    for (i, (id, stream)) in streams.iter().enumerate() {
        post_started(&rig, &other, id, stream, now_secs() * 1000 + 10 + i as i64).await;
    }
    eventually("the announcements are applied", || async {
        (rig.app.state.inbox.backlog().await.ok()? == 0).then_some(())
    })
    .await;
    let after = frames(&rig);
    eventually("audio still flowing", || async {
        (frames(&rig) >= after + 3 * 100).then_some(())
    })
    .await;
    let app = &rig.app;
    assert_eq!(streams_active(&rig, &other).await, 0);
    assert_eq!(app.state.rtms.active_streams(), 3);
    assert_eq!(stat(app, "/signaling/open"), 3, "{}", app.sim.stats());
    assert!(
        stat(app, "/signaling/total") <= 3 + 3,
        "at most one reconnect per announcement: {}",
        app.sim.stats()
    );
    for (_, stream) in &streams {
        assert_eq!(
            lease_owner(&rig, stream).await.as_deref(),
            Some(owner.as_str())
        );
    }
    for (id, _) in &streams {
        let lines = status_lines(app, &app.base, &format!("?engagement_id={id}")).await;
        assert!(!lines.iter().any(|m| m.contains("taken over")), "{lines:?}");
    }
    stop_both(rig, stop_other, other_task).await;
}
