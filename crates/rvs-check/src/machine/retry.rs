//! The retry schemes of keepalived's checker types: what a probe result does
//! to `is_up`, `retry_it` and the next probe time (`tcp_epilog`,
//! `smtp_final`, the UDP/DNS/PING/FILE "up only" scheme, MISC_CHECK's exit
//! codes, `check_http.c epilog`).

use std::time::{Duration, Instant};

use super::checker::{Checker, CheckerUpdate, Scheme};
use super::ProbeResult;
use crate::config::CheckKind;

impl Checker {
    pub(super) fn result_burst(
        &mut self,
        now: Instant,
        ok: bool,
        res: &ProbeResult,
        upd: &mut CheckerUpdate,
    ) {
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
                upd.logs.push(self.failed_text(fail_prefix, ""));
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

    /// "`prefix` on service `label``suffix` failed[ after N retries]." (TCP_CHECK,
    /// SMTP_CHECK, UDP_CHECK, PING_CHECK, FILE_CHECK).
    fn failed_text(&self, prefix: &str, suffix: &str) -> String {
        if self.cfg.retry > 0 && self.has_run {
            format!(
                "{prefix} on service {}{suffix} failed after {} retries.",
                self.label, self.cfg.retry
            )
        } else {
            format!("{prefix} on service {}{suffix} failed.", self.label)
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

    pub(super) fn result_up_only(
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
                upd.logs.push(self.failed_text(&prefix, of_vs));
            }
            self.report(upd, false, now);
        }
        self.retry_it = 0;
        self.has_run = true;
        self.schedule(now + self.cfg.delay_loop, true);
    }

    pub(super) fn result_misc(
        &mut self,
        now: Instant,
        ok: bool,
        res: &ProbeResult,
        upd: &mut CheckerUpdate,
    ) {
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
        if let (true, Some(status)) = (ok, res.exit_code) {
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
            match res.exit_code {
                Some(status) => {
                    exit_type = Some("failed");
                    reason = Some(("exited with status", status));
                }
                None if res.timed_out => exit_type = Some("timed out"),
                None => {
                    exit_type = Some("failed");
                    reason = Some(("due to signal", res.signal.unwrap_or(0)));
                }
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
                if let Some(status) = res.exit_code {
                    self.last_exit_code = status;
                }
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

    pub(super) fn result_http(
        &mut self,
        now: Instant,
        ok: bool,
        res: &ProbeResult,
        upd: &mut CheckerUpdate,
    ) {
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
