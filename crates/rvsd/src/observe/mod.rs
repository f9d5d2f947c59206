//! Observability: Prometheus `/metrics` and the web dashboard, served on the
//! optional `--metrics-listen` TCP address (off by default).
//!
//! Endpoints (all `GET`, read-only):
//! - `/metrics`: Prometheus text format 0.0.4, or OpenMetrics text when the
//!   scraper asks for it (`Accept: application/openmetrics-text`);
//! - `/`: the dashboard, one self-contained HTML page embedded in the binary
//!   (no external assets; a Content-Security-Policy forbids fetching any);
//! - `/api/state[?since=T]`: the JSON the dashboard polls: services with
//!   destinations, weights, health and rates, VRRP instances, recent events,
//!   drops, plus rate history points newer than Unix time `T`;
//! - `/healthz`: `ok`.
//!
//! Metrics are read from the daemon at scrape time; see `metrics.rs`.
//! `docs/OBSERVABILITY.md` lists every metric.

mod history;
mod metrics;
mod snapshot;

use crate::convert::svc_name;
use crate::state::Daemon;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use history::History;
use prometheus_client::registry::Registry;
use serde_json::{json, Map, Value};
use snapshot::Snapshot;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// The embedded dashboard.
const DASHBOARD: &str = include_str!("dashboard.html");

/// Only inline code and same-origin requests: the page fetches nothing else.
const CSP: &str = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                   connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; \
                   frame-ancestors 'none'";

/// Recent events the dashboard shows.
const EVENTS: usize = 50;

struct Ctx {
    daemon: Arc<Daemon>,
    registry: Registry,
    history: Arc<History>,
    started: f64,
}

/// The listener's routes (shared state: the daemon, the metrics registry and
/// the rate history).
fn router(ctx: Arc<Ctx>) -> Router {
    Router::new()
        .route("/", get(dashboard))
        .route("/index.html", get(dashboard))
        .route("/metrics", get(metrics_handler))
        .route("/api/state", get(state))
        .route("/healthz", get(|| async { "ok\n" }))
        .with_state(ctx)
}

/// Serve `/metrics` (and the dashboard) on `addr` until `stop`.
pub async fn serve(
    addr: SocketAddr,
    daemon: Arc<Daemon>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on --metrics-listen {addr}: {e}"))?;
    let history = Arc::new(History::default());
    tokio::spawn(history.clone().run(daemon.clone(), stop.clone()));
    let ctx = Arc::new(Ctx {
        registry: metrics::registry(daemon.clone()),
        daemon,
        history,
        started: history::unix_now(),
    });
    tracing::info!(%addr, "metrics and dashboard listening (http://{addr}/)");
    axum::serve(listener, router(ctx))
        .with_graceful_shutdown(stop.cancelled_owned())
        .await?;
    Ok(())
}

async fn dashboard() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        DASHBOARD,
    )
        .into_response()
}

async fn metrics_handler(State(ctx): State<Arc<Ctx>>, headers: HeaderMap) -> Response {
    let openmetrics = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/openmetrics-text"));
    match metrics::render(&ctx.registry, openmetrics) {
        Ok((body, ctype)) => (
            [(header::CONTENT_TYPE, HeaderValue::from_static(ctype))],
            body,
        )
            .into_response(),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot encode the metrics\n",
        )
            .into_response(),
    }
}

/// `since=T` from the query string (0 when absent or malformed).
fn since(q: Option<&str>) -> f64 {
    q.into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|kv| kv.strip_prefix("since="))
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|v| v.is_finite())
        .unwrap_or(0.0)
}

async fn state(State(ctx): State<Arc<Ctx>>, RawQuery(q): RawQuery) -> Response {
    let body = build_state(&ctx, since(q.as_deref()));
    ([(header::CACHE_CONTROL, "no-store")], Json(body)).into_response()
}

/// The dashboard's view: the snapshot, health merged into destinations.
fn build_state(ctx: &Ctx, since: f64) -> Value {
    let d = &ctx.daemon;
    let snap = Snapshot::take(d);
    let services: Vec<Value> = snap
        .services
        .iter()
        .map(|s| service_json(&snap, s))
        .collect();
    let vrrp = snapshot::vrrp_instances(&snap.vrrp);
    let drops: Map<String, Value> = snap
        .drops
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    let hist: HashMap<String, Vec<history::Point>> = ctx.history.since(since);
    let now = history::unix_now();
    json!({
        "time": now,
        "version": env!("CARGO_PKG_VERSION"),
        "engine": snap.engine,
        "uptime_secs": (now - ctx.started).max(0.0),
        "reloads": snap.reloads,
        "last_reload_ok": snap.last_reload_ok,
        "has_checks": snapshot::check_servers(&snap.checks).next().is_some(),
        "services": services,
        "vrrp": vrrp,
        "events": snapshot::recent_events(d, EVENTS),
        "drops": drops,
        "history": hist,
    })
}

fn service_json(snap: &Snapshot, s: &rvs_api::ServiceInfo) -> Value {
    use snapshot::{bool_field, str_field, u64_field};
    let name = svc_name(&s.spec.key);
    let health = snap.health_of(&s.spec.key);
    // Health status of a real server by address, from the checks view.
    let rs_health = |rs: &str| -> Option<Value> {
        let vs = health?;
        let r = snapshot::real_servers(vs).find(|r| str_field(r, "addr") == Some(rs))?;
        let checkers: Vec<Value> = snapshot::checkers(r)
            .map(|c| {
                json!({
                    "kind": str_field(c, "kind"),
                    "connect": str_field(c, "connect"),
                    "up": bool_field(c, "up"),
                    "has_run": bool_field(c, "has_run"),
                    "last_error": str_field(c, "last_error"),
                    "transitions": c.get("counters").and_then(Value::as_object)
                        .and_then(|m| u64_field(m, "transitions")),
                })
            })
            .collect();
        Some(json!({
            "alive": bool_field(r, "alive"),
            "in_table": bool_field(r, "in_table"),
            "weight": u64_field(r, "weight"),
            "checkers": checkers,
        }))
    };
    let mut dests: Vec<Value> = s
        .dests
        .iter()
        .map(|d| {
            let rs = SocketAddr::new(d.spec.addr, d.spec.port).to_string();
            json!({
                "rs": rs,
                "key": history::dest_key(&name, SocketAddr::new(d.spec.addr, d.spec.port)),
                "fwd": d.spec.fwd.name(),
                "weight": d.spec.weight,
                "active": d.active_conns,
                "inactive": d.inact_conns,
                "persistent": d.persist_conns,
                "stats": d.stats,
                "rates": d.rates,
                "in_table": true,
                "health": rs_health(&rs),
            })
        })
        .collect();
    // Real servers the health checks took out of the table still show, down.
    if let Some(vs) = health {
        for r in snapshot::real_servers(vs) {
            let Some(addr) = str_field(r, "addr") else {
                continue;
            };
            if s.dests
                .iter()
                .any(|d| SocketAddr::new(d.spec.addr, d.spec.port).to_string() == addr)
            {
                continue;
            }
            dests.push(json!({
                "rs": addr,
                "key": format!("{name} {addr}"),
                "fwd": Value::Null,
                "weight": u64_field(r, "weight"),
                "in_table": false,
                "health": rs_health(addr),
            }));
        }
    }
    json!({
        "name": name,
        "display": snapshot::svc_display(&s.spec.key),
        "key": s.spec.key,
        "scheduler": s.spec.scheduler,
        "persistent": s.spec.flags & rvs_api::svc_flags::PERSISTENT != 0,
        "timeout": s.spec.timeout,
        "active": s.dests.iter().map(|d| u64::from(d.active_conns)).sum::<u64>(),
        "inactive": s.dests.iter().map(|d| u64::from(d.inact_conns)).sum::<u64>(),
        "stats": s.stats,
        "rates": s.rates,
        "health": health.map(|vs| json!({
            "quorum_up": bool_field(vs, "quorum_up"),
            "sorry_active": bool_field(vs, "sorry_active"),
            "alive_weight": u64_field(vs, "alive_weight"),
        })),
        "dests": dests,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_parameter() {
        assert_eq!(since(None), 0.0);
        assert_eq!(since(Some("since=12.5")), 12.5);
        assert_eq!(since(Some("a=1&since=3")), 3.0);
        assert_eq!(since(Some("since=NaN")), 0.0);
        assert_eq!(since(Some("since=x")), 0.0);
    }

    #[test]
    fn dashboard_is_self_contained() {
        // No external scripts, styles, fonts or images (the SVG namespace
        // is a name, not a fetch).
        let page = DASHBOARD.replace("http://www.w3.org/2000/svg", "");
        for bad in ["http://", "https://", "src=\"//", "@import"] {
            assert!(
                !page.contains(bad),
                "dashboard references an external asset: {bad}"
            );
        }
    }
}
