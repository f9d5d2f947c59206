//! SCTP (RFC 9260) common header, chunk walk and the CRC32c checksum.
//!
//! The checksum is CRC32c (Castagnoli) over the whole packet with the
//! checksum field zeroed, stored in little-endian byte order as Linux does
//! (`cpu_to_le32(~crc32c(~0, …))`, RFC 9260 Appendix A).

use crate::{be16, be32, clamp, put16, put32, Error, Result};

mod field {
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const VTAG: usize = 4;
    pub const CHECKSUM: usize = 8;
}

/// Common header length.
pub const HEADER_LEN: usize = 12;
/// Chunk header length.
pub const CHUNK_HEADER_LEN: usize = 4;

/// Chunk types rvs cares about.
pub mod chunk {
    /// DATA.
    pub const DATA: u8 = 0;
    /// INIT.
    pub const INIT: u8 = 1;
    /// INIT ACK.
    pub const INIT_ACK: u8 = 2;
    /// SACK.
    pub const SACK: u8 = 3;
    /// HEARTBEAT.
    pub const HEARTBEAT: u8 = 4;
    /// HEARTBEAT ACK.
    pub const HEARTBEAT_ACK: u8 = 5;
    /// ABORT.
    pub const ABORT: u8 = 6;
    /// SHUTDOWN.
    pub const SHUTDOWN: u8 = 7;
    /// SHUTDOWN ACK.
    pub const SHUTDOWN_ACK: u8 = 8;
    /// ERROR.
    pub const ERROR: u8 = 9;
    /// COOKIE ECHO.
    pub const COOKIE_ECHO: u8 = 10;
    /// COOKIE ACK.
    pub const COOKIE_ACK: u8 = 11;
    /// SHUTDOWN COMPLETE.
    pub const SHUTDOWN_COMPLETE: u8 = 14;
}

const fn crc32c_table() -> [u32; 256] {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0x82f6_3b78
            } else {
                c >> 1
            };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
}

static CRC32C: [u32; 256] = crc32c_table();

/// Update a raw CRC32c register (no initial/final inversion).
pub fn crc32c_update(mut crc: u32, data: &[u8]) -> u32 {
    for &b in data {
        crc = CRC32C[((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8);
    }
    crc
}

/// Standard CRC32c of `data` (init `!0`, final inversion): `"123456789"` →
/// `0xe3069283`.
pub fn crc32c(data: &[u8]) -> u32 {
    !crc32c_update(!0, data)
}

/// A read/write view of an SCTP packet (the buffer should be exactly the
/// packet, for the checksum).
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

/// One chunk seen by [`Packet::chunks`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk<'a> {
    /// Chunk type.
    pub kind: u8,
    /// Chunk flags.
    pub flags: u8,
    /// Chunk value (length − 4 bytes, without padding).
    pub value: &'a [u8],
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wrap without checking.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }
    /// Wrap and check the common header length.
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }
    /// Length check (12 bytes).
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
    /// Source port.
    pub fn src_port(&self) -> u16 {
        be16(self.buffer.as_ref(), field::SRC_PORT)
    }
    /// Destination port.
    pub fn dst_port(&self) -> u16 {
        be16(self.buffer.as_ref(), field::DST_PORT)
    }
    /// Verification tag.
    pub fn verification_tag(&self) -> u32 {
        be32(self.buffer.as_ref(), field::VTAG)
    }
    /// Checksum field as stored (little-endian value).
    pub fn checksum(&self) -> u32 {
        let b = self.buffer.as_ref();
        u32::from_le_bytes([b[8], b[9], b[10], b[11]])
    }
    /// Compute the CRC32c of the packet with the checksum field as zero.
    pub fn compute_checksum(&self) -> u32 {
        let b = self.buffer.as_ref();
        let mut crc = crc32c_update(!0, &b[..field::CHECKSUM]);
        crc = crc32c_update(crc, &[0; 4]);
        crc = crc32c_update(crc, clamp(b, HEADER_LEN, b.len()));
        !crc
    }
    /// Does the checksum verify?
    pub fn verify_checksum(&self) -> bool {
        self.checksum() == self.compute_checksum()
    }
    /// Bytes after the common header.
    pub fn payload(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        clamp(b, HEADER_LEN, b.len())
    }
    /// Iterate over chunks; yields `Err` once (and stops) on a chunk whose
    /// length is < 4 or runs past the buffer.
    pub fn chunks(&self) -> impl Iterator<Item = Result<Chunk<'_>>> {
        let mut rest = self.payload();
        let mut failed = false;
        core::iter::from_fn(move || {
            if failed || rest.is_empty() {
                return None;
            }
            if rest.len() < CHUNK_HEADER_LEN {
                failed = true;
                return Some(Err(Error::Truncated));
            }
            let len = usize::from(be16(rest, 2));
            if len < CHUNK_HEADER_LEN {
                failed = true;
                return Some(Err(Error::Malformed));
            }
            if len > rest.len() {
                failed = true;
                return Some(Err(Error::Truncated));
            }
            let c = Chunk {
                kind: rest[0],
                flags: rest[1],
                value: &rest[CHUNK_HEADER_LEN..len],
            };
            let padded = (len + 3) & !3;
            rest = rest.get(padded..).unwrap_or(&[]);
            Some(Ok(c))
        })
    }
    /// Type of the first chunk (IPVS schedules a new SCTP connection only
    /// on INIT).
    pub fn first_chunk_type(&self) -> Result<u8> {
        match self.chunks().next() {
            Some(Ok(c)) => Ok(c.kind),
            Some(Err(e)) => Err(e),
            None => Err(Error::Truncated),
        }
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Set the source port (call [`Packet::fill_checksum`] afterwards).
    pub fn set_src_port(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::SRC_PORT, v)
    }
    /// Set the destination port.
    pub fn set_dst_port(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::DST_PORT, v)
    }
    /// Set the verification tag.
    pub fn set_verification_tag(&mut self, v: u32) {
        put32(self.buffer.as_mut(), field::VTAG, v)
    }
    /// Store a checksum value (little-endian).
    pub fn set_checksum(&mut self, v: u32) {
        self.buffer.as_mut()[field::CHECKSUM..field::CHECKSUM + 4].copy_from_slice(&v.to_le_bytes())
    }
    /// Compute and store the checksum. CRC32c has no cheap incremental
    /// update, so NAT rewrites recompute it, as the kernel does.
    pub fn fill_checksum(&mut self) {
        let c = self.compute_checksum();
        self.set_checksum(c)
    }
}

/// High-level SCTP common header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Verification tag.
    pub verification_tag: u32,
}

impl Repr {
    /// Parse (checksum verified).
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Result<Repr> {
        p.check_len()?;
        if !p.verify_checksum() {
            return Err(Error::Checksum);
        }
        Ok(Repr {
            src_port: p.src_port(),
            dst_port: p.dst_port(),
            verification_tag: p.verification_tag(),
        })
    }
    /// 12.
    pub fn header_len(&self) -> usize {
        HEADER_LEN
    }
    /// Write the header and the checksum over the whole buffer (put the
    /// chunks in first, or call `fill_checksum` again afterwards).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>) {
        p.set_src_port(self.src_port);
        p.set_dst_port(self.dst_port);
        p.set_verification_tag(self.verification_tag);
        p.fill_checksum();
    }
}

#[cfg(test)]
mod test {
    use super::*;

    /// Bit-by-bit reference CRC32c.
    fn reference(data: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in data {
            crc ^= u32::from(b);
            for _ in 0..8 {
                let m = (crc & 1).wrapping_neg();
                crc = (crc >> 1) ^ (0x82f6_3b78 & m);
            }
        }
        !crc
    }

    #[test]
    fn vectors() {
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
        assert_eq!(reference(b"123456789"), 0xe306_9283);
        // RFC 3720 B.4: 32 bytes of zeros -> aa 36 91 8a on the wire
        assert_eq!(crc32c(&[0u8; 32]).to_le_bytes(), [0xaa, 0x36, 0x91, 0x8a]);
        let inc: [u8; 32] = core::array::from_fn(|i| i as u8);
        assert_eq!(crc32c(&inc), reference(&inc));
    }

    // INIT from port 5000 to 80, vtag 0, one INIT chunk with 16 bytes value
    static INIT: [u8; 32] = [
        0x13, 0x88, 0x00, 0x50, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // header
        0x01, 0x00, 0x00, 0x14, // INIT, len 20
        0x12, 0x34, 0x56, 0x78, 0x00, 0x01, 0x00, 0x00, 0x00, 0x0a, 0x00, 0x0a, 0x01, 0x02, 0x03,
        0x04,
    ];

    #[test]
    fn parse_emit_chunks() {
        let mut b = INIT;
        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        p.fill_checksum();
        let mut z = INIT;
        z[8..12].copy_from_slice(&[0; 4]);
        assert_eq!(p.checksum(), reference(&z));
        assert!(p.verify_checksum());
        let r = Repr::parse(&p).unwrap();
        assert_eq!(
            r,
            Repr {
                src_port: 5000,
                dst_port: 80,
                verification_tag: 0
            }
        );
        assert_eq!(p.first_chunk_type(), Ok(chunk::INIT));
        let c: Vec<_> = p.chunks().collect();
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].unwrap().value.len(), 16);
        let mut out = INIT;
        r.emit(&mut Packet::new_unchecked(&mut out[..]));
        assert_eq!(out, b);
        b[3] = 81;
        assert_eq!(
            Repr::parse(&Packet::new_unchecked(&b[..])).unwrap_err(),
            Error::Checksum
        );
    }

    #[test]
    fn broken_chunks() {
        let mut b = INIT;
        b[15] = 0x40;
        let p = Packet::new_unchecked(&b[..]);
        assert_eq!(p.first_chunk_type(), Err(Error::Truncated));
        b[15] = 2;
        let p = Packet::new_unchecked(&b[..]);
        assert_eq!(p.chunks().collect::<Vec<_>>(), vec![Err(Error::Malformed)]);
        assert_eq!(Packet::new_checked(&b[..11]).unwrap_err(), Error::Truncated);
    }
}
