//! Plain configuration structs for checkers, real servers and virtual servers.
//!
//! These are *resolved* values: keepalived's inheritance (checker <- real_server
//! <- virtual_server <- default) is applied by the caller (the daemon maps
//! `rvs-config`'s parsed model onto these). [`CheckerConfig::new`] fills in
//! keepalived 2.2.7's per-checker-type defaults.

use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

/// keepalived's default `delay_loop` (60 s).
pub const DEFAULT_DELAY_LOOP: Duration = Duration::from_secs(60);
/// keepalived's default `connect_timeout` (5 s).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// IPVS service protocol, used for keepalived-style names (`[IP]:tcp:80`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP.
    #[default]
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

impl Protocol {
    /// keepalived's lowercase protocol name.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

/// Format an address the way keepalived's `inet_sockaddrtotrio` does:
/// `[IP]:proto:port`.
pub fn fmt_trio(addr: SocketAddr, proto: Protocol) -> String {
    format!("[{}]:{}:{}", addr.ip(), proto.as_str(), addr.port())
}

/// `http_protocol` of HTTP_GET / SSL_GET.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub enum HttpProtocol {
    /// `HTTP/1.0` without `Connection: close` (keepalived default).
    #[default]
    Http10,
    /// `1.0C`: `HTTP/1.0` with `Connection: close`.
    Http10C,
    /// `1.1`: `HTTP/1.1` with `Connection: close`.
    Http11,
}

/// One `url { }` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// Request path (`path`).
    pub path: String,
    /// MD5 digest of the body (`digest`, 32 hex digits in the config).
    pub digest: Option<[u8; 16]>,
    /// Accepted status codes (`status_code`); empty = keepalived default 200-299.
    pub status: Vec<RangeInclusive<u16>>,
    /// Per-url `virtualhost` (overrides the checker's).
    pub virtualhost: Option<String>,
}

impl Url {
    /// A url with the default status range and no digest.
    pub fn new(path: impl Into<String>) -> Self {
        Url {
            path: path.into(),
            digest: None,
            status: Vec::new(),
            virtualhost: None,
        }
    }

    /// Is `code` accepted (keepalived: default 200..=299 when none configured)?
    pub fn status_ok(&self, code: u16) -> bool {
        if self.status.is_empty() {
            (200..=299).contains(&code)
        } else {
            self.status.iter().any(|r| r.contains(&code))
        }
    }
}

/// Parse a 32-hex-digit MD5 digest as written in keepalived's `digest`.
pub fn parse_digest(hex: &str) -> Option<[u8; 16]> {
    let hex = hex.trim();
    if hex.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// HTTP_GET / SSL_GET settings.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HttpCheck {
    /// The urls, checked one after another.
    pub urls: Vec<Url>,
    /// Checker-level `virtualhost` (already inherited from RS / VS by the caller).
    pub virtualhost: Option<String>,
    /// `http_protocol`.
    pub protocol: HttpProtocol,
    /// `fast_recovery`.
    pub fast_recovery: bool,
}

/// SSL_GET settings.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SslCheck {
    /// The HTTP part.
    pub http: HttpCheck,
    /// `enable_sni`: send SNI (the virtualhost, or `sni_name`).
    pub enable_sni: bool,
    /// `sni_name`.
    pub sni_name: Option<String>,
    /// Verify the server certificate against this CA bundle (PEM). keepalived only
    /// verifies when an `SSL { ca }` is configured; `None` = accept any certificate.
    pub ca_file: Option<PathBuf>,
}

/// MISC_CHECK settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MiscCheck {
    /// `misc_path`: the command line, split shell-like as keepalived does.
    pub path: String,
    /// `misc_timeout`; `None` = the checker's `delay_loop`.
    pub timeout: Option<Duration>,
    /// `misc_dynamic`: exit 2..=255 means up with weight `exit - 2`.
    pub dynamic: bool,
    /// `user`: run as this uid:gid (only applied when running as root).
    pub user: Option<(u32, u32)>,
}

/// DNS_CHECK settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsCheck {
    /// Query type number (A=1, NS=2, CNAME=5, SOA=6, MX=15, TXT=16, AAAA=28). Default SOA.
    pub qtype: u16,
    /// Query name (default `.`).
    pub name: String,
}

impl Default for DnsCheck {
    fn default() -> Self {
        DnsCheck {
            qtype: 6,
            name: ".".into(),
        }
    }
}

/// Map a keepalived DNS_CHECK `type` keyword to its number.
pub fn dns_type_from_name(name: &str) -> Option<u16> {
    Some(match name {
        "A" => 1,
        "NS" => 2,
        "CNAME" => 5,
        "SOA" => 6,
        "MX" => 15,
        "TXT" => 16,
        "AAAA" => 28,
        _ => return None,
    })
}

/// UDP_CHECK settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpCheck {
    /// `payload` bytes (empty = a zero-length datagram).
    pub payload: Vec<u8>,
    /// `require_reply`.
    pub require_reply: bool,
    /// Expected reply prefix (`require_reply HEX`).
    pub reply_data: Vec<u8>,
    /// Bits set here are "don't care" in the reply comparison.
    pub reply_mask: Vec<u8>,
    /// `min_reply_length` (default 0).
    pub min_reply_length: usize,
    /// `max_reply_length` (default 255).
    pub max_reply_length: usize,
}

impl Default for UdpCheck {
    fn default() -> Self {
        UdpCheck {
            payload: Vec::new(),
            require_reply: false,
            reply_data: Vec::new(),
            reply_mask: Vec::new(),
            min_reply_length: 0,
            max_reply_length: 255,
        }
    }
}

/// FILE_CHECK settings (a polled tracked file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileCheck {
    /// The tracked file.
    pub path: PathBuf,
    /// `weight N`; 0 = the file's value only decides up (0) / down (non-zero).
    pub weight: i64,
    /// `reverse`.
    pub reverse: bool,
}

/// The checker type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckKind {
    /// TCP_CHECK.
    Tcp,
    /// HTTP_GET.
    Http(HttpCheck),
    /// SSL_GET.
    Ssl(SslCheck),
    /// MISC_CHECK.
    Misc(MiscCheck),
    /// SMTP_CHECK (`helo_name`, default keepalived's `localhost`-ish name chosen by the caller).
    Smtp {
        /// `helo_name`.
        helo_name: String,
    },
    /// DNS_CHECK.
    Dns(DnsCheck),
    /// UDP_CHECK.
    Udp(UdpCheck),
    /// PING_CHECK.
    Ping,
    /// FILE_CHECK.
    File(FileCheck),
}

impl CheckKind {
    /// keepalived's block name (`TCP_CHECK`, `HTTP_GET`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            CheckKind::Tcp => "TCP_CHECK",
            CheckKind::Http(_) => "HTTP_GET",
            CheckKind::Ssl(_) => "SSL_GET",
            CheckKind::Misc(_) => "MISC_CHECK",
            CheckKind::Smtp { .. } => "SMTP_CHECK",
            CheckKind::Dns(_) => "DNS_CHECK",
            CheckKind::Udp(_) => "UDP_CHECK",
            CheckKind::Ping => "PING_CHECK",
            CheckKind::File(_) => "FILE_CHECK",
        }
    }
}

/// One checker block, with every value resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckerConfig {
    /// Type and type-specific settings.
    pub kind: CheckKind,
    /// `connect_ip` / `connect_port` (default: the real server's address).
    pub connect: SocketAddr,
    /// `bindto` / `bind_port`.
    pub bind: Option<SocketAddr>,
    /// `bind_if` (SO_BINDTODEVICE).
    pub bind_if: Option<String>,
    /// `fwmark` (SO_MARK).
    pub fwmark: Option<u32>,
    /// `connect_timeout`.
    pub connect_timeout: Duration,
    /// `retry`.
    pub retry: u32,
    /// `delay_before_retry`.
    pub delay_before_retry: Duration,
    /// `delay_loop`.
    pub delay_loop: Duration,
    /// `warmup`: the first check is delayed by a random time in `[0, warmup]`.
    /// `None` = keepalived's default (random up to `delay_loop`); `Some(0)` disables.
    pub warmup: Option<Duration>,
    /// `alpha`: start DOWN until the first success.
    pub alpha: bool,
    /// `log_all_failures` (or global `checker_log_all_failures`).
    pub log_all_failures: bool,
}

impl CheckerConfig {
    /// A checker with keepalived 2.2.7's defaults for `kind`: retry 1 (MISC 0,
    /// DNS 3), delay_before_retry 1 s (HTTP/SSL 3 s, DNS = delay_loop),
    /// delay_loop 60 s, connect_timeout 5 s, no alpha.
    pub fn new(kind: CheckKind, connect: SocketAddr) -> Self {
        let (retry, dbr) = match kind {
            CheckKind::Misc(_) | CheckKind::File(_) => (0, Duration::from_secs(1)),
            CheckKind::Dns(_) => (3, DEFAULT_DELAY_LOOP),
            CheckKind::Http(_) | CheckKind::Ssl(_) => (1, Duration::from_secs(3)),
            _ => (1, Duration::from_secs(1)),
        };
        CheckerConfig {
            kind,
            connect,
            bind: None,
            bind_if: None,
            fwmark: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            retry,
            delay_before_retry: dbr,
            delay_loop: DEFAULT_DELAY_LOOP,
            warmup: None,
            alpha: false,
            log_all_failures: false,
        }
    }
}

/// A notify / quorum script: keepalived's quoted script string plus optional user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScriptConfig {
    /// The command line as written (`notify_up "/path/script arg"`).
    pub cmd: String,
    /// uid:gid to run as (applied only when running as root).
    pub user: Option<(u32, u32)>,
}

impl ScriptConfig {
    /// A script run as the default user.
    pub fn new(cmd: impl Into<String>) -> Self {
        ScriptConfig {
            cmd: cmd.into(),
            user: None,
        }
    }
}

/// One `real_server` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RealServerConfig {
    /// Address and port.
    pub addr: SocketAddr,
    /// `weight` (default 1).
    pub weight: u32,
    /// `inhibit_on_failure`: set weight 0 instead of removing.
    pub inhibit_on_failure: bool,
    /// `notify_up`.
    pub notify_up: Option<ScriptConfig>,
    /// `notify_down`.
    pub notify_down: Option<ScriptConfig>,
    /// The checkers; none = always up (keepalived adds it at start and never removes it).
    pub checkers: Vec<CheckerConfig>,
}

impl RealServerConfig {
    /// A real server with weight 1 and no checkers.
    pub fn new(addr: SocketAddr) -> Self {
        RealServerConfig {
            addr,
            weight: 1,
            inhibit_on_failure: false,
            notify_up: None,
            notify_down: None,
            checkers: Vec::new(),
        }
    }
}

/// One `virtual_server` block (checker-relevant parts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtualServerConfig {
    /// keepalived's name: `[IP]:tcp:80`, `FWM 1`, or the group name.
    pub name: String,
    /// The service protocol (used to format real-server names).
    pub protocol: Protocol,
    /// `quorum` (default 1).
    pub quorum: u32,
    /// `hysteresis` (default 0).
    pub hysteresis: u32,
    /// `quorum_up` script.
    pub quorum_up: Option<ScriptConfig>,
    /// `quorum_down` script.
    pub quorum_down: Option<ScriptConfig>,
    /// `sorry_server`.
    pub sorry_server: Option<SocketAddr>,
    /// Weight the sorry server is added with (keepalived: 1).
    pub sorry_server_weight: u32,
    /// `sorry_server_inhibit`.
    pub sorry_server_inhibit: bool,
    /// `omega`: run notify_down / quorum_down on shutdown.
    pub omega: bool,
    /// `ha_suspend`: the caller suspends the checkers while the VIP is absent.
    pub ha_suspend: bool,
    /// The real servers.
    pub real_servers: Vec<RealServerConfig>,
}

impl VirtualServerConfig {
    /// A virtual server with keepalived's defaults (quorum 1, hysteresis 0).
    pub fn new(name: impl Into<String>) -> Self {
        VirtualServerConfig {
            name: name.into(),
            protocol: Protocol::Tcp,
            quorum: 1,
            hysteresis: 0,
            quorum_up: None,
            quorum_down: None,
            sorry_server: None,
            sorry_server_weight: 1,
            sorry_server_inhibit: false,
            omega: false,
            ha_suspend: false,
            real_servers: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_parse() {
        let d = parse_digest("9b3a0c85a887a256d6939da88aabd8cd").unwrap();
        assert_eq!(d[0], 0x9b);
        assert_eq!(d[15], 0xcd);
        assert!(parse_digest("zz").is_none());
        assert!(parse_digest("9b3a0c85a887a256d6939da88aabd8cX").is_none());
    }

    #[test]
    fn status_defaults() {
        let mut u = Url::new("/");
        assert!(u.status_ok(200) && u.status_ok(299) && !u.status_ok(301));
        u.status = vec![200..=200, 300..=302];
        assert!(u.status_ok(301) && !u.status_ok(204));
    }

    #[test]
    fn defaults_by_kind() {
        let a: SocketAddr = "127.0.0.1:80".parse().unwrap();
        assert_eq!(CheckerConfig::new(CheckKind::Tcp, a).retry, 1);
        let m = MiscCheck {
            path: "x".into(),
            timeout: None,
            dynamic: false,
            user: None,
        };
        assert_eq!(CheckerConfig::new(CheckKind::Misc(m), a).retry, 0);
        let d = CheckerConfig::new(CheckKind::Dns(DnsCheck::default()), a);
        assert_eq!((d.retry, d.delay_before_retry), (3, DEFAULT_DELAY_LOOP));
        let h = CheckerConfig::new(CheckKind::Http(HttpCheck::default()), a);
        assert_eq!(h.delay_before_retry, Duration::from_secs(3));
        assert_eq!(fmt_trio(a, Protocol::Tcp), "[127.0.0.1]:tcp:80");
    }
}
