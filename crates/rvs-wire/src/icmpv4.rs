//! ICMP for IPv4 (RFC 792): view, checksum, the IP packet embedded in error
//! messages, and builders for the errors a forwarder sends ("fragmentation
//! needed", "time exceeded").

use crate::{be16, be32, checksum, clamp, clamp_mut, ipv4, put16, put32, Error, Result};

mod field {
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: usize = 2;
    pub const REST: usize = 4;
}

/// Header length (type, code, checksum, 4 bytes rest-of-header).
pub const HEADER_LEN: usize = 8;

/// Message types.
pub mod msg_type {
    /// Echo reply.
    pub const ECHO_REPLY: u8 = 0;
    /// Destination unreachable.
    pub const DST_UNREACHABLE: u8 = 3;
    /// Source quench.
    pub const SOURCE_QUENCH: u8 = 4;
    /// Redirect.
    pub const REDIRECT: u8 = 5;
    /// Echo request.
    pub const ECHO_REQUEST: u8 = 8;
    /// Time exceeded.
    pub const TIME_EXCEEDED: u8 = 11;
    /// Parameter problem.
    pub const PARAM_PROBLEM: u8 = 12;
}

/// Destination-unreachable code: fragmentation needed and DF set.
pub const CODE_FRAG_NEEDED: u8 = 4;
/// Destination-unreachable code: port unreachable.
pub const CODE_PORT_UNREACHABLE: u8 = 3;
/// Time-exceeded code: TTL exceeded in transit.
pub const CODE_TTL_EXCEEDED: u8 = 0;

/// Max bytes of the offending packet quoted in an error (RFC 1812: the
/// whole error stays within 576 bytes: 576 − 20 − 8).
pub const MAX_QUOTE: usize = 548;

/// A read/write view of an ICMP message (the buffer should be exactly the
/// message, for the checksum).
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wrap without checking.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }
    /// Wrap and check the 8-byte header.
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
    /// The 4 rest-of-header bytes as a u32.
    pub fn rest(&self) -> u32 {
        be32(self.buffer.as_ref(), field::REST)
    }
    /// Echo identifier.
    pub fn echo_ident(&self) -> u16 {
        be16(self.buffer.as_ref(), field::REST)
    }
    /// Echo sequence number.
    pub fn echo_seq(&self) -> u16 {
        be16(self.buffer.as_ref(), field::REST + 2)
    }
    /// Next-hop MTU of a "fragmentation needed" message (RFC 1191).
    pub fn next_hop_mtu(&self) -> u16 {
        be16(self.buffer.as_ref(), field::REST + 2)
    }
    /// Data after the 8-byte header (clamped).
    pub fn data(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        clamp(b, HEADER_LEN, b.len())
    }
    /// Is this one of the error types IPVS relates to a connection
    /// (destination unreachable, source quench, time exceeded)?
    pub fn is_related_error(&self) -> bool {
        matches!(
            self.msg_type(),
            msg_type::DST_UNREACHABLE | msg_type::SOURCE_QUENCH | msg_type::TIME_EXCEEDED
        )
    }
    /// Is this an error message (quotes the offending packet)?
    pub fn is_error(&self) -> bool {
        self.is_related_error()
            || matches!(
                self.msg_type(),
                msg_type::REDIRECT | msg_type::PARAM_PROBLEM
            )
    }
    /// The quoted IPv4 packet of an error message (header complete, the
    /// rest possibly cut: see [`ipv4::Packet::new_checked_header`]).
    pub fn embedded(&self) -> Result<ipv4::Packet<&[u8]>> {
        if !self.is_error() {
            return Err(Error::Unsupported);
        }
        ipv4::Packet::new_checked_header(self.data())
    }
    /// Does the checksum verify?
    pub fn verify_checksum(&self) -> bool {
        checksum::verify(self.buffer.as_ref())
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
    /// Mutable data after the header.
    pub fn data_mut(&mut self) -> &mut [u8] {
        let b = self.buffer.as_mut();
        let len = b.len();
        clamp_mut(b, HEADER_LEN, len)
    }
    /// Compute and store the checksum over the whole buffer.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum::checksum(self.buffer.as_ref());
        self.set_checksum(c)
    }
}

/// High-level ICMP header (data not included).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Type.
    pub msg_type: u8,
    /// Code.
    pub code: u8,
    /// Rest of header (identifier/sequence, MTU, pointer, gateway…).
    pub rest: u32,
}

impl Repr {
    /// Parse and verify the checksum.
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Result<Repr> {
        p.check_len()?;
        if !p.verify_checksum() {
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
    /// Write the header and the checksum over the whole buffer (put the data
    /// in first).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>) {
        p.set_msg_type(self.msg_type);
        p.set_code(self.code);
        p.set_rest(self.rest);
        p.fill_checksum();
    }
}

/// Build an ICMP error message into `out` quoting `original` (an IPv4
/// packet, cut to [`MAX_QUOTE`] bytes and to its own total length). Returns
/// the ICMP message length. `rest` is the rest-of-header word (e.g. the MTU
/// for "fragmentation needed": use [`frag_needed`]).
pub fn build_error(
    out: &mut [u8],
    msg_type: u8,
    code: u8,
    rest: u32,
    original: &[u8],
) -> Result<usize> {
    let orig = ipv4::Packet::new_checked_header(original)?;
    let olen = usize::from(orig.total_len())
        .min(original.len())
        .min(MAX_QUOTE);
    let n = HEADER_LEN + olen;
    let buf = out.get_mut(..n).ok_or(Error::Truncated)?;
    buf[HEADER_LEN..].copy_from_slice(&original[..olen]);
    Repr {
        msg_type,
        code,
        rest,
    }
    .emit(&mut Packet::new_unchecked(buf));
    Ok(n)
}

/// Build "destination unreachable / fragmentation needed" with `mtu`.
pub fn frag_needed(out: &mut [u8], mtu: u16, original: &[u8]) -> Result<usize> {
    build_error(
        out,
        msg_type::DST_UNREACHABLE,
        CODE_FRAG_NEEDED,
        u32::from(mtu),
        original,
    )
}

/// Build "time exceeded in transit".
pub fn time_exceeded(out: &mut [u8], original: &[u8]) -> Result<usize> {
    build_error(out, msg_type::TIME_EXCEEDED, CODE_TTL_EXCEEDED, 0, original)
}

#[cfg(test)]
mod test {
    use super::*;

    // echo request id 0x1234 seq 1, data "abcd"
    static ECHO: [u8; 12] = [
        0x08, 0x00, 0x00, 0x00, 0x12, 0x34, 0x00, 0x01, b'a', b'b', b'c', b'd',
    ];

    #[test]
    fn echo() {
        let mut b = ECHO;
        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        p.fill_checksum();
        assert_eq!(p.checksum(), checksum::checksum(&ECHO));
        let r = Repr::parse(&p).unwrap();
        assert_eq!(
            r,
            Repr {
                msg_type: 8,
                code: 0,
                rest: 0x1234_0001
            }
        );
        assert_eq!((p.echo_ident(), p.echo_seq()), (0x1234, 1));
        assert!(!p.is_error());
        assert_eq!(p.embedded().unwrap_err(), Error::Unsupported);
        let mut out = ECHO;
        r.emit(&mut Packet::new_unchecked(&mut out[..]));
        assert_eq!(out, b);
        b[9] = 0;
        assert_eq!(
            Repr::parse(&Packet::new_unchecked(&b[..])).unwrap_err(),
            Error::Checksum
        );
    }

    #[test]
    fn frag_needed_roundtrip() {
        // original: 1500-byte TCP packet with DF, only 60 bytes present here
        let mut orig = [0u8; 60];
        ipv4::Repr {
            src_addr: [198, 18, 0, 2].into(),
            dst_addr: [198, 18, 0, 100].into(),
            protocol: 6,
            payload_len: 1480,
            ttl: 63,
            dscp_ecn: 0,
            ident: 7,
            dont_frag: true,
            more_frags: false,
            frag_offset: 0,
            options: ipv4::Options::EMPTY,
        }
        .emit(&mut ipv4::Packet::new_unchecked(&mut orig[..]));
        let mut out = [0u8; 600];
        let n = frag_needed(&mut out, 1480, &orig).unwrap();
        assert_eq!(n, 68);
        assert_eq!(&out[..8], &[3, 4, out[2], out[3], 0, 0, 0x05, 0xc8]);
        let p = Packet::new_checked(&out[..n]).unwrap();
        assert!(p.verify_checksum() && p.is_related_error());
        assert_eq!(p.next_hop_mtu(), 1480);
        let e = p.embedded().unwrap();
        assert_eq!(e.dst_addr(), core::net::Ipv4Addr::new(198, 18, 0, 100));
        assert_eq!(e.payload().len(), 40);
        assert_eq!(
            frag_needed(&mut out[..20], 1480, &orig).unwrap_err(),
            Error::Truncated
        );
        assert_eq!(
            time_exceeded(&mut out, &orig[..10]).unwrap_err(),
            Error::Truncated
        );
    }
}
