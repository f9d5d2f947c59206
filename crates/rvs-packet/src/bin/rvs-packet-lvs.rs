//! Run the packet engine for one virtual service (a stand-in for rvsd in
//! lab tests and by hand):
//!
//! ```text
//! rvs-packet-lvs --interface eth0 --vip 198.18.0.100:80 --rs 198.18.0.21:80 --rs 198.18.0.22:80 \
//!     --method dr|nat|tun [--udp] [--sched rr] [--persistent SECS] \
//!     [--tun-type ipip|gue|gre] [--tun-port N] [--tun-csum] [--dump FILE] [--no-nft] [--threads N] \
//!     [--fwmark N]
//! ```
//!
//! With `--fwmark N` the service is firewall-mark service N instead of
//! VIP:PORT (IPv6 if the `--vip` address is; its port is unused), for
//! packets an nftables `netdev` ingress rule marked N; `--rs ADDR:0`
//! forwards to the packet's destination port.
//!
//! With `--dump FILE` the table is written every 100 ms: lines
//! `conn PROTO CLIENT VIP DEST STATE EXPIRES`, `svc CONNS INPKTS OUTPKTS
//! INBYTES OUTBYTES`, `dest ADDR ACTIVE INACT CONNS INPKTS OUTPKTS` and
//! `engine NAME VALUE`. Stops on SIGINT/SIGTERM and removes its nft table.

use rvs_dataplane::Engine;
use rvs_packet::{driver, PacketEngine, PacketOptions};

const USAGE: &str = "usage: rvs-packet-lvs --interface IF --vip ADDR:PORT --rs ADDR:PORT... --method dr|nat|tun [--udp] [--sched S] [--persistent SECS] [--tun-type ipip|gue|gre] [--tun-port N] [--tun-csum] [--dump FILE] [--no-nft] [--threads N] [--fwmark N]";

fn main() {
    let mut threads = 1usize;
    let s = driver::setup(USAGE, |flag, val| match flag {
        "--threads" => {
            threads = driver::arg(USAGE, flag, val());
            if threads == 0 {
                driver::usage_error(USAGE, "invalid value '0' for --threads (1 or more)");
            }
            true
        }
        _ => false,
    });
    let mut opts = PacketOptions::new(&s.iface);
    opts.nft = s.nft;
    opts.threads = threads;
    let engine = PacketEngine::new(s.shared.clone(), opts).unwrap_or_else(|e| {
        eprintln!(
            "rvs-packet-lvs: cannot start the packet engine on {}: {e}",
            s.iface
        );
        std::process::exit(1)
    });
    if let Some(fw) = s.fwmark {
        engine.reconcile(&[]);
        engine.reconcile_fwmarks(&[fw]);
        eprintln!(
            "rvs-packet-lvs: serving fwmark {} (ipv6: {}) on {}",
            fw.mark, fw.v6, s.iface
        );
    } else {
        engine.reconcile(&[s.listen]);
        eprintln!(
            "rvs-packet-lvs: serving {} {} on {}",
            s.listen.proto, s.listen.addr, s.iface
        );
    }
    driver::serve(
        "rvs-packet-lvs",
        &s.shared,
        &engine,
        engine.stats(),
        s.key,
        s.dump.as_deref(),
    );
}
