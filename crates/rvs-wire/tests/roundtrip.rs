//! Property tests: `parse(emit(x)) == x` for every `Repr`, checksums against
//! a straightforward reference, incremental updates against full
//! recomputation, and "never panics" on arbitrary bytes.

use proptest::prelude::*;
use rvs_wire::*;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

fn reference_checksum(data: &[u8]) -> u16 {
    let mut total: u128 = 0;
    for (i, b) in data.iter().enumerate() {
        total += if i % 2 == 0 {
            u128::from(*b) << 8
        } else {
            u128::from(*b)
        };
    }
    let r = if total == 0 {
        0
    } else {
        ((total - 1) % 0xffff) + 1
    } as u16;
    !r
}

fn mac() -> impl Strategy<Value = ethernet::Address> {
    any::<[u8; 6]>().prop_map(ethernet::Address)
}
fn v4() -> impl Strategy<Value = Ipv4Addr> {
    any::<[u8; 4]>().prop_map(Ipv4Addr::from)
}
fn v6() -> impl Strategy<Value = Ipv6Addr> {
    any::<[u8; 16]>().prop_map(Ipv6Addr::from)
}

fn ipv4_options() -> impl Strategy<Value = ipv4::Options> {
    // sequences of NOPs and TLVs padded with EOL to a multiple of 4
    prop::collection::vec(
        prop_oneof![
            Just(vec![1u8]),
            (2u8..=255, prop::collection::vec(any::<u8>(), 0..6)).prop_map(|(t, d)| {
                let mut v = vec![t, (d.len() + 2) as u8];
                v.extend(d);
                v
            })
        ],
        0..5,
    )
    .prop_map(|parts| {
        let mut v: Vec<u8> = Vec::new();
        for p in parts {
            if v.len() + p.len() <= 40 {
                v.extend(p);
            }
        }
        while !v.len().is_multiple_of(4) {
            v.push(0);
        }
        ipv4::Options::new(&v).unwrap()
    })
}

proptest! {
    #[test]
    fn checksum_matches_reference(data in prop::collection::vec(any::<u8>(), 0..200)) {
        prop_assert_eq!(checksum::checksum(&data), reference_checksum(&data));
    }

    #[test]
    fn incremental_u16_matches_full(mut data in prop::collection::vec(any::<u8>(), 4..64), at in 0usize..30, new in any::<u16>()) {
        let at = (at * 2) % (data.len() & !1).max(2);
        prop_assume!(at + 2 <= data.len());
        prop_assume!(data.iter().any(|b| *b != 0));
        let c = checksum::checksum(&data);
        let old = u16::from_be_bytes([data[at], data[at + 1]]);
        data[at..at + 2].copy_from_slice(&new.to_be_bytes());
        prop_assume!(data.iter().any(|b| *b != 0));
        prop_assert_eq!(checksum::update_u16(c, old, new), checksum::checksum(&data));
    }

    #[test]
    fn incremental_addr_matches_full(mut data in prop::collection::vec(any::<u8>(), 16..64), new in any::<[u8; 16]>()) {
        data[0] |= 1; // never all-zero
        let c = checksum::checksum(&data);
        let old: [u8; 16] = data[..16].try_into().unwrap();
        data[..16].copy_from_slice(&new);
        prop_assert_eq!(checksum::update_bytes(c, &old, &new), checksum::checksum(&data));
    }

    #[test]
    fn ethernet_roundtrip(src in mac(), dst in mac(), et in 0x0600u16.., vlan in prop::option::of((any::<bool>(), 0u8..8, any::<bool>(), 0u16..4096))) {
        prop_assume!(et != ethertype::VLAN && et != ethertype::QINQ);
        let vlan = vlan.map(|(ad, pcp, dei, vid)| ethernet::VlanTag { tpid: if ad { ethertype::QINQ } else { ethertype::VLAN }, pcp, dei, vid });
        let r = ethernet::Repr { src_addr: src, dst_addr: dst, vlan, ethertype: et };
        let mut buf = vec![0u8; r.header_len()];
        r.emit(&mut ethernet::Frame::new_unchecked(&mut buf[..]));
        prop_assert_eq!(ethernet::Repr::parse(&ethernet::Frame::new_checked(&buf[..]).unwrap()).unwrap(), r);
    }

    #[test]
    fn arp_roundtrip(op in any::<u16>(), sha in mac(), spa in v4(), tha in mac(), tpa in v4()) {
        let r = arp::Repr { operation: op, source_hardware_addr: sha, source_protocol_addr: spa, target_hardware_addr: tha, target_protocol_addr: tpa };
        let mut buf = [0u8; 28];
        r.emit(&mut arp::Packet::new_unchecked(&mut buf[..]));
        prop_assert_eq!(arp::Repr::parse(&arp::Packet::new_checked(&buf[..]).unwrap()).unwrap(), r);
    }

    #[test]
    fn ipv4_roundtrip(src in v4(), dst in v4(), protocol in any::<u8>(), payload_len in 0usize..1500, ttl in any::<u8>(),
                      dscp_ecn in any::<u8>(), ident in any::<u16>(), df in any::<bool>(), mf in any::<bool>(),
                      off in 0u16..0x2000, options in ipv4_options()) {
        let r = ipv4::Repr { src_addr: src, dst_addr: dst, protocol, payload_len, ttl, dscp_ecn, ident, dont_frag: df, more_frags: mf, frag_offset: off, options };
        let mut buf = vec![0u8; r.buffer_len()];
        r.emit(&mut ipv4::Packet::new_unchecked(&mut buf[..]));
        let p = ipv4::Packet::new_checked(&buf[..]).unwrap();
        prop_assert_eq!(p.checksum(), {
            let mut h = buf[..r.header_len()].to_vec(); h[10] = 0; h[11] = 0; reference_checksum(&h)
        });
        prop_assert_eq!(ipv4::Repr::parse(&p).unwrap(), r);
    }

    #[test]
    fn ipv4_rewrites_keep_checksum(src in v4(), dst in v4(), nsrc in v4(), ndst in v4(), ttl in 2u8..) {
        let r = ipv4::Repr { src_addr: src, dst_addr: dst, protocol: 6, payload_len: 0, ttl, dscp_ecn: 0, ident: 1, dont_frag: true, more_frags: false, frag_offset: 0, options: ipv4::Options::EMPTY };
        let mut buf = [0u8; 20];
        r.emit(&mut ipv4::Packet::new_unchecked(&mut buf[..]));
        let mut p = ipv4::Packet::new_checked(&mut buf[..]).unwrap();
        p.decrement_ttl();
        p.rewrite_src_addr(nsrc);
        p.rewrite_dst_addr(ndst);
        let c = p.checksum();
        p.fill_checksum();
        prop_assert_eq!(c, p.checksum());
    }

    #[test]
    fn ipv6_roundtrip(src in v6(), dst in v6(), nh in any::<u8>(), payload_len in 0usize..1500, hl in any::<u8>(), tc in any::<u8>(), fl in 0u32..0x10_0000) {
        let r = ipv6::Repr { src_addr: src, dst_addr: dst, next_header: nh, payload_len, hop_limit: hl, traffic_class: tc, flow_label: fl };
        let mut buf = vec![0u8; r.buffer_len()];
        r.emit(&mut ipv6::Packet::new_unchecked(&mut buf[..]));
        prop_assert_eq!(ipv6::Repr::parse(&ipv6::Packet::new_checked(&buf[..]).unwrap()).unwrap(), r);
    }

    #[test]
    fn tcp_roundtrip_and_nat(sp in any::<u16>(), dp in any::<u16>(), seq in any::<u32>(), ack in any::<u32>(), flags in 0u16..0x200,
                             win in any::<u16>(), urg in any::<u16>(), opt_words in 0usize..11, payload in prop::collection::vec(any::<u8>(), 0..64),
                             src in v4(), dst in v4(), ndst in v4(), ndp in any::<u16>()) {
        let opts: Vec<u8> = (0..opt_words * 4).map(|i| i as u8).collect();
        let r = tcp::Repr { src_port: sp, dst_port: dp, seq_number: seq, ack_number: ack, flags, window_len: win, urgent_at: urg, options: tcp::Options::new(&opts).unwrap() };
        let mut buf = vec![0u8; r.header_len() + payload.len()];
        r.emit(&mut tcp::Packet::new_unchecked(&mut buf[..]));
        buf[r.header_len()..].copy_from_slice(&payload);
        let (s, d, nd): (IpAddr, IpAddr, IpAddr) = (src.into(), dst.into(), ndst.into());
        let mut p = tcp::Packet::new_checked(&mut buf[..]).unwrap();
        p.fill_checksum(&s, &d);
        prop_assert!(p.verify_checksum(&s, &d));
        prop_assert_eq!(tcp::Repr::parse(&p).unwrap(), r);
        p.rewrite_dst_port(ndp);
        p.update_addr_checksum(&d, &nd);
        prop_assert!(p.verify_checksum(&s, &nd));
    }

    #[test]
    fn tcp_v6_checksum(payload in prop::collection::vec(any::<u8>(), 20..80), src in v6(), dst in v6(), ndst in v6()) {
        let mut buf = payload.clone();
        buf[12] = 0x50;
        let (s, d, nd): (IpAddr, IpAddr, IpAddr) = (src.into(), dst.into(), ndst.into());
        let mut p = tcp::Packet::new_checked(&mut buf[..]).unwrap();
        p.fill_checksum(&s, &d);
        prop_assert!(p.verify_checksum(&s, &d));
        p.update_addr_checksum(&d, &nd);
        prop_assert!(p.verify_checksum(&s, &nd));
    }

    #[test]
    fn udp_roundtrip(sp in any::<u16>(), dp in any::<u16>(), payload in prop::collection::vec(any::<u8>(), 0..64), src in v4(), dst in v4()) {
        let r = udp::Repr { src_port: sp, dst_port: dp, payload_len: payload.len() };
        let mut buf = vec![0u8; r.buffer_len()];
        r.emit(&mut udp::Packet::new_unchecked(&mut buf[..]));
        buf[8..].copy_from_slice(&payload);
        let (s, d): (IpAddr, IpAddr) = (src.into(), dst.into());
        let mut p = udp::Packet::new_checked(&mut buf[..]).unwrap();
        p.fill_checksum(&s, &d);
        prop_assert!(p.checksum() != 0);
        prop_assert!(p.verify_checksum(&s, &d));
        prop_assert_eq!(udp::Repr::parse(&p).unwrap(), r);
    }

    #[test]
    fn sctp_roundtrip(sp in any::<u16>(), dp in any::<u16>(), vt in any::<u32>(), chunks in prop::collection::vec(any::<u8>(), 0..64)) {
        let r = sctp::Repr { src_port: sp, dst_port: dp, verification_tag: vt };
        let mut buf = vec![0u8; 12 + chunks.len()];
        buf[12..].copy_from_slice(&chunks);
        r.emit(&mut sctp::Packet::new_unchecked(&mut buf[..]));
        prop_assert_eq!(sctp::Repr::parse(&sctp::Packet::new_checked(&buf[..]).unwrap()).unwrap(), r);
        let mut z = buf.clone();
        z[8..12].fill(0);
        prop_assert_eq!(u32::from_le_bytes(buf[8..12].try_into().unwrap()), sctp::crc32c(&z));
    }

    #[test]
    fn icmpv4_roundtrip(t in any::<u8>(), c in any::<u8>(), rest in any::<u32>(), data in prop::collection::vec(any::<u8>(), 0..64)) {
        let r = icmpv4::Repr { msg_type: t, code: c, rest };
        let mut buf = vec![0u8; 8 + data.len()];
        buf[8..].copy_from_slice(&data);
        r.emit(&mut icmpv4::Packet::new_unchecked(&mut buf[..]));
        prop_assert_eq!(icmpv4::Repr::parse(&icmpv4::Packet::new_checked(&buf[..]).unwrap()).unwrap(), r);
    }

    #[test]
    fn icmpv6_roundtrip(t in any::<u8>(), c in any::<u8>(), rest in any::<u32>(), data in prop::collection::vec(any::<u8>(), 0..64), src in v6(), dst in v6()) {
        let r = icmpv6::Repr { msg_type: t, code: c, rest };
        let mut buf = vec![0u8; 8 + data.len()];
        buf[8..].copy_from_slice(&data);
        r.emit(&mut icmpv6::Packet::new_unchecked(&mut buf[..]), &src, &dst);
        prop_assert_eq!(icmpv6::Repr::parse(&icmpv6::Packet::new_checked(&buf[..]).unwrap(), &src, &dst).unwrap(), r);
    }

    #[test]
    fn gue_roundtrip(control in any::<bool>(), proto in any::<u8>(), priv_flags in prop::option::of(Just(0u32)), rem in prop::option::of(any::<(u16, u16)>())) {
        let remcsum = if priv_flags.is_some() { rem } else { None };
        let priv_flags = priv_flags.map(|f| if remcsum.is_some() { f | gue::PFLAG_REMCSUM } else { f });
        let r = gue::Repr { control, proto_ctype: proto, priv_flags, remcsum };
        let mut buf = vec![0u8; r.header_len()];
        r.emit(&mut gue::Packet::new_unchecked(&mut buf[..]));
        prop_assert_eq!(gue::Repr::parse(&gue::Packet::new_checked(&buf[..]).unwrap()).unwrap(), r);
    }

    #[test]
    fn gre_roundtrip(protocol in any::<u16>(), csum in any::<bool>(), key in prop::option::of(any::<u32>()), seq in prop::option::of(any::<u32>()), payload in prop::collection::vec(any::<u8>(), 0..32)) {
        let r = gre::Repr { protocol, checksum: csum, key, seq };
        let mut buf = vec![0u8; r.header_len() + payload.len()];
        buf[r.header_len()..].copy_from_slice(&payload);
        r.emit(&mut gre::Packet::new_unchecked(&mut buf[..]));
        prop_assert_eq!(gre::Repr::parse(&gre::Packet::new_checked(&buf[..]).unwrap()).unwrap(), r);
    }

    #[test]
    fn ipip_roundtrip(src in v4(), dst in v4(), inner_payload in 0usize..100, ttl in any::<u8>(), tos in any::<u8>(), df in any::<bool>()) {
        let inner = ipv4::Repr { src_addr: Ipv4Addr::new(198, 18, 0, 2), dst_addr: Ipv4Addr::new(198, 18, 0, 100), protocol: 6, payload_len: inner_payload, ttl, dscp_ecn: tos, ident: 9, dont_frag: df, more_frags: false, frag_offset: 0, options: ipv4::Options::EMPTY };
        let n = inner.buffer_len();
        let mut buf = vec![0u8; 20 + n];
        inner.emit(&mut ipv4::Packet::new_unchecked(&mut buf[20..]));
        let total = ipip::encapsulate(&mut buf, n, src, dst, 5, true).unwrap();
        let outer = ipv4::Packet::new_checked(&buf[..total]).unwrap();
        let o = ipv4::Repr::parse(&outer).unwrap();
        prop_assert_eq!(o.ttl, ttl);
        prop_assert_eq!(o.dont_frag, df);
        prop_assert_eq!(o.dscp_ecn & !3, tos & !3);
        prop_assert_eq!(ipv4::Repr::parse(&ipv4::Packet::new_checked(ipip::decapsulate(&outer).unwrap()).unwrap()).unwrap(), inner);
    }

    /// Every parser on arbitrary bytes: errors, never panics; and accessors
    /// after a successful `new_checked` never panic.
    #[test]
    fn no_panic(data in prop::collection::vec(any::<u8>(), 0..128)) {
        let d = &data[..];
        if let Ok(f) = ethernet::Frame::new_checked(d) { let _ = (ethernet::Repr::parse(&f), f.payload().len(), f.vlan()); }
        if let Ok(p) = arp::Packet::new_checked(d) { let _ = (arp::Repr::parse(&p), p.target_protocol_addr().len()); }
        if let Ok(p) = ipv4::Packet::new_checked(d) { let _ = (ipv4::Repr::parse(&p), p.payload().len(), ipv4::iter_options(p.options()).count()); }
        if let Ok(p) = ipv4::Packet::new_checked_header(d) { let _ = (p.payload().len(), p.options().len()); }
        if let Ok(p) = ipv6::Packet::new_checked(d) { let _ = (ipv6::Repr::parse(&p), p.upper_layer(), p.payload().len()); }
        if let Ok(p) = ipv6::Packet::new_checked_header(d) { let _ = (p.upper_layer(), p.payload().len()); }
        if let Ok(p) = tcp::Packet::new_checked(d) { let _ = (tcp::Repr::parse(&p), p.payload().len()); }
        if let Ok(p) = udp::Packet::new_checked(d) { let _ = (udp::Repr::parse(&p), p.payload().len()); }
        if let Ok(p) = sctp::Packet::new_checked(d) { let _ = (sctp::Repr::parse(&p), p.chunks().count(), p.first_chunk_type()); }
        if let Ok(p) = icmpv4::Packet::new_checked(d) { let _ = (icmpv4::Repr::parse(&p), p.embedded().map(|e| e.payload().len())); }
        if let Ok(p) = icmpv6::Packet::new_checked(d) { let _ = p.embedded().map(|e| e.upper_layer()); }
        if let Ok(p) = gue::Packet::new_checked(d) { let _ = (gue::Repr::parse(&p), p.payload().len()); }
        if let Ok(p) = gre::Packet::new_checked(d) { let _ = (gre::Repr::parse(&p), p.payload().len(), p.key(), p.seq()); }
        let _ = ipip::InnerInfo::of(d);
        let _ = gue::Repr::parse(&gue::Packet::new_unchecked(d));
    }
}
