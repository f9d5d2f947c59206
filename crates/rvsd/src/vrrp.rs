//! VRRP from a keepalived configuration: maps `vrrp_instance`,
//! `vrrp_sync_group` and `vrrp_script` blocks onto rvs-vrrp, runs the
//! instances, and publishes their status (`rvsadm --vrrp`, metrics, events).

use crate::state::Daemon;
use rvs_api::StatusReport;
use rvs_config::model as m;
use rvs_vrrp::shell::{RunOptions, SyncGroup, TrackScript};
use rvs_vrrp::{
    InitialState, InstanceConfig, InstanceStatus, NotifyScripts, TrackConfig, Version, VipConfig,
};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

fn scope(s: Option<&str>) -> rvs_vrrp::Scope {
    match s {
        Some("site") => rvs_vrrp::Scope::Site,
        Some("link") => rvs_vrrp::Scope::Link,
        Some("host") => rvs_vrrp::Scope::Host,
        Some("nowhere") => rvs_vrrp::Scope::Nowhere,
        _ => rvs_vrrp::Scope::Global,
    }
}

fn script_line(s: &Option<m::Script>) -> Option<String> {
    s.as_ref().map(|s| s.command.clone())
}

/// The rvs-vrrp view of a configuration's VRRP part.
pub fn instances(cfg: &m::Config, warnings: &mut Vec<String>) -> (Vec<InstanceConfig>, RunOptions) {
    let mut out = Vec::new();
    for vi in &cfg.vrrp_instances {
        let Some(ifname) = vi.interface.clone() else {
            warnings.push(format!(
                "({}) no interface set - instance not started",
                vi.name
            ));
            continue;
        };
        let mut c = InstanceConfig::new(vi.name.clone(), ifname, vi.virtual_router_id);
        c.version = if vi.version == 3 {
            Version::V3
        } else {
            Version::V2
        };
        c.priority = vi.priority;
        c.advert_int = vi.advert_int;
        if let Some(a) = vi.unicast_src_ip.or(vi.mcast_src_ip) {
            c.local_addr = a;
        }
        c.initial_state = match vi.state {
            m::VrrpState::Master => InitialState::Master,
            m::VrrpState::Backup => InitialState::Backup,
        };
        c.nopreempt = vi.nopreempt;
        c.preempt_delay = vi.preempt_delay.unwrap_or(Duration::ZERO);
        if let Some(a) = &vi.authentication {
            match a.auth_type {
                m::AuthType::Pass => c.auth_pass = Some(InstanceConfig::pass_bytes(&a.auth_pass)),
                m::AuthType::Ah => warnings.push(format!(
                    "({}) auth_type AH is not supported yet; adverts are sent without authentication",
                    vi.name
                )),
            }
        }
        c.vips = vi
            .virtual_ipaddress
            .iter()
            .map(|v| VipConfig {
                addr: v.addr,
                prefix_len: v.prefix_len,
                dev: v.dev.clone(),
                label: v.label.clone(),
                scope: scope(v.scope.as_deref()),
            })
            .collect();
        if !vi.virtual_ipaddress_excluded.is_empty() {
            // Excluded VIPs are not advertised but are installed with the others.
            c.vips
                .extend(vi.virtual_ipaddress_excluded.iter().map(|v| VipConfig {
                    addr: v.addr,
                    prefix_len: v.prefix_len,
                    dev: v.dev.clone(),
                    label: v.label.clone(),
                    scope: scope(v.scope.as_deref()),
                }));
        }
        c.unicast_peers = vi.unicast_peer.iter().map(|p| p.addr).collect();
        c.down_timer_adverts = vi.down_timer_adverts;
        c.garp_master_delay = vi.garp_master_delay;
        c.garp_master_repeat = vi.garp_master_repeat;
        c.garp_master_refresh =
            (!vi.garp_master_refresh.is_zero()).then_some(vi.garp_master_refresh);
        c.garp_master_refresh_repeat = vi.garp_master_refresh_repeat;
        c.lower_prio_no_advert = vi.lower_prio_no_advert;
        c.higher_prio_send_advert = vi.higher_prio_send_advert;
        c.skip_check_adv_addr = vi.skip_check_adv_addr;
        for t in &vi.track_script {
            let Some(s) = cfg.vrrp_scripts.iter().find(|s| s.name == t.name) else {
                warnings.push(format!(
                    "({}) track script {} not found, ignoring",
                    vi.name, t.name
                ));
                continue;
            };
            c.tracks.push(TrackConfig {
                name: t.name.clone(),
                weight: t.weight.unwrap_or(s.weight),
                reverse: t.reverse || s.weight_reverse,
                initially_up: !s.init_fail,
            });
        }
        for t in &vi.track_interface {
            // keepalived: without a weight a down interface means FAULT.
            c.tracks.push(TrackConfig {
                name: format!("{IF_TRACK_PREFIX}{}", t.name),
                weight: t.weight.unwrap_or(0),
                reverse: t.reverse,
                initially_up: interface_up(&t.name),
            });
        }
        c.notify = NotifyScripts {
            master: script_line(&vi.notify_master),
            backup: script_line(&vi.notify_backup),
            fault: script_line(&vi.notify_fault),
            stop: script_line(&vi.notify_stop),
            notify: script_line(&vi.notify),
        };
        out.push(c.normalized());
    }
    if let Some(b) = sync_binding(cfg) {
        if let Some(c) = out.iter_mut().find(|c| c.name == b.instance) {
            // until the table has come from the peers (see crate::sync)
            c.preempt_hold = true;
        }
    }
    let opts = RunOptions {
        sync_groups: cfg
            .vrrp_sync_groups
            .iter()
            .map(|g| SyncGroup {
                name: g.name.clone(),
                members: g.group.clone(),
            })
            .collect(),
        tracks: None,
        scripts: cfg
            .vrrp_scripts
            .iter()
            .filter(|s| {
                out.iter()
                    .any(|i| i.tracks.iter().any(|t| t.name == s.name))
            })
            .map(|s| TrackScript {
                name: s.name.clone(),
                script: s.script.command.clone(),
                interval: s.interval,
                timeout: s.timeout,
                rise: s.rise.max(1),
                fall: s.fall.max(1),
                init_fail: s.init_fail,
            })
            .collect(),
        no_track_interface: false,
        reconfigure: None,
        take_over: Default::default(),
    };
    (out, opts)
}

/// Binary upgrade: continue the instances the previous rvsd ran (by name)
/// without a transition ([`rvs_vrrp::Instance::take_over`]); its
/// vrrp_scripts start from the states it had seen, so they report a change
/// only when there is one.
pub fn take_over(
    opts: &mut RunOptions,
    take: std::collections::HashMap<String, rvs_vrrp::TakeOver>,
) {
    for sc in &mut opts.scripts {
        if let Some((_, up)) = take
            .values()
            .flat_map(|t| t.tracks.iter())
            .find(|(n, _)| *n == sc.name)
        {
            sc.init_fail = !up;
        }
    }
    opts.take_over = take;
}

/// Tracker-name prefix for `track_interface` entries.
const IF_TRACK_PREFIX: &str = "interface:";

/// Link state as `track_interface` sees it: administratively up and with
/// carrier (operstate `up`, or `unknown` for interfaces without carrier
/// reporting such as `lo` and some virtual devices).
pub fn interface_up(name: &str) -> bool {
    match std::fs::read_to_string(format!("/sys/class/net/{name}/operstate")) {
        Ok(s) => matches!(s.trim(), "up" | "unknown"),
        Err(_) => false,
    }
}

/// Poll the tracked interfaces every second and report changes.
fn spawn_interface_tracker(
    names: Vec<String>,
    tx: tokio::sync::mpsc::UnboundedSender<rvs_vrrp::shell::TrackUpdate>,
    cancel: CancellationToken,
) {
    tokio::spawn(async move {
        let mut last: std::collections::HashMap<String, bool> =
            names.iter().map(|n| (n.clone(), interface_up(n))).collect();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            for n in &names {
                let up = interface_up(n);
                if last.insert(n.clone(), up) != Some(up) {
                    info!(interface = %n, up, "tracked interface changed");
                    let _ = tx.send(rvs_vrrp::shell::TrackUpdate {
                        instance: None,
                        track: format!("{IF_TRACK_PREFIX}{n}"),
                        up,
                    });
                }
            }
        }
    });
}

/// Running VRRP instances.
pub struct Vrrp {
    cancel: CancellationToken,
    task: JoinHandle<()>,
    reconfigure: tokio::sync::mpsc::UnboundedSender<rvs_vrrp::shell::Reconfigure>,
    running: std::sync::Mutex<Vec<InstanceConfig>>,
    status: watch::Receiver<Vec<InstanceStatus>>,
}

fn render(st: &[InstanceStatus]) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<12} {:<8} {:>4} {:<7} {:>4} {:>4} {:<16} {:>9} {:>9} {:>8} {:>7} {:>9}",
        "Instance",
        "Iface",
        "VRID",
        "State",
        "Prio",
        "Eff",
        "Master",
        "AdvertsIn",
        "AdvertsOut",
        "BadAuth",
        "BadTTL",
        "WrongVRID"
    );
    for i in st {
        let c = &i.counters;
        let state = format!("{:?}", i.state).to_uppercase();
        let _ = writeln!(
            s,
            "{:<12} {:<8} {:>4} {:<7} {:>4} {:>4} {:<16} {:>9} {:>9} {:>8} {:>7} {:>9}",
            i.name,
            i.interface,
            i.vrid,
            state,
            i.base_priority,
            i.effective_priority,
            i.master_addr
                .map(|a| a.to_string())
                .unwrap_or_else(|| "-".into()),
            c.adverts_rx,
            c.adverts_tx,
            c.bad_auth,
            c.bad_ttl,
            c.wrong_vrid,
        );
    }
    s
}

/// keepalived's `lvs_sync_daemon IF [INSTANCE] ...`: the sync daemon that
/// follows one VRRP instance, master daemon while it is MASTER, backup
/// daemon otherwise.
#[derive(Debug, Clone)]
pub struct SyncBinding {
    pub instance: String,
    /// Settings of the daemon (its `state` is set at each start).
    pub daemon: rvs_api::DaemonInfo,
}

/// The [`SyncBinding`] of a configuration: the named instance, or (as
/// keepalived does without a name) the first instance on the sync
/// interface, or the first instance.
pub fn sync_binding(cfg: &m::Config) -> Option<SyncBinding> {
    let s = cfg.global_defs.lvs_sync_daemon.as_ref()?;
    let instance = match &s.vrrp_instance {
        Some(n) => cfg.vrrp_instances.iter().find(|v| &v.name == n)?,
        None => cfg
            .vrrp_instances
            .iter()
            .find(|v| v.interface.as_deref() == Some(s.interface.as_str()))
            .or_else(|| cfg.vrrp_instances.first())?,
    };
    Some(SyncBinding {
        instance: instance.name.clone(),
        daemon: rvs_api::DaemonInfo {
            state: rvs_api::DaemonState::Backup,
            mcast_ifn: s.interface.clone(),
            syncid: s.sync_id.unwrap_or(0),
            sync_maxlen: s.maxlen.unwrap_or(0),
            mcast_group: s.group,
            mcast_port: s.port.unwrap_or(0),
            mcast_ttl: s.ttl.unwrap_or(0),
            counters: None,
        },
    })
}

/// Move the sync daemons with the bound instance's state, as keepalived's
/// ipvs_syncd_master / ipvs_syncd_backup do (stop one, start the other).
/// The first backup start asks the peers for their table; preemption is
/// released once it has come.
fn follow_sync(
    d: &Arc<Daemon>,
    b: &SyncBinding,
    state: &str,
    first: bool,
    reconfigure: &tokio::sync::mpsc::UnboundedSender<rvs_vrrp::shell::Reconfigure>,
) {
    use rvs_api::DaemonState;
    let master = state == "MASTER";
    let mut info = b.daemon.clone();
    let release = |reconfigure: &tokio::sync::mpsc::UnboundedSender<_>| {
        let _ = reconfigure.send(rvs_vrrp::shell::Reconfigure::PreemptHold {
            instance: b.instance.clone(),
            hold: false,
        });
    };
    if master {
        d.sync.stop(DaemonState::Backup);
        info.state = DaemonState::Master;
        // (already running: taken over from the previous rvsd)
        if let Err((false, e)) = d.sync.start(&info, false) {
            warn!(instance = %b.instance, error = %e, "lvs_sync_daemon: master sync daemon not started");
        }
        if first {
            release(reconfigure);
        }
        return;
    }
    let was_master = d.sync.stop(DaemonState::Master);
    info.state = DaemonState::Backup;
    let request = first || !was_master;
    match d.sync.start(&info, request) {
        Ok(()) if request => {
            // wait for the table (or the give-up), then allow preemption
            let mut done = d.sync.table_complete();
            let tx = reconfigure.clone();
            let inst = b.instance.clone();
            tokio::spawn(async move {
                let _ = done.wait_for(|c| *c).await;
                info!(instance = %inst, "({inst}) connection table complete, preemption allowed");
                let _ = tx.send(rvs_vrrp::shell::Reconfigure::PreemptHold {
                    instance: inst,
                    hold: false,
                });
            });
        }
        Ok(()) => {}
        Err((true, _)) => {}
        Err((false, e)) => {
            warn!(instance = %b.instance, error = %e, "lvs_sync_daemon: backup sync daemon not started");
            release(reconfigure);
        }
    }
}

impl Vrrp {
    /// Start the instances; status goes to `daemon.vrrp`, transitions to
    /// the daemon's event log.
    pub fn start(
        daemon: &Arc<Daemon>,
        instances: Vec<InstanceConfig>,
        mut opts: RunOptions,
        sync: Option<SyncBinding>,
    ) -> anyhow::Result<Vrrp> {
        let (netlink, _nl_task) = rvs_netlink::spawn()
            .map_err(|e| anyhow::anyhow!("cannot open rtnetlink for VRRP (needs CAP_NET_ADMIN; run as root or without vrrp_instance blocks): {e}"))?;
        let (tx, rx) = watch::channel(Vec::<InstanceStatus>::new());
        let cancel = CancellationToken::new();
        let (ptx, prx) = tokio::sync::mpsc::unbounded_channel();
        opts.reconfigure = Some(prx);
        // instances taken over from the previous rvsd, in their state: not
        // a transition
        let taken: std::collections::HashMap<String, String> = opts
            .take_over
            .iter()
            .map(|(n, t)| (n.clone(), t.state.as_str().to_string()))
            .collect();
        // an instance taken over from the previous rvsd has its table
        // already: no need to hold preemption for the sync daemon's
        for i in instances.iter().filter(|i| i.preempt_hold) {
            if opts.take_over.contains_key(&i.name) {
                let _ = ptx.send(rvs_vrrp::shell::Reconfigure::PreemptHold {
                    instance: i.name.clone(),
                    hold: false,
                });
            }
        }
        let running = std::sync::Mutex::new(instances.clone());
        let mut tracked: Vec<String> = instances
            .iter()
            .flat_map(|i| i.tracks.iter())
            .filter_map(|t| t.name.strip_prefix(IF_TRACK_PREFIX).map(str::to_string))
            .collect();
        tracked.sort();
        tracked.dedup();
        if !tracked.is_empty() {
            let (ttx, trx) = tokio::sync::mpsc::unbounded_channel();
            opts.tracks = Some(trx);
            spawn_interface_tracker(tracked, ttx, cancel.clone());
        }
        let c2 = cancel.clone();
        let task = tokio::spawn(async move {
            if let Err(e) = rvs_vrrp::shell::run_with(instances, opts, netlink, c2, tx).await {
                tracing::error!(error = %e, "VRRP stopped");
            }
        });
        let rx2 = rx.clone();
        let status = rx.clone();
        *daemon.vrrp.lock() = Some(Box::new(move || {
            let st = rx2.borrow().clone();
            StatusReport {
                text: render(&st),
                data: serde_json::to_value(&st).unwrap_or_default(),
            }
        }));
        // Transitions → events (and the sync daemons of lvs_sync_daemon).
        let d = Arc::downgrade(daemon);
        let mut rx3 = rx;
        let ptx2 = ptx.clone();
        tokio::spawn(async move {
            let mut last: std::collections::HashMap<String, String> = Default::default();
            while rx3.changed().await.is_ok() {
                let st = rx3.borrow().clone();
                let Some(d) = d.upgrade() else { return };
                for i in st {
                    let s = format!("{:?}", i.state).to_uppercase();
                    if last.get(&i.name) != Some(&s) {
                        if let Some(b) = sync.as_ref().filter(|b| b.instance == i.name) {
                            if s != "INIT" && s != "STOP" {
                                let first = !last.contains_key(&i.name);
                                follow_sync(&d, b, &s, first, &ptx2);
                            }
                        }
                        let continued = !last.contains_key(&i.name)
                            && taken.get(&i.name).is_some_and(|t| *t == s);
                        if continued {
                            info!(instance = %i.name, state = %s, "VRRP instance taken over from the previous rvsd");
                        } else if last.contains_key(&i.name) || s == "MASTER" {
                            info!(instance = %i.name, state = %s, priority = i.effective_priority, "VRRP transition");
                            d.record_event("vrrp", format!("({}) entering {s} state", i.name));
                        }
                        last.insert(i.name.clone(), s);
                    }
                }
            }
        });
        Ok(Vrrp {
            cancel,
            task,
            reconfigure: ptx,
            running,
            status,
        })
    }

    /// Wait (up to `deadline`) until the instances run: their first
    /// adverts are out (a successor reports READY only then).
    pub async fn started(&self, deadline: Duration) -> bool {
        let mut rx = self.status.clone();
        tokio::time::timeout(deadline, rx.wait_for(|s| !s.is_empty()))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Apply a reloaded configuration's instances. Priority and
    /// `virtual_ipaddress` changes are applied in place (no state change, no
    /// VIP flap: a MASTER adds and announces new addresses and removes the
    /// ones that are gone); returns false when anything else differs, which
    /// takes a restart of rvsd.
    pub fn reload(&self, new: &[InstanceConfig]) -> bool {
        use rvs_vrrp::shell::Reconfigure;
        let Ok(mut cur) = self.running.lock() else {
            return false;
        };
        let live = cur.len() == new.len()
            && cur.iter().zip(new).all(|(a, b)| {
                let mut b2 = b.clone();
                b2.priority = a.priority;
                b2.vips = a.vips.clone();
                *a == b2
            });
        if !live {
            return *cur == new;
        }
        for (a, b) in cur.iter_mut().zip(new) {
            if a.priority != b.priority {
                let _ = self.reconfigure.send(Reconfigure::Priority {
                    instance: b.name.clone(),
                    priority: b.priority,
                });
                a.priority = b.priority;
            }
            if a.vips != b.vips {
                let _ = self.reconfigure.send(Reconfigure::Vips {
                    instance: b.name.clone(),
                    vips: b.vips.clone(),
                });
                a.vips = b.vips.clone();
            }
        }
        true
    }

    /// Leave MASTER cleanly (priority-0 advert, VIPs removed) and wait.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        if tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .is_err()
        {
            warn!("VRRP did not stop within 5 s");
        }
    }
}
