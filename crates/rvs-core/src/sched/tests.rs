//! Scheduler unit tests on the internal tables (dh/sh/mh layouts, lblc,
//! lblcr, twos). Sequence tests through the public API live in ipvs/tests.rs.

use super::*;
use crate::dest::Dest;
use crate::est::Estimator;
use crate::types::{DestConf, FwdMethod, Stats, SvcKey, SVC_F_SCHED1, SVC_F_SCHED2};
use std::net::IpAddr;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn mk(addr: &str, port: u16, weight: i32) -> Dest {
    Dest {
        conf: DestConf::new(ip(addr), port, FwdMethod::Route, weight),
        last_weight: weight,
        serial: 0,
        svc: Some(0),
        svc_key: SvcKey::Fwmark { mark: 1, v6: false },
        svc_serial: 1,
        available: true,
        overload: false,
        excluded: false,
        activeconns: 0,
        inactconns: 0,
        persistconns: 0,
        refcnt: 0,
        stats: Stats::default(),
        est: Estimator::default(),
        idle_start: None,
    }
}

/// Builds a table with dests added in `adds` order; returns (table, list newest first).
fn build(adds: &[(&str, u16, i32)]) -> (DestTable, Vec<DestId>) {
    let mut t = DestTable::default();
    let mut list = Vec::new();
    for &(a, p, w) in adds {
        let id = t.insert(mk(a, p, w));
        list.insert(0, id);
    }
    (t, list)
}

fn ctx<'a>(
    dests: &'a DestTable,
    list: &'a [DestId],
    saddr: &str,
    daddr: &str,
    flags: u32,
) -> SchedCtx<'a> {
    SchedCtx {
        dests,
        list,
        proto: Protocol::Tcp,
        saddr: ip(saddr),
        sport: 4321,
        daddr: ip(daddr),
        svc_flags: flags,
        now: Time::from_secs(1),
        lblc_expiration: 86400,
        lblcr_expiration: 86400,
    }
}

#[test]
fn dh_layout_is_cyclic_list_order_and_hash_is_golden_ratio() {
    let (t, list) = build(&[
        ("10.0.0.1", 80, 1),
        ("10.0.0.2", 80, 5),
        ("10.0.0.3", 80, 1),
    ]);
    let mut dh = DhTable::new();
    dh.reassign(&list);
    for (i, b) in dh.buckets().iter().enumerate() {
        assert_eq!(*b, Some(list[i % 3]));
    }
    // (0x0a000001 * 2654435761) & 255 = 0xb1
    assert_eq!(DhTable::hashkey(ip("10.0.0.1")), 0xb1);
    let c = ctx(&t, &list, "1.1.1.1", "10.0.0.1", 0);
    assert_eq!(dh.schedule(&c), Some(list[0xb1 % 3]));
}

#[test]
fn sh_weighted_consecutive_buckets_and_fallback() {
    // added A(w=2) then B(w=1): list B, A -> buckets B, A, A, B, A, A, ...
    let (mut t, list) = build(&[("10.0.0.1", 80, 2), ("10.0.0.2", 80, 1)]);
    let mut sh = ShTable::new();
    sh.reassign(&list, &t);
    let b = sh.buckets();
    assert_eq!(
        &b[..6],
        &[
            Some(list[0]),
            Some(list[1]),
            Some(list[1]),
            Some(list[0]),
            Some(list[1]),
            Some(list[1])
        ]
    );
    // weight 0 dest still gets one bucket per round
    let (t0, l0) = build(&[("10.0.0.1", 80, 0), ("10.0.0.2", 80, 3)]);
    let mut sh0 = ShTable::new();
    sh0.reassign(&l0, &t0);
    assert_eq!(
        &sh0.buckets()[..5],
        &[
            Some(l0[0]),
            Some(l0[0]),
            Some(l0[0]),
            Some(l0[1]),
            Some(l0[0])
        ]
    );

    let h = ShTable::hashkey(ip("192.168.1.7"), 0, 0);
    let owner = sh.buckets()[h].unwrap();
    let c = ctx(&t, &list, "192.168.1.7", "10.9.9.9", 0);
    assert_eq!(sh.schedule(&c), Some(owner));
    // owner overloaded: no fallback -> None; fallback -> the other dest
    t.get_mut(owner).unwrap().overload = true;
    let c = ctx(&t, &list, "192.168.1.7", "10.9.9.9", 0);
    assert_eq!(sh.schedule(&c), None);
    let c = ctx(&t, &list, "192.168.1.7", "10.9.9.9", SVC_F_SCHED1);
    let other = if owner == list[0] { list[1] } else { list[0] };
    assert_eq!(sh.schedule(&c), Some(other));
    // sh-port changes the key
    assert_ne!(ShTable::hashkey(ip("192.168.1.7"), 4321, 0), h);
    let _ = ctx(&t, &list, "192.168.1.7", "10.9.9.9", SVC_F_SCHED2);
}

#[test]
fn mh_table_full_and_proportional() {
    let (t, list) = build(&[
        ("10.0.0.1", 80, 1),
        ("10.0.0.2", 80, 2),
        ("10.0.0.3", 80, 1),
    ]);
    let mut mh = MhTable::new();
    mh.reassign(&list, &t);
    let mut counts = std::collections::HashMap::new();
    for s in mh.lookup() {
        *counts.entry(s.unwrap()).or_insert(0usize) += 1;
    }
    assert_eq!(counts.values().sum::<usize>(), MH_TAB_SIZE);
    // weight 2 dest (list[1], added second) owns about half the slots
    let heavy = counts[&list[1]] as f64 / MH_TAB_SIZE as f64;
    assert!((heavy - 0.5).abs() < 0.02, "{heavy}");
}

#[test]
fn mh_quiesced_dest_keeps_slots_new_zero_dest_gets_none() {
    let (mut t, list) = build(&[("10.0.0.1", 80, 1), ("10.0.0.2", 80, 1)]);
    let mut mh = MhTable::new();
    mh.reassign(&list, &t);
    let before = mh.lookup().to_vec();
    // edit to weight 0: last_weight kept -> same layout
    t.get_mut(list[0]).unwrap().conf.weight = 0;
    mh.reassign(&list, &t);
    assert_eq!(mh.lookup(), &before[..]);
    // but scheduling never returns it
    for i in 0..200u32 {
        let a = IpAddr::from(std::net::Ipv4Addr::from(0x0a01_0000 + i));
        let mut c = ctx(&t, &list, "1.1.1.1", "2.2.2.2", 0);
        c.saddr = a;
        assert_ne!(mh.schedule(&c), Some(list[0]));
        let mut c2 = ctx(&t, &list, "1.1.1.1", "2.2.2.2", SVC_F_SCHED1);
        c2.saddr = a;
        assert_eq!(mh.schedule(&c2), Some(list[1]));
    }
    // a dest ADDED with weight 0 has last_weight 0: no slots
    let (t2, l2) = build(&[("10.0.0.1", 80, 1), ("10.0.0.2", 80, 0)]);
    let mut mh2 = MhTable::new();
    mh2.reassign(&l2, &t2);
    assert!(mh2.lookup().iter().all(|s| *s == Some(l2[1])));
}

#[test]
fn maglev_rshift_for_big_weights() {
    // weights 1 and 1000: mw/gcd = 1000 (10 bits) -> rshift 4 -> turns 1 and 62
    let members = vec![(ip("10.0.0.1"), 80, 1), (ip("10.0.0.2"), 80, 1000)];
    let t = maglev_build(MH_TAB_SIZE, &members).unwrap();
    let n1 = t.iter().filter(|s| **s == 0).count();
    let n2 = t.iter().filter(|s| **s == 1).count();
    assert_eq!(n1 + n2, MH_TAB_SIZE);
    let ratio = n2 as f64 / n1 as f64;
    assert!((ratio - 62.0).abs() < 3.0, "{ratio}");
    assert!(maglev_build(3, &[(ip("1.1.1.1"), 1, 1); 4]).is_none());
    assert!(maglev_build(7, &[])
        .unwrap()
        .iter()
        .all(|s| *s == MAGLEV_NONE));
}

#[test]
fn lblc_sticks_per_destination_address_and_moves_when_unavailable() {
    let (mut t, list) = build(&[("10.0.0.1", 80, 1), ("10.0.0.2", 80, 1)]);
    let mut l = Lblc::default();
    let c = ctx(&t, &list, "1.1.1.1", "172.16.0.1", 0);
    let first = l.schedule(&c).unwrap();
    assert_eq!(first, list[0], "wlc tie -> newest");
    // load it: still sticky (not lblc-overloaded: active 0 <= weight... )
    t.get_mut(first).unwrap().activeconns = 1;
    let c = ctx(&t, &list, "9.9.9.9", "172.16.0.1", 0);
    assert_eq!(l.schedule(&c), Some(first));
    // another destination address gets the least loaded dest
    let c = ctx(&t, &list, "1.1.1.1", "172.16.0.2", 0);
    assert_eq!(l.schedule(&c), Some(list[1]));
    // lblc overload: active > weight and another dest has active*2 < weight
    t.get_mut(first).unwrap().activeconns = 2;
    t.get_mut(list[1]).unwrap().activeconns = 0;
    let c = ctx(&t, &list, "1.1.1.1", "172.16.0.1", 0);
    assert_eq!(l.schedule(&c), Some(list[1]));
    // weight 0 -> rescheduled
    let c = ctx(&t, &list, "1.1.1.1", "172.16.0.9", 0);
    let d = l.schedule(&c).unwrap();
    t.get_mut(d).unwrap().conf.weight = 0;
    let c = ctx(&t, &list, "1.1.1.1", "172.16.0.9", 0);
    assert_ne!(l.schedule(&c), Some(d));
    // GC: the 30th tick does the full expiration check
    for i in 1..30u64 {
        l.check_expire(Time::from_secs(100_000 + i * 60), 86400);
        assert!(!l.tab.is_empty());
    }
    l.check_expire(Time::from_secs(100_000 + 30 * 60), 86400);
    assert!(l.tab.is_empty());
}

#[test]
fn lblcr_set_grows_under_load() {
    let (mut t, list) = build(&[("10.0.0.1", 80, 1), ("10.0.0.2", 80, 1)]);
    let mut l = Lblcr::default();
    let c = ctx(&t, &list, "1.1.1.1", "172.16.0.1", 0);
    let first = l.schedule(&c).unwrap();
    t.get_mut(first).unwrap().activeconns = 5;
    let c = ctx(&t, &list, "1.1.1.1", "172.16.0.1", 0);
    let second = l.schedule(&c).unwrap();
    assert_ne!(first, second);
    let e = &l.tab[&ip("172.16.0.1")];
    assert_eq!(e.set.len(), 2);
    assert_eq!(e.set[0].id, second, "new members at the head");
}

#[test]
fn twos_never_picks_weight0_or_overloaded() {
    let (mut t, list) = build(&[
        ("10.0.0.1", 80, 0),
        ("10.0.0.2", 80, 3),
        ("10.0.0.3", 80, 5),
    ]);
    t.get_mut(list[0]).unwrap().overload = true; // 10.0.0.3
    let mut rng = Rng::new(7);
    let c = ctx(&t, &list, "1.1.1.1", "2.2.2.2", 0);
    for _ in 0..1000 {
        assert_eq!(twos(&mut rng, &c), Some(list[1]));
    }
    let (t2, l2) = build(&[("10.0.0.1", 80, 0)]);
    let c = ctx(&t2, &l2, "1.1.1.1", "2.2.2.2", 0);
    assert_eq!(twos(&mut rng, &c), None);
}

mod props {
    use super::*;
    use proptest::prelude::*;

    fn members(ws: &[i32]) -> Vec<(IpAddr, u16, i32)> {
        ws.iter()
            .enumerate()
            .map(|(i, &w)| {
                (
                    IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0001 + i as u32)),
                    80,
                    w,
                )
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// sh fills each dest's share in runs of `weight` buckets.
        #[test]
        fn sh_buckets_proportional(ws in proptest::collection::vec(1i32..20, 1..8)) {
            let adds: Vec<(String, u16, i32)> = ws.iter().enumerate()
                .map(|(i, &w)| (format!("10.0.0.{}", i + 1), 80, w)).collect();
            let refs: Vec<(&str, u16, i32)> = adds.iter().map(|(a, p, w)| (a.as_str(), *p, *w)).collect();
            let (t, list) = build(&refs);
            let mut sh = ShTable::new();
            sh.reassign(&list, &t);
            let s: i32 = ws.iter().sum();
            for &id in &list {
                let w = t.get(id).unwrap().weight() as f64;
                let n = sh.buckets().iter().filter(|b| **b == Some(id)).count() as f64;
                let ideal = 256.0 * w / s as f64;
                prop_assert!((n - ideal).abs() <= w + 1.0, "n={n} ideal={ideal} w={w}");
            }
        }

        /// mh table shares follow the weights (via turns).
        #[test]
        fn mh_proportional(ws in proptest::collection::vec(1i32..8, 1..10)) {
            let m = members(&ws);
            let t = maglev_build(MH_TAB_SIZE, &m).unwrap();
            let s: i32 = ws.iter().sum();
            for (i, &w) in ws.iter().enumerate() {
                let n = t.iter().filter(|x| **x == i as u32).count() as f64;
                let share = n / MH_TAB_SIZE as f64;
                let ideal = w as f64 / s as f64;
                prop_assert!((share - ideal).abs() < 0.03, "i={i} share={share} ideal={ideal}");
            }
            prop_assert!(t.iter().all(|x| *x != MAGLEV_NONE));
        }

        /// Removing 1 of N dests moves about 1/N of the table.
        #[test]
        fn mh_removal_moves_about_one_nth(n in 3usize..30, victim_seed in 0usize..1000) {
            let ws = vec![1; n];
            let m = members(&ws);
            let victim = victim_seed % n;
            let before = maglev_build(MH_TAB_SIZE, &m).unwrap();
            let mut m2 = m.clone();
            m2.remove(victim);
            let after = maglev_build(MH_TAB_SIZE, &m2).unwrap();
            // map after-index back to before-index
            let back = |i: u32| if (i as usize) < victim { i } else { i + 1 };
            let moved = before.iter().zip(&after)
                .filter(|(b, a)| **b != back(**a))
                .count() as f64 / MH_TAB_SIZE as f64;
            let ideal = 1.0 / n as f64;
            prop_assert!(moved >= ideal * 0.9, "moved={moved} ideal={ideal}");
            prop_assert!(moved <= ideal * 1.5 + 0.02, "moved={moved} ideal={ideal}");
        }
    }
}
