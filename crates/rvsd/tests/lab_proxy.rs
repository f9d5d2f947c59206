//! Proxy engine in the netns lab with real nginx real servers: the client
//! curls the VIP on lvs1 and rr alternates rs1 / rs2.

use rvs_api::{Client, Command, DestSpec, FwdMethod, Protocol, Reply, ServiceKey, ServiceSpec};
use rvs_lab::{wait_for, Lab, RS1, RS2, VIP};
use std::time::Duration;

#[test]
fn lab_proxy_rr_alternates_between_nginx_servers() {
    if rvs_lab::skip_unless_root("lab_proxy_rr_alternates_between_nginx_servers") {
        return;
    }
    let mut lab = Lab::up("rvpx");
    lab.start_nginx("rs1", "rs1");
    lab.start_nginx("rs2", "rs2");
    lab.exec(
        "lvs1",
        &["ip", "addr", "add", &format!("{VIP}/24"), "dev", "eth0"],
    );
    let sock = lab.dir.path().join("rvsd.sock");
    let sock_s = sock.to_string_lossy().to_string();
    lab.spawn(
        "lvs1",
        "rvsd",
        &[env!("CARGO_BIN_EXE_rvsd"), "--socket", &sock_s],
    );
    let c = Client::new(&sock);
    assert!(
        wait_for(Duration::from_secs(10), || c.call(&Command::GetInfo).ok()).is_some(),
        "rvsd did not start: {}",
        lab.log("rvsd")
    );
    let key = ServiceKey::Addr {
        protocol: Protocol::Tcp,
        addr: VIP.parse().unwrap(),
        port: 80,
    };
    c.call(&Command::AddService {
        spec: ServiceSpec::new(key, "rr"),
    })
    .expect("add service");
    for rs in [RS1, RS2] {
        c.call(&Command::AddDest {
            service: key,
            dest: DestSpec::new(rs.parse().unwrap(), 80, FwdMethod::Masq, 1),
        })
        .expect("add dest");
    }
    let url = format!("http://{VIP}/");
    assert!(
        wait_for(Duration::from_secs(5), || lab.curl(&url)).is_some(),
        "VIP never answered: {}",
        lab.log("rvsd")
    );
    let got: Vec<String> = (0..6).filter_map(|_| lab.curl(&url)).collect();
    assert_eq!(got.len(), 6);
    for w in got.windows(2) {
        assert_ne!(w[0], w[1], "rr must alternate: {got:?}");
    }
    assert!(got.iter().any(|g| g == "rs1") && got.iter().any(|g| g == "rs2"));
    let Ok(Reply::Service(s)) = c.call(&Command::GetService { key }) else {
        panic!("get service");
    };
    assert_eq!(s.stats.conns, 7);
}
