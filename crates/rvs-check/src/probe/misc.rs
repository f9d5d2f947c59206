//! MISC_CHECK.

use crate::config::{CheckerConfig, MiscCheck};
use crate::machine::ProbeResult;
use crate::script::{self, ScriptOutcome};

/// MISC_CHECK: run the script; the machine maps the exit code.
pub async fn probe_misc(cfg: &CheckerConfig, m: &MiscCheck) -> ProbeResult {
    let timeout = m.timeout.unwrap_or(cfg.delay_loop);
    match script::run_with_timeout(&m.path, m.user, timeout).await {
        ScriptOutcome::Exited(c) => ProbeResult::exit(c),
        ScriptOutcome::Signaled { signal, timed_out } => ProbeResult::signaled(signal, timed_out),
        // keepalived's forked child exits 127 when exec fails
        ScriptOutcome::SpawnFailed => ProbeResult::exit(127),
    }
}
