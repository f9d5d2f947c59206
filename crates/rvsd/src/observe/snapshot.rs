//! One consistent read of everything the metrics and the dashboard show:
//! the IPVS table (services, destinations, counters, rates), the
//! health-check and VRRP status views, data-plane drops and reload state.
//!
//! The table lock is held only while the service list is copied; the status
//! views are read through the same command handler `rvsadm` uses. The
//! health-check and VRRP views are JSON documents whose shape belongs to
//! other crates, so they are read defensively: a missing or renamed field
//! makes a value disappear, never a scrape fail.

use crate::convert::svc_name;
use crate::state::{Daemon, Event};
use rvs_api::{Command, Family, Reply, ServiceInfo, ServiceKey};
use serde_json::{Map, Value};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;

/// Everything observable at one instant.
pub(crate) struct Snapshot {
    pub services: Vec<ServiceInfo>,
    /// Health-check view (`rvsadm --checks --json` data).
    pub checks: Value,
    /// VRRP view (`rvsadm --vrrp --json` data).
    pub vrrp: Value,
    /// Data-plane drops by reason.
    pub drops: Vec<(&'static str, u64)>,
    pub reloads: u64,
    pub last_reload_ok: bool,
    pub engine: &'static str,
    /// Running sync daemons with their counters.
    pub sync: Vec<rvs_api::DaemonInfo>,
}

impl Snapshot {
    pub fn take(d: &Daemon) -> Snapshot {
        let services = match d.handle(Command::ListServices) {
            Ok(Reply::Services(v)) => v,
            _ => Vec::new(),
        };
        let status = |c: Command| match d.handle(c) {
            Ok(Reply::Status(r)) => r.data,
            _ => Value::Null,
        };
        Snapshot {
            services,
            checks: status(Command::ListChecks),
            vrrp: status(Command::ListVrrp),
            drops: d.shared.drops.snapshot(),
            reloads: d.reloads.load(Ordering::Relaxed),
            last_reload_ok: d.last_reload_ok.load(Ordering::Relaxed),
            engine: d.engine.name(),
            sync: d.sync.list(),
        }
    }

    /// Health-check status of the virtual server named like `key`.
    pub fn health_of(&self, key: &ServiceKey) -> Option<&Map<String, Value>> {
        let name = svc_name(key);
        check_servers(&self.checks).find(|v| str_field(v, "name") == Some(name.as_str()))
    }
}

/// Prometheus labels of a service: `proto`/`vip`/`port` for address
/// services, `fwmark`/`family` for firewall-mark services.
pub(crate) fn svc_labels(key: &ServiceKey) -> Vec<(&'static str, String)> {
    match key {
        ServiceKey::Addr {
            protocol,
            addr,
            port,
        } => vec![
            ("proto", protocol.name().to_ascii_lowercase()),
            ("vip", addr.to_string()),
            ("port", port.to_string()),
        ],
        ServiceKey::Fwmark { mark, family } => vec![
            ("fwmark", mark.to_string()),
            (
                "family",
                match family {
                    Family::Inet => "ipv4",
                    Family::Inet6 => "ipv6",
                }
                .to_string(),
            ),
        ],
    }
}

/// How ipvsadm shows a service: `TCP 127.0.0.1:8080`, `FWM 1`.
pub(crate) fn svc_display(key: &ServiceKey) -> String {
    match key {
        ServiceKey::Addr {
            protocol,
            addr,
            port,
        } => format!("{} {}", protocol.name(), SocketAddr::new(*addr, *port)),
        ServiceKey::Fwmark { mark, family } => match family {
            Family::Inet => format!("FWM {mark}"),
            Family::Inet6 => format!("FWM {mark} IPv6"),
        },
    }
}

/// The virtual servers of the health-check view (a JSON array of objects).
pub(crate) fn check_servers(v: &Value) -> impl Iterator<Item = &Map<String, Value>> {
    objects(v, "virtual_servers").map(|(_, m)| m)
}

/// The real servers of one health-check virtual server.
pub(crate) fn real_servers(vs: &Map<String, Value>) -> impl Iterator<Item = &Map<String, Value>> {
    vs.get("real_servers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object)
}

/// The checkers of one health-check real server.
pub(crate) fn checkers(rs: &Map<String, Value>) -> impl Iterator<Item = &Map<String, Value>> {
    rs.get("checkers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object)
}

type Objects<'a> = Box<dyn Iterator<Item = (Option<&'a str>, &'a Map<String, Value>)> + 'a>;

/// Objects of a status view: a top-level array, or an array under `field`
/// (or `instances`), or an object of objects keyed by name (the key is
/// returned with each object).
fn objects<'a>(v: &'a Value, field: &str) -> Objects<'a> {
    match v {
        Value::Array(a) => Box::new(a.iter().filter_map(|v| Some((None, v.as_object()?)))),
        Value::Object(m) => {
            if let Some(a) = m
                .get(field)
                .or_else(|| m.get("instances"))
                .and_then(Value::as_array)
            {
                Box::new(a.iter().filter_map(|v| Some((None, v.as_object()?))))
            } else {
                Box::new(
                    m.iter()
                        .filter_map(|(k, v)| Some((Some(k.as_str()), v.as_object()?))),
                )
            }
        }
        _ => Box::new(std::iter::empty()),
    }
}

pub(crate) fn str_field<'a>(m: &'a Map<String, Value>, k: &str) -> Option<&'a str> {
    m.get(k).and_then(Value::as_str)
}

pub(crate) fn bool_field(m: &Map<String, Value>, k: &str) -> Option<bool> {
    m.get(k).and_then(Value::as_bool)
}

pub(crate) fn u64_field(m: &Map<String, Value>, k: &str) -> Option<u64> {
    let v = m.get(k)?;
    v.as_u64()
        .or_else(|| v.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
}

/// One VRRP instance, normalised from whatever the VRRP view provides.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct VrrpInstance {
    pub name: String,
    /// Upper-case state (`MASTER`, `BACKUP`, `FAULT`, ...).
    pub state: String,
    pub vrid: Option<u64>,
    pub interface: Option<String>,
    /// Effective priority.
    pub priority: Option<u64>,
    /// Configured priority.
    pub base_priority: Option<u64>,
    pub master_addr: Option<String>,
    pub master_priority: Option<u64>,
    pub last_transition_unix: Option<f64>,
    /// Every numeric counter, by name.
    pub counters: Vec<(String, u64)>,
}

impl VrrpInstance {
    pub fn counter(&self, name: &str) -> Option<u64> {
        self.counters
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| *v)
    }
}

/// The VRRP instances of the VRRP view.
pub(crate) fn vrrp_instances(v: &Value) -> Vec<VrrpInstance> {
    let mut out = Vec::new();
    for (i, (key, m)) in objects(v, "instances").enumerate() {
        let name = str_field(m, "name")
            .or_else(|| str_field(m, "iname"))
            .or(key)
            .map(str::to_string)
            .unwrap_or_else(|| format!("instance{i}"));
        let state = match m.get("state") {
            Some(Value::String(s)) => s.to_ascii_uppercase(),
            Some(Value::Object(o)) => o.keys().next().cloned().unwrap_or_default(),
            Some(Value::Number(n)) => match n.as_u64() {
                Some(0) => "INIT".into(),
                Some(1) => "BACKUP".into(),
                Some(2) => "MASTER".into(),
                Some(3) => "FAULT".into(),
                Some(98) => "STOP".into(),
                _ => n.to_string(),
            },
            _ => "UNKNOWN".into(),
        };
        let mut counters: Vec<(String, u64)> = m
            .get("counters")
            .or_else(|| m.get("stats"))
            .and_then(Value::as_object)
            .map(|c| {
                c.iter()
                    .filter_map(|(k, v)| v.as_u64().map(|v| (k.clone(), v)))
                    .collect()
            })
            .unwrap_or_default();
        counters.sort();
        out.push(VrrpInstance {
            name,
            state,
            vrid: u64_field(m, "vrid").or_else(|| u64_field(m, "virtual_router_id")),
            interface: str_field(m, "interface").map(str::to_string),
            priority: u64_field(m, "effective_priority").or_else(|| u64_field(m, "priority")),
            base_priority: u64_field(m, "base_priority").or_else(|| u64_field(m, "priority")),
            master_addr: m.get("master_addr").and_then(|v| match v {
                Value::String(s) => Some(s.clone()),
                Value::Null => None,
                v => Some(v.to_string()),
            }),
            master_priority: u64_field(m, "master_priority"),
            last_transition_unix: m.get("last_transition_unix").and_then(Value::as_f64),
            counters,
        });
    }
    out
}

/// The most recent `n` events, newest first.
pub(crate) fn recent_events(d: &Daemon, n: usize) -> Vec<Event> {
    d.events.lock().iter().rev().take(n).cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn vrrp_shapes_are_read_defensively() {
        let arr = json!([{
            "name": "VI_1", "interface": "eth0", "vrid": 51, "state": "MASTER",
            "base_priority": 100, "effective_priority": 110,
            "master_addr": "10.0.0.1", "master_priority": 110,
            "counters": {"adverts_rx": 3, "adverts_tx": 9, "bad_ttl": 1}
        }]);
        let v = vrrp_instances(&arr);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].state, "MASTER");
        assert_eq!(v[0].priority, Some(110));
        assert_eq!(v[0].base_priority, Some(100));
        assert_eq!(v[0].counter("adverts_tx"), Some(9));
        let wrapped = json!({"instances": [{"name": "x", "state": 1, "priority": 50}]});
        let v = vrrp_instances(&wrapped);
        assert_eq!(v[0].state, "BACKUP");
        assert_eq!(v[0].priority, Some(50));
        assert!(vrrp_instances(&json!(null)).is_empty());
        assert!(vrrp_instances(&json!("text")).is_empty());
        let keyed = json!({"VI_2": {"state": "fault"}});
        let v = vrrp_instances(&keyed);
        assert_eq!(v[0].state, "FAULT");
        assert_eq!(v[0].name, "VI_2");
    }

    #[test]
    fn labels_of_fwmark_and_address_services() {
        let k = ServiceKey::Fwmark {
            mark: 7,
            family: Family::Inet6,
        };
        assert_eq!(
            svc_labels(&k),
            vec![("fwmark", "7".to_string()), ("family", "ipv6".to_string())]
        );
        assert_eq!(svc_display(&k), "FWM 7 IPv6");
        let k = ServiceKey::Addr {
            protocol: rvs_api::Protocol::Udp,
            addr: "::1".parse().unwrap(),
            port: 53,
        };
        assert_eq!(svc_labels(&k)[0], ("proto", "udp".to_string()));
        assert_eq!(svc_display(&k), "UDP [::1]:53");
    }
}
