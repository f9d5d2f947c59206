//! Real servers (struct ip_vs_dest) and the slab that owns them.

use crate::est::Estimator;
use crate::time::Time;
use crate::types::{DestConf, Stats, SvcKey};

/// Index of a destination in the [`DestTable`].
pub(crate) type DestId = u32;

#[derive(Clone, Debug)]
pub(crate) struct Dest {
    pub conf: DestConf,
    /// Latest non-zero weight (the kernel's last_weight, used by mh).
    pub last_weight: i32,
    /// Unique id of this incarnation (never reused), for weak references
    /// (lblc/lblcr entries).
    pub serial: u64,
    /// Owning service slot while linked (or while in the trash and the
    /// service still exists).
    pub svc: Option<u32>,
    /// Key of the service it belongs / belonged to (trash revival matches it).
    pub svc_key: SvcKey,
    /// Serial of that service incarnation (stats are zeroed when a dest
    /// moves to a different service incarnation).
    pub svc_serial: u64,
    /// IP_VS_DEST_F_AVAILABLE: linked in a service list.
    pub available: bool,
    /// IP_VS_DEST_F_OVERLOAD.
    pub overload: bool,
    /// Transient: excluded for the current scheduling decision (treated as
    /// overloaded by every scheduler).
    pub excluded: bool,
    pub activeconns: u32,
    pub inactconns: u32,
    pub persistconns: u32,
    /// Number of connection entries (incl. templates) bound to this dest.
    pub refcnt: u32,
    pub stats: Stats,
    pub est: Estimator,
    /// Trash bookkeeping (ip_vs_dest_trash_expire).
    pub idle_start: Option<Time>,
}

impl Dest {
    #[inline]
    pub fn weight(&self) -> i32 {
        self.conf.weight
    }
    /// OVERLOAD flag as schedulers see it (includes the caller's exclude list).
    #[inline]
    pub fn ovl(&self) -> bool {
        self.overload || self.excluded
    }
    /// ip_vs_dest_conn_overhead: (activeconns << 8) + inactconns.
    #[inline]
    pub fn overhead(&self) -> i64 {
        ((self.activeconns as i64) << 8) + self.inactconns as i64
    }
}

/// Slab of destinations (linked ones and the trash).
#[derive(Clone, Debug, Default)]
pub(crate) struct DestTable {
    slots: Vec<Option<Dest>>,
    free: Vec<DestId>,
    next_serial: u64,
}

impl DestTable {
    pub fn insert(&mut self, mut d: Dest) -> DestId {
        self.next_serial += 1;
        d.serial = self.next_serial;
        if let Some(id) = self.free.pop() {
            self.slots[id as usize] = Some(d);
            id
        } else {
            self.slots.push(Some(d));
            (self.slots.len() - 1) as DestId
        }
    }

    pub fn remove(&mut self, id: DestId) -> Option<Dest> {
        let d = self.slots.get_mut(id as usize)?.take();
        if d.is_some() {
            self.free.push(id);
        }
        d
    }

    #[inline]
    pub fn get(&self, id: DestId) -> Option<&Dest> {
        self.slots.get(id as usize).and_then(|s| s.as_ref())
    }

    #[inline]
    pub fn get_mut(&mut self, id: DestId) -> Option<&mut Dest> {
        self.slots.get_mut(id as usize).and_then(|s| s.as_mut())
    }

    /// Weak reference check: the slot holds the same incarnation.
    #[inline]
    pub fn get_serial(&self, id: DestId, serial: u64) -> Option<&Dest> {
        self.get(id).filter(|d| d.serial == serial)
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (DestId, &mut Dest)> {
        self.slots
            .iter_mut()
            .enumerate()
            .filter_map(|(i, s)| s.as_mut().map(|d| (i as DestId, d)))
    }
}
