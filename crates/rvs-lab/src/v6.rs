//! IPv6 for the lab: the same topology with addresses from 2001:2::/48
//! (RFC 5180, the IPv6 benchmarking range — the counterpart of
//! 198.18.0.0/15), LAN 2001:2:0:1::/64:
//!
//! client `::2`, lvs1 `::11`, lvs2 `::12`, rs1 `::21`, rs2 `::22`,
//! VIP `::100`.
//!
//! [`up6`] adds them to the nodes' `eth0` of a running [`Lab`] with
//! duplicate address detection off (so they are usable at once) and
//! turns off multicast snooping on the lab bridge (neighbour
//! solicitations of user-space engines reach every port). Nothing is done
//! outside the lab's namespaces.

use crate::{wait_for, Lab};
use std::time::Duration;

/// Prefix length of the lab LAN.
pub const PLEN: u8 = 64;
pub const CLIENT6: &str = "2001:2:0:1::2";
pub const LVS1_6: &str = "2001:2:0:1::11";
pub const LVS2_6: &str = "2001:2:0:1::12";
pub const RS1_6: &str = "2001:2:0:1::21";
pub const RS2_6: &str = "2001:2:0:1::22";
pub const VIP6: &str = "2001:2:0:1::100";

const NODES: [(&str, &str); 5] = [
    ("client", CLIENT6),
    ("lvs1", LVS1_6),
    ("lvs2", LVS2_6),
    ("rs1", RS1_6),
    ("rs2", RS2_6),
];

/// `http://[addr]/path`.
pub fn url6(addr: &str, path: &str) -> String {
    format!("http://[{addr}]/{}", path.trim_start_matches('/'))
}

/// `[addr]:port`.
pub fn sock6(addr: &str, port: u16) -> String {
    format!("[{addr}]:{port}")
}

/// True if `addr` is configured (and not tentative) on `node`'s `dev`.
pub fn has_addr6(lab: &Lab, node: &str, dev: &str, addr: &str) -> bool {
    lab.sh(node, &format!("ip -6 -o addr show dev {dev}"))
        .lines()
        .any(|l| l.contains(&format!(" {addr}/")) && !l.contains("tentative"))
}

/// Add `addr/plen` to `dev` of `node` without DAD; panics on failure.
pub fn add_addr6(lab: &Lab, node: &str, dev: &str, addr: &str, plen: u8) {
    let o = lab.exec(
        node,
        &[
            "ip",
            "-6",
            "addr",
            "add",
            &format!("{addr}/{plen}"),
            "dev",
            dev,
            "nodad",
        ],
    );
    assert!(
        o.status.success(),
        "ip -6 addr add {addr} in {node}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Give every node its IPv6 address (see the module docs) and wait until
/// all are usable.
pub fn up6(lab: &Lab) {
    let o = lab.exec(
        "sw",
        &[
            "ip",
            "link",
            "set",
            "br0",
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ],
    );
    assert!(o.status.success(), "bridge mcast_snooping off");
    for (n, a) in NODES {
        lab.sh(
            n,
            "for i in all default eth0; do sysctl -qw net.ipv6.conf.$i.disable_ipv6=0 net.ipv6.conf.$i.accept_dad=0; done",
        );
        add_addr6(lab, n, "eth0", a, PLEN);
    }
    for (n, a) in NODES {
        let ok = wait_for(Duration::from_secs(5), || {
            has_addr6(lab, n, "eth0", a).then_some(())
        });
        assert!(ok.is_some(), "{a} not usable in {n}");
    }
}

/// Start nginx in `node` serving `body` at `/` on port 80 over IPv4 and
/// IPv6 (the site of [`Lab::start_nginx`] with a `[::]:80` listener).
pub fn start_nginx6(lab: &Lab, node: &str, body: &str) {
    lab.start_nginx_with(
        node,
        body,
        &crate::NginxOpts {
            listen: &["[::]:80 ipv6only=on reuseport"],
            probe: Some("curl -6 -g -s -m 1 'http://[::1]/'"),
            ..Default::default()
        },
    );
}

/// `curl -6 -s` from the client; the trimmed body, None on failure.
pub fn curl6(lab: &Lab, url: &str) -> Option<String> {
    let o = lab.exec("client", &["curl", "-6", "-g", "-s", "-m", "10", url]);
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
}
