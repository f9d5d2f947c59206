//! IPv4 fragment reassembly and fragmentation, sans I/O.
//!
//! The kernel's IPVS never sees IPv4 fragments: `nf_defrag_ipv4`
//! reassembles them (`ip_defrag`) before the LOCAL_IN hook, and the
//! (possibly rewritten) datagram is fragmented again on output by
//! `ip_fragment` / `ip_do_fragment`. This module does both jobs for the
//! user-space engine, with no clock and no socket inside: time is passed in
//! by the caller (`now: Instant`).
//!
//! The queue bookkeeping (runs, duplicates and overlaps, memory limits,
//! eviction, timeouts) is family-independent and shared with the IPv6
//! reassembler of [`crate::frag6`]; only header parsing and the rebuild
//! differ.
//!
//! # Reassembly ([`Reassembler`])
//! Follows `net/ipv4/ip_fragment.c` (`ip_frag_queue`, `ip_frag_reasm`,
//! `ip_expire`) and `inet_frag_queue_insert`:
//!
//! * queues are keyed like the kernel's `ipq`: (source, destination,
//!   protocol, identification) — [`FragKey`];
//! * a fragment with MF has its end rounded down to 8 bytes; a last
//!   fragment (no MF) fixes the datagram length. Data beyond a known end, a
//!   second and different end, or a zero-length fragment discards the whole
//!   queue ([`FragError::Inconsistent`]);
//! * fragments are stored in *runs* of contiguous data exactly as the
//!   kernel's rbtree does (a fragment that continues the highest run is
//!   appended to it, any other starts a new run). A fragment lying entirely
//!   inside one run is a duplicate: it is dropped and the queue kept
//!   ([`FragError::Duplicate`]). Any other overlap discards the whole
//!   datagram (RFC 5722 spirit, kernel ≥ 4.19: [`FragError::Overlap`]);
//! * when the first (offset 0) and last fragments are in and no byte is
//!   missing, the datagram is rebuilt with the first fragment's header
//!   (options included), total length fixed, MF and offset cleared, DF set
//!   only if the largest fragment had DF (`max_df_size == max_size`), ECN
//!   merged with `ip_frag_ecn_table` (CE wins, not-ECT mixed with ECT is
//!   invalid and dropped), header checksum recomputed. The largest fragment
//!   size is returned as [`Reassembled::frag_max_size`] (the kernel's
//!   `IPCB(skb)->frag_max_size`), which output fragmentation honours
//!   ([`refragment`]);
//! * a queue lives [`Config::timeout`] (default 30 s, `ipfrag_time`) from
//!   its creation. [`Reassembler::expire`] reports expired queues with the
//!   first fragment when it had arrived, so the caller can send ICMP "time
//!   exceeded / fragment reassembly time exceeded" as `ip_expire` does
//!   (the kernel only does so for datagrams to a local address — the VIP);
//! * memory is accounted per fragment (payload + header +
//!   [`FRAG_OVERHEAD`], standing in for the skb's `truesize`) and per queue
//!   ([`QUEUE_OVERHEAD`]). A fragment that would take the total above
//!   [`Config::high_thresh`] (default 4 MiB) first evicts the oldest queues
//!   until the total, fragment included, is below [`Config::low_thresh`]
//!   (default 3 MiB), as the pre-4.17 `inet_frag_evictor` did (newer
//!   kernels just drop fragments above `high_thresh`);
//! * a datagram that would exceed 65535 bytes is discarded
//!   ([`FragError::Oversize`]), as soon as that is certain (the kernel
//!   waits for the queue to complete to find out);
//! * malformed input (bad version, lengths or header checksum) is an error
//!   value, never a panic.
//!
//! Not done: the per-peer `ipfrag_max_dist` reordering limit, and the
//! kernel's per-interface (`iif`) / VRF part of the key.
//!
//! # Fragmentation ([`fragment`], [`refragment`], [`fragment_frame`])
//! `ip_fragment` + the slow path of `ip_do_fragment`: the header (with its
//! options) is copied into every fragment; after the first fragment of a
//! datagram starting at offset 0 the options whose "copied" flag is clear
//! are overwritten with NOPs (`ip_options_fragment`, header length
//! unchanged); every fragment but the last carries a multiple of 8 bytes;
//! MF is set on all but the last (and on the last too when the input
//! itself was a non-last fragment); each fragment gets its own header
//! checksum. A datagram with DF that does not fit gives
//! [`FragError::FragNeeded`] so the caller answers ICMP "fragmentation
//! needed" with that MTU.

use core::net::Ipv4Addr;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use rvs_wire::ipv4;

/// Default `net.ipv4.ipfrag_high_thresh` (4 MiB).
pub const DEFAULT_HIGH_THRESH: usize = 4 * 1024 * 1024;
/// Default `net.ipv4.ipfrag_low_thresh` (3 MiB).
pub const DEFAULT_LOW_THRESH: usize = 3 * 1024 * 1024;
/// Default `net.ipv4.ipfrag_time` (30 s).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Bytes accounted for each stored fragment on top of its header and
/// payload (the kernel accounts the skb `truesize`).
pub const FRAG_OVERHEAD: usize = 256;
/// Bytes accounted for each reassembly queue.
pub const QUEUE_OVERHEAD: usize = 256;
/// ICMP "time exceeded" code "fragment reassembly time exceeded".
pub const CODE_FRAG_REASM_TIME_EXCEEDED: u8 = 1;
/// Maximum IPv4 datagram length.
pub const MAX_DATAGRAM: usize = 65535;
/// Bytes of the first fragment kept in [`Expired::first_fragment`]: all
/// that an ICMP error can quote (576 − 20 − 8 = 548, and some margin).
pub const EXPIRED_QUOTE: usize = 576;
/// At most this many expired queues wait for [`Reassembler::expire`] to
/// collect them (queues that expire beyond it are still counted).
pub const MAX_PENDING_EXPIRED: usize = 1024;

const MIN_HEADER: usize = ipv4::HEADER_LEN;
const OFFSET_MASK: u16 = 0x1fff;

/// Why a packet was not (or could not be) reassembled or fragmented.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum FragError {
    /// Not an IPv4 fragment (neither MF nor an offset): process it as is.
    #[error("not a fragment")]
    NotFragment,
    /// Bad version, header length, total length or header checksum.
    #[error("malformed IPv4 packet: {0}")]
    Malformed(rvs_wire::Error),
    /// The fragment's data is already held: dropped, the queue kept.
    #[error("duplicate fragment")]
    Duplicate,
    /// The fragment overlaps held data: the whole datagram was discarded.
    #[error("overlapping fragment: datagram discarded")]
    Overlap,
    /// Data beyond the datagram's end, two different ends or a zero-length
    /// fragment: the whole datagram was discarded.
    #[error("inconsistent fragment: datagram discarded")]
    Inconsistent,
    /// The datagram would exceed 65535 bytes: discarded.
    #[error("oversized datagram: discarded")]
    Oversize,
    /// The fragments mix not-ECT with ECT/CE: discarded.
    #[error("invalid ECN combination: datagram discarded")]
    Ecn,
    /// Over the memory limit even after evicting every other queue.
    #[error("fragment memory limit reached")]
    NoMemory,
    /// DF set and too big: answer ICMP "fragmentation needed" with `mtu`.
    #[error("fragmentation needed (mtu {mtu})")]
    FragNeeded {
        /// The MTU to advertise.
        mtu: u16,
    },
    /// The MTU cannot carry the header plus 8 bytes of data.
    #[error("mtu too small to fragment")]
    MtuTooSmall,
}

impl From<rvs_wire::Error> for FragError {
    fn from(e: rvs_wire::Error) -> FragError {
        FragError::Malformed(e)
    }
}

/// Reassembly queue key, as the kernel's (`saddr`, `daddr`, `protocol`,
/// `id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FragKey {
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// Protocol.
    pub protocol: u8,
    /// Identification.
    pub ident: u16,
}

/// Reassembly limits (the `ipfrag_*` sysctls).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// `ipfrag_high_thresh`: memory that triggers eviction.
    pub high_thresh: usize,
    /// `ipfrag_low_thresh`: eviction goes down to this.
    pub low_thresh: usize,
    /// `ipfrag_time`: lifetime of a queue.
    pub timeout: Duration,
    /// Zero bytes reserved in front of every reassembled datagram (room
    /// for the caller's link-layer header, saving a copy). 0 by default.
    pub headroom: usize,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            high_thresh: DEFAULT_HIGH_THRESH,
            low_thresh: DEFAULT_LOW_THRESH,
            timeout: DEFAULT_TIMEOUT,
            headroom: 0,
        }
    }
}

/// Counters (the kernel's `ReasmReqds`, `ReasmOKs`, `ReasmTimeout`,
/// `ReasmOverlaps`, `ReasmFails` family).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FragStats {
    /// Fragments stored in a queue.
    pub fragments: u64,
    /// Datagrams reassembled.
    pub reassembled: u64,
    /// Queues expired (timeout).
    pub timeouts: u64,
    /// Queues evicted by the memory limit.
    pub evicted: u64,
    /// Datagrams discarded for an overlapping fragment.
    pub overlaps: u64,
    /// Duplicate fragments dropped.
    pub duplicates: u64,
    /// Packets rejected as malformed.
    pub malformed: u64,
    /// Datagrams discarded as inconsistent, oversized or with bad ECN.
    pub failed: u64,
    /// Fragments dropped for lack of memory.
    pub no_memory: u64,
}

/// A reassembled datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reassembled {
    /// The datagram (after [`Config::headroom`] zero bytes).
    pub datagram: Vec<u8>,
    /// Size (whole packet: headers + data) of the largest fragment
    /// received: output fragments must not exceed it ([`refragment`],
    /// [`crate::frag6::fragment6_frame`]).
    pub frag_max_size: u16,
    /// The fragments' identification (IPv4: 16 bits), kept when the
    /// datagram is fragmented again.
    pub ident: u32,
}

/// A queue that timed out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expired<K = FragKey> {
    /// Its key.
    pub key: K,
    /// The first fragment (header as received + its data, cut to
    /// [`EXPIRED_QUOTE`] bytes for IPv4, [`crate::frag6::EXPIRED_QUOTE6`]
    /// for IPv6) if it had arrived: then answer ICMP "time exceeded" with
    /// code [`CODE_FRAG_REASM_TIME_EXCEEDED`] quoting it.
    pub first_fragment: Option<Vec<u8>>,
}

/// One reassembly queue (`inet_frag_queue`), the same for both families.
#[derive(Debug)]
pub(crate) struct Queue {
    deadline: Instant,
    seq: u64,
    /// Runs of contiguous data by start offset (disjoint).
    pub(crate) runs: BTreeMap<u32, Vec<u8>>,
    /// Known (or, before the last fragment, highest seen) end.
    pub(crate) len: u32,
    first_in: bool,
    last_in: bool,
    /// Bytes held (sum of run lengths).
    meat: u32,
    /// Headers of the first fragment as received (IPv6: up to and
    /// including the fragment header).
    pub(crate) head: Vec<u8>,
    /// Data length of the first fragment.
    head_len: u32,
    /// Family-specific number of the first fragment (IPv6: offset of the
    /// next-header byte that names the fragment header).
    pub(crate) head_aux: usize,
    /// `IPFRAG_ECN_*` bits seen.
    pub(crate) ecn: u8,
    pub(crate) max_size: u32,
    pub(crate) max_df_size: u32,
    pub(crate) ident: u32,
    mem: usize,
}

enum Insert {
    Ok,
    Dup,
    Overlap,
}

impl Queue {
    fn new(deadline: Instant, seq: u64) -> Queue {
        Queue {
            deadline,
            seq,
            runs: BTreeMap::new(),
            len: 0,
            first_in: false,
            last_in: false,
            meat: 0,
            head: Vec::new(),
            head_len: 0,
            head_aux: 0,
            ecn: 0,
            max_size: 0,
            max_df_size: 0,
            ident: 0,
            mem: QUEUE_OVERHEAD,
        }
    }

    /// `inet_frag_queue_insert`: `data` covers `[offset, end)`.
    fn insert(&mut self, offset: u32, end: u32, data: &[u8]) -> Insert {
        let Some((&t_off, t_run)) = self.runs.last_key_value() else {
            self.runs.insert(offset, data.to_vec());
            return Insert::Ok;
        };
        let tail_end = t_off + t_run.len() as u32;
        if tail_end < end {
            // The common case: beyond everything held.
            if offset < tail_end {
                return Insert::Overlap;
            }
            if offset == tail_end {
                if let Some(run) = self.runs.get_mut(&t_off) {
                    run.extend_from_slice(data);
                }
            } else {
                self.runs.insert(offset, data.to_vec());
            }
            return Insert::Ok;
        }
        // The run starting last before `end` is the only candidate that
        // can intersect [offset, end) while containing it; any other
        // intersection makes an overlap.
        if let Some((&c_off, c_run)) = self.runs.range(..end).next_back() {
            let c_end = c_off + c_run.len() as u32;
            if c_end > offset {
                return if c_off <= offset && end <= c_end {
                    Insert::Dup
                } else {
                    Insert::Overlap
                };
            }
        }
        self.runs.insert(offset, data.to_vec());
        Insert::Ok
    }

    fn first_fragment(&self, quote: usize) -> Option<Vec<u8>> {
        if !self.first_in {
            return None;
        }
        let data = self.runs.get(&0)?;
        let n = (self.head_len as usize).min(data.len());
        let mut v = Vec::with_capacity((self.head.len() + n).min(quote));
        v.extend_from_slice(&self.head);
        v.extend_from_slice(&data[..n]);
        v.truncate(quote);
        Some(v)
    }

    /// The runs appended after `out` (which holds the headers from
    /// `base`): they must be one contiguous block of `len` bytes.
    pub(crate) fn append_data(&self, out: &mut Vec<u8>, base: usize) -> Result<(), FragError> {
        let start = out.len();
        for (off, run) in &self.runs {
            if (*off as usize) != out.len() - start {
                return Err(FragError::Inconsistent);
            }
            out.extend_from_slice(run);
        }
        if out.len() - start != self.len as usize || start < base {
            return Err(FragError::Inconsistent);
        }
        Ok(())
    }
}

/// `ip_frag_ecn_table`: merged ECN bits, or `None` for an invalid mix.
pub(crate) fn ecn_merge(bits: u8) -> Option<u8> {
    const NOT_ECT: u8 = 1;
    const CE: u8 = 8;
    if bits & NOT_ECT != 0 && bits & !NOT_ECT != 0 {
        return None;
    }
    // CE together with ECT(0) and/or ECT(1): CE; CE alone keeps CE.
    if bits & CE != 0 {
        return Some(3);
    }
    Some(0)
}

/// One parsed fragment, as the family-independent queue logic needs it.
pub(crate) struct Piece<'a> {
    /// Data offset in the datagram (bytes).
    pub offset: u32,
    /// No "more fragments": this fragment ends the datagram.
    pub last: bool,
    /// The fragment's data (at least up to its end).
    pub data: &'a [u8],
    /// The fragment's headers (kept from the first fragment).
    pub head: &'a [u8],
    /// Family-specific number kept with the first fragment's headers.
    pub head_aux: usize,
    /// ECN codepoint (2 bits).
    pub ecn: u8,
    /// Whole fragment size (headers + data).
    pub fragsize: u32,
    /// IPv4 DF.
    pub df: bool,
    /// Identification.
    pub ident: u32,
}

/// The reassembly bookkeeping shared by IPv4 ([`Reassembler`]) and IPv6
/// ([`crate::frag6::Reassembler6`]): queues by key, their run trees,
/// memory accounting and eviction, timeouts. Everything about header
/// formats is the caller's.
#[derive(Debug)]
pub(crate) struct Tracker<K> {
    cfg: Config,
    queues: HashMap<K, Queue>,
    /// Queues by (deadline, creation sequence): oldest first.
    order: BTreeMap<(Instant, u64), K>,
    seq: u64,
    mem: usize,
    stats: FragStats,
    pending: Vec<Expired<K>>,
    /// How much of an expired first fragment is kept.
    quote: usize,
    /// A non-last fragment whose end is not a multiple of 8 discards the
    /// datagram (IPv6, RFC 8200) instead of being rounded down (IPv4).
    strict_end: bool,
}

impl<K: Copy + Eq + core::hash::Hash> Tracker<K> {
    pub(crate) fn new(cfg: Config, quote: usize, strict_end: bool) -> Tracker<K> {
        Tracker {
            cfg,
            queues: HashMap::new(),
            order: BTreeMap::new(),
            seq: 0,
            mem: 0,
            stats: FragStats::default(),
            pending: Vec::new(),
            quote,
            strict_end,
        }
    }

    pub(crate) fn config(&self) -> &Config {
        &self.cfg
    }

    pub(crate) fn stats(&self) -> &FragStats {
        &self.stats
    }

    pub(crate) fn mem(&self) -> usize {
        self.mem
    }

    pub(crate) fn queues(&self) -> usize {
        self.queues.len()
    }

    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.order.first_key_value().map(|((d, _), _)| *d)
    }

    pub(crate) fn clear(&mut self) {
        self.queues.clear();
        self.order.clear();
        self.pending.clear();
        self.mem = 0;
    }

    /// `ip_frag_queue` / `nf_ct_frag6_queue` for a parsed fragment: the
    /// queue, removed, when this fragment completes it.
    pub(crate) fn add(
        &mut self,
        now: Instant,
        key: K,
        f: &Piece,
    ) -> Result<Option<Queue>, FragError> {
        let hlen = f.head.len();
        let offset = f.offset;
        let mut end = offset + f.data.len() as u32;
        let need = FRAG_OVERHEAD + hlen + f.data.len() + QUEUE_OVERHEAD;
        if self.mem + need > self.cfg.high_thresh {
            while self.mem + need > self.cfg.low_thresh {
                let Some((_, k)) = self.order.pop_first() else {
                    break;
                };
                if let Some(q) = self.queues.remove(&k) {
                    self.mem -= q.mem;
                    self.stats.evicted += 1;
                }
            }
            if self.mem + need > self.cfg.high_thresh {
                self.stats.no_memory += 1;
                return Err(FragError::NoMemory);
            }
        }
        let q = match self.queues.entry(key) {
            std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => {
                // An absurd timeout must not overflow: then "far away".
                let deadline = now
                    .checked_add(self.cfg.timeout)
                    .or_else(|| now.checked_add(Duration::from_secs(1 << 32)))
                    .unwrap_or(now);
                self.seq += 1;
                self.order.insert((deadline, self.seq), key);
                self.mem += QUEUE_OVERHEAD;
                v.insert(Queue::new(deadline, self.seq))
            }
        };
        if f.last {
            if end < q.len || (q.last_in && end != q.len) {
                return Err(self.fail(&key, FragError::Inconsistent));
            }
            q.last_in = true;
            q.len = end;
        } else {
            if end & 7 != 0 {
                if self.strict_end {
                    return Err(self.fail(&key, FragError::Inconsistent));
                }
                end &= !7;
            }
            if end > q.len {
                if q.last_in {
                    return Err(self.fail(&key, FragError::Inconsistent));
                }
                q.len = end;
            }
        }
        if end <= offset {
            return Err(self.fail(&key, FragError::Inconsistent));
        }
        let dlen = end - offset;
        let bytes = f
            .data
            .get(..dlen as usize)
            .ok_or(FragError::Malformed(rvs_wire::Error::Truncated))?;
        match q.insert(offset, end, bytes) {
            Insert::Ok => {}
            Insert::Dup => {
                self.stats.duplicates += 1;
                return Err(FragError::Duplicate);
            }
            Insert::Overlap => {
                self.stats.overlaps += 1;
                self.discard(&key);
                return Err(FragError::Overlap);
            }
        }
        let m = FRAG_OVERHEAD + hlen + dlen as usize;
        q.mem += m;
        self.mem += m;
        self.stats.fragments += 1;
        q.meat += dlen;
        q.ecn |= 1 << (f.ecn & 3);
        q.ident = f.ident;
        if offset == 0 {
            q.first_in = true;
            q.head = f.head.to_vec();
            q.head_len = dlen;
            q.head_aux = f.head_aux;
        }
        q.max_size = q.max_size.max(f.fragsize);
        if f.df {
            q.max_df_size = q.max_df_size.max(f.fragsize);
        }
        if !(q.first_in && q.last_in && q.meat == q.len) {
            return Ok(None);
        }
        Ok(Some(self.remove(&key).ok_or(FragError::Inconsistent)?))
    }

    /// Count the outcome of rebuilding a complete queue.
    pub(crate) fn finish(
        &mut self,
        r: Result<Reassembled, FragError>,
    ) -> Result<Option<Reassembled>, FragError> {
        match r {
            Ok(r) => {
                self.stats.reassembled += 1;
                Ok(Some(r))
            }
            Err(e) => {
                self.stats.failed += 1;
                Err(e)
            }
        }
    }

    pub(crate) fn expire(&mut self, now: Instant) -> Vec<Expired<K>> {
        self.expire_due(now);
        std::mem::take(&mut self.pending)
    }

    pub(crate) fn expire_due(&mut self, now: Instant) {
        while let Some((&(deadline, _), _)) = self.order.first_key_value() {
            if deadline > now {
                break;
            }
            let Some((_, key)) = self.order.pop_first() else {
                break;
            };
            let Some(q) = self.queues.remove(&key) else {
                continue;
            };
            self.mem -= q.mem;
            self.stats.timeouts += 1;
            if self.pending.len() < MAX_PENDING_EXPIRED {
                self.pending.push(Expired {
                    key,
                    first_fragment: q.first_fragment(self.quote),
                });
            }
        }
    }

    pub(crate) fn malformed(&mut self, e: rvs_wire::Error) -> FragError {
        self.stats.malformed += 1;
        FragError::Malformed(e)
    }

    /// Discard the queue of `key` and count `e` as a failed datagram.
    pub(crate) fn fail(&mut self, key: &K, e: FragError) -> FragError {
        self.stats.failed += 1;
        self.discard(key);
        e
    }

    fn remove(&mut self, key: &K) -> Option<Queue> {
        let q = self.queues.remove(key)?;
        self.order.remove(&(q.deadline, q.seq));
        self.mem -= q.mem;
        Some(q)
    }

    fn discard(&mut self, key: &K) {
        let _ = self.remove(key);
    }

    /// Check the internal accounting (tests).
    #[cfg(test)]
    pub(crate) fn check_invariants(&self) {
        assert_eq!(self.queues.len(), self.order.len());
        let mut mem = 0;
        for (k, q) in &self.queues {
            assert!(self.order.get(&(q.deadline, q.seq)) == Some(k));
            mem += q.mem;
            let mut prev_end = 0u32;
            let mut meat = 0u32;
            for (i, (off, run)) in q.runs.iter().enumerate() {
                assert!(!run.is_empty());
                assert!(i == 0 || *off >= prev_end, "runs overlap");
                prev_end = off + run.len() as u32;
                meat += run.len() as u32;
                assert!(prev_end <= q.len);
            }
            assert_eq!(meat, q.meat);
        }
        assert_eq!(mem, self.mem);
        assert!(self.mem <= self.cfg.high_thresh);
    }
}

/// The IPv4 reassembler of one RX context (sans I/O, not thread-safe: give
/// each worker its own, the kernel's fanout hash keeps every fragment of a
/// datagram on one socket).
#[derive(Debug)]
pub struct Reassembler {
    t: Tracker<FragKey>,
}

impl Default for Reassembler {
    fn default() -> Reassembler {
        Reassembler::new(Config::default())
    }
}

impl Reassembler {
    /// A reassembler with these limits.
    pub fn new(cfg: Config) -> Reassembler {
        Reassembler {
            t: Tracker::new(cfg, EXPIRED_QUOTE, false),
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

    /// When the oldest queue expires (to size the caller's poll timeout).
    pub fn next_deadline(&self) -> Option<Instant> {
        self.t.next_deadline()
    }

    /// Drop every queue (no counters, no ICMP).
    pub fn clear(&mut self) {
        self.t.clear()
    }

    /// Add the IPv4 fragment `packet` (header + data; bytes past its total
    /// length, such as Ethernet padding, are ignored). Returns the
    /// reassembled datagram when this fragment completes it, `Ok(None)`
    /// while fragments are missing. See [`Reassembler::push_full`].
    pub fn push(&mut self, now: Instant, packet: &[u8]) -> Result<Option<Vec<u8>>, FragError> {
        Ok(self.push_full(now, packet)?.map(|r| r.datagram))
    }

    /// [`Reassembler::push`] that also returns the largest fragment size,
    /// needed to fragment the datagram again as the kernel does.
    pub fn push_full(
        &mut self,
        now: Instant,
        packet: &[u8],
    ) -> Result<Option<Reassembled>, FragError> {
        self.t.expire_due(now);
        let p = match ipv4::Packet::new_checked(packet) {
            Ok(p) if p.verify_checksum() => p,
            Ok(_) => return Err(self.t.malformed(rvs_wire::Error::Checksum)),
            Err(e) => return Err(self.t.malformed(e)),
        };
        if !p.is_fragment() {
            return Err(FragError::NotFragment);
        }
        let key = FragKey {
            src: p.src_addr(),
            dst: p.dst_addr(),
            protocol: p.protocol(),
            ident: p.ident(),
        };
        let ihl = p.header_len();
        let data = p.payload();
        let offset = u32::from(p.frag_offset()) * 8;
        let end = offset + data.len() as u32;
        // Certain to exceed 65535 whatever the first fragment's header.
        if end as usize + MIN_HEADER > MAX_DATAGRAM {
            return Err(self.t.fail(&key, FragError::Oversize));
        }
        let piece = Piece {
            offset,
            last: !p.more_frags(),
            data,
            head: p.header(),
            head_aux: 0,
            ecn: p.dscp_ecn() & 3,
            fragsize: (ihl + data.len()) as u32,
            df: p.dont_frag(),
            ident: u32::from(p.ident()),
        };
        let Some(q) = self.t.add(now, key, &piece)? else {
            return Ok(None);
        };
        let r = self.reasm(q);
        self.t.finish(r)
    }

    /// `ip_frag_reasm` for a complete queue (already removed).
    fn reasm(&self, q: Queue) -> Result<Reassembled, FragError> {
        let hl = q.head.len();
        let total = hl + q.len as usize;
        if total > MAX_DATAGRAM {
            return Err(FragError::Oversize);
        }
        let ecn = ecn_merge(q.ecn).ok_or(FragError::Ecn)?;
        let base = self.t.config().headroom;
        let mut out = Vec::with_capacity(base + total);
        out.resize(base, 0);
        out.extend_from_slice(&q.head);
        q.append_data(&mut out, base)?;
        let mut ip = ipv4::Packet::new_unchecked(&mut out[base..]);
        ip.set_total_len(total as u16);
        ip.set_dscp_ecn(ip.dscp_ecn() | ecn);
        let df = q.max_df_size == q.max_size;
        ip.set_frag(df, false, 0);
        ip.fill_checksum();
        Ok(Reassembled {
            datagram: out,
            frag_max_size: q.max_size.max(q.max_df_size).min(MAX_DATAGRAM as u32) as u16,
            ident: q.ident,
        })
    }

    /// Collect the queues whose time is up at `now` (and those found
    /// expired during [`Reassembler::push`] since the last call).
    pub fn expire(&mut self, now: Instant) -> Vec<Expired> {
        self.t.expire(now)
    }

    /// Check the internal accounting (tests).
    #[cfg(test)]
    fn check_invariants(&self) {
        self.t.check_invariants()
    }
}

/// `ip_options_fragment`: overwrite the options whose "copied" flag is
/// clear with NOPs (the header keeps its length).
fn options_fragment(opts: &mut [u8]) {
    let mut i = 0;
    while i < opts.len() {
        match opts[i] {
            ipv4::OPT_EOL => return,
            ipv4::OPT_NOP => i += 1,
            t => {
                let Some(&l) = opts.get(i + 1) else {
                    return;
                };
                let l = usize::from(l);
                if l < 2 || i + l > opts.len() {
                    return;
                }
                if t & 0x80 == 0 {
                    opts[i..i + l].fill(ipv4::OPT_NOP);
                }
                i += l;
            }
        }
    }
}

/// Fragment the IPv4 `datagram` to `mtu` (`ip_fragment`): appended to
/// `out`. A datagram that fits is appended unchanged (one copy); one that
/// does not and has DF gives [`FragError::FragNeeded`] (answer ICMP
/// "fragmentation needed" with `mtu`). The datagram may itself be a
/// fragment (offsets and MF carry over).
pub fn fragment(datagram: &[u8], mtu: u16, out: &mut Vec<Vec<u8>>) -> Result<(), FragError> {
    fragment_frame(datagram, 0, mtu, 0, out)
}

/// Fragment a datagram that came out of [`Reassembler::push_full`] (and
/// was rewritten), as the kernel does for a forwarded reassembled skb with
/// `ignore_df` (IPVS sets it): fragments are at most
/// `min(mtu, frag_max_size)` bytes, even when the datagram would fit the
/// MTU (so the real server sees the sizes the client sent); with DF set
/// (every fragment had DF) and the largest fragment larger than `mtu`,
/// [`FragError::FragNeeded`] (`__mtu_check_toobig_v4`); else DF is kept on
/// the fragments, as the kernel does.
/// `frag_max_size` 0 means "not reassembled" (then as [`fragment`]).
pub fn refragment(
    datagram: &[u8],
    mtu: u16,
    frag_max_size: u16,
    out: &mut Vec<Vec<u8>>,
) -> Result<(), FragError> {
    fragment_frame(datagram, 0, mtu, frag_max_size, out)
}

/// [`refragment`] of the IPv4 datagram at `l3` of `frame`: the bytes
/// before `l3` (the link-layer header) are copied in front of every
/// output fragment, so `out` receives whole frames (`mtu` counts the IP
/// bytes only).
pub fn fragment_frame(
    frame: &[u8],
    l3: usize,
    mtu: u16,
    frag_max_size: u16,
    out: &mut Vec<Vec<u8>>,
) -> Result<(), FragError> {
    let l2 = frame
        .get(..l3)
        .ok_or(FragError::Malformed(rvs_wire::Error::Truncated))?;
    let p = ipv4::Packet::new_checked(&frame[l3..])?;
    let tot = usize::from(p.total_len());
    let hlen = p.header_len();
    let mtu = usize::from(mtu);
    let fms = usize::from(frag_max_size);
    let df = p.dont_frag();
    // A reassembled datagram (frag_max_size != 0) is checked like IPVS's
    // __mtu_check_toobig_v4: only its largest fragment must fit; it is then
    // fragmented with DF kept (ignore_df). Anything else: DF and too big.
    let too_big = if fms != 0 { fms > mtu } else { tot > mtu };
    if df && too_big {
        return Err(FragError::FragNeeded { mtu: mtu as u16 });
    }
    let mtu = if fms != 0 { mtu.min(fms) } else { mtu };
    if tot <= mtu {
        out.push(frame[..l3 + tot].to_vec());
        return Ok(());
    }
    if mtu < hlen + 8 {
        return Err(FragError::MtuTooSmall);
    }
    let base = usize::from(p.frag_offset()) * 8;
    let not_last = p.more_frags();
    let payload = p.payload();
    if base + payload.len() > MAX_DATAGRAM {
        return Err(FragError::Oversize);
    }
    let first = base == 0;
    let room = mtu - hlen;
    let mut hdr = p.header().to_vec();
    let mut ptr = 0;
    while ptr < payload.len() {
        let left = payload.len() - ptr;
        let mut len = left.min(room);
        if len < left {
            len &= !7;
        }
        let mut f = Vec::with_capacity(l3 + hlen + len);
        f.extend_from_slice(l2);
        f.extend_from_slice(&hdr);
        f.extend_from_slice(&payload[ptr..ptr + len]);
        let mut ip = ipv4::Packet::new_unchecked(&mut f[l3..]);
        ip.set_total_len((hlen + len) as u16);
        let mf = ptr + len < payload.len() || not_last;
        ip.set_frag(df, mf, ((base + ptr) >> 3) as u16 & OFFSET_MASK);
        ip.fill_checksum();
        out.push(f);
        if ptr == 0 && first {
            options_fragment(&mut hdr[MIN_HEADER..]);
        }
        ptr += len;
    }
    Ok(())
}

#[cfg(test)]
mod test {
    use super::*;
    use proptest::prelude::*;
    use rvs_wire::checksum;

    const SRC: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
    const DST: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);

    /// An IPv4 datagram: `opts` (multiple of 4), UDP protocol, given
    /// ident, payload; DF as asked.
    fn datagram(ident: u16, opts: &[u8], payload: &[u8], df: bool) -> Vec<u8> {
        let repr = ipv4::Repr {
            src_addr: SRC,
            dst_addr: DST,
            protocol: 17,
            payload_len: payload.len(),
            ttl: 64,
            dscp_ecn: 0,
            ident,
            dont_frag: df,
            more_frags: false,
            frag_offset: 0,
            options: ipv4::Options::new(opts).unwrap(),
        };
        let mut b = vec![0u8; repr.buffer_len()];
        repr.emit(&mut ipv4::Packet::new_unchecked(&mut b[..]));
        b[repr.header_len()..].copy_from_slice(payload);
        b
    }

    /// A raw fragment: offset in bytes (multiple of 8), MF, data.
    fn frag(ident: u16, offset: usize, mf: bool, data: &[u8]) -> Vec<u8> {
        frag_x(ident, offset, mf, data, |_| {})
    }

    fn frag_x(
        ident: u16,
        offset: usize,
        mf: bool,
        data: &[u8],
        tweak: impl FnOnce(&mut ipv4::Packet<&mut [u8]>),
    ) -> Vec<u8> {
        let mut b = vec![0u8; 20 + data.len()];
        b[20..].copy_from_slice(data);
        let mut p = ipv4::Packet::new_unchecked(&mut b[..]);
        p.set_version_and_header_len(4, 20);
        p.set_total_len((20 + data.len()) as u16);
        p.set_ident(ident);
        p.set_frag(false, mf, (offset / 8) as u16);
        p.set_ttl(64);
        p.set_protocol(17);
        p.set_src_addr(SRC);
        p.set_dst_addr(DST);
        tweak(&mut p);
        p.fill_checksum();
        b
    }

    fn bytes(n: usize, seed: u8) -> Vec<u8> {
        (0..n)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    fn t0() -> Instant {
        Instant::now()
    }

    fn check_datagram(d: &[u8], payload: &[u8]) {
        let p = ipv4::Packet::new_checked(d).unwrap();
        assert!(p.verify_checksum());
        assert!(!p.is_fragment());
        assert_eq!(usize::from(p.total_len()), d.len());
        assert_eq!(p.payload(), payload);
    }

    #[test]
    fn in_order_and_reverse() {
        let data = bytes(3000, 1);
        for rev in [false, true] {
            let mut r = Reassembler::default();
            let now = t0();
            let mut fs: Vec<_> = (0..3)
                .map(|i| frag(7, i * 1000, i < 2, &data[i * 1000..(i + 1) * 1000]))
                .collect();
            if rev {
                fs.reverse();
            }
            assert_eq!(r.push(now, &fs[0]), Ok(None));
            assert_eq!(r.push(now, &fs[1]), Ok(None));
            assert_eq!(r.queues(), 1);
            let d = r.push(now, &fs[2]).unwrap().unwrap();
            check_datagram(&d, &data);
            assert_eq!(r.queues(), 0);
            assert_eq!(r.mem(), 0);
            assert_eq!(r.stats().reassembled, 1);
            assert_eq!(r.stats().fragments, 3);
            r.check_invariants();
        }
    }

    #[test]
    fn header_of_first_fragment() {
        let data = bytes(64, 2);
        let mut r = Reassembler::default();
        let now = t0();
        // first fragment: TTL 33, router-alert option (ihl 24)
        let mut first = vec![0u8; 24 + 32];
        first[24..].copy_from_slice(&data[..32]);
        {
            let mut p = ipv4::Packet::new_unchecked(&mut first[..]);
            p.set_version_and_header_len(4, 24);
            p.set_total_len(56);
            p.set_ident(9);
            p.set_frag(false, true, 0);
            p.set_ttl(33);
            p.set_protocol(17);
            p.set_src_addr(SRC);
            p.set_dst_addr(DST);
            p.options_mut().copy_from_slice(&[0x94, 4, 0, 0]);
            p.fill_checksum();
        }
        let last = frag_x(9, 32, false, &data[32..], |p| p.set_ttl(99));
        assert_eq!(r.push(now, &last), Ok(None));
        let d = r.push(now, &first).unwrap().unwrap();
        let p = ipv4::Packet::new_checked(&d[..]).unwrap();
        assert_eq!(p.ttl(), 33);
        assert_eq!(p.header_len(), 24);
        assert_eq!(p.options(), &[0x94, 4, 0, 0]);
        assert_eq!(p.total_len(), 24 + 64);
        assert!(!p.more_frags() && !p.dont_frag() && p.frag_offset() == 0);
        assert!(p.verify_checksum());
        assert_eq!(p.payload(), &data[..]);
    }

    #[test]
    fn headroom_reserved() {
        let data = bytes(48, 3);
        let mut r = Reassembler::new(Config {
            headroom: 14,
            ..Config::default()
        });
        let now = t0();
        r.push(now, &frag(1, 0, true, &data[..24])).unwrap();
        let d = r
            .push(now, &frag(1, 24, false, &data[24..]))
            .unwrap()
            .unwrap();
        assert_eq!(&d[..14], &[0u8; 14]);
        check_datagram(&d[14..], &data);
    }

    #[test]
    fn duplicate_kept_queue() {
        let data = bytes(32, 4);
        let mut r = Reassembler::default();
        let now = t0();
        let a = frag(1, 0, true, &data[..16]);
        assert_eq!(r.push(now, &a), Ok(None));
        assert_eq!(r.push(now, &a), Err(FragError::Duplicate));
        // a sub-range of held data is a duplicate too
        assert_eq!(
            r.push(now, &frag(1, 8, true, &data[8..16])),
            Err(FragError::Duplicate)
        );
        assert_eq!(r.stats().duplicates, 2);
        let d = r.push(now, &frag(1, 16, false, &data[16..])).unwrap();
        check_datagram(&d.unwrap(), &data);
        r.check_invariants();
    }

    #[test]
    fn runs_like_the_kernel() {
        let data = bytes(24, 5);
        let now = t0();
        // In order: [0,8) then [8,16) form one run, which contains [0,16).
        let mut r = Reassembler::default();
        r.push(now, &frag(1, 0, true, &data[..8])).unwrap();
        r.push(now, &frag(1, 8, true, &data[8..16])).unwrap();
        assert_eq!(
            r.push(now, &frag(1, 0, true, &data[..16])),
            Err(FragError::Duplicate)
        );
        // Reverse order: [8,16) then [0,8) are two runs: [0,16) overlaps.
        let mut r = Reassembler::default();
        r.push(now, &frag(1, 8, true, &data[8..16])).unwrap();
        r.push(now, &frag(1, 0, true, &data[..8])).unwrap();
        assert_eq!(
            r.push(now, &frag(1, 0, true, &data[..16])),
            Err(FragError::Overlap)
        );
        assert_eq!(r.queues(), 0);
        assert_eq!(r.stats().overlaps, 1);
    }

    #[test]
    fn overlap_discards_datagram() {
        let data = bytes(48, 6);
        let mut r = Reassembler::default();
        let now = t0();
        r.push(now, &frag(1, 0, true, &data[..24])).unwrap();
        // [16, 40) overlaps the tail [0, 24)
        assert_eq!(
            r.push(now, &frag(1, 16, true, &data[16..40])),
            Err(FragError::Overlap)
        );
        assert_eq!(r.queues(), 0);
        assert_eq!(r.mem(), 0);
        // what follows starts a new queue that lacks the head
        assert_eq!(r.push(now, &frag(1, 24, false, &data[24..])), Ok(None));
        assert_eq!(r.queues(), 1);
        // overlap in the middle (binary-search path)
        let mut r = Reassembler::default();
        r.push(now, &frag(2, 0, true, &data[..8])).unwrap();
        r.push(now, &frag(2, 32, false, &data[32..])).unwrap();
        assert_eq!(
            r.push(now, &frag(2, 0, true, &data[..16])),
            Err(FragError::Overlap)
        );
        assert_eq!(r.queues(), 0);
        r.check_invariants();
    }

    #[test]
    fn inconsistent_ends() {
        let data = bytes(64, 7);
        let now = t0();
        // data beyond the last fragment's end
        let mut r = Reassembler::default();
        r.push(now, &frag(1, 16, false, &data[16..32])).unwrap();
        assert_eq!(
            r.push(now, &frag(1, 32, true, &data[32..48])),
            Err(FragError::Inconsistent)
        );
        assert_eq!(r.queues(), 0);
        // two different ends
        r.push(now, &frag(2, 16, false, &data[16..32])).unwrap();
        assert_eq!(
            r.push(now, &frag(2, 32, false, &data[32..40])),
            Err(FragError::Inconsistent)
        );
        // last fragment ending before held data
        r.push(now, &frag(3, 32, true, &data[32..48])).unwrap();
        assert_eq!(
            r.push(now, &frag(3, 8, false, &data[8..16])),
            Err(FragError::Inconsistent)
        );
        // zero-length fragment, and an MF fragment of 7 bytes (rounds to 0)
        r.push(now, &frag(4, 0, true, &data[..8])).unwrap();
        assert_eq!(
            r.push(now, &frag(4, 8, false, &[])),
            Err(FragError::Inconsistent)
        );
        assert_eq!(
            r.push(now, &frag(5, 8, true, &data[..7])),
            Err(FragError::Inconsistent)
        );
        assert_eq!(r.queues(), 0);
        assert_eq!(r.stats().failed, 5);
        r.check_invariants();
    }

    #[test]
    fn mf_fragment_rounded_down() {
        let data = bytes(40, 8);
        let mut r = Reassembler::default();
        let now = t0();
        // 12 bytes with MF: only 8 count
        let mut extra = data[..8].to_vec();
        extra.extend_from_slice(&[0xee; 4]);
        r.push(now, &frag(1, 0, true, &extra)).unwrap();
        let d = r
            .push(now, &frag(1, 8, false, &data[8..]))
            .unwrap()
            .unwrap();
        check_datagram(&d, &data);
    }

    #[test]
    fn padding_ignored() {
        let data = bytes(16, 9);
        let mut r = Reassembler::default();
        let now = t0();
        let mut a = frag(1, 0, true, &data[..8]);
        a.extend_from_slice(&[0xaa; 30]);
        r.push(now, &a).unwrap();
        let mut b = frag(1, 8, false, &data[8..]);
        b.extend_from_slice(&[0xbb; 30]);
        check_datagram(&r.push(now, &b).unwrap().unwrap(), &data);
    }

    #[test]
    fn oversize() {
        let now = t0();
        let mut r = Reassembler::default();
        r.push(now, &frag(1, 0, true, &[0; 8])).unwrap();
        assert_eq!(
            r.push(now, &frag(1, 8189 * 8, false, &[0; 100])),
            Err(FragError::Oversize)
        );
        assert_eq!(r.queues(), 0);
        // exactly 65535 with a 20-byte head header is fine; with a larger
        // head header it fails at reassembly
        let mut r = Reassembler::default();
        let body = vec![0u8; 65515];
        let cut = 65000;
        r.push(now, &frag(2, 0, true, &body[..cut])).unwrap();
        let d = r
            .push(now, &frag(2, cut, false, &body[cut..]))
            .unwrap()
            .unwrap();
        assert_eq!(d.len(), 65535);
        let mut first = frag_x(3, 0, true, &body[..cut - 8], |p| {
            p.set_version_and_header_len(4, 24)
        });
        // rebuild with ihl 24: header 24 bytes, data cut-8 bytes
        first.splice(20..20, [1u8, 1, 1, 1]);
        {
            let mut p = ipv4::Packet::new_unchecked(&mut first[..]);
            p.set_total_len((24 + cut - 8) as u16);
            p.fill_checksum();
        }
        r.push(now, &frag(3, cut - 8, false, &body[cut - 8..]))
            .unwrap();
        assert_eq!(r.push(now, &first), Err(FragError::Oversize));
        assert_eq!(r.queues(), 0);
        r.check_invariants();
    }

    #[test]
    fn malformed_and_not_fragment() {
        let now = t0();
        let mut r = Reassembler::default();
        let whole = datagram(1, &[], &[1, 2, 3], false);
        assert_eq!(r.push(now, &whole), Err(FragError::NotFragment));
        let mut bad = frag(1, 0, true, &[0; 8]);
        bad[8] ^= 1;
        assert_eq!(
            r.push(now, &bad),
            Err(FragError::Malformed(rvs_wire::Error::Checksum))
        );
        let f = frag(1, 0, true, &[0; 8]);
        assert_eq!(
            r.push(now, &f[..20]),
            Err(FragError::Malformed(rvs_wire::Error::Truncated))
        );
        assert!(matches!(r.push(now, &[]), Err(FragError::Malformed(_))));
        assert_eq!(r.stats().malformed, 3);
        assert_eq!(r.queues(), 0);
    }

    #[test]
    fn keys_separate_queues() {
        let now = t0();
        let mut r = Reassembler::default();
        let data = bytes(16, 10);
        r.push(now, &frag(1, 0, true, &data[..8])).unwrap();
        r.push(now, &frag(2, 0, true, &data[..8])).unwrap();
        r.push(now, &frag_x(1, 0, true, &data[..8], |p| p.set_protocol(6)))
            .unwrap();
        r.push(
            now,
            &frag_x(1, 0, true, &data[..8], |p| {
                p.set_src_addr(Ipv4Addr::new(198, 18, 0, 3))
            }),
        )
        .unwrap();
        assert_eq!(r.queues(), 4);
        let d = r.push(now, &frag(2, 8, false, &data[8..])).unwrap();
        check_datagram(&d.unwrap(), &data);
        assert_eq!(r.queues(), 3);
        r.check_invariants();
    }

    #[test]
    fn timeout_reports_first_fragment() {
        let now = t0();
        let mut r = Reassembler::default();
        let data = bytes(32, 11);
        let head = frag(1, 0, true, &data[..16]);
        r.push(now, &head).unwrap();
        r.push(
            now + Duration::from_secs(10),
            &frag(2, 16, false, &data[16..]),
        )
        .unwrap();
        assert_eq!(r.next_deadline(), Some(now + DEFAULT_TIMEOUT));
        assert!(r.expire(now + Duration::from_secs(29)).is_empty());
        let e = r.expire(now + Duration::from_secs(30));
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].key.ident, 1);
        assert_eq!(e[0].first_fragment.as_deref(), Some(&head[..]));
        assert_eq!(r.queues(), 1);
        // the queue without its first fragment: no ICMP
        let e = r.expire(now + Duration::from_secs(41));
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].first_fragment, None);
        assert_eq!(r.stats().timeouts, 2);
        assert_eq!(r.mem(), 0);
        assert_eq!(r.next_deadline(), None);
    }

    #[test]
    fn timeout_not_refreshed_and_noticed_by_push() {
        let now = t0();
        let mut r = Reassembler::default();
        let data = bytes(24, 12);
        r.push(now, &frag(1, 0, true, &data[..8])).unwrap();
        // a fragment at 20 s does not extend the 30 s lifetime
        r.push(
            now + Duration::from_secs(20),
            &frag(1, 8, true, &data[8..16]),
        )
        .unwrap();
        // the last one at 31 s finds the queue gone and starts anew
        assert_eq!(
            r.push(
                now + Duration::from_secs(31),
                &frag(1, 16, false, &data[16..])
            ),
            Ok(None)
        );
        let e = r.expire(now + Duration::from_secs(31));
        assert_eq!(e.len(), 1);
        assert!(e[0].first_fragment.is_some());
        assert_eq!(r.queues(), 1);
        r.check_invariants();
    }

    #[test]
    fn expired_quote_is_cut() {
        let now = t0();
        let mut r = Reassembler::default();
        let data = bytes(1480, 13);
        r.push(now, &frag(1, 0, true, &data)).unwrap();
        let e = r.expire(now + DEFAULT_TIMEOUT);
        let f = e[0].first_fragment.as_ref().unwrap();
        assert_eq!(f.len(), EXPIRED_QUOTE);
        let p = ipv4::Packet::new_checked_header(&f[..]).unwrap();
        assert_eq!(p.total_len(), 1500);
        assert_eq!(&f[20..], &data[..EXPIRED_QUOTE - 20]);
    }

    #[test]
    fn memory_limit_evicts_oldest() {
        let now = t0();
        let per_queue = QUEUE_OVERHEAD + FRAG_OVERHEAD + 20 + 1000;
        let mut r = Reassembler::new(Config {
            high_thresh: 10 * per_queue,
            low_thresh: 5 * per_queue,
            ..Config::default()
        });
        let data = bytes(1000, 14);
        for id in 0..10u16 {
            let t = now + Duration::from_millis(u64::from(id));
            r.push(t, &frag(id, 0, true, &data)).unwrap();
        }
        assert_eq!(r.queues(), 10);
        assert_eq!(r.mem(), 10 * per_queue);
        r.check_invariants();
        // the 11th evicts down to low_thresh, the new fragment included
        r.push(now + Duration::from_millis(20), &frag(10, 0, true, &data))
            .unwrap();
        assert_eq!(r.stats().evicted, 6);
        assert_eq!(r.queues(), 5);
        assert!(r.mem() <= 5 * per_queue);
        r.check_invariants();
        // the oldest went first: 0..=5 gone, 6..=10 left
        let t = now + Duration::from_millis(30);
        for id in 6..=10u16 {
            assert!(r.t.queues.contains_key(&FragKey {
                src: SRC,
                dst: DST,
                protocol: 17,
                ident: id
            }));
        }
        // evicted queues give no ICMP
        assert!(r.expire(t).is_empty());
        // a fragment bigger than the whole budget
        let mut r = Reassembler::new(Config {
            high_thresh: 1000,
            low_thresh: 500,
            ..Config::default()
        });
        assert_eq!(
            r.push(now, &frag(1, 0, true, &data)),
            Err(FragError::NoMemory)
        );
        assert_eq!(r.stats().no_memory, 1);
        assert_eq!(r.queues(), 0);
    }

    #[test]
    fn ecn_merge_like_kernel() {
        let now = t0();
        let data = bytes(16, 15);
        let run = |a: u8, b: u8| {
            let mut r = Reassembler::default();
            r.push(
                now,
                &frag_x(1, 0, true, &data[..8], |p| p.set_dscp_ecn(0x28 | a)),
            )
            .unwrap();
            r.push(now, &frag_x(1, 8, false, &data[8..], |p| p.set_dscp_ecn(b)))
                .map(|d| d.map(|d| d[1]))
        };
        assert_eq!(run(2, 3), Ok(Some(0x2b))); // ECT(0) + CE: CE
        assert_eq!(run(1, 2), Ok(Some(0x29))); // ECT(1) + ECT(0): first's
        assert_eq!(run(0, 0), Ok(Some(0x28)));
        assert_eq!(run(3, 3), Ok(Some(0x2b)));
        assert_eq!(run(0, 3), Err(FragError::Ecn)); // not-ECT + CE
        assert_eq!(run(2, 0), Err(FragError::Ecn)); // ECT + not-ECT
    }

    #[test]
    fn df_and_frag_max_size() {
        let now = t0();
        let data = bytes(48, 16);
        let set_df = |p: &mut ipv4::Packet<&mut [u8]>| {
            let (mf, off) = (p.more_frags(), p.frag_offset());
            p.set_frag(true, mf, off)
        };
        // all with DF: DF kept
        let mut r = Reassembler::default();
        r.push_full(now, &frag_x(1, 0, true, &data[..32], set_df))
            .unwrap();
        let d = r
            .push_full(now, &frag_x(1, 32, false, &data[32..], set_df))
            .unwrap()
            .unwrap();
        assert!(ipv4::Packet::new_checked(&d.datagram[..])
            .unwrap()
            .dont_frag());
        assert_eq!(d.frag_max_size, 52);
        // the largest without DF: no DF
        let mut r = Reassembler::default();
        r.push_full(now, &frag(2, 0, true, &data[..32])).unwrap();
        let d = r
            .push_full(now, &frag_x(2, 32, false, &data[32..], set_df))
            .unwrap()
            .unwrap();
        let p = ipv4::Packet::new_checked(&d.datagram[..]).unwrap();
        assert!(!p.dont_frag());
        assert!(p.verify_checksum());
        assert_eq!(d.frag_max_size, 52);
    }

    #[test]
    fn fragment_fits_unchanged() {
        let d = datagram(5, &[], &bytes(100, 17), true);
        let mut out = Vec::new();
        fragment(&d, 1500, &mut out).unwrap();
        assert_eq!(out, vec![d.clone()]);
        // padding after total_len is not copied
        let mut padded = d.clone();
        padded.extend_from_slice(&[0; 10]);
        out.clear();
        fragment(&padded, 120, &mut out).unwrap();
        assert_eq!(out, vec![d]);
    }

    #[test]
    fn fragment_df_and_small_mtu() {
        let d = datagram(5, &[], &bytes(1480, 18), true);
        let mut out = Vec::new();
        assert_eq!(
            fragment(&d, 1400, &mut out),
            Err(FragError::FragNeeded { mtu: 1400 })
        );
        let d = datagram(5, &[], &bytes(1480, 18), false);
        assert_eq!(fragment(&d, 27, &mut out), Err(FragError::MtuTooSmall));
        assert!(out.is_empty());
        fragment(&d, 28, &mut out).unwrap();
        assert_eq!(out.len(), 185);
        assert!(matches!(
            fragment(&[0x45, 0], 1500, &mut out),
            Err(FragError::Malformed(_))
        ));
    }

    #[test]
    fn fragment_layout() {
        let payload = bytes(3000, 19);
        let d = datagram(0x4242, &[], &payload, false);
        let mut out = Vec::new();
        fragment(&d, 1500, &mut out).unwrap();
        assert_eq!(out.len(), 3);
        let exp = [(0u16, 1480usize, true), (185, 1480, true), (370, 40, false)];
        for (f, (off, len, mf)) in out.iter().zip(exp) {
            let p = ipv4::Packet::new_checked(&f[..]).unwrap();
            assert!(p.verify_checksum());
            assert_eq!(p.ident(), 0x4242);
            assert_eq!(p.frag_offset(), off);
            assert_eq!(p.more_frags(), mf);
            assert!(!p.dont_frag());
            assert_eq!(usize::from(p.total_len()), 20 + len);
            assert_eq!(f.len(), 20 + len);
            let o = usize::from(off) * 8;
            assert_eq!(p.payload(), &payload[o..o + len]);
        }
        // an mtu that is not 20 + a multiple of 8: data rounded down
        out.clear();
        fragment(&d, 1000, &mut out).unwrap();
        let p = ipv4::Packet::new_checked(&out[0][..]).unwrap();
        assert_eq!(p.total_len(), 20 + 976);
    }

    #[test]
    fn fragment_options_copy_flag() {
        // record route (7, not copied), router alert (0x94, copied),
        // timestamp (0x44, not copied), EOL padding
        let opts = [
            7, 7, 4, 0, 0, 0, 0, // RR
            0x94, 4, 0, 0, // RA
            0x44, 4, 5, 0, // TS (len 4, pointer 5, flags 0)
            0, // EOL
        ];
        let d = datagram(1, &opts, &bytes(200, 20), false);
        let mut out = Vec::new();
        fragment(&d, 100, &mut out).unwrap();
        assert!(out.len() > 2);
        assert_eq!(&out[0][20..36], &opts);
        let nop_rr = [1u8; 7];
        for f in &out[1..] {
            let p = ipv4::Packet::new_checked(&f[..]).unwrap();
            assert_eq!(p.header_len(), 36);
            assert_eq!(&p.options()[..7], &nop_rr);
            assert_eq!(&p.options()[7..11], &[0x94, 4, 0, 0]);
            assert_eq!(&p.options()[11..15], &[1, 1, 1, 1]);
            assert!(p.verify_checksum());
        }
        // the data per fragment is (100 - 36) rounded to 8 = 64
        assert_eq!(
            ipv4::Packet::new_checked(&out[0][..]).unwrap().total_len(),
            100
        );
        // reassembly gives back the original (first fragment's options)
        let mut r = Reassembler::default();
        let now = t0();
        let mut got = None;
        for f in out.iter().rev() {
            got = r.push(now, f).unwrap();
        }
        assert_eq!(got.unwrap(), d);
    }

    #[test]
    fn fragment_a_fragment() {
        // a middle fragment (offset 1480, MF) re-fragmented: offsets carry
        // over, MF stays on the last piece, options untouched (not first)
        let data = bytes(1480, 21);
        let f = frag(3, 1480, true, &data);
        let mut out = Vec::new();
        fragment(&f, 576, &mut out).unwrap();
        assert_eq!(out.len(), 3);
        let mut at = 1480;
        for g in &out {
            let p = ipv4::Packet::new_checked(&g[..]).unwrap();
            assert!(p.more_frags());
            assert_eq!(usize::from(p.frag_offset()) * 8, at);
            at += p.payload().len();
        }
        assert_eq!(at, 2960);
        // the last fragment's pieces: MF only on all but the last
        let f = frag(3, 2960, false, &data);
        out.clear();
        fragment(&f, 576, &mut out).unwrap();
        let mfs: Vec<bool> = out
            .iter()
            .map(|g| ipv4::Packet::new_checked(&g[..]).unwrap().more_frags())
            .collect();
        assert_eq!(mfs, vec![true, true, false]);
    }

    #[test]
    fn refragment_honours_frag_max_size() {
        let now = t0();
        let payload = bytes(2000, 22);
        let mut r = Reassembler::default();
        // client fragments of 20 + 504 bytes
        let mut res = None;
        for (i, c) in payload.chunks(504).enumerate() {
            let mf = (i + 1) * 504 < payload.len();
            res = r.push_full(now, &frag(4, i * 504, mf, c)).unwrap();
        }
        let res = res.unwrap();
        assert_eq!(res.frag_max_size, 524);
        let mut out = Vec::new();
        refragment(&res.datagram, 1500, res.frag_max_size, &mut out).unwrap();
        assert_eq!(out.len(), 4);
        assert!(out.iter().all(|f| f.len() <= 524));
        // a smaller MTU wins
        out.clear();
        refragment(&res.datagram, 300, res.frag_max_size, &mut out).unwrap();
        assert!(out.iter().all(|f| f.len() <= 300));
        // frag_max_size 0 = plain fragment(): fits, one copy
        out.clear();
        refragment(&res.datagram, 2100, 0, &mut out).unwrap();
        assert_eq!(out, vec![res.datagram.clone()]);
        // DF datagram: fine while frag_max_size fits, DF kept
        let mut dfd = res.datagram.clone();
        {
            let mut p = ipv4::Packet::new_unchecked(&mut dfd[..]);
            p.set_frag(true, false, 0);
            p.fill_checksum();
        }
        // (datagram 2000 > MTU 1500, but every fragment fitted: the kernel
        // fragments it again with DF kept, __mtu_check_toobig_v4)
        out.clear();
        refragment(&dfd, 1500, 524, &mut out).unwrap();
        assert_eq!(out.len(), 4);
        out.clear();
        assert_eq!(
            refragment(&dfd, 500, 524, &mut out),
            Err(FragError::FragNeeded { mtu: 500 })
        );
        assert_eq!(
            refragment(&dfd, 2100, 2200, &mut out),
            Err(FragError::FragNeeded { mtu: 2100 })
        );
        refragment(&dfd, 2100, 524, &mut out).unwrap();
        assert_eq!(out.len(), 4);
        assert!(out
            .iter()
            .all(|f| ipv4::Packet::new_checked(&f[..]).unwrap().dont_frag()));
    }

    #[test]
    fn fragment_frame_copies_link_header() {
        let payload = bytes(1000, 23);
        let d = datagram(8, &[], &payload, false);
        let mut frame = vec![0xab; 14];
        frame.extend_from_slice(&d);
        let mut out = Vec::new();
        fragment_frame(&frame, 14, 500, 0, &mut out).unwrap();
        assert_eq!(out.len(), 3);
        let mut r = Reassembler::default();
        let now = t0();
        let mut got = None;
        for f in &out {
            assert_eq!(&f[..14], &[0xab; 14]);
            assert!(f.len() - 14 <= 500);
            got = r.push(now, &f[14..]).unwrap();
        }
        assert_eq!(got.unwrap(), d);
        assert!(fragment_frame(&frame, 2000, 500, 0, &mut out).is_err());
    }

    #[test]
    fn icmp_time_exceeded_from_expired() {
        // the expired first fragment is usable as the quoted packet
        let now = t0();
        let mut r = Reassembler::default();
        r.push(now, &frag(1, 0, true, &bytes(1000, 24))).unwrap();
        let e = r.expire(now + DEFAULT_TIMEOUT);
        let q = e[0].first_fragment.as_ref().unwrap();
        let mut buf = [0u8; 8 + rvs_wire::icmpv4::MAX_QUOTE];
        let n = rvs_wire::icmpv4::build_error(
            &mut buf,
            rvs_wire::icmpv4::msg_type::TIME_EXCEEDED,
            CODE_FRAG_REASM_TIME_EXCEEDED,
            0,
            q,
        )
        .unwrap();
        assert_eq!(n, 8 + rvs_wire::icmpv4::MAX_QUOTE);
        assert_eq!(buf[1], 1);
        assert!(checksum::verify(&buf[..n]));
    }

    // ---- properties ----

    /// Split `len` bytes into pieces at random multiples of 8.
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

    /// A permutation of 0..n from random keys.
    fn permute(n: usize, keys: &[u32]) -> Vec<usize> {
        let mut idx: Vec<usize> = (0..n).collect();
        idx.sort_by_key(|&i| (keys[i % keys.len()].wrapping_mul(i as u32 + 1), i));
        idx
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn random_order_with_duplicates_reassembles(
            payload in proptest::collection::vec(any::<u8>(), 1..6000),
            sizes in proptest::collection::vec(1u16..200, 1..8),
            keys in proptest::collection::vec(any::<u32>(), 1..16),
            dups in proptest::collection::vec((any::<u16>(), any::<u16>()), 0..8),
            ident in any::<u16>(),
        ) {
            let pieces = cuts(payload.len(), &sizes);
            let n = pieces.len();
            let mut r = Reassembler::default();
            let now = t0();
            if n == 1 {
                // offset 0 without MF: not a fragment at all
                let f = frag(ident, 0, false, &payload);
                prop_assert_eq!(r.push(now, &f), Err(FragError::NotFragment));
                return Ok(());
            }
            let mut seq: Vec<Vec<u8>> = permute(n, &keys)
                .into_iter()
                .map(|i| {
                    let (a, b) = pieces[i];
                    frag(ident, a, b < payload.len(), &payload[a..b])
                })
                .collect();
            // duplicates of already-pushed fragments, before the last one
            let mut ndup = 0;
            if n > 1 {
                for (x, y) in dups {
                    let last = seq.len() - 1;
                    let pos = 1 + usize::from(y) % last; // 1..=last
                    let src = usize::from(x) % pos; // before pos
                    let f = seq[src].clone();
                    seq.insert(pos, f);
                    ndup += 1;
                }
            }
            let mut got = None;
            let total = seq.len();
            for (i, f) in seq.iter().enumerate() {
                match r.push(now, f) {
                    Ok(Some(d)) => {
                        prop_assert_eq!(i, total - 1);
                        got = Some(d);
                    }
                    Ok(None) => prop_assert!(i < total - 1),
                    Err(FragError::Duplicate) => {}
                    Err(e) => prop_assert!(false, "unexpected {:?}", e),
                }
                r.check_invariants();
            }
            let d = got.expect("reassembled");
            let p = ipv4::Packet::new_checked(&d[..]).unwrap();
            prop_assert!(p.verify_checksum());
            prop_assert!(!p.is_fragment());
            prop_assert_eq!(p.ident(), ident);
            prop_assert_eq!(p.payload(), &payload[..]);
            prop_assert_eq!(r.stats().duplicates, ndup);
            prop_assert_eq!(r.queues(), 0);
            prop_assert_eq!(r.mem(), 0);
        }

        #[test]
        fn fragment_then_reassemble_round_trips(
            payload in proptest::collection::vec(any::<u8>(), 0..9000),
            opt_words in 0usize..=10,
            copied in any::<bool>(),
            mtu in 68u16..=1600,
            keys in proptest::collection::vec(any::<u32>(), 1..16),
            ident in any::<u16>(),
        ) {
            // options: one option filling opt_words*4 bytes (copied or not)
            let mut opts = vec![0u8; opt_words * 4];
            if opt_words > 0 {
                opts[0] = if copied { 0x88 } else { 0x08 };
                opts[1] = (opt_words * 4) as u8;
            }
            let d = datagram(ident, &opts, &payload, false);
            let hlen = 20 + opts.len();
            let mut out = Vec::new();
            fragment(&d, mtu, &mut out).unwrap();
            let mut end = 0;
            for (i, f) in out.iter().enumerate() {
                prop_assert!(f.len() <= usize::from(mtu));
                let p = ipv4::Packet::new_checked(&f[..]).unwrap();
                prop_assert!(p.verify_checksum());
                prop_assert_eq!(p.header_len(), hlen);
                prop_assert_eq!(usize::from(p.frag_offset()) * 8, end);
                let last = i + 1 == out.len();
                prop_assert_eq!(p.more_frags(), !last && out.len() > 1);
                if !last {
                    prop_assert_eq!(p.payload().len() % 8, 0);
                }
                if i > 0 && opt_words > 0 {
                    if copied {
                        prop_assert_eq!(p.options(), &opts[..]);
                    } else {
                        prop_assert!(p.options().iter().all(|&b| b == 1));
                    }
                }
                end += p.payload().len();
            }
            prop_assert_eq!(end, payload.len());
            if out.len() == 1 {
                prop_assert_eq!(&out[0], &d);
                return Ok(());
            }
            let mut r = Reassembler::default();
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
                proptest::collection::vec(any::<u8>(), 0..120), 0..20),
            mtu in any::<u16>(),
            fms in any::<u16>(),
        ) {
            let mut r = Reassembler::new(Config {
                high_thresh: 4096,
                low_thresh: 2048,
                ..Config::default()
            });
            let now = t0();
            for (i, p) in pkts.iter().enumerate() {
                let _ = r.push(now + Duration::from_secs(i as u64 * 5), p);
                r.check_invariants();
                let mut out = Vec::new();
                let _ = fragment(p, mtu, &mut out);
                let _ = refragment(p, mtu, fms, &mut out);
                let _ = fragment_frame(p, usize::from(mtu % 32), mtu, fms, &mut out);
            }
            let _ = r.expire(now + Duration::from_secs(1000));
            prop_assert_eq!(r.queues(), 0);
            prop_assert_eq!(r.mem(), 0);
        }

        #[test]
        fn mutated_fragments_never_panic(
            ops in proptest::collection::vec(
                (any::<u16>(), 0usize..300, any::<bool>(), 0u8..4, any::<u8>(), any::<u16>()),
                1..40),
        ) {
            // Well-formed headers with hostile offsets, lengths, flags,
            // keys and times: exercises every queue path.
            let mut r = Reassembler::new(Config {
                high_thresh: 16 * 1024,
                low_thresh: 8 * 1024,
                ..Config::default()
            });
            let start = t0();
            let data = bytes(300, 25);
            for (off, len, mf, id, ecn, ms) in ops {
                let f = frag_x(u16::from(id), 0, mf, &data[..len], |p| {
                    p.set_frag(ecn & 1 == 1, mf, off & OFFSET_MASK);
                    p.set_dscp_ecn(ecn & 3);
                });
                let now = start + Duration::from_millis(u64::from(ms) * 5);
                if let Ok(Some(d)) = r.push(now, &f) {
                    let p = ipv4::Packet::new_checked(&d[..]).unwrap();
                    prop_assert!(p.verify_checksum());
                    prop_assert!(!p.is_fragment());
                }
                r.check_invariants();
            }
            let _ = r.expire(start + Duration::from_secs(10_000));
            prop_assert_eq!(r.mem(), 0);
        }
    }
}
