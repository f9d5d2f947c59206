//! IPv6 fragment reassembly and fragmentation, sans I/O.
//!
//! IPVS never sees IPv6 fragments either: `nf_defrag_ipv6`
//! (`net/ipv6/netfilter/nf_conntrack_reasm.c`) reassembles them before
//! it, and the datagram is fragmented again on output by `ip6_fragment`.
//! The queue bookkeeping (run trees, duplicates and overlaps, memory
//! limits and eviction, timeouts) is the IPv4 one of [`crate::frag`]
//! (its `Tracker`); this module only knows the IPv6 headers.
//!
//! # Reassembly ([`Reassembler6`])
//! As `nf_ct_frag6_gather` / `nf_ct_frag6_queue` / `nf_ct_frag6_reasm`:
//!
//! * the Fragment header (next header 44) is found after the
//!   hop-by-hop, routing, destination options and AH headers; a packet
//!   without one, a jumbogram (payload length 0) and an *atomic
//!   fragment* (offset 0, M = 0, RFC 6946) are [`FragError::NotFragment`]:
//!   the caller processes them as normal packets;
//! * queues are keyed by (source, destination, identification) —
//!   [`FragKey6`], no protocol, as the kernel's `frag_v6_compare_key`;
//! * a non-last fragment whose end is not a multiple of 8, data beyond a
//!   known end, a second and different end or a zero-length fragment
//!   discard the whole datagram ([`FragError::Inconsistent`]); data ending
//!   beyond 65535 bytes too ([`FragError::Oversize`]);
//! * runs, duplicates (dropped, queue kept) and overlaps (the whole
//!   datagram discarded, RFC 5722) exactly as for IPv4;
//! * a first fragment that does not hold all headers through the
//!   upper-layer header (RFC 8200 §4.5, `ipv6frag_thdr_truncated`) is
//!   dropped as malformed;
//! * the datagram is the first fragment's headers up to the Fragment
//!   header, whose next header goes into the preceding header, then the
//!   data; payload length fixed, ECN merged as for IPv4 (CE wins, not-ECT
//!   mixed with ECT is dropped). [`Reassembled::frag_max_size`] is the
//!   largest fragment (whole packet, `IP6CB(skb)->frag_max_size`), and
//!   [`Reassembled::ident`] the fragments' identification;
//! * limits are `nf_conntrack_frag6_high_thresh` (4 MiB),
//!   `nf_conntrack_frag6_low_thresh` (3 MiB) and
//!   `nf_conntrack_frag6_timeout` (60 s): [`default_config6`]. A queue
//!   that times out is reported with its first fragment when it had
//!   arrived (cut to [`EXPIRED_QUOTE6`]), for ICMPv6 "time exceeded /
//!   fragment reassembly time exceeded" ([`CODE_FRAG_REASM_TIME_EXCEEDED`],
//!   `ip6frag_expire_frag_queue`).
//!
//! # Fragmentation ([`fragment6_frame`])
//! IPv6 routers never fragment: a packet that was not reassembled and
//! does not fit the MTU is [`FragError::FragNeeded`] (answer ICMPv6
//! "packet too big"). A reassembled one is checked as IPVS's
//! `__mtu_check_toobig_v6` does (its largest fragment must fit the MTU,
//! else "packet too big") and then fragmented as `ip6_finish_output` /
//! `ip6_fragment` do when it exceeds the MTU or its `frag_max_size`:
//! pieces of at most `max(frag_max_size, 1280)` (and the MTU) bytes, the
//! unfragmentable part (`ip6_find_1stfragopt`: hop-by-hop, routing, and
//! destination options before a routing header) copied into each, a
//! Fragment header after it carrying the given identification (kept from
//! the original fragments), every piece but the last with M set and a
//! multiple of 8 data bytes.

use core::net::Ipv6Addr;
use std::time::{Duration, Instant};

use rvs_wire::{ip_proto, ipv6};

use crate::frag::{ecn_merge, Config, Expired, FragError, FragStats, Piece, Reassembled, Tracker};

/// Default `net.netfilter.nf_conntrack_frag6_high_thresh` (4 MiB).
pub const DEFAULT_HIGH_THRESH6: usize = 4 * 1024 * 1024;
/// Default `net.netfilter.nf_conntrack_frag6_low_thresh` (3 MiB).
pub const DEFAULT_LOW_THRESH6: usize = 3 * 1024 * 1024;
/// Default `net.netfilter.nf_conntrack_frag6_timeout` (60 s).
pub const DEFAULT_TIMEOUT6: Duration = Duration::from_secs(60);
/// ICMPv6 "time exceeded" code "fragment reassembly time exceeded"
/// (`ICMPV6_EXC_FRAGTIME`).
pub const CODE_FRAG_REASM_TIME_EXCEEDED: u8 = 1;
/// The IPv6 minimum MTU: output fragments are never made smaller than
/// this because of a small `frag_max_size`.
pub const MIN_MTU: u16 = 1280;
/// Maximum IPv6 payload length (no jumbograms).
pub const MAX_PAYLOAD: usize = 65535;
/// Bytes of the first fragment kept in [`Expired::first_fragment`]: all
/// that an ICMPv6 error can quote (1280 − 40 − 8).
pub const EXPIRED_QUOTE6: usize = rvs_wire::icmpv6::MAX_QUOTE;

const FRAG_HLEN: usize = ipv6::FRAGMENT_HEADER_LEN;

/// The `nf_conntrack_frag6_*` defaults.
pub fn default_config6() -> Config {
    Config {
        high_thresh: DEFAULT_HIGH_THRESH6,
        low_thresh: DEFAULT_LOW_THRESH6,
        timeout: DEFAULT_TIMEOUT6,
        headroom: 0,
    }
}

/// IPv6 reassembly queue key (`frag_v6_compare_key` without the
/// interface, which the kernel only uses for link-local / multicast).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FragKey6 {
    /// Source address.
    pub src: Ipv6Addr,
    /// Destination address.
    pub dst: Ipv6Addr,
    /// Identification.
    pub ident: u32,
}

/// Where the Fragment header of `pkt` (an IPv6 packet bounded by its
/// payload length) is: `(offset of the next-header byte naming it,
/// offset of the Fragment header)`, `None` without one.
fn find_fhdr(pkt: &[u8]) -> Result<Option<(usize, usize)>, rvs_wire::Error> {
    let mut nh_pos = 6;
    let mut off = ipv6::HEADER_LEN;
    for _ in 0..ipv6::MAX_EXT_HEADERS {
        let nh = *pkt.get(nh_pos).ok_or(rvs_wire::Error::Truncated)?;
        match nh {
            ip_proto::HOPOPTS | ip_proto::ROUTING | ip_proto::DSTOPTS | ip_proto::AH => {
                let h = pkt.get(off..off + 2).ok_or(rvs_wire::Error::Truncated)?;
                let len = if nh == ip_proto::AH {
                    (usize::from(h[1]) + 2) * 4
                } else {
                    (usize::from(h[1]) + 1) * 8
                };
                if off + len > pkt.len() {
                    return Err(rvs_wire::Error::Truncated);
                }
                nh_pos = off;
                off += len;
            }
            ip_proto::FRAGMENT => {
                if off + FRAG_HLEN > pkt.len() {
                    return Err(rvs_wire::Error::Truncated);
                }
                return Ok(Some((nh_pos, off)));
            }
            _ => return Ok(None),
        }
    }
    Err(rvs_wire::Error::Malformed)
}

/// Does the first fragment's data (`data`, starting with next header
/// `nh`) miss part of the headers through the upper-layer header? (RFC
/// 8200 §4.5; `ipv6frag_thdr_truncated` counts TCP 20, UDP 8, ICMPv6 8,
/// anything else 1 byte.)
fn first_truncated(mut nh: u8, data: &[u8]) -> bool {
    let mut off = 0;
    for _ in 0..ipv6::MAX_EXT_HEADERS {
        match nh {
            ip_proto::HOPOPTS | ip_proto::ROUTING | ip_proto::DSTOPTS | ip_proto::AH => {
                let Some(h) = data.get(off..off + 2) else {
                    return true;
                };
                let len = if nh == ip_proto::AH {
                    (usize::from(h[1]) + 2) * 4
                } else {
                    (usize::from(h[1]) + 1) * 8
                };
                nh = h[0];
                off += len;
            }
            ip_proto::NONE => return false,
            _ => {
                let need = match nh {
                    ip_proto::TCP => 20,
                    ip_proto::UDP => 8,
                    ip_proto::ICMPV6 => 8,
                    _ => 1,
                };
                return off + need > data.len();
            }
        }
    }
    true
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// The IPv6 reassembler of one RX context (sans I/O, not thread-safe).
#[derive(Debug)]
pub struct Reassembler6 {
    t: Tracker<FragKey6>,
}

impl Default for Reassembler6 {
    fn default() -> Reassembler6 {
        Reassembler6::new(default_config6())
    }
}

impl Reassembler6 {
    /// A reassembler with these limits.
    pub fn new(cfg: Config) -> Reassembler6 {
        Reassembler6 {
            t: Tracker::new(cfg, EXPIRED_QUOTE6, true),
        }
    }

    /// The limits.
    pub fn config(&self) -> &Config {
        self.t.config()
    }

    /// Counters.
    pub fn stats(&self) -> &FragStats {
        self.t.stats()
    }

    /// Memory accounted now (bytes).
    pub fn mem(&self) -> usize {
        self.t.mem()
    }

    /// Number of incomplete datagrams held.
    pub fn queues(&self) -> usize {
        self.t.queues()
    }

    /// When the oldest queue expires.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.t.next_deadline()
    }

    /// Drop every queue (no counters, no ICMPv6).
    pub fn clear(&mut self) {
        self.t.clear()
    }

    /// Add the IPv6 packet `packet` (bytes past its payload length are
    /// ignored). The datagram when this fragment completes it, `Ok(None)`
    /// while fragments are missing, [`FragError::NotFragment`] for a
    /// packet to process as is (no Fragment header, or an atomic
    /// fragment).
    pub fn push(&mut self, now: Instant, packet: &[u8]) -> Result<Option<Vec<u8>>, FragError> {
        Ok(self.push_full(now, packet)?.map(|r| r.datagram))
    }

    /// [`Reassembler6::push`] with the largest fragment size and the
    /// identification, to fragment the datagram again.
    pub fn push_full(
        &mut self,
        now: Instant,
        packet: &[u8],
    ) -> Result<Option<Reassembled>, FragError> {
        self.t.expire_due(now);
        let ip = match ipv6::Packet::new_checked(packet) {
            Ok(p) => p,
            Err(e) => return Err(self.t.malformed(e)),
        };
        if ip.payload_len() == 0 {
            // A jumbogram has no Fragment header (nf_ct_frag6_gather).
            return Err(FragError::NotFragment);
        }
        let pkt = ip.packet();
        let (nh_pos, fh) = match find_fhdr(pkt) {
            Ok(Some(x)) => x,
            Ok(None) => return Err(FragError::NotFragment),
            Err(e) => return Err(self.t.malformed(e)),
        };
        let fo = be16(pkt, fh + 2);
        let offset = u32::from(fo & !7);
        let mf = fo & 1 != 0;
        if offset == 0 && !mf {
            return Err(FragError::NotFragment);
        }
        let ident = u32::from_be_bytes([pkt[fh + 4], pkt[fh + 5], pkt[fh + 6], pkt[fh + 7]]);
        let key = FragKey6 {
            src: ip.src_addr(),
            dst: ip.dst_addr(),
            ident,
        };
        let data = &pkt[fh + FRAG_HLEN..];
        if offset as usize + data.len() > MAX_PAYLOAD {
            return Err(self.t.fail(&key, FragError::Oversize));
        }
        if offset == 0 && first_truncated(pkt[fh], data) {
            return Err(self.t.malformed(rvs_wire::Error::Truncated));
        }
        let piece = Piece {
            offset,
            last: !mf,
            data,
            head: &pkt[..fh + FRAG_HLEN],
            head_aux: nh_pos,
            ecn: ip.traffic_class() & 3,
            fragsize: pkt.len() as u32,
            df: false,
            ident,
        };
        let Some(q) = self.t.add(now, key, &piece)? else {
            return Ok(None);
        };
        let r = self.reasm(q);
        self.t.finish(r)
    }

    /// `nf_ct_frag6_reasm` for a complete queue.
    fn reasm(&self, q: crate::frag::Queue) -> Result<Reassembled, FragError> {
        let fh = q
            .head
            .len()
            .checked_sub(FRAG_HLEN)
            .filter(|fh| *fh >= ipv6::HEADER_LEN && q.head_aux < *fh)
            .ok_or(FragError::Inconsistent)?;
        let total = fh + q.len as usize;
        if total - ipv6::HEADER_LEN > MAX_PAYLOAD {
            return Err(FragError::Oversize);
        }
        let ecn = ecn_merge(q.ecn).ok_or(FragError::Ecn)?;
        let base = self.t.config().headroom;
        let mut out = Vec::with_capacity(base + total);
        out.resize(base, 0);
        out.extend_from_slice(&q.head[..fh]);
        q.append_data(&mut out, base)?;
        // The header before the Fragment header now names what followed
        // it.
        out[base + q.head_aux] = q.head[fh];
        let mut ip = ipv6::Packet::new_unchecked(&mut out[base..]);
        ip.set_payload_len((total - ipv6::HEADER_LEN) as u16);
        let (tc, fl) = (ip.traffic_class(), ip.flow_label());
        ip.set_ver_tc_fl(tc | ecn, fl);
        Ok(Reassembled {
            datagram: out,
            frag_max_size: q.max_size.min(u32::from(u16::MAX)) as u16,
            ident: q.ident,
        })
    }

    /// Collect the queues whose time is up at `now` (and those found
    /// expired during [`Reassembler6::push`] since the last call).
    pub fn expire(&mut self, now: Instant) -> Vec<Expired<FragKey6>> {
        self.t.expire(now)
    }

    #[cfg(test)]
    fn check_invariants(&self) {
        self.t.check_invariants()
    }
}

/// `ip6_find_1stfragopt`: length of the unfragmentable part of `pkt` and
/// the offset of the next-header byte that ends it.
fn first_frag_opt(pkt: &[u8]) -> Result<(usize, usize), FragError> {
    let mut nh_pos = 6;
    let mut off = ipv6::HEADER_LEN;
    let mut found_rhdr = false;
    for _ in 0..ipv6::MAX_EXT_HEADERS {
        match pkt.get(nh_pos).copied() {
            Some(ip_proto::HOPOPTS) => {}
            Some(ip_proto::ROUTING) => found_rhdr = true,
            Some(ip_proto::DSTOPTS) if !found_rhdr => {}
            Some(_) => return Ok((off, nh_pos)),
            None => break,
        }
        let h = pkt
            .get(off..off + 2)
            .ok_or(FragError::Malformed(rvs_wire::Error::Truncated))?;
        nh_pos = off;
        off += (usize::from(h[1]) + 1) * 8;
        if off > pkt.len() {
            return Err(FragError::Malformed(rvs_wire::Error::Truncated));
        }
    }
    Err(FragError::Malformed(rvs_wire::Error::Malformed))
}

/// Send the IPv6 packet at `l3` of `frame` on a link of `mtu` bytes
/// (IPv6 bytes; the bytes before `l3`, the link-layer header, are copied
/// in front of every output frame, appended to `out`).
///
/// `frag_max_size` 0 (not reassembled): appended unchanged if it fits,
/// else [`FragError::FragNeeded`] (routers do not fragment IPv6: answer
/// "packet too big" with the MTU). Otherwise (a datagram from
/// [`Reassembler6::push_full`], maybe rewritten): `FragNeeded` if
/// `frag_max_size > mtu`, else fragmented to `max(frag_max_size, 1280)`
/// (at most `mtu`) bytes when larger, with Fragment headers carrying
/// `ident`.
pub fn fragment6_frame(
    frame: &[u8],
    l3: usize,
    mtu: u16,
    frag_max_size: u16,
    ident: u32,
    out: &mut Vec<Vec<u8>>,
) -> Result<(), FragError> {
    let l2 = frame
        .get(..l3)
        .ok_or(FragError::Malformed(rvs_wire::Error::Truncated))?;
    let ip = ipv6::Packet::new_checked(&frame[l3..])?;
    let pkt = ip.packet();
    let tot = pkt.len();
    let mtu = usize::from(mtu);
    let fms = usize::from(frag_max_size);
    if fms == 0 {
        if tot <= mtu {
            out.push(frame[..l3 + tot].to_vec());
            return Ok(());
        }
        return Err(FragError::FragNeeded { mtu: mtu as u16 });
    }
    if fms > mtu {
        return Err(FragError::FragNeeded { mtu: mtu as u16 });
    }
    let size = fms.max(usize::from(MIN_MTU)).min(mtu);
    if tot <= size {
        out.push(frame[..l3 + tot].to_vec());
        return Ok(());
    }
    let (hlen, nh_pos) = first_frag_opt(pkt)?;
    let nexthdr = pkt[nh_pos];
    if nexthdr == ip_proto::FRAGMENT {
        // Already a fragment: not ours to cut again.
        return Err(FragError::Malformed(rvs_wire::Error::Malformed));
    }
    if size < hlen + FRAG_HLEN + 8 {
        return Err(FragError::MtuTooSmall);
    }
    let room = (size - hlen - FRAG_HLEN) & !7;
    let payload = &pkt[hlen..];
    let mut ptr = 0;
    while ptr < payload.len() {
        let len = (payload.len() - ptr).min(room);
        let mf = ptr + len < payload.len();
        let mut f = Vec::with_capacity(l3 + hlen + FRAG_HLEN + len);
        f.extend_from_slice(l2);
        f.extend_from_slice(&pkt[..hlen]);
        let fo = (ptr as u16 & !7) | u16::from(mf);
        f.extend_from_slice(&[nexthdr, 0]);
        f.extend_from_slice(&fo.to_be_bytes());
        f.extend_from_slice(&ident.to_be_bytes());
        f.extend_from_slice(&payload[ptr..ptr + len]);
        f[l3 + nh_pos] = ip_proto::FRAGMENT;
        let mut p = ipv6::Packet::new_unchecked(&mut f[l3..]);
        p.set_payload_len((hlen - ipv6::HEADER_LEN + FRAG_HLEN + len) as u16);
        out.push(f);
        ptr += len;
    }
    Ok(())
}

#[cfg(test)]
mod test {
    use super::*;
    use proptest::prelude::*;

    const SRC: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 1, 0, 0, 0, 0x10);
    const DST: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 1, 0, 0, 0, 0x100);

    fn t0() -> Instant {
        Instant::now()
    }

    fn bytes(n: usize, seed: u8) -> Vec<u8> {
        (0..n)
            .map(|i| (i as u8).wrapping_mul(37).wrapping_add(seed))
            .collect()
    }

    /// IPv6 header (+ `ext`: whole extension headers, the first one's
    /// type in `first`, their chain ending in `last_nh`) + `payload`.
    fn packet(tc: u8, ext: &[u8], first: u8, payload: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; 40];
        {
            let mut p = ipv6::Packet::new_unchecked(&mut b[..]);
            p.set_ver_tc_fl(tc, 0x12345);
            p.set_payload_len((ext.len() + payload.len()) as u16);
            p.set_next_header(first);
            p.set_hop_limit(64);
            p.set_src_addr(SRC);
            p.set_dst_addr(DST);
        }
        b.extend_from_slice(ext);
        b.extend_from_slice(payload);
        b
    }

    /// A UDP datagram (8-byte header + `data`): the whole IPv6 packet.
    fn datagram(hbh: bool, data: &[u8]) -> Vec<u8> {
        let mut udp = vec![0x12, 0x34, 0x56, 0x78, 0, 0, 0, 0];
        let l = (8 + data.len()) as u16;
        udp[4..6].copy_from_slice(&l.to_be_bytes());
        udp.extend_from_slice(data);
        if hbh {
            packet(
                0,
                &[ip_proto::UDP, 0, 1, 4, 0, 0, 0, 0],
                ip_proto::HOPOPTS,
                &udp,
            )
        } else {
            packet(0, &[], ip_proto::UDP, &udp)
        }
    }

    /// A fragment: offset in bytes, M, the fragmentable part's piece.
    fn frag_x(ident: u32, offset: usize, mf: bool, data: &[u8], tc: u8, hbh: bool) -> Vec<u8> {
        let fo = (offset as u16 & !7) | u16::from(mf);
        let mut fh = vec![ip_proto::UDP, 0];
        fh.extend_from_slice(&fo.to_be_bytes());
        fh.extend_from_slice(&ident.to_be_bytes());
        if hbh {
            let mut ext = vec![ip_proto::FRAGMENT, 0, 1, 4, 0, 0, 0, 0];
            ext.extend_from_slice(&fh);
            packet(tc, &ext, ip_proto::HOPOPTS, data)
        } else {
            packet(tc, &fh, ip_proto::FRAGMENT, data)
        }
    }

    fn frag(ident: u32, offset: usize, mf: bool, data: &[u8]) -> Vec<u8> {
        frag_x(ident, offset, mf, data, 0, false)
    }

    /// The fragmentable part of a UDP datagram of `n` data bytes.
    fn udp_part(n: usize, seed: u8) -> Vec<u8> {
        datagram(false, &bytes(n, seed))[40..].to_vec()
    }

    #[test]
    fn in_order_and_reverse() {
        let part = udp_part(2992, 1); // 3000 bytes
        let want = packet(0, &[], ip_proto::UDP, &part);
        for rev in [false, true] {
            let mut r = Reassembler6::default();
            let now = t0();
            let mut fs: Vec<_> = (0..3)
                .map(|i| frag(7, i * 1000, i < 2, &part[i * 1000..(i + 1) * 1000]))
                .collect();
            if rev {
                fs.reverse();
            }
            assert_eq!(r.push(now, &fs[0]), Ok(None));
            assert_eq!(r.push(now, &fs[1]), Ok(None));
            assert_eq!(r.queues(), 1);
            let got = r.push_full(now, &fs[2]).unwrap().unwrap();
            assert_eq!(got.datagram, want);
            assert_eq!(got.frag_max_size, 40 + 8 + 1000);
            assert_eq!(got.ident, 7);
            assert_eq!((r.queues(), r.mem()), (0, 0));
            assert_eq!(r.stats().reassembled, 1);
            r.check_invariants();
        }
    }

    #[test]
    fn unfragmentable_headers_kept() {
        // hop-by-hop before the Fragment header: it names UDP afterwards
        let d = datagram(true, &bytes(100, 2));
        let part = &d[48..];
        let mut r = Reassembler6::default();
        let now = t0();
        let a = frag_x(9, 0, true, &part[..56], 0, true);
        let b = frag_x(9, 56, false, &part[56..], 0, true);
        assert_eq!(r.push(now, &b), Ok(None));
        assert_eq!(r.push(now, &a).unwrap().unwrap(), d);
    }

    #[test]
    fn not_fragments() {
        let mut r = Reassembler6::default();
        let now = t0();
        // no Fragment header
        assert_eq!(
            r.push(now, &datagram(true, b"x")),
            Err(FragError::NotFragment)
        );
        // atomic fragment (offset 0, M 0): a normal packet
        let part = udp_part(10, 3);
        assert_eq!(
            r.push(now, &frag(1, 0, false, &part)),
            Err(FragError::NotFragment)
        );
        // jumbogram marker
        let mut j = frag(1, 8, false, &part);
        j[4] = 0;
        j[5] = 0;
        assert_eq!(r.push(now, &j), Err(FragError::NotFragment));
        // malformed: truncated, bad version, Fragment header cut
        let f = frag(1, 8, true, &part[..8]);
        assert!(matches!(
            r.push(now, &f[..30]),
            Err(FragError::Malformed(_))
        ));
        let mut v = f.clone();
        v[0] = 0x45;
        assert!(matches!(r.push(now, &v), Err(FragError::Malformed(_))));
        let cut = packet(0, &[17, 0, 0, 8], ip_proto::FRAGMENT, &[]);
        assert!(matches!(r.push(now, &cut), Err(FragError::Malformed(_))));
        assert_eq!(r.stats().malformed, 3);
        assert_eq!(r.queues(), 0);
    }

    #[test]
    fn first_fragment_must_hold_the_upper_layer_header() {
        let mut r = Reassembler6::default();
        let now = t0();
        // 4 bytes of a UDP header in the first fragment: dropped
        let f = frag(1, 0, true, &[0, 1, 2, 3, 4, 5, 6, 7][..4]);
        // (an MF fragment of 4 bytes is also not a multiple of 8, but the
        // truncation check comes first and keeps the queue)
        assert!(matches!(r.push(now, &f), Err(FragError::Malformed(_))));
        assert_eq!(r.queues(), 0);
        // with exactly a UDP header: fine
        assert_eq!(r.push(now, &frag(1, 0, true, &udp_part(0, 1))), Ok(None));
    }

    #[test]
    fn strict_ends_and_inconsistency() {
        let part = udp_part(40, 4);
        let now = t0();
        let mut r = Reassembler6::default();
        assert_eq!(r.push(now, &frag(1, 0, true, &part[..16])), Ok(None));
        // a non-last fragment not a multiple of 8: the datagram goes
        assert_eq!(
            r.push(now, &frag(1, 16, true, &part[16..20])),
            Err(FragError::Inconsistent)
        );
        assert_eq!(r.queues(), 0);
        // two different ends
        let mut r = Reassembler6::default();
        r.push(now, &frag(2, 16, false, &part[16..])).unwrap();
        assert_eq!(
            r.push(now, &frag(2, 8, false, &part[8..16])),
            Err(FragError::Inconsistent)
        );
        // data beyond the known end
        let mut r = Reassembler6::default();
        r.push(now, &frag(3, 16, false, &part[16..24])).unwrap();
        assert_eq!(
            r.push(now, &frag(3, 24, true, &part[24..32])),
            Err(FragError::Inconsistent)
        );
        // zero-length
        let mut r = Reassembler6::default();
        assert_eq!(
            r.push(now, &frag(4, 8, true, &[])),
            Err(FragError::Inconsistent)
        );
        assert_eq!(r.stats().failed, 1);
        r.check_invariants();
    }

    #[test]
    fn duplicates_and_overlaps() {
        let part = udp_part(40, 5);
        let now = t0();
        let mut r = Reassembler6::default();
        let a = frag(1, 0, true, &part[..24]);
        r.push(now, &a).unwrap();
        assert_eq!(r.push(now, &a), Err(FragError::Duplicate));
        assert_eq!(r.queues(), 1);
        // [16, 32) overlaps [0, 24): RFC 5722, everything dropped
        assert_eq!(
            r.push(now, &frag(1, 16, true, &part[16..32])),
            Err(FragError::Overlap)
        );
        assert_eq!((r.queues(), r.mem()), (0, 0));
        assert_eq!(r.stats().overlaps, 1);
        assert_eq!(r.stats().duplicates, 1);
        r.check_invariants();
    }

    #[test]
    fn oversize() {
        let mut r = Reassembler6::default();
        let now = t0();
        let f = frag(1, 65528, true, &[0u8; 16]);
        assert_eq!(r.push(now, &f), Err(FragError::Oversize));
        // 65535 bytes of payload after a hop-by-hop header: too big once
        // the header is added back
        let mut r = Reassembler6::default();
        let part = udp_part(65528 - 8, 6);
        let mut got = Err(FragError::NotFragment);
        for (i, c) in part.chunks(8 * 1024).enumerate() {
            let mf = (i + 1) * 8 * 1024 < part.len();
            got = r.push(now, &frag_x(2, i * 8 * 1024, mf, c, 0, true));
        }
        assert_eq!(got, Err(FragError::Oversize));
        assert_eq!(r.queues(), 0);
    }

    #[test]
    fn ecn_merged() {
        let part = udp_part(8, 7);
        let now = t0();
        let mut r = Reassembler6::default();
        r.push(now, &frag_x(1, 0, true, &part[..8], 0xb8 | 1, false))
            .unwrap();
        let d = r
            .push(now, &frag_x(1, 8, false, &part[8..], 3, false))
            .unwrap()
            .unwrap();
        assert_eq!(
            ipv6::Packet::new_checked(&d[..]).unwrap().traffic_class(),
            0xbb
        );
        let mut r = Reassembler6::default();
        r.push(now, &frag_x(1, 0, true, &part[..8], 0, false))
            .unwrap();
        assert_eq!(
            r.push(now, &frag_x(1, 8, false, &part[8..], 2, false)),
            Err(FragError::Ecn)
        );
        assert_eq!(r.stats().failed, 1);
    }

    #[test]
    fn timeout_60s_and_first_fragment() {
        let now = t0();
        let mut r = Reassembler6::default();
        let part = udp_part(3000, 8);
        r.push(now, &frag(1, 0, true, &part[..1504])).unwrap();
        r.push(now, &frag(2, 8, true, &part[8..16])).unwrap();
        assert!(r.expire(now + Duration::from_secs(59)).is_empty());
        let mut e = r.expire(now + DEFAULT_TIMEOUT6);
        e.sort_by_key(|x| x.key.ident);
        assert_eq!(e.len(), 2);
        let q = e[0].first_fragment.as_ref().unwrap();
        assert_eq!(q.len(), EXPIRED_QUOTE6);
        assert_eq!(&q[..48], &frag(1, 0, true, &part[..1504])[..48]);
        assert!(e[1].first_fragment.is_none());
        assert_eq!(r.stats().timeouts, 2);
        assert_eq!(r.mem(), 0);
        // the quote makes an ICMPv6 time exceeded (code 1)
        let mut buf = [0u8; 8 + rvs_wire::icmpv6::MAX_QUOTE];
        let n = rvs_wire::icmpv6::build_error(
            &mut buf,
            rvs_wire::icmpv6::msg_type::TIME_EXCEEDED,
            CODE_FRAG_REASM_TIME_EXCEEDED,
            0,
            q,
            &DST,
            &SRC,
        )
        .unwrap();
        assert_eq!(n, 8 + EXPIRED_QUOTE6);
        assert_eq!(buf[1], 1);
    }

    #[test]
    fn memory_limit() {
        let now = t0();
        let mut r = Reassembler6::new(Config {
            high_thresh: 8 * 1024,
            low_thresh: 4 * 1024,
            ..default_config6()
        });
        let part = udp_part(2000, 9);
        for id in 0..10 {
            let _ = r.push(now, &frag(id, 0, true, &part[..1000]));
            r.check_invariants();
        }
        assert!(r.stats().evicted > 0);
        assert!(r.mem() <= 8 * 1024);
    }

    #[test]
    fn fragment_rules() {
        let d = datagram(false, &bytes(4000, 10));
        let mut frame = vec![0xab; 14];
        frame.extend_from_slice(&d);
        let mut out = Vec::new();
        // not reassembled: fits or "packet too big"
        assert_eq!(
            fragment6_frame(&frame, 14, 1500, 0, 1, &mut out),
            Err(FragError::FragNeeded { mtu: 1500 })
        );
        fragment6_frame(&frame, 14, 9000, 0, 1, &mut out).unwrap();
        assert_eq!(out, vec![frame.clone()]);
        // reassembled: the largest fragment must fit
        out.clear();
        assert_eq!(
            fragment6_frame(&frame, 14, 1400, 1500, 1, &mut out),
            Err(FragError::FragNeeded { mtu: 1400 })
        );
        // fits the MTU but larger than frag_max_size: fragmented anyway
        fragment6_frame(&frame, 14, 9000, 1500, 0xdead_beef, &mut out).unwrap();
        assert_eq!(out.len(), 3);
        let mut at = 0;
        for (i, f) in out.iter().enumerate() {
            assert_eq!(&f[..14], &[0xab; 14]);
            assert!(f.len() - 14 <= 1500);
            let p = ipv6::Packet::new_checked(&f[14..]).unwrap();
            assert_eq!(p.next_header(), ip_proto::FRAGMENT);
            assert_eq!(usize::from(p.payload_len()) + 40, f.len() - 14);
            let fr = ipv6::FragmentRepr::parse(&f[54..]).unwrap();
            assert_eq!(fr.next_header, ip_proto::UDP);
            assert_eq!(fr.info.ident, 0xdead_beef);
            assert_eq!(usize::from(fr.info.offset) * 8, at);
            assert_eq!(fr.info.more_frags, i < 2);
            at += f.len() - 14 - 48;
        }
        assert_eq!(at, 4008);
        // a small frag_max_size still gives 1280-byte pieces
        out.clear();
        fragment6_frame(&frame, 14, 1500, 600, 5, &mut out).unwrap();
        assert!(out.iter().all(|f| f.len() - 14 <= 1280));
        assert_eq!(out[0].len() - 14, 1280);
        // and they reassemble to the datagram
        let mut r = Reassembler6::default();
        let now = t0();
        let mut got = None;
        for f in out.iter().rev() {
            got = r.push_full(now, &f[14..]).unwrap();
        }
        let got = got.unwrap();
        assert_eq!(got.datagram, d);
        assert_eq!(got.ident, 5);
        // fits frag_max_size: unchanged
        out.clear();
        fragment6_frame(&frame, 14, 9000, 4048, 5, &mut out).unwrap();
        assert_eq!(out, vec![frame.clone()]);
        // bad input
        assert!(fragment6_frame(&frame, 100, 1500, 1280, 5, &mut out).is_err());
        assert!(fragment6_frame(&frame, 9000, 1500, 1280, 5, &mut out).is_err());
    }

    #[test]
    fn fragment_copies_unfragmentable_part() {
        let d = datagram(true, &bytes(3000, 11));
        let mut out = Vec::new();
        fragment6_frame(&d, 0, 1500, 1500, 77, &mut out).unwrap();
        assert_eq!(out.len(), 3);
        for f in &out {
            assert_eq!(f[6], ip_proto::HOPOPTS);
            assert_eq!(f[40], ip_proto::FRAGMENT);
            assert_eq!(&f[41..48], &d[41..48]);
            assert_eq!(f[48], ip_proto::UDP);
        }
        let mut r = Reassembler6::default();
        let now = t0();
        let mut got = None;
        for f in &out {
            got = r.push(now, f).unwrap();
        }
        assert_eq!(got.unwrap(), d);
        // already a fragment: refused
        let mut out2 = Vec::new();
        let big = frag(1, 8, true, &bytes(4000, 1));
        assert!(fragment6_frame(&big, 0, 1500, 1500, 1, &mut out2).is_err());
    }

    // ---- properties ----

    fn cuts(len: usize, sizes: &[u16]) -> Vec<(usize, usize)> {
        let mut v = Vec::new();
        let mut at = 0;
        let mut i = 0;
        while at < len {
            let s = usize::from(sizes[i % sizes.len()]).max(1) * 8;
            let e = (at + s).min(len);
            v.push((at, e));
            at = e;
            i += 1;
        }
        v
    }

    fn permute(n: usize, keys: &[u32]) -> Vec<usize> {
        let mut idx: Vec<usize> = (0..n).collect();
        idx.sort_by_key(|&i| (keys[i % keys.len()].wrapping_mul(i as u32 + 1), i));
        idx
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn random_order_with_duplicates_reassembles(
            data in proptest::collection::vec(any::<u8>(), 0..6000),
            sizes in proptest::collection::vec(1u16..200, 1..8),
            keys in proptest::collection::vec(any::<u32>(), 1..16),
            dups in proptest::collection::vec((any::<u16>(), any::<u16>()), 0..8),
            ident in any::<u32>(),
            hbh in any::<bool>(),
        ) {
            let d = datagram(hbh, &data);
            let unfrag = if hbh { 48 } else { 40 };
            let part = &d[unfrag..];
            let pieces = cuts(part.len(), &sizes);
            let n = pieces.len();
            let mut r = Reassembler6::default();
            let now = t0();
            let mut seq: Vec<Vec<u8>> = permute(n, &keys)
                .into_iter()
                .map(|i| {
                    let (a, b) = pieces[i];
                    frag_x(ident, a, b < part.len(), &part[a..b], 0, hbh)
                })
                .collect();
            if n == 1 {
                prop_assert_eq!(r.push(now, &seq[0]), Err(FragError::NotFragment));
                return Ok(());
            }
            // A first fragment without the whole UDP header is refused:
            // the cuts are multiples of 8, so it always has it.
            let mut ndup = 0;
            for (x, y) in dups {
                let last = seq.len() - 1;
                let pos = 1 + usize::from(y) % last;
                let src = usize::from(x) % pos;
                let f = seq[src].clone();
                seq.insert(pos, f);
                ndup += 1;
            }
            let mut got = None;
            let total = seq.len();
            for (i, f) in seq.iter().enumerate() {
                match r.push_full(now, f) {
                    Ok(Some(x)) => {
                        prop_assert_eq!(i, total - 1);
                        got = Some(x);
                    }
                    Ok(None) => prop_assert!(i < total - 1),
                    Err(FragError::Duplicate) => {}
                    Err(e) => prop_assert!(false, "unexpected {:?}", e),
                }
                r.check_invariants();
            }
            let got = got.expect("reassembled");
            prop_assert_eq!(&got.datagram, &d);
            prop_assert_eq!(got.ident, ident);
            let max = pieces.iter().map(|(a, b)| b - a).max().unwrap_or(0);
            prop_assert_eq!(usize::from(got.frag_max_size), unfrag + 8 + max);
            prop_assert_eq!(r.stats().duplicates, ndup);
            prop_assert_eq!((r.queues(), r.mem()), (0, 0));
        }

        #[test]
        fn overlap_always_drops_the_datagram(
            data in proptest::collection::vec(any::<u8>(), 64..3000),
            a in 0usize..64, b in 1usize..64, c in 0usize..64,
        ) {
            // [a8, a8 + b8) then an overlapping, not contained piece
            let d = datagram(false, &data);
            let part = &d[40..];
            let units = part.len() / 8;
            let (s1, e1) = (a % units, (a % units + b).min(units));
            prop_assume!(e1 > s1);
            let s2 = (s1 + c % (e1 - s1 + 1)).min(e1 - 1);
            let e2 = e1 + 1;
            prop_assume!(e2 * 8 <= part.len() && e2 > s2);
            let mut r = Reassembler6::default();
            let now = t0();
            r.push(now, &frag(1, s1 * 8, true, &part[s1 * 8..e1 * 8])).unwrap();
            prop_assert_eq!(
                r.push(now, &frag(1, s2 * 8, true, &part[s2 * 8..e2 * 8])),
                Err(FragError::Overlap)
            );
            prop_assert_eq!((r.queues(), r.mem()), (0, 0));
        }

        #[test]
        fn fragment_then_reassemble_round_trips(
            data in proptest::collection::vec(any::<u8>(), 0..9000),
            hbh in any::<bool>(),
            mtu in 1280u16..=9000,
            fms in 1u16..=9000,
            keys in proptest::collection::vec(any::<u32>(), 1..16),
            ident in any::<u32>(),
        ) {
            let d = datagram(hbh, &data);
            let mut out = Vec::new();
            let r = fragment6_frame(&d, 0, mtu, fms, ident, &mut out);
            if fms > mtu {
                prop_assert_eq!(r, Err(FragError::FragNeeded { mtu }));
                return Ok(());
            }
            r.unwrap();
            let size = usize::from(fms.max(MIN_MTU).min(mtu));
            if d.len() <= size {
                prop_assert_eq!(&out, &vec![d.clone()]);
                return Ok(());
            }
            let mut end = 0;
            for (i, f) in out.iter().enumerate() {
                prop_assert!(f.len() <= size);
                let p = ipv6::Packet::new_checked(&f[..]).unwrap();
                prop_assert_eq!(usize::from(p.payload_len()) + 40, f.len());
                let up = p.upper_layer().unwrap();
                let fi = up.fragment.unwrap();
                prop_assert_eq!(fi.ident, ident);
                prop_assert_eq!(usize::from(fi.offset) * 8, end);
                prop_assert_eq!(fi.more_frags, i + 1 < out.len());
                let fh = if hbh { 48 } else { 40 };
                let dl = f.len() - fh - 8;
                if i + 1 < out.len() {
                    prop_assert_eq!(dl % 8, 0);
                }
                end += dl;
            }
            prop_assert_eq!(end + if hbh { 48 } else { 40 }, d.len());
            let mut r = Reassembler6::default();
            let now = t0();
            let mut got = None;
            for i in permute(out.len(), &keys) {
                if let Some(x) = r.push(now, &out[i]).unwrap() {
                    got = Some(x);
                }
            }
            prop_assert_eq!(got.unwrap(), d);
        }

        #[test]
        fn arbitrary_bytes_never_panic(
            pkts in proptest::collection::vec(
                proptest::collection::vec(any::<u8>(), 0..160), 0..20),
            mtu in any::<u16>(),
            fms in any::<u16>(),
        ) {
            let mut r = Reassembler6::new(Config {
                high_thresh: 4096,
                low_thresh: 2048,
                ..default_config6()
            });
            let now = t0();
            for (i, p) in pkts.iter().enumerate() {
                // make some of them look like IPv6 fragments
                let mut q = p.clone();
                if i % 2 == 0 && q.len() >= 48 {
                    q[0] = 0x60;
                    q[6] = ip_proto::FRAGMENT;
                    let pl = (q.len() - 40) as u16;
                    q[4..6].copy_from_slice(&pl.to_be_bytes());
                }
                let _ = r.push(now + Duration::from_secs(i as u64 * 10), &q);
                r.check_invariants();
                let mut out = Vec::new();
                let _ = fragment6_frame(&q, 0, mtu, fms, 1, &mut out);
                let _ = fragment6_frame(&q, usize::from(mtu % 32), mtu, fms, 1, &mut out);
            }
            let _ = r.expire(now + Duration::from_secs(10_000));
            prop_assert_eq!((r.queues(), r.mem()), (0, 0));
        }

        #[test]
        fn mutated_fragments_never_panic(
            ops in proptest::collection::vec(
                (any::<u16>(), 0usize..300, any::<bool>(), 0u32..4, any::<u8>(), any::<u16>(), any::<bool>()),
                1..40),
        ) {
            let mut r = Reassembler6::new(Config {
                high_thresh: 16 * 1024,
                low_thresh: 8 * 1024,
                ..default_config6()
            });
            let start = t0();
            let data = bytes(300, 12);
            for (off, len, mf, id, tc, ms, hbh) in ops {
                let f = frag_x(id, usize::from(off & !7), mf, &data[..len], tc, hbh);
                let now = start + Duration::from_millis(u64::from(ms) * 10);
                if let Ok(Some(d)) = r.push(now, &f) {
                    let p = ipv6::Packet::new_checked(&d[..]).unwrap();
                    prop_assert_eq!(usize::from(p.payload_len()) + 40, d.len());
                    prop_assert!(p.upper_layer().unwrap().fragment.is_none());
                }
                r.check_invariants();
            }
            let _ = r.expire(start + Duration::from_secs(10_000));
            prop_assert_eq!(r.mem(), 0);
        }
    }
}
