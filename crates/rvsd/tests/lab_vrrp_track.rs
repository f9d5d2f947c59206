//! `track_interface` in the netns lab: the MASTER tracks an extra interface
//! with a negative weight; when it goes down the BACKUP takes the VIP, when
//! it comes back the MASTER preempts again.

use rvs_lab::{wait_for, Lab, VIP};
use std::time::Duration;

fn conf(state: &str, prio: u8, track: bool) -> String {
    format!(
        "vrrp_instance VI_1 {{
    state {state}
    interface eth0
    virtual_router_id 42
    priority {prio}
    advert_int 1
    authentication {{
        auth_type PASS
        auth_pass 1111
    }}
{}    virtual_ipaddress {{
        {VIP}
    }}
}}
",
        if track {
            "    track_interface {\n        trk0 weight -60\n    }\n"
        } else {
            ""
        }
    )
}

fn has_vip(lab: &Lab, node: &str) -> bool {
    lab.has_addr(node, VIP)
}

#[test]
fn lab_track_interface_moves_the_vip() {
    if rvs_lab::skip_unless_root("lab_track_interface_moves_the_vip") {
        return;
    }
    let mut lab = Lab::up("rvtrk");
    // (This kernel has no dummy interfaces: a veth pair stands in.)
    lab.exec(
        "lvs1",
        &[
            "ip", "link", "add", "trk0", "type", "veth", "peer", "name", "trk1",
        ],
    );
    lab.exec("lvs1", &["ip", "link", "set", "trk1", "up"]);
    lab.exec("lvs1", &["ip", "link", "set", "trk0", "up"]);
    for (node, state, prio, track) in [("lvs1", "MASTER", 100, true), ("lvs2", "BACKUP", 50, false)]
    {
        let path = lab.dir.path().join(format!("{node}.conf"));
        std::fs::write(&path, conf(state, prio, track)).unwrap();
        let sock = lab.dir.path().join(format!("{node}.sock"));
        lab.spawn(
            node,
            &format!("rvsd-{node}"),
            &[
                env!("CARGO_BIN_EXE_rvsd"),
                "--socket",
                sock.to_str().unwrap(),
                "-f",
                path.to_str().unwrap(),
            ],
        );
    }
    assert!(
        wait_for(Duration::from_secs(10), || has_vip(&lab, "lvs1")
            .then_some(()))
        .is_some(),
        "master never took the VIP: {}",
        lab.log("rvsd-lvs1")
    );
    lab.exec("lvs1", &["ip", "link", "set", "trk0", "down"]);
    let moved = wait_for(Duration::from_secs(10), || {
        (has_vip(&lab, "lvs2") && !has_vip(&lab, "lvs1")).then_some(())
    });
    assert!(
        moved.is_some(),
        "VIP did not move on tracked interface down: {}",
        lab.log("rvsd-lvs1")
    );
    lab.exec("lvs1", &["ip", "link", "set", "trk0", "up"]);
    let back = wait_for(Duration::from_secs(10), || {
        (has_vip(&lab, "lvs1") && !has_vip(&lab, "lvs2")).then_some(())
    });
    assert!(
        back.is_some(),
        "VIP did not come back: {}",
        lab.log("rvsd-lvs1")
    );
}

#[test]
fn lab_reload_priority_without_restart() {
    if rvs_lab::skip_unless_root("lab_reload_priority_without_restart") {
        return;
    }
    let mut lab = Lab::up("rvrlp");
    let mut master_pid = 0;
    let master_conf = lab.dir.path().join("lvs1.conf");
    for (node, state, prio) in [("lvs1", "MASTER", 100), ("lvs2", "BACKUP", 50)] {
        let path = lab.dir.path().join(format!("{node}.conf"));
        std::fs::write(&path, conf(state, prio, false)).unwrap();
        let sock = lab.dir.path().join(format!("{node}.sock"));
        let pid = lab.spawn(
            node,
            &format!("rvsd-{node}"),
            &[
                env!("CARGO_BIN_EXE_rvsd"),
                "--socket",
                sock.to_str().unwrap(),
                "-f",
                path.to_str().unwrap(),
            ],
        );
        if node == "lvs1" {
            master_pid = pid;
        }
    }
    assert!(
        wait_for(Duration::from_secs(10), || has_vip(&lab, "lvs1")
            .then_some(()))
        .is_some(),
        "master never took the VIP"
    );
    // Reload the master with a priority below the backup's: the backup
    // takes over, without the master restarting.
    std::fs::write(&master_conf, conf("MASTER", 30, false)).unwrap();
    lab.signal(master_pid, libc::SIGHUP);
    let moved = wait_for(Duration::from_secs(10), || {
        (has_vip(&lab, "lvs2") && !has_vip(&lab, "lvs1")).then_some(())
    });
    assert!(
        moved.is_some(),
        "VIP did not move after the priority reload: {}",
        lab.log("rvsd-lvs1")
    );
    assert!(lab.log("rvsd-lvs1").contains("priority changed by reload"));
    // And back.
    std::fs::write(&master_conf, conf("MASTER", 100, false)).unwrap();
    lab.signal(master_pid, libc::SIGHUP);
    let back = wait_for(Duration::from_secs(10), || {
        (has_vip(&lab, "lvs1") && !has_vip(&lab, "lvs2")).then_some(())
    });
    assert!(
        back.is_some(),
        "VIP did not come back: {}",
        lab.log("rvsd-lvs1")
    );
}
