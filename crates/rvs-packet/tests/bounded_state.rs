//! The packet and xdp engines' per-connection and per-peer state stays
//! bounded (issue 27), measured as the proxy engine's is: live heap bytes
//! counted by a global allocator, at the sans-IO level (no sockets, no
//! root), with far more connections, fragments and neighbours than any
//! bound.
//!
//! * the table plus an RX thread's flow cache, driven as a worker drives
//!   them, keep nothing once connections have ended;
//! * IPv4 / IPv6 reassembly hold at most their memory threshold (the
//!   oldest queues are evicted, and counted);
//! * the neighbour cache holds at most `MAX_ENTRIES` neighbours and
//!   `MAX_PENDING_BYTES` of parked frames.
//!
//! The nftables guard keeps no per-connection state (stateless rules per
//! service, at a priority before conntrack), so there is nothing to
//! measure there.

use rvs_core::{
    DestConf, Dir, FwdMethod, Ipvs, Packet, Protocol, ServiceConf, SvcKey, TcpFlags, Time,
};
use rvs_packet::flowcache::{FlowCache, FlowKey};
use rvs_packet::neigh::{self, ArpCache};
use rvs_packet::{frag, frag6};
use std::alloc::{GlobalAlloc, Layout, System};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Counts the bytes currently allocated.
struct Counting;

static LIVE: AtomicI64 = AtomicI64::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as i64, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as i64, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as i64, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        LIVE.fetch_add(n as i64 - l.size() as i64, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

fn live() -> i64 {
    LIVE.load(Ordering::Relaxed)
}

/// The tests measure one global counter: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

const MB: i64 = 1 << 20;

// ------------------------------------------------------------ flow cache

const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);

fn table() -> Ipvs {
    let key = SvcKey::Addr {
        proto: Protocol::Tcp,
        addr: VIP.into(),
        port: 80,
    };
    let mut v = Ipvs::new();
    v.set_timeouts(30, 10, 30).unwrap();
    v.add_service(Time::ZERO, &ServiceConf::new(key, "wlc"))
        .unwrap();
    for (a, fwd) in [(1u8, FwdMethod::Masq), (2, FwdMethod::Route)] {
        let d = DestConf::new(IpAddr::from([198, 18, 2, a]), 80, fwd, 1);
        v.add_dest(Time::ZERO, &key, &d).unwrap();
    }
    v
}

/// One packet as an RX worker handles it: the flow cache first, the table
/// on a miss (taking the flow out first), learn after the table.
fn drive(c: &mut FlowCache, v: &mut Ipvs, now: Time, p: &Packet) {
    let k = FlowKey {
        proto: p.proto,
        src: p.src,
        dst: p.dst,
    };
    if c.hit(now, &k, p.tcp_flags, p.len).is_some() {
        return;
    }
    c.take(v, &k);
    let vd = v.process(now, p, &[]);
    c.learn(v, now, k, p.dir, vd);
}

struct Churn {
    v: Ipvs,
    cache: FlowCache,
    ms: u64,
    n: u32,
}

impl Churn {
    /// `conns` short connections (SYN, ACK, 4 data packets, FIN, ACK), 100
    /// a simulated second; the cache flushed every 100 ms and the table's
    /// timers run every second, as the engine does; then everything ends.
    fn run(&mut self, conns: u32) {
        for _ in 0..conns {
            self.n += 1;
            let src = SocketAddr::new(
                IpAddr::from([198, 18, 1, (self.n >> 16) as u8]),
                self.n as u16 | 1024,
            );
            let now = Time::from_millis(self.ms);
            let ack = TcpFlags::ACK;
            for flags in [
                TcpFlags::SYN,
                ack,
                ack,
                ack,
                ack,
                ack,
                TcpFlags::FIN | ack,
                ack,
            ] {
                let p = Packet {
                    fwmark: 0,
                    proto: Protocol::Tcp,
                    src,
                    dst: SocketAddr::new(VIP.into(), 80),
                    tcp_flags: flags,
                    len: 100,
                    dir: Dir::In,
                };
                drive(&mut self.cache, &mut self.v, now, &p);
            }
            if self.n.is_multiple_of(10) {
                self.ms += 100;
                let now = Time::from_millis(self.ms);
                if self.cache.flush_due(now) {
                    self.cache.flush(&mut self.v, now);
                }
                if self.ms.is_multiple_of(1000) {
                    self.v.handle_timeout(now);
                }
            }
        }
        self.ms += 600_000;
        let now = Time::from_millis(self.ms);
        self.cache.flush(&mut self.v, now);
        self.v.handle_timeout(now);
        assert_eq!(self.v.conn_count(), 0);
        assert!(self.cache.is_empty());
    }
}

#[test]
fn table_and_flow_cache_keep_nothing_per_ended_connection() {
    let _g = serial();
    let mut c = Churn {
        v: table(),
        cache: FlowCache::new(4096),
        ms: 0,
        n: 0,
    };
    c.run(20_000); // steady sizes: the table's peak, the cache's map
    let base = live();
    c.run(200_000);
    let grown = live() - base;
    eprintln!("table + flow cache: {grown:+} bytes after 200 000 connections");
    assert!(c.cache.stats().hits >= 200_000, "{:?}", c.cache.stats());
    assert!(
        grown < 64 * 1024,
        "200 000 connections through the table and a flow cache left {grown} bytes"
    );
}

// ---------------------------------------------------------- reassembly

fn ipv4_checksum(h: &[u8]) -> u16 {
    let mut s: u32 = h
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

/// The first 1 400-byte fragment of a UDP datagram that never completes.
fn first_fragment_v4(i: u32) -> Vec<u8> {
    let mut p = vec![0u8; 20 + 1400];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(20u16 + 1400).to_be_bytes());
    p[4..6].copy_from_slice(&(i as u16).to_be_bytes());
    p[6] = 0x20; // MF, offset 0
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&[198, 18, 1, (i >> 16) as u8]);
    p[16..20].copy_from_slice(&VIP.octets());
    let c = ipv4_checksum(&p[..20]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p
}

/// The same for IPv6: header, Fragment header (offset 0, M), UDP header
/// and data.
fn first_fragment_v6(i: u32) -> Vec<u8> {
    let payload = 8 + 1400;
    let mut p = vec![0u8; 40 + payload];
    p[0] = 0x60;
    p[4..6].copy_from_slice(&(payload as u16).to_be_bytes());
    p[6] = 44; // Fragment
    p[7] = 64;
    let src = Ipv6Addr::new(0x2001, 2, 0, 1, 0, 0, (i >> 16) as u16, 0x10);
    p[8..24].copy_from_slice(&src.octets());
    p[24..40].copy_from_slice(&Ipv6Addr::new(0x2001, 2, 0, 1, 0, 0, 0, 0x100).octets());
    p[40] = 17;
    p[42..44].copy_from_slice(&1u16.to_be_bytes()); // offset 0, M
    p[44..48].copy_from_slice(&i.to_be_bytes());
    p
}

#[test]
fn reassembly_holds_at_most_its_threshold() {
    let _g = serial();
    let t0 = Instant::now();
    let mut r4 = frag::Reassembler::default();
    let mut r6 = frag6::Reassembler6::default();
    let base = live();
    let mut peak = 0;
    // 100 000 datagrams of which only the first fragment ever comes (about
    // 140 MB each way if nothing were evicted).
    for i in 0..100_000u32 {
        let t = t0 + Duration::from_micros(u64::from(i));
        assert!(matches!(r4.push(t, &first_fragment_v4(i)), Ok(None)));
        assert!(matches!(r6.push(t, &first_fragment_v6(i)), Ok(None)));
        if i % 1000 == 0 {
            peak = peak.max(live() - base);
        }
    }
    assert!(r4.mem() <= frag::DEFAULT_HIGH_THRESH);
    assert!(r6.mem() <= frag6::DEFAULT_HIGH_THRESH6);
    assert!(r4.stats().evicted > 90_000 && r6.stats().evicted > 90_000);
    // Threshold (4 MiB each) plus the queues' maps.
    assert!(
        peak < 16 * MB,
        "reassembly of 2 x 100 000 partial datagrams held {peak} bytes"
    );
    let _ = r4.expire(t0 + Duration::from_secs(120));
    let _ = r6.expire(t0 + Duration::from_secs(120));
    assert_eq!((r4.queues(), r6.queues()), (0, 0));
    // What stays is the queues' maps at their peak size (bounded by the
    // thresholds: about 7 600 queues each), not the fragments.
    let left = live() - base;
    eprintln!("reassembly: peak {peak} bytes, {left} bytes once every queue expired");
    assert!(left < 4 * MB, "{left} bytes left after every queue expired");
}

// ------------------------------------------------------ neighbour cache

#[test]
fn neighbour_cache_and_parked_frames_are_bounded() {
    let _g = serial();
    let t0 = Instant::now();
    let mut c = ArpCache::new();
    let mac = rvs_wire::ethernet::Address([2, 0, 0, 0, 0, 1]);
    let base = live();
    // A million neighbours announce themselves.
    let mut a = neigh::Actions::default();
    for i in 0..1_000_000u32 {
        c.learn(Ipv4Addr::from(0xc612_0000 + i).into(), mac, t0, &mut a);
    }
    assert_eq!(c.len(), neigh::MAX_ENTRIES);
    let entries = live() - base;
    assert!(
        entries < 16 * MB,
        "{entries} bytes for the neighbour entries"
    );
    // NAT replies to a million unresolved (spoofed) clients.
    let mut a = neigh::Actions::default();
    for i in 0..1_000_000u32 {
        let ip = Ipv4Addr::from(0xc613_0000 + i).into();
        c.park(ip, vec![0; 100], t0, &mut a);
    }
    let (addrs, bytes) = c.pending();
    assert!(addrs <= neigh::MAX_PENDING_ADDRS && bytes <= neigh::MAX_PENDING_BYTES);
    assert!(a.dropped >= 1_000_000 - neigh::MAX_PENDING_ADDRS as u64);
    let parked = live() - base - entries;
    eprintln!("neighbours: {entries} bytes for the entries, {parked} bytes for parked frames");
    assert!(parked < 2 * MB, "{parked} bytes for parked frames");
    // Later, stale neighbours make room for new ones (counted).
    let late = t0 + neigh::STALE_AFTER + Duration::from_secs(1);
    let mut a = neigh::Actions::default();
    c.learn(Ipv4Addr::new(198, 20, 0, 1).into(), mac, late, &mut a);
    assert_eq!(a.evicted, neigh::MAX_ENTRIES as u64);
    c.tick(late, &mut a);
    assert_eq!(c.pending(), (0, 0));
}
