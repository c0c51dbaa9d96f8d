//! The live feed's reader (`GET /api/events`): Server-Sent Events parsed
//! into `SseEvent`s; a read says apart an event, the end of the stream and a
//! timeout. Owns no app: it reads whatever response it is given.

use std::time::Duration;

use futures_util::StreamExt as _;
use serde_json::Value;

use super::WAIT;

pub struct Sse {
    stream:
        std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buf: String,
}

#[derive(Debug, Clone)]
pub struct SseEvent {
    pub event: String,
    pub data: Value,
}

/// One read of a feed: an event, the end of the stream (the server closed
/// it, or it broke), or nothing within the time given (still open).
#[derive(Debug)]
pub enum SseRead {
    Event(SseEvent),
    Ended,
    TimedOut,
}

/// For SSE: no overall timeout (the feed stays open), connect bounded.
pub fn streaming_client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(WAIT)
        .build()
        .expect("client")
}

impl Sse {
    /// Open as an anonymous caller (demo mode).
    pub async fn open(url: &str) -> Sse {
        Self::open_with(reqwest::Client::new().get(url)).await
    }

    /// Open with a prepared request (a cookie, a token); expects 200.
    pub async fn open_with(req: reqwest::RequestBuilder) -> Sse {
        let resp = req.send().await.expect("SSE");
        assert_eq!(resp.status(), 200, "SSE refused");
        Self::from_response(resp)
    }

    pub fn from_response(resp: reqwest::Response) -> Sse {
        Sse {
            stream: Box::pin(resp.bytes_stream()),
            buf: String::new(),
        }
    }

    /// The next event; None when the stream ended. Nothing within `WAIT`
    /// is a failure: the feed is open and silent.
    pub async fn next(&mut self) -> Option<SseEvent> {
        match self.read_within(WAIT).await {
            SseRead::Event(ev) => Some(ev),
            SseRead::Ended => None,
            SseRead::TimedOut => panic!("SSE: no event within {WAIT:?}"),
        }
    }

    /// The next event within `within`; None when the stream ended *or* the
    /// time passed. Use [`Sse::read_within`] when the difference matters.
    pub async fn next_within(&mut self, within: Duration) -> Option<SseEvent> {
        match self.read_within(within).await {
            SseRead::Event(ev) => Some(ev),
            SseRead::Ended | SseRead::TimedOut => None,
        }
    }

    /// The next event, the end of the stream, or a timeout after `within`.
    pub async fn read_within(&mut self, within: Duration) -> SseRead {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(pos) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..pos + 2).collect();
                let mut event = String::from("message");
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        event = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if data.is_empty() {
                    continue; // keep-alive comment
                }
                let data = serde_json::from_str(&data).unwrap_or(Value::String(data));
                return SseRead::Event(SseEvent { event, data });
            }
            match tokio::time::timeout_at(deadline, self.stream.next()).await {
                Err(_) => return SseRead::TimedOut,
                Ok(None | Some(Err(_))) => return SseRead::Ended,
                Ok(Some(Ok(chunk))) => self.buf.push_str(&String::from_utf8_lossy(&chunk)),
            }
        }
    }

    /// Skip events until one matches, within `WAIT`.
    pub async fn wait_for(&mut self, what: &str, pred: impl Fn(&SseEvent) -> bool) -> SseEvent {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.read_within(left).await {
                SseRead::Event(ev) if pred(&ev) => return ev,
                SseRead::Event(_) => continue,
                SseRead::Ended => panic!("SSE: the stream ended before {what}"),
                SseRead::TimedOut => panic!("SSE: no {what} within {WAIT:?}"),
            }
        }
    }

    /// Wait for a status line with exactly this message.
    pub async fn wait_for_status(&mut self, message: &str) -> SseEvent {
        self.wait_for(message, |ev| {
            ev.event == "status" && ev.data["message"] == message
        })
        .await
    }
}
