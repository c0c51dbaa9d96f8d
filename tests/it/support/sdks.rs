//! Zoom's own SDKs as test clients, each installed on first use into
//! `target/` (nothing of them is committed): the Apps SDK (npm
//! `@zoom/appssdk`, handed to the simulator, which serves it to the page in
//! place of its stand-in) and the official RTMS SDK (PyPI `rtms`, a closed C
//! SDK inside, in `target/conformance-venv`) driven as a child process.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context as _;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};
use tokio::sync::{OnceCell, mpsc};

use super::sim::TestSim;

pub const APPS_SDK_VERSION: &str = "0.16.41";

/// `dist/sdk.module.js` (the CommonJS build) of `@zoom/appssdk@0.16.41`,
/// installed with npm on first use.
pub async fn commonjs_build() -> &'static Path {
    static BUILD: OnceCell<PathBuf> = OnceCell::const_new();
    BUILD
        .get_or_init(|| async {
            let prefix = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/appssdk");
            let package = prefix.join("node_modules/@zoom/appssdk");
            if installed_version(&package).as_deref() != Some(APPS_SDK_VERSION) {
                std::fs::create_dir_all(&prefix).expect("target/appssdk");
                run(
                    tokio::process::Command::new("npm")
                        .args([
                            "install",
                            "--no-save",
                            "--no-package-lock",
                            "--no-audit",
                            "--no-fund",
                            "--ignore-scripts",
                            "--loglevel=error",
                            "--prefix",
                        ])
                        .arg(&prefix)
                        .arg(format!("@zoom/appssdk@{APPS_SDK_VERSION}")),
                    "npm install @zoom/appssdk",
                )
                .await
                .expect("installing Zoom's Apps SDK from npm (node and npm are required)");
                assert_eq!(
                    installed_version(&package).as_deref(),
                    Some(APPS_SDK_VERSION),
                    "npm installed another version of @zoom/appssdk"
                );
            }
            package.join("dist/sdk.module.js")
        })
        .await
}

fn installed_version(package: &Path) -> Option<String> {
    let text = std::fs::read_to_string(package.join("package.json")).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    json["version"].as_str().map(str::to_owned)
}

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
pub async fn sdk_python() -> &'static Path {
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
pub struct Sdk {
    child: tokio::process::Child,
    events: mpsc::UnboundedReceiver<Value>,
    _dir: tempfile::TempDir,
}

impl Sdk {
    pub async fn join(sim: &TestSim, engagement_id: &str, stream_id: &str, secret: &str) -> Sdk {
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
    pub async fn next(&mut self, kind: &str, wait: Duration, skipped: &mut Vec<Value>) -> Value {
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

    pub async fn leave(&mut self) {
        if let Some(stdin) = self.child.stdin.as_mut() {
            let _ = stdin.write_all(b"leave\n").await;
        }
    }
}
