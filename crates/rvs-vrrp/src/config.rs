//! Instance configuration: the subset of keepalived's `vrrp_instance` that the
//! state machine and the shell use. The lead's config crate maps parsed
//! keepalived.conf blocks onto these structs.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use crate::packet::Version;

/// `scope` of a `virtual_ipaddress` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum Scope {
    /// global (default).
    #[default]
    Global,
    /// site.
    Site,
    /// link.
    Link,
    /// host.
    Host,
    /// nowhere.
    Nowhere,
}

/// One `virtual_ipaddress` line: `ADDR[/MASK] [dev IF] [scope S] [label L]`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VipConfig {
    /// Address.
    pub addr: IpAddr,
    /// Prefix length (keepalived default /32, /128).
    pub prefix_len: u8,
    /// `dev`; `None` = the instance's interface.
    pub dev: Option<String>,
    /// `label`, e.g. `eth0:1`.
    pub label: Option<String>,
    /// `scope`.
    pub scope: Scope,
}

impl VipConfig {
    /// A host VIP (/32 or /128) on the instance's interface.
    pub fn new(addr: IpAddr) -> VipConfig {
        VipConfig {
            addr,
            prefix_len: if addr.is_ipv4() { 32 } else { 128 },
            dev: None,
            label: None,
            scope: Scope::Global,
        }
    }

    /// Parse keepalived's `virtual_ipaddress` line syntax (the subset rvs
    /// supports: `ADDR[/MASK] [dev IF] [scope S] [label L] [brd X]`; unknown
    /// options are skipped with their value).
    pub fn parse(line: &str) -> Result<VipConfig, String> {
        let mut it = line.split_whitespace();
        let first = it.next().ok_or("empty virtual_ipaddress")?;
        let (a, p) = match first.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (first, None),
        };
        let addr: IpAddr = a.parse().map_err(|_| format!("invalid address '{a}'"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix_len = match p {
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|&l| l <= max)
                .ok_or(format!("invalid prefix '{p}'"))?,
            None => max,
        };
        let mut v = VipConfig {
            addr,
            prefix_len,
            dev: None,
            label: None,
            scope: Scope::Global,
        };
        while let Some(k) = it.next() {
            match k {
                "dev" => v.dev = it.next().map(str::to_owned),
                "label" => v.label = it.next().map(str::to_owned),
                "scope" => {
                    v.scope = match it.next() {
                        Some("global") => Scope::Global,
                        Some("site") => Scope::Site,
                        Some("link") => Scope::Link,
                        Some("host") => Scope::Host,
                        Some("nowhere") => Scope::Nowhere,
                        other => return Err(format!("invalid scope {other:?}")),
                    }
                }
                "home" | "-nodad" | "nodad" | "mngtmpaddr" | "noprefixroute" | "autojoin"
                | "no_track" | "use_vmac" => {}
                _ => {
                    let _ = it.next();
                }
            }
        }
        Ok(v)
    }
}

/// A tracked object (track_interface / track_script / track_file).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TrackConfig {
    /// Name used with [`crate::Instance::set_track`].
    pub name: String,
    /// Weight (−253..253); 0 = FAULT while down.
    pub weight: i32,
    /// `reverse`: the weight applies in the opposite sense.
    pub reverse: bool,
    /// State before the first report.
    pub initially_up: bool,
}

/// Notify scripts (`notify_master` ... and `notify`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NotifyScripts {
    /// notify_master.
    pub master: Option<String>,
    /// notify_backup.
    pub backup: Option<String>,
    /// notify_fault.
    pub fault: Option<String>,
    /// notify_stop.
    pub stop: Option<String>,
    /// notify: called with `INSTANCE NAME STATE PRIORITY`.
    pub notify: Option<String>,
}

/// Wanted initial state (`state MASTER|BACKUP`). As in keepalived 2.2.7 it
/// does not make a non-owner start as MASTER; it only affects validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum InitialState {
    /// state MASTER.
    Master,
    /// state BACKUP (default).
    #[default]
    Backup,
}

/// One `vrrp_instance`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct InstanceConfig {
    /// Instance name (`VI_1`).
    pub name: String,
    /// Interface.
    pub interface: String,
    /// virtual_router_id.
    pub vrid: u8,
    /// version 2|3.
    pub version: Version,
    /// Base priority 1..255.
    pub priority: u8,
    /// advert_int (v2 whole seconds, v3 centiseconds).
    pub advert_int: Duration,
    /// Source address of adverts and tie-breaker (unicast_src_ip /
    /// mcast_src_ip / the interface's primary address; the shell fills it in
    /// when unspecified).
    pub local_addr: IpAddr,
    /// state MASTER|BACKUP.
    pub initial_state: InitialState,
    /// nopreempt.
    pub nopreempt: bool,
    /// preempt_delay.
    pub preempt_delay: Duration,
    /// authentication { auth_type PASS; auth_pass X } (v2 only; 8 bytes NUL padded).
    pub auth_pass: Option<[u8; 8]>,
    /// virtual_ipaddress.
    pub vips: Vec<VipConfig>,
    /// unicast_peer (empty = multicast).
    pub unicast_peers: Vec<IpAddr>,
    /// down_timer_adverts (1..100, default 3).
    pub down_timer_adverts: u32,
    /// garp_master_delay (default 5 s; 0 = no second set).
    pub garp_master_delay: Duration,
    /// garp_master_repeat (default 5).
    pub garp_master_repeat: u32,
    /// garp_master_refresh (None = off).
    pub garp_master_refresh: Option<Duration>,
    /// garp_master_refresh_repeat (default 1).
    pub garp_master_refresh_repeat: u32,
    /// lower_prio_no_advert.
    pub lower_prio_no_advert: bool,
    /// higher_prio_send_advert.
    pub higher_prio_send_advert: bool,
    /// skip_check_adv_addr.
    pub skip_check_adv_addr: bool,
    /// Tracked objects.
    pub tracks: Vec<TrackConfig>,
    /// Notify scripts.
    pub notify: NotifyScripts,
    /// rvs extension: lifetime of installed VIPs (renewed by the master).
    /// `None` = automatic: max(3 × advert_int, 2 s) rounded up to seconds.
    /// `Some(Duration::ZERO)` = permanent (keepalived behaviour).
    pub vip_lifetime: Option<Duration>,
    /// rvs extension: start with preemption held (as with `nopreempt`)
    /// until [`Instance::set_preempt_hold`](crate::Instance::set_preempt_hold)
    /// releases it; rvsd holds an instance bound to `lvs_sync_daemon`
    /// until the connection table has been received from the peers, so a
    /// restarted master does not take the VIP back with an empty table.
    /// A BACKUP still becomes MASTER when no master is heard.
    #[serde(default)]
    pub preempt_hold: bool,
}

impl InstanceConfig {
    /// Defaults as keepalived: v2, priority 100, advert_int 1 s, preempt.
    pub fn new(name: impl Into<String>, interface: impl Into<String>, vrid: u8) -> InstanceConfig {
        InstanceConfig {
            name: name.into(),
            interface: interface.into(),
            vrid,
            version: Version::V2,
            priority: 100,
            advert_int: Duration::from_secs(1),
            local_addr: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            initial_state: InitialState::Backup,
            nopreempt: false,
            preempt_delay: Duration::ZERO,
            auth_pass: None,
            vips: Vec::new(),
            unicast_peers: Vec::new(),
            down_timer_adverts: 3,
            garp_master_delay: Duration::from_secs(5),
            garp_master_repeat: 5,
            garp_master_refresh: None,
            garp_master_refresh_repeat: 1,
            lower_prio_no_advert: false,
            higher_prio_send_advert: false,
            skip_check_adv_addr: false,
            tracks: Vec::new(),
            notify: NotifyScripts::default(),
            vip_lifetime: None,
            preempt_hold: false,
        }
    }

    /// `auth_pass` string → 8 wire bytes (first 8 characters, NUL padded).
    pub fn pass_bytes(pass: &str) -> [u8; 8] {
        let mut b = [0u8; 8];
        for (d, s) in b.iter_mut().zip(pass.as_bytes()) {
            *d = *s;
        }
        b
    }

    /// Apply keepalived's validation fix-ups (rounding, clamping, clearing
    /// incompatible options). Idempotent.
    pub fn normalized(mut self) -> InstanceConfig {
        self.priority = self.priority.max(1);
        match self.version {
            Version::V2 => {
                // "VRRPv2 advertisement interval %fs must be an integer. rounding"
                let s = self.advert_int.as_secs_f64().round().clamp(1.0, 255.0);
                self.advert_int = Duration::from_secs(s as u64);
            }
            Version::V3 => {
                self.auth_pass = None;
                let cs = (self.advert_int.as_secs_f64() * 100.0)
                    .round()
                    .clamp(1.0, 4095.0);
                self.advert_int = Duration::from_millis(cs as u64 * 10);
            }
        }
        if self.priority == 255 || self.initial_state == InitialState::Master {
            self.nopreempt = false;
        }
        if self.initial_state == InitialState::Master || self.nopreempt {
            self.preempt_delay = Duration::ZERO;
        }
        self.preempt_delay = self.preempt_delay.min(Duration::from_secs(1000));
        self.down_timer_adverts = self.down_timer_adverts.clamp(1, 100);
        self.garp_master_repeat = self.garp_master_repeat.max(1);
        self.vips.truncate(255);
        self
    }

    /// advert_int after keepalived's rounding.
    pub fn normalized_advert_int(&self) -> Duration {
        self.clone().normalized().advert_int
    }

    /// Lifetime to give installed VIPs, `None` for permanent.
    pub fn effective_vip_lifetime(&self) -> Option<Duration> {
        match self.vip_lifetime {
            Some(d) if d.is_zero() => None,
            Some(d) => Some(Duration::from_secs(d.as_secs_f64().ceil().max(1.0) as u64)),
            None => {
                let d = (self.advert_int * 3).max(Duration::from_secs(2));
                Some(Duration::from_secs(d.as_secs_f64().ceil() as u64))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vip_syntax() {
        let v = VipConfig::parse("198.18.0.100/24 dev eth0 label eth0:1 scope link").unwrap();
        assert_eq!(v.prefix_len, 24);
        assert_eq!(v.dev.as_deref(), Some("eth0"));
        assert_eq!(v.label.as_deref(), Some("eth0:1"));
        assert_eq!(v.scope, Scope::Link);
        assert_eq!(VipConfig::parse("198.18.0.100").unwrap().prefix_len, 32);
        assert_eq!(VipConfig::parse("2001:db8::1").unwrap().prefix_len, 128);
        assert!(VipConfig::parse("198.18.0.100/33").is_err());
        assert!(VipConfig::parse("nope").is_err());
    }

    #[test]
    fn normalize() {
        let mut c = InstanceConfig::new("VI_1", "eth0", 1);
        c.advert_int = Duration::from_millis(1500);
        c.nopreempt = true;
        c.priority = 255;
        let n = c.clone().normalized();
        assert_eq!(n.advert_int, Duration::from_secs(2));
        assert!(!n.nopreempt);
        c.version = Version::V3;
        c.advert_int = Duration::from_millis(15);
        c.auth_pass = Some(InstanceConfig::pass_bytes("abc"));
        let n = c.normalized();
        assert_eq!(n.advert_int, Duration::from_millis(20));
        assert_eq!(n.auth_pass, None);
        assert_eq!(InstanceConfig::pass_bytes("0123456789"), *b"01234567");
    }

    #[test]
    fn lifetime() {
        let mut c = InstanceConfig::new("VI_1", "eth0", 1);
        assert_eq!(c.effective_vip_lifetime(), Some(Duration::from_secs(3)));
        c.advert_int = Duration::from_millis(100);
        assert_eq!(c.effective_vip_lifetime(), Some(Duration::from_secs(2)));
        c.vip_lifetime = Some(Duration::ZERO);
        assert_eq!(c.effective_vip_lifetime(), None);
    }
}
