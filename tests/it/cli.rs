//! The real binary's command line: start-up errors name the variable, and
//! `doctor` checks what the configuration points at.

use std::process::Output;

use tokio::process::Command;
use zoom_sim::{SimConfig, Simulator};

use crate::support::{WAIT, init};

async fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let dir = tempfile::tempdir().expect("dir");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_zcc-rtms"));
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("BIND_ADDR", "127.0.0.1")
        .env("BACKEND_PORT", "0")
        .env("DATA_DIR", dir.path())
        .current_dir(dir.path())
        .envs(env.iter().copied())
        .kill_on_drop(true);
    tokio::time::timeout(WAIT, cmd.output())
        .await
        .expect("the binary exits in time")
        .expect("run the binary")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn a_partial_zoom_configuration_stops_start_up_naming_the_missing_variable() {
    let out = run(&[], &[("ZOOM_APP_CLIENT_ID", "abc")]).await;
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("ZOOM_APP_CLIENT_SECRET"), "{err}");
    assert_eq!(err.lines().count(), 1, "one clear line: {err}");

    let out = run(&[], &[("BACKEND_PORT", "eighty")]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("BACKEND_PORT"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test]
async fn secrets_never_reach_the_start_up_error() {
    let out = run(
        &[],
        &[
            ("ZOOM_APP_CLIENT_ID", "abc"),
            ("ZOOM_APP_CLIENT_SECRET", "very-secret-value"),
            ("ZOOM_SECRET_TOKEN", "token-value"),
            ("SESSION_SECRET", "tiny-session-xyz"),
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(2));
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(all.contains("SESSION_SECRET"), "{all}");
    for secret in ["very-secret-value", "token-value", "tiny-session-xyz"] {
        assert!(!all.contains(secret), "{secret} leaked: {all}");
    }
}

#[tokio::test]
async fn doctor_checks_the_store_and_the_zoom_it_points_at() {
    init();
    let mut cfg = SimConfig::generated();
    cfg.tls = true;
    let sim = Simulator::build(cfg.clone()).await.expect("simulator");
    let base = sim.base_url().as_str().trim_end_matches('/').to_owned();
    let ca = sim
        .ca_cert_path()
        .expect("a CA with TLS")
        .display()
        .to_string();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(sim.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    let session = "s".repeat(32);
    let key = "ab".repeat(32);
    let api = format!("{base}/v2");
    let env = [
        ("ZOOM_APP_CLIENT_ID", cfg.client_id.as_str()),
        ("ZOOM_APP_CLIENT_SECRET", cfg.client_secret.expose()),
        ("ZOOM_SECRET_TOKEN", cfg.secret_token.expose()),
        ("ZOOM_HOST", base.as_str()),
        ("ZOOM_API_URL", api.as_str()),
        ("ZOOM_CA_CERT", ca.as_str()),
        ("SESSION_SECRET", session.as_str()),
        ("TOKEN_ENCRYPTION_KEY", key.as_str()),
        ("PUBLIC_URL", "https://rtms.example.invalid/"),
    ];
    let out = run(&["doctor"], &env).await;
    let report = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{report}{}", text(&out.stderr));
    for line in [
        "ok    store",
        "ok    zoom host",
        "ok    zoom api",
        "ok    public url",
    ] {
        assert!(report.contains(line), "{line} missing: {report}");
    }
    assert!(
        report.contains("HTTP 401"),
        "the API asks for a token: {report}"
    );

    // An unreachable store and a plain-http public URL are reported.
    let mut bad = env.to_vec();
    bad.push(("REDIS_URL", "redis+unix:///nonexistent/zcc-rtms-test.sock"));
    bad.retain(|(k, _)| *k != "PUBLIC_URL");
    bad.push(("PUBLIC_URL", "http://rtms.example.invalid/"));
    let out = run(&["doctor"], &bad).await;
    let report = text(&out.stdout);
    assert_ne!(out.status.code(), Some(0), "{report}");
    assert!(report.contains("FAIL  store"), "{report}");
    assert!(report.contains("warn  public url"), "{report}");
    let _ = stop.send(());
    task.await.expect("join").expect("simulator ran");
}
