//! IPv4 (RFC 791): header with options, fragmentation fields, header
//! checksum, and in-place rewrite helpers (TTL decrement, address rewrite)
//! that update the checksum incrementally (RFC 1624).

use crate::{be16, checksum, clamp, clamp_mut, put16, Error, Result};
use core::net::Ipv4Addr;

mod field {
    pub const VER_IHL: usize = 0;
    pub const DSCP_ECN: usize = 1;
    pub const LENGTH: usize = 2;
    pub const IDENT: usize = 4;
    pub const FLG_OFF: usize = 6;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: usize = 10;
    pub const SRC: usize = 12;
    pub const DST: usize = 16;
}

/// Minimum header length.
pub const HEADER_LEN: usize = 20;
/// Maximum options length.
pub const MAX_OPTIONS_LEN: usize = 40;

const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;
const OFFSET_MASK: u16 = 0x1fff;

/// A read/write view of an IPv4 packet.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wrap without checking.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wrap and validate: version 4, IHL ≥ 5, header inside the buffer,
    /// `header_len ≤ total_len ≤ buffer length` (the buffer may be longer,
    /// e.g. Ethernet padding: [`Packet::payload`] stops at `total_len`).
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Like [`Packet::new_checked`] but only the header must be complete:
    /// `total_len` may exceed the buffer. This is the shape of the packet
    /// embedded in an ICMP error (header + first 8 bytes).
    pub fn new_checked_header(buffer: T) -> Result<Packet<T>> {
        let p = Self::new_unchecked(buffer);
        p.check_header()?;
        Ok(p)
    }

    fn check_header(&self) -> Result<()> {
        let b = self.buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if self.version() != 4 || self.header_len() < HEADER_LEN {
            return Err(Error::Malformed);
        }
        if b.len() < self.header_len() {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// Full validation (see [`Packet::new_checked`]).
    pub fn check_len(&self) -> Result<()> {
        self.check_header()?;
        let total = usize::from(self.total_len());
        if total < self.header_len() {
            return Err(Error::Malformed);
        }
        if total > self.buffer.as_ref().len() {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }
    /// Version (4).
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }
    /// Header length in bytes (IHL × 4).
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }
    /// DSCP + ECN byte (the old TOS).
    pub fn dscp_ecn(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN]
    }
    /// Total length field.
    pub fn total_len(&self) -> u16 {
        be16(self.buffer.as_ref(), field::LENGTH)
    }
    /// Identification.
    pub fn ident(&self) -> u16 {
        be16(self.buffer.as_ref(), field::IDENT)
    }
    /// Don't-fragment flag.
    pub fn dont_frag(&self) -> bool {
        be16(self.buffer.as_ref(), field::FLG_OFF) & FLAG_DF != 0
    }
    /// More-fragments flag.
    pub fn more_frags(&self) -> bool {
        be16(self.buffer.as_ref(), field::FLG_OFF) & FLAG_MF != 0
    }
    /// Fragment offset in 8-byte units.
    pub fn frag_offset(&self) -> u16 {
        be16(self.buffer.as_ref(), field::FLG_OFF) & OFFSET_MASK
    }
    /// Is this a fragment (MF set or offset ≠ 0)?
    pub fn is_fragment(&self) -> bool {
        be16(self.buffer.as_ref(), field::FLG_OFF) & (FLAG_MF | OFFSET_MASK) != 0
    }
    /// Time to live.
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }
    /// Upper-layer protocol.
    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[field::PROTOCOL]
    }
    /// Header checksum field.
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM)
    }
    /// Source address.
    pub fn src_addr(&self) -> Ipv4Addr {
        let b = self.buffer.as_ref();
        Ipv4Addr::new(
            b[field::SRC],
            b[field::SRC + 1],
            b[field::SRC + 2],
            b[field::SRC + 3],
        )
    }
    /// Destination address.
    pub fn dst_addr(&self) -> Ipv4Addr {
        let b = self.buffer.as_ref();
        Ipv4Addr::new(
            b[field::DST],
            b[field::DST + 1],
            b[field::DST + 2],
            b[field::DST + 3],
        )
    }
    /// Header bytes (including options), clamped to the buffer.
    pub fn header(&self) -> &[u8] {
        clamp(self.buffer.as_ref(), 0, self.header_len())
    }
    /// Option bytes, clamped to the buffer.
    pub fn options(&self) -> &[u8] {
        clamp(self.buffer.as_ref(), HEADER_LEN, self.header_len())
    }
    /// Does the header checksum verify?
    pub fn verify_checksum(&self) -> bool {
        checksum::verify(self.header())
    }
    /// Payload: from the end of the header to `total_len`, clamped to the
    /// buffer (never panics).
    pub fn payload(&self) -> &[u8] {
        clamp(
            self.buffer.as_ref(),
            self.header_len(),
            usize::from(self.total_len()),
        )
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Set version and header length (bytes, multiple of 4).
    pub fn set_version_and_header_len(&mut self, version: u8, header_len: usize) {
        self.buffer.as_mut()[field::VER_IHL] = (version << 4) | ((header_len / 4) as u8 & 0x0f);
    }
    /// Set the DSCP/ECN byte.
    pub fn set_dscp_ecn(&mut self, v: u8) {
        self.buffer.as_mut()[field::DSCP_ECN] = v
    }
    /// Set the total length.
    pub fn set_total_len(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::LENGTH, v)
    }
    /// Set the identification.
    pub fn set_ident(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::IDENT, v)
    }
    /// Set flags and fragment offset (8-byte units) in one go.
    pub fn set_frag(&mut self, dont_frag: bool, more_frags: bool, offset: u16) {
        let v = (if dont_frag { FLAG_DF } else { 0 })
            | (if more_frags { FLAG_MF } else { 0 })
            | (offset & OFFSET_MASK);
        put16(self.buffer.as_mut(), field::FLG_OFF, v)
    }
    /// Set the TTL (checksum not updated).
    pub fn set_ttl(&mut self, v: u8) {
        self.buffer.as_mut()[field::TTL] = v
    }
    /// Set the protocol.
    pub fn set_protocol(&mut self, v: u8) {
        self.buffer.as_mut()[field::PROTOCOL] = v
    }
    /// Set the checksum field.
    pub fn set_checksum(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::CHECKSUM, v)
    }
    /// Set the source address (checksum not updated).
    pub fn set_src_addr(&mut self, a: Ipv4Addr) {
        self.buffer.as_mut()[field::SRC..field::SRC + 4].copy_from_slice(&a.octets())
    }
    /// Set the destination address (checksum not updated).
    pub fn set_dst_addr(&mut self, a: Ipv4Addr) {
        self.buffer.as_mut()[field::DST..field::DST + 4].copy_from_slice(&a.octets())
    }
    /// Mutable options.
    pub fn options_mut(&mut self) -> &mut [u8] {
        let hl = self.header_len();
        clamp_mut(self.buffer.as_mut(), HEADER_LEN, hl)
    }
    /// Recompute and store the header checksum.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum::checksum(self.header());
        self.set_checksum(c)
    }
    /// Decrement the TTL by one with an incremental checksum update, as a
    /// router does. Returns the new TTL, or `None` (packet unchanged) if the
    /// TTL was 0 or 1 and the packet must not be forwarded (time exceeded).
    pub fn decrement_ttl(&mut self) -> Option<u8> {
        let ttl = self.ttl();
        if ttl <= 1 {
            return None;
        }
        let proto = self.protocol();
        let old = u16::from_be_bytes([ttl, proto]);
        let new = u16::from_be_bytes([ttl - 1, proto]);
        let c = checksum::update_u16(self.checksum(), old, new);
        self.set_ttl(ttl - 1);
        self.set_checksum(c);
        Some(ttl - 1)
    }
    /// Rewrite the source address, updating the header checksum
    /// incrementally (the L4 checksum is the caller's: see
    /// `tcp::Packet::update_addr_checksum` etc.).
    pub fn rewrite_src_addr(&mut self, a: Ipv4Addr) {
        let c = checksum::update_u32(self.checksum(), u32::from(self.src_addr()), u32::from(a));
        self.set_src_addr(a);
        self.set_checksum(c);
    }
    /// Rewrite the destination address, updating the header checksum
    /// incrementally.
    pub fn rewrite_dst_addr(&mut self, a: Ipv4Addr) {
        let c = checksum::update_u32(self.checksum(), u32::from(self.dst_addr()), u32::from(a));
        self.set_dst_addr(a);
        self.set_checksum(c);
    }
    /// Mutable payload (to `total_len`, clamped).
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let hl = self.header_len();
        let tl = usize::from(self.total_len());
        clamp_mut(self.buffer.as_mut(), hl, tl)
    }
}

/// IPv4 options (at most 40 bytes, padded to a multiple of 4 when emitted).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Options {
    buf: [u8; MAX_OPTIONS_LEN],
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
        buf: [0; MAX_OPTIONS_LEN],
        len: 0,
    };

    /// Options from raw bytes: length must be a multiple of 4 and at most 40,
    /// and the TLV structure must be valid (see [`validate_options`]).
    pub fn new(bytes: &[u8]) -> Result<Options> {
        if bytes.len() > MAX_OPTIONS_LEN || !bytes.len().is_multiple_of(4) {
            return Err(Error::Malformed);
        }
        validate_options(bytes)?;
        let mut buf = [0u8; MAX_OPTIONS_LEN];
        buf[..bytes.len()].copy_from_slice(bytes);
        Ok(Options {
            buf,
            len: bytes.len() as u8,
        })
    }
    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..usize::from(self.len)]
    }
    /// Length in bytes.
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }
    /// No options?
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Option type: end of option list.
pub const OPT_EOL: u8 = 0;
/// Option type: no operation.
pub const OPT_NOP: u8 = 1;

/// Check the TLV structure of IPv4 options: EOL ends the list, NOP is one
/// byte, every other option has a length byte ≥ 2 that stays in bounds.
pub fn validate_options(opts: &[u8]) -> Result<()> {
    let mut i = 0;
    while i < opts.len() {
        match opts[i] {
            OPT_EOL => return Ok(()),
            OPT_NOP => i += 1,
            _ => {
                let len = usize::from(*opts.get(i + 1).ok_or(Error::Malformed)?);
                if len < 2 || i + len > opts.len() {
                    return Err(Error::Malformed);
                }
                i += len;
            }
        }
    }
    Ok(())
}

/// Iterator over `(type, data)` of IPv4 options; stops at EOL or at the first
/// malformed option (use [`validate_options`] first to tell them apart).
pub fn iter_options(opts: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    let mut i = 0;
    core::iter::from_fn(move || loop {
        let t = *opts.get(i)?;
        match t {
            OPT_EOL => return None,
            OPT_NOP => {
                i += 1;
                continue;
            }
            _ => {
                let len = usize::from(*opts.get(i + 1)?);
                if len < 2 || i + len > opts.len() {
                    return None;
                }
                let data = &opts[i + 2..i + len];
                i += len;
                return Some((t, data));
            }
        }
    })
}

/// High-level IPv4 header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Source address.
    pub src_addr: Ipv4Addr,
    /// Destination address.
    pub dst_addr: Ipv4Addr,
    /// Upper-layer protocol.
    pub protocol: u8,
    /// Payload length (total length − header length).
    pub payload_len: usize,
    /// TTL.
    pub ttl: u8,
    /// DSCP + ECN.
    pub dscp_ecn: u8,
    /// Identification.
    pub ident: u16,
    /// DF flag.
    pub dont_frag: bool,
    /// MF flag.
    pub more_frags: bool,
    /// Fragment offset (8-byte units).
    pub frag_offset: u16,
    /// Options.
    pub options: Options,
}

impl Repr {
    /// Parse and verify the header checksum.
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Result<Repr> {
        p.check_len()?;
        if !p.verify_checksum() {
            return Err(Error::Checksum);
        }
        Ok(Repr {
            src_addr: p.src_addr(),
            dst_addr: p.dst_addr(),
            protocol: p.protocol(),
            payload_len: usize::from(p.total_len()) - p.header_len(),
            ttl: p.ttl(),
            dscp_ecn: p.dscp_ecn(),
            ident: p.ident(),
            dont_frag: p.dont_frag(),
            more_frags: p.more_frags(),
            frag_offset: p.frag_offset(),
            options: Options::new(p.options())?,
        })
    }
    /// Header length (20 + options).
    pub fn header_len(&self) -> usize {
        HEADER_LEN + self.options.len()
    }
    /// Header plus payload.
    pub fn buffer_len(&self) -> usize {
        self.header_len() + self.payload_len
    }
    /// Write the header and its checksum (payload untouched). The buffer
    /// must hold at least `header_len()` bytes; `payload_len` must keep the
    /// total within 65535.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>) {
        let hl = self.header_len();
        p.set_version_and_header_len(4, hl);
        p.set_dscp_ecn(self.dscp_ecn);
        p.set_total_len((hl + self.payload_len) as u16);
        p.set_ident(self.ident);
        p.set_frag(self.dont_frag, self.more_frags, self.frag_offset);
        p.set_ttl(self.ttl);
        p.set_protocol(self.protocol);
        p.set_src_addr(self.src_addr);
        p.set_dst_addr(self.dst_addr);
        p.options_mut().copy_from_slice(self.options.as_bytes());
        p.fill_checksum();
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::ip_proto;

    // 198.18.0.2 -> 198.18.0.100, TCP, 24 bytes payload-less TCP header would
    // follow; total length 40, DF, TTL 64, ident 0x1234.
    static HEADER: [u8; 20] = [
        0x45, 0x00, 0x00, 0x28, 0x12, 0x34, 0x40, 0x00, 0x40, 0x06, 0x00, 0x00, 198, 18, 0, 2, 198,
        18, 0, 100,
    ];

    fn with_checksum() -> [u8; 40] {
        let mut b = [0u8; 40];
        b[..20].copy_from_slice(&HEADER);
        let c = checksum::checksum(&b[..20]);
        b[10..12].copy_from_slice(&c.to_be_bytes());
        b
    }

    #[test]
    fn parse() {
        let b = with_checksum();
        let p = Packet::new_checked(&b[..]).unwrap();
        assert!(p.verify_checksum());
        let r = Repr::parse(&p).unwrap();
        assert_eq!(r.src_addr, Ipv4Addr::new(198, 18, 0, 2));
        assert_eq!(r.dst_addr, Ipv4Addr::new(198, 18, 0, 100));
        assert_eq!(r.protocol, ip_proto::TCP);
        assert_eq!(r.payload_len, 20);
        assert!(r.dont_frag && !r.more_frags && r.frag_offset == 0);
        assert_eq!(r.ident, 0x1234);
        let mut out = [0u8; 40];
        r.emit(&mut Packet::new_unchecked(&mut out[..]));
        assert_eq!(out[..20], b[..20]);
    }

    #[test]
    fn padding_ignored() {
        let mut b = [0u8; 60];
        b[..40].copy_from_slice(&with_checksum());
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.payload().len(), 20);
    }

    #[test]
    fn errors() {
        let b = with_checksum();
        assert_eq!(Packet::new_checked(&b[..19]).unwrap_err(), Error::Truncated);
        assert_eq!(Packet::new_checked(&b[..39]).unwrap_err(), Error::Truncated);
        let mut x = b;
        x[0] = 0x44;
        assert_eq!(Packet::new_checked(&x[..]).unwrap_err(), Error::Malformed);
        let mut x = b;
        x[0] = 0x65;
        assert_eq!(Packet::new_checked(&x[..]).unwrap_err(), Error::Malformed);
        let mut x = b;
        x[2..4].copy_from_slice(&[0, 10]);
        assert_eq!(Packet::new_checked(&x[..]).unwrap_err(), Error::Malformed);
        let mut x = b;
        x[8] = 3;
        assert_eq!(
            Repr::parse(&Packet::new_unchecked(&x[..])).unwrap_err(),
            Error::Checksum
        );
        // embedded (ICMP) form: header complete, rest missing
        assert!(Packet::new_checked_header(&b[..28]).is_ok());
        assert_eq!(
            Packet::new_checked_header(&b[..28])
                .unwrap()
                .payload()
                .len(),
            8
        );
    }

    #[test]
    fn options_and_fragments() {
        // ihl 6 with a router-alert option (94 04 00 00), MF, offset 185
        let mut b = [0u8; 28];
        b[..20].copy_from_slice(&HEADER);
        b[0] = 0x46;
        b[2..4].copy_from_slice(&28u16.to_be_bytes());
        b[6..8].copy_from_slice(&(0x2000u16 | 185).to_be_bytes());
        b[20..24].copy_from_slice(&[0x94, 0x04, 0x00, 0x00]);
        let c = checksum::checksum(&b[..24]);
        b[10..12].copy_from_slice(&c.to_be_bytes());
        let p = Packet::new_checked(&b[..]).unwrap();
        assert!(p.more_frags() && !p.dont_frag() && p.is_fragment());
        assert_eq!(p.frag_offset(), 185);
        let r = Repr::parse(&p).unwrap();
        assert_eq!(r.options.as_bytes(), &[0x94, 0x04, 0x00, 0x00]);
        assert_eq!(
            iter_options(r.options.as_bytes()).next(),
            Some((0x94, &[0u8, 0][..]))
        );
        let mut out = [0u8; 28];
        r.emit(&mut Packet::new_unchecked(&mut out[..]));
        assert_eq!(out[..24], b[..24]);
        // broken option length
        b[21] = 9;
        assert_eq!(
            Repr::parse(&Packet::new_unchecked(&b[..])).unwrap_err(),
            Error::Checksum
        );
        let c = {
            b[10..12].copy_from_slice(&[0, 0]);
            checksum::checksum(&b[..24])
        };
        b[10..12].copy_from_slice(&c.to_be_bytes());
        assert_eq!(
            Repr::parse(&Packet::new_unchecked(&b[..])).unwrap_err(),
            Error::Malformed
        );
    }

    #[test]
    fn ttl_and_rewrite_incremental() {
        let mut b = with_checksum();
        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        assert_eq!(p.decrement_ttl(), Some(63));
        assert!(p.verify_checksum());
        p.rewrite_dst_addr(Ipv4Addr::new(198, 18, 0, 21));
        p.rewrite_src_addr(Ipv4Addr::new(198, 18, 0, 11));
        assert!(p.verify_checksum());
        let inc = p.checksum();
        p.fill_checksum();
        assert_eq!(inc, p.checksum());
        p.set_ttl(1);
        assert_eq!(p.decrement_ttl(), None);
    }
}
