//! Connection synchronisation in the netns lab (issue 15): two directors
//! run `rvsd --engine packet` with keepalived.conf files of the seed's
//! shape plus `lvs_sync_daemon eth0 VI_1`, real nginx serves on rs1/rs2,
//! and a client keeps one HTTP keep-alive connection open through the VIP
//! (a request every 0.2 s). Asserted:
//!
//! - the connection survives a SIGKILL and a graceful stop (SIGTERM) of the
//!   master and keeps its real server, in DR, NAT and TUN;
//! - persistence survives failover (the template is synced);
//! - IPv6 connections are synced (`rvsadm --conn-sync` on the backup);
//! - a message of another syncid is dropped and counted;
//! - a restarted master receives the whole table before it preempts, and
//!   the connection keeps working through both moves.
//!
//! Root only (prints "skipped" otherwise). Each test has its own namespace
//! prefix; the `Lab` guard tears everything down even on failure.
//!
//! Run: `cargo test -p rvsd --test lab_sync -- --test-threads=2`
//! (the TUN tests need the `rvsadm` binary beside the test's for the
//! real servers' decapsulator: `cargo build -p rvsadm` first, or
//! `RVSADM=/path/to/rvsadm`; `cargo test --workspace` builds it; they
//! report themselves skipped without it).

mod common;

use rvs_lab::{skip_unless_root, v6, wait_for, Lab, CLIENT, RS1, RS2, VIP};
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The keep-alive client: one TCP connection to VIP:80 (argv[1]), a GET
/// every argv[3] seconds until the file argv[2] exists. Prints `local
/// PORT`, then one line per request: `ok N STATUS BODY SECONDS`, or
/// `error N ...` (and exits) when a request fails — a reset, a close, or
/// no answer within 20 s (a generous fault threshold: a SIGKILL failover
/// with advert_int 1 takes about 4 s plus TCP's retransmission backoff).
const KEEPALIVE_CLIENT: &str = r#"
import os, socket, sys, time
vip, stop, every = sys.argv[1], sys.argv[2], float(sys.argv[3])
s = socket.create_connection((vip, 80), timeout=5)
s.settimeout(20)
print('local', s.getsockname()[1], flush=True)
buf, n = b'', 0
def more():
    global buf
    d = s.recv(65536)
    if not d:
        raise EOFError('connection closed by peer')
    buf += d
while not os.path.exists(stop):
    t = time.monotonic()
    try:
        s.sendall(b'GET / HTTP/1.1\r\nHost: vip\r\n\r\n')
        while b'\r\n\r\n' not in buf:
            more()
        head, _, buf = buf.partition(b'\r\n\r\n')
        lines = head.split(b'\r\n')
        status = lines[0].split(b' ')[1].decode()
        clen = [int(l.split(b':', 1)[1]) for l in lines if l.lower().startswith(b'content-length:')][0]
        while len(buf) < clen:
            more()
        body, buf = buf[:clen].strip().decode(), buf[clen:]
        print('ok', n, status, body, '%.3f' % (time.monotonic() - t), flush=True)
    except Exception as e:
        print('error', n, type(e).__name__, e, flush=True)
        sys.exit(1)
    n += 1
    time.sleep(every)
print('done', n, flush=True)
"#;

/// Forwarding method of the virtual server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Dr,
    Nat,
    Tun,
}

impl Kind {
    fn lb_kind(self) -> &'static str {
        match self {
            Kind::Dr => "DR",
            Kind::Nat => "NAT",
            Kind::Tun => "TUN",
        }
    }
}

/// VRRP timers of the pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Vrrp {
    /// The seed's: VRRPv2, advert_int 1, PASS authentication.
    Seed,
    /// VRRPv3, advert_int 0.1: a BACKUP that may preempt does so within
    /// 0.4 s.
    Fast,
}

/// keepalived.conf of one director: the seed's file with lab addresses,
/// `connect_port`/`retry` spelled right, the given method and
/// persistence, and `lvs_sync_daemon eth0 VI_1`.
fn conf(master: bool, kind: Kind, persistence: Option<u32>, vrrp: Vrrp) -> String {
    let (router, state, prio) = if master {
        ("LVS_151", "MASTER", 100)
    } else {
        ("LVS_152", "BACKUP", 50)
    };
    let persistence = persistence
        .map(|p| format!("    persistence_timeout {p}\n"))
        .unwrap_or_default();
    let rs = |addr: &str| {
        format!(
            "    real_server {addr} 80 {{
        weight 1
        TCP_CHECK {{
            connect_port 80
            connect_timeout 2
            retry 2
            delay_before_retry 3
        }}
    }}
"
        )
    };
    format!(
        "global_defs {{
   router_id {router}
   lvs_sync_daemon eth0 VI_1
}}

vrrp_instance VI_1 {{
    state {state}
    interface eth0
    virtual_router_id 41
    priority {prio}
{timers}    virtual_ipaddress {{
        {VIP}
    }}
}}

virtual_server {VIP} 80 {{
    delay_loop 6
    lb_algo rr
    lb_kind {kind}
{persistence}    protocol TCP
{rs1}{rs2}}}
",
        kind = kind.lb_kind(),
        timers = match vrrp {
            Vrrp::Seed =>
                "    advert_int 1
    authentication {
        auth_type PASS
        auth_pass 1111
    }
",
            Vrrp::Fast =>
                "    version 3
    advert_int 0.1
",
        },
        rs1 = rs(RS1),
        rs2 = rs(RS2),
    )
}

/// The `rvsadm` binary (for `realserver setup --tun`): `$RVSADM`, else the
/// one beside this test's binary (`cargo build -p rvsadm`, or
/// `cargo test --workspace` builds it).
fn rvsadm_bin() -> Option<String> {
    if let Ok(p) = std::env::var("RVSADM") {
        return Some(p);
    }
    let exe = std::env::current_exe().ok()?;
    // target/<profile>/deps/lab_sync-HASH -> target/<profile>/rvsadm
    let p = exe.parent()?.parent()?.join("rvsadm");
    p.is_file().then(|| p.to_string_lossy().into_owned())
}

/// Prepare the real servers for `kind`. DR: the lab already put the VIP on
/// `lo` with arp_ignore/arp_announce. NAT: the replies to the client must
/// go through whichever director is MASTER, so the real servers route the
/// client via the floating VIP (which they then must not hold themselves).
/// TUN: the user-space decapsulator (`rvsadm realserver setup --tun`; this
/// kernel has no ipip module).
fn prepare_real_servers(lab: &mut Lab, kind: Kind) {
    match kind {
        Kind::Dr => {}
        Kind::Nat => {
            for n in ["rs1", "rs2"] {
                for cmd in [
                    format!("ip addr del {VIP}/32 dev lo"),
                    format!("ip route replace {CLIENT} via {VIP}"),
                ] {
                    let o = lab.exec(n, &["sh", "-c", &cmd]);
                    assert!(
                        o.status.success(),
                        "{cmd} in {n}: {}",
                        String::from_utf8_lossy(&o.stderr)
                    );
                }
            }
        }
        Kind::Tun => {
            let Some(bin) = rvsadm_bin() else {
                panic!("TUN needs the rvsadm binary (cargo build -p rvsadm, or set RVSADM)");
            };
            for n in ["rs1", "rs2"] {
                lab.spawn(
                    n,
                    &format!("decap-{n}"),
                    &[&bin, "realserver", "setup", "--vip", VIP, "--tun"],
                );
            }
            for n in ["rs1", "rs2"] {
                let ok = wait_for(Duration::from_secs(10), || {
                    lab.log(&format!("decap-{n}"))
                        .contains("decapsulation running")
                        .then_some(())
                });
                assert!(
                    ok.is_some(),
                    "decapsulator in {n} did not start: {}",
                    lab.log(&format!("decap-{n}"))
                );
            }
        }
    }
}

/// One director: `rvsd --engine packet --interface eth0 -f CONF` in its
/// namespace.
struct Director {
    node: &'static str,
    conf: PathBuf,
    sock: PathBuf,
    pid: Option<u32>,
    starts: usize,
}

impl Director {
    fn new(lab: &Lab, node: &'static str, text: &str) -> Director {
        let conf = lab.dir.path().join(format!("{node}.conf"));
        std::fs::write(&conf, text).expect("write keepalived.conf");
        Director {
            node,
            conf,
            sock: lab.dir.path().join(format!("{node}.sock")),
            pid: None,
            starts: 0,
        }
    }

    /// The log name of the current (or last) run.
    fn log_name(&self) -> String {
        format!("rvsd-{}-{}", self.node, self.starts)
    }

    fn log(&self, lab: &Lab) -> String {
        lab.log(&self.log_name())
    }

    fn start(&mut self, lab: &mut Lab) {
        self.starts += 1;
        let name = self.log_name();
        self.pid = Some(lab.spawn(
            self.node,
            &name,
            &[
                env!("CARGO_BIN_EXE_rvsd"),
                "--engine",
                "packet",
                "--interface",
                "eth0",
                "--socket",
                self.sock.to_str().unwrap_or_default(),
                "-f",
                self.conf.to_str().unwrap_or_default(),
            ],
        ));
        let up = wait_for(Duration::from_secs(15), || {
            (self.adm("-Ln").0 == 0).then_some(())
        });
        assert!(
            up.is_some(),
            "rvsd on {} did not start: {}",
            self.node,
            lab.log(&name)
        );
    }

    /// Send `sig` and wait for the process to exit.
    fn end(&mut self, lab: &mut Lab, sig: i32) {
        if let Some(pid) = self.pid.take() {
            lab.signal(pid, sig);
            assert!(
                lab.wait_exit(pid, Duration::from_secs(10)),
                "rvsd on {} did not exit on signal {sig}",
                self.node
            );
        }
    }

    /// (exit status, stdout) of an rvsadm command line against this rvsd.
    fn adm(&self, line: &str) -> (i32, String) {
        let (c, out, _) = common::rvsadm(&self.sock, line);
        (c, out)
    }

    /// The sync daemons (`-L --daemon --json`), empty when rvsd is down.
    fn daemons(&self) -> Vec<rvs_api::DaemonInfo> {
        let (c, out) = self.adm("-L --daemon --json");
        if c != 0 {
            return Vec::new();
        }
        serde_json::from_str(&out).unwrap_or_default()
    }

    fn runs_daemon(&self, state: rvs_api::DaemonState) -> bool {
        self.daemons().iter().any(|d| d.state == state)
    }

    /// `rvsadm --conn-sync`, parsed.
    fn conn_sync(&self) -> Vec<SyncRow> {
        let (c, out) = self.adm("--conn-sync");
        if c != 0 {
            return Vec::new();
        }
        out.lines().skip(1).filter_map(SyncRow::parse).collect()
    }
}

/// One line of `rvsadm --conn-sync` (the kernel's
/// /proc/net/ip_vs_conn_sync).
#[derive(Debug, Clone)]
struct SyncRow {
    from: String,
    fport: String,
    dest: String,
    state: String,
    origin: String,
}

impl SyncRow {
    fn parse(line: &str) -> Option<SyncRow> {
        let f: Vec<&str> = line.split_whitespace().collect();
        (f.len() == 10).then(|| SyncRow {
            from: f[1].to_string(),
            fport: f[2].to_string(),
            dest: f[5].to_string(),
            state: f[7].to_string(),
            origin: f[8].to_string(),
        })
    }

    /// The entry of the client's connection from `port` (or the template
    /// with port 0), synced from the master.
    fn is_synced(&self, client: IpAddr, port: u16) -> bool {
        self.from == hex_addr(client)
            && self.fport == format!("{port:04X}")
            && self.origin == "Sync"
    }
}

/// An address as /proc/net/ip_vs_conn_sync prints it.
fn hex_addr(a: IpAddr) -> String {
    match a {
        IpAddr::V4(v) => format!("{:08X}", u32::from(v)),
        IpAddr::V6(v) => v
            .segments()
            .iter()
            .map(|s| format!("{s:04x}"))
            .collect::<Vec<_>>()
            .join(":"),
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("lab address")
}

/// The real server's address (hex, as --conn-sync shows it) for the name
/// nginx answers with.
fn rs_hex(name: &str) -> String {
    hex_addr(ip(if name == "rs1" { RS1 } else { RS2 }))
}

/// The running keep-alive client in the client namespace.
struct KeepAlive {
    name: String,
    stop: PathBuf,
    pid: u32,
}

/// One request of the keep-alive client.
#[derive(Debug)]
enum Answer {
    Ok { status: String, body: String },
    Error(String),
}

impl KeepAlive {
    fn start(lab: &mut Lab, name: &str, vip: &str) -> KeepAlive {
        let stop = lab.dir.path().join(format!("{name}.stop"));
        let pid = lab.spawn(
            "client",
            name,
            &[
                "python3",
                "-c",
                KEEPALIVE_CLIENT,
                vip,
                stop.to_str().unwrap_or_default(),
                "0.2",
            ],
        );
        KeepAlive {
            name: name.to_string(),
            stop,
            pid,
        }
    }

    /// The client's source port, once connected.
    fn port(&self, lab: &Lab) -> u16 {
        wait_for(Duration::from_secs(10), || {
            lab.log(&self.name)
                .lines()
                .find_map(|l| l.strip_prefix("local ")?.trim().parse().ok())
        })
        .unwrap_or_else(|| panic!("keep-alive client did not connect: {}", lab.log(&self.name)))
    }

    fn answers(&self, lab: &Lab) -> Vec<Answer> {
        lab.log(&self.name)
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                match f.first() {
                    Some(&"ok") if f.len() >= 5 => Some(Answer::Ok {
                        status: f[2].to_string(),
                        body: f[3].to_string(),
                    }),
                    Some(&"error") => Some(Answer::Error(l.to_string())),
                    _ => None,
                }
            })
            .collect()
    }

    /// Wait until at least `n` requests were answered (fails at once on an
    /// error); returns the count.
    fn wait_answers(&self, lab: &Lab, n: usize, deadline: Duration) -> usize {
        let got = wait_for(deadline, || {
            let a = self.answers(lab);
            if a.iter().any(|a| matches!(a, Answer::Error(_))) {
                return Some(a.len());
            }
            (a.len() >= n).then_some(a.len())
        });
        let a = self.answers(lab);
        assert!(
            got.is_some() && a.iter().all(|a| matches!(a, Answer::Ok { .. })),
            "keep-alive client: wanted {n} answers, got {}:\n{}",
            a.len(),
            lab.log(&self.name)
        );
        a.len()
    }

    /// The real server of the first answer.
    fn first_body(&self, lab: &Lab) -> String {
        self.wait_answers(lab, 1, Duration::from_secs(10));
        match self.answers(lab).first() {
            Some(Answer::Ok { body, .. }) => body.clone(),
            _ => unreachable!("wait_answers checked the first answer"),
        }
    }

    /// Stop the client and check every request got a 200 from `rs`.
    fn finish(self, lab: &mut Lab, rs: &str) -> usize {
        std::fs::write(&self.stop, "").expect("stop file");
        assert!(
            lab.wait_exit(self.pid, Duration::from_secs(25)),
            "keep-alive client did not stop: {}",
            lab.log(&self.name)
        );
        let log = lab.log(&self.name);
        assert!(log.contains("\ndone "), "keep-alive client failed:\n{log}");
        let answers = self.answers(lab);
        for a in &answers {
            match a {
                Answer::Ok { status, body } => {
                    assert!(
                        status == "200" && body == rs,
                        "every request must get 200 from {rs}:\n{log}"
                    );
                }
                Answer::Error(e) => panic!("request failed: {e}\n{log}"),
            }
        }
        answers.len()
    }
}

/// A lab with nginx on both real servers (prepared for `kind`) and the two
/// directors running, the VIP on lvs1, lvs1 running the master sync daemon
/// and lvs2 the backup one.
fn pair(prefix: &str, kind: Kind, persistence: Option<u32>) -> (Lab, Director, Director) {
    pair_with(prefix, kind, persistence, Vrrp::Seed)
}

fn pair_with(
    prefix: &str,
    kind: Kind,
    persistence: Option<u32>,
    vrrp: Vrrp,
) -> (Lab, Director, Director) {
    let mut lab = Lab::up(prefix);
    lab.start_nginx("rs1", "rs1");
    lab.start_nginx("rs2", "rs2");
    prepare_real_servers(&mut lab, kind);
    let mut m = Director::new(&lab, "lvs1", &conf(true, kind, persistence, vrrp));
    let mut b = Director::new(&lab, "lvs2", &conf(false, kind, persistence, vrrp));
    m.start(&mut lab);
    b.start(&mut lab);
    let ready = wait_for(Duration::from_secs(15), || {
        (lab.has_addr("lvs1", VIP)
            && !lab.has_addr("lvs2", VIP)
            && m.runs_daemon(rvs_api::DaemonState::Master)
            && b.runs_daemon(rvs_api::DaemonState::Backup))
        .then_some(())
    });
    assert!(
        ready.is_some(),
        "pair not ready (VIP on lvs1, master/backup sync daemons): lvs1 {:?} lvs2 {:?}\n{}\n{}",
        m.daemons(),
        b.daemons(),
        m.log(&lab),
        b.log(&lab)
    );
    (lab, m, b)
}

/// Wait until `d` holds the client's connection from `port` to `rs`, synced.
fn wait_synced(lab: &Lab, d: &Director, port: u16, rs: &str, what: &str) {
    let client = ip(CLIENT);
    let ok = wait_for(Duration::from_secs(10), || {
        d.conn_sync()
            .iter()
            .any(|r| r.is_synced(client, port) && r.dest == rs_hex(rs))
            .then_some(())
    });
    assert!(
        ok.is_some(),
        "{what}: {} has no synced entry for {CLIENT}:{port} -> {rs}:\n{}\n{}",
        d.node,
        d.adm("--conn-sync").1,
        d.log(lab)
    );
}

/// The keep-alive connection across one failover of the master (SIGKILL
/// or SIGTERM), in `kind`.
fn failover(prefix: &str, kind: Kind, sig: i32) {
    let (mut lab, mut m, b) = pair(prefix, kind, None);
    let ka = KeepAlive::start(&mut lab, "ka", VIP);
    let port = ka.port(&lab);
    let rs = ka.first_body(&lab);
    assert!(rs == "rs1" || rs == "rs2", "{rs}");
    // The backup has the connection before the master goes.
    wait_synced(&lab, &b, port, &rs, "before failover");
    let before = ka.wait_answers(&lab, 5, Duration::from_secs(10));
    m.end(&mut lab, sig);
    let moved = wait_for(Duration::from_secs(15), || {
        lab.has_addr("lvs2", VIP).then_some(())
    });
    assert!(moved.is_some(), "VIP did not move: {}", b.log(&lab));
    // Requests after the VIP moved are served by lvs2 on the same
    // connection.
    let now = ka.answers(&lab).len().max(before);
    ka.wait_answers(&lab, now + 10, Duration::from_secs(30));
    let est = b
        .conn_sync()
        .into_iter()
        .find(|r| r.is_synced(ip(CLIENT), port))
        .map(|r| r.state);
    assert_eq!(
        est.as_deref(),
        Some("ESTABLISHED"),
        "lvs2 forwards the synced connection:\n{}",
        b.adm("--conn-sync").1
    );
    let n = ka.finish(&mut lab, &rs);
    eprintln!("{prefix}: {n} requests on one connection, all 200 from {rs}");
}

fn kind_test(name: &str, prefix: &str, kind: Kind, sig: i32) {
    if skip_unless_root(name) {
        return;
    }
    if kind == Kind::Tun && rvsadm_bin().is_none() {
        rvs_lab::skip(name, rvs_lab::need::RVSADM, "TUN decapsulator");
        return;
    }
    failover(prefix, kind, sig);
}

#[test]
fn dr_master_sigkill() {
    kind_test("dr_master_sigkill", "rvsy-drk", Kind::Dr, libc::SIGKILL);
}

#[test]
fn dr_master_sigterm() {
    kind_test("dr_master_sigterm", "rvsy-drt", Kind::Dr, libc::SIGTERM);
}

#[test]
fn nat_master_sigkill() {
    kind_test("nat_master_sigkill", "rvsy-nak", Kind::Nat, libc::SIGKILL);
}

#[test]
fn nat_master_sigterm() {
    kind_test("nat_master_sigterm", "rvsy-nat", Kind::Nat, libc::SIGTERM);
}

#[test]
fn tun_master_sigkill() {
    kind_test("tun_master_sigkill", "rvsy-tuk", Kind::Tun, libc::SIGKILL);
}

#[test]
fn tun_master_sigterm() {
    kind_test("tun_master_sigterm", "rvsy-tut", Kind::Tun, libc::SIGTERM);
}

/// `persistence_timeout`: the template goes to the backup with the
/// connection, and after a SIGKILL of the master the client's new
/// connections still go to its real server (rr alone would alternate).
#[test]
fn persistence_survives_failover() {
    if skip_unless_root("persistence_survives_failover") {
        return;
    }
    // 30 s rather than the seed's 10 s: the template's remaining time is
    // synced, and a loaded test machine must not let it run out between
    // the last request and the takeover (about 4 s).
    let (mut lab, mut m, b) = pair("rvsy-per", Kind::Dr, Some(30));
    let url = format!("http://{VIP}/");
    let first = wait_for(Duration::from_secs(5), || lab.curl(&url)).expect("curl through the VIP");
    for _ in 0..3 {
        assert_eq!(lab.curl(&url).as_deref(), Some(first.as_str()));
    }
    let client = ip(CLIENT);
    let synced = wait_for(Duration::from_secs(10), || {
        b.conn_sync()
            .into_iter()
            .find(|r| r.is_synced(client, 0) && r.state == "NONE" && r.dest == rs_hex(&first))
    });
    assert!(
        synced.is_some(),
        "no synced template {CLIENT}:0 -> {first} on lvs2:\n{}",
        b.adm("--conn-sync").1
    );
    m.end(&mut lab, libc::SIGKILL);
    let moved = wait_for(Duration::from_secs(15), || {
        lab.has_addr("lvs2", VIP).then_some(())
    });
    assert!(moved.is_some(), "VIP did not move: {}", b.log(&lab));
    let after = wait_for(Duration::from_secs(15), || lab.curl(&url)).expect("curl after failover");
    assert_eq!(after, first, "the client changed real server at failover");
    for _ in 0..3 {
        assert_eq!(lab.curl(&url).as_deref(), Some(first.as_str()));
    }
}

/// Start a sync daemon with `rvsadm --start-daemon ROLE --mcast-interface
/// eth0 [--syncid N]` and check it runs.
fn start_daemon(d: &Director, role: &str, syncid: Option<u8>) {
    let mut line = format!("--start-daemon {role} --mcast-interface eth0");
    if let Some(id) = syncid {
        line += &format!(" --syncid {id}");
    }
    let (c, out) = d.adm(&line);
    assert_eq!(c, 0, "{line} on {}: {out}", d.node);
}

/// Two directors with rvsadm-configured services (no keepalived.conf):
/// `rvsd --engine packet` on lvs1 and lvs2, the same DR service on both,
/// the VIPs on lvs1.
fn rvsadm_pair(lab: &mut Lab, services: &[&str]) -> (Director, Director) {
    let mut ds = Vec::new();
    for node in ["lvs1", "lvs2"] {
        let mut d = Director::new(lab, node, "");
        d.starts += 1;
        let name = d.log_name();
        d.pid = Some(lab.spawn(
            node,
            &name,
            &[
                env!("CARGO_BIN_EXE_rvsd"),
                "--engine",
                "packet",
                "--interface",
                "eth0",
                "--socket",
                d.sock.to_str().unwrap_or_default(),
            ],
        ));
        let up = wait_for(Duration::from_secs(15), || {
            (d.adm("-Ln").0 == 0).then_some(())
        });
        assert!(up.is_some(), "rvsd on {node}: {}", lab.log(&name));
        for line in services {
            let (c, out) = d.adm(line);
            assert_eq!(c, 0, "{line} on {node}: {out}");
        }
        ds.push(d);
    }
    let b = ds.pop().expect("lvs2");
    let m = ds.pop().expect("lvs1");
    (m, b)
}

/// IPv6 entries travel in v1 messages: a connection to an IPv6 VIP through
/// the master shows on the backup with Origin Sync.
#[test]
fn ipv6_connections_are_synced() {
    if skip_unless_root("ipv6_connections_are_synced") {
        return;
    }
    let mut lab = Lab::up("rvsy-v6");
    v6::up6(&lab);
    v6::start_nginx6(&lab, "rs1", "rs1");
    v6::start_nginx6(&lab, "rs2", "rs2");
    // the VIP on lo, as `rvsadm realserver setup --vip VIP6` does
    for n in ["rs1", "rs2"] {
        v6::add_addr6(&lab, n, "lo", v6::VIP6, 128);
    }
    let svc = v6::sock6(v6::VIP6, 80);
    let (m, b) = rvsadm_pair(
        &mut lab,
        &[
            &format!("-A -t {svc} -s rr"),
            &format!("-a -t {svc} -r {} -g", v6::sock6(v6::RS1_6, 80)),
            &format!("-a -t {svc} -r {} -g", v6::sock6(v6::RS2_6, 80)),
        ],
    );
    v6::add_addr6(&lab, "lvs1", "eth0", v6::VIP6, v6::PLEN);
    start_daemon(&b, "backup", None);
    start_daemon(&m, "master", None);
    let body = wait_for(Duration::from_secs(10), || {
        v6::curl6(&lab, &v6::url6(v6::VIP6, "/"))
    })
    .expect("curl -6 through the VIP");
    let client = ip(v6::CLIENT6);
    let row = wait_for(Duration::from_secs(10), || {
        b.conn_sync()
            .into_iter()
            .find(|r| r.from == hex_addr(client) && r.origin == "Sync")
    });
    let Some(row) = row else {
        panic!(
            "no synced IPv6 entry on lvs2:\n{}\nlvs1:\n{}",
            b.adm("--conn-sync").1,
            m.adm("--conn-sync").1
        );
    };
    let rs = if body == "rs1" { v6::RS1_6 } else { v6::RS2_6 };
    assert_eq!(row.dest, hex_addr(ip(rs)), "{row:?}");
    // the master's own entry is Local
    assert!(m
        .conn_sync()
        .iter()
        .any(|r| r.from == hex_addr(client) && r.origin == "Local"));
}

/// The syncid counter of the backup's `-L --daemon --json`.
fn dropped(d: &Director, reason: &str) -> u64 {
    d.daemons()
        .iter()
        .filter(|i| i.state == rvs_api::DaemonState::Backup)
        .filter_map(|i| i.counters.as_ref()?.dropped.get(reason).copied())
        .sum()
}

/// A backup with `--syncid 7` ignores a master with `--syncid 3`: nothing is
/// applied, the drops are counted under "syncid". Restarted with syncid 3,
/// the same backup gets the connections (whole-table request).
#[test]
fn mismatched_syncid_is_ignored() {
    if skip_unless_root("mismatched_syncid_is_ignored") {
        return;
    }
    let mut lab = Lab::up("rvsy-sid");
    lab.start_nginx("rs1", "rs1");
    lab.start_nginx("rs2", "rs2");
    let svc = format!("{VIP}:80");
    let (m, b) = rvsadm_pair(
        &mut lab,
        &[
            &format!("-A -t {svc} -s rr"),
            &format!("-a -t {svc} -r {RS1}:80 -g"),
            &format!("-a -t {svc} -r {RS2}:80 -g"),
        ],
    );
    let o = lab.exec(
        "lvs1",
        &["ip", "addr", "add", &format!("{VIP}/24"), "dev", "eth0"],
    );
    assert!(o.status.success());
    start_daemon(&b, "backup", Some(7));
    start_daemon(&m, "master", Some(3));
    let url = format!("http://{VIP}/");
    for _ in 0..4 {
        assert!(
            wait_for(Duration::from_secs(5), || lab.curl(&url)).is_some(),
            "curl through the VIP"
        );
    }
    let d = wait_for(Duration::from_secs(10), || {
        let n = dropped(&b, "syncid");
        (n >= 1).then_some(n)
    });
    assert!(
        d.is_some(),
        "no syncid drops on lvs2: {:?}\nlvs1: {:?}",
        b.daemons(),
        m.daemons()
    );
    let sent = m
        .daemons()
        .iter()
        .find_map(|i| i.counters.as_ref().map(|c| c.entries_sent))
        .unwrap_or(0);
    assert!(sent >= 4, "the master sent {sent} entries");
    assert!(
        b.conn_sync().is_empty(),
        "lvs2 applied entries of another syncid:\n{}",
        b.adm("--conn-sync").1
    );
    let c = b.daemons()[0].counters.clone().unwrap_or_default();
    assert_eq!(c.entries_received, 0, "{c:?}");
    assert_eq!(c.bulk_received, 0, "{c:?}");
    // Control: the same backup with the master's syncid gets the table.
    let (code, out) = b.adm("--stop-daemon backup");
    assert_eq!(code, 0, "{out}");
    start_daemon(&b, "backup", Some(3));
    let client = ip(CLIENT);
    let got = wait_for(Duration::from_secs(10), || {
        (b.conn_sync()
            .iter()
            .filter(|r| r.from == hex_addr(client) && r.origin == "Sync")
            .count()
            >= 4)
            .then_some(())
    });
    assert!(
        got.is_some(),
        "lvs2 with syncid 3 got nothing: {:?}\n{}",
        b.daemons(),
        b.adm("--conn-sync").1
    );
}

/// The index of the first line of `log` that `f` accepts.
fn line_index(log: &str, f: impl Fn(&str) -> bool) -> Option<usize> {
    log.lines().position(f)
}

/// Drop the sync messages arriving at `node` (`on`) or let them through
/// again (an nftables table of the test's own).
fn block_sync(lab: &Lab, node: &str, on: bool) {
    let script = if on {
        "nft add table inet rvsy-block && nft add chain inet rvsy-block input '{ type filter hook input priority 0; }' && nft add rule inet rvsy-block input udp dport 8848 drop"
    } else {
        "nft delete table inet rvsy-block"
    };
    let o = lab.exec(node, &["sh", "-c", script]);
    assert!(
        o.status.success(),
        "{script} in {node}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A master whose rvsd is killed and started again: the backup takes over,
/// and the restarted master receives the whole table (BulkEnd) before it
/// preempts back, so the keep-alive connection keeps working through both
/// moves. The pair runs VRRPv3 at advert_int 0.1 here, so a restarted
/// master free to preempt would do so within 0.4 s; its sync input is
/// blocked for a while after the start, and it must stay BACKUP until the
/// table has come.
#[test]
fn restarted_master_preempts_without_reset() {
    if skip_unless_root("restarted_master_preempts_without_reset") {
        return;
    }
    let (mut lab, mut m, b) = pair_with("rvsy-rst", Kind::Dr, None, Vrrp::Fast);
    let ka = KeepAlive::start(&mut lab, "ka", VIP);
    let port = ka.port(&lab);
    let rs = ka.first_body(&lab);
    wait_synced(&lab, &b, port, &rs, "before the kill");
    m.end(&mut lab, libc::SIGKILL);
    let moved = wait_for(Duration::from_secs(15), || {
        (lab.has_addr("lvs2", VIP) && b.runs_daemon(rvs_api::DaemonState::Master)).then_some(())
    });
    assert!(moved.is_some(), "lvs2 did not take over: {}", b.log(&lab));
    let n = ka.answers(&lab).len();
    ka.wait_answers(&lab, n + 5, Duration::from_secs(30));

    // Restart lvs1 with the table held back.
    block_sync(&lab, "lvs1", true);
    m.start(&mut lab);
    let backup = wait_for(Duration::from_secs(10), || {
        m.log(&lab).contains("Entering BACKUP STATE").then_some(())
    });
    assert!(
        backup.is_some(),
        "lvs1's VRRP did not start: {}",
        m.log(&lab)
    );
    // Held: no preemption for several master-down intervals (0.38 s) ...
    let early = wait_for(Duration::from_millis(1500), || {
        lab.has_addr("lvs1", VIP).then_some(())
    });
    let log = m.log(&lab);
    assert!(
        early.is_none() && !log.contains("Entering MASTER STATE"),
        "lvs1 preempted before it had the table:\n{log}"
    );
    assert!(
        !log.contains("connection table received"),
        "the table came through the block:\n{log}"
    );
    // ... and once the table comes, lvs1 takes the VIP back.
    block_sync(&lab, "lvs1", false);
    let back = wait_for(Duration::from_secs(20), || {
        (lab.has_addr("lvs1", VIP) && !lab.has_addr("lvs2", VIP)).then_some(())
    });
    assert!(
        back.is_some(),
        "lvs1 did not preempt back:\n{}\n{}",
        m.log(&lab),
        b.log(&lab)
    );
    // The table came before the preemption.
    let log = m.log(&lab);
    let got = line_index(&log, |l| {
        l.contains("connection table received from a peer")
    });
    let master = line_index(&log, |l| l.contains("Entering MASTER STATE"));
    assert!(
        matches!((got, master), (Some(g), Some(t)) if g < t),
        "lvs1 must receive the table before it becomes MASTER:\n{log}"
    );
    // lvs1 forwards the connection it learnt from lvs2.
    wait_synced(&lab, &m, port, &rs, "after the restart");
    let n = ka.answers(&lab).len();
    ka.wait_answers(&lab, n + 10, Duration::from_secs(30));
    let total = ka.finish(&mut lab, &rs);
    eprintln!("{total} requests on one connection through two moves, all 200 from {rs}");
}

/// On a segment that floods unicast (a hub, a switch whose table aged out,
/// a promiscuous virtual port) the BACKUP sees the client's frames to the
/// MASTER's MAC. Like the kernel (ip_rcv drops PACKET_OTHERHOST), its
/// engine must leave them alone: the backup's entries are the synced ones
/// only, and it forwards nothing.
#[test]
fn backup_ignores_frames_for_the_master() {
    if skip_unless_root("backup_ignores_frames_for_the_master") {
        return;
    }
    let (lab, _m, b) = pair("rvsy-hub", Kind::Dr, None);
    // ageing_time 0: the bridge forgets every MAC at once and floods.
    let o = lab.exec(
        "sw",
        &[
            "ip",
            "link",
            "set",
            "br0",
            "type",
            "bridge",
            "ageing_time",
            "0",
        ],
    );
    assert!(o.status.success(), "bridge ageing_time 0");
    let url = format!("http://{VIP}/");
    for _ in 0..4 {
        assert!(
            wait_for(Duration::from_secs(5), || lab.curl(&url)).is_some(),
            "curl through the VIP"
        );
    }
    let client = ip(CLIENT);
    let synced = wait_for(Duration::from_secs(10), || {
        let rows = b.conn_sync();
        (rows.iter().filter(|r| r.from == hex_addr(client)).count() >= 4).then_some(rows)
    });
    let Some(rows) = synced else {
        panic!("lvs2 got no synced entries:\n{}", b.adm("--conn-sync").1);
    };
    assert!(
        rows.iter().all(|r| r.origin == "Sync"),
        "lvs2 (BACKUP) scheduled the master's traffic itself:\n{}",
        b.adm("--conn-sync").1
    );
    let stats = b.adm("-Ln --stats").1;
    let conns = stats
        .lines()
        .find(|l| l.starts_with("TCP"))
        .and_then(|l| l.split_whitespace().nth(2).map(str::to_string));
    assert_eq!(
        conns.as_deref(),
        Some("0"),
        "lvs2 (BACKUP) forwarded connections:\n{stats}"
    );
}
