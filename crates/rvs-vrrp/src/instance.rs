//! The VRRP instance state machine, sans-IO (quinn-proto style).
//!
//! An [`Instance`] never reads the clock and never touches a socket: the
//! caller passes `now` into every input ([`Instance::handle_packet`],
//! [`Instance::handle_timeout`], [`Instance::set_track`], ...) and drains the
//! outputs ([`Instance::poll_transmit`], [`Instance::poll_event`]) and the next
//! deadline ([`Instance::poll_timeout`]).
//!
//! Behaviour follows keepalived 2.2.7 where it differs from the RFCs:
//! - start in BACKUP unless address owner (base priority 255);
//! - `Master_Down_Interval = down_timer_adverts × master_adver_int + skew`,
//!   v2 skew `(256 − prio)/256 s`, v3 skew `(256 − prio) × master_adver_int/256`,
//!   using the *effective* priority;
//! - a priority-0 advert sets the down timer to the skew;
//! - in BACKUP an advert is accepted (down timer restarted) when `nopreempt`,
//!   or its priority ≥ ours, or preempt_delay is still running; a lower
//!   priority advert is discarded, so a higher-priority backup preempts only
//!   when its own down timer runs out; preempt_delay starts at the first
//!   accepted lower-priority advert;
//! - a MASTER steps down on a higher priority advert, or an equal one from a
//!   higher source IP; it answers a lower-priority or priority-0 advert with an
//!   immediate advert;
//! - v2: adverts with another advert interval are dropped; v3: a backup
//!   adopts the master's interval;
//! - leaving MASTER (shutdown, fault) sends a priority-0 advert.

use std::borrow::BorrowMut;
use std::collections::VecDeque;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::config::InstanceConfig;
use crate::packet::{self, Packet, Repr, Version};

/// Instance state (keepalived numbering in comments).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum State {
    /// 0: not started.
    Init,
    /// 1.
    Backup,
    /// 2.
    Master,
    /// 3: a tracked object with weight 0 is down (or a sync-group peer is).
    Fault,
    /// 98: shut down.
    Stop,
}

impl State {
    /// Upper-case name as keepalived prints it and passes it to notify scripts.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Init => "INIT",
            State::Backup => "BACKUP",
            State::Master => "MASTER",
            State::Fault => "FAULT",
            State::Stop => "STOP",
        }
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a transition happened (for logs and status).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Reason {
    /// Start-up.
    Init,
    /// Address owner at start.
    Owner,
    /// Master_Down_Interval expired.
    MasterDown,
    /// Higher-priority (or equal priority, higher IP) advert received.
    HigherPriority,
    /// A tracked object with weight 0 went down / the group is in fault.
    Fault,
    /// Fault cleared.
    FaultCleared,
    /// Shutdown.
    Shutdown,
    /// Sync group moved this member.
    SyncGroup,
}

/// Something the shell must send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// IP source (the checksum of v3 depends on it).
    pub src: IpAddr,
    /// IP destination (multicast group or a unicast peer).
    pub dst: IpAddr,
    /// Advertised priority (0 for the stop advert); the shell renews the VIP
    /// lifetimes on every non-zero master advert.
    pub priority: u8,
    /// VRRP payload (without IP header).
    pub payload: Vec<u8>,
}

/// Kind of notify script to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum NotifyKind {
    /// notify_master.
    Master,
    /// notify_backup.
    Backup,
    /// notify_fault.
    Fault,
    /// notify_stop.
    Stop,
}

/// Side effects for the shell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// State transition.
    StateChange {
        /// Old state.
        from: State,
        /// New state.
        to: State,
        /// Why.
        reason: Reason,
    },
    /// Install every VIP (`virtual_ipaddress`).
    AddVips,
    /// Remove every VIP.
    DelVips,
    /// Send `repeat` gratuitous ARPs (IPv4) / unsolicited NAs (IPv6) for each
    /// of `addrs`.
    SendGarp {
        /// VIPs to announce.
        addrs: Vec<IpAddr>,
        /// How many per VIP.
        repeat: u32,
    },
    /// Run the notify scripts for this state (`notify_*` and `notify`).
    RunNotify {
        /// Which one.
        kind: NotifyKind,
        /// Effective priority at the time.
        priority: u8,
    },
    /// Effective priority changed.
    PriorityChange {
        /// Old.
        from: u8,
        /// New.
        to: u8,
    },
}

/// Receive/transmit counters (keepalived's `vrrp->stats` plus rvs extras).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Counters {
    /// Valid adverts received.
    pub adverts_rx: u64,
    /// Adverts sent (including priority 0).
    pub adverts_tx: u64,
    /// Priority-0 adverts received.
    pub prio_zero_rx: u64,
    /// Priority-0 adverts sent.
    pub prio_zero_tx: u64,
    /// Times this instance became MASTER.
    pub became_master: u64,
    /// Times it left MASTER.
    pub released_master: u64,
    /// TTL / hop limit ≠ 255 on a multicast instance.
    pub bad_ttl: u64,
    /// v2 password mismatch.
    pub bad_auth: u64,
    /// v2 auth type mismatch.
    pub bad_auth_type: u64,
    /// Packets for a VRID this instance does not own.
    pub wrong_vrid: u64,
    /// Checksum errors.
    pub bad_checksum: u64,
    /// Length / truncation errors.
    pub bad_length: u64,
    /// Wrong version (or family).
    pub bad_version: u64,
    /// Not an ADVERTISEMENT.
    pub bad_type: u64,
    /// v2 advertisement interval mismatch.
    pub adver_int_mismatch: u64,
    /// Address count / address list does not match ours.
    pub addr_list_mismatch: u64,
    /// Lower-priority adverts discarded in BACKUP (preemption pending).
    pub lower_prio_discarded: u64,
}

/// Result of [`Instance::handle_packet`], for logging.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RxVerdict {
    /// Accepted and processed.
    Accepted,
    /// Dropped; the matching counter was incremented.
    Dropped(DropReason),
}

/// Why a packet was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// `invalid TTL/HL. Received %d and expect 255`.
    BadTtl(u8),
    /// `received an invalid passwd!`.
    BadAuth,
    /// `received a %d auth, expecting %d!`.
    BadAuthType(u8),
    /// Another VRID.
    WrongVrid(u8),
    /// Packet-level error.
    Packet(packet::Error),
    /// `advertisement interval mismatch mine=%u sec rcv'd=%d sec`.
    AdverIntMismatch(u16),
    /// `ip address associated with VRID not present in MASTER advert`.
    AddrList,
    /// Instance not running (INIT/STOP/FAULT).
    NotRunning,
    /// Our own advert looped back.
    Own,
}

/// A VRRP instance.
#[derive(Debug)]
pub struct Instance {
    cfg: InstanceConfig,
    state: State,
    effective_priority: u8,
    master_adver_int: Duration,
    master_addr: Option<IpAddr>,
    master_priority: u8,
    down_timer: Option<Instant>,
    advert_timer: Option<Instant>,
    garp_timer: Option<Instant>,
    garp_refresh_timer: Option<Instant>,
    preempt_time: Option<Instant>,
    track_up: Vec<bool>,
    iface_up: bool,
    group_fault: bool,
    last_transition: Option<Instant>,
    sync_pending: Option<State>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    counters: Counters,
}

/// Point-in-time status (serialisable for the API / status file).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct InstanceStatus {
    /// Instance name.
    pub name: String,
    /// Interface.
    pub interface: String,
    /// VRID.
    pub vrid: u8,
    /// Current state.
    pub state: State,
    /// Configured priority.
    pub base_priority: u8,
    /// Effective priority.
    pub effective_priority: u8,
    /// Address of the current master as seen from here (ours when MASTER).
    pub master_addr: Option<IpAddr>,
    /// Priority the master advertised.
    pub master_priority: Option<u8>,
    /// Unix time of the last transition (filled by the shell), seconds.
    pub last_transition_unix: Option<f64>,
    /// Counters.
    pub counters: Counters,
    /// Tracked objects (name, up), for a successor process.
    #[serde(default)]
    pub tracks: Vec<(String, bool)>,
}

/// What a predecessor process knew of a running instance, for a binary
/// upgrade of the daemon ([`Instance::take_over`]). Serialisable: rvsd
/// hands it to its successor.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TakeOver {
    /// The state the instance was in (MASTER and BACKUP are taken over as
    /// they are; any other state starts as [`Instance::new`] does).
    pub state: State,
    /// Its counters, which go on counting.
    pub counters: Counters,
    /// How long ago its last transition was.
    #[serde(default)]
    pub since_transition: Option<Duration>,
    /// The tracked objects' states (name, up); trackers not listed keep
    /// their configured initial state.
    #[serde(default)]
    pub tracks: Vec<(String, bool)>,
}

fn skew(version: Version, prio: u8, master_adver_int: Duration) -> Duration {
    let p = 256 - u64::from(prio);
    match version {
        Version::V2 => Duration::from_micros(p * 1_000_000 / 256),
        Version::V3 => Duration::from_micros(p * (master_adver_int.as_micros() as u64) / 256),
    }
}

impl Instance {
    /// Create an instance at `now`. It enters BACKUP at once (emitting
    /// `StateChange{Init→Backup}`, `DelVips` and the backup notify), unless it
    /// is the address owner (priority 255), which becomes MASTER on the first
    /// [`handle_timeout`](Self::handle_timeout) (deadline `now`), or a
    /// tracked object with weight 0 is initially down (then FAULT).
    pub fn new(cfg: InstanceConfig, now: Instant) -> Instance {
        let cfg = cfg.normalized();
        let track_up = cfg.tracks.iter().map(|t| t.initially_up).collect();
        let mut inst = Instance {
            effective_priority: cfg.priority,
            master_adver_int: cfg.advert_int,
            state: State::Init,
            master_addr: None,
            master_priority: 0,
            down_timer: None,
            advert_timer: None,
            garp_timer: None,
            garp_refresh_timer: None,
            preempt_time: None,
            track_up,
            iface_up: true,
            group_fault: false,
            last_transition: None,
            sync_pending: None,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            counters: Counters::default(),
            cfg,
        };
        inst.effective_priority = inst.compute_priority();
        if inst.is_faulty() {
            inst.transition(now, State::Fault, Reason::Init);
        } else if inst.cfg.priority == 255 {
            // keepalived: owner's down timer is 1 µs.
            inst.down_timer = Some(now);
        } else {
            inst.enter_backup(now, Reason::Init);
        }
        inst
    }

    /// Continue an instance a predecessor process ran (binary upgrade):
    /// a MASTER stays MASTER and a BACKUP stays BACKUP *without a
    /// transition* — no state-change event, no notify script, no VIP
    /// removal or installation (the VIPs are already on the interface; the
    /// shell renews their lifetime with the next advert), no gratuitous
    /// ARP burst (only the periodic `garp_master_refresh`, counted from
    /// now). A MASTER sends its first advert at once, so the peers hear
    /// adverts at least every advert_int across the handover; a BACKUP
    /// starts its Master_Down timer. Counters go on from `t.counters`.
    /// Any other state starts as [`Instance::new`]. If a tracked object
    /// with weight 0 is down, the usual transition follows from the
    /// taken-over state.
    pub fn take_over(cfg: InstanceConfig, now: Instant, t: &TakeOver) -> Instance {
        if !matches!(t.state, State::Master | State::Backup) {
            let mut inst = Instance::new(cfg, now);
            inst.counters = t.counters.clone();
            return inst;
        }
        let cfg = cfg.normalized();
        let track_up = cfg
            .tracks
            .iter()
            .map(|tc| {
                t.tracks
                    .iter()
                    .find(|(n, _)| *n == tc.name)
                    .map_or(tc.initially_up, |(_, up)| *up)
            })
            .collect();
        let mut inst = Instance {
            effective_priority: cfg.priority,
            master_adver_int: cfg.advert_int,
            state: t.state,
            master_addr: None,
            master_priority: 0,
            down_timer: None,
            advert_timer: None,
            garp_timer: None,
            garp_refresh_timer: None,
            preempt_time: None,
            track_up,
            iface_up: true,
            group_fault: false,
            last_transition: t
                .since_transition
                .map(|d| now.checked_sub(d).unwrap_or(now)),
            sync_pending: None,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            counters: t.counters.clone(),
            cfg,
        };
        inst.effective_priority = inst.compute_priority();
        if t.state == State::Master {
            inst.master_addr = Some(inst.cfg.local_addr);
            inst.send_advert(inst.effective_priority);
            inst.advert_timer = Some(now + inst.cfg.advert_int);
            inst.garp_refresh_timer = inst.cfg.garp_master_refresh.map(|r| now + r);
        } else {
            inst.down_timer = Some(now + inst.master_down_interval());
        }
        // a tracked object that is down now: the usual transition
        inst.reevaluate(now);
        inst
    }

    /// What [`Instance::take_over`] needs to continue this instance in
    /// another process. `now` dates the last transition.
    pub fn take_over_state(&self, now: Instant) -> TakeOver {
        TakeOver {
            state: self.state,
            counters: self.counters.clone(),
            since_transition: self
                .last_transition
                .map(|t| now.saturating_duration_since(t)),
            tracks: self.track_states(),
        }
    }

    fn track_states(&self) -> Vec<(String, bool)> {
        self.cfg
            .tracks
            .iter()
            .zip(&self.track_up)
            .map(|(t, up)| (t.name.clone(), *up))
            .collect()
    }

    /// The configuration (normalised).
    pub fn config(&self) -> &InstanceConfig {
        &self.cfg
    }
    /// Current state.
    pub fn state(&self) -> State {
        self.state
    }
    /// Effective priority.
    pub fn effective_priority(&self) -> u8 {
        self.effective_priority
    }
    /// The master's advert interval as learnt (v3) or configured.
    pub fn master_adver_int(&self) -> Duration {
        self.master_adver_int
    }
    /// Counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }
    /// When the last transition happened.
    pub fn last_transition(&self) -> Option<Instant> {
        self.last_transition
    }

    /// Status snapshot (`last_transition_unix` left `None` for the shell).
    pub fn status(&self) -> InstanceStatus {
        InstanceStatus {
            name: self.cfg.name.clone(),
            interface: self.cfg.interface.clone(),
            vrid: self.cfg.vrid,
            state: self.state,
            base_priority: self.cfg.priority,
            effective_priority: self.effective_priority,
            master_addr: if self.state == State::Master {
                Some(self.cfg.local_addr)
            } else {
                self.master_addr
            },
            master_priority: match self.state {
                State::Master => Some(self.effective_priority),
                State::Backup if self.master_addr.is_some() => Some(self.master_priority),
                _ => None,
            },
            last_transition_unix: None,
            counters: self.counters.clone(),
            tracks: self.track_states(),
        }
    }

    /// Master_Down_Interval for the current master interval and effective priority.
    pub fn master_down_interval(&self) -> Duration {
        self.master_adver_int * self.cfg.down_timer_adverts + self.skew()
    }

    /// Skew time.
    pub fn skew(&self) -> Duration {
        skew(
            self.cfg.version,
            self.effective_priority,
            self.master_adver_int,
        )
    }

    fn is_multicast(&self) -> bool {
        self.cfg.unicast_peers.is_empty()
    }

    fn is_faulty(&self) -> bool {
        self.group_fault
            || !self.iface_up
            || self
                .cfg
                .tracks
                .iter()
                .zip(&self.track_up)
                .any(|(t, &up)| t.weight == 0 && up == t.reverse)
    }

    fn compute_priority(&self) -> u8 {
        if self.cfg.priority == 255 {
            return 255;
        }
        let mut p = i32::from(self.cfg.priority);
        for (t, &up) in self.cfg.tracks.iter().zip(&self.track_up) {
            // `reverse` swaps the sense of the weight.
            let ok = up != t.reverse;
            if (t.weight > 0 && ok) || (t.weight < 0 && !ok) {
                p += t.weight;
            }
        }
        p.clamp(1, 254) as u8
    }

    // ===== inputs =====

    /// Feed one received VRRP message (IP payload). `src`/`dst` are the IP
    /// header addresses, `ttl` the TTL / hop limit. Never panics on any input.
    pub fn handle_packet(
        &mut self,
        now: Instant,
        src: IpAddr,
        dst: IpAddr,
        ttl: u8,
        bytes: &[u8],
    ) -> RxVerdict {
        let verdict = self.check_packet(src, dst, ttl, bytes);
        let repr = match verdict {
            Ok(r) => r,
            Err(reason) => {
                self.count_drop(reason);
                return RxVerdict::Dropped(reason);
            }
        };
        self.counters.adverts_rx += 1;
        if repr.priority == 0 {
            self.counters.prio_zero_rx += 1;
        }
        match self.state {
            State::Backup => self.backup_rx(now, src, &repr),
            State::Master => self.master_rx(now, src, &repr),
            _ => {}
        }
        RxVerdict::Accepted
    }

    /// Count a packet for a VRID no instance on the interface owns.
    pub fn note_wrong_vrid(&mut self) {
        self.counters.wrong_vrid += 1;
    }

    fn count_drop(&mut self, r: DropReason) {
        let c = &mut self.counters;
        match r {
            DropReason::BadTtl(_) => c.bad_ttl += 1,
            DropReason::BadAuth => c.bad_auth += 1,
            DropReason::BadAuthType(_) => c.bad_auth_type += 1,
            DropReason::WrongVrid(_) => c.wrong_vrid += 1,
            DropReason::Packet(packet::Error::BadChecksum) => c.bad_checksum += 1,
            DropReason::Packet(packet::Error::BadType(_)) => c.bad_type += 1,
            DropReason::Packet(packet::Error::BadVersion(_) | packet::Error::BadFamily) => {
                c.bad_version += 1
            }
            DropReason::Packet(packet::Error::Truncated | packet::Error::BadLength { .. }) => {
                c.bad_length += 1
            }
            DropReason::AdverIntMismatch(_) => c.adver_int_mismatch += 1,
            DropReason::AddrList => c.addr_list_mismatch += 1,
            DropReason::NotRunning | DropReason::Own => {}
        }
    }

    fn check_packet(
        &self,
        src: IpAddr,
        dst: IpAddr,
        ttl: u8,
        bytes: &[u8],
    ) -> Result<Repr, DropReason> {
        let pkt = Packet::new_checked(bytes).map_err(DropReason::Packet)?;
        if pkt.vrid() != self.cfg.vrid {
            return Err(DropReason::WrongVrid(pkt.vrid()));
        }
        if src == self.cfg.local_addr {
            return Err(DropReason::Own);
        }
        if self.is_multicast() && ttl != 255 {
            return Err(DropReason::BadTtl(ttl));
        }
        if pkt.version() != self.cfg.version.number() {
            return Err(DropReason::Packet(packet::Error::BadVersion(pkt.version())));
        }
        let repr = Repr::parse(&pkt, src, dst).map_err(DropReason::Packet)?;
        if self.cfg.version == Version::V2 {
            let (want_type, want_data) = match &self.cfg.auth_pass {
                Some(p) => (packet::AUTH_PASS, *p),
                None => (packet::AUTH_NONE, [0; 8]),
            };
            if repr.auth_type != want_type {
                return Err(DropReason::BadAuthType(repr.auth_type));
            }
            if want_type == packet::AUTH_PASS && repr.auth_data != want_data {
                return Err(DropReason::BadAuth);
            }
            let mine = (self.cfg.advert_int.as_millis() / 10) as u16;
            if repr.adver_int_cs != mine {
                return Err(DropReason::AdverIntMismatch(repr.adver_int_cs));
            }
        }
        if !matches!(self.state, State::Backup | State::Master) {
            return Err(DropReason::NotRunning);
        }
        // Address list: skipped in BACKUP for the known master when
        // skip_check_adv_addr; a MASTER always checks. Priority-0 adverts are
        // checked too (keepalived does).
        let skip = self.cfg.skip_check_adv_addr
            && self.state == State::Backup
            && self.master_addr == Some(src);
        if !skip {
            let ours: Vec<IpAddr> = self.cfg.vips.iter().map(|v| v.addr).collect();
            if repr.addrs.len() != ours.len() || repr.addrs.iter().any(|a| !ours.contains(a)) {
                return Err(DropReason::AddrList);
            }
        }
        Ok(repr)
    }

    fn backup_rx(&mut self, now: Instant, src: IpAddr, repr: &Repr) {
        if repr.priority == 0 {
            // Master is stopping: take over after the skew only.
            self.down_timer = Some(now + self.skew());
            return;
        }
        let preempt_pending =
            !self.cfg.preempt_delay.is_zero() && self.preempt_time.is_none_or(|t| t > now);
        if self.cfg.nopreempt
            || self.cfg.preempt_hold
            || repr.priority >= self.effective_priority
            || preempt_pending
        {
            if self.cfg.version == Version::V3 && repr.adver_int_cs > 0 {
                self.master_adver_int = Duration::from_millis(u64::from(repr.adver_int_cs) * 10);
            }
            self.master_priority = repr.priority;
            self.master_addr = Some(src);
            if !self.cfg.preempt_delay.is_zero() {
                if repr.priority > self.effective_priority {
                    self.preempt_time = None;
                } else if self.preempt_time.is_none() {
                    self.preempt_time = Some(now + self.cfg.preempt_delay);
                }
            }
            self.down_timer = Some(now + self.master_down_interval());
        } else {
            // "received lower priority (%d) advert from %s - discarding"
            self.counters.lower_prio_discarded += 1;
        }
    }

    fn master_rx(&mut self, now: Instant, src: IpAddr, repr: &Repr) {
        if repr.priority == 0 {
            // Another router stopped: re-assert at once.
            self.send_advert(self.effective_priority);
            self.advert_timer = Some(now + self.cfg.advert_int);
            return;
        }
        let higher_ip = ip_gt(src, self.cfg.local_addr);
        if repr.priority > self.effective_priority
            || (repr.priority == self.effective_priority && higher_ip)
        {
            if self.cfg.higher_prio_send_advert {
                self.send_advert(self.effective_priority);
            }
            if self.cfg.version == Version::V3 && repr.adver_int_cs > 0 {
                self.master_adver_int = Duration::from_millis(u64::from(repr.adver_int_cs) * 10);
            }
            self.master_addr = Some(src);
            self.master_priority = repr.priority;
            self.leave_master(false);
            self.enter_backup(now, Reason::HigherPriority);
        } else if !self.cfg.lower_prio_no_advert {
            // "Received advert from %s with lower priority %d, ours %d"
            self.send_advert(self.effective_priority);
            self.advert_timer = Some(now + self.cfg.advert_int);
        }
    }

    /// Drive timers. Call when `now >= poll_timeout()` (extra calls are harmless).
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.state {
            State::Init => {
                if self.down_timer.is_some_and(|t| t <= now) {
                    self.down_timer = None;
                    self.enter_master(now, Reason::Owner);
                }
            }
            State::Backup => {
                if self.down_timer.is_some_and(|t| t <= now) {
                    self.down_timer = None;
                    self.enter_master(now, Reason::MasterDown);
                }
            }
            State::Master => {
                if self.advert_timer.is_some_and(|t| t <= now) {
                    self.send_advert(self.effective_priority);
                    self.advert_timer = Some(now + self.cfg.advert_int);
                }
                if self.garp_timer.is_some_and(|t| t <= now) {
                    self.garp_timer = None;
                    self.push_garp(self.cfg.garp_master_repeat);
                }
                if let Some(t) = self.garp_refresh_timer.filter(|t| *t <= now) {
                    self.push_garp(self.cfg.garp_master_refresh_repeat);
                    self.garp_refresh_timer = self.cfg.garp_master_refresh.map(|r| t.max(now) + r);
                }
            }
            State::Fault | State::Stop => {}
        }
    }

    /// Next deadline, if any.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Init | State::Backup => self.down_timer,
            State::Master => [self.advert_timer, self.garp_timer, self.garp_refresh_timer]
                .into_iter()
                .flatten()
                .min(),
            State::Fault | State::Stop => None,
        }
    }

    /// Next packet to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// Next side effect.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Set the state of tracked object `name` (track_interface / track_script /
    /// track_file). Unknown names are ignored (returns false).
    pub fn set_track(&mut self, now: Instant, name: &str, up: bool) -> bool {
        let Some(i) = self.cfg.tracks.iter().position(|t| t.name == name) else {
            return false;
        };
        if self.track_up[i] != up {
            self.track_up[i] = up;
            self.reevaluate(now);
        }
        true
    }

    /// The instance's own interface went down / came back (keepalived tracks
    /// it implicitly: down = FAULT).
    pub fn set_interface_up(&mut self, now: Instant, up: bool) {
        if self.iface_up != up {
            self.iface_up = up;
            self.reevaluate(now);
        }
    }

    /// Sync group fault input: another member is in FAULT.
    pub fn set_group_fault(&mut self, now: Instant, fault: bool) {
        if self.group_fault != fault {
            self.group_fault = fault;
            self.reevaluate(now);
        }
    }

    /// Replace the virtual addresses at run time (e.g. reload), keeping the
    /// state: the next adverts carry the new list. Adding and removing the
    /// addresses on the interface is the shell's job (only a MASTER holds
    /// them).
    pub fn set_vips(&mut self, vips: Vec<crate::VipConfig>) {
        self.cfg.vips = vips;
    }

    /// Hold or release preemption (see `InstanceConfig::preempt_hold`).
    /// Once released, a higher-priority BACKUP preempts when its down
    /// timer next runs out, as if the hold had never been.
    pub fn set_preempt_hold(&mut self, hold: bool) {
        self.cfg.preempt_hold = hold;
    }

    /// Change the base priority at run time (e.g. reload).
    pub fn set_priority(&mut self, now: Instant, prio: u8) {
        self.cfg.priority = prio.max(1);
        self.reevaluate(now);
    }

    fn reevaluate(&mut self, now: Instant) {
        let new = self.compute_priority();
        if new != self.effective_priority {
            self.events.push_back(Event::PriorityChange {
                from: self.effective_priority,
                to: new,
            });
            // In BACKUP the new skew applies from the next accepted advert.
            self.effective_priority = new;
        }
        let faulty = self.is_faulty();
        match (self.state, faulty) {
            (State::Master, true) => {
                self.leave_master(true);
                self.transition(now, State::Fault, Reason::Fault);
            }
            (State::Backup | State::Init, true) => {
                self.down_timer = None;
                self.transition(now, State::Fault, Reason::Fault);
            }
            (State::Fault, false) => {
                if self.cfg.priority == 255 {
                    self.enter_master(now, Reason::FaultCleared);
                } else {
                    self.enter_backup(now, Reason::FaultCleared);
                }
            }
            _ => {}
        }
    }

    /// Sync group: force this member to `to` (MASTER or BACKUP) because another
    /// member moved there.
    pub fn force_state(&mut self, now: Instant, to: State) {
        match (self.state, to) {
            (State::Backup, State::Master) => self.enter_master(now, Reason::SyncGroup),
            (State::Master, State::Backup) => {
                self.leave_master(false);
                self.enter_backup(now, Reason::SyncGroup);
            }
            _ => {}
        }
    }

    /// Sync group bookkeeping: the last MASTER/BACKUP/FAULT transition not yet
    /// propagated (taken once).
    pub fn take_sync_transition(&mut self) -> Option<State> {
        self.sync_pending.take()
    }

    /// Graceful stop: a MASTER sends a priority-0 advert and removes its VIPs.
    pub fn shutdown(&mut self, now: Instant) {
        if self.state == State::Master {
            self.leave_master(true);
        }
        if self.state != State::Stop {
            self.down_timer = None;
            self.transition(now, State::Stop, Reason::Shutdown);
        }
    }

    // ===== transitions =====

    fn transition(&mut self, now: Instant, to: State, reason: Reason) {
        let from = self.state;
        if from == to {
            return;
        }
        self.state = to;
        self.last_transition = Some(now);
        self.events
            .push_back(Event::StateChange { from, to, reason });
        let kind = match to {
            State::Master => Some(NotifyKind::Master),
            State::Backup => Some(NotifyKind::Backup),
            State::Fault => Some(NotifyKind::Fault),
            State::Stop => Some(NotifyKind::Stop),
            State::Init => None,
        };
        if let Some(kind) = kind {
            self.events.push_back(Event::RunNotify {
                kind,
                priority: self.effective_priority,
            });
        }
        if reason != Reason::SyncGroup && matches!(to, State::Master | State::Backup | State::Fault)
        {
            self.sync_pending = Some(to);
        }
    }

    fn enter_backup(&mut self, now: Instant, reason: Reason) {
        let from_init = self.state == State::Init;
        self.advert_timer = None;
        self.garp_timer = None;
        self.garp_refresh_timer = None;
        self.preempt_time = None;
        // Keep the interval learnt from the advert that demoted us (v3).
        if !(self.state == State::Master && reason == Reason::HigherPriority) {
            self.master_adver_int = self.cfg.advert_int;
        }
        self.down_timer = Some(now + self.master_down_interval());
        self.transition(now, State::Backup, reason);
        if from_init {
            // Make sure no stale VIP of ours is left from an earlier run.
            self.events.push_back(Event::DelVips);
        }
    }

    fn enter_master(&mut self, now: Instant, reason: Reason) {
        self.down_timer = None;
        self.preempt_time = None;
        self.master_adver_int = self.cfg.advert_int;
        self.master_addr = Some(self.cfg.local_addr);
        // keepalived: first advert, then VIPs, then GARPs.
        self.send_advert(self.effective_priority);
        self.advert_timer = Some(now + self.cfg.advert_int);
        self.counters.became_master += 1;
        self.transition(now, State::Master, reason);
        self.events.push_back(Event::AddVips);
        self.push_garp(self.cfg.garp_master_repeat);
        self.garp_timer =
            (!self.cfg.garp_master_delay.is_zero()).then(|| now + self.cfg.garp_master_delay);
        self.garp_refresh_timer = self.cfg.garp_master_refresh.map(|r| now + r);
    }

    /// Leave MASTER: optional priority-0 advert, VIP removal.
    fn leave_master(&mut self, send_prio0: bool) {
        if send_prio0 {
            self.send_advert(0);
        }
        self.advert_timer = None;
        self.garp_timer = None;
        self.garp_refresh_timer = None;
        self.counters.released_master += 1;
        self.events.push_back(Event::DelVips);
    }

    fn push_garp(&mut self, repeat: u32) {
        if repeat == 0 || self.cfg.vips.is_empty() {
            return;
        }
        self.events.push_back(Event::SendGarp {
            addrs: self.cfg.vips.iter().map(|v| v.addr).collect(),
            repeat,
        });
    }

    fn send_advert(&mut self, priority: u8) {
        let (auth_type, auth_data) = match (&self.cfg.auth_pass, self.cfg.version) {
            (Some(p), Version::V2) => (packet::AUTH_PASS, *p),
            _ => (packet::AUTH_NONE, [0; 8]),
        };
        let repr = Repr {
            version: self.cfg.version,
            vrid: self.cfg.vrid,
            priority,
            adver_int_cs: (self.cfg.advert_int.as_millis() / 10) as u16,
            auth_type,
            auth_data,
            addrs: self.cfg.vips.iter().map(|v| v.addr).collect(),
        };
        let src = self.cfg.local_addr;
        let dsts: Vec<IpAddr> = if self.cfg.unicast_peers.is_empty() {
            vec![match src {
                IpAddr::V4(_) => IpAddr::V4(packet::MCAST_GROUP_V4),
                IpAddr::V6(_) => IpAddr::V6(packet::MCAST_GROUP_V6),
            }]
        } else {
            self.cfg.unicast_peers.clone()
        };
        for dst in dsts {
            self.transmits.push_back(Transmit {
                src,
                dst,
                priority,
                payload: repr.to_bytes(src, dst),
            });
        }
        self.counters.adverts_tx += 1;
        if priority == 0 {
            self.counters.prio_zero_tx += 1;
        }
    }
}

fn ip_gt(a: IpAddr, b: IpAddr) -> bool {
    match (a, b) {
        (IpAddr::V4(a), IpAddr::V4(b)) => a > b,
        (IpAddr::V6(a), IpAddr::V6(b)) => a > b,
        _ => false,
    }
}

/// Sync groups: members move together; one FAULT puts all in FAULT.
///
/// Call [`reconcile`] after feeding inputs to the instances of a group (the
/// shell and the test harness do it after every step). `members` are indices
/// into `instances`.
pub fn reconcile<I: BorrowMut<Instance>>(now: Instant, instances: &mut [I], members: &[usize]) {
    let mut moved: Option<(usize, State)> = None;
    for &i in members {
        if let Some(s) = instances
            .get_mut(i)
            .and_then(|x| x.borrow_mut().take_sync_transition())
        {
            moved = Some((i, s));
        }
    }
    let any_fault = members.iter().any(|&i| {
        instances
            .get(i)
            .map(|x| x.borrow())
            .is_some_and(|x| x.state == State::Fault && !x.group_fault)
    });
    for &i in members {
        if let Some(inst) = instances.get_mut(i).map(|x| x.borrow_mut()) {
            let own_fault = inst.state == State::Fault && !inst.group_fault;
            inst.set_group_fault(now, any_fault && !own_fault);
        }
    }
    if any_fault {
        for &i in members {
            if let Some(x) = instances.get_mut(i).map(|x| x.borrow_mut()) {
                x.sync_pending = None;
            }
        }
        return;
    }
    if let Some((src, to @ (State::Master | State::Backup))) = moved {
        for &i in members {
            if i != src {
                if let Some(x) = instances.get_mut(i).map(|x| x.borrow_mut()) {
                    x.force_state(now, to);
                    x.sync_pending = None;
                }
            }
        }
    }
}
