//! Async (tokio) probes, one file per keepalived checker type, and
//! [`run_probe`], which runs the probe a [`Probe`] asks for.
//!
//! Every probe is bounded: each network operation by the checker's
//! `connect_timeout` (as keepalived arms each read/write with it), MISC_CHECK by
//! `misc_timeout` (default `delay_loop`), plus a global safety cap
//! (`probe_cap`) so a checker can never stay "in flight" forever. Network
//! input is never trusted: parsers are bounds-checked and nothing here panics
//! on it.

use std::time::Duration;

use crate::config::{CheckKind, CheckerConfig};
use crate::machine::{Probe, ProbeResult};

mod dns;
mod file;
mod http;
mod misc;
mod net;
mod ping;
mod smtp;
mod ssl;
mod tcp;
mod udp;

pub use dns::{dns_query, probe_dns};
pub use file::probe_file;
pub use http::{http_request, probe_http, HttpResponse};
pub use misc::probe_misc;
pub use net::{tcp_connect, ConnectError};
pub use ping::probe_ping;
pub use smtp::{probe_smtp, smtp_status};
pub use ssl::probe_ssl;
pub use tcp::probe_tcp;
pub use udp::{probe_udp, udp_reply_ok};

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
pub(crate) fn probe_cap(cfg: &CheckerConfig) -> Duration {
    match &cfg.kind {
        CheckKind::Misc(m) => m.timeout.unwrap_or(cfg.delay_loop) + Duration::from_secs(5),
        _ => (cfg.connect_timeout * 8).max(Duration::from_secs(10)),
    }
}
