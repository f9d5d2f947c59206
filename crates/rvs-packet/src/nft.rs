//! The nftables table that keeps the kernel from also answering VIP
//! traffic.
//!
//! Why nftables: the VIP is configured on the director (VRRP adds it), so
//! the kernel's own stack would answer a SYN to VIP:port with a RST (no
//! listener) or accept it if something listens. The AF_PACKET tap sees every
//! frame *before* the IP layer (`__netif_receive_skb_core` delivers to packet
//! taps, then `ip_rcv` runs the netfilter PREROUTING hook), so a drop rule
//! at PREROUTING priority −300 (before conntrack) hides served VIP:port
//! traffic from the kernel while the engine still receives it. ARP for the
//! VIP is left to the kernel on purpose: the director must answer it.
//!
//! For NAT, replies from real servers (`saddr RS, sport RPORT`, to a
//! non-local destination) are dropped too, so that a host with
//! `ip_forward=1` does not forward the un-translated reply next to the
//! engine's translated one.
//!
//! Fragments: the engine reassembles fragments to VIPs and from NAT
//! real servers itself ([`crate::frag`], [`crate::frag6`]). A port rule
//! only matches a first fragment (nftables cannot see the ports of the
//! others), so each (VIP, protocol) and (NAT real server, protocol) also
//! gets a rule dropping non-first fragments (IPv4: `ip frag-off & 0x1fff
//! != 0`; IPv6: `meta l4proto P frag frag-off != 0`, the Fragment
//! header's next header being the protocol): the kernel must neither
//! reassemble them nor forward them.
//!
//! Firewall-mark services: packets an nftables `netdev` ingress rule
//! marked for a served fwmark service (see the crate docs) are taken by
//! the engine's mark sockets; each (mark, family) gets a rule dropping
//! them here (`meta nfproto ipv4 meta mark 0x1 drop`) so the kernel
//! neither answers (RST) nor forwards them. The netdev ingress hook runs
//! in `__netif_receive_skb_core`, before `ip_rcv`/`ipv6_rcv` reach this
//! PREROUTING chain, so the mark is set by then.
//!
//! The table is `inet <name>` (default `rvs`), owned by the engine: created
//! on the first reconcile, replaced atomically on each change (one `nft -f`
//! transaction), deleted on shutdown/drop. An XDP program would avoid the
//! `nft` dependency; this is the simpler, inspectable choice
//! (`nft list table inet rvs`).

use rvs_core::Protocol;
use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr};
use std::process::{Command, Stdio};

/// The rvs-owned nftables table.
#[derive(Debug)]
pub struct NftTable {
    name: String,
    iface: String,
    installed: bool,
    last: Option<String>,
    failed: Option<String>,
}

fn l4(p: Protocol) -> &'static str {
    match p {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
        Protocol::Sctp => "sctp",
    }
}

fn fam(a: &IpAddr) -> &'static str {
    if a.is_ipv4() {
        "ip"
    } else {
        "ip6"
    }
}

/// Match non-first fragments of protocol `p` to (`to`) or from `a`:
/// IPv4 by the offset field, IPv6 by the Fragment header's offset
/// (`meta l4proto` is the Fragment header's next header for them).
fn non_first(to: bool, a: &SocketAddr, p: Protocol) -> String {
    let dir = if to { "daddr" } else { "saddr" };
    if a.is_ipv4() {
        format!(
            "ip {dir} {} ip protocol {} ip frag-off & 0x1fff != 0",
            a.ip(),
            l4(p)
        )
    } else {
        format!(
            "ip6 {dir} {} meta l4proto {} frag frag-off != 0",
            a.ip(),
            l4(p)
        )
    }
}

/// The ruleset text for `vips` (served services), `nat_dests`
/// (real servers of NAT services) and `marks` (served firewall-mark
/// services: mark, IPv6).
pub fn ruleset(
    name: &str,
    iface: &str,
    vips: &[(Protocol, SocketAddr)],
    nat_dests: &[(Protocol, SocketAddr)],
    marks: &[(u32, bool)],
    fib: bool,
) -> String {
    let mut s = format!(
        "table inet {name} {{}}\nflush table inet {name}\ntable inet {name} {{\n  chain prerouting {{\n    type filter hook prerouting priority -300; policy accept;\n"
    );
    for (mark, v6) in marks {
        let nfproto = if *v6 { "ipv6" } else { "ipv4" };
        s += &format!("    iifname \"{iface}\" meta nfproto {nfproto} meta mark {mark:#x} drop\n");
    }
    let mut frags: Vec<(Protocol, IpAddr)> = Vec::new();
    for (p, a) in vips {
        s += &format!(
            "    iifname \"{iface}\" {} daddr {} {} dport {} drop\n",
            fam(&a.ip()),
            a.ip(),
            l4(*p),
            a.port()
        );
        if !frags.contains(&(*p, a.ip())) {
            frags.push((*p, a.ip()));
            s += &format!("    iifname \"{iface}\" {} drop\n", non_first(true, a, *p));
        }
    }
    if fib {
        frags.clear();
        for (p, a) in nat_dests {
            s += &format!(
                "    iifname \"{iface}\" {} saddr {} {} sport {} fib daddr type != local drop\n",
                fam(&a.ip()),
                a.ip(),
                l4(*p),
                a.port()
            );
            if !frags.contains(&(*p, a.ip())) {
                frags.push((*p, a.ip()));
                s += &format!(
                    "    iifname \"{iface}\" {} fib daddr type != local drop\n",
                    non_first(false, a, *p)
                );
            }
        }
    }
    s += "  }\n}\n";
    s
}

fn nft(script: &str) -> io::Result<()> {
    let mut c = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    if let Some(mut i) = c.stdin.take() {
        i.write_all(script.as_bytes())?;
    }
    let o = c.wait_with_output()?;
    if o.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "nft: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )))
    }
}

impl NftTable {
    /// A table named `name` for interface `iface` (nothing installed yet).
    pub fn new(name: &str, iface: &str) -> NftTable {
        NftTable {
            name: name.to_string(),
            iface: iface.to_string(),
            installed: false,
            last: None,
            failed: None,
        }
    }

    /// Install or replace the rules (no-op if unchanged).
    pub fn apply(
        &mut self,
        vips: &[(Protocol, SocketAddr)],
        nat_dests: &[(Protocol, SocketAddr)],
    ) -> io::Result<()> {
        self.apply_marks(vips, nat_dests, &[])
    }

    /// [`NftTable::apply`], also dropping the packets of the served
    /// firewall-mark services (`marks`: mark, IPv6).
    pub fn apply_marks(
        &mut self,
        vips: &[(Protocol, SocketAddr)],
        nat_dests: &[(Protocol, SocketAddr)],
        marks: &[(u32, bool)],
    ) -> io::Result<()> {
        let text = ruleset(&self.name, &self.iface, vips, nat_dests, marks, true);
        if self.last.as_deref() == Some(text.as_str())
            || self.failed.as_deref() == Some(text.as_str())
        {
            return Ok(());
        }
        let r = nft(&text).or_else(|e| {
            // Kernels without nft_fib: keep the VIP rules at least.
            if nat_dests.is_empty() {
                return Err(e);
            }
            tracing::warn!(error = %e, "nft fib unavailable; NAT reply drop rules not installed");
            nft(&ruleset(
                &self.name,
                &self.iface,
                vips,
                nat_dests,
                marks,
                false,
            ))
        });
        self.installed = true;
        if let Err(e) = r {
            // Don't retry the same ruleset every second; a change retries.
            self.failed = Some(text);
            return Err(e);
        }
        self.last = Some(text);
        self.failed = None;
        Ok(())
    }

    /// Forget what was installed: the next apply runs `nft` even if the
    /// rules did not change (after another process may have replaced
    /// them, see [`crate::handover`]).
    pub fn forget(&mut self) {
        self.last = None;
        self.failed = None;
    }

    /// Delete the table (if we created it).
    pub fn remove(&mut self) {
        if self.installed {
            let _ = nft(&format!(
                "table inet {n} {{}}\ndelete table inet {n}\n",
                n = self.name
            ));
            self.installed = false;
            self.last = None;
        }
    }
}

impl Drop for NftTable {
    fn drop(&mut self) {
        self.remove();
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn text() {
        let s = ruleset(
            "rvs",
            "eth0",
            &[(Protocol::Tcp, "198.18.0.100:80".parse().unwrap())],
            &[(Protocol::Tcp, "198.18.0.21:80".parse().unwrap())],
            &[],
            true,
        );
        assert!(s.contains("iifname \"eth0\" ip daddr 198.18.0.100 tcp dport 80 drop"));
        assert!(s.contains("ip saddr 198.18.0.21 tcp sport 80 fib daddr type != local drop"));
        assert!(s.contains("ip daddr 198.18.0.100 ip protocol tcp ip frag-off & 0x1fff != 0 drop"));
        assert!(s.contains(
            "ip saddr 198.18.0.21 ip protocol tcp ip frag-off & 0x1fff != 0 fib daddr type != local drop"
        ));
        assert!(s.starts_with("table inet rvs {}\nflush table inet rvs\n"));
    }

    #[test]
    fn text6() {
        let s = ruleset(
            "rvs",
            "eth0",
            &[
                (Protocol::Udp, "[2001:2:0:1::100]:53".parse().unwrap()),
                (Protocol::Udp, "[2001:2:0:1::100]:54".parse().unwrap()),
            ],
            &[(Protocol::Udp, "[2001:2:0:1::21]:53".parse().unwrap())],
            &[],
            true,
        );
        assert!(s.contains("iifname \"eth0\" ip6 daddr 2001:2:0:1::100 udp dport 53 drop"));
        let frag = "ip6 daddr 2001:2:0:1::100 meta l4proto udp frag frag-off != 0 drop";
        assert_eq!(s.matches(frag).count(), 1);
        assert!(s.contains(
            "ip6 saddr 2001:2:0:1::21 meta l4proto udp frag frag-off != 0 fib daddr type != local drop"
        ));
    }

    #[test]
    fn text_marks() {
        let s = ruleset("rvs", "eth0", &[], &[], &[(1, false), (0x20, true)], true);
        assert!(s.contains("iifname \"eth0\" meta nfproto ipv4 meta mark 0x1 drop\n"));
        assert!(s.contains("iifname \"eth0\" meta nfproto ipv6 meta mark 0x20 drop\n"));
        assert!(s.contains("type filter hook prerouting priority -300;"));
    }
}
