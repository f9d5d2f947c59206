//! The serve loop shared by the engine driver programs (`rvs-packet-lvs`,
//! `rvs-xdp-lvs`): stand-ins for rvsd in lab tests that run one engine for
//! one virtual service, keep the table's timers going and, with a dump
//! file, write the table every 100 ms for the tests to read:
//! `conn PROTO CLIENT VIP DEST STATE EXPIRES`, `svc CONNS INPKTS OUTPKTS
//! INBYTES OUTBYTES`, `dest ADDR ACTIVE INACT CONNS INPKTS OUTPKTS`,
//! `engine NAME VALUE`.

use crate::EngineStats;
use rvs_core::SvcKey;
use rvs_dataplane::{Engine, Shared};
use std::fmt::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

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
