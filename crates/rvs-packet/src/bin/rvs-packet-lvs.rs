//! Run the packet engine for one virtual service (a stand-in for rvsd in
//! lab tests and by hand):
//!
//! ```text
//! rvs-packet-lvs --interface eth0 --vip 198.18.0.100:80 --rs 198.18.0.21:80 --rs 198.18.0.22:80 \
//!     --method dr|nat|tun [--udp] [--sched rr] [--persistent SECS] \
//!     [--tun-type ipip|gue|gre] [--tun-port N] [--tun-csum] [--dump FILE] [--no-nft] [--threads N]
//! ```
//!
//! With `--dump FILE` the table is written every 100 ms: lines
//! `conn PROTO CLIENT VIP DEST STATE EXPIRES`, `svc CONNS INPKTS OUTPKTS
//! INBYTES OUTBYTES`, `dest ADDR ACTIVE INACT CONNS INPKTS OUTPKTS` and
//! `engine NAME VALUE`. Stops on SIGINT/SIGTERM and removes its nft table.

use rvs_core::{DestConf, FwdMethod, Ipvs, Protocol, ServiceConf, SvcKey, TunCsum, TunType};
use rvs_dataplane::{Engine, ListenKey, Shared};
use rvs_packet::{PacketEngine, PacketOptions};
use std::net::SocketAddr;

fn usage() -> ! {
    eprintln!("usage: rvs-packet-lvs --interface IF --vip ADDR:PORT --rs ADDR:PORT... --method dr|nat|tun [--udp] [--sched S] [--persistent SECS] [--tun-type ipip|gue|gre] [--tun-port N] [--tun-csum] [--dump FILE] [--no-nft] [--threads N]");
    std::process::exit(2)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (mut iface, mut vip, mut rs, mut method) = (None, None, Vec::new(), FwdMethod::Route);
    let (mut proto, mut sched, mut persist, mut dump, mut nft) =
        (Protocol::Tcp, "rr".to_string(), None, None, true);
    let (mut tun_type, mut tun_port, mut tun_csum) = (TunType::Ipip, 0u16, TunCsum::NoCsum);
    let mut threads = 1usize;
    while let Some(a) = args.next() {
        let mut val = || args.next().unwrap_or_else(|| usage());
        match a.as_str() {
            "--interface" => iface = Some(val()),
            "--vip" => vip = Some(val().parse::<SocketAddr>().unwrap_or_else(|_| usage())),
            "--rs" => rs.push(val().parse::<SocketAddr>().unwrap_or_else(|_| usage())),
            "--method" => {
                method = match val().as_str() {
                    "dr" => FwdMethod::Route,
                    "nat" => FwdMethod::Masq,
                    "tun" => FwdMethod::Tunnel,
                    _ => usage(),
                }
            }
            "--udp" => proto = Protocol::Udp,
            "--sched" => sched = val(),
            "--persistent" => persist = Some(val().parse::<u32>().unwrap_or_else(|_| usage())),
            "--tun-type" => {
                tun_type = match val().as_str() {
                    "ipip" => TunType::Ipip,
                    "gue" => TunType::Gue,
                    "gre" => TunType::Gre,
                    _ => usage(),
                }
            }
            "--tun-port" => tun_port = val().parse().unwrap_or_else(|_| usage()),
            "--tun-csum" => tun_csum = TunCsum::Csum,
            "--dump" => dump = Some(val()),
            "--no-nft" => nft = false,
            "--threads" => threads = val().parse().unwrap_or_else(|_| usage()),
            _ => usage(),
        }
    }
    let (Some(iface), Some(vip)) = (iface, vip) else {
        usage()
    };

    let shared = Shared::new(Ipvs::new());
    let key = SvcKey::Addr {
        proto,
        addr: vip.ip(),
        port: vip.port(),
    };
    {
        let now = shared.now();
        let mut ipvs = shared.ipvs.lock();
        let mut conf = ServiceConf::new(key, &sched);
        if let Some(t) = persist {
            conf = conf.persistent(t);
        }
        ipvs.add_service(now, &conf).expect("add service");
        for r in &rs {
            let mut d = DestConf::new(r.ip(), r.port(), method, 1);
            d.tun_type = tun_type;
            d.tun_port = tun_port;
            d.tun_flags = tun_csum;
            ipvs.add_dest(now, &key, &d).expect("add dest");
        }
    }
    let mut opts = PacketOptions::new(&iface);
    opts.nft = nft;
    opts.threads = threads;
    let engine = PacketEngine::new(shared.clone(), opts).unwrap_or_else(|e| {
        eprintln!("rvs-packet-lvs: cannot start the packet engine on {iface}: {e}");
        std::process::exit(1)
    });
    engine.reconcile(&[ListenKey { proto, addr: vip }]);
    eprintln!("rvs-packet-lvs: serving {proto} {vip} on {iface}");
    rvs_packet::driver::serve(
        "rvs-packet-lvs",
        &shared,
        &engine,
        engine.stats(),
        key,
        dump.as_deref(),
    );
}
