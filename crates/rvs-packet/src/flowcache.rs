//! Per-thread flow cache: the lock-free fast path of the packet engines.
//!
//! Kernel IPVS runs `ip_vs_in` on every CPU in parallel (RCU lookups,
//! per-CPU counters). rvs-core's table is single-owner behind one mutex, so
//! without help every packet of every RX thread would take that lock. The
//! flow cache removes the lock from the common case: once a connection is
//! *steady* — TCP in ESTABLISHED, any UDP entry ([`Ipvs::conn_is_steady`]) —
//! the thread remembers the table's verdict for the flow's tuple and
//! forwards further packets that cannot change the entry (TCP without SYN,
//! FIN or RST) from its own map, counting them. Every
//! [`FlowCache::FLUSH_EVERY`] (or when a packet of the flow needs the table
//! again) the counts are handed to [`Ipvs::account_conn`] under the lock,
//! which applies exactly what that many ACKs would have: dest / service /
//! total counters, the state's timeout, the timer re-arm.
//!
//! What keeps it exact:
//! * A packet that may change the entry (SYN, FIN, RST) goes through
//!   [`Ipvs::process`]; the thread first takes its cached entry out — with
//!   the entry of the connection's other direction (NAT replies) — and
//!   accounts the pending packets ([`FlowCache::take`]), so counters and
//!   state transitions happen in packet order.
//! * Any service/destination change moves [`Ipvs::config_gen`]; the next
//!   flush then drops every cached verdict (a deleted destination stops
//!   receiving packets within one flush interval, 100 ms).
//! * An entry the table refuses on flush (expired, stale handle, dead
//!   destination) is forgotten; its next packet goes through the table.
//! * Idle entries are dropped after [`FlowCache::IDLE`], so a flow that
//!   resumes later is looked up in the table again.
//!
//! Flows are steered to threads by the kernel's `PACKET_FANOUT_HASH` (or the
//! NIC's RSS queue for AF_XDP), so a flow is normally cached by one thread;
//! if it moves, both threads account their share, which the table adds up.
//! The cache is sans-IO: time comes in as an argument.

use rvs_core::{ConnRef, Dir, Ipvs, Protocol, TcpFlags, Time, Verdict};
use std::collections::HashMap;
use std::net::SocketAddr;

/// A flow as seen on the wire: protocol and both endpoints, in the
/// direction of the packet (client→VIP inbound, real server→client for NAT
/// replies).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub proto: Protocol,
    pub src: SocketAddr,
    pub dst: SocketAddr,
}

#[derive(Debug)]
struct Entry {
    conn: ConnRef,
    dir: Dir,
    verdict: Verdict,
    /// Packets / bytes forwarded since the last flush.
    pkts: u32,
    bytes: u64,
    /// Time of the last packet (ms), used for the timer re-arm on flush.
    last: Time,
}

/// Counters of one cache (for the engine's stats).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    /// Packets forwarded from the cache (no table lock).
    pub hits: u64,
    /// Packets that went to the table.
    pub misses: u64,
    /// Flushes done.
    pub flushes: u64,
    /// Entries dropped because the configuration changed.
    pub invalidated: u64,
    /// Entries whose pending counts the table refused on flush or take
    /// (expired / dead destination / no longer steady).
    pub refused: u64,
}

/// One RX thread's cache of steady flows.
#[derive(Debug)]
pub struct FlowCache {
    map: HashMap<FlowKey, Entry>,
    gen: u64,
    last_flush: Time,
    cap: usize,
    stats: CacheStats,
}

/// Whether a packet with these TCP flags can be served from the cache.
pub fn cacheable(proto: Protocol, flags: TcpFlags) -> bool {
    match proto {
        Protocol::Tcp => {
            !(flags.contains(TcpFlags::SYN)
                || flags.contains(TcpFlags::FIN)
                || flags.contains(TcpFlags::RST))
        }
        Protocol::Udp => true,
        Protocol::Sctp => false,
    }
}

impl FlowCache {
    /// Counts are handed to the table at least this often (ms).
    pub const FLUSH_EVERY: u64 = 100;
    /// Entries without packets for this long (ms) are dropped on flush.
    pub const IDLE: u64 = 2_000;

    /// A cache holding at most `cap` flows (a full cache is flushed and
    /// emptied, never grown).
    pub fn new(cap: usize) -> Self {
        FlowCache {
            map: HashMap::with_capacity(cap.min(1 << 16)),
            gen: 0,
            last_flush: Time::ZERO,
            cap: cap.max(1),
            stats: CacheStats::default(),
        }
    }

    pub fn stats(&self) -> CacheStats {
        self.stats
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The fast path: the remembered verdict for a cacheable packet of a
    /// cached flow, counted (`len` bytes) for the next flush. `None`: ask
    /// the table (and call [`FlowCache::take`] first if the packet is not
    /// cacheable).
    pub fn hit(&mut self, now: Time, key: &FlowKey, flags: TcpFlags, len: u32) -> Option<Verdict> {
        if !cacheable(key.proto, flags) {
            return None;
        }
        let Some(e) = self.map.get_mut(key) else {
            self.stats.misses += 1;
            return None;
        };
        e.pkts = e.pkts.saturating_add(1);
        e.bytes = e.bytes.saturating_add(len as u64);
        e.last = now;
        self.stats.hits += 1;
        Some(e.verdict)
    }

    /// Before a packet of `key` goes through the table (lock held): forget
    /// the flow and account what it forwarded so far, so the table sees the
    /// packets in order. The other direction of the same connection (NAT
    /// replies are cached under their own key) is taken too: the packet may
    /// move the entry out of its steady state, after which the table would
    /// refuse the replies' pending counts, and the replies that follow
    /// (e.g. the ACK of a FIN) must go through the table again.
    pub fn take(&mut self, ipvs: &mut Ipvs, key: &FlowKey) {
        let Some(e) = self.map.remove(key) else {
            return;
        };
        let other = match e.verdict {
            Verdict::Forward { dest, .. } => Some(FlowKey {
                proto: key.proto,
                src: dest,
                dst: key.src,
            }),
            Verdict::Reply { vaddr, .. } => Some(FlowKey {
                proto: key.proto,
                src: key.dst,
                dst: vaddr,
            }),
            _ => None,
        };
        if let Some(o) = other {
            if self.map.get(&o).is_some_and(|r| r.conn == e.conn) {
                if let Some(r) = self.map.remove(&o) {
                    self.account(ipvs, &r);
                }
            }
        }
        self.account(ipvs, &e);
    }

    /// Hand an entry's pending counts to the table (lock held).
    fn account(&mut self, ipvs: &mut Ipvs, e: &Entry) {
        if e.pkts > 0 && !ipvs.account_conn(e.last, e.conn, e.dir, e.pkts, e.bytes) {
            self.stats.refused += 1;
        }
    }

    /// After the table forwarded a packet (lock held): remember the verdict
    /// if the entry is steady, so the flow's next packets skip the table.
    pub fn learn(&mut self, ipvs: &Ipvs, now: Time, key: FlowKey, dir: Dir, verdict: Verdict) {
        let conn = match verdict {
            Verdict::Forward { conn, .. } | Verdict::Reply { conn, .. } => conn,
            _ => return,
        };
        if conn == ConnRef::NONE || !ipvs.conn_is_steady(conn, dir) {
            return;
        }
        if self.map.is_empty() {
            self.gen = ipvs.config_gen();
        } else if self.gen != ipvs.config_gen() {
            // Remembered verdicts are from an older configuration.
            return;
        }
        if self.map.len() >= self.cap {
            return;
        }
        let verdict = match verdict {
            Verdict::Forward {
                conn,
                dest,
                fwd,
                tun,
                ..
            } => Verdict::Forward {
                conn,
                dest,
                fwd,
                tun,
                created: false,
            },
            v => v,
        };
        self.map.insert(
            key,
            Entry {
                conn,
                dir,
                verdict,
                pkts: 0,
                bytes: 0,
                last: now,
            },
        );
    }

    /// Whether [`FlowCache::flush`] is due (`FLUSH_EVERY` passed, or the
    /// cache is full).
    pub fn flush_due(&self, now: Time) -> bool {
        !self.map.is_empty()
            && (now.as_millis() >= self.last_flush.as_millis() + Self::FLUSH_EVERY
                || self.map.len() >= self.cap)
    }

    /// Hand every pending count to the table (lock held); drop entries the
    /// table refuses, idle ones, and all of them if the configuration
    /// changed since they were learnt.
    pub fn flush(&mut self, ipvs: &mut Ipvs, now: Time) {
        self.stats.flushes += 1;
        self.last_flush = now;
        let changed = self.gen != ipvs.config_gen();
        let full = self.map.len() >= self.cap;
        let stats = &mut self.stats;
        self.map.retain(|_, e| {
            if e.pkts > 0 {
                if !ipvs.account_conn(e.last, e.conn, e.dir, e.pkts, e.bytes) {
                    stats.refused += 1;
                    return false;
                }
                e.pkts = 0;
                e.bytes = 0;
            }
            if changed {
                stats.invalidated += 1;
                return false;
            }
            !full && now.as_millis() < e.last.as_millis() + Self::IDLE
        });
        self.gen = ipvs.config_gen();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rvs_core::{DestConf, FwdMethod, Packet, ServiceConf, SvcKey};
    use std::net::IpAddr;

    const VIP: &str = "198.18.0.100";

    fn key() -> SvcKey {
        SvcKey::Addr {
            proto: Protocol::Tcp,
            addr: VIP.parse().unwrap(),
            port: 80,
        }
    }

    fn table(fwd: FwdMethod) -> Ipvs {
        let mut v = Ipvs::new();
        v.add_service(Time::ZERO, &ServiceConf::new(key(), "rr"))
            .unwrap();
        for a in ["198.18.2.1", "198.18.2.2"] {
            let a: IpAddr = a.parse().unwrap();
            v.add_dest(Time::ZERO, &key(), &DestConf::new(a, 80, fwd, 1))
                .unwrap();
        }
        v
    }

    fn inbound(cport: u16, flags: TcpFlags, len: u32) -> Packet {
        Packet {
            fwmark: 0,
            proto: Protocol::Tcp,
            src: SocketAddr::new("198.18.1.1".parse().unwrap(), cport),
            dst: SocketAddr::new(VIP.parse().unwrap(), 80),
            tcp_flags: flags,
            len,
            dir: Dir::In,
        }
    }

    fn fkey(p: &Packet) -> FlowKey {
        FlowKey {
            proto: p.proto,
            src: p.src,
            dst: p.dst,
        }
    }

    /// Drive packets the way an engine worker does: cache first, table on
    /// a miss (taking the flow out first), learn after the table.
    fn drive(c: &mut FlowCache, v: &mut Ipvs, now: Time, p: &Packet) -> Verdict {
        let k = fkey(p);
        if let Some(vd) = c.hit(now, &k, p.tcp_flags, p.len) {
            return vd;
        }
        c.take(v, &k);
        let vd = v.process(now, p, &[]);
        c.learn(v, now, k, p.dir, vd);
        vd
    }

    #[test]
    fn counters_and_states_match_the_table_alone() {
        // Same packet sequence through (table) and (cache + table): after a
        // flush, every counter and the -Lnc view are identical.
        let mut plain = table(FwdMethod::Route);
        let mut cached = table(FwdMethod::Route);
        let mut c = FlowCache::new(1024);
        let ack = TcpFlags::ACK;
        let mut seq = vec![(0u64, inbound(5000, TcpFlags::SYN, 60))];
        seq.push((1, inbound(5000, ack, 52)));
        for i in 0..20 {
            seq.push((2 + i, inbound(5000, ack | TcpFlags::PSH, 100 + i as u32)));
        }
        seq.push((30, inbound(5000, TcpFlags::FIN | ack, 52)));
        seq.push((31, inbound(5000, ack, 52)));
        for (ms, p) in &seq {
            let now = Time::from_millis(*ms);
            let a = plain.process(now, p, &[]);
            let b = drive(&mut c, &mut cached, now, p);
            match (a, b) {
                (Verdict::Forward { dest: d1, .. }, Verdict::Forward { dest: d2, .. }) => {
                    assert_eq!(d1, d2)
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(c.stats().hits >= 19, "{:?}", c.stats());
        let now = Time::from_millis(40);
        c.flush(&mut cached, now);
        assert_eq!(plain.total_stats(), cached.total_stats());
        let (s1, s2) = (
            plain.service(&key()).unwrap(),
            cached.service(&key()).unwrap(),
        );
        assert_eq!(s1.stats(), s2.stats());
        for (a, b) in s1.dests().zip(s2.dests()) {
            assert_eq!(a.stats(), b.stats());
            assert_eq!(
                (a.active_conns(), a.inact_conns()),
                (b.active_conns(), b.inact_conns())
            );
        }
        let strip = |v: Vec<rvs_core::ConnView>| {
            v.into_iter()
                .map(|c| (c.caddr, c.cport, c.daddr, c.state_name, c.expires_secs))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            strip(plain.connections(now)),
            strip(cached.connections(now))
        );
        assert_eq!(
            cached.connections(now)[0].state_name,
            "FIN_WAIT",
            "FIN went through the table"
        );
    }

    #[test]
    fn nat_close_accounts_both_directions() {
        // NAT: replies are cached under their own key. When the client's
        // FIN goes through the table, the replies forwarded from the cache
        // so far must be accounted while the entry is still ESTABLISHED
        // (later the table refuses them), and the server's next packets go
        // through the table.
        let mut plain = table(FwdMethod::Masq);
        let mut cached = table(FwdMethod::Masq);
        let mut c = FlowCache::new(1024);
        let ack = TcpFlags::ACK;
        let first = inbound(5003, TcpFlags::SYN, 60);
        let Verdict::Forward { dest, .. } = plain.process(Time::ZERO, &first, &[]) else {
            panic!()
        };
        drive(&mut c, &mut cached, Time::ZERO, &first);
        let out = |flags: TcpFlags, len: u32| Packet {
            src: dest,
            dst: first.src,
            tcp_flags: flags,
            len,
            dir: Dir::Out,
            ..first
        };
        let mut seq = vec![(1u64, out(TcpFlags::SYN | ack, 60))];
        seq.push((2, inbound(5003, ack, 52)));
        for i in 0..5 {
            seq.push((3 + i, inbound(5003, ack | TcpFlags::PSH, 120)));
            seq.push((3 + i, out(ack | TcpFlags::PSH, 400)));
        }
        seq.push((10, inbound(5003, TcpFlags::FIN | ack, 52)));
        seq.push((11, out(ack, 52)));
        seq.push((12, out(TcpFlags::FIN | ack, 52)));
        seq.push((13, inbound(5003, ack, 52)));
        for (ms, p) in &seq {
            let now = Time::from_millis(*ms);
            let a = plain.process(now, p, &[]);
            let b = drive(&mut c, &mut cached, now, p);
            assert_eq!(
                std::mem::discriminant(&a),
                std::mem::discriminant(&b),
                "{a:?} {b:?}"
            );
        }
        assert!(c.stats().hits >= 8, "{:?}", c.stats());
        let now = Time::from_millis(20);
        c.flush(&mut cached, now);
        assert_eq!(c.stats().refused, 0, "{:?}", c.stats());
        assert_eq!(plain.total_stats(), cached.total_stats());
        let (s1, s2) = (
            plain.service(&key()).unwrap(),
            cached.service(&key()).unwrap(),
        );
        assert_eq!(s1.stats(), s2.stats());
        for (a, b) in s1.dests().zip(s2.dests()) {
            assert_eq!(a.stats(), b.stats());
        }
    }

    #[test]
    fn flush_keeps_established_entries_alive() {
        // 10 minutes of traffic served from the cache only: the entry must
        // not expire at the 900 s ESTABLISHED timeout counted from the
        // handshake, because every flush re-arms it.
        let mut v = table(FwdMethod::Route);
        let mut c = FlowCache::new(16);
        drive(
            &mut c,
            &mut v,
            Time::ZERO,
            &inbound(5001, TcpFlags::SYN, 60),
        );
        drive(
            &mut c,
            &mut v,
            Time::ZERO,
            &inbound(5001, TcpFlags::ACK, 52),
        );
        let mut t = 0;
        while t < 1_200_000 {
            t += 500;
            let now = Time::from_millis(t);
            let p = inbound(5001, TcpFlags::ACK, 52);
            assert!(
                c.hit(now, &fkey(&p), p.tcp_flags, p.len).is_some(),
                "at {t} ms"
            );
            if c.flush_due(now) {
                c.flush(&mut v, now);
            }
        }
        v.handle_timeout(Time::from_millis(t));
        let conns = v.connections(Time::from_millis(t));
        assert_eq!(conns.len(), 1);
        assert_eq!(conns[0].state_name, "ESTABLISHED");
        assert_eq!(v.total_stats().inpkts, 2 + 2400);
    }

    #[test]
    fn config_change_invalidates_and_dead_dest_is_refused() {
        let mut v = table(FwdMethod::Route);
        let mut c = FlowCache::new(16);
        let syn = inbound(5002, TcpFlags::SYN, 60);
        let Verdict::Forward { dest, .. } = drive(&mut c, &mut v, Time::ZERO, &syn) else {
            panic!()
        };
        drive(
            &mut c,
            &mut v,
            Time::ZERO,
            &inbound(5002, TcpFlags::ACK, 52),
        );
        assert_eq!(c.len(), 1);
        let p = inbound(5002, TcpFlags::ACK, 52);
        assert!(c
            .hit(Time::from_millis(1), &fkey(&p), p.tcp_flags, 52)
            .is_some());
        v.del_dest(Time::from_millis(2), &key(), dest.ip(), 80)
            .unwrap();
        c.flush(&mut v, Time::from_millis(3));
        assert!(c.is_empty(), "dead destination / new config: forgotten");
        assert_eq!(c.stats().refused + c.stats().invalidated, 1);
        // The next packet goes to the table, which drops it (dest deleted).
        let vd = drive(&mut c, &mut v, Time::from_millis(4), &p);
        assert!(!matches!(vd, Verdict::Forward { .. }), "{vd:?}");
    }

    #[test]
    fn idle_entries_are_dropped_and_full_cache_does_not_grow() {
        let mut v = table(FwdMethod::Route);
        let mut c = FlowCache::new(2);
        for port in 6000..6004 {
            drive(
                &mut c,
                &mut v,
                Time::ZERO,
                &inbound(port, TcpFlags::SYN, 60),
            );
            drive(
                &mut c,
                &mut v,
                Time::ZERO,
                &inbound(port, TcpFlags::ACK, 52),
            );
        }
        assert_eq!(c.len(), 2, "capped");
        assert!(c.flush_due(Time::ZERO), "a full cache is due");
        c.flush(&mut v, Time::ZERO);
        assert!(c.is_empty(), "a full cache is emptied");
        drive(
            &mut c,
            &mut v,
            Time::ZERO,
            &inbound(6000, TcpFlags::ACK, 52),
        );
        assert_eq!(c.len(), 1);
        c.flush(&mut v, Time::from_millis(FlowCache::IDLE + 1));
        assert!(c.is_empty(), "idle entry dropped");
    }

    #[test]
    fn syn_fin_rst_are_never_served_from_the_cache() {
        for f in [TcpFlags::SYN, TcpFlags::FIN, TcpFlags::RST] {
            assert!(!cacheable(Protocol::Tcp, f | TcpFlags::ACK));
        }
        assert!(cacheable(Protocol::Tcp, TcpFlags::ACK | TcpFlags::PSH));
        assert!(cacheable(Protocol::Udp, TcpFlags::default()));
        assert!(!cacheable(Protocol::Sctp, TcpFlags::default()));
    }
}
