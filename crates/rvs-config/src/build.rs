//! Typed pass: keyword tree → [`Config`], with keepalived's defaults,
//! inheritance and validation messages.

use crate::diag::{suggest, ConfigErr, Diagnostic, Severity};
use crate::lexer::{split_quoted_escaped, Span};
use crate::model::*;
use crate::tree::Node;
use std::collections::HashSet;
use std::net::IpAddr;
use std::time::Duration;

// ---------------------------------------------------------------- keyword sets

const TOP_KW: &[&str] = &[
    "global_defs",
    "vrrp_script",
    "vrrp_sync_group",
    "vrrp_instance",
    "static_ipaddress",
    "virtual_server_group",
    "virtual_server",
    "SSL",
];
const TOP_UNSUPPORTED: &[&str] = &[
    "linkbeat_use_polling",
    "net_namespace",
    "net_namespace_ipvs",
    "namespace_with_ipsets",
    "use_pid_dir",
    "instance",
    "child_wait_time",
    "track_group",
    "static_track_group",
    "static_routes",
    "static_rules",
    "garp_group",
    "linkbeat_interfaces",
    "vrrp_track_process",
    "track_process",
    "track_file",
    "vrrp_track_file",
    "interface_up_down_delays",
    "bfd_instance",
];

const GLOBAL_KW: &[&str] = &[
    "router_id",
    "notification_email",
    "notification_email_from",
    "smtp_server",
    "smtp_helo_name",
    "smtp_connect_timeout",
    "smtp_alert",
    "smtp_alert_vrrp",
    "smtp_alert_checker",
    "no_email_faults",
    "checker_log_all_failures",
    "script_user",
    "enable_script_security",
    "startup_script",
    "shutdown_script",
    "lvs_timeouts",
    "lvs_sync_daemon",
    "lvs_flush",
    "lvs_flush_on_stop",
    "lvs_flush_onstop",
    "default_interface",
    "dynamic_interfaces",
    "vrrp_mcast_group4",
    "vrrp_mcast_group6",
    "vrrp_garp_master_delay",
    "vrrp_garp_master_repeat",
    "vrrp_garp_master_refresh",
    "vrrp_garp_master_refresh_repeat",
    "vrrp_garp_lower_prio_delay",
    "vrrp_garp_lower_prio_repeat",
    "vrrp_garp_interval",
    "vrrp_gna_interval",
    "vrrp_min_garp",
    "vrrp_down_timer_adverts",
    "vrrp_version",
    "vrrp_strict",
    "vrrp_check_unicast_src",
    "vrrp_skip_check_adv_addr",
    "vrrp_lower_prio_no_advert",
    "vrrp_higher_prio_send_advert",
    "vrrp_notify_priority_changes",
    "max_auto_priority",
    "random_seed",
    "include_check",
];
const GLOBAL_UNSUPPORTED: &[&str] = &[
    "process_names",
    "process_name",
    "vrrp_process_name",
    "checker_process_name",
    "lvs_process_name",
    "bfd_process_name",
    "use_symlink_paths",
    "set_supplementary_groups",
    "startup_script_timeout",
    "shutdown_script_timeout",
    "min_auto_priority_delay",
    "disable_local_igmp",
    "v3_checksum_as_v2",
    "vrrp_garp_extra_if",
    "vrrp_vmac_garp_intvl",
    "vrrp_iptables",
    "vrrp_ipsets",
    "nftables",
    "nftables_priority",
    "nftables_ifindex",
    "vrrp_priority",
    "vrrp_no_swap",
    "vrrp_rt_priority",
    "vrrp_cpu_affinity",
    "vrrp_rlimit_rttime",
    "vrrp_rlimit_rtime",
    "nftables_ipvs",
    "nftables_ipvs_priority",
    "nftables_ipvs_start_fwmark",
    "nftables_counters",
    "notify_fifo",
    "notify_fifo_script",
    "vrrp_notify_fifo",
    "vrrp_notify_fifo_script",
    "fifo_write_vrrp_states_on_reload",
    "lvs_notify_fifo",
    "lvs_notify_fifo_script",
    "checker_priority",
    "checker_no_swap",
    "checker_rt_priority",
    "checker_cpu_affinity",
    "checker_rlimit_rttime",
    "checker_rlimit_rtime",
    "bfd_priority",
    "bfd_no_swap",
    "bfd_rt_priority",
    "bfd_cpu_affinity",
    "bfd_rlimit_rttime",
    "bfd_rlimit_rtime",
    "snmp_socket",
    "enable_traps",
    "enable_snmp_vrrp",
    "enable_snmp_keepalived",
    "enable_snmp_rfc",
    "enable_snmp_rfcv2",
    "enable_snmp_rfcv3",
    "enable_snmp_checker",
    "snmp_vs_stats_update_interval",
    "snmp_rs_stats_update_interval",
    "enable_dbus",
    "dbus_service_name",
    "dbus_no_interface_name",
    "vrrp_netlink_cmd_rcv_bufs",
    "vrrp_netlink_cmd_rcv_bufs_force",
    "vrrp_netlink_monitor_rcv_bufs",
    "vrrp_netlink_monitor_rcv_bufs_force",
    "process_monitor_rcv_bufs",
    "process_monitor_rcv_bufs_force",
    "lvs_netlink_cmd_rcv_bufs",
    "lvs_netlink_cmd_rcv_bufs_force",
    "lvs_netlink_monitor_rcv_bufs",
    "lvs_netlink_monitor_rcv_bufs_force",
    "rs_init_notifies",
    "no_checker_emails",
    "vrrp_rx_bufs_policy",
    "vrrp_rx_bufs_multiplier",
    "vrrp_startup_delay",
    "vrrp_delay_after_boot",
    "log_unknown_vrids",
    "vrrp_owner_ignore_adverts",
    "vmac_prefix",
    "vmac_addr_prefix",
    "umask",
    "reload_check_config",
    "reload_time_file",
    "reload_repeat",
    "reload_file",
    "config_save_dir",
    "tmp_config_directory",
    "data_use_instance",
    "json_version",
    "iproute_usr_dir",
    "iproute_etc_dir",
    "state_dump_file",
    "stats_dump_file",
    "json_dump_file",
    "linkbeat_use_polling",
    "smtp_alert_bfd",
];

const SCRIPT_KW: &[&str] = &[
    "script",
    "interval",
    "timeout",
    "weight",
    "rise",
    "fall",
    "user",
    "init_fail",
];

const SYNC_KW: &[&str] = &[
    "group",
    "track_interface",
    "track_script",
    "track_file",
    "notify_master",
    "notify_backup",
    "notify_fault",
    "notify_stop",
    "notify",
    "smtp_alert",
    "global_tracking",
    "sync_group_tracking_weight",
    "notify_priority_changes",
];
const SYNC_UNSUPPORTED: &[&str] = &["track_process", "track_bfd"];

const VRRP_KW: &[&str] = &[
    "state",
    "interface",
    "dont_track_primary",
    "use_vmac",
    "vmac_xmit_base",
    "virtual_router_id",
    "priority",
    "advert_int",
    "version",
    "nopreempt",
    "preempt",
    "preempt_delay",
    "authentication",
    "virtual_ipaddress",
    "virtual_ipaddress_excluded",
    "track_interface",
    "track_script",
    "track_file",
    "notify_master",
    "notify_backup",
    "notify_fault",
    "notify_stop",
    "notify_deleted",
    "notify_master_rx_lower_pri",
    "notify",
    "notify_priority_changes",
    "smtp_alert",
    "mcast_src_ip",
    "unicast_src_ip",
    "unicast_peer",
    "unicast_ttl",
    "unicast_fault_no_peer",
    "check_unicast_src",
    "native_ipv6",
    "accept",
    "no_accept",
    "strict_mode",
    "skip_check_adv_addr",
    "promote_secondaries",
    "garp_master_delay",
    "garp_master_repeat",
    "garp_master_refresh",
    "garp_master_refresh_repeat",
    "garp_lower_prio_delay",
    "garp_lower_prio_repeat",
    "lower_prio_no_advert",
    "higher_prio_send_advert",
    "down_timer_adverts",
    "lvs_sync_daemon_interface",
];
const VRRP_UNSUPPORTED: &[&str] = &[
    "vrf",
    "use_vmac_addr",
    "use_ipvlan",
    "virtual_routes",
    "virtual_rules",
    "track_process",
    "track_bfd",
    "auth_hmac",
    "old_unicast_checksum",
    "mcast_dst_ip",
    "track_src_ip",
    "v3_checksum_as_v2",
    "linkbeat_use_polling",
    "debug",
    "timer_expired_backup",
    "thread_timer_expired",
    "garp_extra_if",
    "vmac_garp_intvl",
    "owner_ignore_adverts",
    "kernel_rx_buf_size",
    "no_virtual_ipaddress",
];

const VS_KW: &[&str] = &[
    "ip_family",
    "delay_loop",
    "lvs_sched",
    "lb_algo",
    "lvs_method",
    "lb_kind",
    "hashed",
    "ops",
    "flag-1",
    "flag-2",
    "flag-3",
    "sh-port",
    "sh-fallback",
    "mh-port",
    "mh-fallback",
    "persistence_engine",
    "persistence_timeout",
    "persistence_granularity",
    "protocol",
    "ha_suspend",
    "smtp_alert",
    "virtualhost",
    "alpha",
    "omega",
    "quorum",
    "quorum_up",
    "quorum_down",
    "hysteresis",
    "weight",
    "sorry_server",
    "sorry_server_inhibit",
    "sorry_server_lvs_method",
    "retry",
    "delay_before_retry",
    "warmup",
    "connect_timeout",
    "inhibit_on_failure",
    "real_server",
];
const VS_UNSUPPORTED: &[&str] = &["snmp_name"];

const CHECKERS: &[&str] = &[
    "TCP_CHECK",
    "HTTP_GET",
    "SSL_GET",
    "MISC_CHECK",
    "SMTP_CHECK",
    "DNS_CHECK",
    "UDP_CHECK",
    "PING_CHECK",
    "FILE_CHECK",
    "BFD_CHECK",
];
const RS_KW: &[&str] = &[
    "weight",
    "lvs_method",
    "uthreshold",
    "lthreshold",
    "inhibit_on_failure",
    "notify_up",
    "notify_down",
    "alpha",
    "retry",
    "delay_before_retry",
    "warmup",
    "connect_timeout",
    "delay_loop",
    "smtp_alert",
    "virtualhost",
];
const RS_UNSUPPORTED: &[&str] = &["snmp_name"];

const COMMON_KW: &[&str] = &[
    "connect_ip",
    "connect_port",
    "bindto",
    "bind_port",
    "bind_if",
    "connect_timeout",
    "fwmark",
    "retry",
    "delay_before_retry",
    "warmup",
    "delay_loop",
    "alpha",
    "log_all_failures",
];
const MISC_COMMON_KW: &[&str] = &[
    "retry",
    "delay_before_retry",
    "warmup",
    "delay_loop",
    "alpha",
    "log_all_failures",
];
const HTTP_KW: &[&str] = &[
    "url",
    "nb_get_retry",
    "virtualhost",
    "http_protocol",
    "fast_recovery",
    "enable_sni",
    "sni_name",
    "tls_compliant",
];
const URL_KW: &[&str] = &[
    "path",
    "digest",
    "status_code",
    "virtualhost",
    "regex",
    "regex_no_match",
    "regex_options",
    "regex_min_offset",
    "regex_max_offset",
    "regex_stack",
    "tls_compliant",
];
const MISC_KW: &[&str] = &["misc_path", "misc_timeout", "misc_dynamic", "user"];
const SMTP_KW: &[&str] = &["helo_name", "host"];
const DNS_KW: &[&str] = &["type", "name"];
const UDP_KW: &[&str] = &[
    "payload",
    "require_reply",
    "min_reply_length",
    "max_reply_length",
];
const FILE_KW: &[&str] = &["track_file", "file", "weight", "dynamic"];
const BFD_KW: &[&str] = &["name", "alpha"];
const SCHEDULERS: &[&str] = &[
    "rr", "wrr", "lc", "wlc", "lblc", "sh", "mh", "dh", "fo", "ovf", "lblcr", "sed", "nq", "twos",
];

/// Where each keyword is valid (for "'X' is valid in Y" hints).
const BLOCKS: &[(&str, &[&[&str]])] = &[
    ("the top level", &[TOP_KW, TOP_UNSUPPORTED]),
    ("global_defs", &[GLOBAL_KW, GLOBAL_UNSUPPORTED]),
    ("vrrp_instance", &[VRRP_KW, VRRP_UNSUPPORTED]),
    ("vrrp_script", &[SCRIPT_KW]),
    ("vrrp_sync_group", &[SYNC_KW, SYNC_UNSUPPORTED]),
    ("authentication", &[&["auth_type", "auth_pass"]]),
    ("virtual_server", &[VS_KW, VS_UNSUPPORTED]),
    ("real_server", &[RS_KW, CHECKERS, RS_UNSUPPORTED]),
    ("a checker block", &[COMMON_KW]),
    ("HTTP_GET/SSL_GET", &[HTTP_KW]),
    ("url", &[URL_KW]),
    ("MISC_CHECK", &[MISC_KW]),
    ("SMTP_CHECK", &[SMTP_KW]),
    ("DNS_CHECK", &[DNS_KW]),
    ("UDP_CHECK", &[UDP_KW]),
    ("FILE_CHECK", &[FILE_KW]),
];

// ---------------------------------------------------------------- context

pub(crate) struct Ctx<'a> {
    files: &'a [String],
    pub diags: Vec<Diagnostic>,
    unsupported_seen: HashSet<String>,
}

#[derive(Default, Clone)]
struct CommonRaw {
    connect_ip: Option<IpAddr>,
    connect_port: Option<u16>,
    bindto: Option<IpAddr>,
    bind_port: Option<u16>,
    bind_if: Option<String>,
    connect_timeout: Option<Duration>,
    fwmark: Option<u32>,
    retry: Option<u32>,
    delay_before_retry: Option<Duration>,
    warmup: Option<Duration>,
    delay_loop: Option<Duration>,
    alpha: Option<bool>,
    log_all_failures: Option<bool>,
}

struct Pending {
    common: CommonRaw,
    misc_timeout: Option<Duration>,
    body: Checker,
}

#[derive(Default)]
struct RsRaw {
    weight: Option<i32>,
    lvs_method: Option<LvsMethod>,
    inhibit_on_failure: Option<bool>,
    alpha: Option<bool>,
    common: CommonRaw,
    checkers: Vec<Pending>,
}

fn join(words: &[&str]) -> String {
    words.join(" ")
}

pub(crate) fn vs_name(key: &VsKey, proto: Protocol) -> String {
    let p = match proto {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
        Protocol::Sctp => "sctp",
    };
    match key {
        VsKey::Addr { ip, port } => format!("[{ip}]:{p}:{port}"),
        VsKey::Fwmark { mark } => format!("FWM {mark}"),
        VsKey::Group { name } => format!("group {name}"),
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

/// Parse a keepalived timer (seconds, up to 6 decimals).
fn parse_timer(s: &str) -> Result<Duration, &'static str> {
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i, f),
        None => (s, ""),
    };
    if (int.is_empty() && frac.is_empty())
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return Err("invalid");
    }
    let secs: u64 = if int.is_empty() {
        0
    } else {
        int.parse().map_err(|_| "range")?
    };
    if secs > 100_000_000 {
        return Err("range");
    }
    let mut micros = 0u64;
    for (i, b) in frac.bytes().take(6).enumerate() {
        micros += u64::from(b - b'0') * 10u64.pow(5 - i as u32);
    }
    let d = Duration::from_secs(secs) + Duration::from_micros(micros);
    if frac.len() > 6 {
        return Err("decimals");
    }
    Ok(d)
}

impl<'a> Ctx<'a> {
    pub(crate) fn new(files: &'a [String]) -> Self {
        Ctx {
            files,
            diags: Vec::new(),
            unsupported_seen: HashSet::new(),
        }
    }

    fn loc(&self, n: &Node) -> Location {
        Location {
            file: self.file(n.span()),
            line: n.span().line,
        }
    }

    fn file(&self, s: Span) -> String {
        self.files.get(s.file as usize).cloned().unwrap_or_default()
    }

    fn push(
        &mut self,
        sev: Severity,
        class: ConfigErr,
        span: Span,
        text: &str,
        msg: String,
        help: Option<String>,
    ) {
        let file = self.file(span);
        self.diags.push(Diagnostic {
            severity: sev,
            class,
            file,
            line: span.line,
            column: span.col,
            text: text.to_string(),
            message: msg,
            help,
        });
    }

    fn err(&mut self, span: Span, text: &str, msg: String) {
        self.push(
            Severity::Error,
            ConfigErr::GeneralError,
            span,
            text,
            msg,
            None,
        );
    }
    fn warn(&mut self, span: Span, text: &str, msg: String) {
        self.push(
            Severity::Warning,
            ConfigErr::GeneralError,
            span,
            text,
            msg,
            None,
        );
    }
    /// Validation message without a location (like keepalived's end handlers).
    fn warn_at(&mut self, n: &Node, msg: String) {
        let t = n.keyword.text.clone();
        self.warn(n.span(), &t, msg);
    }
    fn deprecated(&mut self, n: &Node, msg: String) {
        let t = n.keyword.text.clone();
        self.push(
            Severity::Deprecated,
            ConfigErr::Deprecated,
            n.span(),
            &t,
            msg,
            None,
        );
    }

    fn unknown(&mut self, n: &Node, ctx: &str, valid: &[&[&str]]) {
        let kw = n.keyword.text.clone();
        let all: Vec<&str> = valid.iter().flat_map(|v| v.iter().copied()).collect();
        let help = match (kw.as_str(), suggest(&kw, &all)) {
            ("lvs_id", _) if all.contains(&"router_id") => {
                Some("'lvs_id' was removed; use 'router_id'".to_string())
            }
            ("lvs_sync_daemon_interface", _) if all.contains(&"router_id") => {
                Some("use 'lvs_sync_daemon IFNAME'".to_string())
            }
            (_, Some(s)) => Some(format!("did you mean '{s}'?")),
            (_, None) => BLOCKS
                .iter()
                .find(|(b, sets)| *b != ctx && sets.iter().any(|set| set.contains(&kw.as_str())))
                .map(|(b, _)| format!("'{kw}' is valid in {b}")),
        };
        let mut msg = format!("unknown keyword '{kw}' in {ctx}");
        if n.block.is_some() {
            msg.push_str("; its block is skipped");
        }
        self.push(
            Severity::Warning,
            ConfigErr::UnknownKeyword,
            n.span(),
            &kw,
            msg,
            help,
        );
    }

    fn generic(n: &Node) -> GenericNode {
        GenericNode {
            keyword: n.keyword.text.clone(),
            args: n.args.iter().map(|t| t.text.clone()).collect(),
            line: n.span().line,
            children: n
                .block
                .as_ref()
                .map(|b| b.children.iter().map(Self::generic).collect())
                .unwrap_or_default(),
        }
    }

    fn unsupported(&mut self, n: &Node, ctx: &str) -> GenericNode {
        let kw = n.keyword.text.clone();
        if self.unsupported_seen.insert(kw.clone()) {
            self.push(
                Severity::Unsupported,
                ConfigErr::Ok,
                n.span(),
                &kw,
                format!("'{kw}' in {ctx} is not supported yet - ignored"),
                None,
            );
        }
        Self::generic(n)
    }

    /// Keyword that takes no block but has one.
    fn no_block(&mut self, n: &Node) {
        if let Some(b) = &n.block {
            self.push(
                Severity::Error,
                ConfigErr::UnexpectedBob,
                b.open,
                "{",
                format!(
                    "Unexpected '{{' after '{}' - ignoring the block",
                    n.keyword.text
                ),
                None,
            );
        }
    }

    /// keepalived reads one keyword per line and silently ignores extra
    /// words (`url { path / status_code 200 }` sets only the path): say so.
    fn extra_args(&mut self, n: &Node, used: usize) {
        const MULTI_ARG: &[&str] = &[
            "smtp_server",
            "script_user",
            "user",
            "lvs_sync_daemon",
            "weight",
            "sorry_server",
            "lvs_method",
            "lb_kind",
            "sorry_server_lvs_method",
            "status_code",
            "require_reply",
            "fwmark",
        ];
        if n.args.len() <= used || MULTI_ARG.contains(&n.keyword.text.as_str()) {
            return;
        }
        let extra: Vec<&str> = n.args[used..].iter().map(|t| t.text.as_str()).collect();
        let kw = n.keyword.text.clone();
        self.push(
            Severity::Warning,
            ConfigErr::Ok,
            n.args[used].span,
            &extra.join(" "),
            format!("extra parameters after '{kw}' ignored: {}", extra.join(" ")),
            Some("keepalived reads one keyword per line".into()),
        );
    }

    fn block<'n>(&mut self, n: &'n Node) -> &'n [Node] {
        match &n.block {
            Some(b) => &b.children,
            None => {
                let t = n.keyword.text.clone();
                self.push(
                    Severity::Error,
                    ConfigErr::MissingBob,
                    n.span(),
                    &t,
                    "Missing '{' at beginning of configuration block".into(),
                    None,
                );
                &[]
            }
        }
    }

    fn arg<'n>(&mut self, n: &'n Node, i: usize) -> Option<&'n str> {
        match n.args.get(i) {
            Some(t) => Some(&t.text),
            None => {
                let prev = if i == 0 {
                    &n.keyword.text
                } else {
                    &n.args[i - 1].text
                };
                let kw = n.keyword.text.clone();
                self.push(
                    Severity::Error,
                    ConfigErr::MissingParameter,
                    n.span(),
                    &kw,
                    format!(
                        "*** Configuration line starting `{kw}` is missing a parameter after keyword `{prev}` at word position {}",
                        i + 1
                    ),
                    None,
                );
                None
            }
        }
    }

    fn arg_span(n: &Node, i: usize) -> Span {
        n.args.get(i).map_or(n.span(), |t| t.span)
    }

    fn string(&mut self, n: &Node, i: usize) -> Option<String> {
        self.no_block(n);
        if i == 0 {
            self.extra_args(n, 1);
        }
        self.arg(n, i).map(str::to_string)
    }

    fn int(&mut self, n: &Node, i: usize, min: i64, max: i64) -> Option<i64> {
        let s = self.arg(n, i)?.to_string();
        let span = Self::arg_span(n, i);
        match s.parse::<i64>() {
            Ok(v) if (min..=max).contains(&v) => Some(v),
            Ok(_) => {
                self.push(
                    Severity::Error,
                    ConfigErr::InvalidNumber,
                    span,
                    &s,
                    format!("number '{s}' outside range [{min}, {max}]"),
                    None,
                );
                None
            }
            Err(_) => {
                self.push(
                    Severity::Error,
                    ConfigErr::InvalidNumber,
                    span,
                    &s,
                    format!("invalid number '{s}'"),
                    None,
                );
                None
            }
        }
    }

    fn uint<T: TryFrom<i64>>(&mut self, n: &Node, i: usize, min: i64, max: i64) -> Option<T> {
        self.no_block(n);
        if i == 0 {
            self.extra_args(n, 1);
        }
        self.int(n, i, min, max).and_then(|v| T::try_from(v).ok())
    }

    /// Numeric argument of a block header (no "unexpected block" check).
    fn hdr_uint<T: TryFrom<i64>>(&mut self, n: &Node, i: usize, min: i64, max: i64) -> Option<T> {
        self.int(n, i, min, max).and_then(|v| T::try_from(v).ok())
    }

    fn timer(&mut self, n: &Node, i: usize, min: f64, max: f64) -> Option<Duration> {
        self.no_block(n);
        if i == 0 {
            self.extra_args(n, 1);
        }
        let s = self.arg(n, i)?.to_string();
        let span = Self::arg_span(n, i);
        match parse_timer(&s) {
            Ok(d) if d.as_secs_f64() >= min && d.as_secs_f64() <= max => Some(d),
            Ok(_) | Err("range") => {
                self.push(
                    Severity::Error,
                    ConfigErr::InvalidNumber,
                    span,
                    &s,
                    format!("number '{s}' outside range [{min:.6}, {max:.6}]"),
                    None,
                );
                None
            }
            Err("decimals") => {
                self.push(
                    Severity::Warning,
                    ConfigErr::InvalidNumber,
                    span,
                    &s,
                    format!("WARNING - number '{s}' has too many decimal places"),
                    None,
                );
                parse_timer(&s[..s.find('.').map_or(s.len(), |p| p + 7)]).ok()
            }
            Err(_) => {
                self.push(
                    Severity::Error,
                    ConfigErr::InvalidNumber,
                    span,
                    &s,
                    format!("invalid number '{s}'"),
                    None,
                );
                None
            }
        }
    }

    /// Optional `<BOOL>`; bare keyword = true.
    fn boolean(&mut self, n: &Node, i: usize) -> Option<bool> {
        self.no_block(n);
        if i == 0 {
            self.extra_args(n, 1);
        }
        let Some(t) = n.args.get(i) else {
            return Some(true);
        };
        match t.text.to_ascii_lowercase().as_str() {
            "on" | "true" | "yes" => Some(true),
            "off" | "false" | "no" => Some(false),
            _ => {
                let s = t.text.clone();
                self.err(t.span, &s, format!("invalid boolean '{s}' - ignoring"));
                None
            }
        }
    }

    fn ip(&mut self, n: &Node, i: usize) -> Option<IpAddr> {
        self.no_block(n);
        if i == 0 {
            self.extra_args(n, 1);
        }
        let s = self.arg(n, i)?.to_string();
        match s.parse::<IpAddr>() {
            Ok(ip) => Some(ip),
            Err(_) => {
                self.err(
                    Self::arg_span(n, i),
                    &s,
                    format!("invalid IP address '{s}' for {}", n.keyword.text),
                );
                None
            }
        }
    }

    /// `"cmd args" [user [group]]` (shell-like tokeniser).
    fn script(&mut self, n: &Node) -> Option<Script> {
        self.no_block(n);
        let words = match split_quoted_escaped(&n.raw) {
            Ok(w) => w,
            Err(e) => {
                let t = n.raw.clone();
                self.push(
                    Severity::Error,
                    ConfigErr::UnmatchedQuote,
                    n.span(),
                    &t,
                    e,
                    None,
                );
                return None;
            }
        };
        if words.len() < 2 {
            self.arg(n, 0);
            return None;
        }
        let first_quoted = n.args.first().is_some_and(|t| t.quoted)
            || n.raw
                .get(n.keyword.text.len()..)
                .is_some_and(|r| r.trim_start().starts_with('\''));
        let kw = n.keyword.text.as_str();
        let takes_user = first_quoted || kw.starts_with("notify") || kw.starts_with("quorum");
        let (command, user, group) = if takes_user || words.len() == 2 {
            (
                words[1].clone(),
                words.get(2).cloned(),
                words.get(3).cloned(),
            )
        } else {
            (words[1..].join(" "), None, None)
        };
        let argv = split_quoted_escaped(&command)
            .unwrap_or_else(|_| command.split_whitespace().map(str::to_string).collect());
        Some(Script {
            command,
            argv,
            user,
            group,
        })
    }

    fn script_user(&mut self, n: &Node) -> Option<ScriptUser> {
        self.no_block(n);
        let user = self.arg(n, 0)?.to_string();
        let group = n
            .args
            .get(1)
            .map(|g| g.text.trim_start_matches(':').to_string());
        match user.split_once(':') {
            Some((u, g)) => Some(ScriptUser {
                user: u.into(),
                group: Some(g.into()),
            }),
            None => Some(ScriptUser { user, group }),
        }
    }

    /// Lines of a value block (`{ a b }`, one entry per line); every word.
    fn value_lines<'n>(&mut self, n: &'n Node) -> Vec<Vec<&'n crate::lexer::Token>> {
        let children = self.block(n);
        let mut out = Vec::new();
        for c in children {
            if let Some(b) = &c.block {
                self.push(
                    Severity::Error,
                    ConfigErr::UnexpectedBob,
                    b.open,
                    "{",
                    "Unexpected '{' - ignoring".into(),
                    None,
                );
            }
            out.push(c.words().collect());
        }
        if !n.args.is_empty() {
            let extra: Vec<&str> = n.args.iter().map(|t| t.text.as_str()).collect();
            let kw = n.keyword.text.clone();
            self.warn(
                n.args[0].span,
                &kw,
                format!(
                    "Block {kw} has extra parameters {} - ignoring",
                    join(&extra)
                ),
            );
        }
        out
    }

    fn value_words(&mut self, n: &Node) -> Vec<String> {
        self.value_lines(n)
            .into_iter()
            .flatten()
            .map(|t| t.text.clone())
            .collect()
    }

    // ------------------------------------------------------------ top level

    pub(crate) fn config(&mut self, nodes: &[Node]) -> Config {
        let mut cfg = Config::default();
        // global_defs first: instances take their defaults from it
        for n in nodes.iter().filter(|n| n.keyword.text == "global_defs") {
            let children = self.block(n);
            self.global_defs(children, &mut cfg.global_defs);
            if !n.args.is_empty() {
                let t = n.args[0].text.clone();
                self.warn(
                    n.args[0].span,
                    &t,
                    format!("Block global_defs has extra parameters {t} - ignoring"),
                );
            }
        }
        for n in nodes {
            let kw = n.keyword.text.as_str();
            match kw {
                "global_defs" => {}
                "vrrp_script" => {
                    if let Some(s) = self.vrrp_script(n) {
                        cfg.vrrp_scripts.push(s);
                    }
                }
                "vrrp_sync_group" => {
                    if let Some(g) = self.sync_group(n) {
                        cfg.vrrp_sync_groups.push(g);
                    }
                }
                "vrrp_instance" => {
                    if let Some(v) = self.vrrp_instance(n, &mut cfg.global_defs) {
                        if let Some(o) = cfg.vrrp_instances.iter().find(|o| o.name == v.name) {
                            let l = o.location.line;
                            self.warn_at(
                                n,
                                format!("vrrp_instance {} already defined at line {l}", v.name),
                            );
                        }
                        cfg.vrrp_instances.push(v);
                    }
                }
                "static_ipaddress" => {
                    let lines = self.value_lines(n);
                    for l in lines {
                        if let Some(v) = self.vip(&l, "static_ipaddress") {
                            cfg.static_ipaddress.push(v);
                        }
                    }
                }
                "virtual_server_group" => {
                    if let Some(g) = self.vsg(n) {
                        cfg.virtual_server_groups.push(g);
                    }
                }
                "virtual_server" => {
                    if let Some(v) = self.virtual_server(n, &cfg.global_defs) {
                        cfg.virtual_servers.push(v);
                    }
                }
                "SSL" => cfg.ssl = Some(self.ssl(n)),
                _ if TOP_UNSUPPORTED.contains(&kw) => {
                    if kw == "vrrp_track_file" {
                        self.deprecated(
                            n,
                            "Keyword \"vrrp_track_file\" is deprecated - please use \"track_file\""
                                .into(),
                        );
                    }
                    let g = self.unsupported(n, "the configuration");
                    cfg.unsupported.push(g);
                }
                _ => self.unknown(n, "the top level", &[TOP_KW, TOP_UNSUPPORTED]),
            }
        }
        self.cross_checks(&cfg);
        self.script_security(&cfg);
        cfg
    }

    /// keepalived: any script that would be executed while
    /// `enable_script_security` is off gives "SECURITY VIOLATION" (class
    /// SECURITY_ERROR, `-t` exit 6). Only scripts whose program exists count
    /// (keepalived drops missing ones), and vrrp_scripts only when tracked.
    fn script_security(&mut self, cfg: &Config) {
        if cfg.global_defs.enable_script_security {
            return;
        }
        let tracked: HashSet<&str> = cfg
            .vrrp_instances
            .iter()
            .flat_map(|v| v.track_script.iter())
            .chain(
                cfg.vrrp_sync_groups
                    .iter()
                    .flat_map(|g| g.track_script.iter()),
            )
            .map(|t| t.name.as_str())
            .collect();
        let g = &cfg.global_defs;
        let mut scripts: Vec<&Script> = Vec::new();
        scripts.extend(g.startup_script.iter().chain(g.shutdown_script.iter()));
        scripts.extend(
            cfg.vrrp_scripts
                .iter()
                .filter(|s| tracked.contains(s.name.as_str()))
                .map(|s| &s.script),
        );
        for sg in &cfg.vrrp_sync_groups {
            scripts.extend(
                [
                    &sg.notify_master,
                    &sg.notify_backup,
                    &sg.notify_fault,
                    &sg.notify_stop,
                    &sg.notify,
                ]
                .into_iter()
                .flatten(),
            );
        }
        for v in &cfg.vrrp_instances {
            scripts.extend(
                [
                    &v.notify_master,
                    &v.notify_backup,
                    &v.notify_fault,
                    &v.notify_stop,
                    &v.notify_deleted,
                    &v.notify_master_rx_lower_pri,
                    &v.notify,
                ]
                .into_iter()
                .flatten(),
            );
        }
        for vs in &cfg.virtual_servers {
            scripts.extend(vs.quorum_up.iter().chain(vs.quorum_down.iter()));
            for rs in &vs.real_servers {
                scripts.extend(rs.notify_up.iter().chain(rs.notify_down.iter()));
                for c in &rs.checkers {
                    if let Checker::Misc(m) = c {
                        scripts.push(&m.misc_path);
                    }
                }
            }
        }
        if scripts
            .iter()
            .any(|s| s.argv.first().is_some_and(|p| program_exists(p)))
        {
            self.diags.push(Diagnostic {
                severity: Severity::Warning,
                class: ConfigErr::SecurityError,
                file: self.files.first().cloned().unwrap_or_default(),
                line: 0,
                column: 0,
                text: String::new(),
                message: "SECURITY VIOLATION - scripts are being executed but script_security not enabled.".into(),
                help: Some("add 'enable_script_security' (and a 'script_user') to global_defs".into()),
            });
        }
    }

    fn cross_checks(&mut self, cfg: &Config) {
        let insts: HashSet<&str> = cfg.vrrp_instances.iter().map(|v| v.name.as_str()).collect();
        let scripts: HashSet<&str> = cfg.vrrp_scripts.iter().map(|v| v.name.as_str()).collect();
        let mut msgs = Vec::new();
        for g in &cfg.vrrp_sync_groups {
            for m in &g.group {
                if !insts.contains(m.as_str()) {
                    msgs.push((
                        g.location.clone(),
                        m.clone(),
                        format!("Virtual router {m} specified in sync group {} doesn't exist - ignoring", g.name),
                    ));
                }
            }
        }
        for v in &cfg.vrrp_instances {
            for t in &v.track_script {
                if !scripts.contains(t.name.as_str()) {
                    msgs.push((
                        v.location.clone(),
                        t.name.clone(),
                        format!(
                            "({}) track script {} not found, ignoring...",
                            v.name, t.name
                        ),
                    ));
                }
            }
        }
        let groups: HashSet<&str> = cfg
            .virtual_server_groups
            .iter()
            .map(|g| g.name.as_str())
            .collect();
        for vs in &cfg.virtual_servers {
            if let VsKey::Group { name } = &vs.key {
                if !groups.contains(name.as_str()) {
                    msgs.push((
                        vs.location.clone(),
                        name.clone(),
                        format!("Virtual server group {name} does not exist"),
                    ));
                }
            }
        }
        for (loc, text, msg) in msgs {
            self.diags.push(Diagnostic {
                severity: Severity::Warning,
                class: ConfigErr::GeneralError,
                file: loc.file,
                line: loc.line,
                column: 1,
                text,
                message: msg,
                help: None,
            });
        }
    }

    // ------------------------------------------------------------ global_defs

    fn global_defs(&mut self, children: &[Node], g: &mut GlobalDefs) {
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
                    self.push(
                        Severity::Error,
                        ConfigErr::InvalidNumber,
                        n.args[i].span,
                        &s,
                        format!("Invalid lvs_timeout {k} ({s}) - ignoring"),
                        None,
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

    // ------------------------------------------------------------ VRRP

    fn vrrp_script(&mut self, n: &Node) -> Option<VrrpScript> {
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
                                self.push(
                                    Severity::Error,
                                    ConfigErr::InvalidNumber,
                                    l[i + 1].span,
                                    &s,
                                    format!("weight for {} must be between [{min}:{max}] inclusive. Ignoring...", t.name),
                                    None,
                                );
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

    fn sync_group(&mut self, n: &Node) -> Option<VrrpSyncGroup> {
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

    /// One `virtual_ipaddress`-style line.
    fn vip(&mut self, l: &[&crate::lexer::Token], ctx: &str) -> Option<VirtualIp> {
        let first = l.first()?;
        let (a, mask) = match first.text.split_once('/') {
            Some((a, m)) => (a, Some(m)),
            None => (first.text.as_str(), None),
        };
        let Ok(addr) = a.parse::<IpAddr>() else {
            let t = first.text.clone();
            self.err(
                first.span,
                &t,
                format!("Invalid address '{t}' in {ctx} - ignoring"),
            );
            return None;
        };
        let maxlen = if addr.is_ipv4() { 32 } else { 128 };
        let prefix_len = match mask.map(str::parse::<u8>) {
            None => maxlen,
            Some(Ok(m)) if m <= maxlen => m,
            Some(_) => {
                let t = first.text.clone();
                self.err(
                    first.span,
                    &t,
                    format!("Invalid address mask '{t}' in {ctx} - ignoring"),
                );
                return None;
            }
        };
        let mut v = VirtualIp {
            addr,
            prefix_len,
            brd: None,
            dev: None,
            scope: None,
            label: None,
            peer: None,
            home: false,
            nodad: false,
            mngtmpaddr: false,
            noprefixroute: false,
            autojoin: false,
            no_track: false,
            use_vmac: false,
            preferred_lft: None,
            track_group: None,
        };
        let mut i = 1;
        while i < l.len() {
            let k = l[i].text.as_str();
            let val = l.get(i + 1).map(|t| t.text.clone());
            let takes = matches!(
                k,
                "brd"
                    | "broadcast"
                    | "dev"
                    | "scope"
                    | "label"
                    | "peer"
                    | "preferred_lft"
                    | "track_group"
            );
            if takes && val.is_none() {
                self.err(
                    l[i].span,
                    k,
                    format!("{ctx}: option '{k}' is missing a value"),
                );
                break;
            }
            match k {
                "brd" | "broadcast" => match val.as_deref() {
                    Some("+") | Some("-") => {}
                    Some(s) => match s.parse() {
                        Ok(ip) => v.brd = Some(ip),
                        Err(_) => self.err(
                            l[i + 1].span,
                            s,
                            format!("Invalid broadcast address '{s}' in {ctx}"),
                        ),
                    },
                    None => {}
                },
                "dev" => v.dev = val,
                "scope" => v.scope = val,
                "label" => v.label = val,
                "peer" => match val.as_deref().map(str::parse::<IpAddr>) {
                    Some(Ok(ip)) => v.peer = Some(ip),
                    _ => {
                        let s = val.unwrap_or_default();
                        self.err(
                            l[i + 1].span,
                            &s,
                            format!("Invalid peer address '{s}' in {ctx}"),
                        )
                    }
                },
                "preferred_lft" => v.preferred_lft = val,
                "track_group" => v.track_group = val,
                "home" => v.home = true,
                "-nodad" | "nodad" => v.nodad = true,
                "mngtmpaddr" => v.mngtmpaddr = true,
                "noprefixroute" => v.noprefixroute = true,
                "autojoin" => v.autojoin = true,
                "no_track" => v.no_track = true,
                "use_vmac" => v.use_vmac = true,
                _ => {
                    let t = k.to_string();
                    self.warn(
                        l[i].span,
                        &t,
                        format!("Unknown configuration entry '{t}' for ip address - ignoring"),
                    );
                }
            }
            i += if takes { 2 } else { 1 };
        }
        Some(v)
    }

    fn vips(&mut self, n: &Node, ctx: &str) -> Vec<VirtualIp> {
        let mut out = Vec::new();
        for l in self.value_lines(n) {
            if let Some(v) = self.vip(&l, ctx) {
                out.push(v);
            }
        }
        out
    }

    fn vrrp_instance(&mut self, n: &Node, g: &mut GlobalDefs) -> Option<VrrpInstance> {
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

    // ------------------------------------------------------------ LVS

    fn vsg(&mut self, n: &Node) -> Option<VirtualServerGroup> {
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

    fn common_kw(&mut self, c: &mut CommonRaw, n: &Node, allowed: &[&str]) -> bool {
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

    fn virtual_server(&mut self, n: &Node, g: &GlobalDefs) -> Option<VirtualServer> {
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
        let name = vs_name(&vs.key, vs.protocol);
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
                let p = match vs.protocol {
                    Protocol::Tcp => "tcp",
                    Protocol::Udp => "udp",
                    Protocol::Sctp => "sctp",
                };
                let msg = format!(
                    "WARNING - virtual server {vsn} and real server [{}]:{p}:{} ports don't match - resetting",
                    rs.ip, rs.port
                );
                self.diags.push(Diagnostic {
                    severity: Severity::Warning,
                    class: ConfigErr::GeneralError,
                    file: rs.location.file.clone(),
                    line: rs.location.line,
                    column: 1,
                    text: rs.port.to_string(),
                    message: msg,
                    help: None,
                });
                rs.port = vport;
            }
        }
        for p in raw.checkers {
            let c = &p.common;
            let r = &raw.common;
            let delay_loop = c.delay_loop.unwrap_or(rs.delay_loop);
            let (def_retry, def_dbr) = match &p.body {
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
            let checker = match p.body {
                Checker::Tcp(_) => Checker::Tcp(common),
                Checker::Ping(_) => Checker::Ping(common),
                Checker::Http(mut h) => {
                    h.virtualhost = h
                        .virtualhost
                        .or(rs.virtualhost.clone())
                        .or(vs.virtualhost.clone());
                    Checker::Http(HttpCheck { common, ..h })
                }
                Checker::Ssl(mut h) => {
                    h.virtualhost = h
                        .virtualhost
                        .or(rs.virtualhost.clone())
                        .or(vs.virtualhost.clone());
                    Checker::Ssl(HttpCheck { common, ..h })
                }
                Checker::Misc(m) => Checker::Misc(MiscCheck {
                    misc_timeout: p.misc_timeout.unwrap_or(delay_loop),
                    common,
                    ..m
                }),
                Checker::Smtp(s) => Checker::Smtp(SmtpCheck { common, ..s }),
                Checker::Dns(d) => Checker::Dns(DnsCheck { common, ..d }),
                Checker::Udp(u) => Checker::Udp(UdpCheck { common, ..u }),
                other @ (Checker::File(_) | Checker::Bfd(_)) => other,
            };
            rs.checkers.push(checker);
        }
    }

    fn checker(&mut self, n: &Node) -> Vec<Pending> {
        let kind = n.keyword.text.as_str();
        let children = self.block(n);
        if !n.args.is_empty() {
            let t = n.args[0].text.clone();
            self.warn(
                n.args[0].span,
                &t,
                format!("Block {kind} has extra parameters {t} - ignoring"),
            );
        }
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
                        self.deprecated(
                            c,
                            "nb_get_retry is deprecated - please use 'retry'".into(),
                        );
                        common.retry = self.uint(c, 0, 0, i64::from(u32::MAX)).or(common.retry);
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
                        "nb_get_retry" => {
                            self.deprecated(
                                c,
                                "nb_get_retry is deprecated - please use 'retry'".into(),
                            );
                            common.retry = self.uint(c, 0, 0, i64::from(u32::MAX)).or(common.retry);
                        }
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

    fn ssl(&mut self, n: &Node) -> SslSettings {
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

/// The script's program exists (absolute/relative path, or found in PATH).
fn program_exists(p: &str) -> bool {
    use std::path::Path;
    if p.is_empty() {
        return false;
    }
    if p.contains('/') {
        return Path::new(p).is_file();
    }
    let path = std::env::var("PATH").unwrap_or_else(|_| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    path.split(':')
        .filter(|d| !d.is_empty())
        .any(|d| Path::new(d).join(p).is_file())
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
    fn timers() {
        assert_eq!(parse_timer("1"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_timer("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_timer(".25"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_timer("0.000001"), Ok(Duration::from_micros(1)));
        assert!(parse_timer("1.0000001").is_err());
        assert!(parse_timer("x").is_err());
        assert!(parse_timer("-1").is_err());
        assert!(parse_timer("").is_err());
    }

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

    #[test]
    fn hex() {
        assert_eq!(parse_hex("0a0B"), Some(vec![10, 11]));
        assert_eq!(parse_hex("0x01"), Some(vec![1]));
        assert_eq!(parse_hex("abc"), None);
    }
}
