//! Deterministic tests of the sans-IO machine on a fake clock.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rvs_check::config::*;
use rvs_check::machine::*;

const LOOP: Duration = Duration::from_secs(6);
const DBR: Duration = Duration::from_secs(2);

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn tcp(a: SocketAddr) -> CheckerConfig {
    let mut c = CheckerConfig::new(CheckKind::Tcp, a);
    c.delay_loop = LOOP;
    c.delay_before_retry = DBR;
    c.warmup = Some(Duration::ZERO);
    c
}

fn rs(a: &str, checkers: Vec<CheckerConfig>) -> RealServerConfig {
    let mut r = RealServerConfig::new(addr(a));
    r.checkers = checkers;
    r
}

fn rs_tcp(a: &str) -> RealServerConfig {
    rs(a, vec![tcp(addr(a))])
}

struct H {
    vs: VirtualServer,
    now: Instant,
    t0: Instant,
}

impl H {
    fn new(cfg: VirtualServerConfig) -> H {
        let t0 = Instant::now();
        H {
            vs: VirtualServer::new(cfg, t0, 1),
            now: t0,
            t0,
        }
    }

    fn actions(&mut self) -> Vec<Action> {
        std::iter::from_fn(|| self.vs.poll_action()).collect()
    }

    /// Table + script actions only (no logs).
    fn ops(&mut self) -> Vec<Action> {
        self.actions()
            .into_iter()
            .filter(|a| !matches!(a, Action::Log { .. }))
            .collect()
    }

    fn logs(actions: &[Action]) -> Vec<String> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Log { text } => Some(text.clone()),
                _ => None,
            })
            .collect()
    }

    /// Advance the clock to the next timer and return the probes it starts.
    fn next_probes(&mut self) -> Vec<Probe> {
        let t = self.vs.poll_timeout().expect("a timer");
        assert!(t >= self.now, "time goes forward");
        self.now = t;
        self.vs.handle_timeout(self.now);
        std::iter::from_fn(|| self.vs.poll_probe()).collect()
    }

    /// Advance to the next probe(s) and answer them all with `f`.
    fn step(&mut self, f: impl Fn(&Probe) -> ProbeResult) -> Vec<Probe> {
        let probes = self.next_probes();
        assert!(
            !probes.is_empty(),
            "expected a probe at {:?}",
            self.elapsed()
        );
        for p in &probes {
            let r = f(p);
            self.vs.handle_result(self.now, p.id, &r);
        }
        probes
    }

    fn elapsed(&self) -> Duration {
        self.now - self.t0
    }
}

fn ok(_: &Probe) -> ProbeResult {
    ProbeResult::success()
}
fn fail(_: &Probe) -> ProbeResult {
    ProbeResult::failure("TCP connection failed")
}

fn vs_with(rss: Vec<RealServerConfig>) -> VirtualServerConfig {
    let mut v = VirtualServerConfig::new("[10.0.0.1]:tcp:80");
    v.real_servers = rss;
    v
}

#[test]
fn startup_adds_non_alpha_and_gains_quorum() {
    let mut h = H::new(vs_with(vec![rs_tcp("10.0.0.2:80")]));
    let acts = h.actions();
    assert!(acts.contains(&Action::AddDest {
        rs: addr("10.0.0.2:80"),
        weight: 1
    }));
    assert!(
        H::logs(&acts).contains(&"Gained quorum 1+0=1 <= 1 for VS [10.0.0.1]:tcp:80".to_string()),
        "{acts:?}"
    );
    assert!(h.vs.quorum_up());
}

#[test]
fn first_failure_at_startup_removes_at_once() {
    let mut h = H::new(vs_with(vec![rs_tcp("10.0.0.2:80")]));
    h.actions();
    h.step(fail);
    assert_eq!(h.elapsed(), Duration::ZERO);
    let acts = h.actions();
    assert!(
        acts.contains(&Action::RemoveDest {
            rs: addr("10.0.0.2:80")
        }),
        "{acts:?}"
    );
    let logs = H::logs(&acts);
    assert!(
        logs.contains(&"TCP_CHECK on service [10.0.0.2]:tcp:80 failed.".to_string()),
        "{logs:?}"
    );
    assert!(
        logs.contains(&"Removing service [10.0.0.2]:tcp:80 from VS [10.0.0.1]:tcp:80".to_string()),
        "{logs:?}"
    );
    assert!(
        logs.iter().any(|l| l.starts_with("Lost quorum 1-0=1 > 0")),
        "{logs:?}"
    );
    assert_eq!(h.vs.rs_alive(0), Some(false));
}

#[test]
fn up_checker_needs_retry_plus_one_failures() {
    for retry in [0u32, 1, 3] {
        let mut c = tcp(addr("10.0.0.2:80"));
        c.retry = retry;
        let mut h = H::new(vs_with(vec![rs("10.0.0.2:80", vec![c])]));
        h.step(ok);
        h.actions();
        let first_fail_at = h.elapsed() + LOOP;
        for i in 0..retry {
            h.step(fail);
            assert!(
                h.ops().is_empty(),
                "retry {retry}: removed too early at failure {i}"
            );
            assert_eq!(h.vs.rs_alive(0), Some(true));
        }
        h.step(fail);
        let acts = h.actions();
        assert!(
            acts.contains(&Action::RemoveDest {
                rs: addr("10.0.0.2:80")
            }),
            "retry {retry}"
        );
        // first failure at its delay_loop slot, then `retry` retries DBR apart
        assert_eq!(h.elapsed(), first_fail_at + DBR * retry);
        let logs = H::logs(&acts);
        let want = if retry > 0 {
            format!("TCP_CHECK on service [10.0.0.2]:tcp:80 failed after {retry} retries.")
        } else {
            "TCP_CHECK on service [10.0.0.2]:tcp:80 failed.".to_string()
        };
        assert!(logs.contains(&want), "{logs:?}");
    }
}

#[test]
fn down_tcp_checker_probes_in_bursts_and_one_success_restores() {
    let mut c = tcp(addr("10.0.0.2:80"));
    c.retry = 2;
    let mut h = H::new(vs_with(vec![rs("10.0.0.2:80", vec![c])]));
    h.step(fail); // down at once
    h.actions();
    // burst: at +LOOP, then +DBR, +DBR, then a LOOP pause
    let base = h.elapsed();
    h.step(fail);
    assert_eq!(h.elapsed(), base + LOOP);
    h.step(fail);
    assert_eq!(h.elapsed(), base + LOOP + DBR);
    h.step(fail);
    assert_eq!(h.elapsed(), base + LOOP + DBR * 2);
    h.step(fail);
    assert_eq!(h.elapsed(), base + LOOP * 2 + DBR * 2);
    assert!(h.ops().is_empty());
    h.step(ok); // one success (a retry slot) brings it up
    assert_eq!(h.elapsed(), base + LOOP * 2 + DBR * 3);
    let acts = h.actions();
    assert!(acts.contains(&Action::AddDest {
        rs: addr("10.0.0.2:80"),
        weight: 1
    }));
    assert!(H::logs(&acts).contains(&"TCP connection to [10.0.0.2]:tcp:80 success.".to_string()));
}

#[test]
fn alpha_starts_down_and_notifies() {
    let mut c = tcp(addr("10.0.0.2:80"));
    c.alpha = true;
    let mut r = rs("10.0.0.2:80", vec![c]);
    r.notify_up = Some(ScriptConfig::new("/bin/up.sh"));
    r.notify_down = Some(ScriptConfig::new("/bin/down.sh"));
    let mut h = H::new(vs_with(vec![r.clone()]));
    assert!(h.ops().is_empty(), "alpha RS not added at start");
    assert!(!h.vs.quorum_up());
    h.step(ok);
    let ops = h.ops();
    assert_eq!(
        ops,
        vec![
            Action::AddDest {
                rs: addr("10.0.0.2:80"),
                weight: 1
            },
            Action::RunScript {
                script: ScriptConfig::new("/bin/up.sh"),
                reason: ScriptReason::NotifyUp
            },
        ]
    );
    assert!(h.vs.quorum_up());

    // alpha + first failure: notify_down is run, nothing in the table
    let mut h = H::new(vs_with(vec![r]));
    h.actions();
    h.step(fail);
    assert_eq!(
        h.ops(),
        vec![Action::RunScript {
            script: ScriptConfig::new("/bin/down.sh"),
            reason: ScriptReason::NotifyDown
        }]
    );
}

#[test]
fn non_alpha_first_success_runs_no_notify_first_failure_does() {
    let mut r = rs_tcp("10.0.0.2:80");
    r.notify_up = Some(ScriptConfig::new("/bin/up.sh"));
    r.notify_down = Some(ScriptConfig::new("/bin/down.sh"));
    let mut h = H::new(vs_with(vec![r.clone()]));
    h.actions();
    h.step(ok);
    assert!(h.ops().is_empty());
    let mut h = H::new(vs_with(vec![r]));
    h.actions();
    h.step(fail);
    assert_eq!(
        h.ops(),
        vec![
            Action::RemoveDest {
                rs: addr("10.0.0.2:80")
            },
            Action::RunScript {
                script: ScriptConfig::new("/bin/down.sh"),
                reason: ScriptReason::NotifyDown
            },
        ]
    );
}

#[test]
fn inhibit_on_failure_uses_weight_zero() {
    let mut r = rs_tcp("10.0.0.2:80");
    r.inhibit_on_failure = true;
    r.weight = 5;
    let mut h = H::new(vs_with(vec![r.clone()]));
    assert_eq!(
        h.ops(),
        vec![Action::AddDest {
            rs: addr("10.0.0.2:80"),
            weight: 5
        }]
    );
    h.step(fail);
    let acts = h.actions();
    assert!(
        acts.contains(&Action::SetWeight {
            rs: addr("10.0.0.2:80"),
            weight: 0
        }),
        "{acts:?}"
    );
    assert!(!acts.iter().any(|a| matches!(a, Action::RemoveDest { .. })));
    assert!(H::logs(&acts)
        .contains(&"Disabling service [10.0.0.2]:tcp:80 of VS [10.0.0.1]:tcp:80".to_string()));
    h.step(fail); // burst retry
    h.step(ok);
    let acts = h.actions();
    assert!(
        acts.contains(&Action::SetWeight {
            rs: addr("10.0.0.2:80"),
            weight: 5
        }),
        "{acts:?}"
    );
    assert!(H::logs(&acts)
        .contains(&"Enabling service [10.0.0.2]:tcp:80 of VS [10.0.0.1]:tcp:80".to_string()));

    // alpha + inhibit: added at weight 0 at start, enabled on first success
    r.checkers[0].alpha = true;
    let mut h = H::new(vs_with(vec![r]));
    assert_eq!(
        h.ops(),
        vec![Action::AddDest {
            rs: addr("10.0.0.2:80"),
            weight: 0
        }]
    );
    h.step(ok);
    assert_eq!(
        h.ops(),
        vec![Action::SetWeight {
            rs: addr("10.0.0.2:80"),
            weight: 5
        }]
    );
}

#[test]
fn multiple_checkers_all_must_be_up() {
    let a = addr("10.0.0.2:80");
    let mut c2 = tcp(addr("10.0.0.2:8080"));
    c2.retry = 0;
    let mut c1 = tcp(a);
    c1.retry = 0;
    let mut h = H::new(vs_with(vec![rs("10.0.0.2:80", vec![c1, c2])]));
    h.actions();
    // both probed at t0: first fails, second ok -> removed
    h.step(|p| {
        if p.id.checker == 0 {
            ProbeResult::failure("x")
        } else {
            ProbeResult::success()
        }
    });
    assert_eq!(h.ops(), vec![Action::RemoveDest { rs: a }]);
    // second fails too: nothing more
    h.step(|_| ProbeResult::failure("x"));
    assert!(h.ops().is_empty());
    // first recovers: still down
    h.step(|p| {
        if p.id.checker == 0 {
            ProbeResult::success()
        } else {
            ProbeResult::failure("x")
        }
    });
    assert!(h.ops().is_empty());
    assert_eq!(h.vs.rs_alive(0), Some(false));
    // second recovers: up
    h.step(ok);
    assert_eq!(h.ops(), vec![Action::AddDest { rs: a, weight: 1 }]);
}

#[test]
fn quorum_hysteresis_and_sorry_server() {
    let mut v = vs_with(vec![
        rs_tcp("10.0.0.2:80"),
        rs_tcp("10.0.0.3:80"),
        rs_tcp("10.0.0.4:80"),
    ]);
    for r in &mut v.real_servers {
        r.checkers[0].retry = 0;
    }
    v.quorum = 2;
    v.hysteresis = 1;
    v.sorry_server = Some(addr("10.0.0.9:80"));
    v.quorum_up = Some(ScriptConfig::new("/bin/qup"));
    v.quorum_down = Some(ScriptConfig::new("/bin/qdown"));
    let mut h = H::new(v);
    let acts = h.actions();
    assert!(
        H::logs(&acts).contains(&"Gained quorum 2+1=3 <= 3 for VS [10.0.0.1]:tcp:80".to_string()),
        "{acts:?}"
    );
    assert!(acts.contains(&Action::RunScript {
        script: ScriptConfig::new("/bin/qup"),
        reason: ScriptReason::QuorumUp
    }));
    let down = |idx: usize| {
        move |p: &Probe| {
            if p.id.rs <= idx {
                ProbeResult::failure("x")
            } else {
                ProbeResult::success()
            }
        }
    };
    // one down: 2 >= 3-1 -> keep quorum (hysteresis)
    h.step(down(0));
    assert_eq!(
        h.ops(),
        vec![Action::RemoveDest {
            rs: addr("10.0.0.2:80")
        }]
    );
    assert!(h.vs.quorum_up());
    // two down: 1 < 2-1? no: 1 >= 1 -> still up
    h.step(down(1));
    assert_eq!(
        h.ops(),
        vec![Action::RemoveDest {
            rs: addr("10.0.0.3:80")
        }]
    );
    assert!(h.vs.quorum_up());
    // all down: lost, sorry server takes over
    h.step(down(2));
    let acts = h.actions();
    let ops: Vec<_> = acts
        .iter()
        .filter(|a| !matches!(a, Action::Log { .. }))
        .cloned()
        .collect();
    assert_eq!(
        ops,
        vec![
            Action::RemoveDest {
                rs: addr("10.0.0.4:80")
            },
            Action::AddSorry {
                addr: addr("10.0.0.9:80"),
                weight: 1
            },
            Action::RunScript {
                script: ScriptConfig::new("/bin/qdown"),
                reason: ScriptReason::QuorumDown
            },
        ]
    );
    let logs = H::logs(&acts);
    assert!(
        logs.contains(&"Lost quorum 2-1=1 > 0 for VS [10.0.0.1]:tcp:80".to_string()),
        "{logs:?}"
    );
    assert!(
        logs.contains(&"Adding sorry server [10.0.0.9]:tcp:80 to VS [10.0.0.1]:tcp:80".to_string())
    );
    assert!(!h.vs.quorum_up());
    // one and two come back: below 2+1, sorry stays, no table change for them
    h.step(|p| {
        if p.id.rs == 0 {
            ProbeResult::success()
        } else {
            ProbeResult::failure("x")
        }
    });
    assert!(h.ops().is_empty());
    h.step(|p| {
        if p.id.rs <= 1 {
            ProbeResult::success()
        } else {
            ProbeResult::failure("x")
        }
    });
    assert!(h.ops().is_empty());
    assert_eq!(h.vs.rs_alive(1), Some(true));
    // third back: 3 >= 3 -> gained, sorry removed, alive servers re-added
    h.step(ok);
    let acts = h.actions();
    let ops: Vec<_> = acts
        .iter()
        .filter(|a| !matches!(a, Action::Log { .. }))
        .cloned()
        .collect();
    assert_eq!(
        ops,
        vec![
            Action::RemoveSorry {
                addr: addr("10.0.0.9:80")
            },
            Action::AddDest {
                rs: addr("10.0.0.2:80"),
                weight: 1
            },
            Action::AddDest {
                rs: addr("10.0.0.3:80"),
                weight: 1
            },
            Action::AddDest {
                rs: addr("10.0.0.4:80"),
                weight: 1
            },
            Action::RunScript {
                script: ScriptConfig::new("/bin/qup"),
                reason: ScriptReason::QuorumUp
            },
        ]
    );
    assert!(
        H::logs(&acts).contains(&"Gained quorum 2+1=3 <= 3 for VS [10.0.0.1]:tcp:80".to_string())
    );
}

#[test]
fn alpha_with_sorry_server_starts_with_quorum_down() {
    let mut r = rs_tcp("10.0.0.2:80");
    r.checkers[0].alpha = true;
    let mut v = vs_with(vec![r]);
    v.sorry_server = Some(addr("10.0.0.9:80"));
    let mut h = H::new(v);
    let acts = h.actions();
    assert!(
        H::logs(&acts)
            .contains(&"Starting with quorum down 1-0=1 > 0 for VS [10.0.0.1]:tcp:80".to_string()),
        "{acts:?}"
    );
    assert!(acts.contains(&Action::AddSorry {
        addr: addr("10.0.0.9:80"),
        weight: 1
    }));
    h.step(ok);
    let ops = h.ops();
    assert_eq!(
        ops,
        vec![
            Action::RemoveSorry {
                addr: addr("10.0.0.9:80")
            },
            Action::AddDest {
                rs: addr("10.0.0.2:80"),
                weight: 1
            }
        ]
    );
}

#[test]
fn sorry_server_inhibit_keeps_it_at_weight_zero() {
    let mut r = rs_tcp("10.0.0.2:80");
    r.checkers[0].retry = 0;
    let mut v = vs_with(vec![r]);
    v.sorry_server = Some(addr("10.0.0.9:80"));
    v.sorry_server_inhibit = true;
    let mut h = H::new(v);
    let ops = h.ops();
    assert_eq!(
        ops,
        vec![
            Action::AddDest {
                rs: addr("10.0.0.2:80"),
                weight: 1
            },
            Action::AddSorry {
                addr: addr("10.0.0.9:80"),
                weight: 0
            }
        ]
    );
    h.step(fail);
    assert_eq!(
        h.ops(),
        vec![
            Action::RemoveDest {
                rs: addr("10.0.0.2:80")
            },
            Action::SetSorryWeight {
                addr: addr("10.0.0.9:80"),
                weight: 1
            }
        ]
    );
    h.step(ok);
    assert_eq!(
        h.ops(),
        vec![
            Action::SetSorryWeight {
                addr: addr("10.0.0.9:80"),
                weight: 0
            },
            Action::AddDest {
                rs: addr("10.0.0.2:80"),
                weight: 1
            }
        ]
    );
}

fn misc(dynamic: bool) -> CheckerConfig {
    let mut c = CheckerConfig::new(
        CheckKind::Misc(MiscCheck {
            path: "/usr/local/bin/chk --x".into(),
            timeout: None,
            dynamic,
            user: None,
        }),
        addr("10.0.0.2:80"),
    );
    c.delay_loop = LOOP;
    c.warmup = Some(Duration::ZERO);
    c
}

#[test]
fn misc_dynamic_weights_and_exit_codes() {
    let mut r = rs("10.0.0.2:80", vec![misc(true)]);
    r.weight = 10;
    let a = addr("10.0.0.2:80");
    let mut h = H::new(vs_with(vec![r]));
    assert_eq!(h.ops(), vec![Action::AddDest { rs: a, weight: 10 }]);
    h.step(|_| ProbeResult::exit(0));
    assert!(h.ops().is_empty());
    h.step(|_| ProbeResult::exit(5));
    let acts = h.actions();
    assert!(
        acts.contains(&Action::SetWeight { rs: a, weight: 3 }),
        "{acts:?}"
    );
    assert!(H::logs(&acts).contains(&"Changing weight from 10 to 3 for active service [10.0.0.2]:tcp:80 of VS [10.0.0.1]:tcp:80".to_string()));
    h.step(|_| ProbeResult::exit(5));
    assert!(h.ops().is_empty(), "same exit code: no change");
    h.step(|_| ProbeResult::exit(2)); // weight 0, still up
    assert_eq!(h.ops(), vec![Action::SetWeight { rs: a, weight: 0 }]);
    assert_eq!(h.vs.rs_alive(0), Some(true));
    h.step(|_| ProbeResult::exit(1)); // MISC retry 0: down at once
    let acts = h.actions();
    assert!(acts.contains(&Action::RemoveDest { rs: a }));
    assert!(H::logs(&acts).contains(
        &"Misc check for [[10.0.0.2]:tcp:80 VS [10.0.0.1]:tcp:80] by [/usr/local/bin/chk] failed (exited with status 1)."
            .to_string()
    ));
    h.step(|_| ProbeResult::exit(0)); // back with the configured weight
    let acts = h.actions();
    assert!(
        acts.contains(&Action::AddDest { rs: a, weight: 10 }),
        "{acts:?}"
    );
    assert!(H::logs(&acts).contains(
        &"Misc check for [[10.0.0.2]:tcp:80 VS [10.0.0.1]:tcp:80] by [/usr/local/bin/chk] succeeded.".to_string()
    ));
}

#[test]
fn misc_without_dynamic_treats_2_as_failure_and_timeout() {
    let a = addr("10.0.0.2:80");
    let mut h = H::new(vs_with(vec![rs("10.0.0.2:80", vec![misc(false)])]));
    h.actions();
    h.step(|_| ProbeResult::exit(7));
    assert_eq!(h.ops(), vec![Action::RemoveDest { rs: a }]);
    h.step(|_| ProbeResult::exit(0));
    h.actions();
    h.step(|_| ProbeResult::signaled(15, true));
    let acts = h.actions();
    assert!(acts.contains(&Action::RemoveDest { rs: a }));
    assert!(
        H::logs(&acts)
            .iter()
            .any(|l| l.ends_with("by [/usr/local/bin/chk] timed out.")),
        "{acts:?}"
    );
}

#[test]
fn warmup_is_random_within_bound_and_deterministic_per_seed() {
    let mut c = tcp(addr("10.0.0.2:80"));
    c.warmup = Some(Duration::from_secs(10));
    let v = vs_with(vec![
        rs("10.0.0.2:80", vec![c.clone()]),
        rs("10.0.0.3:80", vec![c]),
    ]);
    let t0 = Instant::now();
    let a = VirtualServer::new(v.clone(), t0, 42);
    let b = VirtualServer::new(v.clone(), t0, 42);
    let first = a.poll_timeout().unwrap();
    assert_eq!(first, b.poll_timeout().unwrap());
    assert!(first >= t0 && first <= t0 + Duration::from_secs(10));
    // no probe before the warmup expires
    let mut a = a;
    a.handle_timeout(t0);
    if first > t0 {
        assert!(a.poll_probe().is_none());
    }
    // default warmup = up to delay_loop
    let mut c = tcp(addr("10.0.0.2:80"));
    c.warmup = None;
    let v = vs_with(vec![rs("10.0.0.2:80", vec![c])]);
    let x = VirtualServer::new(v, t0, 7).poll_timeout().unwrap();
    assert!(x <= t0 + LOOP);
}

#[test]
fn http_urls_are_walked_and_recovery_needs_a_full_pass() {
    let a = addr("10.0.0.2:80");
    let mut c = CheckerConfig::new(
        CheckKind::Http(HttpCheck {
            urls: vec![Url::new("/a"), Url::new("/b")],
            ..Default::default()
        }),
        a,
    );
    c.delay_loop = LOOP;
    c.delay_before_retry = DBR;
    c.warmup = Some(Duration::ZERO);
    let mut h = H::new(vs_with(vec![rs("10.0.0.2:80", vec![c])]));
    h.actions();
    let p = h.step(ok);
    assert_eq!(p[0].url_index, Some(0));
    let p = h.step(ok);
    assert_eq!(p[0].url_index, Some(1));
    assert_eq!(h.elapsed(), LOOP, "urls are delay_loop apart");
    h.actions();
    // url 0 fails: retry 1 -> one retry after DBR, then down
    let p = h.step(|_| ProbeResult::failure("HTTP status code error to"));
    assert_eq!(p[0].url_index, Some(0));
    assert!(h.ops().is_empty());
    h.step(|_| ProbeResult::failure("HTTP status code error to"));
    let acts = h.actions();
    assert!(acts.contains(&Action::RemoveDest { rs: a }));
    assert!(H::logs(&acts)
        .contains(&"HTTP_CHECK on service [10.0.0.2]:tcp:80 failed after 1 retries.".to_string()));
    // down: the failed url is re-checked; its success restarts from url 0
    let p = h.step(|_| ProbeResult::success_with("HTTP status code"));
    assert_eq!(p[0].url_index, Some(0));
    assert!(H::logs(&h.actions())
        .contains(&"HTTP status code success to [10.0.0.2]:tcp:80 url(/a)".to_string()));
    let p = h.step(ok);
    assert_eq!(p[0].url_index, Some(0));
    assert!(h.ops().is_empty());
    let p = h.step(ok);
    assert_eq!(p[0].url_index, Some(1));
    let acts = h.actions();
    assert!(acts.contains(&Action::AddDest { rs: a, weight: 1 }));
    assert!(H::logs(&acts)
        .contains(&"Remote Web server [10.0.0.2]:tcp:80 succeed on service.".to_string()));
}

#[test]
fn http_first_failure_at_startup_is_immediate() {
    let a = addr("10.0.0.2:80");
    let mut c = CheckerConfig::new(
        CheckKind::Http(HttpCheck {
            urls: vec![Url::new("/")],
            ..Default::default()
        }),
        a,
    );
    c.warmup = Some(Duration::ZERO);
    let mut h = H::new(vs_with(vec![rs("10.0.0.2:80", vec![c])]));
    h.actions();
    h.step(|_| ProbeResult::failure("Connection failed"));
    assert_eq!(h.ops(), vec![Action::RemoveDest { rs: a }]);
}

#[test]
fn smtp_resets_retries_each_loop() {
    let a = addr("10.0.0.2:25");
    let mut c = CheckerConfig::new(
        CheckKind::Smtp {
            helo_name: "rvs".into(),
        },
        a,
    );
    c.delay_loop = LOOP;
    c.delay_before_retry = DBR;
    c.warmup = Some(Duration::ZERO);
    let mut h = H::new(vs_with(vec![rs("10.0.0.2:25", vec![c])]));
    h.actions();
    h.step(|_| ProbeResult::failure("Bad greeting banner from server"));
    assert!(h.ops().is_empty(), "smtp retries even at start-up");
    h.step(|_| ProbeResult::failure("Bad greeting banner from server"));
    assert_eq!(h.elapsed(), DBR);
    assert_eq!(h.ops(), vec![Action::RemoveDest { rs: a }]);
    h.step(ok);
    assert_eq!(h.ops(), vec![Action::AddDest { rs: a, weight: 1 }]);
}

#[test]
fn dns_down_checker_does_not_burst() {
    let a = addr("10.0.0.2:53");
    let mut c = CheckerConfig::new(CheckKind::Dns(DnsCheck::default()), a);
    c.delay_loop = LOOP;
    c.delay_before_retry = DBR;
    c.warmup = Some(Duration::ZERO);
    let mut h = H::new(vs_with(vec![rs("10.0.0.2:53", vec![c])]));
    h.actions();
    h.step(|_| ProbeResult::failure("read timeout from socket"));
    assert_eq!(h.ops(), vec![Action::RemoveDest { rs: a }]);
    let t = h.elapsed();
    h.step(|_| ProbeResult::failure("read timeout from socket"));
    h.step(|_| ProbeResult::failure("read timeout from socket"));
    assert_eq!(h.elapsed(), t + LOOP * 2);
}

#[test]
fn file_check_weight() {
    let a = addr("10.0.0.2:80");
    let mut c = CheckerConfig::new(
        CheckKind::File(FileCheck {
            path: "/x".into(),
            weight: 2,
            reverse: false,
        }),
        a,
    );
    c.warmup = Some(Duration::ZERO);
    let mut r = rs("10.0.0.2:80", vec![c]);
    r.weight = 10;
    let mut h = H::new(vs_with(vec![r]));
    h.actions();
    h.step(|_| ProbeResult::file(3));
    assert_eq!(h.ops(), vec![Action::SetWeight { rs: a, weight: 16 }]);
    h.step(|_| ProbeResult::file(-200));
    assert_eq!(h.ops(), vec![Action::RemoveDest { rs: a }]);
}

#[test]
fn ha_suspend_stops_probing() {
    let mut h = H::new(vs_with(vec![rs_tcp("10.0.0.2:80")]));
    h.actions();
    h.vs.set_suspended(true);
    assert!(h.next_probes().is_empty());
    assert!(h.next_probes().is_empty());
    assert_eq!(h.elapsed(), LOOP);
    h.vs.set_suspended(false);
    assert_eq!(h.next_probes().len(), 1);
}

#[test]
fn shutdown_with_omega_runs_down_scripts() {
    let mut r = rs_tcp("10.0.0.2:80");
    r.notify_down = Some(ScriptConfig::new("/bin/down"));
    let mut v = vs_with(vec![r]);
    v.omega = true;
    v.quorum_down = Some(ScriptConfig::new("/bin/qdown"));
    let mut h = H::new(v.clone());
    h.actions();
    h.vs.shutdown();
    assert_eq!(
        h.ops(),
        vec![
            Action::RemoveDest {
                rs: addr("10.0.0.2:80")
            },
            Action::RunScript {
                script: ScriptConfig::new("/bin/down"),
                reason: ScriptReason::NotifyDown
            },
            Action::RunScript {
                script: ScriptConfig::new("/bin/qdown"),
                reason: ScriptReason::QuorumDown
            },
        ]
    );
    assert!(h.vs.poll_timeout().is_none());
    v.omega = false;
    let mut h = H::new(v);
    h.actions();
    h.vs.shutdown();
    assert_eq!(
        h.ops(),
        vec![Action::RemoveDest {
            rs: addr("10.0.0.2:80")
        }]
    );
}

#[test]
fn real_server_without_checkers_is_always_in() {
    let mut h = H::new(vs_with(vec![RealServerConfig::new(addr("10.0.0.2:80"))]));
    assert_eq!(
        h.ops(),
        vec![Action::AddDest {
            rs: addr("10.0.0.2:80"),
            weight: 1
        }]
    );
    assert!(h.vs.poll_timeout().is_none());
}

#[test]
fn status_snapshot() {
    let mut h = H::new(vs_with(vec![rs_tcp("10.0.0.2:80")]));
    h.step(fail);
    let st = h.vs.status(h.now + Duration::from_secs(3));
    assert_eq!(st.real_servers.len(), 1);
    let r = &st.real_servers[0];
    assert!(!r.alive && !r.in_table);
    assert_eq!(
        r.checkers[0].last_error.as_deref(),
        Some("TCP connection failed")
    );
    assert_eq!(r.checkers[0].counters.failures, 1);
    assert_eq!(r.checkers[0].last_transition_secs_ago, Some(3.0));
}

// ===== reload =====

#[test]
fn reload_keeps_healthy_and_down_servers_without_flapping() {
    let v = vs_with(vec![rs_tcp("10.0.0.2:80"), rs_tcp("10.0.0.3:80")]);
    let mut h = H::new(v.clone());
    h.actions();
    // .3 goes down
    h.step(|p| {
        if p.id.rs == 1 {
            ProbeResult::failure("x")
        } else {
            ProbeResult::success()
        }
    });
    assert_eq!(
        h.ops(),
        vec![Action::RemoveDest {
            rs: addr("10.0.0.3:80")
        }]
    );
    h.vs.reload(v, h.now, 9);
    assert!(h.ops().is_empty(), "no flap on an unchanged reload");
    assert_eq!(h.vs.rs_alive(0), Some(true));
    assert_eq!(h.vs.rs_alive(1), Some(false));
    let c = h.vs.checker(CheckerId { rs: 1, checker: 0 }).unwrap();
    assert!(!c.is_up() && c.has_run());
    // .3 recovers after the reload with one success
    h.step(ok);
    assert_eq!(
        h.ops(),
        vec![Action::AddDest {
            rs: addr("10.0.0.3:80"),
            weight: 1
        }]
    );
}

#[test]
fn reload_adds_removes_and_reweights() {
    let v = vs_with(vec![rs_tcp("10.0.0.2:80"), rs_tcp("10.0.0.3:80")]);
    let mut h = H::new(v);
    h.actions();
    h.step(ok);
    h.actions();
    let mut v2 = vs_with(vec![rs_tcp("10.0.0.2:80"), rs_tcp("10.0.0.4:80")]);
    v2.real_servers[0].weight = 7;
    h.vs.reload(v2, h.now, 9);
    let acts = h.actions();
    let ops: Vec<_> = acts
        .iter()
        .filter(|a| !matches!(a, Action::Log { .. }))
        .cloned()
        .collect();
    assert_eq!(
        ops,
        vec![
            Action::RemoveDest {
                rs: addr("10.0.0.3:80")
            },
            Action::SetWeight {
                rs: addr("10.0.0.2:80"),
                weight: 7
            },
            Action::AddDest {
                rs: addr("10.0.0.4:80"),
                weight: 1
            },
        ]
    );
    assert!(H::logs(&acts).contains(&"service [10.0.0.3]:tcp:80 no longer exist".to_string()));
}

#[test]
fn reload_carries_retry_counter() {
    let mut c = tcp(addr("10.0.0.2:80"));
    c.retry = 2;
    let v = vs_with(vec![rs("10.0.0.2:80", vec![c])]);
    let mut h = H::new(v.clone());
    h.step(ok);
    h.step(fail);
    assert_eq!(
        h.vs.checker(CheckerId { rs: 0, checker: 0 })
            .unwrap()
            .retry_it(),
        1
    );
    h.vs.reload(v, h.now, 3);
    assert_eq!(
        h.vs.checker(CheckerId { rs: 0, checker: 0 })
            .unwrap()
            .retry_it(),
        1
    );
    h.actions();
    h.step(fail);
    assert!(h.ops().is_empty());
    h.step(fail);
    assert_eq!(
        h.ops(),
        vec![Action::RemoveDest {
            rs: addr("10.0.0.2:80")
        }]
    );
}

#[test]
fn checker_logs_name_the_real_server_not_the_connect_port() {
    let mut c = tcp(addr("10.0.0.2:8080"));
    c.retry = 0;
    let mut h = H::new(vs_with(vec![rs("10.0.0.2:80", vec![c])]));
    h.actions();
    h.step(fail);
    let logs = H::logs(&h.actions());
    assert!(
        logs.contains(&"TCP_CHECK on service [10.0.0.2]:tcp:80 failed.".to_string()),
        "{logs:?}"
    );
}

#[test]
fn ping_failure_log_names_the_vs() {
    let a = addr("10.0.0.2:0");
    let mut c = CheckerConfig::new(CheckKind::Ping, a);
    c.warmup = Some(Duration::ZERO);
    let mut h = H::new(vs_with(vec![rs("10.0.0.2:0", vec![c])]));
    h.actions();
    h.step(|_| ProbeResult::failure("timeout"));
    let logs = H::logs(&h.actions());
    assert!(
        logs.contains(
            &"ICMP CHECK on service [10.0.0.2]:tcp:0 of [10.0.0.1]:tcp:80 failed.".to_string()
        ),
        "{logs:?}"
    );
}

#[test]
fn render_checks_table() {
    let mut h = H::new(vs_with(vec![rs_tcp("10.0.0.2:80")]));
    h.step(fail);
    let text = render_checks(&[h.vs.status(h.now)]);
    assert!(
        text.starts_with("VS [10.0.0.1]:tcp:80  quorum DOWN  alive weight 0\n"),
        "{text}"
    );
    assert!(
        text.contains("  RS 10.0.0.2:80  DOWN  weight 1  not in table"),
        "{text}"
    );
    assert!(text.contains("TCP_CHECK  10.0.0.2:80"), "{text}");
    assert!(text.contains("last error: TCP connection failed"), "{text}");
}
