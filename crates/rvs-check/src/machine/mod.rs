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
//!
//! Files: `checker.rs` (one checker: timers, counters, result entry point),
//! `retry.rs` (the retry scheme of each checker type), `virtual_server.rs`
//! (start-up, timers, results, shutdown), `ipwrapper.rs` (real server
//! alive/dead, inhibit_on_failure, weights, quorum with hysteresis, sorry
//! server), `reload.rs` (SIGHUP without flapping), `action.rs` (what the
//! machine asks of the shell), `status.rs` (status snapshots and the
//! `--checks` text).

use serde::Serialize;

mod action;
mod checker;
mod ipwrapper;
mod reload;
mod retry;
mod status;
mod virtual_server;

pub use action::{Action, ScriptReason};
pub use checker::{Checker, CheckerCounters, CheckerUpdate};
pub use status::{render_checks, CheckerStatus, RealServerStatus, VirtualServerStatus};
pub use virtual_server::VirtualServer;

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
    /// Index of the real server in [`crate::config::VirtualServerConfig::real_servers`].
    pub rs: usize,
    /// Index of the checker in [`crate::config::RealServerConfig::checkers`].
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
