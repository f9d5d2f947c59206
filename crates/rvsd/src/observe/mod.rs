//! Observability: Prometheus `/metrics` and the web dashboard, served on the
//! optional `--metrics-listen` TCP address.

use crate::state::Daemon;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Serve `/metrics` (and the dashboard) on `addr` until `stop`.
pub async fn serve(
    addr: SocketAddr,
    daemon: Arc<Daemon>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let _ = (addr, daemon, stop);
    Ok(())
}
