//! The real-server side of LVS, as `rvsadm realserver setup|teardown --vip
//! VIP [--tun]` runs it (what the seed does by hand on each nginx host):
//!
//! * the VIP on `lo` as a /32 (IPv6: /128) with label `lo:1`, and a host
//!   route for it;
//! * `arp_ignore=1`, `arp_announce=2` on `all`, `default` and `lo`, so the
//!   real server never answers or announces ARP for the VIP (DR/TUN);
//! * with `tun`: if the kernel has the `ipip` module, `tunl0` is brought up
//!   (the kernel decapsulates); otherwise a user-space decapsulator
//!   ([`Decap`]) receives IPIP (and GRE, and GUE on a given port) addressed
//!   to this host on an AF_PACKET socket and writes the inner packet to a
//!   TUN device, from which the stack delivers it to the VIP on `lo`.
//!   Outer headers of both families are decapsulated, so IPv6 services
//!   and mixed-family TUN work too: IPIP (IPv4 in IPv4), IPv6 in IPv4
//!   (protocol 41), ip6ip6 (IPv6 next header 41) and IPv4 in IPv6 (next
//!   header 4), each also in GRE or GUE. An IPv6 VIP always uses the
//!   user-space decapsulator (the kernel's `ip6tnl0` is not set up).
//!   `rp_filter` is set to 0 on the tunnel device and `all` (the inner
//!   source is the client, reachable through another interface), and an
//!   nftables table `inet rvs-rs` drops the encapsulated packets after the
//!   tap so the kernel does not answer "protocol unreachable".
//!
//! Previous sysctl values are saved in `/run/rvs/realserver-<vip>-net<netns inode>.state`;
//! teardown restores them (or the kernel defaults if the file is gone).

use crate::sys;
use rvs_wire::{ethertype, gre, gue, ip_proto, ipv4, ipv6, udp};
use std::io;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Name of the TUN device of the user-space decapsulator.
pub const DECAP_DEV: &str = "rvsdecap0";
/// nftables table used on real servers.
pub const RS_TABLE: &str = "rvs-rs";
/// `ETH_P_ALL`: the decapsulator's socket sees IPv4 and IPv6.
const ETH_P_ALL: u16 = 0x0003;

fn run(args: &[&str]) -> io::Result<String> {
    let o = Command::new(args[0]).args(&args[1..]).output()?;
    if o.status.success() {
        Ok(String::from_utf8_lossy(&o.stdout).into_owned())
    } else {
        Err(io::Error::other(format!(
            "{}: {}",
            args.join(" "),
            String::from_utf8_lossy(&o.stderr).trim()
        )))
    }
}

fn sysctl_path(key: &str) -> PathBuf {
    PathBuf::from("/proc/sys").join(key.replace('.', "/"))
}

fn sysctl_get(key: &str) -> Option<String> {
    std::fs::read_to_string(sysctl_path(key))
        .ok()
        .map(|s| s.trim().to_string())
}

fn sysctl_set(key: &str, v: &str) -> io::Result<()> {
    std::fs::write(sysctl_path(key), v)
}

fn state_file(vip: &IpAddr) -> PathBuf {
    // Keyed by network namespace too: /run is shared by every namespace of
    // the host (e.g. a lab's real servers), their saved settings are not.
    let ns = std::fs::read_link("/proc/self/ns/net")
        .ok()
        .and_then(|p| {
            let s = p.to_string_lossy().into_owned();
            s.split(['[', ']']).nth(1).map(str::to_string)
        })
        .unwrap_or_else(|| "0".into());
    PathBuf::from(format!("/run/rvs/realserver-{vip}-net{ns}.state"))
}

fn sysctl_keys(tun_dev: Option<&str>) -> Vec<(String, &'static str)> {
    let mut v = Vec::new();
    for i in ["all", "default", "lo"] {
        v.push((format!("net.ipv4.conf.{i}.arp_ignore"), "1"));
        v.push((format!("net.ipv4.conf.{i}.arp_announce"), "2"));
    }
    if let Some(d) = tun_dev {
        v.push(("net.ipv4.conf.all.rp_filter".to_string(), "0"));
        v.push((format!("net.ipv4.conf.{d}.rp_filter"), "0"));
    }
    v
}

fn kernel_has_ipip() -> bool {
    std::path::Path::new("/sys/module/ipip").exists() || run(&["modprobe", "-q", "ipip"]).is_ok()
}

fn has_addr(dev: &str, vip: &IpAddr) -> bool {
    run(&["ip", "-o", "addr", "show", "dev", dev])
        .map(|s| {
            s.split_whitespace()
                .any(|w| w.split('/').next() == Some(&vip.to_string()))
        })
        .unwrap_or(false)
}

/// The interface of the default route (else the first non-loopback one).
pub fn default_interface() -> Option<String> {
    let t = std::fs::read_to_string("/proc/net/route").ok()?;
    for line in t.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() > 2 && f[1] == "00000000" {
            return Some(f[0].to_string());
        }
    }
    t.lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .find(|n| *n != "lo")
        .map(str::to_string)
}

/// What [`realserver_setup`] did; keep it alive while the user-space
/// decapsulator must run.
pub struct RealServer {
    /// The VIP.
    pub vip: IpAddr,
    /// The user-space decapsulator, if one was started.
    pub decap: Option<Decap>,
    /// `true` if the kernel's `tunl0` is used for TUN.
    pub kernel_tunnel: bool,
}

/// Configure this host as a real server for `vip` (DR; with `tun`, also
/// TUN). Idempotent. With `tun` on a kernel without `ipip`, starts a
/// [`Decap`] on the default-route interface (drop the returned value, or
/// call [`realserver_teardown`], to stop it).
pub fn realserver_setup(vip: IpAddr, tun: bool) -> io::Result<RealServer> {
    realserver_setup_on(vip, tun, None, None)
}

/// [`realserver_setup`] with an explicit interface for the decapsulator
/// and, optionally, the UDP port on which it also decapsulates GUE.
pub fn realserver_setup_on(
    vip: IpAddr,
    tun: bool,
    interface: Option<&str>,
    gue_port: Option<u16>,
) -> io::Result<RealServer> {
    let kernel_tunnel = tun && vip.is_ipv4() && kernel_has_ipip();
    let mut decap = None;
    if tun && !kernel_tunnel {
        let ifc = match interface {
            Some(i) => i.to_string(),
            None => default_interface()
                .ok_or_else(|| io::Error::other("no interface for the decapsulator"))?,
        };
        decap = Some(Decap::start(&ifc, DECAP_DEV, gue_port)?);
    }
    let tun_dev = if kernel_tunnel {
        Some("tunl0")
    } else if decap.is_some() {
        Some(DECAP_DEV)
    } else {
        None
    };
    // Save the previous sysctl values once (a second setup keeps the first).
    let keys = sysctl_keys(tun_dev);
    let sf = state_file(&vip);
    // A saved state is ours only if the VIP is still set up here; otherwise
    // it is left over from a namespace that went away (inode numbers are
    // reused), so save the current values afresh.
    if !sf.exists() || !has_addr("lo", &vip) {
        let mut s = String::new();
        for (k, _) in &keys {
            if let Some(v) = sysctl_get(k) {
                s += &format!("{k}={v}\n");
            }
        }
        let _ = std::fs::create_dir_all("/run/rvs");
        let _ = std::fs::write(&sf, s);
    }
    match vip {
        IpAddr::V4(_) => {
            if !has_addr("lo", &vip) {
                run(&[
                    "ip",
                    "addr",
                    "add",
                    &format!("{vip}/32"),
                    "dev",
                    "lo",
                    "label",
                    "lo:1",
                ])?;
            }
            run(&["ip", "route", "replace", &format!("{vip}/32"), "dev", "lo"])?;
        }
        IpAddr::V6(_) => {
            if !has_addr("lo", &vip) {
                run(&[
                    "ip",
                    "-6",
                    "addr",
                    "add",
                    &format!("{vip}/128"),
                    "dev",
                    "lo",
                ])?;
            }
        }
    }
    if kernel_tunnel {
        run(&["ip", "link", "set", "tunl0", "up"])?;
    }
    for (k, v) in &keys {
        sysctl_set(k, v)?;
    }
    Ok(RealServer {
        vip,
        decap,
        kernel_tunnel,
    })
}

/// Undo [`realserver_setup`]: VIP and route removed, sysctls restored,
/// `inet rvs-rs` table deleted (a running [`Decap`] in this process stops
/// when dropped; its TUN device disappears with it).
pub fn realserver_teardown(vip: IpAddr) -> io::Result<()> {
    if has_addr("lo", &vip) {
        let plen = if vip.is_ipv4() { 32 } else { 128 };
        run(&["ip", "addr", "del", &format!("{vip}/{plen}"), "dev", "lo"])?;
    }
    if vip.is_ipv4() {
        let _ = run(&["ip", "route", "del", &format!("{vip}/32"), "dev", "lo"]);
    }
    let sf = state_file(&vip);
    match std::fs::read_to_string(&sf) {
        Ok(s) => {
            for line in s.lines() {
                if let Some((k, v)) = line.split_once('=') {
                    let _ = sysctl_set(k, v);
                }
            }
            let _ = std::fs::remove_file(&sf);
        }
        Err(_) => {
            for (k, _) in sysctl_keys(None) {
                let _ = sysctl_set(&k, "0");
            }
        }
    }
    let _ = nft_rs(false, None);
    Ok(())
}

fn nft_rs(install: bool, gue_port: Option<u16>) -> io::Result<()> {
    let mut s = format!("table inet {RS_TABLE} {{}}\ndelete table inet {RS_TABLE}\n");
    if install {
        s += &format!(
            "table inet {RS_TABLE} {{\n  chain prerouting {{\n    type filter hook prerouting priority -300; policy accept;\n    meta l4proto {{ 4, 41, 47 }} fib daddr type local drop\n"
        );
        if let Some(p) = gue_port {
            s += &format!("    udp dport {p} fib daddr type local drop\n");
        }
        s += "  }\n}\n";
    }
    let mut c = Command::new("nft")
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    if let Some(mut i) = c.stdin.take() {
        use std::io::Write;
        i.write_all(s.as_bytes())?;
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

/// Extract the inner IP packet of an IPIP, GRE or GUE (on `gue_port`)
/// packet with an outer IPv4 or IPv6 header (IPv4 or IPv6 inner). `None`
/// if `pkt` is not one of those (or is a fragment).
pub fn decapsulate(pkt: &[u8], gue_port: Option<u16>) -> Option<&[u8]> {
    let (proto, payload) = match pkt.first().map(|b| b >> 4) {
        Some(4) => {
            let ip = ipv4::Packet::new_checked(pkt).ok()?;
            if !ip.verify_checksum() || ip.is_fragment() {
                return None;
            }
            let hl = ip.header_len();
            let end = usize::from(ip.total_len());
            (ip.protocol(), pkt.get(hl..end)?)
        }
        Some(6) => {
            let ip = ipv6::Packet::new_checked(pkt).ok()?;
            let up = ip.upper_layer().ok()?;
            if up.fragment.is_some() {
                return None;
            }
            let end = ipv6::HEADER_LEN + usize::from(ip.payload_len());
            (up.protocol, pkt.get(up.offset..end)?)
        }
        _ => return None,
    };
    let inner = match proto {
        ip_proto::IPIP | ip_proto::IPV6 => payload,
        ip_proto::GRE => {
            let g = gre::Packet::new_checked(payload).ok()?;
            let r = gre::Repr::parse(&g).ok()?;
            if r.protocol != ethertype::IPV4 && r.protocol != ethertype::IPV6 {
                return None;
            }
            payload.get(g.header_len()..)?
        }
        ip_proto::UDP => {
            let u = udp::Packet::new_checked(payload).ok()?;
            if Some(u.dst_port()) != gue_port {
                return None;
            }
            let ulen = usize::from(u.len());
            let up = payload.get(udp::HEADER_LEN..ulen)?;
            let g = gue::Packet::new_checked(up).ok()?;
            if g.is_direct_ip() {
                up
            } else {
                gue::Repr::parse(&g).ok()?;
                up.get(g.header_len()..)?
            }
        }
        _ => return None,
    };
    let want = match proto {
        ip_proto::IPIP => Some(4),
        ip_proto::IPV6 => Some(6),
        _ => None,
    };
    let v = inner.first().map(|b| b >> 4)?;
    ((v == 4 || v == 6) && want.is_none_or(|w| w == v)).then_some(inner)
}

/// The user-space tunnel decapsulator (AF_PACKET in, TUN out). Stops,
/// removes its TUN device and its nftables table when dropped.
pub struct Decap {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    packets: Arc<AtomicU64>,
}

impl Decap {
    /// Start on `interface`, creating TUN device `dev` (up, rp_filter 0).
    /// GUE is decapsulated when `gue_port` is given.
    pub fn start(interface: &str, dev: &str, gue_port: Option<u16>) -> io::Result<Decap> {
        let ifindex = sys::if_index(interface)?;
        // Every ethertype: outer IPv4 and IPv6 both carry tunnels.
        let sock = sys::DgramSocket::open(ifindex, ETH_P_ALL, Duration::from_millis(100))?;
        let tun = sys::Tun::create(dev)?;
        run(&["ip", "link", "set", "dev", dev, "up"])?;
        let _ = sysctl_set(&format!("net.ipv4.conf.{dev}.rp_filter"), "0");
        let _ = sysctl_set("net.ipv4.conf.all.rp_filter", "0");
        nft_rs(true, gue_port)?;
        let stop = Arc::new(AtomicBool::new(false));
        let packets = Arc::new(AtomicU64::new(0));
        let (s2, p2) = (stop.clone(), packets.clone());
        let thread = std::thread::Builder::new()
            .name("rvs-decap".into())
            .spawn(move || {
                let mut buf = vec![0u8; 65536];
                while !s2.load(Ordering::Relaxed) {
                    match sock.recv(&mut buf) {
                        Ok(Some((n, 0))) => {
                            if let Some(inner) = decapsulate(&buf[..n], gue_port) {
                                if tun.write(inner).is_ok() {
                                    p2.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                        }
                        Ok(_) => {}
                        Err(e) => {
                            tracing::warn!(error = %e, "decap: receive failed");
                            std::thread::sleep(Duration::from_millis(100));
                        }
                    }
                }
            })?;
        Ok(Decap {
            stop,
            thread: Some(thread),
            packets,
        })
    }

    /// Packets decapsulated so far.
    pub fn packets(&self) -> u64 {
        self.packets.load(Ordering::Relaxed)
    }

    /// Run until `stop` is set (for a foreground `rvsadm realserver setup
    /// --tun` process).
    pub fn wait_for(&self, stop: &AtomicBool) {
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Decap {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = nft_rs(false, None);
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::fwd;
    use rvs_core::{TunCsum, TunType};
    use std::net::Ipv4Addr;

    fn inner() -> Vec<u8> {
        let mut b = vec![0u8; 28];
        ipv4::Repr {
            src_addr: Ipv4Addr::new(198, 18, 0, 2),
            dst_addr: Ipv4Addr::new(198, 18, 0, 100),
            protocol: 17,
            payload_len: 8,
            ttl: 64,
            dscp_ecn: 0,
            ident: 1,
            dont_frag: false,
            more_frags: false,
            frag_offset: 0,
            options: ipv4::Options::EMPTY,
        }
        .emit(&mut ipv4::Packet::new_unchecked(&mut b[..]));
        b
    }

    #[test]
    fn decap_all_kinds() {
        let mut frame = vec![0u8; 14];
        frame[12] = 8;
        frame.extend(inner());
        for (kind, port) in [(TunType::Ipip, 0), (TunType::Gre, 0), (TunType::Gue, 6080)] {
            let p = fwd::TunParams {
                kind,
                port,
                csum: TunCsum::Csum,
                src: Ipv4Addr::new(198, 18, 0, 11),
                dst: Ipv4Addr::new(198, 18, 0, 21),
                ident: 3,
                pmtu_disc: true,
                mtu: 1500,
            };
            let mut out = Vec::new();
            fwd::tun_encap(
                &frame,
                14,
                28,
                &p,
                1,
                (Default::default(), Default::default()),
                &mut out,
            )
            .unwrap();
            let got = decapsulate(&out[14..], Some(6080)).expect("decapsulated");
            let ip = ipv4::Packet::new_checked(got).unwrap();
            assert_eq!(ip.dst_addr(), Ipv4Addr::new(198, 18, 0, 100));
            assert_eq!(ip.ttl(), 63);
            assert!(ip.verify_checksum());
        }
        assert!(decapsulate(&inner(), None).is_none());
        // IPv6 outer: ip6ip6 and IPv4 in IPv6; the next header must match
        // the inner version; fragments are not decapsulated.
        let mut outer6 = vec![0u8; 40];
        ipv6::Repr {
            src_addr: "2001:2:0:1::11".parse().unwrap(),
            dst_addr: "2001:2:0:1::21".parse().unwrap(),
            next_header: ip_proto::IPIP,
            payload_len: 28,
            hop_limit: 63,
            traffic_class: 0,
            flow_label: 0,
        }
        .emit(&mut ipv6::Packet::new_unchecked(&mut outer6[..]));
        outer6.extend(inner());
        assert_eq!(decapsulate(&outer6, None), Some(&inner()[..]));
        outer6[6] = ip_proto::IPV6;
        assert_eq!(decapsulate(&outer6, None), None);
        outer6[6] = ip_proto::FRAGMENT;
        assert_eq!(decapsulate(&outer6, None), None);
        for n in 0..outer6.len() {
            let _ = decapsulate(&outer6[..n], None);
        }
        assert!(decapsulate(&[0x45, 0, 0], None).is_none());
    }
}
