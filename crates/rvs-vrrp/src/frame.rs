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
    use crate::shell;

    /// The rvs-wire builders give the bytes the byte-offset code gave.
    #[test]
    fn same_bytes_as_before() {
        let macs = [
            [2, 0, 0, 0, 0, 1],
            [0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54],
            [0; 6],
            [0xff; 6],
        ];
        let v4s = [
            Ipv4Addr::new(198, 18, 0, 100),
            Ipv4Addr::new(0, 0, 0, 0),
            Ipv4Addr::new(255, 255, 255, 255),
            Ipv4Addr::new(198, 19, 255, 1),
        ];
        let v6s: [Ipv6Addr; 4] = [
            "2001:2::100".parse().unwrap(),
            "::".parse().unwrap(),
            "fe80::1".parse().unwrap(),
            "2001:2:0:ffff:ffff:ffff:ffff:ffff".parse().unwrap(),
        ];
        for mac in macs {
            for v in v4s {
                assert_eq!(garp_frame(mac, v), shell::garp_frame(mac, v), "{mac:?} {v}");
            }
            for v in v6s {
                assert_eq!(na_frame(mac, v), shell::na_frame(mac, v), "{mac:?} {v}");
            }
        }
        for (s, d) in v4s.iter().zip(v4s.iter().rev()) {
            for payload in [&[][..], &[1, 2, 3], &[0xff; 40]] {
                let new = ipv4_frame(*s, *d, payload);
                assert_eq!(new, shell::ipv4_frame(*s, *d, payload));
                assert_eq!(parse_ipv4(&new), shell::parse_ipv4(&new));
                for cut in 0..new.len() {
                    assert_eq!(parse_ipv4(&new[..cut]), shell::parse_ipv4(&new[..cut]));
                }
                for i in 0..20 {
                    for v in [0, 4, 20, 24, 0x44, 0x46, 0x4f, 0x65, 112, 0xff] {
                        let mut m = new.clone();
                        m[i] = v;
                        assert_eq!(parse_ipv4(&m), shell::parse_ipv4(&m), "byte {i} = {v}");
                    }
                }
            }
        }
    }
}
