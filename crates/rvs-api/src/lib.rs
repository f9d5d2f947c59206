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

/// Default path of the control socket (when running as root).
pub const DEFAULT_SOCKET: &str = "/run/rvs/rvsd.sock";

/// The socket path rvsd and rvsadm use when none is given: `$RVS_SOCKET`,
/// else [`DEFAULT_SOCKET`] for root, else a per-user path
/// (`$XDG_RUNTIME_DIR/rvs/rvsd.sock`, or `/tmp/rvs-UID/rvsd.sock`) so that
/// rvs runs without root.
pub fn default_socket_path() -> std::path::PathBuf {
    use std::path::PathBuf;
    if let Some(p) = std::env::var_os(SOCKET_ENV) {
        if !p.is_empty() {
            return PathBuf::from(p);
        }
    }
    // SAFETY: geteuid() has no preconditions and cannot fail.
    let uid = unsafe { libc_geteuid() };
    if uid == 0 {
        return PathBuf::from(DEFAULT_SOCKET);
    }
    if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR") {
        if !d.is_empty() {
            return PathBuf::from(d).join("rvs").join("rvsd.sock");
        }
    }
    PathBuf::from(format!("/tmp/rvs-{uid}/rvsd.sock"))
}

extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}
/// Environment variable that overrides the socket path for `rvsadm`.
pub const SOCKET_ENV: &str = "RVS_SOCKET";
/// The one RPC endpoint: `POST` a JSON [`Command`], get a JSON [`Reply`]
/// (HTTP 200) or [`ApiError`] (HTTP 4xx/5xx).
pub const COMMAND_PATH: &str = "/v1/command";
