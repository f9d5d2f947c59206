//! ICMPv6 (RFC 4443): view, checksum with the IPv6 pseudo-header, the packet
//! embedded in error messages, and error builders ("packet too big", "time
//! exceeded").

use crate::{be16, be32, checksum, clamp, clamp_mut, ip_proto, ipv6, put16, put32, Error, Result};
use core::net::Ipv6Addr;

mod field {
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: usize = 2;
    pub const REST: usize = 4;
}

/// Header length.
pub const HEADER_LEN: usize = 8;
/// Max bytes of an ICMPv6 error quoting the original (the whole IPv6
/// packet must fit in the minimum MTU 1280: 1280 − 40 − 8).
pub const MAX_QUOTE: usize = 1232;

/// Message types.
pub mod msg_type {
    /// Destination unreachable.
    pub const DST_UNREACHABLE: u8 = 1;
    /// Packet too big.
    pub const PKT_TOO_BIG: u8 = 2;
    /// Time exceeded.
    pub const TIME_EXCEEDED: u8 = 3;
    /// Parameter problem.
    pub const PARAM_PROBLEM: u8 = 4;
    /// Echo request.
    pub const ECHO_REQUEST: u8 = 128;
    /// Echo reply.
    pub const ECHO_REPLY: u8 = 129;
    /// Neighbour solicitation.
    pub const NEIGHBOR_SOLICIT: u8 = 135;
    /// Neighbour advertisement.
    pub const NEIGHBOR_ADVERT: u8 = 136;
}

/// A read/write view of an ICMPv6 message.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wrap without checking.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }
    /// Wrap and check the header length.
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }
    /// Length check.
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        Ok(())
    }
    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }
    /// Type.
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }
    /// Code.
    pub fn code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }
    /// Checksum field.
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM)
    }
    /// Rest-of-header word.
    pub fn rest(&self) -> u32 {
        be32(self.buffer.as_ref(), field::REST)
    }
    /// MTU of a "packet too big".
    pub fn mtu(&self) -> u32 {
        self.rest()
    }
    /// Data after the header (clamped).
    pub fn data(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        clamp(b, HEADER_LEN, b.len())
    }
    /// Error message (type < 128)?
    pub fn is_error(&self) -> bool {
        self.msg_type() & 0x80 == 0
    }
    /// The quoted IPv6 packet of an error (fixed header complete).
    pub fn embedded(&self) -> Result<ipv6::Packet<&[u8]>> {
        if !self.is_error() {
            return Err(Error::Unsupported);
        }
        ipv6::Packet::new_checked_header(self.data())
    }
    /// Does the checksum verify?
    pub fn verify_checksum(&self, src: &Ipv6Addr, dst: &Ipv6Addr) -> bool {
        let b = self.buffer.as_ref();
        let ph = checksum::pseudo_header_v6(src, dst, ip_proto::ICMPV6, b.len() as u32);
        checksum::fold(checksum::add(ph, checksum::sum(b))) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Set the type.
    pub fn set_msg_type(&mut self, v: u8) {
        self.buffer.as_mut()[field::TYPE] = v
    }
    /// Set the code.
    pub fn set_code(&mut self, v: u8) {
        self.buffer.as_mut()[field::CODE] = v
    }
    /// Set the checksum field.
    pub fn set_checksum(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::CHECKSUM, v)
    }
    /// Set the rest-of-header word.
    pub fn set_rest(&mut self, v: u32) {
        put32(self.buffer.as_mut(), field::REST, v)
    }
    /// Mutable data.
    pub fn data_mut(&mut self) -> &mut [u8] {
        let b = self.buffer.as_mut();
        let len = b.len();
        clamp_mut(b, HEADER_LEN, len)
    }
    /// Compute and store the checksum.
    pub fn fill_checksum(&mut self, src: &Ipv6Addr, dst: &Ipv6Addr) {
        self.set_checksum(0);
        let b = self.buffer.as_ref();
        let ph = checksum::pseudo_header_v6(src, dst, ip_proto::ICMPV6, b.len() as u32);
        let c = checksum::finish(checksum::add(ph, checksum::sum(b)));
        self.set_checksum(c)
    }
}

/// High-level ICMPv6 header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Type.
    pub msg_type: u8,
    /// Code.
    pub code: u8,
    /// Rest of header.
    pub rest: u32,
}

impl Repr {
    /// Parse and verify the checksum against the pseudo-header.
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>, src: &Ipv6Addr, dst: &Ipv6Addr) -> Result<Repr> {
        p.check_len()?;
        if !p.verify_checksum(src, dst) {
            return Err(Error::Checksum);
        }
        Ok(Repr {
            msg_type: p.msg_type(),
            code: p.code(),
            rest: p.rest(),
        })
    }
    /// 8.
    pub fn header_len(&self) -> usize {
        HEADER_LEN
    }
    /// Write the header and the checksum (data must be in place).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        p: &mut Packet<T>,
        src: &Ipv6Addr,
        dst: &Ipv6Addr,
    ) {
        p.set_msg_type(self.msg_type);
        p.set_code(self.code);
        p.set_rest(self.rest);
        p.fill_checksum(src, dst);
    }
}

/// Build an ICMPv6 error quoting `original` (cut to [`MAX_QUOTE`]); `src`
/// and `dst` are the addresses of the IPv6 packet that will carry it.
pub fn build_error(
    out: &mut [u8],
    msg_type: u8,
    code: u8,
    rest: u32,
    original: &[u8],
    src: &Ipv6Addr,
    dst: &Ipv6Addr,
) -> Result<usize> {
    let orig = ipv6::Packet::new_checked_header(original)?;
    let olen = orig.packet().len().min(MAX_QUOTE);
    let n = HEADER_LEN + olen;
    let buf = out.get_mut(..n).ok_or(Error::Truncated)?;
    buf[HEADER_LEN..].copy_from_slice(&original[..olen]);
    Repr {
        msg_type,
        code,
        rest,
    }
    .emit(&mut Packet::new_unchecked(buf), src, dst);
    Ok(n)
}

/// Build "packet too big" with `mtu`.
pub fn packet_too_big(
    out: &mut [u8],
    mtu: u32,
    original: &[u8],
    src: &Ipv6Addr,
    dst: &Ipv6Addr,
) -> Result<usize> {
    build_error(out, msg_type::PKT_TOO_BIG, 0, mtu, original, src, dst)
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn echo_literal() {
        let src: Ipv6Addr = "fe80::1".parse().unwrap();
        let dst: Ipv6Addr = "fe80::2".parse().unwrap();
        let mut b = [0x80, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x02, 0xde, 0xad];
        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        p.fill_checksum(&src, &dst);
        // reference over pseudo-header + message
        let mut ph = [0u8; 40 + 10];
        ph[0..16].copy_from_slice(&src.octets());
        ph[16..32].copy_from_slice(&dst.octets());
        ph[32..36].copy_from_slice(&10u32.to_be_bytes());
        ph[39] = 58;
        ph[40..].copy_from_slice(&[0x80, 0, 0, 0, 0, 1, 0, 2, 0xde, 0xad]);
        assert_eq!(p.checksum(), checksum::checksum(&ph));
        let r = Repr::parse(&p, &src, &dst).unwrap();
        assert_eq!(
            r,
            Repr {
                msg_type: 128,
                code: 0,
                rest: 0x0001_0002
            }
        );
        assert!(!p.is_error());
        assert_eq!(Repr::parse(&p, &dst, &dst).unwrap_err(), Error::Checksum);
    }

    #[test]
    fn too_big() {
        let mut orig = [0u8; 80];
        ipv6::Repr {
            src_addr: "2001:db8::2".parse().unwrap(),
            dst_addr: "2001:db8::100".parse().unwrap(),
            next_header: 6,
            payload_len: 1460,
            hop_limit: 63,
            traffic_class: 0,
            flow_label: 0,
        }
        .emit(&mut ipv6::Packet::new_unchecked(&mut orig[..]));
        let s: Ipv6Addr = "2001:db8::11".parse().unwrap();
        let d: Ipv6Addr = "2001:db8::2".parse().unwrap();
        let mut out = [0u8; 200];
        let n = packet_too_big(&mut out, 1400, &orig, &s, &d).unwrap();
        assert_eq!(n, 88);
        let p = Packet::new_checked(&out[..n]).unwrap();
        assert!(p.verify_checksum(&s, &d) && p.is_error());
        assert_eq!(p.mtu(), 1400);
        assert_eq!(p.embedded().unwrap().hop_limit(), 63);
    }
}
