//! The frames the shell writes itself, built with rvs-wire: the IPv4 header
//! of a VRRP advertisement on a raw socket, gratuitous ARP and unsolicited
//! neighbour advertisements for the VIPs. Sans-IO.

use std::net::{Ipv4Addr, Ipv6Addr};

use rvs_wire::ethernet::{self, Address as Mac};
use rvs_wire::{arp, ethertype, icmpv6, ip_proto, ipv4, ipv6};

use crate::packet::IPPROTO_VRRP;

/// ff02::1, where unsolicited neighbour advertisements go.
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
/// The Ethernet address of ff02::1.
const ALL_NODES_MAC: Mac = Mac([0x33, 0x33, 0, 0, 0, 1]);
/// Neighbour advertisement flag: Override.
const NA_OVERRIDE: u32 = 0x2000_0000;
/// NDP option: target link-layer address (type 2, length 1 × 8 bytes).
const OPT_TARGET_LL: [u8; 2] = [2, 1];
/// ICMPv6 header, target address, target link-layer address option.
const NA_LEN: usize = icmpv6::HEADER_LEN + 16 + 8;

/// IPv4 header (TTL 255, TOS 0xc0 as keepalived) + VRRP payload. The kernel
/// fills the IP id and header checksum for IPPROTO_RAW sockets: both stay 0.
pub fn ipv4_frame(src: Ipv4Addr, dst: Ipv4Addr, payload: &[u8]) -> Vec<u8> {
    let ip = ipv4::Repr {
        src_addr: src,
        dst_addr: dst,
        protocol: IPPROTO_VRRP,
        payload_len: payload.len(),
        ttl: 255,
        dscp_ecn: 0xc0,
        ident: 0,
        dont_frag: false,
        more_frags: false,
        frag_offset: 0,
        options: ipv4::Options::EMPTY,
    };
    let mut f = vec![0u8; ip.buffer_len()];
    let mut p = ipv4::Packet::new_unchecked(&mut f[..]);
    ip.emit(&mut p);
    p.set_checksum(0);
    p.payload_mut().copy_from_slice(payload);
    f
}

/// Parse a raw-socket IPv4 datagram carrying VRRP: (src, dst, ttl, payload).
pub fn parse_ipv4(buf: &[u8]) -> Option<(Ipv4Addr, Ipv4Addr, u8, &[u8])> {
    let p = ipv4::Packet::new_checked(buf).ok()?;
    if p.protocol() != IPPROTO_VRRP {
        return None;
    }
    let (src, dst, ttl) = (p.src_addr(), p.dst_addr(), p.ttl());
    let payload = buf.get(p.header_len()..usize::from(p.total_len()))?;
    Some((src, dst, ttl, payload))
}

/// Gratuitous ARP as keepalived sends it: broadcast ARP *request*, sender IP =
/// target IP = VIP, target MAC ff:ff:ff:ff:ff:ff.
pub fn garp_frame(mac: [u8; 6], vip: Ipv4Addr) -> [u8; 42] {
    let mut f = [0u8; ethernet::HEADER_LEN + arp::ETH_IPV4_LEN];
    let mut eth = ethernet::Frame::new_unchecked(&mut f[..]);
    ethernet::Repr {
        src_addr: Mac(mac),
        dst_addr: Mac::BROADCAST,
        vlan: None,
        ethertype: ethertype::ARP,
    }
    .emit(&mut eth);
    arp::Repr {
        operation: arp::OP_REQUEST,
        source_hardware_addr: Mac(mac),
        source_protocol_addr: vip,
        target_hardware_addr: Mac::BROADCAST,
        target_protocol_addr: vip,
    }
    .emit(&mut arp::Packet::new_unchecked(eth.payload_mut()));
    f
}

/// Unsolicited neighbour advertisement for an IPv6 VIP (keepalived's
/// `ndisc_send_unsolicited_na`): to ff02::1 from the VIP, hop limit 255,
/// Override flag, target link-layer address option.
pub fn na_frame(mac: [u8; 6], vip: Ipv6Addr) -> [u8; 86] {
    let mut f = [0u8; ethernet::HEADER_LEN + ipv6::HEADER_LEN + NA_LEN];
    let mut eth = ethernet::Frame::new_unchecked(&mut f[..]);
    ethernet::Repr {
        src_addr: Mac(mac),
        dst_addr: ALL_NODES_MAC,
        vlan: None,
        ethertype: ethertype::IPV6,
    }
    .emit(&mut eth);
    let mut ip = ipv6::Packet::new_unchecked(eth.payload_mut());
    ipv6::Repr {
        src_addr: vip,
        dst_addr: ALL_NODES,
        next_header: ip_proto::ICMPV6,
        payload_len: NA_LEN,
        hop_limit: 255,
        traffic_class: 0,
        flow_label: 0,
    }
    .emit(&mut ip);
    let mut na = icmpv6::Packet::new_unchecked(ip.payload_mut());
    let data = na.data_mut();
    data[..16].copy_from_slice(&vip.octets());
    data[16..18].copy_from_slice(&OPT_TARGET_LL);
    data[18..24].copy_from_slice(&mac);
    icmpv6::Repr {
        msg_type: icmpv6::msg_type::NEIGHBOR_ADVERT,
        code: 0,
        rest: NA_OVERRIDE,
    }
    .emit(&mut na, &vip, &ALL_NODES);
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::MCAST_GROUP_V4;

    const MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];

    // Golden frames: the bytes of the byte-offset builders these replaced
    // (compared over a range of inputs before they were removed); the NA
    // checksum was also computed independently (python, RFC 1071 with the
    // IPv6 pseudo-header).
    static GARP: [u8; 42] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x08,
        0x06, // eth
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, // eth/ipv4 request
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 198, 18, 0, 100, // sender
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 198, 18, 0, 100, // target
    ];
    static NA: [u8; 86] = [
        0x33, 0x33, 0x00, 0x00, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x86,
        0xdd, // eth
        0x60, 0x00, 0x00, 0x00, 0x00, 0x20, 0x3a, 0xff, // ipv6: len 32, icmpv6, hop limit 255
        0x20, 0x01, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,
        0x00, // src 2001:2::100
        0xff, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x01, // dst ff02::1
        0x88, 0x00, 0x12, 0x99, 0x20, 0x00, 0x00, 0x00, // NA, checksum, Override
        0x20, 0x01, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,
        0x00, // target
        0x02, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // target link-layer address
    ];
    static IPV4: [u8; 23] = [
        0x45, 0xc0, 0x00, 0x17, 0x00, 0x00, 0x00, 0x00, 0xff, 0x70, 0x00, 0x00, // id, csum 0
        198, 18, 0, 11, 224, 0, 0, 18, // src, dst
        1, 2, 3,
    ];

    #[test]
    fn garp_golden() {
        assert_eq!(garp_frame(MAC, Ipv4Addr::new(198, 18, 0, 100)), GARP);
    }

    #[test]
    fn na_golden() {
        let vip: Ipv6Addr = "2001:2::100".parse().unwrap();
        let f = na_frame(MAC, vip);
        assert_eq!(f, NA);
        let icmp = icmpv6::Packet::new_checked(&f[54..]).unwrap();
        assert!(icmp.verify_checksum(&vip, &ALL_NODES));
    }

    #[test]
    fn ipv4_frame_golden_and_round_trip() {
        let src = Ipv4Addr::new(198, 18, 0, 11);
        let f = ipv4_frame(src, MCAST_GROUP_V4, &[1, 2, 3]);
        assert_eq!(f, IPV4);
        assert_eq!(
            parse_ipv4(&f),
            Some((src, MCAST_GROUP_V4, 255, &[1u8, 2, 3][..]))
        );
        assert!(parse_ipv4(&f[..10]).is_none());
        assert!(parse_ipv4(&f[..22]).is_none());
        assert!(parse_ipv4(&[]).is_none());
        let mut other = f.clone();
        other[9] = 6; // not VRRP
        assert!(parse_ipv4(&other).is_none());
    }
}
