//! # rvs-check — keepalived's health checkers
//!
//! One job: decide, as keepalived 2.2.7 does, which real servers of a virtual
//! server belong in the IPVS table, from health checks it runs itself.
//!
//! * [`machine`]: the sans-IO checker state machine (retry schemes, alpha,
//!   omega, inhibit_on_failure, quorum with hysteresis, sorry server, reload,
//!   status);
//! * [`probe`]: the tokio probes, one file per checker type (TCP, HTTP, SSL,
//!   MISC, SMTP, DNS, UDP, PING, FILE);
//! * [`driver`]: the async loop that pumps a machine with those probes;
//! * [`script`]: keepalived-style script handling;
//! * [`config`]: plain structs that the daemon fills from the parsed
//!   keepalived.conf (inheritance already applied).
//!
//! ## Layering (quinn-proto style)
//!
//! ```text
//!  VirtualServerConfig ──► VirtualServer (sans-IO)            driver::run_virtual_server
//!                          ├─ poll_timeout() ─────────────►  sleep until deadline
//!                          ├─ handle_timeout(now)             │
//!                          ├─ poll_probe() -> Probe ───────►  run_probe(cfg, probe) (tokio task)
//!                          ├─ handle_result(now, id, res) ◄── ProbeResult
//!                          └─ poll_action() -> Action ─────►  mpsc (AddDest/RemoveDest/SetWeight/
//!                                                             AddSorry/RemoveSorry/SetSorryWeight),
//!                                                             tracing (Log), scripts (RunScript)
//! ```
//!
//! The machine never reads a clock and never does I/O: every entry point takes
//! `now: Instant`, so the tests in `tests/machine.rs` drive it on a fake clock.
//!
//! ## Wiring it (daemon side)
//!
//! ```no_run
//! use std::sync::{Arc, Mutex};
//! use rvs_check::*;
//! # async fn demo() {
//! let rs: std::net::SocketAddr = "192.0.2.11:80".parse().unwrap();
//! let mut real = RealServerConfig::new(rs);
//! real.checkers.push(CheckerConfig::new(CheckKind::Tcp, rs));
//! let mut vs = VirtualServerConfig::new("[192.0.2.10]:tcp:80");
//! vs.real_servers.push(real);
//!
//! let (tx, mut rx) = tokio::sync::mpsc::channel(256);
//! let cancel = tokio_util::sync::CancellationToken::new();
//! let status: StatusHandle = Arc::new(Mutex::new(VirtualServerStatus::default()));
//! tokio::spawn(run_virtual_server(vs, DriverOptions::default(), tx, cancel.clone(), status.clone()));
//! while let Some((vs_name, action)) = rx.recv().await {
//!     match action {
//!         Action::AddDest { rs, weight } => { /* table.add_dest(&vs_name, rs, weight) (upsert) */ }
//!         Action::RemoveDest { rs } => { /* table.del_dest(&vs_name, rs) */ }
//!         Action::SetWeight { rs, weight } => { /* table.edit_dest(&vs_name, rs, weight) */ }
//!         _ => { /* AddSorry / RemoveSorry / SetSorryWeight likewise */ }
//!     }
//! }
//! # }
//! ```
//!
//! ## The state machine (keepalived 2.2.7 fidelity)
//!
//! Per checker: `is_up`, `has_run`, `retry_it`. At start-up `retry_it` is
//! preset to `retry` ("one failure is enough initially"), so the **first failed
//! check takes a real server down at once**. Non-alpha checkers start up (the
//! real server is added at start); `alpha` checkers start down (the real server
//! is added only after the first success, or at weight 0 with
//! `inhibit_on_failure`). The first check is delayed by a random time in
//! `[0, warmup]` (default `warmup` = `delay_loop`).
//!
//! Retry schemes differ by checker type, as in keepalived 2.2.7's sources:
//!
//! * **TCP_CHECK** (`tcp_epilog`): after a failure with retries left the next
//!   probe is after `delay_before_retry`, whether the checker is up or down.
//!   An UP checker therefore needs `retry + 1` consecutive failures (the first
//!   at its `delay_loop` slot, then `retry` retries `delay_before_retry` apart);
//!   a DOWN checker probes in bursts of `retry + 1` then pauses `delay_loop`;
//!   one success brings it up.
//! * **SMTP_CHECK**: the same, but `retry_it` is reset at every `delay_loop`
//!   start (so even at start-up it takes `retry + 1` failures).
//! * **UDP_CHECK, DNS_CHECK, PING_CHECK, FILE_CHECK**: failures only count
//!   while the checker is up (or has not run); a down checker is probed every
//!   `delay_loop`.
//! * **MISC_CHECK**: like the previous group, the next run is timed from the
//!   script's start; exit 0 = up, 1 = down, with `misc_dynamic` 2..=255 = up
//!   with weight `exit - 2` (weight changes only when the exit code changes;
//!   exit 0 restores the configured weight). Killed after `misc_timeout`
//!   (default `delay_loop`): SIGTERM to its process group, SIGKILL 2 s later;
//!   a killed script is a failure ("timed out").
//! * **HTTP_GET / SSL_GET** (`check_http.c epilog`): urls are fetched one per
//!   probe, `delay_loop` apart; a failing url is retried `delay_before_retry`
//!   apart and `retry + 1` failures take the checker down; while down the
//!   failed url is re-probed every `max(delay_loop, delay_before_retry)`, and
//!   after it succeeds **all urls must pass again** before the checker is up.
//!   `fast_recovery` probes immediately while recovering. Status codes default
//!   to 200-299; `digest` is the MD5 of the body (limited to Content-Length
//!   when present, like keepalived's genhash).
//!
//! Per real server (`ipwrapper.c`): alive only when **all** its checkers are
//! up (`num_failed_checkers == 0`); it leaves the pool on the first failing
//! checker and returns when the last one recovers. `inhibit_on_failure` edits
//! the weight to 0 instead of removing, and back instead of re-adding. Weight
//! changes (misc_dynamic, FILE_CHECK) emit `SetWeight` while the server is in
//! the pool. `notify_up` / `notify_down` run on alive changes; on the first
//! result a failure runs notify_down, and a first success runs notify_up only
//! with alpha.
//!
//! Per virtual server (`update_quorum_state`): `weight_sum` = sum of alive
//! weights; quorum is gained when `weight_sum >= quorum + hysteresis` and lost
//! when `weight_sum == 0 || weight_sum < quorum - hysteresis`. On loss the
//! sorry server replaces the alive real servers ("Lost quorum ..."), on gain it
//! is removed and the alive servers re-added ("Gained quorum ..."); while the
//! sorry server is active real-server changes only update state. `quorum_up` /
//! `quorum_down` scripts run on those changes. As in keepalived the quorum is
//! evaluated once at start ("Gained quorum" / "Starting with quorum down").
//! `sorry_server_inhibit` keeps the sorry server in the table at weight 0.
//! `omega` runs notify_down / quorum_down at shutdown. `ha_suspend`: the caller
//! suspends checkers while the VIP is absent ([`machine::VirtualServer::set_suspended`],
//! or the driver's `suspend` watch).
//!
//! Log texts are keepalived's (`TCP_CHECK on service [IP]:tcp:PORT failed after
//! N retries.`, `Removing service ... from VS ...`, `Disabling service ... of VS
//! ...`, `Gained quorum Q+H=T <= W for VS ...`, `Misc check for [...] by [...]
//! failed (exited with status 1).`, ...), emitted as [`machine::Action::Log`].
//!
//! ## Reload
//!
//! [`machine::VirtualServer::reload`] applies a new configuration of the same
//! virtual server as keepalived's SIGHUP does (`clear_diff_rs`,
//! `migrate_checkers`): real servers matched by address and checkers matched by
//! type + connection options keep their state, so healthy servers do not flap
//! and down servers are not re-added; removed servers are deleted ("service
//! ... no longer exist"), new ones start as at start-up. The driver accepts new
//! configurations on [`driver::DriverOptions::reload`]. A removed virtual
//! server is simply cancelled (its destinations are removed).
//!
//! ## Scripts
//!
//! Script strings are split like keepalived (quotes, backslash escapes); if the
//! first word is an executable file (PATH search for bare names) it is exec'd
//! directly, otherwise the string runs under `/bin/sh -c`. Checker notify
//! scripts get no extra arguments (keepalived appends none for them). With
//! `user` the script runs as that uid:gid when the daemon is root.
//! [`script::check_script_security`] implements `enable_script_security`.
//!
//! ## Deviations from keepalived (deliberate or not yet done)
//!
//! * FILE_CHECK is polled every `delay_loop` instead of inotify-driven; its
//!   value maps as keepalived's track_file (weight 0: non-zero = down; else
//!   weight `iweight + value * weight`, down at or below -254).
//! * PING_CHECK, UDP_CHECK and DNS_CHECK use the "UpOnly" retry scheme of
//!   DNS_CHECK (UDP_CHECK's alpha-before-first-run corner is not reproduced).
//! * HTTP: a read error after a complete header is treated as end of body (a
//!   TLS peer closing without close_notify would otherwise fail the check);
//!   reading stops once Content-Length bytes arrived; regex url checks are not
//!   implemented. Probe failure details use the connect address.
//! * Not implemented: notify FIFOs, SMTP alerts, SNMP, BFD_CHECK,
//!   virtual_server_group, a sorry server that duplicates a real server,
//!   SMTP_CHECK `host` sub-blocks, `rs_init_notifies`.
//! * PING_CHECK falls back to a raw ICMP socket when the unprivileged ICMP
//!   datagram socket is refused (keepalived only uses the datagram socket).
//! * `misc_timeout` defaults to the checker's `delay_loop` (keepalived uses the
//!   virtual server's; they only differ when a checker overrides delay_loop).
//! * SSL_GET verifies the certificate only when [`config::SslCheck::ca_file`]
//!   is set (keepalived never verifies by default).
//! * `AddDest` may be emitted for a destination that already exists (keepalived
//!   would get EEXIST from the kernel): apply it as an upsert.

#![warn(missing_docs)]

pub mod config;
pub mod driver;
pub mod machine;
pub mod probe;
pub mod script;

pub use config::{
    CheckKind, CheckerConfig, DnsCheck, FileCheck, HttpCheck, HttpProtocol, MiscCheck, Protocol,
    RealServerConfig, ScriptConfig, SslCheck, UdpCheck, Url, VirtualServerConfig,
};
pub use driver::{run_virtual_server, DriverOptions, StatusHandle};
pub use machine::{
    Action, Checker, CheckerId, Probe, ProbeResult, ScriptReason, VirtualServer,
    VirtualServerStatus,
};
pub use probe::run_probe;
