//! GRE (RFC 2784 base header + RFC 2890 key/sequence), as the kernel builds
//! it for IPVS TUN destinations with `--tun-type gre` (`gre_build_header`:
//! version 0, protocol 0x0800 / 0x86dd, optional checksum, no key/seq).
//!
//! ```text
//! |C|R|K|S|  reserved0  | Ver |          Protocol Type          |
//! |      Checksum (optional)    |       Reserved1 (optional)     |
//! |                         Key (optional)                        |
//! |                  Sequence Number (optional)                   |
//! ```

use crate::{be16, be32, checksum, clamp, put16, put32, Error, Result};

/// Base header length.
pub const HEADER_LEN: usize = 4;
/// Checksum present.
pub const FLAG_CSUM: u16 = 0x8000;
/// Routing present (RFC 1701, unsupported).
pub const FLAG_ROUTING: u16 = 0x4000;
/// Key present.
pub const FLAG_KEY: u16 = 0x2000;
/// Sequence number present.
pub const FLAG_SEQ: u16 = 0x1000;
const VERSION_MASK: u16 = 0x0007;

/// A read/write view of a GRE packet.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wrap without checking.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }
    /// Wrap and check that the header with its optional fields fits.
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }
    /// Length check.
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN || self.header_len() > len {
            return Err(Error::Truncated);
        }
        Ok(())
    }
    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }
    /// Flags and version word.
    pub fn flags_version(&self) -> u16 {
        be16(self.buffer.as_ref(), 0)
    }
    /// Version (0 for GRE, 1 for PPTP's enhanced GRE).
    pub fn version(&self) -> u8 {
        (self.flags_version() & VERSION_MASK) as u8
    }
    /// Protocol type (an ethertype).
    pub fn protocol(&self) -> u16 {
        be16(self.buffer.as_ref(), 2)
    }
    /// Header length with the optional fields.
    pub fn header_len(&self) -> usize {
        let f = self.flags_version();
        HEADER_LEN
            + if f & (FLAG_CSUM | FLAG_ROUTING) != 0 {
                4
            } else {
                0
            }
            + if f & FLAG_KEY != 0 { 4 } else { 0 }
            + if f & FLAG_SEQ != 0 { 4 } else { 0 }
    }
    /// Checksum, if present.
    pub fn checksum(&self) -> Option<u16> {
        (self.flags_version() & FLAG_CSUM != 0).then(|| be16(self.buffer.as_ref(), 4))
    }
    fn opt_at(&self, flag: u16) -> usize {
        let f = self.flags_version();
        let mut at = HEADER_LEN;
        if f & (FLAG_CSUM | FLAG_ROUTING) != 0 {
            at += 4;
        }
        if flag == FLAG_SEQ && f & FLAG_KEY != 0 {
            at += 4;
        }
        at
    }
    /// Key, if present.
    pub fn key(&self) -> Option<u32> {
        (self.flags_version() & FLAG_KEY != 0)
            .then(|| be32(self.buffer.as_ref(), self.opt_at(FLAG_KEY)))
    }
    /// Sequence number, if present.
    pub fn seq(&self) -> Option<u32> {
        (self.flags_version() & FLAG_SEQ != 0)
            .then(|| be32(self.buffer.as_ref(), self.opt_at(FLAG_SEQ)))
    }
    /// Encapsulated packet (clamped).
    pub fn payload(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        clamp(b, self.header_len(), b.len())
    }
    /// Does the checksum (over header and payload) verify? `true` if absent.
    pub fn verify_checksum(&self) -> bool {
        self.checksum().is_none() || checksum::verify(self.buffer.as_ref())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Compute and store the checksum (header must have the C bit).
    pub fn fill_checksum(&mut self) {
        if self.flags_version() & FLAG_CSUM == 0 {
            return;
        }
        let b = self.buffer.as_mut();
        put16(b, 4, 0);
        let c = checksum::checksum(b);
        put16(b, 4, c);
    }
}

/// High-level GRE version-0 header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Protocol type (ethertype of the payload).
    pub protocol: u16,
    /// Checksum present.
    pub checksum: bool,
    /// Key.
    pub key: Option<u32>,
    /// Sequence number.
    pub seq: Option<u32>,
}

impl Repr {
    /// Parse (checksum verified when present). Version ≠ 0 or the routing
    /// bit give [`Error::Unsupported`].
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Result<Repr> {
        p.check_len()?;
        let f = p.flags_version();
        if p.version() != 0 || f & FLAG_ROUTING != 0 {
            return Err(Error::Unsupported);
        }
        if !p.verify_checksum() {
            return Err(Error::Checksum);
        }
        Ok(Repr {
            protocol: p.protocol(),
            checksum: f & FLAG_CSUM != 0,
            key: p.key(),
            seq: p.seq(),
        })
    }
    /// Header length (4 to 16).
    pub fn header_len(&self) -> usize {
        HEADER_LEN
            + if self.checksum { 4 } else { 0 }
            + if self.key.is_some() { 4 } else { 0 }
            + if self.seq.is_some() { 4 } else { 0 }
    }
    /// Write the header; with `checksum` the checksum is computed over the
    /// whole buffer, so put the payload in first (or call
    /// [`Packet::fill_checksum`] again).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>) {
        let mut f = 0;
        if self.checksum {
            f |= FLAG_CSUM;
        }
        if self.key.is_some() {
            f |= FLAG_KEY;
        }
        if self.seq.is_some() {
            f |= FLAG_SEQ;
        }
        {
            let b = p.buffer.as_mut();
            put16(b, 0, f);
            put16(b, 2, self.protocol);
            let mut at = HEADER_LEN;
            if self.checksum {
                put32(b, at, 0);
                at += 4;
            }
            if let Some(k) = self.key {
                put32(b, at, k);
                at += 4;
            }
            if let Some(s) = self.seq {
                put32(b, at, s);
            }
        }
        p.fill_checksum();
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::ethertype;

    #[test]
    fn base() {
        let b = [0x00, 0x00, 0x08, 0x00, 0x45];
        let p = Packet::new_checked(&b[..]).unwrap();
        let r = Repr::parse(&p).unwrap();
        assert_eq!(
            r,
            Repr {
                protocol: ethertype::IPV4,
                checksum: false,
                key: None,
                seq: None
            }
        );
        assert_eq!(p.payload(), &[0x45]);
        let mut out = [0xffu8; 4];
        r.emit(&mut Packet::new_unchecked(&mut out[..]));
        assert_eq!(out, b[..4]);
    }

    #[test]
    fn with_csum_key_seq() {
        let mut b = [
            0xb0, 0x00, 0x86, 0xdd, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x2a, 0x00, 0x00,
            0x00, 0x07, 0x60, 0x00,
        ];
        let c = checksum::checksum(&b);
        b[4..6].copy_from_slice(&c.to_be_bytes());
        let p = Packet::new_checked(&b[..]).unwrap();
        let r = Repr::parse(&p).unwrap();
        assert_eq!(
            r,
            Repr {
                protocol: 0x86dd,
                checksum: true,
                key: Some(42),
                seq: Some(7)
            }
        );
        assert_eq!(r.header_len(), 16);
        let mut out = b;
        out[..16].fill(0);
        r.emit(&mut Packet::new_unchecked(&mut out[..]));
        assert_eq!(out, b);
        b[17] = 1;
        assert_eq!(
            Repr::parse(&Packet::new_unchecked(&b[..])).unwrap_err(),
            Error::Checksum
        );
    }

    #[test]
    fn errors() {
        assert_eq!(
            Packet::new_checked(&[0x80u8, 0, 8, 0, 0][..]).unwrap_err(),
            Error::Truncated
        );
        assert_eq!(
            Repr::parse(&Packet::new_unchecked(&[0x00u8, 1, 8, 0][..])).unwrap_err(),
            Error::Unsupported
        );
    }
}
