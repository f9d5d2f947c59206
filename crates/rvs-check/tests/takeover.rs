//! `VirtualServer::take_over`: a new process continues the checks of the
//! old one (rvsd's binary upgrade) without flapping a real server and
//! without re-running the start-up.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rvs_check::config::*;
use rvs_check::machine::*;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn rs_tcp(a: &str, alpha: bool) -> RealServerConfig {
    let mut c = CheckerConfig::new(CheckKind::Tcp, addr(a));
    c.delay_loop = Duration::from_secs(6);
    c.delay_before_retry = Duration::from_secs(2);
    c.warmup = Some(Duration::ZERO);
    c.alpha = alpha;
    let mut r = RealServerConfig::new(addr(a));
    r.checkers = vec![c];
    r
}

fn vs_with(rss: Vec<RealServerConfig>) -> VirtualServerConfig {
    let mut v = VirtualServerConfig::new("[198.18.0.100]:tcp:80");
    v.real_servers = rss;
    v
}

/// Table actions (no logs, no scripts).
fn table(vs: &mut VirtualServer) -> Vec<Action> {
    std::iter::from_fn(|| vs.poll_action())
        .filter(|a| !matches!(a, Action::Log { .. } | Action::RunScript { .. }))
        .collect()
}

/// Run the due probes, answering with `f(real server index)`.
fn probe(vs: &mut VirtualServer, now: &mut Instant, f: impl Fn(usize) -> bool) {
    let t = vs.poll_timeout().expect("a timer");
    *now = (*now).max(t);
    vs.handle_timeout(*now);
    let probes: Vec<Probe> = std::iter::from_fn(|| vs.poll_probe()).collect();
    assert!(!probes.is_empty());
    for p in probes {
        let r = if f(p.id.rs) {
            ProbeResult::success()
        } else {
            ProbeResult::failure("TCP connection failed")
        };
        vs.handle_result(*now, p.id, &r);
    }
}

/// rs1 up, rs2 failed (out of the table), rs3 (alpha) up after its first
/// success.
fn running() -> (VirtualServerConfig, VirtualServer, Instant) {
    let cfg = vs_with(vec![
        rs_tcp("198.18.0.21:80", false),
        rs_tcp("198.18.0.22:80", false),
        rs_tcp("198.18.0.23:80", true),
    ]);
    let mut now = Instant::now();
    let mut vs = VirtualServer::new(cfg.clone(), now, 1);
    table(&mut vs);
    probe(&mut vs, &mut now, |rs| rs != 1);
    let t = table(&mut vs);
    assert!(t.contains(&Action::RemoveDest {
        rs: addr("198.18.0.22:80")
    }));
    assert!(t.contains(&Action::AddDest {
        rs: addr("198.18.0.23:80"),
        weight: 1
    }));
    (cfg, vs, now)
}

#[test]
fn take_over_changes_nothing_in_the_table() {
    let (cfg, old, now) = running();
    let st = old.status(now);
    let mut new = VirtualServer::take_over(cfg.clone(), &st, now, 2);
    assert_eq!(table(&mut new), vec![]);
    let st2 = new.status(now);
    for (a, b) in st.real_servers.iter().zip(&st2.real_servers) {
        assert_eq!(
            (a.addr, a.alive, a.in_table, a.weight, a.failed_checkers),
            (b.addr, b.alive, b.in_table, b.weight, b.failed_checkers)
        );
        assert_eq!(a.checkers[0].up, b.checkers[0].up);
        assert_eq!(a.checkers[0].has_run, b.checkers[0].has_run);
        assert_eq!(a.checkers[0].counters, b.checkers[0].counters);
    }
    assert_eq!(st2.quorum_up, st.quorum_up);
    // a plain start would have put the failed rs2 back for a while
    let mut fresh = VirtualServer::new(cfg, now, 2);
    assert!(table(&mut fresh).contains(&Action::AddDest {
        rs: addr("198.18.0.22:80"),
        weight: 1
    }));
}

#[test]
fn taken_over_checks_go_on() {
    let (cfg, old, now) = running();
    let mut now2 = now;
    let mut new = VirtualServer::take_over(cfg, &old.status(now), now, 2);
    table(&mut new);
    // rs2 answers again: back in the table; rs1 stays
    probe(&mut new, &mut now2, |_| true);
    assert_eq!(
        table(&mut new),
        vec![Action::AddDest {
            rs: addr("198.18.0.22:80"),
            weight: 1
        }]
    );
    assert_eq!(new.rs_alive(1), Some(true));
}

#[test]
fn take_over_with_a_changed_configuration_applies_the_difference() {
    let (_, old, now) = running();
    let st = old.status(now);
    // rs1 removed, rs4 added
    let cfg = vs_with(vec![
        rs_tcp("198.18.0.22:80", false),
        rs_tcp("198.18.0.23:80", true),
        rs_tcp("198.18.0.24:80", false),
    ]);
    let mut new = VirtualServer::take_over(cfg, &st, now, 2);
    let t = table(&mut new);
    assert!(t.contains(&Action::RemoveDest {
        rs: addr("198.18.0.21:80")
    }));
    assert!(t.contains(&Action::AddDest {
        rs: addr("198.18.0.24:80"),
        weight: 1
    }));
    assert_eq!(t.len(), 2, "{t:?}");
    // rs2 is still down, rs3 still up
    assert_eq!(new.rs_alive(0), Some(false));
    assert_eq!(new.rs_alive(1), Some(true));
}

#[test]
fn take_over_keeps_an_active_sorry_server() {
    let mut cfg = vs_with(vec![rs_tcp("198.18.0.21:80", false)]);
    cfg.sorry_server = Some(addr("198.18.0.30:80"));
    let mut now = Instant::now();
    let mut old = VirtualServer::new(cfg.clone(), now, 1);
    table(&mut old);
    probe(&mut old, &mut now, |_| false);
    let t = table(&mut old);
    assert!(t.contains(&Action::AddSorry {
        addr: addr("198.18.0.30:80"),
        weight: 1
    }));
    let st = old.status(now);
    assert!(st.sorry_active);
    let mut new = VirtualServer::take_over(cfg, &st, now, 2);
    assert_eq!(table(&mut new), vec![]);
    assert!(new.status(now).sorry_active);
    // the real server recovers: the sorry server leaves, the server returns
    probe(&mut new, &mut now, |_| true);
    let t = table(&mut new);
    assert!(t.contains(&Action::RemoveSorry {
        addr: addr("198.18.0.30:80")
    }));
    assert!(t.contains(&Action::AddDest {
        rs: addr("198.18.0.21:80"),
        weight: 1
    }));
}
