//! TCP_CHECK.

use super::net::{tcp_connect, ConnectError};
use crate::config::{fmt_trio, CheckerConfig, Protocol};
use crate::machine::ProbeResult;

/// TCP_CHECK: a connect within `connect_timeout` is a success.
pub async fn probe_tcp(cfg: &CheckerConfig) -> ProbeResult {
    let label = fmt_trio(cfg.connect, Protocol::Tcp);
    match tcp_connect(cfg).await {
        Ok(_) => ProbeResult::success(),
        Err(ConnectError::Timeout) => {
            ProbeResult::failure(format!("TCP connection to {label} timedout."))
        }
        Err(ConnectError::Socket(e)) => {
            ProbeResult::failure(format!("TCP socket bind failed ({e})."))
        }
        Err(ConnectError::Failed(_)) => {
            ProbeResult::failure(format!("TCP connection to {label} failed."))
        }
    }
}
