//! The durable webhook inbox under faults, on the real binary: a 200 means
//! stored, so a kill -9 right after the answers loses nothing; several
//! instances share one Redis inbox and a dead one's entries are taken over.

use std::collections::HashSet;

use futures_util::StreamExt as _;
use serde_json::Value;

use crate::support::binary::{Binary, Secrets, Sim, StoreAt};
use crate::support::redis::RedisServer;
use crate::support::{WAIT, engagement_started, eventually, now_secs, sign};

/// A signed `engagement_started` for `id`, as Zoom sends it.
pub(crate) fn started_body(id: &str) -> Vec<u8> {
    serde_json::to_vec(&engagement_started("acct-inbox", id)).expect("json")
}

/// POST a signed webhook body to `base`; the status code.
pub(crate) async fn post(http: &reqwest::Client, base: &str, secret: &str, body: &[u8]) -> u16 {
    let ts = now_secs().to_string();
    http.post(format!("{base}/api/webhooks/zoom"))
        .header("x-zm-request-timestamp", &ts)
        .header("x-zm-signature", sign(secret, &ts, body))
        .header("content-type", "application/json")
        .body(body.to_vec())
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

/// Send `ids` as started webhooks, `concurrency` at a time, spread over
/// `bases` in turn; every one must be answered 200.
async fn burst(sim: &Sim, bases: &[String], ids: &[String], concurrency: usize) {
    let secret = sim.cfg.secret_token.expose().to_owned();
    let codes: Vec<u16> = futures_util::stream::iter(ids.iter().enumerate())
        .map(|(i, id)| {
            let base = bases[i % bases.len()].clone();
            let secret = secret.clone();
            async move { post(&sim.http, &base, &secret, &started_body(id)).await }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    assert!(codes.iter().all(|c| *c == 200), "{codes:?}");
}

/// The active engagement ids `bin` lists (to the operator: all of them).
async fn active_ids(bin: &Binary<'_>) -> Option<HashSet<String>> {
    let v = bin.operator_json("/api/engagement/active").await?;
    Some(
        v["engagements"]
            .as_array()?
            .iter()
            .filter_map(|e| e["engagement_id"].as_str().map(str::to_owned))
            .collect(),
    )
}

async fn all_active(bin: &Binary<'_>, ids: &[String]) {
    let want: HashSet<String> = ids.iter().cloned().collect();
    eventually("every stored webhook took effect", || async {
        let got = active_ids(bin).await?;
        want.is_subset(&got).then_some(())
    })
    .await;
}

fn ids(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i:04}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_answered_200_before_a_kill_9_all_take_effect_after_restart_embedded() {
    let sim = Sim::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let secrets = Secrets::new();
    let at = StoreAt::Dir(&data);
    let bin = Binary::spawn(&sim, &at, &secrets, dir.path()).await;
    let ids = ids("KILL-E", 200);
    burst(&sim, std::slice::from_ref(&bin.base), &ids, 32).await;
    bin.kill9().await;

    let bin = Binary::spawn(&sim, &at, &secrets, dir.path()).await;
    all_active(&bin, &ids).await;
    bin.kill9().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_answered_200_before_a_kill_9_all_take_effect_after_restart_redis() {
    let sim = Sim::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let redis = RedisServer::start_with_aof().await;
    let secrets = Secrets::new();
    let at = StoreAt::Redis(&redis);
    let env = [("INBOX_CLAIM_IDLE_MS", "500")];
    let bin = Binary::spawn_env(&sim, &at, &secrets, dir.path(), &env).await;
    let ids = ids("KILL-R", 200);
    burst(&sim, std::slice::from_ref(&bin.base), &ids, 32).await;
    bin.kill9().await;
    let mut c = redis::Client::open(redis.url())
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let left: usize = redis::cmd("XLEN")
        .arg("zcc-rtms:inbox:stream")
        .query_async(&mut c)
        .await
        .expect("xlen");
    println!("[redis] kill -9 after 200 answers: {left} stored, not yet applied");

    let bin = Binary::spawn_env(&sim, &at, &secrets, dir.path(), &env).await;
    all_active(&bin, &ids).await;
    bin.kill9().await;
}

/// Pending entries per consumer of the inbox group.
async fn pending_by_consumer(redis: &RedisServer) -> Vec<(String, usize)> {
    let client = redis::Client::open(redis.url()).expect("url");
    let Ok(mut c) = client.get_multiplexed_async_connection().await else {
        return Vec::new();
    };
    let info: Result<redis::streams::StreamInfoConsumersReply, _> = redis::cmd("XINFO")
        .arg("CONSUMERS")
        .arg("zcc-rtms:inbox:stream")
        .arg("workers")
        .query_async(&mut c)
        .await;
    info.map(|i| {
        i.consumers
            .into_iter()
            .map(|c| (c.name, c.pending))
            .collect()
    })
    .unwrap_or_default()
}

async fn instance_name(bin: &Binary<'_>) -> String {
    let v = bin.operator_json("/ready").await.expect("ready");
    v["instance"].as_str().expect("instance").to_owned()
}

fn signal(pid: u32, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .expect("kill")
        .success();
    assert!(ok, "kill {sig} {pid}");
}

/// Whether the process is stopped by a signal (Linux `/proc`).
fn stopped(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| Some(s.rsplit_once(')')?.1.trim_start().starts_with('T')))
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_instances_share_the_inbox_and_a_killed_ones_pending_webhooks_are_taken_over() {
    let sim = Sim::start().await;
    let redis = RedisServer::start().await;
    let secrets = Secrets::new();
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().expect("dir")).collect();
    let at = StoreAt::Redis(&redis);
    let env = [("INBOX_CLAIM_IDLE_MS", "1000")];
    let a = Binary::spawn_env(&sim, &at, &secrets, dirs[0].path(), &env).await;
    let b = Binary::spawn_env(&sim, &at, &secrets, dirs[1].path(), &env).await;
    let victim = Binary::spawn_env(&sim, &at, &secrets, dirs[2].path(), &env).await;
    let victim_name = instance_name(&victim).await;
    let bases = [a.base.clone(), b.base.clone(), victim.base.clone()];

    // Webhooks spread over the three; then more through the two survivors,
    // while the victim, reading from the shared group, is frozen (SIGSTOP)
    // the moment it holds entries it has not finished, and killed.
    let first = ids("TRIO-A", 150);
    burst(&sim, &bases, &first, 24).await;
    let second = ids("TRIO-B", 300);
    let sending = burst(&sim, &bases[..2], &second, 24);
    let pid = victim.child.id().expect("pid");
    let freeze = async {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let pending = pending_by_consumer(&redis).await;
            if pending.iter().any(|(n, p)| *n == victim_name && *p > 0) {
                signal(pid, "-STOP");
                eventually("the victim is stopped", || async {
                    stopped(pid).then_some(())
                })
                .await;
                // It may have finished them before the signal landed: once
                // stopped, what it holds is settled; if nothing, go on.
                let held = pending_by_consumer(&redis).await;
                if held.iter().any(|(n, p)| *n == victim_name && *p > 0) {
                    return;
                }
                signal(pid, "-CONT");
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "victim never held entries"
            );
            tokio::task::yield_now().await;
        }
    };
    tokio::join!(sending, freeze);
    let held = pending_by_consumer(&redis)
        .await
        .into_iter()
        .find(|(n, _)| *n == victim_name)
        .map_or(0, |(_, p)| p);
    assert!(held > 0, "the frozen victim holds pending entries");
    victim.kill9().await;

    let ids: Vec<String> = first.into_iter().chain(second).collect();
    all_active(&a, &ids).await;
    eventually("the dead consumer's entries were taken over", || async {
        let pending = pending_by_consumer(&redis).await;
        pending
            .iter()
            .all(|(n, p)| *n != victim_name || *p == 0)
            .then_some(())
    })
    .await;
    // Each effect once: one "Engagement started" line per engagement.
    for id in ids.iter().step_by(10) {
        let v = a
            .operator_json(&format!("/api/webhooks/events?engagement_id={id}"))
            .await
            .expect("events");
        let starts = v["events"]
            .as_array()
            .expect("events")
            .iter()
            .filter(|e| e["message"] == "Engagement started")
            .count();
        assert!(starts <= 1, "{id}: {v}");
    }

    // Streams announced now (through a survivor) are consumed once each.
    sim.handle
        .set_app_url(url::Url::parse(&b.base).expect("url"));
    let mut streams = Vec::new();
    for _ in 0..3 {
        let id = sim.handle.create_engagement().await.expect("engagement");
        sim.handle.start_rtms(&id).await.expect("start");
        streams.push(id);
    }
    let stat = |p: &str| {
        sim.handle
            .stats()
            .pointer(p)
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    eventually("three streams, one consumer each", || async {
        let mut active = 0;
        for bin in [&a, &b] {
            let v = bin.stats().await?;
            active += v["streams_active"].as_u64()?;
        }
        (active == 3 && stat("/signaling/open") == 3 && stat("/signaling/total") == 3).then_some(())
    })
    .await;
    println!(
        "[redis, 3 instances] victim held {held} entries at kill -9; all {} took effect",
        ids.len()
    );
    a.kill9().await;
    b.kill9().await;
}

tokio::task_local! {
    /// `Options::tweak` is a plain `fn`: the data dir and key reach it this way.
    static RESTART_AT: (std::path::PathBuf, String);
}

/// A graceful stop in the middle of a burst: what was answered 200 and not
/// yet applied stays stored, the stop ends in bounded time, and the next
/// start applies the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_stop_leaves_unapplied_webhooks_for_the_next_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let at = (dir.path().join("data"), zcc_rtms::util::random_hex(32));
    let opts = crate::support::Options {
        tweak: |args| {
            let (data, key) = RESTART_AT.with(Clone::clone);
            args.data_dir = Some(data);
            args.token_encryption_key = Some(key);
        },
        ..crate::support::Options::default()
    };
    let first = RESTART_AT
        .scope(
            at.clone(),
            crate::support::TestApp::spawn_with(opts.clone()),
        )
        .await;
    let ids = ids("STOP", 300);
    let codes: Vec<u16> = futures_util::stream::iter(ids.iter())
        .map(|id| {
            let first = &first;
            async move {
                let event: Value = serde_json::from_slice(&started_body(id)).expect("json");
                first.post_webhook(&event).await.status().as_u16()
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    assert!(codes.iter().all(|c| *c == 200), "{codes:?}");
    tokio::time::timeout(WAIT, first.shutdown())
        .await
        .expect("the stop finishes the entry in hand and ends");

    let second = RESTART_AT
        .scope(at, crate::support::TestApp::spawn_with(opts))
        .await;
    let want: HashSet<String> = ids.iter().cloned().collect();
    eventually("every webhook answered 200 took effect", || async {
        let got: HashSet<String> = second.active_ids().await.into_iter().collect();
        want.is_subset(&got).then_some(())
    })
    .await;
    assert_eq!(second.state.inbox.backlog().await.expect("backlog"), 0);
    second.shutdown().await;
}
