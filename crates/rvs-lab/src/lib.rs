//! Test tooling: the seed's topology in network namespaces.
//!
//! [`Lab::up`] runs `scripts/netns-lab up PREFIX` (client 198.18.0.2, lvs1
//! 198.18.0.11, lvs2 198.18.0.12, rs1 198.18.0.21, rs2 198.18.0.22 on one
//! bridge; real servers hold the VIP 198.18.0.100 on `lo` with arp_ignore /
//! arp_announce as in the seed). Dropping the [`Lab`] kills every process it
//! started and deletes the namespaces, even when the test panics. Each test
//! uses its own prefix so tests run in parallel, and the namespaces carry the
//! test process's pid (`PREFIX-PID-NODE`) so that two test runs on one
//! machine (two worktrees, CI next to a developer) never share or delete
//! each other's namespaces.
//!
//! Only addresses from 198.18.0.0/15 are used, and for IPv6 ([`v6`]) only
//! 2001:2::/48.

pub mod v6;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const CLIENT: &str = "198.18.0.2";
pub const LVS1: &str = "198.18.0.11";
pub const LVS2: &str = "198.18.0.12";
pub const RS1: &str = "198.18.0.21";
pub const RS2: &str = "198.18.0.22";
pub const VIP: &str = "198.18.0.100";

/// True when running as root (lab tests need CAP_NET_ADMIN / CAP_SYS_ADMIN).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Something a test needs that a machine may lack, and how to provide it.
/// The `scripts/test` summary groups skipped tests by [`Need::what`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Need {
    /// What is missing, e.g. "keepalived (/usr/sbin/keepalived)".
    pub what: &'static str,
    /// How to provide it, e.g. "apt-get install keepalived".
    pub fix: &'static str,
}

/// The things lab and end-to-end tests need (see [`skip`]).
pub mod need {
    use super::Need;

    pub const ROOT: Need = Need {
        what: "root (network namespaces, raw sockets, nftables)",
        fix: "run the tests as root, e.g. sudo -E scripts/test",
    };
    pub const KEEPALIVED: Need = Need {
        what: "keepalived (/usr/sbin/keepalived)",
        fix: "apt-get install keepalived",
    };
    pub const KEEPALIVED_SAMPLES: Need = Need {
        what: "keepalived's sample configurations (/usr/share/doc/keepalived/samples)",
        fix: "apt-get install keepalived (with /usr/share/doc not excluded from dpkg)",
    };
    pub const CHROMIUM: Need = Need {
        what: "a headless Chromium",
        fix: "apt-get install chromium, or set RVS_CHROMIUM to its binary",
    };
    pub const OPENSSL: Need = Need {
        what: "the openssl command",
        fix: "apt-get install openssl",
    };
    pub const ICMP_SOCKET: Need = Need {
        what: "permission to open ICMP sockets",
        fix: "run as root, or let your group use ping sockets (sysctl net.ipv4.ping_group_range)",
    };
    pub const XDP: Need = Need {
        what: "XDP and AF_XDP support in the kernel",
        fix: "a kernel with CONFIG_XDP_SOCKETS and CONFIG_BPF_SYSCALL (generic XDP on veth is enough)",
    };
    pub const XDP_MULTI_BUFFER: Need = Need {
        what: "AF_XDP multi-buffer (XDP_USE_SG)",
        fix: "a kernel >= 6.6",
    };
    pub const PACKET_REALSERVER: Need = Need {
        what: "the rvs-packet-realserver binary",
        fix: "cargo build -p rvs-packet --bin rvs-packet-realserver, or set RVS_PACKET_REALSERVER",
    };
    pub const RVSADM: Need = Need {
        what: "the rvsadm binary (realserver setup --tun)",
        fix: "cargo build -p rvsadm, or set RVSADM to it",
    };
    pub const PACKET_LVS: Need = Need {
        what: "RVS_PACKET_LVS (path of a release rvs-packet-lvs)",
        fix:
            "cargo build --release -p rvs-packet --bin rvs-packet-lvs and set RVS_PACKET_LVS to it",
    };
}

/// Environment variable that turns every skip into a failure (`.ci/run`
/// sets it).
pub const REQUIRE_LAB: &str = "RVS_REQUIRE_LAB";

/// Where skips are recorded (one `test<TAB>what<TAB>fix` line each):
/// `$RVS_SKIP_LOG`, else `target/rvs-skips.txt` under the repository root.
/// `scripts/test` empties it first and summarises it at the end.
pub fn skip_log() -> PathBuf {
    std::env::var_os("RVS_SKIP_LOG")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/rvs-skips.txt"))
}

/// `test` cannot run here for lack of `need` (`detail`: what was seen, may
/// be empty); the caller returns right after.
///
/// With `RVS_REQUIRE_LAB=1` this panics, naming what is missing and the
/// fix, so a machine that should run everything (CI) cannot pass by
/// skipping. Otherwise it prints a line to stderr that the test harness
/// does not capture and appends a record to [`skip_log`], which
/// `scripts/test` counts per reason.
pub fn skip(test: &str, need: Need, detail: &str) {
    let require = std::env::var(REQUIRE_LAB).is_ok_and(|v| v == "1");
    // Straight to the stderr handle: the harness captures only the print
    // macros, and a skip must be visible in a normal run.
    let mut err = std::io::stderr();
    if let Err(msg) = record_skip(test, need, detail, require, &skip_log(), &mut err) {
        panic!("{msg}");
    }
}

/// [`skip`] without the environment: `Err(message)` when `require`,
/// else the visible line to `out` and the record appended to `log`.
fn record_skip(
    test: &str,
    need: Need,
    detail: &str,
    require: bool,
    log: &Path,
    out: &mut dyn std::io::Write,
) -> Result<(), String> {
    let detail = if detail.trim().is_empty() {
        String::new()
    } else {
        format!(" ({})", detail.trim())
    };
    if require {
        return Err(format!(
            "{test} cannot run here: it needs {}{detail}. Fix: {}. \
             ({REQUIRE_LAB}=1 turns skips into failures; unset it to skip.)",
            need.what, need.fix
        ));
    }
    use std::io::Write;
    let _ = writeln!(
        out,
        "SKIPPED {test}: needs {}{detail}; fix: {}",
        need.what, need.fix
    );
    if let Some(dir) = log.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    // One short write with O_APPEND, so parallel test processes do not
    // interleave their lines.
    let line = format!(
        "{}\t{}\t{}\n",
        test.replace(['\t', '\n'], " "),
        need.what,
        need.fix
    );
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
    {
        let _ = f.write_all(line.as_bytes());
    }
    Ok(())
}

/// [`skip`] for lack of root; true when the test must return.
pub fn skip_unless_root(test: &str) -> bool {
    if is_root() {
        return false;
    }
    skip(test, need::ROOT, "");
    true
}

/// [`skip`] when `path` does not exist; true when the test must return.
pub fn skip_unless_exists(test: &str, path: &Path, need: Need) -> bool {
    if path.exists() {
        return false;
    }
    skip(test, need, &format!("{} not found", path.display()));
    true
}

/// The repository root (for scripts and example files).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Poll `f` every 50 ms until it returns Some or `deadline` passes.
pub fn wait_for<T>(deadline: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let end = Instant::now() + deadline;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Additions to the default nginx site of [`Lab::start_nginx_with`].
#[derive(Debug, Default, Clone, Copy)]
pub struct NginxOpts<'a> {
    /// More `listen` parameters (e.g. `"[::]:80 ipv6only=on reuseport"`).
    pub listen: &'a [&'a str],
    /// Directives at `http` level (e.g. `"client_max_body_size 10m;"`).
    pub http: &'a str,
    /// Directives at `server` level (e.g. `"location /up/ { dav_methods PUT; }"`).
    pub server: &'a str,
    /// Readiness probe run in the node; it must print the body
    /// (default: `curl -s -m 1 http://127.0.0.1/`).
    pub probe: Option<&'a str>,
}

/// `PREFIX-PID` of namespaces left by test processes that no longer exist
/// (killed before their `Lab` was dropped).
fn stale_prefixes(prefix: &str) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/run/netns") else {
        return Vec::new();
    };
    let mut out: Vec<String> = dir
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|name| {
            let rest = name.strip_prefix(prefix)?.strip_prefix('-')?;
            let (pid, _node) = rest.split_once('-')?;
            let pid: u32 = pid.parse().ok()?;
            let gone = !Path::new(&format!("/proc/{pid}")).exists();
            gone.then(|| format!("{prefix}-{pid}"))
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// A running lab; torn down on drop.
pub struct Lab {
    pub prefix: String,
    pub dir: tempfile::TempDir,
    children: Vec<Child>,
}

impl Lab {
    /// Build the topology under `prefix`-PID (tear down any leftover of a
    /// test run that is gone first).
    pub fn up(prefix: &str) -> Lab {
        let script = repo_root().join("scripts/netns-lab");
        for stale in stale_prefixes(prefix) {
            let _ = Command::new(&script).args(["down", &stale]).output();
        }
        let prefix = &format!("{prefix}-{}", std::process::id());
        let _ = Command::new(&script).args(["down", prefix]).output();
        let out = Command::new(&script)
            .args(["up", prefix])
            .output()
            .expect("run scripts/netns-lab");
        let lab = Lab {
            prefix: prefix.to_string(),
            dir: tempfile::tempdir().expect("tempdir"),
            children: Vec::new(),
        };
        assert!(
            out.status.success(),
            "netns-lab up {prefix} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        lab
    }

    pub fn ns(&self, node: &str) -> String {
        format!("{}-{}", self.prefix, node)
    }

    fn cmd(&self, node: &str, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns(node)]).args(args);
        c
    }

    /// Run a command in `node` and wait for it.
    pub fn exec(&self, node: &str, args: &[&str]) -> Output {
        self.cmd(node, args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("ip netns exec {} {args:?}: {e}", self.ns(node)))
    }

    /// Run and return stdout as a string (empty on failure).
    pub fn sh(&self, node: &str, script: &str) -> String {
        let o = self.exec(node, &["sh", "-c", script]);
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Start a long-running process in `node`; it is killed on drop.
    /// stdout/stderr go to `<dir>/<name>.log`.
    pub fn spawn(&mut self, node: &str, name: &str, args: &[&str]) -> u32 {
        let log =
            std::fs::File::create(self.dir.path().join(format!("{name}.log"))).expect("log file");
        let log2 = log.try_clone().expect("log file");
        let child = self
            .cmd(node, args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {args:?} in {}: {e}", self.ns(node)));
        let pid = child.id();
        self.children.push(child);
        pid
    }

    /// Collect spawned processes that have exited (no zombies).
    pub fn reap(&mut self) {
        for c in &mut self.children {
            let _ = c.try_wait();
        }
    }

    /// Contents of a spawned process's log.
    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{name}.log"))).unwrap_or_default()
    }

    /// Send `sig` to a spawned process.
    pub fn signal(&self, pid: u32, sig: i32) {
        // SAFETY: plain kill(2) on a pid we spawned.
        unsafe {
            libc::kill(pid as i32, sig);
        }
    }

    /// Wait for a spawned process to exit (reaping it), up to `deadline`.
    pub fn wait_exit(&mut self, pid: u32, deadline: Duration) -> bool {
        let Some(i) = self.children.iter().position(|c| c.id() == pid) else {
            return true;
        };
        let end = Instant::now() + deadline;
        loop {
            if let Ok(Some(_)) = self.children[i].try_wait() {
                let mut c = self.children.remove(i);
                let _ = c.wait();
                return true;
            }
            if Instant::now() >= end {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Start nginx in `node` serving `body` at `/` on port 80.
    pub fn start_nginx(&self, node: &str, body: &str) {
        self.start_nginx_with(node, body, &NginxOpts::default());
    }

    /// Start nginx in `node` serving `body` at `/` on port 80, with the
    /// additions of `opts`; waits until it answers. Returns the document
    /// root (for extra files).
    pub fn start_nginx_with(&self, node: &str, body: &str, opts: &NginxOpts) -> PathBuf {
        let d = self.dir.path().join(format!("nginx-{node}"));
        let root = d.join("www");
        std::fs::create_dir_all(&root).expect("nginx dir");
        for p in [self.dir.path(), d.as_path(), root.as_path()] {
            let _ =
                std::fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(0o755));
        }
        std::fs::write(root.join("index.html"), format!("{body}\n")).expect("index");
        let listen: String = opts
            .listen
            .iter()
            .map(|l| format!("    listen {l};\n"))
            .collect();
        let conf = format!(
            "daemon on;
pid {d}/nginx.pid;
error_log {d}/error.log;
worker_processes 1;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  keepalive_requests 100000;
  client_body_temp_path {d}/tmp;
  proxy_temp_path {d}/tmp;
  fastcgi_temp_path {d}/tmp;
  uwsgi_temp_path {d}/tmp;
  scgi_temp_path {d}/tmp;
  {http}
  server {{
    listen 80 reuseport;
{listen}    root {root};
    {server}
    location / {{ index index.html; }}
  }}
}}
",
            d = d.display(),
            root = root.display(),
            http = opts.http,
            server = opts.server,
        );
        std::fs::write(d.join("nginx.conf"), conf).expect("nginx.conf");
        let conf_path = d.join("nginx.conf");
        let o = self.exec(
            node,
            &["nginx", "-c", conf_path.to_str().unwrap_or_default()],
        );
        assert!(
            o.status.success(),
            "nginx in {node}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let probe = opts.probe.unwrap_or("curl -s -m 1 http://127.0.0.1/");
        let ok = wait_for(Duration::from_secs(5), || {
            let out = self.sh(node, probe);
            (out.trim() == body).then_some(())
        });
        assert!(ok.is_some(), "nginx in {node} did not come up ({probe})");
        root
    }

    /// Stop nginx in `node` (fast shutdown) and wait until port 80 is closed.
    pub fn stop_nginx(&self, node: &str) {
        let d = self.dir.path().join(format!("nginx-{node}"));
        let conf = d.join("nginx.conf");
        let _ = self.exec(
            node,
            &[
                "nginx",
                "-c",
                conf.to_str().unwrap_or_default(),
                "-s",
                "stop",
            ],
        );
        let _ = wait_for(Duration::from_secs(5), || {
            let o = self.exec(node, &["curl", "-s", "-m", "1", "http://127.0.0.1/"]);
            (!o.status.success()).then_some(())
        });
    }

    /// True if `addr` is configured on `node`'s eth0 (e.g. the VIP on a
    /// director).
    pub fn has_addr(&self, node: &str, addr: &str) -> bool {
        self.sh(node, "ip -4 addr show dev eth0")
            .contains(&format!("inet {addr}/"))
    }

    /// `curl -s` from the client; returns the trimmed body, None on failure.
    pub fn curl(&self, url: &str) -> Option<String> {
        // 10 s: a fault threshold, not a speed (a loaded machine can take
        // seconds to start curl and the engine).
        let o = self.exec("client", &["curl", "-s", "-m", "10", url]);
        o.status
            .success()
            .then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
    }

    /// Four requests to `http://VIP/` from the client, one connection each
    /// ("FAILED" for a request without an answer).
    pub fn curl4(&self) -> Vec<String> {
        (0..4)
            .map(|_| {
                self.curl(&format!("http://{VIP}/"))
                    .unwrap_or_else(|| "FAILED".into())
            })
            .collect()
    }
}

/// Four answers alternate between the real servers "rs1" and "rs2" (rr).
pub fn assert_rr(got: &[String]) {
    assert!(
        got.first().is_some_and(|g| g == "rs1" || g == "rs2"),
        "got {got:?}"
    );
    let other = if got[0] == "rs1" { "rs2" } else { "rs1" };
    assert_eq!(
        got,
        [got[0].as_str(), other, got[0].as_str(), other],
        "rr alternation"
    );
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        // netns-lab down kills every remaining process (nginx, keepalived).
        let _ = Command::new(repo_root().join("scripts/netns-lab"))
            .args(["down", &self.prefix])
            .output();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_skip_is_recorded_or_fails_when_the_lab_is_required() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("sub/skips.txt");
        let mut out = Vec::new();
        record_skip("t1", need::KEEPALIVED, "", false, &log, &mut out).unwrap();
        record_skip("t2", need::ROOT, "uid 1000", false, &log, &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!(
                "SKIPPED t1: needs {}; fix: {}\nSKIPPED t2: needs {} (uid 1000); fix: {}\n",
                need::KEEPALIVED.what,
                need::KEEPALIVED.fix,
                need::ROOT.what,
                need::ROOT.fix
            )
        );
        let text = std::fs::read_to_string(&log).unwrap();
        assert_eq!(
            text,
            format!(
                "t1\t{}\t{}\nt2\t{}\t{}\n",
                need::KEEPALIVED.what,
                need::KEEPALIVED.fix,
                need::ROOT.what,
                need::ROOT.fix
            )
        );
        let err = record_skip(
            "t3",
            need::OPENSSL,
            "not in PATH",
            true,
            &log,
            &mut Vec::new(),
        )
        .unwrap_err();
        assert!(
            err.contains("t3 cannot run here: it needs the openssl command (not in PATH)")
                && err.contains("Fix: apt-get install openssl"),
            "{err}"
        );
        // a required skip records nothing
        assert_eq!(std::fs::read_to_string(&log).unwrap(), text);
    }
}
