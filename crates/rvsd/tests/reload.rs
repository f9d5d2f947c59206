//! `rvsd -f keepalived.conf` on loopback, then SIGHUP: a reload that adds a
//! second service and changes a weight keeps the open connection and the
//! counters of the service that stayed. A reload of a broken file keeps the
//! running configuration.

mod common;

use common::*;
use rvs_api::{Command, Protocol, Reply, ServiceInfo, ServiceKey};
use std::net::SocketAddr;
use std::time::Duration;

fn conf(port: u16, port2: Option<u16>, weight_b: u32) -> String {
    let mut s = format!(
        "global_defs {{
    router_id reload_test
}}
virtual_server 127.0.0.1 {port} {{
    lb_algo wrr
    lb_kind NAT
    protocol TCP
    real_server 127.0.0.2 {port} {{
        weight 1
    }}
    real_server 127.0.0.3 {port} {{
        weight {weight_b}
    }}
}}
"
    );
    if let Some(p2) = port2 {
        s += &format!(
            "virtual_server 127.0.0.1 {p2} {{
    lb_algo rr
    lb_kind NAT
    protocol TCP
    real_server 127.0.0.2 {port} {{
        weight 1
    }}
}}
"
        );
    }
    s
}

fn svc(d: &Rvsd, port: u16) -> Option<ServiceInfo> {
    match d.client().call(&Command::GetService {
        key: ServiceKey::Addr {
            protocol: Protocol::Tcp,
            addr: "127.0.0.1".parse().unwrap(),
            port,
        },
    }) {
        Ok(Reply::Service(s)) => Some(s),
        _ => None,
    }
}

fn hup(d: &Rvsd) {
    // SAFETY: kill(2) on our own child.
    unsafe {
        libc::kill(d.child.id() as i32, libc::SIGHUP);
    }
}

#[test]
fn sighup_applies_only_the_difference() {
    let port = free_port();
    let port2 = free_port();
    let _a = Backend::start(&format!("127.0.0.2:{port}"), "a");
    let _b = Backend::start(&format!("127.0.0.3:{port}"), "b");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keepalived.conf");
    std::fs::write(&path, conf(port, None, 1)).unwrap();
    let d = Rvsd::start(&["-f", path.to_str().unwrap()]);
    let vip = SocketAddr::new("127.0.0.1".parse().unwrap(), port);
    assert!(
        wait_for(Duration::from_secs(5), || get(vip)).is_some(),
        "{}",
        d.log()
    );

    let mut held = KeepAlive::open(vip);
    let first = held.get().expect("request on the held connection");
    for _ in 0..3 {
        assert!(get(vip).is_some());
    }
    let before = svc(&d, port).expect("service");
    assert_eq!(before.stats.conns, 5);

    // Reload: add a second service, change b's weight.
    std::fs::write(&path, conf(port, Some(port2), 3)).unwrap();
    hup(&d);
    let applied = wait_for(Duration::from_secs(5), || {
        let s = svc(&d, port)?;
        let wb = s
            .dests
            .iter()
            .find(|x| x.spec.addr.to_string() == "127.0.0.3")?
            .spec
            .weight;
        (wb == 3 && svc(&d, port2).is_some()).then_some(s)
    });
    let after = applied.unwrap_or_else(|| panic!("reload not applied: {}", d.log()));
    // Counters of the untouched service survive; the open connection too.
    assert!(after.stats.conns >= before.stats.conns);
    assert!(after.stats.inbytes >= before.stats.inbytes);
    assert_eq!(held.get().as_deref(), Some(first.as_str()));
    let vip2 = SocketAddr::new("127.0.0.1".parse().unwrap(), port2);
    assert_eq!(
        wait_for(Duration::from_secs(5), || get(vip2)).as_deref(),
        Some("a")
    );

    // A broken file keeps the running configuration.
    std::fs::write(&path, "virtual_server 127.0.0.1 {{{ broken\n").unwrap();
    hup(&d);
    let logged = wait_for(Duration::from_secs(5), || {
        d.log()
            .contains("keeping the running configuration")
            .then_some(())
    });
    assert!(logged.is_some(), "{}", d.log());
    assert!(svc(&d, port).is_some() && svc(&d, port2).is_some());
    assert_eq!(held.get().as_deref(), Some(first.as_str()));
}
