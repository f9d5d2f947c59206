//! Typed, resolved configuration model (keepalived 2.2).
//!
//! Values are *effective*: defaults and inheritance (checker ← real_server ←
//! virtual_server) are applied, so consumers need no keepalived knowledge.
//! `Option` fields mean "not configured" where keepalived has no default or
//! where the absence itself matters.

use serde::{Serialize, Serializer};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

pub(crate) fn ser_dur<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}
pub(crate) fn ser_opt_dur<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&d.as_secs_f64()),
        None => s.serialize_none(),
    }
}

/// Source location of a block (for messages from consumers).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Location {
    pub file: String,
    pub line: u32,
}

/// A keyword rvs parses but does not implement (yet), kept verbatim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GenericNode {
    pub keyword: String,
    pub args: Vec<String>,
    pub line: u32,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<GenericNode>,
}

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Config {
    pub global_defs: GlobalDefs,
    pub vrrp_scripts: Vec<VrrpScript>,
    pub vrrp_sync_groups: Vec<VrrpSyncGroup>,
    pub vrrp_instances: Vec<VrrpInstance>,
    pub static_ipaddress: Vec<VirtualIp>,
    pub virtual_server_groups: Vec<VirtualServerGroup>,
    pub virtual_servers: Vec<VirtualServer>,
    pub ssl: Option<SslSettings>,
    /// Top-level keywords that are valid keepalived but not implemented by rvs.
    pub unsupported: Vec<GenericNode>,
}

/// A script with optional user/group (`"cmd args" [user [group]]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Script {
    /// The command string as keepalived stores it (quotes removed).
    pub command: String,
    /// `command` split into argv (single quotes group words).
    pub argv: Vec<String>,
    pub user: Option<String>,
    pub group: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScriptUser {
    pub user: String,
    pub group: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SmtpServer {
    pub host: String,
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct LvsTimeouts {
    #[serde(serialize_with = "ser_opt_dur")]
    pub tcp: Option<Duration>,
    #[serde(serialize_with = "ser_opt_dur")]
    pub tcpfin: Option<Duration>,
    #[serde(serialize_with = "ser_opt_dur")]
    pub udp: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LvsSyncDaemon {
    pub interface: String,
    pub vrrp_instance: Option<String>,
    pub sync_id: Option<u8>,
    pub maxlen: Option<u16>,
    pub port: Option<u16>,
    pub ttl: Option<u8>,
    pub group: Option<IpAddr>,
}

/// `global_defs { }`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GlobalDefs {
    /// `router_id` (keepalived defaults to the host name when absent).
    pub router_id: Option<String>,
    pub notification_email: Vec<String>,
    pub notification_email_from: Option<String>,
    pub smtp_server: Option<SmtpServer>,
    pub smtp_helo_name: Option<String>,
    #[serde(serialize_with = "ser_dur")]
    pub smtp_connect_timeout: Duration,
    pub smtp_alert: Option<bool>,
    pub smtp_alert_vrrp: Option<bool>,
    pub smtp_alert_checker: Option<bool>,
    pub no_email_faults: bool,
    pub checker_log_all_failures: bool,
    pub script_user: Option<ScriptUser>,
    pub enable_script_security: bool,
    pub startup_script: Option<Script>,
    pub shutdown_script: Option<Script>,
    pub lvs_timeouts: LvsTimeouts,
    pub lvs_sync_daemon: Option<LvsSyncDaemon>,
    pub lvs_flush: bool,
    /// `lvs_flush_on_stop [VS|ALL]`: None = off.
    pub lvs_flush_on_stop: Option<String>,
    pub default_interface: Option<String>,
    pub dynamic_interfaces: bool,
    pub vrrp_mcast_group4: Ipv4Addr,
    pub vrrp_mcast_group6: Ipv6Addr,
    #[serde(serialize_with = "ser_dur")]
    pub vrrp_garp_master_delay: Duration,
    pub vrrp_garp_master_repeat: u32,
    #[serde(serialize_with = "ser_dur")]
    pub vrrp_garp_master_refresh: Duration,
    pub vrrp_garp_master_refresh_repeat: u32,
    #[serde(serialize_with = "ser_opt_dur")]
    pub vrrp_garp_lower_prio_delay: Option<Duration>,
    pub vrrp_garp_lower_prio_repeat: Option<u32>,
    #[serde(serialize_with = "ser_dur")]
    pub vrrp_garp_interval: Duration,
    #[serde(serialize_with = "ser_dur")]
    pub vrrp_gna_interval: Duration,
    pub vrrp_min_garp: bool,
    pub vrrp_down_timer_adverts: u32,
    pub vrrp_version: u8,
    pub vrrp_strict: bool,
    pub vrrp_check_unicast_src: bool,
    pub vrrp_skip_check_adv_addr: bool,
    pub vrrp_lower_prio_no_advert: bool,
    pub vrrp_higher_prio_send_advert: bool,
    pub vrrp_notify_priority_changes: bool,
    pub max_auto_priority: Option<i32>,
    pub random_seed: Option<u64>,
    pub include_check: Option<String>,
    /// Valid keepalived keywords rvs does not implement yet.
    pub unsupported: Vec<GenericNode>,
}

impl Default for GlobalDefs {
    fn default() -> Self {
        GlobalDefs {
            router_id: None,
            notification_email: vec![],
            notification_email_from: None,
            smtp_server: None,
            smtp_helo_name: None,
            smtp_connect_timeout: Duration::from_secs(30),
            smtp_alert: None,
            smtp_alert_vrrp: None,
            smtp_alert_checker: None,
            no_email_faults: false,
            checker_log_all_failures: false,
            script_user: None,
            enable_script_security: false,
            startup_script: None,
            shutdown_script: None,
            lvs_timeouts: LvsTimeouts::default(),
            lvs_sync_daemon: None,
            lvs_flush: false,
            lvs_flush_on_stop: None,
            default_interface: None,
            dynamic_interfaces: false,
            vrrp_mcast_group4: Ipv4Addr::new(224, 0, 0, 18),
            vrrp_mcast_group6: Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12),
            vrrp_garp_master_delay: Duration::from_secs(5),
            vrrp_garp_master_repeat: 5,
            vrrp_garp_master_refresh: Duration::ZERO,
            vrrp_garp_master_refresh_repeat: 1,
            vrrp_garp_lower_prio_delay: None,
            vrrp_garp_lower_prio_repeat: None,
            vrrp_garp_interval: Duration::ZERO,
            vrrp_gna_interval: Duration::ZERO,
            vrrp_min_garp: false,
            vrrp_down_timer_adverts: 3,
            vrrp_version: 2,
            vrrp_strict: false,
            vrrp_check_unicast_src: false,
            vrrp_skip_check_adv_addr: false,
            vrrp_lower_prio_no_advert: false,
            vrrp_higher_prio_send_advert: false,
            vrrp_notify_priority_changes: false,
            max_auto_priority: None,
            random_seed: None,
            include_check: None,
            unsupported: vec![],
        }
    }
}

/// `vrrp_script NAME { }`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VrrpScript {
    pub name: String,
    pub script: Script,
    #[serde(serialize_with = "ser_dur")]
    pub interval: Duration,
    /// Defaults to `interval`.
    #[serde(serialize_with = "ser_dur")]
    pub timeout: Duration,
    pub weight: i32,
    pub weight_reverse: bool,
    pub rise: u32,
    pub fall: u32,
    pub user: Option<ScriptUser>,
    pub init_fail: bool,
    pub location: Location,
}

/// `track_interface`/`track_script`/`track_file` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Track {
    pub name: String,
    /// None = use the tracked object's own weight (or 0 → FAULT).
    pub weight: Option<i32>,
    pub reverse: bool,
}

/// `vrrp_sync_group NAME { }`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VrrpSyncGroup {
    pub name: String,
    pub group: Vec<String>,
    pub track_interface: Vec<Track>,
    pub track_script: Vec<Track>,
    pub track_file: Vec<Track>,
    pub notify_master: Option<Script>,
    pub notify_backup: Option<Script>,
    pub notify_fault: Option<Script>,
    pub notify_stop: Option<Script>,
    pub notify: Option<Script>,
    pub smtp_alert: Option<bool>,
    pub global_tracking: bool,
    pub sync_group_tracking_weight: bool,
    pub notify_priority_changes: bool,
    pub unsupported: Vec<GenericNode>,
    pub location: Location,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum VrrpState {
    Master,
    Backup,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum AuthType {
    Pass,
    Ah,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Authentication {
    pub auth_type: AuthType,
    /// At most 8 characters (keepalived truncates; NUL padding is the wire's business).
    pub auth_pass: String,
}

/// One `virtual_ipaddress` / `virtual_ipaddress_excluded` / `static_ipaddress` line:
/// `ADDR[/MASK] [brd IP] [dev IF] [scope S] [label L] [peer IP] [home] [-nodad]
/// [mngtmpaddr] [noprefixroute] [autojoin] [no_track] [use_vmac] [preferred_lft N] [track_group G]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VirtualIp {
    pub addr: IpAddr,
    /// /32 or /128 when omitted.
    pub prefix_len: u8,
    pub brd: Option<IpAddr>,
    pub dev: Option<String>,
    pub scope: Option<String>,
    pub label: Option<String>,
    pub peer: Option<IpAddr>,
    pub home: bool,
    pub nodad: bool,
    pub mngtmpaddr: bool,
    pub noprefixroute: bool,
    pub autojoin: bool,
    pub no_track: bool,
    pub use_vmac: bool,
    pub preferred_lft: Option<String>,
    pub track_group: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnicastPeer {
    pub addr: IpAddr,
    pub min_ttl: Option<u8>,
    pub max_ttl: Option<u8>,
}

/// `vrrp_instance NAME { }`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VrrpInstance {
    pub name: String,
    /// Effective wanted initial state (linked default: MASTER iff priority 255 when not set).
    pub state: VrrpState,
    pub interface: Option<String>,
    pub virtual_router_id: u8,
    /// Effective base priority (100, or 255 for `state MASTER` without `priority`).
    pub priority: u8,
    #[serde(serialize_with = "ser_dur")]
    pub advert_int: Duration,
    /// Instance `version`, else global `vrrp_version`.
    pub version: u8,
    pub nopreempt: bool,
    #[serde(serialize_with = "ser_opt_dur")]
    pub preempt_delay: Option<Duration>,
    pub authentication: Option<Authentication>,
    pub virtual_ipaddress: Vec<VirtualIp>,
    pub virtual_ipaddress_excluded: Vec<VirtualIp>,
    pub track_interface: Vec<Track>,
    pub track_script: Vec<Track>,
    pub track_file: Vec<Track>,
    pub notify_master: Option<Script>,
    pub notify_backup: Option<Script>,
    pub notify_fault: Option<Script>,
    pub notify_stop: Option<Script>,
    pub notify_deleted: Option<Script>,
    pub notify_master_rx_lower_pri: Option<Script>,
    pub notify: Option<Script>,
    pub notify_priority_changes: bool,
    pub smtp_alert: Option<bool>,
    pub mcast_src_ip: Option<IpAddr>,
    pub unicast_src_ip: Option<IpAddr>,
    pub unicast_peer: Vec<UnicastPeer>,
    pub unicast_ttl: Option<u8>,
    pub unicast_fault_no_peer: bool,
    pub check_unicast_src: bool,
    pub dont_track_primary: bool,
    /// `use_vmac [NAME]`: Some("") when no name was given.
    pub use_vmac: Option<String>,
    pub vmac_xmit_base: bool,
    pub native_ipv6: bool,
    /// `accept`/`no_accept` (None = keepalived's default: accept unless strict).
    pub accept: Option<bool>,
    pub strict_mode: Option<bool>,
    pub skip_check_adv_addr: bool,
    pub promote_secondaries: bool,
    #[serde(serialize_with = "ser_dur")]
    pub garp_master_delay: Duration,
    pub garp_master_repeat: u32,
    #[serde(serialize_with = "ser_dur")]
    pub garp_master_refresh: Duration,
    pub garp_master_refresh_repeat: u32,
    #[serde(serialize_with = "ser_opt_dur")]
    pub garp_lower_prio_delay: Option<Duration>,
    pub garp_lower_prio_repeat: Option<u32>,
    pub lower_prio_no_advert: bool,
    pub higher_prio_send_advert: bool,
    pub down_timer_adverts: u32,
    pub unsupported: Vec<GenericNode>,
    pub location: Location,
}

/// `virtual_server_group NAME { }` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum VsgEntry {
    /// A single address (`first == last`) or a range `a.b.c.d-e`,
    /// `a.b.c.d-e.f.g.h`, `a.b.c.d/nn`.
    Range {
        first: IpAddr,
        last: IpAddr,
        port: Option<u16>,
    },
    Fwmark {
        mark: u32,
        family: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VirtualServerGroup {
    pub name: String,
    pub entries: Vec<VsgEntry>,
    pub location: Location,
}

/// How a virtual server is addressed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum VsKey {
    /// Port 0 = all ports (persistent services only).
    Addr {
        ip: IpAddr,
        port: u16,
    },
    Fwmark {
        mark: u32,
    },
    Group {
        name: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    /// keepalived's lower-case name in messages (`tcp` in `[IP]:tcp:80`).
    pub fn keepalived_name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TunType {
    Ipip,
    Gue,
    Gre,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TunCsum {
    Nocsum,
    Csum,
    Remcsum,
}

/// Forwarding method (`lvs_method` / `lb_kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "method", rename_all = "UPPERCASE")]
pub enum LvsMethod {
    Nat,
    Dr,
    Tun {
        tun_type: TunType,
        port: Option<u16>,
        csum: Option<TunCsum>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SorryServer {
    pub ip: IpAddr,
    pub port: u16,
    pub lvs_method: Option<LvsMethod>,
}

/// `virtual_server ... { }`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VirtualServer {
    pub key: VsKey,
    pub ip_family: Option<String>,
    #[serde(serialize_with = "ser_dur")]
    pub delay_loop: Duration,
    /// Scheduler (`lvs_sched`/`lb_algo`); "wlc" when not set.
    pub lvs_sched: String,
    /// NAT when not set.
    pub lvs_method: LvsMethod,
    pub hashed: bool,
    /// `flag-1`/`flag-2`/`flag-3`/`sh-port`/`sh-fallback`/`mh-port`/`mh-fallback`.
    pub sched_flags: Vec<String>,
    pub ops: bool,
    /// Seconds; bare `persistence_timeout` = 360.
    pub persistence_timeout: Option<u32>,
    pub persistence_granularity: Option<String>,
    pub persistence_engine: Option<String>,
    pub protocol: Protocol,
    pub ha_suspend: bool,
    pub virtualhost: Option<String>,
    pub alpha: bool,
    pub omega: bool,
    pub quorum: u32,
    pub quorum_up: Option<Script>,
    pub quorum_down: Option<Script>,
    pub hysteresis: u32,
    /// Default real-server weight (`weight` at VS level).
    pub weight: Option<i32>,
    pub sorry_server: Option<SorryServer>,
    pub sorry_server_inhibit: bool,
    pub inhibit_on_failure: bool,
    pub smtp_alert: Option<bool>,
    /// Configured VS-level checker defaults (already applied to checkers).
    pub retry: Option<u32>,
    #[serde(serialize_with = "ser_opt_dur")]
    pub delay_before_retry: Option<Duration>,
    #[serde(serialize_with = "ser_opt_dur")]
    pub warmup: Option<Duration>,
    #[serde(serialize_with = "ser_opt_dur")]
    pub connect_timeout: Option<Duration>,
    pub real_servers: Vec<RealServer>,
    pub unsupported: Vec<GenericNode>,
    pub location: Location,
}

impl VirtualServer {
    /// keepalived's name for the service in messages: `[IP]:tcp:80`,
    /// `FWM 1`, `group NAME`.
    pub fn keepalived_name(&self) -> String {
        let p = self.protocol.keepalived_name();
        match &self.key {
            VsKey::Addr { ip, port } => format!("[{ip}]:{p}:{port}"),
            VsKey::Fwmark { mark } => format!("FWM {mark}"),
            VsKey::Group { name } => format!("group {name}"),
        }
    }
}

/// `real_server IP [PORT] { }`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RealServer {
    pub ip: IpAddr,
    pub port: u16,
    /// Effective weight (RS `weight`, else VS `weight`, else 1).
    pub weight: i32,
    /// Effective forwarding method (RS `lvs_method`, else the VS's).
    pub lvs_method: LvsMethod,
    pub uthreshold: Option<u32>,
    pub lthreshold: Option<u32>,
    pub inhibit_on_failure: bool,
    pub notify_up: Option<Script>,
    pub notify_down: Option<Script>,
    pub alpha: bool,
    #[serde(serialize_with = "ser_dur")]
    pub delay_loop: Duration,
    pub virtualhost: Option<String>,
    pub smtp_alert: Option<bool>,
    pub checkers: Vec<Checker>,
    pub unsupported: Vec<GenericNode>,
    pub location: Location,
}

/// Keywords common to the connecting checkers, resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckerCommon {
    /// Real server address unless `connect_ip`.
    pub connect_ip: IpAddr,
    /// Real server port unless `connect_port`.
    pub connect_port: u16,
    pub bindto: Option<IpAddr>,
    pub bind_port: Option<u16>,
    pub bind_if: Option<String>,
    #[serde(serialize_with = "ser_dur")]
    pub connect_timeout: Duration,
    pub fwmark: Option<u32>,
    pub retry: u32,
    #[serde(serialize_with = "ser_dur")]
    pub delay_before_retry: Duration,
    /// None = keepalived's default: random in [0, delay_loop].
    #[serde(serialize_with = "ser_opt_dur")]
    pub warmup: Option<Duration>,
    #[serde(serialize_with = "ser_dur")]
    pub delay_loop: Duration,
    pub alpha: bool,
    pub log_all_failures: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HttpUrl {
    pub path: String,
    pub digest: Option<String>,
    /// Inclusive ranges; default [(200, 299)].
    pub status_code: Vec<(u16, u16)>,
    pub virtualhost: Option<String>,
    pub regex: Option<String>,
    pub regex_no_match: bool,
    pub tls_compliant: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HttpCheck {
    #[serde(flatten)]
    pub common: CheckerCommon,
    pub urls: Vec<HttpUrl>,
    /// Effective Host header: checker's, else real_server's, else
    /// virtual_server's `virtualhost` (a url's own `virtualhost` wins).
    pub virtualhost: Option<String>,
    pub http_protocol: Option<String>,
    pub fast_recovery: bool,
    pub enable_sni: bool,
    pub sni_name: Option<String>,
    pub tls_compliant: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MiscCheck {
    #[serde(flatten)]
    pub common: CheckerCommon,
    pub misc_path: Script,
    /// Default: delay_loop.
    #[serde(serialize_with = "ser_dur")]
    pub misc_timeout: Duration,
    pub misc_dynamic: bool,
    pub user: Option<ScriptUser>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SmtpCheck {
    #[serde(flatten)]
    pub common: CheckerCommon,
    pub helo_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DnsCheck {
    #[serde(flatten)]
    pub common: CheckerCommon,
    /// A|NS|CNAME|SOA|MX|TXT|AAAA (default SOA).
    pub query_type: String,
    /// Default ".".
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UdpCheck {
    #[serde(flatten)]
    pub common: CheckerCommon,
    pub payload: Option<Vec<u8>>,
    /// `require_reply` present (`Some(empty)` = any reply).
    pub require_reply: Option<Vec<u8>>,
    pub min_reply_length: Option<u32>,
    pub max_reply_length: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileCheck {
    pub track_file: String,
    pub weight: Option<i32>,
    pub reverse: bool,
    pub dynamic: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BfdCheck {
    pub name: String,
    pub alpha: bool,
}

/// A health checker of a real server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type")]
pub enum Checker {
    #[serde(rename = "TCP_CHECK")]
    Tcp(CheckerCommon),
    #[serde(rename = "HTTP_GET")]
    Http(HttpCheck),
    #[serde(rename = "SSL_GET")]
    Ssl(HttpCheck),
    #[serde(rename = "MISC_CHECK")]
    Misc(MiscCheck),
    #[serde(rename = "SMTP_CHECK")]
    Smtp(SmtpCheck),
    #[serde(rename = "DNS_CHECK")]
    Dns(DnsCheck),
    #[serde(rename = "UDP_CHECK")]
    Udp(UdpCheck),
    #[serde(rename = "PING_CHECK")]
    Ping(CheckerCommon),
    #[serde(rename = "FILE_CHECK")]
    File(FileCheck),
    #[serde(rename = "BFD_CHECK")]
    Bfd(BfdCheck),
}

impl Checker {
    /// keepalived's block name (`TCP_CHECK`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            Checker::Tcp(_) => "TCP_CHECK",
            Checker::Http(_) => "HTTP_GET",
            Checker::Ssl(_) => "SSL_GET",
            Checker::Misc(_) => "MISC_CHECK",
            Checker::Smtp(_) => "SMTP_CHECK",
            Checker::Dns(_) => "DNS_CHECK",
            Checker::Udp(_) => "UDP_CHECK",
            Checker::Ping(_) => "PING_CHECK",
            Checker::File(_) => "FILE_CHECK",
            Checker::Bfd(_) => "BFD_CHECK",
        }
    }
    /// The resolved common settings (None for FILE_CHECK/BFD_CHECK).
    pub fn common(&self) -> Option<&CheckerCommon> {
        match self {
            Checker::Tcp(c) | Checker::Ping(c) => Some(c),
            Checker::Http(h) | Checker::Ssl(h) => Some(&h.common),
            Checker::Misc(m) => Some(&m.common),
            Checker::Smtp(s) => Some(&s.common),
            Checker::Dns(d) => Some(&d.common),
            Checker::Udp(u) => Some(&u.common),
            Checker::File(_) | Checker::Bfd(_) => None,
        }
    }
}

/// Top-level `SSL { }`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct SslSettings {
    pub password: Option<String>,
    pub ca: Option<String>,
    pub certificate: Option<String>,
    pub key: Option<String>,
}
