//! What the machine asks of its IO shell.

use std::net::SocketAddr;

use serde::Serialize;

use crate::config::ScriptConfig;

/// Why a script is run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ScriptReason {
    /// Real server `notify_up`.
    NotifyUp,
    /// Real server `notify_down`.
    NotifyDown,
    /// Virtual server `quorum_up`.
    QuorumUp,
    /// Virtual server `quorum_down`.
    QuorumDown,
}

/// Output of the machine, to be applied in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Add the real server to the service (keepalived LVS_CMD_ADD_DEST). May be
    /// emitted for a destination that already exists: treat as upsert.
    AddDest {
        /// Real server.
        rs: SocketAddr,
        /// IPVS weight.
        weight: u32,
    },
    /// Remove the real server (LVS_CMD_DEL_DEST).
    RemoveDest {
        /// Real server.
        rs: SocketAddr,
    },
    /// Change the weight of an existing destination (inhibit_on_failure, misc_dynamic, ...).
    SetWeight {
        /// Real server.
        rs: SocketAddr,
        /// New IPVS weight.
        weight: u32,
    },
    /// Add the sorry server.
    AddSorry {
        /// Sorry server.
        addr: SocketAddr,
        /// IPVS weight (0 for a sorry_server_inhibit placeholder).
        weight: u32,
    },
    /// Remove the sorry server.
    RemoveSorry {
        /// Sorry server.
        addr: SocketAddr,
    },
    /// Change the sorry server's weight (sorry_server_inhibit).
    SetSorryWeight {
        /// Sorry server.
        addr: SocketAddr,
        /// New weight.
        weight: u32,
    },
    /// Run a notify/quorum script. keepalived passes no extra arguments to
    /// checker notify scripts: run `script.cmd` as configured.
    RunScript {
        /// The script.
        script: ScriptConfig,
        /// Why.
        reason: ScriptReason,
    },
    /// A keepalived-compatible log line (LOG_INFO).
    Log {
        /// Text.
        text: String,
    },
}
