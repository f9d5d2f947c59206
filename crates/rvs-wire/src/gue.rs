//! Generic UDP Encapsulation (draft-ietf-intarea-gue), as the Linux kernel
//! builds it for IPVS TUN destinations with `--tun-type gue`.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |Ver|C|   Hlen  |  Proto/ctype  |             Flags             |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |   optional fields (Hlen × 4 bytes): private flags (if the     |
//! |   PRIV flag) then remote checksum offload start/offset        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! IPVS sends version 0, C = 0, `proto_ctype` = IPIP (4) or IPv6 (41), no
//! flags, or PRIV + `GUE_PFLAG_REMCSUM` with the two 16-bit remote-checksum
//! fields. Version 1 ("direct IP": the first nibble is 4 or 6) has no GUE
//! header; [`Packet::is_direct_ip`] tells it apart.

use crate::{be16, be32, clamp, put16, put32, Error, Result};

/// Base header length.
pub const HEADER_LEN: usize = 4;
/// Flag: private flags field present (`GUE_FLAG_PRIV`).
pub const FLAG_PRIV: u16 = 0x0001;
/// Private flag: remote checksum offload (`GUE_PFLAG_REMCSUM`).
pub const PFLAG_REMCSUM: u32 = 0x8000_0000;
/// Length of the private flags field.
pub const PRIV_LEN: usize = 4;
/// Length of the remote-checksum option.
pub const REMCSUM_LEN: usize = 4;

/// A read/write view of a GUE header (the buffer is the UDP payload).
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wrap without checking.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }
    /// Wrap and validate: 4 bytes, and the `hlen` options inside the buffer
    /// (for version 0).
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
        if !self.is_direct_ip() && self.header_len() > len {
            return Err(Error::Truncated);
        }
        Ok(())
    }
    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }
    /// Version (2 bits).
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[0] >> 6
    }
    /// Version 1 ("direct IP", no GUE header)?
    pub fn is_direct_ip(&self) -> bool {
        self.version() == 1
    }
    /// Control bit.
    pub fn control(&self) -> bool {
        self.buffer.as_ref()[0] & 0x20 != 0
    }
    /// Options length in 4-byte words.
    pub fn hlen(&self) -> u8 {
        self.buffer.as_ref()[0] & 0x1f
    }
    /// Header length in bytes (4 + options).
    pub fn header_len(&self) -> usize {
        HEADER_LEN + usize::from(self.hlen()) * 4
    }
    /// Protocol (for data messages) or control type.
    pub fn proto_ctype(&self) -> u8 {
        self.buffer.as_ref()[1]
    }
    /// Flags.
    pub fn flags(&self) -> u16 {
        be16(self.buffer.as_ref(), 2)
    }
    /// Option bytes (clamped).
    pub fn options(&self) -> &[u8] {
        clamp(self.buffer.as_ref(), HEADER_LEN, self.header_len())
    }
    /// Encapsulated packet (clamped).
    pub fn payload(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        if self.is_direct_ip() {
            return b;
        }
        clamp(b, self.header_len(), b.len())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Set version, control bit and hlen.
    pub fn set_first_byte(&mut self, version: u8, control: bool, hlen: u8) {
        self.buffer.as_mut()[0] = ((version & 3) << 6) | (u8::from(control) << 5) | (hlen & 0x1f)
    }
    /// Set proto/ctype.
    pub fn set_proto_ctype(&mut self, v: u8) {
        self.buffer.as_mut()[1] = v
    }
    /// Set flags.
    pub fn set_flags(&mut self, v: u16) {
        put16(self.buffer.as_mut(), 2, v)
    }
}

/// High-level GUE (version 0) header with the fields Linux implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Control message?
    pub control: bool,
    /// Inner protocol (4 / 41) or control type.
    pub proto_ctype: u8,
    /// Private flags (present iff `Some`; sets `FLAG_PRIV`).
    pub priv_flags: Option<u32>,
    /// Remote checksum offload `(csum_start, csum_offset)`; present iff
    /// `priv_flags` has [`PFLAG_REMCSUM`].
    pub remcsum: Option<(u16, u16)>,
}

impl Repr {
    /// Plain data header for an inner protocol, as IPVS sends by default.
    pub fn data(proto: u8) -> Repr {
        Repr {
            control: false,
            proto_ctype: proto,
            priv_flags: None,
            remcsum: None,
        }
    }
    /// Parse a version-0 header. Version 1 (direct IP), unknown flags, an
    /// `hlen` that does not match the flags, or REMCSUM fields without the
    /// flag give [`Error::Unsupported`] / [`Error::Malformed`].
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Result<Repr> {
        p.check_len()?;
        if p.version() != 0 {
            return Err(Error::Unsupported);
        }
        let flags = p.flags();
        if flags & !FLAG_PRIV != 0 {
            return Err(Error::Unsupported);
        }
        let opts = p.options();
        let mut at = 0;
        let mut priv_flags = None;
        let mut remcsum = None;
        if flags & FLAG_PRIV != 0 {
            let pf = be32(opts.get(..PRIV_LEN).ok_or(Error::Malformed)?, 0);
            at += PRIV_LEN;
            if pf & !PFLAG_REMCSUM != 0 {
                return Err(Error::Unsupported);
            }
            if pf & PFLAG_REMCSUM != 0 {
                let r = opts.get(at..at + REMCSUM_LEN).ok_or(Error::Malformed)?;
                remcsum = Some((be16(r, 0), be16(r, 2)));
                at += REMCSUM_LEN;
            }
            priv_flags = Some(pf);
        }
        if at != opts.len() {
            return Err(Error::Malformed);
        }
        Ok(Repr {
            control: p.control(),
            proto_ctype: p.proto_ctype(),
            priv_flags,
            remcsum,
        })
    }
    /// Header length (4, 8 or 12).
    pub fn header_len(&self) -> usize {
        HEADER_LEN
            + if self.priv_flags.is_some() {
                PRIV_LEN
            } else {
                0
            }
            + if self.remcsum.is_some() {
                REMCSUM_LEN
            } else {
                0
            }
    }
    /// Write the header.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>) {
        let hl = self.header_len();
        p.set_first_byte(0, self.control, ((hl - HEADER_LEN) / 4) as u8);
        p.set_proto_ctype(self.proto_ctype);
        let mut flags = 0;
        let b = p.buffer.as_mut();
        let mut at = HEADER_LEN;
        if let Some(pf) = self.priv_flags {
            flags |= FLAG_PRIV;
            let pf = if self.remcsum.is_some() {
                pf | PFLAG_REMCSUM
            } else {
                pf & !PFLAG_REMCSUM
            };
            put32(b, at, pf);
            at += PRIV_LEN;
        }
        if let Some((start, off)) = self.remcsum {
            put16(b, at, start);
            put16(b, at + 2, off);
        }
        p.set_flags(flags);
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn plain() {
        let b = [0x00, 0x04, 0x00, 0x00, 0x45];
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(Repr::parse(&p).unwrap(), Repr::data(4));
        assert_eq!(p.payload(), &[0x45]);
        let mut out = [0xffu8; 4];
        Repr::data(4).emit(&mut Packet::new_unchecked(&mut out[..]));
        assert_eq!(out, b[..4]);
    }

    #[test]
    fn remcsum() {
        let b = [
            0x02, 0x29, 0x00, 0x01, 0x80, 0x00, 0x00, 0x00, 0x00, 0x28, 0x00, 0x38,
        ];
        let p = Packet::new_checked(&b[..]).unwrap();
        let r = Repr::parse(&p).unwrap();
        assert_eq!(r.priv_flags, Some(PFLAG_REMCSUM));
        assert_eq!(r.remcsum, Some((0x28, 0x38)));
        assert_eq!(r.header_len(), 12);
        let mut out = [0u8; 12];
        r.emit(&mut Packet::new_unchecked(&mut out[..]));
        assert_eq!(out, b);
    }

    #[test]
    fn errors() {
        assert_eq!(
            Packet::new_checked(&[0u8; 3][..]).unwrap_err(),
            Error::Truncated
        );
        assert_eq!(
            Packet::new_checked(&[0x01, 4, 0, 0][..]).unwrap_err(),
            Error::Truncated
        );
        let direct = [0x45u8, 0, 0, 20];
        let p = Packet::new_checked(&direct[..]).unwrap();
        assert!(p.is_direct_ip());
        assert_eq!(Repr::parse(&p).unwrap_err(), Error::Unsupported);
        // PRIV flag but hlen 0
        assert_eq!(
            Repr::parse(&Packet::new_unchecked(&[0, 4, 0, 1][..])).unwrap_err(),
            Error::Malformed
        );
        // hlen 1 without PRIV
        assert_eq!(
            Repr::parse(&Packet::new_unchecked(&[1, 4, 0, 0, 0, 0, 0, 0][..])).unwrap_err(),
            Error::Malformed
        );
    }
}
