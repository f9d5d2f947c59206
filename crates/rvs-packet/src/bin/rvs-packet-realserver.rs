//! `rvs-packet-realserver setup|teardown --vip VIP [--tun] [--interface IF] [--gue-port N]`: the
//! real-server helper as a standalone program (what `rvsadm realserver`
//! wires in). `setup --tun` on a kernel without `ipip` keeps running the
//! user-space decapsulator until SIGINT/SIGTERM, then tears down.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cmd = args.first().map(String::as_str);
    let get = |k: &str| {
        args.iter()
            .position(|a| a == k)
            .and_then(|i| args.get(i + 1))
    };
    let Some(vip) = get("--vip").and_then(|v| v.parse::<IpAddr>().ok()) else {
        eprintln!(
            "usage: rvs-packet-realserver setup|teardown --vip VIP [--tun] [--interface IF] [--gue-port N]"
        );
        std::process::exit(2)
    };
    let tun = args.iter().any(|a| a == "--tun");
    match cmd {
        Some("setup") => {
            let rs = rvs_packet::realserver::realserver_setup_on(
                vip,
                tun,
                get("--interface").map(String::as_str),
                get("--gue-port").and_then(|p| p.parse().ok()),
            )
            .unwrap_or_else(|e| {
                eprintln!("realserver setup: {e}");
                std::process::exit(1)
            });
            if let Some(d) = &rs.decap {
                // SAFETY: handlers only store to an atomic.
                unsafe {
                    libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
                    libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
                }
                eprintln!("realserver: user-space decapsulation running");
                d.wait_for(&STOP);
                eprintln!("realserver: {} packets decapsulated", d.packets());
                drop(rs);
                let _ = rvs_packet::realserver_teardown(vip);
            }
        }
        Some("teardown") => {
            if let Err(e) = rvs_packet::realserver_teardown(vip) {
                eprintln!("realserver teardown: {e}");
                std::process::exit(1)
            }
        }
        _ => {
            eprintln!("usage: rvs-packet-realserver setup|teardown --vip VIP [--tun] [--interface IF] [--gue-port N]");
            std::process::exit(2)
        }
    }
}
