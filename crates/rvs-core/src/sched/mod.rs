//! The IPVS schedulers, each reproducing its kernel module's selection rule,
//! tie-breaks and the state it carries across destination changes.
//!
//! Every scheduler sees the service's destination list in KERNEL LIST ORDER
//! (newest first, `list_add_rcu` at the head). "OVL" below is the dest's
//! OVERLOAD flag, which here also covers destinations the caller excluded for
//! this one decision.

mod hashing;
mod lblc;

use std::net::IpAddr;

use crate::dest::{DestId, DestTable};
use crate::hash::Rng;
use crate::time::Time;
use crate::types::Protocol;

pub use hashing::{maglev_build, MAGLEV_NONE, MH_TAB_SIZE};
pub(crate) use hashing::{DhTable, MhTable, ShTable};
pub(crate) use lblc::{Lblc, Lblcr};

/// Names of the schedulers this crate implements (ipvsadm's `-s` values).
pub const SCHEDULER_NAMES: [&str; 14] = [
    "rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh", "twos",
];

/// Everything a scheduler may look at for one decision.
pub(crate) struct SchedCtx<'a> {
    pub dests: &'a DestTable,
    /// The service's destinations, newest first.
    pub list: &'a [DestId],
    #[allow(dead_code)]
    pub proto: Protocol,
    pub saddr: IpAddr,
    pub sport: u16,
    pub daddr: IpAddr,
    /// Service flags (SCHED1/SCHED2 for sh/mh).
    pub svc_flags: u32,
    pub now: Time,
    #[allow(dead_code)]
    pub lblc_expiration: u32,
    pub lblcr_expiration: u32,
}

impl SchedCtx<'_> {
    #[inline]
    fn d(&self, id: DestId) -> Option<&crate::dest::Dest> {
        self.dests.get(id)
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Wrr {
    /// Cursor: None = list head sentinel.
    cl: Option<DestId>,
    cw: i64,
    mw: i64,
    di: i64,
}

#[derive(Clone, Debug)]
pub(crate) enum Scheduler {
    /// The kernel's "none": no scheduler bound, every schedule fails.
    None,
    Rr {
        cursor: Option<DestId>,
    },
    Wrr(Wrr),
    Lc,
    Wlc,
    Sed,
    Nq,
    Fo,
    Ovf,
    Twos(Rng),
    Lblc(Box<Lblc>),
    Lblcr(Box<Lblcr>),
    Dh(Box<DhTable>),
    Sh(Box<ShTable>),
    Mh(Box<MhTable>),
}

fn gcd(mut a: i64, mut b: i64) -> i64 {
    while b != 0 {
        let t = a % b;
        a = b;
        b = t;
    }
    a
}

impl Scheduler {
    /// True if `name` is a known scheduler (or "none").
    pub fn exists(name: &str) -> bool {
        name == "none" || SCHEDULER_NAMES.contains(&name)
    }

    /// init_service: bind a scheduler to a service whose destinations exist.
    pub fn init(name: &str, list: &[DestId], dests: &DestTable, seed: u64) -> Option<Scheduler> {
        let s = match name {
            "none" => Scheduler::None,
            "rr" => Scheduler::Rr { cursor: None },
            "wrr" => {
                let (di, mw) = wrr_di_mw(list, dests);
                Scheduler::Wrr(Wrr {
                    cl: None,
                    cw: mw,
                    mw,
                    di,
                })
            }
            "lc" => Scheduler::Lc,
            "wlc" => Scheduler::Wlc,
            "sed" => Scheduler::Sed,
            "nq" => Scheduler::Nq,
            "fo" => Scheduler::Fo,
            "ovf" => Scheduler::Ovf,
            "twos" => Scheduler::Twos(Rng::new(seed)),
            "lblc" => Scheduler::Lblc(Box::default()),
            "lblcr" => Scheduler::Lblcr(Box::default()),
            "dh" => {
                let mut t = Box::new(DhTable::new());
                t.reassign(list);
                Scheduler::Dh(t)
            }
            "sh" => {
                let mut t = Box::new(ShTable::new());
                t.reassign(list, dests);
                Scheduler::Sh(t)
            }
            "mh" => {
                let mut t = Box::new(MhTable::new());
                t.reassign(list, dests);
                Scheduler::Mh(t)
            }
            _ => return None,
        };
        Some(s)
    }

    /// Kernel name of the scheduler.
    pub fn name(&self) -> &'static str {
        match self {
            Scheduler::None => "none",
            Scheduler::Rr { .. } => "rr",
            Scheduler::Wrr(_) => "wrr",
            Scheduler::Lc => "lc",
            Scheduler::Wlc => "wlc",
            Scheduler::Sed => "sed",
            Scheduler::Nq => "nq",
            Scheduler::Fo => "fo",
            Scheduler::Ovf => "ovf",
            Scheduler::Twos(_) => "twos",
            Scheduler::Lblc(_) => "lblc",
            Scheduler::Lblcr(_) => "lblcr",
            Scheduler::Dh(_) => "dh",
            Scheduler::Sh(_) => "sh",
            Scheduler::Mh(_) => "mh",
        }
    }

    /// add_dest hook; `list` already contains the new dest at its head.
    pub fn add_dest(&mut self, list: &[DestId], dests: &DestTable) {
        self.dest_changed(list, dests);
    }

    /// upd_dest hook (any `-e` edit).
    pub fn upd_dest(&mut self, list: &[DestId], dests: &DestTable) {
        self.dest_changed(list, dests);
    }

    /// del_dest hook; `list` no longer contains `removed`, which was at
    /// `old_pos` before removal.
    pub fn del_dest(
        &mut self,
        list: &[DestId],
        dests: &DestTable,
        removed: DestId,
        old_pos: usize,
    ) {
        if let Scheduler::Rr { cursor } = self {
            if *cursor == Some(removed) {
                // cursor moves to the removed dest's predecessor (head if first)
                *cursor = if old_pos == 0 {
                    None
                } else {
                    list.get(old_pos - 1).copied()
                };
            }
            return;
        }
        self.dest_changed(list, dests);
    }

    fn dest_changed(&mut self, list: &[DestId], dests: &DestTable) {
        match self {
            Scheduler::Wrr(w) => {
                // ip_vs_wrr_dest_changed
                w.cl = None;
                let (di, mw) = wrr_di_mw(list, dests);
                w.di = di;
                w.mw = mw;
                if w.cw > w.mw || w.cw == 0 {
                    w.cw = w.mw;
                } else if w.di > 1 {
                    w.cw = (w.cw / w.di) * w.di + 1;
                }
            }
            Scheduler::Dh(t) => t.reassign(list),
            Scheduler::Sh(t) => t.reassign(list, dests),
            Scheduler::Mh(t) => t.reassign(list, dests),
            _ => {}
        }
    }

    /// Periodic maintenance (lblc/lblcr garbage collection, every 60 s).
    pub fn gc(&mut self, now: Time, lblc_exp: u32, lblcr_exp: u32) {
        match self {
            Scheduler::Lblc(t) => t.check_expire(now, lblc_exp),
            Scheduler::Lblcr(t) => t.check_expire(now, lblcr_exp),
            _ => {}
        }
    }

    /// schedule(): pick a destination for a new connection / template.
    pub fn schedule(&mut self, ctx: &SchedCtx<'_>) -> Option<DestId> {
        match self {
            Scheduler::None => None,
            Scheduler::Rr { cursor } => rr(cursor, ctx),
            Scheduler::Wrr(w) => wrr(w, ctx),
            Scheduler::Lc => lc(ctx),
            Scheduler::Wlc => wlc(ctx),
            Scheduler::Sed => sed(ctx),
            Scheduler::Nq => nq(ctx),
            Scheduler::Fo => fo(ctx),
            Scheduler::Ovf => ovf(ctx),
            Scheduler::Twos(rng) => twos(rng, ctx),
            Scheduler::Lblc(t) => t.schedule(ctx),
            Scheduler::Lblcr(t) => t.schedule(ctx),
            Scheduler::Dh(t) => t.schedule(ctx),
            Scheduler::Sh(t) => t.schedule(ctx),
            Scheduler::Mh(t) => t.schedule(ctx),
        }
    }
}

/// (di, mw) as ip_vs_wrr computes them.
fn wrr_di_mw(list: &[DestId], dests: &DestTable) -> (i64, i64) {
    let mut g = 0i64;
    let mut max = 0i64;
    for d in list.iter().filter_map(|&id| dests.get(id)) {
        let w = d.weight() as i64;
        if w > 0 {
            g = if g > 0 { gcd(w, g) } else { w };
        }
        if w > max {
            max = w;
        }
    }
    let di = if g > 0 { g } else { 1 };
    (di, max - (di - 1))
}

/// ip_vs_rr_schedule.
fn rr(cursor: &mut Option<DestId>, ctx: &SchedCtx<'_>) -> Option<DestId> {
    let n = ctx.list.len();
    let start = match *cursor {
        None => 0,
        Some(c) => match ctx.list.iter().position(|&x| x == c) {
            Some(p) => p + 1,
            None => 0,
        },
    };
    // From the head: one pass over the list. Otherwise: after the cursor to
    // the end, then from the first element up to and including the cursor.
    let total = if cursor.is_none() { n } else { n.max(1) };
    for k in 0..total {
        let i = (start + k) % n.max(1);
        let id = *ctx.list.get(i)?;
        if let Some(d) = ctx.d(id) {
            if !d.ovl() && d.weight() > 0 {
                *cursor = Some(id);
                return Some(id);
            }
        }
    }
    None
}

/// ip_vs_wrr_schedule.
fn wrr(w: &mut Wrr, ctx: &SchedCtx<'_>) -> Option<DestId> {
    if w.mw == 0 {
        return None;
    }
    let list = ctx.list;
    let last = w.cl;
    let mut start = match w.cl {
        None => 0,
        Some(c) => list.iter().position(|&x| x == c).map_or(0, |p| p + 1),
    };
    let mut stop: Option<DestId> = None;
    let mut last_pass = false;
    let mut restarted = false;
    // The kernel loop terminates after at most ~mw/di + 2 laps (every lap
    // lowers cw by di, and a second restart ends the search); the bound is
    // only a guard and is never reached.
    let max_laps = 2 * (w.mw / w.di.max(1)).max(0) as usize + 4;
    for _ in 0..max_laps {
        for &id in &list[start.min(list.len())..] {
            if let Some(d) = ctx.d(id) {
                if !d.ovl() && (d.weight() as i64) >= w.cw {
                    w.cl = Some(id);
                    return Some(id);
                }
            }
            if stop == Some(id) {
                return None;
            }
        }
        start = 0;
        w.cw -= w.di;
        if w.cw <= 0 {
            w.cw = w.mw;
            if last_pass || last.is_none() {
                return None;
            }
            restarted = true;
        }
        last_pass = w.cw <= w.di;
        if last_pass && restarted && last.is_some() {
            stop = last;
        }
    }
    None
}

/// ip_vs_lc_schedule.
fn lc(ctx: &SchedCtx<'_>) -> Option<DestId> {
    let mut least: Option<(DestId, i64)> = None;
    for &id in ctx.list {
        let Some(d) = ctx.d(id) else { continue };
        if d.ovl() || d.weight() == 0 {
            continue;
        }
        let doh = d.overhead();
        if least.is_none_or(|(_, loh)| doh < loh) {
            least = Some((id, doh));
        }
    }
    least.map(|(id, _)| id)
}

/// Shared two-stage weighted-least rule (wlc, sed, lblc/lblcr fallback).
fn weighted_least(ctx: &SchedCtx<'_>, oh: impl Fn(&crate::dest::Dest) -> i64) -> Option<DestId> {
    let mut it = ctx.list.iter();
    let mut least = None;
    for &id in it.by_ref() {
        let Some(d) = ctx.d(id) else { continue };
        if !d.ovl() && d.weight() > 0 {
            least = Some((id, oh(d), d.weight() as i64));
            break;
        }
    }
    let (mut lid, mut loh, mut lw) = least?;
    for &id in it {
        let Some(d) = ctx.d(id) else { continue };
        if d.ovl() {
            continue;
        }
        let doh = oh(d);
        let dw = d.weight() as i64;
        if loh * dw > doh * lw {
            lid = id;
            loh = doh;
            lw = dw;
        }
    }
    Some(lid)
}

/// ip_vs_wlc_schedule (also __ip_vs_lblc_schedule / __ip_vs_lblcr_schedule).
pub(crate) fn wlc(ctx: &SchedCtx<'_>) -> Option<DestId> {
    weighted_least(ctx, |d| d.overhead())
}

/// ip_vs_sed_schedule: overhead = activeconns + 1.
fn sed(ctx: &SchedCtx<'_>) -> Option<DestId> {
    weighted_least(ctx, |d| d.activeconns as i64 + 1)
}

/// ip_vs_nq_schedule.
fn nq(ctx: &SchedCtx<'_>) -> Option<DestId> {
    let mut least: Option<(DestId, i64, i64)> = None;
    for &id in ctx.list {
        let Some(d) = ctx.d(id) else { continue };
        if d.ovl() || d.weight() == 0 {
            continue;
        }
        let doh = d.activeconns as i64 + 1;
        if d.activeconns == 0 {
            return Some(id);
        }
        let dw = d.weight() as i64;
        match least {
            Some((_, loh, lw)) if loh * dw <= doh * lw => {}
            _ => least = Some((id, doh, dw)),
        }
    }
    least.map(|(id, _, _)| id)
}

/// ip_vs_fo_schedule.
fn fo(ctx: &SchedCtx<'_>) -> Option<DestId> {
    let mut best: Option<DestId> = None;
    let mut hw = 0i32;
    for &id in ctx.list {
        let Some(d) = ctx.d(id) else { continue };
        if !d.ovl() && d.weight() > hw {
            best = Some(id);
            hw = d.weight();
        }
    }
    best
}

/// ip_vs_ovf_schedule.
fn ovf(ctx: &SchedCtx<'_>) -> Option<DestId> {
    let mut h: Option<(DestId, i32)> = None;
    for &id in ctx.list {
        let Some(d) = ctx.d(id) else { continue };
        let w = d.weight();
        if d.ovl() || d.activeconns as i64 > w as i64 || w == 0 {
            continue;
        }
        if h.is_none_or(|(_, hw)| w > hw) {
            h = Some((id, w));
        }
    }
    h.map(|(id, _)| id)
}

/// ip_vs_twos_schedule.
fn twos(rng: &mut Rng, ctx: &SchedCtx<'_>) -> Option<DestId> {
    let mut total: i64 = 0;
    let mut choice1: Option<DestId> = None;
    for &id in ctx.list {
        let Some(d) = ctx.d(id) else { continue };
        if !d.ovl() && d.weight() > 0 {
            total += d.weight() as i64;
            choice1 = Some(id);
        }
    }
    choice1?;
    total += 1;
    let mut r1 = (rng.next_u32() as i64) % total;
    let mut r2 = (rng.next_u32() as i64) % total;
    let (mut c1, mut w1, mut oh1) = (choice1, -1i64, 0i64);
    let (mut c2, mut w2, mut oh2) = (None, -1i64, 0i64);
    for &id in ctx.list {
        let Some(d) = ctx.d(id) else { continue };
        if d.ovl() {
            continue;
        }
        let w = d.weight() as i64;
        if w <= 0 {
            continue;
        }
        r1 -= w;
        r2 -= w;
        if r1 <= 0 && w1 == -1 {
            c1 = Some(id);
            w1 = w;
            oh1 = d.overhead();
        }
        if r2 <= 0 && w2 == -1 {
            c2 = Some(id);
            w2 = w;
            oh2 = d.overhead();
        }
        if w1 != -1 && w2 != -1 {
            break;
        }
    }
    if c2.is_some() && w2 * oh1 > w1 * oh2 {
        c1 = c2;
    }
    c1
}

#[cfg(test)]
mod tests;
