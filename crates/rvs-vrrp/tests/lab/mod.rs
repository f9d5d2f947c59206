//! Shared helpers for the root-only netns lab tests: the namespaces of
//! `rvs_lab` (scripts/netns-lab, 198.18.0.0/15 only), torn down by a Drop
//! guard even when a test fails; daemons started inside a namespace;
//! polling with deadlines.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

pub const VIP: &str = "198.18.0.100";
/// IPv6 VIP from the IPv6 benchmarking range (RFC 5180), the counterpart of
/// 198.18.0.0/15; VRRPv3 itself runs on the link-local addresses.
pub const VIP6: &str = "2001:2::100";

/// Root check; false (and a recorded skip, see `rvs_lab::skip`) without.
pub fn need_root(test: &str) -> bool {
    !rvs_lab::skip_unless_root(test)
}

/// The lab of `rvs_lab` (scripts/netns-lab) with the VRRP tests' helpers:
/// log files named in full, killing whole namespaces (keepalived's parent
/// respawns children), VIP and neighbour checks. `Drop` SIGKILLs every
/// process in the lab before `rvs_lab::Lab` deletes the namespaces.
pub struct Lab {
    inner: rvs_lab::Lab,
}

impl std::ops::Deref for Lab {
    type Target = rvs_lab::Lab;
    fn deref(&self) -> &rvs_lab::Lab {
        &self.inner
    }
}

impl Lab {
    pub fn up(prefix: &str) -> Lab {
        Lab {
            inner: rvs_lab::Lab::up(prefix),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.inner.dir.path().join(name)
    }

    /// Spawn `cmd` in namespace `node`, output to `<dir>/<log>` (`log`
    /// ends in `.log`).
    pub fn spawn(&mut self, node: &str, log: &str, cmd: &[&str]) {
        let stem = log.strip_suffix(".log").unwrap_or(log);
        self.inner.spawn(node, stem, cmd);
    }

    /// Contents of `<dir>/<log>`.
    pub fn log(&self, log: &str) -> String {
        std::fs::read_to_string(self.path(log)).unwrap_or_default()
    }

    /// PIDs in a namespace.
    pub fn pids(&self, node: &str) -> Vec<i32> {
        let out = Command::new("ip")
            .args(["netns", "pids", &self.ns(node)])
            .output()
            .expect("ip netns pids");
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    }

    /// SIGKILL every process in the namespace (keepalived's parent would
    /// restart a killed child, so kill them all).
    pub fn kill_all(&mut self, node: &str) -> Instant {
        let t = Instant::now();
        // SIGSTOP first so that nobody reacts (keepalived's VRRP child gets
        // SIGTERM via PR_SET_PDEATHSIG when its parent dies and would then
        // shut down gracefully; its parent respawns a dead child), then SIGKILL.
        for p in self.pids(node) {
            // SAFETY: plain kill(2).
            unsafe { libc::kill(p, libc::SIGSTOP) };
        }
        for _ in 0..5 {
            let pids = self.pids(node);
            if pids.is_empty() {
                break;
            }
            for p in pids {
                // SAFETY: plain kill(2).
                unsafe { libc::kill(p, libc::SIGKILL) };
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.reap();
        t
    }

    /// SIGTERM every process in the namespace; returns when it was sent.
    pub fn term_all(&mut self, node: &str) -> Instant {
        let t = Instant::now();
        for p in self.pids(node) {
            // SAFETY: plain kill(2).
            unsafe { libc::kill(p, libc::SIGTERM) };
        }
        t
    }

    /// Wait until no process is left in the namespace.
    pub fn wait_gone(&mut self, node: &str) {
        let ok = wait_until(Duration::from_secs(10), || self.pids(node).is_empty());
        assert!(ok.is_some(), "processes in {node} did not stop");
        self.reap();
    }

    fn reap(&mut self) {
        self.inner.reap();
    }

    /// Is the VIP configured on eth0 of `node`?
    pub fn has_vip(&self, node: &str) -> bool {
        let out = Command::new("ip")
            .args([
                "-n",
                &self.ns(node),
                "-br",
                "-4",
                "addr",
                "show",
                "dev",
                "eth0",
            ])
            .output()
            .expect("ip addr");
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .any(|w| w.starts_with(&format!("{VIP}/")))
    }

    /// Is the IPv6 VIP configured on eth0 of `node`?
    pub fn has_vip6(&self, node: &str) -> bool {
        let out = Command::new("ip")
            .args([
                "-n",
                &self.ns(node),
                "-br",
                "-6",
                "addr",
                "show",
                "dev",
                "eth0",
            ])
            .output()
            .expect("ip addr");
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .any(|w| w.starts_with(&format!("{VIP6}/")))
    }

    /// MAC of eth0 of `node`.
    pub fn mac(&self, node: &str) -> String {
        let out = Command::new("ip")
            .args(["-n", &self.ns(node), "-br", "link", "show", "dev", "eth0"])
            .output();
        let out = out
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        out.split_whitespace().nth(2).unwrap_or("").to_owned()
    }

    /// The client's neighbour entry for the VIP (MAC), if any.
    pub fn client_vip_mac(&self) -> String {
        let out = Command::new("ip")
            .args(["-n", &self.ns("client"), "neigh", "show", VIP])
            .output();
        let out = out
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let mut it = out.split_whitespace();
        while let Some(w) = it.next() {
            if w == "lladdr" {
                return it.next().unwrap_or("").to_owned();
            }
        }
        String::new()
    }

    /// Seed the client's ARP cache for the VIP with `node`'s MAC (STALE, so a
    /// gratuitous ARP may override it).
    pub fn client_arp_points_to(&self, node: &str) {
        let mac = self.mac(node);
        let st = Command::new("ip")
            .args([
                "-n",
                &self.ns("client"),
                "neigh",
                "replace",
                VIP,
                "lladdr",
                &mac,
                "dev",
                "eth0",
                "nud",
                "stale",
            ])
            .status()
            .expect("ip neigh");
        assert!(st.success());
    }

    /// Wait until eth0's link-local IPv6 address has finished DAD on each
    /// of `nodes` (VRRPv3 over IPv6 binds it).
    pub fn wait_link_local(&self, nodes: &[&str]) {
        let ready = |node: &str| {
            let out = Command::new("ip")
                .args([
                    "-n",
                    &self.ns(node),
                    "-6",
                    "addr",
                    "show",
                    "dev",
                    "eth0",
                    "scope",
                    "link",
                ])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            out.contains("fe80::") && !out.contains("tentative")
        };
        let ok = wait_until(Duration::from_secs(10), || nodes.iter().all(|n| ready(n)));
        assert!(
            ok.is_some(),
            "link-local addresses of {nodes:?} still tentative"
        );
    }

    /// `ip addr show` of a node (for failure messages).
    pub fn addrs(&self, node: &str) -> String {
        let out = Command::new("ip")
            .args(["-n", &self.ns(node), "addr", "show", "dev", "eth0"])
            .output();
        out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for node in ["lvs1", "lvs2", "client", "rs1", "rs2", "sw"] {
            for p in self.pids(node) {
                // SAFETY: plain kill(2).
                unsafe { libc::kill(p, libc::SIGKILL) };
            }
        }
        // Then rvs_lab::Lab reaps its children and deletes the namespaces.
    }
}

/// Poll `f` every 20 ms until it is true or `timeout` passes; returns the
/// elapsed time when it became true.
pub fn wait_until(timeout: Duration, f: impl FnMut() -> bool) -> Option<Duration> {
    wait_since(Instant::now(), timeout, f)
}

/// Like [`wait_until`] with times measured from `start`.
pub fn wait_since(
    start: Instant,
    timeout: Duration,
    mut f: impl FnMut() -> bool,
) -> Option<Duration> {
    loop {
        if f() {
            return Some(start.elapsed());
        }
        if start.elapsed() > timeout {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Poll two conditions together from `start`; when each first became true.
pub fn race(
    start: Instant,
    timeout: Duration,
    mut a: impl FnMut() -> bool,
    mut b: impl FnMut() -> bool,
) -> (Option<Duration>, Option<Duration>) {
    let (mut ta, mut tb) = (None, None);
    while start.elapsed() <= timeout && (ta.is_none() || tb.is_none()) {
        if ta.is_none() && a() {
            ta = Some(start.elapsed());
        }
        if tb.is_none() && b() {
            tb = Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    (ta, tb)
}

/// Path of the `rvs-vrrpd` test driver binary (built with the tests).
pub fn vrrpd() -> Option<PathBuf> {
    Some(PathBuf::from(env!("CARGO_BIN_EXE_rvs-vrrpd")))
}

/// Start rvs vrrpd in `node`.
pub fn start_rvs(lab: &mut Lab, node: &str, prio: u8, pass: &str, extra: &[&str]) -> PathBuf {
    let bin = vrrpd().expect("rvs-vrrpd binary");
    let status = lab.path(&format!("{node}-status.json"));
    let prio = prio.to_string();
    let bin_s = bin.to_string_lossy().into_owned();
    let status_s = status.to_string_lossy().into_owned();
    let mut cmd = vec![
        bin_s.as_str(),
        "--interface",
        "eth0",
        "--vrid",
        "51",
        "--priority",
        &prio,
        "--advert-int",
        "1",
        "--auth-pass",
        pass,
        "--vip",
        "198.18.0.100/24 dev eth0 label eth0:1",
        "--status-file",
        &status_s,
    ];
    cmd.extend_from_slice(extra);
    lab.spawn(node, &format!("{node}-rvs.log"), &cmd);
    status
}

/// Start keepalived 2.2.7 in `node` (VRRP only).
pub fn start_keepalived(lab: &mut Lab, node: &str, state: &str, prio: u8, pass: &str) {
    start_keepalived_v(lab, node, state, prio, pass, 2, "1");
}

/// Start keepalived 2.2.7 with a VRRP version and advert_int (v3: no auth).
pub fn start_keepalived_v(
    lab: &mut Lab,
    node: &str,
    state: &str,
    prio: u8,
    pass: &str,
    version: u8,
    advert: &str,
) {
    let auth = if version == 2 {
        format!("  authentication {{\n    auth_type PASS\n    auth_pass {pass}\n  }}\n")
    } else {
        String::new()
    };
    let conf = format!(
        "global_defs {{\n  router_id {node}\n}}\n\
         vrrp_instance VI_1 {{\n  state {state}\n  interface eth0\n  virtual_router_id 51\n  priority {prio}\n  \
         version {version}\n  advert_int {advert}\n{auth}  \
         virtual_ipaddress {{\n    198.18.0.100/24 dev eth0 label eth0:1\n  }}\n}}\n"
    );
    write_keepalived(lab, node, conf);
}

/// Start keepalived with a complete configuration text.
pub fn start_keepalived_conf(lab: &mut Lab, node: &str, conf: String) {
    write_keepalived(lab, node, conf);
}

fn write_keepalived(lab: &mut Lab, node: &str, conf: String) {
    let log = lab.path(&format!("{node}-keepalived.log"));
    let _ = std::fs::rename(&log, lab.path(&format!("{node}-keepalived.log.old")));
    // A SIGKILLed keepalived leaves its pid files; a reused pid would make
    // the next one think it is "already running".
    let _ = std::fs::remove_file(lab.path(&format!("{node}-keepalived.pid")));
    let _ = std::fs::remove_file(lab.path(&format!("{node}-vrrp.pid")));
    let file = lab.path(&format!("{node}-keepalived.conf"));
    std::fs::write(&file, conf).expect("write conf");
    let pid = lab.path(&format!("{node}-keepalived.pid"));
    let vpid = lab.path(&format!("{node}-vrrp.pid"));
    let (f, p, v) = (
        file.to_string_lossy().into_owned(),
        pid.to_string_lossy().into_owned(),
        vpid.to_string_lossy().into_owned(),
    );
    lab.spawn(
        node,
        &format!("{node}-keepalived.log"),
        &[
            "/usr/sbin/keepalived",
            "-P",
            "-n",
            "-l",
            "-D",
            "-f",
            &f,
            "-p",
            &p,
            "-r",
            &v,
            "-i",
            node,
        ],
    );
}

/// Read a counter from a vrrpd status file.
pub fn counter(status: &Path, name: &str) -> u64 {
    let Ok(s) = std::fs::read_to_string(status) else {
        return 0;
    };
    let Ok(v) = serde_json::from_str::<serde_json::Value>(&s) else {
        return 0;
    };
    v[0]["counters"][name].as_u64().unwrap_or(0)
}

/// State string from a vrrpd status file.
pub fn state(status: &Path) -> String {
    let Ok(s) = std::fs::read_to_string(status) else {
        return String::new();
    };
    let Ok(v) = serde_json::from_str::<serde_json::Value>(&s) else {
        return String::new();
    };
    v[0]["state"].as_str().unwrap_or("").to_owned()
}
