//! The bytes of an SSE response: each event as `event:`/`data:` lines, and
//! what is ready at once sent together.
//!
//! A page following every engagement receives thousands of stream views a
//! second, and they come in bursts (every session updates on the same
//! tick). One body chunk per event cost a chunk header, a write system call
//! and a wake-up of the reader each; here the events of a burst go in one
//! chunk: once an event is in hand, the feed lets every task already
//! waiting to run go first (one turn of the scheduler, no timer), then
//! sends what came meanwhile together. A comment keeps an idle connection
//! open through proxies. Owns the framing only; never decides
//! what an event says or who sees it.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use serde::Serialize;
use tokio::time::{Instant, Sleep};

/// An idle feed gets a comment this often.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// A chunk ends once it holds this much (the rest goes in the next).
const CHUNK_BYTES: usize = 64 * 1024;
const COMMENT: &[u8] = b":\n\n";

/// One event as the stream carries it. The data is JSON on one line, so it
/// needs a single `data:` line.
pub fn event(name: &str, data: &impl Serialize) -> Bytes {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    if serde_json::to_writer(&mut out, data).is_err() {
        // Our own types always serialise; never send half an event.
        return Bytes::from_static(b": unserializable\n\n");
    }
    out.extend_from_slice(b"\n\n");
    out.into()
}

/// The response of an SSE feed whose events are `events` (see [`event`]).
pub fn response<S>(events: S) -> Response
where
    S: Stream<Item = Bytes> + Send + 'static,
{
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(Batched::new(events)),
    )
        .into_response()
}

/// The events of a burst as one chunk; a comment after [`KEEP_ALIVE`]
/// without any.
pub struct Batched<S> {
    events: Pin<Box<S>>,
    idle: Pin<Box<Sleep>>,
    /// Events taken and not yet sent.
    held: Vec<u8>,
    /// The feed already let the others run once for `held`.
    yielded: bool,
    ended: bool,
}

impl<S> Batched<S> {
    pub fn new(events: S) -> Self {
        Self {
            events: Box::pin(events),
            idle: Box::pin(tokio::time::sleep(KEEP_ALIVE)),
            held: Vec::new(),
            yielded: false,
            ended: false,
        }
    }
}

impl<S: Stream<Item = Bytes>> Stream for Batched<S> {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let mut full = false;
        while !this.ended && !full {
            match this.events.as_mut().poll_next(cx) {
                Poll::Ready(Some(event)) => {
                    this.held.extend_from_slice(&event);
                    full = this.held.len() >= CHUNK_BYTES;
                }
                Poll::Ready(None) => this.ended = true,
                Poll::Pending => break,
            }
        }
        if !this.held.is_empty() {
            if !full && !this.ended && !this.yielded {
                // Let the tasks already waiting run (they may publish more
                // of this burst); woken, this task queues behind them.
                this.yielded = true;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            this.yielded = false;
            this.idle.as_mut().reset(Instant::now() + KEEP_ALIVE);
            return Poll::Ready(Some(Ok(std::mem::take(&mut this.held).into())));
        }
        if this.ended {
            return Poll::Ready(None);
        }
        if this.idle.as_mut().poll(cx).is_ready() {
            this.idle.as_mut().reset(Instant::now() + KEEP_ALIVE);
            return Poll::Ready(Some(Ok(Bytes::from_static(COMMENT))));
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt as _;
    use serde_json::json;
    use tokio::sync::mpsc;
    use tokio_stream::wrappers::UnboundedReceiverStream;

    use super::*;

    fn text(chunk: Option<Result<Bytes, Infallible>>) -> String {
        let Some(Ok(bytes)) = chunk else {
            panic!("a chunk, not {chunk:?}");
        };
        String::from_utf8_lossy(&bytes).into_owned()
    }

    #[test]
    fn an_event_is_its_name_and_one_line_of_json() {
        let e = event("status", &json!({"message": "two\nlines", "n": 1}));
        assert_eq!(
            &e[..],
            b"event: status\ndata: {\"message\":\"two\\nlines\",\"n\":1}\n\n"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn what_is_ready_goes_in_one_chunk_and_silence_gets_a_comment() {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut body = Batched::new(UnboundedReceiverStream::new(rx));
        for n in 0..3 {
            tx.send(event("stream", &n)).expect("open");
        }
        assert_eq!(
            text(body.next().await),
            "event: stream\ndata: 0\n\nevent: stream\ndata: 1\n\nevent: stream\ndata: 2\n\n"
        );

        // Nothing for a while: a comment once the keep-alive period passes,
        // not before.
        let started = Instant::now();
        assert_eq!(text(body.next().await), ":\n\n");
        assert_eq!(started.elapsed(), KEEP_ALIVE);

        // An event pushes the next comment a full period away.
        tokio::time::advance(KEEP_ALIVE / 2).await;
        tx.send(event("status", &"x")).expect("open");
        assert_eq!(text(body.next().await), "event: status\ndata: \"x\"\n\n");
        let sent = Instant::now();
        assert_eq!(text(body.next().await), ":\n\n");
        assert_eq!(sent.elapsed(), KEEP_ALIVE);

        // The end: what came before it still goes, then the body ends.
        tx.send(event("status", &"last")).expect("open");
        drop(tx);
        assert_eq!(text(body.next().await), "event: status\ndata: \"last\"\n\n");
        assert!(body.next().await.is_none());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn events_published_while_the_feed_waits_its_turn_go_with_the_first() {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut body = Batched::new(UnboundedReceiverStream::new(rx));
        tx.send(event("stream", &1)).expect("open");
        // Queued before the feed is polled: runs while the feed yields.
        let late = tx.clone();
        tokio::spawn(async move {
            late.send(event("stream", &2)).expect("open");
        });
        assert_eq!(
            text(body.next().await),
            "event: stream\ndata: 1\n\nevent: stream\ndata: 2\n\n"
        );
    }

    #[tokio::test]
    async fn a_long_burst_is_cut_into_chunks_of_a_bounded_size() {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut body = Batched::new(UnboundedReceiverStream::new(rx));
        let big = "x".repeat(1000);
        for _ in 0..200 {
            tx.send(event("stream", &big)).expect("open");
        }
        drop(tx);
        let mut events = 0;
        let mut chunks = 0;
        while let Some(Ok(chunk)) = body.next().await {
            assert!(chunk.len() < CHUNK_BYTES + 1100, "{}", chunk.len());
            events += String::from_utf8_lossy(&chunk)
                .matches("event: stream\n")
                .count();
            chunks += 1;
        }
        assert_eq!(events, 200);
        assert!((3..=4).contains(&chunks), "{chunks} chunks");
    }
}
