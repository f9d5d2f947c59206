//! keepalived's `ipwrapper.c`: a real server is alive when all its checkers
//! are up; inhibit_on_failure, dynamic weights, quorum with hysteresis, the
//! sorry server and the notify scripts.

use std::time::Instant;

use super::virtual_server::VirtualServer;
use super::{real_weight, Action, ScriptReason};

impl VirtualServer {
    pub(super) fn weigh_live(&self) -> i64 {
        self.rss
            .iter()
            .filter(|r| r.alive)
            .map(|r| real_weight(r.effective_weight) as i64)
            .sum()
    }

    pub(super) fn log(&mut self, text: String) {
        self.actions.push_back(Action::Log { text });
    }

    /// ipvs_cmd(LVS_CMD_ADD_DEST, rs)
    pub(super) fn ipvs_add(&mut self, i: usize) {
        let rs = &mut self.rss[i];
        let addr = rs.cfg.addr;
        if rs.cfg.inhibit_on_failure && rs.set {
            let weight = real_weight(rs.effective_weight);
            self.actions
                .push_back(Action::SetWeight { rs: addr, weight });
        } else {
            let weight = if !rs.set && rs.cfg.inhibit_on_failure && rs.num_failed_checkers > 0 {
                0
            } else {
                real_weight(rs.effective_weight)
            };
            rs.set = true;
            self.actions.push_back(Action::AddDest { rs: addr, weight });
        }
    }

    /// ipvs_cmd(LVS_CMD_DEL_DEST, rs)
    pub(super) fn ipvs_del(&mut self, i: usize) {
        let rs = &mut self.rss[i];
        let addr = rs.cfg.addr;
        if rs.cfg.inhibit_on_failure {
            self.actions.push_back(Action::SetWeight {
                rs: addr,
                weight: 0,
            });
        } else if rs.set {
            rs.set = false;
            self.actions.push_back(Action::RemoveDest { rs: addr });
        }
    }

    pub(super) fn do_rs_notifies(&mut self, i: usize) {
        let rs = &self.rss[i];
        let (script, reason) = if rs.alive {
            (rs.cfg.notify_up.clone(), ScriptReason::NotifyUp)
        } else {
            (rs.cfg.notify_down.clone(), ScriptReason::NotifyDown)
        };
        if let Some(script) = script {
            self.actions.push_back(Action::RunScript { script, reason });
        }
    }

    fn do_vs_notifies(&mut self) {
        let (script, reason) = if self.quorum_state_up {
            (self.quorum_up_script.clone(), ScriptReason::QuorumUp)
        } else {
            (self.quorum_down_script.clone(), ScriptReason::QuorumDown)
        };
        if let Some(script) = script {
            self.actions.push_back(Action::RunScript { script, reason });
        }
    }

    fn sorry_alive(&self) -> bool {
        self.sorry.as_ref().is_some_and(|s| s.alive)
    }

    fn perform_quorum_state(&mut self, add: bool) {
        let text = format!(
            "{} the pool for VS {}",
            if add {
                "Adding alive servers to"
            } else {
                "Removing alive servers from"
            },
            self.name
        );
        self.log(text);
        for i in 0..self.rss.len() {
            if !self.rss[i].alive {
                continue;
            }
            if add {
                self.ipvs_add(i);
            } else {
                self.ipvs_del(i);
            }
        }
    }

    pub(super) fn update_quorum_state(&mut self, init: bool) {
        let weight_sum = self.weigh_live();
        let q = self.quorum as i64;
        let h = self.hysteresis as i64;
        let threshold = q + if self.quorum_state_up { -h } else { h };
        if !self.quorum_state_up && weight_sum >= threshold {
            self.quorum_state_up = true;
            let text = format!(
                "Gained quorum {}+{}={} <= {} for VS {}",
                self.quorum, self.hysteresis, threshold, weight_sum, self.name
            );
            self.log(text);
            if self.sorry_alive() {
                if let Some(s) = self.sorry.as_mut() {
                    let text = format!(
                        "{} sorry server {} from VS {}",
                        if s.inhibit { "Disabling" } else { "Removing" },
                        s.name,
                        self.name
                    );
                    let addr = s.addr;
                    let act = if s.inhibit {
                        Action::SetSorryWeight { addr, weight: 0 }
                    } else {
                        s.set = false;
                        Action::RemoveSorry { addr }
                    };
                    s.alive = false;
                    self.log(text);
                    self.actions.push_back(act);
                }
                self.perform_quorum_state(true);
            }
            self.do_vs_notifies();
        } else if (self.quorum_state_up && (weight_sum == 0 || weight_sum < threshold))
            || (init && !self.quorum_state_up && self.sorry.is_some() && !self.sorry_alive())
        {
            self.quorum_state_up = false;
            let text = format!(
                "{} {}-{}={} > {} for VS {}",
                if init {
                    "Starting with quorum down"
                } else {
                    "Lost quorum"
                },
                self.quorum,
                self.hysteresis,
                threshold,
                weight_sum,
                self.name
            );
            self.log(text);
            if self.sorry.is_some() && !self.sorry_alive() {
                let (text, addr, inhibit, set, weight) = {
                    let s = self.sorry.as_ref().expect("checked above");
                    (
                        format!(
                            "{} sorry server {} to VS {}",
                            if s.inhibit { "Enabling" } else { "Adding" },
                            s.name,
                            self.name
                        ),
                        s.addr,
                        s.inhibit,
                        s.set,
                        s.weight,
                    )
                };
                self.log(text);
                self.perform_quorum_state(false);
                let act = if inhibit && set {
                    Action::SetSorryWeight { addr, weight }
                } else {
                    Action::AddSorry { addr, weight }
                };
                self.actions.push_back(act);
                if let Some(s) = self.sorry.as_mut() {
                    s.set = true;
                    s.alive = true;
                }
            }
            self.do_vs_notifies();
        }
    }

    pub(super) fn perform_svr_state(&mut self, i: usize, alive: bool, now: Instant) {
        if self.rss[i].alive == alive {
            return;
        }
        let inhibit = self.rss[i].cfg.inhibit_on_failure;
        let text = format!(
            "{}ing service {} {} VS {}",
            match (alive, inhibit) {
                (true, true) => "Enabl",
                (true, false) => "Add",
                (false, true) => "Disabl",
                (false, false) => "Remov",
            },
            self.rss[i].name,
            if inhibit {
                "of"
            } else if alive {
                "to"
            } else {
                "from"
            },
            self.name
        );
        self.log(text);
        if self.quorum_state_up || self.sorry.is_none() || !self.sorry_alive() {
            if alive {
                self.ipvs_add(i);
            } else {
                self.ipvs_del(i);
            }
        }
        self.rss[i].alive = alive;
        self.rss[i].last_transition = Some(now);
        self.do_rs_notifies(i);
        self.update_quorum_state(false);
    }

    pub(super) fn update_svr_checker_state(
        &mut self,
        i: usize,
        alive: bool,
        was_up: bool,
        had_run: bool,
        alpha: bool,
        now: Instant,
    ) {
        if was_up == alive {
            if !had_run && (alpha || !alive) {
                self.do_rs_notifies(i);
            }
            return;
        }
        if alive {
            if self.rss[i].num_failed_checkers <= 1 {
                self.perform_svr_state(i, true, now);
            }
        } else if self.rss[i].num_failed_checkers == 0 {
            self.perform_svr_state(i, false, now);
        }
        let rs = &mut self.rss[i];
        if !alive {
            rs.num_failed_checkers += 1;
        } else if rs.num_failed_checkers > 0 {
            rs.num_failed_checkers -= 1;
        }
    }

    pub(super) fn update_svr_wgt(&mut self, i: usize, weight: i64, update_quorum: bool) {
        let new_weight = real_weight(weight);
        let old_weight = real_weight(self.rss[i].effective_weight);
        self.rss[i].effective_weight = weight;
        if new_weight == old_weight {
            return;
        }
        let text = format!(
            "Changing weight from {} to {} for {}active service {} of VS {}",
            old_weight,
            new_weight,
            if self.rss[i].alive { "" } else { "in" },
            self.rss[i].name,
            self.name
        );
        self.log(text);
        if self.rss[i].set
            && self.rss[i].alive
            && (self.quorum_state_up || self.sorry.is_none() || !self.sorry_alive())
        {
            let rs = self.rss[i].cfg.addr;
            self.actions.push_back(Action::SetWeight {
                rs,
                weight: new_weight,
            });
        }
        if update_quorum {
            self.update_quorum_state(false);
        }
    }
}
