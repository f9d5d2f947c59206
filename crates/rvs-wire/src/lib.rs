//! Zero-copy packet views and builders for the rvs data plane.
//!
//! This crate follows the smoltcp `wire` design: for every protocol there is
//!
//! * a `Packet<T: AsRef<[u8]>>` (or `Frame<T>`) **view** over a byte buffer with
//!   private byte-range fields. Getters are available whenever `T: AsRef<[u8]>`,
//!   setters whenever `T` is also `AsMut<[u8]>`, so the same type parses a
//!   received frame and rewrites it in place (DR MAC rewrite, NAT address/port
//!   rewrite with incremental checksums, TTL decrement);
//! * a `Repr` **high-level representation** with `parse(&Packet) -> Result<Repr>`,
//!   `buffer_len()`/`header_len()` and `emit(&mut Packet)`, for building headers
//!   (encapsulation, ICMP errors, ARP requests) and for tests
//!   (`parse(emit(x)) == x` is property-tested for every `Repr`).
//!
//! Protocols: [`ethernet`] (+ 802.1Q/802.1ad tag), [`arp`], [`ipv4`] (options,
//! fragments, header checksum), [`ipv6`] (extension-header walk to the upper
//! layer), [`tcp`], [`udp`], [`sctp`] (common header, chunks, CRC32c),
//! [`icmpv4`] / [`icmpv6`] (including the packet embedded in errors),
//! [`ipip`] (outer-header builder as IPVS builds it), [`gue`] and [`gre`].
//! [`checksum`] has the RFC 1071 Internet checksum, pseudo-headers and the
//! RFC 1624 incremental update used when rewriting a field in place.
//! [`sync`] is the IPVS connection-synchronisation protocol (kernel sync
//! daemon messages v0/v1 and rvs control messages): an entry iterator and a
//! message writer rather than a view, since a message is a list of
//! variable-length entries.
//!
//! # No-panic contract
//!
//! * `Packet::new_checked(buf)` (and `Frame::new_checked`) validates that every
//!   fixed field and every length field of the header fits inside `buf`; on
//!   failure it returns an [`Error`]. **After a successful `new_checked`, no
//!   getter, setter or payload accessor panics**, whatever the bytes are.
//! * `Packet::new_unchecked(buf)` performs no check. It is meant for emission
//!   into a buffer the caller sized with `Repr::buffer_len()`. Field accessors
//!   on a too-short unchecked buffer may panic (slice indexing); payload
//!   accessors never do: they clamp to the buffer.
//! * `Repr::parse` never panics; malformed or unsupported input gives
//!   `Err(Error::…)`.
//! * `Repr::emit` may panic if the buffer is shorter than `buffer_len()` —
//!   a caller bug, never a property of received data.
//!
//! The crate is `no_std` (outside its own tests), uses no allocation and no
//! `unsafe`.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod arp;
pub mod checksum;
pub mod ethernet;
pub mod gre;
pub mod gue;
pub mod icmpv4;
pub mod icmpv6;
pub mod ipip;
pub mod ipv4;
pub mod ipv6;
pub mod sctp;
pub mod sync;
pub mod tcp;
pub mod udp;

pub use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why a buffer could not be parsed (or a value could not be represented).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Error {
    /// The buffer is shorter than the header (or than a length field says).
    #[error("truncated packet")]
    Truncated,
    /// A field has a value that is not valid for the protocol
    /// (bad version, header length below the minimum, broken option…).
    #[error("malformed packet")]
    Malformed,
    /// The checksum does not verify.
    #[error("bad checksum")]
    Checksum,
    /// Valid on the wire but not supported by this representation
    /// (e.g. ARP for a non-Ethernet/IPv4 pair, GRE version 1).
    #[error("unsupported packet")]
    Unsupported,
}

/// Result type of this crate.
pub type Result<T> = core::result::Result<T, Error>;

/// IP protocol numbers (IPv4 `protocol`, IPv6 `next header`).
pub mod ip_proto {
    /// IPv6 hop-by-hop options.
    pub const HOPOPTS: u8 = 0;
    /// ICMP.
    pub const ICMP: u8 = 1;
    /// IPv4 in IP (IPIP).
    pub const IPIP: u8 = 4;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
    /// IPv6 in IP.
    pub const IPV6: u8 = 41;
    /// IPv6 routing header.
    pub const ROUTING: u8 = 43;
    /// IPv6 fragment header.
    pub const FRAGMENT: u8 = 44;
    /// GRE.
    pub const GRE: u8 = 47;
    /// IPsec ESP.
    pub const ESP: u8 = 50;
    /// IPsec AH.
    pub const AH: u8 = 51;
    /// ICMPv6.
    pub const ICMPV6: u8 = 58;
    /// IPv6 "no next header".
    pub const NONE: u8 = 59;
    /// IPv6 destination options.
    pub const DSTOPTS: u8 = 60;
    /// SCTP.
    pub const SCTP: u8 = 132;
}

/// Ethernet types.
pub mod ethertype {
    /// IPv4.
    pub const IPV4: u16 = 0x0800;
    /// ARP.
    pub const ARP: u16 = 0x0806;
    /// 802.1Q VLAN tag.
    pub const VLAN: u16 = 0x8100;
    /// 802.1ad service tag (QinQ outer tag).
    pub const QINQ: u16 = 0x88a8;
    /// IPv6.
    pub const IPV6: u16 = 0x86dd;
}

/// Read a big-endian u16 at `at` (caller guarantees bounds).
#[inline]
pub(crate) fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// Read a big-endian u32 at `at` (caller guarantees bounds).
#[inline]
pub(crate) fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

#[inline]
pub(crate) fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

#[inline]
pub(crate) fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

/// `&b[from..to]` clamped to the buffer: never panics.
#[inline]
pub(crate) fn clamp(b: &[u8], from: usize, to: usize) -> &[u8] {
    let to = to.min(b.len());
    let from = from.min(to);
    &b[from..to]
}

/// Mutable variant of [`clamp`].
#[inline]
pub(crate) fn clamp_mut(b: &mut [u8], from: usize, to: usize) -> &mut [u8] {
    let to = to.min(b.len());
    let from = from.min(to);
    &mut b[from..to]
}
