//! Reload (keepalived's SIGHUP path): real servers and checkers that survive
//! keep their state.

use std::time::Instant;

use super::checker::Checker;
use super::virtual_server::{fresh_rs, fresh_sorry, VirtualServer};
use super::{real_weight, Action, ScriptReason};
use crate::config::{CheckerConfig, VirtualServerConfig};

/// keepalived's per-type `compare()`: the same checker across a reload.
fn same_checker(a: &CheckerConfig, b: &CheckerConfig) -> bool {
    a.kind == b.kind
        && a.connect == b.connect
        && a.bind == b.bind
        && a.bind_if == b.bind_if
        && a.fwmark == b.fwmark
}

/// A checker of the new configuration taking over the state of an old one
/// (ipwrapper.c `migrate_checkers`).
fn migrate_checker(new: &mut Checker, old: &Checker, now: Instant) {
    if old.has_run {
        new.is_up = old.is_up;
    }
    new.has_run = old.has_run;
    new.retry_it = 0;
    if old.retry_it > 0 && new.cfg.retry > 0 {
        new.retry_it = if old.retry_it >= new.cfg.retry {
            new.cfg.retry - 1
        } else {
            old.retry_it
        };
    }
    new.next = if old.in_flight { Some(now) } else { old.next };
    new.next_is_loop_start = old.next_is_loop_start;
    new.last_exit_code = old.last_exit_code;
    new.last_error = old.last_error.clone();
    new.last_transition = old.last_transition;
    new.counters = old.counters.clone();
    new.enabled = old.enabled;
}

impl VirtualServer {
    /// Apply a new configuration of the same virtual server without flapping
    /// (keepalived's SIGHUP path, `clear_diff_rs` / `migrate_checkers`):
    /// real servers are matched by address, checkers by type and connection
    /// options; matched ones keep their state (alive, in-table, dynamic weight,
    /// up/down, retry counter). Removed real servers are deleted from the
    /// table ("service ... no longer exist"); new ones start as at start-up,
    /// except that a new checker on a real server with failures starts down.
    /// Probes in flight are forgotten (the caller drops them) and re-run.
    pub fn reload(&mut self, cfg: VirtualServerConfig, now: Instant, seed: u64) {
        let mut rng = seed;
        let proto = cfg.protocol;
        self.stopped = false;
        self.name = cfg.name.clone();
        self.quorum = cfg.quorum;
        self.hysteresis = cfg.hysteresis;
        self.quorum_up_script = cfg.quorum_up.clone();
        self.quorum_down_script = cfg.quorum_down.clone();
        self.omega = cfg.omega;
        self.probes.clear();
        let old_rss = std::mem::take(&mut self.rss);
        for old in &old_rss {
            if cfg.real_servers.iter().any(|r| r.addr == old.cfg.addr) {
                continue;
            }
            let text = format!("service {} no longer exist", old.name);
            self.log(text);
            if old.set {
                let text = format!(
                    "Removing {}service {} from VS {}",
                    if old.cfg.inhibit_on_failure && !old.alive {
                        "(inhibited) "
                    } else {
                        ""
                    },
                    old.name,
                    self.name
                );
                self.log(text);
                self.actions
                    .push_back(Action::RemoveDest { rs: old.cfg.addr });
            }
            if old.alive {
                if let Some(script) = old.cfg.notify_down.clone() {
                    self.actions.push_back(Action::RunScript {
                        script,
                        reason: ScriptReason::NotifyDown,
                    });
                }
            }
        }
        let mut new_rss = Vec::with_capacity(cfg.real_servers.len());
        let mut reloaded = Vec::with_capacity(cfg.real_servers.len());
        for rc in &cfg.real_servers {
            let mut rs = fresh_rs(rc, proto, now, &mut rng);
            let Some(old) = old_rss.iter().find(|o| o.cfg.addr == rc.addr) else {
                new_rss.push(rs);
                reloaded.push(false);
                continue;
            };
            rs.alive = old.alive;
            rs.set = old.set;
            rs.last_transition = old.last_transition;
            // keep a dynamic weight, follow a configured weight change
            rs.effective_weight = if old.effective_weight == old.cfg.weight as i64 {
                rc.weight as i64
            } else {
                old.effective_weight
            };
            let mut used = vec![false; old.checkers.len()];
            for c in rs.checkers.iter_mut() {
                // new checkers on a reloaded server are not preset
                c.retry_it = 0;
                if let Some(j) = (0..old.checkers.len())
                    .find(|&j| !used[j] && same_checker(&old.checkers[j].cfg, &c.cfg))
                {
                    used[j] = true;
                    migrate_checker(c, &old.checkers[j], now);
                } else {
                    c.is_up = true;
                }
            }
            let failed = rs.checkers.iter().filter(|c| c.has_run && !c.is_up).count() as u32;
            let any_run = rs.checkers.iter().any(|c| c.has_run);
            rs.num_failed_checkers = failed;
            if failed > 0 || (!rs.alive && !any_run) {
                for c in rs.checkers.iter_mut().filter(|c| !c.has_run) {
                    if c.cfg.alpha {
                        c.is_up = false;
                        rs.num_failed_checkers += 1;
                    }
                    c.retry_it = c.cfg.retry;
                }
            }
            let old_weight = real_weight(old.effective_weight);
            new_rss.push(rs);
            reloaded.push(true);
            let i = new_rss.len() - 1;
            let rs = &new_rss[i];
            if rs.alive && rs.set && real_weight(rs.effective_weight) != old_weight {
                let (addr, weight) = (rs.cfg.addr, real_weight(rs.effective_weight));
                self.actions
                    .push_back(Action::SetWeight { rs: addr, weight });
            }
        }
        self.rss = new_rss;
        for (i, was_reloaded) in reloaded.iter().enumerate() {
            let rs = &self.rss[i];
            if *was_reloaded {
                if rs.num_failed_checkers == 0 && !rs.alive {
                    self.perform_svr_state(i, true, now);
                } else if rs.num_failed_checkers > 0 && rs.set != rs.cfg.inhibit_on_failure {
                    if rs.cfg.inhibit_on_failure {
                        self.ipvs_add(i);
                    } else {
                        self.ipvs_del(i);
                    }
                }
            } else {
                self.init_service_rs(i, now);
            }
        }
        // sorry server
        let old_sorry = self.sorry.take();
        let mut sorry = fresh_sorry(&cfg);
        if let Some(old) = old_sorry {
            match sorry.as_mut() {
                Some(new) if new.addr == old.addr => {
                    new.alive = old.alive;
                    new.set = old.set;
                }
                _ => {
                    if old.alive || old.set {
                        let text =
                            format!("Removing sorry server {} from VS {}", old.name, self.name);
                        self.log(text);
                        self.actions
                            .push_back(Action::RemoveSorry { addr: old.addr });
                    }
                }
            }
        }
        self.sorry = sorry;
        self.init_quorum();
        if self.suspended {
            self.set_suspended(true);
        }
    }
}
