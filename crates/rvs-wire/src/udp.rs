//! UDP (RFC 768) view, checksum (IPv4 "no checksum" = 0 is kept as 0 by the
//! incremental rewrites, a computed 0 is sent as 0xffff).

use crate::{be16, checksum, clamp, clamp_mut, ip_proto, put16, Error, Result};
use core::net::IpAddr;

mod field {
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const LENGTH: usize = 4;
    pub const CHECKSUM: usize = 6;
}

/// Header length.
pub const HEADER_LEN: usize = 8;

/// A read/write view of a UDP datagram.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wrap without checking.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }
    /// Wrap and validate: ≥ 8 bytes, 8 ≤ length field ≤ buffer length.
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }
    /// Length check.
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let l = usize::from(self.len());
        if l < HEADER_LEN {
            return Err(Error::Malformed);
        }
        if l > len {
            return Err(Error::Truncated);
        }
        Ok(())
    }
    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }
    /// Source port.
    pub fn src_port(&self) -> u16 {
        be16(self.buffer.as_ref(), field::SRC_PORT)
    }
    /// Destination port.
    pub fn dst_port(&self) -> u16 {
        be16(self.buffer.as_ref(), field::DST_PORT)
    }
    /// Length field (header + payload).
    pub fn len(&self) -> u16 {
        be16(self.buffer.as_ref(), field::LENGTH)
    }
    /// Length field says 0 (never valid after `new_checked`)?
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Checksum field (0 = none over IPv4).
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM)
    }
    /// Payload up to the length field (clamped).
    pub fn payload(&self) -> &[u8] {
        clamp(self.buffer.as_ref(), HEADER_LEN, usize::from(self.len()))
    }
    /// Does the checksum verify? A zero checksum verifies (IPv4 "none");
    /// over IPv6 a zero checksum is invalid and gives `false`.
    pub fn verify_checksum(&self, src: &IpAddr, dst: &IpAddr) -> bool {
        if self.checksum() == 0 {
            return src.is_ipv4();
        }
        let b = clamp(self.buffer.as_ref(), 0, usize::from(self.len()));
        let ph = checksum::pseudo_header(src, dst, ip_proto::UDP, b.len() as u32);
        checksum::fold(checksum::add(ph, checksum::sum(b))) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Set the source port (checksum not updated).
    pub fn set_src_port(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::SRC_PORT, v)
    }
    /// Set the destination port (checksum not updated).
    pub fn set_dst_port(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::DST_PORT, v)
    }
    /// Set the length field.
    pub fn set_len(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::LENGTH, v)
    }
    /// Set the checksum field.
    pub fn set_checksum(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::CHECKSUM, v)
    }
    /// Mutable payload.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let l = usize::from(self.len());
        clamp_mut(self.buffer.as_mut(), HEADER_LEN, l)
    }
    /// Compute and store the checksum (a computed 0 is stored as 0xffff).
    pub fn fill_checksum(&mut self, src: &IpAddr, dst: &IpAddr) {
        self.set_checksum(0);
        let b = clamp(self.buffer.as_ref(), 0, usize::from(self.len()));
        let ph = checksum::pseudo_header(src, dst, ip_proto::UDP, b.len() as u32);
        let c = checksum::finish(checksum::add(ph, checksum::sum(b)));
        self.set_checksum(if c == 0 { 0xffff } else { c })
    }
    fn adjust(&mut self, c: u16) {
        self.set_checksum(if c == 0 { 0xffff } else { c })
    }
    /// Rewrite the source port (checksum updated unless it is 0 = none).
    pub fn rewrite_src_port(&mut self, port: u16) {
        let old = self.checksum();
        let p = self.src_port();
        self.set_src_port(port);
        if old != 0 {
            self.adjust(checksum::update_u16(old, p, port))
        }
    }
    /// Rewrite the destination port (checksum updated unless 0).
    pub fn rewrite_dst_port(&mut self, port: u16) {
        let old = self.checksum();
        let p = self.dst_port();
        self.set_dst_port(port);
        if old != 0 {
            self.adjust(checksum::update_u16(old, p, port))
        }
    }
    /// Update the checksum for a pseudo-header address change (no-op if 0).
    pub fn update_addr_checksum(&mut self, old: &IpAddr, new: &IpAddr) {
        let c = self.checksum();
        if c != 0 {
            self.adjust(checksum::update_addr(c, old, new))
        }
    }
}

/// High-level UDP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Payload length.
    pub payload_len: usize,
}

impl Repr {
    /// Parse (checksum not verified: it needs the IP addresses).
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Result<Repr> {
        p.check_len()?;
        Ok(Repr {
            src_port: p.src_port(),
            dst_port: p.dst_port(),
            payload_len: usize::from(p.len()) - HEADER_LEN,
        })
    }
    /// 8.
    pub fn header_len(&self) -> usize {
        HEADER_LEN
    }
    /// Header + payload.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.payload_len
    }
    /// Write the header with checksum 0.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>) {
        p.set_src_port(self.src_port);
        p.set_dst_port(self.dst_port);
        p.set_len((HEADER_LEN + self.payload_len) as u16);
        p.set_checksum(0);
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use core::net::Ipv4Addr;

    static DGRAM: [u8; 12] = [
        0xbf, 0x00, 0x00, 0x35, 0x00, 0x0c, 0x00, 0x00, 0xaa, 0x00, 0x00, 0xff,
    ];

    #[test]
    fn parse_emit_checksum() {
        let p = Packet::new_checked(&DGRAM[..]).unwrap();
        let r = Repr::parse(&p).unwrap();
        assert_eq!(
            r,
            Repr {
                src_port: 48896,
                dst_port: 53,
                payload_len: 4
            }
        );
        let mut out = [0u8; 12];
        let mut q = Packet::new_unchecked(&mut out[..]);
        r.emit(&mut q);
        q.payload_mut().copy_from_slice(&DGRAM[8..]);
        assert_eq!(out, DGRAM);

        let s: IpAddr = Ipv4Addr::new(198, 18, 0, 2).into();
        let d: IpAddr = Ipv4Addr::new(198, 18, 0, 100).into();
        let mut b = DGRAM;
        let mut p = Packet::new_unchecked(&mut b[..]);
        p.fill_checksum(&s, &d);
        assert!(p.verify_checksum(&s, &d));
        let mut ph = [0u8; 24];
        ph[0..4].copy_from_slice(&[198, 18, 0, 2]);
        ph[4..8].copy_from_slice(&[198, 18, 0, 100]);
        ph[9] = 17;
        ph[10..12].copy_from_slice(&12u16.to_be_bytes());
        ph[12..].copy_from_slice(&DGRAM);
        assert_eq!(p.checksum(), checksum::checksum(&ph));
        let nd: IpAddr = Ipv4Addr::new(198, 18, 0, 22).into();
        p.rewrite_dst_port(5353);
        p.update_addr_checksum(&d, &nd);
        assert!(p.verify_checksum(&s, &nd));
    }

    #[test]
    fn zero_checksum_stays_zero() {
        let mut b = DGRAM;
        let mut p = Packet::new_unchecked(&mut b[..]);
        p.rewrite_dst_port(1);
        let s: IpAddr = Ipv4Addr::new(1, 1, 1, 1).into();
        p.update_addr_checksum(&s, &Ipv4Addr::new(2, 2, 2, 2).into());
        assert_eq!(p.checksum(), 0);
        assert!(p.verify_checksum(&s, &s));
    }

    #[test]
    fn errors() {
        assert_eq!(
            Packet::new_checked(&DGRAM[..7]).unwrap_err(),
            Error::Truncated
        );
        assert_eq!(
            Packet::new_checked(&DGRAM[..11]).unwrap_err(),
            Error::Truncated
        );
        let mut b = DGRAM;
        b[5] = 7;
        assert_eq!(Packet::new_checked(&b[..]).unwrap_err(), Error::Malformed);
    }
}
