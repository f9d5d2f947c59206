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
use axum::Router;
use history::History;
use prometheus_client::registry::Registry;
use rvs_api::{Rates, ServiceInfo, ServiceKey, Stats};
use serde::Serialize;
use serde_json::{Map, Value};
use snapshot::Snapshot;
use std::collections::{BTreeMap, HashMap};
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
    match build_state(&ctx, since(q.as_deref())) {
        Ok(body) => (
            [
                (header::CONTENT_TYPE, "application/json"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            body,
        )
            .into_response(),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot encode the state\n",
        )
            .into_response(),
    }
}

/// `/api/state`: the dashboard's view (see docs/OBSERVABILITY.md).
#[derive(Serialize)]
struct StateView<'a> {
    time: f64,
    version: &'static str,
    engine: &'static str,
    uptime_secs: f64,
    reloads: u64,
    last_reload_ok: bool,
    has_checks: bool,
    services: Vec<SvcView<'a>>,
    vrrp: Vec<snapshot::VrrpInstance>,
    events: Vec<crate::state::Event>,
    drops: BTreeMap<&'static str, u64>,
    history: HashMap<String, Vec<history::Point>>,
}

#[derive(Serialize)]
struct SvcView<'a> {
    name: String,
    display: String,
    key: &'a ServiceKey,
    scheduler: &'a str,
    persistent: bool,
    timeout: u32,
    active: u64,
    inactive: u64,
    stats: &'a Stats,
    rates: &'a Rates,
    health: Option<SvcHealth>,
    dests: Vec<DestView<'a>>,
}

#[derive(Serialize)]
struct SvcHealth {
    quorum_up: Option<bool>,
    sorry_active: Option<bool>,
    alive_weight: Option<u64>,
}

/// A destination; the table fields are absent for a real server the health
/// checks took out of the table.
#[derive(Serialize)]
struct DestView<'a> {
    rs: String,
    #[serde(skip)]
    addr: Option<SocketAddr>,
    key: String,
    fwd: Option<&'static str>,
    weight: Option<u64>,
    active: Option<u32>,
    inactive: Option<u32>,
    persistent: Option<u32>,
    stats: Option<&'a Stats>,
    rates: Option<&'a Rates>,
    in_table: bool,
    health: Option<RsHealth<'a>>,
}

#[derive(Serialize)]
struct RsHealth<'a> {
    alive: Option<bool>,
    in_table: Option<bool>,
    weight: Option<u64>,
    checkers: Vec<CheckerView<'a>>,
}

#[derive(Serialize)]
struct CheckerView<'a> {
    kind: Option<&'a str>,
    connect: Option<&'a str>,
    up: Option<bool>,
    has_run: Option<bool>,
    last_error: Option<&'a str>,
    transitions: Option<u64>,
}

/// The dashboard's view as JSON: the snapshot, health merged into
/// destinations, history points newer than `since`.
fn build_state(ctx: &Ctx, since: f64) -> serde_json::Result<Vec<u8>> {
    let d = &ctx.daemon;
    let snap = Snapshot::take(d);
    // Sorted like `ipvsadm -L`: by protocol, address, port; marks last.
    let mut order: Vec<&ServiceInfo> = snap.services.iter().collect();
    order.sort_by_key(|s| match s.spec.key {
        ServiceKey::Addr {
            protocol,
            addr,
            port,
        } => (0, protocol.number(), Some(addr), port, 0),
        ServiceKey::Fwmark { mark, family } => (
            1,
            0,
            None,
            0,
            u64::from(mark) * 2 + u64::from(family == rvs_api::Family::Inet6),
        ),
    });
    let now = history::unix_now();
    let view = StateView {
        time: now,
        version: env!("CARGO_PKG_VERSION"),
        engine: snap.engine,
        uptime_secs: (now - ctx.started).max(0.0),
        reloads: snap.reloads,
        last_reload_ok: snap.last_reload_ok,
        has_checks: snapshot::check_servers(&snap.checks).next().is_some(),
        services: order.into_iter().map(|s| service_view(&snap, s)).collect(),
        vrrp: snapshot::vrrp_instances(&snap.vrrp),
        events: snapshot::recent_events(d, EVENTS),
        drops: snap.drops.iter().copied().collect(),
        history: ctx.history.since(since),
    };
    serde_json::to_vec(&view)
}

fn rs_health(r: &Map<String, Value>) -> RsHealth<'_> {
    use snapshot::{bool_field, str_field, u64_field};
    RsHealth {
        alive: bool_field(r, "alive"),
        in_table: bool_field(r, "in_table"),
        weight: u64_field(r, "weight"),
        checkers: snapshot::checkers(r)
            .map(|c| CheckerView {
                kind: str_field(c, "kind"),
                connect: str_field(c, "connect"),
                up: bool_field(c, "up"),
                has_run: bool_field(c, "has_run"),
                last_error: str_field(c, "last_error"),
                transitions: c
                    .get("counters")
                    .and_then(Value::as_object)
                    .and_then(|m| u64_field(m, "transitions")),
            })
            .collect(),
    }
}

fn service_view<'a>(snap: &'a Snapshot, s: &'a ServiceInfo) -> SvcView<'a> {
    use snapshot::{bool_field, str_field, u64_field};
    let name = svc_name(&s.spec.key);
    let health = snap.health_of(&s.spec.key);
    let checked = |rs: &str| {
        health.and_then(|vs| snapshot::real_servers(vs).find(|r| str_field(r, "addr") == Some(rs)))
    };
    let mut dests: Vec<DestView> = s
        .dests
        .iter()
        .map(|d| {
            let addr = SocketAddr::new(d.spec.addr, d.spec.port);
            let rs = addr.to_string();
            DestView {
                key: history::dest_key(&name, addr),
                addr: Some(addr),
                fwd: Some(d.spec.fwd.name()),
                weight: Some(u64::from(d.spec.weight)),
                active: Some(d.active_conns),
                inactive: Some(d.inact_conns),
                persistent: Some(d.persist_conns),
                stats: Some(&d.stats),
                rates: Some(&d.rates),
                in_table: true,
                health: checked(&rs).map(rs_health),
                rs,
            }
        })
        .collect();
    // Real servers the health checks took out of the table still show, down.
    for r in health.into_iter().flat_map(snapshot::real_servers) {
        let Some(rs) = str_field(r, "addr") else {
            continue;
        };
        if dests.iter().any(|d| d.rs == rs) {
            continue;
        }
        dests.push(DestView {
            rs: rs.to_string(),
            addr: rs.parse().ok(),
            key: format!("{name} {rs}"),
            fwd: None,
            weight: u64_field(r, "weight"),
            active: None,
            inactive: None,
            persistent: None,
            stats: None,
            rates: None,
            in_table: false,
            health: Some(rs_health(r)),
        });
    }
    dests.sort_by_key(|d| d.addr);
    SvcView {
        display: snapshot::svc_display(&s.spec.key),
        name,
        key: &s.spec.key,
        scheduler: &s.spec.scheduler,
        persistent: s.spec.flags & rvs_api::svc_flags::PERSISTENT != 0,
        timeout: s.spec.timeout,
        active: s.dests.iter().map(|d| u64::from(d.active_conns)).sum(),
        inactive: s.dests.iter().map(|d| u64::from(d.inact_conns)).sum(),
        stats: &s.stats,
        rates: &s.rates,
        health: health.map(|vs| SvcHealth {
            quorum_up: bool_field(vs, "quorum_up"),
            sorry_active: bool_field(vs, "sorry_active"),
            alive_weight: u64_field(vs, "alive_weight"),
        }),
        dests,
    }
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
