//! rvs control API.
//!
//! `rvsd` serves this API as HTTP/1.1 + JSON on a unix socket (default
//! [`DEFAULT_SOCKET`], mode 0600). It is the user-space equivalent of the
//! kernel's IPVS generic-netlink family: every `rvsadm` invocation is one or
//! more [`Command`]s posted to [`COMMAND_PATH`], answered by a [`Reply`] or an
//! [`ApiError`] carrying an errno-like [`ErrorCode`] (so `rvsadm` can print
//! exactly the message ipvsadm prints for the same kernel error).
//!
//! The types here are plain data: they do not depend on `rvs-core`, so the CLI
//! and any other client (dashboard, tests) stay independent of the model's
//! internals. `rvsd` converts between these and the core model.
//!
//! See `docs/API.md` for the wire-level description of every endpoint.

mod client;
mod types;

pub use client::{Client, ClientError};
pub use types::*;

/// Default path of the control socket.
pub const DEFAULT_SOCKET: &str = "/run/rvs/rvsd.sock";
/// Environment variable that overrides the socket path for `rvsadm`.
pub const SOCKET_ENV: &str = "RVS_SOCKET";
/// The one RPC endpoint: `POST` a JSON [`Command`], get a JSON [`Reply`]
/// (HTTP 200) or [`ApiError`] (HTTP 4xx/5xx).
pub const COMMAND_PATH: &str = "/v1/command";
