//! Conversions between the control-API types (`rvs-api`) and the model
//! (`rvs-core`). The API is plain data; the model owns the rules.

use rvs_api as api;
use rvs_core as core;

pub fn proto_to_core(p: api::Protocol) -> core::Protocol {
    match p {
        api::Protocol::Tcp => core::Protocol::Tcp,
        api::Protocol::Udp => core::Protocol::Udp,
        api::Protocol::Sctp => core::Protocol::Sctp,
    }
}

pub fn proto_to_api(p: core::Protocol) -> api::Protocol {
    match p {
        core::Protocol::Tcp => api::Protocol::Tcp,
        core::Protocol::Udp => api::Protocol::Udp,
        core::Protocol::Sctp => api::Protocol::Sctp,
    }
}

pub fn key_to_core(k: &api::ServiceKey) -> core::SvcKey {
    match *k {
        api::ServiceKey::Addr {
            protocol,
            addr,
            port,
        } => core::SvcKey::Addr {
            proto: proto_to_core(protocol),
            addr,
            port,
        },
        api::ServiceKey::Fwmark { mark, family } => core::SvcKey::Fwmark {
            mark,
            v6: family == api::Family::Inet6,
        },
    }
}

pub fn key_to_api(k: &core::SvcKey) -> api::ServiceKey {
    match *k {
        core::SvcKey::Addr { proto, addr, port } => api::ServiceKey::Addr {
            protocol: proto_to_api(proto),
            addr,
            port,
        },
        core::SvcKey::Fwmark { mark, v6 } => api::ServiceKey::Fwmark {
            mark,
            family: if v6 {
                api::Family::Inet6
            } else {
                api::Family::Inet
            },
        },
    }
}

pub fn service_to_core(s: &api::ServiceSpec) -> core::ServiceConf {
    core::ServiceConf {
        key: key_to_core(&s.key),
        scheduler: s.scheduler.clone(),
        flags: s.flags,
        timeout: s.timeout,
        netmask: s.netmask,
        pe_name: s.pe_name.clone(),
    }
}

pub fn service_to_api(c: &core::ServiceConf) -> api::ServiceSpec {
    api::ServiceSpec {
        key: key_to_api(&c.key),
        scheduler: c.scheduler.clone(),
        flags: c.flags,
        timeout: c.timeout,
        netmask: c.netmask,
        pe_name: c.pe_name.clone(),
    }
}

pub fn fwd_to_core(f: api::FwdMethod) -> core::FwdMethod {
    match f {
        api::FwdMethod::Masq => core::FwdMethod::Masq,
        api::FwdMethod::Local => core::FwdMethod::Local,
        api::FwdMethod::Tunnel => core::FwdMethod::Tunnel,
        api::FwdMethod::Route => core::FwdMethod::Route,
    }
}

pub fn fwd_to_api(f: core::FwdMethod) -> api::FwdMethod {
    match f {
        core::FwdMethod::Masq => api::FwdMethod::Masq,
        core::FwdMethod::Local => api::FwdMethod::Local,
        core::FwdMethod::Tunnel => api::FwdMethod::Tunnel,
        core::FwdMethod::Route => api::FwdMethod::Route,
    }
}

pub fn dest_to_core(d: &api::DestSpec) -> core::DestConf {
    core::DestConf {
        addr: d.addr,
        port: d.port,
        fwd: fwd_to_core(d.fwd),
        // Out-of-range weights become negative or huge and are refused by
        // the model with EINVAL, as the kernel refuses them.
        weight: i32::try_from(d.weight).unwrap_or(-1),
        u_threshold: d.u_threshold,
        l_threshold: d.l_threshold,
        tun_type: match d.tun_type {
            api::TunType::Ipip => core::TunType::Ipip,
            api::TunType::Gue => core::TunType::Gue,
            api::TunType::Gre => core::TunType::Gre,
        },
        tun_port: d.tun_port,
        tun_flags: match d.tun_flags {
            api::TunCsum::NoCsum => core::TunCsum::NoCsum,
            api::TunCsum::Csum => core::TunCsum::Csum,
            api::TunCsum::RemCsum => core::TunCsum::RemCsum,
        },
    }
}

pub fn dest_spec_to_api(d: &core::DestConf) -> api::DestSpec {
    api::DestSpec {
        addr: d.addr,
        port: d.port,
        fwd: fwd_to_api(d.fwd),
        weight: d.weight.max(0) as u32,
        u_threshold: d.u_threshold,
        l_threshold: d.l_threshold,
        tun_type: match d.tun_type {
            core::TunType::Ipip => api::TunType::Ipip,
            core::TunType::Gue => api::TunType::Gue,
            core::TunType::Gre => api::TunType::Gre,
        },
        tun_port: d.tun_port,
        tun_flags: match d.tun_flags {
            core::TunCsum::NoCsum => api::TunCsum::NoCsum,
            core::TunCsum::Csum => api::TunCsum::Csum,
            core::TunCsum::RemCsum => api::TunCsum::RemCsum,
        },
    }
}

pub fn stats_to_api(s: core::Stats) -> api::Stats {
    api::Stats {
        conns: s.conns,
        inpkts: s.inpkts,
        outpkts: s.outpkts,
        inbytes: s.inbytes,
        outbytes: s.outbytes,
    }
}

pub fn rates_to_api(r: core::Rates) -> api::Rates {
    api::Rates {
        cps: r.cps,
        inpps: r.inpps,
        outpps: r.outpps,
        inbps: r.inbps,
        outbps: r.outbps,
    }
}

pub fn service_info(v: &core::ServiceView<'_>) -> api::ServiceInfo {
    api::ServiceInfo {
        spec: service_to_api(v.conf()),
        stats: stats_to_api(v.stats()),
        rates: rates_to_api(v.rates()),
        dests: v
            .dests()
            .map(|d| api::DestInfo {
                spec: dest_spec_to_api(d.conf()),
                active_conns: d.active_conns(),
                inact_conns: d.inact_conns(),
                persist_conns: d.persist_conns(),
                stats: stats_to_api(d.stats()),
                rates: rates_to_api(d.rates()),
            })
            .collect(),
    }
}

pub fn conn_info(c: &core::ConnView) -> api::ConnInfo {
    api::ConnInfo {
        protocol: c.proto_name.to_string(),
        caddr: c.caddr,
        cport: c.cport,
        vaddr: c.vaddr,
        vport: c.vport,
        daddr: c.daddr,
        dport: c.dport,
        state: c.state_name.to_string(),
        expires: c.expires_secs,
        template: c.template,
        pe_name: c.pe_data.as_ref().map(|_| "sip".to_string()),
        pe_data: c
            .pe_data
            .as_ref()
            .map(|d| String::from_utf8_lossy(d).into_owned()),
        origin: if c.synced { "Sync" } else { "Local" }.to_string(),
    }
}

/// Map a model error to the API's errno class.
pub fn error_to_api(e: &core::Error) -> api::ApiError {
    let code = match e.errno_name() {
        "EEXIST" => api::ErrorCode::Exist,
        "ESRCH" => api::ErrorCode::Srch,
        "ENOENT" => api::ErrorCode::NoEnt,
        "EPERM" => api::ErrorCode::Perm,
        "ENOMEM" => api::ErrorCode::NoMem,
        "EAFNOSUPPORT" => api::ErrorCode::AfNoSupport,
        "EOPNOTSUPP" => api::ErrorCode::OpNotSupp,
        _ => api::ErrorCode::Inval,
    };
    api::ApiError::new(code, e.to_string())
}

/// keepalived's name for a virtual service in logs: `[198.18.0.100]:tcp:80`,
/// `FWM 1`.
pub fn svc_name(key: &api::ServiceKey) -> String {
    match key {
        api::ServiceKey::Addr {
            protocol,
            addr,
            port,
        } => format!("[{addr}]:{}:{port}", protocol.name().to_ascii_lowercase()),
        api::ServiceKey::Fwmark { mark, family } => match family {
            api::Family::Inet => format!("FWM {mark}"),
            api::Family::Inet6 => format!("FWM {mark} IPv6"),
        },
    }
}
