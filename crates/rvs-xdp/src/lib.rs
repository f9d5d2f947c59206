//! # rvs-xdp — LVS forwarding (DR, NAT, TUN) on AF_XDP
//!
//! [`XdpEngine`] implements [`rvs_dataplane::Engine`] like
//! `rvs_packet::PacketEngine`, but receives and transmits on AF_XDP sockets
//! (one per RX queue of the interface, copy mode, one thread each) instead
//! of an AF_PACKET ring that sees every frame:
//!
//! * A hard-coded XDP program ([`bpf::program`], loaded by a minimal
//!   `bpf()` syscall loader: no ELF, no libbpf, no new dependency) steals
//!   only (a) unfragmented IPv4 TCP/UDP/SCTP to a served VIP:port and (b) for
//!   NAT services, packets *from* a real server's addr:port that are not
//!   addressed to the director itself. Everything else — ARP, ICMP, IPv6,
//!   fragments, the director's own traffic — is `XDP_PASS`ed to the kernel.
//!   The program is attached with a BPF link (generic/SKB mode by default,
//!   which works on veth), so it is detached when the engine is dropped or
//!   the process dies.
//! * Frames are rewritten **in place in the UMEM** with the same
//!   `rvs_packet::fwd` functions as the AF_PACKET engine (DR: MACs + TTL;
//!   NAT: DNAT/SNAT with incremental checksums) and put straight on the TX
//!   ring: no copy in user space. TUN encapsulation and ICMP errors are
//!   built in a buffer and copied into a free frame.
//! * The model is the shared [`rvs_core::Ipvs`]: one `process()` per
//!   packet that may change its connection, so states and counters are the
//!   same as with the other engines. Packets of steady flows (TCP without
//!   SYN/FIN/RST of an ESTABLISHED entry, UDP) are forwarded from the
//!   queue thread's own [`rvs_packet::flowcache::FlowCache`] without the
//!   table lock and accounted in bulk; a batch locks the table at most
//!   once, and only if one of its packets is not a cached steady flow
//!   (see "Queues and threads").
//! * Next hops: `/proc/net/route`; MACs: `rvs_packet::neigh::ArpCache`,
//!   seeded from `/proc/net/arp` every second and learning from an
//!   ARP-only AF_PACKET socket (ARP itself stays with the kernel); misses
//!   park the frame and send an ARP request on the XSK.
//! * The nftables guard table of `rvs_packet::nft` is installed too (by
//!   default), as a safety net for what the program passes (fragments).
//!
//! ## Queues and threads
//! One AF_XDP socket, UMEM and thread per RX queue (`XdpOptions::queues`,
//! `--queues N`; default: every RX queue of the interface); the program
//! redirects a packet to the socket of the queue it arrived on. Per batch
//! (up to `batch` descriptors) a thread classifies the frames, looks each
//! flow up in its flow cache (`FlowCache::hit`) and, from the first packet
//! that needs the table, takes the `Ipvs` lock once for the rest of the
//! batch (`take` → `process` → `learn`, in packet order); then it rewrites
//! and transmits. Every 100 ms (also when idle, from the 50 ms poll
//! timeout) and on exit it hands its cached packet/byte counts to the
//! table (`flush`), so `--stats`, the timers and ActiveConn/InActConn stay
//! those of the kernel; a configuration change drops the cached verdicts
//! at the next flush. Next-hop MACs come from the shared ARP cache at most
//! once per 100 ms per next hop and thread (a per-thread memo; the shared
//! cache still decides when to re-request), routes are per thread; queue
//! 0 also runs the shared periodic work (maps, ARP seeding and timers).
//! What stays shared on the fast path is atomic counters and, per batch,
//! the read lock of the wanted-services set. The `cache_*` engine counters (and
//! [`XdpEngine::queue_stats`], per queue: rx, cache hits / misses;
//! printed by `rvs-xdp-lvs` when it stops) show how the traffic was
//! spread and how much of it skipped the lock.
//!
//! Which queue a packet reaches is the NIC's RSS. On a **veth** it is the
//! TX queue the peer picked (flow hash) and kept in `skb->queue_mapping`:
//! in native mode the peer's TX queue q feeds RX queue q; in generic mode
//! `netif_get_rxqueue()` reads `queue_mapping` as a recorded RX queue
//! (`queue_mapping − 1`, 0 = none), so TX queues 0 and 1 both land on RX
//! queue 0 and q ≥ 2 on q − 1. Measured on 6.18 (veth with 2 RX queues,
//! `--queues 2`, wrk with 32 connections): peer with 2 TX queues, generic
//! → queue 0 rx 41708, queue 1 rx 0; peer with 3 TX queues, generic →
//! 40266 / 16716; peer with 2 TX queues, native → 17786 / 25751. The lab
//! test `multi_queue` runs both modes.
//!
//! ## Packets larger than a UMEM frame (GSO/GRO aggregates)
//! veth/virtio peers with TSO/GSO on (the default) hand the director TCP
//! aggregates of up to 64 KiB: a client uploading a large body through a
//! DR service sends almost nothing else. One copy-mode RX descriptor holds
//! [`xsk::RX_FRAME_LEN`] (2048 − 256) bytes. The sockets are bound with
//! `XDP_USE_SG` and the program is loaded with `BPF_F_XDP_HAS_FRAGS`
//! (AF_XDP multi-buffer, kernel ≥ 6.6), so such a packet arrives as a
//! chain of descriptors (`XDP_PKT_CONTD`). The worker copies the chain
//! into one buffer, asks the model once (InPkts/InBytes count the
//! aggregate, as IPVS counts a GSO skb) and, for TCP larger than the MTU
//! (or, for TUN, than the tunnel's inner MTU), segments it in software
//! with `rvs_packet::fwd::segment_tcp` (full IP/TCP checksums), then
//! forwards and transmits every segment by copy (DR, NAT both ways, TUN;
//! `dr`/`nat_in`/`nat_out`/`tun` count segments). Aggregates between the
//! MTU and one frame (not chained) take the same path. Other protocols
//! that do not fit get ICMP "fragmentation needed" (client → VIP with DF)
//! or are counted in `too_big`.
//!
//! What happens without multi-buffer (measured on 6.18, generic XDP on
//! veth; also `--no-multi-buffer` / `XskConf::multi_buffer = false`): the
//! generic hook linearises the GSO skb, the program redirects it, the XSK
//! refuses it (`xdp_redirect_err` with `-ENOSPC`, XSK `rx_dropped`) and
//! the skb is freed with drop reason `XDP`; the interface counters show
//! nothing. The client's TCP only progresses through retransmissions of
//! single segments: a 1 MiB upload took ~29 s instead of ~25 ms. If the
//! kernel refuses `XDP_USE_SG` (`EINVAL` before 6.6, `EOPNOTSUPP` from a
//! zero-copy driver without it) the socket is reopened without it, a
//! warning is logged once and [`XdpEngine::multi_buffer`] is `false`; the
//! kernel's `rx_dropped` (read every second with `XDP_STATISTICS`) is then
//! added to the `truncated` counter (it also counts packets dropped for
//! want of a free frame). If only `BPF_F_XDP_HAS_FRAGS` is refused, the program
//! is loaded without it and a warning logged (generic mode should still
//! deliver chains: the kernel linearises and the XSK splits the copy —
//! not exercised by the tests).
//!
//! ## Performance (veth lab, 2 shared cores, generic XDP, copy mode)
//! `tests/lab.rs` `throughput` / `pps` (ignored by default) compare with
//! the AF_PACKET engine. wrk keep-alive through DR: ~1.1–1.2× the req/s
//! and ~1.2–1.35× less engine CPU per request; 64-byte UDP: both engines
//! forward everything trafgen offers (~0.25–0.29 Mpps). A profile of the
//! XDP engine thread under the UDP flood is 84 % kernel (`sendto` →
//! `__xsk_generic_xmit` → veth → bridge → the real server's netfilter,
//! all run in the engine's context) and 14 % user space, so on veth the
//! lab cannot show the 2× target of issue 9; native mode / zero copy on a
//! real NIC is where the difference is expected.
//!
//! ## Limits (this version)
//! IPv4 only (IPv6 VIP traffic is passed to the kernel and not served);
//! connection setup (SYN, FIN, RST, the first packets of a flow) still
//! takes the one table lock, so it does not scale with queues; a cached
//! flow keeps its destination for up to one flush interval (100 ms) after
//! the destination is deleted; on veth in generic mode the last RX queue
//! only gets traffic if the peer has more TX queues than we have RX
//! queues (see above);
//! aggregates are copied out of the UMEM and segmented in user space (no
//! multi-buffer TX, so nothing larger than one 2048-byte frame is sent);
//! an aggregate is indistinguishable from a plain packet when it fits the
//! MTU, so for TUN one between the tunnel's inner MTU and the MTU gets
//! "fragmentation needed" like a plain full-size packet; multi-buffer is
//! tested in generic mode on veth only (native mode needs a driver with
//! XDP multi-buffer); ICMP errors related to connections are left to the
//! kernel (not forwarded); UDP larger than the MTU is not fragmented. On
//! virtual links a sender's partial (offloaded) transport checksum is
//! completed in software when the received checksum does not verify.

pub mod bpf;
pub mod xsk;

use parking_lot::{Mutex, RwLock};
use rvs_core::{Dir, FwdMethod, Protocol, TcpFlags, TunCsum, TunType, Verdict};
use rvs_dataplane::{Engine, ListenKey, Shared};
use rvs_packet::flowcache::{CacheStats, FlowCache, FlowKey};
use rvs_packet::fwd::{self, Classified, Fail, Flow, TunParams};
use rvs_packet::neigh::{self, Actions, ArpCache, Route};
pub use rvs_packet::EngineStats;
use rvs_packet::{nft, sys};
use rvs_wire::ethernet::Address as Mac;
use rvs_wire::icmpv4;
use std::collections::{HashMap, HashSet};
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How the XDP program is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XdpMode {
    /// Generic XDP (`XDP_FLAGS_SKB_MODE`): any device, veth included.
    Skb,
    /// Native (driver) XDP.
    Native,
}

/// Engine options.
#[derive(Debug, Clone)]
pub struct XdpOptions {
    /// The director's interface.
    pub interface: String,
    /// Name of the nftables guard table (`inet <name>`).
    pub nft_table: String,
    /// Install the nftables guard table.
    pub nft: bool,
    /// sysctl `pmtu_disc` (copy DF to the outer header of tunnels).
    pub pmtu_disc: bool,
    /// Attach mode of the XDP program.
    pub mode: XdpMode,
    /// Socket / UMEM geometry.
    pub xsk: xsk::XskConf,
    /// Frames taken from the RX ring per batch (at most one model lock
    /// per batch, none if every packet is a cached steady flow).
    pub batch: usize,
    /// RX queues to serve (default: all of the interface's RX queues, one
    /// thread each).
    pub queues: Option<u32>,
}

impl XdpOptions {
    /// Defaults for `interface`.
    pub fn new(interface: &str) -> XdpOptions {
        XdpOptions {
            interface: interface.to_string(),
            nft_table: "rvs".into(),
            nft: true,
            pmtu_disc: true,
            mode: XdpMode::Skb,
            xsk: xsk::XskConf::default(),
            batch: 64,
            queues: None,
        }
    }
}

#[derive(Debug, Default)]
struct Wanted {
    set: HashSet<(Protocol, SocketAddrV4)>,
    vips: HashSet<Ipv4Addr>,
    keys: Vec<(Protocol, SocketAddr)>,
}

struct Maps {
    svc: bpf::Map,
    local: bpf::Map,
    /// Keys currently in `svc` / `local`.
    svc_keys: Mutex<HashSet<bpf::SvcKey>>,
    local_keys: Mutex<HashSet<Ipv4Addr>>,
}

/// Counters of one RX queue (its thread).
#[derive(Debug, Default)]
struct QueueCounters {
    rx: AtomicU64,
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
}

/// What one RX queue's thread handled (see [`XdpEngine::queue_stats`]).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct QueueStats {
    /// RX queue id.
    pub queue: u32,
    /// Packets taken from the queue's AF_XDP socket (a descriptor chain
    /// counts once).
    pub rx: u64,
    /// Packets forwarded from the thread's flow cache (no table lock).
    pub cache_hits: u64,
    /// Cacheable packets that went to the table.
    pub cache_misses: u64,
}

struct Inner {
    shared: Arc<Shared>,
    opts: XdpOptions,
    wanted: RwLock<Arc<Wanted>>,
    stop: AtomicBool,
    stats: EngineStats,
    /// Per RX queue, indexed like the threads.
    queues: Vec<QueueCounters>,
    nft: Mutex<Option<nft::NftTable>>,
    arp: Mutex<ArpCache>,
    maps: Maps,
}

fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl Inner {
    fn nat_dests(&self) -> Vec<(Protocol, SocketAddr)> {
        rvs_packet::nat_dests(&self.shared.ipvs.lock())
    }

    /// Bring the BPF maps and the nft table in line with the wanted
    /// services, the NAT destinations and our addresses.
    fn sync(&self, addrs: &[(Ipv4Addr, u8)]) {
        let wanted = self.wanted.read().clone();
        let nat = self.nat_dests();
        let mut want: HashSet<bpf::SvcKey> = HashSet::new();
        for (p, a) in &wanted.set {
            want.insert(bpf::SvcKey {
                addr: a.ip().octets(),
                port: a.port().to_be_bytes(),
                proto: p.number(),
                dir: 0,
            });
        }
        for (p, a) in &nat {
            if let SocketAddr::V4(a) = a {
                want.insert(bpf::SvcKey {
                    addr: a.ip().octets(),
                    port: a.port().to_be_bytes(),
                    proto: p.number(),
                    dir: 1,
                });
            }
        }
        {
            let mut have = self.maps.svc_keys.lock();
            for k in have.difference(&want) {
                let _ = self.maps.svc.del_svc(k);
            }
            for k in want.difference(&have) {
                if let Err(e) = self.maps.svc.put_svc(k) {
                    tracing::warn!(error = %e, "xdp: svc map update failed");
                }
            }
            *have = want;
        }
        {
            let want: HashSet<Ipv4Addr> = addrs.iter().map(|(a, _)| *a).collect();
            let mut have = self.maps.local_keys.lock();
            for a in have.difference(&want) {
                let _ = self.maps.local.delete(&a.octets());
            }
            for a in want.difference(&have) {
                let _ = self.maps.local.update(&a.octets(), &[1u8]);
            }
            *have = want;
        }
        let mut g = self.nft.lock();
        if let Some(t) = g.as_mut() {
            if let Err(e) = t.apply(&wanted.keys, &nat) {
                tracing::warn!(error = %e, "installing the nftables table failed");
            }
        }
    }
}

/// The AF_XDP engine. Dropping it (or [`Engine::shutdown`]) stops the
/// threads, detaches the XDP program and removes the nftables table.
pub struct XdpEngine {
    inner: Arc<Inner>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    link: Mutex<Option<bpf::Link>>,
    queues: u32,
    multi_buffer: bool,
}

/// Facts about the interface.
#[derive(Debug, Clone)]
struct IfInfo {
    name: String,
    mac: Mac,
    mtu: u16,
    addrs: Vec<(Ipv4Addr, u8)>,
}

/// Number of RX queues of `iface` (from sysfs; 1 if unknown).
pub fn rx_queues(iface: &str) -> u32 {
    std::fs::read_dir(format!("/sys/class/net/{iface}/queues"))
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with("rx-"))
                .count() as u32
        })
        .unwrap_or(1)
        .max(1)
}

impl XdpEngine {
    /// Create the maps and sockets, load and attach the XDP program and
    /// start one thread per RX queue. Needs CAP_NET_ADMIN, CAP_NET_RAW and
    /// CAP_BPF (root).
    pub fn new(shared: Arc<Shared>, opts: XdpOptions) -> io::Result<XdpEngine> {
        let ifindex = sys::if_index(&opts.interface)?;
        let info = IfInfo {
            name: opts.interface.clone(),
            mac: sys::if_mac(&opts.interface)?,
            mtu: sys::if_mtu(&opts.interface)?.min(u32::from(u16::MAX)) as u16,
            addrs: sys::if_ipv4_addrs(&opts.interface)?,
        };
        let nq = opts
            .queues
            .unwrap_or_else(|| rx_queues(&opts.interface))
            .max(1);
        let svc = bpf::Map::hash(8, 1, 4096)?;
        let local = bpf::Map::hash(4, 1, 256)?;
        let xsks = bpf::Map::xsk(nq)?;
        let mut socks = Vec::with_capacity(nq as usize);
        for q in 0..nq {
            let s = xsk::Xsk::open(ifindex, q, opts.xsk).map_err(|e| {
                io::Error::new(e.kind(), format!("AF_XDP socket on queue {q}: {e}"))
            })?;
            xsks.update(&q.to_ne_bytes(), &(s.raw_fd() as u32).to_ne_bytes())?;
            socks.push(s);
        }
        let arp_sock = xsk::ArpSocket::open(ifindex)?;
        let insns = bpf::program(svc.raw_fd(), local.raw_fd(), xsks.raw_fd());
        let mut multi_buffer = socks.iter().all(|s| s.multi_buffer());
        if opts.xsk.multi_buffer && !multi_buffer {
            tracing::warn!(
                interface = %opts.interface,
                "xdp: AF_XDP multi-buffer (XDP_USE_SG) refused; packets larger than \
                 a UMEM frame (GSO/GRO aggregates) are dropped by the kernel \
                 (counted in truncated)"
            );
        }
        // A frags-aware program ("xdp.frags") gets GSO skbs (generic mode)
        // or multi-buffer frames (native) without linearising them.
        let prog = if multi_buffer {
            match bpf::Program::load_xdp_flags(&insns, bpf::BPF_F_XDP_HAS_FRAGS) {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(
                        error = %e,
                        "xdp: loading the program with BPF_F_XDP_HAS_FRAGS failed; \
                         loading it without (large packets are linearised in \
                         generic mode, dropped in native mode)"
                    );
                    multi_buffer = opts.mode == XdpMode::Skb;
                    bpf::Program::load_xdp(&insns)?
                }
            }
        } else {
            bpf::Program::load_xdp(&insns)?
        };
        let flags = match opts.mode {
            XdpMode::Skb => bpf::XDP_FLAGS_SKB_MODE,
            XdpMode::Native => bpf::XDP_FLAGS_DRV_MODE,
        };
        let link = prog
            .attach_xdp(ifindex, flags)
            .map_err(|e| io::Error::new(e.kind(), format!("attaching XDP program: {e}")))?;
        let nft = opts
            .nft
            .then(|| nft::NftTable::new(&opts.nft_table, &opts.interface));
        let inner = Arc::new(Inner {
            shared,
            opts,
            wanted: RwLock::new(Arc::new(Wanted::default())),
            stop: AtomicBool::new(false),
            stats: EngineStats::default(),
            queues: (0..nq).map(|_| QueueCounters::default()).collect(),
            nft: Mutex::new(nft),
            arp: Mutex::new(ArpCache::new()),
            maps: Maps {
                svc,
                local,
                svc_keys: Mutex::new(HashSet::new()),
                local_keys: Mutex::new(HashSet::new()),
            },
        });
        inner.sync(&info.addrs);
        if let Ok(t) = std::fs::read_to_string("/proc/net/arp") {
            inner
                .arp
                .lock()
                .seed(&neigh::parse_proc_arp(&t, &info.name), Instant::now());
        }
        let mut threads = Vec::with_capacity(nq as usize);
        let mut arp_sock = Some(arp_sock);
        for (id, sock) in socks.into_iter().enumerate() {
            let (i2, info) = (inner.clone(), info.clone());
            let a = arp_sock.take();
            let t = std::thread::Builder::new()
                .name(format!("rvs-xdp-{id}"))
                .spawn(move || Worker::new(id, i2, sock, a, info).run())?;
            threads.push(t);
        }
        // The program (fd) can go: the link keeps it attached.
        drop(prog);
        // xsks must outlive the program: it is referenced by it, and the
        // kernel holds its own reference, so dropping our fd is fine.
        drop(xsks);
        Ok(XdpEngine {
            inner,
            threads: Mutex::new(threads),
            link: Mutex::new(Some(link)),
            queues: nq,
            multi_buffer,
        })
    }

    /// Engine counters.
    pub fn stats(&self) -> &EngineStats {
        &self.inner.stats
    }

    /// RX queues served (one AF_XDP socket and thread each).
    pub fn queues(&self) -> u32 {
        self.queues
    }

    /// Per RX queue counters (how the NIC — or veth — spread the traffic
    /// over the threads). Cache counts are published once per batch and
    /// on the periodic tick; after [`Engine::shutdown`] they are final.
    pub fn queue_stats(&self) -> Vec<QueueStats> {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        self.inner
            .queues
            .iter()
            .enumerate()
            .map(|(q, c)| QueueStats {
                queue: q as u32,
                rx: g(&c.rx),
                cache_hits: g(&c.cache_hits),
                cache_misses: g(&c.cache_misses),
            })
            .collect()
    }

    /// Packets larger than a UMEM frame are received (AF_XDP
    /// multi-buffer) and forwarded; `false` after a fallback (or with
    /// `xsk.multi_buffer` off): the kernel drops them.
    pub fn multi_buffer(&self) -> bool {
        self.multi_buffer
    }
}

impl Engine for XdpEngine {
    fn name(&self) -> &'static str {
        "xdp"
    }

    fn reconcile(&self, wanted: &[ListenKey]) {
        let mut w = Wanted::default();
        for k in wanted {
            if let SocketAddr::V4(a) = k.addr {
                w.set.insert((k.proto, a));
                w.vips.insert(*a.ip());
                w.keys.push((k.proto, k.addr));
            } else {
                tracing::warn!(service = %k.addr, "xdp engine: IPv6 services are not served");
            }
        }
        w.keys.sort();
        *self.inner.wanted.write() = Arc::new(w);
        let addrs = sys::if_ipv4_addrs(&self.inner.opts.interface).unwrap_or_default();
        self.inner.sync(&addrs);
    }

    /// Not served: the XDP hook runs before tc/netfilter ingress, so no
    /// packet has a mark yet, and fwmark traffic is left to the kernel
    /// (warned once per process). Use `--engine packet` for fwmark
    /// services.
    fn reconcile_fwmarks(&self, marks: &[rvs_dataplane::FwmarkKey]) {
        static WARNED: AtomicBool = AtomicBool::new(false);
        if !marks.is_empty() && !WARNED.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                services = marks.len(),
                "xdp engine: fwmark services are not served; fwmark services need --engine packet"
            );
        }
    }

    fn shutdown(&self) {
        self.inner.stop.store(true, Ordering::Relaxed);
        for t in self.threads.lock().drain(..) {
            let _ = t.join();
        }
        self.link.lock().take();
        if let Some(mut t) = self.inner.nft.lock().take() {
            t.remove();
        }
    }
}

impl Drop for XdpEngine {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// One's-complement check of the transport checksum of the IPv4 packet
/// (TCP, or UDP with a non-zero checksum). `true` if it verifies (or is
/// not checked).
fn l4_checksum_ok(frame: &[u8], fl: &Flow) -> bool {
    let end = fl.l3 + usize::from(fl.l3_len);
    let Some(seg) = frame.get(fl.l4..end) else {
        return true;
    };
    let proto = fl.proto.number();
    if proto == 132 {
        return true;
    }
    if proto == 17 && seg.len() >= 8 && seg[6] == 0 && seg[7] == 0 {
        return true;
    }
    let mut s: u64 = 0;
    for a in [fl.src.ip().octets(), fl.dst.ip().octets()] {
        s += u64::from(u16::from_be_bytes([a[0], a[1]]));
        s += u64::from(u16::from_be_bytes([a[2], a[3]]));
    }
    s += u64::from(proto);
    s += seg.len() as u64;
    let mut ch = seg.chunks_exact(2);
    for c in &mut ch {
        s += u64::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [b] = ch.remainder() {
        s += u64::from(*b) << 8;
    }
    while s >> 16 != 0 {
        s = (s & 0xffff) + (s >> 16);
    }
    s == 0xffff
}

/// Where a packet being handled is.
enum Src {
    /// In one UMEM frame (rewritten in place).
    Umem(xsk::Desc),
    /// Reassembled from a multi-buffer descriptor chain (larger than a
    /// frame: a GSO/GRO aggregate).
    Buf(Vec<u8>),
}

struct Job {
    src: Src,
    fl: Flow,
    dir: Dir,
}

/// Largest reassembled packet accepted from a descriptor chain: a GSO
/// aggregate is at most 64 KiB of IP (larger ones, BIG TCP, have no IPv4
/// total length and would not parse anyway).
const MAX_CHAIN: usize = 65536 + 2048;

/// Largest frame one TX descriptor carries.
const TX_MAX: usize = xsk::FRAME_SIZE as usize;

enum Admit {
    Take(Flow, Dir),
    Malformed,
    Skip,
}

/// Classify a received frame: ours to handle (to a wanted service, or from
/// a NAT real server to elsewhere), malformed, or not ours.
fn admit(f: &[u8], info: &IfInfo, wanted: &Wanted) -> Admit {
    let fl = match fwd::classify(f) {
        Classified::Flow(fl) if fl.dst_mac == info.mac => fl,
        Classified::Malformed(_) => return Admit::Malformed,
        _ => return Admit::Skip,
    };
    if wanted.set.contains(&(fl.proto, fl.dst)) {
        Admit::Take(fl, Dir::In)
    } else if !info.addrs.iter().any(|(x, _)| x == fl.dst.ip())
        && !wanted.vips.contains(fl.dst.ip())
    {
        Admit::Take(fl, Dir::Out)
    } else {
        Admit::Skip
    }
}

/// What to do with a packet, from its direction and verdict.
#[derive(Clone, Copy)]
enum Act {
    /// Client -> VIP, to a real server.
    In(SocketAddrV4, FwdMethod, (TunType, u16, TunCsum)),
    /// A NAT real server's reply, SNATed back to the VIP.
    NatOut(SocketAddrV4),
    /// Stolen from a NAT real server but not a reply of ours: routed on.
    RouteOn,
}

struct Worker {
    /// 0 also runs the shared periodic work and owns the ARP socket.
    id: usize,
    inner: Arc<Inner>,
    xsk: xsk::Xsk,
    arp_sock: Option<xsk::ArpSocket>,
    info: IfInfo,
    routes: Vec<Route>,
    /// Copy of a frame (ICMP errors, parking).
    buf: Vec<u8>,
    /// Output of encapsulation / ICMP building.
    out: Vec<u8>,
    ident: u16,
    ticks: [Instant; 2],
    /// TCP segments of a GSO aggregate being forwarded.
    segs: Vec<Vec<u8>>,
    /// Last `XDP_STATISTICS` `rx_dropped` seen.
    kernel_rx_dropped: u64,
    /// This thread's steady flows, forwarded without the table lock.
    cache: FlowCache,
    /// Cache counters already added to [`EngineStats`] and the queue's
    /// counters.
    cache_published: CacheStats,
    /// Next hops' MACs as last read from the shared ARP cache, reused for
    /// [`NEIGH_MEMO`] so that forwarding does not lock it per packet.
    neigh_memo: HashMap<Ipv4Addr, (Mac, Instant)>,
}

/// How long a thread reuses a next hop's MAC before asking the shared ARP
/// cache again (which also decides when to re-request it).
const NEIGH_MEMO: Duration = Duration::from_millis(100);

/// Next hops one thread memoises at most.
const NEIGH_MEMO_CAP: usize = 4096;

/// Flows one RX thread's cache holds at most (as the AF_PACKET engine).
const FLOW_CACHE_CAP: usize = 65536;

impl Worker {
    fn new(
        id: usize,
        inner: Arc<Inner>,
        xsk: xsk::Xsk,
        arp_sock: Option<xsk::ArpSocket>,
        info: IfInfo,
    ) -> Worker {
        let now = Instant::now();
        let mut w = Worker {
            id,
            inner,
            xsk,
            arp_sock,
            info,
            routes: Vec::new(),
            buf: Vec::with_capacity(2048),
            out: Vec::with_capacity(2048),
            ident: 1,
            ticks: [now; 2],
            segs: Vec::new(),
            kernel_rx_dropped: 0,
            cache: FlowCache::new(FLOW_CACHE_CAP),
            cache_published: CacheStats::default(),
            neigh_memo: HashMap::new(),
        };
        if let Ok(k) = w.xsk.kernel_stats() {
            w.kernel_rx_dropped = k.rx_dropped;
        }
        w.refresh_if();
        w
    }

    fn refresh_if(&mut self) {
        if let Ok(t) = std::fs::read_to_string("/proc/net/route") {
            self.routes = neigh::parse_proc_route(&t, &self.info.name);
        }
        if let Ok(a) = sys::if_ipv4_addrs(&self.info.name) {
            self.info.addrs = a;
        }
        if let Ok(m) = sys::if_mtu(&self.info.name) {
            self.info.mtu = m.min(u32::from(u16::MAX)) as u16;
        }
    }

    fn our_addr(&self, dst: Ipv4Addr, vips: &HashSet<Ipv4Addr>) -> Option<Ipv4Addr> {
        neigh::source_addr(&self.info.addrs, dst, vips)
    }

    fn run(mut self) {
        let mut descs = Vec::with_capacity(self.inner.opts.batch.max(1));
        let mut arpbuf = vec![0u8; 2048];
        while !self.inner.stop.load(Ordering::Relaxed) {
            let afd = self.arp_sock.as_ref().map(|s| s.raw_fd());
            if let Err(e) = self.xsk.wait(afd, 50) {
                tracing::error!(error = %e, "xdp engine: poll failed");
                std::thread::sleep(Duration::from_millis(100));
            }
            self.read_arp(&mut arpbuf);
            loop {
                let lost = self.xsk.recv(&mut descs, self.inner.opts.batch.max(1));
                self.inner
                    .stats
                    .truncated
                    .fetch_add(lost as u64, Ordering::Relaxed);
                if descs.is_empty() {
                    break;
                }
                self.handle_batch(&descs);
                self.xsk.flush();
                self.xsk.refill();
            }
            self.xsk.flush();
            self.xsk.refill();
            self.tick();
        }
        // Hand the last cached counts to the table.
        if !self.cache.is_empty() {
            let now = self.inner.shared.now();
            let mut ipvs = self.inner.shared.ipvs.lock();
            self.cache.flush(&mut ipvs, now);
        }
        self.publish_cache_stats();
    }

    /// Flush the flow cache's counts to the table if due (every
    /// [`FlowCache::FLUSH_EVERY`], so counters and timers are current
    /// even when every packet hits the cache, and also when idle).
    fn flush_cache_if_due(&mut self) {
        let now = self.inner.shared.now();
        if self.cache.flush_due(now) {
            let mut ipvs = self.inner.shared.ipvs.lock();
            self.cache.flush(&mut ipvs, now);
        }
        self.publish_cache_stats();
    }

    /// Add the flow cache counters gained since the last call to
    /// [`EngineStats`] and to this queue's counters.
    fn publish_cache_stats(&mut self) {
        let (c, p) = (self.cache.stats(), self.cache_published);
        if c == p {
            return;
        }
        let st = &self.inner.stats;
        let q = self.inner.queues.get(self.id);
        for (a, qa, new, old) in [
            (&st.cache_hits, q.map(|q| &q.cache_hits), c.hits, p.hits),
            (
                &st.cache_misses,
                q.map(|q| &q.cache_misses),
                c.misses,
                p.misses,
            ),
            (&st.cache_flushes, None, c.flushes, p.flushes),
            (&st.cache_invalidated, None, c.invalidated, p.invalidated),
            (&st.cache_refused, None, c.refused, p.refused),
        ] {
            if new > old {
                a.fetch_add(new - old, Ordering::Relaxed);
                if let Some(qa) = qa {
                    qa.fetch_add(new - old, Ordering::Relaxed);
                }
            }
        }
        self.cache_published = c;
    }

    fn read_arp(&mut self, buf: &mut [u8]) {
        let Some(s) = self.arp_sock.as_ref() else {
            return;
        };
        let mut learn = Vec::new();
        while let Some(n) = s.recv(buf) {
            if let Classified::Arp(r) = fwd::classify(&buf[..n]) {
                learn.push((r.source_protocol_addr, r.source_hardware_addr));
            }
        }
        if learn.is_empty() {
            return;
        }
        let now = Instant::now();
        let mut a = Actions::default();
        {
            let mut arp = self.inner.arp.lock();
            for (ip, mac) in learn {
                arp.learn(IpAddr::V4(ip), mac, now, &mut a);
            }
        }
        self.do_actions(a);
    }

    fn tick(&mut self) {
        self.flush_cache_if_due();
        let now = Instant::now();
        if now.duration_since(self.ticks[1]) >= Duration::from_secs(1) {
            self.ticks[1] = now;
            self.neigh_memo
                .retain(|_, (_, t)| now.duration_since(*t) < NEIGH_MEMO);
            self.refresh_if();
            // Packets the kernel could not put on our RX ring: larger than
            // a frame without multi-buffer, or no free frame.
            if let Ok(k) = self.xsk.kernel_stats() {
                let d = k.rx_dropped.saturating_sub(self.kernel_rx_dropped);
                self.kernel_rx_dropped = k.rx_dropped;
                self.inner.stats.truncated.fetch_add(d, Ordering::Relaxed);
            }
            if self.id == 0 {
                self.inner.sync(&self.info.addrs);
                if let Ok(t) = std::fs::read_to_string("/proc/net/arp") {
                    self.inner
                        .arp
                        .lock()
                        .seed(&neigh::parse_proc_arp(&t, &self.info.name), now);
                }
            }
        }
        if self.id == 0 && now.duration_since(self.ticks[0]) >= Duration::from_millis(100) {
            self.ticks[0] = now;
            let mut a = Actions::default();
            self.inner.arp.lock().tick(now, &mut a);
            self.do_actions(a);
            self.xsk.flush();
        }
    }

    /// Copy the frames of a descriptor chain into one buffer and release
    /// them. `None` if the result is implausibly large.
    fn gather(&mut self, chain: &[xsk::Desc]) -> Option<Vec<u8>> {
        let total: usize = chain.iter().map(|d| d.len as usize).sum();
        let ok = total <= MAX_CHAIN;
        let mut b = Vec::with_capacity(if ok { total } else { 0 });
        for d in chain {
            if ok {
                b.extend_from_slice(self.xsk.frame(d.addr, d.len));
            }
            self.xsk.release(d.addr);
        }
        ok.then_some(b)
    }

    fn handle_batch(&mut self, descs: &[xsk::Desc]) {
        let inner = self.inner.clone();
        let st = &inner.stats;
        let wanted = self.inner.wanted.read().clone();
        let mut jobs: Vec<Job> = Vec::with_capacity(descs.len());
        let mut pkts: Vec<rvs_core::Packet> = Vec::with_capacity(descs.len());
        let mut rx = 0;
        let mut i = 0;
        while i < descs.len() {
            let d = descs[i];
            inc(&st.rx);
            rx += 1;
            let (src, fl, dir) = if d.contd {
                // A multi-buffer chain: up to its last descriptor.
                let end = descs[i..]
                    .iter()
                    .position(|x| !x.contd)
                    .map_or(descs.len(), |k| i + k + 1);
                let chain = &descs[i..end];
                i = end;
                let Some(buf) = self.gather(chain) else {
                    inc(&st.truncated);
                    continue;
                };
                match admit(&buf, &self.info, &wanted) {
                    Admit::Take(fl, dir) => (Src::Buf(buf), fl, dir),
                    Admit::Malformed => {
                        inc(&st.malformed);
                        continue;
                    }
                    Admit::Skip => continue,
                }
            } else {
                i += 1;
                let f = self.xsk.frame_mut(d.addr, d.len);
                let (fl, dir) = match admit(f, &self.info, &wanted) {
                    Admit::Take(fl, dir) => (fl, dir),
                    Admit::Malformed => {
                        inc(&st.malformed);
                        self.xsk.release(d.addr);
                        continue;
                    }
                    Admit::Skip => {
                        self.xsk.release(d.addr);
                        continue;
                    }
                };
                if usize::from(fl.l3_len) > usize::from(self.info.mtu) {
                    // A small GSO aggregate (MTU < size <= one frame):
                    // segmented like a chain.
                    match self.gather(&[d]) {
                        Some(buf) => (Src::Buf(buf), fl, dir),
                        None => continue,
                    }
                } else {
                    if !l4_checksum_ok(f, &fl) {
                        // A partial checksum from a local sender (offload
                        // on a virtual link): complete it, as the AF_PACKET
                        // engine does for TP_STATUS_CSUMNOTREADY.
                        let _ = fwd::complete_l4_checksum(f, fl.l3);
                    }
                    (Src::Umem(d), fl, dir)
                }
            };
            pkts.push(rvs_core::Packet {
                fwmark: 0,
                proto: fl.proto,
                src: SocketAddr::V4(fl.src),
                dst: SocketAddr::V4(fl.dst),
                tcp_flags: TcpFlags(fl.flags),
                len: u32::from(fl.l3_len),
                dir,
            });
            jobs.push(Job { src, fl, dir });
        }
        if let Some(q) = inner.queues.get(self.id) {
            q.rx.fetch_add(rx, Ordering::Relaxed);
        }
        if jobs.is_empty() {
            return;
        }
        // Packets of steady flows are forwarded from this thread's flow
        // cache; the model is locked (once) from the first packet that
        // needs it, and the rest of the batch goes in order under the lock.
        let mut verdicts = Vec::with_capacity(jobs.len());
        {
            let now = self.inner.shared.now();
            let mut guard = None;
            for p in &pkts {
                let key = FlowKey {
                    proto: p.proto,
                    src: p.src,
                    dst: p.dst,
                };
                if let Some(v) = self.cache.hit(now, &key, p.tcp_flags, p.len) {
                    verdicts.push(v);
                    continue;
                }
                let ipvs = guard.get_or_insert_with(|| self.inner.shared.ipvs.lock());
                self.cache.take(ipvs, &key);
                let v = ipvs.process(now, p, &[]);
                self.cache.learn(ipvs, now, key, p.dir, v);
                verdicts.push(v);
            }
            if self.cache.flush_due(now) {
                let ipvs = guard.get_or_insert_with(|| self.inner.shared.ipvs.lock());
                self.cache.flush(ipvs, now);
            }
            drop(guard);
            self.publish_cache_stats();
        }
        for (j, v) in jobs.into_iter().zip(verdicts) {
            match (j.src, j.dir) {
                (Src::Umem(d), Dir::In) => self.forward_in(d, &j.fl, v, &wanted),
                (Src::Umem(d), _) => self.forward_out(d, &j.fl, v),
                (Src::Buf(mut b), dir) => self.forward_buf(&mut b, &j.fl, dir, v, &wanted),
            }
        }
    }

    /// Forward a packet reassembled from a descriptor chain (in user
    /// space, larger than a frame). TCP that does not fit the MTU (or a
    /// TX frame) is segmented in software like the AF_PACKET engine does
    /// (`fwd::segment_tcp`, full checksums); other protocols get ICMP
    /// "fragmentation needed" (client -> VIP with DF) or are counted in
    /// `too_big`.
    fn forward_buf(&mut self, buf: &mut [u8], fl: &Flow, dir: Dir, v: Verdict, wanted: &Wanted) {
        let inner = self.inner.clone();
        let st = &inner.stats;
        let act = match (dir, v) {
            (
                Dir::In,
                Verdict::Forward {
                    dest: SocketAddr::V4(dest),
                    fwd,
                    tun,
                    ..
                },
            ) if fwd != FwdMethod::Local => Act::In(dest, fwd, tun),
            (Dir::In, Verdict::NoDest) => {
                inc(&st.model_drop);
                self.load_buf(buf);
                self.send_icmp(
                    fl.l3,
                    *fl.dst.ip(),
                    icmpv4::msg_type::DST_UNREACHABLE,
                    icmpv4::CODE_PORT_UNREACHABLE,
                    0,
                );
                return;
            }
            (Dir::In, _) => {
                inc(&st.model_drop);
                return;
            }
            (
                _,
                Verdict::Reply {
                    vaddr: SocketAddr::V4(vaddr),
                    fwd: FwdMethod::Masq,
                    ..
                },
            ) => Act::NatOut(vaddr),
            _ => Act::RouteOn,
        };
        // Largest IP packet to send: the interface MTU, what one TX frame
        // holds and, for tunnels, what fits inside the tunnel.
        let mut mtu = usize::from(self.info.mtu).min(TX_MAX - fl.l3);
        if let Act::In(_, FwdMethod::Tunnel, tun) = act {
            mtu = mtu.min(usize::from(self.tun_probe(tun).inner_mtu()));
        }
        if usize::from(fl.l3_len) <= mtu && buf.len() <= TX_MAX {
            if !l4_checksum_ok(buf, fl) {
                let _ = fwd::complete_l4_checksum(buf, fl.l3);
            }
            self.xmit_buf(buf, fl, act, wanted);
            return;
        }
        if fl.proto != Protocol::Tcp {
            match (dir, fl.dont_frag) {
                (Dir::In, true) => {
                    let m = mtu.min(usize::from(u16::MAX)) as u16;
                    self.fail_buf(buf, fl.l3, *fl.dst.ip(), Fail::FragNeeded(m));
                }
                _ => inc(&st.too_big),
            }
            return;
        }
        let mut segs = std::mem::take(&mut self.segs);
        segs.clear();
        let m = mtu.min(usize::from(u16::MAX)) as u16;
        match fwd::segment_tcp(buf, fl.l3, m, &mut segs) {
            Ok(()) => {
                for seg in segs.iter_mut() {
                    match fwd::classify(seg) {
                        Classified::Flow(sf) => self.xmit_buf(seg, &sf, act, wanted),
                        _ => inc(&st.malformed),
                    }
                }
            }
            Err(e) => {
                let src = if dir == Dir::In { fl.dst } else { fl.src };
                self.fail_buf(buf, fl.l3, *src.ip(), e);
            }
        }
        segs.clear();
        self.segs = segs;
    }

    /// Forward one packet (fits a TX frame) from a user-space buffer.
    fn xmit_buf(&mut self, buf: &mut [u8], fl: &Flow, act: Act, wanted: &Wanted) {
        let inner = self.inner.clone();
        let st = &inner.stats;
        let r = match act {
            Act::In(dest, FwdMethod::Route, _) => fwd::dr(buf, fl.l3).map(|()| {
                inc(&st.dr);
                self.send_copy_to(buf, *dest.ip());
            }),
            Act::In(dest, FwdMethod::Masq, _) => fwd::nat_in(buf, fl, dest).map(|()| {
                inc(&st.nat_in);
                self.route_copy(buf, *dest.ip());
            }),
            Act::In(dest, FwdMethod::Tunnel, tun) => self.tunnel_buf(buf, fl, dest, tun, wanted),
            Act::In(..) => {
                inc(&st.model_drop);
                Ok(())
            }
            Act::NatOut(vaddr) => fwd::nat_out(buf, fl, vaddr).map(|()| {
                inc(&st.nat_out);
                self.route_copy(buf, *fl.dst.ip());
            }),
            Act::RouteOn => fwd::dr(buf, fl.l3).map(|()| self.route_copy(buf, *fl.dst.ip())),
        };
        if let Err(e) = r {
            let src = if matches!(act, Act::In(..)) {
                fl.dst
            } else {
                fl.src
            };
            self.fail_buf(buf, fl.l3, *src.ip(), e);
        }
    }

    fn forward_in(&mut self, d: xsk::Desc, fl: &Flow, v: Verdict, wanted: &Wanted) {
        let inner = self.inner.clone();
        let st = &inner.stats;
        let (a, len) = (d.addr, d.len);
        match v {
            Verdict::Forward {
                dest: SocketAddr::V4(dest),
                fwd,
                tun,
                ..
            } => {
                if usize::from(fl.l3_len) > usize::from(self.info.mtu) {
                    inc(&st.too_big);
                    self.xsk.release(a);
                    return;
                }
                let r = match fwd {
                    FwdMethod::Route => fwd::dr(self.xsk.frame_mut(a, len), fl.l3).map(|()| {
                        inc(&st.dr);
                        self.send_inplace(a, len, *dest.ip());
                    }),
                    FwdMethod::Masq => {
                        fwd::nat_in(self.xsk.frame_mut(a, len), fl, dest).map(|()| {
                            inc(&st.nat_in);
                            self.route_inplace(a, len, *dest.ip());
                        })
                    }
                    FwdMethod::Tunnel => {
                        let r = self.tunnel(a, len, fl, dest, tun, wanted);
                        if r.is_ok() {
                            self.xsk.release(a);
                        }
                        r
                    }
                    FwdMethod::Local => {
                        inc(&st.model_drop);
                        self.xsk.release(a);
                        Ok(())
                    }
                };
                if let Err(e) = r {
                    self.fail(a, len, fl.l3, *fl.dst.ip(), e);
                }
            }
            Verdict::NoDest => {
                inc(&st.model_drop);
                self.copy_frame(a, len);
                self.xsk.release(a);
                self.send_icmp(
                    fl.l3,
                    *fl.dst.ip(),
                    icmpv4::msg_type::DST_UNREACHABLE,
                    icmpv4::CODE_PORT_UNREACHABLE,
                    0,
                );
            }
            _ => {
                inc(&st.model_drop);
                self.xsk.release(a);
            }
        }
    }

    fn forward_out(&mut self, d: xsk::Desc, fl: &Flow, v: Verdict) {
        let inner = self.inner.clone();
        let st = &inner.stats;
        let (a, len) = (d.addr, d.len);
        let r = match v {
            Verdict::Reply {
                vaddr: SocketAddr::V4(vaddr),
                fwd: FwdMethod::Masq,
                ..
            } => fwd::nat_out(self.xsk.frame_mut(a, len), fl, vaddr).map(|()| {
                inc(&st.nat_out);
                self.route_inplace(a, len, *fl.dst.ip());
            }),
            // Stolen by the program (source is a NAT real server) but not a
            // reply of ours: route it on as the kernel would have.
            _ => fwd::dr(self.xsk.frame_mut(a, len), fl.l3)
                .map(|()| self.route_inplace(a, len, *fl.dst.ip())),
        };
        if let Err(e) = r {
            self.fail(a, len, fl.l3, *fl.src.ip(), e);
        }
    }

    fn tunnel(
        &mut self,
        a: u64,
        len: u32,
        fl: &Flow,
        dest: SocketAddrV4,
        tun: (TunType, u16, TunCsum),
        wanted: &Wanted,
    ) -> Result<(), Fail> {
        let Some(p) = self.tun_params(dest, tun, wanted) else {
            inc(&self.inner.stats.no_route);
            return Ok(());
        };
        let hash = fwd::flow_hash(fl);
        let mut out = std::mem::take(&mut self.out);
        let r = fwd::tun_encap(
            self.xsk.frame_mut(a, len),
            fl.l3,
            fl.l3_len,
            &p,
            hash,
            (self.info.mac, Mac::ZERO),
            &mut out,
        );
        self.tunnel_done(r, out, dest)
    }

    /// [`Worker::tunnel`] for a packet in a user-space buffer.
    fn tunnel_buf(
        &mut self,
        buf: &[u8],
        fl: &Flow,
        dest: SocketAddrV4,
        tun: (TunType, u16, TunCsum),
        wanted: &Wanted,
    ) -> Result<(), Fail> {
        let Some(p) = self.tun_params(dest, tun, wanted) else {
            inc(&self.inner.stats.no_route);
            return Ok(());
        };
        let hash = fwd::flow_hash(fl);
        let mut out = std::mem::take(&mut self.out);
        let r = fwd::tun_encap(
            buf,
            fl.l3,
            fl.l3_len,
            &p,
            hash,
            (self.info.mac, Mac::ZERO),
            &mut out,
        );
        self.tunnel_done(r, out, dest)
    }

    fn tunnel_done(
        &mut self,
        r: Result<(), Fail>,
        mut out: Vec<u8>,
        dest: SocketAddrV4,
    ) -> Result<(), Fail> {
        if r.is_ok() {
            inc(&self.inner.stats.tun);
            self.route_copy(&mut out, *dest.ip());
        }
        self.out = out;
        r
    }

    /// Outer-header parameters toward `dest` (a new IP ident each call);
    /// `None` without a source address.
    fn tun_params(
        &mut self,
        dest: SocketAddrV4,
        tun: (TunType, u16, TunCsum),
        wanted: &Wanted,
    ) -> Option<TunParams> {
        let src = self.our_addr(*dest.ip(), &wanted.vips)?;
        self.ident = self.ident.wrapping_add(1);
        Some(TunParams {
            src,
            dst: *dest.ip(),
            ident: self.ident,
            ..self.tun_probe(tun)
        })
    }

    /// Parameters of a tunnel of type `tun` on our interface, addresses
    /// unset: enough for its sizes ([`TunParams::inner_mtu`]).
    fn tun_probe(&self, tun: (TunType, u16, TunCsum)) -> TunParams {
        TunParams {
            kind: tun.0,
            port: tun.1,
            csum: tun.2,
            src: Ipv4Addr::UNSPECIFIED,
            dst: Ipv4Addr::UNSPECIFIED,
            ident: 0,
            pmtu_disc: self.inner.opts.pmtu_disc,
            mtu: self.info.mtu,
        }
    }

    /// React to a forwarding failure of frame `a` (consumes the frame).
    fn fail(&mut self, a: u64, len: u32, l3: usize, src: Ipv4Addr, e: Fail) {
        self.copy_frame(a, len);
        self.xsk.release(a);
        self.react(l3, src, e);
    }

    /// [`Worker::fail`] for a packet in a user-space buffer.
    fn fail_buf(&mut self, b: &[u8], l3: usize, src: Ipv4Addr, e: Fail) {
        self.load_buf(b);
        self.react(l3, src, e);
    }

    /// Copy (the start of) `b` into `self.buf`, for an ICMP error quoting
    /// it: the quote is at most 576 bytes, keep a little more.
    fn load_buf(&mut self, b: &[u8]) {
        self.buf.clear();
        self.buf.extend_from_slice(&b[..b.len().min(TX_MAX)]);
    }

    /// React to a forwarding failure of the packet (at `l3`) in `self.buf`.
    fn react(&mut self, l3: usize, src: Ipv4Addr, e: Fail) {
        let inner = self.inner.clone();
        let st = &inner.stats;
        match e {
            Fail::TtlExceeded => self.send_icmp(
                l3,
                src,
                icmpv4::msg_type::TIME_EXCEEDED,
                icmpv4::CODE_TTL_EXCEEDED,
                0,
            ),
            Fail::FragNeeded(mtu) => self.send_icmp(
                l3,
                src,
                icmpv4::msg_type::DST_UNREACHABLE,
                icmpv4::CODE_FRAG_NEEDED,
                u32::from(mtu),
            ),
            Fail::TooBig => inc(&st.too_big),
            Fail::Malformed => inc(&st.malformed),
        }
    }

    fn copy_frame(&mut self, a: u64, len: u32) {
        self.buf.clear();
        let f = self.xsk.frame_mut(a, len);
        self.buf.extend_from_slice(f);
    }

    /// Answer the frame in `self.buf` with an ICMP error from `src`.
    fn send_icmp(&mut self, l3: usize, src: Ipv4Addr, t: u8, code: u8, rest: u32) {
        let Ok(eth) = rvs_wire::ethernet::Frame::new_checked(&self.buf[..]) else {
            return;
        };
        let back = eth.src_addr();
        let mut out = std::mem::take(&mut self.out);
        let ok = self.buf.get(l3..).is_some_and(|o| {
            fwd::icmp_error_frame(&mut out, (self.info.mac, back), src, o, t, code, rest).is_ok()
        });
        if ok {
            inc(&self.inner.stats.icmp_sent);
            self.tx_copy(&out);
        }
        self.out = out;
    }

    fn next_hop(&self, dst: Ipv4Addr) -> Option<Ipv4Addr> {
        neigh::next_hop(&self.routes, dst)
    }

    /// Route and send frame `a` in place.
    fn route_inplace(&mut self, a: u64, len: u32, dst: Ipv4Addr) {
        match self.next_hop(dst) {
            Some(nh) => self.send_inplace(a, len, nh),
            None => {
                inc(&self.inner.stats.no_route);
                self.xsk.release(a);
            }
        }
    }

    /// MAC of neighbour `nh` and whether to re-request it: from this
    /// thread's memo if read from the shared ARP cache less than
    /// [`NEIGH_MEMO`] ago, else from the shared cache (locked).
    fn neigh_lookup(&mut self, nh: Ipv4Addr, now: Instant) -> Option<(Mac, bool)> {
        if let Some((m, t)) = self.neigh_memo.get(&nh) {
            if now.duration_since(*t) < NEIGH_MEMO {
                return Some((*m, false));
            }
        }
        let hit = self.inner.arp.lock().lookup(IpAddr::V4(nh), now);
        match hit {
            Some((m, _)) => {
                if self.neigh_memo.len() >= NEIGH_MEMO_CAP {
                    self.neigh_memo.clear();
                }
                self.neigh_memo.insert(nh, (m, now));
            }
            None => {
                self.neigh_memo.remove(&nh);
            }
        }
        hit
    }

    /// Send frame `a` (in the UMEM) to neighbour `nh`: fill in the MACs and
    /// put it on the TX ring, or park a copy until `nh` resolves.
    fn send_inplace(&mut self, a: u64, len: u32, nh: Ipv4Addr) {
        let now = Instant::now();
        let hit = self.neigh_lookup(nh, now);
        match hit {
            Some((dmac, refresh)) => {
                fwd::set_macs(self.xsk.frame_mut(a, len), self.info.mac, dmac);
                if self.xsk.send(a, len) {
                    inc(&self.inner.stats.tx);
                } else {
                    inc(&self.inner.stats.tx_errors);
                }
                if refresh {
                    self.arp_request(nh);
                }
            }
            None => {
                let f = self.xsk.frame_mut(a, len);
                fwd::set_macs(f, self.info.mac, Mac::ZERO);
                let v = f.to_vec();
                self.xsk.release(a);
                let mut acts = Actions::default();
                self.inner
                    .arp
                    .lock()
                    .park(IpAddr::V4(nh), v, now, &mut acts);
                self.do_actions(acts);
            }
        }
    }

    /// Route and send a frame built in user space (copied into the UMEM).
    fn route_copy(&mut self, buf: &mut [u8], dst: Ipv4Addr) {
        let Some(nh) = self.next_hop(dst) else {
            inc(&self.inner.stats.no_route);
            return;
        };
        self.send_copy_to(buf, nh);
    }

    /// Send a frame built in user space to neighbour `nh` (copied into
    /// the UMEM), or park it until `nh` resolves.
    fn send_copy_to(&mut self, buf: &mut [u8], nh: Ipv4Addr) {
        let now = Instant::now();
        let hit = self.neigh_lookup(nh, now);
        match hit {
            Some((dmac, refresh)) => {
                fwd::set_macs(buf, self.info.mac, dmac);
                self.tx_copy(buf);
                if refresh {
                    self.arp_request(nh);
                }
            }
            None => {
                fwd::set_macs(buf, self.info.mac, Mac::ZERO);
                let mut acts = Actions::default();
                self.inner
                    .arp
                    .lock()
                    .park(IpAddr::V4(nh), buf.to_vec(), now, &mut acts);
                self.do_actions(acts);
            }
        }
    }

    fn tx_copy(&mut self, b: &[u8]) {
        if self.xsk.send_copy(b) {
            inc(&self.inner.stats.tx);
        } else {
            inc(&self.inner.stats.tx_errors);
        }
    }

    fn do_actions(&mut self, a: Actions) {
        self.inner
            .stats
            .unresolved
            .fetch_add(a.dropped, Ordering::Relaxed);
        self.inner
            .stats
            .neigh_evicted
            .fetch_add(a.evicted, Ordering::Relaxed);
        for ip in a.requests {
            if let IpAddr::V4(ip) = ip {
                self.arp_request(ip);
            }
        }
        for (mac, mut frame) in a.ready {
            fwd::set_macs(&mut frame, self.info.mac, mac);
            self.tx_copy(&frame);
        }
    }

    fn arp_request(&mut self, target: Ipv4Addr) {
        let wanted = self.inner.wanted.read().clone();
        let Some(src) = self.our_addr(target, &wanted.vips) else {
            return;
        };
        let b = fwd::arp_request(self.info.mac, src, target);
        self.tx_copy(&b);
        inc(&self.inner.stats.arp_requests);
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn engine_is_send_sync() {
        fn s<T: Send + Sync>() {}
        s::<XdpEngine>();
    }

    #[test]
    fn checksum_check() {
        // A TCP SYN with a correct checksum built by rvs-wire's users:
        // take any frame, fill the checksum, verify; then break it.
        let mut f = vec![0u8; 14 + 20 + 20];
        f[12] = 0x08;
        let ip = &mut f[14..34];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&40u16.to_be_bytes());
        ip[8] = 64;
        ip[9] = 6;
        ip[12..16].copy_from_slice(&[198, 18, 0, 2]);
        ip[16..20].copy_from_slice(&[198, 18, 0, 100]);
        let tcp = &mut f[34..];
        tcp[0..2].copy_from_slice(&40000u16.to_be_bytes());
        tcp[2..4].copy_from_slice(&80u16.to_be_bytes());
        tcp[12] = 0x50;
        tcp[13] = 0x02;
        let fl = Flow {
            proto: Protocol::Tcp,
            src: "198.18.0.2:40000".parse().unwrap(),
            dst: "198.18.0.100:80".parse().unwrap(),
            flags: 2,
            l3_len: 40,
            l3: 14,
            l4: 34,
            dst_mac: Mac::ZERO,
            dont_frag: false,
        };
        assert!(!l4_checksum_ok(&f, &fl));
        fwd::complete_l4_checksum(&mut f, 14).unwrap();
        // complete_l4_checksum fills the full checksum
        assert!(l4_checksum_ok(&f, &fl));
        f[40] ^= 1;
        assert!(!l4_checksum_ok(&f, &fl));
    }
}
