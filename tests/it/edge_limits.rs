//! The edge's limits: the header timeout on silent and dripping connections,
//! the cap on open connections, and the live-feed caps per session and
//! overall.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::support::install::*;
use crate::support::{Options, SseRead, TestApp, WAIT, eventually, streaming_client};

async fn spawn_edge(tweak: fn(&mut zcc_rtms::config::ServeArgs)) -> TestApp {
    TestApp::spawn_with(Options {
        tweak,
        ..Options::default()
    })
    .await
}

/// Read until the server closes the connection; how long it took.
async fn closed_after(stream: &mut tokio::net::TcpStream) -> Duration {
    let start = Instant::now();
    let mut buf = [0u8; 256];
    loop {
        match tokio::time::timeout(WAIT, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return start.elapsed(),
            Ok(Ok(_)) => continue,
            Err(_) => panic!("the connection stayed open for {WAIT:?}"),
        }
    }
}

#[tokio::test]
async fn silent_and_dripping_connections_are_closed_within_the_header_timeout() {
    let app = spawn_edge(|a| {
        a.http_header_timeout_ms = Some("400".into());
        a.http_body_timeout_ms = Some("400".into());
    })
    .await;
    let addr = app.base.trim_start_matches("http://").to_owned();
    let mut silent = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    let took = closed_after(&mut silent).await;
    println!("silent connection closed after {took:?} (header timeout 400 ms)");
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(3),
        "{took:?}"
    );

    // A slow client: a header line now and then never completes the request.
    let mut drip = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    drip.write_all(b"GET /health HTTP/1.1\r\n")
        .await
        .expect("write");
    let start = Instant::now();
    let mut closed = false;
    for i in 0..20 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if drip
            .write_all(format!("x-{i}: y\r\n").as_bytes())
            .await
            .is_err()
        {
            closed = true;
            break;
        }
    }
    let took = if closed {
        start.elapsed()
    } else {
        closed_after(&mut drip).await + start.elapsed()
    };
    assert!(took < Duration::from_secs(3), "{took:?}");

    // An idle kept-alive connection goes too, after a normal request.
    let mut idle = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    idle.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("write");
    let mut buf = [0u8; 1024];
    let n = idle.read(&mut buf).await.expect("response");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let took = closed_after(&mut idle).await;
    assert!(took < Duration::from_secs(3), "{took:?}");

    // A body announced but never sent is given up within the body timeout.
    let mut stalled = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    stalled
        .write_all(
            b"POST /api/webhooks/zoom HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n{\"a\"",
        )
        .await
        .expect("write");
    let start = Instant::now();
    let n = tokio::time::timeout(WAIT, stalled.read(&mut buf))
        .await
        .expect("an answer in time")
        .expect("read");
    let answer = String::from_utf8_lossy(&buf[..n]).to_string();
    println!(
        "stalled body answered after {:?}: {}",
        start.elapsed(),
        answer.lines().next().unwrap_or("")
    );
    assert!(
        answer.starts_with("HTTP/1.1 408") || answer.starts_with("HTTP/1.1 400"),
        "{answer}"
    );
    assert!(
        answer.contains("application/json"),
        "a JSON reason: {answer}"
    );
    assert!(start.elapsed() < Duration::from_secs(3));

    // A live feed is a response in progress, not an idle connection: it
    // outlives the header timeout.
    let mut feed = app.events(None).await;
    assert_eq!(feed.next().await.expect("snapshot").event, "snapshot");
    let quiet = Instant::now();
    while quiet.elapsed() < Duration::from_millis(1200) {
        // Quiet, and still open.
        let read = feed.read_within(Duration::from_millis(200)).await;
        assert!(matches!(read, SseRead::TimedOut), "{read:?}");
    }
    app.state
        .bus
        .status(None, zcc_rtms::status::Level::Info, "still here");
    feed.wait_for_status("still here").await;
    app.shutdown().await;
}

#[tokio::test]
async fn connections_over_the_cap_are_closed_at_once() {
    let app = spawn_edge(|a| a.http_max_connections = Some("2".into())).await;
    let addr = app.base.trim_start_matches("http://").to_owned();
    let _a = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    let _b = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    let mut c = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    let took = closed_after(&mut c).await;
    assert!(took < Duration::from_secs(2), "{took:?}");
    drop((_a, _b));
    eventually("a slot frees up", || async {
        reqwest::get(app.url("/health")).await.ok().map(|_| ())
    })
    .await;
    app.shutdown().await;
}

#[tokio::test]
async fn live_feeds_beyond_the_caps_get_429_per_session_and_503_overall() {
    let app = spawn_edge(|a| {
        a.sse_max_subscribers = Some("3".into());
        a.sse_max_per_session = Some("2".into());
    })
    .await;
    let cookie = install(&app, None).await;
    let open = |auth: Option<String>| {
        let mut req = streaming_client().get(app.url("/api/events"));
        req = match auth {
            Some(token) => req.bearer_auth(token),
            None => req.header("cookie", &cookie),
        };
        req.send()
    };
    let first = open(None).await.expect("SSE");
    let second = open(None).await.expect("SSE");
    assert_eq!(
        (first.status(), second.status()),
        (StatusCode::OK, StatusCode::OK)
    );
    let third = open(None).await.expect("SSE");
    assert_eq!(third.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(third.headers().contains_key("retry-after"));
    let operator = open(Some(app.admin_token.clone())).await.expect("SSE");
    assert_eq!(operator.status(), StatusCode::OK);
    let full = open(Some(app.admin_token.clone())).await.expect("SSE");
    assert_eq!(full.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(full.headers().contains_key("retry-after"));

    // Closing a feed frees its slot (the server notices on its next write).
    drop(first);
    let again = eventually("a freed slot", || async {
        app.state
            .bus
            .status(None, zcc_rtms::status::Level::Info, "nudge");
        let resp = open(None).await.ok()?;
        (resp.status() == StatusCode::OK).then_some(resp)
    })
    .await;
    drop((second, operator, again));
    app.shutdown().await;
}
