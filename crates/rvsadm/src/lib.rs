//! `rvsadm`: an ipvsadm 1.31 work-alike for rvs.
//!
//! The crate is split the way ripgrep splits its CLI:
//!
//! * [`popt`] — a faithful emulation of popt's option scanning (clusters
//!   like `-Lnc`, `-p` with an optional value, `--opt=value`, leftovers,
//!   error texts);
//! * [`cli`] — ipvsadm's `parse_options`/`process_options` semantics:
//!   per-option validation, the command/option matrix, post-parse checks,
//!   producing a validated [`cli::Invocation`] or a [`cli::Stop`];
//! * [`format`] — pure, byte-exact rendering of every view (`-L` variants,
//!   `-S`, `-c`, `--timeout`, `--daemon`) and ipvsadm's sort order
//!   (wrapping comparator + glibc merge sort);
//! * [`backend`] — the [`backend::Backend`] trait: the real control-socket
//!   client, and an in-memory [`backend::FakeBackend`] for tests;
//! * [`errors`] — libipvs's (operation, errno) → message table;
//! * [`resolve`] — host/service name lookups behind a trait;
//! * [`run`] — executes one command line (including `-R` restore) against a
//!   backend with injected stdin/stdout/stderr and returns the exit status.

pub mod addr;
pub mod backend;
pub mod cli;
pub mod errors;
pub mod format;
pub mod popt;
pub mod realserver;
pub mod resolve;

use backend::{Backend, BackendError};
use cli::{o, Cmd, Invocation, Stop, AF_INET6};
use errors::Op;
use resolve::Resolver;
use rvs_api::{
    Command, DaemonInfo, DaemonState, DestSpec, Family, FwdMethod, Protocol, Reply, ServiceKey,
    ServiceSpec, Timeouts, TunCsum, TunType,
};
use std::io::{BufRead, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Everything a run needs from the outside world.
pub struct Ctx<'a> {
    pub backend: &'a mut dyn Backend,
    pub resolver: &'a dyn Resolver,
    pub stdin: &'a mut dyn BufRead,
    pub stdout: &'a mut dyn Write,
    pub stderr: &'a mut dyn Write,
}

/// Terminate the whole program with this status (C `exit()`).
struct Exit(i32);

/// Run one `rvsadm` command line (`argv[0]` included) and return the exit
/// status, exactly as ipvsadm would.
pub fn run(argv: &[String], ctx: &mut Ctx<'_>) -> i32 {
    if let Some(code) = run_extension(argv, ctx) {
        let _ = ctx.stdout.flush();
        let _ = ctx.stderr.flush();
        return code;
    }
    let r = if argv.len() <= 1 {
        let inv = Invocation {
            cmd: Cmd::List,
            options: 0,
            format: cli::Format::default(),
            svc: cli::Svc::default(),
            dest: cli::Dest::default(),
            timeouts: (0, 0, 0),
            daemon: cli::Daemon::default(),
        };
        list_all(ctx, &inv).map(|_| 0)
    } else {
        process(ctx, argv, false)
    };
    let code = match r {
        Ok(v) => v & 0xff,
        Err(Exit(c)) => c,
    };
    let _ = ctx.stdout.flush();
    let _ = ctx.stderr.flush();
    code
}

fn out(ctx: &mut Ctx<'_>, s: &str) {
    let _ = ctx.stdout.write_all(s.as_bytes());
}

fn err(ctx: &mut Ctx<'_>, s: &str) {
    let _ = ctx.stderr.write_all(s.as_bytes());
}

/// ipvsadm's `process_options`: `Ok(0)` / `Ok(-1)` (failed kernel
/// operation or popt error), or `Err` to terminate the program.
fn process(ctx: &mut Ctx<'_>, argv: &[String], reading_stdin: bool) -> Result<i32, Exit> {
    let inv = match cli::parse(argv, ctx.resolver) {
        Ok(inv) => inv,
        Err(Stop::Exit {
            code,
            stdout,
            stderr,
        }) => {
            out(ctx, &stdout);
            err(ctx, &stderr);
            return Err(Exit(code));
        }
        Err(Stop::Soft { stderr }) => {
            err(ctx, &stderr);
            return Ok(-1);
        }
    };
    let program = argv.first().map(String::as_str).unwrap_or("ipvsadm");

    let (op, cmd) = match inv.cmd {
        Cmd::List => {
            if inv.has(o::CONNECTION) {
                list_conn(ctx, &inv)?;
            } else if inv.has(o::SERVICE) {
                list_service(ctx, &inv)?;
            } else if inv.has(o::TIMEOUT) {
                list_timeout(ctx, &inv)?;
            } else if inv.has(o::DAEMON) {
                list_daemon(ctx, &inv)?;
            } else {
                list_all(ctx, &inv)?;
            }
            return Ok(0);
        }
        Cmd::Restore => {
            if reading_stdin {
                let s = match cli::try_help(program) {
                    Stop::Exit { stderr, .. } => stderr,
                    Stop::Soft { stderr } => stderr,
                };
                err(ctx, &s);
                return Err(Exit(255));
            }
            return restore(ctx, program);
        }
        Cmd::Save => {
            list_all(ctx, &inv)?;
            return Ok(0);
        }
        Cmd::Flush => (Op::Flush, Command::Flush),
        Cmd::Add => (
            Op::AddService,
            Command::AddService {
                spec: service_spec(&inv),
            },
        ),
        Cmd::Edit => (
            Op::UpdateService,
            Command::EditService {
                spec: service_spec(&inv),
            },
        ),
        Cmd::Del => (
            Op::DelService,
            Command::DelService {
                key: service_key(&inv.svc),
            },
        ),
        Cmd::Zero => (
            Op::ZeroService,
            Command::Zero {
                service: inv.has(o::SERVICE).then(|| service_key(&inv.svc)),
            },
        ),
        Cmd::AddDest => (
            Op::AddDest,
            Command::AddDest {
                service: service_key(&inv.svc),
                dest: dest_spec(&inv),
            },
        ),
        Cmd::EditDest => (
            Op::UpdateDest,
            Command::EditDest {
                service: service_key(&inv.svc),
                dest: dest_spec(&inv),
            },
        ),
        Cmd::DelDest => (
            Op::DelDest,
            Command::DelDest {
                service: service_key(&inv.svc),
                addr: to_ip(inv.dest.af, &inv.dest.addr),
                port: inv.dest.port,
            },
        ),
        Cmd::Timeout => (
            Op::SetTimeout,
            Command::SetTimeouts {
                timeouts: Timeouts {
                    tcp: inv.timeouts.0,
                    tcpfin: inv.timeouts.1,
                    udp: inv.timeouts.2,
                },
            },
        ),
        Cmd::StartDaemon => (
            Op::StartDaemon,
            Command::StartDaemon {
                daemon: DaemonInfo {
                    state: daemon_state(&inv),
                    mcast_ifn: inv.daemon.mcast_ifn.clone(),
                    syncid: inv.daemon.syncid,
                    sync_maxlen: inv.daemon.sync_maxlen,
                    mcast_group: inv.daemon.mcast_group,
                    mcast_port: inv.daemon.mcast_port,
                    mcast_ttl: inv.daemon.mcast_ttl,
                    counters: None,
                },
            },
        ),
        Cmd::StopDaemon => (
            Op::StopDaemon,
            Command::StopDaemon {
                state: daemon_state(&inv),
                syncid: inv.daemon.syncid,
            },
        ),
    };
    match ctx.backend.call(&cmd) {
        Ok(_) => Ok(0),
        Err(e) => {
            let m = backend_message(op, &e);
            err(ctx, &format!("{m}\n"));
            Ok(-1)
        }
    }
}

fn backend_message(op: Op, e: &BackendError) -> String {
    match e {
        BackendError::Api(a) => errors::message(op, a),
        BackendError::Transport(t) => format!("rvsadm: {t}"),
    }
}

fn daemon_state(inv: &Invocation) -> DaemonState {
    if inv.daemon.master {
        DaemonState::Master
    } else {
        DaemonState::Backup
    }
}

fn to_ip(af: u16, a: &[u8; 16]) -> IpAddr {
    if af == AF_INET6 {
        IpAddr::V6(Ipv6Addr::from(*a))
    } else {
        IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3]))
    }
}

/// The API key of the service given on the command line.
pub fn service_key(svc: &cli::Svc) -> ServiceKey {
    if svc.fwmark != 0 {
        ServiceKey::Fwmark {
            mark: svc.fwmark,
            family: if svc.af == AF_INET6 {
                Family::Inet6
            } else {
                Family::Inet
            },
        }
    } else {
        ServiceKey::Addr {
            protocol: match svc.protocol {
                resolve::IPPROTO_UDP => Protocol::Udp,
                resolve::IPPROTO_SCTP => Protocol::Sctp,
                _ => Protocol::Tcp,
            },
            addr: to_ip(svc.af, &svc.addr),
            port: svc.port,
        }
    }
}

fn service_spec(inv: &Invocation) -> ServiceSpec {
    let s = &inv.svc;
    ServiceSpec {
        key: service_key(s),
        scheduler: s.sched_name.clone(),
        flags: s.flags,
        timeout: s.timeout,
        netmask: s.netmask,
        pe_name: (!s.pe_name.is_empty()).then(|| s.pe_name.clone()),
    }
}

fn dest_spec(inv: &Invocation) -> DestSpec {
    let d = &inv.dest;
    DestSpec {
        addr: to_ip(d.af, &d.addr),
        port: d.port,
        fwd: match d.fwd {
            cli::FWD_MASQ => FwdMethod::Masq,
            cli::FWD_LOCAL => FwdMethod::Local,
            cli::FWD_TUNNEL => FwdMethod::Tunnel,
            _ => FwdMethod::Route,
        },
        weight: d.weight,
        u_threshold: d.u_threshold,
        l_threshold: d.l_threshold,
        tun_type: match d.tun_type {
            cli::TUN_GUE => TunType::Gue,
            cli::TUN_GRE => TunType::Gre,
            _ => TunType::Ipip,
        },
        tun_port: d.tun_port,
        tun_flags: if d.tun_flags & cli::TUN_F_REMCSUM != 0 {
            TunCsum::RemCsum
        } else if d.tun_flags & cli::TUN_F_CSUM != 0 {
            TunCsum::Csum
        } else {
            TunCsum::NoCsum
        },
    }
}

fn json<T: serde::Serialize + ?Sized>(ctx: &mut Ctx<'_>, v: &T) {
    match serde_json::to_string_pretty(v) {
        Ok(s) => out(ctx, &format!("{s}\n")),
        Err(e) => err(ctx, &format!("rvsadm: cannot encode JSON: {e}\n")),
    }
}

fn list_all(ctx: &mut Ctx<'_>, inv: &Invocation) -> Result<(), Exit> {
    let f = inv.format;
    if !f.rule && !f.json {
        let info = match ctx.backend.call(&Command::GetInfo) {
            Ok(Reply::Info(i)) => i,
            Ok(_) => return unexpected(ctx),
            Err(e) => {
                let m = backend_message(Op::GetInfo, &e);
                err(ctx, &format!("{m}\n"));
                return Err(Exit(1));
            }
        };
        out(ctx, &format::banner(&info));
    }
    let mut list = match ctx.backend.call(&Command::ListServices) {
        Ok(Reply::Services(v)) => v,
        Ok(_) => return unexpected(ctx),
        Err(e) => {
            let m = backend_message(Op::GetServices, &e);
            err(ctx, &format!("{m}\n"));
            return Err(Exit(1));
        }
    };
    if f.json {
        if !f.nosort {
            format::sort_services(&mut list);
        }
        json(ctx, &list);
        return Ok(());
    }
    let s = format::services(&list, &f, ctx.resolver);
    out(ctx, &s);
    Ok(())
}

fn unexpected<T>(ctx: &mut Ctx<'_>) -> Result<T, Exit> {
    err(ctx, "rvsadm: unexpected reply from rvsd\n");
    Err(Exit(1))
}

fn list_service(ctx: &mut Ctx<'_>, inv: &Invocation) -> Result<(), Exit> {
    let key = service_key(&inv.svc);
    let se = match ctx.backend.call(&Command::GetService { key }) {
        Ok(Reply::Service(s)) => s,
        Ok(_) => return unexpected(ctx),
        Err(e) => {
            let m = backend_message(Op::GetService, &e);
            err(ctx, &format!("{m}\n"));
            return Err(Exit(1));
        }
    };
    if inv.format.json {
        let mut s = se;
        if !inv.format.nosort {
            format::glibc_msort(&mut s.dests, &format::cmp_dests);
        }
        json(ctx, &s);
        return Ok(());
    }
    let s = format::list_service(&se, &inv.format, ctx.resolver);
    out(ctx, &s);
    Ok(())
}

fn list_conn(ctx: &mut Ctx<'_>, inv: &Invocation) -> Result<(), Exit> {
    let conns = match ctx.backend.call(&Command::ListConnections) {
        Ok(Reply::Connections(c)) => c,
        Ok(_) => return unexpected(ctx),
        Err(e) => {
            let m = backend_message(Op::GetConns, &e);
            err(ctx, &format!("{m}\n"));
            return Err(Exit(1));
        }
    };
    if inv.format.json {
        json(ctx, &conns);
        return Ok(());
    }
    let s = format::connections(&conns, &inv.format, ctx.resolver);
    out(ctx, &s);
    Ok(())
}

fn list_timeout(ctx: &mut Ctx<'_>, inv: &Invocation) -> Result<(), Exit> {
    match ctx.backend.call(&Command::GetTimeouts) {
        Ok(Reply::Timeouts(t)) => {
            if inv.format.json {
                json(ctx, &t);
            } else {
                out(ctx, &format::timeouts(&t));
            }
            Ok(())
        }
        // ipvsadm exits 1 without a message here.
        _ => Err(Exit(1)),
    }
}

fn list_daemon(ctx: &mut Ctx<'_>, inv: &Invocation) -> Result<(), Exit> {
    match ctx.backend.call(&Command::ListDaemons) {
        Ok(Reply::Daemons(d)) => {
            if inv.format.json {
                json(ctx, &d);
            } else {
                out(ctx, &format::daemons(&d));
            }
            Ok(())
        }
        _ => Err(Exit(1)),
    }
}

/// ipvsadm's `config_stream_read`: one line of blank-separated tokens
/// (`ipvsadm` tokens dropped); `None` ends the restore. Reproduces the EOF
/// quirk: a last line without newline that ends in two or more blanks is
/// dropped.
fn read_tokens(r: &mut dyn BufRead) -> Option<Vec<String>> {
    const MAX_TOKEN: usize = 4096;
    fn peek(r: &mut dyn BufRead) -> Option<u8> {
        match r.fill_buf() {
            Ok(b) if !b.is_empty() => Some(b[0]),
            _ => None,
        }
    }
    let is_blank = |c: u8| matches!(c, b' ' | b'\t' | b'\n' | b'\r');
    let mut tokens = Vec::new();
    loop {
        // fscanf("%4096[^ \t\n\r]%1[ \t\n\r]", token, tail)
        let Some(first) = peek(r) else {
            // fscanf returns EOF
            return if tokens.is_empty() {
                None
            } else {
                Some(tokens)
            };
        };
        if is_blank(first) {
            // matching failure: skip blanks up to a newline or a token
            loop {
                match peek(r) {
                    None => return None,
                    Some(b'\n') => {
                        r.consume(1);
                        return Some(tokens);
                    }
                    Some(b' ' | b'\t' | b'\r') => r.consume(1),
                    Some(_) => break,
                }
            }
            continue;
        }
        let mut tok = Vec::new();
        while tok.len() < MAX_TOKEN {
            match peek(r) {
                Some(c) if !is_blank(c) => {
                    tok.push(c);
                    r.consume(1);
                }
                _ => break,
            }
        }
        let mut newline = false;
        if let Some(c) = peek(r) {
            if is_blank(c) {
                r.consume(1);
                newline = c == b'\n';
            }
        }
        let t = String::from_utf8_lossy(&tok).into_owned();
        if t != "ipvsadm" {
            tokens.push(t);
        }
        if newline {
            return Some(tokens);
        }
    }
}

fn restore(ctx: &mut Ctx<'_>, program: &str) -> Result<i32, Exit> {
    let mut result = 0;
    while let Some(tokens) = read_tokens(&mut *ctx.stdin) {
        if tokens.is_empty() {
            continue;
        }
        let mut argv = Vec::with_capacity(tokens.len() + 1);
        argv.push(program.to_string());
        argv.extend(tokens);
        result = process(ctx, &argv, true)?;
    }
    Ok(result)
}

/// rvs's own views, which ipvsadm does not have: `--checks` (health
/// checks) and `--vrrp` (VRRP instances), each optionally with `--json`.
/// Returns None when `argv` is an ipvsadm command line.
pub fn run_extension(argv: &[String], ctx: &mut Ctx<'_>) -> Option<i32> {
    let cmd = match argv.get(1).map(String::as_str) {
        Some("--checks") => Command::ListChecks,
        Some("--vrrp") => Command::ListVrrp,
        Some("--sysctl") => return Some(sysctl(argv, ctx)),
        Some("--conn-sync") => return Some(conn_sync(argv, ctx)),
        _ => return None,
    };
    let mut json = false;
    for a in &argv[2..] {
        match a.as_str() {
            "--json" => json = true,
            other => {
                let _ = writeln!(
                    ctx.stderr,
                    "{}: unexpected argument '{other}' (only --json may follow {})",
                    argv[0], argv[1]
                );
                return Some(2);
            }
        }
    }
    match ctx.backend.call(&cmd) {
        Ok(Reply::Status(r)) => {
            if json {
                let _ = writeln!(
                    ctx.stdout,
                    "{}",
                    serde_json::to_string_pretty(&r.data).unwrap_or_default()
                );
            } else {
                let _ = write!(ctx.stdout, "{}", r.text);
            }
            Some(0)
        }
        Ok(_) => Some(1),
        Err(backend::BackendError::Api(e)) => {
            let _ = writeln!(ctx.stderr, "{}", e.message);
            Some(1)
        }
        Err(backend::BackendError::Transport(t)) => {
            let _ = writeln!(ctx.stderr, "rvsadm: {t}");
            Some(1)
        }
    }
}

fn call_ext(ctx: &mut Ctx<'_>, cmd: &Command) -> Result<Reply, i32> {
    match ctx.backend.call(cmd) {
        Ok(r) => Ok(r),
        Err(backend::BackendError::Api(e)) => {
            let _ = writeln!(ctx.stderr, "{}", e.message);
            Err(1)
        }
        Err(backend::BackendError::Transport(t)) => {
            let _ = writeln!(ctx.stderr, "rvsadm: {t}");
            Err(1)
        }
    }
}

/// `rvsadm --sysctl [NAME[=VALUE]]...`: the IPVS sysctls as `sysctl`
/// prints them (`net.ipv4.vs.NAME = VALUE`); with `NAME=VALUE`, set it
/// (what `sysctl -w net.ipv4.vs.NAME=VALUE` does on a kernel director).
fn sysctl(argv: &[String], ctx: &mut Ctx<'_>) -> i32 {
    let all = match call_ext(ctx, &Command::ListSysctls) {
        Ok(Reply::Sysctls(v)) => v,
        Ok(_) => return 1,
        Err(c) => return c,
    };
    let short = |n: &str| n.strip_prefix("net.ipv4.vs.").unwrap_or(n).to_string();
    let show = |ctx: &mut Ctx<'_>, n: &str, v: &str| {
        let _ = writeln!(ctx.stdout, "net.ipv4.vs.{n} = {v}");
    };
    if argv.len() == 2 {
        for (n, v) in &all {
            show(ctx, n, v);
        }
        return 0;
    }
    let mut rc = 0;
    for a in &argv[2..] {
        if let Some((n, v)) = a.split_once('=') {
            let name = short(n.trim());
            let value = v.trim().to_string();
            match call_ext(
                ctx,
                &Command::SetSysctl {
                    name: name.clone(),
                    value: value.clone(),
                },
            ) {
                Ok(_) => show(ctx, &name, &value),
                Err(c) => rc = c,
            }
        } else {
            let name = short(a);
            match all.iter().find(|(n, _)| *n == name) {
                Some((n, v)) => show(ctx, n, v),
                None => {
                    let _ = writeln!(
                        ctx.stderr,
                        "{}: unknown IPVS sysctl '{a}' (rvsadm --sysctl lists them)",
                        argv[0]
                    );
                    rc = 1;
                }
            }
        }
    }
    rc
}

/// `rvsadm --conn-sync`: the connection table as the kernel's
/// /proc/net/ip_vs_conn_sync shows it, with each entry's Origin (`Local`,
/// or `Sync` when a sync daemon created or updated it).
fn conn_sync(argv: &[String], ctx: &mut Ctx<'_>) -> i32 {
    if let Some(a) = argv.get(2) {
        let _ = writeln!(
            ctx.stderr,
            "{}: unexpected argument '{a}' after --conn-sync",
            argv[0]
        );
        return 2;
    }
    let conns = match call_ext(ctx, &Command::ListConnections) {
        Ok(Reply::Connections(c)) => c,
        Ok(_) => return 1,
        Err(c) => return c,
    };
    let _ = write!(ctx.stdout, "{}", format::conn_sync(&conns));
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(input: &str) -> Vec<Vec<String>> {
        let mut r = std::io::Cursor::new(input.as_bytes().to_vec());
        let mut v = Vec::new();
        while let Some(t) = read_tokens(&mut r) {
            v.push(t);
        }
        v
    }

    #[test]
    fn config_stream_quirks() {
        assert_eq!(
            toks("ipvsadm -C\n\n -L  -n\t\r\n"),
            [vec!["-C"], vec![], vec!["-L", "-n"]]
        );
        assert_eq!(toks("-C\n-L"), [vec!["-C"], vec!["-L"]]);
        assert_eq!(toks("-C\n-L "), [vec!["-C"], vec!["-L"]]);
        assert_eq!(toks("-C\n-L  "), [vec!["-C"]]);
        assert_eq!(toks("ipvsadm"), Vec::<Vec<String>>::new());
        assert_eq!(toks(""), Vec::<Vec<String>>::new());
    }
}
