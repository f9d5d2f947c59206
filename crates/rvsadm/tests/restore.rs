//! `-R` semantics and the `-S | -R` round-trip property.

mod common;
use common::*;
use proptest::prelude::*;
use rvs_api::{
    svc_flags, DestInfo, DestSpec, Family, FwdMethod, Protocol, Rates, ServiceInfo, ServiceKey,
    ServiceSpec, Stats, TunCsum, TunType,
};
use rvsadm::backend::FakeBackend;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

#[test]
fn restore_aborts_on_validation_error_and_continues_on_kernel_error() {
    let mut be = FakeBackend::default();
    let o = restore(
        &mut be,
        "-A -t 10.0.0.1:80\n-A -t 10.0.0.1:80\n-A -t 10.0.0.2:80\n-A -t 10.0.0.3:80 -m\n-A -t 10.0.0.4:80\n",
    );
    assert_eq!(o.code, 2);
    assert_eq!(
        o.stderr,
        "Service already exists\nIllegal 'forwarding-method' option with the 'add-service' command\n"
    );
    assert_eq!(be.services.len(), 2, "lines after the bad one are not run");
}

#[test]
fn restore_status_is_the_last_line() {
    let mut be = FakeBackend::default();
    let o = restore(&mut be, "-A -t 10.0.0.1:80\n-A -t 10.0.0.1:80\n");
    assert_eq!(
        (o.code, o.stderr.as_str()),
        (255, "Service already exists\n")
    );
    let o = restore(&mut be, "-A -t 10.0.0.1:80\n-A -t 10.0.0.2:80\n");
    assert_eq!((o.code, o.stderr.as_str()), (0, "Service already exists\n"));
    // popt errors print and continue, like kernel errors.
    let o = restore(&mut be, "-L --foo\n-A -t 10.0.0.5:80\n");
    assert_eq!((o.code, o.stderr.as_str()), (0, "--foo: unknown option\n"));
    assert_eq!(be.services.len(), 3);
}

#[test]
fn restore_comments_and_nested_restore_are_fatal() {
    let mut be = FakeBackend::default();
    let o = restore(
        &mut be,
        "-A -t 10.0.0.1:80\n# a comment\n-A -t 10.0.0.2:80\n",
    );
    assert_eq!(
        (o.code, o.stderr.as_str()),
        (
            255,
            "Try `rvsadm -h' or 'rvsadm --help' for more information.\n"
        )
    );
    assert_eq!(be.services.len(), 1);
    let o = restore(&mut be, "-R\n-A -t 10.0.0.2:80\n");
    assert_eq!(
        (o.code, o.stderr.as_str()),
        (
            255,
            "Try `rvsadm -h' or 'rvsadm --help' for more information.\n"
        )
    );
    assert_eq!(be.services.len(), 1);
}

#[test]
fn restore_tokens_eof_quirk_and_any_command() {
    let mut be = FakeBackend::default();
    let o = restore(
        &mut be,
        "ipvsadm -A -t 10.0.0.1:80 ipvsadm\n\n   \t-A\t-t 10.0.0.2:80\r\n-L -n\n-A -t 10.0.0.3:80  ",
    );
    assert_eq!((o.code, o.stderr.as_str()), (0, ""));
    assert!(o
        .stdout
        .starts_with("IP Virtual Server version 1.2.1 (size=4096)\n"));
    assert_eq!(
        be.services.len(),
        2,
        "last line ending in two blanks without newline is dropped"
    );
    let o = restore(&mut be, "-A -t 10.0.0.3:80 ");
    assert_eq!(o.code, 0);
    assert_eq!(be.services.len(), 3);
    let o = restore(&mut be, "-C\n-A -t 10.0.0.4:80");
    assert_eq!(o.code, 0);
    assert_eq!(be.services.len(), 1);
}

// ===== property: -Sn | -R reproduces any table =====

fn arb_v4() -> impl Strategy<Value = IpAddr> {
    any::<u32>().prop_map(|a| IpAddr::V4(Ipv4Addr::from(a)))
}

fn arb_v6() -> impl Strategy<Value = IpAddr> {
    any::<u128>().prop_map(|a| IpAddr::V6(Ipv6Addr::from(a)))
}

fn arb_ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![3 => arb_v4(), 1 => arb_v6()]
}

const SCHEDS: &[&str] = &[
    "rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh",
];

#[derive(Debug, Clone)]
struct SvcGen {
    key: ServiceKey,
    sched: usize,
    sched_bits: u32,
    persistent: Option<(u32, u32)>,
    ops: bool,
    pe: bool,
    dests: Vec<(IpAddr, u16, u8, u32, u8, u16, u8)>,
}

fn arb_key() -> impl Strategy<Value = ServiceKey> {
    prop_oneof![
        (
            prop_oneof![
                Just(Protocol::Tcp),
                Just(Protocol::Udp),
                Just(Protocol::Sctp)
            ],
            arb_ip(),
            any::<u16>()
        )
            .prop_map(|(protocol, addr, port)| ServiceKey::Addr {
                protocol,
                addr,
                port
            }),
        (1u32..=i32::MAX as u32, any::<bool>()).prop_map(|(mark, v6)| ServiceKey::Fwmark {
            mark,
            family: if v6 { Family::Inet6 } else { Family::Inet },
        }),
    ]
}

fn arb_svc() -> impl Strategy<Value = SvcGen> {
    (
        arb_key(),
        0..SCHEDS.len(),
        0u32..8,
        proptest::option::of((1u32..=2_678_400, any::<u32>())),
        any::<bool>(),
        any::<bool>(),
        proptest::collection::vec(
            (
                arb_ip(),
                any::<u16>(),
                0u8..3,
                0u32..=65535,
                0u8..3,
                1u16..=65535,
                0u8..3,
            ),
            0..4,
        ),
    )
        .prop_map(
            |(key, sched, sched_bits, persistent, ops, pe, dests)| SvcGen {
                key,
                sched,
                sched_bits,
                persistent,
                ops,
                pe,
                dests,
            },
        )
}

/// Turn generated data into a table that ipvsadm's syntax can express.
fn build(gens: Vec<SvcGen>) -> Vec<ServiceInfo> {
    let mut out: Vec<ServiceInfo> = Vec::new();
    for g in gens {
        if out.iter().any(|s| s.spec.key == g.key) {
            continue;
        }
        let family = g.key.family();
        let (svc_port, is_fwmark, proto) = match g.key {
            ServiceKey::Addr { port, protocol, .. } => (port, false, Some(protocol)),
            ServiceKey::Fwmark { .. } => (0, true, None),
        };
        let sched = SCHEDS[g.sched];
        let mut flags = 0;
        let bits = if sched == "sh" || sched == "mh" {
            g.sched_bits & 3
        } else {
            g.sched_bits
        };
        flags |= bits << 3;
        let (mut timeout, mut netmask) = (
            0,
            if family == Family::Inet6 {
                128
            } else {
                0xffff_ffff
            },
        );
        if let Some((t, m)) = g.persistent {
            flags |= svc_flags::PERSISTENT;
            timeout = t;
            netmask = if family == Family::Inet6 {
                m % 128 + 1
            } else {
                m
            };
        }
        if !is_fwmark && svc_port == 0 && flags & svc_flags::PERSISTENT == 0 {
            continue;
        }
        if g.ops && (is_fwmark || proto == Some(Protocol::Udp)) {
            flags |= svc_flags::ONEPACKET;
        }
        let mut dests: Vec<DestInfo> = Vec::new();
        for (addr, port, fwd, weight, tt, tport, csum) in g.dests {
            let fwd = [FwdMethod::Masq, FwdMethod::Tunnel, FwdMethod::Route][fwd as usize];
            let addr = if fwd == FwdMethod::Tunnel || (addr.is_ipv6() == (family == Family::Inet6))
            {
                addr
            } else if family == Family::Inet6 {
                IpAddr::V6(Ipv6Addr::from(u128::from(port)))
            } else {
                IpAddr::V4(Ipv4Addr::from(u32::from(port)))
            };
            let port = if !is_fwmark && fwd != FwdMethod::Masq {
                svc_port
            } else {
                port
            };
            let (tun_type, tun_port, tun_flags) = if fwd == FwdMethod::Tunnel {
                match tt {
                    0 => (TunType::Ipip, 0, TunCsum::NoCsum),
                    1 => (
                        TunType::Gue,
                        tport,
                        [TunCsum::NoCsum, TunCsum::Csum, TunCsum::RemCsum][csum as usize],
                    ),
                    _ => (
                        TunType::Gre,
                        0,
                        [TunCsum::NoCsum, TunCsum::Csum][csum as usize % 2],
                    ),
                }
            } else {
                (TunType::Ipip, 0, TunCsum::NoCsum)
            };
            if dests
                .iter()
                .any(|d| d.spec.addr == addr && d.spec.port == port)
            {
                continue;
            }
            dests.push(DestInfo {
                spec: DestSpec {
                    addr,
                    port,
                    fwd,
                    weight,
                    u_threshold: 0,
                    l_threshold: 0,
                    tun_type,
                    tun_port,
                    tun_flags,
                },
                active_conns: 0,
                inact_conns: 0,
                persist_conns: 0,
                stats: Stats::default(),
                rates: Rates::default(),
            });
        }
        out.push(ServiceInfo {
            spec: ServiceSpec {
                key: g.key,
                scheduler: sched.to_string(),
                flags,
                timeout,
                netmask,
                pe_name: g.pe.then(|| "sip".to_string()),
            },
            stats: Stats::default(),
            rates: Rates::default(),
            dests,
        });
    }
    out
}

fn canonical(v: &[ServiceInfo]) -> Vec<String> {
    let mut out: Vec<String> = v
        .iter()
        .map(|s| {
            let mut s = s.clone();
            s.dests.sort_by_key(|d| (d.spec.addr, d.spec.port));
            serde_json::to_string(&s).unwrap()
        })
        .collect();
    out.sort();
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]
    #[test]
    fn save_restore_round_trip(gens in proptest::collection::vec(arb_svc(), 0..6)) {
        let table = build(gens);
        let mut a = FakeBackend { services: table.clone(), ..Default::default() };
        let saved = ok(&mut a, &["-Sn"]);
        let mut b = FakeBackend::default();
        let o = restore(&mut b, &saved);
        prop_assert_eq!(o.code, 0, "restore failed: {}\n{}", o.stderr, saved);
        prop_assert_eq!(o.stderr.as_str(), "");
        prop_assert_eq!(canonical(&b.services), canonical(&table), "saved:\n{}", saved);
        // Saving the restored table gives the same rules (as a set).
        let mut again: Vec<String> = ok(&mut b, &["-Sn"]).lines().map(str::to_string).collect();
        let mut first: Vec<String> = saved.lines().map(str::to_string).collect();
        again.sort();
        first.sort();
        prop_assert_eq!(again, first);
    }
}
