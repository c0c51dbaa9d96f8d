//! State that never grows without bound: engagements never reported ended
//! are closed after their maximum age, with a status line — once, when
//! several instances share a store.

use crate::support::{Options, TestApp, engagement_started, eventually};

#[tokio::test]
async fn an_engagement_never_reported_ended_is_closed_after_its_maximum_age() {
    let app = TestApp::spawn_with(Options {
        tweak: |a| a.engagement_max_age_secs = Some("1".into()),
        ..Options::default()
    })
    .await;
    let resp = app
        .post_webhook(&engagement_started("acct1", "E-forever"))
        .await;
    assert_eq!(resp.status(), 200);
    eventually("the engagement is active", || async {
        let v = app.active().await;
        (v["engagementId"] == "E-forever").then_some(())
    })
    .await;
    let lines = eventually("the engagement is closed with a status line", || async {
        let lines = app.status_messages(Some("E-forever")).await;
        lines
            .iter()
            .any(|m| m.starts_with("Engagement closed: no end reported"))
            .then_some(lines)
    })
    .await;
    assert!(
        lines.contains(&"Engagement started".to_owned()),
        "{lines:?}"
    );
    let v = app.active().await;
    assert_eq!(v["active"], false, "{v}");
    app.shutdown().await;
}

/// Two instances on one Redis run the stale check at the same moment: each
/// stale engagement is closed by one of them, with one status line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_sharing_redis_close_a_stale_engagement_once() {
    use zcc_rtms::engagements::Engagements;
    use zcc_rtms::status::StatusBus;
    use zcc_rtms::store::{DEFAULT_PREFIX, Store};

    let f = crate::support::store::Fixture::new(crate::support::Kind::Redis).await;
    let other = Store::open(&f.backend, &f.key, DEFAULT_PREFIX)
        .await
        .expect("second instance's store");
    let (bus_a, bus_b) = (StatusBus::new(), StatusBus::new());
    let a = Engagements::new(bus_a.clone(), f.store.clone());
    let b = Engagements::new(bus_b.clone(), other);
    let ids: Vec<String> = (0..20).map(|i| format!("E-stale-{i}")).collect();
    for id in &ids {
        assert!(a.started(id, None, None, 1_000).await.expect("start"));
    }
    let max_age = std::time::Duration::from_secs(60);
    let now = 1_000 + 61_000;
    let (by_a, by_b) = tokio::join!(a.close_stale(max_age, now), b.close_stale(max_age, now));
    let mut closed = [by_a.expect("check a"), by_b.expect("check b")].concat();
    closed.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(closed, want, "each closed exactly once");
    let closed_lines = |bus: &StatusBus| {
        bus.snapshot()
            .status
            .iter()
            .filter(|l| l.message.starts_with("Engagement closed: no end reported"))
            .count()
    };
    assert_eq!(closed_lines(&bus_a) + closed_lines(&bus_b), ids.len());
    assert!(a.active().await.expect("list").is_empty());
    // A later check (the claim still held, or lapsed) closes nothing again.
    assert!(
        b.close_stale(max_age, now + 1)
            .await
            .expect("check")
            .is_empty()
    );
}
