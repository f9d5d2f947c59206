//! rvs data-plane engines.
//!
//! Every engine drives the same sans-IO model, [`rvs_core::Ipvs`], held in
//! [`Shared`]: for each new flow it asks the table for a destination (which
//! runs the scheduler, persistence templates, thresholds and weights exactly
//! as the kernel would), and it reports every packet-level event back so that
//! connection states, ActiveConn/InActConn, counters and rates — everything
//! `rvsadm` shows — stay true.
//!
//! Engines:
//! - [`proxy::ProxyEngine`] — the embedded default. A socket relay (TCP and
//!   UDP) that needs no root and no special kernel. See its module docs for
//!   how relay events map to IPVS connection states and counters.
//!
//! The daemon tells an engine which virtual services exist with
//! [`Engine::reconcile`]; engines start and stop their listeners to match
//! without disturbing other services or established connections.

pub mod proxy;

use parking_lot::Mutex;
use rvs_core::{Ipvs, Protocol, Time};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The table and the clock every part of rvsd shares.
pub struct Shared {
    /// The IPVS model. Held only for short, non-blocking critical sections.
    pub ipvs: Mutex<Ipvs>,
    clock: Clock,
    /// Data-plane drop and error counters.
    pub drops: DropCounters,
}

/// Where [`Shared::now`] comes from: the monotonic clock, or a manual clock
/// that tests advance explicitly.
pub enum Clock {
    Real(std::time::Instant),
    Manual(AtomicU64),
}

impl Shared {
    pub fn new(ipvs: Ipvs) -> Arc<Self> {
        Self::with_clock(ipvs, Clock::Real(std::time::Instant::now()))
    }

    pub fn with_clock(ipvs: Ipvs, clock: Clock) -> Arc<Self> {
        Arc::new(Shared {
            ipvs: Mutex::new(ipvs),
            clock,
            drops: DropCounters::default(),
        })
    }

    /// Monotonic time for the sans-IO core.
    pub fn now(&self) -> Time {
        match &self.clock {
            Clock::Real(base) => Time::from_millis(base.elapsed().as_millis() as u64),
            Clock::Manual(ms) => Time::from_millis(ms.load(Ordering::Relaxed)),
        }
    }

    /// Move a manual clock forward (no effect on the real clock).
    pub fn advance(&self, d: std::time::Duration) {
        if let Clock::Manual(ms) = &self.clock {
            ms.fetch_add(d.as_millis() as u64, Ordering::Relaxed);
        }
    }
}

/// An engine that serves nothing: for tests and for `-C`-style runs that
/// only keep the table.
pub struct NullEngine;

impl Engine for NullEngine {
    fn name(&self) -> &'static str {
        "none"
    }
    fn reconcile(&self, _wanted: &[ListenKey]) {}
    fn shutdown(&self) {}
}

/// Why a flow or packet was dropped (or a relay failed), counted.
#[derive(Debug, Default)]
pub struct DropCounters {
    /// The service had no usable destination (IPVS: ICMP port unreachable).
    pub no_dest: AtomicU64,
    /// The table did not take the flow (no service, not schedulable).
    pub not_ours: AtomicU64,
    /// Dropped by the table (e.g. connection to a deleted destination).
    pub table_drop: AtomicU64,
    /// connect() to a real server failed or timed out (then the next one is tried).
    pub connect_failed: AtomicU64,
    /// All attempts to reach a real server failed; the client was closed.
    pub connect_gave_up: AtomicU64,
    /// accept() failed for lack of file descriptors or memory (back-pressure applied).
    pub accept_resource: AtomicU64,
    /// Relays that ended with an I/O error (reset by a peer, ...).
    pub relay_error: AtomicU64,
    /// Relays closed because they were idle longer than the IPVS timeout.
    pub idle_timeout: AtomicU64,
    /// Listeners that could not be opened.
    pub bind_failed: AtomicU64,
}

impl DropCounters {
    pub(crate) fn inc(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// `(reason, count)` pairs, for the API and metrics.
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        vec![
            ("no_dest", g(&self.no_dest)),
            ("not_ours", g(&self.not_ours)),
            ("table_drop", g(&self.table_drop)),
            ("connect_failed", g(&self.connect_failed)),
            ("connect_gave_up", g(&self.connect_gave_up)),
            ("accept_resource", g(&self.accept_resource)),
            ("relay_error", g(&self.relay_error)),
            ("idle_timeout", g(&self.idle_timeout)),
            ("bind_failed", g(&self.bind_failed)),
        ]
    }
}

/// A virtual service an engine serves: protocol and VIP:port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ListenKey {
    pub proto: Protocol,
    pub addr: SocketAddr,
}

/// A firewall-mark virtual service an engine serves (`ipvsadm -A -f MARK`,
/// `-6` for IPv6): packets of that family carrying `skb->mark == mark`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FwmarkKey {
    pub mark: u32,
    pub v6: bool,
}

/// What the daemon needs from a data-plane engine.
pub trait Engine: Send + Sync {
    /// Engine name (`proxy`, `packet`).
    fn name(&self) -> &'static str;
    /// Serve exactly these virtual services: open what is missing, close
    /// what is gone. Established flows of a removed service keep running
    /// until they end, as IPVS connections outlive their service's listener.
    fn reconcile(&self, wanted: &[ListenKey]);
    /// Serve exactly these firewall-mark services (in addition to the
    /// address services of [`Engine::reconcile`]). Only engines that see
    /// packet marks can; the default ignores them.
    fn reconcile_fwmarks(&self, _marks: &[FwmarkKey]) {}
    /// Stop all listeners.
    fn shutdown(&self);
}
