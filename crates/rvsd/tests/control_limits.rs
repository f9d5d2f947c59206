//! The control socket bounds what a client can make rvsd buffer: a body
//! over 1 MiB gets 413 with a JSON error, a head over 16 KiB or with more
//! than 32 headers gets 431, and rvsd keeps serving afterwards.

mod common;

use common::*;
use rvs_api::{ApiError, Command, ErrorCode, Reply};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

const MIB: usize = 1 << 20;

/// Send `head` then `body` on a new connection; (status, response body).
/// A write error after the server answered early (it may close without
/// reading the rest) is not a failure: the response is what counts.
fn raw(d: &Rvsd, head: &str, body: &[u8]) -> (u16, String) {
    let mut s = UnixStream::connect(&d.socket).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
    let _ = s.write_all(head.as_bytes()).and_then(|_| s.write_all(body));
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {text:?}"));
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

fn post(d: &Rvsd, body: &[u8]) -> (u16, String) {
    let head = format!(
        "POST /v1/command HTTP/1.1\r\nHost: rvsd\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    raw(d, &head, body)
}

fn still_serving(d: &Rvsd) {
    assert!(matches!(d.call(Command::GetInfo), Reply::Info(_)));
}

#[test]
fn body_over_the_cap_gets_413_with_a_json_error() {
    let d = Rvsd::start(&[]);
    // A valid command padded with whitespace to just under the cap is
    // served: the cap is not in the way of real commands.
    let mut ok = br#"{"cmd":"get_info"}"#.to_vec();
    ok.resize(MIB - 1, b' ');
    let (status, body) = post(&d, &ok);
    assert_eq!(status, 200, "{body}");
    // One byte over: 413 and an ApiError naming the limit.
    let mut big = br#"{"cmd":"get_info"}"#.to_vec();
    big.resize(MIB + 1, b' ');
    let (status, body) = post(&d, &big);
    assert_eq!(status, 413, "{body}");
    let e: ApiError = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(e.code, ErrorCode::BadRequest);
    assert_eq!(
        e.message,
        "request body larger than 1024 KiB: send one command per request"
    );
    // A Content-Length far beyond the cap is refused at once, without
    // waiting for the body.
    let head = "POST /v1/command HTTP/1.1\r\nHost: rvsd\r\nContent-Type: application/json\r\n\
                Content-Length: 10000000000\r\nConnection: close\r\n\r\n";
    let (status, _) = raw(&d, head, b"{");
    assert_eq!(status, 413);
    // A chunked body (no Content-Length) over the cap: 413 while reading.
    let head = "POST /v1/command HTTP/1.1\r\nHost: rvsd\r\nContent-Type: application/json\r\n\
                Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
    let chunk = vec![b' '; 64 << 10];
    let mut chunked = Vec::new();
    for _ in 0..20 {
        chunked.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        chunked.extend_from_slice(&chunk);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let (status, body) = raw(&d, head, &chunked);
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("request body larger than 1024 KiB"), "{body}");
    still_serving(&d);
}

#[test]
fn oversized_or_too_many_headers_get_431() {
    let d = Rvsd::start(&[]);
    let long = format!(
        "GET /v1/info HTTP/1.1\r\nHost: rvsd\r\nX-Pad: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(20 << 10)
    );
    assert_eq!(raw(&d, &long, b"").0, 431);
    let many: String = (0..40).map(|i| format!("X-H{i}: v\r\n")).collect();
    let many = format!("GET /v1/info HTTP/1.1\r\nHost: rvsd\r\n{many}Connection: close\r\n\r\n");
    assert_eq!(raw(&d, &many, b"").0, 431);
    // Within the limits: served.
    let fine = "GET /v1/info HTTP/1.1\r\nHost: rvsd\r\nConnection: close\r\n\r\n";
    let (status, body) = raw(&d, fine, b"");
    assert_eq!(status, 200, "{body}");
    still_serving(&d);
}
