//! rvsd as a library: the daemon's parts, so that tests (and the binary in
//! `main.rs`) can assemble them. See docs/ARCHITECTURE.md.

pub mod cli;
pub mod control;
pub mod convert;
pub mod demo;
pub mod keepalived;
pub mod observe;
pub mod runtime;
pub mod state;
pub mod sync;
pub mod sys;
pub mod upgrade;
pub mod vrrp;
