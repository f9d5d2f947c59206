//! Short rate history for the dashboard's sparklines.
//!
//! Once a second (only while the metrics listener runs) the counters of every
//! service and destination are copied and turned into per-second rates
//! (connections, bytes in, bytes out) over the last interval. The last
//! [`POINTS`] points of each series are kept, so a freshly opened dashboard
//! shows the recent past at once and then asks only for newer points
//! (`/api/state?since=T`). The cost is one short table lock per second.

use crate::convert::svc_name;
use crate::state::Daemon;
use parking_lot::Mutex;
use rvs_api::{Command, Reply, Stats};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Points kept per series (2 minutes at one per second).
pub(crate) const POINTS: usize = 120;
/// Series kept at most (services + destinations + the total).
const MAX_SERIES: usize = 4096;
/// Key of the series summing all services.
pub(crate) const TOTAL: &str = "total";

/// One point: Unix time, connections/s, bytes/s in, bytes/s out.
pub(crate) type Point = (f64, f64, f64, f64);

#[derive(Default)]
struct Series {
    /// Counters (conns, inbytes, outbytes) at the last sample.
    last: Option<(f64, [u64; 3])>,
    points: VecDeque<Point>,
}

/// Rate series keyed by service (`[vip]:tcp:port`) or destination
/// (`[vip]:tcp:port rs`).
#[derive(Default)]
pub(crate) struct History {
    series: Mutex<HashMap<String, Series>>,
}

/// Series key of a destination.
pub(crate) fn dest_key(svc: &str, rs: SocketAddr) -> String {
    format!("{svc} {rs}")
}

fn counters(s: &Stats) -> [u64; 3] {
    [s.conns, s.inbytes, s.outbytes]
}

pub(crate) fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl History {
    /// Take one sample of the table at Unix time `t`.
    pub fn sample(&self, d: &Daemon, t: f64) {
        let services = match d.handle(Command::ListServices) {
            Ok(Reply::Services(v)) => v,
            _ => return,
        };
        let mut now: Vec<(String, [u64; 3])> = Vec::new();
        let mut total = [0u64; 3];
        for s in &services {
            let name = svc_name(&s.spec.key);
            let c = counters(&s.stats);
            for (t, v) in total.iter_mut().zip(c) {
                *t = t.saturating_add(v);
            }
            for dst in &s.dests {
                now.push((
                    dest_key(&name, SocketAddr::new(dst.spec.addr, dst.spec.port)),
                    counters(&dst.stats),
                ));
            }
            now.push((name, c));
        }
        now.push((TOTAL.to_string(), total));
        let mut series = self.series.lock();
        // Forget series that left the table.
        let alive: std::collections::HashSet<&str> = now.iter().map(|(k, _)| k.as_str()).collect();
        series.retain(|k, _| alive.contains(k.as_str()));
        for (key, c) in now {
            if !series.contains_key(&key) && series.len() >= MAX_SERIES {
                continue;
            }
            let s = series.entry(key).or_default();
            if let Some((t0, c0)) = s.last {
                let dt = t - t0;
                if dt > 0.0 {
                    // A counter that went down was zeroed (`rvsadm -Z`).
                    // Rounded (connections/s to 0.01, bytes/s to 1): the
                    // JSON stays short.
                    let r = |i: usize, scale: f64| {
                        (c[i].saturating_sub(c0[i]) as f64 / dt * scale).round() / scale
                    };
                    s.points.push_back((t, r(0, 100.0), r(1, 1.0), r(2, 1.0)));
                    while s.points.len() > POINTS {
                        s.points.pop_front();
                    }
                }
            }
            s.last = Some((t, c));
        }
    }

    /// Points newer than `since`, per series (series without one are left out).
    pub fn since(&self, since: f64) -> HashMap<String, Vec<Point>> {
        self.series
            .lock()
            .iter()
            .filter(|(_, s)| s.points.back().is_some_and(|p| p.0 > since))
            .map(|(k, s)| {
                let new = s.points.iter().rev().take_while(|p| p.0 > since).count();
                (
                    k.clone(),
                    s.points.range(s.points.len() - new..).copied().collect(),
                )
            })
            .collect()
    }

    /// Sample every second until `stop`.
    pub async fn run(self: Arc<Self>, d: Arc<Daemon>, stop: CancellationToken) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => self.sample(&d, (unix_now() * 1000.0).round() / 1000.0),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rvs_api::{DestSpec, FwdMethod, Protocol, ServiceKey, ServiceSpec};
    use rvs_dataplane::{NullEngine, Shared};

    #[test]
    fn rates_from_counter_deltas() {
        let d = Daemon::new(Shared::new(rvs_core::Ipvs::new()), Arc::new(NullEngine));
        let key = ServiceKey::Addr {
            protocol: Protocol::Tcp,
            addr: "10.0.0.1".parse().unwrap(),
            port: 80,
        };
        d.handle(Command::AddService {
            spec: ServiceSpec {
                key,
                scheduler: "rr".into(),
                flags: 0,
                timeout: 0,
                netmask: 0xffff_ffff,
                pe_name: None,
            },
        })
        .unwrap();
        d.handle(Command::AddDest {
            service: key,
            dest: DestSpec {
                addr: "10.0.0.2".parse().unwrap(),
                port: 80,
                fwd: FwdMethod::Masq,
                weight: 1,
                u_threshold: 0,
                l_threshold: 0,
                tun_type: Default::default(),
                tun_port: 0,
                tun_flags: Default::default(),
            },
        })
        .unwrap();
        let h = History::default();
        h.sample(&d, 100.0);
        h.sample(&d, 101.0);
        let all = h.since(0.0);
        assert_eq!(all.len(), 3, "{:?}", all.keys());
        let s = &all["[10.0.0.1]:tcp:80"];
        assert_eq!(s, &vec![(101.0, 0.0, 0.0, 0.0)]);
        assert!(all.contains_key("[10.0.0.1]:tcp:80 10.0.0.2:80"));
        assert!(!h.since(101.0).contains_key(TOTAL));
        d.handle(Command::DelService { key }).unwrap();
        h.sample(&d, 102.0);
        assert_eq!(h.since(0.0).len(), 1);
    }
}
