//! Call recording (`RECORDINGS_DIR`) through the whole app: what is recorded
//! is, sample for sample, what the simulator sent; a process killed with
//! SIGKILL mid-call leaves files that decode; STREAM_REVOKED and a removed
//! app delete them; only those who may see the engagement can list or
//! download them.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use reqwest::StatusCode;
use serde_json::{Value, json};
use zoom_sim::audio::{FRAME_BYTES, FRAME_MS, expected_frame};

use crate::support::app::with_recordings;
use crate::support::binary::{Binary, Secrets, Sim, StoreAt};
use crate::support::install::*;
use crate::support::{Options, TestApp, eventually};

/// Audio each channel must have before a test looks at it: more than one
/// speaking turn (2.5 s), so both parties' speech is in it.
const ENOUGH_MS: u64 = 3_000;

async fn spawn() -> TestApp {
    TestApp::spawn_with(Options {
        tweak: with_recordings,
        ..Options::default()
    })
    .await
}

fn recordings_dir(app: &TestApp) -> PathBuf {
    app.data_dir.path().join("recordings")
}

/// The operator's listing of an engagement's recordings.
async fn listed(app: &TestApp, id: &str) -> Vec<Value> {
    let v = app
        .recordings(id)
        .await
        .json::<Value>()
        .await
        .expect("json");
    v["recordings"].as_array().cloned().unwrap_or_default()
}

/// Wait until both channels have at least `ENOUGH_MS` recorded.
async fn both_channels_recorded(app: &TestApp, id: &str) -> Vec<Value> {
    eventually("both channels recorded for a while", || async {
        let list = listed(app, id).await;
        (list.len() == 2
            && list
                .iter()
                .all(|r| r["duration_ms"].as_u64() >= Some(ENOUGH_MS)))
        .then_some(list)
    })
    .await
}

/// Frames the simulator did not send: dropped (its queue to a slow reader
/// was full) or skipped (its driver stalled, on a loaded machine). The app
/// writes them as silence.
fn sim_lost(sim: &zoom_sim::SimHandle) -> u64 {
    let stats = sim.stats_snapshot();
    stats.frames_dropped + stats.frames_skipped
}

/// Decode a WAV (hound) and compare it, 20 ms at a time, with what the
/// simulator sends on `channel` from `started_ms`: every frame is the same,
/// byte for byte, except at most `sim_lost` silent ones (see [`sim_lost`]).
/// Returns the frames compared.
fn assert_matches_simulator(
    wav: &[u8],
    stream_id: &str,
    channel: &str,
    started_ms: i64,
    sim_lost: u64,
) -> usize {
    let reader = hound::WavReader::new(std::io::Cursor::new(wav)).expect("a valid WAV header");
    let spec = reader.spec();
    assert_eq!(
        (spec.channels, spec.sample_rate, spec.bits_per_sample),
        (1, 16_000, 16)
    );
    let pcm: Vec<u8> = reader
        .into_samples::<i16>()
        .map(|s| s.expect("every sample decodes"))
        .flat_map(i16::to_le_bytes)
        .collect();
    let (mut same, mut silent) = (0, 0);
    let frames = pcm.len() / FRAME_BYTES;
    for k in 0..frames {
        let got = &pcm[k * FRAME_BYTES..(k + 1) * FRAME_BYTES];
        let ts = started_ms + k as i64 * FRAME_MS;
        let want = expected_frame(stream_id, channel, ts).expect("a simulator channel");
        if got == want.as_slice() {
            same += 1;
        } else if sim_lost > 0 && got.iter().all(|b| *b == 0) {
            silent += 1;
        } else {
            panic!("channel {channel}: frame {k} (ts {ts}) differs from what the simulator sent");
        }
    }
    assert!(silent as u64 <= sim_lost, "{silent} silent frames");
    assert_eq!(pcm.len() % FRAME_BYTES, 0, "whole frames only");
    same + silent
}

#[tokio::test]
async fn a_recording_holds_exactly_what_the_simulator_sent() {
    let app = spawn().await;
    let id = new_engagement(&app, None).await;
    let stream_id = app.sim.start_rtms(&id).await.expect("rtms");
    both_channels_recorded(&app, &id).await;
    app.sim.stop_rtms(&id).await.expect("stop");
    eventually("the session ended", || async {
        (!app.state.rtms.is_running(&stream_id)).then_some(())
    })
    .await;
    // Every frame the app received is written (or counted as dropped).
    let counters = app.state.metrics.recording_counters();
    eventually("the writer caught up", || async {
        let received = app.state.rtms.counters().frames.load(Ordering::Relaxed);
        let handled = counters.frames_written.get() + counters.frames_dropped.get();
        (received > 0 && handled == received).then_some(())
    })
    .await;
    assert_eq!(counters.frames_dropped.get(), 0);
    assert_eq!(counters.write_errors.get(), 0);

    let lost = sim_lost(&app.sim);
    let list = listed(&app, &id).await;
    assert_eq!(list.len(), 2, "{list:?}");
    let mut frames = 0;
    for r in &list {
        let resp = app.recording_file(r["url"].as_str().expect("url")).await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()["content-type"], "audio/wav");
        let disposition = resp.headers()["content-disposition"]
            .to_str()
            .expect("ascii");
        assert!(disposition.starts_with("attachment;"), "{disposition}");
        let wav = resp.bytes().await.expect("body");
        assert_eq!(wav.len() as u64, r["bytes"].as_u64().expect("bytes"));
        frames += assert_matches_simulator(
            &wav,
            &stream_id,
            r["channel"].as_str().expect("channel"),
            r["started_ms"].as_i64().expect("start"),
            lost,
        );
    }
    assert!(frames as u64 >= 2 * ENOUGH_MS / FRAME_MS as u64, "{frames}");
    // Private files.
    use std::os::unix::fs::PermissionsExt as _;
    let dir = recordings_dir(&app).join(&id);
    for r in &list {
        let meta = std::fs::metadata(dir.join(r["file"].as_str().expect("file"))).expect("meta");
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    }
    app.shutdown().await;
}

/// The `.wav` files of one engagement directory.
fn wav_files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "wav"))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn a_recording_survives_its_writer_being_killed_mid_call() {
    let sim = Sim::start().await;
    let data = tempfile::tempdir().expect("tempdir");
    let rec = data.path().join("recordings");
    let secrets = Secrets::new();
    let bin = Binary::spawn_env(
        &sim,
        &StoreAt::Dir(&data.path().join("store")),
        &secrets,
        data.path(),
        &[("RECORDINGS_DIR", rec.to_str().expect("utf-8 path"))],
    )
    .await;
    let id = new_engagement(&bin, None).await;
    let stream_id = sim.handle.start_rtms(&id).await.expect("rtms");
    let dir = rec.join(&id);
    // Read straight from disk while the call goes on.
    eventually("both files hold a few seconds", || async {
        let files = wav_files(&dir);
        (files.len() == 2
            && files.iter().all(|f| {
                hound::WavReader::open(f).is_ok_and(|r| u64::from(r.duration()) >= ENOUGH_MS * 16)
            }))
        .then_some(())
    })
    .await;
    bin.kill9().await;
    assert!(sim.handle.engagement(&id).is_some());
    let lost = sim_lost(&sim.handle);
    for f in wav_files(&dir) {
        let name = f.file_name().and_then(|n| n.to_str()).expect("name");
        let (start, channel) = name
            .strip_suffix(".wav")
            .and_then(|s| s.split_once('-'))
            .expect("start-channel.wav");
        let wav = std::fs::read(&f).expect("read");
        let frames = assert_matches_simulator(
            &wav,
            &stream_id,
            channel,
            start.parse().expect("start"),
            lost,
        );
        assert!(
            frames as u64 >= ENOUGH_MS / FRAME_MS as u64,
            "{name}: {frames}"
        );
    }
}

#[tokio::test]
async fn stream_revoked_deletes_the_recordings_as_the_stream_ends() {
    let app = spawn().await;
    let id = new_engagement(&app, None).await;
    let stream_id = app.sim.start_rtms(&id).await.expect("rtms");
    eventually("recording started", || async {
        (listed(&app, &id).await.len() == 2).then_some(())
    })
    .await;
    let dir = recordings_dir(&app).join(&id);
    assert_eq!(wav_files(&dir).len(), 2);
    let at = std::time::Instant::now();
    app.sim
        .stop_rtms_with(&id, zoom_sim::protocol::stop_reason::STREAM_REVOKED)
        .await
        .expect("revoke");
    // Deleted before the engine lets go of the stream: by the time it is
    // no longer running, nothing is left.
    eventually("the session ended", || async {
        (!app.state.rtms.is_running(&stream_id)).then_some(())
    })
    .await;
    let took = at.elapsed();
    assert!(
        !dir.exists(),
        "revoked recordings are gone when the stream ends"
    );
    eprintln!("STREAM_REVOKED: recordings deleted within {took:?}");
    assert!(listed(&app, &id).await.is_empty());
    let deleted = app.state.metrics.recording_counters().deleted_revoked.get();
    assert_eq!(deleted, 2);
    // Zoom says it in the stopped webhook too (deleting again is harmless).
    eventually("the stopped webhook delivered", || async {
        app.sim
            .webhook_log()
            .iter()
            .any(|d| {
                d.event == "contact_center.voice_rtms_stopped"
                    && d.status == Some(200)
                    && d.body.contains("\"stop_reason\":8")
            })
            .then_some(())
    })
    .await;
    assert!(!dir.exists());
    app.shutdown().await;
}

#[tokio::test]
async fn only_those_who_may_see_the_engagement_get_its_recordings() {
    let app = spawn().await;
    let agent = app.sim.default_user();
    let other = app.sim.create_user_in(Some(&agent.account_id), "Member");
    let agent_cookie = install(&app, None).await;
    let other_cookie = install(&app, Some(&other.user_id)).await;
    let id = new_engagement(&app, Some(&agent.user_id)).await;
    app.sim.start_rtms(&id).await.expect("rtms");
    let list = eventually("recording started", || async {
        let l = listed(&app, &id).await;
        (l.len() == 2).then_some(l)
    })
    .await;
    let url = list[0]["url"].as_str().expect("url").to_owned();
    let list_url = format!("/api/recordings?engagement_id={id}");

    // The agent lists and downloads.
    let mine = app.get_as(&list_url, Some(&agent_cookie)).await;
    assert_eq!(mine.status(), StatusCode::OK);
    let v: Value = mine.json().await.expect("json");
    assert_eq!(v["recordings"].as_array().map(Vec::len), Some(2), "{v}");
    let file = app.get_as(&url, Some(&agent_cookie)).await;
    assert_eq!(file.status(), StatusCode::OK);
    let wav = file.bytes().await.expect("body");
    hound::WavReader::new(std::io::Cursor::new(&wav[..])).expect("a WAV");

    // Another agent of the same account: it does not exist.
    for path in [list_url.as_str(), url.as_str()] {
        let resp = app.get_as(path, Some(&other_cookie)).await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{path}");
        let body: Value = resp.json().await.expect("json reason");
        assert!(body["error"].is_string(), "{body}");
    }
    // Anonymous: sign in first.
    assert_eq!(
        app.get_as(&url, None).await.status(),
        StatusCode::UNAUTHORIZED
    );
    // Names the recorder never makes are not files.
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    for bad in ["..%2F..%2Fetc%2Fpasswd", "1-1.txt", &enc("../1-1.wav")] {
        let resp = app
            .get_as(&format!("/api/recordings/{id}/{bad}"), Some(&agent_cookie))
            .await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{bad}");
    }
    let missing = app.get_as("/api/recordings", Some(&agent_cookie)).await;
    assert_eq!(missing.status(), StatusCode::BAD_REQUEST);
    app.shutdown().await;
}

#[tokio::test]
async fn removing_the_app_deletes_that_agents_recordings_even_of_forgotten_engagements() {
    let app = spawn().await;
    let agent = app.sim.default_user();
    let other = app.sim.create_user_in(Some(&agent.account_id), "Member");
    install(&app, None).await;
    let current = new_engagement(&app, Some(&agent.user_id)).await;
    let old = new_engagement(&app, Some(&agent.user_id)).await;
    let theirs = new_engagement(&app, Some(&other.user_id)).await;
    for id in [&current, &old, &theirs] {
        app.sim.start_rtms(id).await.expect("rtms");
    }
    for id in [&current, &old, &theirs] {
        eventually("recording started", || async {
            (listed(&app, id).await.len() == 2).then_some(())
        })
        .await;
    }
    // The old call ended long ago: the store has forgotten it (its ended
    // record expires after a day; recordings are kept for 30).
    app.sim.stop_rtms(&old).await.expect("stop");
    let record = app
        .state
        .store
        .load_engagement(&old)
        .await
        .expect("read")
        .expect("known");
    app.state
        .store
        .delete_engagement(&record)
        .await
        .expect("forget");
    let resp = app
        .post_webhook(&json!({
            "event": "app_deauthorized",
            "event_ts": zcc_rtms::time::now_ms(),
            "payload": {
                "account_id": agent.account_id,
                "user_id": agent.user_id,
                "client_id": app.sim_cfg.client_id,
                "deauthorization_time": "2026-11-29T12:00:00.000Z",
            }
        }))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let root = recordings_dir(&app);
    eventually("the agent's recordings are deleted", || async {
        (!root.join(&current).exists() && !root.join(&old).exists()).then_some(())
    })
    .await;
    // Their streams were stopped first: nothing is written again.
    eventually("the agent's session ended", || async {
        (app.state.rtms.active_streams() == 1).then_some(())
    })
    .await;
    assert!(!root.join(&current).exists() && !root.join(&old).exists());
    // Files are counted once their removal returns, just after the
    // directories are gone: wait for the count itself.
    let deleted = || {
        app.state
            .metrics
            .recording_counters()
            .deleted_deauthorized
            .get()
    };
    eventually("the four deleted files counted", || async {
        (deleted() >= 4).then_some(())
    })
    .await;
    assert_eq!(deleted(), 4);
    assert_eq!(
        wav_files(&root.join(&theirs)).len(),
        2,
        "another agent's stay"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn with_recording_off_the_routes_say_so() {
    let app = TestApp::spawn().await;
    for path in [
        "/api/recordings?engagement_id=E1",
        "/api/recordings/E1/1700000000000-1.wav",
    ] {
        let resp = app.operator.get(app.url(path)).send().await.expect("get");
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{path}");
        let body: Value = resp.json().await.expect("json");
        assert!(
            body["error"]
                .as_str()
                .is_some_and(|e| e.contains("recording is off")),
            "{body}"
        );
    }
    app.shutdown().await;
}
