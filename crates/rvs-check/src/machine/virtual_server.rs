//! A virtual server: its real servers and their checkers, start-up
//! (`init_service_vs`), timers, results and shutdown. What a result does to
//! the pool is in `ipwrapper.rs`; reloads in `reload.rs`.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::status::VirtualServerStatus;
use super::{Action, Checker, CheckerId, Probe, ProbeResult, ScriptReason};
use crate::config::{
    fmt_trio, CheckKind, CheckerConfig, Protocol, RealServerConfig, ScriptConfig,
    VirtualServerConfig,
};

#[derive(Debug, Clone)]
pub(super) struct RsState {
    pub(super) cfg: RealServerConfig,
    pub(super) name: String,
    pub(super) alive: bool,
    pub(super) set: bool,
    pub(super) effective_weight: i64,
    pub(super) num_failed_checkers: u32,
    pub(super) checkers: Vec<Checker>,
    pub(super) last_transition: Option<Instant>,
}

#[derive(Debug, Clone)]
pub(super) struct SorryState {
    pub(super) addr: SocketAddr,
    pub(super) name: String,
    pub(super) alive: bool,
    pub(super) set: bool,
    pub(super) inhibit: bool,
    pub(super) weight: u32,
}

/// A tiny deterministic PRNG (splitmix64) for warmup jitter.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn warmup_delay(cc: &CheckerConfig, rng: &mut u64) -> Duration {
    let warm = cc.warmup.unwrap_or(cc.delay_loop);
    if warm.is_zero() {
        Duration::ZERO
    } else {
        let nanos = warm.as_nanos().min(u64::MAX as u128) as u64;
        Duration::from_nanos(splitmix(rng) % nanos.saturating_add(1))
    }
}

pub(super) fn fresh_rs(
    rc: &RealServerConfig,
    proto: Protocol,
    now: Instant,
    rng: &mut u64,
) -> RsState {
    let checkers: Vec<Checker> = rc
        .checkers
        .iter()
        .map(|cc| {
            Checker::new(
                cc.clone(),
                rc.addr,
                proto,
                rc.weight,
                now,
                warmup_delay(cc, rng),
            )
        })
        .collect();
    let failed = checkers.iter().filter(|c| !c.is_up()).count() as u32;
    RsState {
        name: fmt_trio(rc.addr, proto),
        alive: false,
        set: false,
        effective_weight: rc.weight as i64,
        num_failed_checkers: failed,
        checkers,
        cfg: rc.clone(),
        last_transition: None,
    }
}

/// The sorry server of `cfg`, not yet in the table.
pub(super) fn fresh_sorry(cfg: &VirtualServerConfig) -> Option<SorryState> {
    cfg.sorry_server.map(|addr| SorryState {
        addr,
        name: fmt_trio(addr, cfg.protocol),
        alive: false,
        set: false,
        inhibit: cfg.sorry_server_inhibit,
        weight: cfg.sorry_server_weight,
    })
}

/// A virtual server with its real servers and checkers.
#[derive(Debug, Clone)]
pub struct VirtualServer {
    pub(super) name: String,
    pub(super) quorum: u32,
    pub(super) hysteresis: u32,
    pub(super) quorum_up_script: Option<ScriptConfig>,
    pub(super) quorum_down_script: Option<ScriptConfig>,
    pub(super) omega: bool,
    pub(super) quorum_state_up: bool,
    pub(super) rss: Vec<RsState>,
    pub(super) sorry: Option<SorryState>,
    pub(super) actions: VecDeque<Action>,
    pub(super) probes: VecDeque<Probe>,
    pub(super) suspended: bool,
    pub(super) stopped: bool,
}

impl VirtualServer {
    /// Build the machine and perform keepalived's start-up (`init_service_vs`):
    /// real servers without alpha checkers are added, alpha ones wait for their
    /// first success (inhibit_on_failure ones are added at weight 0), then the
    /// quorum is evaluated (sorry server, quorum_up/quorum_down).
    ///
    /// `seed` drives the random warmup delays (pass a random value in
    /// production, a constant in tests).
    pub fn new(cfg: VirtualServerConfig, now: Instant, seed: u64) -> Self {
        let mut rng = seed;
        let proto = cfg.protocol;
        let rss = cfg
            .real_servers
            .iter()
            .map(|rc| fresh_rs(rc, proto, now, &mut rng))
            .collect();
        let sorry = fresh_sorry(&cfg);
        let mut vs = VirtualServer {
            name: cfg.name.clone(),
            quorum: cfg.quorum,
            hysteresis: cfg.hysteresis,
            quorum_up_script: cfg.quorum_up.clone(),
            quorum_down_script: cfg.quorum_down.clone(),
            omega: cfg.omega,
            quorum_state_up: false,
            rss,
            sorry,
            actions: VecDeque::new(),
            probes: VecDeque::new(),
            suspended: false,
            stopped: false,
        };
        // set_quorum_states(): computed before init, when nothing is alive yet.
        vs.quorum_state_up = vs.weigh_live() >= vs.quorum as i64 + vs.hysteresis as i64;
        for i in 0..vs.rss.len() {
            vs.init_service_rs(i, now);
        }
        vs.init_quorum();
        vs
    }

    /// keepalived's `init_service_rs` for real server `i`: add it unless a
    /// checker is down (then add it at weight 0 with inhibit_on_failure).
    pub(super) fn init_service_rs(&mut self, i: usize, now: Instant) {
        let rs = &self.rss[i];
        if (rs.num_failed_checkers == 0 && !rs.alive) || (rs.cfg.inhibit_on_failure && !rs.set) {
            self.ipvs_add(i);
            if self.rss[i].num_failed_checkers == 0 {
                self.rss[i].alive = true;
                self.rss[i].last_transition = Some(now);
            }
        }
    }

    /// Evaluate the quorum at start-up (or after a reload), then add a
    /// `sorry_server_inhibit` sorry server at weight 0 if it is not in the
    /// table yet.
    pub(super) fn init_quorum(&mut self) {
        self.update_quorum_state(true);
        if let Some(s) = self.sorry.as_mut() {
            if s.inhibit && !s.set {
                s.set = true;
                let addr = s.addr;
                self.actions.push_back(Action::AddSorry { addr, weight: 0 });
            }
        }
    }

    /// keepalived name of the virtual server.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Is the quorum up?
    pub fn quorum_up(&self) -> bool {
        self.quorum_state_up
    }

    /// Is real server `rs` alive?
    pub fn rs_alive(&self, rs: usize) -> Option<bool> {
        self.rss.get(rs).map(|r| r.alive)
    }

    /// The checker `id`.
    pub fn checker(&self, id: CheckerId) -> Option<&Checker> {
        self.rss.get(id.rs)?.checkers.get(id.checker)
    }

    /// Next action to apply, in order.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// Next probe to start (after [`VirtualServer::handle_timeout`]).
    pub fn poll_probe(&mut self) -> Option<Probe> {
        self.probes.pop_front()
    }

    /// Earliest instant at which [`VirtualServer::handle_timeout`] has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.stopped {
            return None;
        }
        self.rss
            .iter()
            .flat_map(|r| r.checkers.iter())
            .filter_map(|c| c.poll_timeout())
            .min()
    }

    /// Fire due timers: queues [`Probe`]s for [`VirtualServer::poll_probe`].
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.stopped {
            return;
        }
        let mut immediate = Vec::new();
        for (ri, rs) in self.rss.iter_mut().enumerate() {
            for (ci, c) in rs.checkers.iter_mut().enumerate() {
                if let Some(mut p) = c.handle_timeout(now) {
                    p.id = CheckerId {
                        rs: ri,
                        checker: ci,
                    };
                    let http_without_urls =
                        matches!(c.config().kind, CheckKind::Http(_) | CheckKind::Ssl(_))
                            && p.url_index.is_none();
                    if http_without_urls {
                        immediate.push(p.id);
                    } else {
                        self.probes.push_back(p);
                    }
                }
            }
        }
        for id in immediate {
            self.handle_result(now, id, &ProbeResult::success());
        }
    }

    /// Suspend or resume all checkers (ha_suspend: the caller suspends while the
    /// VIP is not configured locally).
    pub fn set_suspended(&mut self, suspended: bool) {
        self.suspended = suspended;
        for rs in &mut self.rss {
            for c in &mut rs.checkers {
                c.set_enabled(!suspended);
            }
        }
    }

    /// Feed a probe result.
    pub fn handle_result(&mut self, now: Instant, id: CheckerId, res: &ProbeResult) {
        if self.stopped {
            return;
        }
        let Some(c) = self
            .rss
            .get_mut(id.rs)
            .and_then(|r| r.checkers.get_mut(id.checker))
        else {
            return;
        };
        let alpha = c.config().alpha;
        let upd = c.handle_result(now, res);
        for l in upd.logs {
            let text = l.replace("{VS}", &self.name);
            self.actions.push_back(Action::Log { text });
        }
        if let Some(w) = upd.weight {
            self.update_svr_wgt(id.rs, w, true);
        }
        if let Some(alive) = upd.report {
            self.update_svr_checker_state(id.rs, alive, upd.was_up, upd.had_run, alpha, now);
        }
    }

    /// Continue a virtual server whose checks another process ran (a
    /// binary upgrade of the daemon), from that process's
    /// [`VirtualServer::status`]: real servers keep their alive and
    /// in-table state, weight, and checker states (up, has run, retry
    /// counter, counters; checkers matched by position, type and connect
    /// address), the quorum and the sorry server theirs. Nothing is added,
    /// removed or re-weighted (the table already holds what `prev`
    /// describes) unless `cfg` differs from the predecessor's
    /// configuration, which is then applied as [`VirtualServer::reload`]
    /// does. Checkers probe again after their warmup delay: a real server
    /// neither flaps nor waits for a whole check cycle.
    pub fn take_over(
        cfg: VirtualServerConfig,
        prev: &VirtualServerStatus,
        now: Instant,
        seed: u64,
    ) -> Self {
        let ago = |s: Option<f64>| {
            s.and_then(|s| Duration::try_from_secs_f64(s).ok())
                .and_then(|d| now.checked_sub(d))
        };
        // the predecessor's machine, rebuilt from its status...
        let mut old_cfg = cfg.clone();
        old_cfg
            .real_servers
            .retain(|r| prev.real_servers.iter().any(|p| p.addr == r.addr));
        for p in &prev.real_servers {
            if !old_cfg.real_servers.iter().any(|r| r.addr == p.addr) {
                let mut r = RealServerConfig::new(p.addr);
                r.weight = p.weight;
                old_cfg.real_servers.push(r);
            }
        }
        let mut vs = VirtualServer::new(old_cfg, now, seed);
        vs.actions.clear();
        for rs in vs.rss.iter_mut() {
            let Some(p) = prev.real_servers.iter().find(|p| p.addr == rs.cfg.addr) else {
                continue;
            };
            rs.alive = p.alive;
            rs.set = p.in_table;
            rs.effective_weight = i64::from(p.weight);
            rs.last_transition = ago(p.last_transition_secs_ago);
            for (c, pc) in rs.checkers.iter_mut().zip(&p.checkers) {
                if pc.kind != c.cfg.kind.name() || pc.connect != c.cfg.connect {
                    continue;
                }
                c.is_up = pc.up;
                c.has_run = pc.has_run;
                c.retry_it = pc.retry_it;
                c.last_error = pc.last_error.clone();
                c.last_transition = ago(pc.last_transition_secs_ago);
                c.counters = pc.counters.clone();
            }
            rs.num_failed_checkers = rs.checkers.iter().filter(|c| !c.is_up).count() as u32;
        }
        if let Some(s) = vs.sorry.as_mut() {
            s.alive = prev.sorry_active;
            s.set = prev.sorry_active || s.inhibit;
        }
        vs.quorum_state_up = prev.quorum_up;
        // ...then this process's configuration, as a reload
        vs.reload(cfg, now, seed);
        vs
    }

    /// Shut down (keepalived `clear_service_vs(stopping)`): remove every
    /// destination, and with `omega` run notify_down / quorum_down.
    pub fn shutdown(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        if let Some(s) = self.sorry.as_mut() {
            if s.set {
                s.set = false;
                s.alive = false;
                let addr = s.addr;
                self.actions.push_back(Action::RemoveSorry { addr });
            }
        }
        for i in 0..self.rss.len() {
            let rs = &self.rss[i];
            let inhibited = rs.cfg.inhibit_on_failure && !rs.alive;
            let text = format!(
                "Shutting down {}service {} from VS {}",
                if inhibited { "(inhibited) " } else { "" },
                rs.name,
                self.name
            );
            self.actions.push_back(Action::Log { text });
            if !self.rss[i].set {
                continue;
            }
            self.rss[i].set = false;
            let addr = self.rss[i].cfg.addr;
            self.actions.push_back(Action::RemoveDest { rs: addr });
            if !self.rss[i].alive {
                continue;
            }
            self.rss[i].alive = false;
            if self.omega {
                self.do_rs_notifies(i);
            }
        }
        // update_vs_notifies(stopping)
        self.quorum_state_up = false;
        if self.omega {
            if let Some(s) = self.quorum_down_script.clone() {
                self.actions.push_back(Action::RunScript {
                    script: s,
                    reason: ScriptReason::QuorumDown,
                });
            }
        }
    }
}
