//! Sans-IO health-check state machine (keepalived 2.2.7 semantics).
//!
//! * [`Checker`] is one checker block: it decides *when* to probe
//!   ([`Checker::poll_timeout`], [`Checker::handle_timeout`]) and interprets
//!   probe results ([`Checker::handle_result`]) with the retry scheme of its
//!   keepalived checker type, returning a [`CheckerUpdate`].
//! * [`VirtualServer`] owns the checkers of all its real servers and does what
//!   keepalived's `ipwrapper.c` does: aggregate checkers per real server
//!   (alive only when all are up), inhibit_on_failure, dynamic weights, quorum
//!   with hysteresis, sorry server, notify scripts, and emits [`Action`]s.
//!
//! No clock is read and no I/O is done: `now` is always passed in.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::{
    fmt_trio, CheckKind, CheckerConfig, Protocol, RealServerConfig, ScriptConfig,
    VirtualServerConfig,
};

/// IPVS's largest weight (keepalived clamps effective weights to it).
pub const IPVS_WEIGHT_MAX: i64 = i32::MAX as i64;
/// keepalived's IPVS_WEIGHT_FAULT: a FILE_CHECK value * weight at or below this is a failure.
pub const IPVS_WEIGHT_FAULT: i64 = -254;

/// keepalived's `real_weight()`: clamp an effective weight to IPVS's range.
pub fn real_weight(effective: i64) -> u32 {
    effective.clamp(0, IPVS_WEIGHT_MAX) as u32
}

// ===== probe interface =====

/// Identifies a checker inside a [`VirtualServer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct CheckerId {
    /// Index of the real server in [`VirtualServerConfig::real_servers`].
    pub rs: usize,
    /// Index of the checker in [`RealServerConfig::checkers`].
    pub checker: usize,
}

/// A request to the IO shell: run one probe of this checker now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// Which checker (filled in by [`VirtualServer`]; `{0,0}` for a bare [`Checker`]).
    pub id: CheckerId,
    /// HTTP_GET / SSL_GET: index of the url to fetch.
    pub url_index: Option<usize>,
}

/// What a probe found.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct ProbeResult {
    /// Success (for MISC_CHECK / FILE_CHECK the machine re-derives it from
    /// `exit_code` / `file_value`).
    pub ok: bool,
    /// Human text: the failure reason in keepalived's words ("HTTP status code
    /// error to", "TCP connection to ... failed"), or on HTTP success which test
    /// passed ("HTTP status code" / "MD5 digest").
    pub detail: String,
    /// MISC_CHECK: the script's exit status (`None` if it was killed).
    pub exit_code: Option<i32>,
    /// MISC_CHECK: killed by this signal.
    pub signal: Option<i32>,
    /// MISC_CHECK: it was killed because misc_timeout expired.
    pub timed_out: bool,
    /// FILE_CHECK: the number read from the file.
    pub file_value: Option<i64>,
}

impl ProbeResult {
    /// A plain success.
    pub fn success() -> Self {
        ProbeResult {
            ok: true,
            ..Default::default()
        }
    }
    /// A success with a detail text.
    pub fn success_with(detail: impl Into<String>) -> Self {
        ProbeResult {
            ok: true,
            detail: detail.into(),
            ..Default::default()
        }
    }
    /// A failure with its reason.
    pub fn failure(detail: impl Into<String>) -> Self {
        ProbeResult {
            ok: false,
            detail: detail.into(),
            ..Default::default()
        }
    }
    /// A MISC_CHECK script that exited with `code`.
    pub fn exit(code: i32) -> Self {
        ProbeResult {
            ok: code == 0,
            exit_code: Some(code),
            ..Default::default()
        }
    }
    /// A MISC_CHECK script killed by `signal` (`timed_out` when we killed it).
    pub fn signaled(signal: i32, timed_out: bool) -> Self {
        ProbeResult {
            signal: Some(signal),
            timed_out,
            ..Default::default()
        }
    }
    /// A FILE_CHECK reading.
    pub fn file(value: i64) -> Self {
        ProbeResult {
            ok: true,
            file_value: Some(value),
            ..Default::default()
        }
    }
}

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

// ===== checker =====

/// Which keepalived retry scheme a checker type uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
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
    cfg: CheckerConfig,
    scheme: Scheme,
    /// Text used in logs: `FMT_CHK` = `[ip]:proto:port` of the real server.
    label: String,
    rs_weight: u32,
    is_up: bool,
    has_run: bool,
    retry_it: u32,
    next: Option<Instant>,
    next_is_loop_start: bool,
    in_flight: bool,
    started_at: Option<Instant>,
    enabled: bool,
    // HTTP
    url_it: Option<usize>,
    failed_url: Option<usize>,
    // MISC
    last_exit_code: i32,
    // status
    last_error: Option<String>,
    last_transition: Option<Instant>,
    counters: CheckerCounters,
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
            let n = match &self.cfg.kind {
                CheckKind::Http(h) => h.urls.len(),
                CheckKind::Ssl(s) => s.http.urls.len(),
                _ => 0,
            };
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

    fn kind_name(&self) -> &'static str {
        self.cfg.kind.name()
    }

    fn url_path(&self, i: usize) -> String {
        let urls = match &self.cfg.kind {
            CheckKind::Http(h) => &h.urls,
            CheckKind::Ssl(s) => &s.http.urls,
            _ => return String::new(),
        };
        urls.get(i).map(|u| u.path.clone()).unwrap_or_default()
    }

    fn num_urls(&self) -> usize {
        match &self.cfg.kind {
            CheckKind::Http(h) => h.urls.len(),
            CheckKind::Ssl(s) => s.http.urls.len(),
            _ => 0,
        }
    }

    fn fast_recovery(&self) -> bool {
        match &self.cfg.kind {
            CheckKind::Http(h) => h.fast_recovery,
            CheckKind::Ssl(s) => s.http.fast_recovery,
            _ => false,
        }
    }

    /// keepalived's update_svr_checker_state + set_checker_state, checker side.
    fn report(&mut self, upd: &mut CheckerUpdate, alive: bool, now: Instant) {
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

    fn log_all(&self) -> bool {
        self.cfg.log_all_failures
    }

    fn schedule(&mut self, at: Instant, loop_start: bool) {
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

    fn result_burst(&mut self, now: Instant, ok: bool, res: &ProbeResult, upd: &mut CheckerUpdate) {
        let (ok_text, fail_prefix) = match self.scheme {
            Scheme::BurstResetEachLoop => ("Remote SMTP server", "SMTP_CHECK"),
            _ => ("TCP connection to", "TCP_CHECK"),
        };
        let smtp = self.scheme == Scheme::BurstResetEachLoop;
        if !ok {
            if smtp {
                if (self.is_up || !self.has_run)
                    && (self.log_all() || self.retry_it >= self.cfg.retry)
                {
                    upd.logs.push(format!("SMTP_CHECK {}", res.detail));
                }
            } else if self.is_up && self.log_all() && !res.detail.is_empty() {
                upd.logs.push(res.detail.clone());
            }
        }
        if smtp && !ok {
            // check_smtp.c smtp_final: `if (++retry_it <= retry)` retry
            self.retry_it += 1;
            if self.retry_it <= self.cfg.retry {
                self.schedule(now + self.cfg.delay_before_retry, false);
                return;
            }
            if self.is_up || !self.has_run {
                self.report(upd, false, now);
            }
            self.schedule(now + self.cfg.delay_loop, true);
            return;
        }
        if ok || self.retry_it >= self.cfg.retry {
            self.retry_it = 0;
            if ok && (!self.is_up || !self.has_run) {
                if smtp {
                    upd.logs
                        .push(format!("{ok_text} {} succeed on service.", self.label));
                } else {
                    upd.logs.push(format!("{ok_text} {} success.", self.label));
                }
                self.report(upd, true, now);
            } else if !ok && (self.is_up || !self.has_run) {
                if self.cfg.retry > 0 && self.has_run {
                    upd.logs.push(format!(
                        "{fail_prefix} on service {} failed after {} retries.",
                        self.label, self.cfg.retry
                    ));
                } else {
                    upd.logs
                        .push(format!("{fail_prefix} on service {} failed.", self.label));
                }
                self.report(upd, false, now);
            }
            self.has_run = true;
            self.schedule(now + self.cfg.delay_loop, true);
        } else {
            self.retry_it += 1;
            self.has_run = true;
            self.schedule(now + self.cfg.delay_before_retry, false);
        }
    }

    fn up_only_texts(&self) -> (String, String) {
        match self.cfg.kind {
            CheckKind::Udp(_) => (
                format!("UDP connection to {} success.", self.label),
                "UDP_CHECK".into(),
            ),
            CheckKind::Ping => (
                format!("ICMP connection to {} success.", self.label),
                "ICMP CHECK".into(),
            ),
            CheckKind::Dns(_) => (
                format!("DNS_CHECK ({}) succeed on service.", self.label),
                "DNS_CHECK".into(),
            ),
            _ => (
                format!("{} on service {} succeed.", self.kind_name(), self.label),
                self.kind_name().into(),
            ),
        }
    }

    fn result_up_only(
        &mut self,
        now: Instant,
        ok: bool,
        res: &ProbeResult,
        upd: &mut CheckerUpdate,
    ) {
        let (ok_text, prefix) = self.up_only_texts();
        // FILE_CHECK dynamic weight: iweight + value * weight (keepalived track_file).
        if let (CheckKind::File(f), Some(v)) = (&self.cfg.kind, res.file_value) {
            if f.weight != 0 && ok {
                let v = if f.reverse { -v } else { v };
                upd.weight = Some(self.rs_weight as i64 + v.saturating_mul(f.weight));
            }
        }
        if ok {
            if !self.is_up || !self.has_run {
                upd.logs.push(ok_text);
                self.report(upd, true, now);
            }
            self.retry_it = 0;
            self.has_run = true;
            self.schedule(now + self.cfg.delay_loop, true);
            return;
        }
        if self.is_up || !self.has_run {
            let dns = matches!(self.cfg.kind, CheckKind::Dns(_));
            if dns {
                if self.log_all() || self.retry_it >= self.cfg.retry {
                    let mut line = format!("DNS_CHECK ({}) {}", self.label, res.detail);
                    if self.has_run && self.retry_it >= self.cfg.retry {
                        line.push_str(&format!(" after {} retries", self.cfg.retry));
                    }
                    upd.logs.push(line);
                }
            } else if self.is_up && self.log_all() && !res.detail.is_empty() {
                upd.logs.push(res.detail.clone());
            }
            if self.retry_it < self.cfg.retry {
                self.retry_it += 1;
                self.has_run = true;
                self.schedule(now + self.cfg.delay_before_retry, false);
                return;
            }
            if !dns {
                // check_ping.c names the VS too: "ICMP CHECK on service %s of %s failed"
                let of_vs = if matches!(self.cfg.kind, CheckKind::Ping) {
                    " of {VS}"
                } else {
                    ""
                };
                if self.cfg.retry > 0 && self.has_run {
                    upd.logs.push(format!(
                        "{prefix} on service {}{of_vs} failed after {} retries.",
                        self.label, self.cfg.retry
                    ));
                } else {
                    upd.logs
                        .push(format!("{prefix} on service {}{of_vs} failed.", self.label));
                }
            }
            self.report(upd, false, now);
        }
        self.retry_it = 0;
        self.has_run = true;
        self.schedule(now + self.cfg.delay_loop, true);
    }

    fn result_misc(&mut self, now: Instant, ok: bool, res: &ProbeResult, upd: &mut CheckerUpdate) {
        let (script0, dynamic) = match &self.cfg.kind {
            CheckKind::Misc(m) => (
                crate::script::split_command(&m.path)
                    .into_iter()
                    .next()
                    .unwrap_or_default(),
                m.dynamic,
            ),
            _ => (String::new(), false),
        };
        let mut exit_type: Option<&str> = None;
        let mut success = false;
        let mut reason: Option<(&str, i32)> = None;
        let mut message_only = false;
        if let Some(status) = res.exit_code {
            if ok {
                let eff = if status >= 2 {
                    (status - 2) as i64
                } else {
                    self.rs_weight as i64
                };
                if status != self.last_exit_code && (dynamic || status == 0) {
                    upd.weight = Some(eff);
                    self.last_exit_code = status;
                }
                if !self.is_up || !self.has_run {
                    exit_type = Some("succeeded");
                    success = true;
                }
                self.retry_it = 0;
            } else if self.is_up || !self.has_run {
                exit_type = Some("failed");
                reason = Some(("exited with status", status));
                if self.retry_it < self.cfg.retry {
                    self.retry_it += 1;
                    if self.log_all() {
                        message_only = true;
                    } else {
                        exit_type = None;
                    }
                } else {
                    self.retry_it = 0;
                    self.last_exit_code = status;
                }
            }
        } else if self.is_up || !self.has_run {
            if res.timed_out {
                exit_type = Some("timed out");
            } else {
                exit_type = Some("failed");
                reason = Some(("due to signal", res.signal.unwrap_or(0)));
            }
            if self.retry_it < self.cfg.retry {
                self.retry_it += 1;
                if self.log_all() {
                    message_only = true;
                } else {
                    exit_type = None;
                }
            } else {
                self.retry_it = 0;
            }
        }
        if let Some(t) = exit_type {
            let retries = if !success && self.cfg.retry > 0 {
                format!(" after {} retries", self.cfg.retry)
            } else {
                String::new()
            };
            let vs = "{VS}"; // replaced by VirtualServer with its name
            match reason {
                Some((r, c)) => upd.logs.push(format!(
                    "Misc check for [{} VS {vs}] by [{script0}] {t}{retries} ({r} {c}).",
                    self.label
                )),
                None => upd.logs.push(format!(
                    "Misc check for [{} VS {vs}] by [{script0}] {t}{retries}.",
                    self.label
                )),
            }
            if !message_only {
                self.report(upd, success, now);
            }
        }
        let base = self.started_at.unwrap_or(now);
        let delay = if self.retry_it > 0 {
            self.cfg.delay_before_retry
        } else {
            self.cfg.delay_loop
        };
        let at = (base + delay).max(now + Duration::from_micros(1));
        self.has_run = true;
        self.schedule(at, self.retry_it == 0);
    }

    fn result_http(&mut self, now: Instant, ok: bool, res: &ProbeResult, upd: &mut CheckerUpdate) {
        #[derive(PartialEq)]
        enum M {
            New,
            Retry,
            Failed,
        }
        let n = self.num_urls();
        let method = if ok || n == 0 {
            if !self.is_up && n > 0 {
                let msg = if res.detail.is_empty() {
                    "HTTP status code"
                } else {
                    res.detail.as_str()
                };
                let path = self.url_path(self.url_it.unwrap_or(0));
                upd.logs
                    .push(format!("{msg} success to {} url({path})", self.label));
            }
            M::New
        } else if self.is_up || !self.has_run {
            if self.log_all() {
                upd.logs
                    .push(format!("{} server {}.", res.detail, self.label));
            }
            self.has_run = true;
            M::Retry
        } else {
            M::Failed
        };
        if method == M::New {
            self.url_it = match self.url_it {
                Some(i) if i + 1 < n => Some(i + 1),
                _ => None,
            };
            self.retry_it = 0;
        } else if method == M::Retry {
            self.retry_it += 1;
        }
        if method == M::New && self.url_it.is_none() && self.failed_url.is_none() {
            if !self.is_up || !self.has_run {
                upd.logs.push(format!(
                    "Remote Web server {} succeed on service.",
                    self.label
                ));
                self.report(upd, true, now);
                self.has_run = true;
            }
            self.url_it = Some(0);
            self.retry_it = 0;
        } else if method == M::Retry && self.retry_it > self.cfg.retry {
            if self.is_up || !self.has_run {
                if self.has_run && self.cfg.retry > 0 {
                    upd.logs.push(format!(
                        "HTTP_CHECK on service {} failed after {} retries.",
                        self.label,
                        self.retry_it - 1
                    ));
                } else {
                    upd.logs
                        .push(format!("HTTP_CHECK on service {} failed.", self.label));
                }
                self.report(upd, false, now);
            }
            self.failed_url = Some(self.url_it.unwrap_or(0));
        } else if method == M::New && self.failed_url.is_some() {
            self.failed_url = None;
            self.url_it = Some(0);
            self.retry_it = 0;
        }
        let delay = if method == M::New {
            if !self.has_run {
                self.retry_it = self.cfg.retry;
            }
            self.cfg.delay_loop
        } else if self.failed_url.is_some() {
            self.cfg.delay_before_retry.max(self.cfg.delay_loop)
        } else {
            self.cfg.delay_before_retry
        };
        if self.fast_recovery() && (!self.has_run || (!self.is_up && self.failed_url.is_none())) {
            self.schedule(now, method == M::New);
        } else {
            self.schedule(now + delay, method == M::New);
        }
    }
}

// ===== actions =====

/// Why a script is run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ScriptReason {
    /// Real server `notify_up`.
    NotifyUp,
    /// Real server `notify_down`.
    NotifyDown,
    /// Virtual server `quorum_up`.
    QuorumUp,
    /// Virtual server `quorum_down`.
    QuorumDown,
}

/// Output of the machine, to be applied in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Add the real server to the service (keepalived LVS_CMD_ADD_DEST). May be
    /// emitted for a destination that already exists: treat as upsert.
    AddDest {
        /// Real server.
        rs: SocketAddr,
        /// IPVS weight.
        weight: u32,
    },
    /// Remove the real server (LVS_CMD_DEL_DEST).
    RemoveDest {
        /// Real server.
        rs: SocketAddr,
    },
    /// Change the weight of an existing destination (inhibit_on_failure, misc_dynamic, ...).
    SetWeight {
        /// Real server.
        rs: SocketAddr,
        /// New IPVS weight.
        weight: u32,
    },
    /// Add the sorry server.
    AddSorry {
        /// Sorry server.
        addr: SocketAddr,
        /// IPVS weight (0 for a sorry_server_inhibit placeholder).
        weight: u32,
    },
    /// Remove the sorry server.
    RemoveSorry {
        /// Sorry server.
        addr: SocketAddr,
    },
    /// Change the sorry server's weight (sorry_server_inhibit).
    SetSorryWeight {
        /// Sorry server.
        addr: SocketAddr,
        /// New weight.
        weight: u32,
    },
    /// Run a notify/quorum script. keepalived passes no extra arguments to
    /// checker notify scripts: run `script.cmd` as configured.
    RunScript {
        /// The script.
        script: ScriptConfig,
        /// Why.
        reason: ScriptReason,
    },
    /// A keepalived-compatible log line (LOG_INFO).
    Log {
        /// Text.
        text: String,
    },
}

// ===== virtual server =====

#[derive(Debug, Clone)]
struct RsState {
    cfg: RealServerConfig,
    name: String,
    alive: bool,
    set: bool,
    effective_weight: i64,
    num_failed_checkers: u32,
    checkers: Vec<Checker>,
    last_transition: Option<Instant>,
}

#[derive(Debug, Clone)]
struct SorryState {
    addr: SocketAddr,
    name: String,
    alive: bool,
    set: bool,
    inhibit: bool,
    weight: u32,
}

/// Status of one checker (for the API / `rvsadm --checks`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckerStatus {
    /// keepalived block name.
    pub kind: &'static str,
    /// Real server as keepalived names it in checker logs (`[ip]:proto:port`).
    pub target: String,
    /// Address probed (connect_ip/connect_port).
    pub connect: SocketAddr,
    /// Up?
    pub up: bool,
    /// Has it produced a result yet?
    pub has_run: bool,
    /// Current retry counter.
    pub retry_it: u32,
    /// Last failure text.
    pub last_error: Option<String>,
    /// Seconds since the last up/down transition.
    pub last_transition_secs_ago: Option<f64>,
    /// Counters.
    pub counters: CheckerCounters,
}

/// Status of one real server.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RealServerStatus {
    /// Address.
    pub addr: SocketAddr,
    /// keepalived's "alive".
    pub alive: bool,
    /// Present in the IPVS table.
    pub in_table: bool,
    /// Effective weight (configured weight or dynamic).
    pub weight: u32,
    /// Failed checkers.
    pub failed_checkers: u32,
    /// Seconds since the last alive transition.
    pub last_transition_secs_ago: Option<f64>,
    /// Checkers.
    pub checkers: Vec<CheckerStatus>,
}

/// Status of a virtual server.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct VirtualServerStatus {
    /// keepalived name.
    pub name: String,
    /// Quorum state.
    pub quorum_up: bool,
    /// Sum of alive weights.
    pub alive_weight: u64,
    /// The sorry server is in service.
    pub sorry_active: bool,
    /// Checkers suspended (ha_suspend).
    pub suspended: bool,
    /// Real servers.
    pub real_servers: Vec<RealServerStatus>,
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

fn fresh_rs(rc: &RealServerConfig, proto: Protocol, now: Instant, rng: &mut u64) -> RsState {
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

/// A virtual server with its real servers and checkers.
#[derive(Debug, Clone)]
pub struct VirtualServer {
    name: String,
    quorum: u32,
    hysteresis: u32,
    quorum_up_script: Option<ScriptConfig>,
    quorum_down_script: Option<ScriptConfig>,
    omega: bool,
    quorum_state_up: bool,
    rss: Vec<RsState>,
    sorry: Option<SorryState>,
    actions: VecDeque<Action>,
    probes: VecDeque<Probe>,
    suspended: bool,
    stopped: bool,
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
        let sorry = cfg.sorry_server.map(|addr| SorryState {
            addr,
            name: fmt_trio(addr, proto),
            alive: false,
            set: false,
            inhibit: cfg.sorry_server_inhibit,
            weight: cfg.sorry_server_weight,
        });
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
        // init_service_rs
        for i in 0..vs.rss.len() {
            let rs = &vs.rss[i];
            if (rs.num_failed_checkers == 0 && !rs.alive) || (rs.cfg.inhibit_on_failure && !rs.set)
            {
                vs.ipvs_add(i);
                if vs.rss[i].num_failed_checkers == 0 {
                    vs.rss[i].alive = true;
                    vs.rss[i].last_transition = Some(now);
                }
            }
        }
        vs.update_quorum_state(true);
        // sorry server with inhibit: add now at weight 0
        if let Some(s) = vs.sorry.as_mut() {
            if s.inhibit && !s.set {
                s.set = true;
                let addr = s.addr;
                vs.actions.push_back(Action::AddSorry { addr, weight: 0 });
            }
        }
        vs
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
            } else if (rs.num_failed_checkers == 0 && !rs.alive)
                || (rs.cfg.inhibit_on_failure && !rs.set)
            {
                self.ipvs_add(i);
                if self.rss[i].num_failed_checkers == 0 {
                    self.rss[i].alive = true;
                    self.rss[i].last_transition = Some(now);
                }
            }
        }
        // sorry server
        let old_sorry = self.sorry.take();
        let mut sorry = cfg.sorry_server.map(|addr| SorryState {
            addr,
            name: fmt_trio(addr, proto),
            alive: false,
            set: false,
            inhibit: cfg.sorry_server_inhibit,
            weight: cfg.sorry_server_weight,
        });
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
        self.update_quorum_state(true);
        if let Some(s) = self.sorry.as_mut() {
            if s.inhibit && !s.set {
                s.set = true;
                let addr = s.addr;
                self.actions.push_back(Action::AddSorry { addr, weight: 0 });
            }
        }
        if self.suspended {
            self.set_suspended(true);
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

    /// Snapshot for the status API.
    pub fn status(&self, now: Instant) -> VirtualServerStatus {
        let ago = |t: Option<Instant>| t.map(|t| now.saturating_duration_since(t).as_secs_f64());
        VirtualServerStatus {
            name: self.name.clone(),
            quorum_up: self.quorum_state_up,
            alive_weight: self.weigh_live().max(0) as u64,
            sorry_active: self.sorry.as_ref().is_some_and(|s| s.alive),
            suspended: self.suspended,
            real_servers: self
                .rss
                .iter()
                .map(|r| RealServerStatus {
                    addr: r.cfg.addr,
                    alive: r.alive,
                    in_table: r.set,
                    weight: real_weight(r.effective_weight),
                    failed_checkers: r.num_failed_checkers,
                    last_transition_secs_ago: ago(r.last_transition),
                    checkers: r
                        .checkers
                        .iter()
                        .map(|c| CheckerStatus {
                            kind: c.config().kind.name(),
                            target: c.label().to_string(),
                            connect: c.config().connect,
                            up: c.is_up(),
                            has_run: c.has_run(),
                            retry_it: c.retry_it(),
                            last_error: c.last_error().map(str::to_string),
                            last_transition_secs_ago: ago(c.last_transition()),
                            counters: c.counters().clone(),
                        })
                        .collect(),
                })
                .collect(),
        }
    }

    // ----- ipwrapper.c -----

    fn weigh_live(&self) -> i64 {
        self.rss
            .iter()
            .filter(|r| r.alive)
            .map(|r| real_weight(r.effective_weight) as i64)
            .sum()
    }

    fn log(&mut self, text: String) {
        self.actions.push_back(Action::Log { text });
    }

    /// ipvs_cmd(LVS_CMD_ADD_DEST, rs)
    fn ipvs_add(&mut self, i: usize) {
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
    fn ipvs_del(&mut self, i: usize) {
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

    fn do_rs_notifies(&mut self, i: usize) {
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

    fn update_quorum_state(&mut self, init: bool) {
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

    fn perform_svr_state(&mut self, i: usize, alive: bool, now: Instant) {
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

    fn update_svr_checker_state(
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

    fn update_svr_wgt(&mut self, i: usize, weight: i64, update_quorum: bool) {
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

/// Render status snapshots as a plain-text table (for an `rvsadm --checks`
/// style view).
pub fn render_checks(statuses: &[VirtualServerStatus]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let ago = |t: Option<f64>| {
        t.map(|s| format!("{s:.1}s ago"))
            .unwrap_or_else(|| "never".into())
    };
    for vs in statuses {
        let _ = writeln!(
            out,
            "VS {}  quorum {}  alive weight {}{}{}",
            vs.name,
            if vs.quorum_up { "UP" } else { "DOWN" },
            vs.alive_weight,
            if vs.sorry_active {
                "  sorry server ACTIVE"
            } else {
                ""
            },
            if vs.suspended {
                "  (checks suspended)"
            } else {
                ""
            },
        );
        for rs in &vs.real_servers {
            let _ = writeln!(
                out,
                "  RS {}  {}  weight {}  {}  changed {}",
                rs.addr,
                if rs.alive { "UP" } else { "DOWN" },
                rs.weight,
                if rs.in_table {
                    "in table"
                } else {
                    "not in table"
                },
                ago(rs.last_transition_secs_ago),
            );
            for c in &rs.checkers {
                let _ = writeln!(
                    out,
                    "    {:<10} {:<22} {:<4} probes {} ok {} fail {} transitions {}  changed {}{}",
                    c.kind,
                    c.connect.to_string(),
                    if !c.has_run {
                        "INIT"
                    } else if c.up {
                        "UP"
                    } else {
                        "DOWN"
                    },
                    c.counters.probes,
                    c.counters.successes,
                    c.counters.failures,
                    c.counters.transitions,
                    ago(c.last_transition_secs_ago),
                    c.last_error
                        .as_deref()
                        .map(|e| format!("  last error: {e}"))
                        .unwrap_or_default(),
                );
            }
        }
    }
    out
}
