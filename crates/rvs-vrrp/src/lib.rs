//! # rvs-vrrp — VRRP v2/v3 for rvs
//!
//! A keepalived-2.2.7-compatible VRRP implementation split quinn-proto style:
//!
//! - [`packet`]: smoltcp-style zero-copy codec for VRRP v2 (with the 8-byte
//!   PASS trailer) and v3 over IPv4/IPv6, with checksums.
//! - [`frame`]: the raw IPv4 header, gratuitous ARP and unsolicited NA the
//!   shell sends, built with rvs-wire.
//! - [`instance`]: the sans-IO state machine ([`Instance`]): time and packets
//!   in, [`Transmit`]s, [`Event`]s and a deadline out. No clock, no sockets.
//!   [`instance::reconcile`] implements sync groups.
//! - [`config`]: the `vrrp_instance` subset the machine needs.
//! - [`shell`] (Linux, tokio): raw IPPROTO 112 sockets, VIPs through
//!   [`rvs_netlink`] with *kernel-expiring lifetimes* renewed by the master,
//!   gratuitous ARP / unsolicited NA on AF_PACKET, notify scripts, vrrp_script
//!   runner, interface tracking. Entry point: [`shell::run`].
//!
//! See `README.md` in this crate for the design (notably why a SIGKILLed
//! rvs master does not keep the VIP, unlike keepalived).

pub mod config;
pub mod frame;
pub mod instance;
pub mod packet;
pub mod shell;

pub use config::{InitialState, InstanceConfig, NotifyScripts, Scope, TrackConfig, VipConfig};
pub use instance::{
    Counters, Event, Instance, InstanceStatus, NotifyKind, Reason, State, TakeOver, Transmit,
};
pub use packet::Version;
