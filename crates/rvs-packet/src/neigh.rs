//! Next-hop selection and neighbour resolution (ARP for IPv4, neighbour
//! discovery for IPv6) for the engine.
//!
//! * Routes come from `/proc/net/route` and `/proc/net/ipv6_route` (this
//!   network namespace), only the ones on the engine's interface; longest
//!   prefix wins.
//! * The neighbour cache is seeded from the kernel's ARP table
//!   (`/proc/net/arp`) and learns from every ARP packet and every neighbour
//!   solicitation/advertisement seen on the interface. On a miss the engine
//!   sends its own ARP request / neighbour solicitation and parks up to [`MAX_PENDING`]
//!   frames for that address; they are sent as soon as the reply arrives
//!   (so a SYN is not lost and the client sees no 1 s retransmission delay),
//!   or dropped after [`RESOLVE_TIMEOUT`].
//! * Both parts are bounded, whatever the traffic: at most
//!   [`MAX_ENTRIES`] neighbours (when full, entries not confirmed for
//!   [`STALE_AFTER`] are evicted; a reply we asked for always finds room),
//!   and at most [`MAX_PENDING_ADDRS`] unresolved addresses holding at most
//!   [`MAX_PENDING_BYTES`] of parked frames (NAT replies to many spoofed
//!   on-link clients would otherwise park frames without limit). Frames
//!   refused for lack of room are counted as dropped, evicted entries as
//!   [`Actions::evicted`].

use rvs_wire::ethernet::Address as Mac;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

/// Frames parked per unresolved address.
pub const MAX_PENDING: usize = 64;
/// Give up on an unresolved address after this long.
pub const RESOLVE_TIMEOUT: Duration = Duration::from_secs(3);
/// Re-request an unresolved address this often.
pub const REQUEST_INTERVAL: Duration = Duration::from_millis(500);
/// Entries older than this are refreshed (re-requested while still used).
pub const REFRESH_AFTER: Duration = Duration::from_secs(60);
/// Upper bound on cache entries.
pub const MAX_ENTRIES: usize = 65536;
/// An entry not confirmed for this long is not in use (one in use is
/// refreshed every [`REFRESH_AFTER`]): it may be evicted when the cache is
/// full.
pub const STALE_AFTER: Duration = Duration::from_secs(2 * 60 + 10);
/// Unresolved addresses with parked frames at most (the kernel's default
/// `gc_thresh3` for its whole neighbour table).
pub const MAX_PENDING_ADDRS: usize = 1024;
/// Bytes of parked frames at most, all addresses together.
pub const MAX_PENDING_BYTES: usize = 4 * 1024 * 1024;

/// One IPv4 route on our interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// Destination network.
    pub dst: Ipv4Addr,
    /// Prefix length.
    pub plen: u8,
    /// Gateway, `None` for on-link.
    pub gateway: Option<Ipv4Addr>,
}

/// Parse `/proc/net/route` text, keeping routes of `iface` that are up.
pub fn parse_proc_route(text: &str, iface: &str) -> Vec<Route> {
    let mut v = Vec::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 8 || f[0] != iface {
            continue;
        }
        let hex = |s: &str| u32::from_str_radix(s, 16).ok();
        let (Some(dst), Some(gw), Some(flags), Some(mask)) =
            (hex(f[1]), hex(f[2]), hex(f[3]), hex(f[7]))
        else {
            continue;
        };
        if flags & 1 == 0 {
            continue; // RTF_UP
        }
        // The kernel prints the network-order u32 with %08X on this host.
        let ip = |x: u32| Ipv4Addr::from(x.to_ne_bytes());
        let gateway = (flags & 2 != 0 && gw != 0).then(|| ip(gw));
        v.push(Route {
            dst: ip(dst),
            plen: u32::from_be_bytes(mask.to_ne_bytes()).count_ones() as u8,
            gateway,
        });
    }
    v
}

/// Routing decision: the neighbour to send to for `dst`, or `None` if no
/// route on our interface covers it.
pub fn next_hop(routes: &[Route], dst: Ipv4Addr) -> Option<Ipv4Addr> {
    let d = u32::from(dst);
    routes
        .iter()
        .filter(|r| {
            let mask = if r.plen == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(r.plen))
            };
            d & mask == u32::from(r.dst) & mask
        })
        .max_by_key(|r| r.plen)
        .map(|r| r.gateway.unwrap_or(dst))
}

/// One IPv6 route on our interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route6 {
    /// Destination network.
    pub dst: Ipv6Addr,
    /// Prefix length.
    pub plen: u8,
    /// Gateway, `None` for on-link.
    pub gateway: Option<Ipv6Addr>,
}

/// Parse `/proc/net/ipv6_route` text, keeping unicast routes of `iface`
/// that are up (local/multicast table entries are skipped).
pub fn parse_proc_ipv6_route(text: &str, iface: &str) -> Vec<Route6> {
    let hex16 = |s: &str| -> Option<Ipv6Addr> {
        if s.len() != 32 {
            return None;
        }
        u128::from_str_radix(s, 16).ok().map(Ipv6Addr::from)
    };
    let mut v = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 10 || f[9] != iface {
            continue;
        }
        let (Some(dst), Ok(plen), Some(gw), Ok(flags)) = (
            hex16(f[0]),
            u8::from_str_radix(f[1], 16),
            hex16(f[4]),
            u32::from_str_radix(f[8], 16),
        ) else {
            continue;
        };
        if flags & 1 == 0 || dst.is_multicast() {
            continue;
        }
        let gateway = (flags & 2 != 0 && !gw.is_unspecified()).then_some(gw);
        v.push(Route6 { dst, plen, gateway });
    }
    v
}

/// IPv6 routing decision (see [`next_hop`]).
pub fn next_hop6(routes: &[Route6], dst: Ipv6Addr) -> Option<Ipv6Addr> {
    let d = u128::from(dst);
    routes
        .iter()
        .filter(|r| {
            let mask = if r.plen == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(r.plen.min(128)))
            };
            d & mask == u128::from(r.dst) & mask
        })
        .max_by_key(|r| r.plen)
        .map(|r| r.gateway.unwrap_or(dst))
}

/// Parse `/proc/net/arp`: complete entries of `iface`.
pub fn parse_proc_arp(text: &str, iface: &str) -> Vec<(Ipv4Addr, Mac)> {
    let mut v = Vec::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 6 || f[5] != iface {
            continue;
        }
        let flags = u32::from_str_radix(f[2].trim_start_matches("0x"), 16).unwrap_or(0);
        if flags & 2 == 0 {
            continue; // ATF_COM
        }
        if let (Ok(ip), Some(mac)) = (f[0].parse(), crate::sys::parse_mac(f[3])) {
            v.push((ip, mac));
        }
    }
    v
}

#[derive(Debug)]
struct Pending {
    frames: Vec<Vec<u8>>,
    first: Instant,
    last_request: Instant,
}

impl Pending {
    fn bytes(&self) -> usize {
        self.frames.iter().map(Vec::len).sum()
    }
}

/// What to do after a lookup miss or a tick.
#[derive(Debug, Default)]
pub struct Actions {
    /// Send an ARP request / neighbour solicitation for each of these.
    pub requests: Vec<IpAddr>,
    /// Frames whose destination MAC can now be filled: `(mac, frame)`.
    pub ready: Vec<(Mac, Vec<u8>)>,
    /// Frames dropped because resolution timed out or the queue was full.
    pub dropped: u64,
    /// Neighbour entries evicted to make room ([`MAX_ENTRIES`]).
    pub evicted: u64,
}

/// The engine's ARP cache with a pending-frame queue.
#[derive(Debug)]
pub struct ArpCache {
    /// MAC, when learned, when a refresh was last requested.
    entries: HashMap<IpAddr, (Mac, Instant, Option<Instant>)>,
    pending: HashMap<IpAddr, Pending>,
    /// Bytes of all parked frames.
    pending_bytes: usize,
    /// Last sweep for stale entries (at most one a second when full).
    swept: Option<Instant>,
    max_entries: usize,
    max_pending_addrs: usize,
    max_pending_bytes: usize,
}

impl Default for ArpCache {
    fn default() -> ArpCache {
        ArpCache::with_limits(MAX_ENTRIES, MAX_PENDING_ADDRS, MAX_PENDING_BYTES)
    }
}

impl ArpCache {
    /// Empty cache.
    pub fn new() -> ArpCache {
        ArpCache::default()
    }

    /// Empty cache with other limits than [`MAX_ENTRIES`],
    /// [`MAX_PENDING_ADDRS`] and [`MAX_PENDING_BYTES`] (tests).
    pub fn with_limits(entries: usize, pending_addrs: usize, pending_bytes: usize) -> ArpCache {
        ArpCache {
            entries: HashMap::new(),
            pending: HashMap::new(),
            pending_bytes: 0,
            swept: None,
            max_entries: entries.max(1),
            max_pending_addrs: pending_addrs,
            max_pending_bytes: pending_bytes,
        }
    }

    /// Known MAC for `ip`. `refresh` is set (at most once per
    /// [`REQUEST_INTERVAL`]) when the entry is old and a new request should
    /// be sent; the entry is still returned and used meanwhile.
    pub fn lookup(&mut self, ip: IpAddr, now: Instant) -> Option<(Mac, bool)> {
        let (m, learned, asked) = self.entries.get_mut(&ip)?;
        let mut refresh = false;
        if now.duration_since(*learned) > REFRESH_AFTER
            && asked.is_none_or(|t| now.duration_since(t) >= REQUEST_INTERVAL)
        {
            *asked = Some(now);
            refresh = true;
        }
        Some((*m, refresh))
    }

    /// Learn (or confirm) `ip` → `mac`; frames parked for `ip` become ready.
    pub fn learn(&mut self, ip: IpAddr, mac: Mac, now: Instant, out: &mut Actions) {
        if !mac.is_unicast() || ip.is_unspecified() {
            return;
        }
        let asked = self.pending.contains_key(&ip);
        if !self.room_for(ip, asked, now, out) {
            return;
        }
        self.entries.insert(ip, (mac, now, None));
        if let Some(p) = self.pending.remove(&ip) {
            self.pending_bytes -= p.bytes();
            out.ready.extend(p.frames.into_iter().map(|f| (mac, f)));
        }
    }

    /// Whether `ip` may get an entry, evicting to make room when the cache
    /// is full: entries not confirmed for [`STALE_AFTER`] (one sweep a
    /// second at most), and, for an address we asked for (`asked`), the
    /// least recently confirmed one. Unsolicited news of a new neighbour is
    /// ignored while the cache is full of fresh entries.
    fn room_for(&mut self, ip: IpAddr, asked: bool, now: Instant, out: &mut Actions) -> bool {
        if self.entries.len() < self.max_entries || self.entries.contains_key(&ip) {
            return true;
        }
        if self
            .swept
            .is_none_or(|t| now.saturating_duration_since(t) >= Duration::from_secs(1))
        {
            self.swept = Some(now);
            let before = self.entries.len();
            self.entries.retain(|_, (_, learned, _)| {
                now.saturating_duration_since(*learned) <= STALE_AFTER
            });
            out.evicted += (before - self.entries.len()) as u64;
        }
        if self.entries.len() < self.max_entries {
            return true;
        }
        if !asked {
            return false;
        }
        let oldest = self
            .entries
            .iter()
            .min_by_key(|(_, (_, learned, _))| *learned)
            .map(|(k, _)| *k);
        if let Some(k) = oldest {
            self.entries.remove(&k);
            out.evicted += 1;
        }
        true
    }

    /// Seed from the kernel table (does not override fresher entries; at
    /// most [`MAX_ENTRIES`] in all).
    pub fn seed(&mut self, list: &[(Ipv4Addr, Mac)], now: Instant) {
        for (ip, mac) in list {
            if self.entries.len() >= self.max_entries {
                break;
            }
            self.entries
                .entry(IpAddr::V4(*ip))
                .or_insert((*mac, now, None));
        }
    }

    /// Park `frame` until `ip` resolves; may ask for an ARP request. A
    /// frame is dropped (counted) when the address already holds
    /// [`MAX_PENDING`] frames, or the cache [`MAX_PENDING_BYTES`], or a new
    /// address would exceed [`MAX_PENDING_ADDRS`].
    pub fn park(&mut self, ip: IpAddr, frame: Vec<u8>, now: Instant, out: &mut Actions) {
        if self.pending_bytes + frame.len() > self.max_pending_bytes
            || (self.pending.len() >= self.max_pending_addrs && !self.pending.contains_key(&ip))
        {
            out.dropped += 1;
            return;
        }
        let p = self.pending.entry(ip).or_insert_with(|| {
            out.requests.push(ip);
            Pending {
                frames: Vec::new(),
                first: now,
                last_request: now,
            }
        });
        if p.frames.len() < MAX_PENDING {
            self.pending_bytes += frame.len();
            p.frames.push(frame);
        } else {
            out.dropped += 1;
        }
    }

    /// Periodic work: repeat requests, time out pending frames.
    pub fn tick(&mut self, now: Instant, out: &mut Actions) {
        let mut freed = 0;
        self.pending.retain(|ip, p| {
            if now.duration_since(p.first) > RESOLVE_TIMEOUT {
                out.dropped += p.frames.len() as u64;
                freed += p.bytes();
                return false;
            }
            if now.duration_since(p.last_request) >= REQUEST_INTERVAL {
                p.last_request = now;
                out.requests.push(*ip);
            }
            true
        });
        self.pending_bytes -= freed;
    }

    /// Number of cached entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Unresolved addresses with parked frames, and the bytes parked.
    pub fn pending(&self) -> (usize, usize) {
        (self.pending.len(), self.pending_bytes)
    }

    /// Empty?
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Our source address toward `dst` among the interface's `addrs`: one in
/// the same subnet if possible, never a served VIP (used for tunnel outer
/// headers and ARP requests).
pub fn source_addr(
    addrs: &[(Ipv4Addr, u8)],
    dst: Ipv4Addr,
    vips: &std::collections::HashSet<Ipv4Addr>,
) -> Option<Ipv4Addr> {
    let mut cands = addrs.iter().filter(|(a, _)| !vips.contains(a));
    let same = cands.clone().find(|(a, p)| {
        let m = if *p == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(*p))
        };
        u32::from(*a) & m == u32::from(dst) & m
    });
    same.or_else(|| cands.next()).map(|(a, _)| *a)
}

fn link_local(a: &Ipv6Addr) -> bool {
    a.segments()[0] & 0xffc0 == 0xfe80
}

/// [`source_addr`] for IPv6 (neighbour solicitations, tunnel sources):
/// never a served VIP; an address in `dst`'s prefix if there is one, else
/// one of the same scope (link-local or not), else any.
pub fn source_addr6(
    addrs: &[(Ipv6Addr, u8)],
    dst: Ipv6Addr,
    vips: &std::collections::HashSet<Ipv6Addr>,
) -> Option<Ipv6Addr> {
    let cands = || addrs.iter().filter(|(a, _)| !vips.contains(a));
    let same = cands().find(|(a, p)| {
        let m = if *p == 0 {
            0
        } else {
            u128::MAX << (128 - u32::from((*p).min(128)))
        };
        u128::from(*a) & m == u128::from(dst) & m
    });
    same.or_else(|| cands().find(|(a, _)| link_local(a) == link_local(&dst)))
        .or_else(|| cands().next())
        .map(|(a, _)| *a)
}

#[cfg(test)]
mod test {
    #[test]
    fn source_addr_prefers_the_subnet_and_skips_vips() {
        let a: Vec<(Ipv4Addr, u8)> = vec![
            ("198.18.1.1".parse().unwrap(), 24),
            ("198.18.0.100".parse().unwrap(), 24),
            ("198.18.0.11".parse().unwrap(), 24),
        ];
        let vips: std::collections::HashSet<Ipv4Addr> =
            ["198.18.0.100".parse().unwrap()].into_iter().collect();
        let dst: Ipv4Addr = "198.18.0.21".parse().unwrap();
        assert_eq!(
            super::source_addr(&a, dst, &vips),
            Some("198.18.0.11".parse().unwrap())
        );
        let other: Ipv4Addr = "198.19.0.1".parse().unwrap();
        assert_eq!(
            super::source_addr(&a, other, &vips),
            Some("198.18.1.1".parse().unwrap())
        );
        assert_eq!(super::source_addr(&a[1..2], dst, &vips), None);
    }

    use super::*;

    const ROUTE: &str =
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth0\t00000000\t010012C6\t0003\t0\t0\t0\t00000000\t0\t0\t0
eth0\t000012C6\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
eth1\t0000000A\t00000000\t0001\t0\t0\t0\t000000FF\t0\t0\t0
";

    #[test]
    fn source_addr6_prefers_the_prefix_then_the_scope() {
        let a: Vec<(std::net::Ipv6Addr, u8)> = vec![
            ("fe80::1".parse().unwrap(), 64),
            ("2001:2:0:1::100".parse().unwrap(), 64),
            ("2001:2:0:9::11".parse().unwrap(), 64),
            ("2001:2:0:1::11".parse().unwrap(), 64),
        ];
        let vips: std::collections::HashSet<std::net::Ipv6Addr> =
            ["2001:2:0:1::100".parse().unwrap()].into_iter().collect();
        let s = |d: &str| super::source_addr6(&a, d.parse().unwrap(), &vips);
        assert_eq!(s("2001:2:0:1::21"), Some("2001:2:0:1::11".parse().unwrap()));
        assert_eq!(s("2001:2:0:7::21"), Some("2001:2:0:9::11".parse().unwrap()));
        assert_eq!(s("fe80::21"), Some("fe80::1".parse().unwrap()));
        assert_eq!(
            super::source_addr6(&a[1..2], "2001:2::1".parse().unwrap(), &vips),
            None
        );
    }

    #[test]
    fn routes() {
        let r = parse_proc_route(ROUTE, "eth0");
        assert_eq!(r.len(), 2);
        assert_eq!(
            r[0],
            Route {
                dst: Ipv4Addr::UNSPECIFIED,
                plen: 0,
                gateway: Some(Ipv4Addr::new(198, 18, 0, 1))
            }
        );
        assert_eq!(r[1].plen, 24);
        assert_eq!(
            next_hop(&r, Ipv4Addr::new(198, 18, 0, 21)),
            Some(Ipv4Addr::new(198, 18, 0, 21))
        );
        assert_eq!(
            next_hop(&r, Ipv4Addr::new(198, 19, 1, 1)),
            Some(Ipv4Addr::new(198, 18, 0, 1))
        );
        assert_eq!(next_hop(&r[1..], Ipv4Addr::new(198, 19, 1, 1)), None);
    }

    #[test]
    fn ipv6_routes() {
        let t = "20010db8000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0
00000000000000000000000000000000 00 00000000000000000000000000000000 00 20010db8000000000000000000000001 00000400 00000001 00000000 00000003     eth0
fe800000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0
ff000000000000000000000000000000 08 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0
20010db8000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth1
";
        let r = parse_proc_ipv6_route(t, "eth0");
        assert_eq!(r.len(), 3);
        let on_link: Ipv6Addr = "2001:db8::21".parse().unwrap();
        assert_eq!(next_hop6(&r, on_link), Some(on_link));
        let far: Ipv6Addr = "2001:db9::1".parse().unwrap();
        assert_eq!(next_hop6(&r, far), Some("2001:db8::1".parse().unwrap()));
    }

    #[test]
    fn arp_table() {
        let t = "IP address       HW type     Flags       HW address            Mask     Device
198.18.0.21      0x1         0x2         02:00:00:00:00:15     *        eth0
198.18.0.22      0x1         0x0         00:00:00:00:00:00     *        eth0
198.18.0.23      0x1         0x2         02:00:00:00:00:17     *        eth1
";
        assert_eq!(
            parse_proc_arp(t, "eth0"),
            vec![(Ipv4Addr::new(198, 18, 0, 21), Mac([2, 0, 0, 0, 0, 0x15]))]
        );
    }

    #[test]
    fn park_and_learn() {
        let mut c = ArpCache::new();
        let t0 = Instant::now();
        let ip: IpAddr = Ipv4Addr::new(198, 18, 0, 21).into();
        let mut a = Actions::default();
        c.park(ip, vec![1], t0, &mut a);
        c.park(ip, vec![2], t0, &mut a);
        assert_eq!(a.requests, vec![ip]);
        let mut a = Actions::default();
        c.learn(ip, Mac([2, 0, 0, 0, 0, 0x15]), t0, &mut a);
        assert_eq!(a.ready.len(), 2);
        assert_eq!(c.lookup(ip, t0), Some((Mac([2, 0, 0, 0, 0, 0x15]), false)));
        // an old entry asks for a refresh once per interval, still answering
        let old = t0 + REFRESH_AFTER + Duration::from_secs(1);
        assert_eq!(c.lookup(ip, old).map(|x| x.1), Some(true));
        assert_eq!(c.lookup(ip, old).map(|x| x.1), Some(false));
        assert_eq!(
            c.lookup(ip, old + REQUEST_INTERVAL).map(|x| x.1),
            Some(true)
        );
        // timeout
        let ip2: IpAddr = Ipv4Addr::new(198, 18, 0, 99).into();
        let mut a = Actions::default();
        c.park(ip2, vec![3], t0, &mut a);
        let mut a = Actions::default();
        c.tick(t0 + Duration::from_secs(1), &mut a);
        assert_eq!(a.requests, vec![ip2]);
        let mut a = Actions::default();
        c.tick(t0 + Duration::from_secs(4), &mut a);
        assert_eq!(a.dropped, 1);
        assert_eq!(c.pending(), (0, 0));
    }

    fn v4(i: u32) -> IpAddr {
        Ipv4Addr::from(0xc612_0000 + i).into()
    }

    const MAC: Mac = Mac([2, 0, 0, 0, 0, 0x15]);

    #[test]
    fn full_cache_evicts_stale_entries_and_always_takes_a_reply_it_asked_for() {
        let mut c = ArpCache::with_limits(4, 8, 1 << 20);
        let t0 = Instant::now();
        let mut a = Actions::default();
        for i in 0..4 {
            c.learn(v4(i), MAC, t0 + Duration::from_millis(i.into()), &mut a);
        }
        // full of fresh entries: unsolicited news of a 5th is ignored
        c.learn(v4(4), MAC, t0 + Duration::from_secs(1), &mut a);
        assert_eq!((c.len(), a.evicted), (4, 0));
        assert!(c.lookup(v4(4), t0).is_none());
        // ... but a reply to our own request evicts the oldest entry
        let t1 = t0 + Duration::from_secs(2);
        c.learn(v4(0), MAC, t1, &mut a); // v4(0) confirmed: now the freshest
        c.park(v4(5), vec![0; 60], t1, &mut a);
        c.learn(v4(5), MAC, t1, &mut a);
        assert_eq!((c.len(), a.evicted, a.ready.len()), (4, 1, 1));
        assert!(c.lookup(v4(5), t1).is_some() && c.lookup(v4(0), t1).is_some());
        assert!(c.lookup(v4(1), t1).is_none(), "the oldest went");
        // once entries are stale, one sweep makes room for anyone
        let late = t1 + STALE_AFTER + Duration::from_secs(1);
        let mut a = Actions::default();
        c.learn(v4(6), MAC, late, &mut a);
        assert_eq!((c.len(), a.evicted), (1, 4));
        // the cache never exceeds its bound, whatever it hears
        for i in 100..1000 {
            c.learn(v4(i), MAC, late, &mut a);
        }
        assert_eq!(c.len(), 4);
    }

    #[test]
    fn parked_frames_are_bounded_in_addresses_and_bytes() {
        let mut c = ArpCache::with_limits(16, 3, 1000);
        let t0 = Instant::now();
        let mut a = Actions::default();
        // many unresolved addresses (NAT replies to spoofed on-link
        // clients): only MAX_PENDING_ADDRS of them park frames
        for i in 0..10 {
            c.park(v4(i), vec![0; 100], t0, &mut a);
        }
        assert_eq!(c.pending(), (3, 300));
        assert_eq!((a.requests.len(), a.dropped), (3, 7));
        // bytes: the known addresses fill up to the byte bound
        let mut a = Actions::default();
        for _ in 0..10 {
            c.park(v4(0), vec![0; 100], t0, &mut a);
        }
        assert_eq!(c.pending(), (3, 1000));
        assert_eq!(a.dropped, 3);
        // learning releases the frames and their bytes
        let mut a = Actions::default();
        c.learn(v4(0), MAC, t0, &mut a);
        assert_eq!((a.ready.len(), c.pending()), (8, (2, 200)));
        // the rest time out
        let mut a = Actions::default();
        c.tick(t0 + RESOLVE_TIMEOUT + Duration::from_secs(1), &mut a);
        assert_eq!((a.dropped, c.pending()), (2, (0, 0)));
    }
}
