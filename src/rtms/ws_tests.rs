//! The WebSocket client against a server played byte by byte on an
//! in-memory pipe, and its pure parts (headers, masking, the upgrade).

use futures_util::{SinkExt as _, StreamExt as _};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _, DuplexStream, duplex};

use super::*;

const MAX: usize = 1 << 20;

impl ReadReady for DuplexStream {}

/// A server frame (never masked).
fn frame(op: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![if fin { 0x80 } else { 0 } | op];
    match payload.len() {
        n if n < 126 => out.push(n as u8),
        n if n <= 0xFFFF => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
    out
}

/// Read one client frame from the server's end: (opcode, unmasked payload).
async fn client_frame(server: &mut DuplexStream) -> (u8, Vec<u8>) {
    let mut head = [0; 2];
    server.read_exact(&mut head).await.expect("head");
    assert_eq!(head[1] & 0x80, 0x80, "client frames are masked");
    let len = match head[1] & 0x7F {
        126 => server.read_u16().await.expect("len") as usize,
        127 => server.read_u64().await.expect("len") as usize,
        n => n as usize,
    };
    let mut mask = [0; 4];
    server.read_exact(&mut mask).await.expect("mask");
    let mut payload = vec![0; len];
    server.read_exact(&mut payload).await.expect("payload");
    for (i, b) in payload.iter_mut().enumerate() {
        *b ^= mask[i % 4];
    }
    (head[0] & 0x0F, payload)
}

fn pair() -> (WebSocket<DuplexStream>, DuplexStream) {
    let (client, server) = duplex(1 << 16);
    (WebSocket::new(client, BytesMut::new(), MAX), server)
}

#[test]
fn headers_are_read_with_every_length_form() {
    let h = |b: &[u8]| parse_header(b, MAX).expect("valid");
    assert_eq!(h(&[0x81]), None, "one byte is not a header");
    assert_eq!(
        h(&[0x81, 5]),
        Some(Header {
            fin: true,
            opcode: opcode::TEXT,
            header_len: 2,
            payload_len: 5
        })
    );
    assert_eq!(h(&[0x82, 126, 1]), None);
    assert_eq!(h(&[0x82, 126, 1, 0]).map(|h| h.payload_len), Some(256));
    assert_eq!(h(&[0x02, 127, 0, 0, 0, 0, 0, 1]), None);
    let long = h(&[0x02, 127, 0, 0, 0, 0, 0, 1, 0, 0]).expect("complete");
    assert_eq!(
        (long.fin, long.header_len, long.payload_len),
        (false, 10, 65536)
    );
}

#[test]
fn bad_headers_are_refused() {
    let bad = |b: &[u8], max: usize| parse_header(b, max).is_err();
    assert!(bad(&[0x81, 0x85], MAX), "masked by the server");
    assert!(bad(&[0xC1, 5], MAX), "reserved bit");
    assert!(bad(&[0x83, 0], MAX), "unknown opcode");
    assert!(bad(&[0x09, 0], MAX), "fragmented ping");
    assert!(bad(&[0x89, 126, 0, 126], MAX), "long ping");
    assert!(bad(&[0x81, 126, 1, 0], 255), "above the limit");
    assert!(!bad(&[0x81, 126, 0, 255], 255), "at the limit");
}

#[test]
fn client_frames_are_masked_and_sized() {
    for len in [0, 125, 126, 65_535, 65_536] {
        let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
        let mut out = Vec::new();
        encode(&mut out, opcode::BINARY, &payload, [1, 2, 3, 4]);
        assert_eq!(out[0], 0x82);
        assert_eq!(out[1] & 0x80, 0x80);
        let (len_bytes, n) = match out[1] & 0x7F {
            126 => (2, u16::from_be_bytes([out[2], out[3]]) as usize),
            127 => (
                8,
                u64::from_be_bytes(out[2..10].try_into().expect("8")) as usize,
            ),
            n => (0, n as usize),
        };
        assert_eq!(n, len);
        let body = &out[2 + len_bytes + 4..];
        let unmasked: Vec<u8> = body
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ [1, 2, 3, 4][i % 4])
            .collect();
        assert_eq!(unmasked, payload);
    }
}

#[test]
fn the_upgrade_is_checked_against_the_key() {
    // The example of RFC 6455 §1.3.
    let key = "dGhlIHNhbXBsZSBub25jZQ==";
    assert_eq!(accept_key(key), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    let ok = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: WebSocket\r\n\
              connection: keep-alive, Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
    assert_eq!(check_response(ok, key), Ok(()));
    assert!(check_response(&ok.replace("xOo=", "xOp="), key).is_err());
    assert!(check_response(&ok.replace("101", "200"), key).is_err());
    assert!(check_response(&ok.replace("WebSocket\r\n", "h2c\r\n"), key).is_err());
    assert!(check_response(&ok.replace("Upgrade\r\n", "close\r\n"), key).is_err());

    let url = url::Url::parse("wss://example.test:8443/rtms/a?x=1&y=2").expect("url");
    let req = upgrade_request(&url, key);
    assert!(req.starts_with("GET /rtms/a?x=1&y=2 HTTP/1.1\r\nHost: example.test:8443\r\n"));
    assert!(req.contains("\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"));
    assert!(req.ends_with("\r\n\r\n"));
    let default_port = url::Url::parse("ws://[::1]/x").expect("url");
    assert!(upgrade_request(&default_port, key).contains("\r\nHost: [::1]\r\n"));
}

#[tokio::test]
async fn handshake_hands_over_what_came_after_the_response() {
    let (client, mut server) = duplex(1 << 16);
    let serve = tokio::spawn(async move {
        let mut req = Vec::new();
        while !req.ends_with(b"\r\n\r\n") {
            req.push(server.read_u8().await.expect("request"));
        }
        let req = String::from_utf8(req).expect("text");
        let key = req
            .lines()
            .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
            .expect("key");
        let mut resp = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {}\r\n\r\n",
            accept_key(key)
        )
        .into_bytes();
        resp.extend(frame(opcode::TEXT, true, b"first"));
        server.write_all(&resp).await.expect("response");
        server
    });
    let url = url::Url::parse("ws://127.0.0.1:9/sig").expect("url");
    let mut ws = handshake(client, &url, MAX).await.expect("upgraded");
    let _server = serve.await.expect("server");
    let first = ws.next().await.expect("message").expect("ok");
    assert_eq!(first, Message::Text(Bytes::from_static(b"first")));
}

#[tokio::test]
async fn frames_split_anywhere_come_out_whole_and_an_idle_socket_holds_no_buffer() {
    let (mut ws, mut server) = pair();
    let big = vec![b'a'; 3000];
    let mut bytes = frame(opcode::TEXT, true, b"hello");
    bytes.extend(frame(opcode::BINARY, true, &big));
    bytes.extend(frame(opcode::TEXT, false, b"frag"));
    bytes.extend(frame(opcode::PONG, true, b"p"));
    bytes.extend(frame(opcode::CONTINUATION, false, b"men"));
    bytes.extend(frame(opcode::CONTINUATION, true, b"ted"));
    for chunk in bytes.chunks(7) {
        server.write_all(chunk).await.expect("write");
    }
    let mut got = Vec::new();
    for _ in 0..4 {
        got.push(ws.next().await.expect("message").expect("ok"));
    }
    assert_eq!(
        got,
        vec![
            Message::Text(Bytes::from_static(b"hello")),
            Message::Binary(Bytes::from(big)),
            Message::Pong(Bytes::from_static(b"p")),
            Message::Text(Bytes::from_static(b"fragmented")),
        ]
    );
    assert!(futures_util::FutureExt::now_or_never(ws.next()).is_none());
    assert_eq!(ws.read_capacity(), 0, "nothing held between messages");
}

#[tokio::test]
async fn pings_are_answered_and_a_close_is_echoed_once() {
    let (mut ws, mut server) = pair();
    server
        .write_all(&frame(opcode::PING, true, b"are you there"))
        .await
        .expect("ping");
    let ping = ws.next().await.expect("message").expect("ok");
    assert_eq!(ping, Message::Ping(Bytes::from_static(b"are you there")));
    assert_eq!(
        client_frame(&mut server).await,
        (opcode::PONG, b"are you there".to_vec())
    );
    server
        .write_all(&frame(opcode::CLOSE, true, b"\x03\xe8bye"))
        .await
        .expect("close");
    let close = ws.next().await.expect("message").expect("ok");
    assert_eq!(close, Message::Close(Some((1000, "bye".into()))));
    assert!(ws.next().await.is_none(), "the stream ends at the close");
    assert_eq!(
        client_frame(&mut server).await,
        (opcode::CLOSE, vec![0x03, 0xe8])
    );
    // Our own close after theirs is not sent again; data is refused.
    ws.send(Message::Close(Some((1000, String::new()))))
        .await
        .expect("a no-op");
    assert!(ws.send(Message::Text("late".into())).await.is_err());
}

#[tokio::test]
async fn what_we_send_is_framed_and_masked() {
    let (mut ws, mut server) = pair();
    ws.send(Message::Text("{\"msg_type\":13}".into()))
        .await
        .expect("send");
    ws.send(Message::Close(Some((1001, String::new()))))
        .await
        .expect("close");
    assert_eq!(
        client_frame(&mut server).await,
        (opcode::TEXT, b"{\"msg_type\":13}".to_vec())
    );
    assert_eq!(
        client_frame(&mut server).await,
        (opcode::CLOSE, 1001u16.to_be_bytes().to_vec())
    );
}

#[tokio::test]
async fn broken_streams_end_with_an_error() {
    let cases: [(&[u8], &str); 4] = [
        (&[0x80, 1, b'x'], "continuation without a message"),
        (
            &[0x01, 1, b'x', 0x81, 1, b'y'],
            "new message inside a fragment",
        ),
        (&[0x81, 2, 0xC3, 0x28], "text that is not UTF-8"),
        (&[0x81, 5, b'a'], "closed inside a frame"),
    ];
    for (bytes, what) in cases {
        let (mut ws, mut server) = pair();
        server.write_all(bytes).await.expect("write");
        drop(server);
        let first = ws.next().await.expect("an item");
        assert!(first.is_err(), "{what}: {first:?}");
        assert!(ws.next().await.is_none(), "{what}: ends after the error");
    }
    let (client, mut server) = duplex(1 << 16);
    let mut small = WebSocket::new(client, BytesMut::new(), 4);
    server
        .write_all(&frame(opcode::TEXT, true, b"too long"))
        .await
        .expect("write");
    assert!(matches!(small.next().await, Some(Err(Error::TooLarge))));
}
