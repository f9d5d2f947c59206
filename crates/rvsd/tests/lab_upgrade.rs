//! Binary upgrade on SIGUSR2 (issue 16).
//!
//! Lab (root, netns, real nginx): traffic runs across `kill -USR2` — one
//! keep-alive connection sending a request every 0.2 s and a new
//! connection every 0.1 s — for the proxy engine and for the packet engine
//! (DR, the seed's keepalived files on two rvsd directors, VRRP and
//! TCP_CHECKs): no request fails, `--stats` counters after ≥ before, `-Lnc`
//! of the new process lists the connections opened before, the pidfile
//! names the new pid and exactly one rvsd is left; the VRRP MASTER and its
//! BACKUP peer see no transition (counters, logs), no real server flaps.
//!
//! Failures (loopback, proxy engine, no root needed): the new binary
//! exits, the configuration no longer parses, the handover format does not
//! match, the new process crashes after READY, a second USR2 during a
//! handover: the old process keeps serving (its relayed connections too)
//! and logs why.

mod common;

use rvs_api::{Client, Command, DestSpec, FwdMethod, Protocol, Reply, ServiceKey, ServiceSpec};
use rvs_lab::{wait_for, Lab, CLIENT, RS1, RS2, VIP};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

// ------------------------------------------------------------ traffic --

/// Put the calling thread (only) into network namespace `name`.
fn enter_netns(name: &str) {
    let f = std::fs::File::open(format!("/var/run/netns/{name}"))
        .unwrap_or_else(|e| panic!("netns {name}: {e}"));
    // SAFETY: setns on a valid namespace descriptor; affects this thread.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns {name}: {}", std::io::Error::last_os_error());
}

/// One request on `s`; Ok(body) for a 200 answer.
fn request(s: &mut TcpStream, close: bool) -> Result<String, String> {
    let req = if close {
        "GET / HTTP/1.1\r\nHost: vip\r\nConnection: close\r\n\r\n"
    } else {
        "GET / HTTP/1.1\r\nHost: vip\r\n\r\n"
    };
    s.write_all(req.as_bytes())
        .map_err(|e| format!("send: {e}"))?;
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    loop {
        let n = s.read(&mut tmp).map_err(|e| format!("receive: {e}"))?;
        if n == 0 {
            return Err(format!(
                "connection closed after {} bytes of the answer",
                buf.len()
            ));
        }
        buf.extend_from_slice(&tmp[..n]);
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        if buf.len() >= end + 4 + len {
            if !head.starts_with("http/1.1 200") {
                return Err(format!("answer: {}", head.lines().next().unwrap_or("")));
            }
            return Ok(String::from_utf8_lossy(&buf[end + 4..end + 4 + len])
                .trim()
                .to_string());
        }
    }
}

fn connect(to: SocketAddr) -> Result<TcpStream, String> {
    let s = TcpStream::connect_timeout(&to, Duration::from_secs(3))
        .map_err(|e| format!("connect: {e}"))?;
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = s.set_write_timeout(Some(Duration::from_secs(5)));
    Ok(s)
}

#[derive(Debug, Default)]
struct Tally {
    ok: u64,
    failed: Vec<String>,
}

/// The traffic: one keep-alive connection with a request every
/// 0.2 s, and a new connection every 0.1 s.
struct Traffic {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    /// Client port of the keep-alive connection.
    port: Arc<AtomicU16>,
    threads: Vec<JoinHandle<Tally>>,
}

impl Traffic {
    fn start(netns: Option<String>, to: SocketAddr) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let port = Arc::new(AtomicU16::new(0));
        let mut threads = Vec::new();
        for keepalive in [true, false] {
            let (stop, ok, port, ns) = (stop.clone(), ok.clone(), port.clone(), netns.clone());
            threads.push(std::thread::spawn(move || {
                if let Some(ns) = &ns {
                    enter_netns(ns);
                }
                let mut t = Tally::default();
                let mut conn: Option<TcpStream> = None;
                while !stop.load(Ordering::Relaxed) {
                    let at = Instant::now();
                    let r = if keepalive {
                        if conn.is_none() {
                            conn = connect(to).ok();
                            if let Some(c) = &conn {
                                if let Ok(a) = c.local_addr() {
                                    port.store(a.port(), Ordering::Relaxed);
                                }
                            }
                        }
                        match conn.as_mut() {
                            Some(c) => request(c, false),
                            None => Err("keep-alive connect failed".into()),
                        }
                    } else {
                        connect(to).and_then(|mut c| request(&mut c, true))
                    };
                    match r {
                        Ok(_) => {
                            t.ok += 1;
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            let what = if keepalive { "keep-alive" } else { "new" };
                            t.failed.push(format!("{what} connection: {e}"));
                            conn = None;
                        }
                    }
                    let every = Duration::from_millis(if keepalive { 200 } else { 100 });
                    if let Some(rest) = every.checked_sub(at.elapsed()) {
                        std::thread::sleep(rest);
                    }
                }
                t
            }));
        }
        Traffic {
            stop,
            ok,
            port,
            threads,
        }
    }

    /// Wait until `n` more requests have succeeded.
    fn wait_ok(&self, n: u64) {
        let start = self.ok.load(Ordering::Relaxed);
        let done = wait_for(Duration::from_secs(30), || {
            (self.ok.load(Ordering::Relaxed) >= start + n).then_some(())
        });
        assert!(done.is_some(), "traffic stalled");
    }

    fn stop(self) -> Tally {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Tally::default();
        for t in self.threads {
            let t = t.join().expect("traffic thread");
            all.ok += t.ok;
            all.failed.extend(t.failed);
        }
        all
    }
}

// ------------------------------------------------------------- rvsd --

/// Pids of the rvsd processes serving `socket` (its path is on their
/// command line), oldest first.
fn rvsd_pids(socket: &Path) -> Vec<u32> {
    let want = socket.to_string_lossy().to_string();
    let mut v: Vec<u32> = std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
                .filter(|pid| {
                    let Ok(c) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                        return false;
                    };
                    let args: Vec<String> = c
                        .split(|b| *b == 0)
                        .map(|a| String::from_utf8_lossy(a).to_string())
                        .collect();
                    args.first().is_some_and(|a| a.ends_with("rvsd")) && args.contains(&want)
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|s| s.split_whitespace().nth(2) == Some("Z"))
}

fn pidfile(p: &Path) -> Option<u32> {
    std::fs::read_to_string(p).ok()?.trim().parse().ok()
}

/// After USR2 to `old`: the pidfile names a new live pid and `old` is
/// gone; returns the new pid.
fn wait_upgraded(old: u32, pid_file: &Path, log: &dyn Fn() -> String) -> u32 {
    let new = wait_for(Duration::from_secs(20), || {
        pidfile(pid_file).filter(|p| *p != old && alive(*p) && !alive(old))
    });
    new.unwrap_or_else(|| panic!("no upgrade (pidfile {:?}):\n{}", pidfile(pid_file), log()))
}

fn stats(sock: &Path, key: ServiceKey) -> rvs_api::Stats {
    match Client::new(sock).call(&Command::GetService { key }) {
        Ok(Reply::Service(s)) => s.stats,
        r => panic!("GetService: {r:?}"),
    }
}

fn assert_counters_kept(before: &rvs_api::Stats, after: &rvs_api::Stats) {
    assert!(after.conns >= before.conns, "{before:?} -> {after:?}");
    assert!(after.inpkts >= before.inpkts, "{before:?} -> {after:?}");
    assert!(after.outpkts >= before.outpkts, "{before:?} -> {after:?}");
    assert!(after.inbytes >= before.inbytes, "{before:?} -> {after:?}");
    assert!(after.outbytes >= before.outbytes, "{before:?} -> {after:?}");
}

fn lists_conn(sock: &Path, client: &str, port: u16) -> bool {
    match Client::new(sock).call(&Command::ListConnections) {
        Ok(Reply::Connections(c)) => c
            .iter()
            .any(|c| c.caddr.to_string() == client && c.cport == port && !c.template),
        _ => false,
    }
}

fn status_json(sock: &Path, cmd: Command) -> serde_json::Value {
    match Client::new(sock).call(&cmd) {
        Ok(Reply::Status(s)) => s.data,
        r => panic!("{cmd:?}: {r:?}"),
    }
}

/// The part of a log after `marker`.
fn after<'a>(log: &'a str, marker: &str) -> &'a str {
    log.find(marker).map_or("", |i| &log[i..])
}

// ------------------------------------------------------ proxy engine --

#[test]
fn lab_upgrade_proxy_engine_keeps_every_connection() {
    if rvs_lab::skip_unless_root("lab_upgrade_proxy_engine_keeps_every_connection") {
        return;
    }
    let mut lab = Lab::up("rvupx");
    lab.start_nginx("rs1", "rs1");
    lab.start_nginx("rs2", "rs2");
    lab.exec(
        "lvs1",
        &["ip", "addr", "add", &format!("{VIP}/24"), "dev", "eth0"],
    );
    let sock = lab.dir.path().join("rvsd.sock");
    let pid_file = lab.dir.path().join("rvsd.pid");
    let old = lab.spawn(
        "lvs1",
        "rvsd",
        &[
            env!("CARGO_BIN_EXE_rvsd"),
            "--socket",
            sock.to_str().unwrap(),
            "-p",
            pid_file.to_str().unwrap(),
        ],
    );
    let c = Client::new(&sock);
    assert!(
        wait_for(Duration::from_secs(10), || c.call(&Command::GetInfo).ok()).is_some(),
        "rvsd did not start: {}",
        lab.log("rvsd")
    );
    let key = ServiceKey::Addr {
        protocol: Protocol::Tcp,
        addr: VIP.parse().unwrap(),
        port: 80,
    };
    c.call(&Command::AddService {
        spec: ServiceSpec::new(key, "rr"),
    })
    .expect("add service");
    for rs in [RS1, RS2] {
        c.call(&Command::AddDest {
            service: key,
            dest: DestSpec::new(rs.parse().unwrap(), 80, FwdMethod::Masq, 1),
        })
        .expect("add dest");
    }
    let url = format!("http://{VIP}/");
    assert!(wait_for(Duration::from_secs(5), || lab.curl(&url)).is_some());

    let traffic = Traffic::start(Some(lab.ns("client")), format!("{VIP}:80").parse().unwrap());
    traffic.wait_ok(10);
    let before = stats(&sock, key);
    let port = traffic.port.load(Ordering::Relaxed);
    lab.signal(old, libc::SIGUSR2);
    let new = wait_upgraded(old, &pid_file, &|| lab.log("rvsd"));
    assert!(lab.wait_exit(old, Duration::from_secs(5)));
    traffic.wait_ok(20);
    // the keep-alive connection opened before is the new process's now
    assert!(
        lists_conn(&sock, CLIENT, port),
        "-Lnc of the new rvsd lacks {CLIENT}:{port}:\n{}",
        common::rvsadm(&sock, "-Lnc").1
    );
    let tally = traffic.stop();
    let log = lab.log("rvsd");
    assert!(
        tally.failed.is_empty(),
        "{} of {} requests failed: {:?}\n{log}",
        tally.failed.len(),
        tally.ok + tally.failed.len() as u64,
        tally.failed
    );
    assert_counters_kept(&before, &stats(&sock, key));
    assert_eq!(rvsd_pids(&sock), vec![new], "one rvsd, the new one");
    assert!(log.contains("upgrade complete"), "{log}");
    println!(
        "proxy engine: {} requests across the upgrade, none failed; {before:?} -> {:?}",
        tally.ok,
        stats(&sock, key)
    );
    let _ = nix_kill(new);
}

fn nix_kill(pid: u32) -> bool {
    // SAFETY: kill(2) on a pid this test started (through its predecessor).
    unsafe { libc::kill(pid as i32, libc::SIGTERM) == 0 }
}

// ------------------------------------------------ packet engine (DR) --

fn seed_file(name: &str) -> PathBuf {
    rvs_lab::repo_root().join("examples/seed").join(name)
}

fn start_director(lab: &mut Lab, node: &str, conf: &str) -> (u32, PathBuf, PathBuf) {
    let sock = lab.dir.path().join(format!("{node}.sock"));
    let pid_file = lab.dir.path().join(format!("{node}.pid"));
    let pid = lab.spawn(
        node,
        &format!("rvsd-{node}"),
        &[
            env!("CARGO_BIN_EXE_rvsd"),
            "--engine",
            "packet",
            "--interface",
            "eth0",
            "--socket",
            sock.to_str().unwrap(),
            "-p",
            pid_file.to_str().unwrap(),
            "-f",
            seed_file(conf).to_str().unwrap(),
        ],
    );
    let up = wait_for(Duration::from_secs(10), || {
        Client::new(&sock).call(&Command::GetInfo).ok()
    });
    assert!(
        up.is_some(),
        "rvsd on {node}: {}",
        lab.log(&format!("rvsd-{node}"))
    );
    (pid, sock, pid_file)
}

fn vrrp0(sock: &Path) -> serde_json::Value {
    status_json(sock, Command::ListVrrp)[0].clone()
}

fn counter(v: &serde_json::Value, name: &str) -> u64 {
    v["counters"][name].as_u64().unwrap_or(u64::MAX)
}

#[test]
fn lab_upgrade_packet_engine_dr_under_a_vrrp_backup() {
    if rvs_lab::skip_unless_root("lab_upgrade_packet_engine_dr_under_a_vrrp_backup") {
        return;
    }
    let mut lab = Lab::up("rvupd");
    lab.start_nginx("rs1", "rs1");
    lab.start_nginx("rs2", "rs2");
    let (old, sock1, pid1) = start_director(&mut lab, "lvs1", "keepalived-master.conf");
    let (_, sock2, _) = start_director(&mut lab, "lvs2", "keepalived-backup.conf");
    let log1 = |lab: &Lab| lab.log("rvsd-lvs1");
    let ready = wait_for(Duration::from_secs(15), || {
        let ln = common::rvsadm(&sock1, "-Ln").1;
        (lab.has_addr("lvs1", VIP)
            && ln.contains(&format!("-> {RS1}:80"))
            && ln.contains(&format!("-> {RS2}:80"))
            && counter(&vrrp0(&sock2), "adverts_rx") >= 2)
            .then_some(())
    });
    assert!(ready.is_some(), "lvs1 not serving:\n{}", log1(&lab));
    // rs2 fails its check before the upgrade: it must stay out after it
    // (a fresh start would put it back until its first check failed)
    lab.stop_nginx("rs2");
    let rs2_out = wait_for(Duration::from_secs(30), || {
        (!common::rvsadm(&sock1, "-Ln")
            .1
            .contains(&format!("-> {RS2}:80")))
        .then_some(())
    });
    assert!(rs2_out.is_some(), "rs2 never removed:\n{}", log1(&lab));
    let url = format!("http://{VIP}/");
    assert!(wait_for(Duration::from_secs(5), || lab.curl(&url)).is_some());
    let key = ServiceKey::Addr {
        protocol: Protocol::Tcp,
        addr: VIP.parse().unwrap(),
        port: 80,
    };

    let traffic = Traffic::start(Some(lab.ns("client")), format!("{VIP}:80").parse().unwrap());
    traffic.wait_ok(10);
    let (v1, v2) = (vrrp0(&sock1), vrrp0(&sock2));
    assert_eq!(v1["state"], "MASTER");
    assert_eq!(v2["state"], "BACKUP");
    let before = stats(&sock1, key);
    let port = traffic.port.load(Ordering::Relaxed);
    let log2_len = lab.log("rvsd-lvs2").len();
    lab.signal(old, libc::SIGUSR2);
    let new = wait_upgraded(old, &pid1, &|| log1(&lab));
    assert!(lab.wait_exit(old, Duration::from_secs(5)));
    // the checks go on from where they were: nothing to re-run first
    let checks = status_json(&sock1, Command::ListChecks);
    let rss = checks[0]["real_servers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(rss.len(), 2, "{checks}");
    for rs in &rss {
        let up = rs["addr"] == format!("{RS1}:80");
        assert_eq!(rs["alive"], up, "{checks}");
        assert_eq!(rs["in_table"], up, "{checks}");
        assert_eq!(rs["checkers"][0]["has_run"], true, "{checks}");
    }
    // for longer than the BACKUP's master-down interval (3 x 1 s + skew):
    // traffic flows, rs2 never comes back
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(5) {
        let ln = common::rvsadm(&sock1, "-Ln").1;
        assert!(ln.contains(&format!("-> {RS1}:80")), "{ln}");
        assert!(
            !ln.contains(&format!("-> {RS2}:80")),
            "rs2 flapped in:\n{ln}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    traffic.wait_ok(10);
    assert!(
        lists_conn(&sock1, CLIENT, port),
        "-Lnc of the new rvsd lacks {CLIENT}:{port}:\n{}",
        common::rvsadm(&sock1, "-Lnc").1
    );
    let tally = traffic.stop();
    let log = log1(&lab);
    let since = after(&log, "upgrade: new rvsd started");
    assert!(since.contains("health checks taken over"), "{log}");
    assert!(since.contains("VRRP instance taken over"), "{log}");
    assert!(
        tally.failed.is_empty(),
        "{} of {} requests failed: {:?}\n{since}",
        tally.failed.len(),
        tally.ok + tally.failed.len() as u64,
        tally.failed
    );
    assert_counters_kept(&before, &stats(&sock1, key));
    assert_eq!(
        rvsd_pids(&sock1),
        vec![new],
        "one rvsd on lvs1, the new one"
    );

    // VRRP: no transition on either side
    let (w1, w2) = (vrrp0(&sock1), vrrp0(&sock2));
    assert_eq!(w1["state"], "MASTER", "{w1}");
    assert_eq!(w2["state"], "BACKUP", "{w2}");
    for c in ["became_master", "released_master"] {
        assert_eq!(counter(&w1, c), counter(&v1, c), "lvs1 {c}: {v1} -> {w1}");
        assert_eq!(counter(&w2, c), counter(&v2, c), "lvs2 {c}: {v2} -> {w2}");
    }
    assert!(counter(&w1, "adverts_tx") > counter(&v1, "adverts_tx"));
    assert!(counter(&w2, "adverts_rx") >= counter(&v2, "adverts_rx") + 4);
    assert!(lab.has_addr("lvs1", VIP) && !lab.has_addr("lvs2", VIP));
    assert!(!since.contains("Entering"), "lvs1 changed state:\n{since}");
    assert!(!since.contains("VRRP transition"), "{since}");
    let log2 = lab.log("rvsd-lvs2");
    let log2 = log2.get(log2_len..).unwrap_or("");
    assert!(
        !log2.contains("VRRP transition") && !log2.contains("Entering"),
        "the BACKUP moved during the upgrade:\n{log2}"
    );
    // health checks: no real server was added or removed
    for w in [
        "Removing service",
        "Adding service",
        "Disabling",
        "Enabling",
    ] {
        assert!(!since.contains(w), "'{w}' after the upgrade:\n{since}");
    }
    if std::env::var_os("RVS_TEST_SHOW_LOG").is_some() {
        println!("{since}");
    }
    // the kernel still does not answer VIP:80 itself
    let nft = lab.sh("lvs1", "nft list table inet rvs");
    assert!(
        nft.contains(&format!("ip daddr {VIP} tcp dport 80 drop")),
        "{nft}"
    );
    println!(
        "packet engine (DR): {} requests across the upgrade, none failed; {before:?} -> {:?}",
        tally.ok,
        stats(&sock1, key)
    );
    let _ = nix_kill(new);
}

// ----------------------------------------------------------- failures --

/// rvsd with the proxy engine on loopback, from a keepalived file, started
/// from `binary` with `env`.
struct Local {
    dir: tempfile::TempDir,
    sock: PathBuf,
    pid_file: PathBuf,
    conf: PathBuf,
    vip: SocketAddr,
    pid: u32,
    child: std::process::Child,
    _backends: Vec<common::Backend>,
}

impl Local {
    fn start(binary: &Path, env: &[(&str, &str)]) -> Local {
        let dir = tempfile::tempdir().expect("tempdir");
        let b1 = common::Backend::start("127.0.0.1:0", "b1");
        let b2 = common::Backend::start("127.0.0.1:0", "b2");
        let vip: SocketAddr = format!("127.0.0.1:{}", common::free_port())
            .parse()
            .unwrap();
        let conf = dir.path().join("keepalived.conf");
        std::fs::write(
            &conf,
            format!(
                "virtual_server 127.0.0.1 {} {{\n  lb_algo rr\n  lb_kind NAT\n  protocol TCP\n  real_server 127.0.0.1 {} {{ weight 1 }}\n  real_server 127.0.0.1 {} {{ weight 1 }}\n}}\n",
                vip.port(),
                b1.addr.port(),
                b2.addr.port()
            ),
        )
        .expect("conf");
        let sock = dir.path().join("rvsd.sock");
        let pid_file = dir.path().join("rvsd.pid");
        let log = std::fs::File::create(dir.path().join("rvsd.log")).expect("log");
        let child = std::process::Command::new(binary)
            .args(["--socket", sock.to_str().unwrap()])
            .args(["-p", pid_file.to_str().unwrap()])
            .args(["-f", conf.to_str().unwrap()])
            .envs(env.iter().copied())
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn rvsd");
        let pid = child.id();
        let l = Local {
            dir,
            sock,
            pid_file,
            conf,
            vip,
            pid,
            child,
            _backends: vec![b1, b2],
        };
        let up = wait_for(Duration::from_secs(10), || {
            common::get(l.vip).filter(|b| b.starts_with('b'))
        });
        assert!(up.is_some(), "rvsd does not serve: {}", l.log());
        l
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("rvsd.log")).unwrap_or_default()
    }

    fn usr2(&self) {
        // SAFETY: kill(2) on the rvsd this test started.
        unsafe { libc::kill(self.pid as i32, libc::SIGUSR2) };
    }

    /// Wait for `text` in the log (at least `n` times).
    fn wait_log(&self, text: &str, n: usize) -> String {
        let log = wait_for(Duration::from_secs(40), || {
            let l = self.log();
            (l.matches(text).count() >= n).then_some(l)
        });
        log.unwrap_or_else(|| panic!("no '{text}' in the log:\n{}", self.log()))
    }

    /// The old process still serves: new connections, the keep-alive one,
    /// the pidfile, and it is the only rvsd.
    fn assert_still_serving(&mut self, ka: &mut common::KeepAlive) {
        assert!(matches!(self.child.try_wait(), Ok(None)), "{}", self.log());
        for _ in 0..4 {
            let b = common::get(self.vip);
            assert!(
                b.as_deref().is_some_and(|b| b.starts_with('b')),
                "{b:?}\n{}",
                self.log()
            );
        }
        for _ in 0..3 {
            let b = ka.get();
            assert!(
                b.as_deref().is_some_and(|b| b.starts_with('b')),
                "keep-alive connection after the failed upgrade: {b:?}\n{}",
                self.log()
            );
        }
        assert_eq!(pidfile(&self.pid_file), Some(self.pid));
        let gone = wait_for(Duration::from_secs(10), || {
            (rvsd_pids(&self.sock) == vec![self.pid]).then_some(())
        });
        assert!(
            gone.is_some(),
            "rvsd processes: {:?}",
            rvsd_pids(&self.sock)
        );
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        for pid in rvsd_pids(&self.sock) {
            // SAFETY: kill(2) on rvsd processes this test started.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
        let _ = self.child.wait();
    }
}

fn rvsd_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_rvsd"))
}

#[test]
fn upgrade_refused_when_the_configuration_no_longer_parses() {
    let mut d = Local::start(&rvsd_bin(), &[]);
    let mut ka = common::KeepAlive::open(d.vip);
    assert!(ka.get().is_some());
    std::fs::write(&d.conf, "virtual_server 127.0.0.1 {\n  lb_algo rr\n").expect("conf");
    d.usr2();
    let log = d.wait_log("upgrade failed", 1);
    assert!(log.contains("the new rvsd refused"), "{log}");
    assert!(log.contains("has errors"), "{log}");
    d.assert_still_serving(&mut ka);
}

#[test]
fn upgrade_fails_cleanly_when_the_new_binary_exits() {
    // the binary at rvsd's path is replaced by one that exits at once
    let dir = tempfile::tempdir().expect("tempdir");
    let bin = dir.path().join("rvsd");
    if std::fs::hard_link(rvsd_bin(), &bin).is_err() {
        std::fs::copy(rvsd_bin(), &bin).expect("copy rvsd");
    }
    let mut d = Local::start(&bin, &[]);
    let mut ka = common::KeepAlive::open(d.vip);
    assert!(ka.get().is_some());
    std::fs::remove_file(&bin).expect("rm");
    std::fs::write(&bin, "#!/bin/sh\necho broken release >&2\nexit 3\n").expect("script");
    std::fs::set_permissions(&bin, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    d.usr2();
    let log = d.wait_log("upgrade failed", 1);
    assert!(log.contains("exited"), "{log}");
    d.assert_still_serving(&mut ka);
}

#[test]
fn upgrade_refused_on_a_handover_format_mismatch() {
    let mut d = Local::start(&rvsd_bin(), &[("RVS_UPGRADE_TEST_FORMAT", "99")]);
    let mut ka = common::KeepAlive::open(d.vip);
    assert!(ka.get().is_some());
    d.usr2();
    let log = d.wait_log("upgrade failed", 1);
    assert!(
        log.contains("handover format 1 is not this rvsd's format 99"),
        "{log}"
    );
    d.assert_still_serving(&mut ka);
}

#[test]
fn upgrade_survives_a_crash_of_the_new_process_after_ready() {
    let mut d = Local::start(&rvsd_bin(), &[("RVS_UPGRADE_TEST_CRASH_AFTER_READY", "1")]);
    // relayed connections are stopped and handed over after READY: the
    // old process must take them back
    let mut ka = common::KeepAlive::open(d.vip);
    assert!(ka.get().is_some());
    d.usr2();
    let log = d.wait_log("upgrade failed", 1);
    assert!(log.contains("failed during the handover"), "{log}");
    d.assert_still_serving(&mut ka);
    // and it can still be upgraded later (here: it fails the same way)
    d.usr2();
    d.wait_log("upgrade failed", 2);
    d.assert_still_serving(&mut ka);
}

#[test]
fn a_second_usr2_during_a_handover_is_refused() {
    let d = Local::start(&rvsd_bin(), &[("RVS_UPGRADE_TEST_READY_DELAY_MS", "1500")]);
    let mut ka = common::KeepAlive::open(d.vip);
    assert!(ka.get().is_some());
    let old = d.pid;
    d.usr2();
    d.wait_log("upgrade: new rvsd started", 1);
    d.usr2();
    let log = d.wait_log("upgrade is already in progress", 1);
    assert_eq!(log.matches("upgrade: new rvsd started").count(), 1, "{log}");
    // the first one completes
    let new = wait_upgraded(old, &d.pid_file, &|| d.log());
    assert_eq!(
        ka.get().as_deref().map(|b| b.starts_with('b')),
        Some(true),
        "{}",
        d.log()
    );
    assert_eq!(rvsd_pids(&d.sock), vec![new]);
    assert!(common::get(d.vip).is_some());
}
