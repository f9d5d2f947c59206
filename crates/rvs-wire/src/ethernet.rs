//! Ethernet II frames with an optional 802.1Q (or 802.1ad) tag.

use crate::{be16, clamp, clamp_mut, ethertype, put16, Error, Result};
use core::fmt;

/// A 48-bit Ethernet (MAC) address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Address(pub [u8; 6]);

impl Address {
    /// ff:ff:ff:ff:ff:ff.
    pub const BROADCAST: Address = Address([0xff; 6]);
    /// 00:00:00:00:00:00.
    pub const ZERO: Address = Address([0; 6]);

    /// Address from a byte slice; `None` unless it is exactly 6 bytes.
    pub fn from_bytes(b: &[u8]) -> Option<Address> {
        <[u8; 6]>::try_from(b).ok().map(Address)
    }
    /// The 6 bytes.
    pub fn as_bytes(&self) -> &[u8; 6] {
        &self.0
    }
    /// ff:ff:ff:ff:ff:ff?
    pub fn is_broadcast(&self) -> bool {
        *self == Self::BROADCAST
    }
    /// Group bit set (includes broadcast)?
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 != 0
    }
    /// Individual, non-zero address?
    pub fn is_unicast(&self) -> bool {
        !self.is_multicast() && *self != Self::ZERO
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = &self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

mod field {
    pub type Field = core::ops::Range<usize>;
    pub const DST: Field = 0..6;
    pub const SRC: Field = 6..12;
    pub const ETHERTYPE: usize = 12;
    // VLAN tag (when ETHERTYPE is 0x8100 / 0x88a8)
    pub const TCI: usize = 14;
    pub const INNER_ETHERTYPE: usize = 16;
}

/// Length of an untagged Ethernet II header.
pub const HEADER_LEN: usize = 14;
/// Length of a header with one VLAN tag.
pub const VLAN_HEADER_LEN: usize = 18;

/// A read/write view of an Ethernet II frame.
///
/// [`Frame::ethertype`] is the outer type field; [`Frame::payload_ethertype`]
/// and [`Frame::header_len`] look through one 802.1Q / 802.1ad tag.
#[derive(Debug, Clone)]
pub struct Frame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Frame<T> {
    /// Wrap without checking.
    pub const fn new_unchecked(buffer: T) -> Frame<T> {
        Frame { buffer }
    }
    /// Wrap and validate the header length (including a VLAN tag).
    pub fn new_checked(buffer: T) -> Result<Frame<T>> {
        let f = Self::new_unchecked(buffer);
        f.check_len()?;
        Ok(f)
    }
    /// Validate the length: 14 bytes, or 18 if tagged.
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if self.is_tagged() && len < VLAN_HEADER_LEN {
            return Err(Error::Truncated);
        }
        Ok(())
    }
    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }
    /// Destination MAC.
    pub fn dst_addr(&self) -> Address {
        let mut a = [0u8; 6];
        a.copy_from_slice(&self.buffer.as_ref()[field::DST]);
        Address(a)
    }
    /// Source MAC.
    pub fn src_addr(&self) -> Address {
        let mut a = [0u8; 6];
        a.copy_from_slice(&self.buffer.as_ref()[field::SRC]);
        Address(a)
    }
    /// Outer ethertype field (0x8100 when tagged).
    pub fn ethertype(&self) -> u16 {
        be16(self.buffer.as_ref(), field::ETHERTYPE)
    }
    /// Does the frame carry an 802.1Q / 802.1ad tag?
    pub fn is_tagged(&self) -> bool {
        matches!(self.ethertype(), ethertype::VLAN | ethertype::QINQ)
    }
    /// The VLAN tag, if any.
    pub fn vlan(&self) -> Option<VlanTag> {
        if self.is_tagged() {
            let tci = be16(self.buffer.as_ref(), field::TCI);
            Some(VlanTag::from_tci(self.ethertype(), tci))
        } else {
            None
        }
    }
    /// Ethertype of the payload (the inner one when tagged).
    pub fn payload_ethertype(&self) -> u16 {
        if self.is_tagged() {
            be16(self.buffer.as_ref(), field::INNER_ETHERTYPE)
        } else {
            self.ethertype()
        }
    }
    /// Header length: 14, or 18 with a tag.
    pub fn header_len(&self) -> usize {
        if self.is_tagged() {
            VLAN_HEADER_LEN
        } else {
            HEADER_LEN
        }
    }
    /// The payload after the (possibly tagged) header.
    pub fn payload(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        clamp(b, self.header_len(), b.len())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Frame<T> {
    /// Set the destination MAC.
    pub fn set_dst_addr(&mut self, a: Address) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&a.0);
    }
    /// Set the source MAC.
    pub fn set_src_addr(&mut self, a: Address) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&a.0);
    }
    /// Set the outer ethertype field.
    pub fn set_ethertype(&mut self, t: u16) {
        put16(self.buffer.as_mut(), field::ETHERTYPE, t);
    }
    /// Mutable payload.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let hl = self.header_len();
        let b = self.buffer.as_mut();
        let len = b.len();
        clamp_mut(b, hl, len)
    }
}

/// An 802.1Q (TPID 0x8100) or 802.1ad (0x88a8) tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VlanTag {
    /// Tag protocol identifier: [`ethertype::VLAN`] or [`ethertype::QINQ`].
    pub tpid: u16,
    /// Priority code point (3 bits).
    pub pcp: u8,
    /// Drop eligible indicator.
    pub dei: bool,
    /// VLAN id (12 bits).
    pub vid: u16,
}

impl VlanTag {
    /// Decode a TCI.
    pub fn from_tci(tpid: u16, tci: u16) -> VlanTag {
        VlanTag {
            tpid,
            pcp: (tci >> 13) as u8,
            dei: tci & 0x1000 != 0,
            vid: tci & 0x0fff,
        }
    }
    /// Encode the TCI.
    pub fn tci(&self) -> u16 {
        (u16::from(self.pcp & 7) << 13) | (u16::from(self.dei) << 12) | (self.vid & 0x0fff)
    }
}

/// High-level Ethernet header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Source MAC.
    pub src_addr: Address,
    /// Destination MAC.
    pub dst_addr: Address,
    /// Optional VLAN tag.
    pub vlan: Option<VlanTag>,
    /// Payload ethertype.
    pub ethertype: u16,
}

impl Repr {
    /// Parse a checked frame.
    pub fn parse<T: AsRef<[u8]>>(frame: &Frame<T>) -> Result<Repr> {
        frame.check_len()?;
        Ok(Repr {
            src_addr: frame.src_addr(),
            dst_addr: frame.dst_addr(),
            vlan: frame.vlan(),
            ethertype: frame.payload_ethertype(),
        })
    }
    /// Header length.
    pub fn header_len(&self) -> usize {
        if self.vlan.is_some() {
            VLAN_HEADER_LEN
        } else {
            HEADER_LEN
        }
    }
    /// Write the header (the buffer must hold `header_len()` bytes).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, frame: &mut Frame<T>) {
        frame.set_dst_addr(self.dst_addr);
        frame.set_src_addr(self.src_addr);
        match self.vlan {
            Some(tag) => {
                let b = frame.buffer.as_mut();
                put16(b, field::ETHERTYPE, tag.tpid);
                put16(b, field::TCI, tag.tci());
                put16(b, field::INNER_ETHERTYPE, self.ethertype);
            }
            None => frame.set_ethertype(self.ethertype),
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    static FRAME: [u8; 18] = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x15, // dst
        0x02, 0x00, 0x00, 0x00, 0x00, 0x0b, // src
        0x08, 0x00, // ipv4
        0xaa, 0xbb, 0xcc, 0xdd,
    ];

    static TAGGED: [u8; 20] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0x00, 0x00, 0x00, 0x00, 0x0b, 0x81, 0x00, 0xa0,
        0x64, // pcp 5, dei 0, vid 100
        0x08, 0x06, 0x01, 0x02,
    ];

    #[test]
    fn parse_untagged() {
        let f = Frame::new_checked(&FRAME[..]).unwrap();
        assert_eq!(f.dst_addr(), Address([2, 0, 0, 0, 0, 0x15]));
        assert_eq!(f.src_addr().to_string(), "02:00:00:00:00:0b");
        assert_eq!(f.ethertype(), ethertype::IPV4);
        assert_eq!(f.payload(), &[0xaa, 0xbb, 0xcc, 0xdd]);
        let r = Repr::parse(&f).unwrap();
        let mut buf = [0u8; 18];
        r.emit(&mut Frame::new_unchecked(&mut buf[..]));
        buf[14..].copy_from_slice(&FRAME[14..]);
        assert_eq!(buf, FRAME);
    }

    #[test]
    fn parse_tagged() {
        let f = Frame::new_checked(&TAGGED[..]).unwrap();
        assert!(f.is_tagged());
        assert_eq!(
            f.vlan(),
            Some(VlanTag {
                tpid: 0x8100,
                pcp: 5,
                dei: false,
                vid: 100
            })
        );
        assert_eq!(f.payload_ethertype(), ethertype::ARP);
        assert_eq!(f.payload(), &[1, 2]);
        let r = Repr::parse(&f).unwrap();
        assert!(r.dst_addr.is_broadcast());
        let mut buf = [0u8; 20];
        r.emit(&mut Frame::new_unchecked(&mut buf[..]));
        buf[18..].copy_from_slice(&TAGGED[18..]);
        assert_eq!(buf, TAGGED);
    }

    #[test]
    fn truncated() {
        assert_eq!(
            Frame::new_checked(&FRAME[..13]).unwrap_err(),
            Error::Truncated
        );
        assert_eq!(
            Frame::new_checked(&TAGGED[..17]).unwrap_err(),
            Error::Truncated
        );
    }

    #[test]
    fn rewrite_in_place() {
        let mut buf = FRAME;
        let mut f = Frame::new_checked(&mut buf[..]).unwrap();
        f.set_dst_addr(Address([2, 0, 0, 0, 0, 0x16]));
        f.payload_mut()[0] = 0;
        assert_eq!(buf[5], 0x16);
        assert_eq!(buf[14], 0);
    }
}
