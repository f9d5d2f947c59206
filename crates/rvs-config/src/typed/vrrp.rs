//! `vrrp_script`, `vrrp_sync_group` and `vrrp_instance` (keepalived's
//! vrrp_parser.c).

use super::keywords::*;
use super::Ctx;
use crate::diag::{suggest, ConfigErr, Severity};
use crate::model::*;
use crate::tree::Node;
use std::collections::HashSet;
use std::net::IpAddr;
use std::time::Duration;

impl Ctx<'_> {
    pub(super) fn vrrp_script(&mut self, n: &Node) -> Option<VrrpScript> {
        let name = self.arg(n, 0)?.to_string();
        let children = self.block(n);
        let mut script = None;
        let mut interval = Duration::from_secs(1);
        let mut timeout = None;
        let (mut weight, mut reverse, mut rise, mut fall) = (0, false, 1, 1);
        let (mut user, mut init_fail) = (None, false);
        for c in children {
            match c.keyword.text.as_str() {
                "script" => script = self.script(c),
                "interval" => {
                    interval = self
                        .timer(c, 0, 0.000001, 86400.0 * 365.0)
                        .unwrap_or(interval)
                }
                "timeout" => timeout = self.timer(c, 0, 0.000001, 86400.0 * 365.0).or(timeout),
                "weight" => {
                    weight = self.uint(c, 0, -253, 253).unwrap_or(weight);
                    reverse = c.args.get(1).is_some_and(|t| t.text == "reverse");
                }
                "rise" => rise = self.uint(c, 0, 1, i64::from(u32::MAX)).unwrap_or(rise),
                "fall" => fall = self.uint(c, 0, 1, i64::from(u32::MAX)).unwrap_or(fall),
                "user" => user = self.script_user(c),
                "init_fail" => {
                    self.no_block(c);
                    init_fail = true
                }
                _ => self.unknown(c, "vrrp_script", &[SCRIPT_KW]),
            }
        }
        let Some(script) = script else {
            self.warn_at(
                n,
                format!("No script set for vrrp_script {name} - removing"),
            );
            return None;
        };
        Some(VrrpScript {
            name,
            script,
            interval,
            timeout: timeout.unwrap_or(interval),
            weight,
            weight_reverse: reverse,
            rise,
            fall,
            user,
            init_fail,
            location: self.loc(n),
        })
    }

    fn tracks(&mut self, n: &Node, min: i64, max: i64) -> Vec<Track> {
        let mut out = Vec::new();
        for l in self.value_lines(n) {
            let mut t = Track {
                name: l[0].text.clone(),
                weight: None,
                reverse: false,
            };
            let mut i = 1;
            while i < l.len() {
                match l[i].text.as_str() {
                    "weight" => {
                        match l.get(i + 1).map(|w| w.text.parse::<i64>()) {
                            Some(Ok(w)) if (min..=max).contains(&w) => t.weight = Some(w as i32),
                            Some(_) => {
                                let s = l[i + 1].text.clone();
                                self.bad_number(l[i + 1].span, &s, format!("weight for {} must be between [{min}:{max}] inclusive. Ignoring...", t.name));
                            }
                            None => self.err(
                                l[i].span,
                                "weight",
                                format!("weight for {} has no value", t.name),
                            ),
                        }
                        i += 2;
                    }
                    "reverse" => {
                        t.reverse = true;
                        i += 1;
                    }
                    "noreverse" => {
                        t.reverse = false;
                        i += 1;
                    }
                    other => {
                        let o = other.to_string();
                        self.warn(
                            l[i].span,
                            &o,
                            format!("unknown track option '{o}' for {} - ignoring", t.name),
                        );
                        i += 1;
                    }
                }
            }
            out.push(t);
        }
        out
    }

    pub(super) fn sync_group(&mut self, n: &Node) -> Option<VrrpSyncGroup> {
        let name = self.arg(n, 0)?.to_string();
        let mut g = VrrpSyncGroup {
            name: name.clone(),
            group: vec![],
            track_interface: vec![],
            track_script: vec![],
            track_file: vec![],
            notify_master: None,
            notify_backup: None,
            notify_fault: None,
            notify_stop: None,
            notify: None,
            smtp_alert: None,
            global_tracking: false,
            sync_group_tracking_weight: false,
            notify_priority_changes: false,
            unsupported: vec![],
            location: self.loc(n),
        };
        for c in self.block(n) {
            let kw = c.keyword.text.as_str();
            match kw {
                "group" => g.group.extend(self.value_words(c)),
                "track_interface" => g.track_interface = self.tracks(c, -253, 253),
                "track_script" => g.track_script = self.tracks(c, -253, 253),
                "track_file" => g.track_file = self.tracks(c, -254, 254),
                "notify_master" => g.notify_master = self.script(c),
                "notify_backup" => g.notify_backup = self.script(c),
                "notify_fault" => g.notify_fault = self.script(c),
                "notify_stop" => g.notify_stop = self.script(c),
                "notify" => g.notify = self.script(c),
                "smtp_alert" => g.smtp_alert = self.boolean(c, 0),
                "global_tracking" => {
                    self.deprecated(
                        c,
                        format!("({name}) global_tracking is deprecated. Use track_interface/script/file on the sync group"),
                    );
                    g.global_tracking = true;
                }
                "sync_group_tracking_weight" => {
                    g.sync_group_tracking_weight = self.boolean(c, 0).unwrap_or(true)
                }
                "notify_priority_changes" => {
                    g.notify_priority_changes = self.boolean(c, 0).unwrap_or(true)
                }
                _ if SYNC_UNSUPPORTED.contains(&kw) => {
                    let gn = self.unsupported(c, "vrrp_sync_group");
                    g.unsupported.push(gn);
                }
                _ => self.unknown(c, "vrrp_sync_group", &[SYNC_KW, SYNC_UNSUPPORTED]),
            }
        }
        Some(g)
    }

    pub(super) fn vrrp_instance(&mut self, n: &Node, g: &mut GlobalDefs) -> Option<VrrpInstance> {
        let name = self.arg(n, 0)?.to_string();
        let mut v = VrrpInstance {
            name: name.clone(),
            state: VrrpState::Backup,
            interface: None,
            virtual_router_id: 0,
            priority: 100,
            advert_int: Duration::from_secs(1),
            version: g.vrrp_version,
            nopreempt: false,
            preempt_delay: None,
            authentication: None,
            virtual_ipaddress: vec![],
            virtual_ipaddress_excluded: vec![],
            track_interface: vec![],
            track_script: vec![],
            track_file: vec![],
            notify_master: None,
            notify_backup: None,
            notify_fault: None,
            notify_stop: None,
            notify_deleted: None,
            notify_master_rx_lower_pri: None,
            notify: None,
            notify_priority_changes: g.vrrp_notify_priority_changes,
            smtp_alert: None,
            mcast_src_ip: None,
            unicast_src_ip: None,
            unicast_peer: vec![],
            unicast_ttl: None,
            unicast_fault_no_peer: false,
            check_unicast_src: g.vrrp_check_unicast_src,
            dont_track_primary: false,
            use_vmac: None,
            vmac_xmit_base: false,
            native_ipv6: false,
            accept: None,
            strict_mode: None,
            skip_check_adv_addr: g.vrrp_skip_check_adv_addr,
            promote_secondaries: false,
            garp_master_delay: g.vrrp_garp_master_delay,
            garp_master_repeat: g.vrrp_garp_master_repeat,
            garp_master_refresh: g.vrrp_garp_master_refresh,
            garp_master_refresh_repeat: g.vrrp_garp_master_refresh_repeat,
            garp_lower_prio_delay: g.vrrp_garp_lower_prio_delay,
            garp_lower_prio_repeat: g.vrrp_garp_lower_prio_repeat,
            lower_prio_no_advert: g.vrrp_lower_prio_no_advert,
            higher_prio_send_advert: g.vrrp_higher_prio_send_advert,
            down_timer_adverts: g.vrrp_down_timer_adverts,
            unsupported: vec![],
            location: self.loc(n),
        };
        let mut state: Option<VrrpState> = None;
        let mut prio: Option<u8> = None;
        let mut vrid: Option<u8> = None;
        let mut advert: Option<(Duration, &Node)> = None;
        for c in self.block(n) {
            let kw = c.keyword.text.as_str();
            match kw {
                "state" => {
                    let Some(s) = self.string(c, 0) else { continue };
                    match s.as_str() {
                        "MASTER" => state = Some(VrrpState::Master),
                        "BACKUP" => {
                            if state == Some(VrrpState::Master) {
                                self.warn_at(
                                    c,
                                    format!(
                                        "({name}) state previously set as MASTER - ignoring BACKUP"
                                    ),
                                );
                            } else {
                                state = Some(VrrpState::Backup);
                            }
                        }
                        _ => {
                            let help = suggest(&s, &["MASTER", "BACKUP"])
                                .map(|h| format!("did you mean '{h}'?"));
                            self.push(
                                Severity::Warning,
                                ConfigErr::GeneralError,
                                Self::arg_span(c, 0),
                                &s,
                                format!("({name}) unknown state '{s}', defaulting to BACKUP"),
                                help,
                            );
                            state = Some(VrrpState::Backup);
                        }
                    }
                }
                "interface" => v.interface = self.string(c, 0),
                "dont_track_primary" => v.dont_track_primary = self.boolean(c, 0).unwrap_or(true),
                "use_vmac" => {
                    self.no_block(c);
                    v.use_vmac = Some(c.args.first().map_or(String::new(), |t| t.text.clone()));
                }
                "vmac_xmit_base" => v.vmac_xmit_base = self.boolean(c, 0).unwrap_or(true),
                "virtual_router_id" => vrid = self.uint(c, 0, 1, 255).or(vrid),
                "priority" => prio = self.uint(c, 0, 1, 255).or(prio),
                "advert_int" => {
                    if let Some(d) = self.timer(c, 0, 0.0, 255.0) {
                        advert = Some((d, c));
                    }
                }
                "version" => v.version = self.uint(c, 0, 2, 3).unwrap_or(v.version),
                "nopreempt" => {
                    self.no_block(c);
                    v.nopreempt = true
                }
                "preempt" => {
                    self.no_block(c);
                    v.nopreempt = false
                }
                "preempt_delay" => {
                    if c.args.is_empty() {
                        self.arg(c, 0);
                    } else {
                        match self.timer(c, 0, 0.0, 1000.0) {
                            Some(d) => v.preempt_delay = Some(d),
                            None => self.warn_at(
                                c,
                                format!("({name}) Preempt_delay not valid! must be between 0-1000"),
                            ),
                        }
                    }
                }
                "authentication" => {
                    v.authentication = self.auth(c, &name).or(v.authentication.take())
                }
                "virtual_ipaddress" => {
                    let ips = self.vips(c, "virtual_ipaddress");
                    v.virtual_ipaddress.extend(ips)
                }
                "virtual_ipaddress_excluded" => {
                    let ips = self.vips(c, "virtual_ipaddress_excluded");
                    v.virtual_ipaddress_excluded.extend(ips)
                }
                "track_interface" => {
                    let t = self.tracks(c, -253, 253);
                    v.track_interface.extend(t)
                }
                "track_script" => {
                    let t = self.tracks(c, -253, 253);
                    v.track_script.extend(t)
                }
                "track_file" => {
                    let t = self.tracks(c, -254, 254);
                    v.track_file.extend(t)
                }
                "notify_master" => v.notify_master = self.script(c),
                "notify_backup" => v.notify_backup = self.script(c),
                "notify_fault" => v.notify_fault = self.script(c),
                "notify_stop" => v.notify_stop = self.script(c),
                "notify_deleted" => v.notify_deleted = self.script(c),
                "notify_master_rx_lower_pri" => v.notify_master_rx_lower_pri = self.script(c),
                "notify" => v.notify = self.script(c),
                "notify_priority_changes" => {
                    v.notify_priority_changes = self.boolean(c, 0).unwrap_or(true)
                }
                "smtp_alert" => v.smtp_alert = self.boolean(c, 0),
                "mcast_src_ip" => v.mcast_src_ip = self.ip(c, 0),
                "unicast_src_ip" => v.unicast_src_ip = self.ip(c, 0),
                "unicast_peer" => {
                    for l in self.value_lines(c) {
                        let Ok(addr) = l[0].text.parse::<IpAddr>() else {
                            let t = l[0].text.clone();
                            self.err(
                                l[0].span,
                                &t,
                                format!("({name}) Invalid unicast_peer address '{t}' - ignoring"),
                            );
                            continue;
                        };
                        let mut p = UnicastPeer {
                            addr,
                            min_ttl: None,
                            max_ttl: None,
                        };
                        for pair in l[1..].chunks(2) {
                            let val = pair.get(1).and_then(|t| t.text.parse::<u8>().ok());
                            match (pair[0].text.as_str(), val) {
                                ("min_ttl", Some(x)) => p.min_ttl = Some(x),
                                ("max_ttl", Some(x)) => p.max_ttl = Some(x),
                                _ => {
                                    let t = pair[0].text.clone();
                                    self.warn(
                                        pair[0].span,
                                        &t,
                                        format!(
                                            "({name}) Invalid unicast_peer option '{t}' - ignoring"
                                        ),
                                    )
                                }
                            }
                        }
                        v.unicast_peer.push(p);
                    }
                }
                "unicast_ttl" => v.unicast_ttl = self.uint(c, 0, 1, 255),
                "unicast_fault_no_peer" => {
                    v.unicast_fault_no_peer = self.boolean(c, 0).unwrap_or(true)
                }
                "check_unicast_src" => v.check_unicast_src = self.boolean(c, 0).unwrap_or(true),
                "native_ipv6" => v.native_ipv6 = self.boolean(c, 0).unwrap_or(true),
                "accept" => {
                    self.no_block(c);
                    v.accept = Some(true)
                }
                "no_accept" => {
                    self.no_block(c);
                    v.accept = Some(false)
                }
                "strict_mode" => v.strict_mode = self.boolean(c, 0),
                "skip_check_adv_addr" => v.skip_check_adv_addr = self.boolean(c, 0).unwrap_or(true),
                "promote_secondaries" => v.promote_secondaries = self.boolean(c, 0).unwrap_or(true),
                "garp_master_delay" => {
                    v.garp_master_delay = self
                        .timer(c, 0, 0.0, 86400.0)
                        .unwrap_or(v.garp_master_delay)
                }
                "garp_master_repeat" => {
                    if let Some(r) = self.uint::<u32>(c, 0, 0, i64::from(u32::MAX)) {
                        if r == 0 {
                            self.warn_at(c, format!("({name}): garp_master_repeat must be greater than 0, setting to 1"));
                        }
                        v.garp_master_repeat = r.max(1);
                    }
                }
                "garp_master_refresh" => {
                    v.garp_master_refresh = self
                        .timer(c, 0, 0.0, 86400.0)
                        .unwrap_or(v.garp_master_refresh)
                }
                "garp_master_refresh_repeat" => {
                    v.garp_master_refresh_repeat = self
                        .uint(c, 0, 0, i64::from(u32::MAX))
                        .unwrap_or(v.garp_master_refresh_repeat)
                }
                "garp_lower_prio_delay" => v.garp_lower_prio_delay = self.timer(c, 0, 0.0, 86400.0),
                "garp_lower_prio_repeat" => {
                    v.garp_lower_prio_repeat = self.uint(c, 0, 0, i64::from(u32::MAX))
                }
                "lower_prio_no_advert" => {
                    v.lower_prio_no_advert = self.boolean(c, 0).unwrap_or(true)
                }
                "higher_prio_send_advert" => {
                    v.higher_prio_send_advert = self.boolean(c, 0).unwrap_or(true)
                }
                "down_timer_adverts" => {
                    v.down_timer_adverts = self.uint(c, 0, 1, 100).unwrap_or(v.down_timer_adverts)
                }
                "lvs_sync_daemon_interface" => {
                    self.deprecated(c, format!("({name}) Specifying lvs_sync_daemon_interface against a vrrp is deprecated."));
                    if let Some(i) = self.string(c, 0) {
                        if g.lvs_sync_daemon.is_none() {
                            g.lvs_sync_daemon = Some(LvsSyncDaemon {
                                interface: i,
                                vrrp_instance: Some(name.clone()),
                                sync_id: None,
                                maxlen: None,
                                port: None,
                                ttl: None,
                                group: None,
                            });
                        }
                    }
                }
                _ if VRRP_UNSUPPORTED.contains(&kw) => {
                    match kw {
                        "vmac_garp_intvl" => {
                            self.deprecated(c, "Keyword \"vmac_garp_intvl\" is deprecated - please use \"garp_extra_if\"".into())
                        }
                        "linkbeat_use_polling" => self.deprecated(
                            c,
                            format!("({name}) linkbeat_use_polling is deprecated in a vrrp_instance; use the global keyword"),
                        ),
                        _ => {}
                    }
                    let gn = self.unsupported(c, "vrrp_instance");
                    v.unsupported.push(gn);
                }
                _ => self.unknown(c, "vrrp_instance", &[VRRP_KW, VRRP_UNSUPPORTED]),
            }
        }
        // linked defaults (keepalived vrrp.c instance completion)
        let Some(vrid) = vrid else {
            self.warn_at(n, format!("({name}) the virtual router id must be set"));
            return None;
        };
        v.virtual_router_id = vrid;
        v.priority = prio.unwrap_or(if state == Some(VrrpState::Master) {
            255
        } else {
            100
        });
        v.state = state.unwrap_or(if v.priority == 255 {
            VrrpState::Master
        } else {
            VrrpState::Backup
        });
        if let Some((d, c)) = advert {
            v.advert_int = self.advert_int(d, v.version, &name, c);
        }
        if v.version == 3 && v.authentication.is_some() {
            self.warn_at(
                n,
                format!("({name}) VRRP version 3 does not support authentication. Ignoring."),
            );
            v.authentication = None;
        }
        if v.state == VrrpState::Master
            && v.authentication
                .as_ref()
                .is_some_and(|a| a.auth_type == AuthType::Ah)
        {
            self.warn_at(n, format!("({name}) Initial state master is incompatible with AH authentication - clearing"));
            v.state = VrrpState::Backup;
        }
        if v.nopreempt && v.priority == 255 {
            self.warn_at(
                n,
                format!(
                    "({name}) nopreempt is incompatible with priority 255. resetting nopreempt"
                ),
            );
            v.nopreempt = false;
        }
        if v.state == VrrpState::Master {
            if v.nopreempt {
                self.warn_at(n, format!("({name}) Warning - nopreempt will not work with initial state MASTER - clearing"));
                v.nopreempt = false;
            }
            if v.preempt_delay.is_some() {
                self.warn_at(
                    n,
                    format!("({name}) Warning - preempt delay will not work with initial state MASTER - clearing"),
                );
                v.preempt_delay = None;
            }
        }
        let fams: HashSet<bool> = v
            .virtual_ipaddress
            .iter()
            .map(|a| a.addr.is_ipv4())
            .collect();
        if fams.len() > 1 {
            self.warn_at(n, format!("({name}) virtual_ipaddress mixes IPv4 and IPv6 addresses; use virtual_ipaddress_excluded"));
        }
        Some(v)
    }

    fn advert_int(&mut self, d: Duration, version: u8, name: &str, c: &Node) -> Duration {
        let us = d.as_micros() as u64;
        if version == 2 {
            if !us.is_multiple_of(1_000_000) {
                let secs = d.as_secs_f64();
                self.warn_at(c, format!("({name}) VRRPv2 advertisement interval {secs:.6}s must be an integer. rounding"));
                return Duration::from_secs(((us + 500_000) / 1_000_000).max(1));
            }
            if us == 0 {
                self.warn_at(c, format!("({name}) advertisement interval must be at least 1s for VRRPv2 - setting to 1"));
                return Duration::from_secs(1);
            }
            d
        } else {
            if us >= 40_960_000 {
                let secs = d.as_secs_f64();
                self.warn_at(
                    c,
                    format!("({name}) VRRPv3 advertisement interval {secs:.2}s is out of range. Must be less than 40.96s. Setting to 40.95s"),
                );
                return Duration::from_millis(40_950);
            }
            if !us.is_multiple_of(10_000) {
                let secs = d.as_secs_f64();
                self.warn_at(c, format!("({name}) VRRPv3 advertisement interval {secs:.6}s must be in units of 10ms - rounding"));
                return Duration::from_micros(((us + 5_000) / 10_000).max(1) * 10_000);
            }
            if us == 0 {
                return Duration::from_millis(10);
            }
            d
        }
    }

    fn auth(&mut self, n: &Node, name: &str) -> Option<Authentication> {
        let mut ty = None;
        let mut pass = None;
        for c in self.block(n) {
            match c.keyword.text.as_str() {
                "auth_type" => match self.string(c, 0).as_deref() {
                    Some("PASS") => ty = Some(AuthType::Pass),
                    Some("AH") => ty = Some(AuthType::Ah),
                    Some(o) => {
                        let o = o.to_string();
                        self.err(
                            Self::arg_span(c, 0),
                            &o,
                            format!("({name}) unknown authentication type '{o}'"),
                        )
                    }
                    None => {}
                },
                "auth_pass" => {
                    if let Some(p) = self.string(c, 0) {
                        if p.chars().count() > 8 {
                            self.push(
                                Severity::Warning,
                                ConfigErr::Warning,
                                Self::arg_span(c, 0),
                                &p,
                                "Truncating auth_pass to 8 characters".into(),
                                None,
                            );
                        }
                        pass = Some(p.chars().take(8).collect::<String>());
                    }
                }
                _ => self.unknown(c, "authentication", &[&["auth_type", "auth_pass"]]),
            }
        }
        match (ty, pass) {
            (Some(t), p) => Some(Authentication {
                auth_type: t,
                auth_pass: p.unwrap_or_default(),
            }),
            (None, Some(_)) => {
                self.warn_at(
                    n,
                    format!("({name}) auth_pass without auth_type - ignoring authentication"),
                );
                None
            }
            (None, None) => None,
        }
    }
}
