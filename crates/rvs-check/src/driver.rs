//! The async driver that pumps a [`VirtualServer`]: it sleeps until the
//! machine's next deadline, runs due probes ([`crate::probe`]) as tokio
//! tasks, feeds their results back and sends the machine's actions on.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::{CheckerConfig, VirtualServerConfig};
use crate::machine::{Action, CheckerId, ProbeResult, VirtualServer, VirtualServerStatus};
use crate::probe::{probe_cap, run_probe};
use crate::script;

/// Shared status snapshot, refreshed after every event.
pub type StatusHandle = Arc<Mutex<VirtualServerStatus>>;

/// How [`run_virtual_server`] handles the non-table actions, and its inputs.
#[derive(Debug)]
pub struct DriverOptions {
    /// Execute `RunScript` actions itself (fire and forget). Default true.
    pub run_scripts: bool,
    /// Emit `Log` actions through `tracing` (target `rvs_check`, INFO). Default true.
    pub log: bool,
    /// Also send `Log` / `RunScript` actions on the channel. Default false
    /// (only table actions are sent).
    pub forward_all: bool,
    /// ha_suspend: `true` suspends the checkers (VIP absent). `None` = never.
    pub suspend: Option<watch::Receiver<bool>>,
    /// Seed for warmup jitter (`None` = random).
    pub seed: Option<u64>,
    /// New configurations of this virtual server (SIGHUP reload): applied with
    /// [`VirtualServer::reload`], keeping the state of unchanged real servers.
    pub reload: Option<mpsc::Receiver<VirtualServerConfig>>,
    /// Start from the status a predecessor process left (binary upgrade),
    /// with [`VirtualServer::take_over`], instead of keepalived's start-up.
    pub initial: Option<VirtualServerStatus>,
}

impl Default for DriverOptions {
    fn default() -> Self {
        DriverOptions {
            run_scripts: true,
            log: true,
            forward_all: false,
            suspend: None,
            seed: None,
            reload: None,
            initial: None,
        }
    }
}

async fn dispatch(
    vs: &mut VirtualServer,
    opts: &DriverOptions,
    tx: &mpsc::Sender<(String, Action)>,
) {
    while let Some(a) = vs.poll_action() {
        let table = match &a {
            Action::Log { text } => {
                if opts.log {
                    tracing::info!(target: "rvs_check", "{text}");
                }
                false
            }
            Action::RunScript { script, .. } => {
                if opts.run_scripts {
                    script::spawn_notify(script);
                }
                false
            }
            _ => true,
        };
        if table || opts.forward_all {
            let _ = tx.send((vs.name().to_string(), a)).await;
        }
    }
}

/// Drive one virtual server until `cancel` fires: sleep until the machine's
/// next deadline, run due probes concurrently, feed results back, and send
/// table actions (`AddDest`, `RemoveDest`, `SetWeight`, `AddSorry`,
/// `RemoveSorry`, `SetSorryWeight`) on `action_tx` tagged with the VS name.
/// On cancellation the machine's shutdown actions (remove all destinations;
/// omega scripts) are sent too.
pub async fn run_virtual_server(
    cfg: VirtualServerConfig,
    mut opts: DriverOptions,
    action_tx: mpsc::Sender<(String, Action)>,
    cancel: CancellationToken,
    status: StatusHandle,
) {
    let mut checkers: Vec<Vec<CheckerConfig>> = cfg
        .real_servers
        .iter()
        .map(|r| r.checkers.clone())
        .collect();
    let seed = opts.seed.unwrap_or_else(rand::random);
    let mut vs = match opts.initial.take() {
        Some(prev) => VirtualServer::take_over(cfg, &prev, Instant::now(), seed),
        None => VirtualServer::new(cfg, Instant::now(), seed),
    };
    let mut tasks: JoinSet<ProbeResult> = JoinSet::new();
    let mut in_flight: HashMap<tokio::task::Id, CheckerId> = HashMap::new();
    let mut suspend = opts.suspend.take();
    let mut reload = opts.reload.take();
    if let Some(rx) = &suspend {
        vs.set_suspended(*rx.borrow());
    }
    loop {
        dispatch(&mut vs, &opts, &action_tx).await;
        if let Ok(mut st) = status.lock() {
            *st = vs.status(Instant::now());
        }
        let deadline = vs.poll_timeout();
        let sleep = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
                None => std::future::pending().await,
            }
        };
        let suspend_changed = async {
            match suspend.as_mut() {
                Some(rx) => rx.changed().await.is_ok(),
                None => std::future::pending().await,
            }
        };
        let reload_next = async {
            match reload.as_mut() {
                Some(rx) => rx.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = cancel.cancelled() => break,
            new_cfg = reload_next => {
                match new_cfg {
                    Some(new_cfg) => {
                        tasks.abort_all();
                        in_flight.clear();
                        checkers = new_cfg.real_servers.iter().map(|r| r.checkers.clone()).collect();
                        vs.reload(new_cfg, Instant::now(), rand::random());
                    }
                    None => reload = None,
                }
            }
            Some(joined) = tasks.join_next_with_id(), if !tasks.is_empty() => {
                let (task, res) = match joined {
                    Ok((task, res)) => (task, res),
                    Err(e) => (e.id(), ProbeResult::failure("probe task failed")),
                };
                if let Some(id) = in_flight.remove(&task) {
                    vs.handle_result(Instant::now(), id, &res);
                }
            }
            changed = suspend_changed => {
                match (changed, suspend.as_ref()) {
                    (true, Some(rx)) => { let s = *rx.borrow(); vs.set_suspended(s); }
                    _ => suspend = None,
                }
            }
            _ = sleep => {
                vs.handle_timeout(Instant::now());
                while let Some(p) = vs.poll_probe() {
                    let Some(cc) = checkers.get(p.id.rs).and_then(|c| c.get(p.id.checker)).cloned() else { continue };
                    let id = p.id;
                    let handle = tasks.spawn(async move {
                        let cap = probe_cap(&cc);
                        match tokio::time::timeout(cap, run_probe(&cc, &p)).await {
                            Ok(r) => r,
                            Err(_) => ProbeResult::failure("probe timed out"),
                        }
                    });
                    in_flight.insert(handle.id(), id);
                }
            }
        }
    }
    tasks.abort_all();
    vs.shutdown();
    dispatch(&mut vs, &opts, &action_tx).await;
    if let Ok(mut st) = status.lock() {
        *st = vs.status(Instant::now());
    }
}
