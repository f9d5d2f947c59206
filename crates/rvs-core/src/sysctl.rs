//! The IPVS sysctls by name (`/proc/sys/net/ipv4/vs/NAME`), for operators
//! who set them as `sysctl -w net.ipv4.vs.NAME=VALUE` on a kernel director.
//! Values are read and written in the kernel's text form (`"3 50"` for
//! sync_threshold, `0`/`1` for switches) with the kernel's range checks.

use crate::types::Sysctl;

/// Why a sysctl could not be set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SysctlError {
    #[error("unknown IPVS sysctl '{0}' (known: {known})", known = NAMES.join(", "))]
    Unknown(String),
    #[error("invalid value '{value}' for {name}: {expect}")]
    Invalid {
        name: &'static str,
        value: String,
        expect: &'static str,
    },
}

/// Every sysctl rvs keeps, in `sysctl -a` order.
pub const NAMES: &[&str] = &[
    "backup_only",
    "conn_reuse_mode",
    "expire_nodest_conn",
    "expire_quiescent_template",
    "lblc_expiration",
    "lblcr_expiration",
    "run_estimation",
    "secure_tcp",
    "sloppy_sctp",
    "sloppy_tcp",
    "sync_persist_mode",
    "sync_ports",
    "sync_refresh_period",
    "sync_retries",
    "sync_threshold",
    "sync_version",
];

impl Sysctl {
    /// The value of `name` (with or without the `net.ipv4.vs.` prefix) in
    /// the kernel's text form.
    pub fn get(&self, name: &str) -> Result<String, SysctlError> {
        let b = |v: bool| u8::from(v).to_string();
        Ok(match short(name) {
            "backup_only" => b(self.backup_only),
            "conn_reuse_mode" => self.conn_reuse_mode.to_string(),
            "expire_nodest_conn" => b(self.expire_nodest_conn),
            "expire_quiescent_template" => b(self.expire_quiescent_template),
            "lblc_expiration" => self.lblc_expiration.to_string(),
            "lblcr_expiration" => self.lblcr_expiration.to_string(),
            "run_estimation" => b(self.run_estimation),
            "secure_tcp" => b(self.secure_tcp),
            "sloppy_sctp" => b(self.sloppy_sctp),
            "sloppy_tcp" => b(self.sloppy_tcp),
            "sync_persist_mode" => b(self.sync_persist_mode),
            "sync_ports" => self.sync_ports.to_string(),
            "sync_refresh_period" => self.sync_refresh_period.to_string(),
            "sync_retries" => self.sync_retries.to_string(),
            "sync_threshold" => format!("{}\t{}", self.sync_threshold.0, self.sync_threshold.1),
            "sync_version" => self.sync_version.to_string(),
            other => return Err(SysctlError::Unknown(other.to_string())),
        })
    }

    /// Set `name` from its text form, with the kernel's checks
    /// (proc_do_sync_threshold: threshold < period unless period is 0;
    /// sync_version 0..=1; sync_retries 0..=3; sync_ports a power of two
    /// up to 255 ...).
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), SysctlError> {
        let name = short(name);
        let Some(&name) = NAMES.iter().find(|n| **n == name) else {
            return Err(SysctlError::Unknown(name.to_string()));
        };
        let v = value.trim();
        let bad = |expect| SysctlError::Invalid {
            name,
            value: value.to_string(),
            expect,
        };
        let num = |lo: u32, hi: u32, expect| {
            v.parse::<u32>()
                .ok()
                .filter(|n| (lo..=hi).contains(n))
                .ok_or_else(|| bad(expect))
        };
        let switch = || num(0, 1, "0 or 1").map(|n| n == 1);
        match name {
            "backup_only" => self.backup_only = switch()?,
            "conn_reuse_mode" => self.conn_reuse_mode = num(0, 255, "a bitmap 0..255")? as u8,
            "expire_nodest_conn" => self.expire_nodest_conn = switch()?,
            "expire_quiescent_template" => self.expire_quiescent_template = switch()?,
            "lblc_expiration" => self.lblc_expiration = num(0, u32::MAX, "seconds")?,
            "lblcr_expiration" => self.lblcr_expiration = num(0, u32::MAX, "seconds")?,
            "run_estimation" => self.run_estimation = switch()?,
            "secure_tcp" => {
                // 0..3 in the kernel; 3 is "always on"
                self.secure_tcp = num(0, 3, "0..3")? >= 2;
            }
            "sloppy_sctp" => self.sloppy_sctp = switch()?,
            "sloppy_tcp" => self.sloppy_tcp = switch()?,
            "sync_persist_mode" => self.sync_persist_mode = switch()?,
            "sync_ports" => {
                let n = num(1, 255, "a power of two from 1 to 128")?;
                if !n.is_power_of_two() {
                    return Err(bad("a power of two from 1 to 128"));
                }
                self.sync_ports = n as u8;
            }
            "sync_refresh_period" => self.sync_refresh_period = num(0, u32::MAX, "seconds")?,
            "sync_retries" => self.sync_retries = num(0, 3, "0..3")?,
            "sync_threshold" => {
                let expect = "two numbers 'THRESHOLD PERIOD' with THRESHOLD < PERIOD (or PERIOD 0)";
                let mut it = v.split_whitespace().map(str::parse::<u32>);
                let (Some(Ok(t)), Some(Ok(p)), None) = (it.next(), it.next(), it.next()) else {
                    return Err(bad(expect));
                };
                if p != 0 && t >= p {
                    return Err(bad(expect));
                }
                self.sync_threshold = (t, p);
            }
            "sync_version" => self.sync_version = num(0, 1, "0 or 1")? as u8,
            _ => return Err(SysctlError::Unknown(name.to_string())),
        }
        Ok(())
    }
}

fn short(name: &str) -> &str {
    let n = name.strip_prefix("net.ipv4.vs.").unwrap_or(name);
    n.strip_prefix("net/ipv4/vs/").unwrap_or(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_reads_and_round_trips() {
        let mut s = Sysctl::default();
        for n in NAMES {
            let v = s.get(n).expect(n);
            s.set(n, &v).expect(n);
            assert_eq!(s.get(n).unwrap(), v, "{n}");
        }
        assert_eq!(s.get("net.ipv4.vs.sync_threshold").unwrap(), "3\t50");
    }

    #[test]
    fn kernel_range_checks() {
        let mut s = Sysctl::default();
        s.set("sync_threshold", "10 20").unwrap();
        assert_eq!(s.sync_threshold, (10, 20));
        s.set("sync_threshold", "5 0").unwrap();
        assert!(s.set("sync_threshold", "20 10").is_err());
        assert!(s.set("sync_threshold", "3").is_err());
        assert!(s.set("sync_version", "2").is_err());
        assert!(s.set("sync_retries", "4").is_err());
        assert!(s.set("sync_ports", "3").is_err());
        s.set("net.ipv4.vs.backup_only", "1").unwrap();
        assert!(s.backup_only);
        let e = s.set("nope", "1").unwrap_err().to_string();
        assert!(e.contains("unknown IPVS sysctl 'nope'"), "{e}");
    }
}
