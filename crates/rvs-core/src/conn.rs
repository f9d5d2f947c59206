//! Connection table: compact fixed-size entries in a chunked slab (no
//! per-entry heap allocation), an open-addressing index keyed like the
//! kernel's conn hash (protocol, client address, client port), and a hashed
//! timer wheel with 1 s ticks instead of per-connection timers.

use crate::hash::conn_hash;

// Entry flags (u16). Bits that exist in the kernel keep the kernel's values.
pub(crate) const F_FWD_MASK: u16 = 0x0007;
/// Client side (caddr/vaddr) is IPv6.
pub(crate) const F_V6: u16 = 0x0008;
/// daddr is IPv6.
pub(crate) const F_DV6: u16 = 0x0010;
/// Slot holds a live entry.
pub(crate) const F_LIVE: u16 = 0x0020;
/// Entry is in the index.
pub(crate) const F_HASHED: u16 = 0x0040;
pub(crate) const F_NOOUTPUT: u16 = 0x0080;
pub(crate) const F_INACTIVE: u16 = 0x0100;
pub(crate) const F_TEMPLATE: u16 = 0x1000;
pub(crate) const F_ONE_PACKET: u16 = 0x2000;
/// Created or updated by connection sync (kernel IP_VS_CONN_F_SYNC = 0x20,
/// stored in another bit here).
pub(crate) const F_SYNC: u16 = 0x4000;

/// Sentinel index.
pub(crate) const NIL: u32 = u32::MAX;

/// One connection or persistence template. 104 bytes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Conn {
    pub caddr: [u8; 16],
    pub vaddr: [u8; 16],
    pub daddr: [u8; 16],
    /// Expiry time, ms.
    pub expires: u64,
    /// Current timeout in seconds (re-armed on every packet).
    pub timeout: u32,
    /// Bound destination (DestId) or NIL.
    pub dest: u32,
    /// Controlling template (slot index) or NIL. Free slots: next free.
    pub control: u32,
    /// Number of connections this template controls.
    pub n_control: u32,
    /// Wheel tick (seconds) this entry is queued for (earliest).
    pub armed: u32,
    /// Slot generation, bumped on free.
    pub gen: u32,
    pub in_pkts: u32,
    /// ip_vs_sync_conn_needed's sync_endtime: the expiry last synced, in
    /// 4 ms units, low two bits = resends done (sync_refresh_period).
    pub sync_end: u32,
    pub cport: u16,
    pub vport: u16,
    pub dport: u16,
    pub flags: u16,
    /// IP protocol number (0 for fwmark templates).
    pub proto: u8,
    pub state: u8,
    /// State when last synced (ip_vs_sync_conn_needed).
    pub old_state: u8,
}

impl Conn {
    pub(crate) const EMPTY: Conn = Conn {
        caddr: [0; 16],
        vaddr: [0; 16],
        daddr: [0; 16],
        expires: 0,
        timeout: 0,
        dest: NIL,
        control: NIL,
        n_control: 0,
        armed: 0,
        gen: 0,
        in_pkts: 0,
        sync_end: 0,
        cport: 0,
        vport: 0,
        dport: 0,
        flags: 0,
        proto: 0,
        state: 0,
        old_state: 0,
    };

    #[inline]
    pub fn is_template(&self) -> bool {
        self.flags & F_TEMPLATE != 0
    }
    #[inline]
    pub fn v6(&self) -> bool {
        self.flags & F_V6 != 0
    }
    #[inline]
    pub fn live(&self) -> bool {
        self.flags & F_LIVE != 0
    }
}

const CHUNK_BITS: u32 = 12;
const CHUNK: usize = 1 << CHUNK_BITS;
const EMPTY_SLOT: u64 = u64::MAX;
/// Timer wheel: 4096 one-second buckets (~68 min per lap); longer
/// timeouts are simply re-queued when their bucket comes round.
pub(crate) const WHEEL_SIZE: usize = 4096;

const SEG_BITS: u32 = 8;
const SEGS: usize = 1 << SEG_BITS;
const SEG_INIT: usize = 16;

/// One segment of the open-addressing index. It doubles at a load of 3/4
/// and halves below 1/8 (down to `floor`), so after a peak has passed the
/// index gives its memory back instead of staying at the peak's size.
struct Seg {
    slots: Vec<u64>,
    len: usize,
    /// Smallest capacity (SEG_INIT, or what [`ConnTable::reserve`] asked).
    floor: usize,
}

impl Seg {
    fn new(cap: usize) -> Self {
        Seg {
            slots: vec![EMPTY_SLOT; cap],
            len: 0,
            floor: cap,
        }
    }

    fn rehash(&mut self, cap: usize) {
        let old = std::mem::replace(&mut self.slots, vec![EMPTY_SLOT; cap]);
        let mask = cap - 1;
        for s in old.into_iter().filter(|&s| s != EMPTY_SLOT) {
            let mut p = (s >> 32) as usize & mask;
            while self.slots[p] != EMPTY_SLOT {
                p = (p + 1) & mask;
            }
            self.slots[p] = s;
        }
    }

    fn insert(&mut self, h: u32, idx: u32) {
        if (self.len + 1) * 4 >= self.slots.len() * 3 {
            let cap = self.slots.len() * 2;
            self.rehash(cap);
        }
        let mask = self.slots.len() - 1;
        let mut p = h as usize & mask;
        while self.slots[p] != EMPTY_SLOT {
            p = (p + 1) & mask;
        }
        self.slots[p] = ((h as u64) << 32) | idx as u64;
        self.len += 1;
    }

    fn remove(&mut self, h: u32, idx: u32) {
        let mask = self.slots.len() - 1;
        let want = ((h as u64) << 32) | idx as u64;
        let mut p = h as usize & mask;
        loop {
            let s = self.slots[p];
            if s == EMPTY_SLOT {
                return; // not present (cannot happen)
            }
            if s == want {
                break;
            }
            p = (p + 1) & mask;
        }
        // backward shift: pull later chain members into the hole
        let mut hole = p;
        let mut q = (p + 1) & mask;
        loop {
            let s = self.slots[q];
            if s == EMPTY_SLOT {
                break;
            }
            let home = (s >> 32) as usize & mask;
            // movable iff its home is not cyclically in (hole, q]
            if (q.wrapping_sub(home) & mask) >= (q.wrapping_sub(hole) & mask) {
                self.slots[hole] = s;
                hole = q;
            }
            q = (q + 1) & mask;
        }
        self.slots[hole] = EMPTY_SLOT;
        self.len -= 1;
        let cap = self.slots.len();
        if cap > self.floor && self.len * 8 < cap {
            self.rehash(cap / 2);
        }
    }
}

pub(crate) struct ConnTable {
    chunks: Vec<Box<[Conn]>>,
    /// High-water mark of allocated slots.
    top: u32,
    free_head: u32,
    len: usize,
    /// Open-addressing index: (hash32 << 32) | slot, linear probing, split
    /// into SEGS independently growing segments (selected by the top hash
    /// bits) so that a resize never rehashes more than 1/SEGS of the table
    /// at once (no multi-millisecond stall at millions of entries).
    segs: Vec<Seg>,
    seed: u64,
    wheel: Vec<Vec<u32>>,
}

impl ConnTable {
    pub fn new(seed: u64) -> Self {
        ConnTable {
            chunks: Vec::new(),
            top: 0,
            free_head: NIL,
            len: 0,
            segs: (0..SEGS).map(|_| Seg::new(SEG_INIT)).collect(),
            seed,
            wheel: (0..WHEEL_SIZE).map(|_| Vec::new()).collect(),
        }
    }

    /// Pre-size for `n` entries (benchmarks, big deployments).
    pub fn reserve(&mut self, n: usize) {
        while (self.chunks.len() * CHUNK) < n {
            self.chunks
                .push(vec![Conn::EMPTY; CHUNK].into_boxed_slice());
        }
        let per_seg = n.div_ceil(SEGS);
        for seg in &mut self.segs {
            let mut cap = seg.slots.len();
            while per_seg * 4 >= cap * 3 {
                cap *= 2;
            }
            if cap != seg.slots.len() {
                seg.rehash(cap);
            }
            seg.floor = cap;
        }
    }

    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Bytes held by the table's own structures (entries, index, wheel).
    pub fn memory_bytes(&self) -> usize {
        self.chunks.len() * CHUNK * std::mem::size_of::<Conn>()
            + self.chunks.capacity() * std::mem::size_of::<Box<[Conn]>>()
            + self
                .segs
                .iter()
                .map(|s| s.slots.capacity() * 8)
                .sum::<usize>()
            + self.wheel.iter().map(|b| b.capacity() * 4).sum::<usize>()
            + self.wheel.capacity() * std::mem::size_of::<Vec<u32>>()
    }

    #[inline]
    pub fn get(&self, idx: u32) -> Option<&Conn> {
        let c = self.chunks.get((idx >> CHUNK_BITS) as usize)?;
        c.get(idx as usize & (CHUNK - 1)).filter(|e| e.live())
    }

    #[inline]
    pub fn get_mut(&mut self, idx: u32) -> Option<&mut Conn> {
        let c = self.chunks.get_mut((idx >> CHUNK_BITS) as usize)?;
        c.get_mut(idx as usize & (CHUNK - 1)).filter(|e| e.live())
    }

    #[inline]
    fn slot_mut(&mut self, idx: u32) -> &mut Conn {
        &mut self.chunks[(idx >> CHUNK_BITS) as usize][idx as usize & (CHUNK - 1)]
    }

    /// Allocates a slot for `c` (marked live). Returns None only if the
    /// 32-bit slot space is exhausted.
    pub fn alloc(&mut self, mut c: Conn) -> Option<u32> {
        let idx = if self.free_head != NIL {
            let idx = self.free_head;
            self.free_head = self.slot_mut(idx).control;
            idx
        } else {
            if self.top >= NIL - 1 {
                return None;
            }
            let idx = self.top;
            if (idx as usize >> CHUNK_BITS) >= self.chunks.len() {
                self.chunks
                    .push(vec![Conn::EMPTY; CHUNK].into_boxed_slice());
            }
            self.top += 1;
            idx
        };
        let slot = self.slot_mut(idx);
        c.gen = slot.gen;
        c.flags |= F_LIVE;
        c.flags &= !F_HASHED;
        *slot = c;
        self.len += 1;
        Some(idx)
    }

    /// Frees a slot (must already be unhashed).
    pub fn free(&mut self, idx: u32) {
        let head = self.free_head;
        let Some(c) = self.get_mut(idx) else { return };
        let gen = c.gen.wrapping_add(1);
        *c = Conn::EMPTY;
        c.gen = gen;
        c.control = head;
        self.free_head = idx;
        self.len -= 1;
    }

    #[inline]
    fn key_hash(&self, proto: u8, v6: bool, caddr: &[u8; 16], cport: u16) -> u32 {
        conn_hash(self.seed, proto, v6, caddr, cport) as u32
    }

    fn entry_hash(&self, c: &Conn) -> u32 {
        self.key_hash(c.proto, c.v6(), &c.caddr, c.cport)
    }

    #[inline]
    fn seg_of(h: u32) -> usize {
        (h >> (32 - SEG_BITS)) as usize
    }

    /// Adds a live entry to the index.
    pub fn hash(&mut self, idx: u32) {
        let Some(c) = self.get(idx) else { return };
        if c.flags & F_HASHED != 0 {
            return;
        }
        let h = self.entry_hash(c);
        self.segs[Self::seg_of(h)].insert(h, idx);
        if let Some(c) = self.get_mut(idx) {
            c.flags |= F_HASHED;
        }
    }

    /// Removes an entry from the index (backward-shift deletion).
    pub fn unhash(&mut self, idx: u32) {
        let Some(c) = self.get(idx) else { return };
        if c.flags & F_HASHED == 0 {
            return;
        }
        let h = self.entry_hash(c);
        self.segs[Self::seg_of(h)].remove(h, idx);
        if let Some(c) = self.get_mut(idx) {
            c.flags &= !F_HASHED;
        }
    }

    /// Walks the index entries whose key is (proto, caddr, cport) and returns
    /// the first for which `pred` holds.
    #[inline]
    pub fn find(
        &self,
        proto: u8,
        v6: bool,
        caddr: &[u8; 16],
        cport: u16,
        mut pred: impl FnMut(&Conn) -> bool,
    ) -> Option<u32> {
        self.find_by(proto, v6, caddr, cport, |_, c| pred(c))
    }

    /// [`ConnTable::find`] whose predicate also sees the slot index.
    pub fn find_by(
        &self,
        proto: u8,
        v6: bool,
        caddr: &[u8; 16],
        cport: u16,
        mut pred: impl FnMut(u32, &Conn) -> bool,
    ) -> Option<u32> {
        let h = self.key_hash(proto, v6, caddr, cport);
        let seg = &self.segs[Self::seg_of(h)];
        let mask = seg.slots.len() - 1;
        let mut p = h as usize & mask;
        loop {
            let s = seg.slots[p];
            if s == EMPTY_SLOT {
                return None;
            }
            if (s >> 32) as u32 == h {
                let idx = s as u32;
                if let Some(c) = self.get(idx) {
                    if c.proto == proto
                        && c.cport == cport
                        && c.caddr == *caddr
                        && c.v6() == v6
                        && pred(idx, c)
                    {
                        return Some(idx);
                    }
                }
            }
            p = (p + 1) & mask;
        }
    }

    // ------------------------------------------------------------ wheel

    /// Queues `idx` for tick `tick` (seconds).
    pub fn arm(&mut self, idx: u32, tick: u64) {
        let t = tick.min(u32::MAX as u64) as u32;
        self.wheel[t as usize % WHEEL_SIZE].push(idx);
        if let Some(c) = self.get_mut(idx) {
            c.armed = t;
        }
    }

    /// Takes the bucket of `tick` for processing.
    pub fn take_bucket(&mut self, tick: u64) -> Vec<u32> {
        std::mem::take(&mut self.wheel[tick as usize % WHEEL_SIZE])
    }

    /// Queues the unprocessed rest of a bucket taken with
    /// [`Self::take_bucket`] again (the caller's budget ran out), ahead of
    /// entries queued into it meanwhile.
    ///
    /// A bucket that was processed to the end is simply dropped by the
    /// caller: its storage is freed, not put back. Every bucket fills once
    /// per lap (4096 s) and is empty after it ran, so keeping its storage
    /// made the wheel hold 4096 times the busiest second's arms for good
    /// (issue 27: about 15 bytes per connection ever made, until a whole lap
    /// had passed; hundreds of MB at high connection rates). Now the wheel
    /// holds only what is queued: entries due within the longest timeout.
    pub fn requeue(&mut self, tick: u64, mut rest: Vec<u32>) {
        let slot = &mut self.wheel[tick as usize % WHEEL_SIZE];
        rest.append(slot);
        *slot = rest;
    }

    /// Iterates live slots.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &Conn)> {
        self.chunks
            .iter()
            .enumerate()
            .flat_map(|(ci, ch)| {
                ch.iter()
                    .enumerate()
                    .map(move |(i, c)| (((ci << CHUNK_BITS) + i) as u32, c))
            })
            .take(self.top as usize)
            .filter(|(_, c)| c.live())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_is_104_bytes() {
        assert_eq!(std::mem::size_of::<Conn>(), 104);
    }

    fn mk(port: u16) -> Conn {
        let mut c = Conn::EMPTY;
        c.proto = 6;
        c.caddr[..4].copy_from_slice(&[10, 0, 0, 1]);
        c.cport = port;
        c.vport = 80;
        c
    }

    #[test]
    fn insert_find_remove_many() {
        let mut t = ConnTable::new(1);
        let mut ids = Vec::new();
        for p in 0..20000u16 {
            let i = t.alloc(mk(p)).unwrap();
            t.hash(i);
            ids.push(i);
        }
        let a = mk(0).caddr;
        for p in (0..20000u16).step_by(7) {
            assert_eq!(t.find(6, false, &a, p, |_| true), Some(ids[p as usize]));
        }
        for p in (0..20000u16).step_by(2) {
            t.unhash(ids[p as usize]);
            t.free(ids[p as usize]);
        }
        for p in 0..20000u16 {
            let f = t.find(6, false, &a, p, |_| true);
            if p % 2 == 0 {
                assert_eq!(f, None);
            } else {
                assert_eq!(f, Some(ids[p as usize]));
            }
        }
        assert_eq!(t.len(), 10000);
        assert_eq!(t.iter().count(), 10000);
        // slots are reused with a new generation
        let i = t.alloc(mk(1)).unwrap();
        assert!(t.get(i).unwrap().gen >= 1);
    }
}
