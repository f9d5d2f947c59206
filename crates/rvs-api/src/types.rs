//! Plain data types of the control API. Field meanings follow the kernel's
//! `ip_vs_service_user` / `ip_vs_dest_user` and the ipvsadm views.

use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// Transport protocol of an address-based virtual service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    /// IANA protocol number (TCP 6, UDP 17, SCTP 132).
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
            Protocol::Sctp => 132,
        }
    }
    /// Name as ipvsadm prints it (`TCP`, `UDP`, `SCTP`).
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        }
    }
}

/// Address family (for fwmark services, which have no address).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    Inet,
    Inet6,
}

/// Identifies a virtual service: `-t/-u/--sctp-service ADDR:PORT` or `-f MARK [-6]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ServiceKey {
    Addr {
        protocol: Protocol,
        addr: IpAddr,
        port: u16,
    },
    Fwmark {
        mark: u32,
        family: Family,
    },
}

impl ServiceKey {
    pub fn family(&self) -> Family {
        match self {
            ServiceKey::Addr {
                addr: IpAddr::V4(_),
                ..
            } => Family::Inet,
            ServiceKey::Addr {
                addr: IpAddr::V6(_),
                ..
            } => Family::Inet6,
            ServiceKey::Fwmark { family, .. } => *family,
        }
    }
}

/// Service flags (kernel `IP_VS_SVC_F_*`).
pub mod svc_flags {
    pub const PERSISTENT: u32 = 0x0001;
    pub const ONEPACKET: u32 = 0x0004;
    pub const SCHED1: u32 = 0x0008;
    pub const SCHED2: u32 = 0x0010;
    pub const SCHED3: u32 = 0x0020;
    pub const SCHED_MASK: u32 = SCHED1 | SCHED2 | SCHED3;
}

/// Add/edit-service request, as `ipvsadm -A/-E` sends it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceSpec {
    pub key: ServiceKey,
    /// Scheduler name (`rr`, `wlc`, ...). Unknown names are rejected by rvsd
    /// with [`ErrorCode::NoEnt`].
    pub scheduler: String,
    /// [`svc_flags`] bits.
    pub flags: u32,
    /// Persistence timeout in seconds (meaningful with `PERSISTENT`).
    pub timeout: u32,
    /// Persistence granularity: an IPv4 netmask as a host-order u32
    /// (`0xffff_ffff` = /32) or, for IPv6, a prefix length (128 = /128).
    pub netmask: u32,
    /// Persistence engine name (`sip`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pe_name: Option<String>,
}

impl ServiceSpec {
    /// A non-persistent service with the given scheduler (host netmask).
    pub fn new(key: ServiceKey, scheduler: impl Into<String>) -> Self {
        ServiceSpec {
            key,
            scheduler: scheduler.into(),
            flags: 0,
            timeout: 0,
            netmask: match key.family() {
                Family::Inet => u32::MAX,
                Family::Inet6 => 128,
            },
            pe_name: None,
        }
    }

    /// The same service, persistent for `timeout` seconds (`-p`).
    pub fn persistent(mut self, timeout: u32) -> Self {
        self.flags |= svc_flags::PERSISTENT;
        self.timeout = timeout;
        self
    }
}

/// Forwarding method (kernel `IP_VS_CONN_F_FWD_MASK` values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FwdMethod {
    /// NAT (`-m`), value 0.
    Masq,
    /// Local node, value 1.
    Local,
    /// IP tunnel (`-i`), value 2.
    Tunnel,
    /// Direct routing (`-g`), value 3.
    Route,
}

impl FwdMethod {
    /// The name ipvsadm prints in the Forward column.
    pub fn name(self) -> &'static str {
        match self {
            FwdMethod::Masq => "Masq",
            FwdMethod::Local => "Local",
            FwdMethod::Tunnel => "Tunnel",
            FwdMethod::Route => "Route",
        }
    }
}

/// Tunnel encapsulation (`--tun-type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TunType {
    #[default]
    Ipip,
    Gue,
    Gre,
}

/// Tunnel checksum mode (`--tun-nocsum/--tun-csum/--tun-remcsum`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TunCsum {
    #[default]
    NoCsum,
    Csum,
    RemCsum,
}

/// Add/edit-destination request, as `ipvsadm -a/-e` sends it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DestSpec {
    pub addr: IpAddr,
    pub port: u16,
    pub fwd: FwdMethod,
    /// 0..=65535 (weight 0 = quiesced).
    pub weight: u32,
    /// Upper connection threshold (`-x`), 0 = none.
    #[serde(default)]
    pub u_threshold: u32,
    /// Lower connection threshold (`-y`), 0 = none.
    #[serde(default)]
    pub l_threshold: u32,
    #[serde(default)]
    pub tun_type: TunType,
    #[serde(default)]
    pub tun_port: u16,
    #[serde(default)]
    pub tun_flags: TunCsum,
}

impl DestSpec {
    /// A destination without thresholds or tunnel options.
    pub fn new(addr: IpAddr, port: u16, fwd: FwdMethod, weight: u32) -> Self {
        DestSpec {
            addr,
            port,
            fwd,
            weight,
            u_threshold: 0,
            l_threshold: 0,
            tun_type: TunType::Ipip,
            tun_port: 0,
            tun_flags: TunCsum::NoCsum,
        }
    }
}

/// Counters (kernel `ip_vs_kstats`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Stats {
    pub conns: u64,
    pub inpkts: u64,
    pub outpkts: u64,
    pub inbytes: u64,
    pub outbytes: u64,
}

/// Rates from the 2 s EWMA estimator, per second (bps = bytes per second).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Rates {
    pub cps: u64,
    pub inpps: u64,
    pub outpps: u64,
    pub inbps: u64,
    pub outbps: u64,
}

/// A destination as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DestInfo {
    #[serde(flatten)]
    pub spec: DestSpec,
    pub active_conns: u32,
    pub inact_conns: u32,
    pub persist_conns: u32,
    pub stats: Stats,
    pub rates: Rates,
}

/// A virtual service as listed, with its destinations in the kernel's list
/// order (most recently added first), like `ipvsadm --nosort`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceInfo {
    #[serde(flatten)]
    pub spec: ServiceSpec,
    pub stats: Stats,
    pub rates: Rates,
    pub dests: Vec<DestInfo>,
}

/// One entry of the connection table (what `/proc/net/ip_vs_conn` shows).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnInfo {
    /// `TCP`, `UDP`, `SCTP`, or `IP` for fwmark persistence templates.
    pub protocol: String,
    pub caddr: IpAddr,
    pub cport: u16,
    /// Virtual address (for fwmark templates: the mark encoded as an IPv4 address).
    pub vaddr: IpAddr,
    pub vport: u16,
    pub daddr: IpAddr,
    pub dport: u16,
    /// State name as the kernel prints it (`ESTABLISHED`, `NONE`, `UDP`, ...).
    pub state: String,
    /// Seconds until expiry.
    pub expires: u64,
    /// True for persistence templates.
    #[serde(default)]
    pub template: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pe_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pe_data: Option<String>,
    /// `Sync` when the entry was created or updated by connection sync,
    /// `Local` otherwise (the Origin column of /proc/net/ip_vs_conn_sync).
    #[serde(default = "local_origin")]
    pub origin: String,
}

fn local_origin() -> String {
    "Local".to_string()
}

/// `ipvsadm --set tcp tcpfin udp` / `-L --timeout`, seconds. In a
/// [`Command::SetTimeouts`], 0 means "leave unchanged".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Timeouts {
    pub tcp: u32,
    pub tcpfin: u32,
    pub udp: u32,
}

/// Sync daemon role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DaemonState {
    Master,
    Backup,
}

/// Sync daemon configuration (`--start-daemon`), as `-L --daemon` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonInfo {
    pub state: DaemonState,
    pub mcast_ifn: String,
    pub syncid: u8,
    #[serde(default)]
    pub sync_maxlen: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mcast_group: Option<IpAddr>,
    #[serde(default)]
    pub mcast_port: u16,
    #[serde(default)]
    pub mcast_ttl: u8,
    /// Counters of a running daemon (rvs extension; absent in requests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counters: Option<SyncCounters>,
}

/// What a sync daemon sent, received and dropped (by reason).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncCounters {
    pub messages_sent: u64,
    pub entries_sent: u64,
    pub messages_received: u64,
    pub entries_received: u64,
    /// Send errors (e.g. the interface is down).
    pub send_errors: u64,
    /// Entries the data path could not queue (the sender fell behind).
    pub outbox_dropped: u64,
    /// Received messages or entries dropped, by reason
    /// (`bad_length`, `syncid`, `bad_version`, ...).
    pub dropped: std::collections::BTreeMap<String, u64>,
    /// Whole-table transfers answered (master) / completed (backup).
    pub bulk_sent: u64,
    pub bulk_received: u64,
}

/// `IP_VS_SO_GET_INFO`: version and connection-table size for the banner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Info {
    /// Version code, `0x010201` = 1.2.1.
    pub version: u32,
    /// Connection hash table buckets (`size=4096`).
    pub conn_tab_size: u32,
    pub num_services: u32,
    /// rvsd's own version string.
    pub rvsd_version: String,
    /// Data-plane engine in use (`proxy`, `packet`, ...).
    pub engine: String,
}

/// One RPC to rvsd. Mutating commands mirror the kernel's IPVS commands and
/// fail with the same errno classes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Command {
    GetInfo,
    /// All services with their destinations, in kernel (unsorted) order.
    ListServices,
    /// One service (error `Srch` if missing).
    GetService {
        key: ServiceKey,
    },
    /// The connection table, including persistence templates.
    ListConnections,
    GetTimeouts,
    ListDaemons,
    AddService {
        spec: ServiceSpec,
    },
    EditService {
        spec: ServiceSpec,
    },
    DelService {
        key: ServiceKey,
    },
    /// `-C`: delete every service.
    Flush,
    AddDest {
        service: ServiceKey,
        dest: DestSpec,
    },
    EditDest {
        service: ServiceKey,
        dest: DestSpec,
    },
    DelDest {
        service: ServiceKey,
        addr: IpAddr,
        port: u16,
    },
    /// `-Z`: zero counters of one service (`Some`) or of everything (`None`).
    Zero {
        #[serde(default)]
        service: Option<ServiceKey>,
    },
    SetTimeouts {
        timeouts: Timeouts,
    },
    StartDaemon {
        daemon: DaemonInfo,
    },
    StopDaemon {
        state: DaemonState,
        #[serde(default)]
        syncid: u8,
    },
    /// Health-check state of every real server and checker (`rvsadm --checks`).
    ListChecks,
    /// VRRP instances: state, priority, master, counters (`rvsadm --vrrp`).
    ListVrrp,
    /// The IPVS sysctls (`net.ipv4.vs.*`) and their values.
    ListSysctls,
    /// Set one IPVS sysctl, e.g. `sync_threshold` = `"3 50"`.
    SetSysctl {
        name: String,
        value: String,
    },
}

/// A status view: rendered text plus the same data as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    pub text: String,
    pub data: serde_json::Value,
}

/// Successful answer to a [`Command`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reply", content = "data", rename_all = "snake_case")]
pub enum Reply {
    Ok,
    Info(Info),
    Services(Vec<ServiceInfo>),
    Service(ServiceInfo),
    Connections(Vec<ConnInfo>),
    Timeouts(Timeouts),
    Daemons(Vec<DaemonInfo>),
    Status(StatusReport),
    /// `(name, value)` pairs, names without the `net.ipv4.vs.` prefix.
    Sysctls(Vec<(String, String)>),
}

/// Error class, named after the errno the kernel would return for the same
/// failure, so that clients can print ipvsadm's exact messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ErrorCode {
    /// EEXIST: service / destination already exists, daemon already running.
    Exist,
    /// ESRCH: no such service / service not defined / no daemon running.
    Srch,
    /// ENOENT: scheduler or PE not found / no such destination.
    NoEnt,
    /// EINVAL: invalid operation (bad weight, thresholds, address, ...).
    Inval,
    /// EPERM.
    Perm,
    /// ENOMEM.
    NoMem,
    /// EAFNOSUPPORT.
    AfNoSupport,
    /// EOPNOTSUPP.
    OpNotSupp,
    /// Malformed request (bad JSON, unknown command).
    BadRequest,
}

/// Error answer: a class and a human-readable detail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_json_shape_is_stable() {
        let c = Command::AddDest {
            service: ServiceKey::Addr {
                protocol: Protocol::Tcp,
                addr: "198.18.0.100".parse().unwrap(),
                port: 80,
            },
            dest: DestSpec {
                addr: "198.18.0.21".parse().unwrap(),
                port: 80,
                fwd: FwdMethod::Route,
                weight: 1,
                u_threshold: 0,
                l_threshold: 0,
                tun_type: TunType::Ipip,
                tun_port: 0,
                tun_flags: TunCsum::NoCsum,
            },
        };
        let j = serde_json::to_string(&c).unwrap();
        assert_eq!(
            j,
            r#"{"cmd":"add_dest","service":{"kind":"addr","protocol":"TCP","addr":"198.18.0.100","port":80},"dest":{"addr":"198.18.0.21","port":80,"fwd":"route","weight":1,"u_threshold":0,"l_threshold":0,"tun_type":"ipip","tun_port":0,"tun_flags":"nocsum"}}"#
        );
        let back: Command = serde_json::from_str(&j).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn reply_roundtrip() {
        let r = Reply::Timeouts(Timeouts {
            tcp: 900,
            tcpfin: 120,
            udp: 300,
        });
        let j = serde_json::to_string(&r).unwrap();
        assert_eq!(
            j,
            r#"{"reply":"timeouts","data":{"tcp":900,"tcpfin":120,"udp":300}}"#
        );
        assert_eq!(serde_json::from_str::<Reply>(&j).unwrap(), r);
    }
}
