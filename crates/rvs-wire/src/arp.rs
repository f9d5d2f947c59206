//! ARP (RFC 826). The view handles any hardware/protocol address sizes; the
//! [`Repr`] covers Ethernet + IPv4, the only pair rvs needs.

use crate::ethernet::Address as EthernetAddress;
use crate::{be16, ethertype, put16, Error, Result};
use core::net::Ipv4Addr;

/// ARP operation: request.
pub const OP_REQUEST: u16 = 1;
/// ARP operation: reply.
pub const OP_REPLY: u16 = 2;
/// Hardware type Ethernet.
pub const HTYPE_ETHERNET: u16 = 1;

mod field {
    pub const HTYPE: usize = 0;
    pub const PTYPE: usize = 2;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: usize = 6;
    pub const SHA: usize = 8;
}

/// Length of an Ethernet/IPv4 ARP packet.
pub const ETH_IPV4_LEN: usize = 28;

/// A read/write view of an ARP packet.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wrap without checking.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }
    /// Wrap and check that the fixed part and all four addresses fit.
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }
    /// Length check.
    pub fn check_len(&self) -> Result<()> {
        let b = self.buffer.as_ref();
        if b.len() < field::SHA {
            return Err(Error::Truncated);
        }
        if b.len() < field::SHA + 2 * (self.hlen() + self.plen()) {
            return Err(Error::Truncated);
        }
        Ok(())
    }
    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }
    /// Hardware type.
    pub fn htype(&self) -> u16 {
        be16(self.buffer.as_ref(), field::HTYPE)
    }
    /// Protocol type.
    pub fn ptype(&self) -> u16 {
        be16(self.buffer.as_ref(), field::PTYPE)
    }
    /// Hardware address length.
    pub fn hlen(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::HLEN])
    }
    /// Protocol address length.
    pub fn plen(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::PLEN])
    }
    /// Operation.
    pub fn operation(&self) -> u16 {
        be16(self.buffer.as_ref(), field::OPER)
    }
    fn sha_r(&self) -> core::ops::Range<usize> {
        field::SHA..field::SHA + self.hlen()
    }
    fn spa_r(&self) -> core::ops::Range<usize> {
        let s = field::SHA + self.hlen();
        s..s + self.plen()
    }
    fn tha_r(&self) -> core::ops::Range<usize> {
        let s = field::SHA + self.hlen() + self.plen();
        s..s + self.hlen()
    }
    fn tpa_r(&self) -> core::ops::Range<usize> {
        let s = field::SHA + 2 * self.hlen() + self.plen();
        s..s + self.plen()
    }
    /// Sender hardware address bytes.
    pub fn source_hardware_addr(&self) -> &[u8] {
        &self.buffer.as_ref()[self.sha_r()]
    }
    /// Sender protocol address bytes.
    pub fn source_protocol_addr(&self) -> &[u8] {
        &self.buffer.as_ref()[self.spa_r()]
    }
    /// Target hardware address bytes.
    pub fn target_hardware_addr(&self) -> &[u8] {
        &self.buffer.as_ref()[self.tha_r()]
    }
    /// Target protocol address bytes.
    pub fn target_protocol_addr(&self) -> &[u8] {
        &self.buffer.as_ref()[self.tpa_r()]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Set the hardware type.
    pub fn set_htype(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::HTYPE, v)
    }
    /// Set the protocol type.
    pub fn set_ptype(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::PTYPE, v)
    }
    /// Set the hardware address length.
    pub fn set_hlen(&mut self, v: u8) {
        self.buffer.as_mut()[field::HLEN] = v
    }
    /// Set the protocol address length.
    pub fn set_plen(&mut self, v: u8) {
        self.buffer.as_mut()[field::PLEN] = v
    }
    /// Set the operation.
    pub fn set_operation(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::OPER, v)
    }
    /// Set the sender hardware address (length must be `hlen`).
    pub fn set_source_hardware_addr(&mut self, a: &[u8]) {
        let r = self.sha_r();
        self.buffer.as_mut()[r].copy_from_slice(a)
    }
    /// Set the sender protocol address (length must be `plen`).
    pub fn set_source_protocol_addr(&mut self, a: &[u8]) {
        let r = self.spa_r();
        self.buffer.as_mut()[r].copy_from_slice(a)
    }
    /// Set the target hardware address.
    pub fn set_target_hardware_addr(&mut self, a: &[u8]) {
        let r = self.tha_r();
        self.buffer.as_mut()[r].copy_from_slice(a)
    }
    /// Set the target protocol address.
    pub fn set_target_protocol_addr(&mut self, a: &[u8]) {
        let r = self.tpa_r();
        self.buffer.as_mut()[r].copy_from_slice(a)
    }
}

/// An Ethernet/IPv4 ARP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// [`OP_REQUEST`], [`OP_REPLY`] or another operation code.
    pub operation: u16,
    /// Sender MAC.
    pub source_hardware_addr: EthernetAddress,
    /// Sender IPv4 address.
    pub source_protocol_addr: Ipv4Addr,
    /// Target MAC (zero in requests).
    pub target_hardware_addr: EthernetAddress,
    /// Target IPv4 address.
    pub target_protocol_addr: Ipv4Addr,
}

fn v4(b: &[u8]) -> Result<Ipv4Addr> {
    <[u8; 4]>::try_from(b)
        .map(Ipv4Addr::from)
        .map_err(|_| Error::Malformed)
}

impl Repr {
    /// Parse; anything but Ethernet/IPv4 gives [`Error::Unsupported`].
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Result<Repr> {
        p.check_len()?;
        if p.htype() != HTYPE_ETHERNET
            || p.ptype() != ethertype::IPV4
            || p.hlen() != 6
            || p.plen() != 4
        {
            return Err(Error::Unsupported);
        }
        Ok(Repr {
            operation: p.operation(),
            source_hardware_addr: EthernetAddress::from_bytes(p.source_hardware_addr())
                .ok_or(Error::Malformed)?,
            source_protocol_addr: v4(p.source_protocol_addr())?,
            target_hardware_addr: EthernetAddress::from_bytes(p.target_hardware_addr())
                .ok_or(Error::Malformed)?,
            target_protocol_addr: v4(p.target_protocol_addr())?,
        })
    }
    /// 28 bytes.
    pub fn buffer_len(&self) -> usize {
        ETH_IPV4_LEN
    }
    /// Write the packet (buffer must hold 28 bytes).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>) {
        p.set_htype(HTYPE_ETHERNET);
        p.set_ptype(ethertype::IPV4);
        p.set_hlen(6);
        p.set_plen(4);
        p.set_operation(self.operation);
        p.set_source_hardware_addr(&self.source_hardware_addr.0);
        p.set_source_protocol_addr(&self.source_protocol_addr.octets());
        p.set_target_hardware_addr(&self.target_hardware_addr.0);
        p.set_target_protocol_addr(&self.target_protocol_addr.octets());
    }
}

#[cfg(test)]
mod test {
    use super::*;

    static REQUEST: [u8; 28] = [
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, // eth/ipv4 request
        0x02, 0x00, 0x00, 0x00, 0x00, 0x0b, 198, 18, 0, 11, // sender
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 198, 18, 0, 21, // target
    ];

    fn repr() -> Repr {
        Repr {
            operation: OP_REQUEST,
            source_hardware_addr: EthernetAddress([2, 0, 0, 0, 0, 0x0b]),
            source_protocol_addr: Ipv4Addr::new(198, 18, 0, 11),
            target_hardware_addr: EthernetAddress::ZERO,
            target_protocol_addr: Ipv4Addr::new(198, 18, 0, 21),
        }
    }

    #[test]
    fn parse() {
        let p = Packet::new_checked(&REQUEST[..]).unwrap();
        assert_eq!(Repr::parse(&p).unwrap(), repr());
    }

    #[test]
    fn emit() {
        let mut buf = [0u8; 28];
        repr().emit(&mut Packet::new_unchecked(&mut buf[..]));
        assert_eq!(buf, REQUEST);
    }

    #[test]
    fn errors() {
        assert_eq!(
            Packet::new_checked(&REQUEST[..27]).unwrap_err(),
            Error::Truncated
        );
        let mut b = REQUEST;
        b[4] = 8; // hlen 8: needs 8 + 2*12 = 32 bytes
        assert_eq!(Packet::new_checked(&b[..]).unwrap_err(), Error::Truncated);
        let mut b = REQUEST;
        b[1] = 6; // IEEE 802
        assert_eq!(
            Repr::parse(&Packet::new_unchecked(&b[..])).unwrap_err(),
            Error::Unsupported
        );
    }
}
