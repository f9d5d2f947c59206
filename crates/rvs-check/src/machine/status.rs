//! Status snapshots (for the API) and their `--checks` text.

use std::net::SocketAddr;
use std::time::Instant;

use serde::Serialize;

use super::virtual_server::VirtualServer;
use super::{real_weight, CheckerCounters};

/// Status of one checker (for the API / `rvsadm --checks`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckerStatus {
    /// keepalived block name.
    pub kind: &'static str,
    /// Real server as keepalived names it in checker logs (`[ip]:proto:port`).
    pub target: String,
    /// Address probed (connect_ip/connect_port).
    pub connect: SocketAddr,
    /// Up?
    pub up: bool,
    /// Has it produced a result yet?
    pub has_run: bool,
    /// Current retry counter.
    pub retry_it: u32,
    /// Last failure text.
    pub last_error: Option<String>,
    /// Seconds since the last up/down transition.
    pub last_transition_secs_ago: Option<f64>,
    /// Counters.
    pub counters: CheckerCounters,
}

/// Status of one real server.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RealServerStatus {
    /// Address.
    pub addr: SocketAddr,
    /// keepalived's "alive".
    pub alive: bool,
    /// Present in the IPVS table.
    pub in_table: bool,
    /// Effective weight (configured weight or dynamic).
    pub weight: u32,
    /// Failed checkers.
    pub failed_checkers: u32,
    /// Seconds since the last alive transition.
    pub last_transition_secs_ago: Option<f64>,
    /// Checkers.
    pub checkers: Vec<CheckerStatus>,
}

/// Status of a virtual server.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct VirtualServerStatus {
    /// keepalived name.
    pub name: String,
    /// Quorum state.
    pub quorum_up: bool,
    /// Sum of alive weights.
    pub alive_weight: u64,
    /// The sorry server is in service.
    pub sorry_active: bool,
    /// Checkers suspended (ha_suspend).
    pub suspended: bool,
    /// Real servers.
    pub real_servers: Vec<RealServerStatus>,
}

impl VirtualServer {
    /// Snapshot for the status API.
    pub fn status(&self, now: Instant) -> VirtualServerStatus {
        let ago = |t: Option<Instant>| t.map(|t| now.saturating_duration_since(t).as_secs_f64());
        VirtualServerStatus {
            name: self.name.clone(),
            quorum_up: self.quorum_state_up,
            alive_weight: self.weigh_live().max(0) as u64,
            sorry_active: self.sorry.as_ref().is_some_and(|s| s.alive),
            suspended: self.suspended,
            real_servers: self
                .rss
                .iter()
                .map(|r| RealServerStatus {
                    addr: r.cfg.addr,
                    alive: r.alive,
                    in_table: r.set,
                    weight: real_weight(r.effective_weight),
                    failed_checkers: r.num_failed_checkers,
                    last_transition_secs_ago: ago(r.last_transition),
                    checkers: r
                        .checkers
                        .iter()
                        .map(|c| CheckerStatus {
                            kind: c.config().kind.name(),
                            target: c.label().to_string(),
                            connect: c.config().connect,
                            up: c.is_up(),
                            has_run: c.has_run(),
                            retry_it: c.retry_it(),
                            last_error: c.last_error().map(str::to_string),
                            last_transition_secs_ago: ago(c.last_transition()),
                            counters: c.counters().clone(),
                        })
                        .collect(),
                })
                .collect(),
        }
    }
}

/// Render status snapshots as a plain-text table (for an `rvsadm --checks`
/// style view).
pub fn render_checks(statuses: &[VirtualServerStatus]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let ago = |t: Option<f64>| {
        t.map(|s| format!("{s:.1}s ago"))
            .unwrap_or_else(|| "never".into())
    };
    for vs in statuses {
        let _ = writeln!(
            out,
            "VS {}  quorum {}  alive weight {}{}{}",
            vs.name,
            if vs.quorum_up { "UP" } else { "DOWN" },
            vs.alive_weight,
            if vs.sorry_active {
                "  sorry server ACTIVE"
            } else {
                ""
            },
            if vs.suspended {
                "  (checks suspended)"
            } else {
                ""
            },
        );
        for rs in &vs.real_servers {
            let _ = writeln!(
                out,
                "  RS {}  {}  weight {}  {}  changed {}",
                rs.addr,
                if rs.alive { "UP" } else { "DOWN" },
                rs.weight,
                if rs.in_table {
                    "in table"
                } else {
                    "not in table"
                },
                ago(rs.last_transition_secs_ago),
            );
            for c in &rs.checkers {
                let _ = writeln!(
                    out,
                    "    {:<10} {:<22} {:<4} probes {} ok {} fail {} transitions {}  changed {}{}",
                    c.kind,
                    c.connect.to_string(),
                    if !c.has_run {
                        "INIT"
                    } else if c.up {
                        "UP"
                    } else {
                        "DOWN"
                    },
                    c.counters.probes,
                    c.counters.successes,
                    c.counters.failures,
                    c.counters.transitions,
                    ago(c.last_transition_secs_ago),
                    c.last_error
                        .as_deref()
                        .map(|e| format!("  last error: {e}"))
                        .unwrap_or_default(),
                );
            }
        }
    }
    out
}
