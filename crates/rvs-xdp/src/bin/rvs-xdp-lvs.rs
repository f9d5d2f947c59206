//! Run the AF_XDP engine for one virtual service (a stand-in for rvsd in
//! lab tests and by hand):
//!
//! ```text
//! rvs-xdp-lvs --interface eth0 --vip 198.18.0.100:80 --rs 198.18.0.21:80 --rs 198.18.0.22:80 \
//!     --method dr|nat|tun [--udp] [--sched rr] [--persistent SECS] \
//!     [--tun-type ipip|gue|gre] [--tun-port N] [--tun-csum] [--dump FILE] [--no-nft] [--queues N] [--native]
//!     [--no-multi-buffer]
//! ```
//!
//! With `--dump FILE` the table is written every 100 ms: lines
//! `conn PROTO CLIENT VIP DEST STATE EXPIRES`, `svc CONNS INPKTS OUTPKTS
//! INBYTES OUTBYTES`, `dest ADDR ACTIVE INACT CONNS INPKTS OUTPKTS` and
//! `engine NAME VALUE` (including the flow cache's `cache_*`). Stops on
//! SIGINT/SIGTERM and removes its nft table, then prints one line per RX
//! queue: `rvs-xdp-lvs: queue Q rx N cache_hits N cache_misses N`.

use rvs_dataplane::Engine;
use rvs_packet::driver;
use rvs_xdp::{XdpEngine, XdpMode, XdpOptions};

const USAGE: &str = "usage: rvs-xdp-lvs --interface IF --vip ADDR:PORT --rs ADDR:PORT... --method dr|nat|tun [--udp] [--sched S] [--persistent SECS] [--tun-type ipip|gue|gre] [--tun-port N] [--tun-csum] [--dump FILE] [--no-nft] [--queues N] [--native] [--no-multi-buffer]";

fn main() {
    let mut queues: Option<u32> = None;
    let mut native = false;
    let mut multi_buffer = true;
    let s = driver::setup(USAGE, |flag, val| match flag {
        "--queues" => {
            queues = Some(driver::arg(USAGE, flag, val()));
            true
        }
        "--native" => {
            native = true;
            true
        }
        "--no-multi-buffer" => {
            multi_buffer = false;
            true
        }
        _ => false,
    });
    let mut opts = XdpOptions::new(&s.iface);
    opts.nft = s.nft;
    opts.queues = queues;
    opts.xsk.multi_buffer = multi_buffer;
    if native {
        opts.mode = XdpMode::Native;
    }
    let engine = XdpEngine::new(s.shared.clone(), opts).unwrap_or_else(|e| {
        eprintln!(
            "rvs-xdp-lvs: cannot start the AF_XDP engine on {}: {e}",
            s.iface
        );
        std::process::exit(1)
    });
    engine.reconcile(&[s.listen]);
    eprintln!(
        "rvs-xdp-lvs: serving {} {} on {} ({} queue(s), multi-buffer {})",
        s.listen.proto,
        s.listen.addr,
        s.iface,
        engine.queues(),
        if engine.multi_buffer() { "on" } else { "off" }
    );
    driver::serve(
        "rvs-xdp-lvs",
        &s.shared,
        &engine,
        engine.stats(),
        s.key,
        s.dump.as_deref(),
    );
    // After the shutdown the threads have flushed their caches: final
    // per-queue counts (how the traffic was spread over the queues).
    for q in engine.queue_stats() {
        eprintln!(
            "rvs-xdp-lvs: queue {} rx {} cache_hits {} cache_misses {}",
            q.queue, q.rx, q.cache_hits, q.cache_misses
        );
    }
}
