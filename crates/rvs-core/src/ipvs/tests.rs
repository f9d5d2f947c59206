//! Behavioural tests of the whole table, hand-derived from the kernel rules
//! (see shared/reference/ipvs-kernel.md).

use super::*;
use std::net::{IpAddr, SocketAddr};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn sa(s: &str, p: u16) -> SocketAddr {
    SocketAddr::new(ip(s), p)
}

const VIP: &str = "198.18.0.100";

fn tcp_key() -> SvcKey {
    SvcKey::Addr {
        proto: Protocol::Tcp,
        addr: ip(VIP),
        port: 80,
    }
}

fn setup(sched: &str, dests: &[(&str, i32)], fwd: FwdMethod) -> Ipvs {
    let mut v = Ipvs::new();
    v.add_service(Time::ZERO, &ServiceConf::new(tcp_key(), sched))
        .unwrap();
    for (a, w) in dests {
        v.add_dest(Time::ZERO, &tcp_key(), &DestConf::new(ip(a), 80, fwd, *w))
            .unwrap();
    }
    v
}

fn pkt(client: &str, cport: u16, flags: TcpFlags, dir: Dir) -> Packet {
    match dir {
        Dir::In => Packet {
            fwmark: 0,
            proto: Protocol::Tcp,
            src: sa(client, cport),
            dst: sa(VIP, 80),
            tcp_flags: flags,
            len: 60,
            dir,
        },
        Dir::Out => unreachable!(),
    }
}

/// New connection from a fresh client port; returns the chosen dest address.
fn pick(v: &mut Ipvs, now: Time, cport: u16) -> Option<IpAddr> {
    match v.process(now, &pkt("198.18.1.1", cport, TcpFlags::SYN, Dir::In), &[]) {
        Verdict::Forward { dest, created, .. } => {
            assert!(created);
            Some(dest.ip())
        }
        Verdict::NoDest => None,
        other => panic!("unexpected {other:?}"),
    }
}

fn picks(v: &mut Ipvs, n: usize, start_port: u16) -> Vec<String> {
    (0..n)
        .map(|i| {
            pick(v, Time::ZERO, start_port + i as u16)
                .map(|a| a.to_string())
                .unwrap_or_else(|| "-".into())
        })
        .collect()
}

const A: &str = "198.18.2.1";
const B: &str = "198.18.2.2";
const C: &str = "198.18.2.3";

fn names(v: &[String]) -> String {
    v.iter()
        .map(|s| match s.as_str() {
            A => "A",
            B => "B",
            C => "C",
            "-" => "-",
            _ => "?",
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[test]
fn rr_newest_first() {
    let mut v = setup("rr", &[(A, 1), (B, 1), (C, 1)], FwdMethod::Route);
    assert_eq!(names(&picks(&mut v, 6, 1000)), "C,B,A,C,B,A");
    // list order is newest first
    let order: Vec<IpAddr> = v
        .service(&tcp_key())
        .unwrap()
        .dests()
        .map(|d| d.addr())
        .collect();
    assert_eq!(order, vec![ip(C), ip(B), ip(A)]);
}

#[test]
fn rr_delete_cursor_moves_to_predecessor() {
    let mut v = setup("rr", &[(A, 1), (B, 1), (C, 1)], FwdMethod::Route);
    assert_eq!(names(&picks(&mut v, 2, 1000)), "C,B");
    v.del_dest(Time::ZERO, &tcp_key(), ip(B), 80).unwrap();
    assert_eq!(names(&picks(&mut v, 4, 2000)), "A,C,A,C");

    let mut v = setup("rr", &[(A, 1), (B, 1), (C, 1)], FwdMethod::Route);
    assert_eq!(names(&picks(&mut v, 1, 1000)), "C");
    v.del_dest(Time::ZERO, &tcp_key(), ip(C), 80).unwrap();
    assert_eq!(names(&picks(&mut v, 3, 2000)), "B,A,B");
}

#[test]
fn rr_skips_weight0_and_overloaded() {
    let mut v = setup("rr", &[(A, 1), (B, 0), (C, 5)], FwdMethod::Route);
    assert_eq!(names(&picks(&mut v, 4, 1000)), "C,A,C,A");
    let mut v = setup("rr", &[(A, 0), (B, 0)], FwdMethod::Route);
    assert_eq!(names(&picks(&mut v, 2, 1000)), "-,-");
}

#[test]
fn wrr_incremental_adds_start_with_cw_1() {
    let mut v = setup("wrr", &[(A, 4), (B, 3), (C, 2)], FwdMethod::Route);
    assert_eq!(
        names(&picks(&mut v, 18, 1000)),
        "C,B,A,A,B,A,C,B,A,C,B,A,A,B,A,C,B,A"
    );
    let mut v = setup("wrr", &[(A, 4), (B, 2)], FwdMethod::Route);
    assert_eq!(names(&picks(&mut v, 6, 1000)), "B,A,A,B,A,A");
    let mut v = setup("wrr", &[(A, 2), (B, 4), (C, 6)], FwdMethod::Route);
    assert_eq!(names(&picks(&mut v, 9, 1000)), "C,B,A,C,C,B,C,B,A");
}

#[test]
fn wrr_bound_after_dests_starts_at_mw() {
    let mut v = setup("rr", &[(A, 4), (B, 3), (C, 2)], FwdMethod::Route);
    let mut conf = ServiceConf::new(tcp_key(), "wrr");
    conf.scheduler = "wrr".into();
    v.edit_service(Time::ZERO, &conf).unwrap();
    assert_eq!(names(&picks(&mut v, 9, 1000)), "A,B,A,C,B,A,C,B,A");
    // an -E that keeps wrr does not re-init
    assert_eq!(names(&picks(&mut v, 2, 2000)), "A,B");
    v.edit_service(Time::ZERO, &conf).unwrap();
    assert_eq!(names(&picks(&mut v, 1, 3000)), "A");
}

#[test]
fn wrr_all_zero_is_no_dest() {
    let mut v = setup("wrr", &[(A, 0), (B, 0)], FwdMethod::Route);
    assert_eq!(names(&picks(&mut v, 2, 1000)), "-,-");
}

#[test]
fn wlc_ties_go_to_newest_and_weights_matter() {
    // no connections: all overheads 0 -> first in list (newest = C)
    let mut v = setup("wlc", &[(A, 1), (B, 1), (C, 1)], FwdMethod::Route);
    // SYN makes each conn active (overhead 256): C, B, A, then C again
    assert_eq!(names(&picks(&mut v, 4, 1000)), "C,B,A,C");
    let mut v = setup("wlc", &[(A, 3), (B, 1)], FwdMethod::Route);
    // B(newest) first: 0*3 > 0*1? no -> B; then A (256*3 > 0*1? loh=256 for B... )
    assert_eq!(names(&picks(&mut v, 5, 1000)), "B,A,A,A,B");
}

#[test]
fn lc_sed_nq_fo_ovf() {
    let mut v = setup("lc", &[(A, 1), (B, 5), (C, 0)], FwdMethod::Route);
    assert_eq!(names(&picks(&mut v, 4, 1000)), "B,A,B,A");

    // sed: (active+1)/w; B(w=3) newest
    let mut v = setup("sed", &[(A, 1), (B, 3)], FwdMethod::Route);
    // B:1/3 vs A:1/1 -> B; B:2/3 vs A:1 -> B; B:3/3 vs A:1 -> tie -> B (earlier);
    // B:4/3 vs 1 -> A
    assert_eq!(names(&picks(&mut v, 4, 1000)), "B,B,B,A");

    // nq: first idle server in list order regardless of weight
    let mut v = setup("nq", &[(A, 1), (B, 3)], FwdMethod::Route);
    assert_eq!(names(&picks(&mut v, 4, 1000)), "B,A,B,B");

    // fo: highest weight, ties -> first in list
    let mut v = setup("fo", &[(A, 5), (B, 5), (C, 1)], FwdMethod::Route);
    assert_eq!(names(&picks(&mut v, 3, 1000)), "B,B,B");

    // ovf: highest weight while active <= weight
    let mut v = setup("ovf", &[(A, 2), (B, 1)], FwdMethod::Route);
    // A eligible while active <= 2: A,A,A (3rd: active 2 <= 2), then B (A has 3 > 2), B, then none
    assert_eq!(names(&picks(&mut v, 6, 1000)), "A,A,A,B,B,-");
}

#[test]
fn overload_thresholds_set_and_clear() {
    let mut v = Ipvs::new();
    v.add_service(Time::ZERO, &ServiceConf::new(tcp_key(), "rr"))
        .unwrap();
    let mut d = DestConf::new(ip(A), 80, FwdMethod::Masq, 1);
    d.u_threshold = 2;
    v.add_dest(Time::ZERO, &tcp_key(), &d).unwrap();
    v.add_dest(
        Time::ZERO,
        &tcp_key(),
        &DestConf::new(ip(B), 80, FwdMethod::Masq, 1),
    )
    .unwrap();
    // rr: B, A, B, A(now A has 2 -> overloaded after), B, B
    let p = picks(&mut v, 6, 1000);
    assert_eq!(names(&p), "B,A,B,A,B,B");
    let s = v.service(&tcp_key()).unwrap();
    let a = s.dest(ip(A), 80).unwrap();
    assert!(a.overloaded());
    // expire everything: SYN_RECV is 60 s
    v.handle_timeout(Time::from_secs(61));
    assert_eq!(v.conn_count(), 0);
    let s = v.service(&tcp_key()).unwrap();
    assert!(!s.dest(ip(A), 80).unwrap().overloaded());
    // editing with a higher u_threshold clears OVERLOAD at once
}

#[test]
fn tcp_states_nat_both_directions() {
    let mut v = setup("rr", &[(A, 1)], FwdMethod::Masq);
    let t = Time::ZERO;
    let cli = "203.0.113.9";
    let inp = |f| Packet {
        fwmark: 0,
        proto: Protocol::Tcp,
        src: sa(cli, 40000),
        dst: sa(VIP, 80),
        tcp_flags: f,
        len: 100,
        dir: Dir::In,
    };
    let out = |f| Packet {
        fwmark: 0,
        proto: Protocol::Tcp,
        src: sa(A, 80),
        dst: sa(cli, 40000),
        tcp_flags: f,
        len: 200,
        dir: Dir::Out,
    };
    let check = |v: &Ipvs, state: &str, exp: u64, act: u32, inact: u32| {
        let c = v.connections(t);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].state_name, state);
        assert_eq!(c[0].expires_secs, exp, "{state}");
        let s = v.service(&tcp_key()).unwrap();
        let d = s.dest(ip(A), 80).unwrap();
        assert_eq!((d.active_conns(), d.inact_conns()), (act, inact), "{state}");
    };
    assert!(matches!(
        v.process(t, &inp(TcpFlags::SYN), &[]),
        Verdict::Forward {
            created: true,
            fwd: FwdMethod::Masq,
            ..
        }
    ));
    check(&v, "SYN_RECV", 60, 1, 0);
    let r = v.process(t, &out(TcpFlags::SYN | TcpFlags::ACK), &[]);
    assert!(matches!(r, Verdict::Reply { vaddr, .. } if vaddr == sa(VIP, 80)));
    check(&v, "SYN_RECV", 60, 1, 0);
    v.process(t, &inp(TcpFlags::ACK), &[]);
    check(&v, "ESTABLISHED", 900, 1, 0);
    v.process(t, &out(TcpFlags::ACK), &[]);
    check(&v, "ESTABLISHED", 900, 1, 0);
    v.process(t, &inp(TcpFlags::FIN | TcpFlags::ACK), &[]);
    check(&v, "CLOSE_WAIT", 60, 0, 1);
    v.process(t, &out(TcpFlags::FIN | TcpFlags::ACK), &[]);
    check(&v, "TIME_WAIT", 120, 0, 1);
    v.process(t, &inp(TcpFlags::ACK), &[]);
    check(&v, "TIME_WAIT", 120, 0, 1);
    let st = v.total_stats();
    assert_eq!(
        (st.conns, st.inpkts, st.outpkts, st.inbytes, st.outbytes),
        (1, 4, 3, 400, 600)
    );
    // RST from the client on a live conn
    v.process(t, &inp(TcpFlags::RST), &[]);
    check(&v, "CLOSE", 10, 0, 1);
    // expiry
    v.handle_timeout(Time::from_secs(9));
    assert_eq!(v.conn_count(), 1);
    v.handle_timeout(Time::from_secs(10));
    assert_eq!(v.conn_count(), 0);
    let s = v.service(&tcp_key()).unwrap();
    let d = s.dest(ip(A), 80).unwrap();
    assert_eq!((d.active_conns(), d.inact_conns()), (0, 0));
}

#[test]
fn tcp_states_dr_input_only() {
    let mut v = setup("rr", &[(A, 1)], FwdMethod::Route);
    let mut t = Time::ZERO;
    let steps: &[(TcpFlags, &str, u64, u32, u32)] = &[
        (TcpFlags::SYN, "SYN_RECV", 60, 1, 0),
        (TcpFlags::ACK, "ESTABLISHED", 900, 1, 0),
        (TcpFlags::ACK | TcpFlags::PSH, "ESTABLISHED", 900, 1, 0),
        (TcpFlags::FIN | TcpFlags::ACK, "FIN_WAIT", 120, 0, 1),
        (TcpFlags::ACK, "FIN_WAIT", 120, 0, 1),
        (TcpFlags::RST, "CLOSE", 10, 0, 1),
    ];
    for &(f, state, exp, act, inact) in steps {
        t = t + std::time::Duration::from_millis(500);
        let r = v.process(t, &pkt("203.0.113.7", 5555, f, Dir::In), &[]);
        assert!(
            matches!(
                r,
                Verdict::Forward {
                    fwd: FwdMethod::Route,
                    ..
                }
            ),
            "{r:?}"
        );
        let c = &v.connections(t)[0];
        assert_eq!((c.state_name, c.expires_secs), (state, exp));
        let s = v.service(&tcp_key()).unwrap();
        let d = s.dest(ip(A), 80).unwrap();
        assert_eq!((d.active_conns(), d.inact_conns()), (act, inact), "{state}");
    }
    assert_eq!(v.total_stats().outpkts, 0);
}

#[test]
fn dr_reply_seen_switches_to_output_rows() {
    let mut v = setup("rr", &[(A, 1)], FwdMethod::Route);
    let t = Time::ZERO;
    v.process(t, &pkt("203.0.113.7", 5555, TcpFlags::SYN, Dir::In), &[]);
    v.process(t, &pkt("203.0.113.7", 5555, TcpFlags::ACK, Dir::In), &[]);
    // reply routed through the director: source is VIP:vport for non-MASQ
    let r = v.process(
        t,
        &Packet {
            fwmark: 0,
            proto: Protocol::Tcp,
            src: sa(VIP, 80),
            dst: sa("203.0.113.7", 5555),
            tcp_flags: TcpFlags::ACK,
            len: 40,
            dir: Dir::Out,
        },
        &[],
    );
    assert!(matches!(
        r,
        Verdict::Reply {
            fwd: FwdMethod::Route,
            ..
        }
    ));
    // now a client FIN uses the INPUT rows: ES -> CLOSE_WAIT
    v.process(t, &pkt("203.0.113.7", 5555, TcpFlags::FIN, Dir::In), &[]);
    assert_eq!(v.connections(t)[0].state_name, "CLOSE_WAIT");
}

#[test]
fn non_syn_is_not_ours_unless_sloppy() {
    let mut v = setup("rr", &[(A, 1)], FwdMethod::Route);
    let p = pkt("203.0.113.7", 5555, TcpFlags::ACK, Dir::In);
    assert_eq!(v.process(Time::ZERO, &p, &[]), Verdict::NotOurs);
    v.sysctl_mut().sloppy_tcp = true;
    assert!(matches!(
        v.process(Time::ZERO, &p, &[]),
        Verdict::Forward { created: true, .. }
    ));
    // ACK in NONE -> ESTABLISHED (current kernels)
    assert_eq!(v.connections(Time::ZERO)[0].state_name, "ESTABLISHED");
    // RST never schedules
    let r = pkt("203.0.113.7", 5556, TcpFlags::RST, Dir::In);
    assert_eq!(v.process(Time::ZERO, &r, &[]), Verdict::NotOurs);
    // no service
    let mut p2 = p;
    p2.dst = sa("198.18.9.9", 80);
    assert_eq!(v.process(Time::ZERO, &p2, &[]), Verdict::NotOurs);
}

#[test]
fn set_timeouts_rules() {
    let mut v = Ipvs::new();
    assert_eq!(v.timeouts(), (900, 120, 300));
    v.set_timeouts(1, 0, 1).unwrap();
    assert_eq!(v.timeouts(), (1, 120, 1));
    assert_eq!(
        v.set_timeouts(5, 5, MAX_TIMEOUT + 1)
            .unwrap_err()
            .errno_name(),
        "EINVAL"
    );
    assert_eq!(v.timeouts(), (1, 120, 1), "nothing changes on error");
    v.add_service(Time::ZERO, &ServiceConf::new(tcp_key(), "rr"))
        .unwrap();
    v.add_dest(
        Time::ZERO,
        &tcp_key(),
        &DestConf::new(ip(A), 80, FwdMethod::Route, 1),
    )
    .unwrap();
    v.process(
        Time::ZERO,
        &pkt("203.0.113.7", 1, TcpFlags::SYN, Dir::In),
        &[],
    );
    v.process(
        Time::ZERO,
        &pkt("203.0.113.7", 1, TcpFlags::ACK, Dir::In),
        &[],
    );
    assert_eq!(v.connections(Time::ZERO)[0].expires_secs, 1);
}

/// The seed: `ipvsadm -E -t VIP:80 -s rr -p 5`, `ipvsadm --set 1 1 1`.
fn seed_persistence(p: u32) {
    let vip = "192.168.253.150";
    let key = SvcKey::Addr {
        proto: Protocol::Tcp,
        addr: ip(vip),
        port: 80,
    };
    let mut v = Ipvs::new();
    v.add_service(Time::ZERO, &ServiceConf::new(key, "rr"))
        .unwrap();
    for rs in ["192.168.253.129", "192.168.253.148"] {
        v.add_dest(
            Time::ZERO,
            &key,
            &DestConf::new(ip(rs), 80, FwdMethod::Route, 1),
        )
        .unwrap();
    }
    v.edit_service(Time::ZERO, &ServiceConf::new(key, "rr").persistent(p))
        .unwrap();
    v.set_timeouts(1, 1, 1).unwrap();
    let browser = |v: &mut Ipvs, now: Time, port: u16| -> IpAddr {
        let syn = Packet {
            fwmark: 0,
            proto: Protocol::Tcp,
            src: sa("192.168.253.1", port),
            dst: sa(vip, 80),
            tcp_flags: TcpFlags::SYN,
            len: 60,
            dir: Dir::In,
        };
        let Verdict::Forward { dest, .. } = v.process(now, &syn, &[]) else {
            panic!("no forward")
        };
        let mut ack = syn;
        ack.tcp_flags = TcpFlags::ACK;
        v.process(now, &ack, &[]);
        let mut fin = syn;
        fin.tcp_flags = TcpFlags::FIN | TcpFlags::ACK;
        v.process(now, &fin, &[]);
        dest.ip()
    };
    let mut now = Time::from_secs(100);
    let first = browser(&mut v, now, 50000);
    // the newest dest first under rr
    assert_eq!(first, ip("192.168.253.148"));
    // template row: NONE, cport 0, vport 80, dport 80, expires p
    let conns = v.connections(now);
    let tpl = conns.iter().find(|c| c.template).unwrap();
    assert_eq!(
        (
            tpl.proto_name,
            tpl.state_name,
            tpl.cport,
            tpl.vport,
            tpl.dport,
            tpl.expires_secs
        ),
        ("TCP", "NONE", 0, 80, 80, p as u64)
    );
    assert_eq!(tpl.caddr, ip("192.168.253.1"));
    assert_eq!(tpl.daddr, first);
    // reloads within the persistence window stick (each refreshes the template)
    for i in 1..6u16 {
        now = now + std::time::Duration::from_millis(p as u64 * 1000 - 1000);
        v.handle_timeout(now);
        assert_eq!(browser(&mut v, now, 50000 + i), first, "reload {i}");
    }
    // idle: controlled conns expire after 1 s, the template p s after the last new conn
    now = now + std::time::Duration::from_millis(p as u64 * 1000 - 1);
    v.handle_timeout(now);
    assert!(v.connections(now).iter().any(|c| c.template));
    now = now + std::time::Duration::from_millis(1);
    v.handle_timeout(now);
    assert_eq!(v.conn_count(), 0, "{:?}", v.connections(now));
    // rr moves on
    let second = browser(&mut v, now, 51000);
    assert_eq!(second, ip("192.168.253.129"));
    assert_eq!(v.service(&key).unwrap().stats().conns, 7);
}

#[test]
fn persistence_seed_p5() {
    seed_persistence(5);
}

#[test]
fn persistence_seed_p10() {
    seed_persistence(10);
}

#[test]
fn template_survives_while_controlling_conns() {
    let mut v = Ipvs::new();
    v.add_service(Time::ZERO, &ServiceConf::new(tcp_key(), "rr").persistent(5))
        .unwrap();
    v.add_dest(
        Time::ZERO,
        &tcp_key(),
        &DestConf::new(ip(A), 80, FwdMethod::Route, 1),
    )
    .unwrap();
    let p = pkt("203.0.113.7", 1234, TcpFlags::SYN, Dir::In);
    v.process(Time::ZERO, &p, &[]);
    let mut a = p;
    a.tcp_flags = TcpFlags::ACK;
    v.process(Time::ZERO, &a, &[]); // ESTABLISHED 900 s -> template ASSURED
    let t = v
        .connections(Time::ZERO)
        .into_iter()
        .find(|c| c.template)
        .unwrap();
    assert_eq!(t.state_name, "NONE", "seed-compatible display by default");
    v.sysctl_mut().show_assured_templates = true;
    let t = v
        .connections(Time::ZERO)
        .into_iter()
        .find(|c| c.template)
        .unwrap();
    assert_eq!(t.state_name, "ASSURED");
    assert_eq!(
        v.service(&tcp_key())
            .unwrap()
            .dest(ip(A), 80)
            .unwrap()
            .persist_conns(),
        1
    );
    v.handle_timeout(Time::from_secs(5));
    // template timer fired but it controls a conn: re-armed 60 s
    let t = v
        .connections(Time::from_secs(5))
        .into_iter()
        .find(|c| c.template)
        .unwrap();
    assert_eq!(t.expires_secs, 60);
    v.handle_timeout(Time::from_secs(900));
    assert_eq!(
        v.conn_count(),
        1,
        "conn expired, template waits for its own timer"
    );
    v.handle_timeout(Time::from_secs(905));
    assert_eq!(v.conn_count(), 0);
}

#[test]
fn quiesced_dest_keeps_persistent_clients_unless_sysctl() {
    let mut v = Ipvs::new();
    v.add_service(
        Time::ZERO,
        &ServiceConf::new(tcp_key(), "rr").persistent(300),
    )
    .unwrap();
    v.add_dest(
        Time::ZERO,
        &tcp_key(),
        &DestConf::new(ip(A), 80, FwdMethod::Route, 1),
    )
    .unwrap();
    v.add_dest(
        Time::ZERO,
        &tcp_key(),
        &DestConf::new(ip(B), 80, FwdMethod::Route, 1),
    )
    .unwrap();
    let first = pick(&mut v, Time::ZERO, 1).unwrap();
    assert_eq!(first, ip(B));
    v.edit_dest(
        Time::ZERO,
        &tcp_key(),
        &DestConf::new(ip(B), 80, FwdMethod::Route, 0),
    )
    .unwrap();
    assert_eq!(pick(&mut v, Time::ZERO, 2), Some(ip(B)));
    v.sysctl_mut().expire_quiescent_template = true;
    assert_eq!(pick(&mut v, Time::ZERO, 3), Some(ip(A)));
    // the invalidated template lingers with ports 0xffff while it controls conns
    let conns = v.connections(Time::ZERO);
    assert!(conns
        .iter()
        .any(|c| c.template && c.vport == 0xffff && c.dport == 0xffff));
}

#[test]
fn fwmark_template_is_proto_ip_with_mark_as_vaddr() {
    let mut v = Ipvs::new();
    let key = SvcKey::Fwmark {
        mark: 10,
        v6: false,
    };
    v.add_service(Time::ZERO, &ServiceConf::new(key, "rr").persistent(960))
        .unwrap();
    v.add_dest(
        Time::ZERO,
        &key,
        &DestConf::new(ip("10.0.0.17"), 0, FwdMethod::Route, 1),
    )
    .unwrap();
    let p = Packet {
        fwmark: 10,
        proto: Protocol::Tcp,
        src: sa("192.168.0.6", 51222),
        dst: sa("172.16.0.100", 443),
        tcp_flags: TcpFlags::SYN,
        len: 60,
        dir: Dir::In,
    };
    let Verdict::Forward { dest, .. } = v.process(Time::ZERO, &p, &[]) else {
        panic!()
    };
    assert_eq!(dest, sa("10.0.0.17", 443), "dest port 0 -> packet's port");
    let conns = v.connections(Time::ZERO);
    let t = conns.iter().find(|c| c.template).unwrap();
    assert_eq!(
        (
            t.proto_name,
            t.caddr,
            t.cport,
            t.vaddr,
            t.vport,
            t.daddr,
            t.dport,
            t.state_name
        ),
        (
            "IP",
            ip("192.168.0.6"),
            0,
            ip("0.0.0.10"),
            0,
            ip("10.0.0.17"),
            0,
            "NONE"
        )
    );
    let c = conns.iter().find(|c| !c.template).unwrap();
    assert_eq!((c.vaddr, c.vport, c.dport), (ip("172.16.0.100"), 443, 443));
}

#[test]
fn persistence_netmask_groups_clients() {
    let mut v = Ipvs::new();
    let mut conf = ServiceConf::new(tcp_key(), "rr").persistent(60);
    conf.netmask = 0xffff_ff00;
    v.add_service(Time::ZERO, &conf).unwrap();
    v.add_dest(
        Time::ZERO,
        &tcp_key(),
        &DestConf::new(ip(A), 80, FwdMethod::Route, 1),
    )
    .unwrap();
    v.add_dest(
        Time::ZERO,
        &tcp_key(),
        &DestConf::new(ip(B), 80, FwdMethod::Route, 1),
    )
    .unwrap();
    let mut d = Vec::new();
    for host in ["203.0.113.1", "203.0.113.77", "203.0.114.1"] {
        let Verdict::Forward { dest, .. } =
            v.process(Time::ZERO, &pkt(host, 999, TcpFlags::SYN, Dir::In), &[])
        else {
            panic!()
        };
        d.push(dest.ip());
    }
    assert_eq!(d, vec![ip(B), ip(B), ip(A)]);
    let tpl: Vec<_> = v
        .connections(Time::ZERO)
        .into_iter()
        .filter(|c| c.template)
        .collect();
    assert_eq!(tpl.len(), 2);
    assert!(tpl.iter().any(|t| t.caddr == ip("203.0.113.0")));
}

#[test]
fn port_zero_service_needs_persistence() {
    let mut v = Ipvs::new();
    let key = SvcKey::Addr {
        proto: Protocol::Tcp,
        addr: ip(VIP),
        port: 0,
    };
    v.add_service(Time::ZERO, &ServiceConf::new(key, "rr"))
        .unwrap();
    v.add_dest(
        Time::ZERO,
        &key,
        &DestConf::new(ip(A), 0, FwdMethod::Route, 1),
    )
    .unwrap();
    assert_eq!(
        pick(&mut v, Time::ZERO, 1),
        None,
        "non-persistent port-0 -> no dest"
    );
    v.edit_service(Time::ZERO, &ServiceConf::new(key, "rr").persistent(30))
        .unwrap();
    assert_eq!(pick(&mut v, Time::ZERO, 2), Some(ip(A)));
    let tpl = v
        .connections(Time::ZERO)
        .into_iter()
        .find(|c| c.template)
        .unwrap();
    assert_eq!((tpl.vport, tpl.dport), (0, 0));
}

#[test]
fn udp_is_inactive_and_ops_expires_immediately() {
    let key = SvcKey::Addr {
        proto: Protocol::Udp,
        addr: ip(VIP),
        port: 53,
    };
    let mut v = Ipvs::new();
    v.add_service(Time::ZERO, &ServiceConf::new(key, "rr"))
        .unwrap();
    v.add_dest(
        Time::ZERO,
        &key,
        &DestConf::new(ip(A), 53, FwdMethod::Masq, 1),
    )
    .unwrap();
    let q = Packet {
        fwmark: 0,
        proto: Protocol::Udp,
        src: sa("203.0.113.5", 3333),
        dst: sa(VIP, 53),
        tcp_flags: TcpFlags::NONE,
        len: 70,
        dir: Dir::In,
    };
    assert!(matches!(
        v.process(Time::ZERO, &q, &[]),
        Verdict::Forward { created: true, .. }
    ));
    assert!(matches!(
        v.process(Time::ZERO, &q, &[]),
        Verdict::Forward { created: false, .. }
    ));
    let c = &v.connections(Time::ZERO)[0];
    assert_eq!(
        (c.proto_name, c.state_name, c.expires_secs),
        ("UDP", "UDP", 300)
    );
    let d = v.service(&key).unwrap().dest(ip(A), 53).unwrap();
    assert_eq!((d.active_conns(), d.inact_conns()), (0, 1));
    // --ops
    let mut conf = ServiceConf::new(key, "rr");
    conf.flags |= SVC_F_ONEPACKET;
    v.edit_service(Time::ZERO, &conf).unwrap();
    let mut q2 = q;
    q2.src = sa("203.0.113.6", 3333);
    for _ in 0..3 {
        let r = v.process(Time::ZERO, &q2, &[]);
        assert!(matches!(r, Verdict::Forward { created: true, conn, .. } if conn.is_none()));
    }
    assert_eq!(v.conn_count(), 1);
    assert_eq!(v.service(&key).unwrap().stats().conns, 4);
    let d = v.service(&key).unwrap().dest(ip(A), 53).unwrap();
    assert_eq!(d.inact_conns(), 1);
}

#[test]
fn deleted_dest_drops_or_expires() {
    let mut v = setup("rr", &[(A, 1), (B, 1)], FwdMethod::Route);
    let p = pkt("203.0.113.7", 777, TcpFlags::SYN, Dir::In);
    let Verdict::Forward { dest, .. } = v.process(Time::ZERO, &p, &[]) else {
        panic!()
    };
    assert_eq!(dest.ip(), ip(B));
    v.del_dest(Time::ZERO, &tcp_key(), ip(B), 80).unwrap();
    let mut ack = p;
    ack.tcp_flags = TcpFlags::ACK;
    assert_eq!(
        v.process(Time::ZERO, &ack, &[]),
        Verdict::Drop(DropReason::DestUnavailable)
    );
    // re-adding it from the trash resumes the conn and keeps counters
    v.add_dest(
        Time::ZERO,
        &tcp_key(),
        &DestConf::new(ip(B), 80, FwdMethod::Route, 1),
    )
    .unwrap();
    assert!(matches!(
        v.process(Time::ZERO, &ack, &[]),
        Verdict::Forward { created: false, .. }
    ));
    let d = v.service(&tcp_key()).unwrap().dest(ip(B), 80).unwrap();
    assert_eq!(d.stats().conns, 1);
    assert_eq!(d.active_conns(), 1);
    // expire_nodest_conn: deleting the dest flushes its conns
    v.sysctl_mut().expire_nodest_conn = true;
    v.del_dest(Time::ZERO, &tcp_key(), ip(B), 80).unwrap();
    assert_eq!(v.conn_count(), 0);
    // a SYN from the same tuple is scheduled anew
    assert!(
        matches!(v.process(Time::ZERO, &p, &[]), Verdict::Forward { created: true, dest, .. } if dest.ip() == ip(A))
    );
}

#[test]
fn trash_is_purged_after_idle_period() {
    let mut v = setup("rr", &[(A, 1)], FwdMethod::Route);
    v.del_dest(Time::ZERO, &tcp_key(), ip(A), 80).unwrap();
    assert_eq!(v.trash.len(), 1);
    v.handle_timeout(Time::from_secs(60)); // idle_start stamped
    assert_eq!(v.trash.len(), 1);
    v.handle_timeout(Time::from_secs(120));
    assert_eq!(v.trash.len(), 1);
    v.handle_timeout(Time::from_secs(180));
    assert_eq!(v.trash.len(), 0);
    assert_eq!(v.poll_timeout(), None);
}

#[test]
fn conn_reuse_time_wait_reschedules() {
    let mut v = setup("rr", &[(A, 1), (B, 1)], FwdMethod::Masq);
    let p = pkt("203.0.113.7", 4242, TcpFlags::SYN, Dir::In);
    v.process(Time::ZERO, &p, &[]);
    let out = |f| Packet {
        fwmark: 0,
        proto: Protocol::Tcp,
        src: sa(B, 80),
        dst: sa("203.0.113.7", 4242),
        tcp_flags: f,
        len: 40,
        dir: Dir::Out,
    };
    v.process(Time::ZERO, &out(TcpFlags::FIN), &[]); // SR -> TW (output FIN)
    assert_eq!(v.connections(Time::ZERO)[0].state_name, "TIME_WAIT");
    let r = v.process(Time::ZERO, &p, &[]);
    assert!(
        matches!(r, Verdict::Forward { created: true, dest, .. } if dest.ip() == ip(A)),
        "{r:?}"
    );
    assert_eq!(v.conn_count(), 1);
}

#[test]
fn exclude_retries_another_dest() {
    let mut v = setup("rr", &[(A, 1), (B, 1)], FwdMethod::Masq);
    let p = pkt("203.0.113.7", 1, TcpFlags::SYN, Dir::In);
    let r = v.process(Time::ZERO, &p, &[(ip(B), 80)]);
    assert!(matches!(r, Verdict::Forward { dest, .. } if dest.ip() == ip(A)));
    let p2 = pkt("203.0.113.7", 2, TcpFlags::SYN, Dir::In);
    assert_eq!(
        v.process(Time::ZERO, &p2, &[(ip(A), 80), (ip(B), 80)]),
        Verdict::NoDest
    );
    // persistence: a template pointing at an excluded dest is rescheduled
    let mut v = Ipvs::new();
    v.add_service(
        Time::ZERO,
        &ServiceConf::new(tcp_key(), "rr").persistent(60),
    )
    .unwrap();
    v.add_dest(
        Time::ZERO,
        &tcp_key(),
        &DestConf::new(ip(A), 80, FwdMethod::Masq, 1),
    )
    .unwrap();
    v.add_dest(
        Time::ZERO,
        &tcp_key(),
        &DestConf::new(ip(B), 80, FwdMethod::Masq, 1),
    )
    .unwrap();
    assert_eq!(pick(&mut v, Time::ZERO, 10), Some(ip(B)));
    let r = v.process(
        Time::ZERO,
        &pkt("198.18.1.1", 11, TcpFlags::SYN, Dir::In),
        &[(ip(B), 80)],
    );
    assert!(matches!(r, Verdict::Forward { dest, .. } if dest.ip() == ip(A)));
    assert_eq!(
        pick(&mut v, Time::ZERO, 12),
        Some(ip(A)),
        "new template sticks"
    );
}

#[test]
fn control_plane_errors() {
    let mut v = Ipvs::new();
    let k = tcp_key();
    assert_eq!(
        v.add_service(Time::ZERO, &ServiceConf::new(k, "nope"))
            .unwrap_err(),
        Error::SchedulerNotFound("nope".into())
    );
    assert_eq!(
        v.add_service(Time::ZERO, &ServiceConf::new(k, "nope"))
            .unwrap_err()
            .errno_name(),
        "ENOENT"
    );
    let mut bad = ServiceConf::new(k, "rr");
    bad.netmask = 0xff00_ff00;
    assert_eq!(
        v.add_service(Time::ZERO, &bad).unwrap_err().errno_name(),
        "EINVAL"
    );
    let mut pe = ServiceConf::new(k, "rr");
    pe.pe_name = Some("bogus".into());
    assert_eq!(
        v.add_service(Time::ZERO, &pe).unwrap_err().errno_name(),
        "ENOENT"
    );
    v.add_service(Time::ZERO, &ServiceConf::new(k, "")).unwrap();
    assert_eq!(
        v.service(&k).unwrap().scheduler(),
        "wlc",
        "default scheduler"
    );
    assert_eq!(
        v.add_service(Time::ZERO, &ServiceConf::new(k, "rr"))
            .unwrap_err()
            .errno_name(),
        "EEXIST"
    );
    let other = SvcKey::Addr {
        proto: Protocol::Udp,
        addr: ip(VIP),
        port: 80,
    };
    assert_eq!(
        v.edit_service(Time::ZERO, &ServiceConf::new(other, "rr"))
            .unwrap_err()
            .errno_name(),
        "ESRCH"
    );
    assert_eq!(
        v.del_service(Time::ZERO, &other).unwrap_err().errno_name(),
        "ESRCH"
    );
    let d = DestConf::new(ip(A), 80, FwdMethod::Route, 1);
    assert_eq!(
        v.add_dest(Time::ZERO, &other, &d).unwrap_err().errno_name(),
        "ESRCH"
    );
    v.add_dest(Time::ZERO, &k, &d).unwrap();
    assert_eq!(
        v.add_dest(Time::ZERO, &k, &d).unwrap_err().errno_name(),
        "EEXIST"
    );
    let mut w = d.clone();
    w.weight = 65536;
    assert_eq!(
        v.edit_dest(Time::ZERO, &k, &w).unwrap_err().errno_name(),
        "EINVAL"
    );
    w.weight = -1;
    assert_eq!(
        v.edit_dest(Time::ZERO, &k, &w).unwrap_err().errno_name(),
        "ERANGE"
    );
    let mut th = d.clone();
    th.l_threshold = 10;
    th.u_threshold = 5;
    assert_eq!(
        v.edit_dest(Time::ZERO, &k, &th).unwrap_err().errno_name(),
        "ERANGE"
    );
    let mut gue = d.clone();
    gue.fwd = FwdMethod::Tunnel;
    gue.tun_type = TunType::Gue;
    assert_eq!(
        v.edit_dest(Time::ZERO, &k, &gue).unwrap_err().errno_name(),
        "EINVAL"
    );
    let mut six = d.clone();
    six.addr = ip("2001:db8::1");
    assert_eq!(
        v.add_dest(Time::ZERO, &k, &six).unwrap_err().errno_name(),
        "EINVAL"
    );
    six.fwd = FwdMethod::Tunnel;
    v.add_dest(Time::ZERO, &k, &six).unwrap();
    let missing = DestConf::new(ip(B), 80, FwdMethod::Route, 1);
    assert_eq!(
        v.edit_dest(Time::ZERO, &k, &missing)
            .unwrap_err()
            .errno_name(),
        "ENOENT"
    );
    assert_eq!(
        v.del_dest(Time::ZERO, &k, ip(B), 80)
            .unwrap_err()
            .errno_name(),
        "ENOENT"
    );
    let v6 = SvcKey::Addr {
        proto: Protocol::Tcp,
        addr: ip("2001:db8::100"),
        port: 80,
    };
    let mut c6 = ServiceConf::new(v6, "rr");
    assert_eq!(c6.netmask, 128);
    c6.netmask = 129;
    assert_eq!(
        v.add_service(Time::ZERO, &c6).unwrap_err().errno_name(),
        "EINVAL"
    );
    c6.netmask = 64;
    v.add_service(Time::ZERO, &c6).unwrap();
    v.flush(Time::ZERO);
    assert_eq!(v.services().count(), 0);
    assert_eq!(v.zero(Some(&k)).unwrap_err().errno_name(), "ESRCH");
}

#[test]
fn stats_zero_and_estimator() {
    let mut v = setup("rr", &[(A, 1)], FwdMethod::Route);
    let mut now = Time::ZERO;
    for i in 0..100u16 {
        // 10 new conns per 2 s, 1000 bytes each
        v.process(
            now,
            &pkt("203.0.113.8", 10000 + i, TcpFlags::SYN, Dir::In),
            &[],
        );
        if i % 10 == 9 {
            now = now + std::time::Duration::from_secs(2);
            v.estimate(now);
        }
    }
    let r = v.service(&tcp_key()).unwrap().rates();
    assert!(r.cps >= 4 && r.cps <= 5, "{r:?}");
    assert_eq!(v.total_stats().conns, 100);
    assert_eq!(v.total_stats().inbytes, 6000);
    v.zero(None).unwrap();
    assert_eq!(v.total_stats(), Stats::default());
    assert_eq!(v.service(&tcp_key()).unwrap().rates(), Rates::default());
    assert_eq!(
        v.service(&tcp_key())
            .unwrap()
            .dest(ip(A), 80)
            .unwrap()
            .stats(),
        Stats::default()
    );
}

#[test]
fn ftp_and_port_zero_lookup_order() {
    let mut v = Ipvs::new();
    let ftp = SvcKey::Addr {
        proto: Protocol::Tcp,
        addr: ip(VIP),
        port: 21,
    };
    v.add_service(Time::ZERO, &ServiceConf::new(ftp, "rr").persistent(60))
        .unwrap();
    v.add_dest(
        Time::ZERO,
        &ftp,
        &DestConf::new(ip(A), 21, FwdMethod::Route, 1),
    )
    .unwrap();
    // passive data connection to an unprivileged port hits the FTP service
    let mut p = pkt("203.0.113.9", 5000, TcpFlags::SYN, Dir::In);
    p.dst = sa(VIP, 30000);
    assert!(
        matches!(v.process(Time::ZERO, &p, &[]), Verdict::Forward { dest, .. } if dest == sa(A, 30000))
    );
    // privileged port other than 20: not ours
    p.dst = sa(VIP, 443);
    p.src = sa("203.0.113.9", 5001);
    assert_eq!(v.process(Time::ZERO, &p, &[]), Verdict::NotOurs);
}

#[test]
fn poll_and_lazy_expiry() {
    let mut v = setup("rr", &[(A, 1)], FwdMethod::Route);
    assert_eq!(v.poll_timeout(), None);
    let p = pkt("203.0.113.7", 1, TcpFlags::SYN, Dir::In);
    v.process(Time::ZERO, &p, &[]);
    assert!(v.poll_timeout().is_some());
    // without handle_timeout, a packet after expiry sees no conn: non-SYN is not ours
    let mut a = p;
    a.tcp_flags = TcpFlags::ACK;
    assert_eq!(v.process(Time::from_secs(61), &a, &[]), Verdict::NotOurs);
    assert_eq!(v.conn_count(), 0);
}

#[test]
fn long_idle_gap_in_handle_timeout() {
    let mut v = setup("rr", &[(A, 1)], FwdMethod::Route);
    v.set_timeouts(86400 * 3, 0, 0).unwrap();
    let p = pkt("203.0.113.7", 1, TcpFlags::SYN, Dir::In);
    v.process(Time::ZERO, &p, &[]);
    let mut a = p;
    a.tcp_flags = TcpFlags::ACK;
    v.process(Time::ZERO, &a, &[]);
    v.handle_timeout(Time::from_secs(86400 * 3 - 1));
    assert_eq!(v.conn_count(), 1);
    v.handle_timeout(Time::from_secs(86400 * 3));
    assert_eq!(v.conn_count(), 0);
}

#[test]
fn extreme_times_do_not_panic() {
    let mut v = Ipvs::new();
    v.add_service(
        Time::ZERO,
        &ServiceConf::new(tcp_key(), "lblc").persistent(u32::MAX),
    )
    .unwrap();
    v.add_dest(
        Time::ZERO,
        &tcp_key(),
        &DestConf::new(ip(A), 80, FwdMethod::Masq, 1),
    )
    .unwrap();
    for t in [0, 1, u64::MAX / 2, u64::MAX - 1, u64::MAX] {
        let now = Time::from_millis(t);
        v.process(now, &pkt("203.0.113.7", 1, TcpFlags::SYN, Dir::In), &[]);
        v.handle_timeout(now);
        v.estimate(now);
        let _ = v.connections(now);
        let _ = v.poll_timeout();
    }
    v.del_dest(Time::from_millis(u64::MAX), &tcp_key(), ip(A), 80)
        .unwrap();
    v.handle_timeout(Time::from_millis(u64::MAX));
}

#[test]
fn process_conn_fast_path() {
    let mut v = setup("rr", &[(A, 1)], FwdMethod::Masq);
    let Verdict::Forward { conn, .. } = v.process(
        Time::ZERO,
        &pkt("203.0.113.7", 9, TcpFlags::SYN, Dir::In),
        &[],
    ) else {
        panic!()
    };
    let r = v.process_conn(
        Time::ZERO,
        conn,
        Dir::Out,
        TcpFlags::SYN | TcpFlags::ACK,
        60,
    );
    assert!(matches!(r, Verdict::Reply { .. }));
    let r = v.process_conn(Time::ZERO, conn, Dir::In, TcpFlags::ACK, 52);
    assert!(matches!(r, Verdict::Forward { created: false, .. }));
    assert_eq!(v.conn(Time::ZERO, conn).unwrap().state_name, "ESTABLISHED");
    let st = v.total_stats();
    assert_eq!(
        (st.inpkts, st.outpkts, st.inbytes, st.outbytes),
        (2, 1, 112, 60)
    );
    v.handle_timeout(Time::from_secs(900));
    assert_eq!(
        v.process_conn(Time::from_secs(900), conn, Dir::In, TcpFlags::ACK, 1),
        Verdict::NotOurs
    );
    assert!(v.conn(Time::from_secs(900), conn).is_none());
}

#[test]
fn sctp_association_counts_active_only_when_established() {
    let key = SvcKey::Addr {
        proto: Protocol::Sctp,
        addr: ip(VIP),
        port: 5000,
    };
    let mut v = Ipvs::new();
    v.add_service(Time::ZERO, &ServiceConf::new(key, "rr"))
        .unwrap();
    v.add_dest(
        Time::ZERO,
        &key,
        &DestConf::new(ip(A), 5000, FwdMethod::Masq, 1),
    )
    .unwrap();
    let mk = |chunk: u8, dir: Dir| {
        let (src, dst) = match dir {
            Dir::In => (sa("203.0.113.3", 7000), sa(VIP, 5000)),
            Dir::Out => (sa(A, 5000), sa("203.0.113.3", 7000)),
        };
        Packet {
            fwmark: 0,
            proto: Protocol::Sctp,
            src,
            dst,
            tcp_flags: TcpFlags::sctp_chunk(chunk),
            len: 80,
            dir,
        }
    };
    // DATA without an association is not scheduled (no sloppy_sctp)
    assert_eq!(
        v.process(Time::ZERO, &mk(0, Dir::In), &[]),
        Verdict::NotOurs
    );
    let steps: &[(u8, Dir, &str, u64, u32, u32)] = &[
        (1, Dir::In, "INIT1", 4, 0, 1),
        (2, Dir::Out, "C-SENT", 61, 0, 1),
        (10, Dir::In, "C-REPLIED", 61, 0, 1),
        (11, Dir::Out, "ESTABLISHED", 900, 1, 0),
        (0, Dir::In, "ESTABLISHED", 900, 1, 0),
        (7, Dir::In, "S-RECEIVED", 61, 0, 1),
        (8, Dir::Out, "S-ACK-SENT", 61, 0, 1),
        (14, Dir::In, "CLOSED", 61, 0, 1),
    ];
    for &(chunk, dir, state, exp, act, inact) in steps {
        let r = v.process(Time::ZERO, &mk(chunk, dir), &[]);
        assert!(
            !matches!(r, Verdict::NotOurs | Verdict::NoDest),
            "{state}: {r:?}"
        );
        let c = &v.connections(Time::ZERO)[0];
        assert_eq!(
            (c.proto_name, c.state_name, c.expires_secs),
            ("SCTP", state, exp)
        );
        let d = v.service(&key).unwrap().dest(ip(A), 5000).unwrap();
        assert_eq!((d.active_conns(), d.inact_conns()), (act, inact), "{state}");
    }
}

#[test]
fn proxy_retry_with_exclude_replaces_existing_entry() {
    let mut v = setup("rr", &[(A, 1), (B, 1)], FwdMethod::Masq);
    let syn = pkt("203.0.113.7", 3000, TcpFlags::SYN, Dir::In);
    let Verdict::Forward { dest, .. } = v.process(Time::ZERO, &syn, &[]) else {
        panic!()
    };
    assert_eq!(dest.ip(), ip(B));
    // connect() to B failed: same SYN again with B excluded
    let r = v.process(Time::ZERO, &syn, &[(ip(B), 80)]);
    assert!(
        matches!(r, Verdict::Forward { dest, created: true, .. } if dest.ip() == ip(A)),
        "{r:?}"
    );
    assert_eq!(v.conn_count(), 1);
    let s = v.service(&tcp_key()).unwrap();
    assert_eq!(
        s.dest(ip(B), 80).unwrap().active_conns() + s.dest(ip(B), 80).unwrap().inact_conns(),
        0
    );
    assert_eq!(s.dest(ip(A), 80).unwrap().active_conns(), 1);
    // without exclude the existing entry is kept
    let r = v.process(Time::ZERO, &syn, &[]);
    assert!(matches!(r, Verdict::Forward { dest, created: false, .. } if dest.ip() == ip(A)));
}

#[test]
fn side_effect_free_lookup_both_directions() {
    let mut v = setup("rr", &[(A, 1)], FwdMethod::Masq);
    let syn = pkt("203.0.113.7", 4000, TcpFlags::SYN, Dir::In);
    v.process(Time::ZERO, &syn, &[]);
    let before = v.total_stats();
    let c = v.lookup(Time::ZERO, &syn).unwrap();
    assert_eq!((c.daddr, c.dport, c.state_name), (ip(A), 80, "SYN_RECV"));
    let reply = Packet {
        fwmark: 0,
        proto: Protocol::Tcp,
        src: sa(A, 80),
        dst: sa("203.0.113.7", 4000),
        tcp_flags: TcpFlags::ACK,
        len: 40,
        dir: Dir::Out,
    };
    assert_eq!(v.lookup(Time::ZERO, &reply).unwrap().conn, c.conn);
    assert_eq!(v.total_stats(), before, "no side effects");
    assert!(v.lookup(Time::from_secs(60), &syn).is_none(), "expired");
    v.set_conn_tab_bits(30);
    assert_eq!(v.conn_tab_size(), 1 << 20);
    v.set_conn_tab_bits(12);
    assert_eq!(v.conn_tab_size(), 4096);
}

#[test]
fn wrr_skips_overloaded_and_terminates() {
    let mut v = Ipvs::new();
    v.add_service(Time::ZERO, &ServiceConf::new(tcp_key(), "wrr"))
        .unwrap();
    let mut a = DestConf::new(ip(A), 80, FwdMethod::Masq, 4);
    a.u_threshold = 1;
    v.add_dest(Time::ZERO, &tcp_key(), &a).unwrap();
    let mut b = DestConf::new(ip(B), 80, FwdMethod::Masq, 1);
    b.u_threshold = 1;
    v.add_dest(Time::ZERO, &tcp_key(), &b).unwrap();
    // each dest overloads after one conn
    let p = picks(&mut v, 4, 1000);
    assert_eq!(names(&p), "B,A,-,-");
    // freeing them clears OVERLOAD (no l_threshold: total*4 < u*3)
    v.handle_timeout(Time::from_secs(60));
    assert_eq!(v.conn_count(), 0);
    let p = picks(&mut v, 1, 2000);
    assert_ne!(names(&p), "-");
}

#[test]
fn bounded_timeout_work() {
    let mut v = setup("rr", &[(A, 1)], FwdMethod::Route);
    for port in 0..100u16 {
        v.process(
            Time::ZERO,
            &pkt("203.0.113.7", 2000 + port, TcpFlags::SYN, Dir::In),
            &[],
        );
    }
    let now = Time::from_secs(60);
    assert!(v.handle_timeout_budget(now, 30));
    assert_eq!(v.conn_count(), 70);
    assert_eq!(v.poll_timeout(), Some(now), "more work: poll says now");
    while v.handle_timeout_budget(now, 30) {}
    assert_eq!(v.conn_count(), 0);
    assert_eq!(
        v.service(&tcp_key())
            .unwrap()
            .dest(ip(A), 80)
            .unwrap()
            .active_conns(),
        0
    );
}

#[test]
fn sync_master_to_backup() {
    // master: persistent DR service with established and closing conns
    let mut m = Ipvs::new();
    m.add_service(
        Time::ZERO,
        &ServiceConf::new(tcp_key(), "rr").persistent(300),
    )
    .unwrap();
    m.add_dest(
        Time::ZERO,
        &tcp_key(),
        &DestConf::new(ip(A), 80, FwdMethod::Route, 1),
    )
    .unwrap();
    m.add_dest(
        Time::ZERO,
        &tcp_key(),
        &DestConf::new(ip(B), 80, FwdMethod::Route, 1),
    )
    .unwrap();
    for (cli, port) in [("203.0.113.1", 1000u16), ("203.0.113.2", 1001)] {
        m.process(Time::ZERO, &pkt(cli, port, TcpFlags::SYN, Dir::In), &[]);
        m.process(Time::ZERO, &pkt(cli, port, TcpFlags::ACK, Dir::In), &[]);
    }
    m.process(
        Time::ZERO,
        &pkt("203.0.113.2", 1001, TcpFlags::FIN, Dir::In),
        &[],
    );
    // backup: same configuration, empty table
    let mut b = Ipvs::new();
    b.add_service(
        Time::ZERO,
        &ServiceConf::new(tcp_key(), "rr").persistent(300),
    )
    .unwrap();
    b.add_dest(
        Time::ZERO,
        &tcp_key(),
        &DestConf::new(ip(A), 80, FwdMethod::Route, 1),
    )
    .unwrap();
    b.add_dest(
        Time::ZERO,
        &tcp_key(),
        &DestConf::new(ip(B), 80, FwdMethod::Route, 1),
    )
    .unwrap();
    let t = Time::from_secs(1);
    for sc in m.sync_export(t) {
        b.sync_apply(t, &sc);
    }
    let key = |v: &ConnView| {
        (
            v.proto_name,
            v.caddr,
            v.cport,
            v.vaddr,
            v.vport,
            v.daddr,
            v.dport,
            v.state_name,
            v.template,
            v.expires_secs,
        )
    };
    let mut mc: Vec<_> = m.connections(t).iter().map(key).collect();
    let mut bc: Vec<_> = b.connections(t).iter().map(key).collect();
    mc.sort();
    bc.sort();
    assert_eq!(mc, bc);
    for a in [A, B] {
        let md = m.service(&tcp_key()).unwrap().dest(ip(a), 80).unwrap();
        let bd = b.service(&tcp_key()).unwrap().dest(ip(a), 80).unwrap();
        assert_eq!(
            (md.active_conns(), md.inact_conns(), md.persist_conns()),
            (bd.active_conns(), bd.inact_conns(), bd.persist_conns()),
            "{a}"
        );
        assert_eq!(bd.stats().conns, 0, "synced entries are not counted");
    }
    // after failover a mid-stream ACK on the backup follows the synced entry
    let r = b.process(t, &pkt("203.0.113.1", 1000, TcpFlags::ACK, Dir::In), &[]);
    assert!(matches!(r, Verdict::Forward { created: false, dest, .. } if dest.ip() == ip(B)));
    // an update flips the counters: conn 1 goes inactive
    let mut upd = m
        .sync_export(t)
        .into_iter()
        .find(|s| s.cport == 1000)
        .unwrap();
    upd.flags |= 0x100;
    upd.state = 4; // FIN_WAIT
    b.sync_apply(t, &upd);
    let bd = b.service(&tcp_key()).unwrap().dest(ip(B), 80).unwrap();
    assert_eq!((bd.active_conns(), bd.inact_conns()), (0, 1));
    // unknown service: the entry is kept unbound
    let mut stray = upd.clone();
    stray.vaddr = ip("198.18.77.77");
    stray.flags &= !0x100;
    b.sync_apply(t, &stray);
    assert!(b
        .connections(t)
        .iter()
        .any(|c| c.vaddr == ip("198.18.77.77")));
}

#[test]
fn sync_fwmark_service_binds_on_backup() {
    let key = SvcKey::Fwmark {
        mark: 10,
        v6: false,
    };
    let build = || {
        let mut v = Ipvs::new();
        v.add_service(Time::ZERO, &ServiceConf::new(key, "rr").persistent(960))
            .unwrap();
        v.add_dest(
            Time::ZERO,
            &key,
            &DestConf::new(ip("10.0.0.17"), 0, FwdMethod::Route, 1),
        )
        .unwrap();
        v
    };
    let mut m = build();
    let mut p = pkt("192.168.0.6", 51222, TcpFlags::SYN, Dir::In);
    p.fwmark = 10;
    m.process(Time::ZERO, &p, &[]);
    let exported = m.sync_export(Time::ZERO);
    assert!(exported.iter().all(|s| s.fwmark == 10));
    let mut b = build();
    for s in &exported {
        b.sync_apply(Time::ZERO, s);
    }
    let d = b.service(&key).unwrap().dest(ip("10.0.0.17"), 0).unwrap();
    assert_eq!((d.active_conns(), d.persist_conns()), (1, 1));
    assert!(b
        .connections(Time::ZERO)
        .iter()
        .any(|c| c.template && c.proto_name == "IP"));
}

#[test]
fn sync_due_follows_threshold_and_state_changes() {
    let mut m = Ipvs::new();
    m.add_service(
        Time::ZERO,
        &ServiceConf::new(tcp_key(), "rr").persistent(300),
    )
    .unwrap();
    m.add_dest(
        Time::ZERO,
        &tcp_key(),
        &DestConf::new(ip(A), 80, FwdMethod::Route, 1),
    )
    .unwrap();
    let mut sent = Vec::new();
    let mut send = |m: &mut Ipvs, f: TcpFlags| {
        let Verdict::Forward { conn, .. } =
            m.process(Time::ZERO, &pkt("203.0.113.1", 1000, f, Dir::In), &[])
        else {
            panic!()
        };
        let out = m.sync_due(Time::ZERO, conn);
        sent.push(
            out.iter()
                .map(|s| (s.flags & 0x1000 != 0, s.state))
                .collect::<Vec<_>>(),
        );
    };
    send(&mut m, TcpFlags::SYN); // pkt 1, SYN_RECV: not synced; template bumped (exempt): synced
    send(&mut m, TcpFlags::ACK); // pkt 2, ESTABLISHED: change to ES is not forced, 2 % 50 != 3
    send(&mut m, TcpFlags::ACK); // pkt 3: 3 % 50 == 3 -> conn + template
    send(&mut m, TcpFlags::FIN); // pkt 4: ES -> FIN_WAIT forced
    send(&mut m, TcpFlags::ACK); // pkt 5: FIN_WAIT again, not forced, 5 % 50 != 3
    assert_eq!(
        sent,
        // the template's synced state carries ASSURED (1) once the conn is ESTABLISHED
        vec![
            vec![(true, 0)],
            vec![(true, 1)],
            vec![(false, 1), (true, 1)],
            vec![(false, 4), (true, 1)],
            vec![(true, 1)],
        ]
    );
}

// ---------------------------------------------------------------------
// Flow-cache support: conn_is_steady / account_conn / config_gen

fn est(v: &mut Ipvs, now: Time, cport: u16) -> ConnRef {
    let syn = v.process(now, &pkt("198.18.1.1", cport, TcpFlags::SYN, Dir::In), &[]);
    let Verdict::Forward { conn, .. } = syn else {
        panic!("{syn:?}")
    };
    assert!(!v.conn_is_steady(conn, Dir::In), "SYN_RECV is not steady");
    v.process(now, &pkt("198.18.1.1", cport, TcpFlags::ACK, Dir::In), &[]);
    conn
}

#[test]
fn account_conn_equals_that_many_ack_packets() {
    for fwd in [FwdMethod::Route, FwdMethod::Masq] {
        let mut a = setup("rr", &[(A, 1), (B, 1)], fwd);
        let mut b = setup("rr", &[(A, 1), (B, 1)], fwd);
        let ca = est(&mut a, Time::ZERO, 4000);
        let cb = est(&mut b, Time::ZERO, 4000);
        assert!(a.conn_is_steady(ca, Dir::In));
        let t = Time::from_millis(7_500);
        for _ in 0..5 {
            let mut p = pkt("198.18.1.1", 4000, TcpFlags::ACK | TcpFlags::PSH, Dir::In);
            p.len = 100;
            a.process(t, &p, &[]);
        }
        assert!(b.account_conn(t, cb, Dir::In, 5, 500));
        let sa_ = a.service(&tcp_key()).unwrap();
        let sb = b.service(&tcp_key()).unwrap();
        assert_eq!(sa_.stats(), sb.stats());
        for (da, db) in sa_.dests().zip(sb.dests()) {
            assert_eq!(da.stats(), db.stats());
            assert_eq!(
                (da.active_conns(), da.inact_conns()),
                (db.active_conns(), db.inact_conns())
            );
        }
        assert_eq!(a.total_stats(), b.total_stats());
        assert_eq!(a.conn(t, ca), b.conn(t, cb), "same state and expiry");
    }
}

#[test]
fn replies_are_steady_for_nat_only() {
    // DR/TUN entries carry NOOUTPUT (INPUT_ONLY rows) until a reply is
    // seen, which would change the rows: not steady for Dir::Out.
    let mut dr = setup("rr", &[(A, 1)], FwdMethod::Route);
    let c = est(&mut dr, Time::ZERO, 4001);
    assert!(dr.conn_is_steady(c, Dir::In));
    assert!(!dr.conn_is_steady(c, Dir::Out));
    let mut v = setup("rr", &[(A, 1)], FwdMethod::Masq);
    let c = est(&mut v, Time::ZERO, 4001);
    assert!(v.conn_is_steady(c, Dir::Out));
    let reply = Packet {
        fwmark: 0,
        proto: Protocol::Tcp,
        src: sa(A, 80),
        dst: sa("198.18.1.1", 4001),
        tcp_flags: TcpFlags::ACK,
        len: 60,
        dir: Dir::Out,
    };
    assert!(matches!(
        v.process(Time::ZERO, &reply, &[]),
        Verdict::Reply { .. }
    ));
    assert!(v.conn_is_steady(c, Dir::Out));
    assert!(v.account_conn(Time::ZERO, c, Dir::Out, 3, 3000));
    let s = v.service(&tcp_key()).unwrap().stats();
    assert_eq!((s.outpkts, s.outbytes), (4, 3060));
}

#[test]
fn account_conn_refuses_stale_expired_and_deleted_dest_entries() {
    let mut v = setup("rr", &[(A, 1), (B, 1)], FwdMethod::Route);
    let g0 = v.config_gen();
    let c = est(&mut v, Time::ZERO, 4002);
    // Expired: the ESTABLISHED timeout is 900 s.
    assert!(!v.account_conn(Time::from_millis(901_000), c, Dir::In, 1, 60));
    // Deleted destination: refused, and the generation moved.
    let c = est(&mut v, Time::from_millis(902_000), 4003);
    let d = v.conn(Time::from_millis(902_000), c).unwrap().daddr;
    v.del_dest(Time::from_millis(902_000), &tcp_key(), d, 80)
        .unwrap();
    assert_ne!(v.config_gen(), g0);
    assert!(!v.account_conn(Time::from_millis(902_001), c, Dir::In, 1, 60));
    // A stale handle (the slot reused by another entry) is refused.
    assert!(!v.account_conn(Time::ZERO, ConnRef::NONE, Dir::In, 1, 60));
    // UDP entries are steady; one-packet ones never are (they have no handle).
    let ukey = SvcKey::Addr {
        proto: Protocol::Udp,
        addr: ip(VIP),
        port: 53,
    };
    v.add_service(Time::ZERO, &ServiceConf::new(ukey, "rr"))
        .unwrap();
    v.add_dest(
        Time::ZERO,
        &ukey,
        &DestConf::new(ip(A), 53, FwdMethod::Route, 1),
    )
    .unwrap();
    let u = Packet {
        fwmark: 0,
        proto: Protocol::Udp,
        src: sa("198.18.1.1", 5353),
        dst: sa(VIP, 53),
        tcp_flags: TcpFlags::default(),
        len: 40,
        dir: Dir::In,
    };
    let Verdict::Forward { conn, .. } = v.process(Time::from_millis(902_000), &u, &[]) else {
        panic!()
    };
    assert!(v.conn_is_steady(conn, Dir::In));
    assert!(v.account_conn(Time::from_millis(902_500), conn, Dir::In, 2, 80));
}

#[test]
fn related_icmp_errors_are_counted_without_touching_the_entry() {
    let mut v = setup("rr", &[(A, 1)], FwdMethod::Masq);
    let c = est(&mut v, Time::ZERO, 4010);
    let before = v.conn(Time::ZERO, c).unwrap();
    let s0 = v.service(&tcp_key()).unwrap().stats();
    assert!(v.count_related(Time::from_millis(10), c, Dir::In, 576));
    assert!(v.count_related(Time::from_millis(10), c, Dir::Out, 100));
    let s1 = v.service(&tcp_key()).unwrap().stats();
    assert_eq!((s1.inpkts - s0.inpkts, s1.inbytes - s0.inbytes), (1, 576));
    assert_eq!(
        (s1.outpkts - s0.outpkts, s1.outbytes - s0.outbytes),
        (1, 100)
    );
    assert_eq!(
        v.conn(Time::ZERO, c).unwrap(),
        before,
        "state and expiry untouched"
    );
    assert!(
        !v.count_related(Time::from_millis(901_000), c, Dir::In, 576),
        "expired"
    );
}

fn sync_master_table() -> Ipvs {
    let mut m = setup("rr", &[(A, 1)], FwdMethod::Route);
    m.set_sync_state(true, false);
    m
}

fn take(m: &mut Ipvs) -> Vec<(u16, u16)> {
    let mut v = Vec::new();
    m.sync_take(&mut v);
    v.iter().map(|s| (s.cport, s.state)).collect()
}

#[test]
fn master_outbox_collects_what_ip_vs_sync_conn_sends() {
    let mut m = sync_master_table();
    let t = Time::ZERO;
    let send = |m: &mut Ipvs, f| m.process(t, &pkt("203.0.113.1", 1000, f, Dir::In), &[]);
    send(&mut m, TcpFlags::SYN);
    send(&mut m, TcpFlags::ACK);
    assert_eq!(take(&mut m), vec![], "SYN_RECV and pkt 2 are not synced");
    send(&mut m, TcpFlags::ACK);
    assert_eq!(take(&mut m), vec![(1000, 1)], "pkt 3 of ESTABLISHED");
    for _ in 4..=53 {
        send(&mut m, TcpFlags::ACK);
    }
    assert_eq!(
        take(&mut m),
        vec![(1000, 1)],
        "again at pkt 53 (53 % 50 == 3)"
    );
    send(&mut m, TcpFlags::FIN);
    assert_eq!(take(&mut m), vec![(1000, 4)], "forced on ES -> FIN_WAIT");
    // the backup daemon alone queues nothing
    m.set_sync_state(false, true);
    send(&mut m, TcpFlags::RST);
    assert_eq!(take(&mut m), vec![]);
}

#[test]
fn bulk_accounting_syncs_when_the_threshold_is_crossed() {
    let mut m = sync_master_table();
    let t = Time::ZERO;
    m.process(t, &pkt("203.0.113.1", 1000, TcpFlags::SYN, Dir::In), &[]);
    let Verdict::Forward { conn, .. } =
        m.process(t, &pkt("203.0.113.1", 1000, TcpFlags::ACK, Dir::In), &[])
    else {
        panic!()
    };
    // in_pkts 2 -> 10 goes through 3
    assert!(m.account_conn(t, conn, Dir::In, 8, 800));
    assert_eq!(take(&mut m), vec![(1000, 1)]);
    // 10 -> 50 does not reach 53
    assert!(m.account_conn(t, conn, Dir::In, 40, 4000));
    assert_eq!(take(&mut m), vec![]);
    // 50 -> 60 goes through 53
    assert!(m.account_conn(t, conn, Dir::In, 10, 1000));
    assert_eq!(take(&mut m), vec![(1000, 1)]);
    // replies do not count
    let _ = m.account_conn(t, conn, Dir::Out, 100, 1000);
    assert_eq!(take(&mut m), vec![]);
}

#[test]
fn refresh_period_resyncs_only_when_the_expiry_moved() {
    let mut m = sync_master_table();
    m.sysctl_mut().set("sync_threshold", "3 0").unwrap();
    m.sysctl_mut().set("sync_refresh_period", "30").unwrap();
    let c = |m: &mut Ipvs, s: u64, f| {
        m.process(
            Time::from_secs(s),
            &pkt("203.0.113.1", 1000, f, Dir::In),
            &[],
        )
    };
    c(&mut m, 0, TcpFlags::SYN);
    c(&mut m, 0, TcpFlags::ACK);
    assert_eq!(take(&mut m), vec![(1000, 1)], "first sync once ESTABLISHED");
    c(&mut m, 10, TcpFlags::ACK);
    assert_eq!(take(&mut m), vec![], "expiry moved 10 s < 30 s");
    c(&mut m, 31, TcpFlags::ACK);
    assert_eq!(take(&mut m), vec![(1000, 1)], "expiry moved 31 s");
}

#[test]
fn persist_mode_syncs_templates_only() {
    let mut m = Ipvs::new();
    m.add_service(
        Time::ZERO,
        &ServiceConf::new(tcp_key(), "rr").persistent(300),
    )
    .unwrap();
    m.add_dest(
        Time::ZERO,
        &tcp_key(),
        &DestConf::new(ip(A), 80, FwdMethod::Route, 1),
    )
    .unwrap();
    m.set_sync_state(true, false);
    m.sysctl_mut().set("sync_persist_mode", "1").unwrap();
    for f in [TcpFlags::SYN, TcpFlags::ACK, TcpFlags::ACK, TcpFlags::FIN] {
        m.process(Time::ZERO, &pkt("203.0.113.1", 1000, f, Dir::In), &[]);
    }
    let mut v = Vec::new();
    m.sync_take(&mut v);
    assert!(!v.is_empty());
    assert!(v.iter().all(|s| s.flags & 0x1000 != 0), "{v:?}");
}

#[test]
fn backup_only_forwards_nothing_while_a_backup_daemon_runs() {
    let mut m = setup("rr", &[(A, 1)], FwdMethod::Route);
    m.sysctl_mut().set("backup_only", "1").unwrap();
    let p = pkt("203.0.113.1", 1000, TcpFlags::SYN, Dir::In);
    assert!(matches!(
        m.process(Time::ZERO, &p, &[]),
        Verdict::Forward { .. }
    ));
    m.set_sync_state(false, true);
    let p = pkt("203.0.113.1", 1001, TcpFlags::SYN, Dir::In);
    assert_eq!(m.process(Time::ZERO, &p, &[]), Verdict::NotOurs);
}

#[test]
fn synced_entries_are_marked() {
    let mut m = sync_master_table();
    for f in [TcpFlags::SYN, TcpFlags::ACK, TcpFlags::ACK] {
        m.process(Time::ZERO, &pkt("203.0.113.1", 1000, f, Dir::In), &[]);
    }
    let mut v = Vec::new();
    m.sync_take(&mut v);
    let mut b = setup("rr", &[(A, 1)], FwdMethod::Route);
    for s in &v {
        b.sync_apply(Time::ZERO, s);
    }
    assert!(m.connections(Time::ZERO).iter().all(|c| !c.synced));
    assert!(b.connections(Time::ZERO).iter().all(|c| c.synced));
    assert_eq!(b.connections(Time::ZERO).len(), 1);
}

fn sip_table() -> Ipvs {
    let key = SvcKey::Addr {
        proto: Protocol::Udp,
        addr: ip(VIP),
        port: 5060,
    };
    let mut v = Ipvs::new();
    let mut conf = ServiceConf::new(key, "rr").persistent(360);
    conf.pe_name = Some("sip".into());
    v.add_service(Time::ZERO, &conf).unwrap();
    for a in [A, B] {
        v.add_dest(
            Time::ZERO,
            &key,
            &DestConf::new(ip(a), 5060, FwdMethod::Route, 1),
        )
        .unwrap();
    }
    v
}

fn sip_msg(callid: &str) -> String {
    format!(
        "INVITE sip:svc@{VIP}:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 203.0.113.1:5061\r\nCall-ID: {callid}\r\nCSeq: 1 INVITE\r\n\r\n"
    )
}

fn sip_send(v: &mut Ipvs, cport: u16, proto: Protocol, payload: &str) -> Verdict {
    let p = Packet {
        fwmark: 0,
        proto,
        src: sa("203.0.113.1", cport),
        dst: sa(VIP, 5060),
        tcp_flags: TcpFlags::SYN,
        len: 200,
        dir: Dir::In,
    };
    v.process_payload(Time::ZERO, &p, &[], payload.as_bytes())
}

fn dest_of(v: Verdict) -> IpAddr {
    match v {
        Verdict::Forward { dest, .. } => dest.ip(),
        other => panic!("not forwarded: {other:?}"),
    }
}

#[test]
fn sip_pe_persists_by_call_id() {
    let mut v = sip_table();
    let c1 = dest_of(sip_send(
        &mut v,
        5061,
        Protocol::Udp,
        &sip_msg("1-1@203.0.113.1"),
    ));
    // the same call from another source port: the same real server
    let again = dest_of(sip_send(
        &mut v,
        6000,
        Protocol::Udp,
        &sip_msg("1-1@203.0.113.1"),
    ));
    assert_eq!(c1, again);
    // another call from the same client is scheduled anew (rr: the other)
    let c2 = dest_of(sip_send(
        &mut v,
        6001,
        Protocol::Udp,
        &sip_msg("2-2@203.0.113.1"),
    ));
    assert_ne!(c1, c2);
    // no Call-ID, or not UDP: ignored as the kernel ignores it
    assert_eq!(
        sip_send(&mut v, 6002, Protocol::Udp, "hello"),
        Verdict::NotOurs
    );
    assert_eq!(
        sip_send(&mut v, 6003, Protocol::Tcp, &sip_msg("3@203.0.113.1")),
        Verdict::NotOurs
    );
    // two templates, each with its Call-ID
    let mut calls: Vec<_> = v
        .connections(Time::ZERO)
        .into_iter()
        .filter(|c| c.template)
        .map(|c| String::from_utf8(c.pe_data.unwrap()).unwrap())
        .collect();
    calls.sort();
    assert_eq!(calls, vec!["1-1@203.0.113.1", "2-2@203.0.113.1"]);
}

#[test]
fn sip_templates_are_synced_with_their_call_id() {
    let mut m = sip_table();
    let d1 = dest_of(sip_send(
        &mut m,
        5061,
        Protocol::Udp,
        &sip_msg("1-1@203.0.113.1"),
    ));
    let d2 = dest_of(sip_send(
        &mut m,
        5062,
        Protocol::Udp,
        &sip_msg("2-2@203.0.113.1"),
    ));
    let exported = m.sync_export(Time::ZERO);
    let tpl: Vec<_> = exported.iter().filter(|s| s.pe_data.is_some()).collect();
    assert_eq!(tpl.len(), 2);
    assert!(tpl.iter().all(|s| s.pe_name.as_deref() == Some("sip")));
    let mut b = sip_table();
    for s in &exported {
        b.sync_apply(Time::ZERO, s);
    }
    // after failover each call goes on to its real server, even from a new port
    let b1 = dest_of(sip_send(
        &mut b,
        7000,
        Protocol::Udp,
        &sip_msg("1-1@203.0.113.1"),
    ));
    let b2 = dest_of(sip_send(
        &mut b,
        7001,
        Protocol::Udp,
        &sip_msg("2-2@203.0.113.1"),
    ));
    assert_eq!((b1, b2), (d1, d2));
    // an entry of an unknown persistence engine is skipped
    let mut odd = exported[0].clone();
    odd.pe_name = Some("nope".into());
    odd.cport = 9;
    let before = b.conn_count();
    b.sync_apply(Time::ZERO, &odd);
    assert_eq!(b.conn_count(), before);
}

#[test]
fn a_successor_takes_over_entries_counters_and_rates() {
    let mut old = Ipvs::new();
    old.add_service(
        Time::ZERO,
        &ServiceConf::new(tcp_key(), "rr").persistent(300),
    )
    .unwrap();
    for a in [A, B] {
        old.add_dest(
            Time::ZERO,
            &tcp_key(),
            &DestConf::new(ip(a), 80, FwdMethod::Route, 1),
        )
        .unwrap();
    }
    for (i, c) in ["203.0.113.1", "203.0.113.2"].iter().enumerate() {
        for f in [TcpFlags::SYN, TcpFlags::ACK, TcpFlags::ACK] {
            old.process(Time::from_secs(i as u64), &pkt(c, 1000, f, Dir::In), &[]);
        }
    }
    old.estimate(Time::from_secs(2));
    let t = Time::from_secs(3);
    // the successor: the same configuration, then the predecessor's state
    let mut new = Ipvs::new();
    new.add_service(
        Time::ZERO,
        &ServiceConf::new(tcp_key(), "rr").persistent(300),
    )
    .unwrap();
    for a in [A, B] {
        new.add_dest(
            Time::ZERO,
            &tcp_key(),
            &DestConf::new(ip(a), 80, FwdMethod::Route, 1),
        )
        .unwrap();
    }
    for c in old.sync_export(t) {
        new.import_conn(t, &c, false);
    }
    let k = tcp_key();
    let slots = [
        (None, None),
        (Some(&k), None),
        (Some(&k), Some((ip(A), 80))),
        (Some(&k), Some((ip(B), 80))),
    ];
    for (key, dest) in slots {
        let st = old.counter_state(key, dest).unwrap();
        assert!(new.set_counter_state(key, dest, &st));
        assert_eq!(new.counter_state(key, dest), Some(st));
    }
    assert_eq!(old.connections(t), new.connections(t));
    assert!(new.connections(t).iter().all(|c| !c.synced));
    let (os, ns) = (old.service(&k).unwrap(), new.service(&k).unwrap());
    assert_eq!(os.stats(), ns.stats());
    assert_eq!(os.rates(), ns.rates());
    assert!(os.stats().conns > 0 && os.rates().inpps > 0);
    for a in [A, B] {
        let (od, nd) = (os.dest(ip(a), 80).unwrap(), ns.dest(ip(a), 80).unwrap());
        assert_eq!(
            (
                od.active_conns(),
                od.inact_conns(),
                od.persist_conns(),
                od.stats()
            ),
            (
                nd.active_conns(),
                nd.inact_conns(),
                nd.persist_conns(),
                nd.stats()
            )
        );
    }
    // the next packet of a taken-over connection goes on, to the same dest
    let r = new.process(t, &pkt("203.0.113.1", 1000, TcpFlags::ACK, Dir::In), &[]);
    assert!(matches!(r, Verdict::Forward { created: false, .. }));
    assert!(!new.set_counter_state(
        Some(&k),
        Some((ip("198.18.9.9"), 80)),
        &CounterState::default()
    ));
}

/// Issue 27: short connections spread over many seconds leave nothing
/// behind once they expired. The timer wheel used to keep every bucket's
/// storage after it ran, so each second under load added that second's
/// arms to the heap for good (about 15 bytes per connection ever made).
#[test]
fn table_memory_does_not_grow_with_the_connections_made() {
    let mut v = setup("wlc", &[(A, 1), (B, 1)], FwdMethod::Masq);
    v.set_timeouts(30, 10, 30).unwrap();
    let mut n = 0u32;
    let mut now = 0u64;
    // `secs` seconds of 200 short connections a second (SYN, ACK, data,
    // client FIN, server FIN), the table's timers run every second; then
    // every entry expires.
    let mut churn = |v: &mut Ipvs, secs: u64| {
        for _ in 0..secs {
            let t = Time::from_secs(now);
            for _ in 0..200 {
                n += 1;
                let client =
                    SocketAddr::new(IpAddr::from([198, 18, 1, (n >> 16) as u8]), n as u16 | 1024);
                let mut p = Packet {
                    fwmark: 0,
                    proto: Protocol::Tcp,
                    src: client,
                    dst: sa(VIP, 80),
                    tcp_flags: TcpFlags::SYN,
                    len: 60,
                    dir: Dir::In,
                };
                let Verdict::Forward { conn, created, .. } = v.process(t, &p, &[]) else {
                    panic!("SYN {n} not forwarded");
                };
                assert!(created);
                for f in [TcpFlags::ACK, TcpFlags::ACK | TcpFlags::PSH, TcpFlags::FIN] {
                    p.tcp_flags = f;
                    assert!(matches!(v.process(t, &p, &[]), Verdict::Forward { .. }));
                }
                v.process_conn(t, conn, Dir::Out, TcpFlags::FIN | TcpFlags::ACK, 40);
            }
            now += 1;
            v.handle_timeout(Time::from_secs(now));
        }
        now += 600;
        v.handle_timeout(Time::from_secs(now));
        assert_eq!(v.conn_count(), 0);
    };
    churn(&mut v, 300);
    let base = v.conn_table_bytes();
    churn(&mut v, 300);
    assert_eq!(
        v.conn_table_bytes(),
        base,
        "60 000 more connections, then an empty table: same memory"
    );
}
