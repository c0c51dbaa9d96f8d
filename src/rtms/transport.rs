//! The WebSocket client behind the session: a connector that opens a socket
//! for a URL, and what the session needs of a message.
//!
//! The session is generic over [`Connect`], so its loop runs on in-memory
//! sockets in unit tests and on real ones here. Owns the client's tuning
//! (buffer sizes, message limits); never decides anything about RTMS.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use futures_util::{Sink, Stream};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

use super::polled::Tcp;

/// Largest RTMS message accepted (an audio frame is ~1 KB).
pub const MAX_MESSAGE: usize = 1 << 20;
/// Bytes read from a socket at once. Small: an instance holds thousands of
/// sockets and an RTMS message is about 1 KB; the client fills its buffer
/// before each read, so a large one costs on every read.
pub const READ_BUFFER: usize = 4 * 1024;

/// Close codes the session sends.
pub const CLOSE_NORMAL: u16 = 1000;
pub const CLOSE_AWAY: u16 = 1001;

/// One WebSocket message as the session sees it.
pub trait WsMessage: Send + Sized + 'static {
    /// A text message to send.
    fn text(text: String) -> Self;
    /// A close frame to send.
    fn close(code: u16) -> Self;
    /// The bytes of a text or binary message; `None` for control frames.
    fn payload(&self) -> Option<&[u8]>;
    /// For a close frame: its code and reason, as text.
    fn close_text(&self) -> Option<String>;
}

/// Opens WebSocket connections.
pub trait Connect: Send + Sync + 'static {
    type Message: WsMessage;
    type Error: fmt::Display + Send;
    type Socket: Stream<Item = Result<Self::Message, Self::Error>>
        + Sink<Self::Message, Error = Self::Error>
        + Unpin
        + Send
        + 'static;

    fn connect(&self, url: &str) -> impl Future<Output = Result<Self::Socket, String>> + Send;

    /// From now on data arriving on `socket` wakes nobody (true) or wakes
    /// its reader again (false). A polled socket is read by its owner on its
    /// own tick, after [`allow_read`](Connect::allow_read). A client that
    /// cannot do this keeps waking its reader, which is only slower.
    fn set_polled(_socket: &mut Self::Socket, _polled: bool) {}

    /// A polled socket may be read again, until a read finds it drained.
    fn allow_read(_socket: &mut Self::Socket) {}
}

/// The real client: tungstenite over rustls.
#[derive(Clone)]
pub struct Tungstenite {
    tls: Arc<rustls::ClientConfig>,
}

impl Tungstenite {
    pub fn new(tls: Arc<rustls::ClientConfig>) -> Self {
        Self { tls }
    }
}

impl Connect for Tungstenite {
    type Message = Message;
    type Error = tokio_tungstenite::tungstenite::Error;
    type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

    async fn connect(&self, url: &str) -> Result<Self::Socket, String> {
        let mut config = WebSocketConfig::default();
        config.max_message_size = Some(MAX_MESSAGE);
        config.max_frame_size = Some(MAX_MESSAGE);
        config.read_buffer_size = READ_BUFFER;
        config.write_buffer_size = 0;
        config.max_write_buffer_size = 1 << 20;
        let connector = Connector::Rustls(self.tls.clone());
        tokio_tungstenite::connect_async_tls_with_config(url, Some(config), true, Some(connector))
            .await
            .map(|(ws, _)| ws)
            .map_err(|e| format!("cannot connect to {url}: {e}"))
    }
}

impl WsMessage for Message {
    fn text(text: String) -> Self {
        Message::text(text)
    }

    fn close(code: u16) -> Self {
        Message::Close(Some(CloseFrame {
            code: CloseCode::from(code),
            reason: "".into(),
        }))
    }

    fn payload(&self) -> Option<&[u8]> {
        match self {
            Message::Text(t) => Some(t.as_bytes()),
            Message::Binary(b) => Some(b),
            _ => None,
        }
    }

    fn close_text(&self) -> Option<String> {
        match self {
            Message::Close(Some(f)) => Some(format!("{} {}", u16::from(f.code), f.reason)),
            Message::Close(None) => Some("no close frame".into()),
            _ => None,
        }
    }
}

/// The alternative client measured against tungstenite: tokio-websockets
/// over rustls. Its reads go into spare buffer capacity (nothing zeroed).
pub struct TokioWebsockets {
    tls: tokio_websockets::Connector,
    plain: tokio_websockets::Connector,
}

impl TokioWebsockets {
    pub fn new(tls: Arc<rustls::ClientConfig>) -> Self {
        Self {
            tls: tokio_websockets::Connector::Rustls(tokio_rustls::TlsConnector::from(tls)),
            plain: tokio_websockets::Connector::Plain,
        }
    }
}

impl Connect for TokioWebsockets {
    type Message = tokio_websockets::Message;
    type Error = tokio_websockets::Error;
    /// Boxed: the socket (~1.3 KB, TLS state inline) moves through the
    /// handshake futures, and each move would otherwise take room in the
    /// session's task for its whole life.
    type Socket = Box<Ws>;

    async fn connect(&self, url: &str) -> Result<Self::Socket, String> {
        let failed = |e: &dyn fmt::Display| format!("cannot connect to {url}: {e}");
        let parsed = url::Url::parse(url).map_err(|e| failed(&e))?;
        let connector = match parsed.scheme() {
            "ws" => &self.plain,
            "wss" => &self.tls,
            other => return Err(failed(&format!("unsupported scheme {other}"))),
        };
        let host = parsed.host_str().ok_or_else(|| failed(&"no host"))?;
        // An IPv6 literal comes bracketed; neither resolving nor TLS wants that.
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = parsed
            .port_or_known_default()
            .ok_or_else(|| failed(&"no port"))?;
        let tcp = TcpStream::connect((host, port))
            .await
            .map_err(|e| failed(&e))?;
        let stream = connector
            .wrap(host, Tcp::new(tcp))
            .await
            .map_err(|e| failed(&e))?;
        tokio_websockets::ClientBuilder::new()
            .uri(url)
            .map_err(|e| failed(&e))?
            .limits(tokio_websockets::Limits::default().max_payload_len(Some(MAX_MESSAGE)))
            .connect_on(stream)
            .await
            .map(|(ws, _)| Box::new(ws))
            .map_err(|e| failed(&e))
    }

    fn set_polled(socket: &mut Self::Socket, polled: bool) {
        tcp_of(socket).set_polled(polled);
    }

    fn allow_read(socket: &mut Self::Socket) {
        tcp_of(socket).allow_read();
    }
}

type Ws = tokio_websockets::WebSocketStream<tokio_websockets::MaybeTlsStream<Tcp>>;

fn tcp_of(socket: &mut Ws) -> &mut Tcp {
    match socket.get_mut() {
        tokio_websockets::MaybeTlsStream::Plain(tcp) => tcp,
        tokio_websockets::MaybeTlsStream::Rustls(tls) => tls.get_mut().0,
    }
}

impl WsMessage for tokio_websockets::Message {
    fn text(text: String) -> Self {
        tokio_websockets::Message::text(text)
    }

    fn close(code: u16) -> Self {
        tokio_websockets::Message::close(tokio_websockets::CloseCode::try_from(code).ok(), "")
    }

    fn payload(&self) -> Option<&[u8]> {
        (self.is_text() || self.is_binary()).then(|| &self.as_payload()[..])
    }

    fn close_text(&self) -> Option<String> {
        self.as_close()
            .map(|(code, reason)| format!("{} {reason}", u16::from(code)))
    }
}
