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
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Bytes read at once from a registered socket are read by tokio into
/// uninitialised memory; a polled read fills a zeroed buffer, so it asks for
/// no more than this (a tick's frames of one channel; the rest is read next).
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
}

impl Tcp {
    pub fn new(stream: TcpStream) -> Self {
        Self {
            mode: Mode::Armed(stream),
            may_read: false,
            want_polled: false,
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
        match &mut this.mode {
            Mode::Armed(s) => Pin::new(s).poll_read(cx, buf),
            Mode::Broken => Poll::Ready(Err(broken())),
            Mode::Polled(_) if !this.may_read => Poll::Pending,
            Mode::Polled(s) => {
                let want = buf.remaining().min(POLLED_READ);
                let dst = buf.initialize_unfilled_to(want);
                loop {
                    match s.read(dst) {
                        Ok(n) => {
                            // Less than asked: the socket is drained (a
                            // later read would only say "would block").
                            if n < want {
                                this.may_read = false;
                            }
                            buf.advance(n);
                            return Poll::Ready(Ok(()));
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            this.may_read = false;
                            return Poll::Pending;
                        }
                        Err(e) => return Poll::Ready(Err(e)),
                    }
                }
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
