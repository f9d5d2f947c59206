//! Public value types: keys, configurations, counters, packets, verdicts, errors.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

/// Transport protocol of a virtual service / connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    /// IANA protocol number (IPPROTO_*).
    pub const fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
            Protocol::Sctp => 132,
        }
    }

    /// Name as the kernel prints it ("TCP", "UDP", "SCTP").
    pub const fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        }
    }

    /// Inverse of [`Protocol::number`].
    pub const fn from_number(n: u8) -> Option<Protocol> {
        match n {
            6 => Some(Protocol::Tcp),
            17 => Some(Protocol::Udp),
            132 => Some(Protocol::Sctp),
            _ => None,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Identity of a virtual service: `<proto, VIP, port>` or a firewall mark.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SvcKey {
    Addr {
        proto: Protocol,
        addr: IpAddr,
        port: u16,
    },
    Fwmark {
        mark: u32,
        v6: bool,
    },
}

impl SvcKey {
    /// True for IPv6 services.
    pub fn is_v6(&self) -> bool {
        match self {
            SvcKey::Addr { addr, .. } => addr.is_ipv6(),
            SvcKey::Fwmark { v6, .. } => *v6,
        }
    }
    /// Service port (0 for fwmark services, like the kernel's svc->port).
    pub fn port(&self) -> u16 {
        match self {
            SvcKey::Addr { port, .. } => *port,
            SvcKey::Fwmark { .. } => 0,
        }
    }
    /// Firewall mark (0 for address services).
    pub fn fwmark(&self) -> u32 {
        match self {
            SvcKey::Addr { .. } => 0,
            SvcKey::Fwmark { mark, .. } => *mark,
        }
    }
}

/// Forwarding method (IP_VS_CONN_F_FWD_MASK values).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FwdMethod {
    /// NAT (`-m`), kernel value 0.
    Masq,
    /// Local node, kernel value 1.
    Local,
    /// IP tunnel (`-i`), kernel value 2.
    Tunnel,
    /// Direct routing (`-g`, the ipvsadm default), kernel value 3.
    Route,
}

impl FwdMethod {
    /// Kernel value (IP_VS_CONN_F_MASQ .. IP_VS_CONN_F_DROUTE).
    pub const fn value(self) -> u32 {
        match self {
            FwdMethod::Masq => 0,
            FwdMethod::Local => 1,
            FwdMethod::Tunnel => 2,
            FwdMethod::Route => 3,
        }
    }
    /// From the kernel value.
    pub const fn from_value(v: u32) -> Option<FwdMethod> {
        match v {
            0 => Some(FwdMethod::Masq),
            1 => Some(FwdMethod::Local),
            2 => Some(FwdMethod::Tunnel),
            3 => Some(FwdMethod::Route),
            _ => None,
        }
    }
    /// Name as /proc/net/ip_vs and ipvsadm print it.
    pub const fn name(self) -> &'static str {
        match self {
            FwdMethod::Masq => "Masq",
            FwdMethod::Local => "Local",
            FwdMethod::Tunnel => "Tunnel",
            FwdMethod::Route => "Route",
        }
    }
}

/// Tunnel encapsulation for [`FwdMethod::Tunnel`] (IP_VS_CONN_F_TUNNEL_TYPE_*).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub enum TunType {
    #[default]
    Ipip,
    Gue,
    Gre,
}

impl TunType {
    /// Kernel value (0 ipip, 1 gue, 2 gre).
    pub const fn value(self) -> u32 {
        match self {
            TunType::Ipip => 0,
            TunType::Gue => 1,
            TunType::Gre => 2,
        }
    }
}

/// Tunnel checksum option (IP_VS_TUNNEL_ENCAP_FLAG_*).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub enum TunCsum {
    #[default]
    NoCsum,
    Csum,
    RemCsum,
}

impl TunCsum {
    /// Kernel flag value (0, 1, 2).
    pub const fn value(self) -> u32 {
        match self {
            TunCsum::NoCsum => 0,
            TunCsum::Csum => 1,
            TunCsum::RemCsum => 2,
        }
    }
}

/// Service flag: persistent (`-p`).
pub const SVC_F_PERSISTENT: u32 = 0x0001;
/// Service flag: hashed (kernel internal; ignored on input).
pub const SVC_F_HASHED: u32 = 0x0002;
/// Service flag: one-packet scheduling (`-o` / `--ops`).
pub const SVC_F_ONEPACKET: u32 = 0x0004;
/// Scheduler flag 1 (sh-fallback / mh-fallback).
pub const SVC_F_SCHED1: u32 = 0x0008;
/// Scheduler flag 2 (sh-port / mh-port).
pub const SVC_F_SCHED2: u32 = 0x0010;
/// Scheduler flag 3 (unused by in-tree schedulers).
pub const SVC_F_SCHED3: u32 = 0x0020;

/// Configuration of a virtual service (what `ipvsadm -A/-E` sends).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ServiceConf {
    pub key: SvcKey,
    /// Scheduler name; empty means the default (`wlc`).
    pub scheduler: String,
    /// IP_VS_SVC_F_* flags (see the `SVC_F_*` constants).
    pub flags: u32,
    /// Persistence timeout in seconds (meaningful with [`SVC_F_PERSISTENT`]).
    pub timeout: u32,
    /// Persistence granularity: an IPv4 netmask as a host-order u32
    /// (0xffffffff = per client), or an IPv6 prefix length (1..=128).
    pub netmask: u32,
    /// Persistence engine ("sip"), if any.
    pub pe_name: Option<String>,
}

impl ServiceConf {
    /// A non-persistent service with the given scheduler and the kernel's
    /// default netmask for its family.
    pub fn new(key: SvcKey, scheduler: &str) -> Self {
        ServiceConf {
            key,
            scheduler: scheduler.to_string(),
            flags: 0,
            timeout: 0,
            netmask: if key.is_v6() { 128 } else { 0xffff_ffff },
            pe_name: None,
        }
    }

    /// Builder: make the service persistent with `timeout` seconds.
    pub fn persistent(mut self, timeout: u32) -> Self {
        self.flags |= SVC_F_PERSISTENT;
        self.timeout = timeout;
        self
    }

    /// True if the persistent flag is set.
    pub fn is_persistent(&self) -> bool {
        self.flags & SVC_F_PERSISTENT != 0
    }
}

/// Configuration of a real server (what `ipvsadm -a/-e` sends).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DestConf {
    pub addr: IpAddr,
    pub port: u16,
    pub fwd: FwdMethod,
    /// 0..=65535; 0 quiesces the server.
    pub weight: i32,
    /// Upper connection threshold (`-x`), 0 = none.
    pub u_threshold: u32,
    /// Lower connection threshold (`-y`), 0 = none.
    pub l_threshold: u32,
    pub tun_type: TunType,
    pub tun_port: u16,
    pub tun_flags: TunCsum,
}

impl DestConf {
    /// A destination with the given method and weight, no thresholds, IPIP tunnel defaults.
    pub fn new(addr: IpAddr, port: u16, fwd: FwdMethod, weight: i32) -> Self {
        DestConf {
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

/// Traffic counters (ip_vs_kstats).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Stats {
    pub conns: u64,
    pub inpkts: u64,
    pub outpkts: u64,
    pub inbytes: u64,
    pub outbytes: u64,
}

/// Estimated rates, already rounded as ip_vs_read_estimator does.
/// `inbps`/`outbps` are BYTES per second (as in the kernel, despite the name).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Rates {
    pub cps: u64,
    pub inpps: u64,
    pub outpps: u64,
    pub inbps: u64,
    pub outbps: u64,
}

/// Tunables of /proc/sys/net/ipv4/vs that the model implements.
/// `Default` gives the kernel defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sysctl {
    /// 1: a packet for a connection whose destination was deleted expires it
    /// (and a SYN is then rescheduled); 0: such packets are dropped.
    pub expire_nodest_conn: bool,
    /// 1: a persistence template whose destination has weight 0 is
    /// invalidated when next used.
    pub expire_quiescent_template: bool,
    /// Create TCP connections on any non-RST packet, not only SYN.
    pub sloppy_tcp: bool,
    /// Create SCTP connections on any chunk, not only INIT.
    pub sloppy_sctp: bool,
    /// Bitmap (default 1): bit 0 reschedule a SYN hitting a TIME_WAIT
    /// connection; bit 1 also FIN_WAIT for DR/TUN connections.
    pub conn_reuse_mode: u8,
    /// Use the secure-TCP (tcp_states_dos) transition table.
    pub secure_tcp: bool,
    /// lblc entry expiration in seconds (default 24 h).
    pub lblc_expiration: u32,
    /// lblcr set expiration in seconds (default 24 h).
    pub lblcr_expiration: u32,
    /// 0 stops the rate estimator (kernel >= 6.2).
    pub run_estimation: bool,
    /// rvs extension, not a kernel sysctl. Templates always track the
    /// ASSURED bit (set when a controlled connection reaches ESTABLISHED;
    /// kernels >= 5.x use it to decide whether a template survives a forced
    /// delete of its last connection). Kernels that have the bit also SHOW it
    /// ("ASSURED" in `ipvsadm -Lnc`); older kernels (like the seed's) always
    /// show "NONE". Default false = show "NONE", as in the seed's output.
    pub show_assured_templates: bool,
    /// sync_threshold: (threshold, period), default (3, 50): a connection is
    /// synced when its in_pkts % period == threshold (period 0: only when
    /// in_pkts == threshold), and on TCP/SCTP state changes.
    pub sync_threshold: (u32, u32),
    /// sync_refresh_period, seconds (default 0): with a value, an entry is
    /// synced again only when its expiry moved by more than
    /// min(period, max(timeout/2, 10 s)), with up to `sync_retries` resends
    /// every period/8 otherwise.
    pub sync_refresh_period: u32,
    /// sync_retries (0..=3, default 0).
    pub sync_retries: u32,
    /// sync_persist_mode (default 0): 1 syncs only the templates of
    /// persistent services, not the connections they control.
    pub sync_persist_mode: bool,
    /// sync_version (default 1): the message format a master sends
    /// (0 = the IPv4-only v0 format of kernels before 2.6.39).
    pub sync_version: u8,
    /// sync_ports (default 1): master threads/ports (8848 + i).
    pub sync_ports: u8,
    /// backup_only (default 0): while a backup sync daemon runs, the
    /// director forwards nothing (for a backup that must only keep a table).
    pub backup_only: bool,
}

impl Default for Sysctl {
    fn default() -> Self {
        Sysctl {
            expire_nodest_conn: false,
            expire_quiescent_template: false,
            sloppy_tcp: false,
            sloppy_sctp: false,
            conn_reuse_mode: 1,
            secure_tcp: false,
            lblc_expiration: 24 * 60 * 60,
            lblcr_expiration: 24 * 60 * 60,
            run_estimation: true,
            show_assured_templates: false,
            sync_threshold: (3, 50),
            sync_refresh_period: 0,
            sync_retries: 0,
            sync_persist_mode: false,
            sync_version: 1,
            sync_ports: 1,
            backup_only: false,
        }
    }
}

/// TCP header flags, wire bit values. For [`Protocol::Sctp`] packets the
/// byte carries the type of the first chunk instead (see
/// [`TcpFlags::sctp_chunk`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    pub const NONE: TcpFlags = TcpFlags(0);
    pub const FIN: TcpFlags = TcpFlags(0x01);
    pub const SYN: TcpFlags = TcpFlags(0x02);
    pub const RST: TcpFlags = TcpFlags(0x04);
    pub const PSH: TcpFlags = TcpFlags(0x08);
    pub const ACK: TcpFlags = TcpFlags(0x10);

    /// True if every bit of `other` is set.
    pub const fn contains(self, other: TcpFlags) -> bool {
        self.0 & other.0 == other.0
    }
    /// Bitwise union.
    pub const fn union(self, other: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 | other.0)
    }
    /// Encodes an SCTP chunk type (SCTP_CID_*: 0 DATA, 1 INIT, 2 INIT_ACK,
    /// 6 ABORT, 7 SHUTDOWN, 8 SHUTDOWN_ACK, 10 COOKIE_ECHO, 11 COOKIE_ACK,
    /// 14 SHUTDOWN_COMPLETE, ...) for an SCTP [`Packet`].
    pub const fn sctp_chunk(chunk_type: u8) -> TcpFlags {
        TcpFlags(chunk_type)
    }
}

impl std::ops::BitOr for TcpFlags {
    type Output = TcpFlags;
    fn bitor(self, rhs: TcpFlags) -> TcpFlags {
        self.union(rhs)
    }
}

/// Direction of a packet relative to the director.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dir {
    /// Client -> VIP (ip_vs_in).
    In,
    /// Real server reply as seen by ip_vs_out (src = real server, dst = client).
    Out,
}

/// One packet (or proxy event) handed to [`crate::Ipvs::process`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Packet {
    /// skb->mark (0 = none).
    pub fwmark: u32,
    pub proto: Protocol,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    /// TCP flags (SCTP: first chunk type; ignored for UDP).
    pub tcp_flags: TcpFlags,
    /// L3 length in bytes (IP header included), for inbytes/outbytes.
    pub len: u32,
    pub dir: Dir,
}

/// Opaque, stable handle of a connection entry (slot + generation).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnRef {
    pub(crate) idx: u32,
    pub(crate) gen: u32,
}

impl ConnRef {
    /// A handle that refers to nothing (one-packet connections, which the
    /// kernel never hashes, are returned with this handle).
    pub const NONE: ConnRef = ConnRef {
        idx: u32::MAX,
        gen: 0,
    };
    /// True for [`ConnRef::NONE`].
    pub fn is_none(&self) -> bool {
        self.idx == u32::MAX
    }
}

/// Why a packet was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// The connection's destination was deleted (it lives in the trash) and
    /// expire_nodest_conn is 0.
    DestUnavailable,
    /// Connection entry could not be created (table full / ip_vs_conn_new failed).
    NoMemory,
}

/// What the data path should do with a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// Client -> VIP packet of a (new or existing) connection: forward it.
    Forward {
        conn: ConnRef,
        /// Real server address and port (daddr:dport).
        dest: SocketAddr,
        fwd: FwdMethod,
        tun: (TunType, u16, TunCsum),
        /// True if this packet created the connection.
        created: bool,
    },
    /// Reply of a known connection (ip_vs_out matched): for NAT, rewrite the
    /// source to `vaddr`.
    Reply {
        conn: ConnRef,
        vaddr: SocketAddr,
        fwd: FwdMethod,
    },
    /// Not for IPVS: pass to the local stack unchanged.
    NotOurs,
    /// A service matched but no destination is available: the kernel sends
    /// ICMP port unreachable to the client and drops.
    NoDest,
    /// Drop silently.
    Drop(DropReason),
}

/// Errors of the control plane, each mapping to the errno the kernel returns.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum Error {
    #[error("Service already exists")]
    ServiceExists,
    #[error("No such service")]
    NoSuchService,
    #[error("Scheduler not found: {0}")]
    SchedulerNotFound(String),
    #[error("Persistence engine not found: {0}")]
    PeNotFound(String),
    #[error("Destination already exists")]
    DestExists,
    #[error("No such destination")]
    NoSuchDest,
    #[error("Invalid argument: {0}")]
    Inval(String),
    /// The kernel returns -ERANGE for a negative weight or l_threshold > u_threshold.
    #[error("Value out of range: {0}")]
    Range(String),
}

impl Error {
    /// Symbolic errno name ("EEXIST", "ESRCH", "ENOENT", "EINVAL", "ERANGE").
    pub fn errno_name(&self) -> &'static str {
        match self {
            Error::ServiceExists | Error::DestExists => "EEXIST",
            Error::NoSuchService => "ESRCH",
            Error::SchedulerNotFound(_) | Error::PeNotFound(_) | Error::NoSuchDest => "ENOENT",
            Error::Inval(_) => "EINVAL",
            Error::Range(_) => "ERANGE",
        }
    }

    /// Positive errno value on Linux.
    pub fn errno(&self) -> i32 {
        match self {
            Error::ServiceExists | Error::DestExists => 17,
            Error::NoSuchService => 3,
            Error::SchedulerNotFound(_) | Error::PeNotFound(_) | Error::NoSuchDest => 2,
            Error::Inval(_) => 22,
            Error::Range(_) => 34,
        }
    }
}
