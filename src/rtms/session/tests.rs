//! The session loop on in-memory sockets, under paused time: the test plays
//! Zoom's servers message by message, and the clock only moves when every
//! task waits, so backoff delays and windows are checked to the millisecond.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures_util::{Sink, Stream};
use serde_json::{Value, json};
use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};
use tokio::task::JoinHandle;

use super::stream::to_next_tick;
use super::*;
use crate::config::RtmsConfig;
use crate::rtms::EngineCounters;
use crate::rtms::reconnect::{DUPLICATE_BACKOFF, MEDIA_BACKOFF, SIGNALING_WINDOW};
use crate::rtms::transport::{CLOSE_AWAY, CLOSE_NORMAL};
use crate::secret::Secret;
use crate::status::StatusBus;

const SIG_URL: &str = "fake://sig";
const AUDIO_URL: &str = "fake://audio";

#[derive(Debug)]
enum TMsg {
    Text(String),
    Close(u16),
}

impl WsMessage for TMsg {
    fn text(text: String) -> Self {
        TMsg::Text(text)
    }
    fn close(code: u16) -> Self {
        TMsg::Close(code)
    }
    fn payload(&self) -> Option<&[u8]> {
        match self {
            TMsg::Text(t) => Some(t.as_bytes()),
            TMsg::Close(_) => None,
        }
    }
    fn close_text(&self) -> Option<String> {
        match self {
            TMsg::Close(code) => Some(code.to_string()),
            TMsg::Text(_) => None,
        }
    }
}

#[derive(Debug)]
struct Gone;

impl std::fmt::Display for Gone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("peer gone")
    }
}

/// The client's end of an in-memory socket.
struct FakeSocket {
    rx: UnboundedReceiver<TMsg>,
    tx: UnboundedSender<TMsg>,
}

impl Stream for FakeSocket {
    type Item = Result<TMsg, Gone>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx).map(|m| m.map(Ok))
    }
}

impl Sink<TMsg> for FakeSocket {
    type Error = Gone;
    fn poll_ready(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Gone>> {
        Poll::Ready(Ok(()))
    }
    fn start_send(self: Pin<&mut Self>, item: TMsg) -> Result<(), Gone> {
        self.tx.send(item).map_err(|_| Gone)
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Gone>> {
        Poll::Ready(Ok(()))
    }
    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Gone>> {
        Poll::Ready(Ok(()))
    }
}

/// The server's end of one accepted connection.
struct Peer {
    url: String,
    from_client: UnboundedReceiver<TMsg>,
    to_client: UnboundedSender<TMsg>,
}

impl Peer {
    fn send(&self, v: Value) {
        let _ = self.to_client.send(TMsg::Text(v.to_string()));
    }

    /// The next JSON message the client sent (close frames fail the test).
    async fn recv(&mut self) -> Value {
        match self.from_client.recv().await {
            Some(TMsg::Text(t)) => serde_json::from_str(&t).expect("json"),
            other => panic!("expected a message on {}, got {other:?}", self.url),
        }
    }

    async fn expect(&mut self, msg_type: u64) -> Value {
        let v = self.recv().await;
        assert_eq!(v["msg_type"], msg_type, "{v}");
        v
    }

    /// `n` live audio frames (stamped now: older ones would be a replay).
    fn audio(&self, n: usize) {
        let now = crate::time::now_ms();
        for i in 0..n as i64 {
            self.send(json!({"msg_type": 14, "content": {"data": "AAAAAA==", "timestamp": now + i * 20, "channel_id": "1"}}));
        }
    }
}

/// What the fake network does with the next connection attempts.
#[derive(Clone, Copy, PartialEq)]
enum Network {
    Accept,
    Refuse,
}

#[derive(Clone)]
struct FakeConnector {
    accepted: UnboundedSender<Peer>,
    network: Arc<Mutex<Network>>,
    /// When and where each attempt was made.
    attempts: Arc<Mutex<Vec<(Instant, String)>>>,
}

impl Connect for FakeConnector {
    type Message = TMsg;
    type Error = Gone;
    type Socket = FakeSocket;

    async fn connect(&self, url: &str) -> Result<FakeSocket, String> {
        self.attempts
            .lock()
            .expect("lock")
            .push((Instant::now(), url.to_owned()));
        if *self.network.lock().expect("lock") == Network::Refuse {
            return Err(format!("cannot connect to {url}: refused"));
        }
        let (to_client, rx) = mpsc::unbounded_channel();
        let (tx, from_client) = mpsc::unbounded_channel();
        let _ = self.accepted.send(Peer {
            url: url.to_owned(),
            from_client,
            to_client,
        });
        Ok(FakeSocket { rx, tx })
    }
}

struct Rig {
    start: Instant,
    peers: UnboundedReceiver<Peer>,
    network: Arc<Mutex<Network>>,
    attempts: Arc<Mutex<Vec<(Instant, String)>>>,
    bus: StatusBus,
    counters: Arc<EngineCounters>,
    cancel: CancellationToken,
    control: mpsc::Sender<Control>,
    task: JoinHandle<Outcome>,
}

impl Rig {
    fn start() -> Rig {
        crate::tls::install_crypto_provider();
        let (accepted, peers) = mpsc::unbounded_channel();
        let connector = FakeConnector {
            accepted,
            network: Arc::new(Mutex::new(Network::Accept)),
            attempts: Arc::default(),
        };
        let bus = StatusBus::new();
        let counters = Arc::new(EngineCounters::default());
        let deps = SessionDeps {
            client_id: "cid".into(),
            client_secret: Secret::new("secret"),
            tls: crate::tls::client_config(None).expect("tls"),
            bus: bus.clone(),
            config: RtmsConfig::default(),
            counters: counters.clone(),
            recorder: None,
            sink: None,
        };
        let spec = StreamSpec {
            engagement_id: "E1".into(),
            rtms_stream_id: "S1".into(),
            server_urls: SIG_URL.into(),
        };
        let cancel = CancellationToken::new();
        let (control, control_rx) = mpsc::channel(4);
        let (network, attempts) = (connector.network.clone(), connector.attempts.clone());
        let session = Session::new(spec, deps, connector, cancel.clone(), control_rx);
        Rig {
            start: Instant::now(),
            peers,
            network,
            attempts,
            bus,
            counters,
            cancel,
            control,
            task: tokio::spawn(session.run()),
        }
    }

    fn set_network(&self, n: Network) {
        *self.network.lock().expect("lock") = n;
    }

    async fn accept(&mut self, url: &str) -> Peer {
        let peer = self.peers.recv().await.expect("a connection");
        assert_eq!(peer.url, url);
        peer
    }

    /// Play the server through a full handshake; returns (signaling, audio).
    async fn handshake(&mut self) -> (Peer, Peer) {
        let mut sig = self.accept(SIG_URL).await;
        sig.expect(1).await;
        sig.send(json!({"msg_type": 2, "status_code": 0, "media_server": {"server_urls": {"audio": AUDIO_URL}}}));
        let audio = self.media(&mut sig).await;
        sig.expect(5).await;
        (sig, audio)
    }

    /// Accept and handshake an audio socket; the ready ack follows on `sig`.
    async fn media(&mut self, sig: &mut Peer) -> Peer {
        let mut audio = self.accept(AUDIO_URL).await;
        audio.expect(3).await;
        audio.send(json!({"msg_type": 4, "status_code": 0}));
        sig.expect(7).await;
        audio
    }

    /// Times of the connection attempts to `url`, from the start.
    fn attempts_to(&self, url: &str) -> Vec<Duration> {
        self.attempts
            .lock()
            .expect("lock")
            .iter()
            .filter(|(_, u)| u == url)
            .map(|(at, _)| at.duration_since(self.start))
            .collect()
    }

    fn statuses(&self) -> Vec<String> {
        let mut lines: Vec<String> = self
            .bus
            .status_lines(Some("E1"))
            .into_iter()
            .map(|l| l.message)
            .collect();
        lines.reverse();
        lines
    }

    /// Frames counted once the session flushed its counts.
    fn frames(&self) -> u64 {
        self.counters
            .frames
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    async fn finish(mut self) -> (Outcome, Duration, Rig) {
        let outcome = (&mut self.task).await.expect("session task");
        let took = self.start.elapsed();
        (outcome, took, self)
    }
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

#[tokio::test(start_paused = true)]
async fn lost_signaling_is_retried_with_backoff_for_sixty_seconds_then_fails() {
    let rig = Rig::start();
    rig.set_network(Network::Refuse);
    let (outcome, took, rig) = rig.finish().await;
    assert_eq!(
        outcome,
        Outcome::Failed("RTMS connection lost: cannot connect to fake://sig: refused".into())
    );
    // 0.5 s doubling, capped at 30 s; the attempt at 61.5 s is past the window.
    let expected: Vec<Duration> = [0.0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5, 61.5]
        .into_iter()
        .map(secs)
        .collect();
    assert_eq!(rig.attempts_to(SIG_URL), expected);
    assert!(took >= SIGNALING_WINDOW && took < SIGNALING_WINDOW + secs(2.0));
    let lines = rig.statuses();
    // One notice for the run of failures, then the failure and the end.
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.starts_with("RTMS connection lost"))
            .count(),
        2,
        "{lines:?}"
    );
    assert_eq!(lines.last().map(String::as_str), Some("RTMS stopped"));
}

#[tokio::test(start_paused = true)]
async fn streaming_again_starts_a_fresh_sixty_second_window() {
    let mut rig = Rig::start();
    let (sig, audio) = rig.handshake().await;
    audio.audio(3);
    // Signaling dies; reconnections are refused for 20 s (the attempt at
    // 31.5 s gets through).
    rig.set_network(Network::Refuse);
    drop(sig);
    drop(audio);
    tokio::time::sleep(secs(20.0)).await;
    rig.set_network(Network::Accept);
    let (sig, audio) = rig.handshake().await;
    let resumed = rig.start.elapsed();
    assert!(resumed < SIGNALING_WINDOW, "{resumed:?}");
    // Lost again after streaming: the window counts from this loss.
    rig.set_network(Network::Refuse);
    drop(sig);
    drop(audio);
    let (outcome, took, rig) = rig.finish().await;
    assert!(matches!(outcome, Outcome::Failed(_)), "{outcome:?}");
    assert!(
        took >= resumed + SIGNALING_WINDOW,
        "failed at {took:?}, resumed at {resumed:?}"
    );
    assert!(took < resumed + SIGNALING_WINDOW + secs(2.0), "{took:?}");
    assert_eq!(rig.frames(), 3);
}

#[tokio::test(start_paused = true)]
async fn duplicate_signaling_refusals_are_retried_three_times() {
    let mut rig = Rig::start();
    for _ in 0..3 {
        let mut sig = rig.accept(SIG_URL).await;
        sig.expect(1).await;
        sig.send(json!({"msg_type": 2, "status_code": 8, "reason": "duplicate"}));
        assert!(matches!(sig.from_client.recv().await, Some(TMsg::Close(_))));
    }
    let (_sig, audio) = rig.handshake().await;
    let d = DUPLICATE_BACKOFF;
    assert_eq!(
        rig.attempts_to(SIG_URL),
        [Duration::ZERO, d, d + d * 2, d + d * 2 + d * 4]
    );
    audio.audio(50);
    rig.cancel.cancel();
    let (outcome, _, rig) = rig.finish().await;
    assert_eq!(outcome, Outcome::Stopped);
    assert!(
        rig.statuses()
            .contains(&"Received 50 audio chunks".to_owned())
    );
}

#[tokio::test(start_paused = true)]
async fn a_fourth_duplicate_refusal_fails_the_session() {
    let mut rig = Rig::start();
    for _ in 0..4 {
        let mut sig = rig.accept(SIG_URL).await;
        sig.expect(1).await;
        sig.send(json!({"msg_type": 2, "status_code": 8}));
    }
    let (outcome, _, _) = rig.finish().await;
    assert_eq!(
        outcome,
        Outcome::Failed("RTMS handshake refused: DUPLICATE_SIGNAL_REQUEST (8)".into())
    );
}

#[tokio::test(start_paused = true)]
async fn a_lost_media_socket_is_reopened_alone() {
    let mut rig = Rig::start();
    let (mut sig, audio) = rig.handshake().await;
    audio.audio(20);
    // Let the session read them (on its next tick) before the socket goes.
    tokio::time::sleep(MEDIA_TICK).await;
    let lost_at = rig.start.elapsed();
    drop(audio);
    let audio = rig.media(&mut sig).await;
    assert_eq!(rig.attempts_to(SIG_URL).len(), 1, "signaling was kept");
    let reopened = rig.attempts_to(AUDIO_URL);
    assert_eq!(reopened.len(), 2);
    // The loss is seen on the tick after it.
    let after = reopened[1] - lost_at;
    assert!(
        after >= MEDIA_BACKOFF && after <= MEDIA_BACKOFF + MEDIA_TICK,
        "{after:?}"
    );
    audio.audio(30);
    rig.cancel.cancel();
    let (outcome, _, rig) = rig.finish().await;
    assert_eq!(outcome, Outcome::Stopped);
    assert_eq!(rig.frames(), 50);
    let lines = rig.statuses();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("RTMS media connection lost")),
        "{lines:?}"
    );
    assert!(lines.contains(&"Received 50 audio chunks".to_owned()));
}

#[tokio::test(start_paused = true)]
async fn a_media_socket_that_cannot_be_reopened_redoes_the_connection() {
    let mut rig = Rig::start();
    let (_sig, audio) = rig.handshake().await;
    rig.set_network(Network::Refuse);
    drop(audio);
    // Three media attempts (0.25, 0.5, 1 s apart), then a fresh signaling one.
    while rig.attempts_to(SIG_URL).len() < 2 {
        tokio::time::sleep(secs(0.05)).await;
    }
    assert_eq!(rig.attempts_to(AUDIO_URL).len(), 4);
    rig.cancel.cancel();
    let (outcome, _, _) = rig.finish().await;
    assert_eq!(outcome, Outcome::Stopped);
}

#[tokio::test(start_paused = true)]
async fn frames_in_flight_when_signaling_drops_are_counted() {
    let mut rig = Rig::start();
    let (sig, mut audio) = rig.handshake().await;
    // The signaling socket is reset with frames still unread on audio.
    audio.audio(149);
    drop(sig);
    // The session closes audio and reads it to its end.
    loop {
        match audio.from_client.recv().await {
            Some(TMsg::Close(code)) => {
                assert_eq!(code, CLOSE_AWAY);
                break;
            }
            Some(TMsg::Text(_)) => {}
            None => panic!("audio dropped without a close"),
        }
    }
    audio.audio(1);
    let _ = audio.to_client.send(TMsg::Close(CLOSE_NORMAL));
    rig.set_network(Network::Refuse);
    // The reconnection starts; stop it.
    while rig.attempts_to(SIG_URL).len() < 2 {
        tokio::time::sleep(secs(0.05)).await;
    }
    rig.cancel.cancel();
    let (_, _, rig) = rig.finish().await;
    assert_eq!(rig.frames(), 150);
}

#[tokio::test(start_paused = true)]
async fn a_stop_reads_what_zoom_already_sent() {
    let mut rig = Rig::start();
    let (_sig, mut audio) = rig.handshake().await;
    audio.audio(99);
    rig.cancel.cancel();
    match audio.from_client.recv().await {
        Some(TMsg::Close(code)) => assert_eq!(code, CLOSE_NORMAL),
        other => panic!("{other:?}"),
    }
    audio.audio(1);
    let (outcome, _, rig) = rig.finish().await;
    assert_eq!(outcome, Outcome::Stopped);
    // The server never answered the close: the grace period ended it.
    assert_eq!(rig.frames(), 100);
    assert!(
        rig.statuses()
            .contains(&"Received 100 audio chunks".to_owned())
    );
}

#[tokio::test(start_paused = true)]
async fn keep_alives_are_answered_and_termination_ends_the_session() {
    let mut rig = Rig::start();
    let (mut sig, audio) = rig.handshake().await;
    sig.send(json!({"msg_type": 12, "timestamp": 77, "sequence": 3}));
    assert_eq!(
        sig.expect(13).await,
        json!({"msg_type": 13, "timestamp": 77, "sequence": 3})
    );
    audio.send(json!({"msg_type": 12, "timestamp": 78}));
    let mut audio = audio;
    assert_eq!(audio.expect(13).await["timestamp"], 78);
    sig.send(json!({"msg_type": 8, "state": 4, "reason": 21}));
    let (outcome, _, _) = rig.finish().await;
    assert_eq!(outcome, Outcome::Terminated { reason: 21 });
}

#[tokio::test(start_paused = true)]
async fn an_interruption_notice_while_frames_flow_needs_a_second_of_silence() {
    let mut rig = Rig::start();
    let (_sig, audio) = rig.handshake().await;
    // Frames keep coming: the notice is about an older connection.
    rig.control.send(Control::Interrupted).await.expect("send");
    for _ in 0..10 {
        audio.audio(1);
        tokio::time::sleep(secs(0.2)).await;
    }
    assert_eq!(rig.attempts_to(SIG_URL).len(), 1);
    // Silence after a notice: the connection is redone.
    rig.control.send(Control::Interrupted).await.expect("send");
    let _next = rig.accept(SIG_URL).await;
    assert_eq!(rig.attempts_to(SIG_URL).len(), 2);
    rig.cancel.cancel();
    let _ = rig.finish().await;
}

#[tokio::test(start_paused = true)]
async fn a_replay_at_stream_start_is_counted_and_reported_as_one_line() {
    let mut rig = Rig::start();
    let _watch = rig.bus.watch(Some("E1"));
    let mut views = rig.bus.subscribe_local();
    let (_sig, audio) = rig.handshake().await;
    use base64::Engine as _;
    // Zoom replays 43 s of loud two-channel audio it buffered, then live
    // silence.
    let loud = base64::engine::general_purpose::STANDARD.encode(
        (0..320)
            .flat_map(|_| 16384i16.to_le_bytes())
            .collect::<Vec<u8>>(),
    );
    let start = crate::time::now_ms() - 43_000;
    for i in 0..2_000i64 {
        for channel in ["1", "2"] {
            audio.send(json!({"msg_type": 14, "content": {"data": loud, "timestamp": start + i * 20, "channel_id": channel}}));
        }
    }
    audio.audio(50);
    rig.cancel.cancel();
    let (outcome, _, rig) = rig.finish().await;
    assert_eq!(outcome, Outcome::Stopped);
    assert_eq!(rig.frames(), 4_050, "the replay counts like any audio");
    let lines = rig.statuses();
    let reported = |prefix: &str| -> Vec<String> {
        lines
            .iter()
            .filter(|l| l.starts_with(prefix))
            .cloned()
            .collect()
    };
    assert_eq!(reported("Caught up"), ["Caught up 43 s of buffered audio"]);
    assert_eq!(reported("Received"), ["Received 4050 audio chunks"]);
    // The meter shows the call as it is (silent), never the loud replay.
    let mut published = 0;
    while let Ok(event) = views.try_recv() {
        if let crate::status::BusEvent::Stream(v) = &*event {
            published += 1;
            assert!(
                v.channels.iter().all(|c| c.level == 0.0 && c.peak == 0.0),
                "{v:?}"
            );
        }
    }
    assert!(published > 0, "stream views were published");
}

#[tokio::test(start_paused = true)]
async fn views_nobody_watches_are_kept_current_but_not_published() {
    let mut rig = Rig::start();
    let mut events = rig.bus.subscribe_local();
    let (_sig, audio) = rig.handshake().await;
    let periodic = |events: &mut tokio::sync::broadcast::Receiver<Arc<crate::status::BusEvent>>| {
        let mut frames = Vec::new();
        while let Ok(event) = events.try_recv() {
            if let crate::status::BusEvent::Stream(v) = &*event
                && v.state == "streaming"
                && v.frames > 0
            {
                frames.push(v.frames);
            }
        }
        frames
    };
    audio.audio(10);
    tokio::time::sleep(secs(1.0)).await;
    assert_eq!(periodic(&mut events), Vec::<u64>::new(), "nobody watches");
    let snap = rig.bus.snapshot_for(Some("E1"));
    assert_eq!(snap.streams.len(), 1);
    assert_eq!(snap.streams[0].frames, 10, "the snapshot is current");
    // A page opens: from the next tick on, views are published again.
    let watch = rig.bus.watch(Some("E1"));
    audio.audio(5);
    tokio::time::sleep(secs(1.0)).await;
    assert_eq!(periodic(&mut events), vec![15]);
    drop(watch);
    audio.audio(5);
    tokio::time::sleep(secs(1.0)).await;
    assert_eq!(periodic(&mut events), Vec::<u64>::new());
    assert_eq!(rig.bus.snapshot().streams[0].frames, 20);
    rig.cancel.cancel();
    let _ = rig.finish().await;
}

#[test]
fn the_first_audio_tick_is_at_most_one_tick_away() {
    for _ in 0..100 {
        let d = to_next_tick();
        assert!(d > Duration::ZERO && d <= MEDIA_TICK, "{d:?}");
    }
}
