//! Virtual-time harness: two or three sans-IO routers on a simulated LAN with
//! loss, crashes and priority changes. No root, no sockets, no clock.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use rvs_vrrp::instance::{reconcile, RxVerdict};
use rvs_vrrp::packet::{Packet, Repr};
use rvs_vrrp::{
    Event, Instance, InstanceConfig, NotifyKind, State, TakeOver, TrackConfig, Version, VipConfig,
};

const LATENCY: Duration = Duration::from_millis(1);

fn ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(198, 18, 0, last))
}

fn vip() -> IpAddr {
    ip(100)
}

fn cfg(name: &str, last: u8, prio: u8) -> InstanceConfig {
    let mut c = InstanceConfig::new(name, "eth0", 51);
    c.priority = prio;
    c.local_addr = ip(last);
    c.vips = vec![VipConfig::new(vip())];
    c.auth_pass = Some(InstanceConfig::pass_bytes("secret"));
    c
}

fn ms(x: u64) -> Duration {
    Duration::from_millis(x)
}

struct Router {
    inst: Option<Instance>,
    alive: bool,
    events: Vec<(Duration, Event)>,
    sent: Vec<(Duration, u8)>,
}

struct InFlight {
    at: Instant,
    from: usize,
    src: IpAddr,
    dst: IpAddr,
    bytes: Vec<u8>,
}

struct Sim {
    t0: Instant,
    now: Instant,
    routers: Vec<Router>,
    flight: Vec<InFlight>,
    /// Drop a packet from `from` to `to` at time offset: return true to lose it.
    loss: Box<dyn FnMut(Duration, usize, usize) -> bool>,
    ttl: u8,
}

impl Sim {
    fn new() -> Sim {
        let t0 = Instant::now();
        Sim {
            t0,
            now: t0,
            routers: Vec::new(),
            flight: Vec::new(),
            loss: Box::new(|_, _, _| false),
            ttl: 255,
        }
    }

    fn t(&self) -> Duration {
        self.now - self.t0
    }

    fn add(&mut self, c: InstanceConfig) -> usize {
        let inst = Instance::new(c, self.now);
        self.routers.push(Router {
            inst: Some(inst),
            alive: true,
            events: Vec::new(),
            sent: Vec::new(),
        });
        let i = self.routers.len() - 1;
        self.drain(i);
        i
    }

    fn inst(&mut self, i: usize) -> &mut Instance {
        self.routers[i].inst.as_mut().unwrap()
    }

    fn state(&self, i: usize) -> State {
        self.routers[i].inst.as_ref().unwrap().state()
    }

    /// Crash (SIGKILL): no more input/output, no priority-0 advert.
    fn crash(&mut self, i: usize) {
        self.routers[i].alive = false;
    }

    /// Restart a crashed router with a fresh instance.
    fn restart(&mut self, i: usize, c: InstanceConfig) {
        self.routers[i].alive = true;
        self.routers[i].inst = Some(Instance::new(c, self.now));
        self.drain(i);
    }

    /// Binary upgrade: a new process continues router `i`'s instance
    /// from what the old one knew (the old one stops without a word).
    fn upgrade(&mut self, i: usize, c: InstanceConfig) {
        let now = self.now;
        let t = self.inst(i).take_over_state(now);
        self.routers[i].inst = Some(Instance::take_over(c, now, &t));
        self.drain(i);
    }

    fn shutdown(&mut self, i: usize) {
        let now = self.now;
        self.inst(i).shutdown(now);
        self.drain(i);
        self.routers[i].alive = false;
    }

    fn drain(&mut self, i: usize) {
        let t = self.t();
        let now = self.now;
        let r = &mut self.routers[i];
        let inst = r.inst.as_mut().unwrap();
        while let Some(tx) = inst.poll_transmit() {
            r.sent.push((t, tx.priority));
            self.flight.push(InFlight {
                at: now + LATENCY,
                from: i,
                src: tx.src,
                dst: tx.dst,
                bytes: tx.payload,
            });
        }
        while let Some(e) = inst.poll_event() {
            r.events.push((t, e));
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let timers = self
            .routers
            .iter()
            .filter(|r| r.alive)
            .filter_map(|r| r.inst.as_ref().and_then(|i| i.poll_timeout()));
        timers.chain(self.flight.iter().map(|f| f.at)).min()
    }

    fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        while let Some(next) = self.next_deadline().filter(|&n| n <= end) {
            self.now = self.now.max(next);
            let now = self.now;
            // Deliver due packets.
            let (due, rest): (Vec<_>, Vec<_>) = self.flight.drain(..).partition(|f| f.at <= now);
            self.flight = rest;
            for f in due {
                for to in 0..self.routers.len() {
                    if to == f.from || !self.routers[to].alive {
                        continue;
                    }
                    if (self.loss)(now - self.t0, f.from, to) {
                        continue;
                    }
                    let ttl = self.ttl;
                    self.inst(to)
                        .handle_packet(now, f.src, f.dst, ttl, &f.bytes);
                    self.drain(to);
                }
            }
            for i in 0..self.routers.len() {
                if self.routers[i].alive && self.inst(i).poll_timeout().is_some_and(|t| t <= now) {
                    self.inst(i).handle_timeout(now);
                    self.drain(i);
                }
            }
        }
        self.now = end;
    }

    fn became_master_at(&self, i: usize) -> Vec<Duration> {
        self.routers[i]
            .events
            .iter()
            .filter(|(_, e)| {
                matches!(
                    e,
                    Event::StateChange {
                        to: State::Master,
                        ..
                    }
                )
            })
            .map(|(t, _)| *t)
            .collect()
    }

    fn masters(&self) -> Vec<usize> {
        (0..self.routers.len())
            .filter(|&i| self.routers[i].alive && self.state(i) == State::Master)
            .collect()
    }
}

fn close(a: Duration, b: Duration) -> bool {
    a.abs_diff(b) <= ms(3)
}

/// Master_Down_Interval for v2, advert_int 1, priority p.
fn down_v2(p: u64) -> Duration {
    Duration::from_secs(3) + Duration::from_micros((256 - p) * 1_000_000 / 256)
}

#[test]
fn start_both_backup_then_higher_wins() {
    let mut s = Sim::new();
    let a = s.add(cfg("A", 11, 100));
    let b = s.add(cfg("B", 12, 50));
    assert_eq!(s.state(a), State::Backup);
    assert_eq!(s.state(b), State::Backup);
    // Stale VIPs are removed on entering BACKUP at start.
    assert!(s.routers[a]
        .events
        .iter()
        .any(|(_, e)| *e == Event::DelVips));
    s.run_for(Duration::from_secs(10));
    assert_eq!(s.masters(), vec![a]);
    let t = s.became_master_at(a);
    assert_eq!(t.len(), 1);
    assert!(close(t[0], down_v2(100)), "{t:?}");
    assert!(s.became_master_at(b).is_empty());
    // Master sends one advert per second.
    let n = s.routers[a].sent.len();
    assert!((6..=8).contains(&n), "{n}");
    let st = s.inst(b).status();
    assert_eq!(st.master_addr, Some(ip(11)));
    assert_eq!(st.master_priority, Some(100));
    assert!(st.counters.adverts_rx >= 6);
}

#[test]
fn become_master_emits_advert_vips_garp_notify_in_order() {
    let mut s = Sim::new();
    let a = s.add(cfg("A", 11, 100));
    s.run_for(Duration::from_secs(4));
    let evs: Vec<&Event> = s.routers[a]
        .events
        .iter()
        .filter(|(t, _)| *t > Duration::ZERO)
        .map(|(_, e)| e)
        .collect();
    assert!(matches!(
        evs[0],
        Event::StateChange {
            from: State::Backup,
            to: State::Master,
            ..
        }
    ));
    assert_eq!(
        *evs[1],
        Event::RunNotify {
            kind: NotifyKind::Master,
            priority: 100
        }
    );
    assert_eq!(*evs[2], Event::AddVips);
    assert_eq!(
        *evs[3],
        Event::SendGarp {
            addrs: vec![vip()],
            repeat: 5
        }
    );
    // Advert sent at the transition itself.
    assert!(close(s.routers[a].sent[0].0, down_v2(100)));
    // Second GARP set garp_master_delay (5 s) later.
    s.run_for(Duration::from_secs(5));
    let garps: Vec<Duration> = s.routers[a]
        .events
        .iter()
        .filter(|(_, e)| matches!(e, Event::SendGarp { .. }))
        .map(|(t, _)| *t)
        .collect();
    assert_eq!(garps.len(), 2);
    assert!(close(garps[1] - garps[0], Duration::from_secs(5)));
}

#[test]
fn master_crash_backup_takes_over_after_down_interval() {
    let mut s = Sim::new();
    let a = s.add(cfg("A", 11, 100));
    let b = s.add(cfg("B", 12, 50));
    s.run_for(Duration::from_secs(6));
    let last_advert = s.routers[a].sent.last().unwrap().0;
    s.crash(a);
    s.run_for(Duration::from_secs(6));
    let t = s.became_master_at(b);
    assert_eq!(t.len(), 1);
    // Timer restarted on the last advert received (1 ms latency).
    assert!(
        close(t[0], last_advert + LATENCY + down_v2(50)),
        "{t:?} {last_advert:?}"
    );
}

#[test]
fn prio0_advert_gives_skew_takeover() {
    let mut s = Sim::new();
    let a = s.add(cfg("A", 11, 100));
    let b = s.add(cfg("B", 12, 50));
    s.run_for(Duration::from_secs(6));
    let t_stop = s.t();
    s.shutdown(a);
    // Master sent priority 0 and removed its VIPs.
    assert_eq!(s.routers[a].sent.last().unwrap().1, 0);
    let evs = &s.routers[a].events;
    assert!(evs
        .iter()
        .any(|(t, e)| *t == t_stop && *e == Event::DelVips));
    assert!(evs.iter().any(|(_, e)| *e
        == Event::RunNotify {
            kind: NotifyKind::Stop,
            priority: 100
        }));
    assert_eq!(s.inst(a).counters().prio_zero_tx, 1);
    s.run_for(Duration::from_secs(3));
    let t = s.became_master_at(b);
    // skew = (256-50)/256 s = 0.8047 s (keepalived measured 0.81 s).
    assert!(
        close(
            t[0],
            t_stop + LATENCY + Duration::from_micros(206 * 1_000_000 / 256)
        ),
        "{t:?}"
    );
    assert_eq!(s.inst(b).counters().prio_zero_rx, 1);
}

#[test]
fn restart_of_higher_priority_preempts_after_its_down_timer() {
    let mut s = Sim::new();
    let a = s.add(cfg("A", 11, 100));
    let b = s.add(cfg("B", 12, 50));
    s.run_for(Duration::from_secs(6));
    s.shutdown(a);
    s.run_for(Duration::from_secs(3));
    assert_eq!(s.masters(), vec![b]);
    let t_restart = s.t();
    s.restart(a, cfg("A", 11, 100));
    s.run_for(Duration::from_secs(10));
    assert_eq!(s.masters(), vec![a]);
    let t = s.became_master_at(a);
    // Lower-priority adverts are discarded, so A takes over only when its own
    // Master_Down_Interval expires (keepalived: 3.6 s measured).
    assert!(
        close(*t.last().unwrap(), t_restart + down_v2(100)),
        "{t:?} {t_restart:?}"
    );
    assert!(s.inst(a).counters().lower_prio_discarded >= 3);
    assert_eq!(s.state(b), State::Backup);
}

#[test]
fn nopreempt_keeps_lower_master() {
    let mut s = Sim::new();
    let b = s.add(cfg("B", 12, 50));
    s.run_for(Duration::from_secs(5));
    assert_eq!(s.masters(), vec![b]);
    let mut c = cfg("A", 11, 100);
    c.nopreempt = true;
    let a = s.add(c);
    s.run_for(Duration::from_secs(20));
    assert_eq!(s.masters(), vec![b]);
    assert_eq!(s.state(a), State::Backup);
    // ... but it still takes over when the master goes away.
    s.shutdown(b);
    s.run_for(Duration::from_secs(2));
    assert_eq!(s.masters(), vec![a]);
}

#[test]
fn preempt_hold_keeps_the_lower_master_until_released() {
    let mut s = Sim::new();
    let b = s.add(cfg("B", 12, 50));
    s.run_for(Duration::from_secs(5));
    let mut c = cfg("A", 11, 100);
    c.preempt_hold = true;
    let a = s.add(c);
    s.run_for(Duration::from_secs(20));
    assert_eq!(s.masters(), vec![b], "held: no preemption");
    assert_eq!(s.state(a), State::Backup);
    s.inst(a).set_preempt_hold(false);
    s.run_for(Duration::from_secs(5));
    assert_eq!(s.masters(), vec![a], "released: A preempts");
}

#[test]
fn preempt_hold_does_not_stop_a_takeover_without_master() {
    let mut s = Sim::new();
    let mut c = cfg("A", 11, 100);
    c.preempt_hold = true;
    let a = s.add(c);
    s.run_for(Duration::from_secs(5));
    assert_eq!(s.masters(), vec![a]);
}

#[test]
fn preempt_delay_adds_to_down_timer() {
    let mut s = Sim::new();
    let b = s.add(cfg("B", 12, 50));
    s.run_for(Duration::from_secs(5));
    let mut c = cfg("A", 11, 100);
    c.preempt_delay = Duration::from_secs(10);
    let t_start = s.t();
    let a = s.add(c);
    s.run_for(Duration::from_secs(12));
    assert_eq!(s.masters(), vec![b], "still inside preempt_delay");
    s.run_for(Duration::from_secs(6));
    assert_eq!(s.masters(), vec![a]);
    let t = s.became_master_at(a)[0] - t_start;
    // First accepted lower advert within 1 s of start, +10 s delay, then the
    // down interval from the last advert accepted before the delay ran out.
    assert!(
        t > Duration::from_secs(13) && t < Duration::from_secs(15),
        "{t:?}"
    );
}

#[test]
fn equal_priority_higher_ip_wins() {
    let mut s = Sim::new();
    let a = s.add(cfg("A", 11, 100));
    let b = s.add(cfg("B", 12, 100));
    s.run_for(Duration::from_secs(10));
    assert_eq!(s.masters(), vec![b]);
    assert_eq!(s.state(a), State::Backup);
}

#[test]
fn owner_255_is_master_at_once_and_preempts_immediately() {
    let mut s = Sim::new();
    let b = s.add(cfg("B", 12, 100));
    s.run_for(Duration::from_secs(5));
    assert_eq!(s.masters(), vec![b]);
    let t_start = s.t();
    let o = s.add(cfg("O", 11, 255));
    assert_eq!(s.state(o), State::Init);
    s.run_for(ms(100));
    assert_eq!(s.masters(), vec![o]);
    assert_eq!(s.became_master_at(o), vec![t_start]);
    assert_eq!(s.state(b), State::Backup);
}

#[test]
fn v3_backup_adopts_master_interval() {
    let mut s = Sim::new();
    let mut ca = cfg("A", 11, 100);
    ca.version = Version::V3;
    ca.advert_int = ms(100);
    let mut cb = cfg("B", 12, 50);
    cb.version = Version::V3;
    cb.advert_int = Duration::from_secs(1);
    let a = s.add(ca);
    let b = s.add(cb);
    s.run_for(Duration::from_secs(5));
    assert_eq!(s.masters(), vec![a]);
    assert_eq!(s.inst(b).master_adver_int(), ms(100));
    // v3 skew scales: 3 × 0.1 + 206 × 0.1 / 256.
    assert_eq!(
        s.inst(b).master_down_interval(),
        Duration::from_micros(300_000 + 206 * 100_000 / 256)
    );
    let last = s.routers[a].sent.last().unwrap().0;
    s.crash(a);
    s.run_for(Duration::from_secs(2));
    let t = s.became_master_at(b)[0];
    assert!(
        close(
            t,
            last + LATENCY + ms(300) + Duration::from_micros(206 * 100_000 / 256)
        ),
        "{t:?}"
    );
    // Once master, B advertises with its own interval again.
    assert_eq!(s.inst(b).master_adver_int(), Duration::from_secs(1));
}

#[test]
fn v2_advert_interval_mismatch_is_dropped() {
    let mut s = Sim::new();
    let a = s.add(cfg("A", 11, 100));
    let mut cb = cfg("B", 12, 50);
    cb.advert_int = Duration::from_secs(2);
    let b = s.add(cb);
    s.run_for(Duration::from_secs(10));
    assert_eq!(s.masters().len(), 2);
    assert!(s.inst(b).counters().adver_int_mismatch > 0);
    assert!(s.inst(a).counters().adver_int_mismatch > 0);
}

#[test]
fn auth_mismatch_split_brain_like_keepalived() {
    let mut s = Sim::new();
    let a = s.add(cfg("A", 11, 100));
    let mut cb = cfg("B", 12, 50);
    cb.auth_pass = Some(InstanceConfig::pass_bytes("other"));
    let b = s.add(cb);
    s.run_for(Duration::from_secs(10));
    assert_eq!(s.masters(), vec![a, b]);
    assert!(s.inst(a).counters().bad_auth >= 5);
    assert!(s.inst(b).counters().bad_auth >= 5);
    assert_eq!(s.inst(a).counters().adverts_rx, 0);
}

#[test]
fn loss_of_two_adverts_is_tolerated_three_is_not() {
    let mut s = Sim::new();
    let a = s.add(cfg("A", 11, 100));
    let b = s.add(cfg("B", 12, 50));
    s.run_for(Duration::from_secs(6));
    // Lose A→B for 2.5 s: with adverts every 1 s, two are lost.
    let t0 = s.t();
    s.loss = Box::new(move |t, from, _| from == 0 && t > t0 && t < t0 + ms(2500));
    s.run_for(Duration::from_secs(6));
    assert!(s.became_master_at(b).is_empty());
    // Lose 4 s worth: B takes over (split brain) and hands back when A is heard.
    let t1 = s.t();
    s.loss = Box::new(move |t, from, _| from == 0 && t > t1 && t < t1 + ms(4500));
    s.run_for(Duration::from_secs(4));
    assert_eq!(s.became_master_at(b).len(), 1);
    s.run_for(Duration::from_secs(4));
    assert_eq!(s.masters(), vec![a]);
    assert_eq!(s.state(b), State::Backup);
}

#[test]
fn master_answers_lower_priority_advert_at_once() {
    let mut s = Sim::new();
    let a = s.add(cfg("A", 11, 100));
    s.run_for(Duration::from_secs(5));
    let before = s.routers[a].sent.len();
    // A lower-priority router that believes it is master (e.g. after a split).
    let now = s.now;
    let mut c = cfg("B", 12, 50);
    c.auth_pass = Some(InstanceConfig::pass_bytes("secret"));
    let repr = Repr {
        version: Version::V2,
        vrid: 51,
        priority: 50,
        adver_int_cs: 100,
        auth_type: 1,
        auth_data: InstanceConfig::pass_bytes("secret"),
        addrs: vec![vip()],
    };
    let mcast = IpAddr::V4(Ipv4Addr::new(224, 0, 0, 18));
    let bytes = repr.to_bytes(ip(12), mcast);
    assert_eq!(
        s.inst(a).handle_packet(now, ip(12), mcast, 255, &bytes),
        RxVerdict::Accepted
    );
    s.drain(a);
    assert_eq!(s.routers[a].sent.len(), before + 1);
    assert_eq!(s.state(a), State::Master);
    let _ = c;
}

#[test]
fn receive_checks_drop_and_count() {
    let mut s = Sim::new();
    let a = s.add(cfg("A", 11, 50));
    let now = s.now;
    let mcast = IpAddr::V4(Ipv4Addr::new(224, 0, 0, 18));
    let good = Repr {
        version: Version::V2,
        vrid: 51,
        priority: 100,
        adver_int_cs: 100,
        auth_type: 1,
        auth_data: InstanceConfig::pass_bytes("secret"),
        addrs: vec![vip()],
    };
    let inst = s.inst(a);
    let send = |inst: &mut Instance, r: &Repr, ttl: u8| {
        let b = r.to_bytes(ip(12), mcast);
        inst.handle_packet(now, ip(12), mcast, ttl, &b)
    };
    assert_eq!(send(inst, &good, 255), RxVerdict::Accepted);
    assert!(matches!(send(inst, &good, 254), RxVerdict::Dropped(_)));
    assert!(matches!(
        send(
            inst,
            &Repr {
                vrid: 52,
                ..good.clone()
            },
            255
        ),
        RxVerdict::Dropped(_)
    ));
    assert!(matches!(
        send(
            inst,
            &Repr {
                auth_data: *b"wrong\0\0\0",
                ..good.clone()
            },
            255
        ),
        RxVerdict::Dropped(_)
    ));
    assert!(matches!(
        send(
            inst,
            &Repr {
                auth_type: 0,
                ..good.clone()
            },
            255
        ),
        RxVerdict::Dropped(_)
    ));
    assert!(matches!(
        send(
            inst,
            &Repr {
                adver_int_cs: 200,
                ..good.clone()
            },
            255
        ),
        RxVerdict::Dropped(_)
    ));
    assert!(matches!(
        send(
            inst,
            &Repr {
                addrs: vec![ip(101)],
                ..good.clone()
            },
            255
        ),
        RxVerdict::Dropped(_)
    ));
    assert!(matches!(
        send(
            inst,
            &Repr {
                version: Version::V3,
                ..good.clone()
            },
            255
        ),
        RxVerdict::Dropped(_)
    ));
    let mut b = good.to_bytes(ip(12), mcast);
    b[7] ^= 0xff;
    assert!(matches!(
        inst.handle_packet(now, ip(12), mcast, 255, &b),
        RxVerdict::Dropped(_)
    ));
    let b = good.to_bytes(ip(12), mcast);
    assert!(matches!(
        inst.handle_packet(now, ip(12), mcast, 255, &b[..b.len() - 1]),
        RxVerdict::Dropped(_)
    ));
    assert!(matches!(
        inst.handle_packet(now, ip(12), mcast, 255, &b[..3]),
        RxVerdict::Dropped(_)
    ));
    let c = inst.counters().clone();
    assert_eq!(
        (
            c.adverts_rx,
            c.bad_ttl,
            c.wrong_vrid,
            c.bad_auth,
            c.bad_auth_type
        ),
        (1, 1, 1, 1, 1)
    );
    assert_eq!(
        (c.adver_int_mismatch, c.addr_list_mismatch, c.bad_version),
        (1, 1, 1)
    );
    assert_eq!((c.bad_checksum, c.bad_length), (1, 2));
    // Garbage never panics.
    for len in 0..40 {
        let junk: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
        let _ = inst.handle_packet(now, ip(12), mcast, 255, &junk);
    }
}

#[test]
fn unicast_sends_to_each_peer_and_skips_ttl_check() {
    let now = Instant::now();
    let mut c = cfg("A", 11, 100);
    c.unicast_peers = vec![ip(12), ip(13)];
    let mut a = Instance::new(c, now);
    let t = a.poll_timeout().unwrap();
    a.handle_timeout(t);
    let tx: Vec<_> = std::iter::from_fn(|| a.poll_transmit()).collect();
    assert_eq!(
        tx.iter().map(|t| t.dst).collect::<Vec<_>>(),
        vec![ip(12), ip(13)]
    );
    // A lower-priority unicast advert with TTL 64 is accepted.
    let repr = Repr::parse(
        &Packet::new_checked(&tx[0].payload[..]).unwrap(),
        ip(11),
        ip(12),
    )
    .unwrap();
    let b = Repr {
        priority: 150,
        ..repr
    }
    .to_bytes(ip(12), ip(11));
    assert_eq!(
        a.handle_packet(t, ip(12), ip(11), 64, &b),
        RxVerdict::Accepted
    );
    assert_eq!(a.state(), State::Backup);
}

#[test]
fn track_weights_and_fault() {
    let mut s = Sim::new();
    let mut ca = cfg("A", 11, 100);
    ca.tracks = vec![
        TrackConfig {
            name: "chk".into(),
            weight: -60,
            reverse: false,
            initially_up: true,
        },
        TrackConfig {
            name: "eth1".into(),
            weight: 0,
            reverse: false,
            initially_up: true,
        },
    ];
    let a = s.add(ca);
    let b = s.add(cfg("B", 12, 50));
    s.run_for(Duration::from_secs(6));
    assert_eq!(s.masters(), vec![a]);
    // Script fails: 100 - 60 = 40 < 50: B preempts after its down timer.
    let now = s.now;
    assert!(s.inst(a).set_track(now, "chk", false));
    assert_eq!(s.inst(a).effective_priority(), 40);
    s.drain(a);
    s.run_for(Duration::from_secs(6));
    assert_eq!(s.masters(), vec![b]);
    assert!(s.routers[a]
        .events
        .iter()
        .any(|(_, e)| *e == Event::PriorityChange { from: 100, to: 40 }));
    // Script OK again: A (100) preempts B.
    let now = s.now;
    s.inst(a).set_track(now, "chk", true);
    s.run_for(Duration::from_secs(6));
    assert_eq!(s.masters(), vec![a]);
    // Weight-0 interface down: FAULT, priority-0 advert, VIPs removed.
    let now = s.now;
    let sent = s.routers[a].sent.len();
    s.inst(a).set_track(now, "eth1", false);
    s.drain(a);
    assert_eq!(s.state(a), State::Fault);
    assert_eq!(s.routers[a].sent[sent].1, 0);
    assert!(s.routers[a]
        .events
        .iter()
        .rev()
        .take(4)
        .any(|(_, e)| *e == Event::DelVips));
    s.run_for(Duration::from_secs(2));
    assert_eq!(s.masters(), vec![b]);
    assert_eq!(s.inst(a).poll_timeout(), None);
    let now = s.now;
    s.inst(a).set_track(now, "eth1", true);
    assert_eq!(s.state(a), State::Backup);
    s.run_for(Duration::from_secs(6));
    assert_eq!(s.masters(), vec![a]);
}

#[test]
fn priority_clamped() {
    let now = Instant::now();
    let mut c = cfg("A", 11, 250);
    c.tracks = vec![TrackConfig {
        name: "x".into(),
        weight: 100,
        reverse: false,
        initially_up: true,
    }];
    assert_eq!(Instance::new(c.clone(), now).effective_priority(), 254);
    c.priority = 10;
    c.tracks[0].weight = -100;
    c.tracks[0].initially_up = false;
    assert_eq!(Instance::new(c.clone(), now).effective_priority(), 1);
    c.priority = 255;
    assert_eq!(Instance::new(c, now).effective_priority(), 255);
}

#[test]
fn sync_group_moves_together_and_faults_together() {
    let now = Instant::now();
    let mut insts = vec![
        Instance::new(cfg("VI_1", 11, 100), now),
        Instance::new(cfg("VI_2", 11, 100), now),
    ];
    let mut c2 = cfg("VI_2", 11, 100);
    c2.tracks = vec![TrackConfig {
        name: "eth1".into(),
        weight: 0,
        reverse: false,
        initially_up: true,
    }];
    insts[1] = Instance::new(c2, now);
    let members = [0, 1];
    reconcile(now, &mut insts, &members);
    // VI_1 times out first (pretend VI_2 still hears a master): both MASTER.
    let t = insts[0].poll_timeout().unwrap();
    insts[0].handle_timeout(t);
    reconcile(t, &mut insts, &members);
    assert_eq!(insts[0].state(), State::Master);
    assert_eq!(insts[1].state(), State::Master);
    // VI_2's interface fails: both FAULT, both send priority 0.
    assert!(insts[1].set_track(t, "eth1", false));
    reconcile(t, &mut insts, &members);
    assert_eq!(insts[1].state(), State::Fault);
    assert_eq!(insts[0].state(), State::Fault);
    let prio0 =
        |i: &mut Instance| std::iter::from_fn(|| i.poll_transmit()).any(|t| t.priority == 0);
    assert!(prio0(&mut insts[0]));
    assert!(prio0(&mut insts[1]));
    // Recovery: both BACKUP.
    insts[1].set_track(t, "eth1", true);
    reconcile(t, &mut insts, &members);
    assert_eq!(insts[0].state(), State::Backup);
    assert_eq!(insts[1].state(), State::Backup);
}

#[test]
fn three_routers_master_chain() {
    let mut s = Sim::new();
    let a = s.add(cfg("A", 11, 150));
    let b = s.add(cfg("B", 12, 100));
    let c = s.add(cfg("C", 13, 50));
    s.run_for(Duration::from_secs(8));
    assert_eq!(s.masters(), vec![a]);
    s.shutdown(a);
    s.run_for(Duration::from_secs(3));
    // B has the smaller skew so it wins the race after the priority-0 advert.
    assert_eq!(s.masters(), vec![b]);
    s.crash(b);
    s.run_for(Duration::from_secs(5));
    assert_eq!(s.masters(), vec![c]);
    assert_eq!(s.became_master_at(c).len(), 1);
}

#[test]
fn shutdown_from_backup_sends_nothing() {
    let now = Instant::now();
    let mut b = Instance::new(cfg("B", 12, 50), now);
    while b.poll_event().is_some() {}
    b.shutdown(now);
    assert!(b.poll_transmit().is_none());
    assert_eq!(
        b.poll_event(),
        Some(Event::StateChange {
            from: State::Backup,
            to: State::Stop,
            reason: rvs_vrrp::Reason::Shutdown
        })
    );
    assert_eq!(b.poll_timeout(), None);
}

#[test]
fn own_interface_down_is_fault() {
    let mut s = Sim::new();
    let a = s.add(cfg("A", 11, 100));
    let b = s.add(cfg("B", 12, 50));
    s.run_for(Duration::from_secs(5));
    assert_eq!(s.masters(), vec![a]);
    let now = s.now;
    s.inst(a).set_interface_up(now, false);
    s.drain(a);
    assert_eq!(s.state(a), State::Fault);
    assert!(s.routers[a].events.iter().any(|(_, e)| *e
        == Event::RunNotify {
            kind: NotifyKind::Fault,
            priority: 100
        }));
    s.run_for(Duration::from_secs(2));
    assert_eq!(s.masters(), vec![b]);
    let now = s.now;
    s.inst(a).set_interface_up(now, true);
    s.run_for(Duration::from_secs(5));
    assert_eq!(s.masters(), vec![a]);
}

/// Record/replay style (holo conformance tests): one router's complete output
/// trace for a scripted life, compared with the expected text. Times are
/// offsets from start in ms; a peer's adverts are injected by hand.
#[test]
fn golden_trace_backup_life() {
    let t0 = Instant::now();
    let mut me = Instance::new(cfg("B", 12, 50), t0);
    let mcast = IpAddr::V4(Ipv4Addr::new(224, 0, 0, 18));
    let advert = |prio: u8| {
        Repr {
            version: Version::V2,
            vrid: 51,
            priority: prio,
            adver_int_cs: 100,
            auth_type: 1,
            auth_data: InstanceConfig::pass_bytes("secret"),
            addrs: vec![vip()],
        }
        .to_bytes(ip(11), mcast)
    };
    let mut trace = Vec::new();
    let log = |me: &mut Instance, at: Duration, trace: &mut Vec<String>| {
        while let Some(tx) = me.poll_transmit() {
            trace.push(format!(
                "{:>5} tx prio {} to {}",
                at.as_millis(),
                tx.priority,
                tx.dst
            ));
        }
        while let Some(e) = me.poll_event() {
            trace.push(format!("{:>5} {e:?}", at.as_millis()));
        }
    };
    log(&mut me, Duration::ZERO, &mut trace);
    // The master (prio 100) advertises at 1 s and 2 s, then stops (prio 0) at 2.5 s.
    let mut inputs: Vec<(u64, Option<u8>)> =
        vec![(1000, Some(100)), (2000, Some(100)), (2500, Some(0))];
    inputs.reverse();
    let end = t0 + Duration::from_millis(6500);
    loop {
        let next_in = inputs.last().map(|(at, _)| t0 + ms(*at));
        let next_to = me.poll_timeout();
        let Some(now) = [next_in, next_to]
            .into_iter()
            .flatten()
            .min()
            .filter(|t| *t <= end)
        else {
            break;
        };
        if next_in == Some(now) {
            let (_, prio) = inputs.pop().unwrap();
            if let Some(p) = prio {
                me.handle_packet(now, ip(11), mcast, 255, &advert(p));
            }
        } else {
            me.handle_timeout(now);
        }
        log(&mut me, now - t0, &mut trace);
    }
    let expected = "\
    0 StateChange { from: Init, to: Backup, reason: Init }
    0 RunNotify { kind: Backup, priority: 50 }
    0 DelVips
 3304 tx prio 50 to 224.0.0.18
 3304 StateChange { from: Backup, to: Master, reason: MasterDown }
 3304 RunNotify { kind: Master, priority: 50 }
 3304 AddVips
 3304 SendGarp { addrs: [198.18.0.100], repeat: 5 }
 4304 tx prio 50 to 224.0.0.18
 5304 tx prio 50 to 224.0.0.18
 6304 tx prio 50 to 224.0.0.18";
    let got: Vec<&str> = trace.iter().map(|l| l.trim()).collect();
    let want: Vec<&str> = expected.lines().map(str::trim).collect();
    assert_eq!(got, want, "\n{}", trace.join("\n"));
}

/// Events other than the quiet ones an upgrade may produce.
fn loud(events: &[(Duration, Event)], since: Duration) -> Vec<Event> {
    events
        .iter()
        .filter(|(t, _)| *t >= since)
        .map(|(_, e)| e.clone())
        .collect()
}

#[test]
fn upgrade_of_a_master_is_silent_and_adverts_go_on() {
    let mut s = Sim::new();
    let mut ca = cfg("A", 11, 100);
    ca.garp_master_refresh = Some(Duration::from_secs(10));
    let a = s.add(ca.clone());
    let b = s.add(cfg("B", 12, 50));
    s.run_for(Duration::from_secs(6));
    assert_eq!(s.masters(), vec![a]);
    // upgrade between two adverts
    s.run_for(ms(400));
    let t_up = s.t();
    let before = s.inst(a).counters().clone();
    s.upgrade(a, ca);
    assert_eq!(s.state(a), State::Master);
    // no transition, no notify, no VIP change, no GARP burst
    assert_eq!(loud(&s.routers[a].events, t_up), vec![]);
    // the first advert goes out at once
    assert_eq!(*s.routers[a].sent.last().unwrap(), (t_up, 100));
    let c = s.inst(a).counters().clone();
    assert_eq!(c.became_master, before.became_master);
    assert_eq!(c.adverts_tx, before.adverts_tx + 1);
    s.run_for(Duration::from_secs(12));
    assert_eq!(s.masters(), vec![a]);
    assert!(s.became_master_at(b).is_empty());
    // the peer heard an advert at least every advert_int throughout
    let sent: Vec<Duration> = s.routers[a].sent.iter().map(|(t, _)| *t).collect();
    assert!(
        sent.windows(2)
            .all(|w| w[1] - w[0] <= Duration::from_secs(1)),
        "{sent:?}"
    );
    // only the periodic refresh: one GARP, 10 s after the upgrade
    let garps: Vec<(Duration, Event)> = s.routers[a]
        .events
        .iter()
        .filter(|(t, e)| *t >= t_up && matches!(e, Event::SendGarp { .. }))
        .cloned()
        .collect();
    assert_eq!(garps.len(), 1, "{garps:?}");
    assert!(close(garps[0].0, t_up + Duration::from_secs(10)));
    assert_eq!(
        garps[0].1,
        Event::SendGarp {
            addrs: vec![vip()],
            repeat: 1
        }
    );
    // the upgraded master still behaves: a graceful stop hands over
    s.shutdown(a);
    s.run_for(Duration::from_secs(2));
    assert_eq!(s.masters(), vec![b]);
}

#[test]
fn upgrade_of_a_backup_stays_backup_and_still_takes_over() {
    let mut s = Sim::new();
    let a = s.add(cfg("A", 11, 100));
    let cb = cfg("B", 12, 50);
    let b = s.add(cb.clone());
    s.run_for(Duration::from_secs(6));
    let t_up = s.t();
    s.upgrade(b, cb);
    assert_eq!(s.state(b), State::Backup);
    assert_eq!(loud(&s.routers[b].events, t_up), vec![]);
    s.run_for(Duration::from_secs(6));
    assert_eq!(s.masters(), vec![a]);
    // the master dies: the upgraded backup takes over as usual
    let last = s.routers[a].sent.last().unwrap().0;
    s.crash(a);
    s.run_for(Duration::from_secs(6));
    let t = s.became_master_at(b);
    assert_eq!(t.len(), 1);
    assert!(close(t[0], last + LATENCY + down_v2(50)), "{t:?}");
}

#[test]
fn upgrade_keeps_track_states_and_faults_if_one_is_down() {
    let mut s = Sim::new();
    let mut ca = cfg("A", 11, 100);
    ca.tracks = vec![
        TrackConfig {
            name: "chk".into(),
            weight: 20,
            reverse: false,
            // the new process's script runner has not run yet
            initially_up: false,
        },
        TrackConfig {
            name: "eth1".into(),
            weight: 0,
            reverse: false,
            initially_up: true,
        },
    ];
    let a = s.add(ca.clone());
    let now = s.now;
    s.inst(a).set_track(now, "chk", true);
    s.run_for(Duration::from_secs(6));
    assert_eq!(s.inst(a).effective_priority(), 120);
    let t_up = s.t();
    s.upgrade(a, ca.clone());
    // the tracker's state came along: same priority, no event
    assert_eq!(s.inst(a).effective_priority(), 120);
    assert_eq!(loud(&s.routers[a].events, t_up), vec![]);
    // a weight-0 tracker that is down in the taken-over state: the
    // instance leaves MASTER as it would have (priority 0, VIPs removed)
    let now = s.now;
    let mut t = s.inst(a).take_over_state(now);
    t.tracks = vec![("chk".into(), true), ("eth1".into(), false)];
    let inst = Instance::take_over(ca, now, &t);
    s.routers[a].inst = Some(inst);
    s.drain(a);
    assert_eq!(s.state(a), State::Fault);
    assert_eq!(s.routers[a].sent.last().unwrap().1, 0);
    assert!(s.routers[a]
        .events
        .iter()
        .any(|(t, e)| *t == s.t() && *e == Event::DelVips));
}

#[test]
fn upgrade_from_another_state_starts_afresh_with_the_counters() {
    let now = Instant::now();
    let t = TakeOver {
        state: State::Fault,
        counters: rvs_vrrp::Counters {
            adverts_rx: 7,
            ..Default::default()
        },
        since_transition: None,
        tracks: Vec::new(),
    };
    let mut i = Instance::take_over(cfg("A", 11, 100), now, &t);
    assert_eq!(i.state(), State::Backup);
    assert_eq!(i.counters().adverts_rx, 7);
    assert!(matches!(
        i.poll_event(),
        Some(Event::StateChange {
            from: State::Init,
            to: State::Backup,
            ..
        })
    ));
    // the handover format: JSON, unknown-free
    let j = serde_json::to_string(&t).unwrap();
    let back: TakeOver = serde_json::from_str(&j).unwrap();
    assert_eq!(back, t);
}
