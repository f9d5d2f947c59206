//! The proxy engine: a TCP/UDP socket relay driven by the IPVS model.
//!
//! For each virtual service it listens on VIP:port (with `IP_FREEBIND`, so it
//! can bind before VRRP adds the VIP). A new client connection is offered to
//! [`rvs_core::Ipvs::process`] as the SYN the kernel would have seen; the
//! table schedules a destination (scheduler, persistence template, weights,
//! thresholds) and creates the connection entry. The engine connects to the
//! real server and relays bytes both ways.
//!
//! ## How relay events map to what IPVS would see
//!
//! | relay event | reported to the table as |
//! |---|---|
//! | client accepted | client SYN (`SYN_RECV`, active) |
//! | real server connected | client's handshake ACK (`ESTABLISHED`) |
//! | a read of N bytes from the client | one inbound packet of N + 40 bytes (IP+TCP headers) |
//! | a read of N bytes from the real server | one outbound packet of N + 40 bytes, **only for Masq (NAT) destinations** |
//! | client EOF | client FIN (`FIN_WAIT` for DR/TUN, `CLOSE_WAIT` for NAT) |
//! | real server EOF | server FIN, NAT only (`TIME_WAIT`) |
//! | reset / error | client RST (`CLOSE`) |
//! | UDP: ICMP error from a NAT real server (seen as a failed `recv`) | a related ICMP error, counted as one 56-byte outbound packet (`Ipvs::count_related`) |
//!
//! So a packet is one `read()`: segments coalesced by the kernel count once.
//! Replies are counted only where IPVS would see them (NAT), so `--stats`
//! shows OutPkts 0 for DR services exactly as the seed's course notes do.
//!
//! ## Failure handling (differs from IPVS on purpose)
//!
//! IPVS forwards a SYN blindly; if the real server is dead the client times
//! out. The proxy knows when `connect()` fails or times out: it counts the
//! failure, closes that attempt's connection entry (as an RST would) and asks
//! the scheduler again with the failed destination excluded, up to
//! [`ProxyOptions::max_attempts`] times. No destination at all → the client is
//! closed and `no_dest` counted (IPVS sends ICMP port unreachable).
//! `accept()` failing for lack of descriptors applies back-pressure (a short
//! pause) instead of spinning or crashing.
//!
//! UDP: one association per (client, real server), like an IPVS UDP
//! connection; it lives for the UDP timeout (`--set`, 300 s) after its last
//! datagram. With one-packet scheduling (`-o`) every datagram is scheduled
//! on its own.

use crate::{DropCounters, Engine, ListenKey, Shared};
use parking_lot::Mutex;
use rvs_core::{ConnRef, Dir, FwdMethod, Packet, Protocol, TcpFlags, Verdict};
use socket2::{Domain, SockRef, Socket, Type};
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// Tunables of the proxy engine.
#[derive(Debug, Clone)]
pub struct ProxyOptions {
    /// Timeout of one connect() attempt to a real server.
    pub connect_timeout: Duration,
    /// How many real servers to try for one client connection.
    pub max_attempts: usize,
    /// Set TCP_NODELAY on both legs.
    pub nodelay: bool,
    /// Relay buffer size per direction.
    pub buffer_size: usize,
    /// listen() backlog.
    pub backlog: i32,
}

impl Default for ProxyOptions {
    fn default() -> Self {
        ProxyOptions {
            connect_timeout: Duration::from_secs(3),
            max_attempts: 4,
            nodelay: true,
            buffer_size: 32 * 1024,
            backlog: 4096,
        }
    }
}

struct Listener {
    cancel: CancellationToken,
    /// A duplicate of the listening socket (for a successor process).
    fd: Option<OwnedFd>,
}

/// A relayed TCP connection handed from one rvsd process to its successor
/// (binary upgrade): both sockets, and where the relay stood.
#[derive(Debug)]
pub struct RelayHandover {
    pub client: OwnedFd,
    pub upstream: OwnedFd,
    /// The client's address and the VIP it connected to (the entry's key).
    pub peer: SocketAddr,
    pub vip: SocketAddr,
    /// The destination is NAT (replies are reported).
    pub nat: bool,
    /// The client / the real server has already closed its side.
    pub client_eof: bool,
    pub upstream_eof: bool,
}

/// Live relays, so that a handover can stop them at a clean point.
#[derive(Default)]
struct Relays {
    /// Cancelled when the relays are to be handed over (a new token is put
    /// in place when a failed handover resumes them).
    stop: Mutex<CancellationToken>,
    live: std::sync::atomic::AtomicUsize,
    out: Mutex<Vec<RelayHandover>>,
}

/// The proxy engine. Create it inside a tokio runtime.
pub struct ProxyEngine {
    shared: Arc<Shared>,
    opts: Arc<ProxyOptions>,
    rt: tokio::runtime::Handle,
    listeners: Mutex<HashMap<ListenKey, Listener>>,
    /// Listening sockets inherited from a predecessor, used by the next
    /// reconcile instead of binding anew.
    inherited: Mutex<HashMap<ListenKey, OwnedFd>>,
    relays: Arc<Relays>,
}

impl ProxyEngine {
    /// Must be called from within a tokio runtime.
    pub fn new(shared: Arc<Shared>, opts: ProxyOptions) -> Self {
        ProxyEngine {
            shared,
            opts: Arc::new(opts),
            rt: tokio::runtime::Handle::current(),
            listeners: Mutex::new(HashMap::new()),
            inherited: Mutex::new(HashMap::new()),
            relays: Arc::new(Relays::default()),
        }
    }

    /// Stop accepting (every listener closes; established relays go on).
    /// A later [`Engine::reconcile`] listens again.
    pub fn shutdown_listeners(&self) {
        for (_, l) in self.listeners.lock().drain() {
            l.cancel.cancel();
        }
    }

    /// Duplicates of every listening socket, for a successor process.
    pub fn listener_fds(&self) -> Vec<(ListenKey, OwnedFd)> {
        let mut v: Vec<_> = self
            .listeners
            .lock()
            .iter()
            .filter_map(|(k, l)| Some((*k, l.fd.as_ref()?.try_clone().ok()?)))
            .collect();
        v.sort_by_key(|(k, _)| *k);
        v
    }

    /// Listening sockets of a predecessor: the next [`Engine::reconcile`]
    /// serves these services on them (no new bind, no refused connection).
    pub fn adopt_listeners(&self, fds: Vec<(ListenKey, OwnedFd)>) {
        self.inherited.lock().extend(fds);
    }

    /// Stop the relays at a clean point (nothing read and not yet written)
    /// and return their sockets, for a successor process. Relays that end
    /// meanwhile are not returned. Listeners must have stopped first.
    pub async fn handover_relays(&self, deadline: Duration) -> Vec<RelayHandover> {
        self.relays.stop.lock().cancel();
        let end = tokio::time::Instant::now() + deadline;
        while self.relays.live.load(std::sync::atomic::Ordering::SeqCst) > 0
            && tokio::time::Instant::now() < end
        {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        std::mem::take(&mut *self.relays.out.lock())
    }

    /// After a failed handover: relay again what [`Self::handover_relays`]
    /// returned, in this process.
    pub fn resume_relays(&self, relays: Vec<RelayHandover>) -> usize {
        *self.relays.stop.lock() = CancellationToken::new();
        self.adopt_relays(relays)
    }

    /// Relays of a predecessor: go on relaying them, reported to the entries
    /// the predecessor's table handed over (looked up by client and VIP).
    pub fn adopt_relays(&self, relays: Vec<RelayHandover>) -> usize {
        let _guard = self.rt.enter();
        let mut n = 0;
        for r in relays {
            let to_stream = |fd: OwnedFd| -> io::Result<TcpStream> {
                let s = std::net::TcpStream::from(fd);
                s.set_nonblocking(true)?;
                TcpStream::from_std(s)
            };
            let (Ok(client), Ok(upstream)) = (to_stream(r.client), to_stream(r.upstream)) else {
                continue;
            };
            let conn = {
                let now = self.shared.now();
                self.shared
                    .ipvs
                    .lock()
                    .lookup(now, &syn_packet(r.peer, r.vip, TcpFlags::ACK))
                    .map_or(ConnRef::NONE, |c| c.conn)
            };
            let st = RelayStart {
                nat: r.nat,
                client_eof: r.client_eof,
                upstream_eof: r.upstream_eof,
                peer: r.peer,
                vip: r.vip,
            };
            let (shared, opts, relays) =
                (self.shared.clone(), self.opts.clone(), self.relays.clone());
            relays
                .live
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let guard = LiveGuard(relays);
            self.rt.spawn(async move {
                relay(client, upstream, conn, st, shared, opts, guard).await;
            });
            n += 1;
        }
        n
    }

    /// Services currently listened on.
    pub fn listening(&self) -> Vec<ListenKey> {
        let mut v: Vec<_> = self.listeners.lock().keys().copied().collect();
        v.sort();
        v
    }

    fn start(&self, key: ListenKey) -> io::Result<Listener> {
        let cancel = CancellationToken::new();
        let _guard = self.rt.enter();
        match key.proto {
            Protocol::Tcp => {
                let l = match self.inherited.lock().remove(&key) {
                    Some(fd) => {
                        let l = std::net::TcpListener::from(fd);
                        l.set_nonblocking(true)?;
                        TcpListener::from_std(l)?
                    }
                    None => tcp_listener(key.addr, self.opts.backlog)?,
                };
                let fd = l.as_fd().try_clone_to_owned().ok();
                let (shared, opts, c) = (self.shared.clone(), self.opts.clone(), cancel.clone());
                let relays = self.relays.clone();
                self.rt.spawn(accept_loop(l, shared, opts, c, relays));
                Ok(Listener { cancel, fd })
            }
            Protocol::Udp => {
                let s = match self.inherited.lock().remove(&key) {
                    Some(fd) => {
                        let s = std::net::UdpSocket::from(fd);
                        s.set_nonblocking(true)?;
                        UdpSocket::from_std(s)?
                    }
                    None => udp_socket(key.addr)?,
                };
                let fd = s.as_fd().try_clone_to_owned().ok();
                let (shared, c) = (self.shared.clone(), cancel.clone());
                self.rt.spawn(udp_loop(Arc::new(s), key.addr, shared, c));
                Ok(Listener { cancel, fd })
            }
            Protocol::Sctp => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "the proxy engine does not relay SCTP (use the packet engine)",
            )),
        }
    }
}

impl Engine for ProxyEngine {
    fn name(&self) -> &'static str {
        "proxy"
    }

    fn reconcile(&self, wanted: &[ListenKey]) {
        let mut ls = self.listeners.lock();
        ls.retain(|k, l| {
            let keep = wanted.contains(k);
            if !keep {
                info!(proto = k.proto.name(), vip = %k.addr, "proxy: stop listening");
                l.cancel.cancel();
            }
            keep
        });
        for k in wanted {
            if ls.contains_key(k) {
                continue;
            }
            match self.start(*k) {
                Ok(l) => {
                    info!(proto = k.proto.name(), vip = %k.addr, "proxy: listening");
                    ls.insert(*k, l);
                }
                Err(e) => {
                    DropCounters::inc(&self.shared.drops.bind_failed);
                    warn!(proto = k.proto.name(), vip = %k.addr, error = %e, "proxy: cannot listen");
                }
            }
        }
    }

    /// Relayed sockets carry no firewall marks: fwmark services are not
    /// served (warned once per process).
    fn reconcile_fwmarks(&self, marks: &[crate::FwmarkKey]) {
        static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        if !marks.is_empty() && !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
            warn!(
                services = marks.len(),
                "proxy: fwmark services are not served by the proxy engine; fwmark services need --engine packet"
            );
        }
    }

    fn shutdown(&self) {
        for (_, l) in self.listeners.lock().drain() {
            l.cancel.cancel();
        }
    }
}

fn domain(addr: &SocketAddr) -> Domain {
    if addr.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    }
}

/// Bind with IP_FREEBIND so the VIP need not exist yet.
fn bind_socket(addr: SocketAddr, ty: Type) -> io::Result<Socket> {
    let s = Socket::new(domain(&addr), ty, None)?;
    s.set_reuse_address(true)?;
    if addr.is_ipv4() {
        s.set_freebind_v4(true)?;
    } else {
        s.set_only_v6(true)?;
        s.set_freebind_v6(true)?;
    }
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    Ok(s)
}

fn tcp_listener(addr: SocketAddr, backlog: i32) -> io::Result<TcpListener> {
    let s = bind_socket(addr, Type::STREAM)?;
    s.listen(backlog)?;
    TcpListener::from_std(s.into())
}

fn udp_socket(addr: SocketAddr) -> io::Result<UdpSocket> {
    let s = bind_socket(addr, Type::DGRAM)?;
    UdpSocket::from_std(s.into())
}

fn is_resource_error(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE) | Some(libc::ENFILE) | Some(libc::ENOBUFS) | Some(libc::ENOMEM)
    )
}

async fn accept_loop(
    l: TcpListener,
    shared: Arc<Shared>,
    opts: Arc<ProxyOptions>,
    cancel: CancellationToken,
    relays: Arc<Relays>,
) {
    loop {
        let r = tokio::select! {
            _ = cancel.cancelled() => return,
            r = l.accept() => r,
        };
        match r {
            Ok((client, peer)) => {
                let (shared, opts, relays) = (shared.clone(), opts.clone(), relays.clone());
                relays
                    .live
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::spawn(async move {
                    serve_tcp(client, peer, shared, opts, relays).await;
                });
            }
            Err(e) if is_resource_error(&e) => {
                // Back-pressure: leave pending connections in the backlog.
                DropCounters::inc(&shared.drops.accept_resource);
                warn!(error = %e, "proxy: accept: out of resources, pausing");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => debug!(error = %e, "proxy: accept failed"),
        }
    }
}

/// Reports relay events of one TCP connection to the table, by the entry's
/// handle (no tuple lookup; a stale handle — the entry expired or was
/// flushed — is ignored, as IPVS ignores non-SYN packets without an entry).
struct TcpReporter {
    shared: Arc<Shared>,
    conn: ConnRef,
}

impl TcpReporter {
    fn report(&self, dir: Dir, flags: TcpFlags, payload: usize) {
        let len = (payload + 40).min(u32::MAX as usize) as u32;
        let now = self.shared.now();
        let _ = self
            .shared
            .ipvs
            .lock()
            .process_conn(now, self.conn, dir, flags, len);
    }
}

fn syn_packet(client: SocketAddr, vip: SocketAddr, flags: TcpFlags) -> Packet {
    Packet {
        fwmark: 0,
        proto: Protocol::Tcp,
        src: client,
        dst: vip,
        tcp_flags: flags,
        len: 60,
        dir: Dir::In,
    }
}

/// Schedule and connect, trying other destinations when connect() fails.
async fn connect_upstream(
    shared: &Arc<Shared>,
    opts: &ProxyOptions,
    client: SocketAddr,
    vip: SocketAddr,
) -> Option<(TcpStream, ConnRef, FwdMethod)> {
    let mut exclude: Vec<(IpAddr, u16)> = Vec::new();
    for _ in 0..opts.max_attempts.max(1) {
        let verdict = {
            let now = shared.now();
            let mut t = shared.ipvs.lock();
            t.process(now, &syn_packet(client, vip, TcpFlags::SYN), &exclude)
        };
        let (dest, fwd, conn) = match verdict {
            Verdict::Forward {
                dest, fwd, conn, ..
            } => (dest, fwd, conn),
            Verdict::NoDest => {
                DropCounters::inc(&shared.drops.no_dest);
                return None;
            }
            Verdict::Drop(_) => {
                DropCounters::inc(&shared.drops.table_drop);
                return None;
            }
            _ => {
                DropCounters::inc(&shared.drops.not_ours);
                return None;
            }
        };
        match tokio::time::timeout(opts.connect_timeout, TcpStream::connect(dest)).await {
            Ok(Ok(s)) => return Some((s, conn, fwd)),
            Ok(Err(e)) => debug!(%dest, error = %e, "proxy: connect failed"),
            Err(_) => debug!(%dest, "proxy: connect timed out"),
        }
        DropCounters::inc(&shared.drops.connect_failed);
        exclude.push((dest.ip(), dest.port()));
        // The attempt is over: close its entry as a client RST would, and
        // drop it so the next SYN is scheduled afresh.
        let now = shared.now();
        let mut t = shared.ipvs.lock();
        let _ = t.process(now, &syn_packet(client, vip, TcpFlags::RST), &[]);
        t.expire_conn(now, Protocol::Tcp, client, vip);
    }
    DropCounters::inc(&shared.drops.connect_gave_up);
    None
}

/// Counts a relay task as live while it runs (see [`Relays`]).
struct LiveGuard(Arc<Relays>);

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0
            .live
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

async fn serve_tcp(
    client: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    opts: Arc<ProxyOptions>,
    relays: Arc<Relays>,
) {
    let guard = LiveGuard(relays);
    let vip = match client.local_addr() {
        Ok(a) => a,
        Err(_) => return,
    };
    let Some((upstream, conn, fwd)) = connect_upstream(&shared, &opts, peer, vip).await else {
        // Close with RST, as the client would see from a dead service.
        let _ = SockRef::from(&client).set_linger(Some(Duration::ZERO));
        return;
    };
    if opts.nodelay {
        let _ = client.set_nodelay(true);
        let _ = upstream.set_nodelay(true);
    }
    TcpReporter {
        shared: shared.clone(),
        conn,
    }
    .report(Dir::In, TcpFlags::ACK, 0);
    let st = RelayStart {
        nat: fwd == FwdMethod::Masq,
        client_eof: false,
        upstream_eof: false,
        peer,
        vip,
    };
    relay(client, upstream, conn, st, shared, opts, guard).await;
}

/// Where a relay starts: fresh, or where a predecessor process stopped it.
struct RelayStart {
    nat: bool,
    client_eof: bool,
    upstream_eof: bool,
    peer: SocketAddr,
    vip: SocketAddr,
}

/// Relay bytes both ways until both sides are done, reporting to the entry
/// `conn`; on a handover request stop at a clean point and hand the two
/// sockets to [`ProxyEngine::handover_relays`].
async fn relay(
    client: TcpStream,
    upstream: TcpStream,
    conn: ConnRef,
    st: RelayStart,
    shared: Arc<Shared>,
    opts: Arc<ProxyOptions>,
    guard: LiveGuard,
) {
    let stop = guard.0.stop.lock().clone();
    let rep = TcpReporter {
        shared: shared.clone(),
        conn,
    };
    let (idle_in, idle_fin) = {
        let (tcp, tcpfin, _) = shared.ipvs.lock().timeouts();
        (
            Duration::from_secs(tcp.max(1) as u64),
            Duration::from_secs(tcpfin.max(1) as u64),
        )
    };
    let nat = st.nat;
    let act = Activity::new(idle_in, idle_fin);
    if st.client_eof || st.upstream_eof {
        act.saw_fin();
    }
    let (mut cr, mut cw) = client.into_split();
    let (mut ur, mut uw) = upstream.into_split();
    let up = async {
        if st.client_eof {
            return Ok(PumpEnd::Eof);
        }
        pump(
            &mut cr,
            &mut uw,
            opts.buffer_size,
            &act,
            &stop,
            |ev| match ev {
                PumpEvent::Data(n) => rep.report(Dir::In, TcpFlags::ACK | TcpFlags::PSH, n),
                PumpEvent::Eof => rep.report(Dir::In, TcpFlags::FIN | TcpFlags::ACK, 0),
            },
        )
        .await
    };
    let down = async {
        if st.upstream_eof {
            return Ok(PumpEnd::Eof);
        }
        pump(&mut ur, &mut cw, opts.buffer_size, &act, &stop, |ev| {
            if nat {
                match ev {
                    PumpEvent::Data(n) => rep.report(Dir::Out, TcpFlags::ACK | TcpFlags::PSH, n),
                    PumpEvent::Eof => rep.report(Dir::Out, TcpFlags::FIN | TcpFlags::ACK, 0),
                }
            }
        })
        .await
    };
    let (a, b) = tokio::join!(up, down);
    if let (Ok(ea), Ok(eb)) = (&a, &b) {
        if *ea == PumpEnd::Handover || *eb == PumpEnd::Handover {
            if let (Ok(c), Ok(u)) = (cr.reunite(cw), ur.reunite(uw)) {
                if let (Ok(c), Ok(u)) = (c.into_std(), u.into_std()) {
                    guard.0.out.lock().push(RelayHandover {
                        client: c.into(),
                        upstream: u.into(),
                        peer: st.peer,
                        vip: st.vip,
                        nat,
                        client_eof: *ea == PumpEnd::Eof,
                        upstream_eof: *eb == PumpEnd::Eof,
                    });
                }
            }
            return;
        }
    }
    for r in [a, b] {
        match r {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                DropCounters::inc(&shared.drops.idle_timeout);
                rep.report(Dir::In, TcpFlags::RST, 0);
            }
            Err(_) => {
                DropCounters::inc(&shared.drops.relay_error);
                rep.report(Dir::In, TcpFlags::RST, 0);
            }
        }
    }
}

/// Why a pump stopped without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PumpEnd {
    /// The reader closed its side (the writer was shut down).
    Eof,
    /// Stopped for a handover, at a clean point.
    Handover,
}

enum PumpEvent {
    Data(usize),
    Eof,
}

/// When a relayed connection last carried data, in either direction.
///
/// An IPVS connection's timer is refreshed by every packet of either
/// direction, so a long download keeps the connection alive although the
/// client sends nothing the proxy can see. Both pumps share one `Activity`;
/// each arms one timer that is re-armed only when it fires (not per read).
/// Once either side has sent FIN the idle limit drops to the FIN timeout
/// (`--set`'s tcpfin), as the IPVS entry moves to FIN_WAIT / CLOSE_WAIT.
struct Activity {
    base: tokio::time::Instant,
    last_ms: std::sync::atomic::AtomicU64,
    fin: std::sync::atomic::AtomicBool,
    idle: Duration,
    idle_fin: Duration,
}

impl Activity {
    fn new(idle: Duration, idle_fin: Duration) -> Self {
        Activity {
            base: tokio::time::Instant::now(),
            last_ms: Default::default(),
            fin: Default::default(),
            idle,
            idle_fin,
        }
    }

    fn touch(&self) {
        let ms = self.base.elapsed().as_millis() as u64;
        self.last_ms.store(ms, std::sync::atomic::Ordering::Relaxed);
    }

    fn saw_fin(&self) {
        self.fin.store(true, std::sync::atomic::Ordering::Relaxed);
        self.touch();
    }

    /// When the connection counts as idle if nothing happens before.
    fn deadline(&self) -> tokio::time::Instant {
        let last = Duration::from_millis(self.last_ms.load(std::sync::atomic::Ordering::Relaxed));
        let limit = if self.fin.load(std::sync::atomic::Ordering::Relaxed) {
            self.idle_fin
        } else {
            self.idle
        };
        self.base + last + limit
    }
}

/// Copy one direction; half-close the writer on EOF.
///
/// The buffer is allocated once and not zeroed (`read_buf` fills its spare
/// capacity).
async fn pump<R, W, F>(
    r: &mut R,
    w: &mut W,
    bufsize: usize,
    act: &Activity,
    stop: &CancellationToken,
    mut on: F,
) -> io::Result<PumpEnd>
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
    F: FnMut(PumpEvent),
{
    let mut buf: Vec<u8> = Vec::with_capacity(bufsize.max(1024));
    let timer = tokio::time::sleep_until(act.deadline());
    tokio::pin!(timer);
    loop {
        buf.clear();
        let n = tokio::select! {
            biased;
            _ = stop.cancelled() => return Ok(PumpEnd::Handover),
            r = r.read_buf(&mut buf) => r?,
            _ = &mut timer => {
                let deadline = act.deadline();
                if deadline > tokio::time::Instant::now() {
                    timer.as_mut().reset(deadline);
                    continue;
                }
                return Err(io::ErrorKind::TimedOut.into());
            }
        };
        if n == 0 {
            act.saw_fin();
            on(PumpEvent::Eof);
            let _ = w.shutdown().await;
            return Ok(PumpEnd::Eof);
        }
        act.touch();
        on(PumpEvent::Data(n));
        w.write_all(&buf[..n]).await?;
    }
}

// ---------------------------------------------------------------- UDP ----

struct UdpFlow {
    upstream: Arc<UdpSocket>,
}

type FlowMap = Arc<Mutex<HashMap<(SocketAddr, SocketAddr), Arc<UdpFlow>>>>;

fn udp_packet(src: SocketAddr, dst: SocketAddr, payload: usize, dir: Dir) -> Packet {
    Packet {
        fwmark: 0,
        proto: Protocol::Udp,
        src,
        dst,
        tcp_flags: TcpFlags::default(),
        len: (payload + 28).min(u32::MAX as usize) as u32,
        dir,
    }
}

async fn udp_loop(
    sock: Arc<UdpSocket>,
    vip: SocketAddr,
    shared: Arc<Shared>,
    cancel: CancellationToken,
) {
    let flows: FlowMap = Arc::new(Mutex::new(HashMap::new()));
    let mut buf = vec![0u8; 65536];
    loop {
        let (n, client) = tokio::select! {
            _ = cancel.cancelled() => return,
            r = sock.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(e) => { debug!(error = %e, "proxy: udp recv failed"); continue; }
            },
        };
        let verdict = {
            let now = shared.now();
            let mut t = shared.ipvs.lock();
            // the datagram is the payload a persistence engine reads
            let payload = buf.get(..n).unwrap_or(&[]);
            t.process_payload(now, &udp_packet(client, vip, n, Dir::In), &[], payload)
        };
        let (dest, fwd, conn) = match verdict {
            Verdict::Forward {
                dest, fwd, conn, ..
            } => (dest, fwd, conn),
            Verdict::NoDest => {
                DropCounters::inc(&shared.drops.no_dest);
                continue;
            }
            Verdict::Drop(_) => {
                DropCounters::inc(&shared.drops.table_drop);
                continue;
            }
            _ => {
                DropCounters::inc(&shared.drops.not_ours);
                continue;
            }
        };
        let existing = flows.lock().get(&(client, dest)).cloned();
        let flow = match existing {
            Some(f) => f,
            None => match new_udp_flow(&sock, &flows, &shared, client, dest, fwd, conn).await {
                Ok(f) => f,
                Err(e) => {
                    DropCounters::inc(&shared.drops.connect_failed);
                    debug!(%dest, error = %e, "proxy: udp upstream failed");
                    continue;
                }
            },
        };
        if let Err(e) = flow.upstream.send(&buf[..n]).await {
            DropCounters::inc(&shared.drops.relay_error);
            debug!(%dest, error = %e, "proxy: udp send failed");
        }
    }
}

async fn new_udp_flow(
    listen: &Arc<UdpSocket>,
    flows: &FlowMap,
    shared: &Arc<Shared>,
    client: SocketAddr,
    dest: SocketAddr,
    fwd: FwdMethod,
    conn: ConnRef,
) -> io::Result<Arc<UdpFlow>> {
    let any: SocketAddr = if dest.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let up = UdpSocket::bind(any).await?;
    up.connect(dest).await?;
    let flow = Arc::new(UdpFlow {
        upstream: Arc::new(up),
    });
    flows.lock().insert((client, dest), flow.clone());
    let (listen, flows, shared, upstream) = (
        listen.clone(),
        flows.clone(),
        shared.clone(),
        flow.upstream.clone(),
    );
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65536];
        loop {
            let idle = Duration::from_secs(shared.ipvs.lock().timeouts().2.max(1) as u64);
            match tokio::time::timeout(idle, upstream.recv(&mut buf)).await {
                Ok(Ok(n)) => {
                    if fwd == FwdMethod::Masq {
                        let now = shared.now();
                        let _ = shared.ipvs.lock().process(
                            now,
                            &udp_packet(dest, client, n, Dir::Out),
                            &[],
                        );
                    }
                    let _ = listen.send_to(&buf[..n], client).await;
                }
                Ok(Err(_)) => {
                    // ICMP unreachable from the real server: end this
                    // association; the next datagram opens a fresh one.
                    // With NAT the director would have translated that
                    // error and counted it (handle_response_icmp): one
                    // outbound packet of IP + ICMP + the quoted IP/UDP
                    // headers.
                    DropCounters::inc(&shared.drops.relay_error);
                    if fwd == FwdMethod::Masq {
                        let now = shared.now();
                        let _ = shared.ipvs.lock().count_related(now, conn, Dir::Out, 56);
                    }
                    break;
                }
                Err(_) => break,
            }
        }
        flows.lock().remove(&(client, dest));
    });
    Ok(flow)
}
