//! `virtual_server_group`, `virtual_server` and `real_server`, with the
//! inheritance real_server ← virtual_server (keepalived's check_parser.c).

use super::checkers::{CommonRaw, Pending};
use super::keywords::*;
use super::values::join;
use super::Ctx;
use crate::diag::{suggest, ConfigErr, Severity};
use crate::model::*;
use crate::tree::Node;
use std::net::IpAddr;
use std::time::Duration;

#[derive(Default)]
struct RsRaw {
    weight: Option<i32>,
    lvs_method: Option<LvsMethod>,
    inhibit_on_failure: Option<bool>,
    alpha: Option<bool>,
    common: CommonRaw,
    checkers: Vec<Pending>,
}

impl Ctx<'_> {
    pub(super) fn vsg(&mut self, n: &Node) -> Option<VirtualServerGroup> {
        let name = self.arg(n, 0)?.to_string();
        let mut entries = Vec::new();
        for c in self.block(n) {
            self.no_block(c);
            let w: Vec<&str> = c.words().map(|t| t.text.as_str()).collect();
            if w[0] == "fwmark" {
                if let Some(mark) = self.uint(c, 0, 0, i64::from(u32::MAX)) {
                    entries.push(VsgEntry::Fwmark {
                        mark,
                        family: w.get(2).map(|s| s.to_string()),
                    });
                }
                continue;
            }
            let port = if w.len() > 1 {
                self.uint(c, 0, 0, 65535)
            } else {
                None
            };
            match parse_range(w[0]) {
                Some((first, last)) => entries.push(VsgEntry::Range { first, last, port }),
                None => {
                    let t = w[0].to_string();
                    let msg = format!(
                        "Invalid virtual server group IP address {} - skipping",
                        join(&w)
                    );
                    self.err(c.span(), &t, msg);
                }
            }
        }
        Some(VirtualServerGroup {
            name,
            entries,
            location: self.loc(n),
        })
    }

    fn lvs_method(&mut self, n: &Node, start: usize) -> Option<LvsMethod> {
        let s = self.arg(n, start)?.to_string();
        let m = match s.as_str() {
            "NAT" => LvsMethod::Nat,
            "DR" => LvsMethod::Dr,
            "TUN" => {
                let (mut tun_type, mut port, mut csum) = (TunType::Ipip, None, None);
                let mut i = start + 1;
                while i < n.args.len() {
                    match n.args[i].text.as_str() {
                        "type" => {
                            match n.args.get(i + 1).map(|t| t.text.as_str()) {
                                Some("ipip") => tun_type = TunType::Ipip,
                                Some("gue") => tun_type = TunType::Gue,
                                Some("gre") => tun_type = TunType::Gre,
                                _ => {
                                    self.err(
                                        n.args[i].span,
                                        "type",
                                        "Invalid tunnel type - ignoring".into(),
                                    );
                                }
                            }
                            i += 2;
                        }
                        "port" => {
                            port = self.uint(n, i + 1, 1, 65535);
                            i += 2;
                        }
                        "nocsum" => {
                            csum = Some(TunCsum::Nocsum);
                            i += 1
                        }
                        "csum" => {
                            csum = Some(TunCsum::Csum);
                            i += 1
                        }
                        "remcsum" => {
                            csum = Some(TunCsum::Remcsum);
                            i += 1
                        }
                        o => {
                            let o = o.to_string();
                            self.warn(
                                n.args[i].span,
                                &o,
                                format!("Unknown TUN option '{o}' - ignoring"),
                            );
                            i += 1
                        }
                    }
                }
                if tun_type == TunType::Gue && port.is_none() {
                    self.err(
                        n.span(),
                        "TUN",
                        "GUE tunnel requires a port - ignoring".into(),
                    );
                    return None;
                }
                LvsMethod::Tun {
                    tun_type,
                    port,
                    csum,
                }
            }
            _ => {
                let help =
                    suggest(&s, &["NAT", "DR", "TUN"]).map(|h| format!("did you mean '{h}'?"));
                self.push(
                    Severity::Error,
                    ConfigErr::GeneralError,
                    Self::arg_span(n, start),
                    &s,
                    format!("PARSER : unknown [{s}] routing method for virtual server."),
                    help,
                );
                return None;
            }
        };
        Some(m)
    }

    fn sched(&mut self, n: &Node) -> Option<String> {
        let s = self.string(n, 0)?;
        if SCHEDULERS.contains(&s.as_str()) {
            Some(s)
        } else {
            let help = suggest(&s, SCHEDULERS).map(|h| format!("did you mean '{h}'?"));
            self.push(
                Severity::Error,
                ConfigErr::GeneralError,
                Self::arg_span(n, 0),
                &s,
                format!("Invalid lvs_scheduler '{s}' - ignoring"),
                help,
            );
            None
        }
    }

    pub(super) fn virtual_server(&mut self, n: &Node, g: &GlobalDefs) -> Option<VirtualServer> {
        let first = self.arg(n, 0)?.to_string();
        let key = match first.as_str() {
            "fwmark" => VsKey::Fwmark {
                mark: self.hdr_uint(n, 1, 0, i64::from(u32::MAX))?,
            },
            "group" => VsKey::Group {
                name: self.arg(n, 1)?.to_string(),
            },
            _ => {
                let Ok(ip) = first.parse::<IpAddr>() else {
                    let t = first.clone();
                    self.err(
                        n.args[0].span,
                        &t,
                        format!(
                            "Invalid virtual server IP address '{t}' - skipping virtual server"
                        ),
                    );
                    return None;
                };
                let port = if n.args.len() > 1 {
                    self.hdr_uint(n, 1, 0, 65535)?
                } else {
                    0
                };
                VsKey::Addr { ip, port }
            }
        };
        let mut vs = VirtualServer {
            key,
            ip_family: None,
            delay_loop: Duration::from_secs(60),
            lvs_sched: "wlc".into(),
            lvs_method: LvsMethod::Nat,
            hashed: false,
            sched_flags: vec![],
            ops: false,
            persistence_timeout: None,
            persistence_granularity: None,
            persistence_engine: None,
            protocol: Protocol::Tcp,
            ha_suspend: false,
            virtualhost: None,
            alpha: false,
            omega: false,
            quorum: 1,
            quorum_up: None,
            quorum_down: None,
            hysteresis: 0,
            weight: None,
            sorry_server: None,
            sorry_server_inhibit: false,
            inhibit_on_failure: false,
            smtp_alert: None,
            retry: None,
            delay_before_retry: None,
            warmup: None,
            connect_timeout: None,
            real_servers: vec![],
            unsupported: vec![],
            location: self.loc(n),
        };
        let (mut sched, mut method, mut proto_node, mut delay_loop) = (None, None, None, None);
        let mut sorry_method = None;
        let mut rss: Vec<(RsRaw, RealServer)> = Vec::new();
        for c in self.block(n) {
            let kw = c.keyword.text.as_str();
            match kw {
                "ip_family" => vs.ip_family = self.string(c, 0),
                "delay_loop" => {
                    delay_loop = self.timer(c, 0, 0.000001, 86400.0 * 365.0).or(delay_loop)
                }
                "lvs_sched" | "lb_algo" => sched = self.sched(c).or(sched),
                "lvs_method" | "lb_kind" => {
                    self.no_block(c);
                    method = self.lvs_method(c, 0).or(method)
                }
                "hashed" => vs.hashed = true,
                "ops" => vs.ops = true,
                "flag-1" | "flag-2" | "flag-3" | "sh-port" | "sh-fallback" | "mh-port"
                | "mh-fallback" => {
                    self.no_block(c);
                    if !vs.sched_flags.iter().any(|f| f == kw) {
                        vs.sched_flags.push(kw.to_string())
                    }
                }
                "persistence_engine" => vs.persistence_engine = self.string(c, 0),
                "persistence_timeout" => {
                    self.no_block(c);
                    if c.args.is_empty() {
                        vs.persistence_timeout = Some(360);
                    } else {
                        match self.int(c, 0, 1, 2_678_400) {
                            Some(t) => vs.persistence_timeout = Some(t as u32),
                            None => self.err(
                                c.span(),
                                "persistence_timeout",
                                "persistence_timeout invalid".into(),
                            ),
                        }
                    }
                }
                "persistence_granularity" => {
                    if let Some(s) = self.string(c, 0) {
                        let ok = s.parse::<std::net::Ipv4Addr>().is_ok_and(|m| {
                            let b = u32::from(m);
                            b.leading_ones() + b.trailing_zeros() == 32
                        }) || s.parse::<u8>().is_ok_and(|p| (1..=128).contains(&p));
                        if ok {
                            vs.persistence_granularity = Some(s);
                        } else {
                            self.err(
                                Self::arg_span(c, 0),
                                &s,
                                format!("Invalid persistence_granularity '{s}' - ignoring"),
                            );
                        }
                    }
                }
                "protocol" => {
                    if let Some(p) = self.string(c, 0) {
                        match p.to_ascii_uppercase().as_str() {
                            "TCP" => vs.protocol = Protocol::Tcp,
                            "UDP" => vs.protocol = Protocol::Udp,
                            "SCTP" => vs.protocol = Protocol::Sctp,
                            _ => self.err(
                                Self::arg_span(c, 0),
                                &p,
                                format!("Unknown protocol {p} - ignoring"),
                            ),
                        }
                        proto_node = Some(c);
                    }
                }
                "ha_suspend" => vs.ha_suspend = self.boolean(c, 0).unwrap_or(true),
                "smtp_alert" => vs.smtp_alert = self.boolean(c, 0),
                "virtualhost" => vs.virtualhost = self.string(c, 0),
                "alpha" => vs.alpha = self.boolean(c, 0).unwrap_or(true),
                "omega" => vs.omega = self.boolean(c, 0).unwrap_or(true),
                "quorum" => {
                    vs.quorum = self.uint(c, 0, 1, i64::from(u32::MAX)).unwrap_or(vs.quorum)
                }
                "quorum_up" => vs.quorum_up = self.script(c),
                "quorum_down" => vs.quorum_down = self.script(c),
                "hysteresis" => {
                    vs.hysteresis = self
                        .uint(c, 0, 0, i64::from(u32::MAX))
                        .unwrap_or(vs.hysteresis)
                }
                "weight" => vs.weight = self.uint(c, 0, 0, 65535).or(vs.weight),
                "sorry_server" => {
                    if let Some(ip) = self.ip(c, 0) {
                        let port = if c.args.len() > 1 {
                            self.uint(c, 1, 0, 65535).unwrap_or(0)
                        } else {
                            0
                        };
                        vs.sorry_server = Some(SorryServer {
                            ip,
                            port,
                            lvs_method: None,
                        });
                    }
                }
                "sorry_server_inhibit" => {
                    vs.sorry_server_inhibit = self.boolean(c, 0).unwrap_or(true)
                }
                "sorry_server_lvs_method" => {
                    self.no_block(c);
                    sorry_method = self.lvs_method(c, 0);
                }
                "retry" => vs.retry = self.uint(c, 0, 0, i64::from(u32::MAX)).or(vs.retry),
                "delay_before_retry" => {
                    vs.delay_before_retry = self.timer(c, 0, 0.0, 86400.0 * 365.0)
                }
                "warmup" => vs.warmup = self.timer(c, 0, 0.0, 86400.0 * 365.0),
                "connect_timeout" => {
                    vs.connect_timeout = self.timer(c, 0, 0.000001, 86400.0 * 365.0)
                }
                "inhibit_on_failure" => vs.inhibit_on_failure = self.boolean(c, 0).unwrap_or(true),
                "real_server" => {
                    if let Some(r) = self.real_server(c, &vs.key) {
                        rss.push(r);
                    }
                }
                _ if VS_UNSUPPORTED.contains(&kw) => {
                    let gn = self.unsupported(c, "virtual_server");
                    vs.unsupported.push(gn);
                }
                _ => self.unknown(c, "virtual_server", &[VS_KW, VS_UNSUPPORTED]),
            }
        }
        if let Some(d) = delay_loop {
            vs.delay_loop = d;
        }
        let name = vs.keepalived_name();
        match sched {
            Some(s) => vs.lvs_sched = s,
            None => self.warn_at(
                n,
                format!("Virtual server {name}: no scheduler set, setting default 'wlc'"),
            ),
        }
        match method {
            Some(m) => vs.lvs_method = m,
            None => self.warn_at(
                n,
                format!("Virtual server {name}: no forwarding method set, setting default NAT"),
            ),
        }
        if let (VsKey::Fwmark { .. }, Some(p)) = (&vs.key, proto_node) {
            self.push(
                Severity::Warning,
                ConfigErr::Warning,
                p.span(),
                "protocol",
                format!("Warning: Virtual server {name}: protocol specified for fwmark - protocol will be ignored"),
                None,
            );
        }
        if let VsKey::Addr { port: 0, .. } = vs.key {
            if vs.persistence_timeout.is_none() {
                self.warn_at(
                    n,
                    format!("Virtual server {name}: no port specified and not persistent"),
                );
            }
        }
        if vs.hysteresis >= vs.quorum {
            let h = vs.quorum - 1;
            self.warn_at(
                n,
                format!(
                    "Virtual server {name}: hysteresis {} >= quorum {}; setting hysteresis to {h}",
                    vs.hysteresis, vs.quorum
                ),
            );
            vs.hysteresis = h;
        }
        if let Some(s) = &mut vs.sorry_server {
            s.lvs_method = sorry_method;
        }
        for (raw, mut rs) in rss {
            self.resolve_rs(&vs, raw, &mut rs, g, &name);
            vs.real_servers.push(rs);
        }
        Some(vs)
    }

    fn real_server(&mut self, n: &Node, key: &VsKey) -> Option<(RsRaw, RealServer)> {
        let s = self.arg(n, 0)?.to_string();
        let Ok(ip) = s.parse::<IpAddr>() else {
            self.err(
                n.args[0].span,
                &s,
                format!("Invalid real server ip address '{s}' - skipping real_server"),
            );
            return None;
        };
        let default_port = match key {
            VsKey::Addr { port, .. } => *port,
            _ => 0,
        };
        let port = if n.args.len() > 1 {
            self.hdr_uint(n, 1, 0, 65535)?
        } else {
            default_port
        };
        let mut raw = RsRaw::default();
        let mut rs = RealServer {
            ip,
            port,
            weight: 1,
            lvs_method: LvsMethod::Nat,
            uthreshold: None,
            lthreshold: None,
            inhibit_on_failure: false,
            notify_up: None,
            notify_down: None,
            alpha: false,
            delay_loop: Duration::from_secs(60),
            virtualhost: None,
            smtp_alert: None,
            checkers: vec![],
            unsupported: vec![],
            location: self.loc(n),
        };
        for c in self.block(n) {
            let kw = c.keyword.text.as_str();
            match kw {
                "weight" => raw.weight = self.uint(c, 0, 0, 65535).or(raw.weight),
                "lvs_method" => {
                    self.no_block(c);
                    raw.lvs_method = self.lvs_method(c, 0).or(raw.lvs_method)
                }
                "uthreshold" => rs.uthreshold = self.uint(c, 0, 0, i64::from(u32::MAX)),
                "lthreshold" => rs.lthreshold = self.uint(c, 0, 0, i64::from(u32::MAX)),
                "inhibit_on_failure" => raw.inhibit_on_failure = self.boolean(c, 0),
                "notify_up" => rs.notify_up = self.script(c),
                "notify_down" => rs.notify_down = self.script(c),
                "alpha" => raw.alpha = self.boolean(c, 0),
                "retry" | "delay_before_retry" | "warmup" | "connect_timeout" | "delay_loop" => {
                    self.common_kw(&mut raw.common, c, COMMON_KW);
                }
                "smtp_alert" => rs.smtp_alert = self.boolean(c, 0),
                "virtualhost" => rs.virtualhost = self.string(c, 0),
                _ if CHECKERS.contains(&kw) => {
                    let p = self.checker(c);
                    raw.checkers.extend(p);
                }
                _ if RS_UNSUPPORTED.contains(&kw) => {
                    let gn = self.unsupported(c, "real_server");
                    rs.unsupported.push(gn);
                }
                _ => self.unknown(c, "real_server", &[RS_KW, CHECKERS, RS_UNSUPPORTED]),
            }
        }
        Some((raw, rs))
    }

    fn resolve_rs(
        &mut self,
        vs: &VirtualServer,
        raw: RsRaw,
        rs: &mut RealServer,
        g: &GlobalDefs,
        vsn: &str,
    ) {
        rs.weight = raw.weight.or(vs.weight).unwrap_or(1);
        rs.lvs_method = raw.lvs_method.unwrap_or(vs.lvs_method);
        rs.inhibit_on_failure = raw.inhibit_on_failure.unwrap_or(vs.inhibit_on_failure);
        rs.alpha = raw.alpha.unwrap_or(vs.alpha);
        rs.delay_loop = raw.common.delay_loop.unwrap_or(vs.delay_loop);
        if let VsKey::Addr { port: vport, .. } = vs.key {
            if vport != 0
                && rs.port != vport
                && matches!(rs.lvs_method, LvsMethod::Dr | LvsMethod::Tun { .. })
            {
                let p = vs.protocol.keepalived_name();
                let msg = format!(
                    "WARNING - virtual server {vsn} and real server [{}]:{p}:{} ports don't match - resetting",
                    rs.ip, rs.port
                );
                self.warn_in(&rs.location, rs.port.to_string(), msg);
                rs.port = vport;
            }
        }
        for p in raw.checkers {
            let checker = p.resolve(&raw.common, rs, vs, g);
            rs.checkers.push(checker);
        }
    }
}

/// `a.b.c.d`, `a.b.c.d-e`, `a.b.c.d-e.f.g.h`, `a.b.c.d/nn`, IPv6 `x::y-z` (hex last group).
fn parse_range(s: &str) -> Option<(IpAddr, IpAddr)> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some((ip, ip));
    }
    if let Some((a, p)) = s.split_once('/') {
        let ip: IpAddr = a.parse().ok()?;
        let p: u32 = p.parse().ok()?;
        return match ip {
            IpAddr::V4(v) if p <= 32 => {
                let mask = if p == 0 { 0 } else { u32::MAX << (32 - p) };
                let base = u32::from(v) & mask;
                Some((IpAddr::V4(base.into()), IpAddr::V4((base | !mask).into())))
            }
            IpAddr::V6(v) if p <= 128 => {
                let mask = if p == 0 { 0 } else { u128::MAX << (128 - p) };
                let base = u128::from(v) & mask;
                Some((IpAddr::V6(base.into()), IpAddr::V6((base | !mask).into())))
            }
            _ => None,
        };
    }
    let (a, b) = s.split_once('-')?;
    let first: IpAddr = a.parse().ok()?;
    if let Ok(last) = b.parse::<IpAddr>() {
        return (last.is_ipv4() == first.is_ipv4() && last >= first).then_some((first, last));
    }
    match first {
        IpAddr::V4(v) => {
            let e: u8 = b.parse().ok()?;
            let o = v.octets();
            (e >= o[3]).then(|| (first, IpAddr::V4([o[0], o[1], o[2], e].into())))
        }
        IpAddr::V6(v) => {
            let e = u16::from_str_radix(b, 16).ok()?;
            let mut seg = v.segments();
            if e < seg[7] {
                return None;
            }
            seg[7] = e;
            Some((first, IpAddr::V6(seg.into())))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        let r = |s| parse_range(s).map(|(a, b)| (a.to_string(), b.to_string()));
        assert_eq!(
            r("10.0.0.1-5"),
            Some(("10.0.0.1".into(), "10.0.0.5".into()))
        );
        assert_eq!(
            r("10.0.0.1-10.0.0.9"),
            Some(("10.0.0.1".into(), "10.0.0.9".into()))
        );
        assert_eq!(
            r("10.0.0.7/30"),
            Some(("10.0.0.4".into(), "10.0.0.7".into()))
        );
        assert_eq!(r("10.0.0.1"), Some(("10.0.0.1".into(), "10.0.0.1".into())));
        assert_eq!(r("10.0.0.9-5"), None);
        assert_eq!(r("$A.1"), None);
    }
}
