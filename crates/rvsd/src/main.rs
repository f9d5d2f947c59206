//! rvsd — the rvs daemon. See `rvsd --help` and docs/ARCHITECTURE.md.

use rvs_core::Ipvs;
use rvs_dataplane::proxy::{ProxyEngine, ProxyOptions};
use rvs_dataplane::{Engine, Shared};
use rvsd::cli::{self, Args, LogFormat, Mode};
use rvsd::{control, demo, runtime, state};
use state::Daemon;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

fn main() -> ExitCode {
    let args = match cli::parse(std::env::args_os().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("rvsd: {e}");
            return ExitCode::from(2);
        }
    };
    match args.mode {
        Mode::Help => {
            print!("{}", cli::USAGE);
            return ExitCode::SUCCESS;
        }
        Mode::Version => {
            println!("rvsd {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Mode::ConfigTest | Mode::DumpConfig => return config_test(&args),
        Mode::Run => {}
    }
    init_logging(&args);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("rvsd")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("rvsd: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rvsd: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn init_logging(args: &Args) {
    use tracing_subscriber::EnvFilter;
    let default = if args.log_detail { "debug" } else { "info" };
    let filter = EnvFilter::try_from_env("RVS_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    use std::io::IsTerminal;
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match args.log_format {
        LogFormat::Json => b.json().init(),
        LogFormat::Text => b.init(),
    }
}

struct PidFile(PathBuf);
impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let socket = args
        .socket
        .clone()
        .unwrap_or_else(rvs_api::default_socket_path);
    // Started by an upgrade (SIGUSR2 of a running rvsd)?
    let incoming = match rvsd::upgrade::incoming() {
        Ok(i) => i,
        Err(e) => anyhow::bail!("upgrade refused: {e}"),
    };
    // The configuration first: one that no longer loads, or has errors,
    // refuses an upgrade before anything is taken over (the old rvsd goes on
    // serving), as a SIGHUP reload keeps the running configuration.
    let loaded = match (&args.config, &incoming) {
        (Some(path), Some(inc)) => {
            let why = match runtime::load(path, &load_options(&args)) {
                Ok(l) if !l.has_errors() => Ok(l),
                Ok(l) => {
                    for d in &l.diagnostics {
                        warn!("{d}");
                    }
                    Err(format!(
                        "the configuration {} has errors (see the new rvsd's log); fix it and upgrade again",
                        path.display()
                    ))
                }
                Err(e) => Err(format!("the configuration cannot be loaded: {e}")),
            };
            match why {
                Ok(l) => Some(l),
                Err(why) => {
                    inc.refuse(&why);
                    anyhow::bail!("upgrade refused: {why}");
                }
            }
        }
        (Some(path), None) => Some(runtime::load(path, &load_options(&args))?),
        (None, _) => None,
    };
    let shared = Shared::new(Ipvs::new());
    let mut proxy: Option<Arc<ProxyEngine>> = None;
    let mut packet: Option<Arc<rvs_packet::PacketEngine>> = None;
    let engine: Arc<dyn Engine> = match args.engine.as_str() {
        "packet" | "xdp" => {
            let Some(ifname) = &args.interface else {
                anyhow::bail!("--engine {} needs --interface IF (the director's interface towards clients and real servers)", args.engine);
            };
            let mut popts = rvs_packet::PacketOptions::new(ifname);
            if incoming.is_some() {
                // forward nothing, leave nftables alone until the handover
                popts.gate = rvs_packet::Handover::Discard;
            }
            let new_packet =
                |shared: Arc<Shared>| -> anyhow::Result<Arc<rvs_packet::PacketEngine>> {
                    let pe = rvs_packet::PacketEngine::new(shared, popts.clone())
                    .map_err(|e| anyhow::anyhow!("cannot start the packet engine on {ifname}: {e} (it needs root, or CAP_NET_RAW and CAP_NET_ADMIN; or use --engine proxy)"))?;
                    Ok(Arc::new(pe))
                };
            let xdp = if args.engine == "xdp" {
                match rvs_xdp::XdpEngine::new(shared.clone(), rvs_xdp::XdpOptions::new(ifname)) {
                    Ok(x) => Some(Arc::new(x)),
                    Err(e) => {
                        warn!(interface = %ifname, error = %e, "AF_XDP engine unavailable, falling back to the AF_PACKET engine");
                        None
                    }
                }
            } else {
                None
            };
            match xdp {
                Some(x) => x,
                None => {
                    let pe = new_packet(shared.clone())?;
                    packet = Some(pe.clone());
                    pe
                }
            }
        }
        _ => {
            let p = Arc::new(ProxyEngine::new(shared.clone(), ProxyOptions::default()));
            proxy = Some(p.clone());
            p
        }
    };
    let daemon = Daemon::new(shared.clone(), engine.clone());

    let (listener, incoming) = match incoming {
        Some(mut inc) => {
            inc.control
                .set_nonblocking(true)
                .map_err(|e| anyhow::anyhow!("control socket from the upgrade: {e}"))?;
            let l = tokio::net::UnixListener::from_std(inc.control.try_clone()?)
                .map_err(|e| anyhow::anyhow!("control socket from the upgrade: {e}"))?;
            if let Some(p) = &proxy {
                p.adopt_listeners(std::mem::take(&mut inc.listeners));
            }
            rvsd::upgrade::import(&daemon, &inc.state);
            (l, Some(inc))
        }
        None => (control::bind(&socket)?, None),
    };
    let control_fd = std::os::fd::AsRawFd::as_raw_fd(&listener);
    let write_pid = |p: &std::path::Path| -> anyhow::Result<PidFile> {
        std::fs::write(p, format!("{}\n", std::process::id()))
            .map_err(|e| anyhow::anyhow!("cannot write pid file {}: {e}", p.display()))?;
        Ok(PidFile(p.to_path_buf()))
    };
    // an upgraded process writes its pid once the handover is complete
    let mut _pid = match (&args.pid_file, &incoming) {
        (Some(p), None) => Some(write_pid(p)?),
        _ => None,
    };
    let mut vrrp = None;
    let ka = match (&args.config, &loaded) {
        (Some(path), Some(loaded)) => {
            let opts = load_options(&args);
            for d in &loaded.diagnostics {
                warn!("{d}");
            }
            if !args.check_only && !loaded.config.vrrp_instances.is_empty() {
                let mut warnings = Vec::new();
                let (inst, mut ropts) = rvsd::vrrp::instances(&loaded.config, &mut warnings);
                for w in warnings {
                    warn!("{w}");
                }
                if let Some(inc) = &incoming {
                    rvsd::vrrp::take_over(&mut ropts, inc.state.vrrp_take_over());
                }
                let sync = rvsd::vrrp::sync_binding(&loaded.config);
                vrrp = Some(rvsd::vrrp::Vrrp::start(&daemon, inst, ropts, sync)?);
            }
            let checks = incoming
                .as_ref()
                .map(|inc| inc.state.check_take_over())
                .unwrap_or_default();
            (!args.vrrp_only).then(|| {
                runtime::Runtime::start_taking_over(
                    daemon.clone(),
                    path.clone(),
                    opts,
                    loaded,
                    checks,
                )
            })
        }
        _ => None,
    };
    if args.demo {
        demo::start(&daemon, args.demo_port, &socket).await?;
    }

    let stop = CancellationToken::new();
    let server = tokio::spawn(control::serve(
        listener,
        socket.clone(),
        daemon.clone(),
        stop.clone(),
    ));
    tokio::spawn(timers(shared.clone(), stop.clone()));
    if let Some(addr) = &args.metrics_listen {
        let addr: std::net::SocketAddr = addr.parse().map_err(|_| {
            anyhow::anyhow!(
                "invalid --metrics-listen address '{addr}' (expected IP:PORT, e.g. 127.0.0.1:9100)"
            )
        })?;
        let (d, s) = (daemon.clone(), stop.clone());
        tokio::spawn(async move {
            if let Err(e) = rvsd::observe::serve(addr, d, s).await {
                error!(%addr, error = %e, "metrics listener failed");
            }
        });
    }
    if let Some(inc) = incoming {
        // serving: take the predecessor's relayed connections, then it exits
        if let Some(v) = &vrrp {
            if !v.started(Duration::from_secs(5)).await {
                warn!("upgrade: the VRRP instances are not running after 5 s");
            }
        }
        daemon.reconcile();
        let (d, p, pk) = (daemon.clone(), proxy.clone(), packet.clone());
        match tokio::task::spawn_blocking(move || inc.finish(&d, p, pk)).await {
            Ok(Ok(n)) => info!(relays = n, "upgrade: handover complete, serving"),
            Ok(Err(e)) => {
                error!(error = %e, "upgrade: handover failed; the old rvsd goes on serving, this one exits");
                std::process::exit(1);
            }
            Err(e) => {
                error!(error = %e, "upgrade: handover task failed; this rvsd exits");
                std::process::exit(1);
            }
        }
        if let Some(p) = &args.pid_file {
            _pid = Some(write_pid(p)?);
        }
    }
    info!(socket = %socket.display(), engine = engine.name(), "rvsd started");

    loop {
        match wait_for_signal().await {
            Sig::Stop => break,
            Sig::Upgrade => {
                let socks = rvsd::upgrade::Sockets {
                    control: control_fd,
                    proxy: proxy.clone(),
                    packet: packet.clone(),
                };
                tokio::spawn(rvsd::upgrade::upgrade(daemon.clone(), socks));
                continue;
            }
            Sig::Reload => {}
        }
        match &ka {
            Some(k) => {
                k.reload();
                if let (Some(v), Some(cfg)) = (&vrrp, k.config()) {
                    let mut warnings = Vec::new();
                    let (inst, _) = rvsd::vrrp::instances(&cfg, &mut warnings);
                    if !v.reload(&inst) {
                        warn!("SIGHUP: vrrp_instance changes other than priority and virtual_ipaddress take effect at the next start of rvsd");
                    }
                }
            }
            None => info!("SIGHUP: no configuration file (-f) to reload"),
        }
    }
    info!("rvsd stopping");
    if let Some(v) = vrrp {
        v.shutdown().await;
    }
    if let Some(k) = &ka {
        k.shutdown();
    }
    daemon.stop();
    stop.cancel();
    let _ = server.await;
    Ok(())
}

/// Connection expiry and the 2 s rate estimator.
async fn timers(shared: Arc<Shared>, stop: CancellationToken) {
    let mut expire = tokio::time::interval(Duration::from_millis(200));
    let mut est = tokio::time::interval(Duration::from_secs(2));
    expire.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    est.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = expire.tick() => {
                let now = shared.now();
                shared.ipvs.lock().handle_timeout(now);
            }
            _ = est.tick() => {
                let now = shared.now();
                shared.ipvs.lock().estimate(now);
            }
        }
    }
}

enum Sig {
    Stop,
    Reload,
    Upgrade,
}

async fn wait_for_signal() -> Sig {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int), Ok(mut hup), Ok(mut usr2)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
        signal(SignalKind::user_defined2()),
    ) else {
        let _ = tokio::signal::ctrl_c().await;
        return Sig::Stop;
    };
    tokio::select! {
        _ = term.recv() => Sig::Stop,
        _ = int.recv() => Sig::Stop,
        _ = hup.recv() => Sig::Reload,
        _ = usr2.recv() => Sig::Upgrade,
    }
}

fn load_options(args: &Args) -> rvs_config::LoadOptions {
    rvs_config::LoadOptions {
        config_id: args.config_id.clone(),
        ..Default::default()
    }
}

/// `rvsd -t -f FILE` (keepalived's exit status) and `--dump-config`.
fn config_test(args: &Args) -> ExitCode {
    let Some(path) = &args.config else {
        return ExitCode::from(2);
    };
    match rvs_config::load(path, &load_options(args)) {
        Ok(loaded) => {
            runtime::print_diagnostics(&loaded);
            if loaded.config.global_defs.lvs_sync_daemon.is_some() && args.engine == "proxy" {
                eprintln!("{}: warning: {}", path.display(), rvsd::sync::PROXY_WARNING);
            }
            if args.mode == Mode::DumpConfig {
                match serde_json::to_string_pretty(&loaded.config) {
                    Ok(j) => println!("{j}"),
                    Err(e) => {
                        eprintln!("rvsd: cannot encode the configuration: {e}");
                        return ExitCode::from(1);
                    }
                }
                return ExitCode::SUCCESS;
            }
            ExitCode::from(loaded.config_test_exit_code().clamp(0, 255) as u8)
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(e.config_test_exit_code().clamp(0, 255) as u8)
        }
    }
}
