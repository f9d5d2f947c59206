//! Checker blocks of a real_server: TCP_CHECK, HTTP_GET/SSL_GET, MISC_CHECK,
//! SMTP_CHECK, DNS_CHECK, UDP_CHECK, PING_CHECK, FILE_CHECK, BFD_CHECK, and
//! the top-level SSL block (keepalived's check_*.c parsers).

use super::keywords::*;
use super::Ctx;
use crate::model::*;
use crate::tree::Node;
use std::net::IpAddr;
use std::time::Duration;

#[derive(Default, Clone)]
pub(super) struct CommonRaw {
    pub(super) connect_ip: Option<IpAddr>,
    pub(super) connect_port: Option<u16>,
    pub(super) bindto: Option<IpAddr>,
    pub(super) bind_port: Option<u16>,
    pub(super) bind_if: Option<String>,
    pub(super) connect_timeout: Option<Duration>,
    pub(super) fwmark: Option<u32>,
    pub(super) retry: Option<u32>,
    pub(super) delay_before_retry: Option<Duration>,
    pub(super) warmup: Option<Duration>,
    pub(super) delay_loop: Option<Duration>,
    pub(super) alpha: Option<bool>,
    pub(super) log_all_failures: Option<bool>,
}

pub(super) struct Pending {
    common: CommonRaw,
    misc_timeout: Option<Duration>,
    body: Checker,
}

impl Pending {
    /// The checker with its effective values: checker ← real_server (`r`,
    /// its own checker keywords, and `rs`) ← virtual_server ← global_defs
    /// and keepalived's per-checker defaults.
    pub(super) fn resolve(
        self,
        r: &CommonRaw,
        rs: &RealServer,
        vs: &VirtualServer,
        g: &GlobalDefs,
    ) -> Checker {
        let c = &self.common;
        let delay_loop = c.delay_loop.unwrap_or(rs.delay_loop);
        let (def_retry, def_dbr) = match &self.body {
            Checker::Misc(_) => (0, Duration::from_secs(1)),
            Checker::Dns(_) => (3, delay_loop),
            Checker::Http(_) | Checker::Ssl(_) => (1, Duration::from_secs(3)),
            _ => (1, Duration::from_secs(1)),
        };
        let common = CheckerCommon {
            connect_ip: c.connect_ip.unwrap_or(rs.ip),
            connect_port: c.connect_port.unwrap_or(rs.port),
            bindto: c.bindto,
            bind_port: c.bind_port,
            bind_if: c.bind_if.clone(),
            connect_timeout: c
                .connect_timeout
                .or(r.connect_timeout)
                .or(vs.connect_timeout)
                .unwrap_or(Duration::from_secs(5)),
            fwmark: c.fwmark,
            retry: c.retry.or(r.retry).or(vs.retry).unwrap_or(def_retry),
            delay_before_retry: c
                .delay_before_retry
                .or(r.delay_before_retry)
                .or(vs.delay_before_retry)
                .unwrap_or(def_dbr),
            warmup: c.warmup.or(r.warmup).or(vs.warmup),
            delay_loop,
            alpha: c.alpha.unwrap_or(rs.alpha),
            log_all_failures: c.log_all_failures.unwrap_or(g.checker_log_all_failures),
        };
        let http = |h: HttpCheck, common| HttpCheck {
            virtualhost: h
                .virtualhost
                .or(rs.virtualhost.clone())
                .or(vs.virtualhost.clone()),
            common,
            ..h
        };
        match self.body {
            Checker::Tcp(_) => Checker::Tcp(common),
            Checker::Ping(_) => Checker::Ping(common),
            Checker::Http(h) => Checker::Http(http(h, common)),
            Checker::Ssl(h) => Checker::Ssl(http(h, common)),
            Checker::Misc(m) => Checker::Misc(MiscCheck {
                misc_timeout: self.misc_timeout.unwrap_or(delay_loop),
                common,
                ..m
            }),
            Checker::Smtp(s) => Checker::Smtp(SmtpCheck { common, ..s }),
            Checker::Dns(d) => Checker::Dns(DnsCheck { common, ..d }),
            Checker::Udp(u) => Checker::Udp(UdpCheck { common, ..u }),
            other @ (Checker::File(_) | Checker::Bfd(_)) => other,
        }
    }
}

fn placeholder_common() -> CheckerCommon {
    CheckerCommon {
        connect_ip: IpAddr::from([0, 0, 0, 0]),
        connect_port: 0,
        bindto: None,
        bind_port: None,
        bind_if: None,
        connect_timeout: Duration::from_secs(5),
        fwmark: None,
        retry: 1,
        delay_before_retry: Duration::from_secs(1),
        warmup: None,
        delay_loop: Duration::from_secs(60),
        alpha: false,
        log_all_failures: false,
    }
}

fn parse_hex(s: &str) -> Option<Vec<u8>> {
    let s = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s);
    if s.is_empty() || !s.len().is_multiple_of(2) || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

impl Ctx<'_> {
    pub(super) fn common_kw(&mut self, c: &mut CommonRaw, n: &Node, allowed: &[&str]) -> bool {
        let kw = n.keyword.text.as_str();
        if !allowed.contains(&kw) {
            return false;
        }
        match kw {
            "connect_ip" => c.connect_ip = self.ip(n, 0).or(c.connect_ip),
            "connect_port" => c.connect_port = self.uint(n, 0, 0, 65535).or(c.connect_port),
            "bindto" => c.bindto = self.ip(n, 0).or(c.bindto),
            "bind_port" => c.bind_port = self.uint(n, 0, 0, 65535).or(c.bind_port),
            "bind_if" => c.bind_if = self.string(n, 0).or(c.bind_if.take()),
            "connect_timeout" => {
                c.connect_timeout = self
                    .timer(n, 0, 0.000001, 86400.0 * 365.0)
                    .or(c.connect_timeout)
            }
            "fwmark" => c.fwmark = self.uint(n, 0, 0, i64::from(u32::MAX)).or(c.fwmark),
            "retry" => c.retry = self.uint(n, 0, 0, i64::from(u32::MAX)).or(c.retry),
            "delay_before_retry" => {
                c.delay_before_retry = self
                    .timer(n, 0, 0.0, 86400.0 * 365.0)
                    .or(c.delay_before_retry)
            }
            "warmup" => c.warmup = self.timer(n, 0, 0.0, 86400.0 * 365.0).or(c.warmup),
            "delay_loop" => {
                c.delay_loop = self.timer(n, 0, 0.000001, 86400.0 * 365.0).or(c.delay_loop)
            }
            "alpha" => c.alpha = self.boolean(n, 0).or(c.alpha),
            "log_all_failures" => c.log_all_failures = self.boolean(n, 0).or(c.log_all_failures),
            _ => return false,
        }
        true
    }

    /// `nb_get_retry`: deprecated alias of `retry`.
    fn nb_get_retry(&mut self, c: &mut CommonRaw, n: &Node) {
        self.deprecated(n, "nb_get_retry is deprecated - please use 'retry'".into());
        c.retry = self.uint(n, 0, 0, i64::from(u32::MAX)).or(c.retry);
    }

    pub(super) fn checker(&mut self, n: &Node) -> Vec<Pending> {
        let kind = n.keyword.text.as_str();
        let children = self.block(n);
        self.block_args_ignored(n);
        let mut common = CommonRaw::default();
        let mut misc_timeout = None;
        let ph = placeholder_common;
        let mut out = Vec::new();
        match kind {
            "TCP_CHECK" | "PING_CHECK" => {
                for c in children {
                    if self.common_kw(&mut common, c, COMMON_KW) {
                        continue;
                    }
                    if c.keyword.text == "nb_get_retry" {
                        self.nb_get_retry(&mut common, c);
                        continue;
                    }
                    self.unknown(c, kind, &[COMMON_KW]);
                }
                let body = if kind == "TCP_CHECK" {
                    Checker::Tcp(ph())
                } else {
                    Checker::Ping(ph())
                };
                out.push(Pending {
                    common,
                    misc_timeout,
                    body,
                });
            }
            "HTTP_GET" | "SSL_GET" => {
                let mut h = HttpCheck {
                    common: ph(),
                    urls: vec![],
                    virtualhost: None,
                    http_protocol: None,
                    fast_recovery: false,
                    enable_sni: false,
                    sni_name: None,
                    tls_compliant: false,
                };
                for c in children {
                    if self.common_kw(&mut common, c, COMMON_KW) {
                        continue;
                    }
                    match c.keyword.text.as_str() {
                        "nb_get_retry" => self.nb_get_retry(&mut common, c),
                        "url" => {
                            if let Some(u) = self.url(c) {
                                h.urls.push(u);
                            }
                        }
                        "virtualhost" => h.virtualhost = self.string(c, 0),
                        "http_protocol" => {
                            if let Some(p) = self.string(c, 0) {
                                if matches!(p.as_str(), "1.0" | "1.1" | "1.0C" | "1.0c") {
                                    h.http_protocol = Some(p);
                                } else {
                                    self.err(
                                        Self::arg_span(c, 0),
                                        &p,
                                        format!("Invalid http_protocol '{p}' - ignoring"),
                                    );
                                }
                            }
                        }
                        "fast_recovery" => h.fast_recovery = self.boolean(c, 0).unwrap_or(true),
                        "enable_sni" => h.enable_sni = self.boolean(c, 0).unwrap_or(true),
                        "sni_name" => h.sni_name = self.string(c, 0),
                        "tls_compliant" => h.tls_compliant = self.boolean(c, 0).unwrap_or(true),
                        _ => self.unknown(c, kind, &[COMMON_KW, HTTP_KW]),
                    }
                }
                if h.urls.is_empty() {
                    self.warn_at(
                        n,
                        "HTTP/SSL_GET checker has no urls specified - ignoring".into(),
                    );
                } else {
                    let body = if kind == "HTTP_GET" {
                        Checker::Http(h)
                    } else {
                        Checker::Ssl(h)
                    };
                    out.push(Pending {
                        common,
                        misc_timeout,
                        body,
                    });
                }
            }
            "MISC_CHECK" => {
                let (mut path, mut dynamic, mut user) = (None, false, None);
                for c in children {
                    if self.common_kw(&mut common, c, MISC_COMMON_KW) {
                        continue;
                    }
                    match c.keyword.text.as_str() {
                        "misc_path" => path = self.script(c),
                        "misc_timeout" => {
                            misc_timeout = self.timer(c, 0, 0.000001, 86400.0 * 365.0)
                        }
                        "misc_dynamic" => dynamic = self.boolean(c, 0).unwrap_or(true),
                        "user" => user = self.script_user(c),
                        _ => self.unknown(c, kind, &[MISC_COMMON_KW, MISC_KW]),
                    }
                }
                match path {
                    Some(p) => out.push(Pending {
                        common,
                        misc_timeout,
                        body: Checker::Misc(MiscCheck {
                            common: ph(),
                            misc_path: p,
                            misc_timeout: Duration::ZERO,
                            misc_dynamic: dynamic,
                            user,
                        }),
                    }),
                    None => self.warn_at(n, "MISC_CHECK has no misc_path - ignoring".into()),
                }
            }
            "SMTP_CHECK" => {
                let mut helo = None;
                let mut hosts = Vec::new();
                for c in children {
                    if self.common_kw(&mut common, c, COMMON_KW) {
                        continue;
                    }
                    match c.keyword.text.as_str() {
                        "helo_name" => helo = self.string(c, 0),
                        "host" => {
                            self.deprecated(
                                c,
                                "The SMTP_CHECK host block is deprecated. Please define additional checkers.".into(),
                            );
                            let mut hc = CommonRaw::default();
                            for hh in self.block(c) {
                                if !self.common_kw(&mut hc, hh, COMMON_KW) {
                                    self.unknown(hh, "SMTP_CHECK host", &[COMMON_KW]);
                                }
                            }
                            hosts.push(hc);
                        }
                        _ => self.unknown(c, kind, &[COMMON_KW, SMTP_KW]),
                    }
                }
                let body = || {
                    Checker::Smtp(SmtpCheck {
                        common: ph(),
                        helo_name: helo.clone(),
                    })
                };
                if hosts.is_empty() {
                    out.push(Pending {
                        common,
                        misc_timeout,
                        body: body(),
                    });
                } else {
                    for h in hosts {
                        let merged = CommonRaw {
                            connect_ip: h.connect_ip.or(common.connect_ip),
                            connect_port: h.connect_port.or(common.connect_port),
                            bindto: h.bindto.or(common.bindto),
                            bind_port: h.bind_port.or(common.bind_port),
                            bind_if: h.bind_if.or(common.bind_if.clone()),
                            connect_timeout: h.connect_timeout.or(common.connect_timeout),
                            fwmark: h.fwmark.or(common.fwmark),
                            retry: h.retry.or(common.retry),
                            delay_before_retry: h.delay_before_retry.or(common.delay_before_retry),
                            warmup: h.warmup.or(common.warmup),
                            delay_loop: h.delay_loop.or(common.delay_loop),
                            alpha: h.alpha.or(common.alpha),
                            log_all_failures: h.log_all_failures.or(common.log_all_failures),
                        };
                        out.push(Pending {
                            common: merged,
                            misc_timeout,
                            body: body(),
                        });
                    }
                }
            }
            "DNS_CHECK" => {
                let mut d = DnsCheck {
                    common: ph(),
                    query_type: "SOA".into(),
                    name: ".".into(),
                };
                for c in children {
                    if self.common_kw(&mut common, c, COMMON_KW) {
                        continue;
                    }
                    match c.keyword.text.as_str() {
                        "type" => {
                            if let Some(t) = self.string(c, 0) {
                                let u = t.to_ascii_uppercase();
                                if ["A", "NS", "CNAME", "SOA", "MX", "TXT", "AAAA"]
                                    .contains(&u.as_str())
                                {
                                    d.query_type = u;
                                } else {
                                    self.err(
                                        Self::arg_span(c, 0),
                                        &t,
                                        format!("DNS_CHECK: unknown type '{t}' - ignoring"),
                                    );
                                }
                            }
                        }
                        "name" => d.name = self.string(c, 0).unwrap_or(d.name),
                        _ => self.unknown(c, kind, &[COMMON_KW, DNS_KW]),
                    }
                }
                out.push(Pending {
                    common,
                    misc_timeout,
                    body: Checker::Dns(d),
                });
            }
            "UDP_CHECK" => {
                let mut u = UdpCheck {
                    common: ph(),
                    payload: None,
                    require_reply: None,
                    min_reply_length: None,
                    max_reply_length: None,
                };
                for c in children {
                    if self.common_kw(&mut common, c, COMMON_KW) {
                        continue;
                    }
                    match c.keyword.text.as_str() {
                        "payload" => {
                            if let Some(h) = self.string(c, 0) {
                                match parse_hex(&h) {
                                    Some(b) => u.payload = Some(b),
                                    None => self.err(
                                        Self::arg_span(c, 0),
                                        &h,
                                        format!("Invalid hex payload '{h}' - ignoring"),
                                    ),
                                }
                            }
                        }
                        "require_reply" => {
                            self.no_block(c);
                            match c.args.first() {
                                None => u.require_reply = Some(vec![]),
                                Some(t) => match parse_hex(&t.text) {
                                    Some(b) => u.require_reply = Some(b),
                                    None => {
                                        let s = t.text.clone();
                                        self.err(
                                            t.span,
                                            &s,
                                            format!("Invalid hex require_reply '{s}' - ignoring"),
                                        )
                                    }
                                },
                            }
                        }
                        "min_reply_length" => u.min_reply_length = self.uint(c, 0, 0, 65535),
                        "max_reply_length" => u.max_reply_length = self.uint(c, 0, 0, 65535),
                        _ => self.unknown(c, kind, &[COMMON_KW, UDP_KW]),
                    }
                }
                out.push(Pending {
                    common,
                    misc_timeout,
                    body: Checker::Udp(u),
                });
            }
            "FILE_CHECK" => {
                let mut f = FileCheck {
                    track_file: String::new(),
                    weight: None,
                    reverse: false,
                    dynamic: false,
                };
                for c in children {
                    match c.keyword.text.as_str() {
                        "track_file" | "file" => {
                            f.track_file = self.string(c, 0).unwrap_or_default()
                        }
                        "weight" => {
                            f.weight = self.uint(c, 0, -254, 254);
                            f.reverse = c.args.get(1).is_some_and(|t| t.text == "reverse");
                        }
                        "dynamic" => f.dynamic = self.boolean(c, 0).unwrap_or(true),
                        _ => self.unknown(c, kind, &[FILE_KW]),
                    }
                }
                if f.track_file.is_empty() {
                    self.warn_at(n, "FILE_CHECK has no track_file - ignoring".into());
                } else {
                    out.push(Pending {
                        common,
                        misc_timeout,
                        body: Checker::File(f),
                    });
                }
            }
            _ => {
                // BFD_CHECK
                let mut b = BfdCheck {
                    name: String::new(),
                    alpha: false,
                };
                for c in children {
                    match c.keyword.text.as_str() {
                        "name" => b.name = self.string(c, 0).unwrap_or_default(),
                        "alpha" => b.alpha = self.boolean(c, 0).unwrap_or(true),
                        _ => self.unknown(c, kind, &[BFD_KW]),
                    }
                }
                if b.name.is_empty() {
                    self.warn_at(n, "BFD_CHECK has no name - ignoring".into());
                } else {
                    out.push(Pending {
                        common,
                        misc_timeout,
                        body: Checker::Bfd(b),
                    });
                }
            }
        }
        out
    }

    fn url(&mut self, n: &Node) -> Option<HttpUrl> {
        let mut u = HttpUrl {
            path: String::new(),
            digest: None,
            status_code: vec![],
            virtualhost: None,
            regex: None,
            regex_no_match: false,
            tls_compliant: false,
        };
        let mut has_path = false;
        for c in self.block(n) {
            match c.keyword.text.as_str() {
                "path" => {
                    if let Some(p) = self.string(c, 0) {
                        u.path = p;
                        has_path = true;
                    }
                }
                "digest" => {
                    if let Some(d) = self.string(c, 0) {
                        if d.len() == 32 && d.bytes().all(|b| b.is_ascii_hexdigit()) {
                            u.digest = Some(d.to_ascii_lowercase());
                        } else {
                            self.err(
                                Self::arg_span(c, 0),
                                &d,
                                format!("digest '{d}' is not an MD5 hex string - ignoring"),
                            );
                        }
                    }
                }
                "status_code" => {
                    self.no_block(c);
                    if c.args.is_empty() {
                        self.arg(c, 0);
                    }
                    for t in &c.args {
                        let parsed = match t.text.split_once('-') {
                            Some((a, b)) => a.parse::<u16>().ok().zip(b.parse::<u16>().ok()),
                            None => t.text.parse::<u16>().ok().map(|v| (v, v)),
                        };
                        match parsed {
                            Some((a, b)) if (100..=599).contains(&a) && (a..=599).contains(&b) => {
                                u.status_code.push((a, b))
                            }
                            _ => {
                                let s = t.text.clone();
                                self.err(
                                    t.span,
                                    &s,
                                    format!("Invalid HTTP_GET status code '{s}' - ignoring"),
                                )
                            }
                        }
                    }
                }
                "virtualhost" => u.virtualhost = self.string(c, 0),
                "regex" => u.regex = self.string(c, 0),
                "regex_no_match" => u.regex_no_match = self.boolean(c, 0).unwrap_or(true),
                "regex_options" | "regex_min_offset" | "regex_max_offset" | "regex_stack" => {
                    self.unsupported(c, "url");
                }
                "tls_compliant" => u.tls_compliant = self.boolean(c, 0).unwrap_or(true),
                _ => self.unknown(c, "url", &[URL_KW]),
            }
        }
        if !has_path {
            self.warn_at(n, "HTTP/SSL_GET checker url has no path - ignoring".into());
            return None;
        }
        if u.status_code.is_empty() {
            u.status_code.push((200, 299));
        }
        Some(u)
    }

    pub(super) fn ssl(&mut self, n: &Node) -> SslSettings {
        let mut s = SslSettings::default();
        for c in self.block(n) {
            match c.keyword.text.as_str() {
                "password" => s.password = self.string(c, 0),
                "ca" => s.ca = self.string(c, 0),
                "certificate" => s.certificate = self.string(c, 0),
                "key" => s.key = self.string(c, 0),
                _ => self.unknown(c, "SSL", &[&["password", "ca", "certificate", "key"]]),
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex() {
        assert_eq!(parse_hex("0a0B"), Some(vec![10, 11]));
        assert_eq!(parse_hex("0x01"), Some(vec![1]));
        assert_eq!(parse_hex("abc"), None);
    }
}
