//! Connection synchronisation support (ip_vs_sync.c): the entries a master
//! sends and how a backup applies them (ip_vs_proc_conn). The wire format
//! and the multicast transport belong to the IO shell; this is the table
//! side only.

use std::net::IpAddr;

use super::Ipvs;
use crate::conn::{
    Conn, F_DV6, F_FWD_MASK, F_INACTIVE, F_NOOUTPUT, F_ONE_PACKET, F_SYNC, F_TEMPLATE, F_V6, NIL,
};
use crate::hash::{addr16, ip_from16};
use crate::proto;
use crate::time::Time;
use crate::types::{ConnRef, FwdMethod, Protocol, SvcKey};

/// IP_VS_CONN_F_BACKUP_MASK (bits carried in sync messages).
const BACKUP_MASK: u32 = 0x0007 | 0x0080 | 0x0100 | 0x0600 | 0x0800 | 0x1000;
/// Kernel flag values.
const K_TEMPLATE: u32 = 0x1000;
const K_INACTIVE: u32 = 0x0100;
const K_NOOUTPUT: u32 = 0x0080;
/// sync_threshold[0] default: in_pkts of a synced entry.
const SYNC_THRESHOLD: u32 = 3;
/// The kernel's jiffies at HZ=250: sync_endtime is kept in 4 ms units.
const JIFFIES_PER_SEC: u32 = 250;
/// Entries a master queues before the sender takes them; beyond this they
/// are dropped and counted (the kernel's sync_qlen_max bounds its queue).
pub const SYNC_OUTBOX_MAX: usize = 1 << 16;

/// The daemons that run and the master's outbox.
#[derive(Debug, Default)]
pub(crate) struct SyncSide {
    pub master: bool,
    pub backup: bool,
    pub out: Vec<SyncConn>,
    pub dropped: u64,
}

/// One connection (or template) as carried by a v1 sync message.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SyncConn {
    /// IP protocol number (0 = IPPROTO_IP for fwmark templates).
    pub protocol: u8,
    /// Kernel conn flags masked with IP_VS_CONN_F_BACKUP_MASK
    /// (fwd method, NOOUTPUT 0x80, INACTIVE 0x100, TEMPLATE 0x1000, ...).
    pub flags: u32,
    /// Protocol state (TCP/SCTP state index, template NONE/ASSURED bits).
    pub state: u16,
    pub caddr: IpAddr,
    pub cport: u16,
    pub vaddr: IpAddr,
    pub vport: u16,
    pub daddr: IpAddr,
    pub dport: u16,
    pub fwmark: u32,
    /// Remaining lifetime in seconds (v1; 0 = use the state's timeout).
    pub timeout: u32,
    /// Persistence engine of a template (`sip`) and its data (the
    /// Call-ID): the PE_NAME / PE_DATA options of v1 messages.
    pub pe_name: Option<String>,
    pub pe_data: Option<Vec<u8>>,
}

impl Ipvs {
    /// Every entry in the form a sync master sends (templates included).
    /// ONE_PACKET entries are never synced (they are never in the table).
    pub fn sync_export(&self, now: Time) -> Vec<SyncConn> {
        self.conns
            .iter()
            .map(|(idx, c)| {
                // the fwmark of the service the entry's dest belongs to
                let fwmark = self.dests.get(c.dest).map_or(0, |d| d.svc_key.fwmark());
                to_sync(c, now, fwmark, self.pe_data.get(&idx).map(|d| &d[..]))
            })
            .collect()
    }

    /// Applies one received entry as the backup's ip_vs_proc_conn does
    /// (entries with a state outside the protocol's table are ignored):
    /// updates an existing entry's INACTIVE bit (moving the dest counters),
    /// replaces an entry whose real server changed, or creates the entry,
    /// bound to the local destination with the same address if the service
    /// and destination exist (else unbound). Synced entries do not count in
    /// the `conns` statistics.
    pub fn sync_apply(&mut self, now: Time, m: &SyncConn) {
        let flags = m.flags & BACKUP_MASK;
        let template = flags & K_TEMPLATE != 0;
        // the backup drops a non-template entry with an invalid state
        let num_states = match Protocol::from_number(m.protocol) {
            Some(Protocol::Tcp) => proto::TCP_NUM_STATES,
            Some(Protocol::Sctp) => proto::SCTP_NUM_STATES,
            Some(Protocol::Udp) => 1,
            None => 0,
        };
        if !template && m.state as usize >= num_states {
            return;
        }
        // ip_vs_conn_fill_param_sync: an unknown persistence engine skips
        // the entry; PE data travels with its engine's name
        let pe = match (&m.pe_name, &m.pe_data) {
            (Some(n), Some(d)) if n == "sip" => Some(&d[..]),
            (Some(_), _) => return,
            _ => None,
        };
        let v6 = m.caddr.is_ipv6();
        let caddr = addr16(m.caddr);
        let vaddr = addr16(m.vaddr);
        let daddr = addr16(m.daddr);
        let pe_data = &self.pe_data;
        let mut cp = self
            .conns
            .find_by(m.protocol, v6, &caddr, m.cport, |idx, c| {
                c.is_template() == template
                    && c.vport == m.vport
                    && c.vaddr == vaddr
                    && (!template || pe_data.get(&idx).map(|d| &d[..]) == pe)
            });
        if let (false, Some(idx)) = (template, cp) {
            if let Some(c) = self.conns.get(idx) {
                if c.dport != m.dport || c.daddr != daddr {
                    if flags & K_INACTIVE == 0 {
                        if c.n_control == 0 {
                            self.expire_entry(now, idx, false);
                        }
                        cp = None;
                    } else {
                        // expiration message for an entry already replaced
                        return;
                    }
                }
            }
        }
        let idx = match cp {
            Some(idx) => {
                let Some(c) = self.conns.get_mut(idx) else {
                    return;
                };
                let was_inactive = c.flags & F_INACTIVE != 0;
                let now_inactive = flags & K_INACTIVE != 0;
                let did = c.dest;
                if was_inactive != now_inactive && !template {
                    if let Some(d) = self.dests.get_mut(did) {
                        if now_inactive {
                            d.activeconns = d.activeconns.saturating_sub(1);
                            d.inactconns = d.inactconns.saturating_add(1);
                        } else {
                            d.activeconns = d.activeconns.saturating_add(1);
                            d.inactconns = d.inactconns.saturating_sub(1);
                        }
                    }
                }
                if let Some(c) = self.conns.get_mut(idx) {
                    c.flags = (c.flags & !F_INACTIVE) | if now_inactive { F_INACTIVE } else { 0 };
                    c.flags |= F_SYNC;
                }
                idx
            }
            None => {
                let did = self.find_dest_for_sync(m, flags);
                let Some(idx) = self.sync_conn_new(now, m, flags, did, v6, caddr, vaddr, daddr)
                else {
                    return;
                };
                if let (true, Some(pe)) = (template, pe) {
                    self.pe_data.insert(idx, pe.into());
                }
                idx
            }
        };
        let (tcp_to, udp_to) = (self.tcp_timeouts, self.udp_timeout);
        if let Some(c) = self.conns.get_mut(idx) {
            c.in_pkts = SYNC_THRESHOLD;
            c.state = m.state.min(255) as u8;
            c.old_state = c.state;
            c.timeout = if m.timeout != 0 {
                m.timeout
            } else if template {
                180
            } else {
                match Protocol::from_number(m.protocol) {
                    Some(Protocol::Tcp) => tcp_to.get(c.state as usize).copied().unwrap_or(2),
                    Some(Protocol::Udp) => udp_to,
                    Some(Protocol::Sctp) => proto::SCTP_TIMEOUTS
                        .get(c.state as usize)
                        .copied()
                        .unwrap_or(2),
                    None => 180,
                }
            };
        }
        self.conn_put(now, idx);
    }

    /// Which sync daemons run (`--start-daemon master|backup`). While a
    /// master runs, the data path collects what `ip_vs_sync_conn` would send
    /// into an outbox ([`Ipvs::sync_take`]); while a backup runs with the
    /// `backup_only` sysctl, client packets are not forwarded.
    pub fn set_sync_state(&mut self, master: bool, backup: bool) {
        self.sync.master = master;
        self.sync.backup = backup;
        if !master {
            self.sync.out.clear();
        }
    }

    /// `(master, backup)`: the daemons [`Ipvs::set_sync_state`] declared.
    pub fn sync_state(&self) -> (bool, bool) {
        (self.sync.master, self.sync.backup)
    }

    /// Moves the entries due for sending (oldest first) into `into`.
    pub fn sync_take(&mut self, into: &mut Vec<SyncConn>) {
        into.append(&mut self.sync.out);
    }

    /// Entries not queued because the outbox was full ([`SYNC_OUTBOX_MAX`]:
    /// the sender stalled), like the kernel's sync_qlen_max drops.
    pub fn sync_outbox_dropped(&self) -> u64 {
        self.sync.dropped
    }

    /// While a backup daemon runs with `backup_only`, the director forwards
    /// nothing (ip_vs_in: `sysctl_backup_only`).
    pub(crate) fn backup_only(&self) -> bool {
        self.sync.backup && self.sysctl.backup_only
    }

    /// The master side of ip_vs_sync_conn for the client->VIP packet just
    /// processed (`pkts` = the entry's in_pkts after it): queues the entry
    /// if ip_vs_sync_conn_needed says so, then its controlling template.
    pub(crate) fn sync_conn(&mut self, now: Time, idx: u32, pkts: u32) {
        if !self.sync.master {
            return;
        }
        let mut out = std::mem::take(&mut self.sync.out);
        self.sync_collect(now, idx, pkts, &mut out);
        if out.len() > SYNC_OUTBOX_MAX {
            self.sync.dropped += (out.len() - SYNC_OUTBOX_MAX) as u64;
            out.truncate(SYNC_OUTBOX_MAX);
        }
        self.sync.out = out;
    }

    /// [`Ipvs::sync_conn`] for `n` packets accounted at once (a flow
    /// cache's bulk report): the entry is synced if one of the in_pkts
    /// values it went through meets the threshold rule.
    pub(crate) fn sync_conn_bulk(&mut self, now: Time, idx: u32, before: u32, n: u32) {
        if !self.sync.master || n == 0 {
            return;
        }
        let (t, p) = self.sysctl.sync_threshold;
        let first = before.wrapping_add(1);
        let hit = if p > 0 {
            let k = first.wrapping_add((t % p + p - first % p) % p);
            k.wrapping_sub(before) <= n
        } else {
            t.wrapping_sub(before).wrapping_sub(1) < n
        };
        let pkts = if hit {
            if p > 0 {
                first.wrapping_add((t % p + p - first % p) % p)
            } else {
                t
            }
        } else {
            before.wrapping_add(n)
        };
        self.sync_conn(now, idx, pkts);
    }

    /// What the master would send for `conn` after a packet, without
    /// queueing it (for tests and tools): the entry if
    /// ip_vs_sync_conn_needed says so (TCP/SCTP only in ESTABLISHED and the
    /// closing states, forced on a state change other than to ESTABLISHED,
    /// otherwise when in_pkts % period == threshold), then its controlling
    /// template (whose own in_pkts is bumped; templates are exempt from the
    /// packet-count rule).
    pub fn sync_due(&mut self, now: Time, conn: ConnRef) -> Vec<SyncConn> {
        let mut out = Vec::new();
        let Some(c) = self.conns.get(conn.idx).filter(|c| c.gen == conn.gen) else {
            return out;
        };
        let pkts = c.in_pkts;
        self.sync_collect(now, conn.idx, pkts, &mut out);
        out
    }

    fn sync_collect(&mut self, now: Time, idx: u32, pkts: u32, out: &mut Vec<SyncConn>) {
        let Some(c) = self.conns.get(idx) else {
            return;
        };
        let mut idx = idx;
        let mut pkts = pkts;
        let mut first = c.flags & F_ONE_PACKET == 0;
        // a controller chain is at most conn -> template; bound the walk anyway
        for _ in 0..4 {
            if first && self.sync_needed(now, idx, pkts) {
                if let Some(c) = self.conns.get(idx) {
                    let fwmark = self.dests.get(c.dest).map_or(0, |d| d.svc_key.fwmark());
                    out.push(to_sync(
                        c,
                        now,
                        fwmark,
                        self.pe_data.get(&idx).map(|d| &d[..]),
                    ));
                }
            }
            first = true;
            let Some(ctl) = self.conns.get(idx).map(|c| c.control).filter(|&c| c != NIL) else {
                break;
            };
            let Some(t) = self.conns.get_mut(ctl) else {
                break;
            };
            pkts = if t.is_template() {
                t.in_pkts = t.in_pkts.wrapping_add(1);
                t.in_pkts
            } else {
                self.sysctl.sync_threshold.0
            };
            idx = ctl;
        }
    }

    /// ip_vs_sync_conn_needed, with sync_refresh_period, sync_retries and
    /// sync_persist_mode. Time is kept in 4 ms units (HZ=250 jiffies) so
    /// the low two bits of `sync_end` count resends as the kernel's do.
    fn sync_needed(&mut self, now: Time, idx: u32, pkts: u32) -> bool {
        let (threshold, period) = self.sysctl.sync_threshold;
        let refresh = self
            .sysctl
            .sync_refresh_period
            .saturating_mul(JIFFIES_PER_SEC);
        let retries = self.sysctl.sync_retries;
        let persist_mode = self.sysctl.sync_persist_mode;
        let controlled_by_template = |c: &Conn, conns: &crate::conn::ConnTable| {
            c.control != NIL && conns.get(c.control).is_some_and(|t| t.is_template())
        };
        let in_persistence = self
            .conns
            .get(idx)
            .is_some_and(|c| controlled_by_template(c, &self.conns));
        let Some(c) = self.conns.get_mut(idx) else {
            return false;
        };
        let now_j = (now.as_millis() / 4) as u32;
        let timeout_j = c.timeout.saturating_mul(JIFFIES_PER_SEC);
        let orig = c.sync_end;
        let mut n = now_j.wrapping_add(timeout_j) & !3;
        let template = c.is_template();
        let mut forced = false;
        if !template {
            if persist_mode && in_persistence {
                return false;
            }
            let (ok, est) = match Protocol::from_number(c.proto) {
                Some(Protocol::Tcp) => (
                    matches!(
                        c.state,
                        proto::TCP_ESTABLISHED
                            | proto::TCP_FIN_WAIT
                            | proto::TCP_CLOSE
                            | proto::TCP_CLOSE_WAIT
                            | proto::TCP_TIME_WAIT
                    ),
                    proto::TCP_ESTABLISHED,
                ),
                Some(Protocol::Sctp) => (
                    matches!(
                        c.state,
                        proto::SCTP_ESTABLISHED | 9 | 10 | 11 | proto::SCTP_CLOSED
                    ),
                    proto::SCTP_ESTABLISHED,
                ),
                _ => (true, u8::MAX),
            };
            if !ok {
                return false;
            }
            forced = est != u8::MAX && c.state != c.old_state && c.state != est;
        }
        if !forced {
            if refresh > 0 {
                let diff = n.wrapping_sub(orig) as i32;
                let min_diff = (timeout_j / 2).max(10 * JIFFIES_PER_SEC);
                if diff.unsigned_abs() < refresh.min(min_diff) {
                    let done = orig & 3;
                    if done >= retries {
                        return false;
                    }
                    // time_before(now, orig - timeout + refresh / 8)
                    let resend_at = orig.wrapping_sub(timeout_j).wrapping_add(refresh >> 3);
                    if (now_j.wrapping_sub(resend_at) as i32) < 0 {
                        return false;
                    }
                    n |= done + 1;
                }
            }
            if period > 0 {
                if !template && pkts % period != threshold {
                    return false;
                }
            } else if refresh == 0 && pkts != threshold {
                return false;
            }
        }
        c.old_state = c.state;
        c.sync_end = n;
        true
    }

    /// ip_vs_find_dest.
    fn find_dest_for_sync(&self, m: &SyncConn, flags: u32) -> Option<u32> {
        let v6 = m.vaddr.is_ipv6();
        let mut sid = None;
        if m.fwmark != 0 {
            sid = self
                .svc_map
                .get(&SvcKey::Fwmark { mark: m.fwmark, v6 })
                .copied();
        }
        if sid.is_none() {
            let proto = Protocol::from_number(m.protocol)?;
            sid = self
                .svc_map
                .get(&SvcKey::Addr {
                    proto,
                    addr: m.vaddr,
                    port: m.vport,
                })
                .copied();
        }
        let svc = self.svcs.get(sid? as usize)?.as_ref()?;
        let port = if m.fwmark != 0 && flags & 0x7 != 0 {
            0
        } else {
            m.dport
        };
        let find = |p: u16| {
            svc.list.iter().copied().find(|&id| {
                self.dests
                    .get(id)
                    .is_some_and(|d| d.conf.addr == m.daddr && d.conf.port == p)
            })
        };
        find(port).or_else(|| find(port ^ m.dport))
    }

    #[allow(clippy::too_many_arguments)]
    fn sync_conn_new(
        &mut self,
        now: Time,
        m: &SyncConn,
        flags: u32,
        did: Option<u32>,
        v6: bool,
        caddr: [u8; 16],
        vaddr: [u8; 16],
        daddr: [u8; 16],
    ) -> Option<u32> {
        let template = flags & K_TEMPLATE != 0;
        let mut f: u16 = F_SYNC;
        if template {
            f |= F_TEMPLATE;
        }
        if flags & K_INACTIVE != 0 {
            f |= F_INACTIVE;
        }
        // connections inherit the forwarding method from the local dest
        let local = did.and_then(|id| self.dests.get(id));
        match local {
            Some(d) => {
                f |= d.conf.fwd.value() as u16;
                if d.conf.fwd != FwdMethod::Masq {
                    f |= F_NOOUTPUT;
                }
                if template {
                    f |= F_INACTIVE;
                }
            }
            None => {
                f |= (flags & F_FWD_MASK as u32) as u16;
                if flags & K_NOOUTPUT != 0 {
                    f |= F_NOOUTPUT;
                }
            }
        }
        if v6 {
            f |= F_V6;
        }
        if m.daddr.is_ipv6() {
            f |= F_DV6;
        }
        let c = Conn {
            caddr,
            vaddr,
            daddr,
            expires: now.plus_secs(3).as_millis(),
            timeout: 3,
            dest: did.unwrap_or(NIL),
            control: NIL,
            n_control: 0,
            armed: u32::MAX,
            gen: 0,
            in_pkts: 0,
            sync_end: 0,
            cport: m.cport,
            vport: m.vport,
            dport: m.dport,
            flags: f & !F_ONE_PACKET,
            proto: m.protocol,
            state: 0,
            old_state: 0,
        };
        let idx = self.conns.alloc(c)?;
        if let Some(d) = did.and_then(|id| self.dests.get_mut(id)) {
            d.refcnt = d.refcnt.saturating_add(1);
            if template {
                d.persistconns = d.persistconns.saturating_add(1);
            } else if f & F_INACTIVE != 0 {
                d.inactconns = d.inactconns.saturating_add(1);
            } else {
                d.activeconns = d.activeconns.saturating_add(1);
            }
            if d.conf.u_threshold != 0
                && d.activeconns.saturating_add(d.inactconns) >= d.conf.u_threshold
            {
                d.overload = true;
            }
        }
        self.conns.hash(idx);
        Some(idx)
    }
}

fn to_sync(c: &Conn, now: Time, fwmark: u32, pe: Option<&[u8]>) -> SyncConn {
    let mut flags = (c.flags & F_FWD_MASK) as u32;
    if c.flags & F_NOOUTPUT != 0 {
        flags |= K_NOOUTPUT;
    }
    if c.flags & F_INACTIVE != 0 {
        flags |= K_INACTIVE;
    }
    if c.is_template() {
        flags |= K_TEMPLATE;
    }
    SyncConn {
        protocol: c.proto,
        flags,
        state: c.state as u16,
        caddr: ip_from16(&c.caddr, c.v6()),
        cport: c.cport,
        vaddr: ip_from16(&c.vaddr, c.v6()),
        vport: c.vport,
        daddr: ip_from16(&c.daddr, c.flags & F_DV6 != 0),
        dport: c.dport,
        fwmark,
        timeout: (c.expires.saturating_sub(now.as_millis()) / 1000) as u32,
        pe_name: pe.map(|_| "sip".to_string()),
        pe_data: pe.map(|d| d.to_vec()),
    }
}
