//! `rvsadm realserver setup|teardown` inside a throw-away network namespace
//! (root only; skipped otherwise, a failure with `RVS_REQUIRE_LAB=1`).

use std::process::Command;

struct Ns(String);
impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

fn in_ns(ns: &str, args: &[&str]) -> (bool, String) {
    let o = Command::new("ip")
        .args(["netns", "exec", ns])
        .args(args)
        .output()
        .expect("ip netns exec");
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr),
    )
}

#[test]
fn realserver_setup_and_teardown() {
    if rvs_lab::skip_unless_root("rvsadm realserver_setup_and_teardown") {
        return;
    }
    let ns = Ns(format!("rvrs{}", std::process::id()));
    let _ = Command::new("ip").args(["netns", "del", &ns.0]).output();
    assert!(Command::new("ip")
        .args(["netns", "add", &ns.0])
        .status()
        .unwrap()
        .success());
    in_ns(&ns.0, &["ip", "link", "set", "lo", "up"]);
    let bin = env!("CARGO_BIN_EXE_rvsadm");
    let (ok, out) = in_ns(
        &ns.0,
        &[bin, "realserver", "setup", "--vip", "198.18.0.100"],
    );
    assert!(ok, "{out}");
    let (_, addrs) = in_ns(&ns.0, &["ip", "-4", "addr", "show", "dev", "lo"]);
    assert!(
        addrs.contains("inet 198.18.0.100/32") && addrs.contains("lo:1"),
        "{addrs}"
    );
    for i in ["all", "default", "lo"] {
        let (_, v) = in_ns(
            &ns.0,
            &["sysctl", "-n", &format!("net.ipv4.conf.{i}.arp_ignore")],
        );
        assert_eq!(v.trim(), "1");
        let (_, v) = in_ns(
            &ns.0,
            &["sysctl", "-n", &format!("net.ipv4.conf.{i}.arp_announce")],
        );
        assert_eq!(v.trim(), "2");
    }
    // Idempotent.
    assert!(
        in_ns(
            &ns.0,
            &[bin, "realserver", "setup", "--vip", "198.18.0.100"]
        )
        .0
    );
    let (ok, out) = in_ns(
        &ns.0,
        &[bin, "realserver", "teardown", "--vip", "198.18.0.100"],
    );
    assert!(ok, "{out}");
    let (_, addrs) = in_ns(&ns.0, &["ip", "-4", "addr", "show", "dev", "lo"]);
    assert!(!addrs.contains("198.18.0.100"), "{addrs}");
    // The ARP settings are back to what they were (0 in a fresh namespace).
    let (_, v) = in_ns(&ns.0, &["sysctl", "-n", "net.ipv4.conf.all.arp_ignore"]);
    assert_eq!(v.trim(), "0");
    // A wrong command line is explained, status 2.
    let (ok, out) = in_ns(&ns.0, &[bin, "realserver", "setup"]);
    assert!(!ok && out.contains("missing --vip VIP"), "{out}");
}
