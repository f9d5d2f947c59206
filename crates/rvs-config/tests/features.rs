//! Parser / model behaviour through the public API.

use rvs_config::*;
use std::fs;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

fn opts() -> LoadOptions {
    LoadOptions {
        config_id: Some("node1".into()),
        random_seed: Some(1),
        ..Default::default()
    }
}

fn parse(s: &str) -> Loaded {
    parse_str(s, "k.conf", &opts())
}

fn msgs(l: &Loaded) -> Vec<String> {
    l.diagnostics
        .iter()
        .map(|d| format!("{}:{} {}", d.line, d.column, d.message))
        .collect()
}

const VS_HEAD: &str = "virtual_server 10.0.0.1 80 {\n lvs_sched rr\n lvs_method NAT\n";

#[test]
fn include_relative_glob_and_braces() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("conf.d");
    fs::create_dir(&sub).unwrap();
    fs::write(
        sub.join("a.conf"),
        "vrrp_instance A {\n virtual_router_id 1\n include ../vips/*.vip\n}\n",
    )
    .unwrap();
    fs::write(
        sub.join("b.conf"),
        "vrrp_instance B { virtual_router_id 2 }\n",
    )
    .unwrap();
    fs::write(
        sub.join("c.conf"),
        "vrrp_instance C { virtual_router_id 3 }\n",
    )
    .unwrap();
    fs::create_dir(dir.path().join("vips")).unwrap();
    fs::write(
        dir.path().join("vips/x.vip"),
        "virtual_ipaddress {\n 10.1.1.1/24 dev eth0\n}\nbogus_kw 1\n",
    )
    .unwrap();
    let main = dir.path().join("keepalived.conf");
    fs::write(&main, "include conf.d/{a,b}.conf\ninclude nothing/*.conf\n").unwrap();
    let l = load(&main, &opts()).unwrap();
    let names: Vec<&str> = l
        .config
        .vrrp_instances
        .iter()
        .map(|v| v.name.as_str())
        .collect();
    assert_eq!(names, ["A", "B"]);
    assert_eq!(
        l.config.vrrp_instances[0].virtual_ipaddress[0].prefix_len,
        24
    );
    assert_eq!(l.files.len(), 4);
    // the unknown keyword is reported in the included file at its own line
    let d = l.diagnostics.iter().find(|d| d.text == "bogus_kw").unwrap();
    assert!(d.file.ends_with("vips/x.vip"), "{}", d.file);
    assert_eq!((d.line, d.column), (4, 1));
    // plain include matching nothing: a note, not a keepalived error
    let d = l
        .diagnostics
        .iter()
        .find(|d| d.message.contains("matches no file"))
        .unwrap();
    assert_eq!(d.class, ConfigErr::Ok);
}

#[test]
fn strict_include_and_loops() {
    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("k.conf");
    fs::write(&main, "includem /nonexistent/*.conf\n").unwrap();
    let e = load(&main, &opts()).unwrap_err();
    assert_eq!(e.to_string(), "Config files missing '/nonexistent/*.conf'.");
    assert_eq!(e.config_test_exit_code(), 6);
    // includew: a non-wildcard missing file is fine, a wildcard one is not
    fs::write(&main, "includew /nonexistent/x.conf\n").unwrap();
    assert!(load(&main, &opts()).is_ok());
    // loop
    fs::write(
        &main,
        "include k.conf\nvrrp_instance A { virtual_router_id 1 }\n",
    )
    .unwrap();
    let l = load(&main, &opts()).unwrap();
    assert_eq!(l.config.vrrp_instances.len(), 1);
    assert!(l
        .diagnostics
        .iter()
        .any(|d| d.message.starts_with("include loop")));
    // missing main file
    let e = load(&dir.path().join("missing.conf"), &opts()).unwrap_err();
    assert!(matches!(e, LoadError::NotFound { .. }));
    assert_eq!(e.daemon_exit_code(), 6);
}

#[test]
fn include_is_not_conditional_or_substituted() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("x.conf"), "global_defs { router_id X }\n").unwrap();
    let main = dir.path().join("k.conf");
    fs::write(&main, "$F=x.conf\ninclude ${_PWD}/x.conf\n").unwrap();
    // `include` is detected before substitution: the literal pattern matches nothing
    let l = load(&main, &opts()).unwrap();
    assert_eq!(l.config.global_defs.router_id, None);
}

#[test]
fn braces_anywhere_and_one_line_blocks() {
    let l = parse("vrrp_instance VI_1 { state MASTER\n virtual_router_id 7 } vrrp_instance VI_2\n{\nvirtual_router_id 8\npriority 20 }\n");
    assert!(l.diagnostics.is_empty(), "{:?}", msgs(&l));
    assert_eq!(l.config.vrrp_instances.len(), 2);
    assert_eq!(l.config.vrrp_instances[1].priority, 20);
}

#[test]
fn brace_errors() {
    let l = parse("global_defs {\n router_id a\n}\n}\n");
    assert_eq!(msgs(&l), ["4:1 Extra '}' found"]);
    assert_eq!(l.diagnostics[0].class, ConfigErr::UnexpectedEob);
    let l = parse("global_defs {\n router_id a\n");
    assert_eq!(msgs(&l), ["1:13 There are 1 missing '}'s or extra '{'s"]);
    assert_eq!(l.config.global_defs.router_id.as_deref(), Some("a"));
    let l = parse("global_defs\n router_id a\n");
    assert!(msgs(&l)
        .iter()
        .any(|m| m.contains("Missing '{' at beginning of configuration block")));
    let l = parse("global_defs { }\n{ router_id x }\n");
    assert_eq!(msgs(&l), ["2:1 Unexpected '{' - ignoring"]);
}

#[test]
fn unknown_block_is_skipped() {
    let l = parse(
        "vrrp_instance VI_1 {\n virtual_router_id 5\n unknown_block {\n  priority 50\n  zzz\n }\n advert_int 2\n}\n",
    );
    assert_eq!(
        msgs(&l),
        ["3:2 unknown keyword 'unknown_block' in vrrp_instance; its block is skipped"]
    );
    let vi = &l.config.vrrp_instances[0];
    assert_eq!(
        vi.priority, 100,
        "the skipped block's priority is not applied"
    );
    assert_eq!(
        vi.advert_int,
        Duration::from_secs(2),
        "keywords after the block still apply"
    );
}

#[test]
fn unsupported_reported_once() {
    let l = parse("global_defs {\n enable_snmp_vrrp\n enable_snmp_checker\n enable_snmp_vrrp\n}\nbfd_instance b { neighbor_ip 1.2.3.4 }\nbfd_instance c { }\n");
    let u: Vec<String> = l
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Unsupported)
        .map(|d| d.text.clone())
        .collect();
    assert_eq!(
        u,
        ["enable_snmp_vrrp", "enable_snmp_checker", "bfd_instance"]
    );
    assert_eq!(l.config_test_exit_code(), 0);
    assert_eq!(l.config.unsupported.len(), 2);
    assert_eq!(l.config.unsupported[0].children[0].keyword, "neighbor_ip");
    assert_eq!(l.config.global_defs.unsupported.len(), 3);
}

#[test]
fn vrrp_linked_defaults() {
    let l = parse("vrrp_instance A { state MASTER\nvirtual_router_id 1 }\nvrrp_instance B { virtual_router_id 2 }\nvrrp_instance C { priority 255\nvirtual_router_id 3 }\nvrrp_instance D { state BACKUP\npriority 255\nvirtual_router_id 4 }\n");
    let v: Vec<(VrrpState, u8)> = l
        .config
        .vrrp_instances
        .iter()
        .map(|v| (v.state, v.priority))
        .collect();
    assert_eq!(
        v,
        [
            (VrrpState::Master, 255),
            (VrrpState::Backup, 100),
            (VrrpState::Master, 255),
            (VrrpState::Backup, 255)
        ]
    );
}

#[test]
fn vrrp_validation_messages() {
    let l = parse(
        "vrrp_instance VI_1 {\n state master\n virtual_router_id 1\n advert_int 1.5\n authentication {\n auth_type PASS\n auth_pass 123456789\n }\n}\n\
         vrrp_instance VI_2 {\n state MASTER\n nopreempt\n preempt_delay 10\n virtual_router_id 2\n version 3\n advert_int 41\n authentication { auth_type PASS\n auth_pass x }\n}\n\
         vrrp_instance VI_3 {\n priority 50\n}\n",
    );
    let m = msgs(&l);
    let expect = [
        "2:8 (VI_1) unknown state 'master', defaulting to BACKUP",
        "7:12 Truncating auth_pass to 8 characters",
        "4:2 (VI_1) VRRPv2 advertisement interval 1.500000s must be an integer. rounding",
        "16:2 (VI_2) VRRPv3 advertisement interval 41.00s is out of range. Must be less than 40.96s. Setting to 40.95s",
        "10:1 (VI_2) VRRP version 3 does not support authentication. Ignoring.",
        "10:1 (VI_2) nopreempt is incompatible with priority 255. resetting nopreempt",
        "10:1 (VI_2) Warning - preempt delay will not work with initial state MASTER - clearing",
        "20:1 (VI_3) the virtual router id must be set",
    ];
    assert_eq!(m, expect);
    assert_eq!(
        l.diagnostics[0].help.as_deref(),
        Some("did you mean 'MASTER'?")
    );
    let v1 = &l.config.vrrp_instances[0];
    assert_eq!(v1.state, VrrpState::Backup);
    assert_eq!(v1.authentication.as_ref().unwrap().auth_pass, "12345678");
    assert_eq!(v1.advert_int, Duration::from_secs(2));
    let v2 = &l.config.vrrp_instances[1];
    assert!(v2.authentication.is_none() && !v2.nopreempt && v2.preempt_delay.is_none());
    assert_eq!(v2.advert_int, Duration::from_millis(40950));
    assert_eq!(
        l.config.vrrp_instances.len(),
        2,
        "VI_3 without vrid is dropped"
    );
}

#[test]
fn vip_syntax() {
    let l = parse(
        "vrrp_instance V {\n virtual_router_id 9\n virtual_ipaddress {\n  10.0.0.1/24 brd 10.0.0.255 dev eth1 scope link label eth1:1\n  10.0.0.2\n  fe80::1/64 dev eth0 -nodad no_track\n  bad.addr\n }\n virtual_ipaddress_excluded { 2001:db8::1 peer 2001:db8::2 home }\n track_interface {\n  eth0\n  eth1 weight -20 reverse\n }\n track_script {\n  chk weight 10\n }\n unicast_peer {\n  10.0.0.3 min_ttl 1 max_ttl 5\n }\n notify_master \"/bin/notify 'a b' c\" root wheel\n}\nvrrp_script chk {\n script \"/bin/check.sh arg\"\n interval 2\n weight -5 reverse\n fall 3\n}\n",
    );
    let v = &l.config.vrrp_instances[0];
    assert_eq!(
        msgs(&l),
        [
            "7:3 Invalid address 'bad.addr' in virtual_ipaddress - ignoring",
            "1:1 (V) virtual_ipaddress mixes IPv4 and IPv6 addresses; use virtual_ipaddress_excluded"
        ]
    );
    let a = &v.virtual_ipaddress[0];
    assert_eq!(
        (
            a.prefix_len,
            a.dev.as_deref(),
            a.scope.as_deref(),
            a.label.as_deref()
        ),
        (24, Some("eth1"), Some("link"), Some("eth1:1"))
    );
    assert_eq!(a.brd, Some("10.0.0.255".parse().unwrap()));
    assert_eq!(v.virtual_ipaddress[1].prefix_len, 32);
    assert!(v.virtual_ipaddress[2].nodad && v.virtual_ipaddress[2].no_track);
    assert_eq!(v.virtual_ipaddress.len(), 3);
    assert!(v.virtual_ipaddress_excluded[0].home);
    assert_eq!(
        v.track_interface[1],
        Track {
            name: "eth1".into(),
            weight: Some(-20),
            reverse: true
        }
    );
    assert_eq!(v.track_script[0].weight, Some(10));
    assert_eq!(v.unicast_peer[0].max_ttl, Some(5));
    let n = v.notify_master.as_ref().unwrap();
    assert_eq!(n.command, "/bin/notify 'a b' c");
    assert_eq!(n.argv, ["/bin/notify", "a b", "c"]);
    assert_eq!(
        (n.user.as_deref(), n.group.as_deref()),
        (Some("root"), Some("wheel"))
    );
    let s = &l.config.vrrp_scripts[0];
    assert_eq!(s.script.argv, ["/bin/check.sh", "arg"]);
    assert_eq!(
        (
            s.interval,
            s.timeout,
            s.weight,
            s.weight_reverse,
            s.fall,
            s.rise
        ),
        (
            Duration::from_secs(2),
            Duration::from_secs(2),
            -5,
            true,
            3,
            1
        )
    );
}

#[test]
fn checker_defaults_and_inheritance() {
    let l = parse(&format!(
        "{VS_HEAD} delay_loop 10\n retry 4\n real_server 10.0.0.2 8080 {{\n  connect_timeout 7\n  \
         HTTP_GET {{ url {{ path /\n status_code 200 301-302\n digest 0123456789ABCDEF0123456789abcdef }}\n url {{ path /h }} }}\n  \
         MISC_CHECK {{ misc_path \"/bin/x y\"\n }}\n  DNS_CHECK {{ retry 9\n}}\n  TCP_CHECK {{ connect_port 22\n delay_loop 3\n warmup 1 }}\n  \
         SSL_GET {{ }}\n  UDP_CHECK {{ payload 0a0b\n require_reply }}\n  PING_CHECK {{ alpha }}\n  FILE_CHECK {{ track_file f\n weight 3 reverse }}\n  BFD_CHECK {{ name b }}\n }}\n}}\n"
    ));
    assert_eq!(
        msgs(&l),
        ["19:3 HTTP/SSL_GET checker has no urls specified - ignoring"]
    );
    let rs = &l.config.virtual_servers[0].real_servers[0];
    let kinds: Vec<&str> = rs.checkers.iter().map(|c| c.kind()).collect();
    assert_eq!(
        kinds,
        [
            "HTTP_GET",
            "MISC_CHECK",
            "DNS_CHECK",
            "TCP_CHECK",
            "UDP_CHECK",
            "PING_CHECK",
            "FILE_CHECK",
            "BFD_CHECK"
        ]
    );
    let Checker::Http(h) = &rs.checkers[0] else {
        panic!()
    };
    assert_eq!(h.common.retry, 4, "VS retry");
    assert_eq!(
        h.common.delay_before_retry,
        Duration::from_secs(3),
        "HTTP default 3s"
    );
    assert_eq!(
        h.common.connect_timeout,
        Duration::from_secs(7),
        "RS connect_timeout"
    );
    assert_eq!(h.common.delay_loop, Duration::from_secs(10));
    assert_eq!(h.common.connect_port, 8080);
    assert_eq!(h.urls[0].status_code, [(200, 200), (301, 302)]);
    assert_eq!(
        h.urls[0].digest.as_deref(),
        Some("0123456789abcdef0123456789abcdef")
    );
    assert_eq!(h.urls[1].status_code, [(200, 299)]);
    assert_eq!(h.virtualhost, None);
    let Checker::Misc(m) = &rs.checkers[1] else {
        panic!()
    };
    assert_eq!(m.common.retry, 4);
    assert_eq!(
        m.misc_timeout,
        Duration::from_secs(10),
        "misc_timeout defaults to delay_loop"
    );
    assert_eq!(m.misc_path.argv, ["/bin/x", "y"]);
    let Checker::Dns(d) = &rs.checkers[2] else {
        panic!()
    };
    assert_eq!(
        (d.common.retry, d.query_type.as_str(), d.name.as_str()),
        (9, "SOA", ".")
    );
    assert_eq!(
        d.common.delay_before_retry,
        Duration::from_secs(10),
        "DNS: delay_loop"
    );
    let Checker::Tcp(t) = &rs.checkers[3] else {
        panic!()
    };
    assert_eq!(
        (t.connect_port, t.delay_loop, t.warmup),
        (22, Duration::from_secs(3), Some(Duration::from_secs(1)))
    );
    assert_eq!(t.delay_before_retry, Duration::from_secs(1));
    let Checker::Udp(u) = &rs.checkers[4] else {
        panic!()
    };
    assert_eq!(
        (u.payload.as_deref(), u.require_reply.as_deref()),
        (Some(&[10u8, 11][..]), Some(&[][..]))
    );
    let Checker::Ping(p) = &rs.checkers[5] else {
        panic!()
    };
    assert!(p.alpha);
    let Checker::File(f) = &rs.checkers[6] else {
        panic!()
    };
    assert_eq!(
        (f.track_file.as_str(), f.weight, f.reverse),
        ("f", Some(3), true)
    );
}

#[test]
fn checker_default_retry_without_vs_values() {
    let l = parse(&format!("{VS_HEAD} real_server 10.0.0.2 80 {{\n MISC_CHECK {{ misc_path /bin/true }}\n DNS_CHECK {{ }}\n TCP_CHECK {{ }}\n }}\n}}\n"));
    let rs = &l.config.virtual_servers[0].real_servers[0];
    let r: Vec<u32> = rs
        .checkers
        .iter()
        .map(|c| c.common().unwrap().retry)
        .collect();
    assert_eq!(r, [0, 3, 1]);
    assert_eq!(
        rs.checkers[2].common().unwrap().delay_loop,
        Duration::from_secs(60)
    );
    assert_eq!(
        rs.checkers[2].common().unwrap().connect_timeout,
        Duration::from_secs(5)
    );
}

#[test]
fn virtual_server_forms_and_defaults() {
    let l = parse(
        "virtual_server 10.0.0.1 443 {\n persistence_timeout\n persistence_granularity 255.255.255.0\n protocol UDP\n weight 3\n inhibit_on_failure\n sorry_server 10.0.0.9 443\n quorum 2\n hysteresis 1\n quorum_up \"/bin/up\"\n ops\n sh-port\n lvs_method TUN type gue port 6080 nocsum\n real_server 10.0.0.2 {\n  lvs_method DR\n }\n}\n\
         virtual_server fwmark 7 {\n lb_algo wlc\n lb_kind DR\n}\nvirtual_server group G {\n lb_algo sh\n lb_kind NAT\n}\nvirtual_server_group G {\n 10.0.0.1-3 80\n 10.0.1.0/30\n fwmark 5\n}\n",
    );
    assert_eq!(
        msgs(&l),
        ["1:1 Virtual server [10.0.0.1]:udp:443: no scheduler set, setting default 'wlc'"]
    );
    let vs = &l.config.virtual_servers[0];
    assert_eq!(vs.persistence_timeout, Some(360));
    assert_eq!(vs.persistence_granularity.as_deref(), Some("255.255.255.0"));
    assert_eq!(vs.protocol, Protocol::Udp);
    assert_eq!(vs.lvs_sched, "wlc");
    assert_eq!(
        vs.lvs_method,
        LvsMethod::Tun {
            tun_type: TunType::Gue,
            port: Some(6080),
            csum: Some(TunCsum::Nocsum)
        }
    );
    assert_eq!(vs.sched_flags, ["sh-port"]);
    assert!(vs.ops && vs.inhibit_on_failure);
    assert_eq!((vs.quorum, vs.hysteresis), (2, 1));
    assert_eq!(vs.sorry_server.as_ref().unwrap().port, 443);
    let rs = &vs.real_servers[0];
    assert_eq!(
        (rs.port, rs.weight, rs.lvs_method, rs.inhibit_on_failure),
        (443, 3, LvsMethod::Dr, true)
    );
    assert!(matches!(
        l.config.virtual_servers[1].key,
        VsKey::Fwmark { mark: 7 }
    ));
    assert!(matches!(&l.config.virtual_servers[2].key, VsKey::Group { name } if name == "G"));
    let g = &l.config.virtual_server_groups[0];
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    assert_eq!(
        g.entries[0],
        VsgEntry::Range {
            first: ip("10.0.0.1"),
            last: ip("10.0.0.3"),
            port: Some(80)
        }
    );
    assert_eq!(
        g.entries[1],
        VsgEntry::Range {
            first: ip("10.0.1.0"),
            last: ip("10.0.1.3"),
            port: None
        }
    );
    assert_eq!(
        g.entries[2],
        VsgEntry::Fwmark {
            mark: 5,
            family: None
        }
    );
}

#[test]
fn virtual_server_messages() {
    let l = parse(
        "virtual_server 10.0.0.1 80 {\n lb_algo RR\n lb_kind nat\n persistence_timeout 0\n real_server 10.0.0.2 81 {\n  lb_kind DR\n }\n}\n\
         virtual_server 10.0.0.1 80 {\n lb_kind DR\n lb_algo rr\n real_server 10.0.0.3 8080 { }\n}\n",
    );
    let m = msgs(&l);
    assert_eq!(
        m,
        [
            "2:10 Invalid lvs_scheduler 'RR' - ignoring",
            "3:10 PARSER : unknown [nat] routing method for virtual server.",
            "4:22 number '0' outside range [1, 2678400]",
            "4:2 persistence_timeout invalid",
            "6:3 unknown keyword 'lb_kind' in real_server",
            "1:1 Virtual server [10.0.0.1]:tcp:80: no scheduler set, setting default 'wlc'",
            "1:1 Virtual server [10.0.0.1]:tcp:80: no forwarding method set, setting default NAT",
            "12:1 WARNING - virtual server [10.0.0.1]:tcp:80 and real server [10.0.0.3]:tcp:8080 ports don't match - resetting",
        ]
    );
    assert_eq!(l.diagnostics[0].help.as_deref(), Some("did you mean 'rr'?"));
    assert_eq!(
        l.diagnostics[1].help.as_deref(),
        Some("did you mean 'NAT'?")
    );
    assert_eq!(l.config.virtual_servers[1].real_servers[0].port, 80);
    let l = parse(&format!("{VS_HEAD} quorum 2\n hysteresis 2\n}}\n"));
    assert_eq!(msgs(&l), ["1:1 Virtual server [10.0.0.1]:tcp:80: hysteresis 2 >= quorum 2; setting hysteresis to 1"]);
    assert_eq!(l.config.virtual_servers[0].hysteresis, 1);
    assert_eq!(l.config_test_exit_code(), 5);
}

#[test]
fn deprecated_aliases_and_hints() {
    let l = parse(&format!(
        "global_defs {{\n lvs_id X\n}}\n{VS_HEAD} real_server 10.0.0.2 80 {{\n  HTTP_GET {{\n   url {{ path / }}\n   nb_get_retry 3\n  }}\n  wieght 2\n }}\n}}\n"
    ));
    let m: Vec<(String, Option<String>)> = l
        .diagnostics
        .iter()
        .map(|d| (d.message.clone(), d.help.clone()))
        .collect();
    assert_eq!(
        m,
        [
            (
                "unknown keyword 'lvs_id' in global_defs".into(),
                Some("'lvs_id' was removed; use 'router_id'".into())
            ),
            (
                "nb_get_retry is deprecated - please use 'retry'".into(),
                None
            ),
            (
                "unknown keyword 'wieght' in real_server".into(),
                Some("did you mean 'weight'?".into())
            ),
        ]
    );
    let Checker::Http(h) = &l.config.virtual_servers[0].real_servers[0].checkers[0] else {
        panic!()
    };
    assert_eq!(h.common.retry, 3);
}

#[test]
fn numbers_and_parameters() {
    let l = parse("vrrp_instance V {\n virtual_router_id 256\n priority abc\n advert_int\n virtual_router_id 3\n}\n");
    assert_eq!(
        msgs(&l),
        [
            "2:20 number '256' outside range [1, 255]",
            "3:11 invalid number 'abc'",
            "4:2 *** Configuration line starting `advert_int` is missing a parameter after keyword `advert_int` at word position 1",
        ]
    );
    let classes: Vec<ConfigErr> = l.diagnostics.iter().map(|d| d.class).collect();
    assert_eq!(
        classes,
        [
            ConfigErr::InvalidNumber,
            ConfigErr::InvalidNumber,
            ConfigErr::MissingParameter
        ]
    );
}

#[test]
fn global_defs_model() {
    let l = parse(
        "global_defs {\n notification_email {\n  a@b.c\n  d@e.f\n }\n notification_email_from x@y\n smtp_server 10.0.0.5 2525\n smtp_connect_timeout 10\n router_id R1\n script_user nobody nogroup\n enable_script_security\n lvs_timeouts tcp 900 tcpfin 120 udp 300\n lvs_sync_daemon eth0 VI_1 id 5 port 8848\n vrrp_garp_master_delay 2\n vrrp_version 3\n vrrp_strict\n}\n",
    );
    assert!(l.diagnostics.is_empty(), "{:?}", msgs(&l));
    let g = &l.config.global_defs;
    assert_eq!(g.notification_email, ["a@b.c", "d@e.f"]);
    assert_eq!(
        g.smtp_server,
        Some(SmtpServer {
            host: "10.0.0.5".into(),
            port: 2525
        })
    );
    assert_eq!(g.smtp_connect_timeout, Duration::from_secs(10));
    assert_eq!(
        g.script_user,
        Some(ScriptUser {
            user: "nobody".into(),
            group: Some("nogroup".into())
        })
    );
    assert!(g.enable_script_security && g.vrrp_strict);
    assert_eq!(g.lvs_timeouts.tcp, Some(Duration::from_secs(900)));
    assert_eq!(g.lvs_timeouts.udp, Some(Duration::from_secs(300)));
    let s = g.lvs_sync_daemon.as_ref().unwrap();
    assert_eq!(
        (
            s.interface.as_str(),
            s.vrrp_instance.as_deref(),
            s.sync_id,
            s.port
        ),
        ("eth0", Some("VI_1"), Some(5), Some(8848))
    );
    // instance defaults come from global_defs even when it comes later
    let l = parse("vrrp_instance V { virtual_router_id 1 }\nglobal_defs { vrrp_garp_master_repeat 2\nvrrp_version 3 }\n");
    assert_eq!(l.config.vrrp_instances[0].garp_master_repeat, 2);
    assert_eq!(l.config.vrrp_instances[0].version, 3);
}

#[test]
fn substitution_end_to_end() {
    let src = "$VIP=10.0.0.100\n$RS= \\\n real_server ${IP} 80 { \\\n  weight ${W} \\\n }\n\
               virtual_server $VIP 80 {\n lb_algo rr\n lb_kind DR\n ~LST({IP,W}, {10.0.0.1,1}, {10.0.0.2,3}) $RS\n}\n\
               @node1 global_defs { router_id ${_INSTANCE} }\n";
    let l = parse(src);
    assert!(l.diagnostics.is_empty(), "{:?}", msgs(&l));
    let vs = &l.config.virtual_servers[0];
    assert_eq!(
        vs.key,
        VsKey::Addr {
            ip: "10.0.0.100".parse().unwrap(),
            port: 80
        }
    );
    let w: Vec<(String, i32)> = vs
        .real_servers
        .iter()
        .map(|r| (r.ip.to_string(), r.weight))
        .collect();
    assert_eq!(
        w,
        [("10.0.0.1".to_string(), 1), ("10.0.0.2".to_string(), 3)]
    );
    assert_eq!(l.config.global_defs.router_id.as_deref(), Some("node1"));
    // `$A.1` is not substituted (keepalived: $NAME must be followed by whitespace)
    let l = parse("$A=10.0.0\nvirtual_server_group G {\n $A.1 80\n ${A}.2 80\n}\n");
    assert_eq!(
        msgs(&l),
        ["3:2 Invalid virtual server group IP address $A.1 80 - skipping"]
    );
    assert_eq!(l.config.virtual_server_groups[0].entries.len(), 1);
}

#[test]
fn display_formats() {
    let l = parse("foo_bar 1\n");
    let d = &l.diagnostics[0];
    assert_eq!(
        d.to_string(),
        "k.conf:1:1: warning: unknown keyword 'foo_bar' in the top level"
    );
    assert_eq!(
        d.keepalived_style(true),
        "(k.conf: Line 1) unknown keyword 'foo_bar' in the top level"
    );
    let l = parse("vrrp_instnace X {\n}\n");
    assert_eq!(
        l.diagnostics[0].help.as_deref(),
        Some("did you mean 'vrrp_instance'?")
    );
}

#[test]
fn unknown_block_inside_checker_is_skipped() {
    // keepalived 2.2.7 would apply `connect_port 81` to the TCP_CHECK and let the
    // block's `}` close it; rvs skips the unknown block (documented difference).
    let l = parse(&format!(
        "{VS_HEAD} real_server 10.0.0.2 80 {{\n  TCP_CHECK {{\n   bogus_block {{\n    connect_port 81\n   }}\n   connect_timeout 4\n  }}\n }}\n}}\n"
    ));
    assert_eq!(
        msgs(&l),
        ["6:4 unknown keyword 'bogus_block' in TCP_CHECK; its block is skipped"]
    );
    let c = l.config.virtual_servers[0].real_servers[0].checkers[0]
        .common()
        .unwrap()
        .clone();
    assert_eq!(
        (c.connect_port, c.connect_timeout),
        (80, Duration::from_secs(4))
    );
}

#[test]
fn weights_and_script_forms() {
    let l = parse(&format!(
        "{VS_HEAD} real_server 10.0.0.2 80 {{\n  weight -1\n  notify_up /bin/up.sh root\n  MISC_CHECK {{\n   misc_path /bin/check.sh --flag x\n   misc_dynamic\n   user nobody\n  }}\n }}\n}}\n"
    ));
    assert_eq!(msgs(&l), ["5:10 number '-1' outside range [0, 65535]"]);
    let rs = &l.config.virtual_servers[0].real_servers[0];
    assert_eq!(rs.weight, 1);
    let up = rs.notify_up.as_ref().unwrap();
    assert_eq!(
        (up.command.as_str(), up.user.as_deref()),
        ("/bin/up.sh", Some("root"))
    );
    let Checker::Misc(m) = &rs.checkers[0] else {
        panic!()
    };
    assert_eq!(m.misc_path.argv, ["/bin/check.sh", "--flag", "x"]);
    assert!(m.misc_dynamic);
    assert_eq!(m.user.as_ref().unwrap().user, "nobody");
}

#[test]
fn script_security() {
    let src = "vrrp_script chk {\n script \"/bin/sh -c true\"\n}\nvrrp_instance V {\n virtual_router_id 1\n track_script {\n  chk\n }\n}\n";
    let l = parse(src);
    assert_eq!(
        msgs(&l),
        ["0:0 SECURITY VIOLATION - scripts are being executed but script_security not enabled."]
    );
    assert_eq!(l.config_test_exit_code(), 6);
    let l = parse(&format!(
        "global_defs {{\n enable_script_security\n}}\n{src}"
    ));
    assert!(l.diagnostics.is_empty(), "{:?}", msgs(&l));
    // missing programs are not executed, so no violation
    let l = parse("vrrp_instance V {\n virtual_router_id 1\n notify_master /nonexistent/x.sh\n}\n");
    assert_eq!(l.config_test_exit_code(), 0);
}

#[test]
fn one_keyword_per_line() {
    let l = parse(&format!(
        "{VS_HEAD} real_server 10.0.0.2 80 {{\n  HTTP_GET {{\n   url {{ path / status_code 500 }}\n   connect_timeout 3 bogus 4\n  }}\n }}\n}}\n"
    ));
    assert_eq!(
        msgs(&l),
        [
            "6:17 extra parameters after 'path' ignored: status_code 500",
            "7:22 extra parameters after 'connect_timeout' ignored: bogus 4"
        ]
    );
    assert_eq!(
        l.config_test_exit_code(),
        0,
        "keepalived accepts this silently"
    );
    let Checker::Http(h) = &l.config.virtual_servers[0].real_servers[0].checkers[0] else {
        panic!()
    };
    assert_eq!(
        h.urls[0].status_code,
        [(200, 299)],
        "status_code on the path line is ignored, as in keepalived"
    );
    assert_eq!(h.common.connect_timeout, Duration::from_secs(3));
}

#[test]
fn virtualhost_inheritance() {
    let l = parse("virtual_server 10.0.0.1 80 {\n lb_algo rr\n lb_kind NAT\n virtualhost vs.example\n real_server 10.0.0.2 80 {\n  HTTP_GET { url { path / } }\n }\n real_server 10.0.0.3 80 {\n  virtualhost rs.example\n  SSL_GET { url { path / } }\n }\n}\n");
    assert!(l.diagnostics.is_empty(), "{:?}", msgs(&l));
    let vh: Vec<Option<String>> = l.config.virtual_servers[0]
        .real_servers
        .iter()
        .map(|r| match &r.checkers[0] {
            Checker::Http(h) | Checker::Ssl(h) => h.virtualhost.clone(),
            _ => None,
        })
        .collect();
    assert_eq!(
        vh,
        [
            Some("vs.example".to_string()),
            Some("rs.example".to_string())
        ]
    );
}

/// `include` of what keepalived 2.2.7 skips (a directory, a FIFO, a device,
/// an executable): a warning with keepalived's text, the rest of the file is
/// read, and nothing blocks or grows.
#[test]
fn include_of_non_regular_files_is_skipped_with_keepalived_warning() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo.conf");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo on a NUL-terminated path in our temp dir.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    fs::create_dir(dir.path().join("sub.conf")).unwrap();
    let main = dir.path().join("k.conf");
    fs::write(
        &main,
        "include /dev/zero\ninclude fifo.conf\ninclude *.conf\n\
         vrrp_instance A { virtual_router_id 1 }\n",
    )
    .unwrap();
    let t = std::time::Instant::now();
    let l = load(&main, &opts()).unwrap();
    assert!(t.elapsed() < std::time::Duration::from_secs(10));
    assert_eq!(l.config.vrrp_instances.len(), 1);
    let msgs: Vec<String> = l
        .diagnostics
        .iter()
        .filter(|d| d.message.starts_with("Configuration file"))
        .map(|d| {
            assert_eq!(d.severity, Severity::Warning, "{d}");
            assert_eq!(d.class, ConfigErr::Ok, "{d}");
            d.message.replace(&*dir.path().to_string_lossy(), "D")
        })
        .collect();
    assert_eq!(
        msgs,
        [
            "Configuration file '/dev/zero' is not a regular non-executable file - skipping",
            "Configuration file 'D/fifo.conf' is not a regular non-executable file - skipping",
            // *.conf: the FIFO again, k.conf (an include loop), the directory
            "Configuration file 'D/fifo.conf' is not a regular non-executable file - skipping",
            "Configuration file 'D/sub.conf' is a directory - skipping",
        ]
    );
    assert_eq!(l.config_test_exit_code(), 5, "the include loop is an error");

    // includer / includea: keepalived's INCLUDE_R makes it fatal.
    fs::write(&main, "includer /dev/zero\n").unwrap();
    let e = load(&main, &opts()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "Configuration file '/dev/zero' is not a regular non-executable file - skipping"
    );
    assert_eq!(e.config_test_exit_code(), 6);

    // An executable file is skipped too (keepalived: "non-executable").
    use std::os::unix::fs::PermissionsExt;
    let x = dir.path().join("x.inc");
    fs::write(&x, "vrrp_instance B { virtual_router_id 2 }\n").unwrap();
    fs::set_permissions(&x, fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(&main, "include x.inc\n").unwrap();
    let l = load(&main, &opts()).unwrap();
    assert!(l.config.vrrp_instances.is_empty());
    assert!(l.diagnostics.iter().any(|d| d
        .message
        .ends_with("is not a regular non-executable file - skipping")));
}

/// `/proc/self/*` holds files that say they are regular with size 0 and are
/// huge (`pagemap`): every read stops at the per-file cap, so the load
/// returns promptly and bounded.
#[test]
fn include_of_proc_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("k.conf");
    fs::write(
        &main,
        "include /proc/self/*\nvrrp_instance A { virtual_router_id 1 }\n",
    )
    .unwrap();
    let t = std::time::Instant::now();
    let l = load(&main, &opts()).unwrap();
    assert!(
        t.elapsed() < std::time::Duration::from_secs(60),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(l.config.vrrp_instances.len(), 1);
    let too_big = l
        .diagnostics
        .iter()
        .find(|d| d.message.contains("pagemap"))
        .expect("pagemap diagnostic");
    assert!(
        too_big.message.contains("is larger than 16 MiB - skipping"),
        "{too_big}"
    );
    assert!(too_big.is_error());
}

#[test]
fn main_file_must_be_a_bounded_regular_file() {
    let e = load(Path::new("/dev/zero"), &opts()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "Configuration file '/dev/zero' is not a regular non-executable file - skipping"
    );
    assert_eq!(e.config_test_exit_code(), 0, "as keepalived -t");
    assert_eq!(e.daemon_exit_code(), 6);
    let dir = tempfile::tempdir().unwrap();
    let e = load(dir.path(), &opts()).unwrap_err();
    assert!(e.to_string().ends_with("is a directory - skipping"), "{e}");
    let big = dir.path().join("big.conf");
    let f = fs::File::create(&big).unwrap();
    f.set_len(MAX_FILE_BYTES + 1).unwrap(); // sparse
    let e = load(&big, &opts()).unwrap_err();
    assert!(e.to_string().contains("is larger than 16 MiB"), "{e}");
    assert_eq!(e.config_test_exit_code(), 4);
}
