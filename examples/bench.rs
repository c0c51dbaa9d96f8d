//! Streams benchmark: how many concurrent RTMS streams one app instance
//! consumes, at what CPU and memory.
//!
//! The simulator runs in a child process (this same binary with `--sim`), so
//! the numbers below are the app's own. The app runs in-process in Zoom mode
//! against it; N engagements get an RTMS stream each (two channels, 50
//! frames/s per channel, as a ZCC call), and after a warm-up the app's frame
//! rate, CPU time and resident memory are measured.
//!
//!     cargo run --release --example bench -- 500 1000 2000
//!
//! Prints one line per stream count. Nothing is asserted: it is a measurement.

use std::io::BufRead as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use zcc_rtms::config::{CredentialArgs, ServeArgs};
use zcc_rtms::sim::{SimConfig, Simulator};
use zcc_rtms::{App, Config};

const CLIENT_ID: &str = "bench_client";
const CLIENT_SECRET: &str = "bench_client_secret_0123456789";
const SECRET_TOKEN: &str = "bench_secret_token";

fn main() -> anyhow::Result<()> {
    zcc_rtms::tls::install_crypto_provider();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if args.first().map(String::as_str) == Some("--sim") {
        return rt.block_on(run_sim(args.get(1).cloned().unwrap_or_default()));
    }
    let counts: Vec<usize> = if args.is_empty() {
        vec![250, 500, 1000]
    } else {
        args.iter().map(|a| a.parse()).collect::<Result<_, _>>()?
    };
    rt.block_on(async {
        for n in counts {
            run_once(n).await?;
        }
        anyhow::Ok(())
    })
}

async fn run_sim(app_url: String) -> anyhow::Result<()> {
    let mut cfg = SimConfig::generated();
    cfg.client_id = CLIENT_ID.into();
    cfg.client_secret = CLIENT_SECRET.into();
    cfg.secret_token = SECRET_TOKEN.into();
    cfg.keepalive = Duration::from_secs(10);
    cfg.app_url = Some(url::Url::parse(&app_url)?);
    let sim = Simulator::build(cfg).await?;
    println!("{}", sim.ready_line());
    sim.run_until_stopped(async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await
}

fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

fn rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

async fn run_once(streams: usize) -> anyhow::Result<()> {
    // Bind the app first so the simulator knows where to send webhooks.
    let data_dir = tempfile::tempdir()?;
    let args = ServeArgs {
        credentials: CredentialArgs {
            client_id: Some(CLIENT_ID.into()),
            client_secret: Some(CLIENT_SECRET.into()),
            secret_token: Some(SECRET_TOKEN.into()),
        },
        port: Some("0".into()),
        bind: Some("127.0.0.1".into()),
        session_secret: Some("s".repeat(32)),
        token_encryption_key: Some("ab".repeat(32)),
        data_dir: Some(data_dir.path().to_owned()),
        max_streams: Some((streams * 2).to_string()),
        ..ServeArgs::default()
    };
    let config = Config::from_args(&args)?;
    let app = App::build(config).await?;
    let app_url = format!("http://127.0.0.1:{}", app.local_addr().port());
    let state = app.state().clone();

    let mut child = Command::new(std::env::current_exe()?)
        .args(["--sim", &app_url])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let ready = {
        let stdout = child.stdout.take().expect("piped");
        let mut line = String::new();
        std::io::BufReader::new(stdout).read_line(&mut line)?;
        serde_json::from_str::<serde_json::Value>(&line)?
    };
    let sim_base = ready["base_url"].as_str().unwrap_or_default().to_owned();

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async {
        let _ = stop_rx.await;
    }));

    let http = reqwest::Client::new();
    let ramp = Instant::now();
    for _ in 0..streams {
        let e: serde_json::Value = http
            .post(format!("{sim_base}/sim/engagements"))
            .send()
            .await?
            .json()
            .await?;
        let id = e["engagement_id"].as_str().unwrap_or_default().to_owned();
        http.post(format!("{sim_base}/sim/engagements/{id}/rtms/start"))
            .send()
            .await?
            .error_for_status()?;
    }
    // Wait for every stream to run.
    let deadline = Instant::now() + Duration::from_secs(120);
    while state.rtms.active_streams() < streams && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ramp_s = ramp.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(3)).await;

    let counters = state.rtms.counters();
    let frames0 = counters.frames.load(std::sync::atomic::Ordering::Relaxed);
    let cpu0 = cpu_seconds();
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let secs = t0.elapsed().as_secs_f64();
    let frames = counters.frames.load(std::sync::atomic::Ordering::Relaxed) - frames0;
    let cpu = cpu_seconds() - cpu0;
    let expected = streams as f64 * 100.0;
    println!(
        "streams={streams} running={} ramp={ramp_s:.1}s frames/s={:.0} (expected {:.0}, {:.1}%) app_cpu={:.1}% of one core ({:.1} µs/frame) rss={:.0} MB failed={}",
        state.rtms.active_streams(),
        frames as f64 / secs,
        expected,
        100.0 * frames as f64 / secs / expected,
        100.0 * cpu / secs,
        1e6 * cpu / frames.max(1) as f64,
        rss_mb(),
        counters
            .sessions_failed
            .load(std::sync::atomic::Ordering::Relaxed),
    );
    let _ = stop_tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(30), server).await;
    let _ = child.kill();
    let _ = child.wait();
    Ok(())
}
