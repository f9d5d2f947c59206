//! The seed's MASTER and BACKUP keepalived.conf files (examples/seed/).

use rvs_config::*;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

fn seed(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/seed")
        .join(name)
}

fn load_seed(name: &str) -> Loaded {
    load(
        &seed(name),
        &LoadOptions {
            config_id: Some("lvs".into()),
            ..Default::default()
        },
    )
    .expect("seed file loads")
}

/// (severity, line, column, message, help)
fn summary(l: &Loaded) -> Vec<(Severity, u32, u32, String, Option<String>)> {
    l.diagnostics
        .iter()
        .map(|d| {
            (
                d.severity,
                d.line,
                d.column,
                d.message.clone(),
                d.help.clone(),
            )
        })
        .collect()
}

fn expected(lines: [u32; 6]) -> Vec<(Severity, u32, u32, String, Option<String>)> {
    let mut v = Vec::new();
    for chunk in lines.chunks(3) {
        v.push((
            Severity::Warning,
            chunk[0],
            13,
            "unknown keyword 'connet_port' in TCP_CHECK".to_string(),
            Some("did you mean 'connect_port'?".to_string()),
        ));
        v.push((
            Severity::Warning,
            chunk[1],
            13,
            "unknown keyword 'connet_timeout' in TCP_CHECK".to_string(),
            Some("did you mean 'connect_timeout'?".to_string()),
        ));
        v.push((
            Severity::Deprecated,
            chunk[2],
            13,
            "nb_get_retry is deprecated - please use 'retry'".to_string(),
            None,
        ));
    }
    v
}

fn check_model(l: &Loaded, state: VrrpState, prio: u8, router_id: &str) {
    let c = &l.config;
    assert_eq!(c.global_defs.router_id.as_deref(), Some(router_id));
    assert_eq!(c.vrrp_instances.len(), 1);
    let vi = &c.vrrp_instances[0];
    assert_eq!(vi.name, "VI_1");
    assert_eq!(vi.state, state);
    assert_eq!(vi.priority, prio);
    assert_eq!(vi.interface.as_deref(), Some("eth0"));
    assert_eq!(vi.virtual_router_id, 41);
    assert_eq!(vi.advert_int, Duration::from_secs(1));
    assert_eq!(vi.version, 2);
    assert_eq!(
        vi.authentication,
        Some(Authentication {
            auth_type: AuthType::Pass,
            auth_pass: "1111".into()
        })
    );
    assert_eq!(vi.virtual_ipaddress.len(), 1);
    assert_eq!(
        vi.virtual_ipaddress[0].addr,
        "198.18.0.100".parse::<IpAddr>().unwrap()
    );
    assert_eq!(vi.virtual_ipaddress[0].prefix_len, 32);
    assert!(!vi.nopreempt);

    assert_eq!(c.virtual_servers.len(), 1);
    let vs = &c.virtual_servers[0];
    assert_eq!(
        vs.key,
        VsKey::Addr {
            ip: "198.18.0.100".parse().unwrap(),
            port: 80
        }
    );
    assert_eq!(vs.protocol, Protocol::Tcp);
    assert_eq!(vs.keepalived_name(), "[198.18.0.100]:tcp:80");
    assert_eq!(vs.lvs_sched, "rr");
    assert_eq!(vs.lvs_method, LvsMethod::Dr);
    assert_eq!(vs.persistence_timeout, Some(10));
    assert_eq!(vs.delay_loop, Duration::from_secs(6));
    assert_eq!(vs.quorum, 1);
    assert!(vs.sorry_server.is_none());
    let ips: Vec<String> = vs.real_servers.iter().map(|r| r.ip.to_string()).collect();
    assert_eq!(ips, ["198.18.0.21", "198.18.0.22"]);
    for rs in &vs.real_servers {
        assert_eq!(rs.port, 80);
        assert_eq!(rs.weight, 1);
        assert_eq!(rs.lvs_method, LvsMethod::Dr);
        assert!(!rs.inhibit_on_failure);
        assert_eq!(rs.checkers.len(), 1);
        let Checker::Tcp(t) = &rs.checkers[0] else {
            panic!("expected TCP_CHECK, got {:?}", rs.checkers[0])
        };
        assert_eq!(t.connect_ip, rs.ip, "connect to the RS itself");
        assert_eq!(t.connect_port, 80, "connet_port is ignored: RS port");
        assert_eq!(
            t.connect_timeout,
            Duration::from_secs(5),
            "connet_timeout is ignored: default 5"
        );
        assert_eq!(t.retry, 2, "nb_get_retry 2 (deprecated alias)");
        assert_eq!(t.delay_before_retry, Duration::from_secs(3));
        assert_eq!(
            t.delay_loop,
            Duration::from_secs(6),
            "inherited from the virtual_server"
        );
        assert_eq!(t.warmup, None);
        assert!(!t.alpha);
    }
}

#[test]
fn master_diagnostics() {
    let l = load_seed("keepalived-master.conf");
    assert_eq!(summary(&l), expected([42, 44, 46, 56, 58, 60]));
    assert_eq!(l.config_test_exit_code(), 5);
    assert!(!l.has_errors());
    let first = l.diagnostics[0].to_string();
    assert!(
        first.ends_with(
            "keepalived-master.conf:42:13: warning: unknown keyword 'connet_port' in TCP_CHECK (did you mean 'connect_port'?)"
        ),
        "{first}"
    );
    assert_eq!(l.diagnostics[0].text, "connet_port");
    assert_eq!(l.diagnostics[0].class, ConfigErr::UnknownKeyword);
    assert_eq!(l.diagnostics[2].class, ConfigErr::Deprecated);
    assert_eq!(
        l.diagnostics[0].keepalived_style(false),
        "(Line 42) unknown keyword 'connet_port' in TCP_CHECK"
    );
}

#[test]
fn backup_diagnostics() {
    let l = load_seed("keepalived-backup.conf");
    assert_eq!(summary(&l), expected([41, 43, 45, 55, 57, 59]));
    assert_eq!(l.config_test_exit_code(), 5);
}

#[test]
fn master_model() {
    check_model(
        &load_seed("keepalived-master.conf"),
        VrrpState::Master,
        100,
        "LVS_151",
    );
}

#[test]
fn backup_model() {
    check_model(
        &load_seed("keepalived-backup.conf"),
        VrrpState::Backup,
        50,
        "LVS_152",
    );
}

#[test]
fn seed_files_are_verbatim_copies() {
    let m = std::fs::read_to_string(seed("keepalived-master.conf")).unwrap();
    assert!(m.starts_with("! Configuration File for keepalived\n"));
    assert!(m.contains("# 配置集群地址访问的IP+端口，端口和nginx保持一致，都是80\n"));
    assert!(m.contains("            connet_port 80\n"));
    assert!(!m.contains("192.168."));
    let b = std::fs::read_to_string(seed("keepalived-backup.conf")).unwrap();
    assert!(b.contains("     real_server 198.18.0.22 80 {\n"));
}

#[test]
fn dump_json() {
    let l = load_seed("keepalived-master.conf");
    let v: serde_json::Value = serde_json::to_value(&l.config).unwrap();
    let rs0 = &v["virtual_servers"][0]["real_servers"][0];
    assert_eq!(rs0["checkers"][0]["type"], "TCP_CHECK");
    assert_eq!(rs0["checkers"][0]["connect_port"], 80);
    assert_eq!(rs0["checkers"][0]["connect_timeout"], 5.0);
    assert_eq!(v["virtual_servers"][0]["lvs_method"]["method"], "DR");
    assert_eq!(v["vrrp_instances"][0]["state"], "MASTER");
}
