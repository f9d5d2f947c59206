//! `ha_suspend`: health checks of a virtual server whose address is not on
//! this host (the VRRP backup) are suspended; without it they run.

mod common;

use common::*;
use rvs_api::{Command, Reply};
use std::time::Duration;

#[test]
fn checks_suspended_while_the_vip_is_absent() {
    let dead = free_port(); // nothing listens on 127.0.0.2/127.0.0.3:dead
    let conf = format!(
        "virtual_server 198.18.255.1 {dead} {{
    delay_loop 1
    lb_algo rr
    lb_kind NAT
    ha_suspend
    real_server 127.0.0.2 {dead} {{
        TCP_CHECK {{
            connect_timeout 1
            retry 0
            warmup 0
        }}
    }}
}}
virtual_server 127.0.0.1 {dead} {{
    delay_loop 1
    lb_algo rr
    lb_kind NAT
    ha_suspend
    real_server 127.0.0.3 {dead} {{
        TCP_CHECK {{
            connect_timeout 1
            retry 0
            warmup 0
        }}
    }}
}}
"
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keepalived.conf");
    std::fs::write(&path, conf).unwrap();
    let d = Rvsd::start(&["-f", path.to_str().unwrap()]);
    let dests = |vip: &str| -> Option<usize> {
        match d.client().call(&Command::ListServices) {
            Ok(Reply::Services(s)) => s
                .iter()
                .find(|s| matches!(s.spec.key, rvs_api::ServiceKey::Addr { addr, .. } if addr.to_string() == vip))
                .map(|s| s.dests.len()),
            _ => None,
        }
    };
    // 127.0.0.1 is local: its check runs and removes the dead server.
    let removed = wait_for(Duration::from_secs(10), || {
        (dests("127.0.0.1") == Some(0)).then_some(())
    });
    assert!(
        removed.is_some(),
        "check on a local VIP did not run: {}",
        d.log()
    );
    // 198.18.255.1 is not on this host: checks are suspended, the server stays.
    assert_eq!(dests("198.18.255.1"), Some(1));
    let Ok(Reply::Status(st)) = d.client().call(&Command::ListChecks) else {
        panic!("ListChecks")
    };
    let vs = st
        .data
        .as_array()
        .and_then(|a| {
            a.iter()
                .find(|v| {
                    v["name"]
                        .as_str()
                        .is_some_and(|n| n.contains("198.18.255.1"))
                })
                .cloned()
        })
        .expect("status of the suspended VS");
    assert_eq!(vs["suspended"], true, "{vs}");
}
