//! Running a keepalived configuration: the virtual-server table it
//! describes, one health-check driver per service, and SIGHUP reloads that
//! apply only the difference.
//!
//! Health checks decide which real servers are in the table: each driver
//! (rvs-check) emits keepalived's LVS commands (add/remove a destination, set
//! its weight, sorry server in/out), which are applied here through the same
//! command handler rvsadm uses.

use crate::convert::svc_name;
use crate::keepalived::{self, VsPlan};
use crate::state::Daemon;
use parking_lot::Mutex;
use rvs_api::{Command, DestSpec, ErrorCode, Reply, ServiceKey};
use rvs_check::{Action, DriverOptions, StatusHandle, VirtualServerConfig};
use rvs_config::{LoadOptions, Loaded};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

struct Driver {
    cancel: CancellationToken,
    reload: mpsc::Sender<VirtualServerConfig>,
    status: StatusHandle,
}

#[derive(Default)]
struct Running {
    plans: HashMap<ServiceKey, VsPlan>,
    /// (service, real server as configured) → destination to install.
    dests: HashMap<(ServiceKey, SocketAddr), DestSpec>,
    /// Sorry server template per service.
    sorry: HashMap<ServiceKey, DestSpec>,
    names: HashMap<String, ServiceKey>,
    drivers: HashMap<ServiceKey, Driver>,
    /// The last successfully applied configuration.
    config: Option<rvs_config::Config>,
}

/// The keepalived-configuration side of rvsd.
pub struct Runtime {
    daemon: Arc<Daemon>,
    path: PathBuf,
    opts: LoadOptions,
    actions: mpsc::Sender<(String, Action)>,
    running: Mutex<Running>,
    /// Binary upgrade: the previous rvsd's check status per virtual server,
    /// taken by each driver as it starts.
    initial: Mutex<HashMap<String, rvs_check::VirtualServerStatus>>,
}

/// Print diagnostics the way `rvsd -t` and start-up show them.
pub fn print_diagnostics(loaded: &Loaded) {
    for d in &loaded.diagnostics {
        eprintln!("{d}");
    }
}

/// Load a configuration file with diagnostics.
pub fn load(path: &Path, opts: &LoadOptions) -> anyhow::Result<Loaded> {
    rvs_config::load(path, opts).map_err(|e| anyhow::anyhow!("{e}"))
}

impl Runtime {
    /// Build the table from `loaded` and start the health checks.
    pub fn start(
        daemon: Arc<Daemon>,
        path: PathBuf,
        opts: LoadOptions,
        loaded: &Loaded,
    ) -> Arc<Runtime> {
        Self::start_taking_over(daemon, path, opts, loaded, HashMap::new())
    }

    /// [`Runtime::start`] after a binary upgrade: the health checks of the
    /// virtual servers named in `initial` go on from the previous rvsd's
    /// status ([`rvs_check::VirtualServer::take_over`]): no real server is
    /// re-added or removed, no check cycle runs first.
    pub fn start_taking_over(
        daemon: Arc<Daemon>,
        path: PathBuf,
        opts: LoadOptions,
        loaded: &Loaded,
        initial: HashMap<String, rvs_check::VirtualServerStatus>,
    ) -> Arc<Runtime> {
        let (tx, rx) = mpsc::channel(1024);
        let rt = Arc::new(Runtime {
            daemon,
            path,
            opts,
            actions: tx,
            running: Mutex::new(Running::default()),
            initial: Mutex::new(initial),
        });
        tokio::spawn(apply_actions(rt.clone(), rx));
        rt.apply(&loaded.config);
        let weak = Arc::downgrade(&rt);
        *rt.daemon.checks.lock() = Some(Box::new(move || {
            let st = weak.upgrade().map(|r| r.check_status()).unwrap_or_default();
            rvs_api::StatusReport {
                text: rvs_check::machine::render_checks(&st),
                data: serde_json::to_value(&st).unwrap_or_default(),
            }
        }));
        rt
    }

    /// Re-read the file; apply only the difference. A file with errors keeps
    /// the running configuration.
    pub fn reload(&self) {
        let loaded = match load(&self.path, &self.opts) {
            Ok(l) => l,
            Err(e) => {
                error!(file = %self.path.display(), error = %e, "reload failed, keeping the running configuration");
                self.note_reload(false);
                return;
            }
        };
        for d in &loaded.diagnostics {
            warn!("{d}");
        }
        if loaded.has_errors() {
            error!(file = %self.path.display(), "reload: the new configuration has errors, keeping the running configuration");
            self.note_reload(false);
            return;
        }
        self.apply(&loaded.config);
        self.note_reload(true);
        info!(file = %self.path.display(), "configuration reloaded");
    }

    fn note_reload(&self, ok: bool) {
        use std::sync::atomic::Ordering;
        self.daemon.reloads.fetch_add(1, Ordering::Relaxed);
        self.daemon.last_reload_ok.store(ok, Ordering::Relaxed);
        self.daemon.record_event(
            "reload",
            if ok {
                format!("configuration {} reloaded", self.path.display())
            } else {
                format!(
                    "reload of {} failed; running configuration kept",
                    self.path.display()
                )
            },
        );
    }

    /// Health-check status of every service, for `rvsadm --checks`.
    pub fn check_status(&self) -> Vec<rvs_check::VirtualServerStatus> {
        let r = self.running.lock();
        let mut v: Vec<_> = r
            .drivers
            .values()
            .map(|d| d.status.lock().map(|s| s.clone()).unwrap_or_default())
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    pub fn config(&self) -> Option<rvs_config::Config> {
        self.running.lock().config.clone()
    }

    fn apply(&self, cfg: &rvs_config::Config) {
        let d = &self.daemon;
        let mut warnings = Vec::new();
        if let Some(t) = keepalived::timeouts(cfg) {
            if let Err(e) = d.handle(Command::SetTimeouts { timeouts: t }) {
                warn!(error = %e.message, "lvs_timeouts not applied");
            }
        }
        if cfg.global_defs.lvs_sync_daemon.is_some() && self.daemon.engine.name() == "proxy" {
            warn!("{}", crate::sync::PROXY_WARNING);
        }
        let plans = keepalived::plan(cfg);
        let mut run = self.running.lock();
        let new_keys: HashMap<ServiceKey, &VsPlan> =
            plans.iter().map(|p| (p.spec.key, p)).collect();

        // Services that are gone.
        let gone: Vec<ServiceKey> = run
            .plans
            .keys()
            .filter(|k| !new_keys.contains_key(k))
            .copied()
            .collect();
        for k in gone {
            if let Some(drv) = run.drivers.remove(&k) {
                drv.cancel.cancel();
            }
            run.plans.remove(&k);
            run.names.retain(|_, v| *v != k);
            run.dests.retain(|(s, _), _| *s != k);
            run.sorry.remove(&k);
            match d.handle(Command::DelService { key: k }) {
                Ok(_) => info!(service = %svc_name(&k), "service no longer exists, removed"),
                Err(e) if e.code == ErrorCode::Srch => {}
                Err(e) => {
                    warn!(service = %svc_name(&k), error = %e.message, "cannot remove service")
                }
            }
        }

        for p in &plans {
            let k = p.spec.key;
            let vs = &cfg.virtual_servers[p.vs_index];
            // Destination templates (what to install when a checker says up).
            run.dests.retain(|(s, _), _| *s != k);
            for rp in &p.dests {
                let rs = &vs.real_servers[rp.rs_index];
                run.dests
                    .insert((k, SocketAddr::new(rs.ip, rs.port)), rp.dest.clone());
            }
            match &vs.sorry_server {
                Some(s) => {
                    let (fwd, tun_type, tun_port, tun_flags) =
                        keepalived::fwd_of(s.lvs_method.as_ref().unwrap_or(&vs.lvs_method));
                    let port = match (fwd, k) {
                        (
                            rvs_api::FwdMethod::Route | rvs_api::FwdMethod::Tunnel,
                            ServiceKey::Addr { port, .. },
                        ) if port != 0 => port,
                        _ => s.port,
                    };
                    run.sorry.insert(
                        k,
                        DestSpec {
                            addr: s.ip,
                            port,
                            fwd,
                            weight: 1,
                            u_threshold: 0,
                            l_threshold: 0,
                            tun_type,
                            tun_port,
                            tun_flags,
                        },
                    );
                }
                None => {
                    run.sorry.remove(&k);
                }
            }
            run.names.insert(p.name.clone(), k);
            let ccfg = keepalived::checker_config(cfg, p, &mut warnings);
            match run.plans.get(&k) {
                None => {
                    match d.handle(Command::AddService {
                        spec: p.spec.clone(),
                    }) {
                        Ok(_) => {}
                        Err(e) if e.code == ErrorCode::Exist => {
                            let _ = d.handle(Command::EditService {
                                spec: p.spec.clone(),
                            });
                        }
                        Err(e) => {
                            error!(service = %p.name, error = %e.message, "cannot add virtual server");
                            continue;
                        }
                    }
                    let vip = match k {
                        ServiceKey::Addr { addr, .. } if vs.ha_suspend => Some(addr),
                        _ => None,
                    };
                    let drv = self.spawn_driver(ccfg, vip);
                    run.drivers.insert(k, drv);
                }
                Some(old) => {
                    if old.spec != p.spec {
                        if let Err(e) = d.handle(Command::EditService {
                            spec: p.spec.clone(),
                        }) {
                            warn!(service = %p.name, error = %e.message, "cannot edit virtual server");
                        }
                    }
                    // Destinations that stay: update method/thresholds/weight
                    // in place, keeping a health-imposed weight 0.
                    self.refresh_dests(k, p);
                    if let Some(drv) = run.drivers.get(&k) {
                        let _ = drv.reload.try_send(ccfg);
                    }
                }
            }
            run.plans.insert(k, p.clone());
        }
        for w in warnings {
            warn!("{w}");
        }
        run.config = Some(cfg.clone());
        drop(run);
        self.daemon.reconcile();
    }

    fn refresh_dests(&self, k: ServiceKey, p: &VsPlan) {
        let Ok(Reply::Service(cur)) = self.daemon.handle(Command::GetService { key: k }) else {
            return;
        };
        for rp in &p.dests {
            let Some(have) = cur
                .dests
                .iter()
                .find(|d| d.spec.addr == rp.dest.addr && d.spec.port == rp.dest.port)
            else {
                continue;
            };
            let mut want = rp.dest.clone();
            if have.spec.weight == 0 {
                want.weight = 0;
            }
            if have.spec != want {
                let _ = self.daemon.handle(Command::EditDest {
                    service: k,
                    dest: want,
                });
            }
        }
    }

    /// Start the checker driver of one service. With `ha_suspend`, `vip` is
    /// the service address: checks are suspended while it is not configured
    /// on this host (e.g. on the VRRP backup), as keepalived does.
    fn spawn_driver(&self, cfg: VirtualServerConfig, vip: Option<std::net::IpAddr>) -> Driver {
        let cancel = CancellationToken::new();
        let (rtx, rrx) = mpsc::channel(4);
        let status: StatusHandle = Arc::new(std::sync::Mutex::new(Default::default()));
        let suspend = vip.map(|vip| {
            let (tx, rx) = tokio::sync::watch::channel(!crate::sys::is_local_addr(&vip));
            let c = cancel.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
                loop {
                    tokio::select! {
                        _ = c.cancelled() => return,
                        _ = tick.tick() => {
                            let absent = !crate::sys::is_local_addr(&vip);
                            tx.send_if_modified(|v| std::mem::replace(v, absent) != absent);
                        }
                    }
                }
            });
            rx
        });
        let initial = self.initial.lock().remove(&cfg.name);
        if initial.is_some() {
            info!(service = %cfg.name, "health checks taken over from the previous rvsd");
        }
        let opts = DriverOptions {
            reload: Some(rrx),
            suspend,
            initial,
            ..DriverOptions::default()
        };
        tokio::spawn(rvs_check::run_virtual_server(
            cfg,
            opts,
            self.actions.clone(),
            cancel.clone(),
            status.clone(),
        ));
        Driver {
            cancel,
            reload: rtx,
            status,
        }
    }

    /// Stop every driver (on shutdown).
    pub fn shutdown(&self) {
        for (_, d) in self.running.lock().drivers.drain() {
            d.cancel.cancel();
        }
    }

    fn act(&self, name: &str, a: Action) {
        let (key, tmpl) = {
            let run = self.running.lock();
            let Some(&key) = run.names.get(name) else {
                return;
            };
            let tmpl = match &a {
                Action::AddDest { rs, .. }
                | Action::RemoveDest { rs }
                | Action::SetWeight { rs, .. } => run.dests.get(&(key, *rs)).cloned(),
                Action::AddSorry { addr, .. }
                | Action::RemoveSorry { addr }
                | Action::SetSorryWeight { addr, .. } => {
                    run.sorry.get(&key).filter(|s| s.addr == addr.ip()).cloned()
                }
                _ => None,
            };
            (key, tmpl)
        };
        let Some(mut dest) = tmpl else { return };
        let d = &self.daemon;
        let name_rs = SocketAddr::new(dest.addr, dest.port);
        match a {
            Action::AddDest { weight, .. }
            | Action::SetWeight { weight, .. }
            | Action::AddSorry { weight, .. }
            | Action::SetSorryWeight { weight, .. } => {
                dest.weight = weight;
                let what = match a {
                    Action::AddDest { .. } => "up",
                    Action::AddSorry { .. } => "sorry server in",
                    _ => "weight",
                };
                d.record_event(
                    "health",
                    format!("{name}: real server {name_rs} {what} (weight {weight})"),
                );
                let r = d.handle(Command::AddDest {
                    service: key,
                    dest: dest.clone(),
                });
                let r = match r {
                    Err(e) if e.code == ErrorCode::Exist => {
                        d.handle(Command::EditDest { service: key, dest })
                    }
                    r => r,
                };
                if let Err(e) = r {
                    warn!(service = %name, rs = %name_rs, error = %e.message, "health check: cannot update destination");
                }
            }
            Action::RemoveDest { .. } | Action::RemoveSorry { .. } => {
                d.record_event("health", format!("{name}: real server {name_rs} removed"));
                match d.handle(Command::DelDest {
                    service: key,
                    addr: dest.addr,
                    port: dest.port,
                }) {
                    Ok(_) => {}
                    Err(e) if matches!(e.code, ErrorCode::NoEnt | ErrorCode::Srch) => {}
                    Err(e) => {
                        warn!(service = %name, rs = %name_rs, error = %e.message, "health check: cannot remove destination")
                    }
                }
            }
            _ => {}
        }
    }
}

async fn apply_actions(rt: Arc<Runtime>, mut rx: mpsc::Receiver<(String, Action)>) {
    while let Some((name, a)) = rx.recv().await {
        rt.act(&name, a);
    }
}
