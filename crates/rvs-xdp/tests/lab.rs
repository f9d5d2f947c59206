//! Lab tests: the AF_XDP engine (`rvs-xdp-lvs`) in the lvs1 namespace,
//! real nginx on rs1/rs2 (prepared for DR by `scripts/netns-lab`), curl (and wrk) from the client. Root only
//! (skipped otherwise, or when XDP/AF_XDP is unavailable: see
//! `rvs_lab::skip`; with `RVS_REQUIRE_LAB=1` a skip is a failure).
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

use rvs_lab::{need, skip_unless_root, wait_for, Lab, RS1, RS2, VIP};
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
/// rs2 by DR. `None` (and a recorded skip, see `rvs_lab::skip`) when the
/// XDP engine cannot start on this kernel.
fn start_lvs(lab: &mut Lab, prog: &str, name: &str, method: &str, dump: &Path) -> Option<u32> {
    start_lvs_port(lab, prog, name, method, dump, 80, false, &[])
}

/// [`start_lvs`] for VIP:`port` (TCP, or UDP with `udp`), with `extra`
/// arguments.
#[allow(clippy::too_many_arguments)]
fn start_lvs_port(
    lab: &mut Lab,
    prog: &str,
    name: &str,
    method: &str,
    dump: &Path,
    port: u16,
    udp: bool,
    extra: &[&str],
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
    args.extend_from_slice(extra);
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
                rvs_lab::skip(&format!("rvs-xdp {}", lab.prefix), need::XDP, &log);
                None
            } else {
                panic!("engine did not start: {log}")
            }
        }
        None => panic!("engine did not start: {}", lab.log(name)),
    }
}

fn setup(prefix: &str, method: &str, rs_prep: impl Fn(&Lab)) -> Option<Setup> {
    setup_with(prefix, method, &[], rs_prep)
}

/// [`setup`] with extra arguments for `rvs-xdp-lvs`.
fn setup_with(prefix: &str, method: &str, extra: &[&str], rs_prep: impl Fn(&Lab)) -> Option<Setup> {
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
    let lvs_pid = start_lvs_port(&mut lab, XDP_LVS, "lvs", method, &dump, 80, false, extra)?;
    Some(Setup { lab, dump, lvs_pid })
}

fn wait_state(s: &Setup, state: &str, n: usize) -> Dump {
    wait_for(Duration::from_secs(20), || {
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
    rvs_lab::assert_rr(&s.lab.curl4());
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
    rvs_lab::assert_rr(&s.lab.curl4());
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
    // Keep-alive requests: once ESTABLISHED, both directions are forwarded
    // from the flow cache and the flushed counts reach the table.
    let before = read_dump(&s.dump).map(|d| d.svc).unwrap_or_default();
    let url = format!("http://{VIP}/");
    let o = s.lab.exec(
        "client",
        &["curl", "-s", "-m", "5", &url, &url, &url, &url, &url, &url],
    );
    let body = String::from_utf8_lossy(&o.stdout).replace('\n', "");
    assert!(
        o.status.success() && (body == "rs1".repeat(6) || body == "rs2".repeat(6)),
        "keep-alive: {body:?}"
    );
    let d = wait_state(&s, "TIME_WAIT", 5);
    let d = wait_for(Duration::from_secs(3), || {
        read_dump(&s.dump).filter(|d| {
            d.engine("cache_hits") >= 10
                && d.engine("nat_in") == d.svc[1]
                && d.engine("nat_out") == d.svc[2]
        })
    })
    .unwrap_or_else(|| {
        panic!(
            "no cache hits / counts not flushed: {d:?}\nnow: {:?}",
            read_dump(&s.dump)
        )
    });
    // 6 requests and 6 responses at least, with the handshakes and FINs.
    assert!(
        d.svc[1] >= before.get(1).copied().unwrap_or(0) + 8
            && d.svc[2] >= before.get(2).copied().unwrap_or(0) + 6,
        "In/OutPkts {before:?} -> {:?}",
        d.svc
    );
}

/// The user-space decapsulator of `rvs-packet` (`rvs-packet-realserver`):
/// `$RVS_PACKET_REALSERVER`, else the binary beside this test's (same
/// target directory; `cargo test --workspace --all-targets` builds it).
fn realserver_prog() -> Option<String> {
    if let Ok(p) = std::env::var("RVS_PACKET_REALSERVER") {
        return Some(p);
    }
    let exe = std::env::current_exe().ok()?;
    // target/<profile>/deps/lab-HASH -> target/<profile>/rvs-packet-realserver
    let p = exe.parent()?.parent()?.join("rvs-packet-realserver");
    p.is_file().then(|| p.to_string_lossy().into_owned())
}

/// TUN (IPIP) with the user-space decapsulator of `rvs-packet` on the real
/// servers (this kernel has no ipip module); skipped if the decapsulator
/// binary is not built ([`realserver_prog`]).
#[test]
fn tun() {
    if skip_unless_root("rvs-xdp tun") {
        return;
    }
    let Some(rs_prog) = realserver_prog() else {
        rvs_lab::skip("rvs-xdp tun", need::PACKET_REALSERVER, "");
        return;
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let Some(s) = setup("rvsxdp-tun", "tun", |lab| {
        let _ = tx.send(start_decap(lab, &rs_prog));
    }) else {
        return;
    };
    let pids = rx.recv().unwrap_or_default();
    rvs_lab::assert_rr(&s.lab.curl4());
    let d = wait_state(&s, "FIN_WAIT", 4);
    assert_eq!(d.svc[2], 0);
    assert!(d.engine("tun") >= 20, "tun {}", d.engine("tun"));
    for p in pids {
        let _ = std::process::Command::new("kill").arg(p).status();
    }
}

// ---- GSO/GRO aggregates (issue #9): AF_XDP multi-buffer ----
//
// The client's veth has TSO/GSO on (the default), so a bulk upload reaches
// the director as GSO skbs of up to 64 KiB, larger than a UMEM frame. With
// multi-buffer they arrive as descriptor chains and the engine segments
// them; without it the kernel drops them before the socket (xsk
// `rx_dropped`, drop reason XDP) and TCP crawls on by retransmissions.

/// Size of the uploaded / downloaded bodies.
const BIG: usize = 1 << 20;

/// Replace the default nginx of `node` with one that also accepts
/// `PUT /up/NAME` (WebDAV: the whole body is stored before the 201) and
/// serves a `BIG`-byte `/big`.
fn start_upload_nginx(lab: &Lab, node: &str) {
    lab.stop_nginx(node);
    let www = lab.start_nginx_with(
        node,
        node,
        &rvs_lab::NginxOpts {
            http: "client_max_body_size 10m;",
            server: "location /up/ { dav_methods PUT; }",
            ..Default::default()
        },
    );
    // nginx workers run as nobody: the upload dir is theirs.
    let up = www.join("up");
    std::fs::create_dir_all(&up).expect("upload dir");
    let _ = std::fs::set_permissions(&up, std::os::unix::fs::PermissionsExt::from_mode(0o777));
    std::fs::write(www.join("big"), body(node.as_bytes()[2])).expect("big");
}

/// `BIG` pseudo-random bytes (seeded, so every run sends the same).
fn body(seed: u8) -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9 ^ u32::from(seed);
    (0..BIG)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// Fault threshold for a 1 MiB upload through the engine: segmented
/// GSO aggregates take well under a second, while dropped ones make TCP
/// crawl by retransmissions (~30 s). 15 s tells the two apart even on a
/// loaded machine (speed itself is measured by the benchmarks).
const UPLOAD_FAULT_SECS: f64 = 15.0;

/// `curl -T file http://VIP/up/NAME` from the client: (HTTP code, seconds).
fn upload(lab: &Lab, file: &Path, name: &str, max_secs: u32) -> (String, f64) {
    let o = lab.exec(
        "client",
        &[
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "-m",
            &max_secs.to_string(),
            "-w",
            "%{http_code} %{time_total}",
            "-T",
            file.to_str().unwrap_or_default(),
            &format!("http://{VIP}/up/{name}"),
        ],
    );
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let mut w = out.split_whitespace();
    let code = w.next().unwrap_or_default().to_string();
    let secs = w.next().and_then(|t| t.parse().ok()).unwrap_or(f64::NAN);
    (code, secs)
}

/// The file `name` as stored by a real server's nginx (whichever got it).
fn uploaded(lab: &Lab, name: &str) -> Option<Vec<u8>> {
    ["rs1", "rs2"]
        .iter()
        .find_map(|n| std::fs::read(lab.dir.path().join(format!("nginx-{n}/www/up/{name}"))).ok())
}

fn engine_log_multi_buffer(s: &Setup) -> Option<bool> {
    let log = s.lab.log("lvs");
    if log.contains("multi-buffer on") {
        Some(true)
    } else if log.contains("multi-buffer off") {
        Some(false)
    } else {
        None
    }
}

/// True when the engine runs with AF_XDP multi-buffer; false (and a
/// recorded skip) when the kernel has none.
fn multi_buffer_or_skip(s: &Setup, test: &str) -> bool {
    match engine_log_multi_buffer(s) {
        Some(true) => true,
        Some(false) => {
            rvs_lab::skip(test, need::XDP_MULTI_BUFFER, &s.lab.log("lvs"));
            false
        }
        None => panic!("engine log: {}", s.lab.log("lvs")),
    }
}

/// A client uploads 1 MiB bodies with TSO/GSO on through the DR service:
/// the director receives GSO aggregates (InBytes / InPkts far above the
/// MTU), gets them as AF_XDP multi-buffer chains, segments them and the
/// real servers store every byte, quickly.
#[test]
fn gso_upload_dr() {
    if skip_unless_root("rvs-xdp gso_upload_dr") {
        return;
    }
    let Some(s) = setup("rvsxdp-gso", "dr", |lab| {
        for n in ["rs1", "rs2"] {
            start_upload_nginx(lab, n);
        }
    }) else {
        return;
    };
    if !multi_buffer_or_skip(&s, "rvs-xdp gso_upload_dr") {
        return;
    }
    let data = body(0);
    let file = s.lab.dir.path().join("body");
    std::fs::write(&file, &data).expect("body");
    for i in 0..2 {
        let name = format!("f{i}");
        // Without multi-buffer this takes ~30 s (retransmissions only).
        let (code, secs) = upload(&s.lab, &file, &name, 20);
        assert_eq!(
            code,
            "201",
            "upload {name}: {secs}s; lvs log: {}",
            s.lab.log("lvs")
        );
        assert!(secs < UPLOAD_FAULT_SECS, "upload {name} took {secs}s");
        let got = uploaded(&s.lab, &name).expect("uploaded file on a real server");
        assert!(
            got == data,
            "upload {name}: {} bytes, content differs",
            got.len()
        );
    }
    // rr: one upload on each real server
    for n in ["rs1", "rs2"] {
        let dir = s.lab.dir.path().join(format!("nginx-{n}/www/up"));
        let k = std::fs::read_dir(&dir).map(|d| d.count()).unwrap_or(0);
        assert_eq!(k, 1, "uploads on {n}");
    }
    let d = wait_state(&s, "FIN_WAIT", 2);
    let (in_pkts, in_bytes) = (d.svc[1], d.svc[3]);
    assert!(in_bytes >= 2 * BIG as u64, "InBytes {in_bytes}");
    assert!(
        in_bytes / in_pkts.max(1) > 3000,
        "no GSO aggregates reached the director (TSO off on the client?): \
         InPkts {in_pkts} InBytes {in_bytes}"
    );
    // Segments sent: at least one per 1460 bytes of payload.
    assert!(
        d.engine("dr") >= 2 * BIG as u64 / 1460,
        "dr {} InPkts {in_pkts}",
        d.engine("dr")
    );
    assert_eq!(d.svc[2], 0, "OutPkts must stay 0 in DR");
    for c in ["truncated", "too_big", "malformed", "tx_errors"] {
        assert_eq!(d.engine(c), 0, "{c}");
    }
    // Small requests are unaffected.
    rvs_lab::assert_rr(&s.lab.curl4());
}

/// NAT with GSO in both directions: 1 MiB uploads (client TSO) and 1 MiB
/// downloads (real server TSO, replies through the director) arrive as
/// multi-buffer chains, are segmented and translated.
#[test]
fn gso_nat() {
    if skip_unless_root("rvs-xdp gso_nat") {
        return;
    }
    let Some(s) = setup("rvsxdp-gsonat", "nat", |lab| {
        for n in ["rs1", "rs2"] {
            start_upload_nginx(lab, n);
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
    if !multi_buffer_or_skip(&s, "rvs-xdp gso_nat") {
        return;
    }
    let data = body(0);
    let file = s.lab.dir.path().join("body");
    std::fs::write(&file, &data).expect("body");
    let (code, secs) = upload(&s.lab, &file, "n0", 20);
    assert_eq!(
        code,
        "201",
        "upload: {secs}s; lvs log: {}",
        s.lab.log("lvs")
    );
    assert!(secs < UPLOAD_FAULT_SECS, "upload took {secs}s");
    assert!(
        uploaded(&s.lab, "n0").is_some_and(|g| g == data),
        "upload content"
    );
    // The next connection goes to the other real server (rr); its body
    // comes back through the director.
    let out = s.lab.dir.path().join("down");
    let o = s.lab.exec(
        "client",
        &[
            "curl",
            "-s",
            "-m",
            "10",
            "-o",
            out.to_str().unwrap_or_default(),
            "-w",
            "%{http_code}",
            &format!("http://{VIP}/big"),
        ],
    );
    assert_eq!(String::from_utf8_lossy(&o.stdout), "200", "download");
    let got = std::fs::read(&out).unwrap_or_default();
    assert!(
        got == body(b'1') || got == body(b'2'),
        "download: {} bytes, content differs",
        got.len()
    );
    let d = wait_state(&s, "TIME_WAIT", 2);
    // More frames sent than packets counted by the model: aggregates were
    // segmented in both directions.
    let (in_pkts, out_pkts) = (d.svc[1], d.svc[2]);
    let (nat_in, nat_out) = (d.engine("nat_in"), d.engine("nat_out"));
    assert!(nat_in > in_pkts + 100, "nat_in {nat_in} InPkts {in_pkts}");
    assert!(
        nat_out > out_pkts + 100,
        "nat_out {nat_out} OutPkts {out_pkts}"
    );
    assert!(nat_out >= BIG as u64 / 1460, "nat_out {nat_out}");
    for c in ["truncated", "too_big", "malformed", "tx_errors"] {
        assert_eq!(d.engine(c), 0, "{c}");
    }
}

/// `--no-multi-buffer` (what a kernel before 6.6 gives): the engine runs,
/// small requests are served, GSO aggregates are dropped by the kernel
/// before the socket and counted in `truncated` (from `XDP_STATISTICS`).
#[test]
fn gso_without_multi_buffer() {
    if skip_unless_root("rvs-xdp gso_without_multi_buffer") {
        return;
    }
    let Some(s) = setup_with("rvsxdp-gsofb", "dr", &["--no-multi-buffer"], |lab| {
        for n in ["rs1", "rs2"] {
            start_upload_nginx(lab, n);
        }
    }) else {
        return;
    };
    assert_eq!(engine_log_multi_buffer(&s), Some(false));
    rvs_lab::assert_rr(&s.lab.curl4());
    let file = s.lab.dir.path().join("body");
    std::fs::write(&file, body(0)).expect("body");
    // Crawls by retransmissions (~30 s for 1 MiB): give up after 2 s.
    let _ = upload(&s.lab, &file, "slow", 2);
    let d = wait_for(Duration::from_secs(3), || {
        read_dump(&s.dump).filter(|d| d.engine("truncated") > 0)
    });
    assert!(
        d.is_some(),
        "kernel drops counted in truncated: {}",
        std::fs::read_to_string(&s.dump).unwrap_or_default()
    );
    // still serving
    let got = s.lab.curl4();
    assert!(got.iter().all(|g| g == "rs1" || g == "rs2"), "{got:?}");
}

/// Start the user-space decapsulator on rs1 and rs2; their pids.
fn start_decap(lab: &Lab, rs_prog: &str) -> Vec<String> {
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
    pids
}

/// TUN (IPIP) with GSO uploads: aggregates are segmented to what fits in
/// the tunnel (MTU − 20) rather than answered with "fragmentation
/// needed". Needs the decapsulator like [`tun`].
#[test]
fn gso_tun() {
    if skip_unless_root("rvs-xdp gso_tun") {
        return;
    }
    let Some(rs_prog) = realserver_prog() else {
        rvs_lab::skip("rvs-xdp gso_tun", need::PACKET_REALSERVER, "");
        return;
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let Some(s) = setup("rvsxdp-gsotun", "tun", |lab| {
        for n in ["rs1", "rs2"] {
            start_upload_nginx(lab, n);
        }
        let _ = tx.send(start_decap(lab, &rs_prog));
    }) else {
        return;
    };
    let pids = rx.recv().unwrap_or_default();
    if !multi_buffer_or_skip(&s, "rvs-xdp gso_tun") {
        return;
    }
    let data = body(0);
    let file = s.lab.dir.path().join("body");
    std::fs::write(&file, &data).expect("body");
    for i in 0..2 {
        let name = format!("t{i}");
        let (code, secs) = upload(&s.lab, &file, &name, 20);
        assert_eq!(
            code,
            "201",
            "upload {name}: {secs}s; lvs log: {}",
            s.lab.log("lvs")
        );
        assert!(secs < UPLOAD_FAULT_SECS, "upload {name} took {secs}s");
        assert!(
            uploaded(&s.lab, &name).is_some_and(|g| g == data),
            "upload {name} content"
        );
    }
    let d = wait_state(&s, "FIN_WAIT", 2);
    assert!(
        d.engine("tun") > d.svc[1] + 100,
        "tun {} InPkts {}",
        d.engine("tun"),
        d.svc[1]
    );
    for c in ["truncated", "too_big", "malformed", "tx_errors"] {
        assert_eq!(d.engine(c), 0, "{c}");
    }
    // A full-size packet that is not an aggregate (1500 > 1480 with DF)
    // gets "fragmentation needed" as from ip_vs_tunnel_xmit; the client
    // lowers its path MTU, so there are only a few.
    assert!(
        d.engine("icmp_sent") <= 10,
        "icmp_sent {}",
        d.engine("icmp_sent")
    );
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
        rvs_lab::skip("rvs-xdp throughput", need::PACKET_LVS, "");
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
        rvs_lab::assert_rr(&lab.curl4());
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
        rvs_lab::skip("rvs-xdp pps", need::PACKET_LVS, "");
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
        let Some(pid) = start_lvs_port(&mut lab, prog, name, "dr", &dump, 9, true, &[]) else {
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

// ---- Several RX queues (issue #9): one thread and flow cache per queue ----
//
// The lab's veths have one queue. `multi_queue` gives the director a veth
// with 2 RX / 2 TX queues and serves it with `--queues 2` (two AF_XDP
// sockets, two threads, each with its own flow cache).
//
// Which RX queue a packet reaches on a veth is decided by the peer's
// transmit: the bridge port (the director's peer) picks a TX queue by flow
// hash and veth keeps it in `skb->queue_mapping`.
// * Native XDP (`--native`): the veth runs the program on its RX queue of
//   that index (`rq[queue_mapping]`): TX queue q → RX queue q.
// * Generic XDP (the default): the program sees the RX queue
//   `netif_get_rxqueue()` reads from `queue_mapping`, as a *recorded RX
//   queue* (`queue_mapping − 1`, 0 meaning "not recorded" → queue 0): TX
//   queues 0 and 1 both land on RX queue 0, q ≥ 2 on RX queue q − 1. With
//   a 2-queue peer everything reaches queue 0 (measured on 6.18: wrk with
//   32 connections, queue 0 rx 41708, queue 1 rx 0); with a 3-queue peer
//   queue 1 gets the flows hashed to TX queue 2 (~1/3).
// So the generic part gives the bridge port 3 TX queues, the native part
// 2 (native XDP on veth refuses a peer with more TX than RX queues).

/// The director's MAC on the multi-queue veth (kept when it is recreated,
/// so the client's and real servers' neighbour entries stay right).
const MQ_MAC: &str = "02:00:c6:12:00:0b";

/// Replace lvs1's eth0 by a veth with 2 RX / 2 TX queues whose peer (the
/// bridge port `lvs1`) has `peer_queues` queues; LVS1's address (and the
/// VIP with `vip`) on it.
fn mq_veth(lab: &Lab, peer_queues: u32, vip: bool) {
    let sw = lab.ns("sw");
    let pq = peer_queues.to_string();
    let _ = lab.exec("lvs1", &["ip", "link", "del", "eth0"]);
    let mut cmds: Vec<Vec<&str>> = vec![vec![
        "ip",
        "link",
        "add",
        "eth0",
        "address",
        MQ_MAC,
        "numtxqueues",
        "2",
        "numrxqueues",
        "2",
        "type",
        "veth",
        "peer",
        "name",
        "lvs1",
        "netns",
        &sw,
        "numtxqueues",
        &pq,
        "numrxqueues",
        &pq,
    ]];
    let lvs1 = format!("{}/24", rvs_lab::LVS1);
    let vip24 = format!("{VIP}/24");
    cmds.push(vec!["ip", "addr", "add", &lvs1, "dev", "eth0"]);
    if vip {
        cmds.push(vec!["ip", "addr", "add", &vip24, "dev", "eth0"]);
    }
    cmds.push(vec!["ip", "link", "set", "eth0", "up"]);
    cmds.push(vec![
        "ip", "-n", &sw, "link", "set", "lvs1", "master", "br0", "up",
    ]);
    for c in cmds {
        let o = lab.exec("lvs1", &c);
        assert!(
            o.status.success(),
            "{c:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let q = lab.sh("lvs1", "ls /sys/class/net/eth0/queues");
    assert!(q.contains("rx-1") && q.contains("tx-1"), "queues: {q}");
}

/// `conns` keep-alive connections from the client at once, `reqs`
/// requests each (one curl per connection): every body must be rs1 or
/// rs2, the same on one connection.
fn parallel_keepalive(lab: &Lab, conns: usize, reqs: usize) {
    let url = format!("http://{VIP}/");
    let urls = vec![url.as_str(); reqs].join(" ");
    let script = format!(
        "for i in $(seq {conns}); do \
           (echo \"$(curl -s -m 10 {urls} | tr -d '\\n')\") & \
         done; wait"
    );
    let out = lab.sh("client", &script);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), conns, "curl outputs: {out}");
    for l in lines {
        assert!(
            l == "rs1".repeat(reqs) || l == "rs2".repeat(reqs),
            "keep-alive connection: {l:?}"
        );
    }
}

/// The per-queue lines `rvs-xdp-lvs` prints when it stops:
/// (queue, rx, cache_hits).
fn queue_stats(log: &str) -> Vec<(u32, u64, u64)> {
    log.lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.strip_prefix("rvs-xdp-lvs: queue ")?.split(' ').collect();
            let n = |i: usize| w.get(i).and_then(|x| x.parse::<u64>().ok());
            Some((n(0)? as u32, n(2)?, n(4)?))
        })
        .collect()
}

/// Drive one engine on the 2-queue veth: rr alternation, parallel
/// keep-alive connections, every packet forwarded accounted in the table
/// (cached ones flushed), then stop it and return its per-queue counts.
fn mq_round(s: &mut Setup, name: &str) -> Vec<(u32, u64, u64)> {
    rvs_lab::assert_rr(&s.lab.curl4());
    const CONNS: usize = 24;
    const REQS: usize = 20;
    parallel_keepalive(&s.lab, CONNS, REQS);
    rvs_lab::assert_rr(&s.lab.curl4());
    // Cached packets reach the table within a flush interval: InPkts ends
    // up equal to the packets forwarded.
    let conns = (CONNS + 8) as u64;
    let d = wait_for(Duration::from_secs(3), || {
        read_dump(&s.dump).filter(|d| {
            d.svc.first().is_some_and(|&c| c >= conns)
                && d.svc.get(1).is_some_and(|&p| p == d.engine("dr"))
                && d.engine("cache_hits") > 0
        })
    })
    .unwrap_or_else(|| {
        panic!(
            "{name}: Conns < {conns}, InPkts != dr or no cache hits: {}",
            std::fs::read_to_string(&s.dump).unwrap_or_default()
        )
    });
    assert!(
        d.engine("cache_hits") >= (CONNS * (REQS - 2)) as u64,
        "{name}: cache_hits {} misses {}",
        d.engine("cache_hits"),
        d.engine("cache_misses")
    );
    assert_eq!(d.svc[2], 0, "{name}: OutPkts must stay 0 in DR");
    for c in [
        "truncated",
        "too_big",
        "malformed",
        "tx_errors",
        "model_drop",
    ] {
        assert_eq!(d.engine(c), 0, "{name}: {c}");
    }
    s.lab.signal(s.lvs_pid, 15);
    assert!(
        s.lab.wait_exit(s.lvs_pid, Duration::from_secs(5)),
        "{name} did not exit"
    );
    let log = s.lab.log(name);
    let q = queue_stats(&log);
    eprintln!("{name}: per queue (queue, rx, cache_hits): {q:?}");
    assert_eq!(q.len(), 2, "{name}: two queues served: {log}");
    q
}

/// `--queues 2` on a veth with 2 RX queues: one AF_XDP socket, thread and
/// flow cache per queue; rr alternation over DR with nginx and curl; 24
/// parallel keep-alive connections spread over both queues by the bridge
/// port's TX hash, both threads forward from their caches, and the table's
/// counters account every packet. Generic XDP first (bridge port with 3 TX
/// queues, see above), then native XDP (2 TX queues) when the kernel
/// allows it on veth.
#[test]
fn multi_queue() {
    if skip_unless_root("rvs-xdp multi_queue") {
        return;
    }
    let Some(mut s) = setup_with("rvsxdp-mq", "dr", &["--queues", "2"], |lab| {
        mq_veth(lab, 3, false)
    }) else {
        return;
    };
    let log = s.lab.log("lvs");
    assert!(log.contains("(2 queue(s)"), "{log}");
    let q = mq_round(&mut s, "lvs");
    for (id, rx, hits) in &q {
        assert!(
            *rx > 0 && *hits > 0,
            "generic XDP: queue {id} served nothing (rx {rx}, cache hits {hits}): {q:?}"
        );
    }
    // Native XDP on the same link: TX queue q of the peer → RX queue q.
    mq_veth(&s.lab, 2, true);
    let dump = s.lab.dir.path().join("dump-native");
    let Some(pid) = start_lvs_port(
        &mut s.lab,
        XDP_LVS,
        "lvs-native",
        "dr",
        &dump,
        80,
        false,
        &["--queues", "2", "--native"],
    ) else {
        return;
    };
    let link = s.lab.sh("lvs1", "ip link show dev eth0");
    assert!(
        link.contains("xdp") && !link.contains("xdpgeneric"),
        "native XDP attached: {link}"
    );
    s.dump = dump;
    s.lvs_pid = pid;
    let q = mq_round(&mut s, "lvs-native");
    for (id, rx, hits) in &q {
        assert!(
            *rx > 0 && *hits > 0,
            "native XDP: queue {id} served nothing (rx {rx}, cache hits {hits}): {q:?}"
        );
    }
}
