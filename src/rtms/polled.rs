//! A TCP connection whose reads can be taken off the event loop.
//!
//! An audio socket receives a frame every 20 ms. Waking its task for each
//! one (epoll event, wake-up, read system call, poll) costs far more than
//! the frame's decoding, so while a stream is running its audio socket is
//! *polled*: it is no longer registered for readiness, and the session reads
//! it on its own tick, every frame that arrived since in one read. Outside
//! that (connecting, handshakes, reading a socket to its end) it is an
//! ordinary registered tokio socket. Owns only this switch and the reads and
//! writes; never parses anything.

use std::io::{self, Read as _, Write as _};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::BytesMut;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Bytes read at once from a registered socket are read by tokio into
/// uninitialised memory; a polled read fills a zeroed buffer, so it asks for
/// no more than this (a tick's frames of one channel; the rest is read next).
/// A smaller read (TLS asks for 4 KiB at a time) still reads this much,
/// and the rest is handed out from memory: one system call per tick.
const POLLED_READ: usize = 16 * 1024;

enum Mode {
    /// Registered with the event loop: data wakes the reader.
    Armed(TcpStream),
    /// Read only when asked ([`Tcp::allow_read`]); data wakes nobody.
    Polled(std::net::TcpStream),
    /// A switch failed: the socket is unusable.
    Broken,
}

/// A client TCP connection (see the module header).
pub struct Tcp {
    mode: Mode,
    /// Polled and not yet found drained since the last `allow_read`.
    may_read: bool,
    /// The owner wants it polled (a write that would block arms it until
    /// the next `allow_read`).
    want_polled: bool,
    /// Read from the socket, not yet by the owner (see [`POLLED_READ`]);
    /// empty, and holding no memory, once handed out.
    ahead: BytesMut,
}

impl Tcp {
    pub fn new(stream: TcpStream) -> Self {
        Self {
            mode: Mode::Armed(stream),
            may_read: false,
            want_polled: false,
            ahead: BytesMut::new(),
        }
    }

    /// Polled (true) or registered (false) from now on.
    pub fn set_polled(&mut self, polled: bool) {
        self.want_polled = polled;
        self.switch(polled);
        self.may_read = polled;
    }

    /// A polled socket may be read again, until a read finds it drained.
    pub fn allow_read(&mut self) {
        if self.want_polled {
            self.switch(true);
            self.may_read = true;
        }
    }

    /// Ready when a read may find data (or fail); pending, with the task
    /// woken when data comes, when a registered socket has none. A polled
    /// socket that may not be read is pending and wakes nobody.
    pub fn poll_read_ready(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if !self.ahead.is_empty() {
            return Poll::Ready(());
        }
        match &self.mode {
            Mode::Armed(s) => s.poll_read_ready(cx).map(drop),
            Mode::Polled(_) if !self.may_read => Poll::Pending,
            _ => Poll::Ready(()),
        }
    }

    fn switch(&mut self, polled: bool) {
        let mode = std::mem::replace(&mut self.mode, Mode::Broken);
        self.mode = match (mode, polled) {
            (Mode::Armed(s), true) => s.into_std().map_or(Mode::Broken, Mode::Polled),
            (Mode::Polled(s), false) => TcpStream::from_std(s).map_or(Mode::Broken, Mode::Armed),
            (mode, _) => mode,
        };
    }
}

impl Tcp {
    /// What was read ahead, as much as `buf` takes.
    fn hand_out(&mut self, buf: &mut ReadBuf<'_>) {
        let n = self.ahead.len().min(buf.remaining());
        buf.put_slice(&self.ahead.split_to(n));
        if self.ahead.is_empty() {
            self.ahead = BytesMut::new();
        }
    }
}

/// One read of a polled socket into `dst`; a short read (or "would block")
/// means drained until the next `allow_read`.
fn read_polled(
    s: &mut std::net::TcpStream,
    dst: &mut [u8],
    may_read: &mut bool,
) -> Poll<io::Result<usize>> {
    loop {
        match s.read(dst) {
            Ok(n) => {
                // Less than asked: the socket is drained (a later read would
                // only say "would block").
                if n < dst.len() {
                    *may_read = false;
                }
                return Poll::Ready(Ok(n));
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                *may_read = false;
                return Poll::Pending;
            }
            Err(e) => return Poll::Ready(Err(e)),
        }
    }
}

fn broken() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "socket mode switch failed")
}

impl AsyncRead for Tcp {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.ahead.is_empty() {
            this.hand_out(buf);
            return Poll::Ready(Ok(()));
        }
        match &mut this.mode {
            Mode::Armed(s) => Pin::new(s).poll_read(cx, buf),
            Mode::Broken => Poll::Ready(Err(broken())),
            Mode::Polled(_) if !this.may_read => Poll::Pending,
            Mode::Polled(s) if buf.remaining() >= POLLED_READ => {
                let dst = buf.initialize_unfilled_to(POLLED_READ);
                let n = ready!(read_polled(s, dst, &mut this.may_read))?;
                buf.advance(n);
                Poll::Ready(Ok(()))
            }
            Mode::Polled(s) => {
                this.ahead.resize(POLLED_READ, 0);
                let read = read_polled(s, &mut this.ahead, &mut this.may_read);
                let n = match &read {
                    Poll::Ready(Ok(n)) => *n,
                    _ => 0,
                };
                this.ahead.truncate(n);
                if n == 0 {
                    this.ahead = BytesMut::new();
                }
                ready!(read)?;
                // At the end of the stream (0 bytes) this hands out nothing.
                this.hand_out(buf);
                Poll::Ready(Ok(()))
            }
        }
    }
}

impl AsyncWrite for Tcp {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Mode::Polled(s) = &mut this.mode {
            match s.write(data) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // Rare (the peer reads slowly): wait the usual way.
                    this.switch(false);
                }
                other => return Poll::Ready(other),
            }
        }
        match &mut this.mode {
            Mode::Armed(s) => Pin::new(s).poll_write(cx, data),
            _ => Poll::Ready(Err(broken())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match &mut this.mode {
            Mode::Armed(s) => Pin::new(s).poll_shutdown(cx),
            Mode::Polled(s) => Poll::Ready(s.shutdown(std::net::Shutdown::Write)),
            Mode::Broken => Poll::Ready(Err(broken())),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures_util::FutureExt as _;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::TcpListener;

    use super::*;

    const SENT: usize = 10_000;

    /// A polled client socket over loopback that already holds all of
    /// `SENT` bytes (numbered), then the server's end of the stream; and
    /// the bytes.
    async fn loaded() -> (Tcp, Vec<u8>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let client = TcpStream::connect(addr).await.expect("connect");
        let (mut server, _) = listener.accept().await.expect("accept");
        let data: Vec<u8> = (0..SENT).map(|i| (i % 251) as u8).collect();
        server.write_all(&data).await.expect("write");
        server.shutdown().await.expect("shutdown");
        let mut peek = vec![0; SENT + 1];
        tokio::time::timeout(Duration::from_secs(10), async {
            while client.peek(&mut peek).await.expect("peek") < SENT {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the data arrived");
        let mut tcp = Tcp::new(client);
        tcp.set_polled(true);
        (tcp, data)
    }

    /// Read what a polled socket hands out now, `chunk` bytes at a time.
    fn read_now(tcp: &mut Tcp, chunk: usize, out: &mut Vec<u8>) -> Option<usize> {
        let mut buf = vec![0; chunk];
        match tcp.read(&mut buf).now_or_never()? {
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                Some(n)
            }
            Err(e) => panic!("read failed: {e}"),
        }
    }

    #[tokio::test]
    async fn small_reads_of_a_polled_socket_are_served_from_one_read_ahead() {
        let (mut tcp, data) = loaded().await;
        let mut got = Vec::new();
        // 4 KiB at a time, as TLS asks: the first read takes everything
        // there is (less than `POLLED_READ`, so the socket is drained).
        assert_eq!(read_now(&mut tcp, 4096, &mut got), Some(4096));
        assert!(!tcp.may_read, "one read found the socket drained");
        assert_eq!(tcp.ahead.len(), SENT - 4096);
        assert_eq!(read_now(&mut tcp, 4096, &mut got), Some(4096));
        assert!(
            tcp.poll_read_ready(&mut Context::from_waker(
                futures_util::task::noop_waker_ref()
            ))
            .is_ready()
        );
        assert_eq!(read_now(&mut tcp, 4096, &mut got), Some(SENT - 8192));
        assert_eq!(got, data, "in order, nothing lost or repeated");
        assert_eq!(tcp.ahead.capacity(), 0, "handed out: no memory held");
        // Drained until the owner allows a read again; then the end shows.
        assert_eq!(read_now(&mut tcp, 4096, &mut got), None);
        tcp.allow_read();
        assert_eq!(read_now(&mut tcp, 4096, &mut got), Some(0));
    }

    #[tokio::test]
    async fn a_large_read_goes_straight_to_the_caller() {
        let (mut tcp, data) = loaded().await;
        let mut got = Vec::new();
        assert_eq!(read_now(&mut tcp, POLLED_READ, &mut got), Some(SENT));
        assert_eq!(tcp.ahead.capacity(), 0, "nothing read ahead");
        assert_eq!(got, data);
    }

    #[tokio::test]
    async fn what_was_read_ahead_comes_first_after_the_socket_is_registered_again() {
        let (mut tcp, data) = loaded().await;
        let mut got = Vec::new();
        assert_eq!(read_now(&mut tcp, 1000, &mut got), Some(1000));
        tcp.set_polled(false);
        let mut rest = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut rest))
            .await
            .expect("read to the end")
            .expect("read");
        got.extend(rest);
        assert_eq!(got, data);
    }
}
