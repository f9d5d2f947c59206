//! Walk an arbitrary Ethernet frame through every rvs-wire parser the packet
//! engine uses, then exercise the in-place rewrites. Must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rvs_wire::*;

fn l4(proto: u8, data: &mut [u8], src: IpAddr, dst: IpAddr) {
    match proto {
        ip_proto::TCP => {
            if let Ok(mut p) = tcp::Packet::new_checked(&mut *data) {
                let _ = tcp::Repr::parse(&p);
                let _ = p.verify_checksum(&src, &dst);
                p.rewrite_dst_port(8080);
                p.update_addr_checksum(&dst, &src);
                let _ = p.payload().len();
            }
        }
        ip_proto::UDP => {
            if let Ok(mut p) = udp::Packet::new_checked(&mut *data) {
                let _ = udp::Repr::parse(&p);
                let _ = p.verify_checksum(&src, &dst);
                p.rewrite_src_port(53);
                p.update_addr_checksum(&src, &dst);
                if let Ok(g) = gue::Packet::new_checked(p.payload()) {
                    let _ = gue::Repr::parse(&g);
                    let _ = ipip::InnerInfo::of(g.payload());
                }
            }
        }
        ip_proto::SCTP => {
            if let Ok(mut p) = sctp::Packet::new_checked(&mut *data) {
                let _ = sctp::Repr::parse(&p);
                let _ = p.first_chunk_type();
                let _ = p.chunks().count();
                p.set_dst_port(1);
                p.fill_checksum();
            }
        }
        ip_proto::ICMP => {
            if let Ok(p) = icmpv4::Packet::new_checked(&*data) {
                let _ = icmpv4::Repr::parse(&p);
                if let Ok(e) = p.embedded() {
                    let _ = (e.src_addr(), e.dst_addr(), e.payload().len(), e.protocol());
                    if let Ok(t) = tcp::Packet::new_checked(e.payload()) {
                        let _ = t.src_port();
                    }
                }
            }
        }
        ip_proto::ICMPV6 => {
            if let Ok(p) = icmpv6::Packet::new_checked(&*data) {
                if let Ok(e) = p.embedded() {
                    let _ = e.upper_layer();
                }
            }
        }
        ip_proto::GRE => {
            if let Ok(p) = gre::Packet::new_checked(&*data) {
                let _ = gre::Repr::parse(&p);
                let _ = ipip::InnerInfo::of(p.payload());
            }
        }
        _ => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let mut buf = data.to_vec();
    let Ok(frame) = ethernet::Frame::new_checked(&buf[..]) else { return };
    let _ = ethernet::Repr::parse(&frame);
    let et = frame.payload_ethertype();
    let hl = frame.header_len();
    let l3 = &mut buf[hl..];
    match et {
        ethertype::ARP => {
            if let Ok(p) = arp::Packet::new_checked(&*l3) {
                let _ = arp::Repr::parse(&p);
            }
        }
        ethertype::IPV4 => {
            if let Ok(mut p) = ipv4::Packet::new_checked(&mut *l3) {
                let r = ipv4::Repr::parse(&p);
                let _ = ipv4::iter_options(p.options()).count();
                let (src, dst, proto) = (p.src_addr(), p.dst_addr(), p.protocol());
                if proto == ip_proto::IPIP {
                    let _ = ipip::decapsulate(&ipv4::Packet::new_unchecked(p.header()));
                }
                p.decrement_ttl();
                p.rewrite_dst_addr(src);
                if r.is_ok() {
                    assert!(p.verify_checksum());
                }
                if !p.is_fragment() {
                    l4(proto, p.payload_mut(), src.into(), dst.into());
                }
            }
        }
        ethertype::IPV6 => {
            if let Ok(mut p) = ipv6::Packet::new_checked(&mut *l3) {
                let _ = ipv6::Repr::parse(&p);
                let (src, dst) = (p.src_addr(), p.dst_addr());
                p.decrement_hop_limit();
                if let Ok(up) = p.upper_layer() {
                    if up.has_header() {
                        let end = p.packet().len();
                        let pkt = p.into_inner();
                        if let Some(d) = pkt.get_mut(up.offset..end) {
                            l4(up.protocol, d, src.into(), dst.into());
                        }
                    }
                }
            }
        }
        _ => {}
    }
});
