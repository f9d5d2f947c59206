//! `rvsadm realserver setup|teardown --vip VIP [--tun]`: what the course does
//! by hand on each nginx host for LVS-DR — the VIP on `lo` as a host address
//! (label `lo:1`), `arp_ignore=1` / `arp_announce=2` on all/default/lo so the
//! real server never answers ARP for the VIP, and a host route to the VIP
//! via `lo`. `teardown` undoes it (the sysctls go back to 0).
//!
//! Runs locally (no rvsd needed), as root.

use std::io::Write;
use std::net::IpAddr;
use std::process::Command;

pub const USAGE: &str = "Usage: rvsadm realserver setup|teardown --vip VIP [--tun]\n";

/// Parsed `realserver` command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RealServerArgs {
    pub setup: bool,
    pub vip: IpAddr,
    pub tun: bool,
}

/// Parse `argv[2..]` (after `realserver`).
pub fn parse(args: &[String]) -> Result<RealServerArgs, String> {
    let mut it = args.iter();
    let setup = match it.next().map(String::as_str) {
        Some("setup") => true,
        Some("teardown") => false,
        Some(o) => {
            return Err(format!(
                "unknown realserver action '{o}' (use setup or teardown)"
            ))
        }
        None => return Err("missing realserver action (use setup or teardown)".into()),
    };
    let (mut vip, mut tun) = (None, false);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--vip" => {
                let v = it
                    .next()
                    .ok_or("--vip needs an address, e.g. --vip 198.18.0.100")?;
                vip = Some(v.parse::<IpAddr>().map_err(|_| {
                    format!("invalid VIP '{v}' (expected an IPv4 or IPv6 address)")
                })?);
            }
            "--tun" => tun = true,
            o => return Err(format!("unexpected argument '{o}'")),
        }
    }
    let vip = vip.ok_or("missing --vip VIP")?;
    Ok(RealServerArgs { setup, vip, tun })
}

fn sysctl(key: &str, val: &str) -> Result<(), String> {
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    std::fs::write(&path, val).map_err(|e| format!("cannot set {key}={val}: {e} (are you root?)"))
}

fn ip(args: &[&str], ignore: &[&str]) -> Result<(), String> {
    let o = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run ip(8): {e} (install iproute2)"))?;
    if o.status.success() {
        return Ok(());
    }
    let err = String::from_utf8_lossy(&o.stderr);
    if ignore.iter().any(|i| err.contains(i)) {
        return Ok(());
    }
    Err(format!("ip {}: {}", args.join(" "), err.trim()))
}

/// Execute; messages go to `out`/`err`; returns the exit status.
pub fn run(a: &RealServerArgs, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let r = if a.setup { setup(a) } else { teardown(a) };
    match r {
        Ok(msg) => {
            let _ = write!(out, "{msg}");
            0
        }
        Err(e) => {
            let _ = writeln!(err, "rvsadm: realserver: {e}");
            1
        }
    }
}

fn setup(a: &RealServerArgs) -> Result<String, String> {
    if a.tun {
        return Err(
            "--tun (IPIP decapsulation) is not available in this build; use DR (without --tun)"
                .into(),
        );
    }
    let vip = a.vip.to_string();
    match a.vip {
        IpAddr::V4(_) => {
            ip(
                &[
                    "addr",
                    "add",
                    &format!("{vip}/32"),
                    "dev",
                    "lo",
                    "label",
                    "lo:1",
                ],
                &["File exists", "already assigned"],
            )?;
            for i in ["all", "default", "lo"] {
                sysctl(&format!("net.ipv4.conf.{i}.arp_ignore"), "1")?;
                sysctl(&format!("net.ipv4.conf.{i}.arp_announce"), "2")?;
            }
            ip(&["route", "replace", "local", &vip, "dev", "lo"], &[])?;
        }
        IpAddr::V6(_) => {
            ip(
                &[
                    "-6",
                    "addr",
                    "add",
                    &format!("{vip}/128"),
                    "dev",
                    "lo",
                    "nodad",
                ],
                &["File exists", "already assigned"],
            )?;
        }
    }
    Ok(format!(
        "real server ready for LVS-DR: VIP {vip} on lo, arp_ignore=1 arp_announce=2\n"
    ))
}

fn teardown(a: &RealServerArgs) -> Result<String, String> {
    let vip = a.vip.to_string();
    match a.vip {
        IpAddr::V4(_) => {
            ip(
                &["addr", "del", &format!("{vip}/32"), "dev", "lo"],
                &["Cannot assign", "not found"],
            )?;
            for i in ["all", "default", "lo"] {
                sysctl(&format!("net.ipv4.conf.{i}.arp_ignore"), "0")?;
                sysctl(&format!("net.ipv4.conf.{i}.arp_announce"), "0")?;
            }
        }
        IpAddr::V6(_) => {
            ip(
                &["-6", "addr", "del", &format!("{vip}/128"), "dev", "lo"],
                &["Cannot assign", "not found"],
            )?;
        }
    }
    Ok(format!("VIP {vip} removed from lo\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<RealServerArgs, String> {
        parse(&s.split_whitespace().map(String::from).collect::<Vec<_>>())
    }

    #[test]
    fn parses_and_explains_errors() {
        let a = p("setup --vip 198.18.0.100").unwrap();
        assert!(a.setup && !a.tun);
        assert!(p("teardown --vip 198.18.0.100 --tun").unwrap().tun);
        assert_eq!(
            p("").unwrap_err(),
            "missing realserver action (use setup or teardown)"
        );
        assert_eq!(
            p("start --vip 1.2.3.4").unwrap_err(),
            "unknown realserver action 'start' (use setup or teardown)"
        );
        assert_eq!(p("setup").unwrap_err(), "missing --vip VIP");
        assert!(p("setup --vip nope")
            .unwrap_err()
            .contains("invalid VIP 'nope'"));
        assert!(p("setup --vip")
            .unwrap_err()
            .contains("--vip needs an address"));
    }
}
