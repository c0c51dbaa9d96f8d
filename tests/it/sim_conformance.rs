//! Conformance: Zoom's official RTMS SDK (PyPI `rtms` 1.1.0, a closed C SDK
//! inside) joins streams of our simulator over wss with certificate
//! verification on. The venv lives in `target/conformance-venv`, made once
//! and reused; pip's cache keeps re-creation cheap.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context as _;
use base64::Engine as _;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};
use tokio::sync::{OnceCell, mpsc};

use super::sim_support::*;

const RTMS_VERSION: &str = "1.1.0";
/// Installing the SDK the first time: bounded, but pip needs a moment.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(600);

pub async fn run(cmd: &mut tokio::process::Command, what: &str) -> anyhow::Result<()> {
    let out = tokio::time::timeout(INSTALL_TIMEOUT, cmd.kill_on_drop(true).output())
        .await
        .with_context(|| format!("{what} timed out"))?
        .with_context(|| format!("running {what}"))?;
    anyhow::ensure!(
        out.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// The venv's python with `rtms==1.1.0`, made on first use.
async fn sdk_python() -> &'static Path {
    static VENV: OnceCell<PathBuf> = OnceCell::const_new();
    VENV.get_or_init(|| async {
        let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/conformance-venv");
        let python = venv.join("bin/python");
        let check = format!(
            "import importlib.metadata as m, rtms; assert m.version('rtms') == '{RTMS_VERSION}'"
        );
        let ready = python.is_file()
            && run(
                tokio::process::Command::new(&python).args(["-c", &check]),
                "checking the rtms SDK",
            )
            .await
            .is_ok();
        if !ready {
            run(
                tokio::process::Command::new("python3")
                    .args(["-m", "venv", "--clear"])
                    .arg(&venv),
                "python3 -m venv",
            )
            .await
            .expect("creating the conformance venv (python3 with venv is required)");
            run(
                tokio::process::Command::new(venv.join("bin/pip")).args([
                    "install",
                    "--disable-pip-version-check",
                    "--quiet",
                    &format!("rtms=={RTMS_VERSION}"),
                ]),
                "pip install rtms",
            )
            .await
            .expect("installing the official RTMS SDK from PyPI");
            run(
                tokio::process::Command::new(&python).args(["-c", &check]),
                "checking the rtms SDK",
            )
            .await
            .expect("the installed SDK imports");
        }
        python
    })
    .await
}

/// One official-SDK client process and the events it reports.
struct Sdk {
    child: tokio::process::Child,
    events: mpsc::UnboundedReceiver<Value>,
    _dir: tempfile::TempDir,
}

impl Sdk {
    async fn join(sim: &TestSim, engagement_id: &str, stream_id: &str, secret: &str) -> Sdk {
        let python = sdk_python().await;
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance/sdk_client.py");
        // The SDK writes ./logs; keep that out of the repository.
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(dir.path().join("logs")).expect("logs dir");
        let args = json!({
            "engagement_id": engagement_id,
            "rtms_stream_id": stream_id,
            "server_urls": sim.rtms_url,
            "client": sim.cfg.client_id,
            "secret": secret,
            "max_seconds": 60,
        });
        let mut child = tokio::process::Command::new(python)
            .arg(&script)
            .arg(args.to_string())
            .current_dir(dir.path())
            .env("ZM_RTMS_CA", sim.ca_cert.as_ref().expect("TLS simulator"))
            .env_remove("ZM_RTMS_CLIENT")
            .env_remove("ZM_RTMS_SECRET")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("the SDK client starts");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, events) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    let _ = tx.send(v);
                }
            }
        });
        Sdk {
            child,
            events,
            _dir: dir,
        }
    }

    /// The next event of a type (others go to `skipped`).
    async fn next(&mut self, kind: &str, wait: Duration, skipped: &mut Vec<Value>) -> Value {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let e = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .unwrap_or_else(|_| panic!("no SDK {kind} event in {wait:?}"))
                .unwrap_or_else(|| panic!("the SDK client exited before a {kind} event"));
            if e["type"] == kind {
                return e;
            }
            skipped.push(e);
        }
    }

    async fn leave(&mut self) {
        if let Some(stdin) = self.child.stdin.as_mut() {
            let _ = stdin.write_all(b"leave\n").await;
        }
    }
}

/// An audio event's bytes are one of the two channels' frames at its timestamp.
fn is_sent_frame(stream_id: &str, e: &Value) -> bool {
    let ts = e["ts"].as_i64().expect("timestamp");
    let data = base64::engine::general_purpose::STANDARD
        .decode(e["b64"].as_str().expect("data"))
        .expect("base64");
    ["1", "2"].iter().any(|c| {
        zoom_sim::audio::expected_frame(stream_id, c, ts).as_deref() == Some(data.as_slice())
    })
}

#[tokio::test]
async fn the_official_sdk_joins_over_verified_wss_receives_audio_and_transcripts_and_leaves_on_stop()
 {
    let sim = TestSim::start(|c| {
        c.tls = true;
        c.keepalive = Duration::from_millis(500);
    })
    .await;
    let eid = sim.handle.create_engagement().await.expect("engagement");
    let sid = sim.handle.start_rtms(&eid).await.expect("stream");
    let mut sdk = Sdk::join(&sim, &eid, &sid, sim.cfg.client_secret.expose()).await;
    let mut seen = Vec::new();
    let join = sdk.next("join", Duration::from_secs(30), &mut seen).await;
    assert_eq!(join["reason"], 0, "join confirmed: {join}");

    let mut audio = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while audio.len() < 100 {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        audio.push(sdk.next("audio", left, &mut seen).await);
    }
    for e in &audio {
        assert_eq!(e["size"], 640);
        assert!(
            is_sent_frame(&sid, e),
            "the SDK got exactly the bytes we sent: {}",
            e["ts"]
        );
    }
    let transcript = match seen.iter().find(|e| e["type"] == "transcript") {
        Some(t) => t.clone(),
        None => {
            sdk.next("transcript", Duration::from_secs(10), &mut seen)
                .await
        }
    };
    assert!(
        zoom_sim::audio::SCRIPT.contains(&transcript["text"].as_str().expect("text")),
        "{transcript}"
    );
    eventually("keep-alives answered by the SDK", || {
        sim.handle.stats_snapshot().keepalives.answered >= 2
    })
    .await;
    let stats = sim.handle.stats_snapshot();
    assert_eq!(
        stats.media_handshakes.get("0"),
        Some(&2),
        "audio and transcript sockets"
    );

    sim.handle.stop_rtms(&eid).await.expect("stop");
    let leave = sdk.next("leave", Duration::from_secs(15), &mut seen).await;
    assert_eq!(leave["reason"], 25, "left with the TERMINATED reason");
    sim.stop().await;
}

#[tokio::test]
async fn the_official_sdk_gets_join_code_3_for_a_bad_client_secret() {
    let sim = TestSim::start(|c| c.tls = true).await;
    let eid = sim.handle.create_engagement().await.expect("engagement");
    let sid = sim.handle.start_rtms(&eid).await.expect("stream");
    let mut sdk = Sdk::join(&sim, &eid, &sid, "not-the-secret").await;
    let join = sdk
        .next("join", Duration::from_secs(30), &mut Vec::new())
        .await;
    assert_eq!(join["reason"], 3, "{join}");
    assert_eq!(
        sim.handle.stats_snapshot().signaling_handshakes.get("3"),
        Some(&1)
    );
    sim.stop().await;
}

#[tokio::test]
async fn the_official_sdk_rejoins_after_a_dropped_tcp_connection() {
    let sim = TestSim::start(|c| c.tls = true).await;
    let eid = sim.handle.create_engagement().await.expect("engagement");
    let sid = sim.handle.start_rtms(&eid).await.expect("stream");
    let mut sdk = Sdk::join(&sim, &eid, &sid, sim.cfg.client_secret.expose()).await;
    let mut seen = Vec::new();
    assert_eq!(
        sdk.next("join", Duration::from_secs(30), &mut seen).await["reason"],
        0
    );
    sdk.next("audio", Duration::from_secs(10), &mut seen).await;

    sim.handle
        .apply_faults(
            serde_json::from_value(json!({"drop": {"engagement_id": eid, "mode": "abort"}}))
                .expect("faults"),
        )
        .expect("applies");
    eventually("a second signaling handshake", || {
        sim.handle
            .stats_snapshot()
            .signaling_handshakes
            .get("0")
            .is_some_and(|n| *n >= 2)
    })
    .await;
    // Audio flows again after the rejoin.
    let cut = zcc_rtms::time::now_ms();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let e = sdk.next("audio", left, &mut seen).await;
        if e["ts"].as_i64().is_some_and(|ts| ts > cut) {
            assert!(is_sent_frame(&sid, &e));
            break;
        }
    }
    assert!(
        !seen.iter().any(|e| e["type"] == "leave"),
        "no leave: {seen:?}"
    );
    sdk.leave().await;
    sim.stop().await;
}
