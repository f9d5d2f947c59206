//! The whole IPVS table: services, destinations (and their trash),
//! connections and templates, counters, timeouts and sysctls.

use std::net::{IpAddr, SocketAddr};

use crate::conn::{
    Conn, ConnTable, F_DV6, F_FWD_MASK, F_INACTIVE, F_NOOUTPUT, F_ONE_PACKET, F_SYNC, F_TEMPLATE,
    F_V6, NIL,
};
use crate::dest::{Dest, DestId, DestTable};
use crate::est::Estimator;
use crate::hash::{addr16, ip_from16, FxHashMap};
use crate::proto::{self, CTPL_ASSURED};
use crate::sched::{SchedCtx, Scheduler};
use crate::time::Time;
use crate::types::*;

pub use ext::CounterState;
pub use sync::SyncConn;

/// IP_VS_CONN_TAB_BITS default.
const CONN_TAB_BITS: u32 = 12;
const FTPPORT: u16 = 21;
const FTPDATA: u16 = 20;
/// ipvsadm's upper bound for `--set` values (86400 * 31 s).
pub const MAX_TIMEOUT: u32 = 86400 * 31;
/// Initial timeout of a new entry before its first transition (3 s).
const INITIAL_TIMEOUT: u32 = 3;
/// expire_later re-arm (60 s).
const EXPIRE_LATER: u32 = 60;
/// IP_VS_DEST_TRASH_PERIOD = 120 s; the trash timer runs every 60 s.
const TRASH_PERIOD_MS: u64 = 120_000;
/// lblc/lblcr CHECK_EXPIRE_INTERVAL = 60 s.
const GC_INTERVAL_MS: u64 = 60_000;

#[derive(Clone, Debug)]
pub(crate) struct Service {
    conf: ServiceConf,
    serial: u64,
    /// Destinations in kernel list order (newest first).
    list: Vec<DestId>,
    sched: Scheduler,
    stats: Stats,
    est: Estimator,
}

/// The IPVS table. Single owner; wrap it in a Mutex to share.
pub struct Ipvs {
    sysctl: Sysctl,
    svcs: Vec<Option<Service>>,
    svc_free: Vec<u32>,
    svc_map: FxHashMap<SvcKey, u32>,
    svc_serial: u64,
    ftpsvc: u32,
    nullsvc: u32,
    dests: DestTable,
    trash: Vec<DestId>,
    trash_timer: Option<Time>,
    gc_timer: Option<Time>,
    conns: ConnTable,
    tcp_timeouts: [u32; proto::TCP_NUM_STATES],
    udp_timeout: u32,
    total: Stats,
    total_est: Estimator,
    /// Next wheel tick (seconds) to process.
    wheel_tick: u64,
    /// The ip_vs module's conn_tab_bits (only reported).
    conn_tab_bits: u32,
    /// handle_timeout_budget ran out of budget at this time.
    timeout_pending: Option<Time>,
    seed: u64,
    /// Bumped by every change to services and destinations.
    config_gen: u64,
    /// Connection sync: which daemons run, and the master's outbox.
    sync: sync::SyncSide,
    /// Persistence-engine data of templates (the SIP Call-ID), by slot.
    pe_data: FxHashMap<u32, Box<[u8]>>,
}

impl Default for Ipvs {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Ipvs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ipvs")
            .field("services", &self.svc_map.len())
            .field("conns", &self.conns.len())
            .finish()
    }
}

/// Read-only view of a service.
#[derive(Clone, Copy)]
pub struct ServiceView<'a> {
    ipvs: &'a Ipvs,
    svc: &'a Service,
}

/// Read-only view of a destination.
#[derive(Clone, Copy)]
pub struct DestView<'a> {
    d: &'a Dest,
}

/// One row of the connection table (`ipvsadm -Lnc`, /proc/net/ip_vs_conn).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnView {
    /// "TCP", "UDP", "SCTP", or "IP" for fwmark templates.
    pub proto_name: &'static str,
    pub caddr: IpAddr,
    pub cport: u16,
    /// For fwmark templates: the mark encoded as an address (`0.0.0.<mark>`).
    pub vaddr: IpAddr,
    pub vport: u16,
    pub daddr: IpAddr,
    pub dport: u16,
    pub state_name: &'static str,
    /// Whole seconds until expiry ((expires - now) / HZ).
    pub expires_secs: u64,
    /// Persistence template.
    pub template: bool,
    pub fwd: FwdMethod,
    /// Handle of this entry.
    pub conn: ConnRef,
    /// Created or updated by connection sync (the "Sync" origin of the
    /// kernel's /proc/net/ip_vs_conn_sync), not by local traffic.
    pub synced: bool,
    /// Persistence-engine data of a template (`--pe sip`: the Call-ID).
    pub pe_data: Option<Vec<u8>>,
}

impl<'a> ServiceView<'a> {
    pub fn conf(&self) -> &'a ServiceConf {
        &self.svc.conf
    }
    pub fn key(&self) -> SvcKey {
        self.svc.conf.key
    }
    /// Bound scheduler name.
    pub fn scheduler(&self) -> &'a str {
        &self.svc.conf.scheduler
    }
    pub fn stats(&self) -> Stats {
        self.svc.stats
    }
    pub fn rates(&self) -> Rates {
        self.svc.est.read()
    }
    pub fn num_dests(&self) -> usize {
        self.svc.list.len()
    }
    /// Destinations in kernel list order (newest first).
    pub fn dests(&self) -> impl Iterator<Item = DestView<'a>> + 'a {
        let dests = &self.ipvs.dests;
        self.svc
            .list
            .iter()
            .filter_map(move |&id| dests.get(id))
            .map(|d| DestView { d })
    }
    /// One destination by address and port.
    pub fn dest(&self, addr: IpAddr, port: u16) -> Option<DestView<'a>> {
        self.dests()
            .find(|d| d.d.conf.addr == addr && d.d.conf.port == port)
    }
}

impl<'a> DestView<'a> {
    pub fn conf(&self) -> &'a DestConf {
        &self.d.conf
    }
    pub fn addr(&self) -> IpAddr {
        self.d.conf.addr
    }
    pub fn port(&self) -> u16 {
        self.d.conf.port
    }
    pub fn weight(&self) -> i32 {
        self.d.conf.weight
    }
    pub fn fwd(&self) -> FwdMethod {
        self.d.conf.fwd
    }
    /// Latest non-zero weight (kernel last_weight).
    pub fn last_weight(&self) -> i32 {
        self.d.last_weight
    }
    pub fn active_conns(&self) -> u32 {
        self.d.activeconns
    }
    pub fn inact_conns(&self) -> u32 {
        self.d.inactconns
    }
    pub fn persist_conns(&self) -> u32 {
        self.d.persistconns
    }
    pub fn stats(&self) -> Stats {
        self.d.stats
    }
    pub fn rates(&self) -> Rates {
        self.d.est.read()
    }
    /// IP_VS_DEST_F_OVERLOAD.
    pub fn overloaded(&self) -> bool {
        self.d.overload
    }
    /// IP_VS_DEST_F_AVAILABLE (false only for trashed dests).
    pub fn available(&self) -> bool {
        self.d.available
    }
}

fn validate_netmask(key: &SvcKey, netmask: u32) -> Result<(), Error> {
    if key.is_v6() {
        if !(1..=128).contains(&netmask) {
            return Err(Error::Inval(format!("bad IPv6 prefix length {netmask}")));
        }
    } else if netmask.leading_ones() + netmask.trailing_zeros() != 32 {
        return Err(Error::Inval(format!(
            "bad netmask {}",
            std::net::Ipv4Addr::from(netmask)
        )));
    }
    Ok(())
}

fn normalize_sched(name: &str) -> Result<String, Error> {
    let n = if name.is_empty() { "wlc" } else { name };
    if Scheduler::exists(n) {
        Ok(n.to_string())
    } else {
        Err(Error::SchedulerNotFound(name.to_string()))
    }
}

fn validate_pe(pe: &Option<String>) -> Result<(), Error> {
    match pe.as_deref() {
        None | Some("") | Some("sip") => Ok(()),
        Some(other) => Err(Error::PeNotFound(other.to_string())),
    }
}

fn validate_dest(svc_key: &SvcKey, d: &DestConf) -> Result<(), Error> {
    if d.weight < 0 {
        return Err(Error::Range("server weight less than zero".into()));
    }
    if d.weight > 65535 {
        return Err(Error::Inval(format!(
            "weight {} out of range 0..65535",
            d.weight
        )));
    }
    if d.l_threshold > d.u_threshold {
        return Err(Error::Range(
            "lower threshold is higher than upper threshold".into(),
        ));
    }
    if d.tun_type == TunType::Gue && d.tun_port == 0 {
        return Err(Error::Inval("GUE tunnel needs a port".into()));
    }
    if d.addr.is_ipv6() != svc_key.is_v6() && d.fwd != FwdMethod::Tunnel {
        return Err(Error::Inval(
            "mixed address families need tunnel forwarding".into(),
        ));
    }
    Ok(())
}

/// Masks a client address with the service's persistence granularity.
fn mask_addr(a: IpAddr, netmask: u32) -> IpAddr {
    match a {
        IpAddr::V4(v4) => IpAddr::V4((u32::from(v4) & netmask).into()),
        IpAddr::V6(v6) => {
            let plen = netmask.min(128);
            let m: u128 = if plen == 0 {
                0
            } else {
                u128::MAX << (128 - plen)
            };
            IpAddr::V6((u128::from(v6) & m).into())
        }
    }
}

impl Ipvs {
    /// An empty table (conn_tab_bits 12), deterministic internal seed.
    pub fn new() -> Self {
        Self::with_seed(0x5eed_1b5a_u64)
    }

    /// An empty table whose internal hash seed and `twos` random source
    /// derive from `seed` (the shell may pass real randomness).
    pub fn with_seed(seed: u64) -> Self {
        Ipvs {
            sysctl: Sysctl::default(),
            svcs: Vec::new(),
            svc_free: Vec::new(),
            svc_map: FxHashMap::default(),
            svc_serial: 0,
            ftpsvc: 0,
            nullsvc: 0,
            dests: DestTable::default(),
            trash: Vec::new(),
            trash_timer: None,
            gc_timer: None,
            conns: ConnTable::new(seed ^ 0x9e37_79b9_7f4a_7c15),
            tcp_timeouts: proto::TCP_TIMEOUTS,
            udp_timeout: proto::UDP_TIMEOUT,
            total: Stats::default(),
            total_est: Estimator::default(),
            wheel_tick: 0,
            conn_tab_bits: CONN_TAB_BITS,
            timeout_pending: None,
            seed,
            config_gen: 0,
            sync: sync::SyncSide::default(),
            pe_data: FxHashMap::default(),
        }
    }

    /// Number of connection hash buckets (the `size=4096` of the banner).
    pub fn conn_tab_size(&self) -> u32 {
        1 << self.conn_tab_bits
    }

    /// The ip_vs module parameter `conn_tab_bits` (clamped to 8..=20 as
    /// current kernels do). It only changes what [`Ipvs::conn_tab_size`]
    /// reports: the index here grows with the number of entries.
    pub fn set_conn_tab_bits(&mut self, bits: u32) {
        self.conn_tab_bits = bits.clamp(8, 20);
    }

    pub fn sysctl(&self) -> &Sysctl {
        &self.sysctl
    }

    pub fn sysctl_mut(&mut self) -> &mut Sysctl {
        &mut self.sysctl
    }

    /// Pre-allocates room for `n` connection entries.
    pub fn reserve_conns(&mut self, n: usize) {
        self.conns.reserve(n);
    }

    /// Bytes held by the connection table (entries + index + timer wheel).
    pub fn conn_table_bytes(&self) -> usize {
        self.conns.memory_bytes()
    }

    // ------------------------------------------------------------------
    // control plane

    fn svc_id(&self, key: &SvcKey) -> Option<u32> {
        self.svc_map.get(key).copied()
    }

    fn svc(&self, id: u32) -> Option<&Service> {
        self.svcs.get(id as usize).and_then(|s| s.as_ref())
    }

    /// ipvsadm -A.
    pub fn add_service(&mut self, now: Time, conf: &ServiceConf) -> Result<(), Error> {
        self.config_gen += 1;
        let _ = now;
        if self.svc_map.contains_key(&conf.key) {
            return Err(Error::ServiceExists);
        }
        let sched_name = normalize_sched(&conf.scheduler)?;
        validate_pe(&conf.pe_name)?;
        validate_netmask(&conf.key, conf.netmask)?;
        self.svc_serial += 1;
        let seed = self.seed ^ self.svc_serial.wrapping_mul(0x2545_f491_4f6c_dd1d);
        let sched = Scheduler::init(&sched_name, &[], &self.dests, seed)
            .ok_or_else(|| Error::SchedulerNotFound(sched_name.clone()))?;
        let mut c = conf.clone();
        c.scheduler = sched_name;
        c.flags &= !SVC_F_HASHED;
        if c.pe_name.as_deref() == Some("") {
            c.pe_name = None;
        }
        let svc = Service {
            conf: c,
            serial: self.svc_serial,
            list: Vec::new(),
            sched,
            stats: Stats::default(),
            est: Estimator::default(),
        };
        let id = match self.svc_free.pop() {
            Some(id) => {
                self.svcs[id as usize] = Some(svc);
                id
            }
            None => {
                self.svcs.push(Some(svc));
                (self.svcs.len() - 1) as u32
            }
        };
        self.svc_map.insert(conf.key, id);
        match conf.key.port() {
            FTPPORT => self.ftpsvc += 1,
            0 => self.nullsvc += 1,
            _ => {}
        }
        Ok(())
    }

    /// ipvsadm -E (the key identifies the service).
    pub fn edit_service(&mut self, now: Time, conf: &ServiceConf) -> Result<(), Error> {
        self.config_gen += 1;
        let _ = now;
        let id = self.svc_id(&conf.key).ok_or(Error::NoSuchService)?;
        let sched_name = normalize_sched(&conf.scheduler)?;
        validate_pe(&conf.pe_name)?;
        validate_netmask(&conf.key, conf.netmask)?;
        let seed = self.seed ^ self.svc_serial.wrapping_add(id as u64);
        let Some(svc) = self.svcs.get_mut(id as usize).and_then(|s| s.as_mut()) else {
            return Err(Error::NoSuchService);
        };
        if svc.sched.name() != sched_name {
            svc.sched = Scheduler::init(&sched_name, &svc.list, &self.dests, seed)
                .ok_or_else(|| Error::SchedulerNotFound(sched_name.clone()))?;
        }
        svc.conf.scheduler = sched_name;
        svc.conf.flags = conf.flags & !SVC_F_HASHED;
        svc.conf.timeout = conf.timeout;
        svc.conf.netmask = conf.netmask;
        svc.conf.pe_name = conf.pe_name.clone().filter(|s| !s.is_empty());
        Ok(())
    }

    /// ipvsadm -D.
    pub fn del_service(&mut self, now: Time, key: &SvcKey) -> Result<(), Error> {
        self.config_gen += 1;
        let id = self.svc_id(key).ok_or(Error::NoSuchService)?;
        self.remove_service(now, id);
        if self.sysctl.expire_nodest_conn {
            self.expire_nodest_flush(now);
        }
        Ok(())
    }

    fn remove_service(&mut self, now: Time, id: u32) {
        let Some(svc) = self.svcs.get_mut(id as usize).and_then(|s| s.take()) else {
            return;
        };
        self.svc_free.push(id);
        self.svc_map.remove(&svc.conf.key);
        match svc.conf.key.port() {
            FTPPORT => self.ftpsvc = self.ftpsvc.saturating_sub(1),
            0 => self.nullsvc = self.nullsvc.saturating_sub(1),
            _ => {}
        }
        for did in svc.list {
            self.move_to_trash(now, did);
            if let Some(d) = self.dests.get_mut(did) {
                d.svc = None;
            }
        }
    }

    fn move_to_trash(&mut self, now: Time, did: DestId) {
        if let Some(d) = self.dests.get_mut(did) {
            d.available = false;
            d.idle_start = None;
            d.excluded = false;
        }
        if self.trash.is_empty() {
            self.trash_timer = Some(Time::from_millis(
                now.as_millis().saturating_add(TRASH_PERIOD_MS / 2),
            ));
        }
        self.trash.push(did);
    }

    /// ipvsadm -C: delete every service (destinations go to the trash,
    /// connections live on until they expire).
    pub fn flush(&mut self, now: Time) {
        self.config_gen += 1;
        let ids: Vec<u32> = self.svc_map.values().copied().collect();
        for id in ids {
            self.remove_service(now, id);
        }
        if self.sysctl.expire_nodest_conn {
            self.expire_nodest_flush(now);
        }
    }

    fn find_dest_in(&self, svc: &Service, addr: IpAddr, port: u16) -> Option<(usize, DestId)> {
        svc.list.iter().enumerate().find_map(|(i, &id)| {
            let d = self.dests.get(id)?;
            (d.conf.addr == addr && d.conf.port == port).then_some((i, id))
        })
    }

    /// ipvsadm -a.
    pub fn add_dest(&mut self, now: Time, svc_key: &SvcKey, dc: &DestConf) -> Result<(), Error> {
        self.config_gen += 1;
        let _ = now;
        let sid = self.svc_id(svc_key).ok_or(Error::NoSuchService)?;
        validate_dest(svc_key, dc)?;
        let svc = self.svc(sid).ok_or(Error::NoSuchService)?;
        if self.find_dest_in(svc, dc.addr, dc.port).is_some() {
            return Err(Error::DestExists);
        }
        let svc_serial = svc.serial;
        // trash revival (ip_vs_trash_get_dest)
        let revived = self.trash.iter().position(|&id| {
            self.dests.get(id).is_some_and(|d| {
                d.conf.addr == dc.addr && d.conf.port == dc.port && d.svc_key == *svc_key
            })
        });
        let did = match revived {
            Some(pos) => {
                let id = self.trash.remove(pos);
                if let Some(d) = self.dests.get_mut(id) {
                    if d.svc_serial != svc_serial {
                        d.stats = Stats::default();
                        d.est = Estimator::default();
                    }
                    d.est.zero(&d.stats);
                }
                id
            }
            None => self.dests.insert(Dest {
                conf: dc.clone(),
                last_weight: 0,
                serial: 0,
                svc: Some(sid),
                svc_key: *svc_key,
                svc_serial,
                available: false,
                overload: false,
                excluded: false,
                activeconns: 0,
                inactconns: 0,
                persistconns: 0,
                refcnt: 0,
                stats: Stats::default(),
                est: Estimator::default(),
                idle_start: None,
            }),
        };
        self.update_dest(sid, did, dc, true);
        Ok(())
    }

    /// __ip_vs_update_dest.
    fn update_dest(&mut self, sid: u32, did: DestId, dc: &DestConf, add: bool) {
        let svc_serial = self.svc(sid).map_or(0, |s| s.serial);
        if let Some(d) = self.dests.get_mut(did) {
            if add || dc.weight != 0 {
                d.last_weight = dc.weight;
            }
            let old_u = d.conf.u_threshold;
            d.conf = dc.clone();
            d.svc = Some(sid);
            d.svc_serial = svc_serial;
            d.available = true;
            if dc.u_threshold == 0 || dc.u_threshold > old_u {
                d.overload = false;
            }
        }
        let Some(svc) = self.svcs.get_mut(sid as usize).and_then(|s| s.as_mut()) else {
            return;
        };
        if add {
            svc.list.insert(0, did);
            svc.sched.add_dest(&svc.list, &self.dests);
        } else {
            svc.sched.upd_dest(&svc.list, &self.dests);
        }
    }

    /// ipvsadm -e.
    pub fn edit_dest(&mut self, now: Time, svc_key: &SvcKey, dc: &DestConf) -> Result<(), Error> {
        self.config_gen += 1;
        let _ = now;
        let sid = self.svc_id(svc_key).ok_or(Error::NoSuchService)?;
        validate_dest(svc_key, dc)?;
        let svc = self.svc(sid).ok_or(Error::NoSuchService)?;
        let (_, did) = self
            .find_dest_in(svc, dc.addr, dc.port)
            .ok_or(Error::NoSuchDest)?;
        self.update_dest(sid, did, dc, false);
        Ok(())
    }

    /// ipvsadm -d.
    pub fn del_dest(
        &mut self,
        now: Time,
        svc_key: &SvcKey,
        addr: IpAddr,
        port: u16,
    ) -> Result<(), Error> {
        self.config_gen += 1;
        let sid = self.svc_id(svc_key).ok_or(Error::NoSuchService)?;
        let svc = self.svc(sid).ok_or(Error::NoSuchService)?;
        let (pos, did) = self
            .find_dest_in(svc, addr, port)
            .ok_or(Error::NoSuchDest)?;
        if let Some(svc) = self.svcs.get_mut(sid as usize).and_then(|s| s.as_mut()) {
            svc.list.remove(pos);
            if let Some(d) = self.dests.get_mut(did) {
                d.available = false;
            }
            svc.sched.del_dest(&svc.list, &self.dests, did, pos);
        }
        self.move_to_trash(now, did);
        if self.sysctl.expire_nodest_conn {
            self.expire_nodest_flush(now);
        }
        Ok(())
    }

    /// ipvsadm -Z: zero one service (and its dests) or everything.
    pub fn zero(&mut self, svc: Option<&SvcKey>) -> Result<(), Error> {
        let ids: Vec<u32> = match svc {
            Some(k) => vec![self.svc_id(k).ok_or(Error::NoSuchService)?],
            None => self.svc_map.values().copied().collect(),
        };
        for id in ids {
            let Some(s) = self.svcs.get_mut(id as usize).and_then(|s| s.as_mut()) else {
                continue;
            };
            s.stats = Stats::default();
            s.est.zero(&s.stats);
            for &did in &s.list {
                if let Some(d) = self.dests.get_mut(did) {
                    d.stats = Stats::default();
                    d.est.zero(&d.stats);
                }
            }
        }
        if svc.is_none() {
            self.total = Stats::default();
            self.total_est.zero(&self.total);
        }
        Ok(())
    }

    /// ipvsadm --set tcp tcpfin udp (seconds; 0 = unchanged).
    pub fn set_timeouts(&mut self, tcp: u32, tcpfin: u32, udp: u32) -> Result<(), Error> {
        self.config_gen += 1;
        for (name, v) in [("tcp", tcp), ("tcpfin", tcpfin), ("udp", udp)] {
            if v > MAX_TIMEOUT {
                return Err(Error::Inval(format!("{name} timeout {v} out of range")));
            }
        }
        if tcp != 0 {
            self.tcp_timeouts[proto::TCP_ESTABLISHED as usize] = tcp;
        }
        if tcpfin != 0 {
            self.tcp_timeouts[proto::TCP_FIN_WAIT as usize] = tcpfin;
        }
        if udp != 0 {
            self.udp_timeout = udp;
        }
        Ok(())
    }

    /// (tcp, tcpfin, udp) timeouts in seconds.
    pub fn timeouts(&self) -> (u32, u32, u32) {
        (
            self.tcp_timeouts[proto::TCP_ESTABLISHED as usize],
            self.tcp_timeouts[proto::TCP_FIN_WAIT as usize],
            self.udp_timeout,
        )
    }

    // ------------------------------------------------------------------
    // views

    /// All services (stable order: creation slots).
    pub fn services(&self) -> impl Iterator<Item = ServiceView<'_>> {
        self.svcs
            .iter()
            .filter_map(|s| s.as_ref())
            .map(move |svc| ServiceView { ipvs: self, svc })
    }

    pub fn service(&self, key: &SvcKey) -> Option<ServiceView<'_>> {
        let id = self.svc_id(key)?;
        self.svc(id).map(|svc| ServiceView { ipvs: self, svc })
    }

    pub fn total_stats(&self) -> Stats {
        self.total
    }

    pub fn total_rates(&self) -> Rates {
        self.total_est.read()
    }

    /// Number of entries (connections + templates).
    pub fn conn_count(&self) -> usize {
        self.conns.len()
    }

    fn view_of(&self, idx: u32, c: &Conn, now: Time) -> ConnView {
        let proto_name = match c.proto {
            0 => "IP",
            p => Protocol::from_number(p).map_or("IP", |p| p.name()),
        };
        let state_name = if c.is_template() {
            if c.state & CTPL_ASSURED != 0 && self.sysctl.show_assured_templates {
                "ASSURED"
            } else {
                "NONE"
            }
        } else {
            match Protocol::from_number(c.proto) {
                Some(Protocol::Tcp) => proto::TCP_STATE_NAMES
                    .get(c.state as usize)
                    .copied()
                    .unwrap_or("ERR!"),
                Some(Protocol::Udp) => "UDP",
                Some(Protocol::Sctp) => proto::SCTP_STATE_NAMES
                    .get(c.state as usize)
                    .copied()
                    .unwrap_or("ERR!"),
                None => "NONE",
            }
        };
        ConnView {
            proto_name,
            caddr: ip_from16(&c.caddr, c.v6()),
            cport: c.cport,
            vaddr: ip_from16(&c.vaddr, c.v6()),
            vport: c.vport,
            daddr: ip_from16(&c.daddr, c.flags & F_DV6 != 0),
            dport: c.dport,
            state_name,
            expires_secs: c.expires.saturating_sub(now.as_millis()) / 1000,
            template: c.is_template(),
            fwd: FwdMethod::from_value((c.flags & F_FWD_MASK) as u32).unwrap_or(FwdMethod::Masq),
            conn: ConnRef { idx, gen: c.gen },
            synced: c.flags & F_SYNC != 0,
            pe_data: self.pe_data.get(&idx).map(|d| d.to_vec()),
        }
    }

    /// Every entry, templates included (order: table slots).
    pub fn connections(&self, now: Time) -> Vec<ConnView> {
        self.conns
            .iter()
            .map(|(i, c)| self.view_of(i, c, now))
            .collect()
    }

    /// Side-effect-free lookup of the entry a packet belongs to (the
    /// kernel's conn_in_get for [`Dir::In`], conn_out_get for [`Dir::Out`]),
    /// e.g. for relating an ICMP error's embedded header to its connection.
    /// Entries whose deadline passed are not returned.
    pub fn lookup(&self, now: Time, pkt: &Packet) -> Option<ConnView> {
        let proto = pkt.proto.number();
        let idx = match pkt.dir {
            Dir::In => {
                let vaddr = addr16(pkt.dst.ip());
                let vport = pkt.dst.port();
                self.conns.find(
                    proto,
                    pkt.src.is_ipv6(),
                    &addr16(pkt.src.ip()),
                    pkt.src.port(),
                    |c| !c.is_template() && c.vport == vport && c.vaddr == vaddr,
                )?
            }
            Dir::Out => {
                let src = addr16(pkt.src.ip());
                let sport = pkt.src.port();
                self.conns.find(
                    proto,
                    pkt.dst.is_ipv6(),
                    &addr16(pkt.dst.ip()),
                    pkt.dst.port(),
                    |c| {
                        !c.is_template()
                            && if c.flags & F_FWD_MASK == 0 {
                                c.dport == sport && c.daddr == src
                            } else {
                                c.vport == sport && c.vaddr == src
                            }
                    },
                )?
            }
        };
        let c = self
            .conns
            .get(idx)
            .filter(|c| c.expires > now.as_millis())?;
        Some(self.view_of(idx, c, now))
    }

    /// One entry by handle (None if it expired).
    pub fn conn(&self, now: Time, r: ConnRef) -> Option<ConnView> {
        let c = self.conns.get(r.idx).filter(|c| c.gen == r.gen)?;
        Some(self.view_of(r.idx, c, now))
    }

    // ------------------------------------------------------------------
    // data path

    /// One packet: lookup or create + state + stats (ip_vs_in / ip_vs_out).
    pub fn process(&mut self, now: Time, pkt: &Packet, exclude: &[(IpAddr, u16)]) -> Verdict {
        self.process_payload(now, pkt, exclude, &[])
    }

    /// [`Ipvs::process`] with the packet's L4 payload, which a persistence
    /// engine reads when a new flow is scheduled (`--pe sip`: the SIP
    /// Call-ID of a UDP message). Engines pass the payload of client->VIP
    /// UDP packets; without it such a service ignores new flows, as the
    /// kernel ignores packets without a Call-ID.
    pub fn process_payload(
        &mut self,
        now: Time,
        pkt: &Packet,
        exclude: &[(IpAddr, u16)],
        payload: &[u8],
    ) -> Verdict {
        if pkt.src.is_ipv4() != pkt.dst.is_ipv4() {
            return Verdict::NotOurs;
        }
        match pkt.dir {
            Dir::In => self.process_in(now, pkt, exclude, payload),
            Dir::Out => self.process_out(now, pkt),
        }
    }

    fn lookup_in(&mut self, now: Time, pkt: &Packet) -> Option<u32> {
        let v6 = pkt.src.is_ipv6();
        let caddr = addr16(pkt.src.ip());
        let vaddr = addr16(pkt.dst.ip());
        let vport = pkt.dst.port();
        let idx = self
            .conns
            .find(pkt.proto.number(), v6, &caddr, pkt.src.port(), |c| {
                !c.is_template() && c.vport == vport && c.vaddr == vaddr
            })?;
        self.check_expired(now, idx)
    }

    /// Runs a due timer immediately if the caller has not called
    /// handle_timeout yet; returns the entry if it is still alive.
    #[inline]
    fn check_expired(&mut self, now: Time, idx: u32) -> Option<u32> {
        let c = self.conns.get(idx)?;
        if c.expires > now.as_millis() {
            return Some(idx);
        }
        let fire = Time::from_millis(c.expires);
        if self.expire_entry_at(now, fire, now.as_millis().saturating_add(1), idx, false) {
            None
        } else {
            Some(idx)
        }
    }

    fn process_in(
        &mut self,
        now: Time,
        pkt: &Packet,
        exclude: &[(IpAddr, u16)],
        payload: &[u8],
    ) -> Verdict {
        if self.backup_only() {
            return Verdict::NotOurs;
        }
        let mut cp = self.lookup_in(now, pkt);
        let is_new = match pkt.proto {
            Protocol::Tcp => pkt.tcp_flags.contains(TcpFlags::SYN),
            Protocol::Sctp => pkt.tcp_flags.0 == 1,
            Protocol::Udp => false,
        };
        if let (true, Some(idx)) = (is_new, cp) {
            if let Some(c) = self.conns.get(idx) {
                let c = *c;
                let dest_w0 = self.dests.get(c.dest).is_some_and(|d| d.weight() == 0);
                // expire_nodest_conn && dest weight 0, or an expected reuse
                let resched = (self.sysctl.expire_nodest_conn && c.dest != NIL && dest_w0)
                    || (self.sysctl.conn_reuse_mode != 0 && self.is_new_conn_expected(&c));
                if resched {
                    if c.n_control == 0 {
                        self.expire_entry(now, idx, false);
                    }
                    cp = None;
                }
            }
        }
        // rvs extension: a caller retrying after a failed connect() passes the
        // failed destination in `exclude`; an entry bound to an excluded
        // destination is dropped and the packet scheduled anew.
        if let (false, Some(idx)) = (exclude.is_empty(), cp) {
            if let Some(c) = self.conns.get(idx) {
                let daddr = ip_from16(&c.daddr, c.flags & F_DV6 != 0);
                if exclude.iter().any(|&(a, p)| a == daddr && p == c.dport) {
                    if c.n_control == 0 {
                        self.expire_entry(now, idx, false);
                    }
                    cp = None;
                }
            }
        }
        if let Some(idx) = cp {
            if let Some(c) = self.conns.get(idx) {
                if c.dest != NIL && !self.dests.get(c.dest).is_some_and(|d| d.available) {
                    if self.sysctl.expire_nodest_conn {
                        self.expire_entry(now, idx, false);
                        cp = None;
                    } else {
                        return Verdict::Drop(DropReason::DestUnavailable);
                    }
                }
            }
        }
        let created = cp.is_none();
        let idx = match cp {
            Some(i) => i,
            None => match self.try_to_schedule(now, pkt, exclude, payload) {
                Ok(i) => i,
                Err(v) => return v,
            },
        };
        self.packet_in(now, idx, pkt, created)
    }

    fn is_new_conn_expected(&self, c: &Conn) -> bool {
        if c.control != NIL {
            return false;
        }
        match Protocol::from_number(c.proto) {
            Some(Protocol::Tcp) => {
                c.state == proto::TCP_TIME_WAIT
                    || (self.sysctl.conn_reuse_mode & 2 != 0
                        && c.state == proto::TCP_FIN_WAIT
                        && c.flags & F_NOOUTPUT != 0)
            }
            Some(Protocol::Sctp) => c.state == proto::SCTP_CLOSED,
            _ => false,
        }
    }

    /// Steps 8-12 of ip_vs_in for an entry we have (stats, state, in_pkts,
    /// timer re-arm), with one borrow of the entry and of its dest.
    fn packet_in(&mut self, now: Time, idx: u32, pkt: &Packet, created: bool) -> Verdict {
        let secure = self.sysctl.secure_tcp;
        let Ipvs {
            conns,
            dests,
            svcs,
            total,
            tcp_timeouts,
            udp_timeout,
            ..
        } = self;
        let Some(c) = conns.get_mut(idx) else {
            return Verdict::Drop(DropReason::NoMemory);
        };
        let mut d = dests.get_mut(c.dest);
        // ip_vs_in_stats
        if let Some(d) = d.as_deref_mut() {
            add_stats(d, svcs, total, true, 1, pkt.len as u64);
        }
        let tun = d
            .as_deref()
            .map_or((TunType::Ipip, 0, TunCsum::NoCsum), |d| {
                (d.conf.tun_type, d.conf.tun_port, d.conf.tun_flags)
            });
        let assure = transition(
            c,
            d,
            Dir::In,
            pkt.tcp_flags,
            secure,
            tcp_timeouts,
            *udp_timeout,
        );
        c.in_pkts = c.in_pkts.wrapping_add(1);
        let in_pkts = c.in_pkts;
        let fwd = FwdMethod::from_value((c.flags & F_FWD_MASK) as u32).unwrap_or(FwdMethod::Masq);
        let dest = SocketAddr::new(ip_from16(&c.daddr, c.flags & F_DV6 != 0), c.dport);
        let one_packet = c.flags & F_ONE_PACKET != 0;
        let gen = c.gen;
        // ip_vs_conn_put
        c.expires = now.plus_secs(c.timeout as u64).as_millis();
        let tick = c.expires / 1000;
        let rearm = !one_packet && tick < c.armed as u64;
        if rearm {
            conns.arm(idx, tick);
        }
        if let Some(control) = assure {
            self.assure_ct(control);
        }
        // ip_vs_in: ip_vs_sync_conn(ipvs, cp, pkts) while a master runs
        self.sync_conn(now, idx, in_pkts);
        let conn = if one_packet {
            // a ONE_PACKET conn expires as soon as it is put
            self.expire_entry(now, idx, false);
            ConnRef::NONE
        } else {
            ConnRef { idx, gen }
        };
        Verdict::Forward {
            conn,
            dest,
            fwd,
            tun,
            created,
        }
    }

    /// Fast path for a caller that already holds the connection's handle
    /// (e.g. the proxy engine relaying bytes of an accepted connection):
    /// the same per-packet work as [`Ipvs::process`] for an existing entry
    /// (stats, state transition, timer re-arm) without the tuple lookup.
    /// Returns `NotOurs` if the handle is stale or the entry has expired,
    /// and applies the deleted-destination rule (Drop, or expire with
    /// expire_nodest_conn) like ip_vs_in.
    pub fn process_conn(
        &mut self,
        now: Time,
        conn: ConnRef,
        dir: Dir,
        tcp_flags: TcpFlags,
        len: u32,
    ) -> Verdict {
        let Some(c) = self
            .conns
            .get(conn.idx)
            .filter(|c| c.gen == conn.gen && !c.is_template())
        else {
            return Verdict::NotOurs;
        };
        let (dest, proto, v6) = (c.dest, c.proto, c.v6());
        let (caddr, cport, vaddr, vport) = (c.caddr, c.cport, c.vaddr, c.vport);
        let Some(idx) = self.check_expired(now, conn.idx) else {
            return Verdict::NotOurs;
        };
        let pkt = Packet {
            fwmark: 0,
            proto: Protocol::from_number(proto).unwrap_or(Protocol::Tcp),
            src: SocketAddr::new(ip_from16(&caddr, v6), cport),
            dst: SocketAddr::new(ip_from16(&vaddr, v6), vport),
            tcp_flags,
            len,
            dir,
        };
        match dir {
            Dir::In => {
                if dest != NIL && !self.dests.get(dest).is_some_and(|d| d.available) {
                    if self.sysctl.expire_nodest_conn {
                        self.expire_entry(now, idx, false);
                        return Verdict::NotOurs;
                    }
                    return Verdict::Drop(DropReason::DestUnavailable);
                }
                self.packet_in(now, idx, &pkt, false)
            }
            Dir::Out => self.packet_out(now, idx, &pkt),
        }
    }

    /// Changes whenever a service or destination is added, edited or
    /// removed (and on flush / new timeouts). A data-path flow cache that
    /// forwards on remembered verdicts drops them when this moves, so a
    /// deleted or edited destination takes effect at once.
    pub fn config_gen(&self) -> u64 {
        self.config_gen
    }

    /// Whether further packets of `conn` in direction `dir` that carry no
    /// state-changing content (TCP: none of SYN, FIN, RST; UDP: any) leave
    /// the entry as it is: TCP in ESTABLISHED (and, for `Dir::Out`, after the
    /// first reply was seen), any UDP entry. Only such packets may be
    /// forwarded by a per-thread flow cache and reported later in bulk with
    /// [`Ipvs::account_conn`].
    pub fn conn_is_steady(&self, conn: ConnRef, dir: Dir) -> bool {
        let Some(c) = self
            .conns
            .get(conn.idx)
            .filter(|c| c.gen == conn.gen && !c.is_template())
        else {
            return false;
        };
        if c.flags & F_ONE_PACKET != 0 {
            return false;
        }
        match c.proto {
            6 => {
                c.state == proto::TCP_ESTABLISHED && !(dir == Dir::Out && c.flags & F_NOOUTPUT != 0)
            }
            17 => true,
            _ => false,
        }
    }

    /// Bulk form of [`Ipvs::process_conn`] for `pkts` packets (`bytes` in
    /// all) of a steady connection ([`Ipvs::conn_is_steady`]) that the data
    /// path forwarded from its flow cache, the last one at `now`: the same
    /// counters (dest, service, total; the entry's in_pkts), the same
    /// re-evaluation of the state's timeout and the same timer re-arm as
    /// that many ACK packets through [`Ipvs::process`]. Returns false when
    /// the handle is stale, the entry expired, or (inbound) its destination
    /// is no longer available (with expire_nodest_conn the entry is then
    /// expired, as `ip_vs_in` would): the caller must forget the flow and
    /// send its next packet through [`Ipvs::process`].
    pub fn account_conn(
        &mut self,
        now: Time,
        conn: ConnRef,
        dir: Dir,
        pkts: u32,
        bytes: u64,
    ) -> bool {
        if !self.conn_is_steady(conn, dir) {
            return false;
        }
        let Some(idx) = self.check_expired(now, conn.idx) else {
            return false;
        };
        let secure = self.sysctl.secure_tcp;
        let Ipvs {
            conns,
            dests,
            svcs,
            total,
            tcp_timeouts,
            udp_timeout,
            ..
        } = self;
        let Some(c) = conns.get_mut(idx) else {
            return false;
        };
        let mut d = dests.get_mut(c.dest);
        let available = d.as_deref().is_some_and(|d| d.available);
        if dir == Dir::In && c.dest != NIL && !available {
            if self.sysctl.expire_nodest_conn {
                self.expire_entry(now, idx, false);
            }
            return false;
        }
        if let Some(d) = d.as_deref_mut() {
            add_stats(d, svcs, total, dir == Dir::In, pkts as u64, bytes);
        }
        // ESTABLISHED + ACK stays ESTABLISHED (every table); this refreshes
        // the state's timeout exactly as those packets would have.
        let _ = transition(c, d, dir, TcpFlags::ACK, secure, tcp_timeouts, *udp_timeout);
        let before = c.in_pkts;
        if dir == Dir::In {
            c.in_pkts = c.in_pkts.wrapping_add(pkts);
        }
        self.conn_put(now, idx);
        if dir == Dir::In {
            self.sync_conn_bulk(now, idx, before, pkts);
        }
        true
    }

    /// An ICMP error related to `conn` (`ip_vs_in_icmp` /
    /// `handle_response_icmp`): counted in the entry's destination, service
    /// and total stats (`ip_vs_in_stats` / `ip_vs_out_stats`) with `len`
    /// bytes; no state change, no timer re-arm. False if the entry is gone
    /// (then the error is not forwarded).
    pub fn count_related(&mut self, now: Time, conn: ConnRef, dir: Dir, len: u32) -> bool {
        let Some(c) = self
            .conns
            .get(conn.idx)
            .filter(|c| c.gen == conn.gen && !c.is_template() && c.expires > now.as_millis())
        else {
            return false;
        };
        let did = c.dest;
        self.count_stats(did, len, dir == Dir::In);
        true
    }

    fn process_out(&mut self, now: Time, pkt: &Packet) -> Verdict {
        let v6 = pkt.dst.is_ipv6();
        let client = addr16(pkt.dst.ip());
        let src = addr16(pkt.src.ip());
        let sport = pkt.src.port();
        let found = self
            .conns
            .find(pkt.proto.number(), v6, &client, pkt.dst.port(), |c| {
                if c.is_template() {
                    return false;
                }
                if c.flags & F_FWD_MASK == 0 {
                    c.dport == sport && c.daddr == src
                } else {
                    c.vport == sport && c.vaddr == src
                }
            });
        let Some(idx) = found.and_then(|i| self.check_expired(now, i)) else {
            return Verdict::NotOurs;
        };
        self.packet_out(now, idx, pkt)
    }

    /// ip_vs_out for a matched entry: stats, OUTPUT transition, re-arm.
    fn packet_out(&mut self, now: Time, idx: u32, pkt: &Packet) -> Verdict {
        let Some(c) = self.conns.get(idx) else {
            return Verdict::NotOurs;
        };
        let did = c.dest;
        self.count_stats(did, pkt.len, false);
        self.set_state(idx, Dir::Out, pkt.tcp_flags);
        self.conn_put(now, idx);
        let Some(c) = self.conns.get(idx) else {
            return Verdict::NotOurs;
        };
        Verdict::Reply {
            conn: ConnRef { idx, gen: c.gen },
            vaddr: SocketAddr::new(ip_from16(&c.vaddr, c.v6()), c.vport),
            fwd: FwdMethod::from_value((c.flags & F_FWD_MASK) as u32).unwrap_or(FwdMethod::Masq),
        }
    }

    /// ip_vs_in_stats / ip_vs_out_stats (only for available dests).
    #[inline]
    fn count_stats(&mut self, did: DestId, len: u32, inbound: bool) {
        if let Some(d) = self.dests.get_mut(did) {
            add_stats(d, &mut self.svcs, &mut self.total, inbound, 1, len as u64);
        }
    }

    /// Protocol state transition (set_tcp_state / udp / set_sctp_state).
    fn set_state(&mut self, idx: u32, dir: Dir, flags: TcpFlags) {
        let secure = self.sysctl.secure_tcp;
        let Some(c) = self.conns.get_mut(idx) else {
            return;
        };
        let d = self.dests.get_mut(c.dest);
        let assure = transition(
            c,
            d,
            dir,
            flags,
            secure,
            &self.tcp_timeouts,
            self.udp_timeout,
        );
        if let Some(control) = assure {
            self.assure_ct(control);
        }
    }

    /// ip_vs_control_assure_ct.
    fn assure_ct(&mut self, control: u32) {
        if control == NIL {
            return;
        }
        if let Some(t) = self.conns.get_mut(control) {
            if t.is_template() {
                t.state |= CTPL_ASSURED;
            }
        }
    }

    /// ip_vs_conn_put: re-arm the entry's timer to now + timeout.
    #[inline]
    fn conn_put(&mut self, now: Time, idx: u32) {
        let Some(c) = self.conns.get_mut(idx) else {
            return;
        };
        c.expires = now.plus_secs(c.timeout as u64).as_millis();
        let tick = c.expires / 1000;
        if tick < c.armed as u64 {
            self.conns.arm(idx, tick);
        }
    }

    /// ip_vs_service_find.
    fn find_service(&self, pkt: &Packet) -> Option<u32> {
        let v6 = pkt.dst.is_ipv6();
        if pkt.fwmark != 0 {
            if let Some(id) = self.svc_id(&SvcKey::Fwmark {
                mark: pkt.fwmark,
                v6,
            }) {
                return Some(id);
            }
        }
        let addr = pkt.dst.ip();
        let vport = pkt.dst.port();
        if let Some(id) = self.svc_id(&SvcKey::Addr {
            proto: pkt.proto,
            addr,
            port: vport,
        }) {
            return Some(id);
        }
        if pkt.proto == Protocol::Tcp && self.ftpsvc > 0 && (vport == FTPDATA || vport >= 1024) {
            if let Some(id) = self.svc_id(&SvcKey::Addr {
                proto: pkt.proto,
                addr,
                port: FTPPORT,
            }) {
                return Some(id);
            }
        }
        if self.nullsvc > 0 {
            if let Some(id) = self.svc_id(&SvcKey::Addr {
                proto: pkt.proto,
                addr,
                port: 0,
            }) {
                return Some(id);
            }
        }
        None
    }

    /// pp->conn_schedule + ip_vs_schedule + ip_vs_leave.
    fn try_to_schedule(
        &mut self,
        now: Time,
        pkt: &Packet,
        exclude: &[(IpAddr, u16)],
        payload: &[u8],
    ) -> Result<u32, Verdict> {
        match pkt.proto {
            Protocol::Tcp => {
                let f = pkt.tcp_flags;
                if (!f.contains(TcpFlags::SYN) && !self.sysctl.sloppy_tcp)
                    || f.contains(TcpFlags::RST)
                {
                    return Err(Verdict::NotOurs);
                }
            }
            Protocol::Sctp => {
                if pkt.tcp_flags.0 != 1 && !self.sysctl.sloppy_sctp {
                    return Err(Verdict::NotOurs);
                }
            }
            Protocol::Udp => {}
        }
        let sid = self.find_service(pkt).ok_or(Verdict::NotOurs)?;
        // ip_vs_schedule: never schedule active FTP data from a real server
        if pkt.src.port() == FTPDATA {
            return Err(Verdict::NotOurs);
        }
        // ip_vs_conn_fill_param_persist: a persistent service with a PE
        // ignores packets the engine finds no data in (ip_vs_sip_fill_param:
        // UDP with a Call-ID only)
        let pe = match self.svc(sid) {
            Some(svc)
                if svc.conf.flags & SVC_F_PERSISTENT != 0
                    && svc.conf.pe_name.as_deref() == Some("sip") =>
            {
                if pkt.proto != Protocol::Udp {
                    return Err(Verdict::NotOurs);
                }
                Some(crate::pe_sip::sip_callid(payload).ok_or(Verdict::NotOurs)?)
            }
            _ => None,
        };
        self.set_excluded(sid, exclude, true);
        let r = self.schedule(now, sid, pkt, pe);
        self.set_excluded(sid, exclude, false);
        match r {
            Ok(Some(idx)) => Ok(idx),
            Ok(None) => {
                // ip_vs_leave
                let port = self.svc(sid).map_or(0, |s| s.conf.key.port());
                if port == FTPPORT && pkt.dst.port() != FTPPORT {
                    Err(Verdict::NotOurs)
                } else {
                    Err(Verdict::NoDest)
                }
            }
            Err(()) => Err(Verdict::Drop(DropReason::NoMemory)),
        }
    }

    fn set_excluded(&mut self, sid: u32, exclude: &[(IpAddr, u16)], on: bool) {
        if exclude.is_empty() {
            return;
        }
        let Some(svc) = self.svcs.get(sid as usize).and_then(|s| s.as_ref()) else {
            return;
        };
        for &id in &svc.list {
            if let Some(d) = self.dests.get_mut(id) {
                if exclude
                    .iter()
                    .any(|&(a, p)| a == d.conf.addr && p == d.conf.port)
                {
                    d.excluded = on;
                }
            }
        }
    }

    fn run_scheduler(&mut self, now: Time, sid: u32, pkt: &Packet) -> Option<DestId> {
        let lblc_expiration = self.sysctl.lblc_expiration;
        let lblcr_expiration = self.sysctl.lblcr_expiration;
        let has_lblc = {
            let svc = self.svcs.get_mut(sid as usize)?.as_mut()?;
            let ctx = SchedCtx {
                dests: &self.dests,
                list: &svc.list,
                proto: pkt.proto,
                saddr: pkt.src.ip(),
                sport: pkt.src.port(),
                daddr: pkt.dst.ip(),
                svc_flags: svc.conf.flags,
                now,
                lblc_expiration,
                lblcr_expiration,
            };
            let r = svc.sched.schedule(&ctx);
            (
                r,
                matches!(svc.sched, Scheduler::Lblc(_) | Scheduler::Lblcr(_)),
            )
        };
        if has_lblc.1 && self.gc_timer.is_none() {
            self.gc_timer = Some(Time::from_millis(
                now.as_millis().saturating_add(GC_INTERVAL_MS),
            ));
        }
        has_lblc.0
    }

    /// ip_vs_schedule. Ok(None) = no destination (ignored == 0).
    fn schedule(
        &mut self,
        now: Time,
        sid: u32,
        pkt: &Packet,
        pe: Option<&[u8]>,
    ) -> Result<Option<u32>, ()> {
        let Some(svc) = self.svc(sid) else {
            return Ok(None);
        };
        let svc_flags = svc.conf.flags;
        let svc_port = svc.conf.key.port();
        let is_fwmark = matches!(svc.conf.key, SvcKey::Fwmark { .. });
        if svc_flags & SVC_F_PERSISTENT != 0 {
            return self.sched_persist(now, sid, pkt, pe);
        }
        if !is_fwmark && pkt.dst.port() != svc_port {
            return Ok(None);
        }
        let Some(did) = self.run_scheduler(now, sid, pkt) else {
            return Ok(None);
        };
        let one_packet = svc_flags & SVC_F_ONEPACKET != 0 && pkt.proto == Protocol::Udp;
        let dport = self.dests.get(did).map_or(0, |d| d.conf.port);
        let dport = if dport != 0 { dport } else { pkt.dst.port() };
        let v6 = pkt.src.is_ipv6();
        let idx = self
            .conn_new(
                now,
                pkt.proto.number(),
                v6,
                addr16(pkt.src.ip()),
                pkt.src.port(),
                addr16(pkt.dst.ip()),
                pkt.dst.port(),
                did,
                dport,
                if one_packet { F_ONE_PACKET } else { 0 },
            )
            .ok_or(())?;
        self.conn_stats(did);
        Ok(Some(idx))
    }

    /// ip_vs_sched_persist.
    fn sched_persist(
        &mut self,
        now: Time,
        sid: u32,
        pkt: &Packet,
        pe: Option<&[u8]>,
    ) -> Result<Option<u32>, ()> {
        let Some(svc) = self.svc(sid) else {
            return Ok(None);
        };
        let svc_port = svc.conf.key.port();
        let fwmark = svc.conf.key.fwmark();
        let netmask = svc.conf.netmask;
        let svc_flags = svc.conf.flags;
        let svc_timeout = svc.conf.timeout;
        let v6 = pkt.src.is_ipv6();
        let dst_port = pkt.dst.port();
        let snet = addr16(mask_addr(pkt.src.ip(), netmask));
        // template key (cport always 0)
        let (t_proto, t_vaddr, t_vport) = if dst_port == svc_port {
            let vport = if svc_port == FTPPORT { 0 } else { dst_port };
            (pkt.proto.number(), addr16(pkt.dst.ip()), vport)
        } else if fwmark != 0 {
            let mut a = [0u8; 16];
            a[..4].copy_from_slice(&fwmark.to_be_bytes());
            (0u8, a, 0u16)
        } else {
            (pkt.proto.number(), addr16(pkt.dst.ip()), 0u16)
        };
        let ct = self
            .find_template(t_proto, v6, &snet, t_vport, &t_vaddr, pe)
            .and_then(|i| self.check_expired(now, i));
        let ct = match ct {
            Some(i) if self.check_template(i) => Some(i),
            _ => None,
        };
        let (ct, did) = match ct {
            Some(i) => (i, self.conns.get(i).map_or(NIL, |c| c.dest)),
            None => {
                let Some(did) = self.run_scheduler(now, sid, pkt) else {
                    return Ok(None);
                };
                let dport = if dst_port == svc_port && svc_port != FTPPORT {
                    self.dests.get(did).map_or(0, |d| d.conf.port)
                } else {
                    0
                };
                let ct = self
                    .conn_new(
                        now, t_proto, v6, snet, 0, t_vaddr, t_vport, did, dport, F_TEMPLATE,
                    )
                    .ok_or(())?;
                if let Some(c) = self.conns.get_mut(ct) {
                    c.timeout = svc_timeout;
                }
                if let Some(pe) = pe {
                    self.pe_data.insert(ct, pe.into());
                }
                (ct, did)
            }
        };
        let dest_port = self.dests.get(did).map_or(0, |d| d.conf.port);
        let mut dport = dst_port;
        if dport == svc_port && dest_port != 0 {
            dport = dest_port;
        }
        let one_packet = svc_flags & SVC_F_ONEPACKET != 0 && pkt.proto == Protocol::Udp;
        let Some(cp) = self.conn_new(
            now,
            pkt.proto.number(),
            v6,
            addr16(pkt.src.ip()),
            pkt.src.port(),
            addr16(pkt.dst.ip()),
            dst_port,
            did,
            dport,
            if one_packet { F_ONE_PACKET } else { 0 },
        ) else {
            self.conn_put(now, ct);
            return Err(());
        };
        // ip_vs_control_add
        if let Some(c) = self.conns.get_mut(cp) {
            c.control = ct;
        }
        if let Some(t) = self.conns.get_mut(ct) {
            t.n_control = t.n_control.saturating_add(1);
        }
        self.conn_put(now, ct);
        self.conn_stats(did);
        Ok(Some(cp))
    }

    /// ip_vs_ct_in_get: the template of (protocol, client network, VIP,
    /// vport), and with a persistence engine the same PE data (the SIP PE's
    /// ct_match); a template with PE data never matches a lookup without.
    fn find_template(
        &self,
        proto: u8,
        v6: bool,
        snet: &[u8; 16],
        vport: u16,
        vaddr: &[u8; 16],
        pe: Option<&[u8]>,
    ) -> Option<u32> {
        self.conns.find_by(proto, v6, snet, 0, |idx, c| {
            c.is_template()
                && c.vport == vport
                && c.vaddr == *vaddr
                && self.pe_data.get(&idx).map(|d| &d[..]) == pe
        })
    }

    /// ip_vs_check_template; invalidates unusable templates.
    fn check_template(&mut self, ct: u32) -> bool {
        let Some(c) = self.conns.get(ct) else {
            return false;
        };
        let ok = match self.dests.get(c.dest) {
            None => false,
            Some(d) => {
                d.available
                    && !d.excluded
                    && !(self.sysctl.expire_quiescent_template && d.weight() == 0)
            }
        };
        if !ok && c.vport != 0xffff {
            // unhash, dport = vport = 0xffff, cport = 0, rehash
            self.conns.unhash(ct);
            if let Some(c) = self.conns.get_mut(ct) {
                c.dport = 0xffff;
                c.vport = 0xffff;
                c.cport = 0;
            }
            self.conns.hash(ct);
        }
        ok
    }

    /// ip_vs_conn_stats: conns++ on dest, service and total.
    fn conn_stats(&mut self, did: DestId) {
        let Some(d) = self.dests.get_mut(did) else {
            return;
        };
        d.stats.conns = d.stats.conns.wrapping_add(1);
        if let Some(sid) = d.svc {
            if let Some(s) = self.svcs.get_mut(sid as usize).and_then(|s| s.as_mut()) {
                s.stats.conns = s.stats.conns.wrapping_add(1);
            }
        }
        self.total.conns = self.total.conns.wrapping_add(1);
    }

    /// ip_vs_conn_new + ip_vs_bind_dest + hash.
    #[allow(clippy::too_many_arguments)]
    fn conn_new(
        &mut self,
        now: Time,
        proto: u8,
        v6: bool,
        caddr: [u8; 16],
        cport: u16,
        vaddr: [u8; 16],
        vport: u16,
        did: DestId,
        dport: u16,
        extra: u16,
    ) -> Option<u32> {
        let d = self.dests.get(did)?;
        let fwd = d.conf.fwd.value() as u16;
        let mut flags = fwd | F_INACTIVE | extra;
        if d.conf.fwd != FwdMethod::Masq {
            flags |= F_NOOUTPUT;
        }
        if v6 {
            flags |= F_V6;
        }
        if d.conf.addr.is_ipv6() {
            flags |= F_DV6;
        }
        let c = Conn {
            caddr,
            vaddr,
            daddr: addr16(d.conf.addr),
            expires: now.plus_secs(INITIAL_TIMEOUT as u64).as_millis(),
            timeout: INITIAL_TIMEOUT,
            dest: did,
            control: NIL,
            n_control: 0,
            armed: u32::MAX,
            gen: 0,
            in_pkts: 0,
            sync_end: 0,
            cport,
            vport,
            dport,
            flags,
            proto,
            state: 0,
            old_state: 0,
        };
        let idx = self.conns.alloc(c)?;
        // bind_dest
        if let Some(d) = self.dests.get_mut(did) {
            d.refcnt = d.refcnt.saturating_add(1);
            if extra & F_TEMPLATE != 0 {
                d.persistconns = d.persistconns.saturating_add(1);
            } else {
                d.inactconns = d.inactconns.saturating_add(1);
            }
            if d.conf.u_threshold != 0
                && d.activeconns.saturating_add(d.inactconns) >= d.conf.u_threshold
            {
                d.overload = true;
            }
        }
        if extra & F_ONE_PACKET == 0 {
            self.conns.hash(idx);
        }
        Some(idx)
    }

    /// ip_vs_conn_expire. `forced` = the timeout-0 paths (flush,
    /// expire_nodest flush) which also drop unused non-assured templates.
    /// Returns true if the entry was freed.
    fn expire_entry(&mut self, now: Time, idx: u32, forced: bool) -> bool {
        self.expire_entry_at(now, now, 0, idx, forced)
    }

    /// As [`Self::expire_entry`] for a timer that was due at `fire` (<= now):
    /// expire_later re-arms relative to the due time, as the kernel timer
    /// would have, skipping periods that already passed.
    fn expire_entry_at(
        &mut self,
        now: Time,
        fire: Time,
        floor_ms: u64,
        idx: u32,
        forced: bool,
    ) -> bool {
        let Some(c) = self.conns.get(idx) else {
            return false;
        };
        let c = *c;
        if c.n_control > 0 {
            // expire_later: +60 s (possibly several periods if we are late)
            let fire = fire.min(now).as_millis();
            let period = EXPIRE_LATER as u64 * 1000;
            let mut next = fire.saturating_add(period);
            if next < floor_ms {
                next =
                    fire.saturating_add(period.saturating_mul((floor_ms - fire).div_ceil(period)));
            }
            if let Some(e) = self.conns.get_mut(idx) {
                e.timeout = EXPIRE_LATER;
                e.expires = next;
                let tick = next / 1000;
                if tick < e.armed as u64 {
                    self.conns.arm(idx, tick);
                }
            }
            // expire_later: a master re-syncs the entry kept alive (a
            // template with connections), so backups do not expire it
            let threshold = self.sysctl.sync_threshold.0;
            self.sync_conn(now, idx, threshold);
            return false;
        }
        self.conns.unhash(idx);
        // unbind dest
        if let Some(d) = self.dests.get_mut(c.dest) {
            if c.is_template() {
                d.persistconns = d.persistconns.saturating_sub(1);
            } else if c.flags & F_INACTIVE != 0 {
                d.inactconns = d.inactconns.saturating_sub(1);
            } else {
                d.activeconns = d.activeconns.saturating_sub(1);
            }
            let total = d.activeconns.saturating_add(d.inactconns);
            if d.conf.l_threshold != 0 {
                if total < d.conf.l_threshold {
                    d.overload = false;
                }
            } else if d.conf.u_threshold != 0 {
                if (total as u64) * 4 < (d.conf.u_threshold as u64) * 3 {
                    d.overload = false;
                }
            } else {
                d.overload = false;
            }
            d.refcnt = d.refcnt.saturating_sub(1);
        }
        self.conns.free(idx);
        if c.is_template() && !self.pe_data.is_empty() {
            self.pe_data.remove(&idx);
        }
        // control_del
        if c.control != NIL {
            let mut drop_tpl = false;
            if let Some(t) = self.conns.get_mut(c.control) {
                t.n_control = t.n_control.saturating_sub(1);
                drop_tpl =
                    forced && t.n_control == 0 && (!t.is_template() || t.state & CTPL_ASSURED == 0);
            }
            if drop_tpl {
                self.expire_entry(now, c.control, true);
            }
        }
        true
    }

    /// ip_vs_expire_nodest_conn_flush: delete every entry whose dest is
    /// not available and that controls nothing.
    fn expire_nodest_flush(&mut self, now: Time) {
        let victims: Vec<u32> = self
            .conns
            .iter()
            .filter(|(_, c)| {
                c.n_control == 0 && !self.dests.get(c.dest).is_some_and(|d| d.available)
            })
            .map(|(i, _)| i)
            .collect();
        for i in victims {
            if self.conns.get(i).is_some_and(|c| c.n_control == 0) {
                self.expire_entry(now, i, true);
            }
        }
    }

    // ------------------------------------------------------------------
    // timers

    /// Next deadline at which [`Ipvs::handle_timeout`] has work (coarse:
    /// connection expiry is checked with 1 s granularity).
    pub fn poll_timeout(&self) -> Option<Time> {
        let mut t: Option<Time> = None;
        let mut consider = |x: Option<Time>| {
            if let Some(x) = x {
                t = Some(t.map_or(x, |t| t.min(x)));
            }
        };
        if self.conns.len() > 0 {
            consider(Some(Time::from_secs(self.wheel_tick.saturating_add(1))));
        }
        consider(self.timeout_pending);
        consider(self.trash_timer);
        consider(self.gc_timer);
        t
    }

    /// Expires everything due at `now` (connections, templates, trashed
    /// destinations, lblc/lblcr cache entries).
    pub fn handle_timeout(&mut self, now: Time) {
        self.handle_timeout_budget(now, usize::MAX);
    }

    /// As [`Ipvs::handle_timeout`], but examines at most `budget` queued
    /// entries, so a shell holding a lock can bound the pause when very many
    /// entries fall due at once. Returns true if due work is left (call again;
    /// [`Ipvs::poll_timeout`] then lies in the past).
    pub fn handle_timeout_budget(&mut self, now: Time, budget: usize) -> bool {
        let mut budget = budget;
        let mut more = false;
        self.timeout_pending = None;
        let now_tick = now.as_millis() / 1000;
        if now_tick >= self.wheel_tick {
            let first = self
                .wheel_tick
                .max(now_tick.saturating_sub(crate::conn::WHEEL_SIZE as u64 - 1));
            let mut t = first;
            loop {
                if !self.run_bucket(now, t, &mut budget) {
                    // bucket t not finished: resume there next time
                    self.wheel_tick = t;
                    more = true;
                    self.timeout_pending = Some(now);
                    break;
                }
                if t == now_tick {
                    self.wheel_tick = now_tick;
                    break;
                }
                t += 1;
            }
        }
        if let Some(tt) = self.trash_timer {
            if now >= tt {
                self.trash_expire(now);
            }
        }
        if let Some(gt) = self.gc_timer {
            if now >= gt {
                let (e1, e2) = (self.sysctl.lblc_expiration, self.sysctl.lblcr_expiration);
                let mut any = false;
                for s in self.svcs.iter_mut().flatten() {
                    if matches!(s.sched, Scheduler::Lblc(_) | Scheduler::Lblcr(_)) {
                        s.sched.gc(now, e1, e2);
                        any = true;
                    }
                }
                self.gc_timer = any.then(|| {
                    Time::from_millis(gt.as_millis().saturating_add(GC_INTERVAL_MS)).max(now)
                });
            }
        }
        more
    }

    /// Processes the entries queued for tick `t`; false if the budget ran
    /// out first (the rest stays queued).
    fn run_bucket(&mut self, now: Time, t: u64, budget: &mut usize) -> bool {
        let mut bucket = self.conns.take_bucket(t);
        let ws = crate::conn::WHEEL_SIZE as u64;
        let mut done = bucket.len();
        for (k, &idx) in bucket.iter().enumerate() {
            if *budget == 0 {
                done = k;
                break;
            }
            *budget -= 1;
            let Some(c) = self.conns.get(idx) else {
                continue;
            };
            let armed = c.armed as u64;
            if armed % ws != t % ws {
                continue; // stale duplicate: re-armed elsewhere
            }
            if armed > t {
                self.conns.arm(idx, armed); // a later lap
                continue;
            }
            // expire in deadline order: an entry queued early whose deadline
            // moved to a later tick is re-queued there, even within a catch-up
            if c.expires <= now.as_millis() && c.expires / 1000 <= t {
                // the timer fired: the entry is no longer queued
                let fire = Time::from_millis(c.expires);
                if let Some(c) = self.conns.get_mut(idx) {
                    c.armed = u32::MAX;
                }
                let floor = t.saturating_add(1).saturating_mul(1000);
                self.expire_entry_at(now, fire, floor, idx, false);
            } else {
                let tick = c.expires / 1000;
                self.conns.arm(idx, tick);
            }
        }
        let finished = done == bucket.len();
        if !finished {
            // keep the unprocessed tail queued (their `armed` is unchanged)
            bucket.drain(..done);
            self.conns.requeue(t, bucket);
        }
        // a finished bucket's storage is freed here (see ConnTable::requeue)
        finished
    }

    /// ip_vs_dest_trash_expire.
    fn trash_expire(&mut self, now: Time) {
        let mut keep = Vec::with_capacity(self.trash.len());
        for &id in &self.trash {
            let Some(d) = self.dests.get_mut(id) else {
                continue;
            };
            if d.refcnt > 0 {
                keep.push(id);
                continue;
            }
            match d.idle_start {
                Some(s) if now.as_millis() >= s.as_millis().saturating_add(TRASH_PERIOD_MS) => {
                    self.dests.remove(id);
                }
                Some(_) => keep.push(id),
                None => {
                    d.idle_start = Some(now);
                    keep.push(id);
                }
            }
        }
        self.trash = keep;
        self.trash_timer = if self.trash.is_empty() {
            None
        } else {
            Some(Time::from_millis(
                now.as_millis().saturating_add(TRASH_PERIOD_MS / 2),
            ))
        };
    }

    /// One estimator tick (the shell calls this every 2 s).
    pub fn estimate(&mut self, now: Time) {
        let _ = now;
        if !self.sysctl.run_estimation || self.svc_map.is_empty() {
            return;
        }
        for s in self.svcs.iter_mut().flatten() {
            s.est.sample(&s.stats);
        }
        for (_, d) in self.dests.iter_mut() {
            if d.available {
                d.est.sample(&d.stats);
            }
        }
        self.total_est.sample(&self.total);
    }
}

/// ip_vs_in_stats / ip_vs_out_stats: `pkts` packets of `bytes` on an
/// available destination, its service and the totals.
#[inline]
fn add_stats(
    d: &mut Dest,
    svcs: &mut [Option<Service>],
    total: &mut Stats,
    inbound: bool,
    pkts: u64,
    bytes: u64,
) {
    if !d.available {
        return;
    }
    let bump = |s: &mut Stats| {
        if inbound {
            s.inpkts = s.inpkts.wrapping_add(pkts);
            s.inbytes = s.inbytes.wrapping_add(bytes);
        } else {
            s.outpkts = s.outpkts.wrapping_add(pkts);
            s.outbytes = s.outbytes.wrapping_add(bytes);
        }
    };
    bump(&mut d.stats);
    if let Some(s) = d
        .svc
        .and_then(|sid| svcs.get_mut(sid as usize))
        .and_then(|s| s.as_mut())
    {
        bump(&mut s.stats);
    }
    bump(total);
}

/// The protocol state machine step for one packet (set_tcp_state,
/// udp_state_transition, set_sctp_state), moving the dest between
/// activeconns and inactconns when the state changes. Returns the
/// controlling template to mark ASSURED, if any.
#[inline]
fn transition(
    c: &mut Conn,
    d: Option<&mut Dest>,
    dir: Dir,
    flags: TcpFlags,
    secure: bool,
    tcp_timeouts: &[u32; proto::TCP_NUM_STATES],
    udp_timeout: u32,
) -> Option<u32> {
    let old = c.state;
    let (new, active_new, established) = match c.proto {
        6 => {
            let mut off = if dir == Dir::In {
                proto::DIR_INPUT
            } else {
                proto::DIR_OUTPUT
            };
            if c.flags & F_NOOUTPUT != 0 {
                if dir == Dir::Out {
                    c.flags &= !F_NOOUTPUT;
                } else {
                    off = proto::DIR_INPUT_ONLY;
                }
            }
            let new = proto::tcp_next(secure, off, flags, old);
            c.state = new;
            c.timeout = tcp_timeouts[new as usize];
            (
                new,
                proto::tcp_state_active(new),
                new == proto::TCP_ESTABLISHED,
            )
        }
        17 => {
            c.timeout = udp_timeout;
            return (dir == Dir::Out && c.control != NIL).then_some(c.control);
        }
        132 => {
            let mut di = if dir == Dir::In { 0 } else { 1 };
            if c.flags & F_NOOUTPUT != 0 {
                if dir == Dir::Out {
                    c.flags &= !F_NOOUTPUT;
                } else {
                    di = 2;
                }
            }
            let new = proto::sctp_next(di, flags.0, old);
            c.state = new;
            c.timeout = proto::SCTP_TIMEOUTS[new as usize];
            let est = new == proto::SCTP_ESTABLISHED;
            (new, est, est)
        }
        _ => return None,
    };
    if new == old {
        return None;
    }
    if let Some(d) = d {
        let inactive = c.flags & F_INACTIVE != 0;
        if !inactive && !active_new {
            c.flags |= F_INACTIVE;
            d.activeconns = d.activeconns.saturating_sub(1);
            d.inactconns = d.inactconns.saturating_add(1);
        } else if inactive && active_new {
            c.flags &= !F_INACTIVE;
            d.activeconns = d.activeconns.saturating_add(1);
            d.inactconns = d.inactconns.saturating_sub(1);
        }
    }
    (established && c.control != NIL).then_some(c.control)
}

mod ext;
mod sync;

#[cfg(test)]
mod tests;
