//! HTTP_GET (and the HTTP exchange SSL_GET runs over TLS).

use std::net::{IpAddr, SocketAddr};

use md5::{Digest, Md5};
use tokio::io::{AsyncRead, AsyncWrite};

use super::net::{read_some, tcp_connect, write_all, ConnectError};
use crate::config::{CheckerConfig, HttpCheck, HttpProtocol};
use crate::machine::ProbeResult;

/// The request keepalived sends (check_http.c `request_template`).
pub fn http_request(http: &HttpCheck, url_index: usize, connect: SocketAddr) -> Vec<u8> {
    let url = http.urls.get(url_index);
    let path = url.map(|u| u.path.as_str()).unwrap_or("/");
    let vhost = url
        .and_then(|u| u.virtualhost.as_deref())
        .or(http.virtualhost.as_deref());
    let host = match vhost {
        Some(v) => v.to_string(),
        None => match connect.ip() {
            IpAddr::V6(ip) => format!("[{ip}]:{}", connect.port()),
            IpAddr::V4(ip) => format!("{ip}:{}", connect.port()),
        },
    };
    let minor = if http.protocol == HttpProtocol::Http11 {
        1
    } else {
        0
    };
    let close = if http.protocol == HttpProtocol::Http10 {
        ""
    } else {
        "Connection: close\r\n"
    };
    format!(
        "GET {path} HTTP/1.{minor}\r\nUser-Agent: KeepAliveClient\r\n{close}Host: {host}\r\n\r\n"
    )
    .into_bytes()
}

/// Incremental HTTP response reader: status code from the status line, then
/// the MD5 of the body (limited to Content-Length when present, as keepalived).
#[derive(Default)]
pub struct HttpResponse {
    head: Vec<u8>,
    header_done: bool,
    /// Parsed status code (0 if unparsable).
    pub status: u16,
    /// Content-Length header, if any.
    pub content_length: Option<u64>,
    /// Body bytes received.
    pub rx_bytes: u64,
    md5: Md5,
}

/// Largest header block accepted.
const MAX_HEAD: usize = 64 * 1024;

impl HttpResponse {
    /// Feed received bytes. Returns `false` if the header is too large.
    pub fn feed(&mut self, data: &[u8]) -> bool {
        if self.header_done {
            self.feed_body(data);
            return true;
        }
        let start = self.head.len().saturating_sub(3);
        self.head.extend_from_slice(data);
        match find_header_end(&self.head, start) {
            Some((hdr_len, body_start)) => {
                self.header_done = true;
                let head = std::mem::take(&mut self.head);
                self.parse_head(&head[..hdr_len]);
                self.feed_body(head.get(body_start..).unwrap_or(&[]));
                true
            }
            None => self.head.len() <= MAX_HEAD,
        }
    }

    fn feed_body(&mut self, body: &[u8]) {
        let take = match self.content_length {
            Some(cl) => (cl.saturating_sub(self.rx_bytes)).min(body.len() as u64) as usize,
            None => body.len(),
        };
        self.md5.update(&body[..take]);
        self.rx_bytes += body.len() as u64;
    }

    fn parse_head(&mut self, head: &[u8]) {
        let text = String::from_utf8_lossy(head);
        let mut lines = text.lines();
        if let Some(status_line) = lines.next() {
            // "HTTP/1.x NNN reason"
            self.status = status_line
                .split_whitespace()
                .nth(1)
                .and_then(|c| c.get(..3))
                .and_then(|c| c.parse().ok())
                .unwrap_or(0);
        }
        for l in lines {
            if let Some((k, v)) = l.split_once(':') {
                if k.trim().eq_ignore_ascii_case("content-length") {
                    self.content_length = v.trim().parse().ok();
                }
            }
        }
    }

    /// Has the whole header been received?
    pub fn header_done(&self) -> bool {
        self.header_done
    }

    /// Is the body complete according to Content-Length?
    pub fn complete(&self) -> bool {
        self.header_done && self.content_length.is_some_and(|cl| self.rx_bytes >= cl)
    }

    /// MD5 of the body.
    pub fn digest(&self) -> [u8; 16] {
        self.md5.clone().finalize().into()
    }
}

fn find_header_end(buf: &[u8], from: usize) -> Option<(usize, usize)> {
    let mut i = from;
    while i < buf.len() {
        if buf[i..].starts_with(b"\r\n\r\n") {
            return Some((i, i + 4));
        }
        if buf[i..].starts_with(b"\n\n") {
            return Some((i, i + 2));
        }
        i += 1;
    }
    None
}

pub(super) async fn http_exchange<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    http: &HttpCheck,
    url_index: usize,
    cfg: &CheckerConfig,
) -> ProbeResult {
    let t = cfg.connect_timeout;
    let req = http_request(http, url_index, cfg.connect);
    if !write_all(stream, &req, t).await {
        return ProbeResult::failure("Cannot send get request to");
    }
    let mut resp = HttpResponse::default();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match read_some(stream, &mut buf, t).await {
            Ok(0) => break,
            Ok(n) => {
                if !resp.feed(&buf[..n]) {
                    return ProbeResult::failure("HTTP header too large from");
                }
                if resp.complete() {
                    break;
                }
            }
            Err("timeout") => return ProbeResult::failure("Timeout HTTP read"),
            Err(_) => {
                // Deviation: keepalived fails on any read error; a reset (or a TLS
                // peer closing without close_notify) after a complete header is
                // treated as end of body here.
                if resp.header_done() {
                    break;
                }
                return ProbeResult::failure("Read error with");
            }
        }
    }
    if !resp.header_done() {
        return ProbeResult::failure("Read, no data received from ");
    }
    let Some(url) = http.urls.get(url_index) else {
        return ProbeResult::success();
    };
    if !url.status_ok(resp.status) {
        return ProbeResult::failure(format!("HTTP status code error to (got {})", resp.status));
    }
    if let Some(d) = url.digest {
        if resp.digest() != d {
            return ProbeResult::failure("MD5 digest error to");
        }
        return ProbeResult::success_with("MD5 digest");
    }
    ProbeResult::success_with("HTTP status code")
}

pub(super) fn connect_failure(e: ConnectError) -> ProbeResult {
    match e {
        ConnectError::Timeout => ProbeResult::failure("Timeout connecting"),
        ConnectError::Failed(_) => ProbeResult::failure("Error connecting"),
        ConnectError::Socket(e) => ProbeResult::failure(format!("Connection failed ({e})")),
    }
}

/// HTTP_GET: fetch url `url_index` on a fresh connection.
pub async fn probe_http(
    cfg: &CheckerConfig,
    http: &HttpCheck,
    url_index: Option<usize>,
) -> ProbeResult {
    let Some(i) = url_index else {
        return ProbeResult::success();
    };
    let mut s = match tcp_connect(cfg).await {
        Ok(s) => s,
        Err(e) => return connect_failure(e),
    };
    http_exchange(&mut s, http, i, cfg).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Url;

    #[test]
    fn request_template() {
        let h = HttpCheck {
            urls: vec![Url::new("/x")],
            ..Default::default()
        };
        let a: SocketAddr = "10.0.0.2:8080".parse().unwrap();
        assert_eq!(
            String::from_utf8(http_request(&h, 0, a)).unwrap(),
            "GET /x HTTP/1.0\r\nUser-Agent: KeepAliveClient\r\nHost: 10.0.0.2:8080\r\n\r\n"
        );
        let h = HttpCheck {
            urls: vec![Url::new("/")],
            virtualhost: Some("www.example.com".into()),
            protocol: HttpProtocol::Http11,
            fast_recovery: false,
        };
        let a6: SocketAddr = "[::1]:80".parse().unwrap();
        assert_eq!(
            String::from_utf8(http_request(&h, 0, a6)).unwrap(),
            "GET / HTTP/1.1\r\nUser-Agent: KeepAliveClient\r\nConnection: close\r\nHost: www.example.com\r\n\r\n"
        );
        let h = HttpCheck {
            urls: vec![Url::new("/")],
            protocol: HttpProtocol::Http10C,
            ..Default::default()
        };
        assert!(String::from_utf8(http_request(&h, 0, a6))
            .unwrap()
            .ends_with("Connection: close\r\nHost: [::1]:80\r\n\r\n"));
    }

    #[test]
    fn response_parser_split_anywhere() {
        let raw = b"HTTP/1.1 404 Not Found\r\nContent-Length: 5\r\n\r\nhelloEXTRA";
        for split in 0..raw.len() {
            let mut r = HttpResponse::default();
            assert!(r.feed(&raw[..split]));
            assert!(r.feed(&raw[split..]));
            assert_eq!(r.status, 404);
            assert_eq!(r.content_length, Some(5));
            let want: [u8; 16] = Md5::digest(b"hello").into();
            assert_eq!(r.digest(), want, "split {split}");
        }
        let mut r = HttpResponse::default();
        r.feed(b"garbage\n\nbody");
        assert_eq!(r.status, 0);
    }
}
