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
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

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

/// `[IP]:tcp:80` as keepalived writes virtual/real server names.
pub fn vs_name(key: &ServiceKey) -> String {
    match key {
        ServiceKey::Addr {
            protocol,
            addr,
            port,
        } => format!(
            "[{addr}]:{}:{port}",
            protocol.name().to_ascii_lowercase()
        ),
        ServiceKey::Fwmark { mark, family } => match family {
            Family::Inet => format!("FWM {mark}"),
            Family::Inet6 => format!("FWM {mark} IPv6"),
        },
    }
}

fn fwd(method: &m::LvsMethod) -> (FwdMethod, TunType, u16, TunCsum) {
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
        return g.trim_start_matches('/').parse::<u32>().ok().filter(|p| *p <= 128).unwrap_or(full);
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
                    let (f, tun_type, tun_port, tun_flags) = fwd(&rs.lvs_method);
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
                name: vs_name(&key),
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
    fn names_as_keepalived() {
        let k = ServiceKey::Addr {
            protocol: Protocol::Tcp,
            addr: "198.18.0.100".parse().unwrap(),
            port: 80,
        };
        assert_eq!(vs_name(&k), "[198.18.0.100]:tcp:80");
        let f = ServiceKey::Fwmark {
            mark: 3,
            family: Family::Inet,
        };
        assert_eq!(vs_name(&f), "FWM 3");
    }

    #[test]
    fn ranges_expand() {
        let v = expand_range("198.18.0.1".parse().unwrap(), "198.18.0.3".parse().unwrap());
        assert_eq!(v.len(), 3);
    }
}
