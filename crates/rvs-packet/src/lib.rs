//! # rvs-packet — LVS forwarding (DR, NAT, TUN) in user space
//!
//! [`PacketEngine`] implements [`rvs_dataplane::Engine`] for kernels without
//! IPVS. It receives every frame of one interface on an AF_PACKET socket
//! with a TPACKET_V2 mmap RX ring ([`sys`]), in batches, classifies them with
//! `rvs-wire` ([`fwd::classify`]), asks the shared [`rvs_core::Ipvs`] model
//! what to do with each TCP/UDP/SCTP packet (one [`rvs_core::Ipvs::process`]
//! per packet that may change its connection, so connection states,
//! ActiveConn / InActConn, persistence and `--stats` counters follow the
//! real packets as in the kernel; packets of steady flows are forwarded
//! from a per-thread [`flowcache`] and accounted in bulk), rewrites the
//! frame and transmits it on the same interface:
//!
//! * **DR** (`-g`, `ip_vs_dr_xmit`): TTL−1 and the IP checksum; destination
//!   MAC := the real server's, source MAC := ours. Connections use the
//!   INPUT_ONLY state rows (SYN_RECV → ESTABLISHED → FIN_WAIT), OutPkts stays
//!   0 as the replies bypass the director.
//! * **NAT** (`-m`, `ip_vs_nat_xmit`): DNAT to the real server with
//!   incremental IP/TCP/UDP checksums (SCTP: CRC32c recomputed); the real
//!   servers route their replies through the director, which SNATs them back
//!   to VIP:vport (`process(Dir::Out)` → `Verdict::Reply`), counting OutPkts.
//! * **TUN** (`-i`, `ip_vs_tunnel_xmit`): IPIP, or GUE / GRE per destination
//!   `--tun-type`, outer header as the kernel builds it (DSCP/ECN, TTL, DF
//!   from the inner packet), and the kernel's MTU rule: an inner packet with
//!   DF that does not fit gets ICMP "fragmentation needed" with the tunnel
//!   MTU back to the client.
//! * ICMP errors related to a connection (destination unreachable, source
//!   quench, time exceeded; ICMPv6: see below) are forwarded the same
//!   way; for NAT they are translated (`ip_vs_nat_icmp`) in both
//!   directions, and counted on their connection (`ip_vs_in_stats` /
//!   `ip_vs_out_stats`, [`rvs_core::Ipvs::count_related`]). TTL expiry answers
//!   "time exceeded"; a service without a usable destination answers "port
//!   unreachable", as `ip_vs_leave` does.
//!
//! Next hops come from the namespace's IPv4 routes on the interface; MAC
//! addresses from the engine's own ARP cache ([`neigh`]), seeded from the
//! kernel's table, learning from every ARP packet seen, and resolving misses
//! with its own ARP requests while the frames wait (so the first SYN is not
//! lost). The cache and the waiting frames are bounded (stale neighbours are
//! evicted, `neigh_evicted`; frames beyond the bound count as `unresolved`).
//!
//! The kernel must not answer VIP traffic itself: see [`nft`] for the
//! nftables table the engine owns (created on reconcile, removed on
//! shutdown/drop). rvsd's binary upgrade hands the table and the packet
//! path to the next process without a gap: see [`handover`].
//!
//! [`realserver`] has the real-server helper (`rvsadm realserver setup`) and
//! the user-space IPIP/GUE/GRE decapsulator for real servers whose kernel has
//! no `ipip` module (outer IPv4 or IPv6, inner IPv4 or IPv6).
//!
//! ## Receive and transmit path
//! `threads` RX threads (default 1; more form a PACKET_FANOUT hash group
//! sharing the model, the ARP cache and the ICMP flow table), each:
//! `poll` → take every ready ring slot (up to 256)
//! → classify → flow cache; at most one `Ipvs` lock for up to `batch`
//! packets, only if one of them is not a cached steady flow (TCP without
//! SYN/FIN/RST of an ESTABLISHED entry, UDP) → rewrite a copy of each
//! frame → queue → one `sendmmsg` per batch (qdisc bypassed). Each thread
//! hands its cached packet/byte counts to the table every 100 ms (also
//! when idle, from the poll timeout) and on exit; the `cache_*` engine
//! counters show hits, misses and flushes.
//!
//! ## IPv4 fragments
//! (IPv6 fragments: see the IPv6 section.)
//! As `nf_defrag_ipv4` does for IPVS, each RX thread reassembles
//! ([`frag::Reassembler`], limits from `ipfrag_high_thresh` /
//! `ipfrag_low_thresh` split between the threads, `ipfrag_time`) the
//! IPv4 fragments addressed to it of TCP/UDP/SCTP/ICMP datagrams to a VIP
//! and of replies from NAT real servers (PACKET_FANOUT_HASH hashes
//! fragments on addresses and protocol only, so a datagram's fragments
//! reach one thread). The datagram then takes the normal path (model,
//! flow cache, DR/NAT/TUN) and is fragmented again on output to the MTU
//! and to its largest received fragment ([`frag::fragment_frame`]); with
//! DF and a largest fragment above the MTU the client gets "fragmentation
//! needed". TUN encapsulates the whole datagram and fragments the outer
//! packet (IPv4 outer). A queue that times out with its first fragment
//! in answers ICMP "fragment reassembly time exceeded" from the VIP. The
//! same output fragmentation serves non-DF IPv4 packets that no longer
//! fit after the rewrite (e.g. a 1500-byte datagram in a tunnel). The
//! nftables table also hides non-first fragments to VIPs and from NAT
//! real servers from the kernel ([`nft`]).
//! Frames larger than a slot (GSO super-packets from veth/virtio peers, up
//! to 64 KiB) arrive through `PACKET_COPY_THRESH` and TCP ones are
//! segmented in software ([`fwd::segment_tcp`]); transport checksums left
//! partial by a local sender (`TP_STATUS_CSUMNOTREADY`) are completed
//! before forwarding.
//!
//! ## IPv6
//! IPv6 services are served by DR, NAT and TUN, as `ip_vs_*_xmit_v6` do:
//! extension headers are walked to the transport header, the hop limit
//! is decremented (hop limit 1 answers ICMPv6 "time exceeded" from the
//! VIP), NAT rewrites the addresses with incremental transport checksums
//! (and segments TCP GSO super-packets from veth/virtio peers, both
//! ways, [`fwd::segment_tcp6`]), next hops come from
//! `/proc/net/ipv6_route` and MACs from neighbour discovery (own
//! solicitations; the cache learns from every NS/NA seen).
//!
//! TUN works for every family pair IPVS allows ([`fwd::tun_encap_any`]):
//! ip6ip6 (outer next header 41), IPv4 in IPv6 (next header 4) for an
//! IPv4 service with IPv6 real servers, IPv6 in IPv4 (protocol 41) for an
//! IPv6 service with IPv4 real servers, each also with GUE or GRE
//! (`0x86DD` for an IPv6 inner packet). The outer IPv6 header has traffic
//! class = the inner DSCP with RFC 6040 ECN, flow label 0 and hop limit =
//! the inner (decremented) one. An IPv6 packet that does not fit the
//! tunnel MTU (route MTU − 40 or 20 − GUE/GRE header) is answered with
//! ICMPv6 "packet too big" carrying that MTU (`ip_vs_tunnel_xmit_v6`;
//! IPv6 has no DF, so always); an IPv6 outer tunnel whose inner MTU would
//! fall below 1280 drops (counted in `too_big`), as the kernel's route
//! lookup fails.
//!
//! IPv6 fragments are handled as `nf_defrag_ipv6` does for IPVS: each
//! RX thread reassembles ([`frag6::Reassembler6`], limits from
//! `nf_conntrack_frag6_high_thresh` / `_low_thresh` split between the
//! threads and `nf_conntrack_frag6_timeout`; 4 MiB, 3 MiB, 60 s when
//! those sysctls do not exist) the fragments (Fragment header, next
//! header 44) to a VIP and those of replies from IPv6 NAT real servers;
//! overlapping fragments drop the whole datagram (RFC 5722), an atomic
//! fragment (offset 0, M clear) is processed as a normal packet. The
//! datagram takes the normal path and is fragmented again on output
//! ([`frag6::fragment6_frame`]) to the MTU and to its largest received
//! fragment (not below 1280), with the original identification; if that
//! largest fragment does not fit the MTU (the tunnel MTU for TUN), the
//! source gets ICMPv6 "packet too big" with the MTU
//! (`__mtu_check_toobig_v6`; routers never fragment IPv6). TUN
//! encapsulates the whole datagram and fragments the outer packet. A
//! queue that times out with its first fragment in answers ICMPv6 "time
//! exceeded / fragment reassembly time exceeded" (code 1) quoting it.
//! The nftables table hides non-first IPv6 fragments to VIPs and from NAT
//! real servers from the kernel too (`frag frag-off != 0`, [`nft`]).
//!
//! Related ICMPv6 errors (every type below 128 — destination
//! unreachable, packet too big, time exceeded, parameter problem — with a
//! valid checksum, quoting TCP/UDP/SCTP and not a non-first fragment) are
//! forwarded to the connection's real server by DR/TUN and translated for
//! NAT in both directions (`ip_vs_nat_icmp_v6`: addresses, quoted port,
//! ICMPv6 checksum). A service without a usable destination answers
//! ICMPv6 "port unreachable" (`ip_vs_leave`).
//!
//! The lab tests (`tests/lab6.rs`) run all of this with real nginx and
//! `curl -6` on 2001:2::/48 (RFC 5180) addresses.
//!
//! ## Firewall-mark services
//! Services keyed by a firewall mark (`ipvsadm -A -f 1`, `-6` for IPv6;
//! keepalived `virtual_server fwmark 1 { ... }`) serve the packets that
//! carry `skb->mark == 1` when they reach the engine. The main ring is an
//! ETH_P_ALL tap, which the kernel serves *before* the tc and netfilter
//! ingress hooks, so it always sees mark 0; for each served (mark,
//! family) RX thread 0 therefore opens a [`sys::MarkSocket`]: an
//! AF_PACKET socket bound to ETH_P_IP (ETH_P_IPV6) on the interface,
//! which `__netif_receive_skb_core` serves *after* `sch_handle_ingress`
//! and `nf_ingress`, with a classic BPF filter accepting only that mark
//! ([`sys::mark_filter`]). Its TCP/UDP/SCTP packets to our MAC take the
//! normal path with `Packet::fwmark` set, so `rvs-core` schedules them
//! to the fwmark service (persistence templates by mark, real servers
//! with port 0 = the packet's port, DR/NAT/TUN as configured). Replies of
//! fwmark NAT connections arrive unmarked and are matched on the main
//! ring by the connection table. The nftables table drops marked packets
//! at PREROUTING ([`nft`]) so the kernel neither answers nor forwards
//! them.
//!
//! The marks must therefore be set at **netdev ingress** on the engine's
//! interface (or by tc ingress), e.g.:
//!
//! ```text
//! nft add table netdev rvsmark
//! nft add chain netdev rvsmark in '{ type filter hook ingress device eth0 priority -500; }'
//! nft add rule netdev rvsmark in ip daddr 198.18.0.100 tcp dport '{ 80, 8080 }' meta mark set 1
//! ```
//!
//! (IPv6: `ip6 daddr ... meta mark set 2` with an `-6 -f 2` service.)
//! Marks set by iptables `-t mangle -A PREROUTING ... -j MARK` or an
//! nftables `ip`/`inet` prerouting chain are **not** visible: those run
//! in `ip_rcv`, after the packet sockets got the frame.
//!
//! Differences from the kernel: a packet that matches both an address
//! service (its VIP:port) and a marking rule is served by the address
//! service (the kernel prefers the fwmark service; overlap is not
//! supported); marked fragments are not reassembled (a non-first fragment
//! carries no port for the marking rule anyway) and ICMP errors about
//! fwmark connections are not forwarded; the NAT reply drop rules and
//! reply-fragment reassembly cover address services only. Marked traffic
//! is handled by RX thread 0 alone (no fanout); a mark socket that fails
//! to open is counted in `fwmark_errors` and retried on the next change
//! of the fwmark services. Counters: `fwmark_rx` (frames of the mark
//! sockets, not in `rx`). The proxy and XDP engines do not serve fwmark
//! services (they warn).
//!
//! ## Limits (this version)
//! Untagged Ethernet; RX threads share one `Mutex<Ipvs>`, locked at most
//! once per batch and only for packets that are not cached steady flows
//! (new connections, SYN/FIN/RST, SCTP, NAT replies before ESTABLISHED),
//! so connection setup does not scale with threads; a cached flow moved
//! to a deleted destination keeps being forwarded until the next flush
//! (≤ 100 ms). IPv4 fragments to a VIP of a protocol it serves are all
//! taken from the kernel, also those to a port that is not served (they
//! are reassembled and dropped); TUN's outer fragments of a reassembled
//! DF datagram go without DF (the kernel's `ignore_df` path keeps it);
//! IPv6 fragments are reassembled only for TCP/UDP/SCTP/ICMPv6 to a VIP
//! (every port of the protocol, as for IPv4) and TCP/UDP/SCTP from NAT
//! real servers; the output fragments of a reassembled IPv6 datagram
//! keep the client's identification (the kernel's `ip6_fragment` may
//! pick a new one); IPv4 datagrams larger than the
//! tunnel MTU are not sent in an IPv6 tunnel; UDP GSO super-packets from a local
//! sender (partial checksum) are not segmented (counted in `too_big`);
//! fwmark services only see marks set at netdev/tc ingress (see above);
//! ICMP errors about the engine's own tunnel packets
//! (e.g. "packet too big" from a router between director and real
//! server) are not translated back to the client; the neighbour cache is
//! not seeded from the kernel's IPv6 neighbour table (the first packet to
//! an IPv6 real server waits for our own solicitation); `Local`
//! destinations are not served.

pub mod driver;
pub mod flowcache;
pub mod frag;
pub mod frag6;
pub mod fwd;
pub mod handover;
pub mod neigh;
pub mod nft;
pub mod realserver;
pub mod sys;

use fwd::{Classified, Fail, Flow, Flow6, IcmpError, IcmpError6};
use neigh::{Actions, ArpCache, Route, Route6};
use parking_lot::{Mutex, RwLock};
use rvs_core::{ConnRef, Dir, FwdMethod, Protocol, TcpFlags, TunCsum, TunType, Verdict};
use rvs_dataplane::{Engine, FwmarkKey, ListenKey, Shared};
use rvs_wire::ethernet::Address as Mac;
use rvs_wire::{icmpv4, icmpv6};
use std::collections::{HashMap, HashSet};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use handover::Handover;
pub use realserver::{realserver_setup, realserver_teardown, Decap, RealServer};

/// Engine options.
#[derive(Debug, Clone)]
pub struct PacketOptions {
    /// The director's interface (where clients and real servers are).
    pub interface: String,
    /// Name of the nftables table the engine owns (`inet <name>`).
    pub nft_table: String,
    /// Install the nftables table (tests may turn it off).
    pub nft: bool,
    /// sysctl `pmtu_disc` (copy DF to the outer header of tunnels).
    pub pmtu_disc: bool,
    /// RX ring geometry.
    pub ring: sys::RingConf,
    /// Frames handled per batch (one model lock per batch).
    pub batch: usize,
    /// RX threads. With more than one, the sockets form a PACKET_FANOUT
    /// hash group (a flow stays on one thread); the model, the ARP cache
    /// and the ICMP flow table are shared.
    pub threads: usize,
    /// The gate's mode at start: [`Handover::Discard`] for the successor
    /// of a binary upgrade (nothing forwarded, nftables left alone until
    /// [`PacketEngine::set_handover`] opens it).
    pub gate: Handover,
}

impl PacketOptions {
    /// Defaults for `interface`.
    pub fn new(interface: &str) -> PacketOptions {
        PacketOptions {
            interface: interface.to_string(),
            nft_table: "rvs".into(),
            nft: true,
            pmtu_disc: true,
            ring: sys::RingConf::default(),
            batch: 64,
            threads: 1,
            gate: Handover::Forward,
        }
    }
}

/// Engine counters (all monotonic).
#[derive(Debug, Default)]
pub struct EngineStats {
    /// Frames received.
    pub rx: AtomicU64,
    /// Frames transmitted.
    pub tx: AtomicU64,
    /// Packets forwarded by DR.
    pub dr: AtomicU64,
    /// Packets DNATed to a real server.
    pub nat_in: AtomicU64,
    /// Replies SNATed back to the client.
    pub nat_out: AtomicU64,
    /// Packets tunnelled.
    pub tun: AtomicU64,
    /// ICMP errors forwarded / translated.
    pub icmp_fwd: AtomicU64,
    /// ICMP errors generated (time exceeded, frag needed, port unreachable).
    pub icmp_sent: AtomicU64,
    /// ARP requests sent.
    pub arp_requests: AtomicU64,
    /// No route to the next hop.
    pub no_route: AtomicU64,
    /// Dropped: neighbour did not resolve in time (or queue full).
    pub unresolved: AtomicU64,
    /// Neighbour cache entries evicted to stay within its bound
    /// ([`neigh::MAX_ENTRIES`]).
    pub neigh_evicted: AtomicU64,
    /// Dropped: too big and cannot be fragmented (UDP GSO super-packet,
    /// IPv6, IPv4 in an IPv6 tunnel).
    pub too_big: AtomicU64,
    /// Dropped: malformed frames (bad lengths/checksums).
    pub malformed: AtomicU64,
    /// Dropped: truncated by the ring (frame larger than a slot).
    pub truncated: AtomicU64,
    /// Dropped by the model (NotOurs/Drop for a VIP packet, Local method).
    pub model_drop: AtomicU64,
    /// Transmit errors.
    pub tx_errors: AtomicU64,
    /// Packets forwarded from a thread's flow cache (no table lock).
    pub cache_hits: AtomicU64,
    /// Cacheable packets whose flow was not cached (went to the table).
    pub cache_misses: AtomicU64,
    /// Flow cache flushes (pending counts handed to the table).
    pub cache_flushes: AtomicU64,
    /// Cached flows dropped because the configuration changed.
    pub cache_invalidated: AtomicU64,
    /// Cached flows the table refused on flush (expired / dead dest).
    pub cache_refused: AtomicU64,
    /// IPv4 and IPv6 fragments taken for reassembly (to a VIP, or NAT
    /// replies).
    pub frag_rx: AtomicU64,
    /// Datagrams reassembled.
    pub reassembled: AtomicU64,
    /// Fragments or datagrams dropped by reassembly (duplicate, overlap,
    /// inconsistent, oversized, bad ECN mix, memory limit).
    pub reasm_drop: AtomicU64,
    /// Reassembly queues expired (`ipfrag_time`,
    /// `nf_conntrack_frag6_timeout`).
    pub reasm_timeout: AtomicU64,
    /// Reassembly queues evicted (oldest first) to stay within the
    /// memory bound (`ipfrag_high_thresh`, `nf_conntrack_frag6_high_thresh`).
    pub reasm_evicted: AtomicU64,
    /// IPv4 and IPv6 fragments sent (datagrams fragmented on output).
    pub frag_tx: AtomicU64,
    /// Frames received on the firewall-mark sockets (not in `rx`: the
    /// main ring sees them too).
    pub fwmark_rx: AtomicU64,
    /// Firewall-mark sockets that could not be opened or read.
    pub fwmark_errors: AtomicU64,
}

impl EngineStats {
    fn inc(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }
    /// `(name, value)` pairs.
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        vec![
            ("rx", g(&self.rx)),
            ("tx", g(&self.tx)),
            ("dr", g(&self.dr)),
            ("nat_in", g(&self.nat_in)),
            ("nat_out", g(&self.nat_out)),
            ("tun", g(&self.tun)),
            ("icmp_fwd", g(&self.icmp_fwd)),
            ("icmp_sent", g(&self.icmp_sent)),
            ("arp_requests", g(&self.arp_requests)),
            ("no_route", g(&self.no_route)),
            ("unresolved", g(&self.unresolved)),
            ("neigh_evicted", g(&self.neigh_evicted)),
            ("too_big", g(&self.too_big)),
            ("malformed", g(&self.malformed)),
            ("truncated", g(&self.truncated)),
            ("model_drop", g(&self.model_drop)),
            ("tx_errors", g(&self.tx_errors)),
            ("cache_hits", g(&self.cache_hits)),
            ("cache_misses", g(&self.cache_misses)),
            ("cache_flushes", g(&self.cache_flushes)),
            ("cache_invalidated", g(&self.cache_invalidated)),
            ("cache_refused", g(&self.cache_refused)),
            ("frag_rx", g(&self.frag_rx)),
            ("reassembled", g(&self.reassembled)),
            ("reasm_drop", g(&self.reasm_drop)),
            ("reasm_timeout", g(&self.reasm_timeout)),
            ("reasm_evicted", g(&self.reasm_evicted)),
            ("frag_tx", g(&self.frag_tx)),
            ("fwmark_rx", g(&self.fwmark_rx)),
            ("fwmark_errors", g(&self.fwmark_errors)),
        ]
    }
}

#[derive(Debug, Default)]
struct Wanted {
    set: HashSet<(Protocol, SocketAddrV4)>,
    vips: HashSet<Ipv4Addr>,
    set6: HashSet<(Protocol, SocketAddrV6)>,
    vips6: HashSet<Ipv6Addr>,
    keys: Vec<(Protocol, SocketAddr)>,
}

struct Inner {
    shared: Arc<Shared>,
    opts: PacketOptions,
    wanted: RwLock<Arc<Wanted>>,
    stop: AtomicBool,
    stats: EngineStats,
    nft: Mutex<Option<nft::NftTable>>,
    arp: Mutex<ArpCache>,
    flows: Mutex<Flows>,
    /// IPv4 addresses of NAT real servers (whose reply fragments the
    /// engine reassembles), refreshed with the nftables rules.
    nat_srcs: RwLock<Arc<HashSet<Ipv4Addr>>>,
    /// IPv6 addresses of NAT real servers, likewise.
    nat_srcs6: RwLock<Arc<HashSet<Ipv6Addr>>>,
    /// The firewall-mark services to serve (sorted), and a generation
    /// bumped on each change (RX thread 0 reopens its mark sockets).
    fwmarks: RwLock<Arc<Vec<FwmarkKey>>>,
    fwmarks_gen: AtomicU64,
    /// Binary upgrade of rvsd: forward, discard or hold ([`handover`]).
    gate: handover::Gate,
}

/// What the engine remembers of connections for ICMP errors.
#[derive(Default)]
struct Flows {
    /// (proto, client, vip) -> entry.
    map: HashMap<FlowKey, FlowEntry>,
    /// NAT: (proto, client, real server) -> vip.
    nat_rev: HashMap<FlowKey, SocketAddrV4>,
    /// IPv6 services: (proto, client, vip) -> entry.
    map6: HashMap<FlowKey6, FlowEntry>,
    /// IPv6 NAT: (proto, client, real server) -> vip.
    nat_rev6: HashMap<FlowKey6, SocketAddrV6>,
}

impl Flows {
    /// Gives memory back after a peak: the maps follow the table's live
    /// connections, but a `HashMap` keeps its largest capacity for good.
    fn shrink(&mut self) {
        fn shrink<K: Eq + std::hash::Hash, V>(m: &mut HashMap<K, V>) {
            if m.capacity() > 4 * m.len() + 1024 {
                m.shrink_to(2 * m.len());
            }
        }
        shrink(&mut self.map);
        shrink(&mut self.nat_rev);
        shrink(&mut self.map6);
        shrink(&mut self.nat_rev6);
    }
}

/// The real servers of NAT (Masq) destinations of address services, whose
/// replies the engines must see: (protocol, real server address).
pub fn nat_dests(ipvs: &rvs_core::Ipvs) -> Vec<(Protocol, SocketAddr)> {
    let mut v = Vec::new();
    for s in ipvs.services() {
        if let rvs_core::SvcKey::Addr { proto, .. } = s.key() {
            for d in s.dests() {
                if d.fwd() == FwdMethod::Masq {
                    v.push((proto, SocketAddr::new(d.addr(), d.port())));
                }
            }
        }
    }
    v.sort();
    v.dedup();
    v
}

impl Inner {
    fn nat_dests(&self) -> Vec<(Protocol, SocketAddr)> {
        nat_dests(&self.shared.ipvs.lock())
    }

    fn sync_nft(&self) {
        let nat = self.nat_dests();
        let srcs: HashSet<Ipv4Addr> = nat
            .iter()
            .filter_map(|(_, a)| match a.ip() {
                IpAddr::V4(v) => Some(v),
                IpAddr::V6(_) => None,
            })
            .collect();
        if **self.nat_srcs.read() != srcs {
            *self.nat_srcs.write() = Arc::new(srcs);
        }
        let srcs6: HashSet<Ipv6Addr> = nat
            .iter()
            .filter_map(|(_, a)| match a.ip() {
                IpAddr::V6(v) => Some(v),
                IpAddr::V4(_) => None,
            })
            .collect();
        if **self.nat_srcs6.read() != srcs6 {
            *self.nat_srcs6.write() = Arc::new(srcs6);
        }
        if self.gate.mode() != Handover::Forward {
            // a successor does not touch its predecessor's table yet
            return;
        }
        let mut g = self.nft.lock();
        let Some(t) = g.as_mut() else { return };
        let keys = self.wanted.read().keys.clone();
        let marks: Vec<(u32, bool)> = self.fwmarks.read().iter().map(|k| (k.mark, k.v6)).collect();
        if let Err(e) = t.apply_marks(&keys, &nat, &marks) {
            tracing::warn!(error = %e, "installing the nftables table failed");
        }
    }
}

/// The AF_PACKET engine. Dropping it (or [`Engine::shutdown`]) stops the
/// RX thread and removes the nftables table.
pub struct PacketEngine {
    inner: Arc<Inner>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

/// Facts about the interface.
#[derive(Debug, Clone)]
struct IfInfo {
    name: String,
    ifindex: u32,
    mac: Mac,
    mtu: u16,
    addrs: Vec<(Ipv4Addr, u8)>,
    addrs6: Vec<(Ipv6Addr, u8)>,
}

impl PacketEngine {
    /// Open the ring on `opts.interface` and start the RX thread. Needs
    /// CAP_NET_RAW (and CAP_NET_ADMIN for the nftables table).
    pub fn new(shared: Arc<Shared>, opts: PacketOptions) -> io::Result<PacketEngine> {
        let ifindex = sys::if_index(&opts.interface)?;
        let info = IfInfo {
            name: opts.interface.clone(),
            ifindex,
            mac: sys::if_mac(&opts.interface)?,
            mtu: sys::if_mtu(&opts.interface)?.min(u32::from(u16::MAX)) as u16,
            addrs: sys::if_ipv4_addrs(&opts.interface)?,
            addrs6: sys::if_ipv6_addrs(&opts.interface).unwrap_or_default(),
        };
        let n = opts.threads.max(1);
        let mut socks = Vec::with_capacity(n);
        let group = (std::process::id() as u16) ^ (ifindex as u16).rotate_left(8);
        for _ in 0..n {
            let s = sys::PacketSocket::open(ifindex, opts.ring)?;
            if n > 1 {
                s.join_fanout(group)?;
            }
            socks.push(s);
        }
        let nft = opts
            .nft
            .then(|| nft::NftTable::new(&opts.nft_table, &opts.interface));
        let gate = handover::Gate::new();
        gate.set(opts.gate);
        let inner = Arc::new(Inner {
            shared,
            opts,
            wanted: RwLock::new(Arc::new(Wanted::default())),
            stop: AtomicBool::new(false),
            stats: EngineStats::default(),
            nft: Mutex::new(nft),
            arp: Mutex::new(ArpCache::new()),
            flows: Mutex::new(Flows::default()),
            nat_srcs: RwLock::new(Arc::new(HashSet::new())),
            nat_srcs6: RwLock::new(Arc::new(HashSet::new())),
            fwmarks: RwLock::new(Arc::new(Vec::new())),
            fwmarks_gen: AtomicU64::new(0),
            gate,
        });
        if let Ok(t) = std::fs::read_to_string("/proc/net/arp") {
            inner
                .arp
                .lock()
                .seed(&neigh::parse_proc_arp(&t, &info.name), Instant::now());
        }
        let mut threads = Vec::with_capacity(n);
        for (id, sock) in socks.into_iter().enumerate() {
            let (i2, info) = (inner.clone(), info.clone());
            let t = std::thread::Builder::new()
                .name(format!("rvs-packet-{id}"))
                .spawn(move || Worker::new(id, i2, sock, info).run())?;
            threads.push(t);
        }
        Ok(PacketEngine {
            inner,
            threads: Mutex::new(threads),
        })
    }

    /// Engine counters.
    pub fn stats(&self) -> &EngineStats {
        &self.inner.stats
    }

    /// A binary upgrade of rvsd starts (`on`) or was given up
    /// ([`handover`]): while armed, the RX threads check the gate every
    /// millisecond, so that [`PacketEngine::set_handover`] takes effect at
    /// once (which disarms it).
    pub fn arm_handover(&self, on: bool) {
        self.inner.gate.arm(on);
    }

    /// Binary upgrade of rvsd ([`handover`]): what the RX threads do with
    /// frames from now on. For [`Handover::Hold`], returns once every RX
    /// thread has emptied its ring as the previous mode would have
    /// (forwarded or dropped) and flushed its flow cache, or false after
    /// `deadline`. [`Handover::Forward`] (re)installs the nftables table
    /// (on a thread of its own; it is left as it is in the other modes).
    pub fn set_handover(&self, h: Handover, deadline: Duration) -> bool {
        self.inner.gate.arm(false);
        self.inner.gate.set(h);
        match h {
            Handover::Hold => self
                .inner
                .gate
                .wait_parked(self.inner.opts.threads.max(1), deadline),
            Handover::Forward => {
                if let Some(t) = self.inner.nft.lock().as_mut() {
                    t.forget();
                }
                // `nft` runs for milliseconds: not on the caller's time (the
                // rules in force are the predecessor's until it is done)
                let inner = self.inner.clone();
                let _ = std::thread::Builder::new()
                    .name("rvs-packet-nft".into())
                    .spawn(move || inner.sync_nft());
                true
            }
            Handover::Discard => true,
        }
    }
}

impl Engine for PacketEngine {
    fn name(&self) -> &'static str {
        "packet"
    }

    fn reconcile(&self, wanted: &[ListenKey]) {
        let mut w = Wanted::default();
        for k in wanted {
            match k.addr {
                SocketAddr::V4(a) => {
                    w.set.insert((k.proto, a));
                    w.vips.insert(*a.ip());
                    w.keys.push((k.proto, k.addr));
                }
                SocketAddr::V6(a) => {
                    w.set6
                        .insert((k.proto, SocketAddrV6::new(*a.ip(), a.port(), 0, 0)));
                    w.vips6.insert(*a.ip());
                    w.keys.push((k.proto, k.addr));
                }
            }
        }
        w.keys.sort();
        *self.inner.wanted.write() = Arc::new(w);
        self.inner.sync_nft();
    }

    /// Serve these firewall-mark services: RX thread 0 opens one
    /// [`sys::MarkSocket`] per (mark, family), and the nftables table
    /// drops marked packets before the kernel's stack sees them.
    fn reconcile_fwmarks(&self, marks: &[FwmarkKey]) {
        let mut m = marks.to_vec();
        m.sort();
        m.dedup();
        if **self.inner.fwmarks.read() == m {
            return;
        }
        *self.inner.fwmarks.write() = Arc::new(m);
        self.inner.fwmarks_gen.fetch_add(1, Ordering::Release);
        self.inner.sync_nft();
    }

    fn shutdown(&self) {
        self.inner.stop.store(true, Ordering::Relaxed);
        for t in self.threads.lock().drain(..) {
            let _ = t.join();
        }
        if let Some(mut t) = self.inner.nft.lock().take() {
            t.remove();
        }
    }
}

impl Drop for PacketEngine {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// What the engine remembers of a connection for ICMP errors.
#[derive(Debug, Clone, Copy)]
struct FlowEntry {
    conn: ConnRef,
    /// The real server (of either family for TUN).
    dest: SocketAddr,
    fwd: FwdMethod,
    tun: (TunType, u16, TunCsum),
}

type FlowKey = (Protocol, SocketAddrV4, SocketAddrV4);
type FlowKey6 = (Protocol, SocketAddrV6, SocketAddrV6);

/// Frames per `sendmmsg`.
const TX_BATCH: usize = 64;

struct Worker {
    /// 0 also runs the shared periodic work (ARP retries, nft, cleanup).
    id: usize,
    inner: Arc<Inner>,
    sock: sys::PacketSocket,
    info: IfInfo,
    routes: Vec<Route>,
    routes6: Vec<Route6>,
    /// Working copy of the frame being forwarded.
    buf: Vec<u8>,
    /// Output of encapsulation / ICMP building.
    out: Vec<u8>,
    /// GSO segments.
    segs: Vec<Vec<u8>>,
    /// Transmit queue: frames back to back, and (start, len) of each.
    txbuf: Vec<u8>,
    txlens: Vec<(usize, usize)>,
    ident: u16,
    ticks: [Instant; 3],
    /// This thread's steady flows, forwarded without the table lock.
    cache: flowcache::FlowCache,
    /// Cache counters already added to [`EngineStats`].
    cache_published: flowcache::CacheStats,
    /// This thread's IPv4 reassembly queues (PACKET_FANOUT_HASH hashes
    /// fragments on addresses and protocol only, so all fragments of a
    /// datagram reach the same thread).
    reasm: frag::Reassembler,
    /// This thread's IPv6 reassembly queues (the fanout hash of a
    /// fragment is on its addresses too).
    reasm6: frag6::Reassembler6,
    /// The job being forwarded: largest fragment of a reassembled
    /// datagram (0: not reassembled), output fragments are at most this.
    frag_max: u16,
    /// The job being forwarded: identification of its fragments (IPv6
    /// output fragments keep it).
    frag_ident: u32,
    /// The job being forwarded came with a partial checksum (a local
    /// sender's offload: a UDP frame larger than the MTU is then a GSO
    /// super-packet, not a datagram to fragment).
    partial: bool,
    /// Output fragments.
    pieces: Vec<Vec<u8>>,
    /// Reassembly timeouts already added to [`EngineStats`] (IPv4, IPv6).
    reasm_timeouts: (u64, u64),
    /// Reassembly evictions already added to [`EngineStats`] (IPv4, IPv6).
    reasm_evictions: (u64, u64),
    /// Thread 0: one socket per served (firewall mark, family).
    marks: Vec<sys::MarkSocket>,
    /// The `fwmarks_gen` `marks` were opened for.
    marks_gen: u64,
    /// `poll` entries: the ring's slot, then `marks` (same order), for
    /// [`sys::PacketSocket::wait_any`].
    mark_pfds: Vec<libc::pollfd>,
    /// The gate's mode at the last pass, and whether this thread is parked
    /// ([`Handover::Hold`]).
    gate_seen: Handover,
    parked: bool,
}

/// Where the frames of a batch come from: the main ring, or the
/// firewall-mark socket `marks[k]`.
#[derive(Debug, Clone, Copy)]
enum Rx {
    Ring,
    Mark(usize),
}

/// Bytes of a received frame of `rx`.
fn rx_frame<'a>(
    sock: &'a sys::PacketSocket,
    marks: &'a [sys::MarkSocket],
    rx: Rx,
    f: &sys::RxFrame,
) -> &'a [u8] {
    match rx {
        Rx::Ring => sock.frame(f),
        Rx::Mark(k) => marks.get(k).map_or(&[], |m| m.frame(f)),
    }
}

/// The UDP payload of a client->VIP job's frame (empty for anything else).
fn udp_payload<'a>(
    sock: &'a sys::PacketSocket,
    marks: &'a [sys::MarkSocket],
    rx: Rx,
    frames: &[sys::RxFrame],
    reasm: &'a [(Vec<u8>, u16, u32)],
    src: &Src,
    job: &Job,
) -> &'a [u8] {
    let l4 = match job {
        Job::In(fl) if fl.proto == Protocol::Udp => fl.l4,
        Job::In6(fl) if fl.proto == Protocol::Udp => fl.l4,
        _ => return &[],
    };
    let frame = match *src {
        Src::Ring(i) => frames
            .get(i)
            .map_or(&[][..], |f| rx_frame(sock, marks, rx, f)),
        Src::Reasm(k) => reasm.get(k).map_or(&[][..], |r| &r.0[..]),
    };
    frame.get(l4 + 8..).unwrap_or(&[])
}

/// Where a job's frame is: a ring slot of the batch, or a datagram the
/// reassembler returned.
#[derive(Debug, Clone, Copy)]
enum Src {
    Ring(usize),
    Reasm(usize),
}

/// Frames of one batch sorted by what they need.
#[derive(Default)]
struct Batch {
    jobs: Vec<(Src, Job, rvs_core::Packet)>,
    icmps: Vec<(Src, IcmpError)>,
    icmps6: Vec<(Src, IcmpError6)>,
    learn: Vec<(IpAddr, Mac)>,
}

/// Direction of a TCP/UDP/SCTP frame to our MAC: `In` to a served
/// VIP:port (`served`), or on a firewall-mark socket (`fwmark != 0`) to
/// anything that is not an address service; `Out` for a NAT reply, i.e.
/// an unmarked frame to an address that is neither ours nor a VIP
/// (`local`); `None` when the frame is not the engine's.
fn flow_dir(fwmark: u32, served: bool, local: bool) -> Option<Dir> {
    match (fwmark != 0, served) {
        (true, true) => None,
        (true, false) | (false, true) => Some(Dir::In),
        (false, false) => (!local).then_some(Dir::Out),
    }
}

/// Put a classified frame (from the ring or reassembled) where the batch
/// needs it: TCP/UDP/SCTP to a served VIP:port (In) or from a real server
/// to a non-local address (Out, NAT replies), related ICMP errors, ARP /
/// neighbour learning, malformed counts. With `fwmark` (a frame of a
/// firewall-mark socket) a TCP/UDP/SCTP packet to our MAC is In with that
/// mark, unless its VIP:port is an address service (served by the main
/// ring).
fn sort_frame(info: &IfInfo, c: Classified, src: Src, wanted: &Wanted, fwmark: u32, b: &mut Batch) {
    match c {
        Classified::Arp(r) => b
            .learn
            .push((r.source_protocol_addr.into(), r.source_hardware_addr)),
        Classified::Neighbor { ip, mac } => b.learn.push((ip.into(), mac)),
        Classified::Flow6(fl) => {
            if fl.dst_mac != info.mac {
                return;
            }
            let served = wanted.set6.contains(&(fl.proto, fl.dst));
            let local = info.addrs6.iter().any(|(x, _)| x == fl.dst.ip())
                || wanted.vips6.contains(fl.dst.ip());
            let Some(dir) = flow_dir(fwmark, served, local) else {
                return;
            };
            let pkt = rvs_core::Packet {
                fwmark,
                proto: fl.proto,
                src: SocketAddr::V6(fl.src),
                dst: SocketAddr::V6(fl.dst),
                tcp_flags: TcpFlags(fl.flags),
                len: fl.l3_len,
                dir,
            };
            let job = if dir == Dir::In {
                Job::In6(fl)
            } else {
                Job::Out6(fl)
            };
            b.jobs.push((src, job, pkt));
        }
        Classified::Flow(fl) => {
            if fl.dst_mac != info.mac {
                return;
            }
            let served = wanted.set.contains(&(fl.proto, fl.dst));
            let local = info.addrs.iter().any(|(x, _)| x == fl.dst.ip())
                || wanted.vips.contains(fl.dst.ip());
            let Some(dir) = flow_dir(fwmark, served, local) else {
                return;
            };
            let pkt = rvs_core::Packet {
                fwmark,
                proto: fl.proto,
                src: SocketAddr::V4(fl.src),
                dst: SocketAddr::V4(fl.dst),
                tcp_flags: TcpFlags(fl.flags),
                len: u32::from(fl.l3_len),
                dir,
            };
            let job = if dir == Dir::In {
                Job::In(fl)
            } else {
                Job::Out(fl)
            };
            b.jobs.push((src, job, pkt));
        }
        Classified::IcmpError(e) if e.dst_mac == info.mac => b.icmps.push((src, e)),
        Classified::IcmpError6(e) if e.dst_mac == info.mac => b.icmps6.push((src, e)),
        _ => {}
    }
}

/// Whether the IPv4 fragment `frame` (to `dst`) is the engine's to
/// reassemble, as `nf_defrag_ipv4` would for IPVS: addressed to our MAC,
/// and TCP/UDP/SCTP/ICMP to a served VIP, or from a NAT real server to a
/// non-local address (a reply to translate).
fn frag_wanted(
    info: &IfInfo,
    frame: &[u8],
    dst: Ipv4Addr,
    wanted: &Wanted,
    nat_srcs: &HashSet<Ipv4Addr>,
) -> bool {
    if frame.get(..6) != Some(&info.mac.0[..]) {
        return false;
    }
    let Some(ip) = frame
        .get(fwd::ETH_LEN..)
        .and_then(|b| rvs_wire::ipv4::Packet::new_checked(b).ok())
    else {
        return false;
    };
    const TCP: u8 = 6;
    const UDP: u8 = 17;
    const SCTP: u8 = 132;
    const ICMP: u8 = 1;
    let proto = ip.protocol();
    if wanted.vips.contains(&dst) {
        return matches!(proto, TCP | UDP | SCTP | ICMP);
    }
    nat_srcs.contains(&ip.src_addr())
        && matches!(proto, TCP | UDP | SCTP)
        && !info.addrs.iter().any(|(x, _)| *x == dst)
}

/// Reassembly limits: the kernel's `ipfrag_*` sysctls, the memory split
/// between the RX threads.
fn frag_config(threads: usize) -> frag::Config {
    let read = |n: &str| -> Option<u64> {
        std::fs::read_to_string(format!("/proc/sys/net/ipv4/{n}"))
            .ok()?
            .trim()
            .parse()
            .ok()
    };
    let n = threads.max(1);
    let mut c = frag::Config {
        headroom: fwd::ETH_LEN,
        ..frag::Config::default()
    };
    if let (Some(h), Some(l)) = (read("ipfrag_high_thresh"), read("ipfrag_low_thresh")) {
        if l <= h && h > 0 {
            c.high_thresh = (h as usize / n).max(64 * 1024);
            c.low_thresh = (l as usize / n).min(c.high_thresh);
        }
    }
    if let Some(t) = read("ipfrag_time").filter(|t| *t > 0) {
        c.timeout = Duration::from_secs(t);
    }
    c
}

/// Whether the IPv6 fragment `frame` (`src` -> `dst`, upper layer
/// `proto` as far as it tells) is the engine's to reassemble, as
/// `nf_defrag_ipv6` would for IPVS: addressed to our MAC, and
/// TCP/UDP/SCTP/ICMPv6 (or behind destination options) to a served VIP,
/// or TCP/UDP/SCTP from a NAT real server to a non-local address.
fn frag6_wanted(
    info: &IfInfo,
    frame: &[u8],
    (src, dst, proto): (Ipv6Addr, Ipv6Addr, u8),
    wanted: &Wanted,
    nat_srcs: &HashSet<Ipv6Addr>,
) -> bool {
    use rvs_wire::ip_proto;
    if frame.get(..6) != Some(&info.mac.0[..]) {
        return false;
    }
    let l4 = matches!(proto, ip_proto::TCP | ip_proto::UDP | ip_proto::SCTP);
    if wanted.vips6.contains(&dst) {
        return l4 || matches!(proto, ip_proto::ICMPV6 | ip_proto::DSTOPTS);
    }
    nat_srcs.contains(&src) && l4 && !info.addrs6.iter().any(|(x, _)| *x == dst)
}

/// IPv6 reassembly limits: `nf_conntrack_frag6_high_thresh` /
/// `_low_thresh` / `_timeout` (defaults 4 MiB, 3 MiB, 60 s when
/// `nf_defrag_ipv6` is not loaded), the memory split between the RX
/// threads.
fn frag6_config(threads: usize) -> frag::Config {
    let read = |n: &str| -> Option<u64> {
        std::fs::read_to_string(format!("/proc/sys/net/netfilter/nf_conntrack_frag6_{n}"))
            .ok()?
            .trim()
            .parse()
            .ok()
    };
    let n = threads.max(1);
    let mut c = frag::Config {
        headroom: fwd::ETH_LEN,
        ..frag6::default_config6()
    };
    let (h, l) = (
        read("high_thresh").unwrap_or(frag6::DEFAULT_HIGH_THRESH6 as u64),
        read("low_thresh").unwrap_or(frag6::DEFAULT_LOW_THRESH6 as u64),
    );
    if l <= h && h > 0 {
        c.high_thresh = (h as usize / n).max(64 * 1024);
        c.low_thresh = (l as usize / n).min(c.high_thresh);
    }
    if let Some(t) = read("timeout").filter(|t| *t > 0) {
        c.timeout = Duration::from_secs(t);
    }
    c
}

/// Flows one RX thread's cache holds at most.
const FLOW_CACHE_CAP: usize = 65536;

enum Job {
    In(Flow),
    Out(Flow),
    In6(Flow6),
    Out6(Flow6),
}

impl Worker {
    fn new(id: usize, inner: Arc<Inner>, sock: sys::PacketSocket, info: IfInfo) -> Worker {
        let now = Instant::now();
        let reasm = frag::Reassembler::new(frag_config(inner.opts.threads));
        let inner_threads = inner.opts.threads;
        let gate_seen = inner.gate.mode();
        let mut w = Worker {
            id,
            inner,
            sock,
            info,
            routes: Vec::new(),
            routes6: Vec::new(),
            buf: Vec::with_capacity(65536),
            out: Vec::with_capacity(2048),
            segs: Vec::new(),
            txbuf: Vec::with_capacity(TX_BATCH * 1600),
            txlens: Vec::with_capacity(TX_BATCH),
            ident: 1,
            ticks: [now; 3],
            cache: flowcache::FlowCache::new(FLOW_CACHE_CAP),
            cache_published: flowcache::CacheStats::default(),
            reasm,
            reasm6: frag6::Reassembler6::new(frag6_config(inner_threads)),
            frag_max: 0,
            frag_ident: 0,
            partial: false,
            pieces: Vec::new(),
            reasm_timeouts: (0, 0),
            reasm_evictions: (0, 0),
            marks: Vec::new(),
            marks_gen: 0,
            mark_pfds: Vec::new(),
            gate_seen,
            parked: false,
        };
        w.refresh_if();
        w
    }

    fn refresh_if(&mut self) {
        if let Ok(t) = std::fs::read_to_string("/proc/net/route") {
            self.routes = neigh::parse_proc_route(&t, &self.info.name);
        }
        if let Ok(t) = std::fs::read_to_string("/proc/net/ipv6_route") {
            self.routes6 = neigh::parse_proc_ipv6_route(&t, &self.info.name);
        }
        if let Ok(a) = sys::if_ipv4_addrs(&self.info.name) {
            self.info.addrs = a;
        }
        if let Ok(a) = sys::if_ipv6_addrs(&self.info.name) {
            self.info.addrs6 = a;
        }
        if let Ok(m) = sys::if_mtu(&self.info.name) {
            self.info.mtu = m.min(u32::from(u16::MAX)) as u16;
        }
    }

    /// Our source address toward `dst`: an address on the interface in the
    /// same subnet if possible, never a served VIP.
    fn our_addr(&self, dst: Ipv4Addr, vips: &HashSet<Ipv4Addr>) -> Option<Ipv4Addr> {
        neigh::source_addr(&self.info.addrs, dst, vips)
    }

    fn is_local(&self, a: &Ipv4Addr) -> bool {
        self.info.addrs.iter().any(|(x, _)| x == a)
    }

    fn is_local6(&self, a: &Ipv6Addr) -> bool {
        self.info.addrs6.iter().any(|(x, _)| x == a)
    }

    /// Our IPv6 source toward `dst` (neighbour solicitations, tunnels).
    fn our_addr6(&self, dst: Ipv6Addr, vips: &HashSet<Ipv6Addr>) -> Option<Ipv6Addr> {
        neigh::source_addr6(&self.info.addrs6, dst, vips)
    }

    fn run(mut self) {
        let mut frames = Vec::new();
        let mut mframes = Vec::new();
        while !self.inner.stop.load(Ordering::Relaxed) {
            let gate = self.inner.gate.mode();
            if gate == Handover::Hold {
                if !self.parked {
                    self.park(&mut frames, &mut mframes);
                }
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
            if self.parked {
                self.parked = false;
                self.inner.gate.unpark();
            }
            self.gate_seen = gate;
            let forward = gate == Handover::Forward;
            if self.id == 0 {
                self.sync_marks();
            }
            match self
                .sock
                .wait_any(&mut self.mark_pfds, self.inner.gate.poll_timeout())
            {
                Ok(ring) => {
                    if ring && self.sock.recv_block(&mut frames) {
                        if forward {
                            for chunk in frames.chunks(self.inner.opts.batch.max(1)) {
                                self.handle_batch(Rx::Ring, chunk);
                            }
                        }
                        self.sock.release_block();
                    }
                    for k in 0..self.marks.len() {
                        if self.mark_pfds.get(k + 1).is_some_and(|p| p.revents != 0) {
                            self.recv_marks(k, &mut mframes, forward);
                        }
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "packet engine: poll failed");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
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

    /// [`Handover::Hold`]: empty the ring and the mark sockets as the mode
    /// before did (forward or drop), hand the flow cache's counts to the
    /// table, and stop reading until the gate opens again.
    fn park(&mut self, frames: &mut Vec<sys::RxFrame>, mframes: &mut Vec<sys::RxFrame>) {
        let forward = self.gate_seen == Handover::Forward;
        // one ring's worth at most, so a flood cannot keep us here
        for _ in 0..64 {
            if !self.sock.recv_block(frames) {
                break;
            }
            if forward {
                for chunk in frames.chunks(self.inner.opts.batch.max(1)) {
                    self.handle_batch(Rx::Ring, chunk);
                }
            }
            self.sock.release_block();
        }
        for k in 0..self.marks.len() {
            self.recv_marks(k, mframes, forward);
        }
        if !self.cache.is_empty() {
            let now = self.inner.shared.now();
            let mut ipvs = self.inner.shared.ipvs.lock();
            self.cache.flush(&mut ipvs, now);
        }
        self.publish_cache_stats();
        self.parked = true;
        self.inner.gate.park();
    }

    /// Thread 0: open / close the firewall-mark sockets to match the
    /// wanted fwmark services (a socket that fails to open is retried on
    /// the next change).
    fn sync_marks(&mut self) {
        let g = self.inner.fwmarks_gen.load(Ordering::Acquire);
        if g == self.marks_gen {
            return;
        }
        self.marks_gen = g;
        let want = self.inner.fwmarks.read().clone();
        self.marks.retain(|m| {
            let keep = want.contains(&FwmarkKey {
                mark: m.mark,
                v6: m.v6,
            });
            if !keep {
                tracing::info!(
                    fwmark = m.mark,
                    v6 = m.v6,
                    "packet engine: fwmark service gone"
                );
            }
            keep
        });
        for k in want.iter() {
            if self.marks.iter().any(|m| m.mark == k.mark && m.v6 == k.v6) {
                continue;
            }
            match sys::MarkSocket::open(self.info.ifindex, k.mark, k.v6) {
                Ok(m) => {
                    tracing::info!(fwmark = k.mark, v6 = k.v6, interface = %self.info.name, "packet engine: serving fwmark service");
                    self.marks.push(m);
                }
                Err(e) => {
                    EngineStats::inc(&self.inner.stats.fwmark_errors);
                    tracing::warn!(fwmark = k.mark, v6 = k.v6, error = %e, "packet engine: cannot open the fwmark socket");
                }
            }
        }
        let pfd = |fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // Slot 0 is the ring's (wait_any fills it in).
        self.mark_pfds = std::iter::once(pfd(-1))
            .chain(self.marks.iter().map(|m| pfd(m.raw_fd())))
            .collect();
    }

    /// Handle what waits on the firewall-mark socket `marks[k]` (a few
    /// batches at most, so the ring is not starved).
    fn recv_marks(&mut self, k: usize, frames: &mut Vec<sys::RxFrame>, forward: bool) {
        for _ in 0..4 {
            let Some(m) = self.marks.get_mut(k) else {
                return;
            };
            match m.recv_batch(frames) {
                Ok(0) => return,
                Ok(_) if !forward => {}
                Ok(_) => {
                    for chunk in frames.chunks(self.inner.opts.batch.max(1)) {
                        self.handle_batch(Rx::Mark(k), chunk);
                    }
                }
                Err(e) => {
                    EngineStats::inc(&self.inner.stats.fwmark_errors);
                    tracing::debug!(error = %e, "packet engine: fwmark socket receive failed");
                    return;
                }
            }
        }
    }

    /// Flush the flow cache's counts to the table if due (every
    /// [`flowcache::FlowCache::FLUSH_EVERY`], so counters and timers are
    /// current even when every packet hits the cache).
    fn flush_cache_if_due(&mut self) {
        let now = self.inner.shared.now();
        if self.cache.flush_due(now) {
            let mut ipvs = self.inner.shared.ipvs.lock();
            self.cache.flush(&mut ipvs, now);
        }
        self.publish_cache_stats();
    }

    /// Expire reassembly queues (`ip_expire`): a datagram to a VIP whose
    /// first fragment had arrived is answered with ICMP "time exceeded /
    /// fragment reassembly time exceeded" from the VIP, quoting it.
    fn expire_frags(&mut self) {
        let now = Instant::now();
        let expired = self.reasm.expire(now);
        let expired6 = self.reasm6.expire(now);
        let t = (self.reasm.stats().timeouts, self.reasm6.stats().timeouts);
        let new = (t.0 - self.reasm_timeouts.0) + (t.1 - self.reasm_timeouts.1);
        if new > 0 {
            self.inner
                .stats
                .reasm_timeout
                .fetch_add(new, Ordering::Relaxed);
            self.reasm_timeouts = t;
        }
        let e = (self.reasm.stats().evicted, self.reasm6.stats().evicted);
        let new = (e.0 - self.reasm_evictions.0) + (e.1 - self.reasm_evictions.1);
        if new > 0 {
            self.inner
                .stats
                .reasm_evicted
                .fetch_add(new, Ordering::Relaxed);
            self.reasm_evictions = e;
        }
        if !expired6.is_empty() {
            self.expire_frags6(expired6);
        }
        if expired.is_empty() {
            return;
        }
        let wanted = self.inner.wanted.read().clone();
        let mut out = std::mem::take(&mut self.out);
        for e in expired {
            let Some(first) = e.first_fragment else {
                continue;
            };
            if !wanted.vips.contains(&e.key.dst) {
                continue;
            }
            let ok = fwd::icmp_error_frame(
                &mut out,
                (self.info.mac, Mac::ZERO),
                e.key.dst,
                &first,
                icmpv4::msg_type::TIME_EXCEEDED,
                frag::CODE_FRAG_REASM_TIME_EXCEEDED,
                0,
            )
            .is_ok();
            if ok {
                EngineStats::inc(&self.inner.stats.icmp_sent);
                self.route_and_send(&mut out, e.key.src);
            }
        }
        self.out = out;
        self.flush();
    }

    /// IPv6 reassembly timeouts (`ip6frag_expire_frag_queue`): when the
    /// first fragment had arrived, ICMPv6 "time exceeded / fragment
    /// reassembly time exceeded" quoting it goes to the source — from the
    /// VIP for a datagram to a VIP, from our address toward the source
    /// for a NAT real server's reply.
    fn expire_frags6(&mut self, expired: Vec<frag::Expired<frag6::FragKey6>>) {
        let wanted = self.inner.wanted.read().clone();
        let mut out = std::mem::take(&mut self.out);
        for e in expired {
            let Some(first) = e.first_fragment else {
                continue;
            };
            let from = if wanted.vips6.contains(&e.key.dst) {
                Some(e.key.dst)
            } else {
                self.our_addr6(e.key.src, &wanted.vips6)
            };
            let Some(from) = from else { continue };
            let ok = fwd::icmp6_error_frame(
                &mut out,
                (self.info.mac, Mac::ZERO),
                from,
                &first,
                icmpv6::msg_type::TIME_EXCEEDED,
                frag6::CODE_FRAG_REASM_TIME_EXCEEDED,
                0,
            )
            .is_ok();
            if ok {
                EngineStats::inc(&self.inner.stats.icmp_sent);
                self.route_and_send(&mut out, e.key.src);
            }
        }
        self.out = out;
        self.flush();
    }

    /// Add the flow cache counters gained since the last call to
    /// [`EngineStats`].
    fn publish_cache_stats(&mut self) {
        let (c, p) = (self.cache.stats(), self.cache_published);
        if c == p {
            return;
        }
        let st = &self.inner.stats;
        for (a, new, old) in [
            (&st.cache_hits, c.hits, p.hits),
            (&st.cache_misses, c.misses, p.misses),
            (&st.cache_flushes, c.flushes, p.flushes),
            (&st.cache_invalidated, c.invalidated, p.invalidated),
            (&st.cache_refused, c.refused, p.refused),
        ] {
            if new > old {
                a.fetch_add(new - old, Ordering::Relaxed);
            }
        }
        self.cache_published = c;
    }

    fn tick(&mut self) {
        self.flush_cache_if_due();
        self.expire_frags();
        let now = Instant::now();
        if now.duration_since(self.ticks[1]) >= Duration::from_secs(1) {
            self.ticks[1] = now;
            self.refresh_if();
            if self.id == 0 {
                self.inner.sync_nft();
            }
        }
        if self.id != 0 {
            return;
        }
        if now.duration_since(self.ticks[0]) >= Duration::from_millis(100) {
            self.ticks[0] = now;
            let mut a = Actions::default();
            self.inner.arp.lock().tick(now, &mut a);
            self.do_actions(a);
            self.flush();
        }
        if now.duration_since(self.ticks[2]) >= Duration::from_secs(5) {
            self.ticks[2] = now;
            let t = self.inner.shared.now();
            let (live, live6): (HashSet<FlowKey>, HashSet<FlowKey6>) = {
                let flows = self.inner.flows.lock();
                let ipvs = self.inner.shared.ipvs.lock();
                (
                    flows
                        .map
                        .iter()
                        .filter(|(_, e)| ipvs.conn(t, e.conn).is_some())
                        .map(|(k, _)| *k)
                        .collect(),
                    flows
                        .map6
                        .iter()
                        .filter(|(_, e)| ipvs.conn(t, e.conn).is_some())
                        .map(|(k, _)| *k)
                        .collect(),
                )
            };
            let mut flows = self.inner.flows.lock();
            flows.map.retain(|k, _| live.contains(k));
            flows
                .nat_rev
                .retain(|(p, c, _), v| live.contains(&(*p, *c, *v)));
            flows.map6.retain(|k, _| live6.contains(k));
            flows
                .nat_rev6
                .retain(|(p, c, _), v| live6.contains(&(*p, *c, *v)));
            flows.shrink();
        }
    }

    fn handle_batch(&mut self, rx: Rx, frames: &[sys::RxFrame]) {
        let st = &self.inner.stats;
        let wanted = self.inner.wanted.read().clone();
        let fwmark = match rx {
            Rx::Ring => 0,
            Rx::Mark(k) => self.marks.get(k).map_or(0, |m| m.mark),
        };
        let mut b = Batch {
            jobs: Vec::with_capacity(frames.len()),
            ..Batch::default()
        };
        // Datagrams completed by fragments of this batch (with their
        // largest fragment's size).
        let mut reasm: Vec<(Vec<u8>, u16, u32)> = Vec::new();
        let mut nat_srcs = None;
        let mut nat_srcs6 = None;
        for (i, f) in frames.iter().enumerate() {
            if f.pkttype == sys::PACKET_OUTGOING {
                continue;
            }
            EngineStats::inc(if fwmark != 0 { &st.fwmark_rx } else { &st.rx });
            let frame = rx_frame(&self.sock, &self.marks, rx, f);
            let c = fwd::classify(frame);
            if f.len < f.wire_len {
                if fwmark != 0
                    || matches!(c, Classified::Flow(fl) if wanted.set.contains(&(fl.proto, fl.dst)))
                {
                    EngineStats::inc(&st.truncated);
                }
                continue;
            }
            if fwmark != 0 {
                // Marked frames: only TCP/UDP/SCTP packets are served
                // (fragments, ICMP and ARP are the main ring's).
                if matches!(c, Classified::Flow(_) | Classified::Flow6(_)) {
                    sort_frame(&self.info, c, Src::Ring(i), &wanted, fwmark, &mut b);
                }
                continue;
            }
            if let Classified::OtherIpv4 {
                dst,
                fragment: true,
            } = c
            {
                let nat = nat_srcs.get_or_insert_with(|| self.inner.nat_srcs.read().clone());
                if !frag_wanted(&self.info, frame, dst, &wanted, nat) {
                    continue;
                }
                EngineStats::inc(&st.frag_rx);
                let l3 = frame.get(fwd::ETH_LEN..).unwrap_or_default();
                match self.reasm.push_full(Instant::now(), l3) {
                    Ok(Some(mut r)) => {
                        EngineStats::inc(&st.reassembled);
                        let Some(eth) = r.datagram.get_mut(..fwd::ETH_LEN) else {
                            continue;
                        };
                        eth.copy_from_slice(&frame[..fwd::ETH_LEN]);
                        let c = fwd::classify(&r.datagram);
                        if matches!(c, Classified::Malformed(_)) {
                            EngineStats::inc(&st.malformed);
                        }
                        sort_frame(&self.info, c, Src::Reasm(reasm.len()), &wanted, 0, &mut b);
                        reasm.push((r.datagram, r.frag_max_size, r.ident));
                    }
                    Ok(None) => {}
                    Err(frag::FragError::Malformed(_)) => EngineStats::inc(&st.malformed),
                    Err(_) => EngineStats::inc(&st.reasm_drop),
                }
                continue;
            }
            if let Classified::Fragment6 { src, dst, proto } = c {
                let nat = nat_srcs6.get_or_insert_with(|| self.inner.nat_srcs6.read().clone());
                if !frag6_wanted(&self.info, frame, (src, dst, proto), &wanted, nat) {
                    continue;
                }
                EngineStats::inc(&st.frag_rx);
                let l3 = frame.get(fwd::ETH_LEN..).unwrap_or_default();
                match self.reasm6.push_full(Instant::now(), l3) {
                    Ok(Some(mut r)) => {
                        EngineStats::inc(&st.reassembled);
                        let Some(eth) = r.datagram.get_mut(..fwd::ETH_LEN) else {
                            continue;
                        };
                        eth.copy_from_slice(&frame[..fwd::ETH_LEN]);
                        let c = fwd::classify(&r.datagram);
                        if matches!(c, Classified::Malformed(_)) {
                            EngineStats::inc(&st.malformed);
                        }
                        sort_frame(&self.info, c, Src::Reasm(reasm.len()), &wanted, 0, &mut b);
                        reasm.push((r.datagram, r.frag_max_size, r.ident));
                    }
                    Ok(None) => {}
                    Err(frag::FragError::Malformed(_)) => EngineStats::inc(&st.malformed),
                    Err(_) => EngineStats::inc(&st.reasm_drop),
                }
                continue;
            }
            if matches!(c, Classified::Malformed(_)) {
                EngineStats::inc(&st.malformed);
            }
            sort_frame(&self.info, c, Src::Ring(i), &wanted, 0, &mut b);
        }
        let Batch {
            jobs,
            icmps,
            icmps6,
            learn,
        } = b;
        // Packets of steady flows are forwarded from this thread's flow
        // cache; the model is locked (once) from the first packet that
        // needs it, and the rest of the batch goes in order under the lock.
        let mut verdicts = Vec::with_capacity(jobs.len());
        if !jobs.is_empty() {
            let now = self.inner.shared.now();
            let mut guard = None;
            for (src, job, p) in &jobs {
                let key = flowcache::FlowKey {
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
                // a persistence engine (--pe sip) reads new UDP flows' payload
                let payload = udp_payload(&self.sock, &self.marks, rx, frames, &reasm, src, job);
                let v = ipvs.process_payload(now, p, &[], payload);
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
        let now = Instant::now();
        let mut acts = Actions::default();
        if !learn.is_empty() {
            let mut arp = self.inner.arp.lock();
            for (ip, mac) in learn {
                arp.learn(ip, mac, now, &mut acts);
            }
        }
        self.do_actions(acts);
        for ((src, job, _), v) in jobs.into_iter().zip(verdicts) {
            let partial = self.load(rx, src, frames, &mut reasm);
            match job {
                Job::In(fl) => self.forward_in(&fl, v, &wanted),
                Job::Out(fl) => self.forward_out(&fl, v),
                Job::In6(fl) => self.forward_in6(&fl, v, partial, &wanted),
                Job::Out6(fl) => self.forward_out6(&fl, v, partial),
            }
        }
        for (src, e) in icmps {
            self.load(rx, src, frames, &mut reasm);
            self.forward_icmp(&e, &wanted);
        }
        for (src, e) in icmps6 {
            self.load(rx, src, frames, &mut reasm);
            self.forward_icmp6(&e, &wanted);
        }
        self.frag_max = 0;
        self.frag_ident = 0;
        self.partial = false;
        self.flush();
    }

    /// Put a job's frame in the working buffer: a ring frame is copied
    /// (a partial transport checksum completed), a reassembled datagram
    /// moved. Returns whether the checksum was partial.
    fn load(
        &mut self,
        rx: Rx,
        src: Src,
        frames: &[sys::RxFrame],
        reasm: &mut [(Vec<u8>, u16, u32)],
    ) -> bool {
        self.buf.clear();
        match src {
            Src::Ring(i) => {
                let Some(f) = frames.get(i) else {
                    return false;
                };
                self.buf
                    .extend_from_slice(rx_frame(&self.sock, &self.marks, rx, f));
                if f.csum_not_ready {
                    let _ = fwd::complete_l4_checksum(&mut self.buf, fwd::ETH_LEN);
                }
                self.frag_max = 0;
                self.frag_ident = 0;
                self.partial = f.csum_not_ready;
            }
            Src::Reasm(k) => {
                if let Some((d, max, ident)) = reasm.get_mut(k) {
                    std::mem::swap(&mut self.buf, d);
                    self.frag_max = *max;
                    self.frag_ident = *ident;
                }
                self.partial = false;
            }
        }
        self.partial
    }

    fn forward_in(&mut self, fl: &Flow, v: Verdict, wanted: &Wanted) {
        let st = &self.inner.stats;
        match v {
            Verdict::Forward {
                conn,
                dest,
                fwd,
                tun,
                created,
            } => {
                if created {
                    let mut flows = self.inner.flows.lock();
                    let e = FlowEntry {
                        conn,
                        dest,
                        fwd,
                        tun,
                    };
                    flows.map.insert((fl.proto, fl.src, fl.dst), e);
                    if let (FwdMethod::Masq, SocketAddr::V4(d)) = (fwd, dest) {
                        flows.nat_rev.insert((fl.proto, fl.src, d), fl.dst);
                    }
                }
                let hash = fwd::flow_hash(fl);
                let mut buf = std::mem::take(&mut self.buf);
                if usize::from(fl.l3_len) > usize::from(self.info.mtu)
                    && fl.proto == Protocol::Tcp
                    && self.frag_max == 0
                {
                    // A GSO super-packet (virtual NICs): segment in software.
                    let mut segs = std::mem::take(&mut self.segs);
                    segs.clear();
                    match fwd::segment_tcp(&buf, fl.l3, self.info.mtu, &mut segs) {
                        Ok(()) => {
                            for seg in segs.iter_mut() {
                                if let Classified::Flow(sf) = fwd::classify(seg) {
                                    if let Err(e) =
                                        self.xmit(seg, &sf, fwd, dest, tun, hash, wanted)
                                    {
                                        self.fail(seg, fwd::ETH_LEN, *fl.dst.ip(), e);
                                    }
                                }
                            }
                        }
                        Err(e) => self.fail(&buf, fl.l3, *fl.dst.ip(), e),
                    }
                    self.segs = segs;
                } else if let Err(e) = self.xmit(&mut buf, fl, fwd, dest, tun, hash, wanted) {
                    self.fail(&buf, fl.l3, *fl.dst.ip(), e);
                }
                self.buf = buf;
            }
            Verdict::NoDest => {
                EngineStats::inc(&st.model_drop);
                let buf = std::mem::take(&mut self.buf);
                let code = icmpv4::CODE_PORT_UNREACHABLE;
                self.send_icmp(
                    &buf,
                    fl.l3,
                    *fl.dst.ip(),
                    icmpv4::msg_type::DST_UNREACHABLE,
                    code,
                    0,
                );
                self.buf = buf;
            }
            _ => EngineStats::inc(&st.model_drop),
        }
    }

    /// Forward the packet (IPv4 at `fl.l3` of `buf`) to `dest` by `fwd`
    /// (an IPv6 `dest` only by TUN, IPv4 in IPv6).
    #[allow(clippy::too_many_arguments)]
    fn xmit(
        &mut self,
        buf: &mut [u8],
        fl: &Flow,
        fwd: FwdMethod,
        dest: SocketAddr,
        tun: (TunType, u16, TunCsum),
        hash: u32,
        wanted: &Wanted,
    ) -> Result<(), Fail> {
        let st = &self.inner.stats;
        match (fwd, dest) {
            (FwdMethod::Route, SocketAddr::V4(dest)) => {
                self.check_mtu(buf, fl.l3)?;
                fwd::dr(buf, fl.l3)?;
                EngineStats::inc(&st.dr);
                // KNOWN_NH: the real server itself is the next hop.
                self.send_frags(buf, fl.l3, *dest.ip(), false);
            }
            (FwdMethod::Masq, SocketAddr::V4(dest)) => {
                self.check_mtu(buf, fl.l3)?;
                fwd::nat_in(buf, fl, dest)?;
                EngineStats::inc(&st.nat_in);
                self.send_frags(buf, fl.l3, *dest.ip(), true);
            }
            (FwdMethod::Tunnel, d) => self.tunnel(
                buf,
                fl.l3,
                usize::from(fl.l3_len),
                d.ip(),
                tun,
                hash,
                wanted,
            )?,
            _ => EngineStats::inc(&st.model_drop),
        }
        Ok(())
    }

    /// Encapsulate the IPv4 or IPv6 packet at `buf[l3..l3 + l3_len]` for
    /// the real server `dest` (IPv4 or IPv6 outer header, as its family).
    #[allow(clippy::too_many_arguments)]
    fn tunnel(
        &mut self,
        buf: &[u8],
        l3: usize,
        l3_len: usize,
        dest: IpAddr,
        tun: (TunType, u16, TunCsum),
        hash: u32,
        wanted: &Wanted,
    ) -> Result<(), Fail> {
        let src = match dest {
            IpAddr::V4(d) => self.our_addr(d, &wanted.vips).map(IpAddr::V4),
            IpAddr::V6(d) => self.our_addr6(d, &wanted.vips6).map(IpAddr::V6),
        };
        let Some(src) = src else {
            EngineStats::inc(&self.inner.stats.no_route);
            return Ok(());
        };
        self.ident = self.ident.wrapping_add(1);
        let mut t = fwd::Tunnel {
            kind: tun.0,
            port: tun.1,
            csum: tun.2,
            src,
            dst: dest,
            ident: self.ident,
            pmtu_disc: self.inner.opts.pmtu_disc,
            mtu: self.info.mtu,
        };
        // An IPv4 packet over IPv4 that may be fragmented (no DF, or a
        // reassembled datagram whose fragments fit the tunnel MTU) is
        // encapsulated whole and the outer packet fragmented, as the
        // kernel's output path does (`ignore_df`).
        let inner = buf
            .get(l3..)
            .and_then(|b| rvs_wire::ipv4::Packet::new_checked(b).ok())
            .map(|p| p.dont_frag());
        let mut frag_outer = false;
        if let (Some(df), true) = (inner, dest.is_ipv4()) {
            let imtu = t.inner_mtu();
            if df && self.frag_max > imtu {
                return Err(Fail::FragNeeded(imtu));
            }
            if (!df || self.frag_max != 0) && !(self.partial && l3_len > usize::from(imtu)) {
                frag_outer = true;
                t.mtu = u16::MAX;
            }
        }
        // A reassembled IPv6 datagram: its largest fragment must fit the
        // tunnel (`__mtu_check_toobig_v6`, else "packet too big" with the
        // tunnel MTU); it is encapsulated whole and the outer packet
        // fragmented (ignore_df).
        if self.frag_max != 0 && buf.get(l3).is_some_and(|v| v >> 4 == 6) {
            let imtu = t.inner_mtu();
            if imtu < t.min_mtu() {
                return Err(Fail::TooBig);
            }
            if self.frag_max > imtu {
                return Err(Fail::FragNeeded(imtu));
            }
            frag_outer = true;
            t.mtu = u16::MAX;
        }
        let mut out = std::mem::take(&mut self.out);
        let r = fwd::tun_encap_any(
            buf,
            l3,
            l3_len,
            &t,
            hash,
            (self.info.mac, Mac::ZERO),
            &mut out,
        );
        if r.is_ok() {
            EngineStats::inc(&self.inner.stats.tun);
            if frag_outer && out.len() > fwd::ETH_LEN + usize::from(self.info.mtu) {
                if let IpAddr::V4(d) = dest {
                    // The outer header copied DF from the inner packet;
                    // the fragments go without it (ignore_df).
                    if let Ok(mut ip) =
                        rvs_wire::ipv4::Packet::new_checked(&mut out[fwd::ETH_LEN..])
                    {
                        ip.set_frag(false, false, 0);
                        ip.fill_checksum();
                    }
                    let max = std::mem::replace(&mut self.frag_max, 0);
                    self.send_frags(&mut out, fwd::ETH_LEN, d, true);
                    self.frag_max = max;
                } else if let IpAddr::V6(d) = dest {
                    // Outer IPv6: fragmented to the MTU and the inner
                    // datagram's largest fragment (ip6_fragment keeps
                    // frag_max_size), under a new identification.
                    let outer_ident = (hash & 0xffff_0000) | u32::from(self.ident);
                    let max = self.frag_max.max(1);
                    let saved = (self.frag_max, self.frag_ident);
                    (self.frag_max, self.frag_ident) = (max, outer_ident);
                    self.send_frags6(&mut out, fwd::ETH_LEN, d, true);
                    (self.frag_max, self.frag_ident) = saved;
                }
            } else {
                self.route_and_send(&mut out, dest);
            }
        }
        self.out = out;
        r
    }

    /// Before rewriting the IPv4 packet at `l3` of `buf` for output on
    /// our interface: a packet with DF that does not fit (a reassembled
    /// one: whose largest fragment does not fit) gets "fragmentation
    /// needed", as `__mtu_check_toobig_v4`; a UDP GSO super-packet from a
    /// local sender (partial checksum) cannot be sent (no UDP
    /// segmentation).
    fn check_mtu(&self, buf: &[u8], l3: usize) -> Result<(), Fail> {
        let ip = rvs_wire::ipv4::Packet::new_checked(buf.get(l3..).ok_or(Fail::Malformed)?)?;
        let mtu = self.info.mtu;
        if self.frag_max != 0 {
            if ip.dont_frag() && self.frag_max > mtu {
                return Err(Fail::FragNeeded(mtu));
            }
            return Ok(());
        }
        if ip.total_len() <= mtu {
            return Ok(());
        }
        if self.partial {
            return Err(Fail::TooBig);
        }
        if ip.dont_frag() {
            return Err(Fail::FragNeeded(mtu));
        }
        Ok(())
    }

    /// Send the IPv4 packet at `l3` of `buf` toward `dst` (`route`: via
    /// the route's next hop, else `dst` is the neighbour), fragmented to
    /// the MTU — and, for a reassembled datagram, to its largest
    /// fragment (`ip_fragment` of a forwarded reassembled skb).
    fn send_frags(&mut self, buf: &mut [u8], l3: usize, dst: Ipv4Addr, route: bool) {
        let st = &self.inner.stats;
        let fits = rvs_wire::ipv4::Packet::new_checked(buf.get(l3..).unwrap_or_default())
            .is_ok_and(|p| p.total_len() <= self.info.mtu);
        if self.frag_max == 0 && fits {
            if route {
                self.route_and_send(buf, dst);
            } else {
                self.send_to(buf, dst);
            }
            return;
        }
        let mut pieces = std::mem::take(&mut self.pieces);
        pieces.clear();
        match frag::fragment_frame(buf, l3, self.info.mtu, self.frag_max, &mut pieces) {
            Ok(()) => {
                if pieces.len() > 1 {
                    st.frag_tx.fetch_add(pieces.len() as u64, Ordering::Relaxed);
                }
                for p in pieces.iter_mut() {
                    if route {
                        self.route_and_send(p, dst);
                    } else {
                        self.send_to(p, dst);
                    }
                }
            }
            Err(frag::FragError::Malformed(_)) => EngineStats::inc(&st.malformed),
            Err(_) => EngineStats::inc(&st.too_big),
        }
        self.pieces = pieces;
    }

    /// React to a forwarding failure of the packet at `l3` of `orig`.
    fn fail(&mut self, orig: &[u8], l3: usize, src: Ipv4Addr, e: Fail) {
        let st = &self.inner.stats;
        match e {
            Fail::TtlExceeded => self.send_icmp(
                orig,
                l3,
                src,
                icmpv4::msg_type::TIME_EXCEEDED,
                icmpv4::CODE_TTL_EXCEEDED,
                0,
            ),
            Fail::FragNeeded(mtu) => self.send_icmp(
                orig,
                l3,
                src,
                icmpv4::msg_type::DST_UNREACHABLE,
                icmpv4::CODE_FRAG_NEEDED,
                u32::from(mtu),
            ),
            Fail::TooBig => EngineStats::inc(&st.too_big),
            Fail::Malformed => EngineStats::inc(&st.malformed),
        }
    }

    /// React to a forwarding failure of the IPv6 packet at `l3` of
    /// `orig` (ICMPv6 from `src`).
    fn fail6(&mut self, orig: &[u8], l3: usize, src: Ipv6Addr, e: Fail) {
        let st = &self.inner.stats;
        match e {
            Fail::TtlExceeded => {
                self.send_icmp6(orig, l3, src, icmpv6::msg_type::TIME_EXCEEDED, 0, 0)
            }
            // For an IPv6 packet "does not fit" is always "packet too big".
            Fail::FragNeeded(mtu) => self.send_icmp6(
                orig,
                l3,
                src,
                icmpv6::msg_type::PKT_TOO_BIG,
                0,
                u32::from(mtu),
            ),
            Fail::TooBig => EngineStats::inc(&st.too_big),
            Fail::Malformed => EngineStats::inc(&st.malformed),
        }
    }

    /// IPv6 client -> VIP packet: DR, NAT or TUN (ip6ip6, or IPv6 in IPv4
    /// to an IPv4 real server).
    fn forward_in6(&mut self, fl: &Flow6, v: Verdict, csum_not_ready: bool, wanted: &Wanted) {
        let inner = self.inner.clone();
        let st = &inner.stats;
        let mut buf = std::mem::take(&mut self.buf);
        match v {
            Verdict::Forward {
                conn,
                dest,
                fwd,
                tun,
                created,
            } => {
                if created {
                    let mut flows = inner.flows.lock();
                    let e = FlowEntry {
                        conn,
                        dest,
                        fwd,
                        tun,
                    };
                    flows.map6.insert((fl.proto, fl.src, fl.dst), e);
                    if let (FwdMethod::Masq, SocketAddr::V6(d)) = (fwd, dest) {
                        flows.nat_rev6.insert((fl.proto, fl.src, d), fl.dst);
                    }
                }
                if csum_not_ready {
                    let _ = fwd::complete_l4_checksum6(&mut buf, fl);
                }
                let hash = fwd::flow_hash6(fl);
                let mtu = self.info.mtu;
                // A reassembled datagram is checked and fragmented again
                // on output (xmit6); anything else larger than the MTU is
                // a GSO super-packet.
                if fl.l3_len as usize > usize::from(mtu) && self.frag_max == 0 {
                    if fl.proto != Protocol::Tcp {
                        EngineStats::inc(&st.too_big);
                        self.buf = buf;
                        return;
                    }
                    // A GSO super-packet (virtual NICs): segment in software.
                    let mut segs = std::mem::take(&mut self.segs);
                    segs.clear();
                    match fwd::segment_tcp6(&buf, fl, mtu, &mut segs) {
                        Ok(()) => {
                            for seg in segs.iter_mut() {
                                if let Classified::Flow6(sf) = fwd::classify(seg) {
                                    if let Err(e) =
                                        self.xmit6(seg, &sf, fwd, dest, tun, hash, wanted)
                                    {
                                        self.fail6(seg, sf.l3, *fl.dst.ip(), e);
                                    }
                                }
                            }
                        }
                        Err(e) => self.fail6(&buf, fl.l3, *fl.dst.ip(), e),
                    }
                    self.segs = segs;
                } else if let Err(e) = self.xmit6(&mut buf, fl, fwd, dest, tun, hash, wanted) {
                    self.fail6(&buf, fl.l3, *fl.dst.ip(), e);
                }
            }
            Verdict::NoDest => {
                // ip_vs_leave: ICMPv6 port unreachable from the VIP.
                EngineStats::inc(&st.model_drop);
                self.send_icmp6(
                    &buf,
                    fl.l3,
                    *fl.dst.ip(),
                    icmpv6::msg_type::DST_UNREACHABLE,
                    4,
                    0,
                );
            }
            _ => EngineStats::inc(&st.model_drop),
        }
        self.buf = buf;
    }

    /// Forward the IPv6 packet at `fl.l3` of `buf` to `dest` by `fwd`
    /// (an IPv4 `dest` only by TUN, IPv6 in IPv4).
    #[allow(clippy::too_many_arguments)]
    fn xmit6(
        &mut self,
        buf: &mut [u8],
        fl: &Flow6,
        fwd: FwdMethod,
        dest: SocketAddr,
        tun: (TunType, u16, TunCsum),
        hash: u32,
        wanted: &Wanted,
    ) -> Result<(), Fail> {
        let st = &self.inner.stats;
        match (fwd, dest) {
            (FwdMethod::Route, SocketAddr::V6(d)) => {
                self.check_mtu6()?;
                fwd::dr6(buf, fl.l3)?;
                EngineStats::inc(&st.dr);
                self.send_frags6(buf, fl.l3, *d.ip(), false);
            }
            (FwdMethod::Masq, SocketAddr::V6(d)) => {
                self.check_mtu6()?;
                fwd::nat6_in(buf, fl, d)?;
                EngineStats::inc(&st.nat_in);
                self.send_frags6(buf, fl.l3, *d.ip(), true);
            }
            (FwdMethod::Tunnel, d) => {
                self.tunnel(buf, fl.l3, fl.l3_len as usize, d.ip(), tun, hash, wanted)?
            }
            _ => EngineStats::inc(&st.model_drop),
        }
        Ok(())
    }

    /// IPv6 real server -> client reply of a NAT connection.
    fn forward_out6(&mut self, fl: &Flow6, v: Verdict, csum_not_ready: bool) {
        let Verdict::Reply {
            vaddr: SocketAddr::V6(vaddr),
            fwd: FwdMethod::Masq,
            ..
        } = v
        else {
            return;
        };
        let mut buf = std::mem::take(&mut self.buf);
        if csum_not_ready {
            let _ = fwd::complete_l4_checksum6(&mut buf, fl);
        }
        if fl.l3_len as usize > usize::from(self.info.mtu) && self.frag_max == 0 {
            let mut segs = std::mem::take(&mut self.segs);
            segs.clear();
            if fl.proto == Protocol::Tcp
                && fwd::segment_tcp6(&buf, fl, self.info.mtu, &mut segs).is_ok()
            {
                for seg in segs.iter_mut() {
                    if let Classified::Flow6(sf) = fwd::classify(seg) {
                        self.nat_out6_one(seg, &sf, vaddr);
                    }
                }
            } else {
                EngineStats::inc(&self.inner.stats.too_big);
            }
            self.segs = segs;
        } else {
            self.nat_out6_one(&mut buf, fl, vaddr);
        }
        self.buf = buf;
    }

    fn nat_out6_one(&mut self, buf: &mut [u8], fl: &Flow6, vaddr: SocketAddrV6) {
        if let Err(e) = self.check_mtu6() {
            // A reassembled reply whose largest fragment does not fit:
            // "packet too big" to the real server from our address, as
            // ip6_forward does (ip6_pkt_too_big) before IPVS sees it.
            let wanted = self.inner.wanted.read().clone();
            let src = self.our_addr6(*fl.src.ip(), &wanted.vips6);
            self.fail6(buf, fl.l3, src.unwrap_or(*vaddr.ip()), e);
            return;
        }
        match fwd::nat6_out(buf, fl, vaddr) {
            Ok(()) => {
                EngineStats::inc(&self.inner.stats.nat_out);
                self.send_frags6(buf, fl.l3, *fl.dst.ip(), true);
            }
            Err(e) => self.fail6(buf, fl.l3, *vaddr.ip(), e),
        }
    }

    /// `__mtu_check_toobig_v6` for a reassembled IPv6 datagram: its
    /// largest fragment must fit the MTU (else "packet too big" with the
    /// MTU). Other packets were checked by the caller.
    fn check_mtu6(&self) -> Result<(), Fail> {
        if self.frag_max > self.info.mtu {
            return Err(Fail::FragNeeded(self.info.mtu));
        }
        Ok(())
    }

    /// Send the IPv6 packet at `l3` of `buf` toward `dst` (`route`: via
    /// the route's next hop, else `dst` is the neighbour); a reassembled
    /// datagram is fragmented again (`ip6_fragment`: pieces of at most
    /// its largest fragment, at least 1280, and the MTU; the original
    /// identification kept).
    fn send_frags6(&mut self, buf: &mut [u8], l3: usize, dst: Ipv6Addr, route: bool) {
        if self.frag_max == 0 {
            if route {
                self.route_and_send(buf, dst);
            } else {
                self.send_to(buf, dst);
            }
            return;
        }
        let st = &self.inner.stats;
        let mut pieces = std::mem::take(&mut self.pieces);
        pieces.clear();
        let (mtu, max, ident) = (self.info.mtu, self.frag_max, self.frag_ident);
        match frag6::fragment6_frame(buf, l3, mtu, max, ident, &mut pieces) {
            Ok(()) => {
                if pieces.len() > 1 {
                    st.frag_tx.fetch_add(pieces.len() as u64, Ordering::Relaxed);
                }
                for p in pieces.iter_mut() {
                    if route {
                        self.route_and_send(p, dst);
                    } else {
                        self.send_to(p, dst);
                    }
                }
            }
            Err(frag::FragError::Malformed(_)) => EngineStats::inc(&st.malformed),
            Err(_) => EngineStats::inc(&st.too_big),
        }
        self.pieces = pieces;
    }

    fn forward_out(&mut self, fl: &Flow, v: Verdict) {
        // Only NAT replies are ours to send; others were accepted by the
        // model (state/stats) and stay with the kernel, as ip_vs_out does.
        let Verdict::Reply {
            vaddr: SocketAddr::V4(vaddr),
            fwd: FwdMethod::Masq,
            ..
        } = v
        else {
            return;
        };
        let mut buf = std::mem::take(&mut self.buf);
        if usize::from(fl.l3_len) > usize::from(self.info.mtu)
            && fl.proto == Protocol::Tcp
            && self.frag_max == 0
        {
            let mut segs = std::mem::take(&mut self.segs);
            segs.clear();
            if fwd::segment_tcp(&buf, fl.l3, self.info.mtu, &mut segs).is_ok() {
                for seg in segs.iter_mut() {
                    if let Classified::Flow(sf) = fwd::classify(seg) {
                        self.nat_out_one(seg, &sf, vaddr);
                    }
                }
            } else {
                EngineStats::inc(&self.inner.stats.too_big);
            }
            self.segs = segs;
        } else {
            self.nat_out_one(&mut buf, fl, vaddr);
        }
        self.buf = buf;
    }

    fn nat_out_one(&mut self, buf: &mut [u8], fl: &Flow, vaddr: SocketAddrV4) {
        match self
            .check_mtu(buf, fl.l3)
            .and_then(|()| fwd::nat_out(buf, fl, vaddr))
        {
            Ok(()) => {
                EngineStats::inc(&self.inner.stats.nat_out);
                self.send_frags(buf, fl.l3, *fl.dst.ip(), true);
            }
            Err(e) => self.fail(buf, fl.l3, *vaddr.ip(), e),
        }
    }

    /// A related ICMP error from a NAT real server's side, about the
    /// connection `client` -> `vip`: counted as an outbound packet of it
    /// (`handle_response_icmp` -> `ip_vs_out_stats`).
    fn count_reply_icmp(&self, proto: Protocol, client: SocketAddr, vip: SocketAddr, len: u32) {
        let now = self.inner.shared.now();
        let probe = rvs_core::Packet {
            fwmark: 0,
            proto,
            src: client,
            dst: vip,
            tcp_flags: TcpFlags::default(),
            len,
            dir: Dir::In,
        };
        let mut t = self.inner.shared.ipvs.lock();
        if let Some(c) = t.lookup(now, &probe) {
            let _ = t.count_related(now, c.conn, Dir::Out, len);
        }
    }

    fn forward_icmp(&mut self, e: &IcmpError, wanted: &Wanted) {
        let st = &self.inner.stats;
        let mut buf = std::mem::take(&mut self.buf);
        if wanted.vips.contains(&e.dst) {
            // Client side: the error quotes our reply VIP:vport -> client.
            let key = (e.inner_proto, e.inner_dst, e.inner_src);
            let fe = self.inner.flows.lock().map.get(&key).copied();
            if let Some(fe) = fe {
                let now = self.inner.shared.now();
                // ip_vs_in_icmp: counted on the connection (ip_vs_in_stats).
                let alive = self.inner.shared.ipvs.lock().count_related(
                    now,
                    fe.conn,
                    Dir::In,
                    u32::from(e.l3_len),
                );
                if alive {
                    EngineStats::inc(&st.icmp_fwd);
                    let r = match (fe.fwd, fe.dest) {
                        (FwdMethod::Masq, SocketAddr::V4(d)) => fwd::nat_icmp(&mut buf, e, true, d)
                            .map(|()| self.route_and_send(&mut buf, *d.ip())),
                        (FwdMethod::Route, SocketAddr::V4(d)) => {
                            fwd::dr(&mut buf, e.l3).map(|()| self.send_to(&mut buf, *d.ip()))
                        }
                        (FwdMethod::Tunnel, d) => {
                            let hash =
                                u32::from(e.inner_src.port()) ^ u32::from(e.inner_dst.port());
                            self.tunnel(
                                &buf,
                                e.l3,
                                usize::from(e.l3_len),
                                d.ip(),
                                fe.tun,
                                hash,
                                wanted,
                            )
                        }
                        _ => Ok(()),
                    };
                    if let Err(x) = r {
                        self.fail(&buf, e.l3, e.dst, x);
                    }
                }
            }
        } else if !self.is_local(&e.dst) {
            // Real-server side (NAT): quotes client -> rs:dport.
            let key = (e.inner_proto, e.inner_src, e.inner_dst);
            let vip = self.inner.flows.lock().nat_rev.get(&key).copied();
            if let Some(vip) = vip {
                self.count_reply_icmp(
                    e.inner_proto,
                    SocketAddr::V4(e.inner_src),
                    SocketAddr::V4(vip),
                    u32::from(e.l3_len),
                );
                if fwd::nat_icmp(&mut buf, e, false, vip).is_ok() {
                    EngineStats::inc(&st.icmp_fwd);
                    self.route_and_send(&mut buf, e.dst);
                }
            }
        }
        self.buf = buf;
    }

    /// Answer the packet at `l3` of `orig` with an ICMP error from `src`
    /// back to the frame's sender.
    fn send_icmp(&mut self, orig: &[u8], l3: usize, src: Ipv4Addr, t: u8, code: u8, rest: u32) {
        let Ok(eth) = rvs_wire::ethernet::Frame::new_checked(orig) else {
            return;
        };
        let back = eth.src_addr();
        let mut out = std::mem::take(&mut self.out);
        let ok = orig.get(l3..).is_some_and(|o| {
            fwd::icmp_error_frame(&mut out, (self.info.mac, back), src, o, t, code, rest).is_ok()
        });
        if ok {
            EngineStats::inc(&self.inner.stats.icmp_sent);
            self.tx(&out);
        }
        self.out = out;
    }

    /// A related ICMPv6 error (`ip_vs_in_icmp_v6` / `ip_vs_out_icmp_v6`):
    /// from the client side it goes to the connection's real server by the
    /// connection's method (NAT: translated); from a NAT real server it is
    /// translated back to the client. No ICMPv6 is sent about an ICMPv6
    /// error that cannot be forwarded (RFC 4443 §2.4 e); it is counted.
    fn forward_icmp6(&mut self, e: &IcmpError6, wanted: &Wanted) {
        let inner = self.inner.clone();
        let st = &inner.stats;
        let mut buf = std::mem::take(&mut self.buf);
        let mut r = Ok(());
        if wanted.vips6.contains(&e.dst) {
            // Client side: the error quotes our reply VIP:vport -> client.
            let key = (e.inner_proto, e.inner_dst, e.inner_src);
            let fe = inner.flows.lock().map6.get(&key).copied();
            if let Some(fe) = fe {
                let now = inner.shared.now();
                let alive = inner
                    .shared
                    .ipvs
                    .lock()
                    .count_related(now, fe.conn, Dir::In, e.l3_len);
                if alive {
                    EngineStats::inc(&st.icmp_fwd);
                    r = match (fe.fwd, fe.dest) {
                        (FwdMethod::Masq, SocketAddr::V6(d)) => {
                            fwd::nat_icmp6(&mut buf, e, true, d)
                                .map(|()| self.route_and_send(&mut buf, *d.ip()))
                        }
                        (FwdMethod::Route, SocketAddr::V6(d)) => {
                            fwd::dr6(&mut buf, e.l3).map(|()| self.send_to(&mut buf, *d.ip()))
                        }
                        (FwdMethod::Tunnel, d) => {
                            let hash =
                                u32::from(e.inner_src.port()) ^ u32::from(e.inner_dst.port());
                            self.tunnel(&buf, e.l3, e.l3_len as usize, d.ip(), fe.tun, hash, wanted)
                        }
                        _ => Ok(()),
                    };
                }
            }
        } else if !self.is_local6(&e.dst) {
            // Real-server side (NAT): quotes client -> rs:dport.
            let key = (e.inner_proto, e.inner_src, e.inner_dst);
            let vip = inner.flows.lock().nat_rev6.get(&key).copied();
            if let Some(vip) = vip {
                self.count_reply_icmp(
                    e.inner_proto,
                    SocketAddr::V6(e.inner_src),
                    SocketAddr::V6(vip),
                    e.l3_len,
                );
                r = fwd::nat_icmp6(&mut buf, e, false, vip).map(|()| {
                    EngineStats::inc(&st.icmp_fwd);
                    self.route_and_send(&mut buf, e.dst);
                });
            }
        }
        match r {
            Ok(()) => {}
            Err(Fail::Malformed) => EngineStats::inc(&st.malformed),
            Err(Fail::TooBig | Fail::FragNeeded(_)) => EngineStats::inc(&st.too_big),
            Err(Fail::TtlExceeded) => EngineStats::inc(&st.model_drop),
        }
        self.buf = buf;
    }

    /// Answer the IPv6 packet at `l3` of `orig` with an ICMPv6 error from
    /// `src` back to the frame's sender.
    fn send_icmp6(&mut self, orig: &[u8], l3: usize, src: Ipv6Addr, t: u8, code: u8, rest: u32) {
        let Ok(eth) = rvs_wire::ethernet::Frame::new_checked(orig) else {
            return;
        };
        let back = eth.src_addr();
        let mut out = std::mem::take(&mut self.out);
        let ok = orig.get(l3..).is_some_and(|o| {
            fwd::icmp6_error_frame(&mut out, (self.info.mac, back), src, o, t, code, rest).is_ok()
        });
        if ok {
            EngineStats::inc(&self.inner.stats.icmp_sent);
            self.tx(&out);
        }
        self.out = out;
    }

    fn route_and_send(&mut self, buf: &mut [u8], dst: impl Into<IpAddr>) {
        let nh = match dst.into() {
            IpAddr::V4(d) => neigh::next_hop(&self.routes, d).map(IpAddr::V4),
            IpAddr::V6(d) => neigh::next_hop6(&self.routes6, d).map(IpAddr::V6),
        };
        match nh {
            Some(nh) => self.send_to(buf, nh),
            None => EngineStats::inc(&self.inner.stats.no_route),
        }
    }

    /// Send to the neighbour `nh` (resolving its MAC, parking the frame if
    /// unknown).
    fn send_to(&mut self, buf: &mut [u8], nh: impl Into<IpAddr>) {
        let nh: IpAddr = nh.into();
        let now = Instant::now();
        let hit = self.inner.arp.lock().lookup(nh, now);
        match hit {
            Some((dmac, refresh)) => {
                fwd::set_macs(buf, self.info.mac, dmac);
                self.tx(buf);
                if refresh {
                    self.arp_request(nh);
                }
            }
            None => {
                fwd::set_macs(buf, self.info.mac, Mac::ZERO);
                let mut a = Actions::default();
                self.inner.arp.lock().park(nh, buf.to_vec(), now, &mut a);
                self.do_actions(a);
            }
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
            self.arp_request(ip);
        }
        for (mac, mut frame) in a.ready {
            fwd::set_macs(&mut frame, self.info.mac, mac);
            self.tx(&frame);
        }
    }

    /// ARP request (IPv4) or neighbour solicitation (IPv6) for `target`.
    fn arp_request(&mut self, target: IpAddr) {
        let wanted = self.inner.wanted.read().clone();
        match target {
            IpAddr::V4(t) => {
                let Some(src) = self.our_addr(t, &wanted.vips) else {
                    return;
                };
                let b = fwd::arp_request(self.info.mac, src, t);
                self.tx(&b);
            }
            IpAddr::V6(t) => {
                let Some(src) = self.our_addr6(t, &wanted.vips6) else {
                    return;
                };
                let b = fwd::nd_solicit(self.info.mac, src, t);
                self.tx(&b);
            }
        }
        EngineStats::inc(&self.inner.stats.arp_requests);
    }

    /// Queue a frame for transmission (flushed with one `sendmmsg` per
    /// batch, or when the queue is full).
    fn tx(&mut self, b: &[u8]) {
        let start = self.txbuf.len();
        self.txbuf.extend_from_slice(b);
        self.txlens.push((start, b.len()));
        if self.txlens.len() >= TX_BATCH {
            self.flush();
        }
    }

    /// Send the queued frames.
    fn flush(&mut self) {
        if self.txlens.is_empty() {
            return;
        }
        let frames: Vec<&[u8]> = self
            .txlens
            .iter()
            .map(|(s, l)| &self.txbuf[*s..*s + *l])
            .collect();
        let sent = self.sock.send_many(&frames) as u64;
        let failed = frames.len() as u64 - sent;
        self.inner.stats.tx.fetch_add(sent, Ordering::Relaxed);
        if failed > 0 {
            self.inner
                .stats
                .tx_errors
                .fetch_add(failed, Ordering::Relaxed);
        }
        self.txbuf.clear();
        self.txlens.clear();
    }
}

/// Re-exported for tests and tools.
pub use fwd::classify;

#[cfg(test)]
mod test {
    #[test]
    fn engine_is_send_sync() {
        fn s<T: Send + Sync>() {}
        s::<super::PacketEngine>();
    }
}
