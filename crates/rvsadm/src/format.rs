//! Pure rendering of ipvsadm's views (byte for byte) and its sort order.

use crate::addr::{inet_ntop6, ntoa};
use crate::cli::Format;
use crate::resolve::{Resolver, IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP};
use rvs_api::{
    svc_flags, ConnInfo, DaemonInfo, DaemonState, DestInfo, Family, FwdMethod, Info, ServiceInfo,
    ServiceKey, Timeouts, TunCsum, TunType,
};
use std::cmp::Ordering;
use std::fmt::Write as _;
use std::net::IpAddr;

// ===== sorting =====

/// glibc (≤ 2.36) `qsort`: top-down merge sort, `n1 = n / 2`, merge taking
/// from the left run while `cmp(left, right) <= 0`. Reproduced because
/// ipvsadm's comparators are not transitive (wrapping subtraction).
pub fn glibc_msort<T: Clone>(v: &mut [T], cmp: &dyn Fn(&T, &T) -> i32) {
    let n = v.len();
    if n <= 1 {
        return;
    }
    let n1 = n / 2;
    glibc_msort(&mut v[..n1], cmp);
    glibc_msort(&mut v[n1..], cmp);
    let mut tmp: Vec<T> = Vec::with_capacity(n);
    let (mut i, mut j) = (0, n1);
    while i < n1 && j < n {
        if cmp(&v[i], &v[j]) <= 0 {
            tmp.push(v[i].clone());
            i += 1;
        } else {
            tmp.push(v[j].clone());
            j += 1;
        }
    }
    tmp.extend_from_slice(&v[i..n1]);
    let k = tmp.len();
    v[..k].clone_from_slice(&tmp);
}

fn addr_words(a: &IpAddr) -> [u32; 4] {
    match a {
        IpAddr::V4(v4) => [u32::from(*v4), 0, 0, 0],
        IpAddr::V6(v6) => {
            let o = v6.octets();
            let mut w = [0u32; 4];
            for (i, c) in o.chunks(4).enumerate() {
                w[i] = u32::from_be_bytes([c[0], c[1], c[2], c[3]]);
            }
            w
        }
    }
}

fn wrap(a: u32, b: u32) -> i32 {
    a.wrapping_sub(b) as i32
}

fn af_num(f: Family) -> i32 {
    match f {
        Family::Inet => 2,
        Family::Inet6 => 10,
    }
}

struct SvcSortKey {
    fwmark: u32,
    af: i32,
    protocol: i32,
    addr: [u32; 4],
    port: i32,
}

fn svc_sort_key(k: &ServiceKey) -> SvcSortKey {
    match k {
        ServiceKey::Fwmark { mark, family } => SvcSortKey {
            fwmark: *mark,
            af: af_num(*family),
            protocol: i32::from(IPPROTO_TCP),
            addr: [0; 4],
            port: 0,
        },
        ServiceKey::Addr {
            protocol,
            addr,
            port,
        } => SvcSortKey {
            fwmark: 0,
            af: af_num(k.family()),
            protocol: i32::from(protocol.number()),
            addr: addr_words(addr),
            port: i32::from(*port),
        },
    }
}

/// libipvs `ipvs_cmp_services`.
pub fn cmp_services(a: &ServiceInfo, b: &ServiceInfo) -> i32 {
    let (s1, s2) = (svc_sort_key(&a.spec.key), svc_sort_key(&b.spec.key));
    let r = wrap(s1.fwmark, s2.fwmark);
    if r != 0 {
        return r;
    }
    let r = s1.af - s2.af;
    if r != 0 {
        return r;
    }
    let r = s1.protocol - s2.protocol;
    if r != 0 {
        return r;
    }
    let mut r = 0;
    if s1.af == 10 {
        for i in 0..4 {
            r = wrap(s1.addr[i], s2.addr[i]);
            if r != 0 {
                break;
            }
        }
    } else {
        r = wrap(s1.addr[0], s2.addr[0]);
    }
    if r != 0 {
        return r;
    }
    s1.port - s2.port
}

/// libipvs `ipvs_cmp_dests` (the first destination's family decides).
pub fn cmp_dests(a: &DestInfo, b: &DestInfo) -> i32 {
    let (w1, w2) = (addr_words(&a.spec.addr), addr_words(&b.spec.addr));
    let mut r = 0;
    if a.spec.addr.is_ipv6() {
        for i in 0..4 {
            r = wrap(w1[i], w2[i]);
            if r != 0 {
                break;
            }
        }
    } else {
        r = wrap(w1[0], w2[0]);
    }
    if r != 0 {
        return r;
    }
    i32::from(a.spec.port) - i32::from(b.spec.port)
}

/// Sort services (and each one's destinations) as ipvsadm does.
pub fn sort_services(services: &mut [ServiceInfo]) {
    glibc_msort(services, &cmp_services);
    for s in services.iter_mut() {
        glibc_msort(&mut s.dests, &cmp_dests);
    }
}

// ===== names =====

fn proto_of(key: &ServiceKey) -> u16 {
    match key {
        ServiceKey::Fwmark { .. } => IPPROTO_TCP,
        ServiceKey::Addr { protocol, .. } => u16::from(protocol.number()),
    }
}

fn trunc_bytes(s: &mut String, n: usize) {
    if s.len() > n {
        let mut end = n;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}

fn numeric_addr(a: &IpAddr) -> String {
    match a {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => inet_ntop6(v6),
    }
}

/// ipvsadm's `addrport_to_anyname` (at most 59 bytes).
pub fn addrport(addr: &IpAddr, port: u16, proto: u16, numeric: bool, r: &dyn Resolver) -> String {
    let (pre, post) = if addr.is_ipv4() { ("", "") } else { ("[", "]") };
    let mut s = if numeric {
        format!("{pre}{}{post}:{port}", numeric_addr(addr))
    } else {
        let host = r.addr_to_host(*addr).unwrap_or_else(|| numeric_addr(addr));
        let serv = r
            .port_to_service(port, proto)
            .unwrap_or_else(|| port.to_string());
        format!("{pre}{host}{post}:{serv}")
    };
    trunc_bytes(&mut s, 59);
    s
}

/// `print_largenum`.
pub fn largenum(out: &mut String, i: u64, exact: bool) {
    if exact {
        let len = i.to_string().len();
        let w = if len <= 8 { 9 } else { len + 1 };
        let _ = write!(out, "{i:>w$}");
        return;
    }
    let _ = if i < 100_000_000 {
        write!(out, "{i:>9}")
    } else if i < 1_000_000_000 {
        write!(out, "{:>8}K", i / 1000)
    } else if i < 100_000_000_000 {
        write!(out, "{:>8}M", i / 1_000_000)
    } else if i < 100_000_000_000_000 {
        write!(out, "{:>8}G", i / 1_000_000_000)
    } else {
        write!(out, "{:>8}T", i / 1_000_000_000_000)
    };
}

/// The banner line of a full listing.
pub fn banner(info: &Info) -> String {
    format!(
        "IP Virtual Server version {}.{}.{} (size={})\n",
        (info.version >> 16) & 0xff,
        (info.version >> 8) & 0xff,
        info.version & 0xff,
        info.conn_tab_size as i32
    )
}

/// ipvsadm's start-up warning for an IPVS version below 1.1.4 (`None`
/// when the version is recent enough).
pub fn version_warning(info: &Info) -> Option<String> {
    if info.version >= 0x010104 {
        return None;
    }
    Some(format!(
        "Warning: IPVS version mismatch: \n  Kernel compiled with IPVS version {}.{}.{}\n  ipvsadm v1.31  requires minimum IPVS version 1.1.4\n\n",
        (info.version >> 16) & 0xff,
        (info.version >> 8) & 0xff,
        info.version & 0xff
    ))
}

/// `print_title`.
pub fn title(f: &Format) -> String {
    if f.stats {
        format!(
            "{:<33} {:>8} {:>8} {:>8} {:>8} {:>8}\n  -> RemoteAddress:Port\n",
            "Prot LocalAddress:Port", "Conns", "InPkts", "OutPkts", "InBytes", "OutBytes"
        )
    } else if f.rate {
        format!(
            "{:<33} {:>8} {:>8} {:>8} {:>8} {:>8}\n  -> RemoteAddress:Port\n",
            "Prot LocalAddress:Port", "CPS", "InPPS", "OutPPS", "InBPS", "OutBPS"
        )
    } else if f.thresholds {
        format!(
            "{:<33} {:<10} {:<10} {:<10} {:<10}\n  -> RemoteAddress:Port\n",
            "Prot LocalAddress:Port", "Uthreshold", "Lthreshold", "ActiveConn", "InActConn"
        )
    } else if f.persistent_conn {
        format!(
            "{:<33} {:<9} {:<11} {:<10} {:<10}\n  -> RemoteAddress:Port\n",
            "Prot LocalAddress:Port", "Weight", "PersistConn", "ActiveConn", "InActConn"
        )
    } else if f.tun_info {
        "Prot LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward TunnelInfo    Weight ActiveConn InActConn\n".to_string()
    } else if !f.rule {
        "Prot LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n".to_string()
    } else {
        String::new()
    }
}

fn sched_flag_list(sched: &str, flags: u32) -> String {
    let mut v: Vec<&str> = Vec::new();
    match sched {
        "sh" | "mh" => {
            if flags & svc_flags::SCHED1 != 0 {
                v.push(if sched == "sh" {
                    "sh-fallback"
                } else {
                    "mh-fallback"
                });
            }
            if flags & svc_flags::SCHED2 != 0 {
                v.push(if sched == "sh" { "sh-port" } else { "mh-port" });
            }
        }
        _ => {
            if flags & svc_flags::SCHED1 != 0 {
                v.push("flag-1");
            }
            if flags & svc_flags::SCHED2 != 0 {
                v.push("flag-2");
            }
            if flags & svc_flags::SCHED3 != 0 {
                v.push("flag-3");
            }
        }
    }
    v.join(",")
}

fn fwd_switch(f: FwdMethod) -> &'static str {
    match f {
        FwdMethod::Masq => "-m",
        FwdMethod::Tunnel => "-i",
        FwdMethod::Local | FwdMethod::Route => "-g",
    }
}

fn csum_flag(c: TunCsum) -> &'static str {
    match c {
        TunCsum::NoCsum => "-c",
        TunCsum::Csum => "+c",
        TunCsum::RemCsum => "r+c",
    }
}

fn csum_opt(c: TunCsum) -> &'static str {
    match c {
        TunCsum::NoCsum => "--tun-nocsum",
        TunCsum::Csum => "--tun-csum",
        TunCsum::RemCsum => "--tun-remcsum",
    }
}

fn mask_text(key: &ServiceKey, netmask: u32) -> Option<String> {
    match key.family() {
        Family::Inet if netmask != 0xffff_ffff => Some(ntoa(netmask)),
        Family::Inet6 if netmask != 128 => Some((netmask as i32).to_string()),
        _ => None,
    }
}

/// `print_service_entry`: one service and its destinations (already in
/// the order to print).
pub fn service_entry(se: &ServiceInfo, f: &Format, r: &dyn Resolver) -> String {
    let spec = &se.spec;
    let mut out = String::new();
    let svc_name = match &spec.key {
        ServiceKey::Fwmark { mark, family } => {
            let m = *mark as i32;
            match (f.rule, family) {
                (true, Family::Inet6) => format!("-f {m} -6"),
                (true, Family::Inet) => format!("-f {m}"),
                (false, Family::Inet6) => format!("FWM  {m} IPv6"),
                (false, Family::Inet) => format!("FWM  {m}"),
            }
        }
        ServiceKey::Addr {
            protocol,
            addr,
            port,
        } => {
            let vname = addrport(addr, *port, u16::from(protocol.number()), f.numeric, r);
            if f.rule {
                let sw = match u16::from(protocol.number()) {
                    IPPROTO_TCP => "-t",
                    IPPROTO_UDP => "-u",
                    IPPROTO_SCTP => "--sctp-service",
                    _ => "--xxx-service",
                };
                format!("{sw} {vname}")
            } else {
                let mut s = format!("{:<4} {}", protocol.name(), vname);
                if addr.is_ipv4() {
                    trunc_bytes(&mut s, 33);
                }
                s
            }
        }
    };
    let persistent = spec.flags & svc_flags::PERSISTENT != 0;
    let pe = spec.pe_name.as_deref().filter(|p| !p.is_empty());
    if f.rule {
        let _ = write!(out, "-A {} -s {}", svc_name, spec.scheduler);
        if persistent {
            let _ = write!(out, " -p {}", spec.timeout);
            if let Some(m) = mask_text(&spec.key, spec.netmask) {
                let _ = write!(out, " -M {m}");
            }
        }
        if let Some(pe) = pe {
            let _ = write!(out, " --pe {pe}");
        }
        if spec.flags & svc_flags::ONEPACKET != 0 {
            out.push_str(" -o");
        }
        if spec.flags & svc_flags::SCHED_MASK != 0 {
            let _ = write!(out, " -b {}", sched_flag_list(&spec.scheduler, spec.flags));
        }
    } else if f.stats {
        let _ = write!(out, "{svc_name:<33}");
        for v in [
            se.stats.conns,
            se.stats.inpkts,
            se.stats.outpkts,
            se.stats.inbytes,
            se.stats.outbytes,
        ] {
            largenum(&mut out, v, f.exact);
        }
    } else if f.rate {
        let _ = write!(out, "{svc_name:<33}");
        for v in [
            se.rates.cps,
            se.rates.inpps,
            se.rates.outpps,
            se.rates.inbps,
            se.rates.outbps,
        ] {
            largenum(&mut out, v, f.exact);
        }
    } else {
        let _ = write!(out, "{} {}", svc_name, spec.scheduler);
        if spec.flags & svc_flags::SCHED_MASK != 0 {
            let _ = write!(out, " ({})", sched_flag_list(&spec.scheduler, spec.flags));
        }
        if persistent {
            let _ = write!(out, " persistent {}", spec.timeout);
            if let Some(m) = mask_text(&spec.key, spec.netmask) {
                let _ = write!(out, " mask {m}");
            }
            if let Some(pe) = pe {
                let _ = write!(out, " pe {pe}");
            }
        }
        if spec.flags & svc_flags::ONEPACKET != 0 {
            out.push_str(" ops");
        }
    }
    out.push('\n');

    let proto = proto_of(&spec.key);
    for e in &se.dests {
        let d = &e.spec;
        let mut dname = addrport(&d.addr, d.port, proto, f.numeric, r);
        if !f.rule && d.addr.is_ipv4() {
            trunc_bytes(&mut dname, 28);
        }
        let w = d.weight as i32;
        if f.rule {
            let sw = fwd_switch(d.fwd);
            if d.fwd == FwdMethod::Tunnel {
                match d.tun_type {
                    TunType::Gue => {
                        let _ = writeln!(
                            out,
                            "-a {} -r {} {} -w {} --tun-type gue --tun-port {} {}",
                            svc_name,
                            dname,
                            sw,
                            w,
                            d.tun_port,
                            csum_opt(d.tun_flags)
                        );
                    }
                    TunType::Gre => {
                        let _ = writeln!(
                            out,
                            "-a {} -r {} {} -w {} --tun-type gre {}",
                            svc_name,
                            dname,
                            sw,
                            w,
                            csum_opt(d.tun_flags)
                        );
                    }
                    TunType::Ipip => {
                        let _ =
                            writeln!(out, "-a {svc_name} -r {dname} {sw} -w {w} --tun-type ipip");
                    }
                }
            } else {
                let _ = writeln!(out, "-a {svc_name} -r {dname} {sw} -w {w}");
            }
        } else if f.stats {
            let _ = write!(out, "  -> {dname:<28}");
            for v in [
                e.stats.conns,
                e.stats.inpkts,
                e.stats.outpkts,
                e.stats.inbytes,
                e.stats.outbytes,
            ] {
                largenum(&mut out, v, f.exact);
            }
            out.push('\n');
        } else if f.rate {
            let _ = write!(
                out,
                "  -> {:<28} {:>8} {:>8} {:>8}",
                dname, e.rates.cps, e.rates.inpps, e.rates.outpps
            );
            largenum(&mut out, e.rates.inbps, f.exact);
            largenum(&mut out, e.rates.outbps, f.exact);
            out.push('\n');
        } else if f.thresholds {
            let _ = writeln!(
                out,
                "  -> {:<28} {:<10} {:<10} {:<10} {:<10}",
                dname, d.u_threshold, d.l_threshold, e.active_conns, e.inact_conns
            );
        } else if f.persistent_conn {
            let _ = writeln!(
                out,
                "  -> {:<28} {:<9} {:<11} {:<10} {:<10}",
                dname, d.weight, e.persist_conns, e.active_conns, e.inact_conns
            );
        } else if f.tun_info {
            let ti = if d.fwd == FwdMethod::Tunnel {
                match d.tun_type {
                    TunType::Ipip => "ipip".to_string(),
                    TunType::Gue => {
                        format!("gue:{}:{}", d.tun_port, csum_flag(d.tun_flags))
                    }
                    TunType::Gre => format!("gre:{}", csum_flag(d.tun_flags)),
                }
            } else {
                "n/a".to_string()
            };
            let _ = writeln!(
                out,
                "  -> {:<28} {:<7} {:<13} {:<6} {:<10} {:<10}",
                dname,
                d.fwd.name(),
                ti,
                w,
                e.active_conns,
                e.inact_conns
            );
        } else {
            let _ = writeln!(
                out,
                "  -> {:<28} {:<7} {:<6} {:<10} {:<10}",
                dname,
                d.fwd.name(),
                w,
                e.active_conns,
                e.inact_conns
            );
        }
    }
    out
}

/// Title, then every service (sorted unless `--nosort`; `-S` always sorts).
pub fn services(list: &[ServiceInfo], f: &Format, r: &dyn Resolver) -> String {
    let mut v = list.to_vec();
    if !f.nosort {
        sort_services(&mut v);
    }
    let mut out = title(f);
    for s in &v {
        out.push_str(&service_entry(s, f, r));
    }
    out
}

/// The full `-L` listing: banner + [`services`].
pub fn list_all(info: &Info, list: &[ServiceInfo], f: &Format, r: &dyn Resolver) -> String {
    let mut out = if f.rule { String::new() } else { banner(info) };
    out.push_str(&services(list, f, r));
    out
}

/// Single-service listing (`-L -t …`): title + entry, no banner.
pub fn list_service(se: &ServiceInfo, f: &Format, r: &dyn Resolver) -> String {
    let mut s = se.clone();
    if !f.nosort {
        glibc_msort(&mut s.dests, &cmp_dests);
    }
    let mut out = title(f);
    out.push_str(&service_entry(&s, f, r));
    out
}

fn conn_proto(name: &str) -> u16 {
    match name {
        "TCP" => IPPROTO_TCP,
        "UDP" => IPPROTO_UDP,
        "SCTP" => IPPROTO_SCTP,
        _ => 0,
    }
}

/// `-c` listing.
pub fn connections(conns: &[ConnInfo], f: &Format, r: &dyn Resolver) -> String {
    let mut out = String::from("IPVS connection entries\n");
    if f.persistent_conn {
        let _ = writeln!(
            out,
            "pro expire {:<11} {:<18} {:<18} {:<18} {:<16} pe_data",
            "state", "source", "virtual", "destination", "pe name"
        );
    } else {
        let _ = writeln!(
            out,
            "pro expire {:<11} {:<18} {:<18} destination",
            "state", "source", "virtual"
        );
    }
    for c in conns {
        let proto = conn_proto(&c.protocol);
        let cname = addrport(&c.caddr, c.cport, proto, f.numeric, r);
        let vname = addrport(&c.vaddr, c.vport, proto, f.numeric, r);
        let dname = addrport(&c.daddr, c.dport, proto, f.numeric, r);
        let expire = format!("{:02}:{:02}", c.expires / 60, c.expires % 60);
        let word = |s: &Option<String>| {
            s.as_deref()
                .and_then(|x| x.split_whitespace().next())
                .map(str::to_string)
        };
        match (f.persistent_conn, word(&c.pe_name), word(&c.pe_data)) {
            (true, Some(pn), Some(pd)) => {
                let _ = writeln!(
                    out,
                    "{:<3} {:<6} {:<11} {:<18} {:<18} {:<16} {:<18} {}",
                    c.protocol, expire, c.state, cname, vname, dname, pn, pd
                );
            }
            _ => {
                let _ = writeln!(
                    out,
                    "{:<3} {:<6} {:<11} {:<18} {:<18} {}",
                    c.protocol, expire, c.state, cname, vname, dname
                );
            }
        }
    }
    out
}

/// `--timeout` line.
pub fn timeouts(t: &Timeouts) -> String {
    format!(
        "Timeout (tcp tcpfin udp): {} {} {}\n",
        t.tcp as i32, t.tcpfin as i32, t.udp as i32
    )
}

/// `--daemon` lines (master first, then backup).
pub fn daemons(list: &[DaemonInfo]) -> String {
    let mut v: Vec<&DaemonInfo> = list.iter().collect();
    v.sort_by(|a, b| match (a.state, b.state) {
        (DaemonState::Master, DaemonState::Backup) => Ordering::Less,
        (DaemonState::Backup, DaemonState::Master) => Ordering::Greater,
        _ => Ordering::Equal,
    });
    let mut out = String::new();
    for d in v {
        let ty = match d.state {
            DaemonState::Master => "master",
            DaemonState::Backup => "backup",
        };
        let _ = write!(
            out,
            "{} sync daemon (mcast={}, syncid={}",
            ty, d.mcast_ifn, d.syncid
        );
        if d.sync_maxlen != 0 {
            let _ = write!(out, ", maxlen={}", d.sync_maxlen);
        }
        if let Some(g) = &d.mcast_group {
            let _ = write!(out, ", group={}", numeric_addr(g));
        }
        if d.mcast_port != 0 {
            let _ = write!(out, ", port={}", d.mcast_port);
        }
        if d.mcast_ttl != 0 {
            let _ = write!(out, ", ttl={}", d.mcast_ttl);
        }
        out.push_str(")\n");
    }
    out
}

/// The kernel's /proc/net/ip_vs_conn_sync (`ip_vs_conn_sync_seq_show`):
/// hex addresses and ports (IPv6 as `%pI6`, eight 4-digit groups), the
/// state, the Origin (`Local` / `Sync`) and the seconds left.
pub fn conn_sync(conns: &[rvs_api::ConnInfo]) -> String {
    fn a(ip: &IpAddr) -> String {
        match ip {
            IpAddr::V4(v) => format!("{:08X}", u32::from(*v)),
            IpAddr::V6(v) => v
                .segments()
                .iter()
                .map(|s| format!("{s:04x}"))
                .collect::<Vec<_>>()
                .join(":"),
        }
    }
    let mut out =
        String::from("Pro FromIP   FPrt ToIP     TPrt DestIP   DPrt State       Origin Expires\n");
    for c in conns {
        let _ = writeln!(
            out,
            "{:<3} {} {:04X} {} {:04X} {} {:04X} {:<11} {:<6} {:7}",
            c.protocol,
            a(&c.caddr),
            c.cport,
            a(&c.vaddr),
            c.vport,
            a(&c.daddr),
            c.dport,
            c.state,
            c.origin,
            c.expires
        );
    }
    out
}
