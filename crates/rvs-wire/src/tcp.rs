//! TCP (RFC 9293) header view, options, checksum with pseudo-header, and the
//! incremental rewrites NAT needs (port and pseudo-header address change).

use crate::{be16, be32, checksum, clamp, clamp_mut, ip_proto, put16, put32, Error, Result};
use core::net::IpAddr;

mod field {
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const SEQ: usize = 4;
    pub const ACK: usize = 8;
    pub const FLAGS: usize = 12;
    pub const WINDOW: usize = 14;
    pub const CHECKSUM: usize = 16;
    pub const URGENT: usize = 18;
}

/// Minimum header length.
pub const HEADER_LEN: usize = 20;

/// TCP flag bits (low 9 bits of the offset/flags word).
pub mod flags {
    /// FIN.
    pub const FIN: u16 = 0x001;
    /// SYN.
    pub const SYN: u16 = 0x002;
    /// RST.
    pub const RST: u16 = 0x004;
    /// PSH.
    pub const PSH: u16 = 0x008;
    /// ACK.
    pub const ACK: u16 = 0x010;
    /// URG.
    pub const URG: u16 = 0x020;
    /// ECE.
    pub const ECE: u16 = 0x040;
    /// CWR.
    pub const CWR: u16 = 0x080;
    /// NS (historic).
    pub const NS: u16 = 0x100;
    /// All flag bits.
    pub const MASK: u16 = 0x1ff;
}

/// A read/write view of a TCP segment. The buffer should be exactly the
/// segment (the IP payload) for the checksum methods to be right.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wrap without checking.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }
    /// Wrap and validate: ≥ 20 bytes, data offset ≥ 5, header inside buffer.
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
        let hl = self.header_len();
        if hl < HEADER_LEN {
            return Err(Error::Malformed);
        }
        if hl > len {
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
    /// Sequence number.
    pub fn seq_number(&self) -> u32 {
        be32(self.buffer.as_ref(), field::SEQ)
    }
    /// Acknowledgement number.
    pub fn ack_number(&self) -> u32 {
        be32(self.buffer.as_ref(), field::ACK)
    }
    /// Header length in bytes (data offset × 4).
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::FLAGS] >> 4) * 4
    }
    /// The 9 flag bits (see [`flags`]).
    pub fn flags(&self) -> u16 {
        be16(self.buffer.as_ref(), field::FLAGS) & flags::MASK
    }
    /// SYN set?
    pub fn syn(&self) -> bool {
        self.flags() & flags::SYN != 0
    }
    /// ACK set?
    pub fn ack(&self) -> bool {
        self.flags() & flags::ACK != 0
    }
    /// FIN set?
    pub fn fin(&self) -> bool {
        self.flags() & flags::FIN != 0
    }
    /// RST set?
    pub fn rst(&self) -> bool {
        self.flags() & flags::RST != 0
    }
    /// Window.
    pub fn window_len(&self) -> u16 {
        be16(self.buffer.as_ref(), field::WINDOW)
    }
    /// Checksum field.
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM)
    }
    /// Urgent pointer.
    pub fn urgent_at(&self) -> u16 {
        be16(self.buffer.as_ref(), field::URGENT)
    }
    /// Option bytes (clamped).
    pub fn options(&self) -> &[u8] {
        clamp(self.buffer.as_ref(), HEADER_LEN, self.header_len())
    }
    /// Payload (clamped).
    pub fn payload(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        clamp(b, self.header_len(), b.len())
    }
    /// Does the checksum verify for this pseudo-header?
    pub fn verify_checksum(&self, src: &IpAddr, dst: &IpAddr) -> bool {
        let b = self.buffer.as_ref();
        let ph = checksum::pseudo_header(src, dst, ip_proto::TCP, b.len() as u32);
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
    /// Set the sequence number.
    pub fn set_seq_number(&mut self, v: u32) {
        put32(self.buffer.as_mut(), field::SEQ, v)
    }
    /// Set the acknowledgement number.
    pub fn set_ack_number(&mut self, v: u32) {
        put32(self.buffer.as_mut(), field::ACK, v)
    }
    /// Set header length (bytes, multiple of 4) and flags.
    pub fn set_header_len_and_flags(&mut self, header_len: usize, f: u16) {
        let v = (((header_len / 4) as u16) << 12) | (f & flags::MASK);
        put16(self.buffer.as_mut(), field::FLAGS, v)
    }
    /// Set the window.
    pub fn set_window_len(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::WINDOW, v)
    }
    /// Set the checksum field.
    pub fn set_checksum(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::CHECKSUM, v)
    }
    /// Set the urgent pointer.
    pub fn set_urgent_at(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::URGENT, v)
    }
    /// Mutable options.
    pub fn options_mut(&mut self) -> &mut [u8] {
        let hl = self.header_len();
        clamp_mut(self.buffer.as_mut(), HEADER_LEN, hl)
    }
    /// Mutable payload.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let hl = self.header_len();
        let b = self.buffer.as_mut();
        let len = b.len();
        clamp_mut(b, hl, len)
    }
    /// Compute and store the checksum over the whole buffer.
    pub fn fill_checksum(&mut self, src: &IpAddr, dst: &IpAddr) {
        self.set_checksum(0);
        let b = self.buffer.as_ref();
        let ph = checksum::pseudo_header(src, dst, ip_proto::TCP, b.len() as u32);
        let c = checksum::finish(checksum::add(ph, checksum::sum(b)));
        self.set_checksum(c)
    }
    /// Rewrite the source port with an incremental checksum update.
    pub fn rewrite_src_port(&mut self, port: u16) {
        let c = checksum::update_u16(self.checksum(), self.src_port(), port);
        self.set_src_port(port);
        self.set_checksum(c)
    }
    /// Rewrite the destination port with an incremental checksum update.
    pub fn rewrite_dst_port(&mut self, port: u16) {
        let c = checksum::update_u16(self.checksum(), self.dst_port(), port);
        self.set_dst_port(port);
        self.set_checksum(c)
    }
    /// Update the checksum for a pseudo-header address change (the IP
    /// header's address is rewritten by the caller).
    pub fn update_addr_checksum(&mut self, old: &IpAddr, new: &IpAddr) {
        let c = checksum::update_addr(self.checksum(), old, new);
        self.set_checksum(c)
    }
}

/// TCP options, at most 40 bytes (a multiple of 4 in a header).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Options {
    buf: [u8; 40],
    len: u8,
}

impl Default for Options {
    fn default() -> Options {
        Options::EMPTY
    }
}

impl core::fmt::Debug for Options {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_tuple("Options").field(&self.as_bytes()).finish()
    }
}

impl Options {
    /// No options.
    pub const EMPTY: Options = Options {
        buf: [0; 40],
        len: 0,
    };
    /// From raw bytes (≤ 40, multiple of 4).
    pub fn new(bytes: &[u8]) -> Result<Options> {
        if bytes.len() > 40 || !bytes.len().is_multiple_of(4) {
            return Err(Error::Malformed);
        }
        let mut buf = [0u8; 40];
        buf[..bytes.len()].copy_from_slice(bytes);
        Ok(Options {
            buf,
            len: bytes.len() as u8,
        })
    }
    /// Raw bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..usize::from(self.len)]
    }
    /// Length.
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }
    /// Empty?
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// The MSS option value, if present and well-formed.
    pub fn mss(&self) -> Option<u16> {
        let b = self.as_bytes();
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                0 => return None,
                1 => i += 1,
                kind => {
                    let len = usize::from(*b.get(i + 1)?);
                    if len < 2 || i + len > b.len() {
                        return None;
                    }
                    if kind == 2 && len == 4 {
                        return Some(be16(b, i + 2));
                    }
                    i += len;
                }
            }
        }
        None
    }
}

/// High-level TCP header (the payload is not part of it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Sequence number.
    pub seq_number: u32,
    /// Acknowledgement number.
    pub ack_number: u32,
    /// Flags (see [`flags`]).
    pub flags: u16,
    /// Window.
    pub window_len: u16,
    /// Urgent pointer.
    pub urgent_at: u16,
    /// Options.
    pub options: Options,
}

impl Repr {
    /// Parse the header (checksum not verified: see
    /// [`Packet::verify_checksum`], which needs the IP addresses).
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Result<Repr> {
        p.check_len()?;
        Ok(Repr {
            src_port: p.src_port(),
            dst_port: p.dst_port(),
            seq_number: p.seq_number(),
            ack_number: p.ack_number(),
            flags: p.flags(),
            window_len: p.window_len(),
            urgent_at: p.urgent_at(),
            options: Options::new(p.options())?,
        })
    }
    /// Header length.
    pub fn header_len(&self) -> usize {
        HEADER_LEN + self.options.len()
    }
    /// Write the header with checksum 0 (call [`Packet::fill_checksum`] once
    /// the payload is in place).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>) {
        p.set_src_port(self.src_port);
        p.set_dst_port(self.dst_port);
        p.set_seq_number(self.seq_number);
        p.set_ack_number(self.ack_number);
        p.set_header_len_and_flags(self.header_len(), self.flags);
        p.set_window_len(self.window_len);
        p.set_checksum(0);
        p.set_urgent_at(self.urgent_at);
        p.options_mut().copy_from_slice(self.options.as_bytes());
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use core::net::Ipv4Addr;

    // SYN 198.18.0.2:40000 -> 198.18.0.100:80, seq 1, MSS 1460, window 64240
    static SYN: [u8; 24] = [
        0x9c, 0x40, 0x00, 0x50, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x60, 0x02, 0xfa,
        0xf0, 0x00, 0x00, 0x00, 0x00, 0x02, 0x04, 0x05, 0xb4,
    ];

    fn addrs() -> (IpAddr, IpAddr) {
        (
            Ipv4Addr::new(198, 18, 0, 2).into(),
            Ipv4Addr::new(198, 18, 0, 100).into(),
        )
    }

    #[test]
    fn parse_emit() {
        let p = Packet::new_checked(&SYN[..]).unwrap();
        assert!(p.syn() && !p.ack() && !p.fin() && !p.rst());
        let r = Repr::parse(&p).unwrap();
        assert_eq!((r.src_port, r.dst_port, r.seq_number), (40000, 80, 1));
        assert_eq!(r.options.mss(), Some(1460));
        assert_eq!(r.window_len, 64240);
        let mut out = [0u8; 24];
        r.emit(&mut Packet::new_unchecked(&mut out[..]));
        assert_eq!(out, SYN);
    }

    #[test]
    fn checksum_and_nat() {
        let (s, d) = addrs();
        let mut b = SYN;
        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        p.fill_checksum(&s, &d);
        // reference: full sum over pseudo-header + segment
        let mut ph = [0u8; 12 + 24];
        ph[0..4].copy_from_slice(&[198, 18, 0, 2]);
        ph[4..8].copy_from_slice(&[198, 18, 0, 100]);
        ph[9] = 6;
        ph[10..12].copy_from_slice(&24u16.to_be_bytes());
        ph[12..].copy_from_slice(&SYN);
        assert_eq!(p.checksum(), checksum::checksum(&ph));
        assert!(p.verify_checksum(&s, &d));
        // DNAT to 198.18.0.21:8080 incrementally
        let nd: IpAddr = Ipv4Addr::new(198, 18, 0, 21).into();
        p.rewrite_dst_port(8080);
        p.update_addr_checksum(&d, &nd);
        assert!(p.verify_checksum(&s, &nd));
        let inc = p.checksum();
        p.fill_checksum(&s, &nd);
        assert_eq!(inc, p.checksum());
    }

    #[test]
    fn errors() {
        assert_eq!(
            Packet::new_checked(&SYN[..19]).unwrap_err(),
            Error::Truncated
        );
        let mut b = SYN;
        b[12] = 0x40;
        assert_eq!(Packet::new_checked(&b[..]).unwrap_err(), Error::Malformed);
        b[12] = 0x70;
        assert_eq!(Packet::new_checked(&b[..]).unwrap_err(), Error::Truncated);
    }
}
