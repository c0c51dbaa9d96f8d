//! RTMS engine benchmark: what one app instance costs per audio frame.
//!
//! The app runs as its own process (the release binary), so its CPU time is
//! read alone from `/proc`; this process plays Zoom: it starts N streams
//! with signed `voice_rtms_started` webhooks and serves their RTMS sockets
//! (ws or wss), one L16 16 kHz mono channel per stream at 50 frames/s in
//! ~965-byte JSON text frames, keep-alives on signaling every 2 s, then ends
//! each stream with TERMINATED after a fixed number of frames. A page's view
//! (`/api/events`) is followed to time the "Received N audio chunks" lines.
//!
//!     cargo build --release && cargo run --release --example bench -- [--tls] [--record] [--feed-one] [--sink | --sink-audio] [--env NAME=VALUE]… [--seconds 10] [--app PATH] [--perf FILE] 500 1000 2000
//!
//! `--feed-one`: the page follows only the first engagement (status
//! latency is then of its lines alone), not every one, as an agent's page
//! in Zoom does; views of the others are then not built.
//! `--record` turns call recording on (`RECORDINGS_DIR` in the app's temp
//! dir; the CPU column then includes the writer) and prints, under each
//! row, what was written. `--sink` starts a `redis-server` of its own (unix
//! socket, no persistence) and points the downstream feed at it
//! (`SINK_REDIS_URL`); `--sink-audio` publishes audio too (`SINK_AUDIO`);
//! under each row it prints what was published and the bytes Redis took in.
//! `--env` passes any other setting to the app. Prints one table row per
//! stream count. Nothing is asserted: it measures.

use std::collections::HashMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use futures_util::{SinkExt as _, StreamExt as _};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio_tungstenite::tungstenite::Message;

const CLIENT_ID: &str = "bench_client";
const CLIENT_SECRET: &str = "bench_client_secret_0123456789";
const SECRET_TOKEN: &str = "bench_secret_token";
/// The operator token the bench reads the live feed and the stats with.
const ADMIN_TOKEN: &str = "bench_operator_token_0123456789abcdef";
/// Placeholder for the frame's timestamp (13 digits, as Unix ms now).
const TS_SLOT: &str = "1000000000000";
const FRAME_INTERVAL: Duration = Duration::from_millis(20);
const KEEP_ALIVE_EVERY: Duration = Duration::from_secs(2);
/// What the app publishes a line for.
const REPORT_EVERY: u64 = 50;

struct Args {
    app: PathBuf,
    tls: bool,
    /// Record calls (`RECORDINGS_DIR`).
    record: bool,
    /// The page follows one engagement (the first) instead of all of them.
    feed_one: bool,
    seconds: u64,
    /// Record a CPU profile of the app (`perf record -g`) into this file.
    perf: Option<PathBuf>,
    /// The downstream feed: None = off, Some(false) = events, Some(true) =
    /// events and audio.
    sink: Option<bool>,
    /// More settings for the app.
    env: Vec<(String, String)>,
    counts: Vec<usize>,
}

fn parse_args() -> anyhow::Result<Args> {
    let exe = std::env::current_exe()?;
    // target/release/examples/bench → target/release/zcc-rtms
    let default_app = exe
        .parent()
        .and_then(|p| p.parent())
        .map(|p| p.join("zcc-rtms"))
        .unwrap_or_default();
    let mut args = Args {
        app: default_app,
        tls: false,
        record: false,
        feed_one: false,
        seconds: 10,
        perf: None,
        sink: None,
        env: Vec::new(),
        counts: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--tls" => args.tls = true,
            "--record" => args.record = true,
            "--feed-one" => args.feed_one = true,
            "--app" => args.app = it.next().unwrap_or_default().into(),
            "--seconds" => args.seconds = it.next().unwrap_or_default().parse()?,
            "--perf" => args.perf = it.next().map(PathBuf::from),
            "--sink" => args.sink = Some(false),
            "--sink-audio" => args.sink = Some(true),
            "--env" => {
                let pair = it.next().unwrap_or_default();
                let (name, value) = pair
                    .split_once('=')
                    .ok_or_else(|| anyhow::anyhow!("--env NAME=VALUE, not {pair:?}"))?;
                args.env.push((name.to_owned(), value.to_owned()));
            }
            n => args.counts.push(n.parse()?),
        }
    }
    if args.counts.is_empty() {
        args.counts = vec![500, 1000, 2000];
    }
    Ok(args)
}

fn main() -> anyhow::Result<()> {
    zcc_rtms::tls::install_crypto_provider();
    let args = parse_args()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    println!(
        "| transport | streams | frames sent | frames counted | app CPU/frame (user+sys) | user | sys | RSS/stream | status p50 | status p99 | statuses lost | keep-alive p50 | keep-alive p99 | stand-in cores | load avg |"
    );
    println!(
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    );
    rt.block_on(async {
        for &n in &args.counts {
            let row = run_once(&args, n).await?;
            println!("{row}");
            std::io::stdout().flush()?;
        }
        anyhow::Ok(())
    })
}

/// What the stand-in Zoom shares between its sockets and the report.
struct Zoom {
    frames_per_stream: u64,
    /// An audio frame; its timestamp is set when sent.
    frame: String,
    media_url: String,
    /// Media sockets handshaken, streams that sent all their frames.
    ready: AtomicUsize,
    done: AtomicUsize,
    sent: AtomicU64,
    /// When streaming starts (set once every stream is ready).
    start: watch::Receiver<Option<tokio::time::Instant>>,
    /// Per engagement: when its every 50th frame was sent.
    marks: Mutex<HashMap<String, Marks>>,
    /// Per engagement: wakes its signaling socket once the frames are sent.
    finished: Mutex<HashMap<String, Arc<Notify>>>,
    keep_alive_rtt: Mutex<Vec<Duration>>,
}

type Marks = Arc<Mutex<Vec<Instant>>>;

impl Zoom {
    fn finished(&self, engagement: &str) -> Arc<Notify> {
        self.finished
            .lock()
            .expect("lock")
            .entry(engagement.to_owned())
            .or_default()
            .clone()
    }
}

/// The frame stamped with the time it is sent (Zoom's clock is ours here:
/// late timestamps would be taken for a replay of buffered audio).
fn stamped(template: &str) -> Message {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
        .to_string();
    Message::text(template.replacen(TS_SLOT, &now, 1))
}

fn audio_frame() -> String {
    // 640 bytes of a quiet tone: 20 ms of L16 16 kHz mono.
    let pcm: Vec<u8> = (0..320i32)
        .flat_map(|i| (((i % 40) - 20) as i16 * 300).to_le_bytes())
        .collect();
    let data = base64::engine::general_purpose::STANDARD.encode(pcm);
    json!({
        "msg_type": 14,
        "content": {
            "user_id": 0,
            "user_name": "Caller",
            "data": data,
            "timestamp": TS_SLOT.parse::<u64>().unwrap_or(0),
            "channel_id": "4c8f0a2e-caller"
        }
    })
    .to_string()
}

async fn serve<S>(zoom: Arc<Zoom>, io: S) -> anyhow::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut ws = tokio_tungstenite::accept_async(io).await?;
    let Some(Ok(first)) = ws.next().await else {
        return Ok(());
    };
    let hello: Value = serde_json::from_slice(&first.into_data())?;
    let engagement = hello["engagement_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    match hello["msg_type"].as_u64() {
        Some(1) => signaling(zoom, ws, engagement).await,
        Some(3) => media(zoom, ws, engagement).await,
        _ => Ok(()),
    }
}

type Ws<S> = tokio_tungstenite::WebSocketStream<S>;

async fn signaling<S: AsyncRead + AsyncWrite + Unpin>(
    zoom: Arc<Zoom>,
    mut ws: Ws<S>,
    engagement: String,
) -> anyhow::Result<()> {
    ws.send(Message::text(
        json!({"msg_type": 2, "protocol_version": 1, "status_code": 0,
               "media_server": {"server_urls": {"audio": zoom.media_url}}})
        .to_string(),
    ))
    .await?;
    let finished = zoom.finished(&engagement);
    let offset = Duration::from_millis(rand::random::<u64>() % 2000);
    let mut ka = tokio::time::interval_at(tokio::time::Instant::now() + offset, KEEP_ALIVE_EVERY);
    let mut pending: HashMap<i64, Instant> = HashMap::new();
    let mut seq = 0i64;
    loop {
        tokio::select! {
            _ = finished.notified() => break,
            _ = ka.tick() => {
                seq += 1;
                pending.insert(seq, Instant::now());
                ws.send(Message::text(json!({"msg_type": 12, "timestamp": seq, "sequence": seq}).to_string())).await?;
            }
            m = ws.next() => match m {
                Some(Ok(m)) if m.is_text() => {
                    let v: Value = serde_json::from_slice(&m.into_data())?;
                    if v["msg_type"] == 13
                        && let Some(sent) = v["sequence"].as_i64().and_then(|s| pending.remove(&s))
                    {
                        zoom.keep_alive_rtt.lock().expect("lock").push(sent.elapsed());
                    }
                }
                Some(Ok(_)) => {}
                _ => return Ok(()),
            }
        }
    }
    // The stream is over: say so, then wait for the app to close.
    ws.send(Message::text(
        json!({"msg_type": 8, "state": 4, "reason": 21, "timestamp": 0}).to_string(),
    ))
    .await?;
    while let Some(Ok(_)) = ws.next().await {}
    Ok(())
}

async fn media<S: AsyncRead + AsyncWrite + Unpin>(
    zoom: Arc<Zoom>,
    mut ws: Ws<S>,
    engagement: String,
) -> anyhow::Result<()> {
    ws.send(Message::text(
        json!({"msg_type": 4, "protocol_version": 1, "status_code": 0, "payload_encrypted": false})
            .to_string(),
    ))
    .await?;
    zoom.ready.fetch_add(1, Ordering::Relaxed);
    let mut start = zoom.start.clone();
    let at = loop {
        if let Some(at) = *start.borrow_and_update() {
            break at;
        }
        start.changed().await?;
    };
    // Streams are spread over the 20 ms interval, as calls are.
    let phase = Duration::from_micros(rand::random::<u64>() % 20_000);
    let mut tick = tokio::time::interval_at(at + phase, FRAME_INTERVAL);
    let marks = Marks::default();
    zoom.marks
        .lock()
        .expect("lock")
        .insert(engagement.clone(), marks.clone());
    for n in 1..=zoom.frames_per_stream {
        tick.tick().await;
        if n % REPORT_EVERY == 0 {
            marks.lock().expect("lock").push(Instant::now());
        }
        ws.send(stamped(&zoom.frame)).await?;
    }
    zoom.sent
        .fetch_add(zoom.frames_per_stream, Ordering::Relaxed);
    zoom.done.fetch_add(1, Ordering::Relaxed);
    zoom.finished(&engagement).notify_one();
    // Read until the app closes (its close is answered by the library).
    while let Some(Ok(_)) = ws.next().await {}
    Ok(())
}

/// (user, system) CPU seconds of a process.
fn cpu_of(pid: u32) -> (f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<f64> = after
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(0.0))
        .collect();
    let tick = 100.0;
    (
        f.get(11).copied().unwrap_or(0.0) / tick,
        f.get(12).copied().unwrap_or(0.0) / tick,
    )
}

fn rss_kb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0)
}

fn load_avg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .next()
        .unwrap_or("?")
        .to_owned()
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn percentile(v: &mut [Duration], p: f64) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    v.sort();
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn sign(body: &[u8]) -> (String, String) {
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
        .to_string();
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET_TOKEN.as_bytes()).expect("hmac key");
    mac.update(format!("v0:{ts}:").as_bytes());
    mac.update(body);
    (
        ts,
        format!("v0={}", hex::encode(mac.finalize().into_bytes())),
    )
}

struct App {
    child: Child,
    base: String,
    _data: tempfile::TempDir,
}

impl Drop for App {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `redis-server` for the downstream feed, on a unix socket in its own
/// temp dir; killed (by PID) when dropped.
struct SinkRedis {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl SinkRedis {
    fn start() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let socket = dir.path().join("redis.sock");
        let child = Command::new("redis-server")
            .args(["--port", "0", "--unixsocket"])
            .arg(&socket)
            .args(["--save", "", "--appendonly", "no", "--dir"])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            anyhow::ensure!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Self {
            child,
            url: format!("redis+unix://{}", socket.display()),
            _dir: dir,
        })
    }

    /// Bytes Redis has read from its clients so far.
    async fn bytes_in(&self) -> anyhow::Result<u64> {
        let client = redis::Client::open(self.url.as_str())?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        let info: String = redis::cmd("INFO")
            .arg("stats")
            .query_async(&mut conn)
            .await?;
        info.lines()
            .find_map(|l| l.strip_prefix("total_net_input_bytes:"))
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| anyhow::anyhow!("no total_net_input_bytes in INFO"))
    }
}

impl Drop for SinkRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_app(
    args: &Args,
    n: usize,
    ca: Option<&std::path::Path>,
    sink: Option<&SinkRedis>,
) -> anyhow::Result<App> {
    let data = tempfile::tempdir()?;
    let port = free_port()?;
    let mut cmd = Command::new(&args.app);
    cmd.env_clear()
        .env("ZOOM_APP_CLIENT_ID", CLIENT_ID)
        .env("ZOOM_APP_CLIENT_SECRET", CLIENT_SECRET)
        .env("ZOOM_SECRET_TOKEN", SECRET_TOKEN)
        .env("BACKEND_PORT", port.to_string())
        .env("BIND_ADDR", "127.0.0.1")
        .env("SESSION_SECRET", "s".repeat(32))
        .env("TOKEN_ENCRYPTION_KEY", "ab".repeat(32))
        .env("DATA_DIR", data.path())
        .env("RTMS_MAX_STREAMS", (n * 2).to_string())
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "warn")
        .env("ADMIN_TOKEN", ADMIN_TOKEN)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(ca) = ca {
        cmd.env("ZOOM_CA_CERT", ca);
    }
    if args.record {
        cmd.env("RECORDINGS_DIR", data.path().join("recordings"));
    }
    if let Some(sink) = sink {
        cmd.env("SINK_REDIS_URL", &sink.url)
            .env("SINK_AUDIO", args.sink.unwrap_or(false).to_string());
    }
    cmd.envs(args.env.iter().map(|(k, v)| (k, v)));
    Ok(App {
        child: cmd.spawn()?,
        base: format!("http://127.0.0.1:{port}"),
        _data: data,
    })
}

/// Latencies of the "Received N audio chunks" lines on the live feed.
#[derive(Default)]
struct Feed {
    latencies: Vec<Duration>,
}

/// The "Received N audio chunks" lines an engagement's history holds.
async fn chunk_lines(http: &reqwest::Client, base: &str, engagement: &str) -> anyhow::Result<u64> {
    let v: Value = http
        .get(format!(
            "{base}/api/webhooks/events?engagement_id={engagement}&limit=100"
        ))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(v["events"]
        .as_array()
        .map(|e| {
            e.iter()
                .filter(|l| {
                    l["message"]
                        .as_str()
                        .is_some_and(|m| m.starts_with("Received ") && m.ends_with(" audio chunks"))
                })
                .count() as u64
        })
        .unwrap_or(0))
}

async fn stats(http: &reqwest::Client, base: &str) -> anyhow::Result<Value> {
    Ok(http
        .get(format!("{base}/api/stats"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?)
}

/// Frames the recorder wrote or dropped (from `/metrics`).
async fn recorded_frames(http: &reqwest::Client, base: &str) -> anyhow::Result<u64> {
    metric_sum(
        http,
        base,
        &[
            "zcc_rtms_recording_frames_written_total ",
            "zcc_rtms_recording_frames_dropped_total ",
        ],
    )
    .await
}

/// The sum of the `/metrics` samples whose line starts with one of `lines`.
async fn metric_sum(http: &reqwest::Client, base: &str, lines: &[&str]) -> anyhow::Result<u64> {
    let text = http
        .get(format!("{base}/metrics"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    Ok(text
        .lines()
        .filter(|l| lines.iter().any(|p| l.starts_with(p)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64)
}

/// (files, bytes) under a directory, recursively.
fn dir_size(dir: &std::path::Path) -> (u64, u64) {
    let mut total = (0, 0);
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        match e.metadata() {
            Ok(m) if m.is_dir() => {
                let (f, b) = dir_size(&e.path());
                total = (total.0 + f, total.1 + b);
            }
            Ok(m) => total = (total.0 + 1, total.1 + m.len()),
            Err(_) => {}
        }
    }
    total
}

async fn follow(
    base: String,
    zoom: Arc<Zoom>,
    feed: Arc<Mutex<Feed>>,
    one: bool,
) -> anyhow::Result<()> {
    let query = if one {
        format!("?engagement_id={}", engagement_name(0))
    } else {
        String::new()
    };
    let resp = reqwest::Client::new()
        .get(format!("{base}/api/events{query}"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await?
        .error_for_status()?;
    let mut body = resp.bytes_stream();
    let mut buf = Vec::new();
    while let Some(chunk) = body.next().await {
        buf.extend_from_slice(&chunk?);
        let now = Instant::now();
        // Every complete event in the buffer, then drop them at once.
        let mut done = 0;
        while let Some(end) = buf[done..].windows(2).position(|w| w == b"\n\n") {
            let event = &buf[done..done + end];
            done += end + 2;
            if !event.starts_with(b"event: status") {
                continue;
            }
            let text = String::from_utf8_lossy(event);
            let Some(data) = text.lines().find_map(|l| l.strip_prefix("data:")) else {
                continue;
            };
            let v: Value = serde_json::from_str(data.trim())?;
            let msg = v["message"].as_str().unwrap_or_default();
            let eng = v["engagement_id"].as_str().unwrap_or_default();
            let Some(n) = msg
                .strip_prefix("Received ")
                .and_then(|r| r.strip_suffix(" audio chunks"))
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            let marks = zoom.marks.lock().expect("lock").get(eng).cloned();
            let sent = marks.and_then(|m| {
                let i = (n / REPORT_EVERY).checked_sub(1)? as usize;
                m.lock().expect("lock").get(i).copied()
            });
            if let Some(sent) = sent {
                feed.lock()
                    .expect("lock")
                    .latencies
                    .push(now.saturating_duration_since(sent));
            }
        }
        buf.drain(..done);
    }
    Ok(())
}

fn engagement_name(i: usize) -> String {
    format!("bench-engagement-{i:05}")
}

async fn wait_until(
    what: &str,
    limit: Duration,
    mut done: impl FnMut() -> bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    while !done() {
        anyhow::ensure!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

async fn run_once(args: &Args, n: usize) -> anyhow::Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr: SocketAddr = listener.local_addr()?;
    let certs = if args.tls {
        Some(zoom_sim::make_certs(addr.ip())?)
    } else {
        None
    };
    let scheme = if args.tls { "wss" } else { "ws" };
    let (start_tx, start_rx) = watch::channel(None);
    let frames_per_stream = args.seconds * 50;
    let zoom = Arc::new(Zoom {
        frames_per_stream,
        frame: audio_frame(),
        media_url: format!("{scheme}://{addr}/media"),
        ready: AtomicUsize::new(0),
        done: AtomicUsize::new(0),
        sent: AtomicU64::new(0),
        start: start_rx,
        marks: Mutex::new(HashMap::new()),
        finished: Mutex::new(HashMap::new()),
        keep_alive_rtt: Mutex::new(Vec::new()),
    });
    let acceptor = certs
        .as_ref()
        .map(|c| tokio_rustls::TlsAcceptor::from(c.server.clone()));
    let server = {
        let zoom = zoom.clone();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let _ = tcp.set_nodelay(true);
                let (zoom, acceptor) = (zoom.clone(), acceptor.clone());
                tokio::spawn(async move {
                    let _ = match acceptor {
                        Some(a) => match a.accept(tcp).await {
                            Ok(tls) => serve(zoom, tls).await,
                            Err(_) => Ok(()),
                        },
                        None => serve(zoom, tcp).await,
                    };
                });
            }
        })
    };

    let sink = args.sink.map(|_| SinkRedis::start()).transpose()?;
    let app = spawn_app(
        args,
        n,
        certs.as_ref().map(|c| c.ca_path.as_path()),
        sink.as_ref(),
    )?;
    let pid = app.child.id();
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while http
        .get(format!("{}/health", app.base))
        .send()
        .await
        .is_err()
    {
        anyhow::ensure!(Instant::now() < deadline, "the app did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_idle = rss_kb(pid);
    let feed = Arc::new(Mutex::new(Feed::default()));
    {
        let (base, zoom, feed) = (app.base.clone(), zoom.clone(), feed.clone());
        let one = args.feed_one;
        tokio::spawn(async move {
            if let Err(e) = follow(base, zoom, feed, one).await {
                eprintln!("the live feed ended: {e}");
            }
        });
    }

    let signaling_url = format!("{scheme}://{addr}/signaling");
    let hooks = futures_util::stream::iter(0..n)
        .map(|i| {
            let (http, base, url) = (http.clone(), app.base.clone(), signaling_url.clone());
            async move {
                let body = serde_json::to_vec(&json!({
                    "event": "contact_center.voice_rtms_started",
                    "event_ts": 1_764_000_000_000u64 + i as u64,
                    "payload": {
                        "engagement_id": engagement_name(i),
                        "rtms_stream_id": format!("bench-stream-{i:05}"),
                        "server_urls": url,
                    }
                }))?;
                let (ts, sig) = sign(&body);
                http.post(format!("{base}/api/webhooks/zoom"))
                    .header("x-zm-request-timestamp", ts)
                    .header("x-zm-signature", sig)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await?
                    .error_for_status()?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    for h in hooks {
        h?;
    }
    wait_until("every stream connected", Duration::from_secs(180), || {
        zoom.ready.load(Ordering::Relaxed) >= n
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(1)).await;

    let (u0, s0) = cpu_of(pid);
    let (gu0, gs0) = cpu_of(std::process::id());
    let sink_start = match &sink {
        Some(r) => Some((r.bytes_in().await?, cpu_of(r.child.id()))),
        None => None,
    };
    let t0 = Instant::now();
    let _ = start_tx.send(Some(
        tokio::time::Instant::now() + Duration::from_millis(100),
    ));
    let profile = match &args.perf {
        Some(out) => {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let out = out.with_extension(format!("{n}.data"));
            let secs = args.seconds.saturating_sub(3).max(1).to_string();
            let pid = pid.to_string();
            Some(
                Command::new("perf")
                    .args(["record", "-e", "cpu-clock", "-F", "999", "-g", "-o"])
                    .arg(&out)
                    .args(["-p", &pid, "--", "sleep", &secs])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()?,
            )
        }
        None => None,
    };
    tokio::time::sleep(Duration::from_secs(args.seconds) / 2).await;
    let rss_busy = rss_kb(pid);
    let load = load_avg();
    wait_until(
        "every stream sent",
        Duration::from_secs(args.seconds * 3 + 30),
        || zoom.done.load(Ordering::Relaxed) >= n,
    )
    .await?;
    let ended = Instant::now() + Duration::from_secs(30);
    while stats(&http, &app.base).await?["streams_active"].as_u64() != Some(0) {
        anyhow::ensure!(Instant::now() < ended, "the sessions did not end");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if args.record {
        // The writer has written (or dropped) every frame.
        let counted = stats(&http, &app.base).await?["frames"]
            .as_u64()
            .unwrap_or(0);
        while recorded_frames(&http, &app.base).await? < counted {
            anyhow::ensure!(Instant::now() < ended, "the recordings were not written");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let published = [
        "zcc_rtms_sink_published_total{kind=\"audio\"} ",
        "zcc_rtms_sink_dropped_total{reason=\"queue_full\"} ",
        "zcc_rtms_sink_dropped_total{reason=\"redis\"} ",
    ];
    if args.sink == Some(true) {
        // The feed has published (or dropped) every frame.
        let counted = stats(&http, &app.base).await?["frames"]
            .as_u64()
            .unwrap_or(0);
        while metric_sum(&http, &app.base, &published).await? < counted {
            anyhow::ensure!(Instant::now() < ended, "the feed did not publish");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let (u1, s1) = cpu_of(pid);
    let sink_report = match (&sink, sink_start) {
        (Some(r), Some((b0, (ru0, rs0)))) => {
            // The last state changes may still be on their way.
            tokio::time::sleep(Duration::from_secs(1)).await;
            let bytes = r.bytes_in().await? - b0;
            let (ru1, rs1) = cpu_of(r.child.id());
            let (h, b) = (&http, app.base.as_str());
            let events = ["zcc_rtms_sink_published_total{kind=\"events\"} "];
            let events = metric_sum(h, b, &events).await?;
            let frames = metric_sum(h, b, &published[..1]).await?;
            let mut dropped = String::new();
            for reason in ["queue_full", "lagged", "redis"] {
                let line = format!("zcc_rtms_sink_dropped_total{{reason=\"{reason}\"}} ");
                let n = metric_sum(h, b, &[line.as_str()]).await?;
                dropped.push_str(&format!("{n} {reason} "));
            }
            Some((bytes, ru1 - ru0 + rs1 - rs0, events, frames, dropped))
        }
        _ => None,
    };
    if let Some(mut p) = profile {
        let _ = p.wait();
    }
    let (gu1, gs1) = cpu_of(std::process::id());
    let window = t0.elapsed().as_secs_f64();
    let stats = stats(&http, &app.base).await?;
    let expected = frames_per_stream / REPORT_EVERY;
    let lost: u64 = futures_util::stream::iter(0..n)
        .map(|i| {
            let (http, base) = (http.clone(), app.base.clone());
            async move {
                let got = chunk_lines(&http, &base, &engagement_name(i)).await?;
                anyhow::Ok(expected.saturating_sub(got))
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .sum::<anyhow::Result<u64>>()?;
    let recorded = args
        .record
        .then(|| dir_size(&app._data.path().join("recordings")));
    drop(app);
    server.abort();

    let sent = zoom.sent.load(Ordering::Relaxed);
    let counted = stats["frames"].as_u64().unwrap_or(0);
    let per_frame = |secs: f64| secs * 1e6 / sent.max(1) as f64;
    let (user, sys) = (per_frame(u1 - u0), per_frame(s1 - s0));
    let mut f = std::mem::take(&mut *feed.lock().expect("lock"));
    let mut ka = std::mem::take(&mut *zoom.keep_alive_rtt.lock().expect("lock"));
    // Cores the stand-in Zoom (this process) used meanwhile.
    let standin = (gu1 - gu0 + gs1 - gs0) / window;
    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1e3);
    if let Some((bytes, redis_cpu, events, frames, dropped)) = sink_report {
        let audio_secs = frames_per_stream as f64 * 0.02;
        eprintln!(
            "sink ({n} streams, {}): {events} events and {frames} frames published, dropped: {dropped}; \
             Redis took in {bytes} bytes, {:.0} bytes per stream-second; redis-server CPU {:.2} µs per frame sent",
            if args.sink == Some(true) {
                "events and audio"
            } else {
                "events"
            },
            bytes as f64 / n as f64 / audio_secs,
            redis_cpu * 1e6 / sent.max(1) as f64,
        );
    }
    if let Some((files, bytes)) = recorded {
        // Each stream sent `frames_per_stream` frames of 20 ms.
        let audio_secs = frames_per_stream as f64 * 0.02;
        eprintln!(
            "recorded ({n} streams): {files} files, {bytes} bytes, {:.0} bytes per stream-second of audio",
            bytes as f64 / n as f64 / audio_secs
        );
    }
    Ok(format!(
        "| {scheme} | {n} | {sent} | {counted} | {:.2} µs | {user:.2} µs | {sys:.2} µs | {:.1} KB | {} | {} | {lost} | {} | {} | {standin:.2} | {load} |",
        user + sys,
        (rss_busy - rss_idle) / n as f64,
        ms(percentile(&mut f.latencies, 0.5)),
        ms(percentile(&mut f.latencies, 0.99)),
        ms(percentile(&mut ka, 0.5)),
        ms(percentile(&mut ka, 0.99)),
    ))
}
