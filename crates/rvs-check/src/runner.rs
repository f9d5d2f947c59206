//! Async (tokio) probes and the driver that pumps a [`VirtualServer`].
//!
//! Every probe is bounded: each network operation by the checker's
//! `connect_timeout` (as keepalived arms each read/write with it), MISC_CHECK by
//! `misc_timeout` (default `delay_loop`), plus a global safety cap so a checker
//! can never stay "in flight" forever. Network input is never trusted: parsers
//! are bounds-checked and nothing here panics on it.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use md5::{Digest, Md5};
use socket2::{Domain, Socket, Type};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream, UdpSocket};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::{
    fmt_trio, CheckKind, CheckerConfig, DnsCheck, HttpCheck, HttpProtocol, Protocol, SslCheck,
    UdpCheck, VirtualServerConfig,
};
use crate::machine::{Action, CheckerId, Probe, ProbeResult, VirtualServer, VirtualServerStatus};
use crate::script::{self, ScriptOutcome};

// ===== sockets =====

fn new_socket(cfg: &CheckerConfig, ty: Type, proto: socket2::Protocol) -> io::Result<Socket> {
    let s = Socket::new(Domain::for_address(cfg.connect), ty, Some(proto))?;
    s.set_nonblocking(true)?;
    if let Some(dev) = &cfg.bind_if {
        s.bind_device(Some(dev.as_bytes()))?;
    }
    if let Some(mark) = cfg.fwmark {
        s.set_mark(mark)?;
    }
    if let Some(b) = cfg.bind {
        s.bind(&b.into())?;
    }
    Ok(s)
}

/// Connect a TCP stream as keepalived's `tcp_bind_connect` (bindto/bind_port,
/// bind_if, fwmark), bounded by `connect_timeout`.
pub async fn tcp_connect(cfg: &CheckerConfig) -> Result<TcpStream, ConnectError> {
    let s = new_socket(cfg, Type::STREAM, socket2::Protocol::TCP).map_err(ConnectError::Socket)?;
    let sock = TcpSocket::from_std_stream(std::net::TcpStream::from(s));
    match tokio::time::timeout(cfg.connect_timeout, sock.connect(cfg.connect)).await {
        Ok(Ok(st)) => Ok(st),
        Ok(Err(e)) => Err(ConnectError::Failed(e)),
        Err(_) => Err(ConnectError::Timeout),
    }
}

/// Why a connection failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// Could not create/bind the socket.
    #[error("socket setup failed: {0}")]
    Socket(io::Error),
    /// Connect failed (refused, unreachable...).
    #[error("connect failed: {0}")]
    Failed(io::Error),
    /// No answer within connect_timeout.
    #[error("connect timed out")]
    Timeout,
}

async fn read_some<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut [u8],
    t: Duration,
) -> Result<usize, &'static str> {
    match tokio::time::timeout(t, r.read(buf)).await {
        Ok(Ok(n)) => Ok(n),
        Ok(Err(_)) => Err("read error"),
        Err(_) => Err("timeout"),
    }
}

async fn write_all<W: AsyncWrite + Unpin>(w: &mut W, data: &[u8], t: Duration) -> bool {
    matches!(
        tokio::time::timeout(t, async { w.write_all(data).await.and(w.flush().await) }).await,
        Ok(Ok(()))
    )
}

// ===== TCP_CHECK =====

/// TCP_CHECK: a connect within `connect_timeout` is a success.
pub async fn probe_tcp(cfg: &CheckerConfig) -> ProbeResult {
    let label = fmt_trio(cfg.connect, Protocol::Tcp);
    match tcp_connect(cfg).await {
        Ok(_) => ProbeResult::success(),
        Err(ConnectError::Timeout) => {
            ProbeResult::failure(format!("TCP connection to {label} timedout."))
        }
        Err(ConnectError::Socket(e)) => {
            ProbeResult::failure(format!("TCP socket bind failed ({e})."))
        }
        Err(ConnectError::Failed(_)) => {
            ProbeResult::failure(format!("TCP connection to {label} failed."))
        }
    }
}

// ===== HTTP_GET / SSL_GET =====

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

async fn http_exchange<S: AsyncRead + AsyncWrite + Unpin>(
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

fn connect_failure(e: ConnectError) -> ProbeResult {
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

mod tls {
    use std::sync::Arc;

    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use rustls::{DigitallySignedStruct, SignatureScheme};

    /// keepalived does not verify the certificate unless a CA is configured.
    #[derive(Debug)]
    pub struct AcceptAny(pub Arc<rustls::crypto::CryptoProvider>);

    impl ServerCertVerifier for AcceptAny {
        fn verify_server_cert(
            &self,
            _end_entity: &CertificateDer<'_>,
            _intermediates: &[CertificateDer<'_>],
            _server_name: &ServerName<'_>,
            _ocsp_response: &[u8],
            _now: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            _message: &[u8],
            _cert: &CertificateDer<'_>,
            _dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            Ok(HandshakeSignatureValid::assertion())
        }
        fn verify_tls13_signature(
            &self,
            _message: &[u8],
            _cert: &CertificateDer<'_>,
            _dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            Ok(HandshakeSignatureValid::assertion())
        }
        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }

    pub fn client_config(
        ca_file: Option<&std::path::Path>,
    ) -> Result<rustls::ClientConfig, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        let cfg = match ca_file {
            None => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
                .with_no_client_auth(),
            Some(p) => {
                let pem = std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))?;
                let mut roots = rustls::RootCertStore::empty();
                for c in CertificateDer::pem_slice_iter(&pem) {
                    let c = c.map_err(|e| e.to_string())?;
                    roots.add(c).map_err(|e| e.to_string())?;
                }
                builder.with_root_certificates(roots).with_no_client_auth()
            }
        };
        Ok(cfg)
    }
}

/// SSL_GET: TLS (rustls; certificate not verified unless `ca_file`), SNI when
/// `enable_sni` (sni_name, else the virtualhost), then as HTTP_GET.
pub async fn probe_ssl(
    cfg: &CheckerConfig,
    ssl: &SslCheck,
    url_index: Option<usize>,
) -> ProbeResult {
    use rustls::pki_types::ServerName;
    let Some(i) = url_index else {
        return ProbeResult::success();
    };
    let tls_cfg = match tls::client_config(ssl.ca_file.as_deref()) {
        Ok(c) => Arc::new(c),
        Err(e) => return ProbeResult::failure(format!("SSL setup error: {e}")),
    };
    let sni = if ssl.enable_sni {
        ssl.sni_name
            .clone()
            .or_else(|| ssl.http.urls.get(i).and_then(|u| u.virtualhost.clone()))
            .or_else(|| ssl.http.virtualhost.clone())
    } else {
        None
    };
    let server_name = match sni.and_then(|n| ServerName::try_from(n).ok()) {
        Some(n) => n,
        None => ServerName::IpAddress(cfg.connect.ip().into()),
    };
    let tcp = match tcp_connect(cfg).await {
        Ok(s) => s,
        Err(e) => return connect_failure(e),
    };
    let connector = tokio_rustls::TlsConnector::from(tls_cfg);
    let mut s = match tokio::time::timeout(cfg.connect_timeout, connector.connect(server_name, tcp))
        .await
    {
        Ok(Ok(s)) => s,
        Ok(Err(_)) => {
            return ProbeResult::failure("SSL handshake/communication error connecting to")
        }
        Err(_) => return ProbeResult::failure("Timeout connecting"),
    };
    http_exchange(&mut s, &ssl.http, i, cfg).await
}

// ===== MISC_CHECK =====

/// MISC_CHECK: run the script; the machine maps the exit code.
pub async fn probe_misc(cfg: &CheckerConfig, m: &crate::config::MiscCheck) -> ProbeResult {
    let timeout = m.timeout.unwrap_or(cfg.delay_loop);
    match script::run_with_timeout(&m.path, m.user, timeout).await {
        ScriptOutcome::Exited(c) => ProbeResult::exit(c),
        ScriptOutcome::Signaled { signal, timed_out } => ProbeResult::signaled(signal, timed_out),
        // keepalived's forked child exits 127 when exec fails
        ScriptOutcome::SpawnFailed => ProbeResult::exit(127),
    }
}

// ===== SMTP_CHECK =====

async fn smtp_line<S: AsyncRead + Unpin>(s: &mut S, t: Duration) -> Result<String, &'static str> {
    let mut buf = Vec::new();
    let mut b = [0u8; 512];
    loop {
        let n = read_some(s, &mut b, t).await.map_err(|e| {
            if e == "timeout" {
                "Read timeout from server"
            } else {
                "Read failure from server"
            }
        })?;
        if n == 0 {
            return Err("Read failure from server");
        }
        buf.extend_from_slice(&b[..n]);
        if let Some(pos) = buf.iter().position(|&c| c == b'\n') {
            buf.truncate(pos);
            return Ok(String::from_utf8_lossy(&buf).into_owned());
        }
        if buf.len() > 4096 {
            buf.clear(); // keepalived wraps its buffer when full
        }
    }
}

/// keepalived's `smtp_get_status`: exactly 3 digits followed by end or space.
pub fn smtp_status(line: &str) -> Option<u16> {
    let digits: String = line.chars().take_while(|c| c.is_ascii_digit()).collect();
    if digits.len() != 3 {
        return None;
    }
    match line[3..].chars().next() {
        None | Some(' ') => digits.parse().ok(),
        _ => None,
    }
}

/// SMTP_CHECK: banner 220, `HELO name` -> 250, `QUIT` -> any line.
pub async fn probe_smtp(cfg: &CheckerConfig, helo: &str) -> ProbeResult {
    let label = fmt_trio(cfg.connect, Protocol::Tcp);
    let mut s = match tcp_connect(cfg).await {
        Ok(s) => s,
        Err(ConnectError::Timeout) => {
            return ProbeResult::failure(format!("Connection timeout to server {label}"))
        }
        Err(ConnectError::Failed(_)) => {
            return ProbeResult::failure(format!("Error connecting to server {label}"))
        }
        Err(ConnectError::Socket(e)) => {
            return ProbeResult::failure(format!("Could not connect to server {label} ({e})"))
        }
    };
    let t = cfg.connect_timeout;
    let fail = |m: &str| ProbeResult::failure(format!("{m} {label}"));
    match smtp_line(&mut s, t).await {
        Ok(l) if smtp_status(&l) == Some(220) => {}
        Ok(_) => return fail("Bad greeting banner from server"),
        Err(e) => return fail(e),
    }
    if !write_all(&mut s, format!("HELO {helo}\r\n").as_bytes(), t).await {
        return fail("Write failure to server");
    }
    match smtp_line(&mut s, t).await {
        Ok(l) if smtp_status(&l) == Some(250) => {}
        Ok(_) => return fail("Bad HELO response from server"),
        Err(e) => return fail(e),
    }
    if !write_all(&mut s, b"QUIT\r\n", t).await {
        return fail("Write failure to server");
    }
    match smtp_line(&mut s, t).await {
        Ok(_) => ProbeResult::success(),
        Err(e) => fail(e),
    }
}

// ===== DNS_CHECK =====

/// Build keepalived's DNS query (RD set, one question, class IN).
pub fn dns_query(id: u16, dns: &DnsCheck) -> Vec<u8> {
    let mut q = Vec::with_capacity(32 + dns.name.len());
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&0x0100u16.to_be_bytes()); // RD
    q.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    for label in dns.name.split('.').filter(|l| !l.is_empty()) {
        let l = &label.as_bytes()[..label.len().min(63)];
        q.push(l.len() as u8);
        q.extend_from_slice(l);
    }
    q.push(0);
    q.extend_from_slice(&dns.qtype.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes());
    q
}

fn new_udp(cfg: &CheckerConfig) -> io::Result<UdpSocket> {
    let s = new_socket(cfg, Type::DGRAM, socket2::Protocol::UDP)?;
    UdpSocket::from_std(std::net::UdpSocket::from(s))
}

/// DNS_CHECK: any response with our id, QR set and RCODE 0 is a success.
pub async fn probe_dns(cfg: &CheckerConfig, dns: &DnsCheck) -> ProbeResult {
    let sock = match new_udp(cfg) {
        Ok(s) => s,
        Err(_) => return ProbeResult::failure("failed to create socket."),
    };
    if sock.connect(cfg.connect).await.is_err() {
        return ProbeResult::failure(format!("network unreachable for {}", cfg.connect));
    }
    let id: u16 = rand::random();
    let q = dns_query(id, dns);
    if sock.send(&q).await.map(|n| n != q.len()).unwrap_or(true) {
        return ProbeResult::failure("failed to write socket.");
    }
    let deadline = tokio::time::Instant::now() + cfg.connect_timeout;
    let mut buf = [0u8; 1024];
    loop {
        let n = match tokio::time::timeout_at(deadline, sock.recv(&mut buf)).await {
            Err(_) => return ProbeResult::failure("read timeout from socket"),
            Ok(Err(e)) => return ProbeResult::failure(format!("failed to read socket; {e}")),
            Ok(Ok(n)) => n,
        };
        if n < 12 || buf[0..2] != id.to_be_bytes() || buf[2] & 0x80 == 0 {
            continue;
        }
        let rcode = buf[3] & 0x0f;
        if rcode != 0 {
            return ProbeResult::failure(format!("read error occurred. (rcode = {rcode})"));
        }
        return ProbeResult::success();
    }
}

// ===== UDP_CHECK =====

/// keepalived's `check_udp_reply`: length bounds, then prefix compare with mask.
pub fn udp_reply_ok(reply: &[u8], u: &UdpCheck) -> bool {
    if u.reply_data.is_empty() {
        return true;
    }
    if reply.len() < u.min_reply_length || reply.len() > u.max_reply_length {
        return false;
    }
    reply
        .iter()
        .zip(&u.reply_data)
        .enumerate()
        .all(|(i, (r, d))| {
            let mask = u.reply_mask.get(i).copied().unwrap_or(0);
            (r ^ d) & !mask == 0
        })
}

/// UDP_CHECK: send the payload; with `require_reply` a (matching) reply within
/// connect_timeout is needed, otherwise only an ICMP error (ECONNREFUSED) fails.
pub async fn probe_udp(cfg: &CheckerConfig, u: &UdpCheck) -> ProbeResult {
    let label = fmt_trio(cfg.connect, Protocol::Udp);
    let sock = match new_udp(cfg) {
        Ok(s) => s,
        Err(_) => return ProbeResult::failure("UDP connect fail to create socket."),
    };
    if sock.connect(cfg.connect).await.is_err() || sock.send(&u.payload).await.is_err() {
        return ProbeResult::failure(format!("UDP connection to {label} failed."));
    }
    let mut buf = vec![0u8; u.max_reply_length.max(u.reply_data.len()) + 1];
    match tokio::time::timeout(cfg.connect_timeout, sock.recv(&mut buf)).await {
        Ok(Ok(n)) => {
            if udp_reply_ok(&buf[..n], u) {
                ProbeResult::success()
            } else {
                ProbeResult::failure(format!("UDP check to {label} reply data mismatch."))
            }
        }
        Ok(Err(_)) => ProbeResult::failure(format!("UDP connection to {label} failed.")),
        Err(_) if u.require_reply => {
            ProbeResult::failure(format!("UDP connection to {label} failed."))
        }
        Err(_) => ProbeResult::success(),
    }
}

// ===== PING_CHECK =====

fn icmp_checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for ch in data.chunks(2) {
        let w = if ch.len() == 2 {
            u16::from_be_bytes([ch[0], ch[1]])
        } else {
            u16::from_be_bytes([ch[0], 0])
        };
        sum += w as u32;
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn ping_blocking(target: IpAddr, timeout: Duration, cfg: &CheckerConfig) -> Result<(), String> {
    let v6 = target.is_ipv6();
    let (domain, proto) = if v6 {
        (Domain::IPV6, socket2::Protocol::ICMPV6)
    } else {
        (Domain::IPV4, socket2::Protocol::ICMPV4)
    };
    let (sock, raw) = match Socket::new(domain, Type::DGRAM, Some(proto)) {
        Ok(s) => (s, false),
        Err(_) => (
            Socket::new(domain, Type::RAW, Some(proto))
                .map_err(|e| format!("cannot create ICMP socket: {e}"))?,
            true,
        ),
    };
    if let Some(dev) = &cfg.bind_if {
        sock.bind_device(Some(dev.as_bytes()))
            .map_err(|e| e.to_string())?;
    }
    if let Some(mark) = cfg.fwmark {
        sock.set_mark(mark).map_err(|e| e.to_string())?;
    }
    if let Some(b) = cfg.bind {
        sock.bind(&SocketAddr::new(b.ip(), 0).into())
            .map_err(|e| e.to_string())?;
    }
    let ident: u16 = rand::random();
    let seq: u16 = rand::random();
    let mut pkt = vec![if v6 { 128 } else { 8 }, 0, 0, 0];
    pkt.extend_from_slice(&ident.to_be_bytes());
    pkt.extend_from_slice(&seq.to_be_bytes());
    pkt.extend_from_slice(b"rvs-check ping");
    if !v6 {
        let c = icmp_checksum(&pkt);
        pkt[2..4].copy_from_slice(&c.to_be_bytes());
    }
    let dst: SocketAddr = SocketAddr::new(target, 0);
    sock.send_to(&pkt, &dst.into())
        .map_err(|e| format!("send failed: {e}"))?;
    let deadline = Instant::now() + timeout;
    let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 2048];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err("timeout".into());
        }
        sock.set_read_timeout(Some(left))
            .map_err(|e| e.to_string())?;
        let (n, from) = match sock.recv_from(&mut buf) {
            Ok(x) => x,
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::TimedOut =>
            {
                return Err("timeout".into())
            }
            Err(e) => return Err(e.to_string()),
        };
        // SAFETY: recv_from initialised the first n bytes.
        let data: Vec<u8> = buf[..n]
            .iter()
            .map(|b| unsafe { b.assume_init() })
            .collect();
        if from.as_socket().map(|a| a.ip()) != Some(target) {
            continue;
        }
        let icmp = if raw && !v6 {
            let ihl = data.first().map(|b| ((b & 0x0f) as usize) * 4).unwrap_or(0);
            data.get(ihl..).unwrap_or(&[]).to_vec()
        } else {
            data
        };
        if icmp.len() < 8 {
            continue;
        }
        let reply_type = if v6 { 129 } else { 0 };
        // DGRAM ICMP sockets rewrite the identifier; match on sequence then.
        let id_ok = !raw || icmp[4..6] == ident.to_be_bytes();
        if icmp[0] == reply_type && id_ok && icmp[6..8] == seq.to_be_bytes() {
            return Ok(());
        }
    }
}

/// PING_CHECK: one ICMP echo, reply within connect_timeout. Uses an unprivileged
/// ICMP datagram socket, falling back to a raw socket (root).
pub async fn probe_ping(cfg: &CheckerConfig) -> ProbeResult {
    let cfg2 = cfg.clone();
    let target = cfg.connect.ip();
    let t = cfg.connect_timeout;
    match tokio::task::spawn_blocking(move || ping_blocking(target, t, &cfg2)).await {
        Ok(Ok(())) => ProbeResult::success(),
        Ok(Err(e)) => ProbeResult::failure(format!("ICMP echo to {target} failed: {e}")),
        Err(_) => ProbeResult::failure("ICMP probe task failed"),
    }
}

// ===== FILE_CHECK =====

/// FILE_CHECK: read the leading integer of the file (keepalived `track_file`
/// semantics: unparsable content reads as 0).
pub async fn probe_file(path: &std::path::Path) -> ProbeResult {
    match tokio::fs::read(path).await {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes[..bytes.len().min(64)]).into_owned();
            let t = text.trim_start();
            let end = t
                .char_indices()
                .take_while(|(i, c)| c.is_ascii_digit() || (*i == 0 && (*c == '-' || *c == '+')))
                .count();
            ProbeResult::file(t[..end].parse().unwrap_or(0))
        }
        Err(e) => ProbeResult::failure(format!("cannot read {}: {e}", path.display())),
    }
}

// ===== dispatch =====

/// Run the probe `probe` for checker `cfg`.
pub async fn run_probe(cfg: &CheckerConfig, probe: &Probe) -> ProbeResult {
    match &cfg.kind {
        CheckKind::Tcp => probe_tcp(cfg).await,
        CheckKind::Http(h) => probe_http(cfg, h, probe.url_index).await,
        CheckKind::Ssl(s) => probe_ssl(cfg, s, probe.url_index).await,
        CheckKind::Misc(m) => probe_misc(cfg, m).await,
        CheckKind::Smtp { helo_name } => probe_smtp(cfg, helo_name).await,
        CheckKind::Dns(d) => probe_dns(cfg, d).await,
        CheckKind::Udp(u) => probe_udp(cfg, u).await,
        CheckKind::Ping => probe_ping(cfg).await,
        CheckKind::File(f) => probe_file(&f.path).await,
    }
}

/// Upper bound on a probe's duration (safety net over the per-step timeouts).
fn probe_cap(cfg: &CheckerConfig) -> Duration {
    match &cfg.kind {
        CheckKind::Misc(m) => m.timeout.unwrap_or(cfg.delay_loop) + Duration::from_secs(5),
        _ => (cfg.connect_timeout * 8).max(Duration::from_secs(10)),
    }
}

// ===== driver =====

/// Shared status snapshot, refreshed after every event.
pub type StatusHandle = Arc<Mutex<VirtualServerStatus>>;

/// How [`run_virtual_server`] handles the non-table actions, and its inputs.
#[derive(Debug)]
pub struct DriverOptions {
    /// Execute `RunScript` actions itself (fire and forget). Default true.
    pub run_scripts: bool,
    /// Emit `Log` actions through `tracing` (target `rvs_check`, INFO). Default true.
    pub log: bool,
    /// Also send `Log` / `RunScript` actions on the channel. Default false
    /// (only table actions are sent).
    pub forward_all: bool,
    /// ha_suspend: `true` suspends the checkers (VIP absent). `None` = never.
    pub suspend: Option<watch::Receiver<bool>>,
    /// Seed for warmup jitter (`None` = random).
    pub seed: Option<u64>,
    /// New configurations of this virtual server (SIGHUP reload): applied with
    /// [`VirtualServer::reload`], keeping the state of unchanged real servers.
    pub reload: Option<mpsc::Receiver<VirtualServerConfig>>,
    /// Start from the status a predecessor process left (binary upgrade),
    /// with [`VirtualServer::take_over`], instead of keepalived's start-up.
    pub initial: Option<VirtualServerStatus>,
}

impl Default for DriverOptions {
    fn default() -> Self {
        DriverOptions {
            run_scripts: true,
            log: true,
            forward_all: false,
            suspend: None,
            seed: None,
            reload: None,
            initial: None,
        }
    }
}

async fn dispatch(
    vs: &mut VirtualServer,
    opts: &DriverOptions,
    tx: &mpsc::Sender<(String, Action)>,
) {
    while let Some(a) = vs.poll_action() {
        let table = match &a {
            Action::Log { text } => {
                if opts.log {
                    tracing::info!(target: "rvs_check", "{text}");
                }
                false
            }
            Action::RunScript { script, .. } => {
                if opts.run_scripts {
                    script::spawn_notify(script);
                }
                false
            }
            _ => true,
        };
        if table || opts.forward_all {
            let _ = tx.send((vs.name().to_string(), a)).await;
        }
    }
}

/// Drive one virtual server until `cancel` fires: sleep until the machine's
/// next deadline, run due probes concurrently, feed results back, and send
/// table actions (`AddDest`, `RemoveDest`, `SetWeight`, `AddSorry`,
/// `RemoveSorry`, `SetSorryWeight`) on `action_tx` tagged with the VS name.
/// On cancellation the machine's shutdown actions (remove all destinations;
/// omega scripts) are sent too.
pub async fn run_virtual_server(
    cfg: VirtualServerConfig,
    mut opts: DriverOptions,
    action_tx: mpsc::Sender<(String, Action)>,
    cancel: CancellationToken,
    status: StatusHandle,
) {
    let mut checkers: Vec<Vec<CheckerConfig>> = cfg
        .real_servers
        .iter()
        .map(|r| r.checkers.clone())
        .collect();
    let seed = opts.seed.unwrap_or_else(rand::random);
    let mut vs = match opts.initial.take() {
        Some(prev) => VirtualServer::take_over(cfg, &prev, Instant::now(), seed),
        None => VirtualServer::new(cfg, Instant::now(), seed),
    };
    let mut tasks: JoinSet<ProbeResult> = JoinSet::new();
    let mut in_flight: HashMap<tokio::task::Id, CheckerId> = HashMap::new();
    let mut suspend = opts.suspend.take();
    let mut reload = opts.reload.take();
    if let Some(rx) = &suspend {
        vs.set_suspended(*rx.borrow());
    }
    loop {
        dispatch(&mut vs, &opts, &action_tx).await;
        if let Ok(mut st) = status.lock() {
            *st = vs.status(Instant::now());
        }
        let deadline = vs.poll_timeout();
        let sleep = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
                None => std::future::pending().await,
            }
        };
        let suspend_changed = async {
            match suspend.as_mut() {
                Some(rx) => rx.changed().await.is_ok(),
                None => std::future::pending().await,
            }
        };
        let reload_next = async {
            match reload.as_mut() {
                Some(rx) => rx.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = cancel.cancelled() => break,
            new_cfg = reload_next => {
                match new_cfg {
                    Some(new_cfg) => {
                        tasks.abort_all();
                        in_flight.clear();
                        checkers = new_cfg.real_servers.iter().map(|r| r.checkers.clone()).collect();
                        vs.reload(new_cfg, Instant::now(), rand::random());
                    }
                    None => reload = None,
                }
            }
            Some(joined) = tasks.join_next_with_id(), if !tasks.is_empty() => {
                let (task, res) = match joined {
                    Ok((task, res)) => (task, res),
                    Err(e) => (e.id(), ProbeResult::failure("probe task failed")),
                };
                if let Some(id) = in_flight.remove(&task) {
                    vs.handle_result(Instant::now(), id, &res);
                }
            }
            changed = suspend_changed => {
                match (changed, suspend.as_ref()) {
                    (true, Some(rx)) => { let s = *rx.borrow(); vs.set_suspended(s); }
                    _ => suspend = None,
                }
            }
            _ = sleep => {
                vs.handle_timeout(Instant::now());
                while let Some(p) = vs.poll_probe() {
                    let Some(cc) = checkers.get(p.id.rs).and_then(|c| c.get(p.id.checker)).cloned() else { continue };
                    let id = p.id;
                    let handle = tasks.spawn(async move {
                        let cap = probe_cap(&cc);
                        match tokio::time::timeout(cap, run_probe(&cc, &p)).await {
                            Ok(r) => r,
                            Err(_) => ProbeResult::failure("probe timed out"),
                        }
                    });
                    in_flight.insert(handle.id(), id);
                }
            }
        }
    }
    tasks.abort_all();
    vs.shutdown();
    dispatch(&mut vs, &opts, &action_tx).await;
    if let Ok(mut st) = status.lock() {
        *st = vs.status(Instant::now());
    }
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

    #[test]
    fn smtp_status_rules() {
        assert_eq!(smtp_status("220 mail ESMTP\r"), Some(220));
        assert_eq!(smtp_status("250"), Some(250));
        assert_eq!(smtp_status("220-multi"), None);
        assert_eq!(smtp_status("22"), None);
        assert_eq!(smtp_status("2200 x"), None);
    }

    #[test]
    fn dns_query_bytes() {
        let q = dns_query(
            0x1234,
            &DnsCheck {
                qtype: 1,
                name: "a.bc".into(),
            },
        );
        assert_eq!(&q[..12], &[0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&q[12..], &[1, b'a', 2, b'b', b'c', 0, 0, 1, 0, 1]);
        let root = dns_query(1, &DnsCheck::default());
        assert_eq!(&root[12..], &[0, 0, 6, 0, 1]);
    }

    #[test]
    fn udp_reply_mask() {
        let u = UdpCheck {
            reply_data: vec![0xab, 0xcd],
            reply_mask: vec![0x00, 0x0f],
            ..Default::default()
        };
        assert!(udp_reply_ok(&[0xab, 0xc0, 0x99], &u));
        assert!(!udp_reply_ok(&[0xab, 0x0d], &u));
        assert!(udp_reply_ok(&[0xab], &u)); // only the shorter length is compared
    }

    #[test]
    fn checksum() {
        // echo request id 0 seq 0 no data: checksum 0xf7ff
        assert_eq!(icmp_checksum(&[8, 0, 0, 0, 0, 0, 0, 0]), 0xf7ff);
    }
}
