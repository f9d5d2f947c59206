//! Minimal VRRP daemon for lab tests, until VRRP is wired into rvsd.
//!
//! ```text
//! vrrpd --interface eth0 --vrid 51 --priority 100 [--advert-int 1] [--version 2|3]
//!       [--auth-pass PASS] --vip 198.18.0.100/24 [--vip ...] [--state MASTER|BACKUP]
//!       [--nopreempt] [--preempt-delay SECS] [--vip-lifetime SECS] [--name VI_1]
//!       [--status-file PATH] [--notify SCRIPT]
//!       [--track-script CMD [--track-weight W] [--track-interval SECS] [--rise N] [--fall N]]
//! ```
//! `--vip` takes keepalived's `virtual_ipaddress` line syntax (quote it for
//! `dev`/`label`/`scope`). `--vip-lifetime 0` = permanent VIPs (keepalived
//! behaviour). SIGTERM/SIGINT stop gracefully (priority-0 advert, VIPs
//! removed). The status file is rewritten (atomically) on every change.

use std::time::Duration;

use rvs_vrrp::shell::{RunOptions, TrackScript};
use rvs_vrrp::{InitialState, InstanceConfig, TrackConfig, Version, VipConfig};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

fn parse_args() -> Result<(InstanceConfig, Option<String>, Option<TrackScript>), lexopt::Error> {
    use lexopt::prelude::*;
    let mut p = lexopt::Parser::from_env();
    let mut cfg = InstanceConfig::new("VI_1", "eth0", 51);
    let mut status = None;
    let mut pass = None;
    let mut advert = None;
    let mut script: Option<TrackScript> = None;
    let mut weight = 0i32;
    while let Some(arg) = p.next()? {
        match arg {
            Long("interface") => cfg.interface = p.value()?.string()?,
            Long("name") => cfg.name = p.value()?.string()?,
            Long("vrid") => cfg.vrid = p.value()?.parse()?,
            Long("priority") => cfg.priority = p.value()?.parse()?,
            Long("advert-int") => advert = Some(p.value()?.parse::<f64>()?),
            Long("version") => {
                cfg.version = match p.value()?.string()?.as_str() {
                    "2" => Version::V2,
                    "3" => Version::V3,
                    v => return Err(format!("bad version {v}").into()),
                }
            }
            Long("auth-pass") => pass = Some(p.value()?.string()?),
            Long("vip") => cfg.vips.push(VipConfig::parse(&p.value()?.string()?)?),
            Long("state") => {
                cfg.initial_state = match p.value()?.string()?.as_str() {
                    "MASTER" => InitialState::Master,
                    "BACKUP" => InitialState::Backup,
                    s => {
                        eprintln!("({}) unknown state '{s}', defaulting to BACKUP", cfg.name);
                        InitialState::Backup
                    }
                }
            }
            Long("nopreempt") => cfg.nopreempt = true,
            Long("preempt-delay") => {
                cfg.preempt_delay = Duration::from_secs_f64(p.value()?.parse()?)
            }
            Long("vip-lifetime") => {
                cfg.vip_lifetime = Some(Duration::from_secs_f64(p.value()?.parse()?))
            }
            Long("src") => cfg.local_addr = p.value()?.parse()?,
            Long("unicast-peer") => cfg.unicast_peers.push(p.value()?.parse()?),
            Long("status-file") => status = Some(p.value()?.string()?),
            Long("notify") => cfg.notify.notify = Some(p.value()?.string()?),
            Long("track-script") => {
                script = Some(TrackScript {
                    name: "chk".into(),
                    script: p.value()?.string()?,
                    interval: Duration::from_secs(1),
                    timeout: Duration::from_secs(1),
                    rise: 1,
                    fall: 1,
                    init_fail: false,
                })
            }
            Long("track-weight") => weight = p.value()?.parse()?,
            Long("track-interval") => {
                let d = Duration::from_secs_f64(p.value()?.parse()?);
                if let Some(s) = script.as_mut() {
                    s.interval = d;
                    s.timeout = d;
                }
            }
            Long("rise") => {
                let n = p.value()?.parse()?;
                if let Some(s) = script.as_mut() {
                    s.rise = n;
                }
            }
            Long("fall") => {
                let n = p.value()?.parse()?;
                if let Some(s) = script.as_mut() {
                    s.fall = n;
                }
            }
            Long("help") => {
                println!("see the top of crates/rvs-vrrp/src/bin/rvs-vrrpd.rs");
                std::process::exit(0);
            }
            _ => return Err(arg.unexpected()),
        }
    }
    if let Some(a) = advert {
        cfg.advert_int = Duration::from_secs_f64(a);
    }
    cfg.auth_pass = pass.map(|p| InstanceConfig::pass_bytes(&p));
    if script.is_some() {
        cfg.tracks.push(TrackConfig {
            name: "chk".into(),
            weight,
            reverse: false,
            initially_up: true,
        });
    }
    Ok((cfg, status, script))
}

fn write_status(path: &str, st: &[rvs_vrrp::InstanceStatus]) {
    let tmp = format!("{path}.tmp");
    if let Ok(json) = serde_json::to_vec_pretty(st) {
        if std::fs::write(&tmp, json).is_ok() {
            let _ = std::fs::rename(&tmp, path);
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let (cfg, status_file, script) = match parse_args() {
        Ok(x) => x,
        Err(e) => {
            eprintln!("vrrpd: {e}");
            std::process::exit(2);
        }
    };
    let (nl, _nl_task) = match rvs_netlink::spawn() {
        Ok(x) => x,
        Err(e) => {
            eprintln!("vrrpd: {e}");
            std::process::exit(1);
        }
    };
    let shutdown = CancellationToken::new();
    let (st_tx, mut st_rx) = watch::channel(Vec::new());
    if let Some(path) = status_file.clone() {
        tokio::spawn(async move {
            while st_rx.changed().await.is_ok() {
                let st = st_rx.borrow_and_update().clone();
                write_status(&path, &st);
            }
        });
    }
    let sd = shutdown.clone();
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        sd.cancel();
    });
    let st_keep = st_tx.clone();
    let opts = RunOptions {
        scripts: script.into_iter().collect(),
        ..RunOptions::default()
    };
    if let Err(e) = rvs_vrrp::shell::run_with(vec![cfg], opts, nl, shutdown, st_tx).await {
        eprintln!("vrrpd: {e}");
        std::process::exit(1);
    }
    if let Some(path) = status_file {
        write_status(&path, &st_keep.borrow());
    }
}
