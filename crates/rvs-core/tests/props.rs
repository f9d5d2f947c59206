//! Property tests through the public API.

use proptest::prelude::*;
use rvs_core::*;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

const VIP: [u8; 4] = [198, 18, 0, 100];

fn key() -> SvcKey {
    SvcKey::Addr {
        proto: Protocol::Tcp,
        addr: IpAddr::from(VIP),
        port: 80,
    }
}

fn rs(i: usize) -> IpAddr {
    IpAddr::from(Ipv4Addr::new(198, 18, 2, 1 + i as u8))
}

fn syn(c: u32, port: u16) -> Packet {
    Packet {
        fwmark: 0,
        proto: Protocol::Tcp,
        src: SocketAddr::new(IpAddr::from(Ipv4Addr::from(0xc612_0000 + c)), port),
        dst: SocketAddr::new(IpAddr::from(VIP), 80),
        tcp_flags: TcpFlags::SYN,
        len: 60,
        dir: Dir::In,
    }
}

fn build(sched: &str, ws: &[(i32, u32)]) -> Ipvs {
    let mut v = Ipvs::new();
    v.add_service(Time::ZERO, &ServiceConf::new(key(), sched))
        .unwrap();
    for (i, &(w, u)) in ws.iter().enumerate() {
        let mut d = DestConf::new(rs(i), 80, FwdMethod::Masq, w);
        d.u_threshold = u;
        v.add_dest(Time::ZERO, &key(), &d).unwrap();
    }
    v
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// No scheduler ever picks a weight-0 or OVERLOADED destination for a
    /// new connection (lblc/lblcr's cache skips only their own overload
    /// heuristic, so for them only weight 0 is checked, as in the kernel).
    #[test]
    fn never_picks_weight0_or_overloaded(
        sched_i in 0usize..14,
        ws in proptest::collection::vec((0i32..4, 0u32..4), 1..6),
        n in 1usize..60,
    ) {
        let sched = SCHEDULER_NAMES[sched_i];
        let mut v = build(sched, &ws);
        for k in 0..n {
            let before: Vec<(IpAddr, i32, bool)> = v.service(&key()).unwrap().dests()
                .map(|d| (d.addr(), d.weight(), d.overloaded())).collect();
            let p = syn(k as u32 % 7, 1000 + k as u16);
            match v.process(Time::from_millis(k as u64), &p, &[]) {
                Verdict::Forward { dest, .. } => {
                    let (_, w, ovl) = before.iter().find(|d| d.0 == dest.ip()).copied().unwrap();
                    prop_assert!(w > 0, "{sched} picked weight 0");
                    if sched != "lblc" && sched != "lblcr" {
                        prop_assert!(!ovl, "{sched} picked an overloaded dest");
                    }
                }
                Verdict::NoDest => {}
                other => prop_assert!(false, "unexpected {:?}", other),
            }
        }
    }

    /// wrr: over one full cycle (sum(w)/gcd picks) each dest is chosen w/gcd times.
    #[test]
    fn wrr_proportional_over_a_cycle(ws in proptest::collection::vec(1i32..8, 1..6)) {
        let g = ws.iter().fold(0i32, |a, &b| gcd(a, b));
        let period: i32 = ws.iter().map(|w| w / g).sum();
        let mut v = build("wrr", &ws.iter().map(|&w| (w, 0)).collect::<Vec<_>>());
        for round in 0..2 {
            let mut counts = vec![0i32; ws.len()];
            for k in 0..period {
                let p = syn(round, (2000 + k + round as i32 * 1000) as u16);
                let Verdict::Forward { dest, .. } = v.process(Time::ZERO, &p, &[]) else {
                    return Err(TestCaseError::fail("no forward"));
                };
                let i = (0..ws.len()).find(|&i| rs(i) == dest.ip()).unwrap();
                counts[i] += 1;
            }
            let want: Vec<i32> = ws.iter().map(|w| w / g).collect();
            prop_assert_eq!(counts, want);
        }
    }

    /// Connection accounting: per dest, active + inactive equals the number
    /// of live connections bound to it, persistconns the templates, under
    /// random packets and timer advances; nothing panics.
    #[test]
    fn accounting_matches_table(
        persistent in any::<bool>(),
        nat in any::<bool>(),
        ops in proptest::collection::vec((0u32..6, 0u16..4, 0u8..32, 0u8..2, 0u64..40), 1..120),
    ) {
        let mut v = Ipvs::new();
        let mut conf = ServiceConf::new(key(), "rr");
        if persistent { conf = conf.persistent(30); }
        v.add_service(Time::ZERO, &conf).unwrap();
        let fwd = if nat { FwdMethod::Masq } else { FwdMethod::Route };
        for i in 0..3 {
            v.add_dest(Time::ZERO, &key(), &DestConf::new(rs(i), 80, fwd, 1)).unwrap();
        }
        let mut now = 0u64;
        for (client, port, flags, dir, adv) in ops {
            now += adv * 700;
            let t = Time::from_millis(now);
            let mut p = syn(client, 2000 + port);
            p.tcp_flags = TcpFlags(flags & 0x1f);
            if dir == 1 {
                // reply from whichever dest serves this client, if any
                if let Some(c) = v.connections(t).into_iter()
                    .find(|c| !c.template && c.caddr == p.src.ip() && c.cport == p.src.port()) {
                    p = Packet { src: if nat { SocketAddr::new(c.daddr, c.dport) } else { p.dst },
                                 dst: p.src, dir: Dir::Out, ..p };
                }
            }
            let _ = v.process(t, &p, &[]);
            v.handle_timeout(t);
            let conns = v.connections(t);
            for d in v.service(&key()).unwrap().dests() {
                let bound = conns.iter().filter(|c| !c.template && c.daddr == d.addr()).count() as u32;
                let tpl = conns.iter().filter(|c| c.template && c.daddr == d.addr()).count() as u32;
                prop_assert_eq!(d.active_conns() + d.inact_conns(), bound);
                prop_assert_eq!(d.persist_conns(), tpl);
                let active = conns.iter().filter(|c| !c.template && c.daddr == d.addr()
                    && matches!(c.state_name, "ESTABLISHED" | "SYN_SENT" | "SYN_RECV" | "SYNACK")).count() as u32;
                prop_assert_eq!(d.active_conns(), active);
            }
        }
        // everything eventually expires
        v.handle_timeout(Time::from_millis(now + 4_000_000));
        prop_assert_eq!(v.conn_count(), 0);
    }

    /// Arbitrary control-plane input never panics and errors are typed.
    #[test]
    fn control_plane_never_panics(
        sched in "[a-z]{0,6}",
        w in any::<i32>(),
        l in any::<u32>(),
        u in any::<u32>(),
        mask in any::<u32>(),
        port in any::<u16>(),
        tun in 0u8..3,
    ) {
        let mut v = Ipvs::new();
        let mut c = ServiceConf::new(key(), &sched);
        c.netmask = mask;
        let _ = v.add_service(Time::ZERO, &c);
        let _ = v.add_service(Time::ZERO, &ServiceConf::new(key(), "rr"));
        let mut d = DestConf::new(rs(0), port, FwdMethod::Tunnel, w);
        d.l_threshold = l;
        d.u_threshold = u;
        d.tun_type = [TunType::Ipip, TunType::Gue, TunType::Gre][tun as usize];
        if let Err(e) = v.add_dest(Time::ZERO, &key(), &d) {
            prop_assert!(["EINVAL", "ERANGE", "ENOENT", "ESRCH", "EEXIST"].contains(&e.errno_name()));
        }
        let _ = v.process(Time::ZERO, &syn(1, 1), &[]);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Arbitrary sync messages never panic, and the table stays consistent.
    #[test]
    fn sync_apply_never_panics(
        msgs in proptest::collection::vec(
            (prop_oneof![Just(0u8), Just(6u8), Just(17u8), Just(132u8), any::<u8>()],
             any::<u32>(), any::<u16>(), 0u32..4, any::<u16>(), 0usize..3, any::<u16>(), any::<u32>(), any::<u32>()),
            1..40),
    ) {
        let mut v = build("rr", &[(1, 0), (1, 0), (1, 0)]);
        for (protocol, flags, state, c, cport, d, dport, fwmark, timeout) in msgs {
            let m = SyncConn {
                protocol,
                flags,
                state,
                caddr: IpAddr::from(Ipv4Addr::new(203, 0, 113, c as u8)),
                cport,
                vaddr: IpAddr::from(VIP),
                vport: 80,
                daddr: rs(d),
                dport: if dport % 2 == 0 { 80 } else { dport },
                fwmark,
                timeout: timeout % 100_000,
                // some templates carry a SIP Call-ID (0..4 calls)
                pe_name: (flags & 0x1000 != 0 && c % 2 == 0).then(|| "sip".to_string()),
                pe_data: (flags & 0x1000 != 0 && c % 2 == 0).then(|| vec![b'0' + (cport % 4) as u8]),
            };
            v.sync_apply(Time::from_secs(1), &m);
        }
        let _ = v.connections(Time::from_secs(1));
        v.handle_timeout(Time::from_secs(10_000_000));
        prop_assert_eq!(v.conn_count(), 0);
        for d in v.service(&key()).unwrap().dests() {
            prop_assert_eq!((d.active_conns(), d.inact_conns(), d.persist_conns()), (0, 0, 0));
        }
    }
}

fn gcd(a: i32, b: i32) -> i32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}
