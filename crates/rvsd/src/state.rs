//! The daemon's shared state and the control-command handler: one place
//! where API commands become model operations, whatever their source
//! (rvsadm over the socket, the keepalived config, health checks, the demo).

use crate::convert::*;
use parking_lot::Mutex;
use rvs_api::{ApiError, Command, ErrorCode, Info, Reply, StatusReport, Timeouts};
use rvs_core::{Protocol, SvcKey};
use rvs_dataplane::{Engine, FwmarkKey, ListenKey, Shared};
use std::net::SocketAddr;
use std::sync::Arc;
use tracing::info;

/// A state change worth showing an operator (dashboard "recent events").
#[derive(Debug, Clone, serde::Serialize)]
pub struct Event {
    /// Seconds since the Unix epoch.
    pub time: f64,
    /// `health`, `vrrp`, `reload`, `table`.
    pub kind: String,
    pub message: String,
}

/// How many recent events are kept.
pub const MAX_EVENTS: usize = 200;

/// Produces a status view (health checks, VRRP) for the API.
pub type StatusFn = Box<dyn Fn() -> StatusReport + Send + Sync>;

pub struct Daemon {
    pub shared: Arc<Shared>,
    /// Health-check view, set when a keepalived configuration runs.
    pub checks: Mutex<Option<StatusFn>>,
    /// VRRP view, set when VRRP instances run.
    pub vrrp: Mutex<Option<StatusFn>>,
    pub engine: Arc<dyn Engine>,
    /// The connection-sync daemons (`--start-daemon`, `lvs_sync_daemon`).
    pub sync: crate::sync::SyncManager,
    stopping: std::sync::atomic::AtomicBool,
    /// Recent state changes, oldest first (at most [`MAX_EVENTS`]).
    pub events: Mutex<std::collections::VecDeque<Event>>,
    /// Configuration reloads attempted, and whether the last one succeeded.
    pub reloads: std::sync::atomic::AtomicU64,
    pub last_reload_ok: std::sync::atomic::AtomicBool,
}

impl Daemon {
    pub fn new(shared: Arc<Shared>, engine: Arc<dyn Engine>) -> Arc<Self> {
        Arc::new(Daemon {
            sync: crate::sync::SyncManager::new(shared.clone()),
            shared,
            engine,
            checks: Mutex::new(None),
            vrrp: Mutex::new(None),
            stopping: std::sync::atomic::AtomicBool::new(false),
            events: Mutex::new(std::collections::VecDeque::new()),
            reloads: std::sync::atomic::AtomicU64::new(0),
            last_reload_ok: std::sync::atomic::AtomicBool::new(true),
        })
    }

    /// Execute one control command.
    pub fn handle(&self, cmd: Command) -> Result<Reply, ApiError> {
        let mutating = !matches!(
            cmd,
            Command::GetInfo
                | Command::ListServices
                | Command::GetService { .. }
                | Command::ListConnections
                | Command::GetTimeouts
                | Command::ListDaemons
                | Command::ListChecks
                | Command::ListVrrp
                | Command::ListSysctls
        );
        let r = self.execute(cmd);
        if mutating && r.is_ok() {
            self.reconcile();
        }
        r
    }

    fn execute(&self, cmd: Command) -> Result<Reply, ApiError> {
        let now = self.shared.now();
        let e = |e: rvs_core::Error| error_to_api(&e);
        match cmd {
            Command::GetInfo => {
                let t = self.shared.ipvs.lock();
                Ok(Reply::Info(Info {
                    version: 0x010201,
                    conn_tab_size: t.conn_tab_size(),
                    num_services: t.services().count() as u32,
                    rvsd_version: env!("CARGO_PKG_VERSION").to_string(),
                    engine: self.engine.name().to_string(),
                }))
            }
            Command::ListServices => {
                let t = self.shared.ipvs.lock();
                Ok(Reply::Services(
                    t.services().map(|s| service_info(&s)).collect(),
                ))
            }
            Command::GetService { key } => {
                let t = self.shared.ipvs.lock();
                t.service(&key_to_core(&key))
                    .map(|s| Reply::Service(service_info(&s)))
                    .ok_or_else(|| ApiError::new(ErrorCode::Srch, "No such service"))
            }
            Command::ListConnections => {
                let t = self.shared.ipvs.lock();
                Ok(Reply::Connections(
                    t.connections(now).iter().map(conn_info).collect(),
                ))
            }
            Command::GetTimeouts => {
                let (tcp, tcpfin, udp) = self.shared.ipvs.lock().timeouts();
                Ok(Reply::Timeouts(Timeouts { tcp, tcpfin, udp }))
            }
            Command::ListDaemons => Ok(Reply::Daemons(self.sync.list())),
            Command::ListSysctls => {
                let t = self.shared.ipvs.lock();
                Ok(Reply::Sysctls(
                    rvs_core::SYSCTL_NAMES
                        .iter()
                        .map(|n| (n.to_string(), t.sysctl().get(n).unwrap_or_default()))
                        .collect(),
                ))
            }
            Command::SetSysctl { name, value } => {
                self.shared
                    .ipvs
                    .lock()
                    .sysctl_mut()
                    .set(&name, &value)
                    .map_err(|e| ApiError::new(ErrorCode::BadRequest, e.to_string()))?;
                info!(sysctl = %name, value = %value, "sysctl set");
                Ok(Reply::Ok)
            }
            Command::ListChecks => Ok(Reply::Status(match &*self.checks.lock() {
                Some(f) => f(),
                None => StatusReport {
                    text: "No health checks (rvsd runs no keepalived configuration; start it with -f FILE)\n".into(),
                    data: serde_json::Value::Array(Vec::new()),
                },
            })),
            Command::ListVrrp => Ok(Reply::Status(match &*self.vrrp.lock() {
                Some(f) => f(),
                None => StatusReport {
                    text: "No VRRP instances\n".into(),
                    data: serde_json::Value::Array(Vec::new()),
                },
            })),
            Command::AddService { spec } => {
                let conf = service_to_core(&spec);
                self.shared.ipvs.lock().add_service(now, &conf).map_err(e)?;
                info!(service = %svc_name(&spec.key), scheduler = %spec.scheduler, "service added");
                Ok(Reply::Ok)
            }
            Command::EditService { spec } => {
                let conf = service_to_core(&spec);
                self.shared
                    .ipvs
                    .lock()
                    .edit_service(now, &conf)
                    .map_err(e)?;
                info!(service = %svc_name(&spec.key), scheduler = %spec.scheduler, "service edited");
                Ok(Reply::Ok)
            }
            Command::DelService { key } => {
                self.shared
                    .ipvs
                    .lock()
                    .del_service(now, &key_to_core(&key))
                    .map_err(e)?;
                info!(service = %svc_name(&key), "service deleted");
                Ok(Reply::Ok)
            }
            Command::Flush => {
                self.shared.ipvs.lock().flush(now);
                info!("table flushed");
                Ok(Reply::Ok)
            }
            Command::AddDest { service, dest } => {
                let d = dest_to_core(&dest);
                self.shared
                    .ipvs
                    .lock()
                    .add_dest(now, &key_to_core(&service), &d)
                    .map_err(e)?;
                info!(service = %svc_name(&service), rs = %SocketAddr::new(dest.addr, dest.port), weight = dest.weight, "destination added");
                Ok(Reply::Ok)
            }
            Command::EditDest { service, dest } => {
                let d = dest_to_core(&dest);
                self.shared
                    .ipvs
                    .lock()
                    .edit_dest(now, &key_to_core(&service), &d)
                    .map_err(e)?;
                info!(service = %svc_name(&service), rs = %SocketAddr::new(dest.addr, dest.port), weight = dest.weight, "destination edited");
                Ok(Reply::Ok)
            }
            Command::DelDest {
                service,
                addr,
                port,
            } => {
                self.shared
                    .ipvs
                    .lock()
                    .del_dest(now, &key_to_core(&service), addr, port)
                    .map_err(e)?;
                info!(service = %svc_name(&service), rs = %SocketAddr::new(addr, port), "destination deleted");
                Ok(Reply::Ok)
            }
            Command::Zero { service } => {
                let k = service.as_ref().map(key_to_core);
                self.shared.ipvs.lock().zero(k.as_ref()).map_err(e)?;
                Ok(Reply::Ok)
            }
            Command::SetTimeouts { timeouts } => {
                self.shared
                    .ipvs
                    .lock()
                    .set_timeouts(timeouts.tcp, timeouts.tcpfin, timeouts.udp)
                    .map_err(e)?;
                Ok(Reply::Ok)
            }
            Command::StartDaemon { daemon } => {
                self.sync.start(&daemon, true).map_err(|(exists, msg)| {
                    if exists {
                        ApiError::new(ErrorCode::Exist, msg)
                    } else {
                        ApiError::new(ErrorCode::BadRequest, msg)
                    }
                })?;
                Ok(Reply::Ok)
            }
            Command::StopDaemon { state, .. } => {
                if !self.sync.stop(state) {
                    return Err(ApiError::new(ErrorCode::Srch, "No daemon is running"));
                }
                Ok(Reply::Ok)
            }
        }
    }

    /// Record a state change for the dashboard (it is logged by the caller).
    pub fn record_event(&self, kind: &str, message: impl Into<String>) {
        let time = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        let mut ev = self.events.lock();
        if ev.len() >= MAX_EVENTS {
            ev.pop_front();
        }
        ev.push_back(Event {
            time,
            kind: kind.to_string(),
            message: message.into(),
        });
    }

    /// Shut the data plane down; later table changes no longer open listeners.
    pub fn stop(&self) {
        self.stopping
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.sync.shutdown();
        self.engine.shutdown();
    }

    /// Make the engine serve exactly the table's address and firewall-mark
    /// services.
    pub fn reconcile(&self) {
        if self.stopping.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let (wanted, marks): (Vec<ListenKey>, Vec<FwmarkKey>) = {
            let t = self.shared.ipvs.lock();
            let mut marks: Vec<FwmarkKey> = t
                .services()
                .filter_map(|s| match s.conf().key {
                    SvcKey::Fwmark { mark, v6 } => Some(FwmarkKey { mark, v6 }),
                    SvcKey::Addr { .. } => None,
                })
                .collect();
            marks.sort();
            marks.dedup();
            let mut v: Vec<ListenKey> = t
                .services()
                .filter_map(|s| match s.conf().key {
                    SvcKey::Addr { proto, addr, port } if port != 0 && proto != Protocol::Sctp => {
                        Some(ListenKey {
                            proto,
                            addr: SocketAddr::new(addr, port),
                        })
                    }
                    _ => None,
                })
                .collect();
            v.sort();
            v.dedup();
            (v, marks)
        };
        self.engine.reconcile_fwmarks(&marks);
        self.engine.reconcile(&wanted);
    }
}
