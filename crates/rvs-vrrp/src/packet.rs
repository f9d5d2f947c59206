//! VRRP v2 (RFC 3768) and v3 (RFC 5798) advertisement codec.
//!
//! smoltcp style: [`Packet`] is a zero-copy view over any `T: AsRef<[u8]>`
//! with getters (and setters when `T: AsMut<[u8]>`); [`Repr`] is the
//! validated, owned high-level form with [`Repr::parse`] / [`Repr::emit`].
//!
//! # No-panic contract
//!
//! [`Packet::new_unchecked`] performs no checks and its accessors may panic
//! on a short buffer. Untrusted input must go through
//! [`Packet::new_checked`], which guarantees that every fixed-header
//! accessor is in bounds; [`Repr::parse`] additionally checks the exact
//! length for the advertised address count before touching the address list
//! or the v2 authentication data. Nothing in this module panics on bytes
//! that passed `new_checked`.
//!
//! # Wire format (keepalived `vrrphdr_t`)
//!
//! ```text
//!  0       1       2       3       4       5       6       7
//! +-------+-------+-------+-------+-------+-------+-------+-------+
//! |ver|typ| VRID  | prio  | count | v2: auth_type adver_int (s)   | csum  |
//! |       |       |       |       | v3: rsvd(4) max_adver_int(12) |       |
//! +-------+-------+-------+-------+-------+-------+-------+-------+
//! | count x IPv4 (4 bytes) or IPv6 (16 bytes) addresses ...       |
//! | v2 only: 8 bytes authentication data (always present)         |
//! ```
//!
//! Checksums: v2 covers the whole VRRP message (no pseudo-header); v3 uses the
//! IPv4/IPv6 pseudo-header, also over IPv4 (keepalived 2.2.7 behaviour).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use rvs_wire::checksum;

/// IP protocol number of VRRP.
pub const IPPROTO_VRRP: u8 = 112;
/// IPv4 multicast group for VRRP.
pub const MCAST_GROUP_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
/// IPv6 multicast group for VRRP.
pub const MCAST_GROUP_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);
/// The only VRRP packet type.
pub const TYPE_ADVERTISEMENT: u8 = 1;
/// Length of the fixed header.
pub const HEADER_LEN: usize = 8;
/// Length of the v2 authentication data trailer.
pub const AUTH_LEN: usize = 8;
/// v2 authentication types.
pub const AUTH_NONE: u8 = 0;
/// Simple text password.
pub const AUTH_PASS: u8 = 1;
/// IPsec AH (not supported by rvs; parsed only).
pub const AUTH_AH: u8 = 2;

/// VRRP protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Version {
    /// RFC 3768, IPv4 only, optional PASS authentication, seconds.
    V2,
    /// RFC 5798, IPv4 and IPv6, centiseconds, pseudo-header checksum.
    V3,
}

impl Version {
    /// The number carried in the header.
    pub fn number(self) -> u8 {
        match self {
            Version::V2 => 2,
            Version::V3 => 3,
        }
    }
}

/// Parse errors. Each maps to one receive counter in the instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// Shorter than the fixed header.
    Truncated,
    /// Length does not match the advertised address count.
    BadLength { got: usize, expected: usize },
    /// Version other than 2 or 3 (or v2 over IPv6).
    BadVersion(u8),
    /// Type other than ADVERTISEMENT.
    BadType(u8),
    /// Checksum mismatch.
    BadChecksum,
    /// Source and destination of different families.
    BadFamily,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Truncated => write!(f, "vrrp packet too short"),
            Error::BadLength { got, expected } => {
                let w = if got < expected { "short" } else { "long" };
                write!(f, "vrrp packet too {w}, length {got} and expect {expected}")
            }
            Error::BadVersion(v) => write!(f, "wrong version. Received {v}"),
            Error::BadType(t) => write!(f, "Invalid packet type {t}"),
            Error::BadChecksum => write!(f, "Invalid VRRP checksum"),
            Error::BadFamily => write!(f, "mixed address families"),
        }
    }
}

impl std::error::Error for Error {}

mod field {
    pub const VER_TYPE: usize = 0;
    pub const VRID: usize = 1;
    pub const PRIO: usize = 2;
    pub const COUNT: usize = 3;
    pub const AUTH_TYPE: usize = 4;
    pub const ADVER_INT_V2: usize = 5;
    pub const ADVER_INT_V3: core::ops::Range<usize> = 4..6;
    pub const CHECKSUM: core::ops::Range<usize> = 6..8;
    pub const ADDRS: usize = 8;
}

/// Zero-copy view of a VRRP message (the IP payload).
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wrap without checks (accessors may panic on short buffers).
    pub fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wrap untrusted bytes: checks that the fixed header is present.
    pub fn new_checked(buffer: T) -> Result<Packet<T>, Error> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Check that the fixed header is in bounds.
    pub fn check_len(&self) -> Result<(), Error> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    /// Length this message must have for its version and address count.
    pub fn expected_len(&self, ipv6: bool) -> usize {
        let alen = if ipv6 { 16 } else { 4 };
        let auth = if self.version() == 2 { AUTH_LEN } else { 0 };
        HEADER_LEN + usize::from(self.count()) * alen + auth
    }

    /// Consume the view.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Total buffer length.
    pub fn len(&self) -> usize {
        self.buffer.as_ref().len()
    }

    /// Whether the buffer is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Version nibble.
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_TYPE] >> 4
    }
    /// Type nibble.
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::VER_TYPE] & 0x0f
    }
    /// Virtual router id.
    pub fn vrid(&self) -> u8 {
        self.buffer.as_ref()[field::VRID]
    }
    /// Priority (0 = master stopping, 255 = owner).
    pub fn priority(&self) -> u8 {
        self.buffer.as_ref()[field::PRIO]
    }
    /// Number of addresses.
    pub fn count(&self) -> u8 {
        self.buffer.as_ref()[field::COUNT]
    }
    /// v2 authentication type.
    pub fn auth_type(&self) -> u8 {
        self.buffer.as_ref()[field::AUTH_TYPE]
    }
    /// v2 advertisement interval, seconds.
    pub fn adver_int_v2(&self) -> u8 {
        self.buffer.as_ref()[field::ADVER_INT_V2]
    }
    /// v3 max advertisement interval, centiseconds (12 bits).
    pub fn adver_int_v3(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::ADVER_INT_V3];
        u16::from_be_bytes([b[0], b[1]]) & 0x0fff
    }
    /// Advertisement interval in centiseconds for either version.
    pub fn adver_int_cs(&self) -> u16 {
        if self.version() == 2 {
            u16::from(self.adver_int_v2()) * 100
        } else {
            self.adver_int_v3()
        }
    }
    /// Checksum field.
    pub fn checksum(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::CHECKSUM];
        u16::from_be_bytes([b[0], b[1]])
    }

    /// Address `i` (requires the exact length to have been checked).
    pub fn addr(&self, i: usize, ipv6: bool) -> Option<IpAddr> {
        let data = self.buffer.as_ref();
        if ipv6 {
            let s = field::ADDRS + i * 16;
            let b: [u8; 16] = data.get(s..s + 16)?.try_into().ok()?;
            Some(IpAddr::V6(Ipv6Addr::from(b)))
        } else {
            let s = field::ADDRS + i * 4;
            let b: [u8; 4] = data.get(s..s + 4)?.try_into().ok()?;
            Some(IpAddr::V4(Ipv4Addr::from(b)))
        }
    }

    /// v2 authentication data (the 8 bytes after the addresses).
    pub fn auth_data(&self) -> Option<[u8; 8]> {
        let s = field::ADDRS + usize::from(self.count()) * 4;
        self.buffer.as_ref().get(s..s + AUTH_LEN)?.try_into().ok()
    }

    /// Verify the checksum (v2 plain, v3 with pseudo-header).
    pub fn verify_checksum(&self, src: IpAddr, dst: IpAddr) -> bool {
        checksum::fold(vrrp_sum(self.version(), src, dst, self.buffer.as_ref())) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Set version and type.
    pub fn set_version_type(&mut self, version: u8, msg_type: u8) {
        self.buffer.as_mut()[field::VER_TYPE] = (version << 4) | (msg_type & 0x0f);
    }
    /// Set VRID.
    pub fn set_vrid(&mut self, v: u8) {
        self.buffer.as_mut()[field::VRID] = v;
    }
    /// Set priority.
    pub fn set_priority(&mut self, v: u8) {
        self.buffer.as_mut()[field::PRIO] = v;
    }
    /// Set address count.
    pub fn set_count(&mut self, v: u8) {
        self.buffer.as_mut()[field::COUNT] = v;
    }
    /// Set v2 auth type.
    pub fn set_auth_type(&mut self, v: u8) {
        self.buffer.as_mut()[field::AUTH_TYPE] = v;
    }
    /// Set v2 advert interval (seconds).
    pub fn set_adver_int_v2(&mut self, v: u8) {
        self.buffer.as_mut()[field::ADVER_INT_V2] = v;
    }
    /// Set v3 max advert interval (centiseconds, 12 bits; reserved bits zero).
    pub fn set_adver_int_v3(&mut self, cs: u16) {
        self.buffer.as_mut()[field::ADVER_INT_V3].copy_from_slice(&(cs & 0x0fff).to_be_bytes());
    }
    /// Set checksum field.
    pub fn set_checksum(&mut self, v: u16) {
        self.buffer.as_mut()[field::CHECKSUM].copy_from_slice(&v.to_be_bytes());
    }
    /// Recompute and store the checksum (v2: message only; v3: with the
    /// pseudo-header of `src`/`dst`).
    pub fn fill_checksum(&mut self, src: IpAddr, dst: IpAddr) {
        self.set_checksum(0);
        let sum = vrrp_sum(self.version(), src, dst, self.buffer.as_ref());
        self.set_checksum(checksum::finish(sum));
    }
}

/// One's-complement sum of a VRRP message: v2 over the message alone, v3 with
/// the IPv4/IPv6 pseudo-header of `src`/`dst` (mixed families: none; such a
/// packet never verifies, the caller rejects it first).
fn vrrp_sum(version: u8, src: IpAddr, dst: IpAddr, data: &[u8]) -> u32 {
    let sum = checksum::sum(data);
    if version != 3 {
        return sum;
    }
    let len = data.len() as u32;
    let pseudo = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => checksum::pseudo_header_v4(&s, &d, IPPROTO_VRRP, len),
        (IpAddr::V6(s), IpAddr::V6(d)) => checksum::pseudo_header_v6(&s, &d, IPPROTO_VRRP, len),
        _ => 0,
    };
    checksum::add(pseudo, sum)
}

/// Validated, owned form of an advertisement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repr {
    /// Protocol version.
    pub version: Version,
    /// Virtual router id (1..=255 in practice; 0 is carried as-is).
    pub vrid: u8,
    /// Priority.
    pub priority: u8,
    /// Advertisement interval in centiseconds (v2: seconds × 100).
    pub adver_int_cs: u16,
    /// v2 auth type (ignored for v3).
    pub auth_type: u8,
    /// v2 auth data, 8 bytes, always present on the wire for v2.
    pub auth_data: [u8; 8],
    /// Virtual addresses (all the family of the IP header).
    pub addrs: Vec<IpAddr>,
}

impl Repr {
    /// Parse and validate a packet received from `src` to `dst` (the IP
    /// header addresses; they select the address family and feed the v3
    /// pseudo-header). Checks version, type, exact length and checksum.
    pub fn parse<T: AsRef<[u8]>>(
        packet: &Packet<T>,
        src: IpAddr,
        dst: IpAddr,
    ) -> Result<Repr, Error> {
        packet.check_len()?;
        let ipv6 = match (src, dst) {
            (IpAddr::V4(_), IpAddr::V4(_)) => false,
            (IpAddr::V6(_), IpAddr::V6(_)) => true,
            _ => return Err(Error::BadFamily),
        };
        let version = match packet.version() {
            2 if !ipv6 => Version::V2,
            3 => Version::V3,
            v => return Err(Error::BadVersion(v)),
        };
        let expected = packet.expected_len(ipv6);
        if packet.len() != expected {
            return Err(Error::BadLength {
                got: packet.len(),
                expected,
            });
        }
        if packet.msg_type() != TYPE_ADVERTISEMENT {
            return Err(Error::BadType(packet.msg_type()));
        }
        if !packet.verify_checksum(src, dst) {
            return Err(Error::BadChecksum);
        }
        let addrs = (0..usize::from(packet.count()))
            .map(|i| packet.addr(i, ipv6).ok_or(Error::Truncated))
            .collect::<Result<Vec<_>, _>>()?;
        let (auth_type, auth_data) = match version {
            Version::V2 => (
                packet.auth_type(),
                packet.auth_data().ok_or(Error::Truncated)?,
            ),
            Version::V3 => (0, [0; 8]),
        };
        Ok(Repr {
            version,
            vrid: packet.vrid(),
            priority: packet.priority(),
            adver_int_cs: packet.adver_int_cs(),
            auth_type,
            auth_data,
            addrs,
        })
    }

    /// Bytes needed by [`Repr::emit`].
    pub fn buffer_len(&self) -> usize {
        let alen: usize = self
            .addrs
            .iter()
            .take(255)
            .map(|a| if a.is_ipv6() { 16 } else { 4 })
            .sum();
        HEADER_LEN
            + alen
            + if self.version == Version::V2 {
                AUTH_LEN
            } else {
                0
            }
    }

    /// Write into `packet` (which must be exactly `buffer_len()` long) and fill
    /// the checksum for the given IP source/destination.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut Packet<T>,
        src: IpAddr,
        dst: IpAddr,
    ) {
        packet.set_version_type(self.version.number(), TYPE_ADVERTISEMENT);
        packet.set_vrid(self.vrid);
        packet.set_priority(self.priority);
        packet.set_count(self.addrs.len().min(255) as u8);
        match self.version {
            Version::V2 => {
                packet.set_auth_type(self.auth_type);
                packet.set_adver_int_v2((self.adver_int_cs / 100).min(255) as u8);
            }
            Version::V3 => packet.set_adver_int_v3(self.adver_int_cs),
        }
        let buf = packet.buffer.as_mut();
        let mut off = field::ADDRS;
        for a in self.addrs.iter().take(255) {
            match a {
                IpAddr::V4(a) => {
                    buf[off..off + 4].copy_from_slice(&a.octets());
                    off += 4;
                }
                IpAddr::V6(a) => {
                    buf[off..off + 16].copy_from_slice(&a.octets());
                    off += 16;
                }
            }
        }
        if self.version == Version::V2 {
            buf[off..off + AUTH_LEN].copy_from_slice(&self.auth_data);
        }
        packet.fill_checksum(src, dst);
    }

    /// Convenience: emit into a new `Vec`.
    pub fn to_bytes(&self, src: IpAddr, dst: IpAddr) -> Vec<u8> {
        let mut p = Packet::new_unchecked(vec![0u8; self.buffer_len()]);
        self.emit(&mut p, src, dst);
        p.into_inner()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn v4(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    // keepalived 2.2.7 layout (reference capture: VRID 0x4d, prio 100, 2 VIPs,
    // PASS "abc", advert_int 2); VIPs 198.18.0.100/.101, checksum computed
    // independently (python, RFC 1071).
    static V2_PASS: [u8; 24] = [
        0x21, 0x4d, 0x64, 0x02, 0x01, 0x02, 0x28, 0x5d, 198, 18, 0, 100, 198, 18, 0, 101, b'a',
        b'b', b'c', 0, 0, 0, 0, 0,
    ];
    // v3 over IPv4 from 198.18.0.11 to 224.0.0.18, advert_int 200 cs.
    static V3_V4: [u8; 16] = [
        0x31, 0x4d, 0x64, 0x02, 0x00, 0xc8, 0x36, 0x49, 198, 18, 0, 100, 198, 18, 0, 101,
    ];
    // v3 over IPv6 from fe80::1 to ff02::12, VRID 7, prio 254, 1 s.
    static V3_V6: [u8; 24] = [
        0x31, 0x07, 0xfe, 0x01, 0x00, 0x64, 0xa3, 0xba, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 0x01, 0x00,
    ];

    fn v2_repr() -> Repr {
        Repr {
            version: Version::V2,
            vrid: 0x4d,
            priority: 100,
            adver_int_cs: 200,
            auth_type: AUTH_PASS,
            auth_data: *b"abc\0\0\0\0\0",
            addrs: vec![v4("198.18.0.100"), v4("198.18.0.101")],
        }
    }

    #[test]
    fn parse_v2_pass() {
        let p = Packet::new_checked(&V2_PASS[..]).unwrap();
        assert_eq!(p.version(), 2);
        assert_eq!(p.vrid(), 0x4d);
        assert_eq!(p.auth_data(), Some(*b"abc\0\0\0\0\0"));
        let r = Repr::parse(&p, v4("198.18.0.11"), v4("224.0.0.18")).unwrap();
        assert_eq!(r, v2_repr());
    }

    #[test]
    fn emit_v2_pass() {
        // v2 checksum has no pseudo-header: any addresses give the same bytes.
        assert_eq!(v2_repr().to_bytes(v4("1.2.3.4"), v4("5.6.7.8")), V2_PASS);
    }

    #[test]
    fn v3_v4_both_ways() {
        let src = v4("198.18.0.11");
        let dst = v4("224.0.0.18");
        let r = Repr::parse(&Packet::new_checked(&V3_V4[..]).unwrap(), src, dst).unwrap();
        assert_eq!(r.version, Version::V3);
        assert_eq!(r.adver_int_cs, 200);
        assert_eq!(r.addrs.len(), 2);
        assert_eq!(r.to_bytes(src, dst), V3_V4);
        // The pseudo-header matters for v3: another source fails.
        assert_eq!(
            Repr::parse(
                &Packet::new_checked(&V3_V4[..]).unwrap(),
                v4("198.18.0.12"),
                dst
            ),
            Err(Error::BadChecksum)
        );
    }

    #[test]
    fn v3_v6_both_ways() {
        let src: IpAddr = "fe80::1".parse().unwrap();
        let dst = IpAddr::V6(MCAST_GROUP_V6);
        let r = Repr::parse(&Packet::new_checked(&V3_V6[..]).unwrap(), src, dst).unwrap();
        assert_eq!(r.vrid, 7);
        assert_eq!(r.priority, 254);
        assert_eq!(r.adver_int_cs, 100);
        assert_eq!(r.addrs, vec!["2001:db8::100".parse::<IpAddr>().unwrap()]);
        assert_eq!(r.to_bytes(src, dst), V3_V6);
    }

    #[test]
    fn rejects() {
        let src = v4("198.18.0.11");
        let dst = v4("224.0.0.18");
        assert_eq!(
            Packet::new_checked(&V2_PASS[..7]).err(),
            Some(Error::Truncated)
        );
        let short = Packet::new_checked(&V2_PASS[..20]).unwrap();
        assert_eq!(
            Repr::parse(&short, src, dst),
            Err(Error::BadLength {
                got: 20,
                expected: 24
            })
        );
        let mut b = V2_PASS;
        b[7] ^= 1;
        assert_eq!(
            Repr::parse(&Packet::new_checked(&b[..]).unwrap(), src, dst),
            Err(Error::BadChecksum)
        );
        let mut b = V2_PASS;
        b[0] = 0x41;
        assert_eq!(
            Repr::parse(&Packet::new_checked(&b[..]).unwrap(), src, dst),
            Err(Error::BadVersion(4))
        );
        let mut b = V2_PASS;
        b[0] = 0x22;
        assert_eq!(
            Repr::parse(&Packet::new_checked(&b[..]).unwrap(), src, dst),
            Err(Error::BadType(2))
        );
        // v2 over IPv6 is not a thing.
        let s6: IpAddr = "fe80::1".parse().unwrap();
        assert_eq!(
            Repr::parse(
                &Packet::new_checked(&V2_PASS[..]).unwrap(),
                s6,
                IpAddr::V6(MCAST_GROUP_V6)
            ),
            Err(Error::BadVersion(2))
        );
        assert_eq!(
            Repr::parse(&Packet::new_checked(&V2_PASS[..]).unwrap(), s6, dst),
            Err(Error::BadFamily)
        );
    }

    fn arb_repr() -> impl Strategy<Value = (Repr, IpAddr, IpAddr)> {
        (
            any::<bool>(),
            any::<bool>(),
            any::<u8>(),
            any::<u8>(),
            0u16..4096,
            any::<[u8; 8]>(),
            0usize..20,
        )
            .prop_flat_map(|(v3, v6, vrid, prio, int, auth, n)| {
                let v6 = v3 && v6;
                let addr = if v6 {
                    any::<u128>()
                        .prop_map(|x| IpAddr::V6(Ipv6Addr::from(x)))
                        .boxed()
                } else {
                    any::<u32>()
                        .prop_map(|x| IpAddr::V4(Ipv4Addr::from(x)))
                        .boxed()
                };
                (prop::collection::vec(addr.clone(), n), addr.clone(), addr).prop_map(
                    move |(addrs, s, d)| {
                        let r = Repr {
                            version: if v3 { Version::V3 } else { Version::V2 },
                            vrid,
                            priority: prio,
                            adver_int_cs: if v3 { int } else { (int % 256) * 100 },
                            auth_type: if v3 { 0 } else { auth[0] % 3 },
                            auth_data: if v3 { [0; 8] } else { auth },
                            addrs,
                        };
                        (r, s, d)
                    },
                )
            })
    }

    proptest! {
        #[test]
        fn round_trip((r, s, d) in arb_repr()) {
            let bytes = r.to_bytes(s, d);
            let p = Packet::new_checked(&bytes[..]).unwrap();
            prop_assert_eq!(Repr::parse(&p, s, d).unwrap(), r);
        }

        #[test]
        fn never_panics(bytes in prop::collection::vec(any::<u8>(), 0..80), v6 in any::<bool>()) {
            let (s, d) = if v6 {
                ("fe80::1".parse().unwrap(), IpAddr::V6(MCAST_GROUP_V6))
            } else {
                (v4("198.18.0.11"), IpAddr::V4(MCAST_GROUP_V4))
            };
            if let Ok(p) = Packet::new_checked(&bytes[..]) {
                let _ = Repr::parse(&p, s, d);
                let _ = p.auth_data();
                let _ = p.addr(30, v6);
            }
        }
    }
}
