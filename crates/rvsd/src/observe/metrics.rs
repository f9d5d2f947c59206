//! `/metrics`: a `prometheus-client` [`Collector`] that reads the daemon's
//! state at scrape time. Nothing is counted per packet for the metrics: the
//! data plane already keeps the IPVS counters, the rate estimator and the
//! drop counters; a scrape copies them (one short table lock) and encodes.
//!
//! Names and labels are listed in `docs/OBSERVABILITY.md`. Services carry
//! `proto`/`vip`/`port` labels (firewall-mark services `fwmark`/`family`),
//! destinations add `rs` (`IP:PORT`, IPv6 as `[IP]:PORT`).

use super::snapshot::{self, Snapshot, VrrpInstance};
use crate::state::Daemon;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use rvs_api::{Rates, Stats};
use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

type Labels = Vec<(&'static str, String)>;

/// Reads the daemon at each scrape.
pub(crate) struct RvsCollector {
    daemon: Arc<Daemon>,
}

impl fmt::Debug for RvsCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RvsCollector").finish_non_exhaustive()
    }
}

impl Collector for RvsCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let snap = Snapshot::take(&self.daemon);
        encode_snapshot(&snap, &mut enc)
    }
}

/// A registry holding the rvs collector.
pub(crate) fn registry(daemon: Arc<Daemon>) -> Registry {
    let mut r = Registry::default();
    r.register_collector(Box::new(RvsCollector { daemon }));
    r
}

/// Encode the registry as Prometheus text (0.0.4) or, when `openmetrics`,
/// as OpenMetrics text. Returns the body and its content type.
pub(crate) fn render(
    reg: &Registry,
    openmetrics: bool,
) -> Result<(String, &'static str), fmt::Error> {
    let mut out = String::with_capacity(16 * 1024);
    if openmetrics {
        prometheus_client::encoding::text::encode(&mut out, reg)?;
        Ok((
            out,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        ))
    } else {
        prometheus_client::encoding::prometheus_text::encode(&mut out, reg)?;
        Ok((
            out,
            prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        ))
    }
}

/// Collects the samples of one metric family, then writes it (nothing is
/// written for a family without samples).
struct Family {
    name: &'static str,
    help: &'static str,
    kind: MetricType,
    rows: Vec<(Labels, u64)>,
}

impl Family {
    fn counter(name: &'static str, help: &'static str) -> Family {
        Family {
            name,
            help,
            kind: MetricType::Counter,
            rows: Vec::new(),
        }
    }
    fn gauge(name: &'static str, help: &'static str) -> Family {
        Family {
            name,
            help,
            kind: MetricType::Gauge,
            rows: Vec::new(),
        }
    }
    fn add(&mut self, labels: Labels, v: u64) {
        self.rows.push((labels, v));
    }
    fn write(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        if self.rows.is_empty() {
            return Ok(());
        }
        let mut m = enc.encode_descriptor(self.name, self.help, None, self.kind)?;
        let mut seen = HashSet::new();
        for (labels, v) in &self.rows {
            // Two samples with the same labels would make the exposition
            // invalid (e.g. two identical checkers on one real server).
            if !seen.insert(labels) {
                continue;
            }
            let fam = m.encode_family(labels)?;
            match self.kind {
                MetricType::Counter => ConstCounter::new(*v).encode(fam)?,
                _ => ConstGauge::new(*v).encode(fam)?,
            }
        }
        Ok(())
    }
}

type StatFn = fn(&Stats) -> u64;
type RateFn = fn(&Rates) -> u64;

/// The IPVS counters, in the order of [`names`].
const COUNTERS: [StatFn; 5] = [
    |s| s.conns,
    |s| s.inpkts,
    |s| s.outpkts,
    |s| s.inbytes,
    |s| s.outbytes,
];

/// The rate estimator's values, in the order of [`names`] (after the counters).
const RATES: [RateFn; 5] = [
    |r| r.cps,
    |r| r.inpps,
    |r| r.outpps,
    |r| r.inbps,
    |r| r.outbps,
];

/// Names of the counter (5) and rate (5) families of services or
/// destinations.
fn names(prefix: &str) -> [&'static str; 10] {
    macro_rules! n {
        ($p:literal) => {
            [
                concat!($p, "_connections"),
                concat!($p, "_in_packets"),
                concat!($p, "_out_packets"),
                concat!($p, "_in_bytes"),
                concat!($p, "_out_bytes"),
                concat!($p, "_connections_per_second"),
                concat!($p, "_in_packets_per_second"),
                concat!($p, "_out_packets_per_second"),
                concat!($p, "_in_bytes_per_second"),
                concat!($p, "_out_bytes_per_second"),
            ]
        };
    }
    if prefix == "service" {
        n!("rvs_service")
    } else {
        n!("rvs_destination")
    }
}

fn helps(what: &str) -> [&'static str; 10] {
    macro_rules! h {
        ($w:literal) => {
            [
                concat!("Connections scheduled to the ", $w),
                concat!("Packets from clients (incoming) of the ", $w),
                concat!("Packets to clients (outgoing) of the ", $w),
                concat!("Bytes from clients (incoming) of the ", $w),
                concat!("Bytes to clients (outgoing) of the ", $w),
                concat!(
                    "Connection rate of the ",
                    $w,
                    " (2 s EWMA estimator, as ipvsadm --rate)"
                ),
                concat!("Incoming packet rate of the ", $w, " (2 s EWMA estimator)"),
                concat!("Outgoing packet rate of the ", $w, " (2 s EWMA estimator)"),
                concat!("Incoming byte rate of the ", $w, " (2 s EWMA estimator)"),
                concat!("Outgoing byte rate of the ", $w, " (2 s EWMA estimator)"),
            ]
        };
    }
    if what == "service" {
        h!("virtual service")
    } else {
        h!("real server")
    }
}

/// Families for counters and rates of services or destinations.
fn stat_families(prefix: &str) -> Vec<Family> {
    let names = names(prefix);
    let helps = helps(prefix);
    (0..10)
        .map(|i| {
            if i < 5 {
                Family::counter(names[i], helps[i])
            } else {
                Family::gauge(names[i], helps[i])
            }
        })
        .collect()
}

fn add_stats(fams: &mut [Family], labels: &Labels, s: &Stats, r: &Rates) {
    for (i, f) in COUNTERS.iter().enumerate() {
        fams[i].add(labels.clone(), f(s));
    }
    for (i, f) in RATES.iter().enumerate() {
        fams[5 + i].add(labels.clone(), f(r));
    }
}

fn with(labels: &Labels, more: &[(&'static str, String)]) -> Labels {
    let mut l = labels.clone();
    l.extend_from_slice(more);
    l
}

fn b(v: bool) -> u64 {
    u64::from(v)
}

/// VRRP states exported as a state set (one sample per state, 1 = current).
const VRRP_STATES: [&str; 5] = ["INIT", "BACKUP", "MASTER", "FAULT", "STOP"];

/// VRRP counters that are not drops.
const VRRP_NOT_DROPS: [&str; 7] = [
    "adverts_rx",
    "adverts_tx",
    "prio_zero_rx",
    "prio_zero_tx",
    "became_master",
    "released_master",
    "transitions",
];

fn encode_snapshot(s: &Snapshot, enc: &mut DescriptorEncoder) -> fmt::Result {
    // Process-level.
    let mut info = Family::gauge(
        "rvs_build_info",
        "rvsd version and data-plane engine (always 1)",
    );
    info.add(
        vec![
            ("version", env!("CARGO_PKG_VERSION").to_string()),
            ("engine", s.engine.to_string()),
        ],
        1,
    );
    info.write(enc)?;
    let mut reloads = Family::counter(
        "rvs_config_reloads",
        "Configuration reloads attempted (SIGHUP)",
    );
    reloads.add(Vec::new(), s.reloads);
    reloads.write(enc)?;
    let mut last = Family::gauge(
        "rvs_config_last_reload_successful",
        "Whether the last configuration reload succeeded (1) or kept the running configuration (0)",
    );
    last.add(Vec::new(), b(s.last_reload_ok));
    last.write(enc)?;
    let mut drops = Family::counter(
        "rvs_dataplane_drops",
        "Flows or packets dropped (or relays failed) by the data plane, by reason",
    );
    for (reason, n) in &s.drops {
        drops.add(vec![("reason", reason.to_string())], *n);
    }
    drops.write(enc)?;

    // The IPVS table.
    let mut n_svc = Family::gauge("rvs_services", "Virtual services in the table");
    n_svc.add(Vec::new(), s.services.len() as u64);
    n_svc.write(enc)?;
    let mut svc_info = Family::gauge(
        "rvs_service_info",
        "Virtual service configuration (always 1): scheduler and persistence",
    );
    let mut svc_dests = Family::gauge(
        "rvs_service_destinations",
        "Real servers of the virtual service in the table",
    );
    let mut svc_active = Family::gauge(
        "rvs_service_active_connections",
        "Active connections of the virtual service",
    );
    let mut svc_inactive = Family::gauge(
        "rvs_service_inactive_connections",
        "Inactive connections of the virtual service",
    );
    let mut svc = stat_families("service");
    let mut d_info = Family::gauge(
        "rvs_destination_info",
        "Real server configuration (always 1): forwarding method",
    );
    let mut d_weight = Family::gauge("rvs_destination_weight", "Weight of the real server");
    let mut d_active = Family::gauge(
        "rvs_destination_active_connections",
        "Active connections of the real server",
    );
    let mut d_inactive = Family::gauge(
        "rvs_destination_inactive_connections",
        "Inactive connections of the real server",
    );
    let mut d_persist = Family::gauge(
        "rvs_destination_persistent_connections",
        "Persistence templates pointing to the real server",
    );
    let mut dst = stat_families("destination");
    for si in &s.services {
        let l = snapshot::svc_labels(&si.spec.key);
        svc_info.add(
            with(
                &l,
                &[
                    ("scheduler", si.spec.scheduler.clone()),
                    (
                        "persistent",
                        (si.spec.flags & rvs_api::svc_flags::PERSISTENT != 0).to_string(),
                    ),
                ],
            ),
            1,
        );
        svc_dests.add(l.clone(), si.dests.len() as u64);
        svc_active.add(
            l.clone(),
            si.dests.iter().map(|d| u64::from(d.active_conns)).sum(),
        );
        svc_inactive.add(
            l.clone(),
            si.dests.iter().map(|d| u64::from(d.inact_conns)).sum(),
        );
        add_stats(&mut svc, &l, &si.stats, &si.rates);
        for d in &si.dests {
            let dl = with(
                &l,
                &[("rs", SocketAddr::new(d.spec.addr, d.spec.port).to_string())],
            );
            d_info.add(with(&dl, &[("forward", d.spec.fwd.name().to_string())]), 1);
            d_weight.add(dl.clone(), u64::from(d.spec.weight));
            d_active.add(dl.clone(), u64::from(d.active_conns));
            d_inactive.add(dl.clone(), u64::from(d.inact_conns));
            d_persist.add(dl.clone(), u64::from(d.persist_conns));
            add_stats(&mut dst, &dl, &d.stats, &d.rates);
        }
    }
    for f in [&svc_info, &svc_dests, &svc_active, &svc_inactive] {
        f.write(enc)?;
    }
    for f in &svc {
        f.write(enc)?;
    }
    for f in [&d_info, &d_weight, &d_active, &d_inactive, &d_persist] {
        f.write(enc)?;
    }
    for f in &dst {
        f.write(enc)?;
    }

    encode_health(s, enc)?;
    encode_vrrp(&snapshot::vrrp_instances(&s.vrrp), enc)
}

/// Health checks: per virtual server, real server and checker.
fn encode_health(s: &Snapshot, enc: &mut DescriptorEncoder) -> fmt::Result {
    use snapshot::{bool_field, str_field, u64_field};
    let mut quorum = Family::gauge(
        "rvs_health_quorum_up",
        "Whether the virtual server's alive weight reaches its quorum",
    );
    let mut sorry = Family::gauge(
        "rvs_health_sorry_server_active",
        "Whether the sorry server is in service",
    );
    let mut rs_up = Family::gauge(
        "rvs_health_real_server_up",
        "Whether the health checks consider the real server alive",
    );
    let mut rs_in = Family::gauge(
        "rvs_health_real_server_in_table",
        "Whether the real server is in the IPVS table",
    );
    let mut ck_up = Family::gauge("rvs_health_checker_up", "Whether the checker reports up");
    let mut ck_trans = Family::counter(
        "rvs_health_checker_transitions",
        "Up/down transitions of the checker",
    );
    let mut ck_probes =
        Family::counter("rvs_health_checker_probes", "Probes started by the checker");
    let mut ck_fail = Family::counter(
        "rvs_health_checker_failures",
        "Failed probes of the checker",
    );
    // Health views name services like keepalived (`[ip]:tcp:port`); map
    // them to the table's labels where the service is known.
    let by_name: Vec<(String, Labels)> = s
        .services
        .iter()
        .map(|si| {
            (
                crate::convert::svc_name(&si.spec.key),
                snapshot::svc_labels(&si.spec.key),
            )
        })
        .collect();
    for vs in snapshot::check_servers(&s.checks) {
        let name = str_field(vs, "name").unwrap_or("");
        let l = by_name
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, l)| l.clone())
            .unwrap_or_else(|| vec![("virtual_server", name.to_string())]);
        if let Some(q) = bool_field(vs, "quorum_up") {
            quorum.add(l.clone(), b(q));
        }
        if let Some(q) = bool_field(vs, "sorry_active") {
            sorry.add(l.clone(), b(q));
        }
        for rs in snapshot::real_servers(vs) {
            let addr = str_field(rs, "addr").unwrap_or("").to_string();
            let rl = with(&l, &[("rs", addr)]);
            if let Some(v) = bool_field(rs, "alive") {
                rs_up.add(rl.clone(), b(v));
            }
            if let Some(v) = bool_field(rs, "in_table") {
                rs_in.add(rl.clone(), b(v));
            }
            for ck in snapshot::checkers(rs) {
                let cl = with(
                    &rl,
                    &[
                        ("checker", str_field(ck, "kind").unwrap_or("").to_string()),
                        (
                            "connect",
                            str_field(ck, "connect").unwrap_or("").to_string(),
                        ),
                    ],
                );
                if let Some(v) = bool_field(ck, "up") {
                    ck_up.add(cl.clone(), b(v));
                }
                if let Some(c) = ck.get("counters").and_then(|v| v.as_object()) {
                    if let Some(v) = u64_field(c, "transitions") {
                        ck_trans.add(cl.clone(), v);
                    }
                    if let Some(v) = u64_field(c, "probes") {
                        ck_probes.add(cl.clone(), v);
                    }
                    if let Some(v) = u64_field(c, "failures") {
                        ck_fail.add(cl.clone(), v);
                    }
                }
            }
        }
    }
    for f in [
        &quorum, &sorry, &rs_up, &rs_in, &ck_up, &ck_trans, &ck_probes, &ck_fail,
    ] {
        f.write(enc)?;
    }
    Ok(())
}

/// VRRP instances: state set, priorities, transitions, adverts, drops.
fn encode_vrrp(insts: &[VrrpInstance], enc: &mut DescriptorEncoder) -> fmt::Result {
    let mut info = Family::gauge(
        "rvs_vrrp_instance_info",
        "VRRP instance (always 1): VRID and interface",
    );
    let mut state = Family::gauge(
        "rvs_vrrp_state",
        "VRRP instance state: 1 for the current state, 0 for the others",
    );
    let mut prio = Family::gauge("rvs_vrrp_priority", "Effective VRRP priority");
    let mut base = Family::gauge("rvs_vrrp_base_priority", "Configured VRRP priority");
    let mut master_prio = Family::gauge(
        "rvs_vrrp_master_priority",
        "Priority advertised by the current master",
    );
    let mut trans = Family::counter(
        "rvs_vrrp_transitions",
        "Transitions into or out of MASTER state",
    );
    let mut became = Family::counter("rvs_vrrp_became_master", "Times the instance became MASTER");
    let mut released =
        Family::counter("rvs_vrrp_released_master", "Times the instance left MASTER");
    let mut rx = Family::counter("rvs_vrrp_adverts_received", "Valid adverts received");
    let mut tx = Family::counter("rvs_vrrp_adverts_sent", "Adverts sent");
    let mut p0rx = Family::counter(
        "rvs_vrrp_priority_zero_received",
        "Priority-0 adverts received",
    );
    let mut p0tx = Family::counter("rvs_vrrp_priority_zero_sent", "Priority-0 adverts sent");
    let mut drops = Family::counter("rvs_vrrp_drops", "VRRP packets dropped, by reason");
    for i in insts {
        let l: Labels = vec![("instance", i.name.clone())];
        info.add(
            with(
                &l,
                &[
                    ("vrid", i.vrid.map(|v| v.to_string()).unwrap_or_default()),
                    ("interface", i.interface.clone().unwrap_or_default()),
                ],
            ),
            1,
        );
        for st in VRRP_STATES {
            state.add(with(&l, &[("state", st.to_string())]), b(i.state == st));
        }
        if !VRRP_STATES.contains(&i.state.as_str()) {
            state.add(with(&l, &[("state", i.state.clone())]), 1);
        }
        if let Some(p) = i.priority {
            prio.add(l.clone(), p);
        }
        if let Some(p) = i.base_priority {
            base.add(l.clone(), p);
        }
        if let Some(p) = i.master_priority {
            master_prio.add(l.clone(), p);
        }
        let bm = i.counter("became_master");
        let rm = i.counter("released_master");
        match (i.counter("transitions"), bm, rm) {
            (Some(t), _, _) => trans.add(l.clone(), t),
            (None, None, None) => {}
            (None, a, r) => trans.add(l.clone(), a.unwrap_or(0) + r.unwrap_or(0)),
        }
        if let Some(v) = bm {
            became.add(l.clone(), v);
        }
        if let Some(v) = rm {
            released.add(l.clone(), v);
        }
        for (fam, key) in [
            (&mut rx, "adverts_rx"),
            (&mut tx, "adverts_tx"),
            (&mut p0rx, "prio_zero_rx"),
            (&mut p0tx, "prio_zero_tx"),
        ] {
            if let Some(v) = i.counter(key) {
                fam.add(l.clone(), v);
            }
        }
        for (k, v) in &i.counters {
            if !VRRP_NOT_DROPS.contains(&k.as_str()) {
                drops.add(with(&l, &[("reason", k.clone())]), *v);
            }
        }
    }
    for f in [
        &info,
        &state,
        &prio,
        &base,
        &master_prio,
        &trans,
        &became,
        &released,
        &rx,
        &tx,
        &p0rx,
        &p0tx,
        &drops,
    ] {
        f.write(enc)?;
    }
    Ok(())
}
