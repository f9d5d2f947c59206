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
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelSet, EncodeMetric, LabelSetEncoder,
};
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

/// A label set, borrowed (precomputed per service or destination) or owned.
enum L<'a> {
    B(&'a [(&'static str, String)]),
    O(Labels),
}

impl EncodeLabelSet for L<'_> {
    fn encode(&self, e: &mut LabelSetEncoder) -> fmt::Result {
        match self {
            L::B(s) => EncodeLabelSet::encode(s, e),
            L::O(v) => EncodeLabelSet::encode(v, e),
        }
    }
}

/// Collects the samples of one metric family, then writes it (nothing is
/// written for a family without samples). Callers make label sets unique.
struct Family<'a> {
    name: &'static str,
    help: &'static str,
    kind: MetricType,
    rows: Vec<(L<'a>, u64)>,
}

impl<'a> Family<'a> {
    fn counter(name: &'static str, help: &'static str) -> Self {
        Family {
            name,
            help,
            kind: MetricType::Counter,
            rows: Vec::new(),
        }
    }
    fn gauge(name: &'static str, help: &'static str) -> Self {
        Family {
            name,
            help,
            kind: MetricType::Gauge,
            rows: Vec::new(),
        }
    }
    /// A sample with a precomputed label set.
    fn add(&mut self, labels: &'a Labels, v: u64) {
        self.rows.push((L::B(labels), v));
    }
    /// A sample with its own label set.
    fn add_owned(&mut self, labels: Labels, v: u64) {
        self.rows.push((L::O(labels), v));
    }
    fn write(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        if self.rows.is_empty() {
            return Ok(());
        }
        let mut m = enc.encode_descriptor(self.name, self.help, None, self.kind)?;
        for (labels, v) in &self.rows {
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
fn stat_families<'a>(prefix: &str) -> Vec<Family<'a>> {
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

fn add_stats<'a>(fams: &mut [Family<'a>], labels: &'a Labels, s: &Stats, r: &Rates) {
    for (i, f) in COUNTERS.iter().enumerate() {
        fams[i].add(labels, f(s));
    }
    for (i, f) in RATES.iter().enumerate() {
        fams[5 + i].add(labels, f(r));
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
    let none: Labels = Vec::new();
    // Process-level.
    let mut info = Family::gauge(
        "rvs_build_info",
        "rvsd version and data-plane engine (always 1)",
    );
    info.add_owned(
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
    reloads.add(&none, s.reloads);
    reloads.write(enc)?;
    let mut last = Family::gauge(
        "rvs_config_last_reload_successful",
        "Whether the last configuration reload succeeded (1) or kept the running configuration (0)",
    );
    last.add(&none, b(s.last_reload_ok));
    last.write(enc)?;
    let mut drops = Family::counter(
        "rvs_dataplane_drops",
        "Flows or packets dropped (or relays failed) by the data plane, by reason",
    );
    for (reason, n) in &s.drops {
        drops.add_owned(vec![("reason", reason.to_string())], *n);
    }
    drops.write(enc)?;

    // The IPVS table. Label sets are built once per service / destination
    // and shared by all their families.
    let svc_l: Vec<Labels> = s
        .services
        .iter()
        .map(|si| snapshot::svc_labels(&si.spec.key))
        .collect();
    let dst_l: Vec<Vec<Labels>> = s
        .services
        .iter()
        .zip(&svc_l)
        .map(|(si, l)| {
            si.dests
                .iter()
                .map(|d| {
                    with(
                        l,
                        &[("rs", SocketAddr::new(d.spec.addr, d.spec.port).to_string())],
                    )
                })
                .collect()
        })
        .collect();
    let mut n_svc = Family::gauge("rvs_services", "Virtual services in the table");
    n_svc.add(&none, s.services.len() as u64);
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
    for ((si, l), dls) in s.services.iter().zip(&svc_l).zip(&dst_l) {
        svc_info.add_owned(
            with(
                l,
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
        svc_dests.add(l, si.dests.len() as u64);
        svc_active.add(l, si.dests.iter().map(|d| u64::from(d.active_conns)).sum());
        svc_inactive.add(l, si.dests.iter().map(|d| u64::from(d.inact_conns)).sum());
        add_stats(&mut svc, l, &si.stats, &si.rates);
        for (d, dl) in si.dests.iter().zip(dls) {
            d_info.add_owned(with(dl, &[("forward", d.spec.fwd.name().to_string())]), 1);
            d_weight.add(dl, u64::from(d.spec.weight));
            d_active.add(dl, u64::from(d.active_conns));
            d_inactive.add(dl, u64::from(d.inact_conns));
            d_persist.add(dl, u64::from(d.persist_conns));
            add_stats(&mut dst, dl, &d.stats, &d.rates);
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
    encode_sync(&s.sync, enc)?;
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
    // Label sets seen: a duplicate (two identical checkers on one real
    // server, say) would make the exposition invalid.
    let mut seen: HashSet<Labels> = HashSet::new();
    for vs in snapshot::check_servers(&s.checks) {
        let name = str_field(vs, "name").unwrap_or("");
        let l = by_name
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, l)| l.clone())
            .unwrap_or_else(|| vec![("virtual_server", name.to_string())]);
        if !seen.insert(l.clone()) {
            continue;
        }
        if let Some(q) = bool_field(vs, "quorum_up") {
            quorum.add_owned(l.clone(), b(q));
        }
        if let Some(q) = bool_field(vs, "sorry_active") {
            sorry.add_owned(l.clone(), b(q));
        }
        for rs in snapshot::real_servers(vs) {
            let addr = str_field(rs, "addr").unwrap_or("").to_string();
            let rl = with(&l, &[("rs", addr)]);
            if !seen.insert(rl.clone()) {
                continue;
            }
            if let Some(v) = bool_field(rs, "alive") {
                rs_up.add_owned(rl.clone(), b(v));
            }
            if let Some(v) = bool_field(rs, "in_table") {
                rs_in.add_owned(rl.clone(), b(v));
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
                if !seen.insert(cl.clone()) {
                    continue;
                }
                if let Some(v) = bool_field(ck, "up") {
                    ck_up.add_owned(cl.clone(), b(v));
                }
                if let Some(c) = ck.get("counters").and_then(|v| v.as_object()) {
                    if let Some(v) = u64_field(c, "transitions") {
                        ck_trans.add_owned(cl.clone(), v);
                    }
                    if let Some(v) = u64_field(c, "probes") {
                        ck_probes.add_owned(cl.clone(), v);
                    }
                    if let Some(v) = u64_field(c, "failures") {
                        ck_fail.add_owned(cl.clone(), v);
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

/// Connection-sync daemons: messages and entries sent and received, drops
/// by reason, whole-table transfers.
fn encode_sync(daemons: &[rvs_api::DaemonInfo], enc: &mut DescriptorEncoder) -> fmt::Result {
    let mut up = Family::gauge(
        "rvs_sync_daemon_up",
        "A connection-sync daemon runs (1), by role, interface and syncid",
    );
    let mut fams = [
        Family::counter("rvs_sync_messages_sent", "Sync messages sent"),
        Family::counter(
            "rvs_sync_entries_sent",
            "Connection entries sent in sync messages",
        ),
        Family::counter("rvs_sync_messages_received", "Sync messages received"),
        Family::counter(
            "rvs_sync_entries_received",
            "Connection entries received and applied",
        ),
        Family::counter(
            "rvs_sync_send_errors",
            "Sync messages that could not be sent",
        ),
        Family::counter(
            "rvs_sync_outbox_dropped",
            "Entries the data path could not queue because the sender fell behind",
        ),
        Family::counter(
            "rvs_sync_bulk_sent",
            "Whole-table transfers sent to a peer that asked",
        ),
        Family::counter(
            "rvs_sync_bulk_received",
            "Whole-table transfers received from a peer",
        ),
    ];
    let mut dropped = Family::counter(
        "rvs_sync_dropped",
        "Received sync messages or entries dropped, by reason",
    );
    for d in daemons {
        let role = match d.state {
            rvs_api::DaemonState::Master => "master",
            rvs_api::DaemonState::Backup => "backup",
        };
        let labels: Labels = vec![
            ("role", role.to_string()),
            ("interface", d.mcast_ifn.clone()),
            ("syncid", d.syncid.to_string()),
        ];
        up.add_owned(labels.clone(), 1);
        let Some(c) = &d.counters else { continue };
        let vals = [
            c.messages_sent,
            c.entries_sent,
            c.messages_received,
            c.entries_received,
            c.send_errors,
            c.outbox_dropped,
            c.bulk_sent,
            c.bulk_received,
        ];
        for (f, v) in fams.iter_mut().zip(vals) {
            f.add_owned(labels.clone(), v);
        }
        for (reason, n) in &c.dropped {
            dropped.add_owned(with(&labels, &[("reason", reason.clone())]), *n);
        }
    }
    up.write(enc)?;
    for f in &fams {
        f.write(enc)?;
    }
    dropped.write(enc)
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
    let mut seen = HashSet::new();
    for i in insts {
        if !seen.insert(i.name.as_str()) {
            continue;
        }
        let l: Labels = vec![("instance", i.name.clone())];
        info.add_owned(
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
            state.add_owned(with(&l, &[("state", st.to_string())]), b(i.state == st));
        }
        if !VRRP_STATES.contains(&i.state.as_str()) {
            state.add_owned(with(&l, &[("state", i.state.clone())]), 1);
        }
        if let Some(p) = i.priority {
            prio.add_owned(l.clone(), p);
        }
        if let Some(p) = i.base_priority {
            base.add_owned(l.clone(), p);
        }
        if let Some(p) = i.master_priority {
            master_prio.add_owned(l.clone(), p);
        }
        let bm = i.counter("became_master");
        let rm = i.counter("released_master");
        match (i.counter("transitions"), bm, rm) {
            (Some(t), _, _) => trans.add_owned(l.clone(), t),
            (None, None, None) => {}
            (None, a, r) => trans.add_owned(l.clone(), a.unwrap_or(0) + r.unwrap_or(0)),
        }
        if let Some(v) = bm {
            became.add_owned(l.clone(), v);
        }
        if let Some(v) = rm {
            released.add_owned(l.clone(), v);
        }
        for (fam, key) in [
            (&mut rx, "adverts_rx"),
            (&mut tx, "adverts_tx"),
            (&mut p0rx, "prio_zero_rx"),
            (&mut p0tx, "prio_zero_tx"),
        ] {
            if let Some(v) = i.counter(key) {
                fam.add_owned(l.clone(), v);
            }
        }
        for (k, v) in &i.counters {
            if !VRRP_NOT_DROPS.contains(&k.as_str()) {
                drops.add_owned(with(&l, &[("reason", k.clone())]), *v);
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

#[cfg(test)]
mod tests {
    use super::*;
    use rvs_api::StatusReport;
    use rvs_dataplane::{NullEngine, Shared};
    use serde_json::json;

    fn daemon() -> Arc<Daemon> {
        Daemon::new(Shared::new(rvs_core::Ipvs::new()), Arc::new(NullEngine))
    }

    #[test]
    fn sync_daemon_counters_become_metrics() {
        struct Enc(Vec<rvs_api::DaemonInfo>);
        impl fmt::Debug for Enc {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("Enc")
            }
        }
        impl Collector for Enc {
            fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
                encode_sync(&self.0, &mut enc)
            }
        }
        let mut c = rvs_api::SyncCounters {
            entries_received: 42,
            ..Default::default()
        };
        c.dropped.insert("syncid".into(), 3);
        let d = rvs_api::DaemonInfo {
            state: rvs_api::DaemonState::Backup,
            mcast_ifn: "eth0".into(),
            syncid: 7,
            sync_maxlen: 1472,
            mcast_group: None,
            mcast_port: 8848,
            mcast_ttl: 1,
            counters: Some(c),
        };
        let mut reg = Registry::default();
        reg.register_collector(Box::new(Enc(vec![d])));
        let (text, _) = render(&reg, false).unwrap();
        for want in [
            "rvs_sync_daemon_up{role=\"backup\",interface=\"eth0\",syncid=\"7\"} 1\n",
            "rvs_sync_entries_received_total{role=\"backup\",interface=\"eth0\",syncid=\"7\"} 42\n",
            "rvs_sync_dropped_total{role=\"backup\",interface=\"eth0\",syncid=\"7\",reason=\"syncid\"} 3\n",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
    }

    #[test]
    fn vrrp_and_health_views_become_metrics() {
        let d = daemon();
        *d.vrrp.lock() = Some(Box::new(|| StatusReport {
            text: String::new(),
            data: json!([{
                "name": "VI_1", "interface": "eth0", "vrid": 51, "state": "MASTER",
                "base_priority": 100, "effective_priority": 90,
                "master_addr": null, "master_priority": null,
                "last_transition_unix": 1.0,
                "counters": {"adverts_rx": 3, "adverts_tx": 9, "prio_zero_rx": 0,
                    "prio_zero_tx": 1, "became_master": 2, "released_master": 1,
                    "bad_ttl": 4, "wrong_vrid": 0}
            }]),
        }));
        *d.checks.lock() = Some(Box::new(|| StatusReport {
            text: String::new(),
            data: json!([{
                "name": "FWM 7", "quorum_up": true, "alive_weight": 1,
                "sorry_active": false, "suspended": false,
                "real_servers": [{
                    "addr": "10.0.0.2:80", "alive": false, "in_table": false, "weight": 1,
                    "failed_checkers": 1, "last_transition_secs_ago": 2.0,
                    "checkers": [{"kind": "HTTP_GET", "target": "x", "connect": "10.0.0.2:80",
                        "up": false, "has_run": true, "retry_it": 0,
                        "last_error": "refused \"x\"", "last_transition_secs_ago": 2.0,
                        "counters": {"probes": 5, "successes": 3, "failures": 2, "transitions": 1}}]
                }]
            }]),
        }));
        let (text, ctype) = render(&registry(d.clone()), false).unwrap();
        assert!(ctype.starts_with("text/plain; version=0.0.4"));
        for want in [
            "rvs_vrrp_state{instance=\"VI_1\",state=\"MASTER\"} 1\n",
            "rvs_vrrp_state{instance=\"VI_1\",state=\"BACKUP\"} 0\n",
            "rvs_vrrp_priority{instance=\"VI_1\"} 90\n",
            "rvs_vrrp_base_priority{instance=\"VI_1\"} 100\n",
            "rvs_vrrp_transitions_total{instance=\"VI_1\"} 3\n",
            "rvs_vrrp_adverts_received_total{instance=\"VI_1\"} 3\n",
            "rvs_vrrp_adverts_sent_total{instance=\"VI_1\"} 9\n",
            "rvs_vrrp_drops_total{instance=\"VI_1\",reason=\"bad_ttl\"} 4\n",
            "rvs_vrrp_instance_info{instance=\"VI_1\",vrid=\"51\",interface=\"eth0\"} 1\n",
            "rvs_health_real_server_up{virtual_server=\"FWM 7\",rs=\"10.0.0.2:80\"} 0\n",
            "rvs_health_checker_probes_total{virtual_server=\"FWM 7\",rs=\"10.0.0.2:80\",checker=\"HTTP_GET\",connect=\"10.0.0.2:80\"} 5\n",
            "rvs_health_quorum_up{virtual_server=\"FWM 7\"} 1\n",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
        assert!(!text.contains("rvs_vrrp_master_priority{"), "{text}");
        // OpenMetrics variant ends with EOF.
        let (om, ctype) = render(&registry(d), true).unwrap();
        assert!(ctype.starts_with("application/openmetrics-text"));
        assert!(om.ends_with("# EOF\n"));
    }

    #[test]
    fn garbage_status_views_are_ignored() {
        let d = daemon();
        *d.vrrp.lock() = Some(Box::new(|| StatusReport {
            text: String::new(),
            data: json!({"unexpected": 1, "list": [1, 2]}),
        }));
        *d.checks.lock() = Some(Box::new(|| StatusReport {
            text: String::new(),
            data: json!("not an array"),
        }));
        let (text, _) = render(&registry(d), false).unwrap();
        assert!(text.contains("rvs_services 0\n"), "{text}");
        assert!(!text.contains("rvs_vrrp"), "{text}");
        assert!(!text.contains("rvs_health"), "{text}");
    }
}
