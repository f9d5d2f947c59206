//! SIGHUP with a changed `virtual_ipaddress` in the netns lab: the MASTER
//! adds the new VIP and removes the dropped one in place — no state change,
//! the BACKUP never takes over — as keepalived's reload does.

use rvs_lab::{wait_for, Lab, VIP};
use std::time::Duration;

const VIP2: &str = "198.18.0.101";

fn conf(state: &str, prio: u8, vips: &[&str]) -> String {
    format!(
        "vrrp_instance VI_1 {{
    state {state}
    interface eth0
    virtual_router_id 43
    priority {prio}
    advert_int 1
    authentication {{
        auth_type PASS
        auth_pass 1111
    }}
    virtual_ipaddress {{
{}    }}
}}
",
        vips.iter()
            .map(|v| format!("        {v}\n"))
            .collect::<String>()
    )
}

#[test]
fn lab_reload_changes_vips_without_a_transition() {
    if rvs_lab::skip_unless_root("lab_reload_changes_vips_without_a_transition") {
        return;
    }
    let mut lab = Lab::up("rvrld");
    let nodes = [("lvs1", "MASTER", 100u8), ("lvs2", "BACKUP", 50u8)];
    let write = |lab: &Lab, vips: &[&str]| {
        for (node, state, prio) in nodes {
            let path = lab.dir.path().join(format!("{node}.conf"));
            std::fs::write(&path, conf(state, prio, vips)).expect("conf");
        }
    };
    write(&lab, &[VIP]);
    let mut pids = Vec::new();
    for (node, _, _) in nodes {
        let path = lab.dir.path().join(format!("{node}.conf"));
        let sock = lab.dir.path().join(format!("{node}.sock"));
        let pid = lab.spawn(
            node,
            &format!("rvsd-{node}"),
            &[
                env!("CARGO_BIN_EXE_rvsd"),
                "--socket",
                sock.to_str().unwrap_or_default(),
                "-f",
                path.to_str().unwrap_or_default(),
            ],
        );
        pids.push(pid);
    }
    let up = wait_for(Duration::from_secs(10), || {
        lab.has_addr("lvs1", VIP).then_some(())
    });
    assert!(
        up.is_some(),
        "master never took the VIP: {}",
        lab.log("rvsd-lvs1")
    );
    let reload = |lab: &Lab| {
        for pid in &pids {
            lab.signal(*pid, 1); // SIGHUP
        }
    };

    // Add a second VIP: the MASTER adds it in place and announces it.
    write(&lab, &[VIP, VIP2]);
    reload(&lab);
    let added = wait_for(Duration::from_secs(5), || {
        (lab.has_addr("lvs1", VIP2) && lab.has_addr("lvs1", VIP)).then_some(())
    });
    assert!(added.is_some(), "VIP2 not added: {}", lab.log("rvsd-lvs1"));
    let o = lab.exec("client", &["ping", "-c", "1", "-W", "2", VIP2]);
    assert!(o.status.success(), "the new VIP does not answer");

    // Drop the first VIP.
    write(&lab, &[VIP2]);
    reload(&lab);
    let removed = wait_for(Duration::from_secs(5), || {
        (!lab.has_addr("lvs1", VIP) && lab.has_addr("lvs1", VIP2)).then_some(())
    });
    assert!(
        removed.is_some(),
        "VIP not removed: {}",
        lab.log("rvsd-lvs1")
    );

    // Adverts keep flowing with the new list: the BACKUP stays BACKUP for
    // longer than its master-down interval (3 x advert_int + skew).
    let stolen = wait_for(Duration::from_secs(5), || {
        (lab.has_addr("lvs2", VIP2) || lab.has_addr("lvs2", VIP)).then_some(())
    });
    assert!(
        stolen.is_none(),
        "the BACKUP took over: {}",
        lab.log("rvsd-lvs2")
    );
    assert!(lab.has_addr("lvs1", VIP2));
    let log = lab.log("rvsd-lvs1");
    assert_eq!(
        log.matches("VRRP transition").count(),
        1,
        "only the initial MASTER transition:\n{log}"
    );
    assert!(!log.contains("take effect at the next start"), "{log}");
}
