//! A received VRRP advertisement: the zero-copy view, `Repr::parse` (with
//! the checksum as received and once more with it fixed, so the fuzzer gets
//! past it), the emit/parse round trip, and an instance state machine
//! (`Instance::handle_packet`) fed the packet. Must never panic.
//!
//! Input: flags (bit 0: IPv6, bit 1: v3 instance, bit 2: instance is
//! MASTER), TTL, source and destination address (4 or 16 bytes each), then
//! the VRRP message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rvs_vrrp::packet::{Packet, Repr, Version};
use rvs_vrrp::{Instance, InstanceConfig, State, VipConfig};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

fn addr(b: &[u8], v6: bool) -> Option<(IpAddr, &[u8])> {
    if v6 {
        let a: [u8; 16] = b.get(..16)?.try_into().ok()?;
        Some((IpAddr::V6(Ipv6Addr::from(a)), &b[16..]))
    } else {
        let a: [u8; 4] = b.get(..4)?.try_into().ok()?;
        Some((IpAddr::V4(Ipv4Addr::from(a)), &b[4..]))
    }
}

fuzz_target!(|data: &[u8]| {
    let [flags, ttl, rest @ ..] = data else { return };
    let v6 = flags & 1 != 0;
    let Some((src, rest)) = addr(rest, v6) else { return };
    let Some((dst, msg)) = addr(rest, v6) else { return };

    if let Ok(p) = Packet::new_checked(msg) {
        let _ = (p.version(), p.vrid(), p.priority(), p.count(), p.adver_int_cs());
        let _ = (p.auth_data(), p.addr(0, v6), p.verify_checksum(src, dst));
        let _ = Repr::parse(&p, src, dst);
    }
    // The same message with a correct checksum.
    let mut fixed = msg.to_vec();
    if let Ok(mut p) = Packet::new_checked(&mut fixed[..]) {
        p.fill_checksum(src, dst);
        if let Ok(r) = Repr::parse(&p, src, dst) {
            let again = r.to_bytes(src, dst);
            let back = Repr::parse(&Packet::new_checked(&again[..]).expect("own packet"), src, dst)
                .expect("an emitted advert parses");
            assert_eq!(back, r, "emit/parse round trip");
        }
    }

    // An instance on the receiving side, matching the VRID and version so
    // the checks past them run.
    let vrid = msg.get(1).copied().unwrap_or(1);
    let mut cfg = InstanceConfig::new("VI_FUZZ", "eth0", vrid);
    cfg.version = if flags & 2 != 0 { Version::V3 } else { Version::V2 };
    cfg.local_addr = if v6 {
        IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1))
    } else {
        IpAddr::V4(Ipv4Addr::new(198, 18, 0, 11))
    };
    cfg.auth_pass = Some(InstanceConfig::pass_bytes("secret"));
    cfg.vips = vec![VipConfig::new(if v6 {
        "2001:2::100".parse().expect("v6")
    } else {
        "198.18.0.100".parse().expect("v4")
    })];
    cfg.advert_int = Duration::from_secs(1);
    let t0 = Instant::now();
    let mut inst = Instance::new(cfg, t0);
    if flags & 4 != 0 {
        inst.force_state(t0, State::Master);
    }
    for (i, m) in [msg, &fixed[..]].into_iter().enumerate() {
        let now = t0 + Duration::from_millis(10 * i as u64);
        let _ = inst.handle_packet(now, src, dst, *ttl, m);
        inst.handle_timeout(now + Duration::from_secs(5));
        while inst.poll_transmit().is_some() {}
        while inst.poll_event().is_some() {}
    }
    let _ = (inst.state(), inst.effective_priority(), inst.counters());
});
