//! Binary upgrade without an outage: `kill -USR2 <pid>`.
//!
//! The running rvsd (the *predecessor*) starts the binary at its own path
//! with the same arguments and hands everything over to it (the
//! *successor*) on a unix socket pair whose end the successor finds in
//! `RVS_UPGRADE_FD`:
//!
//! 1. predecessor → successor: `STATE` — the handover format, the table
//!    (services, destinations, counters and estimator state, connection
//!    entries and templates, timeouts, sysctls, sync daemons) as JSON, and
//!    with it (SCM_RIGHTS) the control socket and every listening socket of
//!    the proxy engine.
//! 2. The successor refuses a format it does not know (`REFUSED`), else it
//!    loads its configuration, takes the table, serves the control socket
//!    and the listening sockets it was given (the kernel queues connections
//!    meanwhile: none is refused) and answers `READY`.
//! 3. The predecessor stops accepting, stops every relayed connection at a
//!    clean point (nothing read and not yet written) and sends their socket
//!    pairs (`RELAYS`, in batches, then `RELAYS_END`); the successor relays
//!    them on and answers `DONE`. Before the relays, once nothing changes
//!    its table any more (relays stopped; the packet engine's RX threads
//!    stopped too), the predecessor sends what changed in its table since
//!    `STATE` (`TABLE`: entries created or changed state, the counters); the
//!    successor takes it and, with the packet engine, starts forwarding
//!    (see [`rvs_packet::handover`] for the gate on both sides).
//! 4. The predecessor exits without cleaning up what is now the
//!    successor's: the control socket file, the pidfile (the successor
//!    writes its own pid), the nftables guard, the VIPs.
//!
//! Established proxied connections are handed over rather than drained
//! (HAProxy's `-sf` lets the old process finish them): a layer-4 relay
//! cannot tell when a keep-alive connection is idle between requests, so
//! draining would keep the old process alive as long as any client holds a
//! connection open.
//!
//! The state also carries what the successor needs to go on *without a
//! transition*: each VRRP instance's state, counters and tracker states (a
//! MASTER stays MASTER: no notify, no GARP burst, its VIPs are not touched,
//! it adverts at once; see [`rvs_vrrp::Instance::take_over`]), and each
//! virtual server's health-check status (no real server flaps, no new check
//! cycle before serving; see [`rvs_check::VirtualServer::take_over`]). The
//! successor refuses a configuration (`-f`) that no longer loads or has
//! errors, before it touches anything (as a SIGHUP reload would).
//!
//! Test hooks, read by the successor only (the lab tests use them to
//! provoke failures): `RVS_UPGRADE_TEST_FORMAT=N` makes it speak handover
//! format N; `RVS_UPGRADE_TEST_READY_DELAY_MS=N` delays its `READY`;
//! `RVS_UPGRADE_TEST_CRASH_AFTER_READY=1` makes it abort right after
//! `READY`. Never set them in production.
//!
//! Until `READY` the predecessor serves as before; if the successor exits,
//! refuses, or is not ready within [`READY_TIMEOUT`], the predecessor
//! kills it, logs why, and goes on. If it fails after `READY`, the
//! predecessor listens and relays again. A second SIGUSR2 while a handover
//! runs is refused.

use crate::convert::key_to_core;
use crate::state::Daemon;
use rvs_api::{Command, DaemonInfo, Reply, ServiceInfo, ServiceKey, Timeouts};
use rvs_core::{CounterState, Protocol, Stats, SyncConn};
use rvs_dataplane::proxy::{ProxyEngine, RelayHandover};
use rvs_dataplane::ListenKey;
use rvs_packet::{Handover, PacketEngine};
use serde::{Deserialize, Serialize};
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tracing::{error, info, warn};

/// The handover format this build speaks. Bump it when [`State`] changes
/// incompatibly; a successor refuses any other.
pub const FORMAT: u32 = 1;
/// Where the successor finds its end of the handover socket.
pub const ENV_FD: &str = "RVS_UPGRADE_FD";
/// How long the predecessor waits for `READY`.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

const MAGIC: u32 = 0x5256_5355; // "RVSU"
const STATE: u32 = 1;
const READY: u32 = 2;
const REFUSED: u32 = 3;
const RELAYS: u32 = 4;
const RELAYS_END: u32 = 5;
const DONE: u32 = 6;
const TABLE: u32 = 7;
/// Test hook (successor only): speak this handover format instead.
pub const ENV_TEST_FORMAT: &str = "RVS_UPGRADE_TEST_FORMAT";
/// Test hook (successor only): wait this many ms before `READY`.
pub const ENV_TEST_READY_DELAY_MS: &str = "RVS_UPGRADE_TEST_READY_DELAY_MS";
/// Test hook (successor only): abort right after `READY`.
pub const ENV_TEST_CRASH_AFTER_READY: &str = "RVS_UPGRADE_TEST_CRASH_AFTER_READY";
/// SCM_MAX_FD is 253: relays go in batches of this many socket pairs.
const RELAYS_PER_MESSAGE: usize = 120;
/// Largest message accepted (a table of millions of entries fits).
const MAX_MESSAGE: u64 = 4 << 30;

/// One handover in progress per process.
static IN_PROGRESS: AtomicBool = AtomicBool::new(false);

/// Counters and estimator state of the table, a service or a destination.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Counters {
    pub service: Option<ServiceKey>,
    pub dest: Option<(IpAddr, u16)>,
    pub stats: [u64; 5],
    pub est: [u64; 5],
    pub last: [u64; 5],
}

/// One connection entry or template (the sync codec's fields).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Conn {
    pub protocol: u8,
    pub flags: u32,
    pub state: u16,
    pub caddr: IpAddr,
    pub cport: u16,
    pub vaddr: IpAddr,
    pub vport: u16,
    pub daddr: IpAddr,
    pub dport: u16,
    pub fwmark: u32,
    pub timeout: u32,
    pub pe_name: Option<String>,
    pub pe_data: Option<Vec<u8>>,
}

/// Identity of an entry (templates with persistence-engine data apart).
type ConnKey = (u8, IpAddr, u16, IpAddr, u16, bool, u32, Option<Vec<u8>>);
/// What the successor must know again if it changed.
type ConnVal = (u16, u32, IpAddr, u16);

fn conn_key(c: &Conn) -> ConnKey {
    (
        c.protocol,
        c.caddr,
        c.cport,
        c.vaddr,
        c.vport,
        c.flags & 0x1000 != 0,
        c.fwmark,
        c.pe_data.clone(),
    )
}

fn conn_val(c: &Conn) -> ConnVal {
    (c.state, c.flags, c.daddr, c.dport)
}

/// A listening socket passed along (its fd follows the control socket's).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Listener {
    pub udp: bool,
    pub addr: SocketAddr,
}

/// Everything the successor takes over, except the sockets.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    pub format: u32,
    pub from_version: String,
    pub from_pid: u32,
    /// Descriptors: [control socket, listeners...].
    pub listeners: Vec<Listener>,
    pub services: Vec<ServiceInfo>,
    pub counters: Vec<Counters>,
    pub conns: Vec<Conn>,
    pub timeouts: Timeouts,
    pub sysctls: Vec<(String, String)>,
    pub daemons: Vec<DaemonInfo>,
    /// VRRP instances (as `rvsadm --vrrp --json` shows them).
    #[serde(default)]
    pub vrrp: Vec<rvs_vrrp::InstanceStatus>,
    /// Health checks per virtual server (as `rvsadm --checks --json`).
    #[serde(default)]
    pub checks: Vec<CheckState>,
}

/// The table's entries and counters at the moment the packet engine
/// stopped forwarding (`TABLE`).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct TableNow {
    counters: Vec<Counters>,
    conns: Vec<Conn>,
}

/// A virtual server's health checks as the predecessor's driver left them
/// (the fields of [`rvs_check::VirtualServerStatus`] a successor needs;
/// same names, so it reads `rvsadm --checks --json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckState {
    pub name: String,
    pub quorum_up: bool,
    pub sorry_active: bool,
    #[serde(default)]
    pub suspended: bool,
    pub real_servers: Vec<CheckRs>,
}

/// One real server of a [`CheckState`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckRs {
    pub addr: SocketAddr,
    pub alive: bool,
    pub in_table: bool,
    pub weight: u32,
    pub failed_checkers: u32,
    pub last_transition_secs_ago: Option<f64>,
    pub checkers: Vec<CheckChecker>,
}

/// One checker of a [`CheckRs`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckChecker {
    pub kind: String,
    #[serde(default)]
    pub target: String,
    pub connect: SocketAddr,
    pub up: bool,
    pub has_run: bool,
    pub retry_it: u32,
    pub last_error: Option<String>,
    pub last_transition_secs_ago: Option<f64>,
    pub counters: CheckCounters,
}

/// [`rvs_check::machine::CheckerCounters`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CheckCounters {
    pub probes: u64,
    pub successes: u64,
    pub failures: u64,
    pub transitions: u64,
}

impl CheckState {
    /// Back to the status [`rvs_check::VirtualServer::take_over`] starts
    /// from.
    pub fn to_status(&self) -> rvs_check::VirtualServerStatus {
        const KINDS: [&str; 9] = [
            "TCP_CHECK",
            "HTTP_GET",
            "SSL_GET",
            "MISC_CHECK",
            "SMTP_CHECK",
            "DNS_CHECK",
            "UDP_CHECK",
            "PING_CHECK",
            "FILE_CHECK",
        ];
        use rvs_check::machine::{CheckerCounters, CheckerStatus, RealServerStatus};
        rvs_check::VirtualServerStatus {
            name: self.name.clone(),
            quorum_up: self.quorum_up,
            alive_weight: 0,
            sorry_active: self.sorry_active,
            suspended: self.suspended,
            real_servers: self
                .real_servers
                .iter()
                .map(|r| RealServerStatus {
                    addr: r.addr,
                    alive: r.alive,
                    in_table: r.in_table,
                    weight: r.weight,
                    failed_checkers: r.failed_checkers,
                    last_transition_secs_ago: r.last_transition_secs_ago,
                    checkers: r
                        .checkers
                        .iter()
                        .map(|c| CheckerStatus {
                            // an unknown kind matches no checker: it starts afresh
                            kind: KINDS.into_iter().find(|k| *k == c.kind).unwrap_or(""),
                            target: c.target.clone(),
                            connect: c.connect,
                            up: c.up,
                            has_run: c.has_run,
                            retry_it: c.retry_it,
                            last_error: c.last_error.clone(),
                            last_transition_secs_ago: c.last_transition_secs_ago,
                            counters: CheckerCounters {
                                probes: c.counters.probes,
                                successes: c.counters.successes,
                                failures: c.counters.failures,
                                transitions: c.counters.transitions,
                            },
                        })
                        .collect(),
                })
                .collect(),
        }
    }
}

impl State {
    /// The VRRP instances to take over, by name.
    pub fn vrrp_take_over(&self) -> std::collections::HashMap<String, rvs_vrrp::TakeOver> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        self.vrrp
            .iter()
            .map(|i| {
                (
                    i.name.clone(),
                    rvs_vrrp::TakeOver {
                        state: i.state,
                        counters: i.counters.clone(),
                        since_transition: i
                            .last_transition_unix
                            .and_then(|t| Duration::try_from_secs_f64(now - t).ok()),
                        tracks: i.tracks.clone(),
                    },
                )
            })
            .collect()
    }

    /// The health-check status to start each virtual server's driver from,
    /// by virtual server name.
    pub fn check_take_over(
        &self,
    ) -> std::collections::HashMap<String, rvs_check::VirtualServerStatus> {
        self.checks
            .iter()
            .map(|c| (c.name.clone(), c.to_status()))
            .collect()
    }
}

/// A relay's metadata (its two fds travel with the message).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct RelayMeta {
    peer: SocketAddr,
    vip: SocketAddr,
    nat: bool,
    client_eof: bool,
    upstream_eof: bool,
}

// ------------------------------------------------------------ framing --

fn send_msg(sock: &UnixStream, kind: u32, fds: &[RawFd], payload: &[u8]) -> io::Result<()> {
    let mut hdr = [0u8; 20];
    hdr[0..4].copy_from_slice(&MAGIC.to_be_bytes());
    hdr[4..8].copy_from_slice(&kind.to_be_bytes());
    hdr[8..12].copy_from_slice(&(fds.len() as u32).to_be_bytes());
    hdr[12..20].copy_from_slice(&(payload.len() as u64).to_be_bytes());
    let space = if fds.is_empty() {
        0
    } else {
        // SAFETY: CMSG_SPACE is a pure computation.
        unsafe { libc::CMSG_SPACE(std::mem::size_of_val(fds) as u32) as usize }
    };
    let mut cbuf = vec![0u8; space];
    let mut iov = libc::iovec {
        iov_base: hdr.as_mut_ptr() as *mut libc::c_void,
        iov_len: hdr.len(),
    };
    // SAFETY: an all-zero msghdr is valid; the pointers set below outlive
    // the sendmsg call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !fds.is_empty() {
        msg.msg_control = cbuf.as_mut_ptr() as *mut libc::c_void;
        msg.msg_controllen = space as _;
        // SAFETY: msg_control points to a buffer of CMSG_SPACE(fds) bytes,
        // so the first header and its data fit.
        unsafe {
            let c = libc::CMSG_FIRSTHDR(&msg);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN(std::mem::size_of_val(fds) as u32) as _;
            std::ptr::copy_nonoverlapping(
                fds.as_ptr() as *const u8,
                libc::CMSG_DATA(c),
                std::mem::size_of_val(fds),
            );
        }
    }
    // SAFETY: msg is fully initialised above.
    let n = unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut w = sock;
    w.write_all(&hdr[n as usize..])?;
    w.write_all(payload)
}

fn recv_msg(sock: &UnixStream) -> io::Result<(u32, Vec<OwnedFd>, Vec<u8>)> {
    let mut hdr = [0u8; 20];
    // room for the largest batch of descriptors
    // SAFETY: CMSG_SPACE is a pure computation.
    let space = unsafe { libc::CMSG_SPACE((253 * std::mem::size_of::<RawFd>()) as u32) as usize };
    let mut cbuf = vec![0u8; space];
    let mut iov = libc::iovec {
        iov_base: hdr.as_mut_ptr() as *mut libc::c_void,
        iov_len: hdr.len(),
    };
    // SAFETY: an all-zero msghdr is valid; the buffers outlive the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr() as *mut libc::c_void;
    msg.msg_controllen = space as _;
    // SAFETY: msg describes valid buffers.
    let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    if n == 0 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    let mut fds = Vec::new();
    // SAFETY: walking the control messages the kernel wrote into cbuf.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(c) as *const RawFd;
                let len = (*c).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                for i in 0..len / std::mem::size_of::<RawFd>() {
                    fds.push(OwnedFd::from_raw_fd(std::ptr::read_unaligned(data.add(i))));
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    let mut r = sock;
    r.read_exact(&mut hdr[n as usize..])?;
    let word = |i: usize| u32::from_be_bytes([hdr[i], hdr[i + 1], hdr[i + 2], hdr[i + 3]]);
    if word(0) != MAGIC {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not an rvsd handover message",
        ));
    }
    let len = u64::from_be_bytes([
        hdr[12], hdr[13], hdr[14], hdr[15], hdr[16], hdr[17], hdr[18], hdr[19],
    ]);
    if len > MAX_MESSAGE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "handover message too large",
        ));
    }
    let mut payload = vec![0u8; len as usize];
    r.read_exact(&mut payload)?;
    Ok((word(4), fds, payload))
}

// ------------------------------------------------------- predecessor --

/// What the predecessor hands over besides the table.
pub struct Sockets {
    /// The control socket's listener.
    pub control: RawFd,
    /// The proxy engine, when it is the data plane.
    pub proxy: Option<Arc<ProxyEngine>>,
    /// The packet engine, when it is the data plane.
    pub packet: Option<Arc<PacketEngine>>,
}

/// The table as [`State`] (under one lock, so it is consistent).
pub fn collect(d: &Daemon, listeners: Vec<Listener>) -> State {
    let services = match d.handle(Command::ListServices) {
        Ok(Reply::Services(s)) => s,
        _ => Vec::new(),
    };
    let timeouts = match d.handle(Command::GetTimeouts) {
        Ok(Reply::Timeouts(t)) => t,
        _ => Timeouts::default(),
    };
    let sysctls = match d.handle(Command::ListSysctls) {
        Ok(Reply::Sysctls(s)) => s,
        _ => Vec::new(),
    };
    let daemons = d.sync.list();
    let report = |f: &parking_lot::Mutex<Option<crate::state::StatusFn>>| {
        f.lock().as_ref().map(|f| f().data)
    };
    let vrrp = report(&d.vrrp)
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default();
    let checks = report(&d.checks)
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default();
    let TableNow { counters, conns } = table_now(d, &services);
    State {
        format: FORMAT,
        from_version: env!("CARGO_PKG_VERSION").to_string(),
        from_pid: std::process::id(),
        listeners,
        services,
        counters,
        conns,
        timeouts,
        sysctls,
        daemons,
        vrrp,
        checks,
    }
}

/// Entries and counters of the table (under one lock).
fn table_now(d: &Daemon, services: &[ServiceInfo]) -> TableNow {
    let now = d.shared.now();
    let mut t = d.shared.ipvs.lock();
    let mut counters = Vec::new();
    let mut push = |service: Option<ServiceKey>, dest: Option<(IpAddr, u16)>, c: CounterState| {
        let s = c.stats;
        counters.push(Counters {
            service,
            dest,
            stats: [s.conns, s.inpkts, s.outpkts, s.inbytes, s.outbytes],
            est: c.est,
            last: c.last,
        });
    };
    if let Some(c) = t.counter_state(None, None) {
        push(None, None, c);
    }
    for s in services {
        let k = key_to_core(&s.spec.key);
        if let Some(c) = t.counter_state(Some(&k), None) {
            push(Some(s.spec.key), None, c);
        }
        for dst in &s.dests {
            let dk = (dst.spec.addr, dst.spec.port);
            if let Some(c) = t.counter_state(Some(&k), Some(dk)) {
                push(Some(s.spec.key), Some(dk), c);
            }
        }
    }
    let conns = t
        .sync_export(now)
        .into_iter()
        .map(|c| Conn {
            protocol: c.protocol,
            flags: c.flags,
            state: c.state,
            caddr: c.caddr,
            cport: c.cport,
            vaddr: c.vaddr,
            vport: c.vport,
            daddr: c.daddr,
            dport: c.dport,
            fwmark: c.fwmark,
            timeout: c.timeout,
            pe_name: c.pe_name,
            pe_data: c.pe_data,
        })
        .collect();
    TableNow { counters, conns }
}

/// The binary to start: the path this process was started from (after a
/// package upgrade it holds the new binary).
fn own_binary() -> io::Result<std::path::PathBuf> {
    let p = std::env::current_exe()?;
    // a replaced binary shows as "/usr/sbin/rvsd (deleted)"
    let s = p.to_string_lossy();
    Ok(match s.strip_suffix(" (deleted)") {
        Some(x) => x.into(),
        None => p,
    })
}

/// Handle SIGUSR2. Returns only if this process goes on serving (the
/// handover failed or was refused); on success the process exits.
pub async fn upgrade(d: Arc<Daemon>, socks: Sockets) {
    if IN_PROGRESS.swap(true, Ordering::SeqCst) {
        warn!("SIGUSR2: an upgrade is already in progress; this one is ignored");
        return;
    }
    if let Some(pe) = &socks.packet {
        pe.arm_handover(true);
    }
    match run_upgrade(&d, &socks).await {
        Ok(()) => {
            info!("upgrade complete: the new rvsd serves; this process exits");
            std::process::exit(0);
        }
        Err(e) => {
            if let Some(pe) = &socks.packet {
                pe.arm_handover(false);
            }
            error!(reason = %e, "upgrade failed; this rvsd keeps serving");
            d.record_event("upgrade", format!("upgrade failed: {e}"));
        }
    }
    IN_PROGRESS.store(false, Ordering::SeqCst);
}

async fn run_upgrade(d: &Arc<Daemon>, socks: &Sockets) -> Result<(), String> {
    let exe = own_binary().map_err(|e| format!("cannot find this binary's path: {e}"))?;
    let (ours, theirs) =
        UnixStream::pair().map_err(|e| format!("cannot create the handover socket: {e}"))?;
    // the successor inherits its end: clear FD_CLOEXEC
    // SAFETY: fcntl on a valid descriptor we own.
    unsafe { libc::fcntl(theirs.as_raw_fd(), libc::F_SETFD, 0) };
    let mut child = std::process::Command::new(&exe)
        .args(std::env::args_os().skip(1))
        .env(ENV_FD, theirs.as_raw_fd().to_string())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", exe.display()))?;
    drop(theirs);
    let pid = child.id();
    info!(binary = %exe.display(), pid, "upgrade: new rvsd started, handing over");
    let fail = |child: &mut std::process::Child, why: String| {
        let _ = child.kill();
        let _ = child.wait();
        why
    };
    // 1. state and listening sockets
    let mut fds: Vec<RawFd> = vec![socks.control];
    let mut listeners = Vec::new();
    let proxy_fds = socks
        .proxy
        .as_ref()
        .map(|p| p.listener_fds())
        .unwrap_or_default();
    for (k, fd) in &proxy_fds {
        listeners.push(Listener {
            udp: k.proto == Protocol::Udp,
            addr: k.addr,
        });
        fds.push(fd.as_raw_fd());
    }
    let state = collect(d, listeners);
    let json = serde_json::to_vec(&state).map_err(|e| format!("cannot encode the state: {e}"))?;
    // what the successor has: TABLE then carries only what changed
    let known: std::collections::HashMap<ConnKey, ConnVal> = state
        .conns
        .iter()
        .map(|c| (conn_key(c), conn_val(c)))
        .collect();
    let entries = state.conns.len();
    let sock = ours
        .try_clone()
        .map_err(|e| fail(&mut child, format!("handover socket: {e}")))?;
    let sent = tokio::task::spawn_blocking(move || send_msg(&sock, STATE, &fds, &json)).await;
    drop(proxy_fds);
    match sent {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            let why = match exited(&mut child).await {
                Some(s) => format!("the new rvsd exited ({s}) before it was ready (see its log: configuration error, wrong binary?)"),
                None => format!("cannot send the state: {e}"),
            };
            return Err(fail(&mut child, why));
        }
        Err(e) => return Err(fail(&mut child, format!("handover task: {e}"))),
    }
    // 2. READY (or a refusal, or the child's exit)
    let sock = ours
        .try_clone()
        .map_err(|e| fail(&mut child, format!("handover socket: {e}")))?;
    let _ = sock.set_read_timeout(Some(READY_TIMEOUT));
    let reply = tokio::task::spawn_blocking(move || recv_msg(&sock)).await;
    match reply {
        Ok(Ok((READY, _, _))) => {}
        Ok(Ok((REFUSED, _, why))) => {
            return Err(fail(
                &mut child,
                format!("the new rvsd refused: {}", String::from_utf8_lossy(&why)),
            ))
        }
        Ok(Ok((k, _, _))) => {
            return Err(fail(&mut child, format!("unexpected handover message {k}")))
        }
        Ok(Err(e)) => {
            let status = match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                    child.try_wait().ok().flatten()
                }
                _ => exited(&mut child).await,
            };
            return Err(fail(
                &mut child,
                match status {
                    Some(s) => format!("the new rvsd exited ({s}) before it was ready (see its log: configuration error, wrong binary?)"),
                    None if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::TimedOut => {
                        format!("the new rvsd was not ready within {}s", READY_TIMEOUT.as_secs())
                    }
                    None => format!("handover: {e}"),
                },
            ));
        }
        Err(e) => return Err(fail(&mut child, format!("handover task: {e}"))),
    }
    info!(
        entries,
        pid, "upgrade: the new rvsd is ready; handing over relayed connections"
    );
    // 3. stop accepting; hand the relays over
    let relays = match &socks.proxy {
        Some(p) => {
            p.shutdown_listeners();
            p.handover_relays(Duration::from_secs(5)).await
        }
        None => Vec::new(),
    };
    // the packet engine stops forwarding; the table as it is now follows
    if let Some(pe) = &socks.packet {
        let pe = pe.clone();
        let held = tokio::task::spawn_blocking(move || {
            pe.set_handover(Handover::Hold, Duration::from_secs(2))
        })
        .await
        .unwrap_or(false);
        if !held {
            warn!("upgrade: the packet engine's RX threads did not stop within 2 s; handing over anyway");
        }
    }
    // nothing changes here any more: the entries created or changed since
    // STATE (the relays' too) and the counters as they are now
    let services = match d.handle(Command::ListServices) {
        Ok(Reply::Services(s)) => s,
        _ => Vec::new(),
    };
    let mut now = table_now(d, &services);
    now.conns
        .retain(|c| known.get(&conn_key(c)) != Some(&conn_val(c)));
    let table = serde_json::to_vec(&now).ok();
    drop(known);
    let n = relays.len();
    let sock = ours
        .try_clone()
        .map_err(|e| format!("handover socket: {e}"))?;
    let result = tokio::task::spawn_blocking(move || -> (io::Result<()>, Vec<RelayHandover>) {
        let table = match &table {
            Some(t) => send_msg(&sock, TABLE, &[], t),
            None => Err(io::Error::other("cannot encode the table")),
        };
        let r = table
            .and_then(|()| send_relays(&sock, &relays))
            .and_then(|()| {
                let _ = sock.set_read_timeout(Some(Duration::from_secs(10)));
                match recv_msg(&sock)? {
                    (DONE, _, _) => Ok(()),
                    (k, _, _) => Err(io::Error::other(format!("unexpected handover message {k}"))),
                }
            });
        (r, relays)
    })
    .await;
    match result {
        Ok((Ok(()), _)) => {
            info!(relays = n, "upgrade: relayed connections handed over");
            Ok(())
        }
        Ok((Err(e), relays)) => {
            // the successor failed mid-handover: serve again
            let why = fail(
                &mut child,
                format!("the new rvsd failed during the handover: {e}"),
            );
            d.reconcile();
            if let Some(p) = &socks.proxy {
                p.resume_relays(relays);
            }
            if let Some(pe) = &socks.packet {
                pe.set_handover(Handover::Forward, Duration::ZERO);
            }
            Err(why)
        }
        Err(e) => Err(format!("handover task: {e}")),
    }
}

/// A closed handover socket usually means the child is exiting: wait a
/// moment for its status, so that the log says why.
async fn exited(child: &mut std::process::Child) -> Option<std::process::ExitStatus> {
    for _ in 0..50 {
        if let Some(s) = child.try_wait().ok().flatten() {
            return Some(s);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

fn send_relays(sock: &UnixStream, relays: &[RelayHandover]) -> io::Result<()> {
    for chunk in relays.chunks(RELAYS_PER_MESSAGE) {
        let meta: Vec<RelayMeta> = chunk
            .iter()
            .map(|r| RelayMeta {
                peer: r.peer,
                vip: r.vip,
                nat: r.nat,
                client_eof: r.client_eof,
                upstream_eof: r.upstream_eof,
            })
            .collect();
        let fds: Vec<RawFd> = chunk
            .iter()
            .flat_map(|r| [r.client.as_raw_fd(), r.upstream.as_raw_fd()])
            .collect();
        let json = serde_json::to_vec(&meta).map_err(io::Error::other)?;
        send_msg(sock, RELAYS, &fds, &json)?;
    }
    send_msg(sock, RELAYS_END, &[], &[])
}

// --------------------------------------------------------- successor --

/// The successor's end of a handover, when this process was started by
/// an upgrade.
pub struct Incoming {
    sock: UnixStream,
    pub state: State,
    /// The control socket's listener.
    pub control: std::os::unix::net::UnixListener,
    /// Listening sockets for the proxy engine.
    pub listeners: Vec<(ListenKey, OwnedFd)>,
}

/// If `RVS_UPGRADE_FD` is set: read the predecessor's state. A format this
/// build does not know is refused (the predecessor keeps serving) and
/// returned as an error.
pub fn incoming() -> Result<Option<Incoming>, String> {
    let Ok(v) = std::env::var(ENV_FD) else {
        return Ok(None);
    };
    std::env::remove_var(ENV_FD);
    let fd: RawFd = v
        .parse()
        .map_err(|_| format!("{ENV_FD}={v} is not a descriptor"))?;
    // SAFETY: the predecessor passed us this descriptor for our own use.
    let sock = unsafe { UnixStream::from_raw_fd(fd) };
    // SAFETY: FD_CLOEXEC again, so a later upgrade does not leak it.
    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    let (kind, fds, payload) =
        recv_msg(&sock).map_err(|e| format!("cannot read the handover state: {e}"))?;
    let refuse = |why: String| {
        let _ = send_msg(&sock, REFUSED, &[], why.as_bytes());
        why
    };
    if kind != STATE {
        return Err(refuse(format!(
            "expected the handover state, got message {kind}"
        )));
    }
    #[derive(Deserialize)]
    struct Head {
        format: u32,
    }
    let head: Head = serde_json::from_slice(&payload)
        .map_err(|e| refuse(format!("handover state unreadable: {e}")))?;
    let ours = std::env::var(ENV_TEST_FORMAT)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(FORMAT);
    if head.format != ours {
        return Err(refuse(format!(
            "handover format {} is not this rvsd's format {ours} (rvsd {}); upgrade through a release that speaks both, or restart",
            head.format,
            env!("CARGO_PKG_VERSION")
        )));
    }
    let state: State = serde_json::from_slice(&payload)
        .map_err(|e| refuse(format!("handover state unreadable: {e}")))?;
    let mut fds = fds.into_iter();
    let control = fds
        .next()
        .map(std::os::unix::net::UnixListener::from)
        .ok_or_else(|| refuse("no control socket in the handover".into()))?;
    let listeners = state
        .listeners
        .iter()
        .zip(fds)
        .map(|(l, fd)| {
            (
                ListenKey {
                    proto: if l.udp { Protocol::Udp } else { Protocol::Tcp },
                    addr: l.addr,
                },
                fd,
            )
        })
        .collect();
    Ok(Some(Incoming {
        sock,
        state,
        control,
        listeners,
    }))
}

/// Put the predecessor's table into ours (before the configuration is
/// applied: services it also defines are then edited, not added).
pub fn import(d: &Daemon, st: &State) {
    let current = match d.handle(Command::ListSysctls) {
        Ok(Reply::Sysctls(s)) => s,
        _ => Vec::new(),
    };
    for (name, value) in st.sysctls.iter().filter(|kv| !current.contains(kv)) {
        let _ = d.handle(Command::SetSysctl {
            name: name.clone(),
            value: value.clone(),
        });
    }
    let _ = d.handle(Command::SetTimeouts {
        timeouts: st.timeouts,
    });
    for s in &st.services {
        if let Err(e) = d.handle(Command::AddService {
            spec: s.spec.clone(),
        }) {
            warn!(error = %e.message, "upgrade: service not taken over");
            continue;
        }
        // the kernel lists destinations newest first: add oldest first
        for dst in s.dests.iter().rev() {
            let _ = d.handle(Command::AddDest {
                service: s.spec.key,
                dest: dst.spec.clone(),
            });
        }
    }
    import_table(d, &st.counters, &st.conns);
    drop_in_daemons(d, st);
    info!(
        from_pid = st.from_pid,
        from_version = %st.from_version,
        services = st.services.len(),
        entries = st.conns.len(),
        "upgrade: table taken over"
    );
}

/// Counters and entries into the table (an entry already there is updated,
/// as a sync backup does).
fn import_table(d: &Daemon, counters: &[Counters], conns: &[Conn]) {
    let now = d.shared.now();
    let mut t = d.shared.ipvs.lock();
    for c in counters {
        let key = c.service.as_ref().map(key_to_core);
        let s = c.stats;
        let cs = CounterState {
            stats: Stats {
                conns: s[0],
                inpkts: s[1],
                outpkts: s[2],
                inbytes: s[3],
                outbytes: s[4],
            },
            est: c.est,
            last: c.last,
        };
        t.set_counter_state(key.as_ref(), c.dest, &cs);
    }
    for c in conns {
        let sc = SyncConn {
            protocol: c.protocol,
            flags: c.flags,
            state: c.state,
            caddr: c.caddr,
            cport: c.cport,
            vaddr: c.vaddr,
            vport: c.vport,
            daddr: c.daddr,
            dport: c.dport,
            fwmark: c.fwmark,
            timeout: c.timeout,
            pe_name: c.pe_name.clone(),
            pe_data: c.pe_data.clone(),
        };
        t.import_conn(now, &sc, false);
    }
}

/// The predecessor's table as it was when it stopped: its counters plus
/// what this process counted itself since it took the state (the proxy
/// engine accepts on the shared listeners from then on), with the
/// predecessor's estimator state; its entries (the ones created since the
/// state are added, the others updated).
fn import_final(d: &Daemon, at_state: &[Counters], last: &[Counters], conns: &[Conn]) {
    let mut merged = Vec::with_capacity(last.len());
    {
        let mut t = d.shared.ipvs.lock();
        for c in last {
            let key = c.service.as_ref().map(key_to_core);
            let base = at_state
                .iter()
                .find(|b| b.service == c.service && b.dest == c.dest)
                .map_or([0; 5], |b| b.stats);
            let mut c = c.clone();
            if let Some(cur) = t.counter_state(key.as_ref(), c.dest) {
                let s = cur.stats;
                let cur = [s.conns, s.inpkts, s.outpkts, s.inbytes, s.outbytes];
                for i in 0..5 {
                    c.stats[i] = c.stats[i].saturating_add(cur[i].saturating_sub(base[i]));
                }
            }
            merged.push(c);
        }
    }
    import_table(d, &merged, conns);
}

fn drop_in_daemons(d: &Daemon, st: &State) {
    for di in &st.daemons {
        let mut di = di.clone();
        di.counters = None;
        if let Err((false, e)) = d.sync.start(&di, false) {
            warn!(error = %e, "upgrade: sync daemon not taken over");
        }
    }
}

impl Incoming {
    /// Refuse the handover (the predecessor goes on serving and logs `why`).
    pub fn refuse(&self, why: &str) {
        let _ = send_msg(&self.sock, REFUSED, &[], why.as_bytes());
    }

    /// Tell the predecessor we serve, take its relays (proxy engine) or its
    /// table as it is when it stopped forwarding (packet engine, which then
    /// starts forwarding), confirm. Blocking: call from a blocking task.
    pub fn finish(
        self,
        d: &Daemon,
        proxy: Option<Arc<ProxyEngine>>,
        packet: Option<Arc<PacketEngine>>,
    ) -> Result<usize, String> {
        if let Some(ms) = std::env::var(ENV_TEST_READY_DELAY_MS)
            .ok()
            .and_then(|v| v.parse().ok())
        {
            std::thread::sleep(Duration::from_millis(ms));
        }
        if let Some(pe) = &packet {
            // from now on the rings keep what arrives, until the table is here
            pe.set_handover(Handover::Hold, Duration::from_secs(2));
        }
        send_msg(&self.sock, READY, &[], &[]).map_err(|e| format!("cannot signal ready: {e}"))?;
        if std::env::var_os(ENV_TEST_CRASH_AFTER_READY).is_some() {
            error!("{ENV_TEST_CRASH_AFTER_READY} is set: aborting after READY (test hook)");
            std::process::abort();
        }
        let _ = self.sock.set_read_timeout(Some(Duration::from_secs(30)));
        let mut n = 0;
        let mut forwarding = false;
        loop {
            let (kind, fds, payload) = recv_msg(&self.sock)
                .map_err(|e| format!("handover of relayed connections: {e}"))?;
            match kind {
                TABLE => {
                    let t: TableNow = serde_json::from_slice(&payload)
                        .map_err(|e| format!("handover table unreadable: {e}"))?;
                    import_final(d, &self.state.counters, &t.counters, &t.conns);
                    if let Some(pe) = &packet {
                        pe.set_handover(Handover::Forward, Duration::ZERO);
                        forwarding = true;
                    }
                    info!(
                        entries = t.conns.len(),
                        "upgrade: the old rvsd's table as it stopped is taken over"
                    );
                }
                RELAYS => {
                    let meta: Vec<RelayMeta> = serde_json::from_slice(&payload)
                        .map_err(|e| format!("relay list unreadable: {e}"))?;
                    let mut fds = fds.into_iter();
                    let mut relays = Vec::with_capacity(meta.len());
                    for m in meta {
                        let (Some(client), Some(upstream)) = (fds.next(), fds.next()) else {
                            break;
                        };
                        relays.push(RelayHandover {
                            client,
                            upstream,
                            peer: m.peer,
                            vip: m.vip,
                            nat: m.nat,
                            client_eof: m.client_eof,
                            upstream_eof: m.upstream_eof,
                        });
                    }
                    if let Some(p) = &proxy {
                        n += p.adopt_relays(relays);
                    }
                }
                RELAYS_END => {
                    if let (Some(pe), false) = (&packet, forwarding) {
                        // the predecessor had no packet engine (e.g. AF_XDP)
                        pe.set_handover(Handover::Forward, Duration::ZERO);
                    }
                    break;
                }
                k => return Err(format!("unexpected handover message {k}")),
            }
        }
        send_msg(&self.sock, DONE, &[], &[]).map_err(|e| format!("cannot confirm: {e}"))?;
        Ok(n)
    }
}
