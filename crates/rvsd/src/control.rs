//! The control API server: HTTP/1.1 + JSON on a unix socket (mode 0600).
//! `docs/API.md` documents every endpoint.
//!
//! Requests are bounded: a body over [`MAX_BODY_BYTES`] gets 413 with a
//! JSON [`ApiError`]; a request line plus headers over [`MAX_HEAD_BYTES`],
//! or more than [`MAX_HEADERS`] headers, gets 431 from hyper; headers not
//! complete within [`HEADER_READ_TIMEOUT`] close the connection.

use crate::state::Daemon;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
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

/// Largest request body (one JSON `Command`). The largest command is well
/// under 1 KiB (`add_service` with every option), and `rvsadm -R` sends one
/// command per request, so 1 MiB leaves a wide margin while bounding what a
/// client can make rvsd buffer.
pub const MAX_BODY_BYTES: usize = 1 << 20;
/// Largest request line plus headers (rvsadm sends about 150 bytes).
pub const MAX_HEAD_BYTES: usize = 16 << 10;
/// Most headers in one request (rvsadm sends 4).
pub const MAX_HEADERS: usize = 32;
/// Time a client has to send its request line and headers.
pub const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

pub fn router(d: Arc<Daemon>) -> Router {
    Router::new()
        .route(rvs_api::COMMAND_PATH, post(command))
        .route("/v1/services", get(services))
        .route("/v1/connections", get(connections))
        .route("/v1/timeouts", get(timeouts))
        .route("/v1/info", get(info))
        .route("/v1/drops", get(drops))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(refuse_long_content))
        .with_state(d)
}

/// 413 with a JSON [`ApiError`] for a body over [`MAX_BODY_BYTES`].
fn too_large() -> Response {
    (
        StatusCode::PAYLOAD_TOO_LARGE,
        Json(ApiError::new(
            ErrorCode::BadRequest,
            format!(
                "request body larger than {} KiB: send one command per request",
                MAX_BODY_BYTES >> 10
            ),
        )),
    )
        .into_response()
}

/// Answer a declared `Content-Length` over the cap at once, without
/// waiting for a body that may never come (a chunked body over the cap is
/// caught while it is read, by `DefaultBodyLimit`).
async fn refuse_long_content(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let declared = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return too_large();
    }
    next.run(req).await
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

async fn command(
    State(d): State<Arc<Daemon>>,
    body: Result<axum::body::Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => return too_large(),
        Err(e) => {
            return (
                e.status(),
                Json(ApiError::new(
                    ErrorCode::BadRequest,
                    format!("cannot read the request body: {}", e.body_text()),
                )),
            )
                .into_response()
        }
    };
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

/// Serve until `stop` is cancelled (connections then finish their request),
/// then remove the socket file. Each connection is HTTP/1.1 with the head
/// limits above.
pub async fn serve(l: UnixListener, path: PathBuf, d: Arc<Daemon>, stop: CancellationToken) {
    let app = router(d);
    loop {
        let stream = tokio::select! {
            _ = stop.cancelled() => break,
            r = l.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    // EMFILE and the like: do not spin.
                    tracing::warn!(error = %e, "control socket accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let svc = hyper_util::service::TowerToHyperService::new(app.clone());
        let stop = stop.clone();
        tokio::spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .max_header_size(MAX_HEAD_BYTES)
                .max_headers(MAX_HEADERS)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc);
            tokio::pin!(conn);
            let r = tokio::select! {
                r = conn.as_mut() => r,
                _ = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = r {
                tracing::debug!(error = %e, "control connection ended with an error");
            }
        });
    }
    let _ = std::fs::remove_file(&path);
}
