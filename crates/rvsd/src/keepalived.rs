//! From a parsed keepalived configuration to the virtual-server table, as
//! keepalived's checker process builds the kernel's IPVS table (ipwrapper.c):
//! one service per `virtual_server` (a `virtual_server_group` expands to one
//! per member), one destination per `real_server`. Which destinations are
//! actually present (and with which weight) is then decided by the health
//! checks; this module computes the configured ("everything up") table.

use rvs_api::{
    svc_flags, DestSpec, Family, FwdMethod, Protocol, ServiceKey, ServiceSpec, TunCsum, TunType,
};
use rvs_config::model as m;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// One configured virtual service with its real servers.
#[derive(Debug, Clone, PartialEq)]
pub struct VsPlan {
    /// keepalived's name for logs: `[198.18.0.100]:tcp:80`, `FWM 1`.
    pub name: String,
    pub spec: ServiceSpec,
    pub dests: Vec<RsPlan>,
    /// Index into `Config::virtual_servers`.
    pub vs_index: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RsPlan {
    pub dest: DestSpec,
    /// Index into the virtual server's `real_servers`.
    pub rs_index: usize,
}

fn proto(p: m::Protocol) -> Protocol {
    match p {
        m::Protocol::Tcp => Protocol::Tcp,
        m::Protocol::Udp => Protocol::Udp,
        m::Protocol::Sctp => Protocol::Sctp,
    }
}

pub fn fwd_of(method: &m::LvsMethod) -> (FwdMethod, TunType, u16, TunCsum) {
    match method {
        m::LvsMethod::Nat => (FwdMethod::Masq, TunType::Ipip, 0, TunCsum::NoCsum),
        m::LvsMethod::Dr => (FwdMethod::Route, TunType::Ipip, 0, TunCsum::NoCsum),
        m::LvsMethod::Tun {
            tun_type,
            port,
            csum,
        } => (
            FwdMethod::Tunnel,
            match tun_type {
                m::TunType::Ipip => TunType::Ipip,
                m::TunType::Gue => TunType::Gue,
                m::TunType::Gre => TunType::Gre,
            },
            port.unwrap_or(0),
            match csum {
                None | Some(m::TunCsum::Nocsum) => TunCsum::NoCsum,
                Some(m::TunCsum::Csum) => TunCsum::Csum,
                Some(m::TunCsum::Remcsum) => TunCsum::RemCsum,
            },
        ),
    }
}

/// Parse `persistence_granularity`: a dotted IPv4 netmask, or a prefix length.
fn netmask(g: Option<&str>, v6: bool) -> u32 {
    let full = if v6 { 128 } else { 0xffff_ffff };
    let Some(g) = g else { return full };
    if v6 {
        return g
            .trim_start_matches('/')
            .parse::<u32>()
            .ok()
            .filter(|p| *p <= 128)
            .unwrap_or(full);
    }
    if let Ok(a) = g.parse::<Ipv4Addr>() {
        return u32::from(a);
    }
    match g.trim_start_matches('/').parse::<u32>() {
        Ok(0) => 0,
        Ok(p) if p <= 32 => u32::MAX << (32 - p),
        _ => full,
    }
}

fn sched_flags(names: &[String]) -> u32 {
    names.iter().fold(0, |f, n| {
        f | match n.as_str() {
            "flag-1" | "sh-fallback" | "mh-fallback" => svc_flags::SCHED1,
            "flag-2" | "sh-port" | "mh-port" => svc_flags::SCHED2,
            "flag-3" => svc_flags::SCHED3,
            _ => 0,
        }
    })
}

/// Expand an address range of a virtual_server_group.
fn expand_range(first: IpAddr, last: IpAddr) -> Vec<IpAddr> {
    match (first, last) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            let (a, b) = (u32::from(a), u32::from(b));
            if b < a || b - a > 65535 {
                return vec![IpAddr::V4(Ipv4Addr::from(a))];
            }
            (a..=b).map(|x| IpAddr::V4(Ipv4Addr::from(x))).collect()
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            let (a, b) = (u128::from(a), u128::from(b));
            if b < a || b - a > 65535 {
                return vec![IpAddr::V6(Ipv6Addr::from(a))];
            }
            (a..=b).map(|x| IpAddr::V6(Ipv6Addr::from(x))).collect()
        }
        (a, _) => vec![a],
    }
}

/// The services a `virtual_server` stands for.
fn keys(cfg: &m::Config, vs: &m::VirtualServer) -> Vec<ServiceKey> {
    let p = proto(vs.protocol);
    let fam = |f: Option<&str>| match f {
        Some("inet6") => Family::Inet6,
        _ => Family::Inet,
    };
    match &vs.key {
        m::VsKey::Addr { ip, port } => vec![ServiceKey::Addr {
            protocol: p,
            addr: *ip,
            port: *port,
        }],
        m::VsKey::Fwmark { mark } => vec![ServiceKey::Fwmark {
            mark: *mark,
            family: fam(vs.ip_family.as_deref()),
        }],
        m::VsKey::Group { name } => {
            let Some(g) = cfg.virtual_server_groups.iter().find(|g| &g.name == name) else {
                return Vec::new();
            };
            let mut v = Vec::new();
            for e in &g.entries {
                match e {
                    m::VsgEntry::Range { first, last, port } => {
                        for a in expand_range(*first, *last) {
                            v.push(ServiceKey::Addr {
                                protocol: p,
                                addr: a,
                                port: port.unwrap_or(0),
                            });
                        }
                    }
                    m::VsgEntry::Fwmark { mark, family } => v.push(ServiceKey::Fwmark {
                        mark: *mark,
                        family: fam(family.as_deref()),
                    }),
                }
            }
            v
        }
    }
}

/// The configured table: every service with all its real servers.
pub fn plan(cfg: &m::Config) -> Vec<VsPlan> {
    let mut out = Vec::new();
    for (vs_index, vs) in cfg.virtual_servers.iter().enumerate() {
        for key in keys(cfg, vs) {
            let v6 = key.family() == Family::Inet6;
            let mut flags = sched_flags(&vs.sched_flags);
            if vs.persistence_timeout.is_some() {
                flags |= svc_flags::PERSISTENT;
            }
            if vs.ops {
                flags |= svc_flags::ONEPACKET;
            }
            let spec = ServiceSpec {
                key,
                scheduler: vs.lvs_sched.clone(),
                flags,
                timeout: vs.persistence_timeout.unwrap_or(0),
                netmask: netmask(vs.persistence_granularity.as_deref(), v6),
                pe_name: vs.persistence_engine.clone(),
            };
            let svc_port = match key {
                ServiceKey::Addr { port, .. } => Some(port),
                ServiceKey::Fwmark { .. } => None,
            };
            let dests = vs
                .real_servers
                .iter()
                .enumerate()
                .map(|(rs_index, rs)| {
                    let (f, tun_type, tun_port, tun_flags) = fwd_of(&rs.lvs_method);
                    // As ipvsadm/keepalived: DR and TUN cannot map ports.
                    let port = match (f, svc_port) {
                        (FwdMethod::Route | FwdMethod::Tunnel, Some(p)) if p != 0 => p,
                        _ => rs.port,
                    };
                    RsPlan {
                        dest: DestSpec {
                            addr: rs.ip,
                            port,
                            fwd: f,
                            weight: rs.weight.clamp(0, 65535) as u32,
                            u_threshold: rs.uthreshold.unwrap_or(0),
                            l_threshold: rs.lthreshold.unwrap_or(0),
                            tun_type,
                            tun_port,
                            tun_flags,
                        },
                        rs_index,
                    }
                })
                .collect();
            out.push(VsPlan {
                name: crate::convert::svc_name(&key),
                spec,
                dests,
                vs_index,
            });
        }
    }
    out
}

/// `lvs_timeouts` as a `--set` (0 = unchanged).
pub fn timeouts(cfg: &m::Config) -> Option<rvs_api::Timeouts> {
    let t = &cfg.global_defs.lvs_timeouts;
    let s = |d: Option<std::time::Duration>| d.map(|d| d.as_secs() as u32).unwrap_or(0);
    let r = rvs_api::Timeouts {
        tcp: s(t.tcp),
        tcpfin: s(t.tcpfin),
        udp: s(t.udp),
    };
    (r != rvs_api::Timeouts::default()).then_some(r)
}

/// Resolve `user [group]` to (uid, gid) with the system's user database.
pub fn resolve_user(user: &str, group: Option<&str>) -> Option<(u32, u32)> {
    let cu = std::ffi::CString::new(user).ok()?;
    // SAFETY: getpwnam returns NULL or a pointer to static storage that we
    // read immediately; the C string outlives the call.
    let pw = unsafe { libc::getpwnam(cu.as_ptr()) };
    if pw.is_null() {
        return None;
    }
    // SAFETY: pw is non-null and points to a valid passwd record.
    let (uid, mut gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
    if let Some(g) = group {
        let cg = std::ffi::CString::new(g).ok()?;
        // SAFETY: as above, for the group database.
        let gr = unsafe { libc::getgrnam(cg.as_ptr()) };
        if gr.is_null() {
            return None;
        }
        // SAFETY: gr is non-null.
        gid = unsafe { (*gr).gr_gid };
    }
    Some((uid, gid))
}

fn script(s: &m::Script, default_user: Option<(u32, u32)>) -> rvs_check::ScriptConfig {
    rvs_check::ScriptConfig {
        cmd: s.command.clone(),
        user: s
            .user
            .as_deref()
            .and_then(|u| resolve_user(u, s.group.as_deref()))
            .or(default_user),
    }
}

fn common(kind: rvs_check::CheckKind, c: &m::CheckerCommon) -> rvs_check::CheckerConfig {
    let mut cc = rvs_check::CheckerConfig::new(kind, SocketAddr::new(c.connect_ip, c.connect_port));
    cc.bind = c
        .bindto
        .map(|ip| SocketAddr::new(ip, c.bind_port.unwrap_or(0)));
    cc.bind_if = c.bind_if.clone();
    cc.fwmark = c.fwmark;
    cc.connect_timeout = c.connect_timeout;
    cc.retry = c.retry;
    cc.delay_before_retry = c.delay_before_retry;
    cc.delay_loop = c.delay_loop;
    cc.warmup = c.warmup;
    cc.alpha = c.alpha;
    cc.log_all_failures = c.log_all_failures;
    cc
}

fn http(h: &m::HttpCheck, rs: &m::RealServer, vs: &m::VirtualServer) -> rvs_check::HttpCheck {
    let vh = h
        .virtualhost
        .clone()
        .or_else(|| rs.virtualhost.clone())
        .or_else(|| vs.virtualhost.clone());
    rvs_check::HttpCheck {
        urls: h
            .urls
            .iter()
            .map(|u| rvs_check::Url {
                path: u.path.clone(),
                digest: u
                    .digest
                    .as_deref()
                    .and_then(rvs_check::config::parse_digest),
                status: u.status_code.iter().map(|&(a, b)| a..=b).collect(),
                virtualhost: u.virtualhost.clone().or_else(|| vh.clone()),
            })
            .collect(),
        virtualhost: vh,
        protocol: match h.http_protocol.as_deref() {
            Some("1.0C") => rvs_check::HttpProtocol::Http10C,
            Some("1.1") => rvs_check::HttpProtocol::Http11,
            _ => rvs_check::HttpProtocol::Http10,
        },
        fast_recovery: h.fast_recovery,
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

/// The health-check view of one planned service, for rvs-check.
pub fn checker_config(
    cfg: &m::Config,
    plan: &VsPlan,
    warnings: &mut Vec<String>,
) -> rvs_check::VirtualServerConfig {
    let vs = &cfg.virtual_servers[plan.vs_index];
    let default_user = cfg
        .global_defs
        .script_user
        .as_ref()
        .and_then(|u| resolve_user(&u.user, u.group.as_deref()));
    let mut v = rvs_check::VirtualServerConfig::new(plan.name.clone());
    v.protocol = match vs.protocol {
        m::Protocol::Tcp => rvs_check::Protocol::Tcp,
        m::Protocol::Udp => rvs_check::Protocol::Udp,
        m::Protocol::Sctp => rvs_check::Protocol::Sctp,
    };
    v.quorum = vs.quorum;
    v.hysteresis = vs.hysteresis;
    v.quorum_up = vs.quorum_up.as_ref().map(|s| script(s, default_user));
    v.quorum_down = vs.quorum_down.as_ref().map(|s| script(s, default_user));
    v.sorry_server = vs
        .sorry_server
        .as_ref()
        .map(|s| SocketAddr::new(s.ip, s.port));
    v.sorry_server_inhibit = vs.sorry_server_inhibit;
    v.omega = vs.omega;
    v.ha_suspend = vs.ha_suspend;
    for rs in &vs.real_servers {
        let mut r = rvs_check::RealServerConfig::new(SocketAddr::new(rs.ip, rs.port));
        r.weight = rs.weight.clamp(0, 65535) as u32;
        r.inhibit_on_failure = rs.inhibit_on_failure;
        r.notify_up = rs.notify_up.as_ref().map(|s| script(s, default_user));
        r.notify_down = rs.notify_down.as_ref().map(|s| script(s, default_user));
        for c in &rs.checkers {
            use rvs_check::CheckKind as K;
            let cc = match c {
                m::Checker::Tcp(c) => common(K::Tcp, c),
                m::Checker::Http(h) => common(K::Http(http(h, rs, vs)), &h.common),
                m::Checker::Ssl(h) => common(
                    K::Ssl(rvs_check::SslCheck {
                        http: http(h, rs, vs),
                        enable_sni: h.enable_sni,
                        sni_name: h.sni_name.clone(),
                        ca_file: cfg
                            .ssl
                            .as_ref()
                            .and_then(|s| s.ca.as_ref())
                            .map(std::path::PathBuf::from),
                    }),
                    &h.common,
                ),
                m::Checker::Misc(mc) => {
                    let mut cc = common(
                        K::Misc(rvs_check::MiscCheck {
                            path: mc.misc_path.command.clone(),
                            timeout: Some(mc.misc_timeout),
                            dynamic: mc.misc_dynamic,
                            user: mc
                                .user
                                .as_ref()
                                .and_then(|u| resolve_user(&u.user, u.group.as_deref()))
                                .or_else(|| {
                                    mc.misc_path.user.as_deref().and_then(|u| {
                                        resolve_user(u, mc.misc_path.group.as_deref())
                                    })
                                })
                                .or(default_user),
                        }),
                        &mc.common,
                    );
                    cc.retry = mc.common.retry;
                    cc
                }
                m::Checker::Smtp(s) => common(
                    K::Smtp {
                        helo_name: s.helo_name.clone().unwrap_or_else(hostname),
                    },
                    &s.common,
                ),
                m::Checker::Dns(d) => common(
                    K::Dns(rvs_check::DnsCheck {
                        qtype: rvs_check::config::dns_type_from_name(&d.query_type).unwrap_or(6),
                        name: d.name.clone(),
                    }),
                    &d.common,
                ),
                m::Checker::Udp(u) => common(
                    K::Udp(rvs_check::UdpCheck {
                        payload: u.payload.clone().unwrap_or_default(),
                        require_reply: u.require_reply.is_some(),
                        reply_data: u.require_reply.clone().unwrap_or_default(),
                        reply_mask: Vec::new(),
                        min_reply_length: u.min_reply_length.unwrap_or(0) as usize,
                        max_reply_length: u.max_reply_length.unwrap_or(255) as usize,
                    }),
                    &u.common,
                ),
                m::Checker::Ping(c) => common(K::Ping, c),
                m::Checker::File(f) => {
                    let mut cc = rvs_check::CheckerConfig::new(
                        K::File(rvs_check::FileCheck {
                            path: std::path::PathBuf::from(&f.track_file),
                            weight: f.weight.unwrap_or(0) as i64,
                            reverse: f.reverse,
                        }),
                        SocketAddr::new(rs.ip, rs.port),
                    );
                    cc.delay_loop = rs.delay_loop;
                    cc
                }
                m::Checker::Bfd(b) => {
                    warnings.push(format!(
                        "{}: BFD_CHECK '{}' is not supported yet; ignored",
                        plan.name, b.name
                    ));
                    continue;
                }
            };
            r.checkers.push(cc);
        }
        v.real_servers.push(r);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netmask_forms() {
        assert_eq!(netmask(None, false), 0xffff_ffff);
        assert_eq!(netmask(Some("255.255.255.0"), false), 0xffff_ff00);
        assert_eq!(netmask(Some("24"), false), 0xffff_ff00);
        assert_eq!(netmask(Some("64"), true), 64);
        assert_eq!(netmask(None, true), 128);
    }

    #[test]
    fn ranges_expand() {
        let v = expand_range("198.18.0.1".parse().unwrap(), "198.18.0.3".parse().unwrap());
        assert_eq!(v.len(), 3);
    }
}
