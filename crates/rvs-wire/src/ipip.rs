//! IP-in-IP encapsulation (RFC 2003) as IPVS's TUN forwarding builds it
//! (`ip_vs_tunnel_xmit`): the inner packet is untouched and gets an outer
//! IPv4 header whose TOS copies the inner DSCP with RFC 6040 ECN rules, TTL
//! copies the inner TTL / hop limit, DF copies the inner DF when path-MTU
//! discovery is on (sysctl `pmtu_disc`, default 1; always 0 for an IPv6
//! inner packet), and the protocol is IPIP (4) or IPv6 (41).
//!
//! The same outer header is used for GUE (protocol UDP) and GRE (protocol
//! GRE) with `extra` bytes of tunnel header between outer and inner.

use crate::{ip_proto, ipv4, ipv6, Error, Result};
use core::net::Ipv4Addr;

/// Outer IPv4 header length.
pub const OUTER_LEN: usize = ipv4::HEADER_LEN;

const ECN_MASK: u8 = 0x03;
const ECN_ECT_0: u8 = 0x02;
const ECN_CE: u8 = 0x03;

/// `INET_ECN_encapsulate(outer, inner)`: keep the outer DSCP, copy the inner
/// ECN codepoint except CE, which becomes ECT(0).
pub fn ecn_encapsulate(outer: u8, inner: u8) -> u8 {
    let o = outer & !ECN_MASK;
    if inner & ECN_MASK == ECN_CE {
        o | ECN_ECT_0
    } else {
        o | (inner & ECN_MASK)
    }
}

/// What the outer header needs from the inner packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct InnerInfo {
    /// IPIP (4) for an IPv4 inner packet, IPv6 (41) for IPv6.
    pub protocol: u8,
    /// Inner DSCP/ECN (traffic class for IPv6).
    pub dsfield: u8,
    /// Inner TTL / hop limit.
    pub ttl: u8,
    /// Inner DF (always `false` for IPv6).
    pub dont_frag: bool,
    /// Inner packet length.
    pub len: usize,
}

impl InnerInfo {
    /// Inspect the inner IPv4 or IPv6 packet.
    pub fn of(inner: &[u8]) -> Result<InnerInfo> {
        match inner.first().map(|b| b >> 4) {
            Some(4) => {
                let p = ipv4::Packet::new_checked(inner)?;
                Ok(InnerInfo {
                    protocol: ip_proto::IPIP,
                    dsfield: p.dscp_ecn(),
                    ttl: p.ttl(),
                    dont_frag: p.dont_frag(),
                    len: usize::from(p.total_len()),
                })
            }
            Some(6) => {
                let p = ipv6::Packet::new_checked(inner)?;
                Ok(InnerInfo {
                    protocol: ip_proto::IPV6,
                    dsfield: p.traffic_class(),
                    ttl: p.hop_limit(),
                    dont_frag: false,
                    len: p.packet().len(),
                })
            }
            Some(_) => Err(Error::Malformed),
            None => Err(Error::Truncated),
        }
    }
}

/// Outer IPv4 header for a tunnelled packet.
///
/// * `protocol`: `None` for plain IPIP (4 or 41 from the inner version), or
///   `Some(UDP)` / `Some(GRE)` for GUE / GRE;
/// * `extra`: bytes of tunnel header between the outer and inner headers;
/// * `pmtu_disc`: the IPVS sysctl (copy DF from the inner packet).
pub fn outer_repr(
    inner: &InnerInfo,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ident: u16,
    pmtu_disc: bool,
    protocol: Option<u8>,
    extra: usize,
) -> Result<ipv4::Repr> {
    let payload_len = inner.len + extra;
    if OUTER_LEN + payload_len > usize::from(u16::MAX) {
        return Err(Error::Malformed);
    }
    Ok(ipv4::Repr {
        src_addr: src,
        dst_addr: dst,
        protocol: protocol.unwrap_or(inner.protocol),
        payload_len,
        ttl: inner.ttl,
        dscp_ecn: ecn_encapsulate(inner.dsfield, inner.dsfield),
        ident,
        dont_frag: pmtu_disc && inner.dont_frag,
        more_frags: false,
        frag_offset: 0,
        options: ipv4::Options::EMPTY,
    })
}

/// Encapsulate in place: `buf[OUTER_LEN..OUTER_LEN + inner_len]` holds the
/// inner packet; writes the 20-byte outer IPIP header in front of it and
/// returns the total length.
pub fn encapsulate(
    buf: &mut [u8],
    inner_len: usize,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ident: u16,
    pmtu_disc: bool,
) -> Result<usize> {
    let inner = buf
        .get(OUTER_LEN..OUTER_LEN + inner_len)
        .ok_or(Error::Truncated)?;
    let info = InnerInfo::of(inner)?;
    if info.len != inner_len {
        return Err(Error::Malformed);
    }
    let r = outer_repr(&info, src, dst, ident, pmtu_disc, None, 0)?;
    r.emit(&mut ipv4::Packet::new_unchecked(&mut buf[..OUTER_LEN]));
    Ok(OUTER_LEN + inner_len)
}

/// Decapsulate: for an IPv4 packet with protocol IPIP or IPv6, the inner
/// packet bytes.
pub fn decapsulate<'a>(outer: &ipv4::Packet<&'a [u8]>) -> Result<&'a [u8]> {
    outer.check_len()?;
    if !matches!(outer.protocol(), ip_proto::IPIP | ip_proto::IPV6) {
        return Err(Error::Unsupported);
    }
    if outer.is_fragment() {
        return Err(Error::Unsupported);
    }
    let b: &'a [u8] = outer_bytes(outer);
    let hl = outer.header_len();
    let tl = usize::from(outer.total_len());
    b.get(hl..tl).ok_or(Error::Truncated)
}

fn outer_bytes<'a>(p: &ipv4::Packet<&'a [u8]>) -> &'a [u8] {
    p.clone().into_inner()
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::checksum;

    static INNER: [u8; 20] = [
        0x45, 0x03, 0x00, 0x14, 0xab, 0xcd, 0x40, 0x00, 0x3f, 0x06, 0x00, 0x00, 198, 18, 0, 2, 198,
        18, 0, 100,
    ];

    #[test]
    fn ecn() {
        assert_eq!(ecn_encapsulate(0xb8, 0xb8), 0xb8);
        assert_eq!(ecn_encapsulate(0xb9, 0xb9), 0xb9);
        assert_eq!(ecn_encapsulate(0xbb, 0xbb), 0xba);
    }

    #[test]
    fn encap_literal() {
        let mut buf = [0u8; 40];
        buf[20..].copy_from_slice(&INNER);
        let n = encapsulate(
            &mut buf,
            20,
            [198, 18, 0, 11].into(),
            [198, 18, 0, 21].into(),
            1,
            true,
        )
        .unwrap();
        assert_eq!(n, 40);
        let mut expect: [u8; 20] = [
            0x45, 0x02, 0x00, 0x28, 0x00, 0x01, 0x40, 0x00, 0x3f, 0x04, 0x00, 0x00, 198, 18, 0, 11,
            198, 18, 0, 21,
        ];
        let c = checksum::checksum(&expect);
        expect[10..12].copy_from_slice(&c.to_be_bytes());
        assert_eq!(buf[..20], expect);
        let outer = ipv4::Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(decapsulate(&outer).unwrap(), &INNER);
        // pmtu_disc off: DF cleared
        encapsulate(
            &mut buf,
            20,
            [198, 18, 0, 11].into(),
            [198, 18, 0, 21].into(),
            1,
            false,
        )
        .unwrap();
        assert!(!ipv4::Packet::new_checked(&buf[..]).unwrap().dont_frag());
        assert_eq!(
            encapsulate(&mut buf, 21, [0; 4].into(), [0; 4].into(), 0, true).unwrap_err(),
            Error::Truncated
        );
    }
}
