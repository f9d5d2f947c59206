//! `global_defs` (keepalived's global_parser.c).

use super::keywords::*;
use super::Ctx;
use crate::model::*;
use crate::tree::Node;
use std::net::IpAddr;
use std::time::Duration;

impl Ctx<'_> {
    pub(super) fn global_defs(&mut self, children: &[Node], g: &mut GlobalDefs) {
        for n in children {
            let kw = n.keyword.text.as_str();
            match kw {
                "router_id" => g.router_id = self.string(n, 0).or(g.router_id.take()),
                "notification_email" => g.notification_email.extend(self.value_words(n)),
                "notification_email_from" => g.notification_email_from = self.string(n, 0),
                "smtp_server" => {
                    if let Some(h) = self.string(n, 0) {
                        let port = if n.args.len() > 1 {
                            self.uint(n, 1, 1, 65535)
                        } else {
                            Some(25)
                        };
                        g.smtp_server = Some(SmtpServer {
                            host: h,
                            port: port.unwrap_or(25),
                        });
                    }
                }
                "smtp_helo_name" => g.smtp_helo_name = self.string(n, 0),
                "smtp_connect_timeout" => {
                    if let Some(v) = self.uint::<u64>(n, 0, 1, 3600) {
                        g.smtp_connect_timeout = Duration::from_secs(v);
                    }
                }
                "smtp_alert" => g.smtp_alert = self.boolean(n, 0),
                "smtp_alert_vrrp" => g.smtp_alert_vrrp = self.boolean(n, 0),
                "smtp_alert_checker" => g.smtp_alert_checker = self.boolean(n, 0),
                "no_email_faults" => g.no_email_faults = self.boolean(n, 0).unwrap_or(true),
                "checker_log_all_failures" => {
                    g.checker_log_all_failures = self.boolean(n, 0).unwrap_or(true)
                }
                "script_user" => g.script_user = self.script_user(n),
                "enable_script_security" => {
                    g.enable_script_security = self.boolean(n, 0).unwrap_or(true)
                }
                "startup_script" => g.startup_script = self.script(n),
                "shutdown_script" => g.shutdown_script = self.script(n),
                "lvs_timeouts" => self.lvs_timeouts(n, &mut g.lvs_timeouts),
                "lvs_sync_daemon" => g.lvs_sync_daemon = self.lvs_sync_daemon(n),
                "lvs_flush" => g.lvs_flush = self.boolean(n, 0).unwrap_or(true),
                "lvs_flush_on_stop" | "lvs_flush_onstop" => {
                    self.no_block(n);
                    g.lvs_flush_on_stop =
                        Some(n.args.first().map_or("ALL".into(), |t| t.text.clone()));
                }
                "default_interface" => g.default_interface = self.string(n, 0),
                "dynamic_interfaces" => {
                    self.no_block(n);
                    g.dynamic_interfaces = true;
                }
                "vrrp_mcast_group4" => {
                    if let Some(IpAddr::V4(a)) = self.ip(n, 0) {
                        g.vrrp_mcast_group4 = a;
                    }
                }
                "vrrp_mcast_group6" => {
                    if let Some(IpAddr::V6(a)) = self.ip(n, 0) {
                        g.vrrp_mcast_group6 = a;
                    }
                }
                "vrrp_garp_master_delay" => {
                    if let Some(v) = self.timer(n, 0, 0.0, 86400.0) {
                        g.vrrp_garp_master_delay = v;
                    }
                }
                "vrrp_garp_master_repeat" => {
                    if let Some(v) = self.uint(n, 0, 0, i64::from(u32::MAX)) {
                        g.vrrp_garp_master_repeat = v;
                    }
                }
                "vrrp_garp_master_refresh" => {
                    if let Some(v) = self.timer(n, 0, 0.0, 86400.0) {
                        g.vrrp_garp_master_refresh = v;
                    }
                }
                "vrrp_garp_master_refresh_repeat" => {
                    if let Some(v) = self.uint(n, 0, 0, i64::from(u32::MAX)) {
                        g.vrrp_garp_master_refresh_repeat = v;
                    }
                }
                "vrrp_garp_lower_prio_delay" => {
                    g.vrrp_garp_lower_prio_delay = self.timer(n, 0, 0.0, 86400.0)
                }
                "vrrp_garp_lower_prio_repeat" => {
                    g.vrrp_garp_lower_prio_repeat = self.uint(n, 0, 0, i64::from(u32::MAX))
                }
                "vrrp_garp_interval" => {
                    if let Some(v) = self.timer(n, 0, 0.0, 1.0) {
                        g.vrrp_garp_interval = v;
                    }
                }
                "vrrp_gna_interval" => {
                    if let Some(v) = self.timer(n, 0, 0.0, 1.0) {
                        g.vrrp_gna_interval = v;
                    }
                }
                "vrrp_min_garp" => g.vrrp_min_garp = self.boolean(n, 0).unwrap_or(true),
                "vrrp_down_timer_adverts" => {
                    if let Some(v) = self.uint(n, 0, 1, 100) {
                        g.vrrp_down_timer_adverts = v;
                    }
                }
                "vrrp_version" => {
                    if let Some(v) = self.uint(n, 0, 2, 3) {
                        g.vrrp_version = v;
                    }
                }
                "vrrp_strict" => g.vrrp_strict = self.boolean(n, 0).unwrap_or(true),
                "vrrp_check_unicast_src" => {
                    g.vrrp_check_unicast_src = self.boolean(n, 0).unwrap_or(true)
                }
                "vrrp_skip_check_adv_addr" => {
                    g.vrrp_skip_check_adv_addr = self.boolean(n, 0).unwrap_or(true)
                }
                "vrrp_lower_prio_no_advert" => {
                    g.vrrp_lower_prio_no_advert = self.boolean(n, 0).unwrap_or(true)
                }
                "vrrp_higher_prio_send_advert" => {
                    g.vrrp_higher_prio_send_advert = self.boolean(n, 0).unwrap_or(true)
                }
                "vrrp_notify_priority_changes" => {
                    g.vrrp_notify_priority_changes = self.boolean(n, 0).unwrap_or(true)
                }
                "max_auto_priority" => {
                    g.max_auto_priority = if n.args.is_empty() {
                        Some(i32::MAX)
                    } else {
                        self.uint(n, 0, -1, 99)
                    }
                }
                "random_seed" => g.random_seed = self.uint(n, 0, 0, i64::MAX),
                "include_check" => {
                    self.no_block(n);
                    g.include_check = Some(n.args.first().map_or("all".into(), |t| t.text.clone()));
                }
                _ if GLOBAL_UNSUPPORTED.contains(&kw) => {
                    match kw {
                        "lvs_process_name" => {
                            self.deprecated(n, "Keyword \"lvs_process_name\" is deprecated - please use \"checker_process_name\"".into())
                        }
                        "vrrp_vmac_garp_intvl" => {
                            self.deprecated(n, "Keyword \"vrrp_vmac_garp_intvl\" is deprecated - please use \"vrrp_garp_extra_if\"".into())
                        }
                        k if k.ends_with("_rlimit_rtime") => {
                            let new = format!("{k}t").replace("rtimet", "rttime");
                            self.deprecated(n, format!("Keyword \"{k}\" is deprecated - please use \"{new}\""))
                        }
                        _ => {}
                    }
                    let gn = self.unsupported(n, "global_defs");
                    g.unsupported.push(gn);
                }
                _ => self.unknown(n, "global_defs", &[GLOBAL_KW, GLOBAL_UNSUPPORTED]),
            }
        }
    }

    fn lvs_timeouts(&mut self, n: &Node, t: &mut LvsTimeouts) {
        self.no_block(n);
        let mut i = 0;
        while i < n.args.len() {
            let k = n.args[i].text.clone();
            let slot = match k.as_str() {
                "tcp" => &mut t.tcp,
                "tcpfin" => &mut t.tcpfin,
                "udp" => &mut t.udp,
                _ => {
                    self.err(
                        n.args[i].span,
                        &k,
                        format!("Unknown option {k} specified for lvs_timeouts"),
                    );
                    i += 1;
                    continue;
                }
            };
            i += 1;
            match n.args.get(i).map(|a| a.text.parse::<u64>()) {
                Some(Ok(v)) if v <= 86400 * 365 => *slot = Some(Duration::from_secs(v)),
                Some(_) => {
                    let s = n.args[i].text.clone();
                    self.bad_number(
                        n.args[i].span,
                        &s,
                        format!("Invalid lvs_timeout {k} ({s}) - ignoring"),
                    );
                }
                None => {
                    self.arg(n, i);
                }
            }
            i += 1;
        }
    }

    fn lvs_sync_daemon(&mut self, n: &Node) -> Option<LvsSyncDaemon> {
        let interface = self.string(n, 0)?;
        let mut d = LvsSyncDaemon {
            interface,
            vrrp_instance: None,
            sync_id: None,
            maxlen: None,
            port: None,
            ttl: None,
            group: None,
        };
        let mut i = 1;
        while i < n.args.len() {
            let k = n.args[i].text.as_str();
            match k {
                "id" => d.sync_id = self.uint(n, i + 1, 0, 255),
                "maxlen" => d.maxlen = self.uint(n, i + 1, 1, 65535 - 20 - 8),
                "port" => d.port = self.uint(n, i + 1, 1, 65535),
                "ttl" => d.ttl = self.uint(n, i + 1, 1, 255),
                "group" => d.group = self.ip(n, i + 1),
                "inst" => d.vrrp_instance = self.arg(n, i + 1).map(str::to_string),
                _ if i == 1 => {
                    d.vrrp_instance = Some(k.to_string());
                    i += 1;
                    continue;
                }
                _ => {
                    let k = k.to_string();
                    self.err(
                        n.args[i].span,
                        &k,
                        format!("Unknown option {k} for lvs_sync_daemon - ignoring"),
                    );
                    i += 1;
                    continue;
                }
            }
            i += 2;
        }
        Some(d)
    }
}
