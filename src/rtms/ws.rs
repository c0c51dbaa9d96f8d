//! The WebSocket client of the RTMS sockets: the HTTP upgrade, frames in
//! and out, pings and closes.
//!
//! Ours rather than a library's because of memory: an instance holds two or
//! three sockets per stream, thousands of them, and the clients we measured
//! keep a fixed read buffer per connection (8 KiB) for its whole life. Here
//! a read buffer is taken for a read and let go as soon as every frame in it
//! is handed out, so an idle socket (signaling between keep-alives, audio
//! between its ticks) holds no buffer at all. Messages are slices of the
//! buffer they came in (no copy). Server frames are never masked, ours
//! always are; no extensions. Owns framing only: never reads what a message
//! says.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use base64::Engine as _;
use bytes::{Buf as _, Bytes, BytesMut};
use futures_util::{Sink, Stream};
use sha1::{Digest as _, Sha1};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio_util::io::poll_read_buf;

/// Bytes asked of the socket per read: the ~10 audio frames of a tick fit
/// (a two-channel call's ~20 take two reads).
pub const READ_SIZE: usize = 16 * 1024;
/// Largest HTTP upgrade response accepted.
const MAX_RESPONSE: usize = 8 * 1024;
/// What the server's accept key is derived with (RFC 6455 §1.3).
const ACCEPT_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

pub mod opcode {
    pub const CONTINUATION: u8 = 0x0;
    pub const TEXT: u8 = 0x1;
    pub const BINARY: u8 = 0x2;
    pub const CLOSE: u8 = 0x8;
    pub const PING: u8 = 0x9;
    pub const PONG: u8 = 0xA;
}

/// One WebSocket message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Text(Bytes),
    Binary(Bytes),
    Ping(Bytes),
    Pong(Bytes),
    /// Code and reason; `None` for a close frame without a code.
    Close(Option<(u16, String)>),
}

#[derive(Debug)]
pub enum Error {
    Io(io::Error),
    /// The peer broke the protocol.
    Protocol(&'static str),
    /// A message above the limit.
    TooLarge,
    /// Sending after our close frame went.
    Closed,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(e) => write!(f, "{e}"),
            Error::Protocol(what) => write!(f, "WebSocket protocol error: {what}"),
            Error::TooLarge => f.write_str("WebSocket message too large"),
            Error::Closed => f.write_str("WebSocket already closed"),
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }
}

/// A frame header read from the front of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub fin: bool,
    pub opcode: u8,
    pub header_len: usize,
    pub payload_len: usize,
}

impl Header {
    pub fn frame_len(&self) -> usize {
        self.header_len + self.payload_len
    }
}

/// The header of a server frame at the front of `buf`; `Ok(None)` while
/// more bytes are needed. `max`: the largest payload accepted.
pub fn parse_header(buf: &[u8], max: usize) -> Result<Option<Header>, Error> {
    let [b0, b1, ..] = *buf else {
        return Ok(None);
    };
    if b0 & 0x70 != 0 {
        return Err(Error::Protocol("reserved bits set"));
    }
    if b1 & 0x80 != 0 {
        return Err(Error::Protocol("masked frame from the server"));
    }
    let fin = b0 & 0x80 != 0;
    let opcode = b0 & 0x0F;
    let (len, header_len) = match b1 & 0x7F {
        126 => match buf.get(2..4) {
            Some(&[a, b]) => (u64::from(u16::from_be_bytes([a, b])), 4),
            _ => return Ok(None),
        },
        127 => match buf.get(2..10) {
            Some(b) => {
                let mut n = [0; 8];
                n.copy_from_slice(b);
                (u64::from_be_bytes(n), 10)
            }
            None => return Ok(None),
        },
        n => (u64::from(n), 2),
    };
    match opcode {
        opcode::CONTINUATION | opcode::TEXT | opcode::BINARY => {}
        opcode::CLOSE | opcode::PING | opcode::PONG if fin && len <= 125 => {}
        opcode::CLOSE | opcode::PING | opcode::PONG => {
            return Err(Error::Protocol("fragmented or long control frame"));
        }
        _ => return Err(Error::Protocol("unknown opcode")),
    }
    let payload_len = usize::try_from(len).map_err(|_| Error::TooLarge)?;
    if payload_len > max {
        return Err(Error::TooLarge);
    }
    Ok(Some(Header {
        fin,
        opcode,
        header_len,
        payload_len,
    }))
}

/// Append one complete client frame, masked with `mask`.
pub fn encode(out: &mut Vec<u8>, opcode: u8, payload: &[u8], mask: [u8; 4]) {
    out.push(0x80 | opcode);
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if let Ok(short) = u16::try_from(len) {
        out.push(0x80 | 126);
        out.extend_from_slice(&short.to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
}

/// The `Sec-WebSocket-Accept` a server answers `key` with.
pub fn accept_key(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(ACCEPT_GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

/// The upgrade request for `url` (ws or wss) with `key`.
pub fn upgrade_request(url: &url::Url, key: &str) -> String {
    let host = url.host_str().unwrap_or_default();
    let authority = match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    };
    let target = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_owned(),
    };
    format!(
        "GET {target} HTTP/1.1\r\nHost: {authority}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

/// Check the server's upgrade response head (up to, without, the blank line).
pub fn check_response(head: &str, key: &str) -> Result<(), String> {
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or_default();
    if status.split(' ').nth(1) != Some("101") {
        return Err(format!("the server did not switch protocols: {status}"));
    }
    let (mut upgrade, mut connection, mut accept) = (false, false, false);
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "upgrade" => upgrade = value.eq_ignore_ascii_case("websocket"),
            "connection" => {
                connection = value
                    .split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
            }
            "sec-websocket-accept" => accept = value == accept_key(key),
            _ => {}
        }
    }
    match (upgrade, connection, accept) {
        (true, true, true) => Ok(()),
        (false, _, _) => Err("the upgrade response has no Upgrade: websocket".into()),
        (_, false, _) => Err("the upgrade response has no Connection: upgrade".into()),
        (_, _, false) => Err("the upgrade response has a wrong Sec-WebSocket-Accept".into()),
    }
}

/// Upgrade `io` to a WebSocket for `url`; what the server sent after its
/// response (frames already) comes back with the socket.
pub async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    mut io: S,
    url: &url::Url,
    max_message: usize,
) -> Result<WebSocket<S>, String> {
    let key = base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 16]>());
    let failed = |e: io::Error| format!("WebSocket upgrade: {e}");
    io.write_all(upgrade_request(url, &key).as_bytes())
        .await
        .map_err(failed)?;
    io.flush().await.map_err(failed)?;
    let mut buf = BytesMut::with_capacity(1024);
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        if buf.len() >= MAX_RESPONSE {
            return Err("the upgrade response is too large".into());
        }
        if io.read_buf(&mut buf).await.map_err(failed)? == 0 {
            return Err("the server closed during the upgrade".into());
        }
    };
    let head = std::str::from_utf8(&buf[..end]).map_err(|_| "the upgrade response is not text")?;
    check_response(head, &key)?;
    buf.advance(end + 4);
    Ok(WebSocket::new(io, buf, max_message))
}

/// Whether a read would find data, asked before a read buffer is taken: a
/// socket polled only because its task woke for something else then costs
/// no allocation. `Ready` when unsure (the default); the read then tells.
pub trait ReadReady {
    fn poll_read_ready(&mut self, _cx: &mut Context<'_>) -> Poll<()> {
        Poll::Ready(())
    }
}

/// A client WebSocket over `S` (plain or TLS TCP).
pub struct WebSocket<S> {
    io: S,
    /// Bytes read and not yet handed out as messages. Empty (and holding no
    /// memory) between reads, unless a frame is still coming in.
    rx: BytesMut,
    /// A fragmented message being put together: its opcode, what came.
    partial: Option<(u8, BytesMut)>,
    /// Frames to write (ours, and pongs and the close echo).
    tx: Vec<u8>,
    max_message: usize,
    close_sent: bool,
    /// The server's close came, or its end of the stream.
    ended: bool,
}

impl<S> WebSocket<S> {
    /// A socket after its upgrade; `rx`: what already came after it.
    pub fn new(io: S, rx: BytesMut, max_message: usize) -> Self {
        Self {
            io,
            rx: if rx.is_empty() { BytesMut::new() } else { rx },
            partial: None,
            tx: Vec::new(),
            max_message,
            close_sent: false,
            ended: false,
        }
    }

    pub fn get_mut(&mut self) -> &mut S {
        &mut self.io
    }

    /// Bytes of memory held for reading (the test of "idle costs nothing").
    pub fn read_capacity(&self) -> usize {
        self.rx.capacity() + self.partial.as_ref().map_or(0, |(_, p)| p.capacity())
    }

    fn queue(&mut self, opcode: u8, payload: &[u8]) {
        encode(&mut self.tx, opcode, payload, rand::random());
    }

    /// The next complete message in `rx`, handling control frames; `None`
    /// when more bytes are needed (then `want`: bytes the frame still lacks).
    fn next_message(&mut self, want: &mut usize) -> Result<Option<Message>, Error> {
        loop {
            let Some(h) = parse_header(&self.rx, self.max_message)? else {
                *want = 14;
                return Ok(None);
            };
            if self.rx.len() < h.frame_len() {
                *want = h.frame_len() - self.rx.len();
                return Ok(None);
            }
            self.rx.advance(h.header_len);
            let payload = self.rx.split_to(h.payload_len).freeze();
            if self.rx.is_empty() {
                // Let the buffer go: the messages own their part of it.
                self.rx = BytesMut::new();
            }
            if h.opcode >= opcode::CLOSE {
                // Control frames may come between a message's fragments.
                return self.control(h.opcode, payload).map(Some);
            }
            let data = match (h.opcode, h.fin, self.partial.take()) {
                (opcode::TEXT | opcode::BINARY, true, None) => (h.opcode, payload),
                (opcode::TEXT | opcode::BINARY, false, None) => {
                    self.partial = Some((h.opcode, BytesMut::from(&payload[..])));
                    continue;
                }
                (opcode::CONTINUATION, fin, Some((op, mut so_far))) => {
                    if so_far.len() + payload.len() > self.max_message {
                        return Err(Error::TooLarge);
                    }
                    so_far.extend_from_slice(&payload);
                    if !fin {
                        self.partial = Some((op, so_far));
                        continue;
                    }
                    (op, so_far.freeze())
                }
                (opcode::CONTINUATION, _, None) => {
                    return Err(Error::Protocol("continuation without a message"));
                }
                _ => return Err(Error::Protocol("a new message inside a fragmented one")),
            };
            return match data {
                (opcode::TEXT, text) => {
                    std::str::from_utf8(&text).map_err(|_| Error::Protocol("text is not UTF-8"))?;
                    Ok(Some(Message::Text(text)))
                }
                (_, bytes) => Ok(Some(Message::Binary(bytes))),
            };
        }
    }

    /// A control frame: pings are answered, a close is echoed (once).
    fn control(&mut self, op: u8, payload: Bytes) -> Result<Message, Error> {
        match op {
            opcode::PING => {
                if !self.close_sent {
                    self.queue(opcode::PONG, &payload);
                }
                Ok(Message::Ping(payload))
            }
            opcode::PONG => Ok(Message::Pong(payload)),
            _ => {
                let close = match &payload[..] {
                    [] => None,
                    [_] => return Err(Error::Protocol("one-byte close payload")),
                    [a, b, reason @ ..] => {
                        let reason = std::str::from_utf8(reason)
                            .map_err(|_| Error::Protocol("close reason is not UTF-8"))?;
                        Some((u16::from_be_bytes([*a, *b]), reason.to_owned()))
                    }
                };
                if !self.close_sent {
                    self.close_sent = true;
                    let echo = close.as_ref().map(|(code, _)| code.to_be_bytes());
                    self.queue(opcode::CLOSE, echo.as_ref().map_or(&[][..], |c| &c[..]));
                }
                self.ended = true;
                Ok(Message::Close(close))
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> WebSocket<S> {
    /// Write what is queued.
    fn poll_write_tx(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        while !self.tx.is_empty() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.tx))?;
            if n == 0 {
                return Poll::Ready(Err(Error::Io(io::ErrorKind::WriteZero.into())));
            }
            self.tx.drain(..n);
        }
        self.tx = Vec::new();
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + AsyncWrite + ReadReady + Unpin> Stream for WebSocket<S> {
    type Item = Result<Message, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            // Answers (pongs, the close echo) go out as they are due; a slow
            // peer does not hold the reading up.
            if !this.tx.is_empty()
                && let Poll::Ready(Err(e)) = this.poll_write_tx(cx)
            {
                return Poll::Ready(Some(Err(e)));
            }
            if this.ended {
                return Poll::Ready(None);
            }
            let mut want = 0;
            match this.next_message(&mut want) {
                Ok(Some(m)) => {
                    // A pong or close echo it queued goes now.
                    if !this.tx.is_empty()
                        && let Poll::Ready(Err(e)) = this.poll_write_tx(cx)
                    {
                        return Poll::Ready(Some(Err(e)));
                    }
                    return Poll::Ready(Some(Ok(m)));
                }
                Ok(None) => {}
                Err(e) => {
                    this.ended = true;
                    return Poll::Ready(Some(Err(e)));
                }
            }
            if this.rx.is_empty() && this.io.poll_read_ready(cx).is_pending() {
                return Poll::Pending;
            }
            // A read of `READ_SIZE` at least (a tick's frames in one go),
            // and room for the whole frame when one is coming in.
            let room = want.max(READ_SIZE.saturating_sub(this.rx.len()));
            this.rx.reserve(room);
            match poll_read_buf(Pin::new(&mut this.io), cx, &mut this.rx) {
                Poll::Pending => {
                    if this.rx.is_empty() {
                        this.rx = BytesMut::new();
                    }
                    return Poll::Pending;
                }
                Poll::Ready(Ok(0)) => {
                    this.ended = true;
                    if !this.rx.is_empty() || this.partial.is_some() {
                        return Poll::Ready(Some(Err(Error::Protocol("closed inside a frame"))));
                    }
                    return Poll::Ready(None);
                }
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => {
                    this.ended = true;
                    return Poll::Ready(Some(Err(e.into())));
                }
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Sink<Message> for WebSocket<S> {
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.get_mut().poll_write_tx(cx)
    }

    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<(), Error> {
        let this = self.get_mut();
        if this.close_sent {
            // A second close is a no-op; data after ours is refused.
            return match item {
                Message::Close(_) => Ok(()),
                _ => Err(Error::Closed),
            };
        }
        match item {
            Message::Text(b) => this.queue(opcode::TEXT, &b),
            Message::Binary(b) => this.queue(opcode::BINARY, &b),
            Message::Ping(b) => this.queue(opcode::PING, &b),
            Message::Pong(b) => this.queue(opcode::PONG, &b),
            Message::Close(close) => {
                let mut payload = Vec::new();
                if let Some((code, reason)) = close {
                    payload.extend_from_slice(&code.to_be_bytes());
                    payload.extend_from_slice(reason.as_bytes());
                }
                this.queue(opcode::CLOSE, &payload);
                this.close_sent = true;
            }
        }
        Ok(())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let this = self.get_mut();
        ready!(this.poll_write_tx(cx))?;
        Pin::new(&mut this.io).poll_flush(cx).map_err(Error::Io)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let this = self.get_mut();
        ready!(this.poll_write_tx(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx).map_err(Error::Io)
    }
}

#[cfg(test)]
#[path = "ws_tests.rs"]
mod tests;
