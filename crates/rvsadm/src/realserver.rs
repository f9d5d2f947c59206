//! `rvsadm realserver setup|teardown --vip VIP [--tun]`: what the course does
//! by hand on each nginx host for LVS-DR — the VIP on `lo` as a host address
//! (label `lo:1`), `arp_ignore=1` / `arp_announce=2` on all/default/lo so the
//! real server never answers ARP for the VIP, and a host route to the VIP
//! via `lo`. `teardown` undoes it (the sysctls go back to 0).
//!
//! Runs locally (no rvsd needed), as root.

use std::io::Write;
use std::net::IpAddr;

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

/// Execute; messages go to `out`/`err`; returns the exit status. With
/// `--tun` on a kernel without the ipip module, the user-space
/// decapsulator runs in the foreground until SIGINT/SIGTERM, then the real
/// server is torn down.
pub fn run(a: &RealServerArgs, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    if !a.setup {
        return match rvs_packet::realserver_teardown(a.vip) {
            Ok(()) => {
                let _ = writeln!(out, "VIP {} removed from lo, ARP settings restored", a.vip);
                0
            }
            Err(e) => {
                let _ = writeln!(err, "rvsadm: realserver teardown: {e} (are you root?)");
                1
            }
        };
    }
    let rs = match rvs_packet::realserver::realserver_setup_on(a.vip, a.tun, None, None) {
        Ok(rs) => rs,
        Err(e) => {
            let _ = writeln!(err, "rvsadm: realserver setup: {e} (are you root?)");
            return 1;
        }
    };
    let _ = writeln!(
        out,
        "real server ready for LVS-{}: VIP {} on lo, arp_ignore=1 arp_announce=2{}",
        if a.tun { "TUN" } else { "DR" },
        a.vip,
        if rs.kernel_tunnel { ", tunl0 up" } else { "" }
    );
    if let Some(d) = &rs.decap {
        let _ = writeln!(
            out,
            "user-space IPIP/GUE/GRE decapsulation running (the kernel has no ipip module); Ctrl-C stops it"
        );
        let _ = out.flush();
        // SAFETY: the handler only stores to an atomic.
        unsafe {
            libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
            libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
        }
        d.wait_for(&STOP);
        let _ = writeln!(out, "{} packets decapsulated", d.packets());
        drop(rs);
        let _ = rvs_packet::realserver_teardown(a.vip);
    }
    0
}

static STOP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, std::sync::atomic::Ordering::Relaxed);
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
