//! The control API server: HTTP/1.1 + JSON on a unix socket (mode 0600).
//! `docs/API.md` documents every endpoint.

use crate::state::Daemon;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use rvs_api::{ApiError, Command, ErrorCode};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::net::UnixListener;
use tokio_util::sync::CancellationToken;

pub fn router(d: Arc<Daemon>) -> Router {
    Router::new()
        .route(rvs_api::COMMAND_PATH, post(command))
        .route("/v1/services", get(services))
        .route("/v1/connections", get(connections))
        .route("/v1/timeouts", get(timeouts))
        .route("/v1/info", get(info))
        .route("/v1/drops", get(drops))
        .with_state(d)
}

fn status_of(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::Exist => StatusCode::CONFLICT,
        ErrorCode::Srch | ErrorCode::NoEnt => StatusCode::NOT_FOUND,
        ErrorCode::Perm => StatusCode::FORBIDDEN,
        ErrorCode::NoMem => StatusCode::INSUFFICIENT_STORAGE,
        _ => StatusCode::BAD_REQUEST,
    }
}

fn respond(d: &Daemon, cmd: Command) -> Response {
    match d.handle(cmd) {
        Ok(r) => Json(r).into_response(),
        Err(e) => (status_of(e.code), Json(e)).into_response(),
    }
}

async fn command(State(d): State<Arc<Daemon>>, body: axum::body::Bytes) -> Response {
    match serde_json::from_slice::<Command>(&body) {
        Ok(cmd) => respond(&d, cmd),
        Err(e) => (
            StatusCode::BAD_REQUEST,
            Json(ApiError::new(
                ErrorCode::BadRequest,
                format!("malformed command: {e}"),
            )),
        )
            .into_response(),
    }
}

async fn services(State(d): State<Arc<Daemon>>) -> Response {
    respond(&d, Command::ListServices)
}
async fn connections(State(d): State<Arc<Daemon>>) -> Response {
    respond(&d, Command::ListConnections)
}
async fn timeouts(State(d): State<Arc<Daemon>>) -> Response {
    respond(&d, Command::GetTimeouts)
}
async fn info(State(d): State<Arc<Daemon>>) -> Response {
    respond(&d, Command::GetInfo)
}
async fn drops(State(d): State<Arc<Daemon>>) -> Response {
    let m: serde_json::Map<String, serde_json::Value> = d
        .shared
        .drops
        .snapshot()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.into()))
        .collect();
    Json(m).into_response()
}

/// Bind the control socket: create its directory (0700 when we create it),
/// refuse to start if another rvsd answers there, remove a stale socket file,
/// and make the socket 0600.
pub fn bind(path: &Path) -> anyhow::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() && !dir.exists() {
            std::fs::create_dir_all(dir).map_err(|e| {
                anyhow::anyhow!(
                    "cannot create the directory of control socket {}: {e} (choose another path with --socket PATH)",
                    path.display()
                )
            })?;
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
        }
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            anyhow::bail!(
                "another rvsd is already serving control socket {} (stop it, or start this one with --socket PATH)",
                path.display()
            );
        }
        std::fs::remove_file(path).map_err(|e| {
            anyhow::anyhow!("cannot remove stale control socket {}: {e}", path.display())
        })?;
    }
    let l = UnixListener::bind(path).map_err(|e| {
        anyhow::anyhow!(
            "cannot listen on control socket {}: {e} (choose another path with --socket PATH)",
            path.display()
        )
    })?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(l)
}

/// Serve until `stop` is cancelled, then remove the socket file.
pub async fn serve(l: UnixListener, path: PathBuf, d: Arc<Daemon>, stop: CancellationToken) {
    let app = router(d);
    let r = axum::serve(l, app)
        .with_graceful_shutdown(stop.cancelled_owned())
        .await;
    if let Err(e) = r {
        tracing::error!(error = %e, "control server failed");
    }
    let _ = std::fs::remove_file(&path);
}
