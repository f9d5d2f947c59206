//! One checker's state machine: when to probe, counters, and the entry point
//! for results (the per-type retry schemes are in `retry.rs`).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::{CheckerId, Probe, ProbeResult, IPVS_WEIGHT_FAULT};
use crate::config::{fmt_trio, CheckKind, CheckerConfig, HttpCheck, Protocol};

/// What a [`Checker`] tells its real server after a result.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CheckerUpdate {
    /// keepalived called `update_svr_checker_state(alive)`: `Some(alive)`.
    pub report: Option<bool>,
    /// `is_up` before the report.
    pub was_up: bool,
    /// `has_run` before the report.
    pub had_run: bool,
    /// keepalived called `update_svr_wgt(weight)` (MISC_CHECK misc_dynamic, FILE_CHECK weight).
    pub weight: Option<i64>,
    /// keepalived log lines.
    pub logs: Vec<String>,
}

/// Which keepalived retry scheme a checker type uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Scheme {
    /// TCP_CHECK (tcp_epilog 2.2.7): retries whether up or down.
    Burst,
    /// SMTP_CHECK: like Burst, retry counter reset at every delay_loop start.
    BurstResetEachLoop,
    /// UDP/DNS/PING/FILE: failures only count while up (or before first run).
    UpOnly,
    /// MISC_CHECK: UpOnly, next run timed from the script's start.
    Misc,
    /// HTTP_GET/SSL_GET: per-url iteration (check_http.c epilog).
    Http,
}

/// Counters and last error of a checker, for the status API.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CheckerCounters {
    /// Probes started.
    pub probes: u64,
    /// Successful probes.
    pub successes: u64,
    /// Failed probes.
    pub failures: u64,
    /// up<->down transitions.
    pub transitions: u64,
}

/// One checker's state machine.
#[derive(Debug, Clone)]
pub struct Checker {
    pub(super) cfg: CheckerConfig,
    pub(super) scheme: Scheme,
    /// Text used in logs: `FMT_CHK` = `[ip]:proto:port` of the real server.
    pub(super) label: String,
    pub(super) rs_weight: u32,
    pub(super) is_up: bool,
    pub(super) has_run: bool,
    pub(super) retry_it: u32,
    pub(super) next: Option<Instant>,
    pub(super) next_is_loop_start: bool,
    pub(super) in_flight: bool,
    pub(super) started_at: Option<Instant>,
    pub(super) enabled: bool,
    // HTTP
    pub(super) url_it: Option<usize>,
    pub(super) failed_url: Option<usize>,
    // MISC
    pub(super) last_exit_code: i32,
    // status
    pub(super) last_error: Option<String>,
    pub(super) last_transition: Option<Instant>,
    pub(super) counters: CheckerCounters,
}

impl Checker {
    /// Create a checker of the real server `rs_addr` (weight `rs_weight`) of a
    /// virtual server of protocol `proto`. `warmup_delay` is the
    /// already-randomised delay of the first probe from `now`. keepalived
    /// presets `retry_it = retry` at start-up ("one failure is enough initially").
    pub fn new(
        cfg: CheckerConfig,
        rs_addr: SocketAddr,
        proto: Protocol,
        rs_weight: u32,
        now: Instant,
        warmup_delay: Duration,
    ) -> Self {
        let scheme = match cfg.kind {
            CheckKind::Tcp => Scheme::Burst,
            CheckKind::Smtp { .. } => Scheme::BurstResetEachLoop,
            CheckKind::Http(_) | CheckKind::Ssl(_) => Scheme::Http,
            CheckKind::Misc(_) => Scheme::Misc,
            CheckKind::Dns(_) | CheckKind::Udp(_) | CheckKind::Ping | CheckKind::File(_) => {
                Scheme::UpOnly
            }
        };
        // keepalived's FMT_CHK is FMT_RS(rs, vs): the real server's address.
        let label = fmt_trio(rs_addr, proto);
        Checker {
            is_up: !cfg.alpha,
            has_run: false,
            retry_it: cfg.retry,
            next: Some(now + warmup_delay),
            next_is_loop_start: true,
            in_flight: false,
            started_at: None,
            enabled: true,
            url_it: Some(0),
            failed_url: None,
            last_exit_code: 0,
            last_error: None,
            last_transition: None,
            counters: CheckerCounters::default(),
            scheme,
            label,
            rs_weight,
            cfg,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &CheckerConfig {
        &self.cfg
    }
    /// Is the checker up?
    pub fn is_up(&self) -> bool {
        self.is_up
    }
    /// Has a result been processed yet?
    pub fn has_run(&self) -> bool {
        self.has_run
    }
    /// Current retry counter.
    pub fn retry_it(&self) -> u32 {
        self.retry_it
    }
    /// Is a probe outstanding?
    pub fn in_flight(&self) -> bool {
        self.in_flight
    }
    /// Last failure text.
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }
    /// When it last changed up/down.
    pub fn last_transition(&self) -> Option<Instant> {
        self.last_transition
    }
    /// Counters.
    pub fn counters(&self) -> &CheckerCounters {
        &self.counters
    }
    /// keepalived's `FMT_CHK` text for this checker.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Enable/disable (keepalived's `checker->enabled`, used by ha_suspend):
    /// a disabled checker keeps its timer but does not probe.
    pub fn set_enabled(&mut self, enabled: bool) {
        self.enabled = enabled;
    }

    /// When the next probe is due (`None` while a probe is in flight).
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.in_flight {
            None
        } else {
            self.next
        }
    }

    /// Start a probe if one is due.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<Probe> {
        let due = self.next?;
        if self.in_flight || due > now {
            return None;
        }
        if !self.enabled {
            self.next = Some(now + self.cfg.delay_loop);
            self.next_is_loop_start = true;
            return None;
        }
        if self.next_is_loop_start && self.scheme == Scheme::BurstResetEachLoop {
            self.retry_it = 0;
        }
        let url_index = if self.scheme == Scheme::Http {
            let n = self.num_urls();
            if n == 0 {
                // "if there are no URLs in list, enable server w/o checking"
                self.in_flight = true;
                self.started_at = Some(now);
                return Some(Probe {
                    id: CheckerId { rs: 0, checker: 0 },
                    url_index: None,
                });
            }
            Some(self.url_it.unwrap_or(0).min(n - 1))
        } else {
            None
        };
        self.in_flight = true;
        self.started_at = Some(now);
        self.counters.probes += 1;
        Some(Probe {
            id: CheckerId { rs: 0, checker: 0 },
            url_index,
        })
    }

    pub(super) fn kind_name(&self) -> &'static str {
        self.cfg.kind.name()
    }

    /// HTTP_GET's settings, or SSL_GET's HTTP part.
    fn http(&self) -> Option<&HttpCheck> {
        match &self.cfg.kind {
            CheckKind::Http(h) => Some(h),
            CheckKind::Ssl(s) => Some(&s.http),
            _ => None,
        }
    }

    pub(super) fn url_path(&self, i: usize) -> String {
        self.http()
            .and_then(|h| h.urls.get(i))
            .map(|u| u.path.clone())
            .unwrap_or_default()
    }

    pub(super) fn num_urls(&self) -> usize {
        self.http().map_or(0, |h| h.urls.len())
    }

    pub(super) fn fast_recovery(&self) -> bool {
        self.http().is_some_and(|h| h.fast_recovery)
    }

    /// keepalived's update_svr_checker_state + set_checker_state, checker side.
    pub(super) fn report(&mut self, upd: &mut CheckerUpdate, alive: bool, now: Instant) {
        upd.report = Some(alive);
        upd.was_up = self.is_up;
        upd.had_run = self.has_run;
        if self.is_up != alive {
            self.counters.transitions += 1;
            self.last_transition = Some(now);
        }
        self.is_up = alive;
        self.has_run = true;
    }

    pub(super) fn log_all(&self) -> bool {
        self.cfg.log_all_failures
    }

    pub(super) fn schedule(&mut self, at: Instant, loop_start: bool) {
        self.next = Some(at);
        self.next_is_loop_start = loop_start;
    }

    /// Feed the result of the probe started by the last [`Checker::handle_timeout`].
    pub fn handle_result(&mut self, now: Instant, res: &ProbeResult) -> CheckerUpdate {
        let mut upd = CheckerUpdate::default();
        if !self.in_flight {
            return upd;
        }
        self.in_flight = false;
        let ok = match (&self.cfg.kind, res.file_value) {
            (CheckKind::Misc(m), _) => match res.exit_code {
                Some(0) => true,
                Some(c) => m.dynamic && (2..=255).contains(&c),
                None => false,
            },
            (CheckKind::File(f), Some(v)) => {
                let v = if f.reverse { -v } else { v };
                if f.weight == 0 {
                    v == 0
                } else {
                    v.saturating_mul(f.weight) > IPVS_WEIGHT_FAULT
                }
            }
            _ => res.ok,
        };
        if ok {
            self.counters.successes += 1;
        } else {
            self.counters.failures += 1;
            self.last_error = Some(if res.detail.is_empty() {
                "failed".into()
            } else {
                res.detail.clone()
            });
        }
        match self.scheme {
            Scheme::Burst | Scheme::BurstResetEachLoop => self.result_burst(now, ok, res, &mut upd),
            Scheme::UpOnly => self.result_up_only(now, ok, res, &mut upd),
            Scheme::Misc => self.result_misc(now, ok, res, &mut upd),
            Scheme::Http => self.result_http(now, ok, res, &mut upd),
        }
        upd
    }
}
