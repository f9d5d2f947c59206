//! # rvs-core — a sans-IO model of kernel IPVS
//!
//! This crate holds everything the Linux IP Virtual Server keeps in the
//! kernel, as plain data driven by method calls: virtual services,
//! their real servers (destinations), the fourteen schedulers, the
//! connection table with the IPVS TCP/UDP/SCTP state machines and
//! timeouts, persistence templates, the deleted-destination trash,
//! traffic counters and the 2-second EWMA rate estimator.
//!
//! ## The model
//!
//! * **No IO.** No sockets, no threads, no clock: every call that needs
//!   the time takes a [`Time`] (monotonic milliseconds chosen by the
//!   caller). The daemon owns one [`Ipvs`] (behind a mutex), feeds it
//!   control-plane calls (`add_service`, `add_dest`, ... with the kernel's
//!   rules and errno-mapped [`Error`]s), data-path events
//!   ([`Ipvs::process`], one call per packet or proxy event, returning a
//!   [`Verdict`]) and timer ticks ([`Ipvs::handle_timeout`] at
//!   [`Ipvs::poll_timeout`], [`Ipvs::estimate`] every 2 s).
//! * **Kernel list order.** A service's destinations are kept newest first
//!   (the kernel's `list_add_rcu` at the head), and every tie-break, rr/wrr
//!   cycle and dh/sh/mh table is computed over that order. Scheduler state
//!   (rr cursor, wrr cw/mw/di, lblc caches, hash tables) carries over
//!   destination adds/edits/deletes exactly as the kernel hooks do.
//! * **Connections** are fixed-size 96-byte entries in a chunked slab (no
//!   per-entry allocation), indexed by an open-addressing table keyed like
//!   the kernel's conn hash (protocol, client address, client port), so the
//!   same index serves client->VIP lookups, real-server reply lookups and
//!   persistence templates. Expiry uses a hashed timer wheel of 1-second
//!   buckets (entries are queued once and re-queued lazily when their
//!   deadline moved), never per-connection timers. `conn_tab_size()`
//!   reports the kernel's 4096 buckets for the ipvsadm banner; the index
//!   itself grows so lookups stay O(1) at millions of entries.
//! * **Accounting** follows current kernels: new connections start
//!   INACTIVE, move to ActiveConn on SYN_RECV/SYN_SENT/ESTABLISHED/SYNACK,
//!   DR/TUN/Local connections use the INPUT_ONLY rows until a reply is seen,
//!   UDP stays inactive, templates count in persistconns; OVERLOAD is set
//!   and cleared with the u/l thresholds at bind/unbind.
//! * **Persistence** templates are keyed as `ip_vs_sched_persist` does
//!   (client masked by the netmask, cport 0, vport or 0, fwmark as
//!   protocol IP with the mark as address), refreshed on every new
//!   controlled connection, kept alive (+60 s) while they control
//!   connections, invalidated (ports 0xffff) when their destination goes.
//!
//! * **Deliberate differences** from the kernel are listed in the
//!   `rvs-core` section of `docs/PERFORMANCE.md` together with the measured
//!   costs (lookup hit, new connection, bytes per entry, Maglev build).
//!
//! ## Extensions for user-space engines
//!
//! * `process(.., exclude)`: destinations the caller could not connect to
//!   are treated as overloaded for this one decision; an existing entry (or
//!   persistence template) bound to an excluded destination is replaced.
//! * [`Ipvs::process_conn`]: per-packet accounting for a connection whose
//!   [`ConnRef`] the caller already holds (no tuple lookup).
//! * [`Sysctl::show_assured_templates`]: templates always track ASSURED, but
//!   show it only when asked (the seed's kernel printed `NONE`).
//! * SCTP packets carry their first chunk type in `Packet::tcp_flags`
//!   ([`TcpFlags::sctp_chunk`]).
//! * [`Ipvs::lookup`]: side-effect-free conn_in_get / conn_out_get (for ICMP
//!   errors); [`Ipvs::handle_timeout_budget`]: bounded expiry work per call.
//! * Connection sync, table side: [`Ipvs::sync_due`] (the master's
//!   per-packet ip_vs_sync_conn decision), [`Ipvs::sync_export`] (every
//!   entry) and [`Ipvs::sync_apply`] (the backup's ip_vs_proc_conn); the
//!   wire format and transport are the shell's.

mod conn;
mod dest;
mod est;
mod hash;
mod ipvs;
mod pe_sip;
mod proto;
mod sched;
mod sysctl;
mod time;
mod types;

pub use hash::hsiphash_u32;
pub use ipvs::{ConnView, CounterState, DestView, Ipvs, ServiceView, SyncConn, MAX_TIMEOUT};
pub use pe_sip::sip_callid;
pub use sched::{maglev_build, MAGLEV_NONE, MH_TAB_SIZE, SCHEDULER_NAMES};
pub use sysctl::{SysctlError, NAMES as SYSCTL_NAMES};
pub use time::Time;
pub use types::*;

/// Size in bytes of one connection-table entry.
pub const CONN_ENTRY_SIZE: usize = std::mem::size_of::<conn::Conn>();

#[cfg(test)]
mod send_check {
    fn is_send<T: Send>() {}
    #[test]
    fn ipvs_is_send() {
        is_send::<crate::Ipvs>();
    }
}
