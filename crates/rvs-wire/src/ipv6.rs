//! IPv6 (RFC 8200): fixed header view, extension-header walk to the upper
//! layer (hop-by-hop, routing, fragment, destination options, AH), and the
//! fragment header.

use crate::{be16, be32, clamp, clamp_mut, ip_proto, put16, put32, Error, Result};
use core::net::Ipv6Addr;

mod field {
    pub const VER_TC_FL: usize = 0;
    pub const PAYLOAD_LEN: usize = 4;
    pub const NEXT_HEADER: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC: usize = 8;
    pub const DST: usize = 24;
}

/// Fixed header length.
pub const HEADER_LEN: usize = 40;
/// Fragment header length.
pub const FRAGMENT_HEADER_LEN: usize = 8;
/// Upper bound on extension headers walked before giving up.
pub const MAX_EXT_HEADERS: usize = 16;

/// A read/write view of an IPv6 packet.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

/// Fragment information found while walking extension headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FragmentInfo {
    /// Fragment offset in 8-byte units.
    pub offset: u16,
    /// More fragments follow.
    pub more_frags: bool,
    /// Identification.
    pub ident: u32,
}

/// Where the upper-layer header starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UpperLayer {
    /// Upper-layer protocol (TCP, UDP, ICMPv6, …; [`ip_proto::NONE`] for
    /// "no next header"; for a non-first fragment, the protocol of the
    /// fragmented packet).
    pub protocol: u8,
    /// Offset of the upper-layer header from the start of the IPv6 packet.
    pub offset: usize,
    /// Present if a fragment header was crossed. When `offset != 0` the
    /// upper-layer header is *not* in this packet.
    pub fragment: Option<FragmentInfo>,
}

impl UpperLayer {
    /// Is the upper-layer header in this packet (not a non-first fragment)?
    pub fn has_header(&self) -> bool {
        self.fragment.is_none_or(|f| f.offset == 0)
    }
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wrap without checking.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }
    /// Wrap and validate: version 6, 40 + payload length within the buffer
    /// (the buffer may be longer).
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }
    /// Only the fixed header must be complete (embedded in ICMPv6 errors).
    pub fn new_checked_header(buffer: T) -> Result<Packet<T>> {
        let p = Self::new_unchecked(buffer);
        p.check_header()?;
        Ok(p)
    }
    fn check_header(&self) -> Result<()> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if self.version() != 6 {
            return Err(Error::Malformed);
        }
        Ok(())
    }
    /// Full validation.
    pub fn check_len(&self) -> Result<()> {
        self.check_header()?;
        if HEADER_LEN + usize::from(self.payload_len()) > self.buffer.as_ref().len() {
            return Err(Error::Truncated);
        }
        Ok(())
    }
    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }
    /// Version (6).
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_TC_FL] >> 4
    }
    /// Traffic class.
    pub fn traffic_class(&self) -> u8 {
        ((be16(self.buffer.as_ref(), 0) >> 4) & 0xff) as u8
    }
    /// Flow label (20 bits).
    pub fn flow_label(&self) -> u32 {
        be32(self.buffer.as_ref(), 0) & 0x000f_ffff
    }
    /// Payload length field.
    pub fn payload_len(&self) -> u16 {
        be16(self.buffer.as_ref(), field::PAYLOAD_LEN)
    }
    /// Next header.
    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[field::NEXT_HEADER]
    }
    /// Hop limit.
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
    }
    /// Source address.
    pub fn src_addr(&self) -> Ipv6Addr {
        let mut a = [0u8; 16];
        a.copy_from_slice(&self.buffer.as_ref()[field::SRC..field::SRC + 16]);
        Ipv6Addr::from(a)
    }
    /// Destination address.
    pub fn dst_addr(&self) -> Ipv6Addr {
        let mut a = [0u8; 16];
        a.copy_from_slice(&self.buffer.as_ref()[field::DST..field::DST + 16]);
        Ipv6Addr::from(a)
    }
    /// Payload (after the fixed header, to payload length; clamped).
    pub fn payload(&self) -> &[u8] {
        clamp(
            self.buffer.as_ref(),
            HEADER_LEN,
            HEADER_LEN + usize::from(self.payload_len()),
        )
    }
    /// The whole packet as bounded by the payload length (clamped).
    pub fn packet(&self) -> &[u8] {
        clamp(
            self.buffer.as_ref(),
            0,
            HEADER_LEN + usize::from(self.payload_len()),
        )
    }

    /// Walk the extension headers to the upper layer.
    ///
    /// Hop-by-hop (0), routing (43), destination options (60) and AH (51)
    /// are skipped by their length; a fragment header (44) is recorded and,
    /// for a non-first fragment, the walk stops there. Any other next-header
    /// value (including ESP and "no next header") is the upper layer.
    /// Errors: [`Error::Truncated`] if a header runs past the payload,
    /// [`Error::Malformed`] after [`MAX_EXT_HEADERS`] headers.
    pub fn upper_layer(&self) -> Result<UpperLayer> {
        let pkt = self.packet();
        let mut nh = self.next_header();
        let mut off = HEADER_LEN;
        let mut fragment = None;
        for _ in 0..MAX_EXT_HEADERS {
            match nh {
                ip_proto::HOPOPTS | ip_proto::ROUTING | ip_proto::DSTOPTS | ip_proto::AH => {
                    let h = pkt.get(off..off + 2).ok_or(Error::Truncated)?;
                    let len = if nh == ip_proto::AH {
                        (usize::from(h[1]) + 2) * 4
                    } else {
                        (usize::from(h[1]) + 1) * 8
                    };
                    if off + len > pkt.len() {
                        return Err(Error::Truncated);
                    }
                    nh = h[0];
                    off += len;
                }
                ip_proto::FRAGMENT => {
                    let h = pkt
                        .get(off..off + FRAGMENT_HEADER_LEN)
                        .ok_or(Error::Truncated)?;
                    let fo = be16(h, 2);
                    let info = FragmentInfo {
                        offset: fo >> 3,
                        more_frags: fo & 1 != 0,
                        ident: be32(h, 4),
                    };
                    fragment = Some(info);
                    nh = h[0];
                    off += FRAGMENT_HEADER_LEN;
                    if info.offset != 0 {
                        return Ok(UpperLayer {
                            protocol: nh,
                            offset: off,
                            fragment,
                        });
                    }
                }
                _ => {
                    return Ok(UpperLayer {
                        protocol: nh,
                        offset: off,
                        fragment,
                    })
                }
            }
        }
        Err(Error::Malformed)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Set version 6, traffic class and flow label.
    pub fn set_ver_tc_fl(&mut self, traffic_class: u8, flow_label: u32) {
        let v = (6u32 << 28) | (u32::from(traffic_class) << 20) | (flow_label & 0x000f_ffff);
        put32(self.buffer.as_mut(), field::VER_TC_FL, v)
    }
    /// Set the payload length.
    pub fn set_payload_len(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::PAYLOAD_LEN, v)
    }
    /// Set the next header.
    pub fn set_next_header(&mut self, v: u8) {
        self.buffer.as_mut()[field::NEXT_HEADER] = v
    }
    /// Set the hop limit.
    pub fn set_hop_limit(&mut self, v: u8) {
        self.buffer.as_mut()[field::HOP_LIMIT] = v
    }
    /// Set the source address.
    pub fn set_src_addr(&mut self, a: Ipv6Addr) {
        self.buffer.as_mut()[field::SRC..field::SRC + 16].copy_from_slice(&a.octets())
    }
    /// Set the destination address.
    pub fn set_dst_addr(&mut self, a: Ipv6Addr) {
        self.buffer.as_mut()[field::DST..field::DST + 16].copy_from_slice(&a.octets())
    }
    /// Decrement the hop limit (no checksum in IPv6). `None` if it was ≤ 1.
    pub fn decrement_hop_limit(&mut self) -> Option<u8> {
        let h = self.hop_limit();
        if h <= 1 {
            return None;
        }
        self.set_hop_limit(h - 1);
        Some(h - 1)
    }
    /// Mutable payload.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = HEADER_LEN + usize::from(self.payload_len());
        clamp_mut(self.buffer.as_mut(), HEADER_LEN, end)
    }
}

/// High-level IPv6 fixed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Source.
    pub src_addr: Ipv6Addr,
    /// Destination.
    pub dst_addr: Ipv6Addr,
    /// Next header.
    pub next_header: u8,
    /// Payload length.
    pub payload_len: usize,
    /// Hop limit.
    pub hop_limit: u8,
    /// Traffic class.
    pub traffic_class: u8,
    /// Flow label (20 bits).
    pub flow_label: u32,
}

impl Repr {
    /// Parse the fixed header.
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Result<Repr> {
        p.check_len()?;
        Ok(Repr {
            src_addr: p.src_addr(),
            dst_addr: p.dst_addr(),
            next_header: p.next_header(),
            payload_len: usize::from(p.payload_len()),
            hop_limit: p.hop_limit(),
            traffic_class: p.traffic_class(),
            flow_label: p.flow_label(),
        })
    }
    /// 40.
    pub fn header_len(&self) -> usize {
        HEADER_LEN
    }
    /// Header plus payload.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.payload_len
    }
    /// Write the fixed header.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>) {
        p.set_ver_tc_fl(self.traffic_class, self.flow_label);
        p.set_payload_len(self.payload_len as u16);
        p.set_next_header(self.next_header);
        p.set_hop_limit(self.hop_limit);
        p.set_src_addr(self.src_addr);
        p.set_dst_addr(self.dst_addr);
    }
}

/// Fragment header (8 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FragmentRepr {
    /// Next header.
    pub next_header: u8,
    /// Offset and flags.
    pub info: FragmentInfo,
}

impl FragmentRepr {
    /// Parse from the 8 header bytes.
    pub fn parse(b: &[u8]) -> Result<FragmentRepr> {
        let h = b.get(..FRAGMENT_HEADER_LEN).ok_or(Error::Truncated)?;
        let fo = be16(h, 2);
        Ok(FragmentRepr {
            next_header: h[0],
            info: FragmentInfo {
                offset: fo >> 3,
                more_frags: fo & 1 != 0,
                ident: be32(h, 4),
            },
        })
    }
    /// Write into the first 8 bytes of `b`.
    pub fn emit(&self, b: &mut [u8]) {
        b[0] = self.next_header;
        b[1] = 0;
        put16(
            b,
            2,
            (self.info.offset << 3) | u16::from(self.info.more_frags),
        );
        put32(b, 4, self.info.ident);
    }
}

#[cfg(test)]
mod test {
    use super::*;

    fn header(next: u8, plen: u16) -> [u8; 40] {
        let mut b = [0u8; 40];
        b[0] = 0x6a; // v6, tc 0xa3
        b[1] = 0x31; // tc low nibble 3, flow label 0x1_2345
        b[2] = 0x23;
        b[3] = 0x45;
        b[4..6].copy_from_slice(&plen.to_be_bytes());
        b[6] = next;
        b[7] = 64;
        b[8..24].copy_from_slice(&"2001:db8::2".parse::<Ipv6Addr>().unwrap().octets());
        b[24..40].copy_from_slice(&"2001:db8::100".parse::<Ipv6Addr>().unwrap().octets());
        b
    }

    #[test]
    fn fixed_header() {
        let b = header(ip_proto::TCP, 0);
        let p = Packet::new_checked(&b[..]).unwrap();
        let r = Repr::parse(&p).unwrap();
        assert_eq!(r.traffic_class, 0xa3);
        assert_eq!(r.flow_label, 0x1_2345);
        assert_eq!(r.hop_limit, 64);
        assert_eq!(r.dst_addr, "2001:db8::100".parse::<Ipv6Addr>().unwrap());
        let mut out = [0u8; 40];
        r.emit(&mut Packet::new_unchecked(&mut out[..]));
        assert_eq!(out, b);
        let up = p.upper_layer().unwrap();
        assert_eq!(
            up,
            UpperLayer {
                protocol: ip_proto::TCP,
                offset: 40,
                fragment: None
            }
        );
    }

    #[test]
    fn ext_walk() {
        // hop-by-hop (8 bytes) -> dstopts (16 bytes) -> fragment (first) -> UDP
        let mut b = [0u8; 40 + 8 + 16 + 8 + 8];
        b[..40].copy_from_slice(&header(ip_proto::HOPOPTS, 40));
        b[40] = ip_proto::DSTOPTS;
        b[41] = 0;
        b[48] = ip_proto::FRAGMENT;
        b[49] = 1;
        b[64] = ip_proto::UDP;
        b[66..68].copy_from_slice(&1u16.to_be_bytes()); // offset 0, M
        b[68..72].copy_from_slice(&0xdead_beefu32.to_be_bytes());
        let p = Packet::new_checked(&b[..]).unwrap();
        let up = p.upper_layer().unwrap();
        assert_eq!(up.protocol, ip_proto::UDP);
        assert_eq!(up.offset, 72);
        assert_eq!(
            up.fragment,
            Some(FragmentInfo {
                offset: 0,
                more_frags: true,
                ident: 0xdead_beef
            })
        );
        assert!(up.has_header());
        // non-first fragment
        b[66..68].copy_from_slice(&(10u16 << 3).to_be_bytes());
        let up = Packet::new_checked(&b[..]).unwrap().upper_layer().unwrap();
        assert!(!up.has_header());
        assert_eq!(FragmentRepr::parse(&b[64..]).unwrap().info.offset, 10);
        let mut fh = [0u8; 8];
        FragmentRepr::parse(&b[64..]).unwrap().emit(&mut fh);
        assert_eq!(fh, b[64..72]);
        // truncated ext header
        b[49] = 5;
        assert_eq!(
            Packet::new_checked(&b[..])
                .unwrap()
                .upper_layer()
                .unwrap_err(),
            Error::Truncated
        );
    }

    #[test]
    fn loop_guard() {
        // 17 hop-by-hop headers in a row
        let n = MAX_EXT_HEADERS + 1;
        let mut b = [0u8; 40 + 8 * 17];
        b[..40].copy_from_slice(&header(ip_proto::HOPOPTS, (8 * n) as u16));
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.upper_layer().unwrap_err(), Error::Malformed);
    }

    #[test]
    fn errors() {
        let b = header(ip_proto::TCP, 1);
        assert_eq!(Packet::new_checked(&b[..]).unwrap_err(), Error::Truncated);
        assert!(Packet::new_checked_header(&b[..]).is_ok());
        let mut x = header(ip_proto::TCP, 0);
        x[0] = 0x4a;
        assert_eq!(Packet::new_checked(&x[..]).unwrap_err(), Error::Malformed);
        assert_eq!(Packet::new_checked(&x[..39]).unwrap_err(), Error::Truncated);
    }
}
