//! Health checks in the netns lab with real nginx: the seed's virtual_server
//! (TCP_CHECK with the misspelt `connet_*` lines, delay_loop 6, retry 2,
//! delay_before_retry 3) run by rvsd with the proxy engine on lvs1. Stopping
//! nginx on rs1 removes rs1 from the table within keepalived's bound and
//! clients see no errors after the removal; starting it brings rs1 back.
//! HTTP_GET with a wrong status code and MISC_CHECK exit codes are checked
//! on extra virtual servers.

use rvs_api::{Client, Command, Protocol, Reply, ServiceInfo, ServiceKey};
use rvs_lab::{wait_for, Lab, RS1, RS2, VIP};
use std::net::IpAddr;
use std::time::{Duration, Instant};

fn service(c: &Client, port: u16) -> Option<ServiceInfo> {
    match c.call(&Command::GetService {
        key: ServiceKey::Addr {
            protocol: Protocol::Tcp,
            addr: VIP.parse().ok()?,
            port,
        },
    }) {
        Ok(Reply::Service(s)) => Some(s),
        _ => None,
    }
}

fn has_rs(c: &Client, port: u16, rs: &str) -> bool {
    let ip: IpAddr = rs.parse().unwrap();
    service(c, port).is_some_and(|s| s.dests.iter().any(|d| d.spec.addr == ip))
}

#[test]
fn lab_health_checks_drive_the_table() {
    if rvs_lab::skip_unless_root("lab_health_checks_drive_the_table") {
        return;
    }
    let mut lab = Lab::up("rvhc");
    lab.start_nginx("rs1", "rs1");
    lab.start_nginx("rs2", "rs2");
    lab.exec(
        "lvs1",
        &["ip", "addr", "add", &format!("{VIP}/24"), "dev", "eth0"],
    );

    // The seed's virtual_server block (lab addresses), plus two more.
    let seed =
        std::fs::read_to_string(rvs_lab::repo_root().join("examples/seed/keepalived-master.conf"))
            .expect("seed config");
    let vs_start = seed.find("virtual_server").expect("virtual_server block");
    let script_dir = lab.dir.path().join("scripts");
    std::fs::create_dir_all(&script_dir).unwrap();
    let conf = format!(
        "{}
virtual_server {VIP} 81 {{
    delay_loop 1
    lb_algo rr
    lb_kind NAT
    protocol TCP
    real_server {RS1} 80 {{
        HTTP_GET {{
            url {{
                path /
                status_code 500
            }}
            connect_timeout 1
            retry 0
        }}
    }}
    real_server {RS2} 80 {{
        HTTP_GET {{
            url {{
                path /
            }}
            connect_timeout 1
        }}
    }}
}}
virtual_server {VIP} 82 {{
    delay_loop 1
    lb_algo rr
    lb_kind NAT
    protocol TCP
    real_server {RS1} 80 {{
        MISC_CHECK {{
            misc_path \"/bin/false\"
        }}
    }}
    real_server {RS2} 80 {{
        MISC_CHECK {{
            misc_path \"/bin/true\"
        }}
    }}
}}
",
        &seed[vs_start..]
    );
    let conf_path = lab.dir.path().join("keepalived.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let sock = lab.dir.path().join("rvsd.sock");
    lab.spawn(
        "lvs1",
        "rvsd",
        &[
            env!("CARGO_BIN_EXE_rvsd"),
            "--socket",
            sock.to_str().unwrap(),
            "-f",
            conf_path.to_str().unwrap(),
        ],
    );
    let c = Client::new(&sock);
    let up = wait_for(Duration::from_secs(10), || {
        (has_rs(&c, 80, RS1) && has_rs(&c, 80, RS2)).then_some(())
    });
    assert!(up.is_some(), "seed service not built: {}", lab.log("rvsd"));
    let url = format!("http://{VIP}/");
    assert!(wait_for(Duration::from_secs(5), || lab.curl(&url)).is_some());

    // HTTP_GET with the wrong expected status takes rs1 out; MISC_CHECK
    // /bin/false takes rs1 out, /bin/true keeps rs2.
    // (NAT, so that the real servers keep port 80; with DR keepalived resets
    // a real server's port to the service's.) Wait until every checker has
    // run at least once.
    let all_ran = wait_for(Duration::from_secs(15), || {
        let Ok(Reply::Status(st)) = c.call(&Command::ListChecks) else {
            return None;
        };
        let vss = st.data.as_array()?;
        vss.iter()
            .flat_map(|v| v["real_servers"].as_array().cloned().unwrap_or_default())
            .flat_map(|r| r["checkers"].as_array().cloned().unwrap_or_default())
            .all(|ch| ch["has_run"] == true)
            .then_some(())
    });
    assert!(all_ran.is_some(), "checkers never ran: {}", lab.log("rvsd"));
    let checked = wait_for(Duration::from_secs(10), || {
        (!has_rs(&c, 81, RS1) && has_rs(&c, 81, RS2) && !has_rs(&c, 82, RS1) && has_rs(&c, 82, RS2))
            .then_some(())
    });
    assert!(
        checked.is_some(),
        "HTTP_GET/MISC_CHECK results not applied: {:?} {:?}\n{}",
        service(&c, 81),
        service(&c, 82),
        lab.log("rvsd")
    );

    // Stop nginx-1: rs1 must leave within delay_loop + connect_timeout +
    // retry * delay_before_retry = 6 + 5 + 2*3 = 17 s (keepalived's bound),
    // plus a slack of 5 s for a loaded machine: a fault threshold, the
    // measured time is printed.
    let bound = Duration::from_secs(6 + 5 + 2 * 3);
    let slack = Duration::from_secs(5);
    lab.stop_nginx("rs1");
    let t0 = Instant::now();
    let mut failures_after_removal = 0;
    let mut removed_at = None;
    while t0.elapsed() < bound + slack + Duration::from_secs(3) {
        let present = has_rs(&c, 80, RS1);
        if !present && removed_at.is_none() {
            removed_at = Some(t0.elapsed());
        }
        let ok = lab.curl(&url).is_some();
        if removed_at.is_some() {
            if !ok {
                failures_after_removal += 1;
            }
            if t0.elapsed() > removed_at.unwrap_or_default() + Duration::from_secs(2) {
                break;
            }
        }
    }
    let removed_at =
        removed_at.unwrap_or_else(|| panic!("rs1 never left the table: {}", lab.log("rvsd")));
    eprintln!(
        "rs1 removed {:.2} s after nginx stopped (bound {} s)",
        removed_at.as_secs_f64(),
        bound.as_secs()
    );
    assert!(
        removed_at <= bound + slack,
        "removal took {removed_at:?} > {bound:?} + {slack:?}"
    );
    assert_eq!(
        failures_after_removal, 0,
        "client saw errors after the removal"
    );
    for _ in 0..5 {
        assert_eq!(lab.curl(&url).as_deref(), Some("rs2"));
    }
    // `rvsadm --checks` shows the down checker and why.
    let Ok(Reply::Status(st)) = c.call(&Command::ListChecks) else {
        panic!("ListChecks");
    };
    assert!(st.text.contains("RS 198.18.0.21:80  DOWN"), "{}", st.text);
    let rs1 = &st.data[0]["real_servers"][0];
    assert_eq!(rs1["alive"], false, "{}", st.data);
    assert!(rs1["checkers"][0]["last_error"].is_string(), "{}", st.data);

    // Start nginx-1: rs1 comes back (a DOWN checker retries in bursts:
    // within delay_loop + retry * delay_before_retry).
    lab.start_nginx("rs1", "rs1");
    let t1 = Instant::now();
    let back = wait_for(Duration::from_secs(6 + 2 * 3 + 5), || {
        has_rs(&c, 80, RS1).then_some(())
    });
    assert!(back.is_some(), "rs1 never came back: {}", lab.log("rvsd"));
    eprintln!(
        "rs1 back {:.2} s after nginx started",
        t1.elapsed().as_secs_f64()
    );
}
