//! tokio IO shell around the sans-IO [`Instance`]s.
//!
//! One task pumps every instance: it receives adverts from a raw IPPROTO 112
//! socket per interface and family (IPv4: joined to 224.0.0.18, TTL read from
//! the IPv4 header the raw socket delivers; IPv6: joined to ff02::12, hop
//! limit and destination from `IPV6_HOPLIMIT`/`IPV6_PKTINFO` cmsgs), feeds
//! them in, sleeps until the next deadline, sends [`Transmit`]s (IPv4: on an
//! `IPPROTO_RAW` header-included socket bound to the interface, TTL 255, TOS
//! 0xc0; IPv6: a raw socket bound to the link-local source, hop limit 255),
//! and executes [`Event`]s: VIP add/remove through [`rvs_netlink`],
//! gratuitous ARP / unsolicited NA on AF_PACKET and notify scripts through
//! `tokio::process`.
//!
//! # VIPs that die with the daemon
//!
//! keepalived adds VIPs as permanent addresses, so a SIGKILLed master keeps
//! the VIP (measured in the lab: duplicate VIP). rvs adds each VIP with a
//! finite `valid_lft`/`preferred_lft` (default `max(3 × advert_int, 2 s)`,
//! rounded up to whole seconds, see
//! [`InstanceConfig::effective_vip_lifetime`]) and the MASTER renews it
//! (`NLM_F_REPLACE`) on its advert ticks, at most once a second. If every
//! rvs process dies, nobody renews and the kernel deletes the VIP within that
//! lifetime, about when the backup's Master_Down_Interval expires. At start,
//! before entering BACKUP, any address of the interface equal to one of our
//! VIPs is removed (stale from an earlier run) — except for an instance
//! taken over from a predecessor process ([`RunOptions::take_over`], rvsd's
//! binary upgrade), whose VIPs are live and renewed from its first advert.

use std::collections::HashMap;
use std::io::Read;
use std::net::{IpAddr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use ipnet::IpNet;
use rvs_netlink::{AddressSpec, LinkRef, NetlinkHandle};
use socket2::{Domain, InterfaceIndexOrAddress, Protocol, Socket, Type};
use tokio::io::unix::AsyncFd;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::config::{InstanceConfig, Scope};
use crate::frame::{garp_frame, ipv4_frame, na_frame, parse_ipv4};
use crate::instance::{
    reconcile, Event, Instance, InstanceStatus, NotifyKind, RxVerdict, State, TakeOver, Transmit,
};
use crate::packet::{self, Version};

/// Shell errors (start-up only; run-time errors are logged).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Socket setup failed.
    #[error("{what}: {source}")]
    Io {
        /// What we were doing.
        what: String,
        /// Cause.
        source: std::io::Error,
    },
    /// Netlink failed.
    #[error("{0}")]
    Netlink(#[from] rvs_netlink::Error),
    /// Unsupported configuration.
    #[error("{0}")]
    Config(String),
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

/// A `vrrp_sync_group`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncGroup {
    /// Name.
    pub name: String,
    /// Member instance names.
    pub members: Vec<String>,
}

/// A tracked-object report (from a track_script runner, link monitor, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackUpdate {
    /// Instance name (`None` = every instance that tracks `track`).
    pub instance: Option<String>,
    /// Tracker name as in [`crate::TrackConfig::name`].
    pub track: String,
    /// Up (OK) or down.
    pub up: bool,
}

/// A `vrrp_script`: run periodically, OK = exit status 0. Its state is
/// reported as tracker `name` to every instance that lists it in
/// [`InstanceConfig::tracks`] (where the weight lives).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackScript {
    /// Name (`vrrp_script NAME`).
    pub name: String,
    /// Command line, run with `/bin/sh -c`.
    pub script: String,
    /// `interval` (default 1 s).
    pub interval: Duration,
    /// `timeout` (default = interval); a timeout counts as a failure.
    pub timeout: Duration,
    /// `rise`: consecutive successes to go up (default 1).
    pub rise: u32,
    /// `fall`: consecutive failures to go down (default 1).
    pub fall: u32,
    /// `init_fail`: start in the failed state.
    pub init_fail: bool,
}

/// Optional inputs of [`run_with`].
#[derive(Debug, Default)]
pub struct RunOptions {
    /// Sync groups.
    pub sync_groups: Vec<SyncGroup>,
    /// Tracked-object reports from elsewhere (e.g. rvs-check).
    pub tracks: Option<mpsc::UnboundedReceiver<TrackUpdate>>,
    /// vrrp_scripts run by the shell itself.
    pub scripts: Vec<TrackScript>,
    /// Set to disable the default interface tracking: every second the
    /// shell polls each instance's interface and puts the instance in FAULT
    /// while it is down or has no carrier (keepalived's default).
    pub no_track_interface: bool,
    /// Run-time changes of instances (e.g. from a configuration reload),
    /// applied without leaving the current state, so a reload does not flap
    /// the VIP.
    pub reconfigure: Option<mpsc::UnboundedReceiver<Reconfigure>>,
    /// Instances a predecessor process ran (binary upgrade), by name: they
    /// continue in their state with [`Instance::take_over`]; their VIPs
    /// are not removed at start.
    pub take_over: HashMap<String, TakeOver>,
}

/// A run-time change of one running instance.
#[derive(Debug, Clone, PartialEq)]
pub enum Reconfigure {
    /// New base priority.
    Priority { instance: String, priority: u8 },
    /// New `virtual_ipaddress` list: a MASTER removes the addresses that
    /// are gone, adds the new ones (and announces them with gratuitous ARP
    /// / unsolicited NA); the adverts carry the new list.
    Vips {
        instance: String,
        vips: Vec<crate::VipConfig>,
    },
    /// Hold or release preemption (`InstanceConfig::preempt_hold`).
    PreemptHold { instance: String, hold: bool },
}

/// Run `instances` until `shutdown` is cancelled, publishing status on every
/// change. On shutdown a MASTER sends its priority-0 advert and removes its
/// VIPs before this returns.
pub async fn run(
    instances: Vec<InstanceConfig>,
    netlink: NetlinkHandle,
    shutdown: CancellationToken,
    status: watch::Sender<Vec<InstanceStatus>>,
) -> Result<(), Error> {
    run_with(instances, RunOptions::default(), netlink, shutdown, status).await
}

struct Iface {
    index: u32,
    mac: [u8; 6],
    tx4: Option<Socket>,
    tx6: Option<Socket>,
    arp: Option<Socket>,
}

struct Slot {
    inst: Instance,
    iface: String,
    renew_every: Duration,
    last_renew: Option<Instant>,
    lifetime: Option<Duration>,
}

struct Rx {
    iface: String,
    src: IpAddr,
    dst: IpAddr,
    ttl: u8,
    payload: Vec<u8>,
}

/// [`run`] with sync groups and tracker input.
pub async fn run_with(
    instances: Vec<InstanceConfig>,
    mut opts: RunOptions,
    netlink: NetlinkHandle,
    shutdown: CancellationToken,
    status: watch::Sender<Vec<InstanceStatus>>,
) -> Result<(), Error> {
    let mut ifaces: HashMap<String, Iface> = HashMap::new();
    let (rx_tx, mut rx_rx) = mpsc::channel::<Rx>(1024);
    let mut readers = Vec::new();
    let mut slots = Vec::new();
    for mut cfg in instances {
        let v6 = cfg.local_addr.is_ipv6() || cfg.vips.first().is_some_and(|v| v.addr.is_ipv6());
        if v6 && cfg.version == Version::V2 {
            return Err(Error::Config(format!(
                "({}) VRRPv2 does not support IPv6, use version 3",
                cfg.name
            )));
        }
        if cfg.vips.iter().any(|v| v.addr.is_ipv6() != v6) {
            return Err(Error::Config(format!(
                "({}) all VIPs must be of the same family",
                cfg.name
            )));
        }
        let link = netlink.link_by_name(&cfg.interface).await?;
        if cfg.local_addr.is_unspecified() {
            let vips: Vec<IpAddr> = cfg.vips.iter().map(|v| v.addr).collect();
            let addrs = netlink
                .address_list(Some(LinkRef::Index(link.index)))
                .await?;
            cfg.local_addr = addrs
                .iter()
                .map(|a| a.addr.addr())
                .find(|a| match a {
                    // VRRPv3 over IPv6 is sent from the link-local address.
                    IpAddr::V6(a) => v6 && a.segments()[0] & 0xffc0 == 0xfe80,
                    IpAddr::V4(_) => !v6 && !vips.contains(a),
                })
                .ok_or_else(|| {
                    let fam = if v6 { "IPv6 link-local" } else { "IPv4" };
                    Error::Config(format!(
                        "({}) no {fam} address on {}",
                        cfg.name, cfg.interface
                    ))
                })?;
        }
        let take = opts.take_over.remove(&cfg.name);
        if !take
            .as_ref()
            .is_some_and(|t| matches!(t.state, State::Master | State::Backup))
        {
            remove_stale_vips(&netlink, &cfg).await;
        }
        if !ifaces.contains_key(&cfg.interface) {
            let arp = open_arp(link.index)
                .map_err(|e| tracing::warn!(interface = %cfg.interface, "no AF_PACKET socket for GARP/NA: {e}"))
                .ok();
            let mut mac = [0u8; 6];
            if let Some(m) = link.mac.as_ref().filter(|m| m.len() == 6) {
                mac.copy_from_slice(m);
            }
            ifaces.insert(
                cfg.interface.clone(),
                Iface {
                    index: link.index,
                    mac,
                    tx4: None,
                    tx6: None,
                    arp,
                },
            );
        }
        if let Some(ifc) = ifaces.get_mut(&cfg.interface) {
            match cfg.local_addr {
                IpAddr::V6(src) if ifc.tx6.is_none() => {
                    let rx = open_rx6(&cfg.interface, link.index)?;
                    ifc.tx6 = Some(open_tx6(&cfg.interface, link.index, src)?);
                    readers.push(tokio::spawn(reader(
                        cfg.interface.clone(),
                        rx,
                        rx_tx.clone(),
                        recv_v6,
                    )));
                }
                IpAddr::V4(_) if ifc.tx4.is_none() => {
                    let rx = open_rx(&cfg.interface, link.index)?;
                    ifc.tx4 = Some(open_tx(&cfg.interface)?);
                    readers.push(tokio::spawn(reader(
                        cfg.interface.clone(),
                        rx,
                        rx_tx.clone(),
                        recv_v4,
                    )));
                }
                _ => {}
            }
        }
        let lifetime = cfg.effective_vip_lifetime();
        let renew_every = cfg.normalized_advert_int().max(Duration::from_secs(1));
        let iface = cfg.interface.clone();
        tracing::info!(instance = %cfg.name, interface = %iface, src = %cfg.local_addr, vrid = cfg.vrid,
            "starting VRRP instance, VIP lifetime {:?}", lifetime);
        if let Some(t) = &take {
            tracing::info!(instance = %cfg.name, state = %t.state, "taking the instance over from the previous rvsd");
        }
        slots.push(Slot {
            inst: match &take {
                Some(t) => Instance::take_over(cfg, Instant::now(), t),
                None => Instance::new(cfg, Instant::now()),
            },
            iface,
            renew_every,
            last_renew: None,
            lifetime,
        });
    }
    drop(rx_tx);
    let groups: Vec<Vec<usize>> = opts
        .sync_groups
        .iter()
        .map(|g| {
            g.members
                .iter()
                .filter_map(|m| slots.iter().position(|s| s.inst.config().name == *m))
                .collect::<Vec<_>>()
        })
        .collect();
    let origin = (Instant::now(), SystemTime::now());
    let (track_tx, mut track_rx) = mpsc::unbounded_channel::<TrackUpdate>();
    if let Some(mut ext) = opts.tracks.take() {
        let tx = track_tx.clone();
        tokio::spawn(async move {
            while let Some(t) = ext.recv().await {
                if tx.send(t).is_err() {
                    return;
                }
            }
        });
    }
    let scripts_stop = shutdown.child_token();
    for sc in opts.scripts.drain(..) {
        tokio::spawn(script_runner(sc, track_tx.clone(), scripts_stop.clone()));
    }
    drop(track_tx);
    let links: Vec<(String, u32)> = ifaces.iter().map(|(n, i)| (n.clone(), i.index)).collect();
    let mut link_tick = tokio::time::interval(Duration::from_secs(1));
    link_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let track_links = !opts.no_track_interface;
    let (_reconf_keep, mut reconf_rx) = match opts.reconfigure.take() {
        Some(rx) => (None, rx),
        None => {
            let (tx, rx) = mpsc::unbounded_channel::<Reconfigure>();
            (Some(tx), rx)
        }
    };

    let mut sh = Shell {
        slots,
        ifaces: Arc::new(ifaces),
        netlink,
        groups,
    };
    sh.pump().await;
    publish(&status, &sh.slots, origin);
    loop {
        let deadline = sh.slots.iter().filter_map(|s| s.inst.poll_timeout()).min();
        let sleep = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(pkt) = rx_rx.recv() => sh.dispatch(pkt),
            () = sleep => {
                let now = Instant::now();
                for s in sh.slots.iter_mut() {
                    if s.inst.poll_timeout().is_some_and(|t| t <= now) {
                        s.inst.handle_timeout(now);
                    }
                }
            }
            _ = link_tick.tick(), if track_links => {
                for (name, index) in &links {
                    let up = match sh.netlink.link_by_index(*index).await {
                        Ok(l) => l.up && l.running,
                        Err(e) => {
                            tracing::warn!(interface = %name, "link state: {e}");
                            false
                        }
                    };
                    let now = Instant::now();
                    for s in sh.slots.iter_mut().filter(|s| s.iface == *name) {
                        s.inst.set_interface_up(now, up);
                    }
                }
            }
            Some(t) = track_rx.recv() => {
                let now = Instant::now();
                for s in sh.slots.iter_mut() {
                    if t.instance.as_ref().is_none_or(|n| *n == s.inst.config().name) {
                        s.inst.set_track(now, &t.track, t.up);
                    }
                }
            }
            Some(r) = reconf_rx.recv() => sh.reconfigure(r).await,
        }
        sh.pump().await;
        publish(&status, &sh.slots, origin);
    }
    scripts_stop.cancel();
    let now = Instant::now();
    for s in sh.slots.iter_mut() {
        s.inst.shutdown(now);
    }
    sh.pump().await;
    publish(&status, &sh.slots, origin);
    for r in readers {
        r.abort();
    }
    Ok(())
}

fn publish(
    status: &watch::Sender<Vec<InstanceStatus>>,
    slots: &[Slot],
    origin: (Instant, SystemTime),
) {
    let st: Vec<InstanceStatus> = slots
        .iter()
        .map(|s| {
            let mut st = s.inst.status();
            st.last_transition_unix = s.inst.last_transition().map(|t| {
                let wall = origin.1 + t.saturating_duration_since(origin.0);
                wall.duration_since(SystemTime::UNIX_EPOCH)
                    .map(|d| d.as_secs_f64())
                    .unwrap_or(0.0)
            });
            st
        })
        .collect();
    status.send_if_modified(|cur| {
        if *cur != st {
            *cur = st;
            true
        } else {
            false
        }
    });
}

struct Shell {
    slots: Vec<Slot>,
    ifaces: Arc<HashMap<String, Iface>>,
    netlink: NetlinkHandle,
    groups: Vec<Vec<usize>>,
}

impl Shell {
    fn dispatch(&mut self, pkt: Rx) {
        let now = Instant::now();
        let vrid = packet::Packet::new_checked(&pkt.payload[..])
            .map(|p| p.vrid())
            .ok();
        let mut matched = false;
        let fam = pkt.src.is_ipv6();
        let same_link =
            |s: &&mut Slot| s.iface == pkt.iface && s.inst.config().local_addr.is_ipv6() == fam;
        for s in self.slots.iter_mut().filter(same_link) {
            if vrid.is_some() && vrid != Some(s.inst.config().vrid) {
                continue;
            }
            matched = true;
            let v = s
                .inst
                .handle_packet(now, pkt.src, pkt.dst, pkt.ttl, &pkt.payload);
            if let RxVerdict::Dropped(r) = v {
                tracing::debug!(instance = %s.inst.config().name, src = %pkt.src, "advert dropped: {r:?}");
            }
        }
        if !matched {
            for s in self.slots.iter_mut().filter(same_link) {
                s.inst.note_wrong_vrid();
            }
        }
    }

    /// Drain every output until quiescent (sync groups may cascade).
    async fn pump(&mut self) {
        for _ in 0..4 {
            let mut any = false;
            let now = Instant::now();
            for g in &self.groups {
                let mut insts: Vec<&mut Instance> =
                    self.slots.iter_mut().map(|s| &mut s.inst).collect();
                reconcile(now, &mut insts, g);
            }
            for i in 0..self.slots.len() {
                while let Some(t) = self.slots[i].inst.poll_transmit() {
                    any = true;
                    self.send(i, &t).await;
                }
                while let Some(e) = self.slots[i].inst.poll_event() {
                    any = true;
                    self.event(i, e).await;
                }
            }
            if !any {
                break;
            }
        }
    }

    async fn send(&mut self, i: usize, t: &Transmit) {
        let slot = &self.slots[i];
        if let Some(iface) = self.ifaces.get(&slot.iface) {
            let res = match (t.src, t.dst, &iface.tx4, &iface.tx6) {
                (IpAddr::V4(src), IpAddr::V4(dst), Some(tx), _) => {
                    let frame = ipv4_frame(src, dst, &t.payload);
                    tx.send_to(&frame, &SocketAddr::V4(SocketAddrV4::new(dst, 0)).into())
                }
                (IpAddr::V6(_), IpAddr::V6(dst), _, Some(tx)) => {
                    let scope = if dst.is_multicast() || dst.segments()[0] & 0xffc0 == 0xfe80 {
                        iface.index
                    } else {
                        0
                    };
                    tx.send_to(
                        &t.payload,
                        &SocketAddr::V6(SocketAddrV6::new(dst, 0, 0, scope)).into(),
                    )
                }
                _ => Ok(0),
            };
            if let Err(e) = res {
                tracing::warn!(instance = %slot.inst.config().name, "advert send failed: {e}");
            }
        }
        // Renew VIP lifetimes on master advert ticks (at most once a second).
        let now = Instant::now();
        let slot = &mut self.slots[i];
        if t.priority > 0 && slot.inst.state() == State::Master && slot.lifetime.is_some() {
            if slot
                .last_renew
                .is_some_and(|l| now.duration_since(l) < slot.renew_every)
            {
                return;
            }
            slot.last_renew = Some(now);
            let cfg = slot.inst.config().clone();
            let lifetime = slot.lifetime;
            add_vips(&self.netlink, &cfg, lifetime).await;
        }
    }

    async fn reconfigure(&mut self, r: Reconfigure) {
        let now = Instant::now();
        match r {
            Reconfigure::Priority { instance, priority } => {
                for s in self
                    .slots
                    .iter_mut()
                    .filter(|s| s.inst.config().name == instance)
                {
                    tracing::info!(instance = %instance, priority, "({instance}) priority changed by reload");
                    s.inst.set_priority(now, priority);
                }
            }
            Reconfigure::PreemptHold { instance, hold } => {
                for s in self
                    .slots
                    .iter_mut()
                    .filter(|s| s.inst.config().name == instance)
                {
                    tracing::info!(instance = %instance, hold, "({instance}) preemption {}", if hold { "held" } else { "released" });
                    s.inst.set_preempt_hold(hold);
                }
            }
            Reconfigure::Vips { instance, vips } => {
                for i in 0..self.slots.len() {
                    if self.slots[i].inst.config().name != instance {
                        continue;
                    }
                    let old = self.slots[i].inst.config().clone();
                    self.slots[i].inst.set_vips(vips.clone());
                    tracing::info!(instance = %instance, "({instance}) virtual addresses changed by reload");
                    if self.slots[i].inst.state() != State::Master {
                        continue;
                    }
                    // A MASTER holds the addresses: drop what is gone, add
                    // and announce what is new.
                    let gone = InstanceConfig {
                        vips: old
                            .vips
                            .iter()
                            .filter(|v| !vips.contains(v))
                            .cloned()
                            .collect(),
                        ..old.clone()
                    };
                    let new = InstanceConfig {
                        vips: vips
                            .iter()
                            .filter(|v| !old.vips.contains(v))
                            .cloned()
                            .collect(),
                        ..old
                    };
                    del_vips(&self.netlink, &gone).await;
                    let lifetime = self.slots[i].lifetime;
                    add_vips(&self.netlink, &new, lifetime).await;
                    if let Some(iface) = self.ifaces.get(&self.slots[i].iface) {
                        let addrs: Vec<IpAddr> = new.vips.iter().map(|v| v.addr).collect();
                        send_garps(iface, &addrs, 1);
                    }
                }
            }
        }
    }

    async fn event(&mut self, i: usize, e: Event) {
        let slot = &mut self.slots[i];
        let cfg = slot.inst.config().clone();
        match e {
            Event::StateChange { from, to, reason } => {
                tracing::info!(instance = %cfg.name, "({}) Entering {to} STATE (from {from}, {reason:?})", cfg.name);
            }
            Event::AddVips => {
                slot.last_renew = Some(Instant::now());
                let lifetime = slot.lifetime;
                add_vips(&self.netlink, &cfg, lifetime).await;
            }
            Event::DelVips => {
                slot.last_renew = None;
                del_vips(&self.netlink, &cfg).await;
            }
            Event::SendGarp { addrs, repeat } => {
                if let Some(iface) = self.ifaces.get(&slot.iface) {
                    send_garps(iface, &addrs, repeat);
                }
            }
            Event::RunNotify { kind, priority } => run_notify(&cfg, kind, priority),
            Event::PriorityChange { from, to } => {
                tracing::info!(instance = %cfg.name, "effective priority {from} -> {to}");
            }
        }
    }
}

fn vip_link(cfg: &InstanceConfig, dev: &Option<String>) -> LinkRef {
    LinkRef::Name(dev.clone().unwrap_or_else(|| cfg.interface.clone()))
}

fn vip_net(v: &crate::VipConfig) -> Option<IpNet> {
    IpNet::new(v.addr, v.prefix_len).ok()
}

async fn add_vips(nl: &NetlinkHandle, cfg: &InstanceConfig, lifetime: Option<Duration>) {
    for v in &cfg.vips {
        let Some(net) = vip_net(v) else { continue };
        let mut spec = AddressSpec::new(vip_link(cfg, &v.dev), net)
            .replace()
            .scope(match v.scope {
                Scope::Global => rvs_netlink::Scope::Global,
                Scope::Site => rvs_netlink::Scope::Site,
                Scope::Link => rvs_netlink::Scope::Link,
                Scope::Host => rvs_netlink::Scope::Host,
                Scope::Nowhere => rvs_netlink::Scope::Nowhere,
            });
        if let Some(l) = &v.label {
            spec = spec.label(l.clone());
        }
        if let Some(l) = lifetime {
            spec = spec.lifetime(l);
        }
        if v.addr.is_ipv6() {
            // No DAD: the VIP must work at once, and during a failover the
            // old master may still hold it (that is what DAD would detect).
            spec = spec.nodad();
        }
        if let Err(e) = nl.address_add(spec).await {
            tracing::warn!(instance = %cfg.name, "adding VIP {net} failed: {e}");
        }
    }
}

async fn del_vips(nl: &NetlinkHandle, cfg: &InstanceConfig) {
    for v in &cfg.vips {
        let Some(net) = vip_net(v) else { continue };
        match nl.address_del(vip_link(cfg, &v.dev), net).await {
            Ok(()) => tracing::info!(instance = %cfg.name, "removed VIP {net}"),
            Err(e) if e.is_not_found() => {}
            Err(e) => tracing::warn!(instance = %cfg.name, "removing VIP {net} failed: {e}"),
        }
    }
}

/// Remove addresses equal to our VIPs (any prefix) left by an earlier run.
async fn remove_stale_vips(nl: &NetlinkHandle, cfg: &InstanceConfig) {
    let mut links: Vec<LinkRef> = cfg.vips.iter().map(|v| vip_link(cfg, &v.dev)).collect();
    links.dedup();
    for link in links {
        let Ok(addrs) = nl.address_list(Some(link.clone())).await else {
            continue;
        };
        for a in addrs {
            if cfg.vips.iter().any(|v| v.addr == a.addr.addr()) {
                tracing::info!(instance = %cfg.name, "removing stale VIP {} at start", a.addr);
                let _ = nl.address_del(link.clone(), a.addr).await;
            }
        }
    }
}

fn run_notify(cfg: &InstanceConfig, kind: NotifyKind, priority: u8) {
    let (script, state) = match kind {
        NotifyKind::Master => (&cfg.notify.master, "MASTER"),
        NotifyKind::Backup => (&cfg.notify.backup, "BACKUP"),
        NotifyKind::Fault => (&cfg.notify.fault, "FAULT"),
        NotifyKind::Stop => (&cfg.notify.stop, "STOP"),
    };
    let mut cmds: Vec<(String, Vec<String>)> = Vec::new();
    if let Some(s) = script {
        cmds.push((s.clone(), Vec::new()));
    }
    if let Some(s) = &cfg.notify.notify {
        cmds.push((
            s.clone(),
            vec![
                "INSTANCE".into(),
                cfg.name.clone(),
                state.into(),
                priority.to_string(),
            ],
        ));
    }
    for (cmd, args) in cmds {
        // keepalived execs the script with its own word splitting; `sh -c`
        // gives the same result for the usual quoting and appends the
        // `TYPE NAME STATE PRIORITY` arguments after the script's own.
        let mut c = tokio::process::Command::new("/bin/sh");
        c.arg("-c")
            .arg(format!("{cmd} \"$@\""))
            .arg("sh")
            .args(&args);
        c.stdin(std::process::Stdio::null());
        let name = cfg.name.clone();
        match c.spawn() {
            Ok(mut child) => {
                tokio::spawn(async move {
                    if let Ok(st) = child.wait().await {
                        if !st.success() {
                            tracing::warn!(instance = %name, "notify script '{cmd}' exited with {st}");
                        }
                    }
                });
            }
            Err(e) => tracing::warn!(instance = %name, "cannot run notify script '{cmd}': {e}"),
        }
    }
}

async fn script_runner(
    sc: TrackScript,
    tx: mpsc::UnboundedSender<TrackUpdate>,
    stop: CancellationToken,
) {
    let mut up = !sc.init_fail;
    let (mut oks, mut kos) = (0u32, 0u32);
    let mut tick = tokio::time::interval(sc.interval.max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let mut cmd = tokio::process::Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(&sc.script)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        let ok = match cmd.spawn() {
            Ok(mut child) => {
                matches!(tokio::time::timeout(sc.timeout, child.wait()).await, Ok(Ok(st)) if st.success())
            }
            Err(e) => {
                tracing::warn!(script = %sc.name, "cannot run '{}': {e}", sc.script);
                false
            }
        };
        if ok {
            oks += 1;
            kos = 0;
        } else {
            kos += 1;
            oks = 0;
        }
        let changed = if !up && ok && oks >= sc.rise.max(1) {
            up = true;
            true
        } else if up && !ok && kos >= sc.fall.max(1) {
            up = false;
            true
        } else {
            false
        };
        if changed {
            tracing::info!(script = %sc.name, "VRRP_Script({}) {}", sc.name, if up { "succeeded" } else { "failed" });
            if tx
                .send(TrackUpdate {
                    instance: None,
                    track: sc.name.clone(),
                    up,
                })
                .is_err()
            {
                return;
            }
        }
    }
}

// ===== sockets =====

fn open_rx(ifname: &str, ifindex: u32) -> Result<Socket, Error> {
    let s = Socket::new(
        Domain::IPV4,
        Type::RAW,
        Some(Protocol::from(i32::from(packet::IPPROTO_VRRP))),
    )
    .map_err(io_err("raw IPPROTO_VRRP socket"))?;
    s.bind_device(Some(ifname.as_bytes()))
        .map_err(io_err(format!("SO_BINDTODEVICE {ifname}")))?;
    s.join_multicast_v4_n(
        &packet::MCAST_GROUP_V4,
        &InterfaceIndexOrAddress::Index(ifindex),
    )
    .map_err(io_err(format!("join 224.0.0.18 on {ifname}")))?;
    s.set_nonblocking(true).map_err(io_err("O_NONBLOCK"))?;
    Ok(s)
}

fn open_tx(ifname: &str) -> Result<Socket, Error> {
    // IPPROTO_RAW: header included, send only (never receives).
    let s = Socket::new(
        Domain::IPV4,
        Type::RAW,
        Some(Protocol::from(libc::IPPROTO_RAW)),
    )
    .map_err(io_err("raw IPPROTO_RAW socket"))?;
    s.bind_device(Some(ifname.as_bytes()))
        .map_err(io_err(format!("SO_BINDTODEVICE {ifname}")))?;
    s.set_multicast_loop_v4(false)
        .map_err(io_err("IP_MULTICAST_LOOP"))?;
    s.set_multicast_ttl_v4(255)
        .map_err(io_err("IP_MULTICAST_TTL"))?;
    s.set_ttl_v4(255).map_err(io_err("IP_TTL"))?;
    s.set_nonblocking(true).map_err(io_err("O_NONBLOCK"))?;
    Ok(s)
}

/// A raw IPv6 IPPROTO_VRRP socket bound to `ifname`.
fn raw6_socket(ifname: &str) -> Result<Socket, Error> {
    let s = Socket::new(
        Domain::IPV6,
        Type::RAW,
        Some(Protocol::from(i32::from(packet::IPPROTO_VRRP))),
    )
    .map_err(io_err("raw IPv6 IPPROTO_VRRP socket"))?;
    s.bind_device(Some(ifname.as_bytes()))
        .map_err(io_err(format!("SO_BINDTODEVICE {ifname}")))?;
    Ok(s)
}

fn open_rx6(ifname: &str, ifindex: u32) -> Result<Socket, Error> {
    let s = raw6_socket(ifname)?;
    s.join_multicast_v6(&packet::MCAST_GROUP_V6, ifindex)
        .map_err(io_err(format!("join ff02::12 on {ifname}")))?;
    for opt in [libc::IPV6_RECVHOPLIMIT, libc::IPV6_RECVPKTINFO] {
        let one: libc::c_int = 1;
        // SAFETY: valid fd, pointer to a c_int of the given size.
        let rc = unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::IPPROTO_IPV6,
                opt,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(Error::Io {
                what: "IPV6_RECVHOPLIMIT/PKTINFO".into(),
                source: std::io::Error::last_os_error(),
            });
        }
    }
    s.set_nonblocking(true).map_err(io_err("O_NONBLOCK"))?;
    Ok(s)
}

fn open_tx6(ifname: &str, ifindex: u32, src: Ipv6Addr) -> Result<Socket, Error> {
    let s = raw6_socket(ifname)?;
    // The source must be the address the v3 checksum was computed with.
    s.bind(&SocketAddr::V6(SocketAddrV6::new(src, 0, 0, ifindex)).into())
        .map_err(io_err(format!("bind {src}%{ifname}")))?;
    s.set_multicast_if_v6(ifindex)
        .map_err(io_err("IPV6_MULTICAST_IF"))?;
    s.set_multicast_hops_v6(255)
        .map_err(io_err("IPV6_MULTICAST_HOPS"))?;
    s.set_unicast_hops_v6(255)
        .map_err(io_err("IPV6_UNICAST_HOPS"))?;
    s.set_multicast_loop_v6(false)
        .map_err(io_err("IPV6_MULTICAST_LOOP"))?;
    let _ = s.set_recv_buffer_size(0);
    s.set_nonblocking(true).map_err(io_err("O_NONBLOCK"))?;
    Ok(s)
}

/// recvmsg on a raw IPv6 socket: (src, dst from IPV6_PKTINFO, hop limit, len).
fn recv6(
    fd: std::os::fd::RawFd,
    buf: &mut [u8],
) -> std::io::Result<(Ipv6Addr, Option<Ipv6Addr>, Option<u8>, usize)> {
    // SAFETY: all structures are plain old data, initialised before use; the
    // control buffer is u64-aligned and its length is passed; CMSG_* walk only
    // within msg_controllen as set by the kernel.
    unsafe {
        let mut name: libc::sockaddr_in6 = std::mem::zeroed();
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        let mut cbuf = [0u64; 32];
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_name = (&mut name as *mut libc::sockaddr_in6).cast();
        msg.msg_namelen = std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&cbuf) as _;
        let n = libc::recvmsg(fd, &mut msg, 0);
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let (mut dst, mut hops) = (None, None);
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            let data = libc::CMSG_DATA(c);
            if (*c).cmsg_level == libc::IPPROTO_IPV6 {
                if (*c).cmsg_type == libc::IPV6_HOPLIMIT {
                    hops = Some(
                        std::ptr::read_unaligned(data as *const libc::c_int).clamp(0, 255) as u8,
                    );
                } else if (*c).cmsg_type == libc::IPV6_PKTINFO {
                    let pi = std::ptr::read_unaligned(data as *const libc::in6_pktinfo);
                    dst = Some(Ipv6Addr::from(pi.ipi6_addr.s6_addr));
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
        Ok((
            Ipv6Addr::from(name.sin6_addr.s6_addr),
            dst,
            hops,
            n as usize,
        ))
    }
}

/// One advertisement read from an IPv6 raw socket (the kernel strips the
/// IPv6 header: addresses and hop limit come from the control messages).
fn recv_v6(sock: &Socket, buf: &mut [u8], iface: &str) -> std::io::Result<Option<Rx>> {
    let (src, dst, hops, n) = recv6(sock.as_raw_fd(), buf)?;
    Ok(Some(Rx {
        iface: iface.to_string(),
        src: src.into(),
        dst: dst.unwrap_or(packet::MCAST_GROUP_V6).into(),
        // A missing hop limit fails the 255 check rather than passing it.
        ttl: hops.unwrap_or(0),
        payload: buf[..n].to_vec(),
    }))
}

/// One datagram read from an IPv4 raw socket, with its IPv4 header; `None`
/// when it is not a well-formed VRRP datagram.
fn recv_v4(mut sock: &Socket, buf: &mut [u8], iface: &str) -> std::io::Result<Option<Rx>> {
    let n = sock.read(buf)?;
    tracing::trace!(interface = %iface, "received {n} bytes");
    Ok(parse_ipv4(&buf[..n]).map(|(src, dst, ttl, payload)| Rx {
        iface: iface.to_string(),
        src: src.into(),
        dst: dst.into(),
        ttl,
        payload: payload.to_vec(),
    }))
}

/// Receive loop of one raw socket: `recv` ([`recv_v4`] or [`recv_v6`]) reads
/// one datagram; what it returns goes to the shell until `out` closes.
async fn reader(
    iface: String,
    sock: Socket,
    out: mpsc::Sender<Rx>,
    recv: fn(&Socket, &mut [u8], &str) -> std::io::Result<Option<Rx>>,
) {
    // SAFETY: a socket2::Socket owns its fd for its whole lifetime and
    // as_raw_fd always returns that same descriptor.
    let fd = match unsafe { AsyncFd::register_with_interest(sock, tokio::io::Interest::READABLE) } {
        Ok(fd) => fd,
        Err(e) => {
            tracing::error!(interface = %iface, "AsyncFd: {e}");
            return;
        }
    };
    let mut buf = vec![0u8; 65536];
    loop {
        let Ok(mut guard) = fd.readable().await else {
            return;
        };
        let rx = match guard.try_io(|s| recv(s.get_ref(), &mut buf, &iface)) {
            Ok(Ok(Some(rx))) => rx,
            Ok(Ok(None)) => continue,
            Ok(Err(e)) => {
                tracing::warn!(interface = %iface, "recv: {e}");
                continue;
            }
            Err(_would_block) => continue,
        };
        if out.send(rx).await.is_err() {
            return;
        }
    }
}

fn open_arp(ifindex: u32) -> std::io::Result<Socket> {
    let proto = (libc::ETH_P_ARP as u16).to_be();
    let s = Socket::new(
        Domain::PACKET,
        Type::RAW,
        Some(Protocol::from(i32::from(proto))),
    )?;
    // Bind to the interface so we only send there (and receive nothing useful).
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = proto;
    sll.sll_ifindex = ifindex as i32;
    // SAFETY: sll is a valid, fully initialised sockaddr_ll of the given size.
    let rc = unsafe {
        libc::bind(
            s.as_raw_fd(),
            &sll as *const libc::sockaddr_ll as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    s.set_nonblocking(true)?;
    // Receive buffer as small as possible: we never read it.
    let _ = s.set_recv_buffer_size(0);
    Ok(s)
}

fn send_garps(iface: &Iface, addrs: &[IpAddr], repeat: u32) {
    let Some(sock) = &iface.arp else { return };
    for _ in 0..repeat {
        for a in addrs {
            let (frame, proto, dmac): (Vec<u8>, i32, [u8; 6]) = match a {
                IpAddr::V4(v4) => (
                    garp_frame(iface.mac, *v4).to_vec(),
                    libc::ETH_P_ARP,
                    [0xff; 6],
                ),
                IpAddr::V6(v6) => (
                    na_frame(iface.mac, *v6).to_vec(),
                    libc::ETH_P_IPV6,
                    [0x33, 0x33, 0, 0, 0, 1],
                ),
            };
            // SAFETY: sockaddr_ll is plain old data; all-zero is valid.
            let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_protocol = (proto as u16).to_be();
            sll.sll_ifindex = iface.index as i32;
            sll.sll_halen = 6;
            sll.sll_addr[..6].copy_from_slice(&dmac);
            // SAFETY: frame and sll are valid for the lengths given.
            let rc = unsafe {
                libc::sendto(
                    sock.as_raw_fd(),
                    frame.as_ptr() as *const libc::c_void,
                    frame.len(),
                    0,
                    &sll as *const libc::sockaddr_ll as *const libc::sockaddr,
                    std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
                )
            };
            if rc < 0 {
                tracing::warn!(
                    "GARP/NA for {a} failed: {}",
                    std::io::Error::last_os_error()
                );
            }
        }
    }
}
