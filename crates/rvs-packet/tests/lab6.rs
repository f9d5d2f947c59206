//! IPv6 lab tests: the packet engine (`rvs-packet-lvs`) in the lvs1
//! namespace serving an IPv6 VIP (DR, NAT, ip6ip6 TUN) and mixed-family
//! TUN, real nginx listening on IPv6 on rs1/rs2, `curl -6` from the
//! client. Addresses: 2001:2:0:1::/64 (RFC 5180 benchmarking range) and,
//! for IPv4, 198.18.0.0/15 only. Root only (a recorded skip otherwise, see
//! `rvs_lab::skip`). Each test has its own namespace prefix; the `Lab` guard
//! tears everything down even on failure.
//!
//! Run: `cargo test -p rvs-packet --test lab6 -- --test-threads=2`

mod common;

use common::{FRAG_CLIENT, FRAG_ECHO};
use rvs_lab::v6::{self, CLIENT6, LVS1_6, RS1_6, RS2_6, VIP6};
use rvs_lab::{skip_unless_root, wait_for, Lab, RS1, RS2, VIP};
use rvs_packet::driver::{read_dump, Dump};
use std::path::{Path, PathBuf};
use std::time::Duration;

fn example(name: &str) -> String {
    match name {
        "lvs" => env!("CARGO_BIN_EXE_rvs-packet-lvs").to_string(),
        _ => env!("CARGO_BIN_EXE_rvs-packet-realserver").to_string(),
    }
}

struct Setup {
    lab: Lab,
    dump: PathBuf,
    lvs_pid: u32,
}

/// A lab with IPv6 addresses and nginx (IPv4 + IPv6) on both real
/// servers; `rs_prep` runs before the engine starts.
fn lab6(prefix: &str, rs_prep: impl Fn(&mut Lab)) -> Lab {
    let mut lab = Lab::up(prefix);
    v6::up6(&lab);
    v6::start_nginx6(&lab, "rs1", "rs1");
    v6::start_nginx6(&lab, "rs2", "rs2");
    rs_prep(&mut lab);
    // The director holds both VIPs (VRRP would add them).
    v6::add_addr6(&lab, "lvs1", "eth0", VIP6, v6::PLEN);
    let o = lab.exec(
        "lvs1",
        &["ip", "addr", "add", &format!("{VIP}/24"), "dev", "eth0"],
    );
    assert!(o.status.success());
    lab
}

/// Start the engine for `vip` -> `rss` by `method` and wait until its
/// nftables table and first dump are there.
fn start_engine(
    lab: &mut Lab,
    dump: &Path,
    vip: &str,
    rss: &[String],
    method: &str,
    extra: &[&str],
) -> u32 {
    let _ = std::fs::remove_file(dump);
    let lvs = example("lvs");
    let mut args = vec![lvs.as_str(), "--interface", "eth0", "--vip", vip];
    for r in rss {
        args.extend_from_slice(&["--rs", r]);
    }
    let d = dump.to_str().unwrap_or_default();
    args.extend_from_slice(&["--method", method, "--dump", d]);
    args.extend_from_slice(extra);
    let pid = lab.spawn("lvs1", "lvs", &args);
    let up = wait_for(Duration::from_secs(30), || {
        let t = lab.sh("lvs1", "nft list table inet rvs 2>/dev/null");
        (t.contains(" drop") && dump.exists()).then_some(())
    });
    assert!(up.is_some(), "engine did not start: {}", lab.log("lvs"));
    pid
}

fn setup(prefix: &str, method: &str, extra: &[&str], rs_prep: impl Fn(&mut Lab)) -> Setup {
    let mut lab = lab6(prefix, rs_prep);
    let dump = lab.dir.path().join("dump");
    let rss = [v6::sock6(RS1_6, 80), v6::sock6(RS2_6, 80)];
    let lvs_pid = start_engine(&mut lab, &dump, &v6::sock6(VIP6, 80), &rss, method, extra);
    Setup { lab, dump, lvs_pid }
}

fn curl6x4(lab: &Lab) -> Vec<String> {
    (0..4)
        .map(|_| v6::curl6(lab, &v6::url6(VIP6, "/")).unwrap_or_else(|| "FAILED".into()))
        .collect()
}

/// Hold a TCP connection to the IPv6 VIP open (client side) until the lab
/// is torn down (a 3 s hold once closed before a loaded machine saw it).
fn hold_conn(lab: &mut Lab, name: &str) -> u32 {
    let script =
        format!("import socket,time\ns=socket.create_connection(('{VIP6}',80))\ntime.sleep(120)\n");
    lab.spawn("client", name, &["python3", "-c", &script])
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

/// Stop the engine and check it removed its nftables table.
fn stop_engine(lab: &mut Lab, pid: u32) {
    lab.signal(pid, 15);
    assert!(
        lab.wait_exit(pid, Duration::from_secs(5)),
        "lvs did not exit"
    );
    let t = lab.sh("lvs1", "nft list tables");
    assert!(!t.contains("inet rvs\n"), "nft table left behind: {t}");
}

/// Start the user-space decapsulator (`setup --tun`) for `vip` on both
/// real servers and wait until it runs.
fn start_decap(lab: &mut Lab, vip: &str) {
    let rs_prog = example("realserver");
    for n in ["rs1", "rs2"] {
        lab.spawn(
            n,
            &format!("decap-{n}"),
            &[
                &rs_prog,
                "setup",
                "--vip",
                vip,
                "--tun",
                "--interface",
                "eth0",
                "--gue-port",
                "6080",
            ],
        );
    }
    for n in ["rs1", "rs2"] {
        let ok = wait_for(Duration::from_secs(5), || {
            lab.sh(n, "nft list tables")
                .contains("rvs-rs")
                .then_some(())
        });
        assert!(
            ok.is_some(),
            "decap in {n} did not start: {}",
            lab.log(&format!("decap-{n}"))
        );
    }
}

#[test]
fn dr6() {
    if skip_unless_root("rvs-packet dr6") {
        return;
    }
    let rs_prog = example("realserver");
    let mut s = setup("rvs6-dr", "dr", &[], |lab| {
        for n in ["rs1", "rs2"] {
            let o = lab.exec(n, &[&rs_prog, "setup", "--vip", VIP6]);
            assert!(
                o.status.success(),
                "realserver setup: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            assert!(v6::has_addr6(lab, n, "lo", VIP6), "VIP6 on lo of {n}");
        }
    });
    rvs_lab::assert_rr(&curl6x4(&s.lab));
    // DR conns see only the client's packets -> FIN_WAIT (-Lnc state).
    let d = wait_state(&s, "FIN_WAIT", 4);
    for c in d.real_conns() {
        assert_eq!(c[0], "TCP");
        assert!(c[1].starts_with(&format!("{CLIENT6}:")), "client {c:?}");
        assert_eq!(c[2], format!("{VIP6}:80"));
        assert!(
            c[3] == format!("{RS1_6}:80") || c[3] == format!("{RS2_6}:80"),
            "dest {c:?}"
        );
    }
    // --stats: Conns, InPkts, OutPkts.
    assert_eq!(d.svc[0], 4, "Conns");
    assert!(d.svc[1] >= 4 * 5, "InPkts {}", d.svc[1]);
    assert_eq!(d.svc[2], 0, "OutPkts must stay 0 in DR");
    assert!(d.engine("dr") >= 20);
    hold_conn(&mut s.lab, "hold");
    let d = wait_state(&s, "ESTABLISHED", 1);
    assert_eq!(d.svc[0], 5);
    let pid = s.lvs_pid;
    stop_engine(&mut s.lab, pid);
}

#[test]
fn nat6() {
    if skip_unless_root("rvs-packet nat6") {
        return;
    }
    let mut s = setup("rvs6-nat", "nat", &["--threads", "2"], |lab| {
        for n in ["rs1", "rs2"] {
            // Replies to the client go through the director.
            let o = lab.exec(n, &["ip", "-6", "route", "replace", CLIENT6, "via", LVS1_6]);
            assert!(o.status.success());
        }
    });
    rvs_lab::assert_rr(&curl6x4(&s.lab));
    // Both directions seen -> the server's FIN moves the conn to TIME_WAIT.
    let d = wait_state(&s, "TIME_WAIT", 4);
    assert_eq!(d.svc[0], 4);
    assert!(
        d.svc[1] >= 16 && d.svc[2] >= 12,
        "In {} Out {}",
        d.svc[1],
        d.svc[2]
    );
    assert!(d.engine("nat_in") >= 16 && d.engine("nat_out") >= 12);
    // A 2 MB download: GSO super-packets from the real server's TCP over
    // veth are segmented by the engine.
    let body: Vec<u8> = (0..2_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    for n in ["rs1", "rs2"] {
        let p = s.lab.dir.path().join(format!("nginx-{n}/www/big"));
        std::fs::write(&p, &body).expect("big file");
    }
    let out = s.lab.dir.path().join("big.out");
    let o = s.lab.exec(
        "client",
        &[
            "curl",
            "-6",
            "-g",
            "-s",
            "-m",
            "10",
            "-o",
            out.to_str().unwrap_or_default(),
            &v6::url6(VIP6, "big"),
        ],
    );
    assert!(o.status.success(), "download failed: {}", s.lab.log("lvs"));
    assert!(std::fs::read(&out).ok() == Some(body), "download corrupted");
    hold_conn(&mut s.lab, "hold");
    wait_state(&s, "ESTABLISHED", 1);
    let pid = s.lvs_pid;
    stop_engine(&mut s.lab, pid);
}

#[test]
fn tun6() {
    if skip_unless_root("rvs-packet tun6") {
        return;
    }
    let mut s = setup("rvs6-tun", "tun", &[], |lab| start_decap(lab, VIP6));
    rvs_lab::assert_rr(&curl6x4(&s.lab));
    let d = wait_state(&s, "FIN_WAIT", 4);
    assert_eq!(d.svc[2], 0);
    assert!(d.engine("tun") >= 20);
    hold_conn(&mut s.lab, "hold");
    wait_state(&s, "ESTABLISHED", 1);
    // An upload with full-size segments: the ip6ip6 tunnel MTU is 1460,
    // so the engine answers ICMPv6 "packet too big" and the client's path
    // MTU to the VIP drops to 1460, as with IPVS (ip_vs_tunnel_xmit_v6).
    let upload = s.lab.dir.path().join("upload");
    std::fs::write(&upload, vec![b'x'; 300_000]).expect("upload file");
    let pmtu = wait_for(Duration::from_secs(20), || {
        let _ = s.lab.exec(
            "client",
            &[
                "curl",
                "-6",
                "-g",
                "-s",
                "-m",
                "5",
                "-o",
                "/dev/null",
                "--data-binary",
                &format!("@{}", upload.display()),
                &v6::url6(VIP6, "/"),
            ],
        );
        let r = s.lab.sh("client", &format!("ip -6 route get {VIP6}"));
        r.contains("mtu 1460").then_some(())
    });
    let r = s.lab.sh("client", &format!("ip -6 route get {VIP6}"));
    assert!(pmtu.is_some(), "no PMTU from packet too big: {r}");
    let sent = wait_for(Duration::from_secs(3), || {
        read_dump(&s.dump)
            .filter(|d| d.engine("icmp_sent") >= 1)
            .map(|_| ())
    });
    assert!(sent.is_some(), "icmp_sent not counted");
    // After the PMTU drop the upload goes through.
    let o = s.lab.exec(
        "client",
        &[
            "curl",
            "-6",
            "-g",
            "-s",
            "-m",
            "5",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--data-binary",
            &format!("@{}", upload.display()),
            &v6::url6(VIP6, "/"),
        ],
    );
    assert!(o.status.success(), "upload after PMTU failed");
    let pid = s.lvs_pid;
    stop_engine(&mut s.lab, pid);

    // GUE and GRE over IPv6, same real servers.
    let rss = [v6::sock6(RS1_6, 80), v6::sock6(RS2_6, 80)];
    for extra in [
        &["--tun-type", "gue", "--tun-port", "6080"][..],
        &["--tun-type", "gre", "--tun-csum"][..],
    ] {
        let dump = s.dump.clone();
        let pid = start_engine(&mut s.lab, &dump, &v6::sock6(VIP6, 80), &rss, "tun", extra);
        rvs_lab::assert_rr(&curl6x4(&s.lab));
        stop_engine(&mut s.lab, pid);
    }
}

/// Mixed-family TUN, as IPVS allows: an IPv4 service tunnelled to IPv6
/// real servers (IPv4 in IPv6, next header 4) and an IPv6 service
/// tunnelled to IPv4 real servers (IPv6 in IPv4, protocol 41). One
/// user-space decapsulator per real server handles both.
#[test]
fn tun_mixed() {
    if skip_unless_root("rvs-packet tun_mixed") {
        return;
    }
    let mut lab = lab6("rvs6-mix", |lab| {
        start_decap(lab, VIP);
        for n in ["rs1", "rs2"] {
            v6::add_addr6(lab, n, "lo", VIP6, 128);
        }
    });
    let dump = lab.dir.path().join("dump");
    // IPv4 VIP -> IPv6 real servers.
    let rss = [v6::sock6(RS1_6, 80), v6::sock6(RS2_6, 80)];
    let pid = start_engine(&mut lab, &dump, &format!("{VIP}:80"), &rss, "tun", &[]);
    let got: Vec<String> = (0..4)
        .map(|_| {
            lab.curl(&format!("http://{VIP}/"))
                .unwrap_or_else(|| "FAILED".into())
        })
        .collect();
    rvs_lab::assert_rr(&got);
    let d = wait_for(Duration::from_secs(5), || {
        read_dump(&dump).filter(|d| d.svc.first() == Some(&4) && d.engine("tun") >= 20)
    });
    assert!(
        d.is_some(),
        "{}",
        std::fs::read_to_string(&dump).unwrap_or_default()
    );
    stop_engine(&mut lab, pid);
    // IPv6 VIP -> IPv4 real servers.
    let rss = [format!("{RS1}:80"), format!("{RS2}:80")];
    let pid = start_engine(&mut lab, &dump, &v6::sock6(VIP6, 80), &rss, "tun", &[]);
    rvs_lab::assert_rr(&curl6x4(&lab));
    stop_engine(&mut lab, pid);
    for n in ["rs1", "rs2"] {
        let log = lab.log(&format!("decap-{n}"));
        assert!(!log.contains("failed"), "decap {n}: {log}");
    }
}

/// UDP over IPv6 NAT with ICMPv6: a real server's "port unreachable" is
/// translated back to the client (`ip_vs_nat_icmp_v6`), so its connected
/// socket sees ECONNREFUSED; a datagram with hop limit 1 is answered with
/// "time exceeded" from the VIP (EHOSTUNREACH with IPV6_RECVERR); and a
/// service without destinations answers "port unreachable" (ip_vs_leave).
#[test]
fn nat6_udp_icmp() {
    if skip_unless_root("rvs-packet nat6_udp_icmp") {
        return;
    }
    let mut lab = Lab::up("rvs6-udp");
    v6::up6(&lab);
    for n in ["rs1", "rs2"] {
        let o = lab.exec(n, &["ip", "-6", "route", "replace", CLIENT6, "via", LVS1_6]);
        assert!(o.status.success());
    }
    let echo = "import socket\ns=socket.socket(socket.AF_INET6,socket.SOCK_DGRAM)\ns.bind(('::',5353))\nwhile True:\n d,a=s.recvfrom(2048); s.sendto(b'echo:'+d,a)\n";
    lab.spawn("rs1", "echo", &["python3", "-c", echo]);
    let bound = wait_for(Duration::from_secs(30), || {
        lab.sh("rs1", "ss -Hluna 'sport = :5353'")
            .contains("5353")
            .then_some(())
    });
    assert!(
        bound.is_some(),
        "UDP echo did not start: {}",
        lab.log("echo")
    );
    v6::add_addr6(&lab, "lvs1", "eth0", VIP6, v6::PLEN);
    let dump = lab.dir.path().join("dump");
    let rss = [v6::sock6(RS1_6, 5353), v6::sock6(RS2_6, 5353)];
    let pid = start_engine(
        &mut lab,
        &dump,
        &v6::sock6(VIP6, 5353),
        &rss,
        "nat",
        &["--udp"],
    );
    let client = format!(
        "import socket\nres=[]\nfor i in range(2):\n s=socket.socket(socket.AF_INET6,socket.SOCK_DGRAM)\n s.settimeout(2)\n s.connect(('{VIP6}',5353))\n s.send(b'hi')\n try:\n  d,a=s.recvfrom(2048); res.append('%s %s' % (d.decode(), a[0]))\n except ConnectionRefusedError:\n  res.append('refused')\n except socket.timeout:\n  res.append('timeout')\nprint(sorted(res))\n"
    );
    let out = lab.sh("client", &format!("python3 -c \"{client}\""));
    assert_eq!(
        out.trim(),
        format!("['echo:hi {VIP6}', 'refused']"),
        "lvs log: {}",
        lab.log("lvs")
    );
    let d = wait_for(Duration::from_secs(3), || {
        read_dump(&dump).filter(|d| d.engine("icmp_fwd") >= 1)
    });
    assert!(d.is_some(), "icmp_fwd not counted");
    // Hop limit 1: the engine (a router here) answers "time exceeded".
    let hop = format!(
        "import socket,errno\ns=socket.socket(socket.AF_INET6,socket.SOCK_DGRAM)\ns.setsockopt(socket.IPPROTO_IPV6,socket.IPV6_UNICAST_HOPS,1)\ns.setsockopt(socket.IPPROTO_IPV6,25,1)\ns.settimeout(2)\ns.connect(('{VIP6}',5353))\ns.send(b'hi')\ntry:\n s.recv(2048); print('answer')\nexcept socket.timeout:\n print('timeout')\nexcept OSError as e:\n print(errno.errorcode.get(e.errno))\n"
    );
    let out = lab.sh("client", &format!("python3 -c \"{hop}\""));
    assert_eq!(out.trim(), "EHOSTUNREACH", "lvs log: {}", lab.log("lvs"));
    stop_engine(&mut lab, pid);
    // No destination at all: ICMPv6 port unreachable from the VIP.
    let pid = start_engine(
        &mut lab,
        &dump,
        &v6::sock6(VIP6, 5354),
        &[],
        "nat",
        &["--udp"],
    );
    let none = client
        .replace("5353", "5354")
        .replace("range(2)", "range(1)");
    let out = lab.sh("client", &format!("python3 -c \"{none}\""));
    assert_eq!(out.trim(), "['refused']", "lvs log: {}", lab.log("lvs"));
    let sent = wait_for(Duration::from_secs(3), || {
        read_dump(&dump).filter(|d| d.engine("icmp_sent") >= 1)
    });
    assert!(sent.is_some(), "icmp_sent not counted");
    stop_engine(&mut lab, pid);
}

/// IPv6 fragments through the engine: the client's 4000-byte UDP
/// datagrams leave its kernel in fragments (MTU 1500), the engine
/// reassembles them (as `nf_defrag_ipv6` does for IPVS), forwards the
/// datagram by `method` and fragments it again on output (pieces no
/// larger than the client's, the identification kept); the real server
/// receives it whole. For NAT the real server's fragmented reply is
/// reassembled, translated and fragmented back to the client.
fn udp_frag6(prefix: &str, method: &str) {
    let mut lab = Lab::up(prefix);
    v6::up6(&lab);
    let rs_prog = example("realserver");
    for n in ["rs1", "rs2"] {
        if method == "nat" {
            let o = lab.exec(n, &["ip", "-6", "route", "replace", CLIENT6, "via", LVS1_6]);
            assert!(o.status.success());
        } else {
            let o = lab.exec(n, &[&rs_prog, "setup", "--vip", VIP6]);
            assert!(
                o.status.success(),
                "realserver setup: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
        let bind = if method == "nat" { "::" } else { VIP6 };
        lab.spawn(n, &format!("echo-{n}"), &["python3", "-c", FRAG_ECHO, bind]);
    }
    for n in ["rs1", "rs2"] {
        let bound = wait_for(Duration::from_secs(30), || {
            lab.sh(n, "ss -Hluna 'sport = :5353'")
                .contains("5353")
                .then_some(())
        });
        assert!(
            bound.is_some(),
            "UDP echo server in {n} did not start: {}",
            lab.log(&format!("echo-{n}"))
        );
    }
    v6::add_addr6(&lab, "lvs1", "eth0", VIP6, v6::PLEN);
    let dump = lab.dir.path().join("dump");
    let rss = [v6::sock6(RS1_6, 5353), v6::sock6(RS2_6, 5353)];
    let pid = start_engine(
        &mut lab,
        &dump,
        &v6::sock6(VIP6, 5353),
        &rss,
        method,
        &["--udp"],
    );
    let t = lab.sh("lvs1", "nft list table inet rvs");
    assert!(
        t.contains(&format!(
            "ip6 daddr {VIP6} meta l4proto udp frag frag-off != 0 drop"
        )),
        "no IPv6 fragment guard: {t}"
    );
    let out = lab.sh("client", &format!("python3 -c \"{FRAG_CLIENT}\" {VIP6}"));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        vec![format!("whole 4000 {VIP6}").as_str(); 3],
        "lvs log: {}\ndump: {}\nrs1: {}\nrs2: {}",
        lab.log("lvs"),
        std::fs::read_to_string(&dump).unwrap_or_default(),
        lab.log("echo-rs1"),
        lab.log("echo-rs2"),
    );
    // The real servers got the datagrams whole, from the client.
    let got: String = ["rs1", "rs2"]
        .iter()
        .map(|n| lab.log(&format!("echo-{n}")))
        .collect();
    assert_eq!(
        got.matches(&format!("4000 {CLIENT6}")).count(),
        3,
        "echo logs: {got}"
    );
    let d = wait_for(Duration::from_secs(3), || {
        read_dump(&dump).filter(|d| d.svc.first() == Some(&3))
    })
    .unwrap_or_else(|| panic!("dump: {:?}", read_dump(&dump)));
    let want = if method == "nat" { 6 } else { 3 };
    assert!(d.engine("reassembled") >= want, "{:?}", d.engine);
    assert!(d.engine("frag_tx") >= 2 * want, "{:?}", d.engine);
    assert_eq!(d.engine("reasm_drop"), 0, "{:?}", d.engine);
    // InBytes: the whole datagrams (IPv6 header + UDP header + 4000).
    assert_eq!(d.svc[3], 3 * 4048, "InBytes");
    if method == "nat" {
        assert_eq!(d.svc[4], 3 * 4048, "OutBytes");
    }
    stop_engine(&mut lab, pid);
}

#[test]
fn dr6_udp_frag() {
    if skip_unless_root("rvs-packet dr6_udp_frag") {
        return;
    }
    udp_frag6("rvs6-drfr", "dr");
}

#[test]
fn nat6_udp_frag() {
    if skip_unless_root("rvs-packet nat6_udp_frag") {
        return;
    }
    udp_frag6("rvs6-natfr", "nat");
}
