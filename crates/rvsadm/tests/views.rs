//! Golden tests for every view: the reference's verified outputs (files
//! `golden/ref_*`, copied verbatim from ipvsadm.md §15) and the seed's.

mod common;
use common::*;
use rvs_api::{ConnInfo, FwdMethod, ServiceKey};
use rvsadm::backend::FakeBackend;
use rvsadm::resolve::MapResolver;
use std::net::IpAddr;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn dest_mut<'a>(be: &'a mut FakeBackend, svc: &str, d: &str) -> &'a mut rvs_api::DestInfo {
    let (sa, sp) = svc.rsplit_once(':').unwrap();
    let (da, dp) = d.rsplit_once(':').unwrap();
    let s = be
        .services
        .iter_mut()
        .find(|s| match s.spec.key {
            ServiceKey::Addr { addr, port, .. } => {
                addr == ip(sa.trim_matches(['[', ']'])) && port.to_string() == sp
            }
            _ => false,
        })
        .expect("service");
    s.dests
        .iter_mut()
        .find(|x| x.spec.addr == ip(da.trim_matches(['[', ']'])) && x.spec.port.to_string() == dp)
        .expect("dest")
}

const FIXTURE_A: &str = "\
-A -t 192.168.123.234:65535 -s lblcr -b flag-1,flag-2,flag-3
-a -t 192.168.123.234:65535 -r 192.168.123.235:65535 -g -w 65535
-A -t 10.0.0.1:80 -s wlc
-a -t 10.0.0.1:80 -r 10.0.0.2:8080 -m -w 3
-a -t 10.0.0.1:80 -r 10.0.0.3:80 -m -w 1
ipvsadm -A -u 10.0.0.1:53 -s rr -p 300 -M 255.255.255.0 -o
-a -u 10.0.0.1:53 -r 10.0.0.4:53 -g -w 1
-A --sctp-service 10.0.0.1:3868 -s sh -b sh-fallback,sh-port
-a --sctp-service 10.0.0.1:3868 -r 10.0.0.5:3868 -i -w 1 --tun-type gre --tun-csum
-A -t [2001:db8::1]:443 -s wlc -p 360 -M 64 --pe sip
-a -t [2001:db8::1]:443 -r [2001:db8::10]:443 -m -w 1
-A -f 1 -s mh -b mh-fallback
-a -f 1 -r 192.168.100.200:0 -m -w 1
-A -f 2 -6 -s rr -p 100
";

fn fixture_a() -> FakeBackend {
    let mut be = FakeBackend::default();
    let o = restore(&mut be, FIXTURE_A);
    assert_eq!((o.code, o.stderr.as_str(), o.stdout.as_str()), (0, "", ""));
    {
        let d = dest_mut(&mut be, "192.168.123.234:65535", "192.168.123.235:65535");
        d.spec.fwd = FwdMethod::Local;
        d.active_conns = u32::MAX;
    }
    dest_mut(&mut be, "10.0.0.1:80", "10.0.0.2:8080").active_conns = 1;
    {
        let d = dest_mut(&mut be, "10.0.0.1:80", "10.0.0.3:80");
        d.active_conns = 2;
        d.inact_conns = 5;
    }
    be
}

#[test]
fn ref_15_1_list_numeric() {
    let mut be = fixture_a();
    golden("ref_15_1_list_n.txt", &ok(&mut be, &["-L", "-n"]));
    // Clustered and long forms are the same command.
    golden("ref_15_1_list_n.txt", &ok(&mut be, &["-Ln"]));
    golden(
        "ref_15_1_list_n.txt",
        &ok(&mut be, &["--list", "--numeric"]),
    );
    golden("ref_15_1_list_n.txt", &ok(&mut be, &["-ln", "--sort"]));
}

#[test]
fn nosort_keeps_kernel_order() {
    let mut be = fixture_a();
    golden("list_nosort.txt", &ok(&mut be, &["-Ln", "--nosort"]));
}

#[test]
fn ref_15_3_thresholds_pconn_tuninfo() {
    let mut be = fixture_a();
    ok(
        &mut be,
        &[
            "-e",
            "-t",
            "10.0.0.1:80",
            "-r",
            "10.0.0.2:8080",
            "-m",
            "-w",
            "3",
            "-x",
            "100",
            "-y",
            "10",
        ],
    );
    dest_mut(&mut be, "10.0.0.1:80", "10.0.0.2:8080").active_conns = 1;
    dest_mut(&mut be, "10.0.0.1:53", "10.0.0.4:53").persist_conns = 3;
    ok(
        &mut be,
        &[
            "-a",
            "--sctp-service",
            "10.0.0.1:3868",
            "-r",
            "10.0.0.6",
            "-i",
            "-w",
            "2",
            "--tun-type",
            "gue",
            "--tun-port",
            "6080",
            "--tun-remcsum",
        ],
    );
    ok(
        &mut be,
        &[
            "-a",
            "--sctp-service",
            "10.0.0.1:3868",
            "-r",
            "10.0.0.7:3868",
            "-i",
            "-w",
            "2",
        ],
    );
    let th = ok(&mut be, &["-Ln", "--thresholds"]);
    let pc = ok(&mut be, &["-Ln", "--persistent-conn"]);
    let ti = ok(&mut be, &["-Ln", "--tun-info"]);
    golden_lines("ref_15_3_lines.txt", &format!("{th}{pc}{ti}"));
    golden("list_thresholds.txt", &th);
    golden("list_persistent_conn.txt", &pc);
    golden("list_tun_info.txt", &ti);
    // ...and they save back as in §15.4 (Local saved as -g, thresholds dropped).
    golden("save_after_tun.txt", &ok(&mut be, &["-S", "-n"]));
}

#[test]
fn ref_15_4_save_restore() {
    let text = std::fs::read_to_string(golden_path("ref_15_4_save_n.txt")).unwrap();
    let mut be = FakeBackend::default();
    let o = restore(&mut be, &text);
    assert_eq!((o.code, o.stderr.as_str()), (0, ""));
    golden("ref_15_4_save_n.txt", &ok(&mut be, &["-S", "-n"]));
    golden("ref_15_4_save_n.txt", &ok(&mut be, &["-Sn"]));
    // --save is the same; the table is unchanged by saving.
    golden(
        "ref_15_4_save_n.txt",
        &ok(&mut be, &["--save", "--numeric"]),
    );
}

fn fixture_stats() -> FakeBackend {
    let mut be = FakeBackend::default();
    ok(&mut be, &["-A", "-t", "10.0.0.1:80"]);
    ok(&mut be, &["-a", "-t", "10.0.0.1:80", "-r", "10.0.0.2"]);
    ok(&mut be, &["-A", "-t", "10.0.0.1:81", "-s", "rr"]);
    let s = &mut be.services[0];
    s.stats.conns = 99_999_999;
    s.stats.inpkts = 100_000_000;
    s.stats.outpkts = 999_999_999;
    s.stats.inbytes = 1_000_000_000;
    s.stats.outbytes = 99_999_999_999;
    let d = &mut s.dests[0];
    d.stats.conns = 100_000_000_000;
    d.stats.inpkts = 99_999_999_999_999;
    d.stats.outpkts = 100_000_000_000_000;
    d.stats.inbytes = u64::MAX;
    d.stats.outbytes = 0;
    d.rates.cps = 123_456_789;
    d.rates.inpps = 987_654_321;
    d.rates.outpps = 5;
    d.rates.inbps = 100_000_000;
    d.rates.outbps = 99_999_999;
    let r = &mut be.services[1].rates;
    r.cps = 123_456_789;
    r.inpps = 1;
    r.outpps = 2;
    r.inbps = 3;
    r.outbps = 4;
    be
}

#[test]
fn ref_15_2_stats_exact_rate() {
    let mut be = fixture_stats();
    let st = ok(&mut be, &["-Ln", "--stats"]);
    golden_lines("ref_15_2_stats_lines.txt", &st);
    golden("list_stats.txt", &st);
    let ex = ok(&mut be, &["-Ln", "--stats", "--exact"]);
    golden_lines("ref_15_2_exact_lines.txt", &ex);
    golden("list_stats_exact.txt", &ex);
    let rt = ok(&mut be, &["-Ln", "--rate"]);
    golden_lines("ref_15_2_rate_lines.txt", &rt);
    golden("list_rate.txt", &rt);
    // --stats wins over --rate; -X is --exact.
    assert_eq!(ok(&mut be, &["-Ln", "--rate", "--stats"]), st);
    assert_eq!(ok(&mut be, &["-LnX", "--stats"]), ex);
}

#[allow(clippy::too_many_arguments)]
fn conn(
    p: &str,
    c: &str,
    cp: u16,
    v: &str,
    vp: u16,
    d: &str,
    dp: u16,
    st: &str,
    exp: u64,
) -> ConnInfo {
    ConnInfo {
        protocol: p.into(),
        caddr: ip(c),
        cport: cp,
        vaddr: ip(v),
        vport: vp,
        daddr: ip(d),
        dport: dp,
        state: st.into(),
        expires: exp,
        template: false,
        pe_name: None,
        pe_data: None,
        origin: "Local".into(),
    }
}

#[test]
fn ref_15_5_connections() {
    let mut be = FakeBackend::default();
    let conns = vec![
        conn(
            "TCP",
            "192.168.0.5",
            51234,
            "10.0.0.1",
            80,
            "10.0.0.2",
            8080,
            "ESTABLISHED",
            898,
        ),
        conn(
            "TCP",
            "192.168.0.6",
            51235,
            "10.0.0.1",
            80,
            "10.0.0.3",
            80,
            "TIME_WAIT",
            59,
        ),
        conn(
            "UDP",
            "192.168.0.7",
            33333,
            "10.0.0.1",
            53,
            "10.0.0.4",
            53,
            "UDP",
            299,
        ),
        conn(
            "IP",
            "192.168.0.0",
            0,
            "0.0.0.1",
            0,
            "192.168.100.200",
            0,
            "NONE",
            6000,
        ),
        conn(
            "SCTP",
            "192.168.0.8",
            3356,
            "10.0.0.1",
            3868,
            "10.0.0.5",
            3868,
            "ESTABLISHED",
            100,
        ),
        conn(
            "TCP",
            "2001:db8::99",
            51236,
            "2001:db8::1",
            443,
            "2001:db8::10",
            443,
            "SYN_RECV",
            30,
        ),
    ];
    be.conns = conns;
    golden("ref_15_5_conn_n.txt", &ok(&mut be, &["-L", "-n", "-c"]));
    golden("ref_15_5_conn_n.txt", &ok(&mut be, &["-Lnc"]));
    // --exact has no effect on -c.
    golden("ref_15_5_conn_n.txt", &ok(&mut be, &["-Lnc", "--exact"]));

    let mut sip = conn(
        "UDP",
        "192.168.0.9",
        5060,
        "10.0.0.1",
        5060,
        "10.0.0.4",
        5060,
        "UDP",
        180,
    );
    sip.pe_name = Some("sip".into());
    sip.pe_data = Some("1234@example.com".into());
    be.conns = vec![sip];
    let pc = ok(&mut be, &["-Lnc", "--persistent-conn"]);
    golden_lines("ref_15_5_pconn_lines.txt", &pc);
    golden("conn_pconn.txt", &pc);
    // Without --persistent-conn the PE columns are not shown.
    golden("conn_pe_plain.txt", &ok(&mut be, &["-Lnc"]));
}

#[test]
fn ref_15_6_daemon_and_timeout() {
    let mut be = FakeBackend::default();
    assert_eq!(ok(&mut be, &["-L", "--daemon"]), "");
    ok(
        &mut be,
        &[
            "--start-daemon",
            "backup",
            "--mcast-interface",
            "eth1",
            "--syncid",
            "7",
            "--mcast-group",
            "ff02::1234",
        ],
    );
    ok(
        &mut be,
        &[
            "--start-daemon",
            "master",
            "--sync-maxlen",
            "1472",
            "--mcast-group",
            "224.0.0.81",
            "--mcast-port",
            "8848",
            "--mcast-ttl",
            "1",
        ],
    );
    golden("ref_15_6_daemon.txt", &ok(&mut be, &["-L", "--daemon"]));
    golden("ref_15_6_timeout.txt", &ok(&mut be, &["-L", "--timeout"]));
    ok(&mut be, &["--set", "0", "60", "0"]);
    assert_eq!(
        ok(&mut be, &["-L", "--timeout"]),
        "Timeout (tcp tcpfin udp): 900 60 300\n"
    );
    ok(&mut be, &["--stop-daemon", "master"]);
    assert_eq!(
        ok(&mut be, &["-L", "--daemon"]),
        "backup sync daemon (mcast=eth1, syncid=7, group=ff02::1234)\n"
    );
}

#[test]
fn ref_15_7_name_resolution() {
    let res = MapResolver::typical();
    let mut be = FakeBackend::default();
    for a in [
        &["-A", "-t", "localhost:www"][..],
        &[
            "-a",
            "-t",
            "localhost:http",
            "-r",
            "localhost:http-alt",
            "-m",
        ],
        &["-A", "-u", "[::1]:domain", "-s", "rr"],
        &["-a", "-u", "[::1]:53", "-r", "::1", "-m"],
    ] {
        let o = run_full(&mut be, &res, a, "");
        assert_eq!((o.code, o.stderr.as_str()), (0, ""), "{a:?}");
    }
    let l = run_full(&mut be, &res, &["-L"], "");
    golden_lines("ref_15_7_list_lines.txt", &l.stdout);
    golden("list_names.txt", &l.stdout);
    // No arguments at all = -L without -n.
    assert_eq!(run_full(&mut be, &res, &[], "").stdout, l.stdout);
    golden(
        "ref_15_7_save.txt",
        &run_full(&mut be, &res, &["-S"], "").stdout,
    );
    // -n wins.
    golden(
        "list_names_numeric.txt",
        &run_full(&mut be, &res, &["-Ln"], "").stdout,
    );
}

// ===== the seed's outputs =====

#[test]
fn seed_empty_list() {
    let mut be = FakeBackend::default();
    golden("seed_empty_ln.txt", &ok(&mut be, &["-Ln"]));
    assert_eq!(
        ok(&mut be, &["-Ln"]),
        "IP Virtual Server version 1.2.1 (size=4096)\nProt LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n"
    );
    assert_eq!(ok(&mut be, &["-Sn"]), "");
}

fn seed_table() -> FakeBackend {
    let mut be = FakeBackend::default();
    ok(&mut be, &["-A", "-t", "192.168.253.150:80", "-s", "rr"]);
    ok(
        &mut be,
        &[
            "-a",
            "-t",
            "192.168.253.150:80",
            "-r",
            "192.168.253.129:80",
            "-g",
        ],
    );
    ok(
        &mut be,
        &[
            "-a",
            "-t",
            "192.168.253.150:80",
            "-r",
            "192.168.253.148:80",
            "-g",
        ],
    );
    be
}

#[test]
fn seed_dr_persistent_listing() {
    let mut be = seed_table();
    ok(
        &mut be,
        &["-E", "-t", "192.168.253.150:80", "-s", "rr", "-p", "10"],
    );
    let l = ok(&mut be, &["-Ln"]);
    golden("seed_dr_persistent_ln.txt", &l);
    assert!(l.contains("TCP  192.168.253.150:80 rr persistent 10\n"));
    assert!(l.contains("  -> 192.168.253.129:80           Route   1      0          0         \n"));
    assert!(l.contains("  -> 192.168.253.148:80           Route   1      0          0         \n"));
    // The seed's -E … -p 5 and --set 1 1 1.
    ok(
        &mut be,
        &["-E", "-t", "192.168.253.150:80", "-s", "rr", "-p", "5"],
    );
    assert!(ok(&mut be, &["-Ln"]).contains("TCP  192.168.253.150:80 rr persistent 5\n"));
    ok(&mut be, &["--set", "1", "1", "1"]);
    assert_eq!(
        ok(&mut be, &["-L", "--timeout"]),
        "Timeout (tcp tcpfin udp): 1 1 1\n"
    );
    ok(&mut be, &["-C"]);
    golden("seed_empty_ln.txt", &ok(&mut be, &["-Ln"]));
}

#[test]
fn seed_stats_table() {
    let mut be = seed_table();
    let s = &mut be.services[0];
    s.stats.conns = 11;
    s.stats.inpkts = 333;
    s.stats.inbytes = 88323;
    for d in &mut s.dests {
        if d.spec.addr == ip("192.168.253.129") {
            d.stats.conns = 5;
            d.stats.inpkts = 236;
            d.stats.inbytes = 65528;
        } else {
            d.stats.conns = 6;
            d.stats.inpkts = 97;
            d.stats.inbytes = 22795;
        }
    }
    golden("seed_stats.txt", &ok(&mut be, &["-Ln", "--stats"]));
}

#[test]
fn seed_connection_line() {
    let mut be = seed_table();
    let mut t = conn(
        "TCP",
        "192.168.253.1",
        0,
        "192.168.253.150",
        80,
        "192.168.253.148",
        80,
        "NONE",
        5,
    );
    t.template = true;
    be.conns = vec![t];
    let out = ok(&mut be, &["-Lnc"]);
    golden("seed_lnc.txt", &out);
    assert!(out.ends_with(
        "pro expire state       source             virtual            destination\nTCP 00:05  NONE        192.168.253.1:0    192.168.253.150:80 192.168.253.148:80\n"
    ));
}

// ===== other views =====

#[test]
fn single_service_listing_has_no_banner() {
    let mut be = fixture_a();
    golden(
        "list_single.txt",
        &ok(&mut be, &["-L", "-n", "-t", "10.0.0.1:80"]),
    );
    golden(
        "list_single_fwm.txt",
        &ok(&mut be, &["-Ln", "-f", "1", "--stats"]),
    );
}

#[test]
fn help_and_version() {
    let mut be = FakeBackend::default();
    let h = ok(&mut be, &["-h"]);
    golden("help.txt", &h);
    assert_eq!(h.lines().count(), 82);
    assert!(h.contains("  rvsadm -A|E virtual-service"));
    assert_eq!(ok(&mut be, &["--help"]), h);
    let v = ok(&mut be, &["-v"]);
    assert_eq!(
        v,
        "ipvsadm v1.31 2019/12/24 (compiled with popt and IPVS v1.2.1)\n"
    );
    assert_eq!(ok(&mut be, &["--version"]), v);
    // -h/-v take effect before anything else is checked.
    assert_eq!(ok(&mut be, &["-h", "--bogus"]), h);
    assert!(be.log.is_empty());
}

#[test]
fn json_views() {
    let mut be = fixture_a();
    let j = ok(&mut be, &["-Ln", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&j).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 7);
    let t: rvs_api::Timeouts =
        serde_json::from_str(&ok(&mut be, &["-L", "--timeout", "--json"])).unwrap();
    assert_eq!(t.tcp, 900);
    let o = run(&mut be, &["-A", "-t", "1.2.3.4:80", "--json"]);
    assert_eq!(
        (o.code, o.stderr.as_str()),
        (2, "Illegal 'json' option with the 'add-service' command\n")
    );
}

#[test]
fn version_mismatch_warning() {
    let mut info = FakeBackend::default().info;
    assert_eq!(rvsadm::format::version_warning(&info), None);
    info.version = 0x010103;
    assert_eq!(
        rvsadm::format::version_warning(&info).unwrap(),
        "Warning: IPVS version mismatch: \n  Kernel compiled with IPVS version 1.1.3\n  ipvsadm v1.31  requires minimum IPVS version 1.1.4\n\n"
    );
}

#[test]
fn wrapping_sort_quirk_and_merge_order() {
    // 10.0.0.1 sorts after 200.0.0.1 (difference > 2^31), but addresses in
    // the same /1 half sort numerically.
    let mut be = FakeBackend::default();
    for a in [
        "10.0.0.1:80",
        "200.0.0.1:80",
        "10.0.0.2:80",
        "9.0.0.1:80",
        "127.0.0.1:80",
    ] {
        ok(&mut be, &["-A", "-t", a]);
    }
    let s = ok(&mut be, &["-Sn"]);
    golden("save_sort_quirk.txt", &s);
}

#[test]
fn long_names_are_cut_in_listings_only() {
    let mut res = MapResolver::typical();
    res.names.insert(
        ip("10.1.1.1"),
        "a-very-long-virtual-host-name.example.com".into(),
    );
    res.names.insert(
        ip("10.1.1.2"),
        "a-very-long-real-server-name.example.com".into(),
    );
    res.names.insert(
        ip("2001:db8::5"),
        "an-ipv6-host-with-a-long-name.example.com".into(),
    );
    let mut be = FakeBackend::default();
    for a in [
        &["-A", "-t", "10.1.1.1:80"][..],
        &["-a", "-t", "10.1.1.1:80", "-r", "10.1.1.2"],
        &["-A", "-t", "[2001:db8::5]:80"],
        &["-a", "-t", "[2001:db8::5]:80", "-r", "2001:db8::5"],
    ] {
        assert_eq!(run_full(&mut be, &res, a, "").code, 0, "{a:?}");
    }
    let l = run_full(&mut be, &res, &["-L"], "").stdout;
    assert!(l.contains("TCP  a-very-long-virtual-host-nam wlc\n"), "{l}");
    assert!(
        l.contains("  -> a-very-long-real-server-name Route   1      0          0         \n"),
        "{l}"
    );
    assert!(
        l.contains("TCP  [an-ipv6-host-with-a-long-name.example.com]:http wlc\n"),
        "{l}"
    );
    golden("list_long_names.txt", &l);
    let s = run_full(&mut be, &res, &["-S"], "").stdout;
    assert!(s.contains("-a -t a-very-long-virtual-host-name.example.com:http -r a-very-long-real-server-name.example.com:http -g -w 1\n"), "{s}");
}

#[test]
fn conn_sync_view_marks_origin() {
    let mut be = FakeBackend::default();
    let mut synced = conn(
        "TCP",
        "198.18.0.2",
        52582,
        "198.18.0.100",
        80,
        "198.18.0.22",
        80,
        "ESTABLISHED",
        899,
    );
    synced.origin = "Sync".into();
    be.conns = vec![
        synced,
        conn(
            "UDP",
            "198.18.0.3",
            53,
            "198.18.0.100",
            53,
            "198.18.0.21",
            53,
            "UDP",
            12,
        ),
        conn(
            "TCP",
            "2001:2::2",
            40000,
            "2001:2::100",
            443,
            "2001:2::21",
            443,
            "SYN_RECV",
            30,
        ),
    ];
    golden("conn_sync.txt", &ok(&mut be, &["--conn-sync"]));
    let o = run(&mut be, &["--conn-sync", "-n"]);
    assert_eq!(o.code, 2);
    assert!(
        o.stderr.contains("unexpected argument '-n'"),
        "{}",
        o.stderr
    );
}

#[test]
fn sysctl_view_lists_reads_and_sets() {
    let mut be = FakeBackend::default();
    assert_eq!(
        ok(&mut be, &["--sysctl"]),
        "net.ipv4.vs.backup_only = 0\nnet.ipv4.vs.sync_threshold = 3\t50\n"
    );
    assert_eq!(
        ok(&mut be, &["--sysctl", "net.ipv4.vs.backup_only=1"]),
        "net.ipv4.vs.backup_only = 1\n"
    );
    assert_eq!(
        ok(&mut be, &["--sysctl", "backup_only"]),
        "net.ipv4.vs.backup_only = 1\n"
    );
    let o = run(&mut be, &["--sysctl", "nope"]);
    assert_eq!(o.code, 1);
    assert!(
        o.stderr.contains("unknown IPVS sysctl 'nope'"),
        "{}",
        o.stderr
    );
    let o = run(&mut be, &["--sysctl", "nope=1"]);
    assert_eq!(o.code, 1);
    assert!(
        o.stderr.contains("unknown IPVS sysctl 'nope'"),
        "{}",
        o.stderr
    );
}
