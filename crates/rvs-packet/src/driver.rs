//! The serve loop shared by the engine driver programs (`rvs-packet-lvs`,
//! `rvs-xdp-lvs`): stand-ins for rvsd in lab tests that run one engine for
//! one virtual service, keep the table's timers going and, with a dump
//! file, write the table every 100 ms for the tests to read:
//! `conn PROTO CLIENT VIP DEST STATE EXPIRES`, `svc CONNS INPKTS OUTPKTS
//! INBYTES OUTBYTES`, `dest ADDR ACTIVE INACT CONNS INPKTS OUTPKTS`,
//! `engine NAME VALUE`.

use crate::EngineStats;
use rvs_core::{DestConf, FwdMethod, Ipvs, Protocol, ServiceConf, SvcKey, TunCsum, TunType};
use rvs_dataplane::{Engine, FwmarkKey, ListenKey, Shared};
use std::fmt::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the common flags of a driver describe, with the table built.
pub struct Setup {
    pub iface: String,
    pub key: SvcKey,
    pub listen: ListenKey,
    /// With `--fwmark N`: the firewall-mark service (of `--vip`'s family)
    /// the table has instead of `listen`'s address service.
    pub fwmark: Option<FwmarkKey>,
    pub dump: Option<String>,
    pub nft: bool,
    pub shared: Arc<Shared>,
}

/// Parse the flags both drivers share — `--interface IF --vip ADDR:PORT
/// --rs ADDR:PORT... --method dr|nat|tun [--udp] [--sched S] [--persistent
/// SECS] [--tun-type ipip|gue|gre] [--tun-port N] [--tun-csum] [--dump FILE]
/// [--no-nft] [--fwmark N]` — and build the table. With `--fwmark N` the
/// service is the firewall-mark service N (`ipvsadm -A -f N`, IPv6 if the
/// `--vip` address is; its port is not used) and a real server's port 0
/// means "the packet's destination port", as IPVS does. Engine-specific flags go to `extra`
/// (flag, a way to take its value); it returns false for an unknown flag.
/// Any error prints `usage` and exits with status 2.
/// `v`, the value of `flag`, parsed as `T`; else a usage error naming both.
pub fn arg<T: std::str::FromStr>(usage: &str, flag: &str, v: String) -> T {
    v.parse()
        .unwrap_or_else(|_| usage_error(usage, &format!("invalid value '{v}' for {flag}")))
}

/// Print `why` and the usage line, exit 2.
pub fn usage_error(usage: &str, why: &str) -> ! {
    eprintln!("{why}\n{usage}");
    std::process::exit(2)
}

pub fn setup(
    usage: &str,
    mut extra: impl FnMut(&str, &mut dyn FnMut() -> String) -> bool,
) -> Setup {
    let fail = |why: &str| -> ! { usage_error(usage, why) };
    let mut args = std::env::args().skip(1);
    let (mut iface, mut vip, mut rs, mut method) = (None, None, Vec::new(), FwdMethod::Route);
    let (mut proto, mut sched, mut persist, mut dump, mut nft) =
        (Protocol::Tcp, "rr".to_string(), None, None, true);
    let (mut tun_type, mut tun_port, mut tun_csum) = (TunType::Ipip, 0u16, TunCsum::NoCsum);
    let mut fwmark: Option<u32> = None;
    while let Some(a) = args.next() {
        let flag = a.as_str();
        let mut val = || {
            args.next()
                .unwrap_or_else(|| fail(&format!("missing value for {flag}")))
        };
        match flag {
            "--interface" => iface = Some(val()),
            "--vip" => vip = Some(arg::<SocketAddr>(usage, flag, val())),
            "--rs" => rs.push(arg::<SocketAddr>(usage, flag, val())),
            "--method" => {
                method = match val().as_str() {
                    "dr" => FwdMethod::Route,
                    "nat" => FwdMethod::Masq,
                    "tun" => FwdMethod::Tunnel,
                    v => fail(&format!(
                        "invalid value '{v}' for --method (dr, nat or tun)"
                    )),
                }
            }
            "--udp" => proto = Protocol::Udp,
            "--sched" => sched = val(),
            "--persistent" => persist = Some(arg::<u32>(usage, flag, val())),
            "--tun-type" => {
                tun_type = match val().as_str() {
                    "ipip" => TunType::Ipip,
                    "gue" => TunType::Gue,
                    "gre" => TunType::Gre,
                    v => fail(&format!(
                        "invalid value '{v}' for --tun-type (ipip, gue or gre)"
                    )),
                }
            }
            "--tun-port" => tun_port = arg(usage, flag, val()),
            "--tun-csum" => tun_csum = TunCsum::Csum,
            "--dump" => dump = Some(val()),
            "--no-nft" => nft = false,
            "--fwmark" => {
                let m: u32 = arg(usage, flag, val());
                if m == 0 {
                    fail("invalid value '0' for --fwmark (1-4294967295)");
                }
                fwmark = Some(m);
            }
            other => {
                if !extra(other, &mut val) {
                    fail(&format!("unknown option '{other}'"))
                }
            }
        }
    }
    let (Some(iface), Some(vip)) = (iface, vip) else {
        fail("--interface and --vip are required")
    };
    let shared = Shared::new(Ipvs::new());
    let fwmark = fwmark.map(|mark| FwmarkKey {
        mark,
        v6: vip.is_ipv6(),
    });
    let key = match fwmark {
        Some(f) => SvcKey::Fwmark {
            mark: f.mark,
            v6: f.v6,
        },
        None => SvcKey::Addr {
            proto,
            addr: vip.ip(),
            port: vip.port(),
        },
    };
    {
        let now = shared.now();
        let mut ipvs = shared.ipvs.lock();
        let mut conf = ServiceConf::new(key, &sched);
        if let Some(t) = persist {
            conf = conf.persistent(t);
        }
        if let Err(e) = ipvs.add_service(now, &conf) {
            eprintln!("cannot add the service: {e}");
            std::process::exit(2)
        }
        for r in &rs {
            let mut d = DestConf::new(r.ip(), r.port(), method, 1);
            d.tun_type = tun_type;
            d.tun_port = tun_port;
            d.tun_flags = tun_csum;
            if let Err(e) = ipvs.add_dest(now, &key, &d) {
                eprintln!("cannot add real server {r}: {e}");
                std::process::exit(2)
            }
        }
    }
    Setup {
        iface,
        key,
        listen: ListenKey { proto, addr: vip },
        fwmark,
        dump,
        nft,
        shared,
    }
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

/// Serve until SIGINT/SIGTERM, then shut the engine down.
pub fn serve(
    name: &str,
    shared: &Shared,
    engine: &dyn Engine,
    stats: &EngineStats,
    key: SvcKey,
    dump: Option<&str>,
) {
    // SAFETY: installing a handler that only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    let mut last_est = Instant::now();
    while !STOP.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
        let now = shared.now();
        {
            let mut ipvs = shared.ipvs.lock();
            ipvs.handle_timeout(now);
            if last_est.elapsed() >= Duration::from_secs(2) {
                ipvs.estimate(now);
                last_est = Instant::now();
            }
        }
        if let Some(path) = dump {
            write_dump(path, shared, stats, &key);
        }
    }
    engine.shutdown();
    eprintln!("{name}: stopped");
}

fn write_dump(path: &str, shared: &Shared, stats: &EngineStats, key: &SvcKey) {
    let now = shared.now();
    let mut s = String::new();
    let ipvs = shared.ipvs.lock();
    for c in ipvs.connections(now) {
        let _ = writeln!(
            s,
            "conn {} {}:{} {}:{} {}:{} {} {}",
            c.proto_name,
            c.caddr,
            c.cport,
            c.vaddr,
            c.vport,
            c.daddr,
            c.dport,
            c.state_name,
            c.expires_secs
        );
    }
    if let Some(svc) = ipvs.service(key) {
        let st = svc.stats();
        let _ = writeln!(
            s,
            "svc {} {} {} {} {}",
            st.conns, st.inpkts, st.outpkts, st.inbytes, st.outbytes
        );
        for d in svc.dests() {
            let st = d.stats();
            let _ = writeln!(
                s,
                "dest {}:{} {} {} {} {} {}",
                d.addr(),
                d.port(),
                d.active_conns(),
                d.inact_conns(),
                st.conns,
                st.inpkts,
                st.outpkts
            );
        }
    }
    drop(ipvs);
    for (k, v) in stats.snapshot() {
        let _ = writeln!(s, "engine {k} {v}");
    }
    let tmp = format!("{path}.tmp");
    if std::fs::write(&tmp, s).is_ok() {
        let _ = std::fs::rename(&tmp, path);
    }
}

/// A table dump written by [`serve`], as the lab tests read it back.
#[derive(Debug, Clone, Default)]
pub struct Dump {
    /// `conn` lines, fields after the tag.
    pub conns: Vec<Vec<String>>,
    /// The `svc` line's numbers.
    pub svc: Vec<u64>,
    /// `engine` counters.
    pub engine: Vec<(String, u64)>,
}

/// Read a dump file (None if it does not exist yet).
pub fn read_dump(path: &std::path::Path) -> Option<Dump> {
    let t = std::fs::read_to_string(path).ok()?;
    let mut d = Dump::default();
    for l in t.lines() {
        let f: Vec<String> = l.split_whitespace().map(str::to_string).collect();
        match f.first().map(String::as_str) {
            Some("conn") => d.conns.push(f[1..].to_vec()),
            Some("svc") => d.svc = f[1..].iter().filter_map(|x| x.parse().ok()).collect(),
            Some("engine") if f.len() == 3 => {
                d.engine.push((f[1].clone(), f[2].parse().unwrap_or(0)))
            }
            _ => {}
        }
    }
    Some(d)
}

impl Dump {
    /// An engine counter (0 if absent).
    pub fn engine(&self, k: &str) -> u64 {
        self.engine
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| *v)
            .unwrap_or(0)
    }

    /// Connections that are not persistence templates (client port ≠ 0).
    pub fn real_conns(&self) -> Vec<&Vec<String>> {
        self.conns
            .iter()
            .filter(|c| c.get(1).is_some_and(|a| !a.ends_with(":0")))
            .collect()
    }
}
