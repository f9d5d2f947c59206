//! ipvsadm's command-line semantics: `parse_options` + the checks of
//! `process_options`, producing a validated [`Invocation`] or a [`Stop`]
//! (what ipvsadm would print, and how it would end).

use crate::addr::{
    atoi, inet_aton, inet_pton4, inet_pton6, str_is_digit, string_to_number, strtol,
};
use crate::popt::{Opt, Popt};
use crate::resolve::{Resolver, IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP};
use rvs_api::svc_flags;

/// Maximum timeout (`-p`, `--set`): 31 days.
pub const MAX_TIMEOUT: i64 = 86400 * 31;
/// `-p` without a value.
pub const DEFAULT_PERSISTENT_TIMEOUT: u32 = 360;
/// Default scheduler.
pub const DEF_SCHED: &str = "wlc";
/// Default multicast interface for `--start-daemon`.
pub const DEF_MCAST_IFN: &str = "eth0";

pub const AF_INET: u16 = 2;
pub const AF_INET6: u16 = 10;

/// Forwarding methods (`IP_VS_CONN_F_*`).
pub const FWD_MASQ: u8 = 0;
pub const FWD_LOCAL: u8 = 1;
pub const FWD_TUNNEL: u8 = 2;
pub const FWD_DROUTE: u8 = 3;

/// Tunnel types and checksum flags.
pub const TUN_IPIP: u8 = 0;
pub const TUN_GUE: u8 = 1;
pub const TUN_GRE: u8 = 2;
pub const TUN_F_CSUM: u8 = 1;
pub const TUN_F_REMCSUM: u8 = 2;

/// Commands, in ipvsadm's `CMD_*` order (the matrix row order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmd {
    Add,
    Edit,
    Del,
    Flush,
    List,
    AddDest,
    DelDest,
    EditDest,
    Timeout,
    StartDaemon,
    StopDaemon,
    Restore,
    Save,
    Zero,
}

impl Cmd {
    fn index(self) -> usize {
        self as usize
    }
    /// Name used in messages.
    pub fn name(self) -> &'static str {
        CMD_NAMES[self.index()]
    }
}

const CMD_NAMES: [&str; 14] = [
    "add-service",
    "edit-service",
    "delete-service",
    "flush",
    "list",
    "add-server",
    "delete-server",
    "edit-server",
    "set",
    "start-daemon",
    "stop-daemon",
    "restore",
    "save",
    "zero",
];

/// Option indices (bits of [`Invocation::options`]), in ipvsadm's order.
pub mod o {
    pub const NUMERIC: usize = 0;
    pub const CONNECTION: usize = 1;
    pub const SERVICE: usize = 2;
    pub const SCHEDULER: usize = 3;
    pub const PERSISTENT: usize = 4;
    pub const NETMASK: usize = 5;
    pub const SERVER: usize = 6;
    pub const FORWARD: usize = 7;
    pub const WEIGHT: usize = 8;
    pub const UTHRESHOLD: usize = 9;
    pub const LTHRESHOLD: usize = 10;
    pub const MCAST: usize = 11;
    pub const TIMEOUT: usize = 12;
    pub const DAEMON: usize = 13;
    pub const STATS: usize = 14;
    pub const RATE: usize = 15;
    pub const THRESHOLDS: usize = 16;
    pub const PERSISTENTCONN: usize = 17;
    pub const NOSORT: usize = 18;
    pub const SYNCID: usize = 19;
    pub const EXACT: usize = 20;
    pub const ONEPACKET: usize = 21;
    pub const PE: usize = 22;
    pub const SCHED_FLAGS: usize = 23;
    pub const MCAST_GROUP: usize = 24;
    pub const MCAST_PORT: usize = 25;
    pub const MCAST_TTL: usize = 26;
    pub const SYNC_MAXLEN: usize = 27;
    pub const TUN_INFO: usize = 28;
    pub const TUN_TYPE: usize = 29;
    pub const TUN_PORT: usize = 30;
    pub const TUN_NOCSUM: usize = 31;
    pub const TUN_CSUM: usize = 32;
    pub const TUN_REMCSUM: usize = 33;
    /// rvsadm extension.
    pub const JSON: usize = 34;
    pub const COUNT: usize = 35;
}

const OPT_NAMES: [&str; o::COUNT] = [
    "numeric",
    "connection",
    "service-address",
    "scheduler",
    "persistent",
    "netmask",
    "real-server",
    "forwarding-method",
    "weight",
    "u-threshold",
    "l-threshold",
    "mcast-interface",
    "timeout",
    "daemon",
    "stats",
    "rate",
    "thresholds",
    "persistent-conn",
    "nosort",
    "syncid",
    "exact",
    "ops",
    "pe",
    "sched-flags",
    "mcast-group",
    "mcast-port",
    "mcast-ttl",
    "sync-maxlen",
    "tun-info",
    "tun-type",
    "tun-port",
    "tun-nocsum",
    "tun-csum",
    "tun-remcsum",
    "json",
];

/// ipvsadm's `commands_v_options` table (from the 1.31 binary), plus a
/// last column for rvsadm's `--json` (list only).
/// `+` required, `x` illegal, `1` at most one of the `1`s, ` ` optional.
const MATRIX: [&[u8; o::COUNT]; 14] = [
    b"xx+   xxxxxxxxxxxxxxx   xxxxxxxxxxx",
    b"xx+   xxxxxxxxxxxxxxx   xxxxxxxxxxx",
    b"xx+xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    b"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    b" 11xxxxxxxxx11       xxxxxxx xxxxx ",
    b"xx+xxx+    xxxxxxxxxxxxxxxxxx     x",
    b"xx+xxx+xxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    b"xx+xxx+    xxxxxxxxxxxxxxxxxx     x",
    b"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    b"xxxxxxxxxxx xxxxxxx xxxx    xxxxxxx",
    b"xxxxxxxxxxxxxxxxxxx xxxxxxxxxxxxxxx",
    b"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    b" xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    b"xx xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
];

const TUN_NAMES: [&str; 3] = ["ipip", "gue", "gre"];
/// Tunnel options checked per tunnel type, and the per-type table.
const TUN_OPTS: [usize; 4] = [o::TUN_PORT, o::TUN_NOCSUM, o::TUN_CSUM, o::TUN_REMCSUM];
const TUN_MATRIX: [&[u8; 4]; 3] = [b"xxxx", b"+111", b"x11x"];

/// The virtual service as ipvsadm builds it (`ipvs_service_t`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Svc {
    /// 0 (unset), [`AF_INET`] or [`AF_INET6`].
    pub af: u16,
    pub protocol: u16,
    /// IPv4 in the first 4 bytes.
    pub addr: [u8; 16],
    pub port: u16,
    pub fwmark: u32,
    pub sched_name: String,
    pub flags: u32,
    pub timeout: u32,
    /// IPv4: host-order mask; IPv6: prefix length.
    pub netmask: u32,
    pub pe_name: String,
}

impl Default for Svc {
    fn default() -> Self {
        Svc {
            af: 0,
            protocol: 0,
            addr: [0; 16],
            port: 0,
            fwmark: 0,
            sched_name: String::new(),
            flags: 0,
            timeout: 0,
            netmask: 0xffff_ffff,
            pe_name: String::new(),
        }
    }
}

/// The real server (`ipvs_dest_t`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dest {
    pub af: u16,
    pub addr: [u8; 16],
    pub port: u16,
    pub fwd: u8,
    pub weight: u32,
    pub u_threshold: u32,
    pub l_threshold: u32,
    pub tun_type: u8,
    pub tun_port: u16,
    pub tun_flags: u8,
}

impl Default for Dest {
    fn default() -> Self {
        Dest {
            af: 0,
            addr: [0; 16],
            port: 0,
            fwd: FWD_DROUTE,
            weight: 1,
            u_threshold: 0,
            l_threshold: 0,
            tun_type: TUN_IPIP,
            tun_port: 0,
            tun_flags: 0,
        }
    }
}

/// `--start-daemon` / `--stop-daemon` parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Daemon {
    /// true = master, false = backup.
    pub master: bool,
    pub mcast_ifn: String,
    pub syncid: u8,
    pub sync_maxlen: u16,
    pub mcast_group: Option<std::net::IpAddr>,
    pub mcast_port: u16,
    pub mcast_ttl: u8,
}

/// Output format flags (`FMT_*`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Format {
    pub numeric: bool,
    pub rule: bool,
    pub stats: bool,
    pub rate: bool,
    pub thresholds: bool,
    pub persistent_conn: bool,
    pub nosort: bool,
    pub exact: bool,
    pub tun_info: bool,
    /// rvsadm extension: print the API data as JSON.
    pub json: bool,
}

/// A fully parsed and validated command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    pub cmd: Cmd,
    /// Bit `1 << o::X` for every option given.
    pub options: u64,
    pub format: Format,
    pub svc: Svc,
    pub dest: Dest,
    /// `--set` values (tcp, tcpfin, udp).
    pub timeouts: (u32, u32, u32),
    pub daemon: Daemon,
}

impl Invocation {
    pub fn has(&self, opt: usize) -> bool {
        self.options & (1u64 << opt) != 0
    }
}

/// Why parsing stopped without an [`Invocation`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// Print and terminate the program (even inside `-R`) with this status.
    Exit {
        code: i32,
        stdout: String,
        stderr: String,
    },
    /// A popt error: printed, and the command "fails" (-1 → status 255)
    /// without terminating a restore.
    Soft { stderr: String },
}

impl Stop {
    fn fail(msg: impl Into<String>) -> Stop {
        let mut m = msg.into();
        m.push('\n');
        Stop::Exit {
            code: 2,
            stdout: String::new(),
            stderr: m,
        }
    }
}

/// The "Try …" line, exit 255.
pub fn try_help(program: &str) -> Stop {
    Stop::Exit {
        code: 255,
        stdout: String::new(),
        stderr: format!("Try `{program} -h' or '{program} --help' for more information.\n"),
    }
}

/// `ipvsadm -v` text.
pub const VERSION_LINE: &str = "ipvsadm v1.31 2019/12/24 (compiled with popt and IPVS v1.2.1)\n";

/// `ipvsadm -h` text with `program` as `argv[0]`.
pub fn usage(program: &str) -> String {
    include_str!("help.txt").replace("%s", program)
}

/// Truncate to at most `n` bytes (C `strncpy` into a fixed buffer), never
/// splitting a UTF-8 character.
fn trunc(s: &str, n: usize) -> String {
    if s.len() <= n {
        return s.to_string();
    }
    let mut end = n;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// True when the first option of `argv` is `-h`/`--help`/`-v`/`--version`
/// (these work without a daemon).
pub fn is_help_or_version(argv: &[String]) -> bool {
    let args = argv.get(1..).unwrap_or(&[]);
    let mut p = Popt::new(args);
    matches!(p.next_opt(), Ok(Some((Opt::Help | Opt::Version, _))))
}

const SERVICE_ADDR: u8 = 1;
const SERVICE_PORT: u8 = 2;

/// ipvsadm's `parse_service`: `host[:port]`, `[v6]:port`, bare IPv6.
fn parse_service(buf: &str, svc: &mut Svc, r: &dyn Resolver) -> u8 {
    if str_is_digit(buf) {
        return 0;
    }
    let mut host = buf;
    let mut portp: Option<&str> = None;
    if let Some(inner) = buf.strip_prefix('[') {
        let Some(close) = inner.find(']') else {
            return 0;
        };
        let after = &inner[close + 1..];
        let Some(p) = after.strip_prefix(':') else {
            return 0;
        };
        host = &inner[..close];
        portp = Some(p);
    }
    if let Some(a6) = inet_pton6(host) {
        svc.addr = a6.octets();
        svc.af = AF_INET6;
        svc.netmask = 128;
    } else {
        match host.rfind(':') {
            Some(i) => {
                portp = Some(&host[i + 1..]);
                host = &host[..i];
            }
            None => portp = None,
        }
        let v4 = match inet_aton(host) {
            Some(w) => w,
            None => match r.host_to_ipv4(host) {
                Some(a) => u32::from(a),
                None => return 0,
            },
        };
        svc.addr[..4].copy_from_slice(&v4.to_be_bytes());
        svc.af = AF_INET;
    }
    let mut result = SERVICE_ADDR;
    if let Some(p) = portp {
        result |= SERVICE_PORT;
        if let Some(n) = string_to_number(p, 0, 65535) {
            svc.port = n as u16;
        } else if let Some(n) = r.service_to_port(p, svc.protocol) {
            svc.port = n;
        } else {
            return 0;
        }
    }
    result
}

fn parse_timeout(arg: Option<&str>, min: i64, max: i64) -> Result<u32, Stop> {
    match arg {
        None => Ok(DEFAULT_PERSISTENT_TIMEOUT),
        Some(a) => string_to_number(a, min, max)
            .map(|v| v as u32)
            .ok_or_else(|| Stop::fail(format!("invalid timeout value `{a}' specified"))),
    }
}

fn parse_fwmark(buf: &str) -> Result<u32, Stop> {
    let (v, end, overflow) = strtol(buf);
    if end != buf.len() || end == 0 || overflow || v <= 0 || v > i64::from(u32::MAX) {
        return Err(Stop::fail(format!(
            "invalid fwmark value `{buf}' specified"
        )));
    }
    Ok(v as u32)
}

fn parse_sched_flags(sched: &str, arg: &str) -> Result<u32, Stop> {
    let sched = if sched.is_empty() { DEF_SCHED } else { sched };
    let mut flags = 0;
    let mut words = arg.split(',').filter(|w| !w.is_empty()).peekable();
    if words.peek().is_none() {
        // ipvsadm 1.31 dereferences NULL here (strtok finds no token);
        // rvsadm reports the empty word instead of crashing.
        return Err(Stop::fail("invalid scheduler flag `'"));
    }
    for w in words {
        let (bit, only) = match w {
            "flag-1" => (svc_flags::SCHED1, None),
            "flag-2" => (svc_flags::SCHED2, None),
            "flag-3" => (svc_flags::SCHED3, None),
            "sh-fallback" => (svc_flags::SCHED1, Some("sh")),
            "sh-port" => (svc_flags::SCHED2, Some("sh")),
            "mh-fallback" => (svc_flags::SCHED1, Some("mh")),
            "mh-port" => (svc_flags::SCHED2, Some("mh")),
            _ => return Err(Stop::fail(format!("invalid scheduler flag `{w}'"))),
        };
        flags |= bit;
        if let Some(s) = only {
            if sched != s {
                return Err(Stop::fail(format!("incompatible scheduler flag `{w}'")));
            }
        }
    }
    Ok(flags)
}

struct State {
    cmd: Option<Cmd>,
    options: u64,
    format: Format,
    svc: Svc,
    dest: Dest,
    daemon: Daemon,
    sched_flags_arg: Option<String>,
}

impl State {
    fn set_option(&mut self, opt: usize) -> Result<(), Stop> {
        let bit = 1u64 << opt;
        if self.options & bit != 0 {
            return Err(Stop::fail(format!(
                "multiple '{}' options specified",
                OPT_NAMES[opt]
            )));
        }
        self.options |= bit;
        Ok(())
    }
}

fn req(arg: Option<String>) -> String {
    arg.unwrap_or_default()
}

fn num(arg: &str, min: i64, max: i64, msg: &str) -> Result<i64, Stop> {
    string_to_number(arg, min, max).ok_or_else(|| Stop::fail(msg))
}

/// Parse one command line (`argv[0]` is the program name used in messages).
pub fn parse(argv: &[String], r: &dyn Resolver) -> Result<Invocation, Stop> {
    let program = argv.first().map(String::as_str).unwrap_or("ipvsadm");
    let args = argv.get(1..).unwrap_or(&[]);
    let mut p = Popt::new(args);
    let mut st = State {
        cmd: None,
        options: 0,
        format: Format::default(),
        svc: Svc::default(),
        dest: Dest::default(),
        daemon: Daemon::default(),
        sched_flags_arg: None,
    };

    // ----- the first option must be a command -----
    let (first, farg) = match p.next_opt() {
        Ok(Some(x)) => x,
        _ => return Err(try_help(program)),
    };
    st.cmd = Some(match first {
        Opt::AddService => Cmd::Add,
        Opt::EditService => Cmd::Edit,
        Opt::DeleteService => Cmd::Del,
        Opt::AddServer => Cmd::AddDest,
        Opt::EditServer => Cmd::EditDest,
        Opt::DeleteServer => Cmd::DelDest,
        Opt::Clear => Cmd::Flush,
        Opt::List => Cmd::List,
        Opt::Zero => Cmd::Zero,
        Opt::Set => Cmd::Timeout,
        Opt::Restore => Cmd::Restore,
        Opt::Save => Cmd::Save,
        Opt::StartDaemon | Opt::StopDaemon => {
            let a = req(farg);
            st.daemon.master = match a.as_str() {
                "master" => true,
                "backup" => false,
                _ if first == Opt::StartDaemon => {
                    return Err(Stop::fail("illegal start-daemon parameter specified"))
                }
                _ => return Err(Stop::fail("illegal start_daemon specified")),
            };
            if first == Opt::StartDaemon {
                Cmd::StartDaemon
            } else {
                Cmd::StopDaemon
            }
        }
        Opt::Help => {
            return Err(Stop::Exit {
                code: 0,
                stdout: usage(program),
                stderr: String::new(),
            })
        }
        Opt::Version => {
            return Err(Stop::Exit {
                code: 0,
                stdout: VERSION_LINE.to_string(),
                stderr: String::new(),
            })
        }
        _ => return Err(try_help(program)),
    });

    // ----- the other options -----
    loop {
        let (opt, arg) = match p.next_opt() {
            Ok(Some(x)) => x,
            Ok(None) => break,
            Err(e) => {
                return Err(Stop::Soft {
                    stderr: format!("{}: {}\n", p.bad_option(), e.text()),
                })
            }
        };
        handle_option(&mut st, opt, arg, &p, r)?;
    }
    let cmd = st.cmd.unwrap_or(Cmd::List);

    let mut timeouts = (0, 0, 0);
    if cmd == Cmd::Timeout {
        match (p.get_arg(), p.get_arg(), p.get_arg()) {
            (Some(a), Some(b), Some(c)) => {
                timeouts = (
                    parse_timeout(Some(&a), 0, MAX_TIMEOUT)?,
                    parse_timeout(Some(&b), 0, MAX_TIMEOUT)?,
                    parse_timeout(Some(&c), 0, MAX_TIMEOUT)?,
                );
            }
            _ => return Err(Stop::fail("--set option requires 3 timeout values")),
        }
    }
    if let Some(a) = p.get_arg() {
        return Err(Stop::fail(format!("unexpected argument {a}")));
    }
    if let Some(arg) = st.sched_flags_arg.take() {
        st.svc.flags |= parse_sched_flags(&st.svc.sched_name, &arg)?;
    }

    // ----- process_options checks -----
    generic_opt_check(cmd, st.options)?;

    if matches!(cmd, Cmd::Add | Cmd::Edit) {
        if st.svc.fwmark == 0 && st.svc.port == 0 && st.svc.flags & svc_flags::PERSISTENT == 0 {
            return Err(Stop::fail("Zero port specified for non-persistent service"));
        }
        if st.svc.flags & svc_flags::ONEPACKET != 0
            && st.svc.fwmark == 0
            && st.svc.protocol != IPPROTO_UDP
        {
            return Err(Stop::fail(
                "One-Packet Scheduling is only for UDP virtual services",
            ));
        }
        if st.svc.sched_name.is_empty() {
            st.svc.sched_name = DEF_SCHED.to_string();
        }
    }
    if cmd == Cmd::StartDaemon && st.daemon.mcast_ifn.is_empty() {
        st.daemon.mcast_ifn = DEF_MCAST_IFN.to_string();
    }
    if matches!(cmd, Cmd::AddDest | Cmd::EditDest) {
        let fwd = st.dest.fwd;
        if st.svc.fwmark == 0 && (fwd == FWD_TUNNEL || fwd == FWD_DROUTE) {
            st.dest.port = st.svc.port;
        }
        if st.dest.af != st.svc.af && fwd != FWD_TUNNEL {
            return Err(Stop::fail(
                "Different address family is allowed only for tunneling servers",
            ));
        }
        let tun_bits = [
            o::TUN_TYPE,
            o::TUN_PORT,
            o::TUN_NOCSUM,
            o::TUN_CSUM,
            o::TUN_REMCSUM,
        ]
        .iter()
        .fold(0u64, |acc, b| acc | (1u64 << b));
        if st.options & tun_bits != 0 && fwd != FWD_TUNNEL {
            return Err(Stop::fail("Tunnel options conflict with forward method"));
        }
        tunnel_opt_check(st.dest.tun_type, st.options)?;
    }
    if cmd == Cmd::List {
        let has = |b: usize| st.options & (1u64 << b) != 0;
        if ((has(o::CONNECTION) || has(o::TIMEOUT) || has(o::DAEMON))
            && (has(o::STATS) || has(o::RATE) || has(o::THRESHOLDS)))
            || ((has(o::TIMEOUT) || has(o::DAEMON)) && has(o::PERSISTENTCONN))
        {
            return Err(Stop::fail("options conflicts in the list command"));
        }
    }
    if cmd == Cmd::Save {
        st.format.rule = true;
    }

    Ok(Invocation {
        cmd,
        options: st.options,
        format: st.format,
        svc: st.svc,
        dest: st.dest,
        timeouts,
        daemon: st.daemon,
    })
}

fn handle_option(
    st: &mut State,
    opt: Opt,
    arg: Option<String>,
    p: &Popt<'_>,
    r: &dyn Resolver,
) -> Result<(), Stop> {
    match opt {
        Opt::TcpService | Opt::UdpService | Opt::SctpService => {
            st.set_option(o::SERVICE)?;
            st.svc.protocol = match opt {
                Opt::TcpService => IPPROTO_TCP,
                Opt::UdpService => IPPROTO_UDP,
                _ => IPPROTO_SCTP,
            };
            let a = req(arg);
            if parse_service(&a, &mut st.svc, r) & SERVICE_ADDR == 0 {
                return Err(Stop::fail(
                    "illegal virtual server address[:port] specified",
                ));
            }
        }
        Opt::FwmarkService => {
            st.set_option(o::SERVICE)?;
            st.svc.af = AF_INET;
            st.svc.protocol = IPPROTO_TCP;
            st.svc.fwmark = parse_fwmark(&req(arg))?;
        }
        Opt::Scheduler => {
            st.set_option(o::SCHEDULER)?;
            st.svc.sched_name = trunc(&req(arg), 15);
        }
        Opt::Persistent => {
            st.set_option(o::PERSISTENT)?;
            st.svc.flags |= svc_flags::PERSISTENT;
            st.svc.timeout = parse_timeout(arg.as_deref(), 1, MAX_TIMEOUT)?;
        }
        Opt::Netmask => {
            st.set_option(o::NETMASK)?;
            let a = req(arg);
            if st.svc.af != AF_INET6 {
                let m = inet_aton(&a).or_else(|| r.host_to_ipv4(&a).map(u32::from));
                match m {
                    Some(m) => st.svc.netmask = m,
                    None => {
                        return Err(Stop::fail(
                            "illegal virtual server persistent mask specified",
                        ))
                    }
                }
            } else {
                let m = atoi(&a);
                if !(1..=128).contains(&m) {
                    return Err(Stop::fail("illegal ipv6 netmask specified"));
                }
                st.svc.netmask = m as u32;
            }
        }
        Opt::RealServer => {
            st.set_option(o::SERVER)?;
            let mut t = st.svc.clone();
            let parse = parse_service(&req(arg), &mut t, r);
            st.dest.af = t.af;
            st.dest.addr = t.addr;
            st.dest.port = t.port;
            if parse & SERVICE_ADDR == 0 {
                return Err(Stop::fail("illegal real server address[:port] specified"));
            }
            if parse == SERVICE_ADDR {
                st.dest.port = st.svc.port;
            }
        }
        Opt::Ipip | Opt::Gatewaying | Opt::Masquerading => {
            st.set_option(o::FORWARD)?;
            st.dest.fwd = match opt {
                Opt::Ipip => FWD_TUNNEL,
                Opt::Gatewaying => FWD_DROUTE,
                _ => FWD_MASQ,
            };
        }
        Opt::Weight => {
            st.set_option(o::WEIGHT)?;
            st.dest.weight = num(&req(arg), 0, 65535, "illegal weight specified")? as u32;
        }
        Opt::UThreshold => {
            st.set_option(o::UTHRESHOLD)?;
            st.dest.u_threshold = num(
                &req(arg),
                0,
                i64::from(i32::MAX),
                "illegal u_threshold specified",
            )? as u32;
        }
        Opt::LThreshold => {
            st.set_option(o::LTHRESHOLD)?;
            st.dest.l_threshold = num(
                &req(arg),
                0,
                i64::from(i32::MAX),
                "illegal l_threshold specified",
            )? as u32;
        }
        Opt::Connection => st.set_option(o::CONNECTION)?,
        Opt::Numeric => {
            st.set_option(o::NUMERIC)?;
            st.format.numeric = true;
        }
        Opt::McastInterface => {
            st.set_option(o::MCAST)?;
            st.daemon.mcast_ifn = trunc(&req(arg), 15);
        }
        Opt::Syncid => {
            st.set_option(o::SYNCID)?;
            st.daemon.syncid = num(&req(arg), 0, 255, "illegal syncid specified")? as u8;
        }
        Opt::Timeout => st.set_option(o::TIMEOUT)?,
        Opt::Daemon => st.set_option(o::DAEMON)?,
        Opt::Stats => {
            st.set_option(o::STATS)?;
            st.format.stats = true;
        }
        Opt::Rate => {
            st.set_option(o::RATE)?;
            st.format.rate = true;
        }
        Opt::Thresholds => {
            st.set_option(o::THRESHOLDS)?;
            st.format.thresholds = true;
        }
        Opt::PersistentConn => {
            st.set_option(o::PERSISTENTCONN)?;
            st.format.persistent_conn = true;
        }
        Opt::NoSort => {
            st.set_option(o::NOSORT)?;
            st.format.nosort = true;
        }
        Opt::Sort => {}
        Opt::Exact => {
            st.set_option(o::EXACT)?;
            st.format.exact = true;
        }
        Opt::Ipv6 => {
            if st.svc.fwmark != 0 {
                st.svc.af = AF_INET6;
                st.svc.netmask = 128;
            } else {
                return Err(Stop::fail("-6 used before -f\n"));
            }
        }
        Opt::Ops => {
            st.set_option(o::ONEPACKET)?;
            st.svc.flags |= svc_flags::ONEPACKET;
        }
        Opt::Pe => {
            st.set_option(o::PE)?;
            st.svc.pe_name = trunc(&req(arg), 15);
        }
        Opt::SchedFlags => {
            st.set_option(o::SCHED_FLAGS)?;
            st.sched_flags_arg = Some(trunc(&req(arg), 127));
        }
        Opt::McastGroup => {
            st.set_option(o::MCAST_GROUP)?;
            let a = req(arg);
            if a.contains(':') {
                match inet_pton6(&a) {
                    Some(g) if g.is_multicast() => st.daemon.mcast_group = Some(g.into()),
                    _ => return Err(Stop::fail(format!("invalid IPv6 mcast-group `{a}'"))),
                }
            } else {
                match inet_pton4(&a) {
                    Some(g) if g.is_multicast() => st.daemon.mcast_group = Some(g.into()),
                    _ => return Err(Stop::fail(format!("invalid IPv4 mcast-group `{a}'"))),
                }
            }
        }
        Opt::McastPort => {
            st.set_option(o::MCAST_PORT)?;
            st.daemon.mcast_port = num(&req(arg), 1, 65535, "illegal mcast-port specified")? as u16;
        }
        Opt::McastTtl => {
            st.set_option(o::MCAST_TTL)?;
            st.daemon.mcast_ttl = num(&req(arg), 1, 255, "illegal mcast-ttl specified")? as u8;
        }
        Opt::SyncMaxlen => {
            st.set_option(o::SYNC_MAXLEN)?;
            st.daemon.sync_maxlen = num(
                &req(arg),
                1,
                65535 - 20 - 8,
                "illegal sync-maxlen specified",
            )? as u16;
        }
        Opt::TunInfo => {
            st.set_option(o::TUN_INFO)?;
            st.format.tun_info = true;
        }
        Opt::TunType => {
            st.set_option(o::TUN_TYPE)?;
            st.dest.tun_type = match req(arg).as_str() {
                "ipip" => TUN_IPIP,
                "gue" => TUN_GUE,
                "gre" => TUN_GRE,
                _ => return Err(Stop::fail("illegal tunnel type specified")),
            };
        }
        Opt::TunPort => {
            st.set_option(o::TUN_PORT)?;
            st.dest.tun_port = num(&req(arg), 1, 65535, "illegal tunnel port specified")? as u16;
        }
        Opt::TunNocsum => st.set_option(o::TUN_NOCSUM)?,
        Opt::TunCsum => {
            st.set_option(o::TUN_CSUM)?;
            st.dest.tun_flags |= TUN_F_CSUM;
        }
        Opt::TunRemcsum => {
            st.set_option(o::TUN_REMCSUM)?;
            st.dest.tun_flags |= TUN_F_REMCSUM;
        }
        Opt::Json => {
            st.set_option(o::JSON)?;
            st.format.json = true;
        }
        // A second command, -h or -v after the first option.
        _ => {
            return Err(Stop::fail(format!("invalid option `{}'", p.bad_option())));
        }
    }
    Ok(())
}

fn generic_opt_check(cmd: Cmd, options: u64) -> Result<(), Stop> {
    let row = MATRIX[cmd.index()];
    let mut last = 0;
    let mut count = 0;
    for (j, &c) in row.iter().enumerate() {
        if options & (1u64 << j) == 0 {
            if c == b'+' {
                return Err(Stop::fail(format!(
                    "You need to supply the '{}' option for the '{}' command",
                    OPT_NAMES[j],
                    cmd.name()
                )));
            }
        } else {
            if c == b'x' {
                return Err(Stop::fail(format!(
                    "Illegal '{}' option with the '{}' command",
                    OPT_NAMES[j],
                    cmd.name()
                )));
            }
            if c == b'1' {
                count += 1;
                if count == 1 {
                    last = j;
                    continue;
                }
                return Err(Stop::fail(format!(
                    "The option '{}' conflicts with the '{}' option in the '{}' command",
                    OPT_NAMES[j],
                    OPT_NAMES[last],
                    cmd.name()
                )));
            }
        }
    }
    Ok(())
}

fn tunnel_opt_check(tun_type: u8, options: u64) -> Result<(), Stop> {
    let i = usize::from(tun_type).min(2);
    let mut last = 0;
    let mut count = 0;
    for (j, &k) in TUN_OPTS.iter().enumerate() {
        let c = TUN_MATRIX[i][j];
        if options & (1u64 << k) == 0 {
            if c == b'+' {
                return Err(Stop::fail(format!(
                    "You need to supply the '{}' option for the '{}' tunnel type",
                    OPT_NAMES[k], TUN_NAMES[i]
                )));
            }
        } else {
            if c == b'x' {
                return Err(Stop::fail(format!(
                    "Illegal '{}' option with the '{}' tunnel type",
                    OPT_NAMES[k], TUN_NAMES[i]
                )));
            }
            if c == b'1' {
                count += 1;
                if count == 1 {
                    last = k;
                    continue;
                }
                return Err(Stop::fail(format!(
                    "The option '{}' conflicts with the '{}' option in the '{}' tunnel type",
                    OPT_NAMES[k], OPT_NAMES[last], TUN_NAMES[i]
                )));
            }
        }
    }
    Ok(())
}
