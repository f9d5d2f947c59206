//! lblc (ip_vs_lblc.c) and lblcr (ip_vs_lblcr.c): locality-based
//! least-connection, keyed on the packet's DESTINATION address.

use std::net::IpAddr;

use super::{wlc, SchedCtx};
use crate::dest::{Dest, DestId, DestTable};
use crate::hash::FxHashMap;
use crate::time::Time;

/// CONFIG_IP_VS_LBLC_TAB_BITS = 10 -> 1024 buckets, max_size = 16 * 1024.
const MAX_SIZE: usize = 1024 * 16;
/// ENTRY_TIMEOUT = 6 minutes (ms).
const ENTRY_TIMEOUT_MS: u64 = 6 * 60 * 1000;
/// Full expiration check every 30th tick of the 60 s timer.
const COUNT_FOR_FULL_EXPIRATION: u32 = 30;

/// Weak reference to a dest (slot + incarnation serial).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct WeakDest {
    pub(super) id: DestId,
    serial: u64,
}

impl WeakDest {
    fn new(id: DestId, dests: &DestTable) -> Self {
        WeakDest {
            id,
            serial: dests.get(id).map_or(0, |d| d.serial),
        }
    }
    fn get<'a>(&self, dests: &'a DestTable) -> Option<&'a Dest> {
        dests.get_serial(self.id, self.serial)
    }
}

/// lblc/lblcr's own overload heuristic: active > weight and some dest of the
/// service has active * 2 < weight.
fn is_overloaded(d: &Dest, ctx: &SchedCtx<'_>) -> bool {
    if (d.activeconns as i64) > d.weight() as i64 {
        for &id in ctx.list {
            if let Some(m) = ctx.dests.get(id) {
                if (m.activeconns as i64) * 2 < m.weight() as i64 {
                    return true;
                }
            }
        }
    }
    false
}

#[derive(Clone, Debug)]
pub(super) struct LblcEntry {
    dest: WeakDest,
    lastuse: Time,
}

#[derive(Clone, Debug)]
pub(crate) struct Lblc {
    pub(super) tab: FxHashMap<IpAddr, LblcEntry>,
    counter: u32,
}

impl Default for Lblc {
    fn default() -> Self {
        Lblc {
            tab: FxHashMap::default(),
            counter: 1,
        }
    }
}

fn check_expire_common<E>(
    tab: &mut FxHashMap<IpAddr, E>,
    counter: &mut u32,
    now: Time,
    expiration_s: u32,
    lastuse: impl Fn(&E) -> Time,
) {
    if (*counter).is_multiple_of(COUNT_FOR_FULL_EXPIRATION) {
        let exp = expiration_s as u64 * 1000;
        tab.retain(|_, e| now.as_millis() < lastuse(e).as_millis().saturating_add(exp));
        *counter = 1;
        return;
    }
    if tab.len() <= MAX_SIZE {
        *counter = counter.wrapping_add(1);
        return;
    }
    let mut goal = ((tab.len() - MAX_SIZE) * 4 / 3).min(MAX_SIZE / 2);
    tab.retain(|_, e| {
        if goal == 0 || now.as_millis() < lastuse(e).as_millis().saturating_add(ENTRY_TIMEOUT_MS) {
            true
        } else {
            goal -= 1;
            false
        }
    });
}

impl Lblc {
    pub fn schedule(&mut self, ctx: &SchedCtx<'_>) -> Option<DestId> {
        if let Some(en) = self.tab.get_mut(&ctx.daddr) {
            en.lastuse = ctx.now;
            if let Some(d) = en.dest.get(ctx.dests) {
                if d.available && !d.excluded && d.weight() > 0 && !is_overloaded(d, ctx) {
                    return Some(en.dest.id);
                }
            }
        }
        let id = wlc(ctx)?;
        self.tab.insert(
            ctx.daddr,
            LblcEntry {
                dest: WeakDest::new(id, ctx.dests),
                lastuse: ctx.now,
            },
        );
        Some(id)
    }

    pub fn check_expire(&mut self, now: Time, expiration_s: u32) {
        check_expire_common(&mut self.tab, &mut self.counter, now, expiration_s, |e| {
            e.lastuse
        });
    }
}

#[derive(Clone, Debug)]
pub(super) struct LblcrEntry {
    /// Newest element first.
    pub(super) set: Vec<WeakDest>,
    lastmod: Time,
    lastuse: Time,
}

#[derive(Clone, Debug)]
pub(crate) struct Lblcr {
    pub(super) tab: FxHashMap<IpAddr, LblcrEntry>,
    counter: u32,
}

impl Default for Lblcr {
    fn default() -> Self {
        Lblcr {
            tab: FxHashMap::default(),
            counter: 1,
        }
    }
}

/// ip_vs_dest_set_min.
fn set_min(set: &[WeakDest], dests: &DestTable) -> Option<DestId> {
    let mut it = set.iter();
    let mut least = None;
    for e in it.by_ref() {
        let Some(d) = e.get(dests) else { continue };
        if d.ovl() {
            continue;
        }
        if d.weight() > 0 && d.available {
            least = Some((e.id, d.overhead(), d.weight() as i64));
            break;
        }
    }
    let (mut lid, mut loh, mut lw) = least?;
    for e in it {
        let Some(d) = e.get(dests) else { continue };
        if d.ovl() {
            continue;
        }
        let doh = d.overhead();
        let dw = d.weight() as i64;
        if loh * dw > doh * lw && d.available {
            lid = e.id;
            loh = doh;
            lw = dw;
        }
    }
    Some(lid)
}

/// ip_vs_dest_set_max (index into the set).
fn set_max(set: &[WeakDest], dests: &DestTable) -> Option<usize> {
    let mut most: Option<(usize, i64, i64)> = None;
    for (i, e) in set.iter().enumerate() {
        let Some(d) = e.get(dests) else { continue };
        let dw = d.weight() as i64;
        match most {
            None => {
                if dw > 0 {
                    most = Some((i, d.overhead(), dw));
                }
            }
            Some((_, moh, mw)) => {
                let doh = d.overhead();
                if moh * dw < doh * mw && dw > 0 {
                    most = Some((i, doh, dw));
                }
            }
        }
    }
    most.map(|(i, _, _)| i)
}

impl Lblcr {
    pub fn schedule(&mut self, ctx: &SchedCtx<'_>) -> Option<DestId> {
        let exp_ms = ctx.lblcr_expiration as u64 * 1000;
        if let Some(en) = self.tab.get_mut(&ctx.daddr) {
            en.lastuse = ctx.now;
            let d = set_min(&en.set, ctx.dests);
            if en.set.len() > 1
                && ctx.now.as_millis() > en.lastmod.as_millis().saturating_add(exp_ms)
            {
                if let Some(i) = set_max(&en.set, ctx.dests) {
                    en.set.remove(i);
                    en.lastmod = ctx.now;
                }
            }
            if let Some(id) = d {
                if let Some(dd) = ctx.dests.get(id) {
                    if !is_overloaded(dd, ctx) {
                        return Some(id);
                    }
                }
            }
            let id = wlc(ctx)?;
            if !en
                .set
                .iter()
                .any(|e| e.id == id && e.get(ctx.dests).is_some())
            {
                en.set.insert(0, WeakDest::new(id, ctx.dests));
                en.lastmod = ctx.now;
            }
            return Some(id);
        }
        let id = wlc(ctx)?;
        self.tab.insert(
            ctx.daddr,
            LblcrEntry {
                set: vec![WeakDest::new(id, ctx.dests)],
                lastmod: ctx.now,
                lastuse: ctx.now,
            },
        );
        Some(id)
    }

    pub fn check_expire(&mut self, now: Time, expiration_s: u32) {
        check_expire_common(&mut self.tab, &mut self.counter, now, expiration_s, |e| {
            e.lastuse
        });
    }
}
