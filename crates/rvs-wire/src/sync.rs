//! IPVS connection-synchronisation messages, byte-compatible with the Linux
//! sync daemon (`net/netfilter/ipvs/ip_vs_sync.c`), plus two rvs-only control
//! messages that kernel peers provably ignore.
//!
//! A master multicasts UDP datagrams (group 224.0.0.81, port 8848 by
//! default), each one *message*: a header and up to 255 connection entries.
//!
//! # Version 1 (`sync_version = 1`, the default)
//!
//! ```text
//! struct ip_vs_sync_mesg (8 bytes)
//!   | reserved = 0 | syncid | be16 size (whole datagram) |
//!   | nr_conns     | version = 1 | u16 spare = 0        |
//! then nr_conns entries, each starting on a 4-byte boundary (zero padding
//! *between* entries; the sender adds none after the last one):
//! struct ip_vs_sync_v4 (36 bytes) / struct ip_vs_sync_v6 (72 bytes)
//!   | type (bit 0 = STYPE_F_INET6) | protocol | be16 ver_size |
//!   | be32 flags                                             |
//!   | be16 state            | be16 cport                     |
//!   | be16 vport            | be16 dport                     |
//!   | be32 fwmark | be32 timeout (seconds)                   |
//!   | caddr | vaddr | daddr (4 or 16 bytes each)             |
//!   | options: u8 type | u8 len | len bytes, ...             |
//! ```
//!
//! `ver_size` is `version << 12 | size`, the entry's size including its
//! options but not the padding; the entry version must be 0. Options
//! ([`opt`]): `IPVS_OPT_SEQ_DATA` (24 bytes: `struct ip_vs_sync_conn_options`
//! = `in_seq` and `out_seq`, each `struct ip_vs_seq {init_seq, delta,
//! previous_delta}` as be32), `IPVS_OPT_PE_DATA` (≤ `IP_VS_PEDATA_MAXLEN`
//! bytes), `IPVS_OPT_PE_NAME` (≤ `IP_VS_PENAME_MAXLEN` bytes). A type with
//! `IPVS_OPT_F_PARAM` (0x40) set is optional: the receiver skips it if it
//! does not know it.
//!
//! # Version 0 (`sync_version = 0`, IPv4 only)
//!
//! ```text
//! struct ip_vs_sync_mesg_v0 (4 bytes) | nr_conns | syncid | be16 size |
//! struct ip_vs_sync_conn_v0 (24 bytes)
//!   | reserved | protocol | be16 cport | be16 vport | be16 dport |
//!   | be32 caddr | be32 vaddr | be32 daddr | be16 flags | be16 state |
//!   + struct ip_vs_sync_conn_options (24 bytes) iff flags & IP_VS_CONN_F_SEQ_MASK
//! ```
//!
//! v0 has no fwmark, timeout or PE data, and its sequence option is a
//! `memcpy` of the sender's `struct ip_vs_seq`, i.e. in the sender's *host*
//! byte order: rvs reads and writes it little-endian, as every x86 and arm64
//! kernel does.
//!
//! # Receive rules (`ip_vs_process_message`), mirrored by [`Message::parse`]
//!
//! * Datagrams shorter than 4 bytes, or whose `size` is not the datagram
//!   length, are dropped whole ([`DropReason::ShortHeader`],
//!   [`DropReason::SizeMismatch`]). A backup with a non-zero syncid ignores
//!   other syncids ([`syncid_accepted`]; left to the caller).
//! * The message is v1 iff `version == 1 && reserved == 0 && spare == 0`;
//!   *anything else* is parsed as v0, whose `nr_conns` is byte 0.
//! * Entries are processed in order and each one is applied before the next
//!   is looked at, so when a malformed entry makes the kernel drop "the
//!   buffer", the entries before it stay applied. [`Conns`] yields them, then
//!   the error, then stops ([`DropReason::drops_rest`]). Other errors skip
//!   only that entry ([`DropReason::UnknownOption`],
//!   [`DropReason::PeDataWithoutName`]).
//! * Not checked here (they need the protocol tables): a non-template entry
//!   whose protocol is not TCP/UDP/SCTP (or AH/ESP) or whose `state` is
//!   outside the protocol's state table is skipped, and an entry with PE data
//!   is skipped unless the named persistence engine is loaded.
//!
//! # Sending
//!
//! [`MessageWriter`] fills a buffer entry by entry, as `ip_vs_sync_conn`
//! fills a `sync_buff`; [`sync_maxlen`] gives the kernel's default message
//! size. The kernel sends `cp->flags & ~IP_VS_CONN_F_HASHED`; the writer
//! writes [`Entry::flags`] as given.
//!
//! # rvs control messages
//!
//! [`Control`] messages share the port. Their header is `reserved = 0`,
//! `nr_conns = 0`, `version = 0`, `spare = "rv"`; see [`Control`] for why a
//! kernel discards them without effect.

use crate::{be16, be32, put16, put32};
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Default UDP port (`IP_VS_SYNC_PORT`); with `sync_ports = N` the kernel's
/// thread `i` uses port + i.
pub const SYNC_PORT: u16 = 8848;
/// Default multicast group (`IP_VS_SYNC_GROUP`).
pub const SYNC_GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 81);
/// v1 header length (`struct ip_vs_sync_mesg`).
pub const HEADER_LEN: usize = 8;
/// v0 header length (`struct ip_vs_sync_mesg_v0`).
pub const HEADER_LEN_V0: usize = 4;
/// v1 IPv4 entry without options (`struct ip_vs_sync_v4`).
pub const ENTRY_V4_LEN: usize = 36;
/// v1 IPv6 entry without options (`struct ip_vs_sync_v6`).
pub const ENTRY_V6_LEN: usize = 72;
/// v0 entry without sequence option (`SIMPLE_CONN_SIZE`).
pub const ENTRY_V0_LEN: usize = 24;
/// `struct ip_vs_sync_conn_options` (two `struct ip_vs_seq`).
pub const SEQ_OPTION_LEN: usize = 24;
/// `IP_VS_PEDATA_MAXLEN`.
pub const PEDATA_MAXLEN: usize = 255;
/// `IP_VS_PENAME_MAXLEN`.
pub const PENAME_MAXLEN: usize = 16;
/// Entries per message (`nr_conns` is a u8).
pub const MAX_CONNS: usize = 255;
/// Longest entry: IPv6 with sequence option, 255 bytes of PE data and a
/// 16-byte PE name (373 bytes).
pub const MAX_ENTRY_LEN: usize =
    ENTRY_V6_LEN + 2 + SEQ_OPTION_LEN + 2 + PEDATA_MAXLEN + 2 + PENAME_MAXLEN;
/// A [`MessageWriter`] over at least this many bytes takes any valid entry
/// into an empty message.
pub const MIN_BUFFER_LEN: usize = HEADER_LEN + MAX_ENTRY_LEN;
/// `spare` of an rvs control message ("rv").
pub const RVS_MAGIC: [u8; 2] = *b"rv";

const SYNC_PROTO_VER: u8 = 1;
const STYPE_F_INET6: u8 = 1;
const SVER_SHIFT: u16 = 12;
const SVER_MASK: u16 = 0x0fff;

/// Connection flags (`IP_VS_CONN_F_*`, include/uapi/linux/ip_vs.h) that
/// matter to the sync protocol.
pub mod flags {
    /// Forwarding method mask (MASQ 0, LOCALNODE 1, TUNNEL 2, DROUTE 3, BYPASS 4).
    pub const FWD_MASK: u32 = 0x0007;
    /// Entry created by sync (set by the receiver).
    pub const SYNC: u32 = 0x0020;
    /// Hashed entry (cleared by the sender).
    pub const HASHED: u32 = 0x0040;
    /// No output packets.
    pub const NOOUTPUT: u32 = 0x0080;
    /// Not established.
    pub const INACTIVE: u32 = 0x0100;
    /// In/out sequence adjustment: a v0 entry carries the sequence option
    /// iff one of these is set.
    pub const SEQ_MASK: u32 = 0x0600;
    /// No client port yet.
    pub const NO_CPORT: u32 = 0x0800;
    /// Persistence template, not a connection.
    pub const TEMPLATE: u32 = 0x1000;
    /// One-packet scheduling (never synced).
    pub const ONE_PACKET: u32 = 0x2000;
    /// `IP_VS_CONN_F_BACKUP_MASK`: what a v1 receiver keeps.
    pub const BACKUP_MASK: u32 = FWD_MASK | NOOUTPUT | INACTIVE | SEQ_MASK | NO_CPORT | TEMPLATE;
}

/// v1 option types.
pub mod opt {
    /// `IPVS_OPT_SEQ_DATA`: `struct ip_vs_sync_conn_options`, 24 bytes.
    pub const SEQ_DATA: u8 = 1;
    /// `IPVS_OPT_PE_DATA`: persistence-engine data.
    pub const PE_DATA: u8 = 2;
    /// `IPVS_OPT_PE_NAME`: persistence-engine name (e.g. "sip").
    pub const PE_NAME: u8 = 3;
    /// `IPVS_OPT_F_PARAM`: the option is optional (skipped if unknown).
    pub const F_PARAM: u8 = 0x40;
}

/// Message format version (`sync_version` sysctl).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    /// The original format: IPv4 only, no fwmark/timeout/PE data.
    V0,
    /// The current format.
    V1,
}

impl Version {
    /// Header length of a message of this version.
    pub const fn header_len(self) -> usize {
        match self {
            Version::V0 => HEADER_LEN_V0,
            Version::V1 => HEADER_LEN,
        }
    }
}

/// `struct ip_vs_seq`: TCP sequence adjustment of one direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Seq {
    /// Add `delta` from this sequence number on.
    pub init_seq: u32,
    /// Delta in sequence numbers (two's complement).
    pub delta: u32,
    /// Delta before the last resized packet (two's complement).
    pub previous_delta: u32,
}

/// `struct ip_vs_sync_conn_options`: both directions' sequence adjustment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct SeqOption {
    /// Client -> server direction.
    pub in_seq: Seq,
    /// Server -> client direction.
    pub out_seq: Seq,
}

impl SeqOption {
    /// Read 24 bytes, big-endian (v1) or little-endian (v0, see the module doc).
    fn read(b: &[u8], big_endian: bool) -> SeqOption {
        let w = |i: usize| {
            let a = [b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]];
            if big_endian {
                u32::from_be_bytes(a)
            } else {
                u32::from_le_bytes(a)
            }
        };
        SeqOption {
            in_seq: Seq {
                init_seq: w(0),
                delta: w(1),
                previous_delta: w(2),
            },
            out_seq: Seq {
                init_seq: w(3),
                delta: w(4),
                previous_delta: w(5),
            },
        }
    }
    fn write(&self, b: &mut [u8], big_endian: bool) {
        let words = [
            self.in_seq.init_seq,
            self.in_seq.delta,
            self.in_seq.previous_delta,
            self.out_seq.init_seq,
            self.out_seq.delta,
            self.out_seq.previous_delta,
        ];
        for (i, w) in words.into_iter().enumerate() {
            let bytes = if big_endian {
                w.to_be_bytes()
            } else {
                w.to_le_bytes()
            };
            b[4 * i..4 * i + 4].copy_from_slice(&bytes);
        }
    }
}

/// One connection (or persistence template) of a sync message, borrowing
/// its PE data and name from the datagram.
///
/// The three addresses share one family (checked by
/// [`MessageWriter::push`]). A v0 entry has `fwmark = 0`, `timeout = 0`, no
/// PE data, and `seq` is `Some` iff `flags & SEQ_MASK`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Entry<'a> {
    /// IP protocol number.
    pub protocol: u8,
    /// Connection flags as on the wire ([`flags`]); v0 carries the low 16
    /// bits. The kernel receiver keeps `flags & BACKUP_MASK | SYNC` (v1) or
    /// `flags & !HASHED | SYNC` (v0).
    pub flags: u32,
    /// Protocol state index (template: `IP_VS_CTPL_S_*`).
    pub state: u16,
    /// Client address.
    pub caddr: IpAddr,
    /// Client port.
    pub cport: u16,
    /// Virtual address.
    pub vaddr: IpAddr,
    /// Virtual port.
    pub vport: u16,
    /// Real-server address.
    pub daddr: IpAddr,
    /// Real-server port.
    pub dport: u16,
    /// Firewall mark of the service (v1).
    pub fwmark: u32,
    /// Remaining lifetime in seconds (v1; 0 = the state's default timeout).
    pub timeout: u32,
    /// `IPVS_OPT_SEQ_DATA`.
    pub seq: Option<SeqOption>,
    /// `IPVS_OPT_PE_DATA` (1..=255 bytes).
    pub pe_data: Option<&'a [u8]>,
    /// `IPVS_OPT_PE_NAME` (1..=16 bytes; the kernel sends it only with PE data).
    pub pe_name: Option<&'a [u8]>,
}

impl Entry<'_> {
    /// Bytes this entry takes in a `version` message, without alignment
    /// padding (the v1 `ver_size`), or why it cannot be sent in one.
    pub fn buffer_len(&self, version: Version) -> Result<usize, PushError> {
        let v6 = match (self.caddr, self.vaddr, self.daddr) {
            (IpAddr::V4(_), IpAddr::V4(_), IpAddr::V4(_)) => false,
            (IpAddr::V6(_), IpAddr::V6(_), IpAddr::V6(_)) => true,
            _ => return Err(PushError::MixedFamilies),
        };
        match version {
            Version::V0 if v6 => Err(PushError::Ipv6InV0),
            Version::V0 => Ok(ENTRY_V0_LEN + if self.v0_has_seq() { SEQ_OPTION_LEN } else { 0 }),
            Version::V1 => {
                let option = |d: Option<&[u8]>, max: usize, err: PushError| match d {
                    None => Ok(0),
                    Some(d) if (1..=max).contains(&d.len()) => Ok(2 + d.len()),
                    Some(_) => Err(err),
                };
                let fixed = if v6 { ENTRY_V6_LEN } else { ENTRY_V4_LEN };
                let seq = if self.seq.is_some() {
                    2 + SEQ_OPTION_LEN
                } else {
                    0
                };
                let pe_data = option(self.pe_data, PEDATA_MAXLEN, PushError::BadPeData)?;
                let pe_name = option(self.pe_name, PENAME_MAXLEN, PushError::BadPeName)?;
                Ok(fixed + seq + pe_data + pe_name)
            }
        }
    }

    fn v0_has_seq(&self) -> bool {
        self.flags & flags::SEQ_MASK != 0
    }

    /// Write a v1 entry into `b`, exactly `buffer_len(V1)` bytes.
    fn emit_v1(&self, b: &mut [u8]) {
        let v6 = self.caddr.is_ipv6();
        b[0] = if v6 { STYPE_F_INET6 } else { 0 };
        b[1] = self.protocol;
        put16(b, 2, b.len() as u16 & SVER_MASK);
        put32(b, 4, self.flags);
        put16(b, 8, self.state);
        put16(b, 10, self.cport);
        put16(b, 12, self.vport);
        put16(b, 14, self.dport);
        put32(b, 16, self.fwmark);
        put32(b, 20, self.timeout);
        let mut p = 24;
        for a in [self.caddr, self.vaddr, self.daddr] {
            p += put_addr(b, p, a);
        }
        if let Some(s) = &self.seq {
            b[p] = opt::SEQ_DATA;
            b[p + 1] = SEQ_OPTION_LEN as u8;
            s.write(&mut b[p + 2..p + 2 + SEQ_OPTION_LEN], true);
            p += 2 + SEQ_OPTION_LEN;
        }
        for (t, d) in [(opt::PE_DATA, self.pe_data), (opt::PE_NAME, self.pe_name)] {
            if let Some(d) = d {
                b[p] = t;
                b[p + 1] = d.len() as u8;
                b[p + 2..p + 2 + d.len()].copy_from_slice(d);
                p += 2 + d.len();
            }
        }
    }

    /// Write a v0 entry into `b`, exactly `buffer_len(V0)` bytes.
    fn emit_v0(&self, b: &mut [u8]) {
        b[0] = 0;
        b[1] = self.protocol;
        put16(b, 2, self.cport);
        put16(b, 4, self.vport);
        put16(b, 6, self.dport);
        for (i, a) in [self.caddr, self.vaddr, self.daddr].into_iter().enumerate() {
            put_addr(b, 8 + 4 * i, a);
        }
        put16(b, 20, self.flags as u16);
        put16(b, 22, self.state);
        if self.v0_has_seq() {
            self.seq
                .unwrap_or_default()
                .write(&mut b[ENTRY_V0_LEN..], false);
        }
    }
}

fn put_addr(b: &mut [u8], at: usize, a: IpAddr) -> usize {
    let o = match a {
        IpAddr::V4(a) => &a.octets()[..],
        IpAddr::V6(a) => &a.octets()[..],
    };
    b[at..at + o.len()].copy_from_slice(o);
    o.len()
}

fn ip4(b: &[u8], at: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(be32(b, at)))
}

fn ip6(b: &[u8], at: usize) -> IpAddr {
    let mut o = [0u8; 16];
    o.copy_from_slice(&b[at..at + 16]);
    IpAddr::V6(Ipv6Addr::from(o))
}

/// Why (part of) a received message is not applied, named after what the
/// kernel does in the same case, so the daemon can count drops by reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum DropReason {
    // -- whole message (from Message::parse) --
    /// Fewer than 4 bytes ("message header too short").
    #[error("sync message shorter than its 4-byte header")]
    ShortHeader,
    /// The header's `size` is not the datagram length ("bogus message size").
    #[error("sync message size field does not match the datagram length")]
    SizeMismatch,
    /// rvs control magic with an unknown kind or too short for its kind.
    #[error("unknown or truncated rvs control message (peer runs a newer rvs?)")]
    BadControl,
    // -- this entry and the rest of the message --
    /// `nr_conns` promises more than the datagram holds, or an entry's size
    /// runs past its end ("Dropping buffer, too small" / "msg > buffer",
    /// v0 "bogus conn" / "bogus conn options").
    #[error("sync entry truncated: runs past the end of the message")]
    Truncated,
    /// Entry version bits (`ver_size >> 12`) not 0 ("Unknown version").
    #[error("sync entry has an unknown entry version")]
    BadVersion,
    /// Entry type neither 0 (IPv4) nor with `STYPE_F_INET6` (error -10).
    #[error("sync entry has an unknown type")]
    BadType,
    /// Entry size below its fixed part, 36 or 72 bytes (error -20).
    #[error("sync entry size smaller than its fixed fields")]
    BadLength,
    /// Option header cut off, zero option length, or option running past
    /// the entry (errors -30, -40).
    #[error("sync entry option malformed (zero length or past the entry)")]
    BadOption,
    /// Sequence option not 24 bytes, or twice (error -50).
    #[error("sync entry sequence option malformed or repeated")]
    BadSeqOption,
    /// PE data longer than 255 bytes, or twice (error -60).
    #[error("sync entry PE data malformed or repeated")]
    BadPeData,
    /// PE name longer than 16 bytes, or twice (error -70).
    #[error("sync entry PE name longer than 16 bytes or repeated")]
    BadPeName,
    // -- this entry only --
    /// Unknown option without `IPVS_OPT_F_PARAM` ("Unknown mandatory param").
    #[error("sync entry skipped: unknown mandatory option")]
    UnknownOption,
    /// PE data without a PE name ("Invalid PE parameters").
    #[error("sync entry skipped: PE data without a PE name")]
    PeDataWithoutName,
}

impl DropReason {
    /// Does the kernel drop the rest of the message after this (an entry
    /// error with a negative code, or a message-level error)? If not, only
    /// this entry is skipped.
    pub const fn drops_rest(self) -> bool {
        !matches!(
            self,
            DropReason::UnknownOption | DropReason::PeDataWithoutName
        )
    }
}

/// Does a backup configured with syncid `local` accept a message carrying
/// `received`? (0 = accept all.)
pub const fn syncid_accepted(local: u8, received: u8) -> bool {
    local == 0 || local == received
}

/// A received datagram, classified as the kernel classifies it.
#[derive(Debug, Clone)]
pub enum Message<'a> {
    /// A v1 message.
    V1(Conns<'a>),
    /// Anything else the kernel parses as v0 (including a v1-looking header
    /// with a non-zero `spare`: the kernel reads its `nr_conns` from byte 0).
    V0(Conns<'a>),
    /// An rvs control message.
    Control {
        /// Sender's syncid.
        syncid: u8,
        /// What it says.
        control: Control,
    },
}

impl<'a> Message<'a> {
    /// Classify `buf` (one whole datagram). Never panics; does not allocate.
    pub fn parse(buf: &'a [u8]) -> Result<Message<'a>, DropReason> {
        if buf.len() < HEADER_LEN_V0 {
            return Err(DropReason::ShortHeader);
        }
        if usize::from(be16(buf, 2)) != buf.len() {
            return Err(DropReason::SizeMismatch);
        }
        let syncid = buf[1];
        // A 4..7-byte datagram makes the kernel read stale buffer bytes for
        // version/spare; either way nothing is applied. We take v0.
        let h = buf.get(..HEADER_LEN).unwrap_or(&[]);
        if let [0, _, _, _, 0, 0, m0, m1] = *h {
            if [m0, m1] == RVS_MAGIC {
                let control = Control::parse(buf)?;
                return Ok(Message::Control { syncid, control });
            }
        }
        if let [0, _, _, _, nr, SYNC_PROTO_VER, 0, 0] = *h {
            return Ok(Message::V1(Conns::new(Version::V1, buf, nr)));
        }
        Ok(Message::V0(Conns::new(Version::V0, buf, buf[0])))
    }

    /// The sender's syncid.
    pub fn syncid(&self) -> u8 {
        match self {
            Message::V1(c) | Message::V0(c) => c.syncid(),
            Message::Control { syncid, .. } => *syncid,
        }
    }
}

/// The entries of a v1 or v0 message, in order. Yields each entry or why
/// it is not applied; after an error that [drops the rest]
/// (DropReason::drops_rest) it ends.
#[derive(Debug, Clone)]
pub struct Conns<'a> {
    version: Version,
    buf: &'a [u8],
    nr_conns: u8,
    left: u8,
    pos: usize,
}

impl<'a> Conns<'a> {
    fn new(version: Version, buf: &'a [u8], nr_conns: u8) -> Self {
        let pos = version.header_len();
        Conns {
            version,
            buf,
            nr_conns,
            left: nr_conns,
            pos,
        }
    }
    /// Message version.
    pub fn version(&self) -> Version {
        self.version
    }
    /// Sender's syncid.
    pub fn syncid(&self) -> u8 {
        self.buf[1]
    }
    /// Entry count announced by the header.
    pub fn nr_conns(&self) -> u8 {
        self.nr_conns
    }

    fn stop(&mut self, r: DropReason) -> Option<Result<Entry<'a>, DropReason>> {
        self.left = 0;
        Some(Err(r))
    }

    fn next_v0(&mut self) -> Option<Result<Entry<'a>, DropReason>> {
        let (b, p) = (self.buf, self.pos);
        if p + ENTRY_V0_LEN > b.len() {
            return self.stop(DropReason::Truncated);
        }
        let flags = u32::from(be16(b, p + 20));
        let seq = if flags & flags::SEQ_MASK != 0 {
            if p + ENTRY_V0_LEN + SEQ_OPTION_LEN > b.len() {
                return self.stop(DropReason::Truncated);
            }
            self.pos += SEQ_OPTION_LEN;
            Some(SeqOption::read(&b[p + ENTRY_V0_LEN..], false))
        } else {
            None
        };
        self.pos += ENTRY_V0_LEN;
        Some(Ok(Entry {
            protocol: b[p + 1],
            flags,
            state: be16(b, p + 22),
            caddr: ip4(b, p + 8),
            cport: be16(b, p + 2),
            vaddr: ip4(b, p + 12),
            vport: be16(b, p + 4),
            daddr: ip4(b, p + 16),
            dport: be16(b, p + 6),
            fwmark: 0,
            timeout: 0,
            seq,
            pe_data: None,
            pe_name: None,
        }))
    }

    fn next_v1(&mut self) -> Option<Result<Entry<'a>, DropReason>> {
        let (b, p) = (self.buf, self.pos);
        if p + ENTRY_V4_LEN > b.len() {
            return self.stop(DropReason::Truncated);
        }
        let ver_size = be16(b, p + 2);
        let size = usize::from(ver_size & SVER_MASK);
        if p + size > b.len() {
            return self.stop(DropReason::Truncated);
        }
        if ver_size >> SVER_SHIFT != 0 {
            return self.stop(DropReason::BadVersion);
        }
        // next entry on a 4-byte boundary (ip_vs_process_message)
        self.pos = p + ((size + 3) & !3);
        match decode_v1(b[p], &b[p..p + size]) {
            Err(r) if r.drops_rest() => self.stop(r),
            r => Some(r),
        }
    }
}

impl<'a> Iterator for Conns<'a> {
    type Item = Result<Entry<'a>, DropReason>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        match self.version {
            Version::V0 => self.next_v0(),
            Version::V1 => self.next_v1(),
        }
    }
}

/// `ip_vs_proc_sync_conn` up to the protocol/state checks. `ty` is the
/// type byte (read even when the entry size is 0, as the kernel does).
fn decode_v1(ty: u8, e: &[u8]) -> Result<Entry<'_>, DropReason> {
    let v6 = if ty & STYPE_F_INET6 != 0 {
        true
    } else if ty == 0 {
        false
    } else {
        return Err(DropReason::BadType);
    };
    let fixed = if v6 { ENTRY_V6_LEN } else { ENTRY_V4_LEN };
    if fixed > e.len() {
        return Err(DropReason::BadLength);
    }
    let addr = |i: usize| {
        if v6 {
            ip6(e, 24 + 16 * i)
        } else {
            ip4(e, 24 + 4 * i)
        }
    };
    let mut entry = Entry {
        protocol: e[1],
        flags: be32(e, 4),
        state: be16(e, 8),
        caddr: addr(0),
        cport: be16(e, 10),
        vaddr: addr(1),
        vport: be16(e, 12),
        daddr: addr(2),
        dport: be16(e, 14),
        fwmark: be32(e, 16),
        timeout: be32(e, 20),
        seq: None,
        pe_data: None,
        pe_name: None,
    };
    let mut q = fixed;
    while q < e.len() {
        if q + 2 > e.len() {
            return Err(DropReason::BadOption);
        }
        let (ptype, plen) = (e[q], usize::from(e[q + 1]));
        q += 2;
        if plen == 0 || q + plen > e.len() {
            return Err(DropReason::BadOption);
        }
        let data = &e[q..q + plen];
        match ptype & !opt::F_PARAM {
            opt::SEQ_DATA => {
                if plen != SEQ_OPTION_LEN || entry.seq.is_some() {
                    return Err(DropReason::BadSeqOption);
                }
                entry.seq = Some(SeqOption::read(data, true));
            }
            opt::PE_DATA => {
                if plen > PEDATA_MAXLEN || entry.pe_data.is_some() {
                    return Err(DropReason::BadPeData);
                }
                entry.pe_data = Some(data);
            }
            opt::PE_NAME => {
                if plen > PENAME_MAXLEN || entry.pe_name.is_some() {
                    return Err(DropReason::BadPeName);
                }
                entry.pe_name = Some(data);
            }
            _ if ptype & opt::F_PARAM == 0 => return Err(DropReason::UnknownOption),
            _ => {}
        }
        q += plen;
    }
    if entry.pe_data.is_some() && entry.pe_name.is_none() {
        return Err(DropReason::PeDataWithoutName);
    }
    Ok(entry)
}

/// Why [`MessageWriter::push`] did not add an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum PushError {
    /// No room (bytes, or 255 entries): send the message, start a new one.
    /// On an empty message this means the buffer is below
    /// [`MIN_BUFFER_LEN`] and the entry will never fit.
    #[error("sync message full: send it and start a new one")]
    Full,
    /// v0 carries IPv4 only (the kernel skips such connections).
    #[error("IPv6 connection cannot be sent in a version 0 sync message (use sync version 1)")]
    Ipv6InV0,
    /// caddr, vaddr and daddr are not all IPv4 or all IPv6.
    #[error("sync entry mixes IPv4 and IPv6 addresses")]
    MixedFamilies,
    /// PE data empty or longer than [`PEDATA_MAXLEN`].
    #[error("sync entry PE data must be 1 to 255 bytes")]
    BadPeData,
    /// PE name empty or longer than [`PENAME_MAXLEN`].
    #[error("sync entry PE name must be 1 to 16 bytes")]
    BadPeName,
}

/// Builds one sync message in a caller-provided buffer, entry by entry,
/// as `ip_vs_sync_conn` / `ip_vs_sync_conn_v0` fill a `sync_buff`: v1
/// entries are aligned to 4 bytes by zero padding before the next entry (no
/// padding after the last one). After every `push` the buffer's first
/// [`len`](Self::len) bytes are a complete message. Does not allocate.
#[derive(Debug)]
pub struct MessageWriter<'b> {
    buf: &'b mut [u8],
    version: Version,
    len: usize,
    nr_conns: u8,
}

impl<'b> MessageWriter<'b> {
    /// Start an empty message. Its maximum length is `buf.len()` (at most
    /// 65535): give it `sync_maxlen` bytes, and at least [`MIN_BUFFER_LEN`].
    ///
    /// # Panics
    /// If `buf` is shorter than the header (8 bytes, v0: 4), a caller bug.
    pub fn new(buf: &'b mut [u8], version: Version, syncid: u8) -> Self {
        let hl = version.header_len();
        let h = &mut buf[..hl];
        h.fill(0);
        h[1] = syncid;
        put16(h, 2, hl as u16);
        if version == Version::V1 {
            h[5] = SYNC_PROTO_VER;
        }
        MessageWriter {
            buf,
            version,
            len: hl,
            nr_conns: 0,
        }
    }

    /// Append `entry`, or say why not (nothing is written then).
    pub fn push(&mut self, entry: &Entry<'_>) -> Result<(), PushError> {
        let elen = entry.buffer_len(self.version)?;
        if usize::from(self.nr_conns) == MAX_CONNS {
            return Err(PushError::Full);
        }
        let pad = match self.version {
            Version::V1 => self.len.wrapping_neg() & 3,
            Version::V0 => 0,
        };
        let end = self.len + pad + elen;
        if end > self.buf.len().min(usize::from(u16::MAX)) {
            return Err(PushError::Full);
        }
        self.buf[self.len..self.len + pad].fill(0);
        let out = &mut self.buf[self.len + pad..end];
        match self.version {
            Version::V1 => entry.emit_v1(out),
            Version::V0 => entry.emit_v0(out),
        }
        self.len = end;
        self.nr_conns += 1;
        put16(self.buf, 2, end as u16);
        let nr_at = match self.version {
            Version::V1 => 4,
            Version::V0 => 0,
        };
        self.buf[nr_at] = self.nr_conns;
        Ok(())
    }

    /// Message length so far (header included).
    pub fn len(&self) -> usize {
        self.len
    }
    /// No entry yet?
    pub fn is_empty(&self) -> bool {
        self.nr_conns == 0
    }
    /// Entries so far.
    pub fn nr_conns(&self) -> u8 {
        self.nr_conns
    }
    /// The message length: send `buf[..finish()]`.
    pub fn finish(self) -> usize {
        self.len
    }
}

/// Which sync daemon (`IP_VS_STATE_MASTER` / `IP_VS_STATE_BACKUP`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Sends.
    Master,
    /// Receives.
    Backup,
}

/// The kernel's `sync_maxlen` (`start_sync_thread`, kernels with the
/// `IPVS_DAEMON_ATTR_SYNC_MAXLEN` daemon attribute): the UDP payload limit of
/// a message, for a multicast group of the given family.
///
/// `configured` is `--sync-maxlen` (0 = default). Default: master
/// 1500 - IP - UDP (1472 over IPv4, 1452 over IPv6) whatever the device MTU;
/// backup `clamp(dev_mtu, 1500, 65535)` - IP - UDP. A configured value is
/// clamped to `[1, 65535 - hlen]` (master) or `[1024, 65535 - hlen]`
/// (backup). (Older kernels' `set_sync_mesg_maxlen` used
/// `4 + 24 * min((mtu - 52) / 24, 255)` for the master and `mtu - 28` for
/// the backup.) A receiver should read datagrams into a buffer of this size.
pub fn sync_maxlen(role: Role, mcast_ipv6: bool, dev_mtu: u32, configured: u16) -> usize {
    let hlen = if mcast_ipv6 { 40 + 8 } else { 20 + 8 };
    let (mtu, min) = match role {
        Role::Master => (1500, 1),
        Role::Backup => (dev_mtu.clamp(1500, 65535) as usize, 1024),
    };
    if configured != 0 {
        usize::from(configured).clamp(min, 65535 - hlen)
    } else {
        mtu - hlen
    }
}

/// An rvs-only control message, carried on the sync port next to kernel
/// messages.
///
/// ```text
/// | reserved = 0 | syncid | be16 size | nr_conns = 0 | version = 0 | "rv" |
/// | kind | 0 | 0 | 0 | be32 nonce | (BulkEnd: be32 entries)              |
/// ```
///
/// A kernel discards it without effect (`ip_vs_process_message`,
/// ip_vs_sync.c): `size` equals the datagram length, so the
/// "bogus message size" check passes; the v1 test
/// `m2->version == SYNC_PROTO_VER && m2->reserved == 0 && m2->spare == 0`
/// fails (version 0, spare "rv"), so it goes to
/// `ip_vs_process_message_v0`, whose loop `for (i=0; i<m->nr_conns; i++)`
/// reads `nr_conns` from byte 0, the reserved byte, which is 0: no entry is
/// looked at, nothing is logged. Kernels without v1 support run only that
/// v0 loop. rvs recognises a control message by
/// `reserved == 0 && nr_conns == 0 && version == 0 && spare == "rv"`, which
/// a kernel never sends (its v0 header has no bytes 4..8 and an empty
/// message is never sent). Bytes after the kind's fields are ignored, for
/// later extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Control {
    /// A (re)started daemon asks its peers for their whole table.
    BulkRequest {
        /// Echoed in the [`Control::BulkEnd`] that closes the answer.
        nonce: u32,
    },
    /// The peer has sent its whole table in answer to `nonce`.
    BulkEnd {
        /// The request's nonce.
        nonce: u32,
        /// How many entries it sent.
        entries: u32,
    },
}

const KIND_BULK_REQUEST: u8 = 1;
const KIND_BULK_END: u8 = 2;

impl Control {
    fn parse(b: &[u8]) -> Result<Control, DropReason> {
        match b.get(HEADER_LEN) {
            Some(&KIND_BULK_REQUEST) if b.len() >= 16 => {
                Ok(Control::BulkRequest { nonce: be32(b, 12) })
            }
            Some(&KIND_BULK_END) if b.len() >= 20 => Ok(Control::BulkEnd {
                nonce: be32(b, 12),
                entries: be32(b, 16),
            }),
            _ => Err(DropReason::BadControl),
        }
    }

    /// Message length: 16 (request) or 20 (end).
    pub const fn buffer_len(&self) -> usize {
        match self {
            Control::BulkRequest { .. } => 16,
            Control::BulkEnd { .. } => 20,
        }
    }

    /// Write the message into `buf` and return its length.
    ///
    /// # Panics
    /// If `buf` is shorter than [`buffer_len`](Self::buffer_len), a caller bug.
    pub fn emit(&self, syncid: u8, buf: &mut [u8]) -> usize {
        let n = self.buffer_len();
        let b = &mut buf[..n];
        b.fill(0);
        b[1] = syncid;
        put16(b, 2, n as u16);
        b[6..8].copy_from_slice(&RVS_MAGIC);
        match *self {
            Control::BulkRequest { nonce } => {
                b[8] = KIND_BULK_REQUEST;
                put32(b, 12, nonce);
            }
            Control::BulkEnd { nonce, entries } => {
                b[8] = KIND_BULK_END;
                put32(b, 12, nonce);
                put32(b, 16, entries);
            }
        }
        n
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use proptest::prelude::*;

    fn v4(a: [u8; 4]) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(a))
    }

    /// The TCP connection of the v1 IPv4 and v0 goldens:
    /// 198.18.0.1:40000 -> 198.18.0.100:80 -> 198.18.1.10:8080, DR,
    /// INACTIVE, state 1.
    fn tcp_entry() -> Entry<'static> {
        Entry {
            protocol: 6,
            flags: 0x0103,
            state: 1,
            caddr: v4([198, 18, 0, 1]),
            cport: 40000,
            vaddr: v4([198, 18, 0, 100]),
            vport: 80,
            daddr: v4([198, 18, 1, 10]),
            dport: 8080,
            fwmark: 0,
            timeout: 900,
            seq: None,
            pe_data: None,
            pe_name: None,
        }
    }

    /// Its persistence template: cport 0, TEMPLATE|DR, fwmark 7, 360 s.
    fn template_entry() -> Entry<'static> {
        Entry {
            flags: 0x1003,
            state: 0,
            cport: 0,
            fwmark: 7,
            timeout: 360,
            ..tcp_entry()
        }
    }

    fn seq_opt() -> SeqOption {
        SeqOption {
            in_seq: Seq {
                init_seq: 0x0102_0304,
                delta: 0x10,
                previous_delta: 0xffff_fff0,
            },
            out_seq: Seq {
                init_seq: 0xa0b0_c0d0,
                delta: 0,
                previous_delta: 0,
            },
        }
    }

    /// UDP 5060 over IPv6 with seq, PE data "call1" and PE name "sip".
    fn v6_entry() -> Entry<'static> {
        Entry {
            protocol: 17,
            flags: 0x0600,
            state: 0,
            caddr: "2001:2::1".parse().unwrap(),
            cport: 5060,
            vaddr: "2001:2::100".parse().unwrap(),
            vport: 5060,
            daddr: "2001:2:0:1::a".parse().unwrap(),
            dport: 5060,
            fwmark: 7,
            timeout: 300,
            seq: Some(seq_opt()),
            pe_data: Some(b"call1"),
            pe_name: Some(b"sip"),
        }
    }

    // Golden messages, written field by field from the kernel structs.

    #[rustfmt::skip]
    static V1_IPV4: [u8; 80] = [
        // ip_vs_sync_mesg: reserved, syncid 5, size 80, nr_conns 2, version 1, spare
        0x00, 0x05, 0x00, 0x50, 0x02, 0x01, 0x00, 0x00,
        // ip_vs_sync_v4: type 0, TCP, ver_size 36
        0x00, 0x06, 0x00, 0x24,
        0x00, 0x00, 0x01, 0x03, // flags INACTIVE|DROUTE
        0x00, 0x01, 0x9c, 0x40, // state 1, cport 40000
        0x00, 0x50, 0x1f, 0x90, // vport 80, dport 8080
        0x00, 0x00, 0x00, 0x00, // fwmark
        0x00, 0x00, 0x03, 0x84, // timeout 900
        198, 18, 0, 1, 198, 18, 0, 100, 198, 18, 1, 10,
        // template
        0x00, 0x06, 0x00, 0x24,
        0x00, 0x00, 0x10, 0x03, // TEMPLATE|DROUTE
        0x00, 0x00, 0x00, 0x00, // state 0, cport 0
        0x00, 0x50, 0x1f, 0x90,
        0x00, 0x00, 0x00, 0x07, // fwmark 7
        0x00, 0x00, 0x01, 0x68, // timeout 360
        198, 18, 0, 1, 198, 18, 0, 100, 198, 18, 1, 10,
    ];

    #[rustfmt::skip]
    static V1_IPV6_OPTS: [u8; 156] = [
        // header: syncid 9, size 156, nr_conns 2
        0x00, 0x09, 0x00, 0x9c, 0x02, 0x01, 0x00, 0x00,
        // ip_vs_sync_v6: type INET6, UDP, ver_size 110 = 72 + 26 + 7 + 5
        0x01, 0x11, 0x00, 0x6e,
        0x00, 0x00, 0x06, 0x00, // flags IN_SEQ|OUT_SEQ, MASQ
        0x00, 0x00, 0x13, 0xc4, // state 0, cport 5060
        0x13, 0xc4, 0x13, 0xc4, // vport, dport 5060
        0x00, 0x00, 0x00, 0x07, // fwmark 7
        0x00, 0x00, 0x01, 0x2c, // timeout 300
        0x20, 0x01, 0x00, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x00, 0x01,
        0x20, 0x01, 0x00, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x00,
        0x20, 0x01, 0x00, 0x02, 0, 0, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0x00, 0x0a,
        // IPVS_OPT_SEQ_DATA, 24: in_seq then out_seq, be32
        0x01, 0x18,
        0x01, 0x02, 0x03, 0x04, 0x00, 0x00, 0x00, 0x10, 0xff, 0xff, 0xff, 0xf0,
        0xa0, 0xb0, 0xc0, 0xd0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        // IPVS_OPT_PE_DATA "call1", IPVS_OPT_PE_NAME "sip"
        0x02, 0x05, b'c', b'a', b'l', b'l', b'1',
        0x03, 0x03, b's', b'i', b'p',
        // 8 + 110 = 118: two bytes of padding to 120
        0x00, 0x00,
        // the IPv4 connection
        0x00, 0x06, 0x00, 0x24,
        0x00, 0x00, 0x01, 0x03,
        0x00, 0x01, 0x9c, 0x40,
        0x00, 0x50, 0x1f, 0x90,
        0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x03, 0x84,
        198, 18, 0, 1, 198, 18, 0, 100, 198, 18, 1, 10,
    ];

    #[rustfmt::skip]
    static V0_PLAIN: [u8; 28] = [
        // ip_vs_sync_mesg_v0: nr_conns 1, syncid 5, size 28
        0x01, 0x05, 0x00, 0x1c,
        // ip_vs_sync_conn_v0: reserved, TCP, cport, vport, dport
        0x00, 0x06, 0x9c, 0x40, 0x00, 0x50, 0x1f, 0x90,
        198, 18, 0, 1, 198, 18, 0, 100, 198, 18, 1, 10,
        0x01, 0x03, 0x00, 0x01, // flags INACTIVE|DROUTE, state 1
    ];

    #[rustfmt::skip]
    static V0_SEQ: [u8; 76] = [
        // nr_conns 2, syncid 5, size 76 = 4 + 48 + 24
        0x02, 0x05, 0x00, 0x4c,
        // NAT connection with sequence adjustment
        0x00, 0x06, 0x9c, 0x40, 0x00, 0x50, 0x1f, 0x90,
        198, 18, 0, 1, 198, 18, 0, 100, 198, 18, 1, 10,
        0x06, 0x00, 0x00, 0x01, // flags IN_SEQ|OUT_SEQ, state 1
        // ip_vs_sync_conn_options memcpy'd in host (little-endian) order
        0x04, 0x03, 0x02, 0x01, 0x10, 0x00, 0x00, 0x00, 0xf0, 0xff, 0xff, 0xff,
        0xd0, 0xc0, 0xb0, 0xa0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        // the DR connection, no options
        0x00, 0x06, 0x9c, 0x40, 0x00, 0x50, 0x1f, 0x90,
        198, 18, 0, 1, 198, 18, 0, 100, 198, 18, 1, 10,
        0x01, 0x03, 0x00, 0x01,
    ];

    fn encode(version: Version, syncid: u8, entries: &[Entry<'_>]) -> Vec<u8> {
        let mut buf = vec![0u8; 1500];
        let mut w = MessageWriter::new(&mut buf, version, syncid);
        for e in entries {
            w.push(e).unwrap();
        }
        let n = w.finish();
        buf.truncate(n);
        buf
    }

    fn decode(buf: &[u8]) -> Vec<Result<Entry<'_>, DropReason>> {
        match Message::parse(buf).unwrap() {
            Message::V1(c) | Message::V0(c) => c.collect(),
            Message::Control { .. } => panic!("control message"),
        }
    }

    fn v0_entry(e: Entry<'static>) -> Entry<'static> {
        Entry {
            fwmark: 0,
            timeout: 0,
            ..e
        }
    }

    #[test]
    fn golden_v1_ipv4() {
        let es = [tcp_entry(), template_entry()];
        assert_eq!(encode(Version::V1, 5, &es), V1_IPV4);
        let m = Message::parse(&V1_IPV4).unwrap();
        assert!(matches!(&m, Message::V1(c) if c.nr_conns() == 2 && c.syncid() == 5));
        assert_eq!(decode(&V1_IPV4), vec![Ok(es[0]), Ok(es[1])]);
    }

    #[test]
    fn golden_v1_ipv6_options_and_padding() {
        let es = [v6_entry(), tcp_entry()];
        assert_eq!(encode(Version::V1, 9, &es), V1_IPV6_OPTS);
        assert_eq!(decode(&V1_IPV6_OPTS), vec![Ok(es[0]), Ok(es[1])]);
        // alone, the entry gets no trailing padding: size 8 + 110
        let mut alone = V1_IPV6_OPTS[..118].to_vec();
        alone[3] = 118;
        alone[4] = 1;
        assert_eq!(encode(Version::V1, 9, &es[..1]), alone);
        assert_eq!(decode(&alone), vec![Ok(es[0])]);
        // with trailing padding (as some senders do) it decodes the same
        let mut padded = V1_IPV6_OPTS[..120].to_vec();
        padded[3] = 120;
        padded[4] = 1;
        assert_eq!(decode(&padded), vec![Ok(es[0])]);
    }

    #[test]
    fn golden_v0() {
        let plain = v0_entry(tcp_entry());
        assert_eq!(encode(Version::V0, 5, &[plain]), V0_PLAIN);
        assert_eq!(decode(&V0_PLAIN), vec![Ok(plain)]);

        let nat = Entry {
            flags: 0x0600,
            seq: Some(seq_opt()),
            ..plain
        };
        assert_eq!(encode(Version::V0, 5, &[nat, plain]), V0_SEQ);
        assert!(matches!(Message::parse(&V0_SEQ), Ok(Message::V0(_))));
        assert_eq!(decode(&V0_SEQ), vec![Ok(nat), Ok(plain)]);
        // v0 drops fwmark, timeout and PE data; the seq option follows the flags
        let rich = Entry {
            seq: None,
            pe_data: Some(b"x"),
            pe_name: Some(b"y"),
            ..nat
        };
        assert_eq!(
            decode(&encode(Version::V0, 5, &[rich]))[0],
            Ok(Entry {
                seq: Some(SeqOption::default()),
                pe_data: None,
                pe_name: None,
                ..nat
            })
        );
    }

    #[test]
    fn writer_refuses_what_cannot_be_sent() {
        let mut buf = [0u8; 1500];
        let mut w = MessageWriter::new(&mut buf, Version::V0, 0);
        assert_eq!(w.push(&v6_entry()), Err(PushError::Ipv6InV0));
        let mut w = MessageWriter::new(&mut buf, Version::V1, 0);
        let mixed = Entry {
            daddr: "2001:2::1".parse().unwrap(),
            ..tcp_entry()
        };
        assert_eq!(w.push(&mixed), Err(PushError::MixedFamilies));
        let empty = Entry {
            pe_data: Some(b""),
            ..v6_entry()
        };
        assert_eq!(w.push(&empty), Err(PushError::BadPeData));
        let long = Entry {
            pe_name: Some(&[b'n'; 17]),
            ..v6_entry()
        };
        assert_eq!(w.push(&long), Err(PushError::BadPeName));
        assert!(w.is_empty());
        assert_eq!(w.finish(), HEADER_LEN);
        assert_eq!(&buf[..8], &[0, 0, 0, 8, 0, 1, 0, 0]);
    }

    #[test]
    fn writer_fills_up_to_the_buffer_and_255_entries() {
        // 8 + 40 * 36 = 1448 <= 1472 < 8 + 41 * 36
        let mut buf = vec![0u8; sync_maxlen(Role::Master, false, 9000, 0)];
        let mut w = MessageWriter::new(&mut buf, Version::V1, 1);
        let mut n = 0;
        while w.push(&tcp_entry()).is_ok() {
            n += 1;
        }
        assert_eq!(n, 40);
        assert_eq!(w.push(&tcp_entry()), Err(PushError::Full));
        let len = w.finish();
        assert_eq!(len, 8 + 40 * 36);
        assert_eq!(decode(&buf[..len]).len(), 40);

        let mut big = vec![0u8; 65535];
        let mut w = MessageWriter::new(&mut big, Version::V0, 1);
        while w.push(&v0_entry(tcp_entry())).is_ok() {}
        assert_eq!(w.nr_conns(), 255);
        let len = w.finish();
        assert_eq!(len, 4 + 255 * 24);
        assert_eq!(decode(&big[..len]).len(), 255);

        // the largest entry fits an empty message of MIN_BUFFER_LEN bytes
        let name = [b's'; PENAME_MAXLEN];
        let data = [0xaa; PEDATA_MAXLEN];
        let e = Entry {
            pe_data: Some(&data),
            pe_name: Some(&name),
            ..v6_entry()
        };
        assert_eq!(e.buffer_len(Version::V1), Ok(MAX_ENTRY_LEN));
        let mut small = [0u8; MIN_BUFFER_LEN];
        let mut w = MessageWriter::new(&mut small, Version::V1, 1);
        assert_eq!(w.push(&e), Ok(()));
        assert_eq!(w.push(&tcp_entry()), Err(PushError::Full));
        assert_eq!(decode(&small), vec![Ok(e)]);
    }

    #[test]
    fn maxlen() {
        assert_eq!(sync_maxlen(Role::Master, false, 9000, 0), 1472);
        assert_eq!(sync_maxlen(Role::Master, true, 1280, 0), 1452);
        assert_eq!(sync_maxlen(Role::Backup, false, 9000, 0), 8972);
        assert_eq!(sync_maxlen(Role::Backup, false, 1280, 0), 1472);
        assert_eq!(sync_maxlen(Role::Backup, true, 65535, 0), 65487);
        assert_eq!(sync_maxlen(Role::Master, false, 1500, 1), 1);
        assert_eq!(sync_maxlen(Role::Backup, false, 1500, 1), 1024);
        assert_eq!(sync_maxlen(Role::Master, false, 1500, 65535), 65507);
        assert_eq!(sync_maxlen(Role::Backup, true, 1500, 65535), 65487);
    }

    // ---- receive rules ----

    fn with_size(mut b: Vec<u8>) -> Vec<u8> {
        let n = b.len() as u16;
        b[2..4].copy_from_slice(&n.to_be_bytes());
        b
    }

    #[test]
    fn message_level_drops() {
        assert_eq!(
            Message::parse(&[0, 0, 0]).unwrap_err(),
            DropReason::ShortHeader
        );
        assert_eq!(
            Message::parse(&V1_IPV4[..79]).unwrap_err(),
            DropReason::SizeMismatch
        );
        let mut long = V1_IPV4.to_vec();
        long.push(0);
        assert_eq!(Message::parse(&long).unwrap_err(), DropReason::SizeMismatch);
        assert!(syncid_accepted(0, 9) && syncid_accepted(9, 9) && !syncid_accepted(5, 9));
    }

    #[test]
    fn not_v1_unless_version_1_reserved_0_spare_0() {
        for (at, v) in [(0, 1u8), (5, 2), (6, 1), (7, 1)] {
            let mut b = V1_IPV4.to_vec();
            b[at] = v;
            let m = Message::parse(&b).unwrap();
            let Message::V0(c) = m else {
                panic!("{at}: not parsed as v0")
            };
            // the v0 loop reads nr_conns from byte 0 and entries from byte 4
            assert_eq!(c.nr_conns(), b[0]);
            assert_eq!(c.count(), usize::from(b[0]));
        }
    }

    #[test]
    fn v1_truncation_drops_the_rest() {
        // nr_conns says 3, two present: two applied, then "too small"
        let mut b = V1_IPV4.to_vec();
        b[4] = 3;
        assert_eq!(
            decode(&b),
            vec![
                Ok(tcp_entry()),
                Ok(template_entry()),
                Err(DropReason::Truncated)
            ]
        );
        // second entry's size runs past the datagram ("msg > buffer")
        let mut b = V1_IPV4.to_vec();
        b[44 + 3] = 40;
        assert_eq!(
            decode(&b),
            vec![Ok(tcp_entry()), Err(DropReason::Truncated)]
        );
        // trailing bytes after nr_conns entries are ignored
        let mut b = V1_IPV4.to_vec();
        b[4] = 1;
        assert_eq!(decode(&b), vec![Ok(tcp_entry())]);
    }

    #[test]
    fn v1_entry_header_errors_drop_the_rest() {
        let cases: [(usize, u8, DropReason); 4] = [
            (44 + 2, 0x10, DropReason::BadVersion), // ver_size 0x1024
            (44, 0x02, DropReason::BadType),
            (44 + 3, 35, DropReason::BadLength),
            (44, 0x01, DropReason::BadLength), // IPv6 type, size 36 < 72
        ];
        for (at, v, want) in cases {
            let mut b = V1_IPV4.to_vec();
            b[4] = 3; // a third entry would be Truncated, but is never reached
            b[at] = v;
            assert_eq!(
                decode(&b),
                vec![Ok(tcp_entry()), Err(want)],
                "byte {at} = {v:#x}"
            );
        }
        // type 0x03 (INET6 plus an unknown bit) is IPv6 for the kernel
        let mut b = V1_IPV6_OPTS.to_vec();
        b[8] = 0x03;
        assert_eq!(decode(&b)[0], Ok(v6_entry()));
    }

    /// A v1 message with one IPv4 entry carrying `opts`, then the template.
    fn with_options(opts: &[u8]) -> Vec<u8> {
        let mut b = V1_IPV4[..44].to_vec();
        b.extend_from_slice(opts);
        b[8 + 3] = (36 + opts.len()) as u8;
        while !b.len().is_multiple_of(4) {
            b.push(0);
        }
        b.extend_from_slice(&V1_IPV4[44..]);
        with_size(b)
    }

    #[test]
    fn v1_option_rules() {
        let t = Ok(template_entry());
        let seq = |t: u8, len: u8| {
            let mut v = vec![t, len];
            v.resize(2 + usize::from(len), 0x5a);
            v
        };
        let drop_rest = |opts: &[u8], want| {
            assert_eq!(decode(&with_options(opts)), vec![Err(want)], "{opts:?}");
        };
        drop_rest(&[0x45, 0x00], DropReason::BadOption); // zero length
        drop_rest(&[0x45, 0x03, 1, 2], DropReason::BadOption); // overrun
        drop_rest(&[0x45], DropReason::BadOption); // header cut
        drop_rest(&seq(1, 23), DropReason::BadSeqOption);
        drop_rest(
            &[seq(1, 24), seq(0x41, 24)].concat(),
            DropReason::BadSeqOption,
        );
        drop_rest(&[2, 1, 9, 2, 1, 9, 3, 1, b'x'], DropReason::BadPeData);
        drop_rest(&seq(3, 17), DropReason::BadPeName);
        drop_rest(&[3, 1, b'a', 0x43, 1, b'b'], DropReason::BadPeName);

        // entry-only: the template after it is still applied
        let skip = |opts: &[u8], want| {
            assert_eq!(decode(&with_options(opts)), vec![Err(want), t], "{opts:?}");
        };
        skip(&[0x05, 0x01, 0], DropReason::UnknownOption);
        // the kernel stops at the unknown mandatory option: a broken one after it is not seen
        skip(&[0x05, 0x01, 0, 0x45, 0x00], DropReason::UnknownOption);
        skip(&[0x02, 0x02, 1, 2], DropReason::PeDataWithoutName);

        // optional unknown options are skipped; F_PARAM on a known one is ignored
        let opts = [vec![0x7f, 0x02, 1, 2], seq(0x41, 24)].concat();
        let m = with_options(&opts);
        let got = decode(&m);
        let mut want = tcp_entry();
        let w = u32::from_be_bytes([0x5a; 4]);
        let s = Seq {
            init_seq: w,
            delta: w,
            previous_delta: w,
        };
        want.seq = Some(SeqOption {
            in_seq: s,
            out_seq: s,
        });
        assert_eq!(got, vec![Ok(want), t]);
        // a PE name without PE data is accepted (the kernel ignores the name)
        let m = with_options(&[3, 3, b's', b'i', b'p']);
        let got = decode(&m);
        assert_eq!(
            got,
            vec![
                Ok(Entry {
                    pe_name: Some(b"sip"),
                    ..tcp_entry()
                }),
                t
            ]
        );
    }

    #[test]
    fn v0_truncation() {
        let mut b = V0_SEQ[..52].to_vec(); // first entry only, nr_conns still 2
        b = with_size(b);
        assert_eq!(decode(&b).len(), 2);
        assert_eq!(decode(&b)[1], Err(DropReason::Truncated));
        // seq flag set but the option is cut off ("bogus conn options")
        let b = with_size(V0_SEQ[..40].to_vec());
        assert_eq!(decode(&b), vec![Err(DropReason::Truncated)]);
        // 4..7-byte datagram: v0 with nothing in it
        let b = with_size(vec![1, 0, 0, 0, 0, 1]);
        assert!(matches!(Message::parse(&b), Ok(Message::V0(_))));
        assert_eq!(decode(&b), vec![Err(DropReason::Truncated)]);
    }

    // ---- rvs control messages ----

    /// What the kernel does with a datagram, reduced to how many entries
    /// reach the per-entry processing (ip_vs_process_message and
    /// ip_vs_process_message_v0 gates; bytes past the datagram read as 0).
    #[derive(Debug, PartialEq)]
    enum Kernel {
        Ignored,
        V1 { reached: usize },
        V0 { reached: usize },
    }

    fn kernel(buf: &[u8]) -> Kernel {
        let b = |i: usize| buf.get(i).copied().unwrap_or(0);
        if buf.len() < 4 || usize::from(u16::from_be_bytes([b(2), b(3)])) != buf.len() {
            return Kernel::Ignored;
        }
        if b(5) == 1 && b(0) == 0 && b(6) == 0 && b(7) == 0 {
            let (mut p, mut reached) = (8, 0);
            for _ in 0..b(4) {
                let size = usize::from(u16::from_be_bytes([b(p + 2), b(p + 3)]) & 0x0fff);
                if p + 36 > buf.len() || p + size > buf.len() || b(p + 2) >> 4 != 0 {
                    break;
                }
                reached += 1;
                p += (size + 3) & !3;
            }
            return Kernel::V1 { reached };
        }
        let (mut p, mut reached) = (4, 0);
        for _ in 0..b(0) {
            if p + 24 > buf.len() {
                break;
            }
            p += if u16::from_be_bytes([b(p + 20), b(p + 21)]) & 0x0600 != 0 {
                48
            } else {
                24
            };
            if p > buf.len() {
                break;
            }
            reached += 1;
        }
        Kernel::V0 { reached }
    }

    #[test]
    fn control_messages_are_nothing_to_a_kernel() {
        let msgs = [
            Control::BulkRequest { nonce: 0xdead_beef },
            Control::BulkEnd {
                nonce: 0xdead_beef,
                entries: 70_000,
            },
            Control::BulkEnd {
                nonce: 0,
                entries: 0,
            },
        ];
        for c in msgs {
            for syncid in [0, 1, 255] {
                let mut buf = [0xffu8; 32];
                let n = c.emit(syncid, &mut buf);
                assert_eq!(n, c.buffer_len());
                let b = &buf[..n];
                assert_eq!(kernel(b), Kernel::V0 { reached: 0 }, "{c:?}");
                let m = Message::parse(b).unwrap();
                assert_eq!(m.syncid(), syncid);
                assert!(matches!(m, Message::Control { control, .. } if control == c));
            }
        }
        #[rustfmt::skip]
        let req = [0, 3, 0, 16, 0, 0, b'r', b'v', 1, 0, 0, 0, 0x12, 0x34, 0x56, 0x78];
        assert_eq!(
            Control::BulkRequest { nonce: 0x1234_5678 }.emit(3, &mut [0; 16]),
            16
        );
        let mut out = [0; 16];
        Control::BulkRequest { nonce: 0x1234_5678 }.emit(3, &mut out);
        assert_eq!(out, req);
        // unknown kind / too short for the kind: not a control, nothing for the kernel
        for bad in [
            with_size(vec![0, 0, 0, 0, 0, 0, b'r', b'v', 9, 0, 0, 0]),
            req[..12].to_vec(),
        ] {
            let bad = with_size(bad);
            assert_eq!(Message::parse(&bad).unwrap_err(), DropReason::BadControl);
            assert_eq!(kernel(&bad), Kernel::V0 { reached: 0 });
        }
        // later extensions: trailing bytes ignored
        let mut ext = req.to_vec();
        ext.extend_from_slice(&[1, 2, 3, 4]);
        let ext = with_size(ext);
        assert!(matches!(
            Message::parse(&ext),
            Ok(Message::Control {
                control: Control::BulkRequest { nonce: 0x1234_5678 },
                ..
            })
        ));
    }

    #[test]
    fn goldens_reach_the_kernel_entry_processing() {
        assert_eq!(kernel(&V1_IPV4), Kernel::V1 { reached: 2 });
        assert_eq!(kernel(&V1_IPV6_OPTS), Kernel::V1 { reached: 2 });
        assert_eq!(kernel(&V0_PLAIN), Kernel::V0 { reached: 1 });
        assert_eq!(kernel(&V0_SEQ), Kernel::V0 { reached: 2 });
    }

    // ---- properties ----

    #[derive(Debug, Clone)]
    struct Owned {
        e: Entry<'static>,
        pe_data: Option<Vec<u8>>,
        pe_name: Option<Vec<u8>>,
    }

    impl Owned {
        fn entry(&self) -> Entry<'_> {
            Entry {
                pe_data: self.pe_data.as_deref(),
                pe_name: self.pe_name.as_deref(),
                ..self.e
            }
        }
    }

    fn addrs(v6: bool) -> BoxedStrategy<(IpAddr, IpAddr, IpAddr)> {
        if v6 {
            any::<([u8; 16], [u8; 16], [u8; 16])>()
                .prop_map(|(a, b, c)| {
                    (
                        Ipv6Addr::from(a).into(),
                        Ipv6Addr::from(b).into(),
                        Ipv6Addr::from(c).into(),
                    )
                })
                .boxed()
        } else {
            any::<([u8; 4], [u8; 4], [u8; 4])>()
                .prop_map(|(a, b, c)| (v4(a), v4(b), v4(c)))
                .boxed()
        }
    }

    fn seq_strategy() -> impl Strategy<Value = SeqOption> {
        any::<[u32; 6]>().prop_map(|w| SeqOption {
            in_seq: Seq {
                init_seq: w[0],
                delta: w[1],
                previous_delta: w[2],
            },
            out_seq: Seq {
                init_seq: w[3],
                delta: w[4],
                previous_delta: w[5],
            },
        })
    }

    fn entry_strategy(version: Version) -> impl Strategy<Value = Owned> {
        let v6 = match version {
            Version::V0 => Just(false).boxed(),
            Version::V1 => any::<bool>().boxed(),
        };
        let pe = prop::option::of((
            prop::collection::vec(any::<u8>(), 1..=PEDATA_MAXLEN),
            prop::collection::vec(any::<u8>(), 1..=PENAME_MAXLEN),
        ));
        (
            v6.prop_flat_map(addrs),
            any::<(u8, u32, u16, u16, u16, u16, u32, u32)>(),
            prop::option::of(seq_strategy()),
            pe,
        )
            .prop_map(
                move |(
                    (caddr, vaddr, daddr),
                    (protocol, flags, state, cport, vport, dport, fwmark, timeout),
                    seq,
                    pe,
                )| {
                    let mut o = Owned {
                        e: Entry {
                            protocol,
                            flags,
                            state,
                            caddr,
                            cport,
                            vaddr,
                            vport,
                            daddr,
                            dport,
                            fwmark,
                            timeout,
                            seq,
                            pe_data: None,
                            pe_name: None,
                        },
                        pe_data: None,
                        pe_name: None,
                    };
                    match version {
                        Version::V0 => {
                            o.e.flags &= 0xffff;
                            o.e.fwmark = 0;
                            o.e.timeout = 0;
                            if o.e.flags & flags::SEQ_MASK == 0 {
                                o.e.seq = None;
                            } else {
                                o.e.seq = Some(o.e.seq.unwrap_or_default());
                            }
                        }
                        Version::V1 => {
                            if let Some((d, n)) = pe {
                                o.pe_data = Some(d);
                                o.pe_name = Some(n);
                            }
                        }
                    }
                    o
                },
            )
    }

    fn roundtrip(version: Version, maxlen: usize, entries: &[Owned]) -> Result<(), TestCaseError> {
        let mut sent = 0;
        while sent < entries.len() {
            let mut buf = vec![0u8; maxlen];
            let mut w = MessageWriter::new(&mut buf, version, 42);
            let first = sent;
            while sent < entries.len() && w.push(&entries[sent].entry()).is_ok() {
                sent += 1;
            }
            prop_assert!(
                sent > first,
                "an empty message of {} bytes took no entry",
                maxlen
            );
            let n = w.finish();
            let msg = &buf[..n];
            prop_assert_eq!(
                kernel(msg),
                match version {
                    Version::V0 => Kernel::V0 {
                        reached: sent - first
                    },
                    Version::V1 => Kernel::V1 {
                        reached: sent - first
                    },
                }
            );
            let conns = match Message::parse(msg) {
                Ok(Message::V1(c)) if version == Version::V1 => c,
                Ok(Message::V0(c)) if version == Version::V0 => c,
                other => return Err(TestCaseError::fail(format!("{other:?}"))),
            };
            prop_assert_eq!(conns.syncid(), 42);
            let got: Vec<_> = conns.collect();
            let want: Vec<_> = entries[first..sent].iter().map(|o| Ok(o.entry())).collect();
            prop_assert_eq!(got, want);
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn v1_roundtrip(maxlen in MIN_BUFFER_LEN..3000usize, es in prop::collection::vec(entry_strategy(Version::V1), 0..40)) {
            roundtrip(Version::V1, maxlen, &es)?;
        }

        #[test]
        fn v0_roundtrip(maxlen in 52..1500usize, es in prop::collection::vec(entry_strategy(Version::V0), 0..80)) {
            roundtrip(Version::V0, maxlen, &es)?;
        }

        #[test]
        fn control_roundtrip(nonce in any::<u32>(), entries in any::<u32>(), end in any::<bool>(), syncid in any::<u8>()) {
            let c = if end { Control::BulkEnd { nonce, entries } } else { Control::BulkRequest { nonce } };
            let mut buf = [0u8; 20];
            let n = c.emit(syncid, &mut buf);
            prop_assert_eq!(kernel(&buf[..n]), Kernel::V0 { reached: 0 });
            let ok = matches!(Message::parse(&buf[..n]), Ok(Message::Control { syncid: s, control }) if s == syncid && control == c);
            prop_assert!(ok);
        }

        #[test]
        fn arbitrary_bytes_never_panic(mut b in prop::collection::vec(any::<u8>(), 0..600), fix_size in any::<bool>()) {
            if fix_size && b.len() >= 4 {
                let n = b.len() as u16;
                b[2..4].copy_from_slice(&n.to_be_bytes());
            }
            if let Ok(Message::V1(c) | Message::V0(c)) = Message::parse(&b) {
                let nr = usize::from(c.nr_conns());
                prop_assert!(c.count() <= nr);
            }
        }
    }
}
