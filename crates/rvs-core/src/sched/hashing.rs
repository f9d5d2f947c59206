//! Hashing schedulers: dh (ip_vs_dh.c), sh (ip_vs_sh.c) and mh (ip_vs_mh.c).
//! Their table layouts are externally observable, so they follow the kernel
//! bit for bit (x86_64 behaviour).

use std::net::IpAddr;

use super::SchedCtx;
use crate::dest::{Dest, DestId, DestTable};
use crate::hash::{addr_fold, hsiphash_u32};
use crate::types::{SVC_F_SCHED1, SVC_F_SCHED2};

const TAB_SIZE: usize = 256;
const GOLDEN: u32 = 2_654_435_761;

/// dh/sh/mh: weight <= 0 or OVL -> unusable.
#[inline]
fn is_unavailable(d: &Dest) -> bool {
    d.weight() <= 0 || d.ovl()
}

/// Destination-hashing table: 256 buckets filled cyclically in list order.
#[derive(Clone, Debug)]
pub(crate) struct DhTable {
    buckets: Vec<Option<DestId>>,
}

impl DhTable {
    pub fn new() -> Self {
        DhTable {
            buckets: vec![None; TAB_SIZE],
        }
    }

    /// ip_vs_dh_reassign: bucket i = list[i mod n] (weights unused).
    pub fn reassign(&mut self, list: &[DestId]) {
        for (i, b) in self.buckets.iter_mut().enumerate() {
            *b = if list.is_empty() {
                None
            } else {
                Some(list[i % list.len()])
            };
        }
    }

    /// Bucket index for an address: (ntohl(fold) * 2654435761) & 255.
    pub fn hashkey(addr: IpAddr) -> usize {
        (addr_fold(addr).wrapping_mul(GOLDEN) & 0xff) as usize
    }

    pub fn schedule(&self, ctx: &SchedCtx<'_>) -> Option<DestId> {
        let id = self.buckets[Self::hashkey(ctx.daddr)]?;
        let d = ctx.dests.get(id)?;
        if !d.available || d.weight() <= 0 || d.ovl() {
            return None;
        }
        Some(id)
    }

    #[cfg(test)]
    pub fn buckets(&self) -> &[Option<DestId>] {
        &self.buckets
    }
}

/// Source-hashing table: each dest fills `weight` consecutive buckets.
#[derive(Clone, Debug)]
pub(crate) struct ShTable {
    buckets: Vec<Option<DestId>>,
}

/// Port used by sh/mh when the `*-port` flag (SCHED2) is set.
fn hash_port(ctx: &SchedCtx<'_>) -> u16 {
    if ctx.svc_flags & SVC_F_SCHED2 != 0 {
        ctx.sport
    } else {
        0
    }
}

impl ShTable {
    pub fn new() -> Self {
        ShTable {
            buckets: vec![None; TAB_SIZE],
        }
    }

    /// ip_vs_sh_reassign.
    pub fn reassign(&mut self, list: &[DestId], dests: &DestTable) {
        let mut p = 0usize;
        let mut d_count = 0i64;
        for b in self.buckets.iter_mut() {
            if list.is_empty() {
                *b = None;
                continue;
            }
            let id = list[p % list.len()];
            *b = Some(id);
            d_count += 1;
            let w = dests.get(id).map_or(0, |d| d.weight()) as i64;
            if d_count >= w {
                p = (p + 1) % list.len();
                d_count = 0;
            }
        }
    }

    /// (offset + (port + ntohl(fold)) * 2654435761) & 255.
    pub fn hashkey(addr: IpAddr, port: u16, offset: u32) -> usize {
        (offset.wrapping_add(
            (port as u32)
                .wrapping_add(addr_fold(addr))
                .wrapping_mul(GOLDEN),
        ) & 0xff) as usize
    }

    pub fn schedule(&self, ctx: &SchedCtx<'_>) -> Option<DestId> {
        let port = hash_port(ctx);
        let addr = ctx.saddr;
        let ihash = Self::hashkey(addr, port, 0);
        let id = self.buckets[ihash]?;
        let d = ctx.dests.get(id)?;
        if !is_unavailable(d) {
            return Some(id);
        }
        if ctx.svc_flags & SVC_F_SCHED1 == 0 {
            return None;
        }
        for offset in 0..TAB_SIZE {
            let roffset = (offset + ihash) % TAB_SIZE;
            let h = Self::hashkey(addr, port, roffset as u32);
            let id = self.buckets[h]?;
            let d = ctx.dests.get(id)?;
            if !is_unavailable(d) {
                return Some(id);
            }
        }
        None
    }

    #[cfg(test)]
    pub fn buckets(&self) -> &[Option<DestId>] {
        &self.buckets
    }
}

/// Default Maglev table size (CONFIG_IP_VS_MH_TAB_INDEX = 12, i.e. `primes[4]`).
pub const MH_TAB_SIZE: usize = 4093;
const MH_TAB_BITS: u32 = 12 / 2;
const MH_K1: u64 = 2_654_435_761;
const MH_K2: u64 = 2_654_446_892;

/// ip_vs_mh_hashkey: hsiphash(offset + port + ntohl(fold)).
#[inline]
pub(crate) fn mh_hashkey(addr: IpAddr, port: u16, key: u64, offset: u32) -> u32 {
    let v = offset
        .wrapping_add(port as u32)
        .wrapping_add(addr_fold(addr));
    hsiphash_u32(v, key, key)
}

/// Empty slot marker in a [`maglev_build`] table.
pub const MAGLEV_NONE: u32 = u32::MAX;

/// Builds a Maglev lookup table of size `m` (a prime) exactly as
/// ip_vs_mh_permutate + ip_vs_mh_populate do. `members` are
/// (addr, port, last_weight) in list order; the result holds indices into
/// `members` ([`MAGLEV_NONE`] where no member has a weight). Returns None if
/// `members.len() > m` (the kernel's -EINVAL) or `m < 2`.
pub fn maglev_build(m: usize, members: &[(IpAddr, u16, i32)]) -> Option<Vec<u32>> {
    if members.len() > m || m < 2 || m > u32::MAX as usize / 2 {
        return None;
    }
    let mut table: Vec<u32> = vec![MAGLEV_NONE; m];
    // gcd of positive last_weights
    let mut g: i64 = 0;
    let mut maxw: i64 = 0;
    for &(_, _, w) in members {
        let w = w as i64;
        if w > 0 {
            g = if g > 0 { super::gcd(w, g) } else { w };
        }
        if w > maxw {
            maxw = w;
        }
    }
    if g < 1 {
        return Some(table);
    }
    let mw = maxw / g;
    let fls = 64 - (mw as u64).leading_zeros() as i64;
    let rshift = (fls - MH_TAB_BITS as i64).max(0);
    struct Setup {
        perm: u32,
        skip: u32,
        turns: i64,
    }
    let mut ds: Vec<Setup> = members
        .iter()
        .map(|&(addr, port, lw)| {
            let offset = mh_hashkey(addr, port, MH_K1, 0) % m as u32;
            let skip = mh_hashkey(addr, port, MH_K2, 0) % (m as u32 - 1) + 1;
            let t = ((lw as i64) / g) >> rshift;
            let turns = if t != 0 { t } else { (lw != 0) as i64 };
            Setup {
                perm: offset,
                skip,
                turns,
            }
        })
        .collect();
    // occupancy bitmap (8 KiB for M = 65537: stays in L1 while probing)
    let mut used = vec![0u64; m.div_ceil(64)];
    let mut n = 0usize;
    let mut dt_count = 0i64;
    let m32 = m as u32;
    let nd = ds.len();
    'outer: loop {
        let mut i = 0usize;
        let mut progressed = false;
        while i < nd {
            let s = &mut ds[i];
            if s.turns < 1 {
                i += 1;
                continue;
            }
            progressed = true;
            let (mut perm, skip) = (s.perm, s.skip);
            while used[(perm >> 6) as usize] & (1u64 << (perm & 63)) != 0 {
                let p = perm + skip;
                perm = if p >= m32 { p - m32 } else { p };
            }
            s.perm = perm;
            used[(perm >> 6) as usize] |= 1u64 << (perm & 63);
            table[perm as usize] = i as u32;
            n += 1;
            if n == m {
                break 'outer;
            }
            dt_count += 1;
            if dt_count >= s.turns {
                dt_count = 0;
                i += 1;
            }
        }
        if !progressed {
            break;
        }
    }
    Some(table)
}

/// Maglev table of a service (M = 4093).
#[derive(Clone, Debug)]
pub(crate) struct MhTable {
    lookup: Vec<Option<DestId>>,
}

impl MhTable {
    pub fn new() -> Self {
        MhTable {
            lookup: vec![None; MH_TAB_SIZE],
        }
    }

    /// ip_vs_mh_reassign (any add/del/edit). Fails like the kernel
    /// (-EINVAL, table left as it was) if there are more dests than slots.
    pub fn reassign(&mut self, list: &[DestId], dests: &DestTable) {
        let members: Vec<(IpAddr, u16, i32)> = list
            .iter()
            .map(|&id| {
                dests
                    .get(id)
                    .map_or((IpAddr::from([0u8, 0, 0, 0]), 0, 0), |d| {
                        (d.conf.addr, d.conf.port, d.last_weight)
                    })
            })
            .collect();
        if let Some(t) = maglev_build(MH_TAB_SIZE, &members) {
            self.lookup = t
                .into_iter()
                .map(|i| list.get(i as usize).copied())
                .collect();
        }
    }

    pub fn schedule(&self, ctx: &SchedCtx<'_>) -> Option<DestId> {
        let port = hash_port(ctx);
        let addr = ctx.saddr;
        let m = MH_TAB_SIZE as u32;
        let ihash = (mh_hashkey(addr, port, MH_K1, 0) % m) as usize;
        let id = self.lookup[ihash]?;
        let d = ctx.dests.get(id)?;
        if !is_unavailable(d) {
            return Some(id);
        }
        if ctx.svc_flags & SVC_F_SCHED1 == 0 {
            return None;
        }
        for offset in 0..MH_TAB_SIZE {
            let roffset = ((offset + ihash) % MH_TAB_SIZE) as u32;
            let h = (mh_hashkey(addr, port, MH_K1, roffset) % m) as usize;
            let id = self.lookup[h]?;
            let d = ctx.dests.get(id)?;
            if !is_unavailable(d) {
                return Some(id);
            }
        }
        None
    }

    #[cfg(test)]
    pub fn lookup(&self) -> &[Option<DestId>] {
        &self.lookup
    }
}
