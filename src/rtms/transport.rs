//! The WebSocket client behind the session: a connector that opens a socket
//! for a URL, and what the session needs of a message.
//!
//! The session is generic over [`Connect`], so its loop runs on in-memory
//! sockets in unit tests and on real ones here. Owns the client's tuning
//! (buffer sizes, message limits); never decides anything about RTMS.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::polled::Tcp;
use super::ws;

/// Largest RTMS message accepted (an audio frame is ~1 KB).
pub const MAX_MESSAGE: usize = 1 << 20;
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

/// The client in use: our own WebSocket ([`super::ws`]) over rustls. An
/// idle socket holds no read buffer (the libraries keep 8 KiB each).
pub struct RtmsWs {
    tls: tokio_rustls::TlsConnector,
}

impl RtmsWs {
    pub fn new(tls: Arc<rustls::ClientConfig>) -> Self {
        Self {
            tls: tokio_rustls::TlsConnector::from(tls),
        }
    }
}

/// A plain or TLS connection over a [`Tcp`].
pub enum Conn {
    Plain(Tcp),
    Tls(Box<tokio_rustls::client::TlsStream<Tcp>>),
}

impl Conn {
    fn tcp(&mut self) -> &mut Tcp {
        match self {
            Conn::Plain(tcp) => tcp,
            Conn::Tls(tls) => tls.get_mut().0,
        }
    }
}

impl ws::ReadReady for Conn {
    fn poll_read_ready(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        match self {
            Conn::Plain(tcp) => tcp.poll_read_ready(cx),
            Conn::Tls(tls) => {
                let (tcp, session) = tls.get_mut();
                // TLS wants no more bytes while it holds decrypted ones (or
                // the peer's close): then there is something to read.
                if session.wants_read() {
                    tcp.poll_read_ready(cx)
                } else {
                    Poll::Ready(())
                }
            }
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, data),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, data),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

impl Connect for RtmsWs {
    type Message = ws::Message;
    type Error = ws::Error;
    /// Boxed: the socket (TLS state inline) moves through the handshake
    /// futures, and each move would otherwise take room in the session's
    /// task for its whole life.
    type Socket = Box<ws::WebSocket<Conn>>;

    async fn connect(&self, url: &str) -> Result<Self::Socket, String> {
        let failed = |e: &dyn fmt::Display| format!("cannot connect to {url}: {e}");
        let parsed = url::Url::parse(url).map_err(|e| failed(&e))?;
        let tls = match parsed.scheme() {
            "ws" => false,
            "wss" => true,
            other => return Err(failed(&format!("unsupported scheme {other}"))),
        };
        let host = parsed.host_str().ok_or_else(|| failed(&"no host"))?;
        // An IPv6 literal comes bracketed; neither resolving nor TLS wants that.
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = parsed
            .port_or_known_default()
            .ok_or_else(|| failed(&"no port"))?;
        let tcp = Tcp::new(
            TcpStream::connect((host, port))
                .await
                .map_err(|e| failed(&e))?,
        );
        let conn = if tls {
            let name =
                rustls::pki_types::ServerName::try_from(host.to_owned()).map_err(|e| failed(&e))?;
            let tls = self.tls.connect(name, tcp).await.map_err(|e| failed(&e))?;
            Conn::Tls(Box::new(tls))
        } else {
            Conn::Plain(tcp)
        };
        ws::handshake(conn, &parsed, MAX_MESSAGE)
            .await
            .map(Box::new)
            .map_err(|e| failed(&e))
    }

    fn set_polled(socket: &mut Self::Socket, polled: bool) {
        socket.get_mut().tcp().set_polled(polled);
    }

    fn allow_read(socket: &mut Self::Socket) {
        socket.get_mut().tcp().allow_read();
    }
}

impl WsMessage for ws::Message {
    fn text(text: String) -> Self {
        ws::Message::Text(text.into())
    }

    fn close(code: u16) -> Self {
        ws::Message::Close(Some((code, String::new())))
    }

    fn payload(&self) -> Option<&[u8]> {
        match self {
            ws::Message::Text(b) | ws::Message::Binary(b) => Some(b),
            _ => None,
        }
    }

    fn close_text(&self) -> Option<String> {
        match self {
            ws::Message::Close(Some((code, reason))) => Some(format!("{code} {reason}")),
            ws::Message::Close(None) => Some("no close frame".into()),
            _ => None,
        }
    }
}
