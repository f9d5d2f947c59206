//! Operations the proxy engine needs beyond the kernel's packet path.

use super::Ipvs;
use crate::{Dir, Packet, Protocol, TcpFlags, Time};
use std::net::SocketAddr;

impl Ipvs {
    /// Expire the connection `client -> vip` now, as `ip_vs_conn_expire_now`
    /// does. The proxy engine calls this when `connect()` to the scheduled
    /// real server failed, so that its next attempt for the same client is
    /// scheduled afresh (with the failed destination excluded) instead of
    /// reusing the dead entry. Its template, if it controls nothing else and
    /// was never assured, goes with it. Returns true if an entry was removed.
    pub fn expire_conn(
        &mut self,
        now: Time,
        proto: Protocol,
        client: SocketAddr,
        vip: SocketAddr,
    ) -> bool {
        let pkt = Packet {
            fwmark: 0,
            proto,
            src: client,
            dst: vip,
            tcp_flags: TcpFlags::NONE,
            len: 0,
            dir: Dir::In,
        };
        match self.lookup_in(now, &pkt) {
            Some(idx) => self.expire_entry(now, idx, true),
            None => false,
        }
    }
}

/// Counters and rate-estimator state of a service, a destination or the
/// whole table, as a successor process takes them over (binary upgrade):
/// `--stats` and `--rate` read the same before and after.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CounterState {
    pub stats: crate::Stats,
    /// The estimator's scaled EWMA values (cps, inpps, outpps <<10; inbps,
    /// outbps <<5).
    pub est: [u64; 5],
    /// The counters at the estimator's last sample.
    pub last: [u64; 5],
}

impl Ipvs {
    fn counter_slot(
        &mut self,
        key: Option<&crate::SvcKey>,
        dest: Option<(std::net::IpAddr, u16)>,
    ) -> Option<(&mut crate::Stats, &mut crate::est::Estimator)> {
        let Some(key) = key else {
            return Some((&mut self.total, &mut self.total_est));
        };
        let sid = self.svc_id(key)?;
        match dest {
            None => {
                let s = self.svcs.get_mut(sid as usize)?.as_mut()?;
                Some((&mut s.stats, &mut s.est))
            }
            Some((addr, port)) => {
                let svc = self.svc(sid)?;
                let (_, did) = self.find_dest_in(svc, addr, port)?;
                let d = self.dests.get_mut(did)?;
                Some((&mut d.stats, &mut d.est))
            }
        }
    }

    /// The counters of the table (`key` None), a service, or one of its
    /// destinations.
    pub fn counter_state(
        &mut self,
        key: Option<&crate::SvcKey>,
        dest: Option<(std::net::IpAddr, u16)>,
    ) -> Option<CounterState> {
        let (s, e) = self.counter_slot(key, dest)?;
        let (est, last) = e.raw();
        Some(CounterState {
            stats: *s,
            est,
            last,
        })
    }

    /// Sets what [`Ipvs::counter_state`] read; false if the service or
    /// destination does not exist.
    pub fn set_counter_state(
        &mut self,
        key: Option<&crate::SvcKey>,
        dest: Option<(std::net::IpAddr, u16)>,
        st: &CounterState,
    ) -> bool {
        let Some((s, e)) = self.counter_slot(key, dest) else {
            return false;
        };
        *s = st.stats;
        e.set_raw(st.est, st.last);
        true
    }

    /// Takes over one entry of a predecessor's table
    /// ([`Ipvs::sync_export`]): as a backup applies a synced entry, bound to
    /// the local destination, but its origin stays what it was (`synced`
    /// false: Local) and, unlike sync, nothing is counted twice.
    pub fn import_conn(&mut self, now: Time, c: &super::SyncConn, synced: bool) {
        self.sync_apply(now, c);
        if synced {
            return;
        }
        let v6 = c.caddr.is_ipv6();
        let caddr = crate::hash::addr16(c.caddr);
        let vaddr = crate::hash::addr16(c.vaddr);
        let template = c.flags & 0x1000 != 0;
        if let Some(idx) = self.conns.find(c.protocol, v6, &caddr, c.cport, |e| {
            e.is_template() == template && e.vport == c.vport && e.vaddr == vaddr
        }) {
            if let Some(e) = self.conns.get_mut(idx) {
                e.flags &= !crate::conn::F_SYNC;
            }
        }
    }
}
