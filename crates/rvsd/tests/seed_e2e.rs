//! The course, end to end (issue 10): LVS-DR + keepalived + two nginx,
//! reproduced with rvs in the netns lab. Two directors run `rvsd -f` with the
//! seed's MASTER and BACKUP files (lab addresses), real nginx serves on rs1
//! and rs2, the client curls the VIP. Asserted in order: config diagnostics,
//! the `-Ln` listing, an nginx answer through the VIP, persistence and its
//! expiry, nginx-1 down/up seen on both directors, master stop/start moving
//! the VIP while curl keeps working.

mod common;

use rvs_lab::{wait_for, Lab, VIP};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const EXPECTED_MASTER: &[&str] = &[
    "keepalived-master.conf:42:13: warning: unknown keyword 'connet_port' in TCP_CHECK (did you mean 'connect_port'?)",
    "keepalived-master.conf:44:13: warning: unknown keyword 'connet_timeout' in TCP_CHECK (did you mean 'connect_timeout'?)",
    "keepalived-master.conf:46:13: deprecated: nb_get_retry is deprecated - please use 'retry'",
    "keepalived-master.conf:56:13: warning: unknown keyword 'connet_port' in TCP_CHECK (did you mean 'connect_port'?)",
    "keepalived-master.conf:58:13: warning: unknown keyword 'connet_timeout' in TCP_CHECK (did you mean 'connect_timeout'?)",
    "keepalived-master.conf:60:13: deprecated: nb_get_retry is deprecated - please use 'retry'",
];

fn seed_file(name: &str) -> PathBuf {
    rvs_lab::repo_root().join("examples/seed").join(name)
}

/// `rvsd -t -f FILE`: (exit status, diagnostics with the directory stripped).
fn config_test(path: &Path) -> (i32, Vec<String>) {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_rvsd"))
        .args(["-t", "-f"])
        .arg(path)
        .output()
        .expect("rvsd -t");
    let dir = format!("{}/", path.parent().unwrap().display());
    let lines = String::from_utf8_lossy(&o.stderr)
        .lines()
        .map(|l| l.replace(&dir, ""))
        .collect();
    (o.status.code().unwrap_or(-1), lines)
}

/// (exit status, stdout) of an rvsadm command line against `sock`.
fn adm(sock: &Path, line: &str) -> (i32, String) {
    let (c, out, _) = common::rvsadm(sock, line);
    (c, out)
}

fn has_vip(lab: &Lab, node: &str) -> bool {
    lab.has_addr(node, VIP)
}

fn lists_rs(sock: &Path, rs: &str) -> bool {
    adm(sock, "-Ln").1.contains(&format!("  -> {rs}:80"))
}

struct Director {
    node: &'static str,
    conf: PathBuf,
    sock: PathBuf,
    pid: Option<u32>,
}

impl Director {
    fn start(&mut self, lab: &mut Lab, engine: &str) {
        let log = format!(
            "rvsd-{}-{}",
            self.node,
            lab.dir.path().read_dir().map(|d| d.count()).unwrap_or(0)
        );
        self.pid = Some(lab.spawn(
            self.node,
            &log,
            &[
                env!("CARGO_BIN_EXE_rvsd"),
                "--engine",
                engine,
                "--interface",
                "eth0",
                "--socket",
                self.sock.to_str().unwrap(),
                "-f",
                self.conf.to_str().unwrap(),
            ],
        ));
        let up = wait_for(Duration::from_secs(10), || {
            (adm(&self.sock, "-Ln").0 == 0).then_some(())
        });
        assert!(
            up.is_some(),
            "rvsd on {} did not start: {}",
            self.node,
            lab.log(&log)
        );
    }

    fn stop(&mut self, lab: &mut Lab) {
        if let Some(pid) = self.pid.take() {
            lab.signal(pid, libc::SIGTERM);
            assert!(
                lab.wait_exit(pid, Duration::from_secs(10)),
                "rvsd on {} did not stop",
                self.node
            );
        }
    }
}

fn run_course(engine: &str, prefix: &str) {
    // 1. Both files parse with exactly the expected diagnostics.
    let (code, lines) = config_test(&seed_file("keepalived-master.conf"));
    assert_eq!(lines, EXPECTED_MASTER, "master diagnostics");
    assert_eq!(code, 5, "keepalived -t exit status for unknown keywords");
    let (code, lines) = config_test(&seed_file("keepalived-backup.conf"));
    assert_eq!(lines.len(), 6, "backup diagnostics: {lines:?}");
    assert!(lines[0].starts_with("keepalived-backup.conf:"), "{lines:?}");
    assert!(
        lines
            .iter()
            .filter(|l| l.contains("did you mean 'connect_port'"))
            .count()
            == 2
    );
    assert_eq!(code, 5);

    let mut lab = Lab::up(prefix);
    lab.start_nginx("rs1", "rs1");
    lab.start_nginx("rs2", "rs2");
    let mut master = Director {
        node: "lvs1",
        conf: seed_file("keepalived-master.conf"),
        sock: lab.dir.path().join("lvs1.sock"),
        pid: None,
    };
    let mut backup = Director {
        node: "lvs2",
        conf: seed_file("keepalived-backup.conf"),
        sock: lab.dir.path().join("lvs2.sock"),
        pid: None,
    };
    master.start(&mut lab, engine);
    backup.start(&mut lab, engine);
    // The engine asked for is the one running (no silent fallback).
    let Ok(rvs_api::Reply::Info(info)) =
        rvs_api::Client::new(&master.sock).call(&rvs_api::Command::GetInfo)
    else {
        panic!("GetInfo");
    };
    assert_eq!(info.engine, engine);
    let t = Instant::now();
    assert!(
        wait_for(Duration::from_secs(10), || has_vip(&lab, "lvs1")
            .then_some(()))
        .is_some(),
        "the MASTER never took the VIP"
    );
    eprintln!("VIP on lvs1 {:.2} s after start", t.elapsed().as_secs_f64());
    assert!(!has_vip(&lab, "lvs2"));

    // 2. The listing, as the course shows it.
    let (code, out) = adm(&master.sock, "-Ln");
    assert_eq!(code, 0);
    assert_eq!(
        out,
        "IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
TCP  198.18.0.100:80 rr persistent 10
  -> 198.18.0.21:80               Route   1      0          0         
  -> 198.18.0.22:80               Route   1      0          0         
"
    );

    // The course sets tcp/tcpfin/udp timeouts to 1 s before testing
    // persistence, so finished connections stop holding the template.
    assert_eq!(adm(&master.sock, "--set 1 1 1").0, 0);
    assert_eq!(
        adm(&master.sock, "-L --timeout").1,
        "Timeout (tcp tcpfin udp): 1 1 1\n"
    );

    // 3. The client gets an nginx answer through the VIP.
    let url = format!("http://{VIP}/");
    let first = wait_for(Duration::from_secs(5), || lab.curl(&url)).expect("curl through the VIP");
    assert!(first == "rs1" || first == "rs2", "{first}");

    // 4. Persistence: the same client sticks while the template lives, and
    // reaches the other server after it expires.
    for _ in 0..3 {
        assert_eq!(lab.curl(&url).as_deref(), Some(first.as_str()));
    }
    let (_, lnc) = adm(&master.sock, "-Lnc");
    assert!(
        lnc.contains("NONE        198.18.0.2:0       198.18.0.100:80"),
        "{lnc}"
    );
    let expired = wait_for(Duration::from_secs(25), || {
        (!adm(&master.sock, "-Lnc").1.contains("NONE ")).then_some(())
    });
    assert!(expired.is_some(), "template never expired");
    let other = lab.curl(&url).expect("curl after expiry");
    assert_ne!(other, first, "after the template expired rr moves on");

    // 5. nginx-1 down: rs1 leaves both directors within the checker's bound
    // (delay_loop 6 + connect_timeout 5 + retry 2 x delay_before_retry 3 =
    // 17 s) plus 5 s of slack for a loaded machine (a fault threshold; the
    // time is printed).
    lab.stop_nginx("rs1");
    let t = Instant::now();
    let gone = wait_for(Duration::from_secs(17 + 5), || {
        (!lists_rs(&master.sock, "198.18.0.21") && !lists_rs(&backup.sock, "198.18.0.21"))
            .then_some(())
    });
    eprintln!(
        "rs1 removed from both directors after {:.2} s",
        t.elapsed().as_secs_f64()
    );
    assert!(gone.is_some(), "rs1 still listed 22 s after nginx stopped");
    for _ in 0..3 {
        assert_eq!(lab.curl(&url).as_deref(), Some("rs2"));
    }
    lab.start_nginx("rs1", "rs1");
    let back = wait_for(Duration::from_secs(20), || {
        (lists_rs(&master.sock, "198.18.0.21") && lists_rs(&backup.sock, "198.18.0.21"))
            .then_some(())
    });
    assert!(back.is_some(), "rs1 did not come back");

    // 6. Stop the master: the VIP floats to the backup, curl keeps working.
    master.stop(&mut lab);
    let t = Instant::now();
    let moved = wait_for(Duration::from_secs(10), || {
        has_vip(&lab, "lvs2").then_some(())
    });
    assert!(moved.is_some(), "VIP did not move to lvs2");
    assert!(
        !has_vip(&lab, "lvs1"),
        "the stopped master must not keep the VIP"
    );
    let served = wait_for(Duration::from_secs(5), || lab.curl(&url));
    eprintln!(
        "after stopping the master: VIP on lvs2 and answering after {:.2} s",
        t.elapsed().as_secs_f64()
    );
    assert!(served.is_some(), "curl failed through the backup");
    for _ in 0..3 {
        assert!(lab.curl(&url).is_some());
    }
    // Start it again: the VIP comes back (preemption by priority).
    master.start(&mut lab, engine);
    let back = wait_for(Duration::from_secs(10), || {
        (has_vip(&lab, "lvs1") && !has_vip(&lab, "lvs2")).then_some(())
    });
    assert!(back.is_some(), "VIP did not come back to lvs1");
    assert!(wait_for(Duration::from_secs(5), || lab.curl(&url)).is_some());
    backup.stop(&mut lab);
    master.stop(&mut lab);
}

#[test]
fn seed_course_end_to_end_proxy_engine() {
    if rvs_lab::skip_unless_root("seed_course_end_to_end_proxy_engine") {
        return;
    }
    run_course("proxy", "rvseed");
}

#[test]
fn seed_course_end_to_end_packet_engine_dr() {
    if rvs_lab::skip_unless_root("seed_course_end_to_end_packet_engine_dr") {
        return;
    }
    run_course("packet", "rvseedp");
}

#[test]
fn seed_course_end_to_end_xdp_engine_dr() {
    if rvs_lab::skip_unless_root("seed_course_end_to_end_xdp_engine_dr") {
        return;
    }
    run_course("xdp", "rvseedx");
}
