//! Webhook answer latency: how long Zoom waits for its 200 while the app
//! stores every event in the durable inbox, at a steady rate.
//!
//! The app runs in-process in Zoom mode (its own port, real HTTP); webhooks
//! are sent open-loop at each rate for a few seconds, each a distinct signed
//! `engagement_started`, and the time to the answer is measured. The
//! embedded store lives in a temp dir; Redis is a `redis-server` this
//! example starts on a unix socket (skipped if none is installed).
//!
//!     cargo run --release --example webhook_bench -- [seconds] [rate ...]
//!
//! Defaults: 5 s at 200 and 1000 webhooks/s. Prints p50/p99/max per store
//! and rate. Nothing is asserted: it is a measurement.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac as _};
use sha2::Sha256;
use zcc_rtms::config::{CredentialArgs, ServeArgs};
use zcc_rtms::{App, Config};

const SECRET_TOKEN: &str = "bench_secret_token";
const REDIS_SERVER: &str = "/usr/bin/redis-server";

fn main() -> anyhow::Result<()> {
    zcc_rtms::tls::install_crypto_provider();
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;
    let seconds = args.first().copied().unwrap_or(5);
    let rates: Vec<u64> = if args.len() > 1 {
        args[1..].to_vec()
    } else {
        vec![200, 1000]
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        for rate in &rates {
            let dir = tempfile::tempdir()?;
            let line = run("embedded", None, dir.path(), *rate, seconds).await?;
            println!("{line}");
        }
        if Path::new(REDIS_SERVER).exists() {
            for rate in &rates {
                let dir = tempfile::tempdir()?;
                let socket = dir.path().join("redis.sock");
                let mut redis = Command::new(REDIS_SERVER)
                    .args(["--port", "0", "--unixsocket"])
                    .arg(&socket)
                    .args(["--save", "", "--appendonly", "yes", "--dir"])
                    .arg(dir.path())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()?;
                let url = format!("redis+unix://{}", socket.display());
                let deadline = Instant::now() + Duration::from_secs(10);
                while !socket.exists() && Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                let line = run("redis (AOF)", Some(url), dir.path(), *rate, seconds).await;
                let _ = redis.kill();
                let _ = redis.wait();
                println!("{}", line?);
            }
        } else {
            println!("redis: {REDIS_SERVER} not installed; skipped");
        }
        anyhow::Ok(())
    })
}

fn sign(ts: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET_TOKEN.as_bytes()).expect("hmac");
    mac.update(format!("v0:{ts}:").as_bytes());
    mac.update(body);
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}

async fn run(
    store: &str,
    redis_url: Option<String>,
    dir: &Path,
    rate: u64,
    seconds: u64,
) -> anyhow::Result<String> {
    let args = ServeArgs {
        credentials: CredentialArgs {
            client_id: Some("bench_client".into()),
            client_secret: Some("bench_client_secret_0123456789".into()),
            secret_token: Some(SECRET_TOKEN.into()),
        },
        port: Some("0".into()),
        bind: Some("127.0.0.1".into()),
        session_secret: Some(zcc_rtms::util::random_hex(32)),
        token_encryption_key: Some(zcc_rtms::util::random_hex(32)),
        data_dir: Some(dir.join("data")),
        redis_url,
        ..ServeArgs::default()
    };
    let app = App::build(Config::from_args(&args)?).await?;
    let base = format!("http://{}/api/webhooks/zoom", app.local_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(2_000)
        .build()?;

    let total = rate * seconds;
    let period = Duration::from_secs_f64(1.0 / rate as f64);
    let start = tokio::time::Instant::now();
    let mut tasks = Vec::with_capacity(total as usize);
    for i in 0..total {
        tokio::time::sleep_until(start + period * i as u32).await;
        let http = http.clone();
        let url = base.clone();
        let now = zcc_rtms::time::now_secs();
        let body = serde_json::to_vec(&serde_json::json!({
            "event": "contact_center.engagement_started",
            "event_ts": now * 1000 + i as i64,
            "payload": {"account_id": "bench", "object": {"engagement_id": format!("B-{i}")}}
        }))?;
        let ts = now.to_string();
        let sig = sign(&ts, &body);
        tasks.push(tokio::spawn(async move {
            let sent = Instant::now();
            let ok = http
                .post(url)
                .header("x-zm-request-timestamp", ts)
                .header("x-zm-signature", sig)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .is_ok_and(|r| r.status() == 200);
            (sent.elapsed(), ok)
        }));
    }
    let mut latencies = Vec::with_capacity(tasks.len());
    let mut failed = 0;
    for t in tasks {
        let (d, ok) = t.await?;
        if !ok {
            failed += 1;
        }
        latencies.push(d);
    }
    let _ = stop.send(());
    server.await??;
    latencies.sort();
    let q = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    Ok(format!(
        "{store:12} {rate:5}/s x {seconds} s: p50 {:6.2} ms  p99 {:6.2} ms  max {:7.2} ms  ({} sent, {failed} not 200)",
        ms(q(0.50)),
        ms(q(0.99)),
        ms(*latencies.last().unwrap_or(&Duration::ZERO)),
        latencies.len()
    ))
}
