//! The seam between rvsadm and rvsd: [`Backend`] runs one API
//! [`Command`]. The binary uses [`ClientBackend`] (the control socket);
//! tests use [`FakeBackend`], an in-memory table with the kernel's error
//! semantics.

use rvs_api::{
    ApiError, Client, ClientError, Command, ConnInfo, DaemonInfo, DaemonState, DestInfo, ErrorCode,
    Info, Rates, Reply, ServiceInfo, ServiceKey, Stats, Timeouts,
};

/// Why a backend call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendError {
    /// rvsd refused the command (the errno-like class decides the message).
    Api(ApiError),
    /// Transport failure after connecting (I/O, malformed answer, …).
    Transport(String),
}

/// Something that executes control-API commands.
pub trait Backend {
    fn call(&mut self, cmd: &Command) -> Result<Reply, BackendError>;
}

/// The real thing: rvsd's control socket.
#[derive(Debug)]
pub struct ClientBackend {
    client: Client,
    info: Option<Info>,
}

impl ClientBackend {
    pub fn new(client: Client) -> Self {
        ClientBackend { client, info: None }
    }

    /// The [`Info`] fetched by [`ClientBackend::init`].
    pub fn info(&self) -> Option<&Info> {
        self.info.as_ref()
    }

    /// Connect and fetch [`Info`] (ipvsadm's `ipvs_init`). A
    /// [`ClientError::Connect`] here means "rvsd is not running".
    pub fn init(&mut self) -> Result<(), ClientError> {
        match self.client.call(&Command::GetInfo)? {
            Reply::Info(i) => {
                self.info = Some(i);
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

impl Backend for ClientBackend {
    fn call(&mut self, cmd: &Command) -> Result<Reply, BackendError> {
        if let (Command::GetInfo, Some(i)) = (cmd, &self.info) {
            return Ok(Reply::Info(i.clone()));
        }
        self.client.call(cmd).map_err(|e| match e {
            ClientError::Api(a) => BackendError::Api(a),
            other => BackendError::Transport(other.to_string()),
        })
    }
}

/// Schedulers the fake accepts (rvsd rejects others with `NoEnt`).
pub const KNOWN_SCHEDULERS: &[&str] = &[
    "rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh", "twos",
];

/// In-memory stand-in for rvsd with the kernel's list order and errno
/// classes: services in insertion order, destinations newest first.
#[derive(Debug, Clone)]
pub struct FakeBackend {
    pub info: Info,
    pub services: Vec<ServiceInfo>,
    pub conns: Vec<ConnInfo>,
    pub timeouts: Timeouts,
    pub daemons: Vec<DaemonInfo>,
    /// IPVS sysctls (`--sysctl`), name without prefix -> value.
    pub sysctls: Vec<(String, String)>,
    /// Every command received, in order.
    pub log: Vec<Command>,
    /// When set, every call fails with this error.
    pub fail_all: Option<BackendError>,
}

impl Default for FakeBackend {
    fn default() -> Self {
        FakeBackend {
            info: Info {
                version: 0x010201,
                conn_tab_size: 4096,
                num_services: 0,
                rvsd_version: "test".into(),
                engine: "fake".into(),
            },
            services: Vec::new(),
            conns: Vec::new(),
            timeouts: Timeouts {
                tcp: 900,
                tcpfin: 120,
                udp: 300,
            },
            daemons: Vec::new(),
            sysctls: vec![
                ("backup_only".into(), "0".into()),
                ("sync_threshold".into(), "3\t50".into()),
            ],
            log: Vec::new(),
            fail_all: None,
        }
    }
}

fn err(code: ErrorCode, msg: &str) -> BackendError {
    BackendError::Api(ApiError::new(code, msg))
}

impl FakeBackend {
    fn find(&self, key: &ServiceKey) -> Option<usize> {
        self.services.iter().position(|s| s.spec.key == *key)
    }

    fn find_mut(&mut self, key: &ServiceKey) -> Result<&mut ServiceInfo, BackendError> {
        match self.find(key) {
            Some(i) => Ok(&mut self.services[i]),
            None => Err(err(ErrorCode::Srch, "no such service")),
        }
    }

    fn check_sched(spec: &rvs_api::ServiceSpec) -> Result<(), BackendError> {
        if !KNOWN_SCHEDULERS.contains(&spec.scheduler.as_str()) {
            return Err(err(ErrorCode::NoEnt, "scheduler not found"));
        }
        if let Some(pe) = &spec.pe_name {
            if pe != "sip" {
                return Err(err(ErrorCode::NoEnt, "persistence engine not found"));
            }
        }
        Ok(())
    }

    fn check_dest(d: &rvs_api::DestSpec) -> Result<(), BackendError> {
        if d.weight > 65535 || d.l_threshold > d.u_threshold && d.u_threshold != 0 {
            return Err(err(ErrorCode::Inval, "invalid destination"));
        }
        Ok(())
    }

    fn exec(&mut self, cmd: &Command) -> Result<Reply, BackendError> {
        match cmd {
            Command::GetInfo => {
                let mut i = self.info.clone();
                i.num_services = self.services.len() as u32;
                Ok(Reply::Info(i))
            }
            Command::ListServices => Ok(Reply::Services(self.services.clone())),
            Command::GetService { key } => match self.find(key) {
                Some(i) => Ok(Reply::Service(self.services[i].clone())),
                None => Err(err(ErrorCode::Srch, "no such service")),
            },
            Command::ListConnections => Ok(Reply::Connections(self.conns.clone())),
            Command::GetTimeouts => Ok(Reply::Timeouts(self.timeouts)),
            Command::ListDaemons => Ok(Reply::Daemons(self.daemons.clone())),
            Command::ListSysctls => Ok(Reply::Sysctls(self.sysctls.clone())),
            Command::SetSysctl { name, value } => {
                match self.sysctls.iter_mut().find(|(n, _)| n == name) {
                    Some((_, v)) => {
                        *v = value.clone();
                        Ok(Reply::Ok)
                    }
                    None => Err(err(
                        ErrorCode::BadRequest,
                        &format!("unknown IPVS sysctl '{name}'"),
                    )),
                }
            }
            Command::ListChecks | Command::ListVrrp => Ok(Reply::Status(rvs_api::StatusReport {
                text: String::new(),
                data: serde_json::Value::Array(Vec::new()),
            })),
            Command::AddService { spec } => {
                if self.find(&spec.key).is_some() {
                    return Err(err(ErrorCode::Exist, "service exists"));
                }
                Self::check_sched(spec)?;
                self.services.push(ServiceInfo {
                    spec: spec.clone(),
                    stats: Stats::default(),
                    rates: Rates::default(),
                    dests: Vec::new(),
                });
                Ok(Reply::Ok)
            }
            Command::EditService { spec } => {
                let i = self
                    .find(&spec.key)
                    .ok_or_else(|| err(ErrorCode::Srch, "no such service"))?;
                Self::check_sched(spec)?;
                self.services[i].spec = spec.clone();
                Ok(Reply::Ok)
            }
            Command::DelService { key } => {
                let i = self
                    .find(key)
                    .ok_or_else(|| err(ErrorCode::Srch, "no such service"))?;
                self.services.remove(i);
                Ok(Reply::Ok)
            }
            Command::Flush => {
                self.services.clear();
                Ok(Reply::Ok)
            }
            Command::AddDest { service, dest } => {
                let s = self.find_mut(service)?;
                if s.dests
                    .iter()
                    .any(|d| d.spec.addr == dest.addr && d.spec.port == dest.port)
                {
                    return Err(err(ErrorCode::Exist, "destination exists"));
                }
                Self::check_dest(dest)?;
                s.dests.insert(
                    0,
                    DestInfo {
                        spec: dest.clone(),
                        active_conns: 0,
                        inact_conns: 0,
                        persist_conns: 0,
                        stats: Stats::default(),
                        rates: Rates::default(),
                    },
                );
                Ok(Reply::Ok)
            }
            Command::EditDest { service, dest } => {
                let s = self.find_mut(service)?;
                Self::check_dest(dest)?;
                let d = s
                    .dests
                    .iter_mut()
                    .find(|d| d.spec.addr == dest.addr && d.spec.port == dest.port)
                    .ok_or_else(|| err(ErrorCode::NoEnt, "no such destination"))?;
                d.spec = dest.clone();
                Ok(Reply::Ok)
            }
            Command::DelDest {
                service,
                addr,
                port,
            } => {
                let s = self.find_mut(service)?;
                let i = s
                    .dests
                    .iter()
                    .position(|d| d.spec.addr == *addr && d.spec.port == *port)
                    .ok_or_else(|| err(ErrorCode::NoEnt, "no such destination"))?;
                s.dests.remove(i);
                Ok(Reply::Ok)
            }
            Command::Zero { service } => {
                let zero = |s: &mut ServiceInfo| {
                    s.stats = Stats::default();
                    s.rates = Rates::default();
                    for d in &mut s.dests {
                        d.stats = Stats::default();
                        d.rates = Rates::default();
                    }
                };
                match service {
                    Some(k) => zero(self.find_mut(k)?),
                    None => self.services.iter_mut().for_each(zero),
                }
                Ok(Reply::Ok)
            }
            Command::SetTimeouts { timeouts } => {
                if timeouts.tcp != 0 {
                    self.timeouts.tcp = timeouts.tcp;
                }
                if timeouts.tcpfin != 0 {
                    self.timeouts.tcpfin = timeouts.tcpfin;
                }
                if timeouts.udp != 0 {
                    self.timeouts.udp = timeouts.udp;
                }
                Ok(Reply::Ok)
            }
            Command::StartDaemon { daemon } => {
                if self.daemons.iter().any(|d| d.state == daemon.state) {
                    return Err(err(ErrorCode::Exist, "daemon running"));
                }
                self.daemons.push(daemon.clone());
                self.daemons.sort_by_key(|d| d.state != DaemonState::Master);
                Ok(Reply::Ok)
            }
            Command::StopDaemon { state, .. } => {
                let i = self
                    .daemons
                    .iter()
                    .position(|d| d.state == *state)
                    .ok_or_else(|| err(ErrorCode::Srch, "no daemon"))?;
                self.daemons.remove(i);
                Ok(Reply::Ok)
            }
        }
    }
}

impl Backend for FakeBackend {
    fn call(&mut self, cmd: &Command) -> Result<Reply, BackendError> {
        self.log.push(cmd.clone());
        if let Some(e) = &self.fail_all {
            return Err(e.clone());
        }
        self.exec(cmd)
    }
}
