//! Lab tests: the AF_XDP engine (`rvs-xdp-lvs`) in the lvs1 namespace,
//! real nginx on rs1/rs2 (prepared for DR by `scripts/netns-lab`), curl (and wrk) from the client. Root only
//! (prints "skipped: ..." otherwise, or when XDP/AF_XDP is unavailable).
//!
//! Run: `cargo test -p rvs-xdp --test lab -- --test-threads=1`
//!
//! Throughput against the AF_PACKET engine (ignored by default; release
//! build, path of `rvs-packet-lvs` in `RVS_PACKET_LVS`):
//! ```text
//! cargo build --release -p rvs-packet --bin rvs-packet-lvs
//! RVS_PACKET_LVS=$CARGO_TARGET_DIR/release/rvs-packet-lvs \
//!   cargo test --release -p rvs-xdp --test lab -- --ignored --nocapture throughput
//! ```

use rvs_lab::{skip_unless_root, wait_for, Lab, RS1, RS2, VIP};
use std::path::{Path, PathBuf};
use std::time::Duration;

const XDP_LVS: &str = env!("CARGO_BIN_EXE_rvs-xdp-lvs");

use rvs_packet::driver::{read_dump, Dump};

struct Setup {
    lab: Lab,
    dump: PathBuf,
    lvs_pid: u32,
}

/// Start `prog` (rvs-xdp-lvs or rvs-packet-lvs) in lvs1 for VIP:80 → rs1,
/// rs2 by DR. `None` (and a "skipped" line) when the XDP engine cannot
/// start on this kernel.
fn start_lvs(lab: &mut Lab, prog: &str, name: &str, method: &str, dump: &Path) -> Option<u32> {
    start_lvs_port(lab, prog, name, method, dump, 80, false)
}

/// [`start_lvs`] for VIP:`port` (TCP, or UDP with `udp`).
fn start_lvs_port(
    lab: &mut Lab,
    prog: &str,
    name: &str,
    method: &str,
    dump: &Path,
    port: u16,
    udp: bool,
) -> Option<u32> {
    let vip = format!("{VIP}:{port}");
    let (r1, r2) = (format!("{RS1}:{port}"), format!("{RS2}:{port}"));
    let mut args = vec![
        prog,
        "--interface",
        "eth0",
        "--vip",
        &vip,
        "--rs",
        &r1,
        "--rs",
        &r2,
        "--method",
        method,
        "--dump",
        dump.to_str().unwrap_or_default(),
    ];
    if udp {
        args.push("--udp");
    }
    let pid = lab.spawn("lvs1", name, &args);
    let want = format!("dport {port} drop");
    let up = wait_for(Duration::from_secs(10), || {
        if lab.log(name).contains("cannot start") {
            return Some(false);
        }
        let t = lab.sh("lvs1", "nft list table inet rvs 2>/dev/null");
        (t.contains(&want) && dump.exists()).then_some(true)
    });
    match up {
        Some(true) => Some(pid),
        Some(false) => {
            let log = lab.log(name);
            if log.contains("XDP") || log.contains("AF_XDP") {
                eprintln!("skipped: no XDP/AF_XDP support here: {log}");
                None
            } else {
                panic!("engine did not start: {log}")
            }
        }
        None => panic!("engine did not start: {}", lab.log(name)),
    }
}

fn setup(prefix: &str, method: &str, rs_prep: impl Fn(&Lab)) -> Option<Setup> {
    let mut lab = Lab::up(prefix);
    lab.start_nginx("rs1", "rs1");
    lab.start_nginx("rs2", "rs2");
    rs_prep(&lab);
    let o = lab.exec(
        "lvs1",
        &["ip", "addr", "add", &format!("{VIP}/24"), "dev", "eth0"],
    );
    assert!(o.status.success());
    let dump = lab.dir.path().join("dump");
    let lvs_pid = start_lvs(&mut lab, XDP_LVS, "lvs", method, &dump)?;
    Some(Setup { lab, dump, lvs_pid })
}

fn curl4(lab: &Lab) -> Vec<String> {
    (0..4)
        .map(|_| {
            lab.curl(&format!("http://{VIP}/"))
                .unwrap_or_else(|| "FAILED".into())
        })
        .collect()
}

fn assert_rr(got: &[String]) {
    assert!(got[0] == "rs1" || got[0] == "rs2", "got {got:?}");
    let other = if got[0] == "rs1" { "rs2" } else { "rs1" };
    assert_eq!(
        got,
        [got[0].as_str(), other, got[0].as_str(), other],
        "rr alternation"
    );
}

fn wait_state(s: &Setup, state: &str, n: usize) -> Dump {
    wait_for(Duration::from_secs(5), || {
        let d = read_dump(&s.dump)?;
        (d.real_conns().iter().filter(|c| c[4] == state).count() >= n).then_some(d)
    })
    .unwrap_or_else(|| {
        panic!(
            "no {n} conns in {state}: {}\nlvs log: {}",
            std::fs::read_to_string(&s.dump).unwrap_or_default(),
            s.lab.log("lvs")
        )
    })
}

#[test]
fn dr() {
    if skip_unless_root("rvs-xdp dr") {
        return;
    }
    let Some(mut s) = setup("rvsxdp-dr", "dr", |_| {}) else {
        return;
    };
    let link = s.lab.sh("lvs1", "ip link show dev eth0");
    assert!(link.contains("xdpgeneric"), "XDP program attached: {link}");
    assert_rr(&curl4(&s.lab));
    let d = wait_state(&s, "FIN_WAIT", 4);
    assert_eq!(d.svc[0], 4, "Conns");
    assert!(d.svc[1] >= 4 * 5, "InPkts {}", d.svc[1]);
    assert_eq!(d.svc[2], 0, "OutPkts must stay 0 in DR");
    assert!(d.engine("dr") >= 20, "dr {}", d.engine("dr"));
    // Non-VIP traffic still reaches the kernel (XDP_PASS): ARP for the
    // director's own address and a TCP RST from its kernel.
    let out = s.lab.sh(
        "client",
        &format!(
            "timeout 3 bash -c 'exec 3<>/dev/tcp/{}/9' 2>&1",
            rvs_lab::LVS1
        ),
    );
    assert!(
        out.contains("refused"),
        "kernel answers non-VIP traffic: {out}"
    );
    // during a connection: ESTABLISHED
    let script = format!("exec 3<>/dev/tcp/{VIP}/80; sleep 3");
    s.lab.spawn("client", "hold", &["bash", "-c", &script]);
    let d = wait_state(&s, "ESTABLISHED", 1);
    assert_eq!(d.svc[0], 5);
    // stop: program detached, nft table removed
    s.lab.signal(s.lvs_pid, 15);
    assert!(
        s.lab.wait_exit(s.lvs_pid, Duration::from_secs(5)),
        "lvs did not exit"
    );
    let link = s.lab.sh("lvs1", "ip link show dev eth0");
    assert!(
        !link.contains("prog/xdp") && !link.contains("xdpgeneric"),
        "XDP program left behind: {link}"
    );
    let t = s.lab.sh("lvs1", "nft list tables");
    assert!(!t.contains("inet rvs"), "nft table left behind: {t}");
}

#[test]
fn nat() {
    if skip_unless_root("rvs-xdp nat") {
        return;
    }
    let Some(s) = setup("rvsxdp-nat", "nat", |lab| {
        for n in ["rs1", "rs2"] {
            // Replies to the client must go through the director.
            let o = lab.exec(
                n,
                &[
                    "ip",
                    "route",
                    "replace",
                    rvs_lab::CLIENT,
                    "via",
                    rvs_lab::LVS1,
                ],
            );
            assert!(o.status.success());
        }
    }) else {
        return;
    };
    assert_rr(&curl4(&s.lab));
    // both directions seen -> the server's FIN moves the conn to TIME_WAIT
    let d = wait_state(&s, "TIME_WAIT", 4);
    assert_eq!(d.svc[0], 4);
    assert!(
        d.svc[1] >= 16 && d.svc[2] >= 12,
        "In {} Out {}",
        d.svc[1],
        d.svc[2]
    );
    assert!(d.engine("nat_in") >= 16, "nat_in {}", d.engine("nat_in"));
    assert!(d.engine("nat_out") >= 12, "nat_out {}", d.engine("nat_out"));
    // The director's own traffic with a NAT real server stays with its
    // kernel (the program does not steal replies addressed to it).
    let out = s.lab.sh("lvs1", &format!("curl -s -m 2 http://{RS1}/"));
    assert_eq!(out.trim(), "rs1", "director -> real server directly");
}

/// TUN (IPIP) with the user-space decapsulator of `rvs-packet` on the real
/// servers (this kernel has no ipip module). Needs the helper's path in
/// `RVS_PACKET_REALSERVER` (`cargo build -p rvs-packet --bin
/// rvs-packet-realserver`), else skipped.
#[test]
fn tun() {
    if skip_unless_root("rvs-xdp tun") {
        return;
    }
    let Ok(rs_prog) = std::env::var("RVS_PACKET_REALSERVER") else {
        eprintln!("skipped: rvs-xdp tun needs RVS_PACKET_REALSERVER (rvs-packet-realserver)");
        return;
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let Some(s) = setup("rvsxdp-tun", "tun", |lab| {
        let mut pids = Vec::new();
        for n in ["rs1", "rs2"] {
            // Lab::spawn needs &mut: run the helper through the shell.
            let log = lab.dir.path().join(format!("decap-{n}.log"));
            let cmd = format!(
                "nohup {rs_prog} setup --vip {VIP} --tun --interface eth0 --gue-port 6080 \
                 >{} 2>&1 & echo $!",
                log.display()
            );
            pids.push(lab.sh(n, &cmd).trim().to_string());
        }
        for n in ["rs1", "rs2"] {
            let ok = wait_for(Duration::from_secs(5), || {
                lab.sh(n, "nft list tables")
                    .contains("rvs-rs")
                    .then_some(())
            });
            assert!(ok.is_some(), "decap in {n} did not start");
        }
        let _ = tx.send(pids);
    }) else {
        return;
    };
    let pids = rx.recv().unwrap_or_default();
    assert_rr(&curl4(&s.lab));
    let d = wait_state(&s, "FIN_WAIT", 4);
    assert_eq!(d.svc[2], 0);
    assert!(d.engine("tun") >= 20, "tun {}", d.engine("tun"));
    for p in pids {
        let _ = std::process::Command::new("kill").arg(p).status();
    }
}

/// utime + stime of `pid` in clock ticks (USER_HZ = 100).
fn cpu_ticks(pid: u32) -> u64 {
    let t = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = t.rsplit_once(')').map(|x| x.1).unwrap_or_default();
    let f: Vec<&str> = rest.split_whitespace().collect();
    // fields after ")": state is index 0, utime index 11, stime index 12
    let g = |i: usize| f.get(i).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
    g(11) + g(12)
}

/// Requests/s of `wrk` keep-alive from the client to the VIP.
fn wrk(lab: &Lab, secs: u32) -> f64 {
    let out = lab.sh(
        "client",
        &format!("wrk -t1 -c32 -d{secs}s http://{VIP}/ 2>&1"),
    );
    out.lines()
        .find(|l| l.starts_with("Requests/sec:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("wrk output: {out}"))
}

#[test]
#[ignore = "benchmark: release build and RVS_PACKET_LVS needed"]
fn throughput() {
    if skip_unless_root("rvs-xdp throughput") {
        return;
    }
    let Ok(packet_lvs) = std::env::var("RVS_PACKET_LVS") else {
        eprintln!("skipped: set RVS_PACKET_LVS to the rvs-packet-lvs binary");
        return;
    };
    let mut lab = Lab::up("rvsxdp-bench");
    lab.start_nginx("rs1", "rs1");
    lab.start_nginx("rs2", "rs2");
    let o = lab.exec(
        "lvs1",
        &["ip", "addr", "add", &format!("{VIP}/24"), "dev", "eth0"],
    );
    assert!(o.status.success());
    let secs: u32 = std::env::var("RVS_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let mut rows = Vec::new();
    for (name, prog) in [("packet", packet_lvs.as_str()), ("xdp", XDP_LVS)] {
        let dump = lab.dir.path().join(format!("dump-{name}"));
        let Some(pid) = start_lvs(&mut lab, prog, name, "dr", &dump) else {
            return;
        };
        assert_rr(&curl4(&lab));
        let _ = wrk(&lab, 1); // warm-up
        let cpu0 = cpu_ticks(pid);
        let rps = wrk(&lab, secs);
        let cpu = cpu_ticks(pid).saturating_sub(cpu0) as f64 / 100.0;
        // engine CPU per request (µs): fairer than req/s on shared cores
        let us = cpu * 1e6 / (rps * f64::from(secs));
        rows.push((name, rps, cpu / f64::from(secs), us));
        lab.signal(pid, 15);
        assert!(lab.wait_exit(pid, Duration::from_secs(5)));
    }
    println!("\nwrk -t1 -c32 -d{secs}s keep-alive, DR, client -> VIP -> nginx rs1/rs2");
    println!(
        "{:<10} {:>10} {:>12} {:>14}",
        "engine", "req/s", "engine CPU", "CPU us/req"
    );
    for (n, r, c, us) in &rows {
        println!("{n:<10} {r:>10.0} {:>11.0}% {us:>14.2}", c * 100.0);
    }
    println!(
        "xdp / packet: {:.2}x req/s, {:.2}x less engine CPU per request",
        rows[1].1 / rows[0].1,
        rows[0].3 / rows[1].3
    );
}

/// 64-byte UDP packets/s forwarded by DR, AF_PACKET vs AF_XDP: `trafgen`
/// in the client floods VIP:9/udp (one flow) with frames addressed to the
/// director's MAC; the real servers drop them in prerouting. Ignored by
/// default, like `throughput` (release build, `RVS_PACKET_LVS`).
#[test]
#[ignore = "benchmark: release build and RVS_PACKET_LVS needed"]
fn pps() {
    if skip_unless_root("rvs-xdp pps") {
        return;
    }
    let Ok(packet_lvs) = std::env::var("RVS_PACKET_LVS") else {
        eprintln!("skipped: set RVS_PACKET_LVS to the rvs-packet-lvs binary");
        return;
    };
    let mut lab = Lab::up("rvsxdp-pps");
    for n in ["rs1", "rs2"] {
        let nft = "nft add table inet rvsbench && \
                   nft add chain inet rvsbench c '{ type filter hook prerouting priority -300; }' && \
                   nft add rule inet rvsbench c udp dport 9 drop && echo ok";
        assert!(lab.sh(n, nft).contains("ok"), "nft in {n}");
    }
    let o = lab.exec(
        "lvs1",
        &["ip", "addr", "add", &format!("{VIP}/24"), "dev", "eth0"],
    );
    assert!(o.status.success());
    let mac = lab.sh("lvs1", "cat /sys/class/net/eth0/address");
    let conf = lab.dir.path().join("udp.trafgen");
    std::fs::write(
        &conf,
        format!(
            "{{ eth(da={}, type=0x0800), ipv4(saddr={}, daddr={VIP}, ttl=64, df), \
             udp(sp=4000, dp=9), fill(0x00, 18) }}\n",
            mac.trim(),
            rvs_lab::CLIENT
        ),
    )
    .expect("trafgen conf");
    let secs: u32 = std::env::var("RVS_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let mut rows = Vec::new();
    for (name, prog) in [("packet", packet_lvs.as_str()), ("xdp", XDP_LVS)] {
        let dump = lab.dir.path().join(format!("dump-{name}"));
        let Some(pid) = start_lvs_port(&mut lab, prog, name, "dr", &dump, 9, true) else {
            return;
        };
        std::thread::sleep(Duration::from_millis(300));
        let before = read_dump(&dump).map(|d| d.engine("dr")).unwrap_or(0);
        let cpu0 = cpu_ticks(pid);
        let out = lab.sh(
            "client",
            &format!(
                "timeout -s INT {secs} trafgen --dev eth0 --conf {} --cpus 1 2>&1 | tail -5",
                conf.display()
            ),
        );
        std::thread::sleep(Duration::from_millis(300));
        let cpu = cpu_ticks(pid).saturating_sub(cpu0) as f64 / 100.0;
        let after = read_dump(&dump).map(|d| d.engine("dr")).unwrap_or(0);
        let pps = (after - before) as f64 / f64::from(secs);
        eprintln!("{name}: trafgen: {out}");
        rows.push((name, pps, cpu / f64::from(secs)));
        lab.signal(pid, 15);
        assert!(lab.wait_exit(pid, Duration::from_secs(5)));
    }
    println!(
        "\ntrafgen 64-byte UDP, one flow, {secs}s, DR, client -> VIP -> rs (dropped in rs prerouting)"
    );
    println!(
        "{:<10} {:>14} {:>12}",
        "engine", "forwarded pps", "engine CPU"
    );
    for (n, p, c) in &rows {
        println!("{n:<10} {p:>14.0} {:>11.0}%", c * 100.0);
    }
    println!("xdp / packet = {:.2}x pps", rows[1].1 / rows[0].1);
}
