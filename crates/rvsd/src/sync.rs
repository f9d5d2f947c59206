//! Connection synchronisation daemons: the IO shell of `ip_vs_sync.c`.
//!
//! What to send and how to apply it is decided by rvs-core (the master's
//! outbox filled by the data path, [`rvs_core::Ipvs::sync_apply`] for the
//! backup) and the message format by [`rvs_wire::sync`]; this module owns
//! the sockets and the two threads, as the kernel's sync threads do.
//!
//! - **master** (`--start-daemon master`): every 20 ms (the kernel's
//!   IPVS_SYNC_SEND_DELAY) it takes the entries the data path queued and
//!   sends them in messages of at most `sync_maxlen` bytes to the multicast
//!   group (224.0.0.81:8848, TTL 1, no loopback). A partly filled message
//!   is sent after those 20 ms too, where the kernel may hold it for up to
//!   2 s (IPVS_SYNC_FLUSH_TIME): a connection synced just before a failover
//!   is not lost.
//! - **backup** (`--start-daemon backup`): receives v1 and v0 messages on
//!   the group, drops those of another syncid (when its own is not 0) and
//!   applies each entry as `ip_vs_proc_conn` does.
//!
//! Beyond the kernel: a backup daemon that starts asks its peers for their
//! whole table with an rvs-only [`Control::BulkRequest`] (a kernel peer
//! discards it silently, see [`rvs_wire::sync::Control`]); a master daemon
//! answers with its table as ordinary v1 messages and a
//! [`Control::BulkEnd`]. Until the transfer is complete (or no peer
//! answered within [`BULK_GIVE_UP`]) [`SyncManager::table_complete`] stays
//! false, and rvsd holds preemption of the VRRP instance the daemon
//! follows, so a restarted master does not take the VIP back with an empty
//! table.

use parking_lot::Mutex;
use rvs_api::{DaemonInfo, DaemonState, SyncCounters};
use rvs_core::{Ipvs, SyncConn, Time};
use rvs_dataplane::Shared;
use rvs_wire::sync::{self as wire, Control, Entry, Message, MessageWriter, Role, Version};
use socket2::{Domain, Protocol as SockProto, SockAddr, Socket, Type};
use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tracing::{info, warn};

/// Said by `rvsd -t` and at start when sync is configured with the proxy
/// engine.
pub const PROXY_WARNING: &str = "lvs_sync_daemon: the proxy engine terminates TCP, and a terminated connection cannot be carried over to another director; sync keeps the table (-Lnc, persistence) but connections through the proxy engine reset at failover; use --engine packet or xdp for failover without resets";

/// IP_VS_SYNC_GROUP.
pub const DEFAULT_GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 81);
/// IP_VS_SYNC_PORT.
pub const DEFAULT_PORT: u16 = 8848;
/// IPVS_SYNC_SEND_DELAY (HZ / 50).
const SEND_DELAY: Duration = Duration::from_millis(20);
/// A backup re-sends its whole-table request this often until answered.
const BULK_RETRY: Duration = Duration::from_secs(1);
/// A backup stops waiting for a whole-table answer when nothing came for
/// this long (no rvs peer runs a master daemon, or the peer is a kernel).
pub const BULK_GIVE_UP: Duration = Duration::from_secs(5);
/// Receive buffer of the sync sockets (a whole-table answer arrives fast).
const RCVBUF: usize = 8 << 20;
/// Messages a master sends in one go while answering a whole-table request
/// before it yields for a moment, so the receivers keep up.
const BULK_BURST: usize = 64;

/// Counters of one daemon, shared with its thread.
#[derive(Default)]
struct Counters {
    messages_sent: AtomicU64,
    entries_sent: AtomicU64,
    messages_received: AtomicU64,
    entries_received: AtomicU64,
    send_errors: AtomicU64,
    bulk_sent: AtomicU64,
    bulk_received: AtomicU64,
    dropped: Mutex<BTreeMap<&'static str, u64>>,
}

impl Counters {
    fn dropped_by(&self, reason: &'static str) {
        *self.dropped.lock().entry(reason).or_default() += 1;
    }
    fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }
    fn snapshot(&self, outbox_dropped: u64) -> SyncCounters {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        SyncCounters {
            messages_sent: g(&self.messages_sent),
            entries_sent: g(&self.entries_sent),
            messages_received: g(&self.messages_received),
            entries_received: g(&self.entries_received),
            send_errors: g(&self.send_errors),
            outbox_dropped,
            dropped: self
                .dropped
                .lock()
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
            bulk_sent: g(&self.bulk_sent),
            bulk_received: g(&self.bulk_received),
        }
    }
}

/// The name a receive drop is counted under.
fn reason_name(r: wire::DropReason) -> &'static str {
    use wire::DropReason as D;
    match r {
        D::ShortHeader => "short_header",
        D::SizeMismatch => "bad_length",
        D::BadControl => "bad_control",
        D::Truncated => "truncated",
        D::BadVersion => "bad_version",
        D::BadType => "bad_type",
        D::BadLength => "bad_entry_length",
        D::BadOption => "bad_option",
        D::BadSeqOption => "bad_seq_option",
        D::BadPeData => "bad_pe_data",
        D::BadPeName => "bad_pe_name",
        D::UnknownOption => "unknown_option",
        D::PeDataWithoutName => "pe_data_without_name",
    }
}

/// A daemon's settings with the kernel's defaults filled in.
#[derive(Debug, Clone)]
struct Settings {
    ifname: String,
    ifindex: u32,
    syncid: u8,
    group: IpAddr,
    port: u16,
    ttl: u8,
    maxlen: usize,
    ports: u8,
    version: Version,
}

impl Settings {
    fn resolve(d: &DaemonInfo, ipvs: &Ipvs) -> Result<Settings, String> {
        let ifname = d.mcast_ifn.clone();
        let ifindex = if_index(&ifname).ok_or_else(|| {
            format!(
                "sync daemon: no interface '{ifname}' on this host (give the director's interface with --mcast-interface IF, or 'lvs_sync_daemon IF' in keepalived.conf)"
            )
        })?;
        let group = d.mcast_group.unwrap_or(IpAddr::V4(DEFAULT_GROUP));
        if !group.is_multicast() {
            return Err(format!(
                "sync daemon: --mcast-group {group} is not a multicast address"
            ));
        }
        let role = match d.state {
            DaemonState::Master => Role::Master,
            DaemonState::Backup => Role::Backup,
        };
        let mtu = std::fs::read_to_string(format!("/sys/class/net/{ifname}/mtu"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(1500);
        let sysctl = ipvs.sysctl();
        Ok(Settings {
            ifname,
            ifindex,
            syncid: d.syncid,
            group,
            port: if d.mcast_port == 0 {
                DEFAULT_PORT
            } else {
                d.mcast_port
            },
            ttl: if d.mcast_ttl == 0 { 1 } else { d.mcast_ttl },
            maxlen: wire::sync_maxlen(role, group.is_ipv6(), mtu, d.sync_maxlen),
            ports: sysctl.sync_ports.max(1),
            version: if sysctl.sync_version == 0 {
                Version::V0
            } else {
                Version::V1
            },
        })
    }

    /// What `-L --daemon` shows: the values in effect.
    fn info(&self, state: DaemonState) -> DaemonInfo {
        DaemonInfo {
            state,
            mcast_ifn: self.ifname.clone(),
            syncid: self.syncid,
            sync_maxlen: self.maxlen as u16,
            mcast_group: Some(self.group),
            mcast_port: self.port,
            mcast_ttl: self.ttl,
            counters: None,
        }
    }
}

fn if_index(name: &str) -> Option<u32> {
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: c is a valid NUL-terminated string.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (i != 0).then_some(i)
}

/// One socket on `group:port`, joined on the interface, sending to the
/// group with the daemon's TTL and without loopback.
fn open_socket(s: &Settings, port: u16) -> io::Result<Socket> {
    let domain = if s.group.is_ipv6() {
        Domain::IPV6
    } else {
        Domain::IPV4
    };
    let sock = Socket::new(domain, Type::DGRAM, Some(SockProto::UDP))?;
    sock.set_reuse_address(true)?;
    let _ = sock.set_recv_buffer_size(RCVBUF);
    sock.bind_device(Some(s.ifname.as_bytes()))?;
    match s.group {
        IpAddr::V4(g) => {
            sock.bind(&SockAddr::from(SocketAddr::new(IpAddr::V4(g), port)))?;
            sock.join_multicast_v4_n(&g, &socket2::InterfaceIndexOrAddress::Index(s.ifindex))?;
            sock.set_multicast_loop_v4(false)?;
            sock.set_multicast_ttl_v4(u32::from(s.ttl))?;
            // kernel: IP_PMTUDISC_DONT, messages may be fragmented
            let v: libc::c_int = libc::IP_PMTUDISC_DONT;
            // SAFETY: valid socket and option value of the right size.
            unsafe {
                libc::setsockopt(
                    std::os::fd::AsRawFd::as_raw_fd(&sock),
                    libc::IPPROTO_IP,
                    libc::IP_MTU_DISCOVER,
                    &v as *const _ as *const libc::c_void,
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                );
            }
        }
        IpAddr::V6(g) => {
            sock.set_only_v6(true)?;
            sock.bind(&SockAddr::from(SocketAddr::new(IpAddr::V6(g), port)))?;
            sock.join_multicast_v6(&g, s.ifindex)?;
            sock.set_multicast_if_v6(s.ifindex)?;
            sock.set_multicast_loop_v6(false)?;
            sock.set_multicast_hops_v6(u32::from(s.ttl))?;
        }
    }
    Ok(sock)
}

/// A running daemon.
struct Running {
    settings: Settings,
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    fn halt(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The master and backup sync daemons of one rvsd.
pub struct SyncManager {
    shared: Arc<Shared>,
    master: Mutex<Option<Running>>,
    backup: Mutex<Option<Running>>,
    complete: watch::Sender<bool>,
}

impl SyncManager {
    pub fn new(shared: Arc<Shared>) -> SyncManager {
        SyncManager {
            shared,
            master: Mutex::new(None),
            backup: Mutex::new(None),
            complete: watch::channel(true).0,
        }
    }

    /// True once a backup daemon that asked for its peers' table has it
    /// (or gave up waiting); true when no such request is outstanding.
    pub fn table_complete(&self) -> watch::Receiver<bool> {
        self.complete.subscribe()
    }

    fn slot(&self, state: DaemonState) -> &Mutex<Option<Running>> {
        match state {
            DaemonState::Master => &self.master,
            DaemonState::Backup => &self.backup,
        }
    }

    /// Start a daemon. `request_table`: a backup asks its peers for their
    /// whole table first (not when a master steps down: it has the table).
    /// Errors are `(already_running, message)`.
    pub fn start(&self, d: &DaemonInfo, request_table: bool) -> Result<(), (bool, String)> {
        let mut slot = self.slot(d.state).lock();
        if slot.is_some() {
            return Err((true, "Daemon has already run".into()));
        }
        let settings = Settings::resolve(d, &self.shared.ipvs.lock()).map_err(|e| (false, e))?;
        let ports: Vec<u16> = (0..settings.ports)
            .map(|i| settings.port.wrapping_add(u16::from(i)))
            .collect();
        let socks = ports
            .iter()
            .map(|&p| open_socket(&settings, p))
            .collect::<io::Result<Vec<_>>>()
            .map_err(|e| {
                (
                    false,
                    format!(
                        "sync daemon: cannot open the sync socket on {} port {} ({e}); it needs root (CAP_NET_ADMIN/CAP_NET_RAW)",
                        settings.ifname, settings.port
                    ),
                )
            })?;
        let stop = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(Counters::default());
        let (st, ct, sh) = (stop.clone(), counters.clone(), self.shared.clone());
        let s2 = settings.clone();
        let thread = match d.state {
            DaemonState::Master => {
                self.set_master(true);
                std::thread::Builder::new()
                    .name("rvs-sync-master".into())
                    .spawn(move || master_loop(s2, socks, sh, st, ct))
            }
            DaemonState::Backup => {
                self.set_backup(true);
                let complete = self.complete.clone();
                if request_table {
                    complete.send_replace(false);
                }
                std::thread::Builder::new()
                    .name("rvs-sync-backup".into())
                    .spawn(move || backup_loop(s2, socks, sh, st, ct, request_table, complete))
            }
        }
        .map_err(|e| (false, format!("sync daemon: cannot start its thread: {e}")))?;
        info!(
            role = ?d.state,
            interface = %settings.ifname,
            syncid = settings.syncid,
            group = %settings.group,
            port = settings.port,
            maxlen = settings.maxlen,
            "sync daemon started"
        );
        *slot = Some(Running {
            settings,
            stop,
            counters,
            thread: Some(thread),
        });
        Ok(())
    }

    /// Stop a daemon; false if it was not running.
    pub fn stop(&self, state: DaemonState) -> bool {
        let Some(r) = self.slot(state).lock().take() else {
            return false;
        };
        r.halt();
        match state {
            DaemonState::Master => self.set_master(false),
            DaemonState::Backup => {
                self.set_backup(false);
                self.complete.send_replace(true);
            }
        }
        info!(role = ?state, "sync daemon stopped");
        true
    }

    fn set_master(&self, on: bool) {
        let mut t = self.shared.ipvs.lock();
        let (_, b) = t.sync_state();
        t.set_sync_state(on, b);
    }

    fn set_backup(&self, on: bool) {
        let mut t = self.shared.ipvs.lock();
        let (m, _) = t.sync_state();
        t.set_sync_state(m, on);
    }

    /// The running daemons, master first, with their counters.
    pub fn list(&self) -> Vec<DaemonInfo> {
        let outbox = self.shared.ipvs.lock().sync_outbox_dropped();
        let mut v = Vec::new();
        for (state, slot) in [
            (DaemonState::Master, &self.master),
            (DaemonState::Backup, &self.backup),
        ] {
            if let Some(r) = &*slot.lock() {
                let mut i = r.settings.info(state);
                let dropped = if state == DaemonState::Master {
                    outbox
                } else {
                    0
                };
                i.counters = Some(r.counters.snapshot(dropped));
                v.push(i);
            }
        }
        v
    }

    /// Stop both daemons.
    pub fn shutdown(&self) {
        self.stop(DaemonState::Master);
        self.stop(DaemonState::Backup);
    }
}

/// An entry as the wire carries it.
fn to_wire(c: &SyncConn) -> Entry<'_> {
    Entry {
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
        seq: None,
        pe_data: c.pe_data.as_deref(),
        pe_name: c.pe_name.as_deref().map(str::as_bytes),
    }
}

fn from_wire(e: &Entry<'_>) -> SyncConn {
    SyncConn {
        protocol: e.protocol,
        flags: e.flags,
        state: e.state,
        caddr: e.caddr,
        cport: e.cport,
        vaddr: e.vaddr,
        vport: e.vport,
        daddr: e.daddr,
        dport: e.dport,
        fwmark: e.fwmark,
        timeout: e.timeout,
        pe_name: e.pe_name.map(|n| String::from_utf8_lossy(n).into_owned()),
        pe_data: e.pe_data.map(<[u8]>::to_vec),
    }
}

/// Encodes `entries` into messages of at most `sync_maxlen` bytes and sends
/// them. With several sync ports an entry goes to port + hash(client) %
/// sync_ports, as the kernel spreads connections over its threads. `pace`:
/// yield for a moment after every [`BULK_BURST`] messages (a whole-table
/// answer), so receivers keep up.
fn send_entries(
    s: &Settings,
    socks: &[Socket],
    counters: &Counters,
    entries: &[SyncConn],
    pace: bool,
) {
    if socks.len() <= 1 {
        send_port(s, socks, 0, counters, entries.iter(), pace);
        return;
    }
    for i in 0..socks.len() {
        let mine = entries
            .iter()
            .filter(|c| hash_client(c) as usize % socks.len() == i);
        send_port(s, socks, i, counters, mine, pace);
    }
}

fn send_port<'e>(
    s: &Settings,
    socks: &[Socket],
    i: usize,
    counters: &Counters,
    entries: impl Iterator<Item = &'e SyncConn>,
    pace: bool,
) {
    let Some(sock) = socks.get(i) else {
        return;
    };
    let to = SockAddr::from(SocketAddr::new(s.group, s.port.wrapping_add(i as u16)));
    let mut buf = vec![0u8; s.maxlen];
    let mut it = entries.peekable();
    let mut sent = 0usize;
    while it.peek().is_some() {
        let mut w = MessageWriter::new(&mut buf, s.version, s.syncid);
        while let Some(c) = it.peek() {
            match w.push(&to_wire(c)) {
                Ok(()) => {
                    it.next();
                }
                Err(wire::PushError::Full) if !w.is_empty() => break,
                Err(e) => {
                    // IPv6 in a v0 message, or an entry that never fits
                    counters.dropped_by(match e {
                        wire::PushError::Ipv6InV0 => "ipv6_in_v0",
                        _ => "unsendable",
                    });
                    it.next();
                }
            }
        }
        if w.is_empty() {
            continue;
        }
        let n = u64::from(w.nr_conns());
        let len = w.finish();
        match sock.send_to(&buf[..len], &to) {
            Ok(_) => {
                Counters::add(&counters.messages_sent, 1);
                Counters::add(&counters.entries_sent, n);
            }
            Err(_) => Counters::add(&counters.send_errors, 1),
        }
        sent += 1;
        if pace && sent.is_multiple_of(BULK_BURST) {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

fn hash_client(c: &SyncConn) -> u32 {
    let a = match c.caddr {
        IpAddr::V4(a) => u32::from(a),
        IpAddr::V6(a) => {
            let o = a.octets();
            u32::from_be_bytes([o[12], o[13], o[14], o[15]])
        }
    };
    rvs_core::hsiphash_u32(a ^ u32::from(c.cport), 0x5eed_5eed, 0x5eed_5eed)
}

fn send_control(s: &Settings, sock: &Socket, c: Control, counters: &Counters) {
    let mut buf = [0u8; 32];
    let n = c.emit(s.syncid, &mut buf);
    let to = SockAddr::from(SocketAddr::new(s.group, s.port));
    match sock.send_to(&buf[..n], &to) {
        Ok(_) => Counters::add(&counters.messages_sent, 1),
        Err(_) => Counters::add(&counters.send_errors, 1),
    }
}

fn recv(sock: &Socket, buf: &mut [u8]) -> Option<usize> {
    // SAFETY: MaybeUninit<u8> has the layout of u8; recv only writes.
    let b = unsafe { &mut *(buf as *mut [u8] as *mut [std::mem::MaybeUninit<u8>]) };
    sock.recv(b).ok()
}

fn master_loop(
    s: Settings,
    socks: Vec<Socket>,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
) {
    for sock in &socks {
        let _ = sock.set_read_timeout(Some(SEND_DELAY));
    }
    let mut pending = Vec::new();
    let mut rx = vec![0u8; 65536];
    let mut last_send = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        // Requests from peers arrive on the first port; the read timeout
        // paces the sending.
        if let Some(n) = recv(&socks[0], &mut rx) {
            match Message::parse(&rx[..n]) {
                Ok(Message::Control {
                    syncid,
                    control: Control::BulkRequest { nonce },
                }) if wire::syncid_accepted(s.syncid, syncid) => {
                    answer_bulk(&s, &socks, &shared, &counters, nonce);
                }
                // another master's entries or a backup's answer: not ours
                _ => {}
            }
            if last_send.elapsed() < SEND_DELAY {
                continue;
            }
        }
        last_send = Instant::now();
        shared.ipvs.lock().sync_take(&mut pending);
        if pending.is_empty() {
            continue;
        }
        send_entries(&s, &socks, &counters, &pending, false);
        pending.clear();
    }
    // what was queued before the stop still goes out
    shared.ipvs.lock().sync_take(&mut pending);
    send_entries(&s, &socks, &counters, &pending, false);
}

/// Send the whole table to the group, then the end marker.
fn answer_bulk(s: &Settings, socks: &[Socket], shared: &Shared, counters: &Counters, nonce: u32) {
    let table = {
        let t = shared.ipvs.lock();
        t.sync_export(shared.now())
    };
    send_entries(s, socks, counters, &table, true);
    send_control(
        s,
        &socks[0],
        Control::BulkEnd {
            nonce,
            entries: table.len() as u32,
        },
        counters,
    );
    Counters::add(&counters.bulk_sent, 1);
    info!(
        entries = table.len(),
        "sync: whole table sent to a peer that asked for it"
    );
}

fn backup_loop(
    s: Settings,
    socks: Vec<Socket>,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
    request_table: bool,
    complete: watch::Sender<bool>,
) {
    let nonce: u32 = rand::random::<u32>() | 1;
    let mut waiting = request_table;
    let started = Instant::now();
    let mut last_request: Option<Instant> = None;
    let mut last_rx = started;
    let poll = Duration::from_millis(100);
    for sock in &socks {
        let _ = sock.set_read_timeout(Some(if socks.len() > 1 {
            Duration::from_millis(5)
        } else {
            poll
        }));
    }
    let mut buf = vec![0u8; 65536];
    let mut batch = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        if waiting {
            if last_rx.elapsed() >= BULK_GIVE_UP && started.elapsed() >= BULK_GIVE_UP {
                waiting = false;
                complete.send_replace(true);
                warn!(
                    "sync: no peer sent its connection table within {}s (none runs an rvs master daemon); going on with what was received",
                    BULK_GIVE_UP.as_secs()
                );
            } else if last_request.is_none_or(|t| t.elapsed() >= BULK_RETRY) {
                send_control(&s, &socks[0], Control::BulkRequest { nonce }, &counters);
                last_request = Some(Instant::now());
            }
        }
        for sock in &socks {
            let Some(n) = recv(sock, &mut buf) else {
                continue;
            };
            Counters::add(&counters.messages_received, 1);
            let msg = match Message::parse(&buf[..n]) {
                Ok(m) => m,
                Err(r) => {
                    counters.dropped_by(reason_name(r));
                    continue;
                }
            };
            if !wire::syncid_accepted(s.syncid, msg.syncid()) {
                counters.dropped_by("syncid");
                continue;
            }
            let conns = match msg {
                Message::V1(c) | Message::V0(c) => c,
                Message::Control {
                    control: Control::BulkEnd { nonce: n, entries },
                    ..
                } => {
                    if waiting && n == nonce {
                        waiting = false;
                        Counters::add(&counters.bulk_received, 1);
                        complete.send_replace(true);
                        info!(entries, "sync: connection table received from a peer");
                    }
                    continue;
                }
                Message::Control { .. } => continue,
            };
            last_rx = Instant::now();
            batch.clear();
            for e in conns {
                match e {
                    Ok(e) => batch.push(from_wire(&e)),
                    Err(r) => counters.dropped_by(reason_name(r)),
                }
            }
            Counters::add(&counters.entries_received, batch.len() as u64);
            let now: Time = shared.now();
            let mut t = shared.ipvs.lock();
            for c in &batch {
                t.sync_apply(now, c);
            }
        }
    }
    if waiting {
        complete.send_replace(true);
    }
}
