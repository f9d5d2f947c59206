//! Sans-IO packet work of the engine: classify a received Ethernet frame,
//! and rewrite / encapsulate / answer it for DR, NAT and TUN, exactly the
//! bytes IPVS would put on the wire. No syscalls here, so everything is
//! unit-tested with literal frames.

use rvs_core::{Protocol, TunCsum, TunType};
use rvs_wire::ethernet::{self, Address as Mac, Frame};
use rvs_wire::{
    arp, ethertype, gre, gue, icmpv4, icmpv6, ip_proto, ipip, ipv4, ipv6, sctp, tcp, udp, Error,
};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};

/// Ethernet header length we emit (untagged).
pub const ETH_LEN: usize = ethernet::HEADER_LEN;

/// A TCP/UDP/SCTP packet over IPv4 (offsets are into the frame).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flow {
    /// Transport protocol.
    pub proto: Protocol,
    /// Source address and port.
    pub src: SocketAddrV4,
    /// Destination address and port.
    pub dst: SocketAddrV4,
    /// TCP flags (low 8 bits) or, for SCTP, the first chunk type.
    pub flags: u8,
    /// IPv4 total length (what IPVS counts in InBytes/OutBytes).
    pub l3_len: u16,
    /// Offset of the IPv4 header.
    pub l3: usize,
    /// Offset of the transport header.
    pub l4: usize,
    /// Destination MAC of the frame.
    pub dst_mac: Mac,
    /// DF bit.
    pub dont_frag: bool,
}

/// A TCP/UDP/SCTP packet over IPv6 (offsets are into the frame).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flow6 {
    /// Transport protocol.
    pub proto: Protocol,
    /// Source address and port.
    pub src: SocketAddrV6,
    /// Destination address and port.
    pub dst: SocketAddrV6,
    /// TCP flags (low 8 bits) or, for SCTP, the first chunk type.
    pub flags: u8,
    /// IPv6 packet length (40 + payload length: IPVS's InBytes).
    pub l3_len: u32,
    /// Offset of the IPv6 header.
    pub l3: usize,
    /// Offset of the transport header (after extension headers).
    pub l4: usize,
    /// Destination MAC of the frame.
    pub dst_mac: Mac,
}

/// An ICMP error (destination unreachable, source quench, time exceeded)
/// quoting a TCP/UDP/SCTP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IcmpError {
    /// Outer source.
    pub src: Ipv4Addr,
    /// Outer destination.
    pub dst: Ipv4Addr,
    /// ICMP type.
    pub msg_type: u8,
    /// ICMP code.
    pub code: u8,
    /// Protocol of the quoted packet.
    pub inner_proto: Protocol,
    /// Source of the quoted packet.
    pub inner_src: SocketAddrV4,
    /// Destination of the quoted packet.
    pub inner_dst: SocketAddrV4,
    /// Outer IPv4 total length.
    pub l3_len: u16,
    /// Offset of the outer IPv4 header.
    pub l3: usize,
    /// Offset of the ICMP header.
    pub icmp: usize,
    /// Destination MAC of the frame.
    pub dst_mac: Mac,
}

/// An ICMPv6 error (destination unreachable, packet too big, time
/// exceeded, parameter problem: every type below 128, as
/// `ip_vs_in_icmp_v6` / `ip_vs_out_icmp_v6` take them) quoting a
/// TCP/UDP/SCTP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IcmpError6 {
    /// Outer source.
    pub src: Ipv6Addr,
    /// Outer destination.
    pub dst: Ipv6Addr,
    /// ICMPv6 type.
    pub msg_type: u8,
    /// ICMPv6 code.
    pub code: u8,
    /// Protocol of the quoted packet.
    pub inner_proto: Protocol,
    /// Source of the quoted packet.
    pub inner_src: SocketAddrV6,
    /// Destination of the quoted packet.
    pub inner_dst: SocketAddrV6,
    /// Outer IPv6 packet length (40 + payload length).
    pub l3_len: u32,
    /// Offset of the outer IPv6 header.
    pub l3: usize,
    /// Offset of the ICMPv6 header.
    pub icmp: usize,
    /// Offset of the quoted transport header (its ports).
    pub inner_l4: usize,
    /// Destination MAC of the frame.
    pub dst_mac: Mac,
}

/// What a received frame is, as far as the engine cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Classified {
    /// An Ethernet/IPv4 ARP packet.
    Arp(arp::Repr),
    /// TCP, UDP or SCTP over IPv4 (not a fragment).
    Flow(Flow),
    /// A related ICMP error.
    IcmpError(IcmpError),
    /// A related ICMPv6 error.
    IcmpError6(IcmpError6),
    /// TCP, UDP or SCTP over IPv6 (not a fragment; an atomic fragment,
    /// offset 0 and M clear, is a normal packet).
    Flow6(Flow6),
    /// A neighbour solicitation / advertisement telling `ip` is at `mac`.
    Neighbor {
        /// The address.
        ip: Ipv6Addr,
        /// Its link-layer address.
        mac: Mac,
    },
    /// Any other IPv4 packet to `dst` (ICMP echo, fragments, other
    /// protocols): left to the kernel.
    OtherIpv4 {
        /// Destination address.
        dst: Ipv4Addr,
        /// Fragment?
        fragment: bool,
    },
    /// An IPv6 fragment (a Fragment header with an offset or M set; an
    /// atomic fragment is classified as the packet it carries): for the
    /// reassembler ([`crate::frag6`]).
    Fragment6 {
        /// Source address.
        src: Ipv6Addr,
        /// Destination address.
        dst: Ipv6Addr,
        /// The upper-layer protocol as far as this fragment tells (for a
        /// non-first fragment, the Fragment header's next header).
        proto: u8,
    },
    /// Malformed (bad lengths or header checksum).
    Malformed(Error),
    /// Not IPv4/ARP, or VLAN-tagged.
    Other,
}

fn sock(ip: Ipv4Addr, port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(ip, port)
}

/// Ports of a transport header (first 4 bytes for TCP/UDP/SCTP).
fn ports(b: &[u8]) -> Option<(u16, u16)> {
    let p = b.get(..4)?;
    Some((
        u16::from_be_bytes([p[0], p[1]]),
        u16::from_be_bytes([p[2], p[3]]),
    ))
}

/// Classify a received frame. Never panics.
pub fn classify(frame: &[u8]) -> Classified {
    let Ok(eth) = Frame::new_checked(frame) else {
        return Classified::Malformed(Error::Truncated);
    };
    if eth.is_tagged() {
        return Classified::Other;
    }
    match eth.ethertype() {
        ethertype::ARP => {
            match arp::Packet::new_checked(eth.payload()).and_then(|p| arp::Repr::parse(&p)) {
                Ok(r) => Classified::Arp(r),
                Err(e) => Classified::Malformed(e),
            }
        }
        ethertype::IPV4 => classify_ipv4(eth.dst_addr(), eth.payload()),
        ethertype::IPV6 => classify_ipv6(eth.dst_addr(), eth.payload()),
        _ => Classified::Other,
    }
}

/// Transport ports and flags of a TCP/UDP/SCTP header.
fn l4_info(proto: Protocol, b: &[u8]) -> Result<(u16, u16, u8), Error> {
    Ok(match proto {
        Protocol::Tcp => {
            let t = tcp::Packet::new_checked(b)?;
            (t.src_port(), t.dst_port(), t.flags() as u8)
        }
        Protocol::Udp => {
            let u = udp::Packet::new_checked(b)?;
            (u.src_port(), u.dst_port(), 0)
        }
        Protocol::Sctp => {
            let s = sctp::Packet::new_checked(b)?;
            (
                s.src_port(),
                s.dst_port(),
                s.first_chunk_type().unwrap_or(0xff),
            )
        }
    })
}

fn classify_ipv6(dst_mac: Mac, l3b: &[u8]) -> Classified {
    let ip = match ipv6::Packet::new_checked(l3b) {
        Ok(p) => p,
        Err(e) => return Classified::Malformed(e),
    };
    let up = match ip.upper_layer() {
        Ok(u) => u,
        Err(e) => return Classified::Malformed(e),
    };
    if up.fragment.is_some_and(|f| f.offset != 0 || f.more_frags) {
        return Classified::Fragment6 {
            src: ip.src_addr(),
            dst: ip.dst_addr(),
            proto: up.protocol,
        };
    }
    let pkt = ip.packet();
    let l4b = pkt.get(up.offset..).unwrap_or(&[]);
    let proto = match up.protocol {
        ip_proto::TCP => Protocol::Tcp,
        ip_proto::UDP => Protocol::Udp,
        ip_proto::SCTP => Protocol::Sctp,
        ip_proto::ICMPV6 => return classify_icmp6(dst_mac, &ip, up.offset, l4b),
        _ => return Classified::Other,
    };
    let (sp, dp, flags) = match l4_info(proto, l4b) {
        Ok(x) => x,
        Err(e) => return Classified::Malformed(e),
    };
    Classified::Flow6(Flow6 {
        proto,
        src: SocketAddrV6::new(ip.src_addr(), sp, 0, 0),
        dst: SocketAddrV6::new(ip.dst_addr(), dp, 0, 0),
        flags,
        l3_len: pkt.len() as u32,
        l3: ETH_LEN,
        l4: ETH_LEN + up.offset,
        dst_mac,
    })
}

/// ICMPv6: neighbour discovery, or an error quoting a TCP/UDP/SCTP packet
/// (the checksum is verified, as `ip_vs_in_icmp_v6` does; informational
/// messages and errors quoting a non-first fragment are not ours).
fn classify_icmp6(dst_mac: Mac, ip: &ipv6::Packet<&[u8]>, off: usize, b: &[u8]) -> Classified {
    let Ok(p) = icmpv6::Packet::new_checked(b) else {
        return Classified::Other;
    };
    match p.msg_type() {
        icmpv6::msg_type::NEIGHBOR_SOLICIT | icmpv6::msg_type::NEIGHBOR_ADVERT => {
            return classify_nd(ip.src_addr(), b)
        }
        t if t & 0x80 == 0 => {}
        _ => return Classified::Other,
    }
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    if !p.verify_checksum(&src, &dst) {
        return Classified::Malformed(Error::Checksum);
    }
    let Ok(inner) = p.embedded() else {
        return Classified::Other;
    };
    let Ok(up) = inner.upper_layer() else {
        return Classified::Other;
    };
    if !up.has_header() {
        return Classified::Other;
    }
    let Some(inner_proto) = Protocol::from_number(up.protocol) else {
        return Classified::Other;
    };
    let Some((sp, dp)) = inner.packet().get(up.offset..).and_then(ports) else {
        return Classified::Other;
    };
    let icmp = ETH_LEN + off;
    Classified::IcmpError6(IcmpError6 {
        src,
        dst,
        msg_type: p.msg_type(),
        code: p.code(),
        inner_proto,
        inner_src: SocketAddrV6::new(inner.src_addr(), sp, 0, 0),
        inner_dst: SocketAddrV6::new(inner.dst_addr(), dp, 0, 0),
        l3_len: ip.packet().len() as u32,
        l3: ETH_LEN,
        icmp,
        inner_l4: icmp + icmpv6::HEADER_LEN + up.offset,
        dst_mac,
    })
}

/// Neighbour solicitation (source link-layer option) or advertisement
/// (target link-layer option).
fn classify_nd(src: Ipv6Addr, b: &[u8]) -> Classified {
    let Ok(p) = icmpv6::Packet::new_checked(b) else {
        return Classified::Other;
    };
    let data = p.data();
    let (ip, want) = match p.msg_type() {
        icmpv6::msg_type::NEIGHBOR_SOLICIT if !src.is_unspecified() => (src, 1u8),
        icmpv6::msg_type::NEIGHBOR_ADVERT => {
            match data.get(..16).and_then(|t| <[u8; 16]>::try_from(t).ok()) {
                Some(t) => (Ipv6Addr::from(t), 2u8),
                None => return Classified::Other,
            }
        }
        _ => return Classified::Other,
    };
    let mut opts = data.get(16..).unwrap_or(&[]);
    while opts.len() >= 8 {
        let len = usize::from(opts[1]) * 8;
        if len == 0 || len > opts.len() {
            break;
        }
        if opts[0] == want && len == 8 {
            if let Some(mac) = Mac::from_bytes(&opts[2..8]) {
                return Classified::Neighbor { ip, mac };
            }
        }
        opts = &opts[len..];
    }
    Classified::Other
}

/// DR for IPv6: hop limit − 1 (no header checksum in IPv6).
pub fn dr6(frame: &mut [u8], l3: usize) -> Result<(), Fail> {
    let mut ip = ipv6::Packet::new_checked(frame.get_mut(l3..).ok_or(Fail::Malformed)?)?;
    ip.decrement_hop_limit().ok_or(Fail::TtlExceeded)?;
    Ok(())
}

fn nat6(frame: &mut [u8], flow: &Flow6, src: bool, to: SocketAddrV6) -> Result<(), Fail> {
    let end = flow.l3 + flow.l3_len as usize;
    {
        let mut ip = ipv6::Packet::new_checked(frame.get_mut(flow.l3..).ok_or(Fail::Malformed)?)?;
        ip.decrement_hop_limit().ok_or(Fail::TtlExceeded)?;
        if src {
            ip.set_src_addr(*to.ip());
        } else {
            ip.set_dst_addr(*to.ip());
        }
    }
    let old = if src { *flow.src.ip() } else { *flow.dst.ip() };
    let l4 = frame.get_mut(flow.l4..end).ok_or(Fail::Malformed)?;
    rewrite_l4(
        flow.proto,
        l4,
        src,
        IpAddr::V6(old),
        IpAddr::V6(*to.ip()),
        to.port(),
    )
}

/// NAT in for IPv6: destination := real server `to`, hop limit − 1.
pub fn nat6_in(frame: &mut [u8], flow: &Flow6, to: SocketAddrV6) -> Result<(), Fail> {
    nat6(frame, flow, false, to)
}

/// NAT reply for IPv6: source := virtual service `from`, hop limit − 1.
pub fn nat6_out(frame: &mut [u8], flow: &Flow6, from: SocketAddrV6) -> Result<(), Fail> {
    nat6(frame, flow, true, from)
}

/// `ip_vs_nat_icmp_v6`: translate an ICMPv6 error of a NAT connection.
///
/// * `inbound` (client → VIP, quoting our reply VIP → client): outer
///   destination, quoted source address and quoted source port become the
///   real server's (`addr`).
/// * outbound (real server → client, quoting client → real server): outer
///   source, quoted destination address and port become the virtual
///   service's (`addr`).
///
/// Hop limit − 1 (the packet is forwarded); the ICMPv6 checksum is
/// recomputed over the new pseudo-header. The quoted transport checksum
/// is left as it is, as the kernel does.
pub fn nat_icmp6(
    frame: &mut [u8],
    e: &IcmpError6,
    inbound: bool,
    addr: SocketAddrV6,
) -> Result<(), Fail> {
    let end = e.l3 + e.l3_len as usize;
    let (src, dst) = {
        let mut ip = ipv6::Packet::new_checked(frame.get_mut(e.l3..).ok_or(Fail::Malformed)?)?;
        ip.decrement_hop_limit().ok_or(Fail::TtlExceeded)?;
        if inbound {
            ip.set_dst_addr(*addr.ip());
        } else {
            ip.set_src_addr(*addr.ip());
        }
        (ip.src_addr(), ip.dst_addr())
    };
    {
        let q = frame
            .get_mut(e.icmp + icmpv6::HEADER_LEN..end)
            .ok_or(Fail::Malformed)?;
        let mut inner = ipv6::Packet::new_checked_header(q)?;
        if inbound {
            inner.set_src_addr(*addr.ip());
        } else {
            inner.set_dst_addr(*addr.ip());
        }
    }
    if e.inner_l4 + 4 > end {
        return Err(Fail::Malformed);
    }
    let p = frame
        .get_mut(e.inner_l4..e.inner_l4 + 4)
        .ok_or(Fail::Malformed)?;
    let at = if inbound { 0 } else { 2 };
    p[at..at + 2].copy_from_slice(&addr.port().to_be_bytes());
    icmpv6::Packet::new_checked(frame.get_mut(e.icmp..end).ok_or(Fail::Malformed)?)?
        .fill_checksum(&src, &dst);
    Ok(())
}

/// Build an ICMPv6 error frame in `out` answering the IPv6 packet `orig`
/// (from `src`, typically the VIP, to the original sender), like
/// `icmpv6_send`: hop limit 64, traffic class 0, quoting as much of the
/// original as fits in 1280 bytes.
pub fn icmp6_error_frame(
    out: &mut Vec<u8>,
    macs: (Mac, Mac),
    src: Ipv6Addr,
    orig: &[u8],
    msg_type: u8,
    code: u8,
    rest: u32,
) -> Result<(), Fail> {
    let o = ipv6::Packet::new_checked_header(orig)?;
    let dst = o.src_addr();
    let at = ETH_LEN + ipv6::HEADER_LEN;
    out.clear();
    out.resize(at + icmpv6::HEADER_LEN + icmpv6::MAX_QUOTE, 0);
    let n = icmpv6::build_error(&mut out[at..], msg_type, code, rest, orig, &src, &dst)?;
    out.truncate(at + n);
    ethernet::Repr {
        src_addr: macs.0,
        dst_addr: macs.1,
        vlan: None,
        ethertype: ethertype::IPV6,
    }
    .emit(&mut Frame::new_unchecked(&mut out[..ETH_LEN]));
    ipv6::Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: ip_proto::ICMPV6,
        payload_len: n,
        hop_limit: 64,
        traffic_class: 0,
        flow_label: 0,
    }
    .emit(&mut ipv6::Packet::new_unchecked(&mut out[ETH_LEN..at]));
    Ok(())
}

/// Solicited-node multicast address of `target` (RFC 4291 §2.7.1).
pub fn solicited_node(target: Ipv6Addr) -> Ipv6Addr {
    let t = target.octets();
    Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | u16::from(t[13]),
        u16::from_be_bytes([t[14], t[15]]),
    )
}

/// Build a neighbour solicitation for `target` from (`mac`, `src`).
pub fn nd_solicit(mac: Mac, src: Ipv6Addr, target: Ipv6Addr) -> [u8; 86] {
    let mut b = [0u8; 86];
    let dst = solicited_node(target);
    let d = dst.octets();
    let dmac = Mac([0x33, 0x33, d[12], d[13], d[14], d[15]]);
    ethernet::Repr {
        src_addr: mac,
        dst_addr: dmac,
        vlan: None,
        ethertype: ethertype::IPV6,
    }
    .emit(&mut Frame::new_unchecked(&mut b[..ETH_LEN]));
    ipv6::Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: ip_proto::ICMPV6,
        payload_len: 32,
        hop_limit: 255,
        traffic_class: 0,
        flow_label: 0,
    }
    .emit(&mut ipv6::Packet::new_unchecked(
        &mut b[ETH_LEN..ETH_LEN + 40],
    ));
    let icmp = &mut b[ETH_LEN + 40..];
    icmp[8..24].copy_from_slice(&target.octets());
    icmp[24] = 1; // source link-layer address option
    icmp[25] = 1;
    icmp[26..32].copy_from_slice(&mac.0);
    icmpv6::Repr {
        msg_type: icmpv6::msg_type::NEIGHBOR_SOLICIT,
        code: 0,
        rest: 0,
    }
    .emit(&mut icmpv6::Packet::new_unchecked(icmp), &src, &dst);
    b
}

fn classify_ipv4(dst_mac: Mac, l3b: &[u8]) -> Classified {
    let ip = match ipv4::Packet::new_checked(l3b) {
        Ok(p) => p,
        Err(e) => return Classified::Malformed(e),
    };
    if !ip.verify_checksum() {
        return Classified::Malformed(Error::Checksum);
    }
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    if ip.is_fragment() {
        return Classified::OtherIpv4 {
            dst,
            fragment: true,
        };
    }
    let l3 = ETH_LEN;
    let l4 = l3 + ip.header_len();
    let l3_len = ip.total_len();
    let pl = ip.payload();
    let proto = match ip.protocol() {
        ip_proto::TCP => Protocol::Tcp,
        ip_proto::UDP => Protocol::Udp,
        ip_proto::SCTP => Protocol::Sctp,
        ip_proto::ICMP => return classify_icmp(dst_mac, &ip, l3, l4),
        _ => {
            return Classified::OtherIpv4 {
                dst,
                fragment: false,
            }
        }
    };
    let (sp, dp, flags) = match proto {
        Protocol::Tcp => match tcp::Packet::new_checked(pl) {
            Ok(t) => (t.src_port(), t.dst_port(), t.flags() as u8),
            Err(e) => return Classified::Malformed(e),
        },
        Protocol::Udp => match udp::Packet::new_checked(pl) {
            Ok(u) => (u.src_port(), u.dst_port(), 0),
            Err(e) => return Classified::Malformed(e),
        },
        Protocol::Sctp => match sctp::Packet::new_checked(pl) {
            Ok(s) => (
                s.src_port(),
                s.dst_port(),
                s.first_chunk_type().unwrap_or(0xff),
            ),
            Err(e) => return Classified::Malformed(e),
        },
    };
    Classified::Flow(Flow {
        proto,
        src: sock(src, sp),
        dst: sock(dst, dp),
        flags,
        l3_len,
        l3,
        l4,
        dst_mac,
        dont_frag: ip.dont_frag(),
    })
}

fn classify_icmp(dst_mac: Mac, ip: &ipv4::Packet<&[u8]>, l3: usize, l4: usize) -> Classified {
    let other = Classified::OtherIpv4 {
        dst: ip.dst_addr(),
        fragment: false,
    };
    let Ok(ic) = icmpv4::Packet::new_checked(ip.payload()) else {
        return other;
    };
    if !ic.is_related_error() {
        return other;
    }
    let Ok(inner) = ic.embedded() else {
        return other;
    };
    let Some(inner_proto) = Protocol::from_number(inner.protocol()) else {
        return other;
    };
    let Some((sp, dp)) = ports(inner.payload()) else {
        return other;
    };
    Classified::IcmpError(IcmpError {
        src: ip.src_addr(),
        dst: ip.dst_addr(),
        msg_type: ic.msg_type(),
        code: ic.code(),
        inner_proto,
        inner_src: sock(inner.src_addr(), sp),
        inner_dst: sock(inner.dst_addr(), dp),
        l3_len: ip.total_len(),
        l3,
        icmp: l4,
        dst_mac,
    })
}

/// Why a packet could not be forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fail {
    /// TTL ≤ 1: answer "time exceeded".
    TtlExceeded,
    /// Too big with DF set: answer "fragmentation needed" with this MTU.
    FragNeeded(u16),
    /// Too big without DF: would need fragmentation (not implemented).
    TooBig,
    /// The frame did not have the expected shape.
    Malformed,
}

impl From<Error> for Fail {
    fn from(_: Error) -> Fail {
        Fail::Malformed
    }
}

/// Compute the full transport checksum of the IPv4 packet at `l3`
/// (TCP, UDP with a non-zero checksum field, SCTP). Needed when the frame
/// was received with a partial checksum (`TP_STATUS_CSUMNOTREADY`: the
/// sender offloaded it), because a frame sent on a packet socket gets no
/// checksum offload.
pub fn complete_l4_checksum(frame: &mut [u8], l3: usize) -> Result<(), Fail> {
    let ip = ip_mut(frame, l3)?;
    if ip.is_fragment() {
        return Ok(());
    }
    let (src, dst, proto) = (
        IpAddr::V4(ip.src_addr()),
        IpAddr::V4(ip.dst_addr()),
        ip.protocol(),
    );
    let l4 = l3 + ip.header_len();
    let end = l3 + usize::from(ip.total_len());
    let b = frame.get_mut(l4..end).ok_or(Fail::Malformed)?;
    match proto {
        ip_proto::TCP => tcp::Packet::new_checked(b)?.fill_checksum(&src, &dst),
        ip_proto::UDP => {
            let mut u = udp::Packet::new_checked(b)?;
            if u.checksum() != 0 {
                u.fill_checksum(&src, &dst)
            }
        }
        ip_proto::SCTP => sctp::Packet::new_checked(b)?.fill_checksum(),
        _ => {}
    }
    Ok(())
}

/// Software GSO for TCP/IPv4: split the packet at `l3` of `frame` (a GSO
/// "super-packet" received from a virtual interface, larger than `mtu`)
/// into segments whose IP packets fit `mtu`, as the kernel's
/// `tcp_gso_segment` does: headers copied, sequence numbers advanced, IP
/// ident incremented, CWR only on the first segment, FIN/PSH only on the
/// last, full IP and TCP checksums. Segments are appended to `out` as
/// whole frames (the Ethernet header is copied).
pub fn segment_tcp(frame: &[u8], l3: usize, mtu: u16, out: &mut Vec<Vec<u8>>) -> Result<(), Fail> {
    let ip = ipv4::Packet::new_checked(frame.get(l3..).ok_or(Fail::Malformed)?)?;
    if ip.protocol() != ip_proto::TCP || ip.is_fragment() {
        return Err(Fail::TooBig);
    }
    let ihl = ip.header_len();
    let t = tcp::Packet::new_checked(ip.payload())?;
    let thl = t.header_len();
    let hdrs = l3 + ihl + thl;
    let mss = usize::from(mtu)
        .checked_sub(ihl + thl)
        .filter(|m| *m >= 8)
        .ok_or(Fail::Malformed)?;
    let payload = frame
        .get(hdrs..l3 + usize::from(ip.total_len()))
        .ok_or(Fail::Malformed)?;
    let (src, dst) = (IpAddr::V4(ip.src_addr()), IpAddr::V4(ip.dst_addr()));
    let (seq0, flags, ident0) = (t.seq_number(), t.flags(), ip.ident());
    let n = payload.len().div_ceil(mss).max(1);
    for (i, chunk) in payload.chunks(mss).enumerate() {
        let mut seg = Vec::with_capacity(hdrs + chunk.len());
        seg.extend_from_slice(&frame[..hdrs]);
        seg.extend_from_slice(chunk);
        let mut f = flags;
        if i > 0 {
            f &= !tcp::flags::CWR;
        }
        if i + 1 < n {
            f &= !(tcp::flags::FIN | tcp::flags::PSH);
        }
        {
            let mut sip = ipv4::Packet::new_unchecked(&mut seg[l3..]);
            sip.set_total_len((ihl + thl + chunk.len()) as u16);
            sip.set_ident(ident0.wrapping_add(i as u16));
            sip.fill_checksum();
        }
        let mut st = tcp::Packet::new_unchecked(&mut seg[l3 + ihl..]);
        st.set_seq_number(seq0.wrapping_add((i * mss) as u32));
        st.set_header_len_and_flags(thl, f);
        st.fill_checksum(&src, &dst);
        out.push(seg);
    }
    Ok(())
}

/// [`complete_l4_checksum`] for an IPv6 flow.
pub fn complete_l4_checksum6(frame: &mut [u8], fl: &Flow6) -> Result<(), Fail> {
    let (src, dst) = (IpAddr::V6(*fl.src.ip()), IpAddr::V6(*fl.dst.ip()));
    let b = frame
        .get_mut(fl.l4..fl.l3 + fl.l3_len as usize)
        .ok_or(Fail::Malformed)?;
    match fl.proto {
        Protocol::Tcp => tcp::Packet::new_checked(b)?.fill_checksum(&src, &dst),
        Protocol::Udp => udp::Packet::new_checked(b)?.fill_checksum(&src, &dst),
        Protocol::Sctp => sctp::Packet::new_checked(b)?.fill_checksum(),
    }
    Ok(())
}

/// Software GSO for TCP/IPv6 ([`segment_tcp`] for IPv6): the IPv6
/// header and any extension headers are copied to every segment, the
/// payload length adjusted; sequence numbers and flags as for IPv4.
pub fn segment_tcp6(
    frame: &[u8],
    fl: &Flow6,
    mtu: u16,
    out: &mut Vec<Vec<u8>>,
) -> Result<(), Fail> {
    if fl.proto != Protocol::Tcp {
        return Err(Fail::TooBig);
    }
    let end = fl.l3 + fl.l3_len as usize;
    let t = tcp::Packet::new_checked(frame.get(fl.l4..end).ok_or(Fail::Malformed)?)?;
    let thl = t.header_len();
    let hdrs = fl.l4 + thl;
    let l3h = hdrs
        .checked_sub(fl.l3)
        .filter(|h| *h >= ipv6::HEADER_LEN)
        .ok_or(Fail::Malformed)?;
    let mss = usize::from(mtu)
        .checked_sub(l3h)
        .filter(|m| *m >= 8)
        .ok_or(Fail::Malformed)?;
    let payload = frame.get(hdrs..end).ok_or(Fail::Malformed)?;
    let (src, dst) = (IpAddr::V6(*fl.src.ip()), IpAddr::V6(*fl.dst.ip()));
    let (seq0, flags) = (t.seq_number(), t.flags());
    let n = payload.len().div_ceil(mss).max(1);
    for (i, chunk) in payload.chunks(mss).enumerate() {
        let mut seg = Vec::with_capacity(hdrs + chunk.len());
        seg.extend_from_slice(&frame[..hdrs]);
        seg.extend_from_slice(chunk);
        let mut f = flags;
        if i > 0 {
            f &= !tcp::flags::CWR;
        }
        if i + 1 < n {
            f &= !(tcp::flags::FIN | tcp::flags::PSH);
        }
        ipv6::Packet::new_unchecked(&mut seg[fl.l3..])
            .set_payload_len((l3h - ipv6::HEADER_LEN + chunk.len()) as u16);
        let mut st = tcp::Packet::new_unchecked(&mut seg[fl.l4..]);
        st.set_seq_number(seq0.wrapping_add((i * mss) as u32));
        st.set_header_len_and_flags(thl, f);
        st.fill_checksum(&src, &dst);
        out.push(seg);
    }
    Ok(())
}

/// Set source and destination MACs of an untagged frame.
pub fn set_macs(frame: &mut [u8], src: Mac, dst: Mac) {
    if let Ok(mut f) = Frame::new_checked(frame) {
        f.set_src_addr(src);
        f.set_dst_addr(dst);
    }
}

fn ip_mut(frame: &mut [u8], l3: usize) -> Result<ipv4::Packet<&mut [u8]>, Fail> {
    Ok(ipv4::Packet::new_checked(
        frame.get_mut(l3..).ok_or(Fail::Malformed)?,
    )?)
}

/// DR: the IP packet is unchanged except TTL−1 and the header checksum
/// (`ip_vs_dr_xmit`); the caller sets the MACs.
pub fn dr(frame: &mut [u8], l3: usize) -> Result<(), Fail> {
    let mut ip = ip_mut(frame, l3)?;
    ip.decrement_ttl().ok_or(Fail::TtlExceeded)?;
    Ok(())
}

/// Rewrite an address and port of a transport header with incremental
/// checksums (SCTP: CRC32c recomputed). `src` selects the source side.
fn rewrite_l4(
    proto: Protocol,
    l4: &mut [u8],
    src: bool,
    o: IpAddr,
    n: IpAddr,
    port: u16,
) -> Result<(), Fail> {
    match proto {
        Protocol::Tcp => {
            let mut t = tcp::Packet::new_checked(l4)?;
            if src {
                t.rewrite_src_port(port);
            } else {
                t.rewrite_dst_port(port);
            }
            t.update_addr_checksum(&o, &n);
        }
        Protocol::Udp => {
            let mut u = udp::Packet::new_checked(l4)?;
            if src {
                u.rewrite_src_port(port);
            } else {
                u.rewrite_dst_port(port);
            }
            u.update_addr_checksum(&o, &n);
        }
        Protocol::Sctp => {
            let mut s = sctp::Packet::new_checked(l4)?;
            if src {
                s.set_src_port(port);
            } else {
                s.set_dst_port(port);
            }
            s.fill_checksum();
        }
    }
    Ok(())
}

fn nat(frame: &mut [u8], flow: &Flow, src: bool, to: SocketAddrV4) -> Result<(), Fail> {
    let end = flow.l3 + usize::from(flow.l3_len);
    {
        let mut ip = ip_mut(frame, flow.l3)?;
        ip.decrement_ttl().ok_or(Fail::TtlExceeded)?;
        if src {
            ip.rewrite_src_addr(*to.ip());
        } else {
            ip.rewrite_dst_addr(*to.ip());
        }
    }
    let old = if src { *flow.src.ip() } else { *flow.dst.ip() };
    let l4 = frame.get_mut(flow.l4..end).ok_or(Fail::Malformed)?;
    rewrite_l4(
        flow.proto,
        l4,
        src,
        IpAddr::V4(old),
        IpAddr::V4(*to.ip()),
        to.port(),
    )
}

/// NAT in (`ip_vs_nat_xmit`): DNAT to the real server `to`, TTL−1.
pub fn nat_in(frame: &mut [u8], flow: &Flow, to: SocketAddrV4) -> Result<(), Fail> {
    nat(frame, flow, false, to)
}

/// NAT reply (`handle_response`): SNAT the real server's reply to the
/// virtual address `from`, TTL−1.
pub fn nat_out(frame: &mut [u8], flow: &Flow, from: SocketAddrV4) -> Result<(), Fail> {
    nat(frame, flow, true, from)
}

/// `ip_vs_nat_icmp`: translate an ICMP error of a NAT connection.
///
/// * `inbound` (client → VIP, quoting our reply VIP → client): outer
///   destination, quoted source address and quoted source port become the
///   real server's (`addr`).
/// * outbound (real server → client, quoting client → real server): outer
///   source, quoted destination address and port become the virtual
///   service's (`addr`).
///
/// TTL−1; outer and quoted IP checksums and the ICMP checksum are fixed.
pub fn nat_icmp(
    frame: &mut [u8],
    e: &IcmpError,
    inbound: bool,
    addr: SocketAddrV4,
) -> Result<(), Fail> {
    let end = e.l3 + usize::from(e.l3_len);
    {
        let mut ip = ip_mut(frame, e.l3)?;
        ip.decrement_ttl().ok_or(Fail::TtlExceeded)?;
        if inbound {
            ip.rewrite_dst_addr(*addr.ip());
        } else {
            ip.rewrite_src_addr(*addr.ip());
        }
    }
    let icmp = frame.get_mut(e.icmp..end).ok_or(Fail::Malformed)?;
    {
        let data = icmp.get_mut(icmpv4::HEADER_LEN..).ok_or(Fail::Malformed)?;
        let mut inner = ipv4::Packet::new_checked_header(&mut *data)?;
        let hl = inner.header_len();
        if inbound {
            inner.set_src_addr(*addr.ip());
        } else {
            inner.set_dst_addr(*addr.ip());
        }
        inner.fill_checksum();
        let p = data.get_mut(hl..hl + 4).ok_or(Fail::Malformed)?;
        let at = if inbound { 0 } else { 2 };
        p[at..at + 2].copy_from_slice(&addr.port().to_be_bytes());
    }
    icmpv4::Packet::new_checked(icmp)?.fill_checksum();
    Ok(())
}

/// Tunnel parameters of one destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TunParams {
    /// IPIP, GUE or GRE.
    pub kind: TunType,
    /// GUE destination port.
    pub port: u16,
    /// Checksum option.
    pub csum: TunCsum,
    /// Outer source (the director's address toward the real server).
    pub src: Ipv4Addr,
    /// Outer destination (the real server).
    pub dst: Ipv4Addr,
    /// IP identification for the outer header.
    pub ident: u16,
    /// sysctl pmtu_disc (copy DF from the inner packet).
    pub pmtu_disc: bool,
    /// Interface MTU.
    pub mtu: u16,
}

impl TunParams {
    /// Bytes of tunnel header between the outer IPv4 header and the inner
    /// packet.
    pub fn extra(&self) -> usize {
        Tunnel::from(self).extra()
    }
    /// Largest inner packet that fits (`ip_vs_tunnel_xmit`'s MTU check).
    pub fn inner_mtu(&self) -> u16 {
        Tunnel::from(self).inner_mtu()
    }
}

/// UDP source port for GUE from a flow hash, in the default ephemeral range
/// 32768–60999 (`udp_flow_src_port`).
pub fn gue_src_port(hash: u32) -> u16 {
    let (min, max) = (32768u32, 60999u32);
    (((u64::from(hash) * u64::from(max - min + 1)) >> 32) as u32 + min) as u16
}

/// A simple flow hash (FNV-1a over the 5-tuple).
pub fn flow_hash(flow: &Flow) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    let mut eat = |b: &[u8]| {
        for x in b {
            h ^= u32::from(*x);
            h = h.wrapping_mul(0x0100_0193);
        }
    };
    eat(&flow.src.ip().octets());
    eat(&flow.dst.ip().octets());
    eat(&flow.src.port().to_be_bytes());
    eat(&flow.dst.port().to_be_bytes());
    eat(&[flow.proto.number()]);
    h
}

/// [`flow_hash`] for an IPv6 flow.
pub fn flow_hash6(flow: &Flow6) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    let mut eat = |b: &[u8]| {
        for x in b {
            h ^= u32::from(*x);
            h = h.wrapping_mul(0x0100_0193);
        }
    };
    eat(&flow.src.ip().octets());
    eat(&flow.dst.ip().octets());
    eat(&flow.src.port().to_be_bytes());
    eat(&flow.dst.port().to_be_bytes());
    eat(&[flow.proto.number()]);
    h
}

/// Tunnel parameters of one destination for any pair of address
/// families, as IPVS allows for TUN: IPIP (IPv4 in IPv4), ip6ip6, IPv4 in
/// IPv6 (next header 4) and IPv6 in IPv4 (protocol 41), each also with GUE
/// or GRE. The outer family is that of `dst` (the real server).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tunnel {
    /// IPIP, GUE or GRE.
    pub kind: TunType,
    /// GUE destination port.
    pub port: u16,
    /// Checksum option.
    pub csum: TunCsum,
    /// Outer source (the director's address toward the real server; same
    /// family as `dst`).
    pub src: IpAddr,
    /// Outer destination (the real server).
    pub dst: IpAddr,
    /// IP identification for an outer IPv4 header.
    pub ident: u16,
    /// sysctl pmtu_disc (copy DF from an inner IPv4 packet).
    pub pmtu_disc: bool,
    /// Interface MTU.
    pub mtu: u16,
}

impl From<&TunParams> for Tunnel {
    fn from(p: &TunParams) -> Tunnel {
        Tunnel {
            kind: p.kind,
            port: p.port,
            csum: p.csum,
            src: IpAddr::V4(p.src),
            dst: IpAddr::V4(p.dst),
            ident: p.ident,
            pmtu_disc: p.pmtu_disc,
            mtu: p.mtu,
        }
    }
}

impl Tunnel {
    /// Outer IP header length: 20 (IPv4) or 40 (IPv6).
    pub fn outer_len(&self) -> usize {
        if self.dst.is_ipv4() {
            ipip::OUTER_LEN
        } else {
            ipv6::HEADER_LEN
        }
    }
    /// Bytes of tunnel header between the outer IP header and the inner
    /// packet.
    pub fn extra(&self) -> usize {
        match self.kind {
            TunType::Ipip => 0,
            TunType::Gue => udp::HEADER_LEN + gue::HEADER_LEN,
            TunType::Gre => gre::HEADER_LEN + if self.csum == TunCsum::Csum { 4 } else { 0 },
        }
    }
    /// Largest inner packet that fits: the route MTU minus the outer
    /// header and the tunnel header (`__ip_vs_get_out_rt[_v6]` with
    /// `IP_VS_RT_MODE_TUNNEL`).
    pub fn inner_mtu(&self) -> u16 {
        self.mtu
            .saturating_sub((self.outer_len() + self.extra()) as u16)
    }
    /// The smallest inner MTU accepted for this outer family: for IPv6
    /// `IPV6_MIN_MTU` (1280; below it `__ip_vs_get_out_rt_v6` fails and the
    /// packet is dropped). For IPv4 the kernel's floor is 68; it is not
    /// applied here (0), so even a tiny tunnel MTU answers "fragmentation
    /// needed" rather than dropping silently.
    pub fn min_mtu(&self) -> u16 {
        if self.dst.is_ipv4() {
            0
        } else {
            1280
        }
    }
}

/// TUN (`ip_vs_tunnel_xmit`): build in `out` a new frame carrying the
/// inner IPv4 packet at `frame[l3..l3+l3_len]` (TTL−1) in IPIP, GUE or GRE
/// over IPv4 ([`tun_encap_any`] with IPv4 addresses).
pub fn tun_encap(
    frame: &[u8],
    l3: usize,
    l3_len: u16,
    p: &TunParams,
    hash: u32,
    macs: (Mac, Mac),
    out: &mut Vec<u8>,
) -> Result<(), Fail> {
    tun_encap_any(
        frame,
        l3,
        usize::from(l3_len),
        &Tunnel::from(p),
        hash,
        macs,
        out,
    )
}

/// TUN for any family pair (`ip_vs_tunnel_xmit` / `ip_vs_tunnel_xmit_v6`):
/// build in `out` a new frame carrying the inner IPv4 or IPv6 packet at
/// `frame[l3..l3+l3_len]` (TTL / hop limit − 1) in an outer IPv4 or IPv6
/// header (the family of `t.dst`), with IPIP, GUE or GRE.
///
/// The outer header is built as the kernel does: IPv4 as in
/// [`ipip::outer_repr`]; IPv6 with next header 4 (IPv4 inner) or 41
/// (IPv6 inner) — or UDP / GRE —, traffic class = the inner DSCP with
/// RFC 6040 ECN, flow label 0, hop limit = the inner (decremented) TTL.
///
/// Errors: [`Fail::TtlExceeded`]; [`Fail::FragNeeded`] with the tunnel MTU
/// when the inner packet does not fit — for an IPv4 inner packet only with
/// DF (answer ICMP "fragmentation needed"), for an IPv6 inner packet
/// always (answer ICMPv6 "packet too big"); [`Fail::TooBig`] for an IPv4
/// inner packet without DF, or a tunnel MTU below the family's minimum.
pub fn tun_encap_any(
    frame: &[u8],
    l3: usize,
    l3_len: usize,
    t: &Tunnel,
    hash: u32,
    macs: (Mac, Mac),
    out: &mut Vec<u8>,
) -> Result<(), Fail> {
    let inner = frame.get(l3..l3 + l3_len).ok_or(Fail::Malformed)?;
    let ilen = inner.len();
    let v6_inner = match inner.first().map(|b| b >> 4) {
        Some(4) => false,
        Some(6) => true,
        _ => return Err(Fail::Malformed),
    };
    let df = if v6_inner {
        ipv6::Packet::new_checked(inner)?;
        false
    } else {
        ipv4::Packet::new_checked(inner)?.dont_frag()
    };
    if t.src.is_ipv4() != t.dst.is_ipv4() {
        return Err(Fail::Malformed);
    }
    // The kernel decrements the TTL before its MTU check.
    let ttl = if v6_inner { inner[7] } else { inner[8] };
    if ttl <= 1 {
        return Err(Fail::TtlExceeded);
    }
    let (outer_len, extra) = (t.outer_len(), t.extra());
    let imtu = t.inner_mtu();
    if imtu < t.min_mtu() {
        return Err(Fail::TooBig);
    }
    if ilen > usize::from(imtu) {
        return Err(if v6_inner || df {
            Fail::FragNeeded(imtu)
        } else {
            Fail::TooBig
        });
    }
    let in_off = ETH_LEN + outer_len + extra;
    out.clear();
    out.resize(in_off + ilen, 0);
    out[in_off..].copy_from_slice(inner);
    if v6_inner {
        ipv6::Packet::new_checked(&mut out[in_off..])?
            .decrement_hop_limit()
            .ok_or(Fail::TtlExceeded)?;
    } else {
        ipv4::Packet::new_checked(&mut out[in_off..])?
            .decrement_ttl()
            .ok_or(Fail::TtlExceeded)?;
    }
    let info = ipip::InnerInfo::of(&out[in_off..])?;
    let (proto, csum) = match t.kind {
        TunType::Ipip => (None, false),
        TunType::Gue => (Some(ip_proto::UDP), t.csum != TunCsum::NoCsum),
        TunType::Gre => (Some(ip_proto::GRE), t.csum == TunCsum::Csum),
    };
    let ethertype = match (t.src, t.dst) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            let outer = ipip::outer_repr(&info, src, dst, t.ident, t.pmtu_disc, proto, extra)?;
            outer.emit(&mut ipv4::Packet::new_unchecked(
                &mut out[ETH_LEN..ETH_LEN + outer_len],
            ));
            ethertype::IPV4
        }
        (IpAddr::V6(src), IpAddr::V6(dst)) => {
            let payload_len = ilen + extra;
            if payload_len > usize::from(u16::MAX) {
                return Err(Fail::TooBig);
            }
            ipv6::Repr {
                src_addr: src,
                dst_addr: dst,
                next_header: proto.unwrap_or(info.protocol),
                payload_len,
                hop_limit: info.ttl,
                traffic_class: ipip::ecn_encapsulate(info.dsfield, info.dsfield),
                flow_label: 0,
            }
            .emit(&mut ipv6::Packet::new_unchecked(
                &mut out[ETH_LEN..ETH_LEN + outer_len],
            ));
            ethertype::IPV6
        }
        _ => return Err(Fail::Malformed),
    };
    ethernet::Repr {
        src_addr: macs.0,
        dst_addr: macs.1,
        vlan: None,
        ethertype,
    }
    .emit(&mut Frame::new_unchecked(&mut out[..ETH_LEN]));
    let at = ETH_LEN + outer_len;
    match t.kind {
        TunType::Ipip => {}
        TunType::Gue => {
            let ulen = out.len() - at;
            let mut u = udp::Packet::new_unchecked(&mut out[at..]);
            udp::Repr {
                src_port: gue_src_port(hash),
                dst_port: t.port,
                payload_len: ulen - udp::HEADER_LEN,
            }
            .emit(&mut u);
            gue::Repr::data(info.protocol).emit(&mut gue::Packet::new_unchecked(
                &mut out[at + udp::HEADER_LEN..at + udp::HEADER_LEN + gue::HEADER_LEN],
            ));
            if csum {
                udp::Packet::new_unchecked(&mut out[at..]).fill_checksum(&t.src, &t.dst);
            }
        }
        TunType::Gre => {
            gre::Repr {
                protocol: if v6_inner {
                    ethertype::IPV6
                } else {
                    ethertype::IPV4
                },
                checksum: csum,
                key: None,
                seq: None,
            }
            .emit(&mut gre::Packet::new_unchecked(&mut out[at..]));
        }
    }
    Ok(())
}

/// Build an ICMP error frame in `out` answering the IPv4 packet `orig`
/// (from `src`, typically the VIP, to the original sender), like
/// `icmp_send`: TTL 64, quoting up to 548 bytes.
pub fn icmp_error_frame(
    out: &mut Vec<u8>,
    macs: (Mac, Mac),
    src: Ipv4Addr,
    orig: &[u8],
    msg_type: u8,
    code: u8,
    rest: u32,
) -> Result<(), Fail> {
    let o = ipv4::Packet::new_checked_header(orig)?;
    let dst = o.src_addr();
    out.clear();
    out.resize(
        ETH_LEN + ipv4::HEADER_LEN + icmpv4::HEADER_LEN + icmpv4::MAX_QUOTE,
        0,
    );
    let at = ETH_LEN + ipv4::HEADER_LEN;
    let n = icmpv4::build_error(&mut out[at..], msg_type, code, rest, orig)?;
    out.truncate(at + n);
    ethernet::Repr {
        src_addr: macs.0,
        dst_addr: macs.1,
        vlan: None,
        ethertype: ethertype::IPV4,
    }
    .emit(&mut Frame::new_unchecked(&mut out[..ETH_LEN]));
    ipv4::Repr {
        src_addr: src,
        dst_addr: dst,
        protocol: ip_proto::ICMP,
        payload_len: n,
        ttl: 64,
        dscp_ecn: 0xc0,
        ident: 0,
        dont_frag: false,
        more_frags: false,
        frag_offset: 0,
        options: ipv4::Options::EMPTY,
    }
    .emit(&mut ipv4::Packet::new_unchecked(&mut out[ETH_LEN..at]));
    Ok(())
}

/// Build an ARP request frame for `target` from (`mac`, `ip`).
pub fn arp_request(mac: Mac, ip: Ipv4Addr, target: Ipv4Addr) -> [u8; 42] {
    let mut b = [0u8; 42];
    ethernet::Repr {
        src_addr: mac,
        dst_addr: Mac::BROADCAST,
        vlan: None,
        ethertype: ethertype::ARP,
    }
    .emit(&mut Frame::new_unchecked(&mut b[..ETH_LEN]));
    arp::Repr {
        operation: arp::OP_REQUEST,
        source_hardware_addr: mac,
        source_protocol_addr: ip,
        target_hardware_addr: Mac::ZERO,
        target_protocol_addr: target,
    }
    .emit(&mut arp::Packet::new_unchecked(&mut b[ETH_LEN..]));
    b
}

#[cfg(test)]
mod test {
    use super::*;
    use rvs_wire::checksum;

    const CMAC: Mac = Mac([2, 0, 0, 0, 0, 0x02]);
    const LMAC: Mac = Mac([2, 0, 0, 0, 0, 0x0b]);
    const RMAC: Mac = Mac([2, 0, 0, 0, 0, 0x15]);

    fn vip() -> SocketAddrV4 {
        "198.18.0.100:80".parse().unwrap()
    }
    fn client() -> SocketAddrV4 {
        "198.18.0.2:40000".parse().unwrap()
    }
    fn rs() -> SocketAddrV4 {
        "198.18.0.21:8080".parse().unwrap()
    }

    /// Client SYN to the VIP, as a full frame with valid checksums.
    fn syn_frame() -> Vec<u8> {
        let mut f = vec![0u8; ETH_LEN + 20 + 24];
        ethernet::Repr {
            src_addr: CMAC,
            dst_addr: LMAC,
            vlan: None,
            ethertype: ethertype::IPV4,
        }
        .emit(&mut Frame::new_unchecked(&mut f[..]));
        ipv4::Repr {
            src_addr: *client().ip(),
            dst_addr: *vip().ip(),
            protocol: 6,
            payload_len: 24,
            ttl: 64,
            dscp_ecn: 0,
            ident: 0x1234,
            dont_frag: true,
            more_frags: false,
            frag_offset: 0,
            options: ipv4::Options::EMPTY,
        }
        .emit(&mut ipv4::Packet::new_unchecked(&mut f[ETH_LEN..]));
        let t = ETH_LEN + 20;
        tcp::Repr {
            src_port: client().port(),
            dst_port: vip().port(),
            seq_number: 1,
            ack_number: 0,
            flags: tcp::flags::SYN,
            window_len: 64240,
            urgent_at: 0,
            options: tcp::Options::new(&[2, 4, 5, 0xb4]).unwrap(),
        }
        .emit(&mut tcp::Packet::new_unchecked(&mut f[t..]));
        tcp::Packet::new_unchecked(&mut f[t..])
            .fill_checksum(&IpAddr::V4(*client().ip()), &IpAddr::V4(*vip().ip()));
        f
    }

    fn flow_of(f: &[u8]) -> Flow {
        match classify(f) {
            Classified::Flow(fl) => fl,
            other => panic!("not a flow: {other:?}"),
        }
    }

    fn tcp_ok(f: &[u8], l3: usize) -> bool {
        let ip = ipv4::Packet::new_checked(&f[l3..]).unwrap();
        let t = tcp::Packet::new_checked(ip.payload()).unwrap();
        ip.verify_checksum()
            && t.verify_checksum(&IpAddr::V4(ip.src_addr()), &IpAddr::V4(ip.dst_addr()))
    }

    #[test]
    fn classify_syn() {
        let f = syn_frame();
        let fl = flow_of(&f);
        assert_eq!(fl.proto, Protocol::Tcp);
        assert_eq!((fl.src, fl.dst), (client(), vip()));
        assert_eq!(fl.flags, 0x02);
        assert_eq!(fl.l3_len, 44);
        assert_eq!((fl.l3, fl.l4), (14, 34));
        assert_eq!(fl.dst_mac, LMAC);
        assert!(fl.dont_frag);
        // broken checksum
        let mut g = f.clone();
        g[ETH_LEN + 8] = 1;
        assert_eq!(classify(&g), Classified::Malformed(Error::Checksum));
        assert_eq!(classify(&f[..20]), Classified::Malformed(Error::Truncated));
    }

    #[test]
    fn dr_rewrite() {
        let mut f = syn_frame();
        let orig = f.clone();
        dr(&mut f, ETH_LEN).unwrap();
        set_macs(&mut f, LMAC, RMAC);
        assert_eq!(&f[0..6], &RMAC.0);
        assert_eq!(&f[6..12], &LMAC.0);
        assert_eq!(f[ETH_LEN + 8], 63);
        assert!(tcp_ok(&f, ETH_LEN));
        // nothing else changed
        assert_eq!(f[ETH_LEN + 12..], orig[ETH_LEN + 12..]);
    }

    #[test]
    fn nat_both_ways() {
        let mut f = syn_frame();
        let fl = flow_of(&f);
        nat_in(&mut f, &fl, rs()).unwrap();
        assert!(tcp_ok(&f, ETH_LEN));
        let fl2 = flow_of(&f);
        assert_eq!(fl2.dst, rs());
        assert_eq!(fl2.src, client());
        // checksums equal a full recomputation
        let mut g = f.clone();
        let t = ETH_LEN + 20;
        tcp::Packet::new_unchecked(&mut g[t..])
            .fill_checksum(&IpAddr::V4(*client().ip()), &IpAddr::V4(*rs().ip()));
        ipv4::Packet::new_unchecked(&mut g[ETH_LEN..]).fill_checksum();
        assert_eq!(f, g);
        // the "reply": swap src/dst as a real server would send
        let mut r = f.clone();
        {
            let mut ip = ipv4::Packet::new_unchecked(&mut r[ETH_LEN..]);
            ip.set_src_addr(*rs().ip());
            ip.set_dst_addr(*client().ip());
            ip.fill_checksum();
            let mut tp = tcp::Packet::new_unchecked(&mut r[t..]);
            tp.set_src_port(rs().port());
            tp.set_dst_port(client().port());
            tp.fill_checksum(&IpAddr::V4(*rs().ip()), &IpAddr::V4(*client().ip()));
        }
        let rf = flow_of(&r);
        nat_out(&mut r, &rf, vip()).unwrap();
        assert!(tcp_ok(&r, ETH_LEN));
        let rf2 = flow_of(&r);
        assert_eq!((rf2.src, rf2.dst), (vip(), client()));
    }

    #[test]
    fn ttl_exceeded() {
        let mut f = syn_frame();
        ipv4::Packet::new_unchecked(&mut f[ETH_LEN..]).set_ttl(1);
        ipv4::Packet::new_unchecked(&mut f[ETH_LEN..]).fill_checksum();
        assert_eq!(dr(&mut f, ETH_LEN), Err(Fail::TtlExceeded));
        let mut out = Vec::new();
        icmp_error_frame(&mut out, (LMAC, CMAC), *vip().ip(), &f[ETH_LEN..], 11, 0, 0).unwrap();
        let ip = ipv4::Packet::new_checked(&out[ETH_LEN..]).unwrap();
        assert!(ip.verify_checksum());
        assert_eq!(ip.dst_addr(), *client().ip());
        let ic = icmpv4::Packet::new_checked(ip.payload()).unwrap();
        assert!(ic.verify_checksum());
        assert_eq!(ic.embedded().unwrap().dst_addr(), *vip().ip());
        assert_eq!(ip.payload().len(), 8 + 44);
    }

    fn tun(kind: TunType, csum: TunCsum) -> Vec<u8> {
        let f = syn_frame();
        let p = TunParams {
            kind,
            port: 6080,
            csum,
            src: Ipv4Addr::new(198, 18, 0, 11),
            dst: Ipv4Addr::new(198, 18, 0, 21),
            ident: 7,
            pmtu_disc: true,
            mtu: 1500,
        };
        let mut out = Vec::new();
        tun_encap(&f, ETH_LEN, 44, &p, 0xdead_beef, (LMAC, RMAC), &mut out).unwrap();
        out
    }

    #[test]
    fn tun_ipip() {
        let out = tun(TunType::Ipip, TunCsum::NoCsum);
        assert_eq!(out.len(), 14 + 20 + 44);
        let outer = ipv4::Packet::new_checked(&out[ETH_LEN..]).unwrap();
        assert!(outer.verify_checksum() && outer.dont_frag());
        assert_eq!(outer.protocol(), ip_proto::IPIP);
        assert_eq!(outer.ttl(), 63);
        let inner = ipip::decapsulate(&outer).unwrap();
        let ip = ipv4::Packet::new_checked(inner).unwrap();
        assert_eq!(ip.ttl(), 63);
        assert_eq!(ip.dst_addr(), *vip().ip());
        assert!(tcp_ok(inner, 0));
    }

    #[test]
    fn tun_gue_gre() {
        let out = tun(TunType::Gue, TunCsum::Csum);
        let outer = ipv4::Packet::new_checked(&out[ETH_LEN..]).unwrap();
        assert_eq!(outer.protocol(), ip_proto::UDP);
        let u = udp::Packet::new_checked(outer.payload()).unwrap();
        assert_eq!(u.dst_port(), 6080);
        assert!((32768..=60999).contains(&u.src_port()));
        assert!(
            u.checksum() != 0
                && u.verify_checksum(&IpAddr::V4(outer.src_addr()), &IpAddr::V4(outer.dst_addr()))
        );
        let g = gue::Packet::new_checked(u.payload()).unwrap();
        assert_eq!(gue::Repr::parse(&g).unwrap(), gue::Repr::data(4));
        assert!(tcp_ok(g.payload(), 0));
        let nocsum = tun(TunType::Gue, TunCsum::NoCsum);
        let o2 = ipv4::Packet::new_checked(&nocsum[ETH_LEN..]).unwrap();
        assert_eq!(
            udp::Packet::new_checked(o2.payload()).unwrap().checksum(),
            0
        );

        let out = tun(TunType::Gre, TunCsum::Csum);
        let outer = ipv4::Packet::new_checked(&out[ETH_LEN..]).unwrap();
        assert_eq!(outer.protocol(), ip_proto::GRE);
        let g = gre::Packet::new_checked(outer.payload()).unwrap();
        assert_eq!(
            gre::Repr::parse(&g).unwrap(),
            gre::Repr {
                protocol: 0x0800,
                checksum: true,
                key: None,
                seq: None
            }
        );
        assert!(tcp_ok(g.payload(), 0));
    }

    #[test]
    fn tun_mtu() {
        let f = syn_frame();
        let p = TunParams {
            kind: TunType::Ipip,
            port: 0,
            csum: TunCsum::NoCsum,
            src: Ipv4Addr::new(198, 18, 0, 11),
            dst: Ipv4Addr::new(198, 18, 0, 21),
            ident: 7,
            pmtu_disc: true,
            mtu: 60,
        };
        let mut out = Vec::new();
        assert_eq!(
            tun_encap(&f, ETH_LEN, 44, &p, 0, (LMAC, RMAC), &mut out),
            Err(Fail::FragNeeded(40))
        );
        let mut nodf = f.clone();
        {
            let mut ip = ipv4::Packet::new_unchecked(&mut nodf[ETH_LEN..]);
            ip.set_frag(false, false, 0);
            ip.fill_checksum();
        }
        assert_eq!(
            tun_encap(&nodf, ETH_LEN, 44, &p, 0, (LMAC, RMAC), &mut out),
            Err(Fail::TooBig)
        );
        assert_eq!(
            TunParams {
                kind: TunType::Gue,
                ..p
            }
            .inner_mtu(),
            60 - 32
        );
    }

    #[test]
    fn icmp_nat() {
        // A real server's "port unreachable" about client -> rs:8080.
        let syn = syn_frame();
        let mut fwd = syn.clone();
        let fl = flow_of(&fwd);
        nat_in(&mut fwd, &fl, rs()).unwrap();
        let mut f = Vec::new();
        icmp_error_frame(&mut f, (RMAC, LMAC), *rs().ip(), &fwd[ETH_LEN..], 3, 3, 0).unwrap();
        let e = match classify(&f) {
            Classified::IcmpError(e) => e,
            o => panic!("{o:?}"),
        };
        assert_eq!((e.inner_src, e.inner_dst), (client(), rs()));
        nat_icmp(&mut f, &e, false, vip()).unwrap();
        let ip = ipv4::Packet::new_checked(&f[ETH_LEN..]).unwrap();
        assert!(ip.verify_checksum());
        assert_eq!(ip.src_addr(), *vip().ip());
        let ic = icmpv4::Packet::new_checked(ip.payload()).unwrap();
        assert!(ic.verify_checksum());
        let inner = ic.embedded().unwrap();
        assert!(inner.verify_checksum());
        assert_eq!(inner.dst_addr(), *vip().ip());
        assert_eq!(&inner.payload()[2..4], &80u16.to_be_bytes());
        let _ = checksum::sum(&[]);
    }

    #[test]
    fn gso_segmentation() {
        // a 4000-byte payload "super-packet" with PSH|ACK|FIN
        let mut f = syn_frame();
        let payload: Vec<u8> = (0..4000u32).map(|i| i as u8).collect();
        f.extend_from_slice(&payload);
        {
            let mut ip = ipv4::Packet::new_unchecked(&mut f[ETH_LEN..]);
            ip.set_total_len((44 + 4000) as u16);
            ip.fill_checksum();
            let t = ETH_LEN + 20;
            let mut tp = tcp::Packet::new_unchecked(&mut f[t..]);
            tp.set_header_len_and_flags(24, tcp::flags::ACK | tcp::flags::PSH | tcp::flags::FIN);
            tp.set_seq_number(1000);
        }
        let mut segs = Vec::new();
        segment_tcp(&f, ETH_LEN, 1500, &mut segs).unwrap();
        assert_eq!(segs.len(), 3); // mss 1456: 1456 + 1456 + 1088
        let mut joined = Vec::new();
        for (i, s) in segs.iter().enumerate() {
            assert!(tcp_ok(s, ETH_LEN));
            let ip = ipv4::Packet::new_checked(&s[ETH_LEN..]).unwrap();
            assert!(usize::from(ip.total_len()) <= 1500);
            assert_eq!(ip.ident(), 0x1234 + i as u16);
            let t = tcp::Packet::new_checked(ip.payload()).unwrap();
            assert_eq!(t.seq_number(), 1000 + (i * 1456) as u32);
            assert_eq!(t.fin(), i == 2);
            assert_eq!(t.flags() & tcp::flags::PSH != 0, i == 2);
            assert!(t.ack());
            joined.extend_from_slice(t.payload());
        }
        assert_eq!(joined, payload);
        assert_eq!(
            segment_tcp(&f, ETH_LEN, 40, &mut segs),
            Err(Fail::Malformed)
        );
    }

    fn v6(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    /// Client SYN to [2001:db8::100]:80 behind a hop-by-hop header.
    fn syn6_frame() -> Vec<u8> {
        let (c, vip) = (v6("2001:db8::2"), v6("2001:db8::100"));
        let mut f = vec![0u8; ETH_LEN + 40 + 8 + 20];
        ethernet::Repr {
            src_addr: CMAC,
            dst_addr: LMAC,
            vlan: None,
            ethertype: ethertype::IPV6,
        }
        .emit(&mut Frame::new_unchecked(&mut f[..]));
        ipv6::Repr {
            src_addr: c,
            dst_addr: vip,
            next_header: ip_proto::HOPOPTS,
            payload_len: 28,
            hop_limit: 64,
            traffic_class: 0,
            flow_label: 7,
        }
        .emit(&mut ipv6::Packet::new_unchecked(&mut f[ETH_LEN..]));
        f[ETH_LEN + 40] = ip_proto::TCP; // hop-by-hop: next TCP, len 0, PadN
        f[ETH_LEN + 42] = 1;
        f[ETH_LEN + 43] = 4;
        let t = ETH_LEN + 48;
        tcp::Repr {
            src_port: 40000,
            dst_port: 80,
            seq_number: 1,
            ack_number: 0,
            flags: tcp::flags::SYN,
            window_len: 64800,
            urgent_at: 0,
            options: tcp::Options::EMPTY,
        }
        .emit(&mut tcp::Packet::new_unchecked(&mut f[t..]));
        tcp::Packet::new_unchecked(&mut f[t..]).fill_checksum(&IpAddr::V6(c), &IpAddr::V6(vip));
        f
    }

    fn tcp6_ok(f: &[u8], fl: &Flow6) -> bool {
        let t = tcp::Packet::new_checked(&f[fl.l4..]).unwrap();
        t.verify_checksum(&IpAddr::V6(*fl.src.ip()), &IpAddr::V6(*fl.dst.ip()))
    }

    #[test]
    fn ipv6_dr_and_nat() {
        let f = syn6_frame();
        let Classified::Flow6(fl) = classify(&f) else {
            panic!("{:?}", classify(&f))
        };
        assert_eq!(fl.proto, Protocol::Tcp);
        assert_eq!(fl.dst, SocketAddrV6::new(v6("2001:db8::100"), 80, 0, 0));
        assert_eq!((fl.l3, fl.l4, fl.l3_len, fl.flags), (14, 14 + 48, 68, 2));
        // DR: hop limit only
        let mut g = f.clone();
        dr6(&mut g, fl.l3).unwrap();
        assert_eq!(g[ETH_LEN + 7], 63);
        assert!(tcp6_ok(&g, &fl));
        // NAT in
        let rs = SocketAddrV6::new(v6("2001:db8::21"), 8080, 0, 0);
        let mut g = f.clone();
        nat6_in(&mut g, &fl, rs).unwrap();
        let Classified::Flow6(nf) = classify(&g) else {
            panic!()
        };
        assert_eq!(nf.dst, rs);
        assert!(tcp6_ok(&g, &nf));
        // and back out
        let mut r = g.clone();
        {
            let mut ip = ipv6::Packet::new_unchecked(&mut r[ETH_LEN..]);
            ip.set_src_addr(*rs.ip());
            ip.set_dst_addr(v6("2001:db8::2"));
            let mut tp = tcp::Packet::new_unchecked(&mut r[nf.l4..]);
            tp.set_src_port(8080);
            tp.set_dst_port(40000);
            tp.fill_checksum(&IpAddr::V6(*rs.ip()), &IpAddr::V6(v6("2001:db8::2")));
        }
        let Classified::Flow6(rf) = classify(&r) else {
            panic!()
        };
        nat6_out(&mut r, &rf, fl.dst).unwrap();
        let Classified::Flow6(rf2) = classify(&r) else {
            panic!()
        };
        assert_eq!(rf2.src, fl.dst);
        assert!(tcp6_ok(&r, &rf2));
        // hop limit exhausted
        let mut h = f.clone();
        h[ETH_LEN + 7] = 1;
        assert_eq!(dr6(&mut h, ETH_LEN), Err(Fail::TtlExceeded));
    }

    /// Reference Internet checksum (RFC 1071), written out independently
    /// of rvs-wire: one's-complement sum of 16-bit words, complemented.
    fn ref_csum(parts: &[&[u8]]) -> u16 {
        let mut all = Vec::new();
        for p in parts {
            all.extend_from_slice(p);
        }
        if all.len() % 2 == 1 {
            all.push(0);
        }
        let mut sum: u64 = 0;
        for w in all.chunks(2) {
            sum += u64::from(u16::from_be_bytes([w[0], w[1]]));
        }
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }

    /// IPv6 pseudo-header (RFC 8200 §8.1).
    fn pseudo6(src: Ipv6Addr, dst: Ipv6Addr, proto: u8, len: usize) -> Vec<u8> {
        let mut ph = Vec::with_capacity(40);
        ph.extend_from_slice(&src.octets());
        ph.extend_from_slice(&dst.octets());
        ph.extend_from_slice(&(len as u32).to_be_bytes());
        ph.extend_from_slice(&[0, 0, 0, proto]);
        ph
    }

    /// A transport/ICMPv6 checksum is right iff the reference sum over
    /// pseudo-header + message (with the checksum field in) is 0.
    fn l4_ok6(src: Ipv6Addr, dst: Ipv6Addr, proto: u8, msg: &[u8]) -> bool {
        ref_csum(&[&pseudo6(src, dst, proto, msg.len()), msg]) == 0
    }

    const C6: &str = "2001:2:0:1::2";
    const VIP6: &str = "2001:2:0:1::100";
    const RS6: &str = "2001:2:0:1::21";
    const LVS6: &str = "2001:2:0:1::11";

    /// Client SYN [C6]:40000 -> [VIP6]:80 with `payload` bytes of data,
    /// traffic class 0xb9 (DSCP 46, ECT(1)), hop limit 64.
    /// Ethernet + IPv6 + Fragment header (offset, M) + `data`.
    fn frag6_frame(offset: u16, mf: bool, data: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; ETH_LEN + 48];
        f[..6].copy_from_slice(&LMAC.0);
        f[6..12].copy_from_slice(&RMAC.0);
        f[12..14].copy_from_slice(&ethertype::IPV6.to_be_bytes());
        let mut ip = ipv6::Packet::new_unchecked(&mut f[ETH_LEN..]);
        ip.set_ver_tc_fl(0, 0);
        ip.set_payload_len((8 + data.len()) as u16);
        ip.set_next_header(ip_proto::FRAGMENT);
        ip.set_hop_limit(64);
        ip.set_src_addr("2001:2:0:1::2".parse().unwrap());
        ip.set_dst_addr("2001:2:0:1::100".parse().unwrap());
        let fo = (offset << 3) | u16::from(mf);
        f[ETH_LEN + 40] = ip_proto::UDP;
        f[ETH_LEN + 42..ETH_LEN + 44].copy_from_slice(&fo.to_be_bytes());
        f[ETH_LEN + 44..ETH_LEN + 48].copy_from_slice(&7u32.to_be_bytes());
        f.extend_from_slice(data);
        f
    }

    #[test]
    fn classify_ipv6_fragments() {
        let udp = [0x12, 0x34, 0x00, 0x35, 0, 16, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8];
        // first and non-first fragments go to the reassembler
        for (off, mf) in [(0, true), (1, true), (1, false)] {
            match classify(&frag6_frame(off, mf, &udp)) {
                Classified::Fragment6 { src, dst, proto } => {
                    assert_eq!(src, "2001:2:0:1::2".parse::<Ipv6Addr>().unwrap());
                    assert_eq!(dst, "2001:2:0:1::100".parse::<Ipv6Addr>().unwrap());
                    assert_eq!(proto, ip_proto::UDP);
                }
                c => panic!("{c:?}"),
            }
        }
        // an atomic fragment is the UDP packet it carries
        let Classified::Flow6(fl) = classify(&frag6_frame(0, false, &udp)) else {
            panic!("atomic fragment not a flow");
        };
        assert_eq!(fl.proto, Protocol::Udp);
        assert_eq!(fl.dst.port(), 53);
        assert_eq!(fl.l4, ETH_LEN + 48);
        assert_eq!(fl.l3_len, 40 + 8 + 16);
    }

    fn syn6_plain(payload: usize) -> Vec<u8> {
        let (c, vip) = (v6(C6), v6(VIP6));
        let mut f = vec![0u8; ETH_LEN + 40 + 20 + payload];
        ethernet::Repr {
            src_addr: CMAC,
            dst_addr: LMAC,
            vlan: None,
            ethertype: ethertype::IPV6,
        }
        .emit(&mut Frame::new_unchecked(&mut f[..]));
        ipv6::Repr {
            src_addr: c,
            dst_addr: vip,
            next_header: ip_proto::TCP,
            payload_len: 20 + payload,
            hop_limit: 64,
            traffic_class: 0xb9,
            flow_label: 0x12345,
        }
        .emit(&mut ipv6::Packet::new_unchecked(&mut f[ETH_LEN..]));
        let t = ETH_LEN + 40;
        tcp::Repr {
            src_port: 40000,
            dst_port: 80,
            seq_number: 1000,
            ack_number: 0,
            flags: tcp::flags::SYN,
            window_len: 64800,
            urgent_at: 0,
            options: tcp::Options::EMPTY,
        }
        .emit(&mut tcp::Packet::new_unchecked(&mut f[t..]));
        for (i, b) in f[t + 20..].iter_mut().enumerate() {
            *b = i as u8;
        }
        tcp::Packet::new_unchecked(&mut f[t..]).fill_checksum(&IpAddr::V6(c), &IpAddr::V6(vip));
        f
    }

    fn tunnel6(kind: TunType, csum: TunCsum, src: IpAddr, dst: IpAddr, mtu: u16) -> Tunnel {
        Tunnel {
            kind,
            port: 6080,
            csum,
            src,
            dst,
            ident: 9,
            pmtu_disc: true,
            mtu,
        }
    }

    #[test]
    fn tun_ip6ip6_literal() {
        let f = syn6_plain(0);
        assert!(l4_ok6(v6(C6), v6(VIP6), 6, &f[ETH_LEN + 40..]));
        let t = tunnel6(
            TunType::Ipip,
            TunCsum::NoCsum,
            IpAddr::V6(v6(LVS6)),
            IpAddr::V6(v6(RS6)),
            1500,
        );
        assert_eq!(t.inner_mtu(), 1460);
        let mut out = Vec::new();
        tun_encap_any(&f, ETH_LEN, 60, &t, 1, (LMAC, RMAC), &mut out).unwrap();
        assert_eq!(out.len(), ETH_LEN + 40 + 60);
        assert_eq!(&out[12..14], &[0x86, 0xdd]);
        // Outer header, byte by byte: version 6, traffic class = inner
        // DSCP with ECT(1) kept (0xb9), flow label 0, payload 60, next
        // header 41, hop limit = the decremented inner one (63).
        let mut want = vec![0x6b, 0x90, 0x00, 0x00, 0x00, 60, 41, 63];
        want.extend_from_slice(&v6(LVS6).octets());
        want.extend_from_slice(&v6(RS6).octets());
        assert_eq!(&out[ETH_LEN..ETH_LEN + 40], &want[..]);
        // Inner: the original with hop limit 63, otherwise untouched.
        let mut inner = f[ETH_LEN..].to_vec();
        inner[7] = 63;
        assert_eq!(&out[ETH_LEN + 40..], &inner[..]);
        assert!(l4_ok6(v6(C6), v6(VIP6), 6, &out[ETH_LEN + 80..]));
        // CE becomes ECT(0) outside (RFC 6040), the inner keeps CE.
        let mut ce = f.clone();
        ipv6::Packet::new_unchecked(&mut ce[ETH_LEN..]).set_ver_tc_fl(0xbb, 0);
        tun_encap_any(&ce, ETH_LEN, 60, &t, 1, (LMAC, RMAC), &mut out).unwrap();
        assert_eq!(
            ipv6::Packet::new_checked(&out[ETH_LEN..])
                .unwrap()
                .traffic_class(),
            0xba
        );
        // The user-space decapsulator gets the inner packet back.
        assert_eq!(
            crate::realserver::decapsulate(&out[ETH_LEN..], None),
            Some(&ce[ETH_LEN..ETH_LEN + 60]).map(|_| &out[ETH_LEN + 40..])
        );
    }

    #[test]
    fn tun_mixed_families() {
        // IPv4 in IPv6: next header 4, inner TTL−1 with a valid checksum.
        let f = syn_frame();
        let t = tunnel6(
            TunType::Ipip,
            TunCsum::NoCsum,
            IpAddr::V6(v6(LVS6)),
            IpAddr::V6(v6(RS6)),
            1500,
        );
        let mut out = Vec::new();
        tun_encap_any(&f, ETH_LEN, 44, &t, 1, (LMAC, RMAC), &mut out).unwrap();
        let outer = ipv6::Packet::new_checked(&out[ETH_LEN..]).unwrap();
        assert_eq!(outer.next_header(), ip_proto::IPIP);
        assert_eq!(outer.payload_len(), 44);
        assert_eq!(outer.hop_limit(), 63);
        let inner = &out[ETH_LEN + 40..];
        assert_eq!(inner[8], 63);
        assert_eq!(ref_csum(&[&inner[..20]]), 0);
        assert!(tcp_ok(inner, 0));
        assert_eq!(
            crate::realserver::decapsulate(&out[ETH_LEN..], None),
            Some(inner)
        );
        // IPv6 in IPv4: protocol 41, DF 0 (the inner has none), TOS from
        // the traffic class, valid header checksum.
        let f6 = syn6_plain(0);
        let t4 = Tunnel {
            src: IpAddr::V4(Ipv4Addr::new(198, 18, 0, 11)),
            dst: IpAddr::V4(Ipv4Addr::new(198, 18, 0, 21)),
            ..t
        };
        tun_encap_any(&f6, ETH_LEN, 60, &t4, 1, (LMAC, RMAC), &mut out).unwrap();
        assert_eq!(&out[12..14], &[0x08, 0x00]);
        let o = &out[ETH_LEN..ETH_LEN + 20];
        assert_eq!(&o[..4], &[0x45, 0xb9, 0, 80]);
        assert_eq!(&o[6..10], &[0, 0, 63, 41]);
        assert_eq!(ref_csum(&[o]), 0);
        assert_eq!(out[ETH_LEN + 20 + 7], 63);
        assert_eq!(
            crate::realserver::decapsulate(&out[ETH_LEN..], None),
            Some(&out[ETH_LEN + 20..])
        );
        // Family mismatch between outer source and destination.
        let bad = Tunnel {
            src: IpAddr::V6(v6(LVS6)),
            ..t4
        };
        assert_eq!(
            tun_encap_any(&f6, ETH_LEN, 60, &bad, 1, (LMAC, RMAC), &mut out),
            Err(Fail::Malformed)
        );
    }

    #[test]
    fn tun6_gue_gre() {
        let f = syn6_plain(10);
        let (src, dst) = (IpAddr::V6(v6(LVS6)), IpAddr::V6(v6(RS6)));
        let mut out = Vec::new();
        let t = tunnel6(TunType::Gue, TunCsum::Csum, src, dst, 1500);
        assert_eq!(t.inner_mtu(), 1500 - 40 - 12);
        tun_encap_any(&f, ETH_LEN, 70, &t, 0xdead_beef, (LMAC, RMAC), &mut out).unwrap();
        let outer = ipv6::Packet::new_checked(&out[ETH_LEN..]).unwrap();
        assert_eq!(outer.next_header(), ip_proto::UDP);
        assert_eq!(usize::from(outer.payload_len()), 8 + 4 + 70);
        let u = &out[ETH_LEN + 40..];
        assert_eq!(u16::from_be_bytes([u[2], u[3]]), 6080);
        assert!((32768..=60999).contains(&u16::from_be_bytes([u[0], u[1]])));
        assert_ne!(u16::from_be_bytes([u[6], u[7]]), 0);
        assert!(l4_ok6(v6(LVS6), v6(RS6), 17, u));
        assert_eq!(&u[8..12], &[0, 41, 0, 0]);
        assert_eq!(
            crate::realserver::decapsulate(&out[ETH_LEN..], Some(6080)),
            Some(&u[12..])
        );
        // No checksum: zero (udp6_set_csum with nocheck).
        let t = tunnel6(TunType::Gue, TunCsum::NoCsum, src, dst, 1500);
        tun_encap_any(&f, ETH_LEN, 70, &t, 1, (LMAC, RMAC), &mut out).unwrap();
        assert_eq!(&out[ETH_LEN + 46..ETH_LEN + 48], &[0, 0]);
        // GRE with checksum, protocol 0x86DD for the IPv6 inner packet.
        let t = tunnel6(TunType::Gre, TunCsum::Csum, src, dst, 1500);
        tun_encap_any(&f, ETH_LEN, 70, &t, 1, (LMAC, RMAC), &mut out).unwrap();
        assert_eq!(out[ETH_LEN + 6], ip_proto::GRE);
        let g = &out[ETH_LEN + 40..];
        assert_eq!(&g[..4], &[0x80, 0, 0x86, 0xdd]);
        assert_eq!(ref_csum(&[g]), 0);
        assert_eq!(
            crate::realserver::decapsulate(&out[ETH_LEN..], None),
            Some(&g[8..])
        );
    }

    #[test]
    fn tun6_mtu_and_hop_limit() {
        let (src, dst) = (IpAddr::V6(v6(LVS6)), IpAddr::V6(v6(RS6)));
        let t = tunnel6(TunType::Ipip, TunCsum::NoCsum, src, dst, 1500);
        let mut out = Vec::new();
        // 1500-byte IPv6 packet: does not fit the 1460-byte tunnel MTU ->
        // "packet too big" with 1460 (IPv6 has no DF: always).
        let big = syn6_plain(1440);
        assert_eq!(
            tun_encap_any(&big, ETH_LEN, 1500, &t, 1, (LMAC, RMAC), &mut out),
            Err(Fail::FragNeeded(1460))
        );
        let fits = syn6_plain(1400);
        assert!(tun_encap_any(&fits, ETH_LEN, 1460, &t, 1, (LMAC, RMAC), &mut out).is_ok());
        // An IPv6 outer header needs a tunnel MTU of at least 1280.
        let small = Tunnel { mtu: 1300, ..t };
        assert_eq!(
            tun_encap_any(&fits, ETH_LEN, 1460, &small, 1, (LMAC, RMAC), &mut out),
            Err(Fail::TooBig)
        );
        // Hop limit 1: time exceeded, checked before the MTU.
        let mut h = big.clone();
        h[ETH_LEN + 7] = 1;
        assert_eq!(
            tun_encap_any(&h, ETH_LEN, 1500, &t, 1, (LMAC, RMAC), &mut out),
            Err(Fail::TtlExceeded)
        );
        let mut out = Vec::new();
        icmp6_error_frame(
            &mut out,
            (LMAC, CMAC),
            v6(VIP6),
            &big[ETH_LEN..],
            2,
            0,
            1460,
        )
        .unwrap();
        // 40 + 8 + the first 1232 bytes of the original: 1280 in all.
        assert_eq!(out.len(), ETH_LEN + 1280);
        assert_eq!(&out[..6], &CMAC.0);
        let ip = ipv6::Packet::new_checked(&out[ETH_LEN..]).unwrap();
        assert_eq!((ip.src_addr(), ip.dst_addr()), (v6(VIP6), v6(C6)));
        assert_eq!((ip.next_header(), ip.hop_limit()), (58, 64));
        let ic = &out[ETH_LEN + 40..];
        assert_eq!(&ic[..2], &[2, 0]);
        assert_eq!(&ic[4..8], &1460u32.to_be_bytes());
        assert_eq!(&ic[8..], &big[ETH_LEN..ETH_LEN + 1232]);
        assert!(l4_ok6(v6(VIP6), v6(C6), 58, ic));
    }

    /// The frame a real server sends for `quoted` (an IPv6 packet): an
    /// ICMPv6 error of `msg_type` / `code` from `src`.
    fn icmp6_from(src: Ipv6Addr, quoted: &[u8], msg_type: u8, code: u8) -> Vec<u8> {
        let mut f = Vec::new();
        icmp6_error_frame(&mut f, (RMAC, LMAC), src, quoted, msg_type, code, 0).unwrap();
        f
    }

    #[test]
    fn icmp6_errors_classified_and_nat_translated() {
        // Out: the real server's "port unreachable" about client -> rs:8080.
        let syn = syn6_plain(0);
        let Classified::Flow6(fl) = classify(&syn) else {
            panic!()
        };
        let rs = SocketAddrV6::new(v6(RS6), 8080, 0, 0);
        let mut fwd = syn.clone();
        nat6_in(&mut fwd, &fl, rs).unwrap();
        let mut f = icmp6_from(v6(RS6), &fwd[ETH_LEN..], 1, 4);
        let e = match classify(&f) {
            Classified::IcmpError6(e) => e,
            o => panic!("{o:?}"),
        };
        assert_eq!((e.msg_type, e.code, e.inner_proto), (1, 4, Protocol::Tcp));
        assert_eq!((e.src, e.dst), (v6(RS6), v6(C6)));
        assert_eq!((e.inner_src, e.inner_dst), (fl.src, rs));
        assert_eq!((e.icmp, e.inner_l4), (ETH_LEN + 40, ETH_LEN + 48 + 40));
        nat_icmp6(&mut f, &e, false, fl.dst).unwrap();
        let ip = ipv6::Packet::new_checked(&f[ETH_LEN..]).unwrap();
        assert_eq!((ip.src_addr(), ip.dst_addr()), (v6(VIP6), v6(C6)));
        assert_eq!(ip.hop_limit(), 63);
        let ic = &f[ETH_LEN + 40..];
        assert!(l4_ok6(v6(VIP6), v6(C6), 58, ic));
        // the quoted packet is now exactly what the client sent
        let mut q = fwd[ETH_LEN..].to_vec();
        q[24..40].copy_from_slice(&v6(VIP6).octets());
        q[40 + 2..40 + 4].copy_from_slice(&80u16.to_be_bytes());
        assert_eq!(&ic[8..], &q[..]);
        // In: a client's error about our reply VIP:80 -> client goes to rs.
        let mut reply = syn.clone();
        {
            let mut p = ipv6::Packet::new_unchecked(&mut reply[ETH_LEN..]);
            p.set_src_addr(v6(VIP6));
            p.set_dst_addr(v6(C6));
            let mut t = tcp::Packet::new_unchecked(&mut reply[ETH_LEN + 40..]);
            t.set_src_port(80);
            t.set_dst_port(40000);
        }
        let mut g = Vec::new();
        icmp6_error_frame(&mut g, (CMAC, LMAC), v6(C6), &reply[ETH_LEN..], 3, 0, 0).unwrap();
        let Classified::IcmpError6(e) = classify(&g) else {
            panic!("{:?}", classify(&g))
        };
        assert_eq!((e.inner_src, e.inner_dst), (fl.dst, fl.src));
        nat_icmp6(&mut g, &e, true, rs).unwrap();
        let ip = ipv6::Packet::new_checked(&g[ETH_LEN..]).unwrap();
        assert_eq!((ip.src_addr(), ip.dst_addr()), (v6(C6), v6(RS6)));
        let ic = &g[ETH_LEN + 40..];
        assert!(l4_ok6(v6(C6), v6(RS6), 58, ic));
        assert_eq!(&ic[8 + 8..8 + 24], &v6(RS6).octets());
        assert_eq!(&ic[48..50], &8080u16.to_be_bytes());
        // A broken ICMPv6 checksum is malformed; echo is not an error.
        let mut bad = f.clone();
        bad[ETH_LEN + 42] ^= 1;
        assert_eq!(classify(&bad), Classified::Malformed(Error::Checksum));
        let echo = icmp6_from(v6(RS6), &fwd[ETH_LEN..], 128, 0);
        assert_eq!(classify(&echo), Classified::Other);
        // Truncated quotes never panic.
        for n in 0..f.len() {
            let _ = classify(&f[..n]);
        }
    }

    #[test]
    fn gso_segmentation6() {
        let f = syn6_plain(3000);
        let Classified::Flow6(fl) = classify(&f) else {
            panic!()
        };
        let mut segs = Vec::new();
        segment_tcp6(&f, &fl, 1500, &mut segs).unwrap();
        // mss 1440: 1440 + 1440 + 120
        assert_eq!(segs.len(), 3);
        let mut joined = Vec::new();
        for (i, s) in segs.iter().enumerate() {
            let Classified::Flow6(sf) = classify(s) else {
                panic!()
            };
            assert!(sf.l3_len <= 1500);
            assert!(l4_ok6(v6(C6), v6(VIP6), 6, &s[sf.l4..]));
            let t = tcp::Packet::new_checked(&s[sf.l4..]).unwrap();
            assert_eq!(t.seq_number(), 1000 + (i * 1440) as u32);
            joined.extend_from_slice(t.payload());
        }
        assert_eq!(joined, f[ETH_LEN + 60..]);
        assert_eq!(segment_tcp6(&f, &fl, 60, &mut segs), Err(Fail::Malformed));
    }

    #[test]
    fn neighbor_discovery() {
        let ns = nd_solicit(LMAC, v6("2001:db8::11"), v6("2001:db8::21"));
        assert_eq!(&ns[..6], &[0x33, 0x33, 0xff, 0, 0, 0x21]);
        let ip = ipv6::Packet::new_checked(&ns[ETH_LEN..]).unwrap();
        assert_eq!(ip.dst_addr(), v6("ff02::1:ff00:21"));
        assert_eq!(ip.hop_limit(), 255);
        let ic = icmpv6::Packet::new_checked(ip.payload()).unwrap();
        assert!(ic.verify_checksum(&ip.src_addr(), &ip.dst_addr()));
        // the solicitation itself teaches us the sender
        assert_eq!(
            classify(&ns),
            Classified::Neighbor {
                ip: v6("2001:db8::11"),
                mac: LMAC
            }
        );
        // an advertisement for the target with its link-layer address
        let mut na = ns;
        {
            let icmp = &mut na[ETH_LEN + 40..];
            icmp[24] = 2; // target link-layer address option
            icmp[26..32].copy_from_slice(&RMAC.0);
        }
        let (s, d) = (v6("2001:db8::21"), v6("2001:db8::11"));
        {
            let mut ip = ipv6::Packet::new_unchecked(&mut na[ETH_LEN..]);
            ip.set_src_addr(s);
            ip.set_dst_addr(d);
        }
        icmpv6::Repr {
            msg_type: icmpv6::msg_type::NEIGHBOR_ADVERT,
            code: 0,
            rest: 0x6000_0000,
        }
        .emit(
            &mut icmpv6::Packet::new_unchecked(&mut na[ETH_LEN + 40..]),
            &s,
            &d,
        );
        assert_eq!(
            classify(&na),
            Classified::Neighbor {
                ip: v6("2001:db8::21"),
                mac: RMAC
            }
        );
    }

    #[test]
    fn arp_frame() {
        let b = arp_request(
            LMAC,
            Ipv4Addr::new(198, 18, 0, 11),
            Ipv4Addr::new(198, 18, 0, 21),
        );
        match classify(&b) {
            Classified::Arp(r) => {
                assert_eq!(r.operation, arp::OP_REQUEST);
                assert_eq!(r.target_protocol_addr, Ipv4Addr::new(198, 18, 0, 21));
            }
            o => panic!("{o:?}"),
        }
    }

    #[test]
    fn no_panic_on_garbage() {
        let mut x: u32 = 1;
        for n in 0..300usize {
            let mut f = syn_frame();
            for _ in 0..4 {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                let i = (x as usize >> 8) % f.len();
                f[i] = (x >> 16) as u8;
            }
            f.truncate(n % 80);
            let _ = classify(&f);
            if let Classified::Flow(fl) = classify(&f) {
                let mut g = f.clone();
                let _ = nat_in(&mut g, &fl, rs());
                let _ = dr(&mut g, fl.l3);
            }
        }
    }
}
