//! The simulator alone, for its own tests: a running simulator (`TestSim`),
//! a tiny webhook receiver standing in for the app, a raw RTMS WebSocket
//! client (connect, handshake, join a stream). Never the app.
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;
use zoom_sim::{SimConfig, SimHandle, Simulator};

/// Upper bound for any single wait in these tests.
pub const WAIT: Duration = Duration::from_secs(10);

pub struct TestSim {
    pub handle: SimHandle,
    pub cfg: SimConfig,
    pub base_url: String,
    pub rtms_url: String,
    pub ca_cert: Option<std::path::PathBuf>,
    stop: CancellationToken,
    done: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl TestSim {
    pub async fn start(edit: impl FnOnce(&mut SimConfig)) -> TestSim {
        zcc_rtms::tls::install_crypto_provider();
        let mut cfg = SimConfig::generated();
        cfg.webhook_retry = vec![Duration::from_millis(50), Duration::from_millis(50)];
        cfg.webhook_timeout = Duration::from_secs(2);
        edit(&mut cfg);
        let sim = Simulator::build(cfg.clone())
            .await
            .expect("simulator builds");
        let handle = sim.handle();
        let base_url = sim.base_url().as_str().trim_end_matches('/').to_string();
        let rtms_url = sim.rtms_url().to_string();
        let ca_cert = sim.ca_cert_path().map(Into::into);
        let stop = CancellationToken::new();
        let s = stop.clone();
        let done = tokio::spawn(sim.run_until_stopped(async move { s.cancelled().await }));
        TestSim {
            handle,
            cfg,
            base_url,
            rtms_url,
            ca_cert,
            stop,
            done: Some(done),
        }
    }

    pub fn http(&self) -> reqwest::Client {
        let tls = zcc_rtms::tls::client_config(self.ca_cert.as_deref()).expect("tls config");
        reqwest::Client::builder()
            .use_preconfigured_tls((*tls).clone())
            .redirect(reqwest::redirect::Policy::none())
            .timeout(WAIT)
            .build()
            .expect("client")
    }

    pub fn signature(&self, engagement_id: &str, stream_id: &str) -> String {
        zoom_sim::sign::rtms_signature(
            &self.cfg.client_id,
            self.cfg.client_secret.expose(),
            engagement_id,
            stream_id,
        )
    }

    pub async fn stop(mut self) {
        self.stop.cancel();
        if let Some(done) = self.done.take() {
            let r = tokio::time::timeout(WAIT, done)
                .await
                .expect("simulator stops in time");
            r.expect("join").expect("simulator ran cleanly");
        }
    }
}

impl Drop for TestSim {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// One webhook as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("webhook body is JSON")
    }
    pub fn event(&self) -> String {
        self.json()["event"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

/// A webhook receiver standing in for the app; answers `fail_first` requests with 500.
pub struct Receiver {
    pub url: url::Url,
    pub rx: mpsc::UnboundedReceiver<Received>,
    stop: CancellationToken,
}

impl Receiver {
    pub async fn start(fail_first: usize, secret_token: String) -> Receiver {
        let (tx, rx) = mpsc::unbounded_channel();
        let failures = Arc::new(Mutex::new(fail_first));
        let app = axum::Router::new().route(
            "/api/webhooks/zoom",
            axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                let tx = tx.clone();
                let failures = failures.clone();
                let secret = secret_token.clone();
                async move {
                    let _ = tx.send(Received {
                        headers: headers.clone(),
                        body: body.clone(),
                    });
                    {
                        let mut f = failures.lock().expect("lock");
                        if *f > 0 {
                            *f -= 1;
                            return (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(json!({})))
                                .into_response();
                        }
                    }
                    let v: Value = serde_json::from_slice(&body).unwrap_or_default();
                    if v["event"] == "endpoint.url_validation" {
                        let plain = v["payload"]["plainToken"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string();
                        let enc = zcc_rtms::webhook::url_validation_token(&secret, &plain);
                        return axum::Json(json!({"plainToken": plain, "encryptedToken": enc}))
                            .into_response();
                    }
                    axum::Json(json!({"status": "ok"})).into_response()
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let stop = CancellationToken::new();
        let s = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move { s.cancelled().await })
                .await;
        });
        Receiver {
            url: url::Url::parse(&format!("http://{addr}")).expect("url"),
            rx,
            stop,
        }
    }

    pub async fn next(&mut self) -> Received {
        tokio::time::timeout(WAIT, self.rx.recv())
            .await
            .expect("a webhook within the wait")
            .expect("receiver open")
    }

    /// The next webhook with this event name (others are skipped).
    pub async fn next_event(&mut self, event: &str) -> Received {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let r = tokio::time::timeout_at(deadline, self.rx.recv())
                .await
                .unwrap_or_else(|_| panic!("no {event} webhook within the wait"))
                .expect("receiver open");
            if r.event() == event {
                return r;
            }
        }
    }
}

use axum::response::IntoResponse as _;

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub async fn connect(url: &str) -> Ws {
    let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
        .await
        .expect("connect in time")
        .expect("connects");
    ws
}

pub async fn connect_tls(url: &str, ca: &std::path::Path) -> anyhow::Result<Ws> {
    let tls = zcc_rtms::tls::client_config(Some(ca))?;
    let (ws, _) = tokio::time::timeout(
        WAIT,
        tokio_tungstenite::connect_async_tls_with_config(
            url,
            None,
            false,
            Some(tokio_tungstenite::Connector::Rustls(tls)),
        ),
    )
    .await
    .context("connect in time")??;
    Ok(ws)
}

pub async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::Text(v.to_string().into()))
        .await
        .expect("send");
}

/// The next JSON message (text or binary), skipping pings; None on close.
pub async fn recv_within(ws: &mut Ws, wait: Duration) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                return Some(serde_json::from_str(&t).expect("server sends JSON"));
            }
            Ok(Some(Ok(Message::Binary(b)))) => {
                return Some(serde_json::from_slice(&b).expect("server sends JSON"));
            }
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)))) => continue,
            _ => return None,
        }
    }
}

/// The next message of a type, skipping others (keep-alives are answered).
pub async fn recv_type(ws: &mut Ws, msg_type: i64) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let m = recv_within(ws, left)
            .await
            .unwrap_or_else(|| panic!("no msg_type {msg_type} within the wait"));
        if m["msg_type"] == msg_type {
            return m;
        }
        if m["msg_type"] == 12 {
            send(
                ws,
                json!({"msg_type": 13, "timestamp": m["timestamp"], "sequence": m["sequence"]}),
            )
            .await;
        }
    }
}

/// A joined stream: signaling and one media socket, ready acked.
pub struct Joined {
    pub signaling: Ws,
    pub media: Ws,
    pub engagement_id: String,
    pub stream_id: String,
}

pub async fn handshake_signaling(
    sim: &TestSim,
    engagement_id: &str,
    stream_id: &str,
) -> (Ws, Value) {
    handshake_signaling_with(sim, engagement_id, stream_id, json!({})).await
}

/// The signaling handshake with `extra` fields (e.g. `buffer_data`).
pub async fn handshake_signaling_with(
    sim: &TestSim,
    engagement_id: &str,
    stream_id: &str,
    extra: Value,
) -> (Ws, Value) {
    let mut sig = connect(&sim.rtms_url).await;
    let mut hs = json!({
        "msg_type": 1, "protocol_version": 1, "sequence": 1,
        "engagement_id": engagement_id, "rtms_stream_id": stream_id,
        "signature": sim.signature(engagement_id, stream_id),
    });
    if let (Some(hs), Some(extra)) = (hs.as_object_mut(), extra.as_object()) {
        hs.extend(extra.clone());
    }
    send(&mut sig, hs).await;
    let resp = recv_type(&mut sig, 2).await;
    (sig, resp)
}

pub async fn join(sim: &TestSim, media_type: i64, audio: Value) -> Joined {
    let engagement_id = sim.handle.create_engagement().await.expect("engagement");
    let stream_id = sim.handle.start_rtms(&engagement_id).await.expect("stream");
    join_stream(sim, engagement_id, stream_id, media_type, audio, json!({})).await
}

/// Join a started stream: signaling (with `extra` handshake fields), one
/// media socket, CLIENT_READY_ACK.
pub async fn join_stream(
    sim: &TestSim,
    engagement_id: String,
    stream_id: String,
    media_type: i64,
    audio: Value,
    extra: Value,
) -> Joined {
    let (mut signaling, handshake) =
        handshake_signaling_with(sim, &engagement_id, &stream_id, extra).await;
    assert_eq!(handshake["status_code"], 0, "{handshake}");
    let url = handshake["media_server"]["server_urls"]["audio"]
        .as_str()
        .expect("audio url")
        .to_string();
    let mut media = connect(&url).await;
    send(
        &mut media,
        json!({
            "msg_type": 3, "protocol_version": 1, "sequence": 2,
            "engagement_id": engagement_id, "rtms_stream_id": stream_id,
            "signature": sim.signature(&engagement_id, &stream_id),
            "media_type": media_type,
            "payload_encryption": false,
            "media_params": {"audio": audio},
        }),
    )
    .await;
    let media_handshake = recv_type(&mut media, 4).await;
    assert_eq!(media_handshake["status_code"], 0, "{media_handshake}");
    send(
        &mut signaling,
        json!({"msg_type": 7, "rtms_stream_id": stream_id}),
    )
    .await;
    Joined {
        signaling,
        media,
        engagement_id,
        stream_id,
    }
}

pub fn l16_default() -> Value {
    json!({"content_type": 2, "sample_rate": 1, "channel": 1, "codec": 1, "data_opt": 1, "send_rate": 20})
}

/// [`super::eventually`] for a plain condition: poll `check` until
/// it holds, within that helper's bounded wait.
pub async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    super::eventually(what, || std::future::ready(check().then_some(()))).await
}
