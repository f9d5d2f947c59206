//! Every error message of the reference (ipvsadm.md §3–§13, §15.8), with
//! its exact stderr text and exit status.

mod common;
use common::*;
use rvs_api::{ApiError, Command, ErrorCode};
use rvsadm::backend::{BackendError, FakeBackend};

const TRY: &str = "Try `rvsadm -h' or 'rvsadm --help' for more information.\n";

fn check(be: &mut FakeBackend, args: &[&str], stderr: &str, code: i32) {
    let o = run(be, args);
    assert_eq!(
        (o.stderr.as_str(), o.code),
        (stderr, code),
        "rvsadm {}",
        args.join(" ")
    );
    assert_eq!(o.stdout, "", "stdout of {args:?}");
}

/// Validation errors never reach the backend.
fn parse_err(args: &[&str], msg: &str, code: i32) {
    let mut be = FakeBackend::default();
    let want = if msg.is_empty() || msg.ends_with('\n') {
        msg.to_string()
    } else {
        format!("{msg}\n")
    };
    check(&mut be, args, &want, code);
    assert!(
        be.log.is_empty(),
        "{args:?} reached the backend: {:?}",
        be.log
    );
}

#[test]
fn reference_15_8_table() {
    parse_err(
        &["-A", "-t", "10.0.0.1:80", "-m"],
        "Illegal 'forwarding-method' option with the 'add-service' command",
        2,
    );
    parse_err(&["-A", "-t", "10.0.0.1:80", "-L"], "invalid option `-L'", 2);
    parse_err(
        &["-A", "-t", "10.0.0.1:99999"],
        "illegal virtual server address[:port] specified",
        2,
    );
    parse_err(
        &["-A", "-t", "10.0.0.1", "-s", "rr"],
        "Zero port specified for non-persistent service",
        2,
    );
    parse_err(
        &["-A", "-t", "10.0.0.1:80", "-o"],
        "One-Packet Scheduling is only for UDP virtual services",
        2,
    );
    parse_err(
        &["-A", "-t", "10.0.0.1:80", "-p", "0"],
        "invalid timeout value `0' specified",
        2,
    );
    parse_err(
        &["-A", "-t", "10.0.0.1:80", "-p", "abc"],
        "invalid timeout value `abc' specified",
        2,
    );
    parse_err(&["-A", "-6", "-f", "1"], "-6 used before -f\n\n", 2);
    parse_err(
        &["-A"],
        "You need to supply the 'service-address' option for the 'add-service' command",
        2,
    );
    parse_err(
        &["-a", "-t", "10.0.0.1:80", "-r", "10.0.0.2", "-m", "-g"],
        "multiple 'forwarding-method' options specified",
        2,
    );
    parse_err(
        &["-a", "-t", "10.0.0.1:80", "-r", "[2001:db8::2]:80", "-m"],
        "Different address family is allowed only for tunneling servers",
        2,
    );
    parse_err(
        &["-L", "-n", "-c", "-t", "10.0.0.1:80"],
        "The option 'service-address' conflicts with the 'connection' option in the 'list' command",
        2,
    );
    parse_err(
        &["-L", "-c", "--stats"],
        "options conflicts in the list command",
        2,
    );
    for a in [
        &["-n", "-L"][..],
        &["-nL"],
        &["foo"],
        &["--foo"],
        &["-t", "x"],
        &["-w", "1"],
    ] {
        parse_err(a, TRY, 255);
    }
    parse_err(&["-L", "--foo"], "--foo: unknown option", 255);
    parse_err(&["-A", "-t"], "-t: missing argument", 255);
    parse_err(
        &["--set", "1", "2"],
        "--set option requires 3 timeout values",
        2,
    );
    parse_err(&["--set", "1", "2", "3", "4"], "unexpected argument 4", 2);
    parse_err(&["--set", "1", "2", "-1"], "-1: unknown option", 255);
    parse_err(&["-L", "-h"], "invalid option `-h'", 2);
    parse_err(&["-w", "-1"], TRY, 255);
    parse_err(
        &["-a", "-t", "10.0.0.1:80", "-r", "10.0.0.2", "-w", "-1"],
        "illegal weight specified",
        2,
    );
    parse_err(
        &["-a", "-t", "10.0.0.1:80", "-r", "10.0.0.2", "-w", "70000"],
        "illegal weight specified",
        2,
    );

    let mut be = FakeBackend::default();
    check(
        &mut be,
        &["-L", "-n", "-t", "10.0.0.9:80"],
        "No such service\n",
        1,
    );
}

#[test]
fn start_up_and_first_option() {
    parse_err(
        &["--start-daemon", "foo"],
        "illegal start-daemon parameter specified",
        2,
    );
    parse_err(
        &["--stop-daemon", "foo"],
        "illegal start_daemon specified",
        2,
    );
    parse_err(&["--start-daemon"], TRY, 255);
    parse_err(&["-L", "-v"], "invalid option `-v'", 2);
    parse_err(&["-Lh"], "invalid option `-Lh'", 2);
    parse_err(&["-L", "-C"], "invalid option `-C'", 2);
    // popt reports the last word consumed: the argument of --start-daemon.
    parse_err(
        &["-L", "--start-daemon", "master"],
        "invalid option `master'",
        2,
    );
    parse_err(
        &["-L", "--numeric=1"],
        "--numeric=1: option does not take an argument",
        255,
    );
    parse_err(&["-Lq"], "-Lq: unknown option", 255);
    parse_err(&["-L", "foo"], "unexpected argument foo", 2);
    parse_err(&["foo", "-L", "-n", "bar"], "unexpected argument foo", 2);
    parse_err(
        &["-L", "-n", "-n"],
        "multiple 'numeric' options specified",
        2,
    );
}

#[test]
fn per_option_messages() {
    let svc = ["-A", "-t", "10.0.0.1:80"];
    let with = |extra: &[&str]| -> Vec<String> {
        svc.iter()
            .chain(extra.iter())
            .map(|s| s.to_string())
            .collect()
    };
    let e = |a: Vec<String>, m: &str| {
        let v: Vec<&str> = a.iter().map(String::as_str).collect();
        parse_err(&v, m, 2);
    };
    e(
        with(&["-M", "foo.invalid."]),
        "illegal virtual server persistent mask specified",
    );
    parse_err(
        &["-A", "-t", "[2001:db8::1]:80", "-M", "129"],
        "illegal ipv6 netmask specified",
        2,
    );
    parse_err(
        &["-A", "-t", "[2001:db8::1]:80", "-M", "0"],
        "illegal ipv6 netmask specified",
        2,
    );
    parse_err(&["-A", "-f", "0"], "invalid fwmark value `0' specified", 2);
    parse_err(
        &["-A", "-f", "4294967296"],
        "invalid fwmark value `4294967296' specified",
        2,
    );
    parse_err(
        &["-A", "-f", "1x"],
        "invalid fwmark value `1x' specified",
        2,
    );
    parse_err(
        &["-A", "-t", "80"],
        "illegal virtual server address[:port] specified",
        2,
    );
    parse_err(
        &["-A", "-t", "10.0.0.1:http"],
        "illegal virtual server address[:port] specified",
        2,
    );
    parse_err(
        &["-A", "-u", "[2001:db8::1]"],
        "illegal virtual server address[:port] specified",
        2,
    );
    parse_err(
        &["-a", "-t", "10.0.0.1:80", "-r", "[2001:db8::2]"],
        "illegal real server address[:port] specified",
        2,
    );
    parse_err(
        &["-a", "-t", "10.0.0.1:80", "-r", "nohost.invalid."],
        "illegal real server address[:port] specified",
        2,
    );
    parse_err(
        &[
            "-a",
            "-t",
            "10.0.0.1:80",
            "-r",
            "10.0.0.2",
            "-x",
            "2147483648",
        ],
        "illegal u_threshold specified",
        2,
    );
    parse_err(
        &["-a", "-t", "10.0.0.1:80", "-r", "10.0.0.2", "-y", "x"],
        "illegal l_threshold specified",
        2,
    );
    parse_err(
        &["--start-daemon", "master", "--syncid", "256"],
        "illegal syncid specified",
        2,
    );
    parse_err(
        &["--start-daemon", "master", "--mcast-group", "ff02::1::2"],
        "invalid IPv6 mcast-group `ff02::1::2'",
        2,
    );
    parse_err(
        &["--start-daemon", "master", "--mcast-group", "2001:db8::1"],
        "invalid IPv6 mcast-group `2001:db8::1'",
        2,
    );
    parse_err(
        &["--start-daemon", "master", "--mcast-group", "10.0.0.1"],
        "invalid IPv4 mcast-group `10.0.0.1'",
        2,
    );
    parse_err(
        &["--start-daemon", "master", "--mcast-port", "0"],
        "illegal mcast-port specified",
        2,
    );
    parse_err(
        &["--start-daemon", "master", "--mcast-ttl", "256"],
        "illegal mcast-ttl specified",
        2,
    );
    parse_err(
        &["--start-daemon", "master", "--sync-maxlen", "65508"],
        "illegal sync-maxlen specified",
        2,
    );
    parse_err(
        &[
            "-a",
            "-t",
            "10.0.0.1:80",
            "-r",
            "10.0.0.2",
            "-i",
            "--tun-type",
            "vxlan",
        ],
        "illegal tunnel type specified",
        2,
    );
    parse_err(
        &[
            "-a",
            "-t",
            "10.0.0.1:80",
            "-r",
            "10.0.0.2",
            "-i",
            "--tun-port",
            "0",
        ],
        "illegal tunnel port specified",
        2,
    );
    e(
        with(&["-s", "rr", "-b", "sh-port"]),
        "incompatible scheduler flag `sh-port'",
    );
    e(
        with(&["-b", "mh-fallback"]),
        "incompatible scheduler flag `mh-fallback'",
    );
    e(
        with(&["-s", "sh", "-b", "sh-port,bogus"]),
        "invalid scheduler flag `bogus'",
    );
    e(with(&["-b", ","]), "invalid scheduler flag `'");
    parse_err(
        &[
            "-a",
            "-t",
            "10.0.0.1:80",
            "-r",
            "10.0.0.2",
            "-m",
            "--tun-type",
            "gue",
        ],
        "Tunnel options conflict with forward method",
        2,
    );
    parse_err(
        &[
            "-a",
            "-t",
            "10.0.0.1:80",
            "-r",
            "10.0.0.2",
            "-i",
            "--tun-type",
            "gue",
        ],
        "You need to supply the 'tun-port' option for the 'gue' tunnel type",
        2,
    );
    parse_err(
        &[
            "-a",
            "-t",
            "10.0.0.1:80",
            "-r",
            "10.0.0.2",
            "-i",
            "--tun-port",
            "6080",
        ],
        "Illegal 'tun-port' option with the 'ipip' tunnel type",
        2,
    );
    parse_err(
        &[
            "-a",
            "-t",
            "10.0.0.1:80",
            "-r",
            "10.0.0.2",
            "-i",
            "--tun-type",
            "gre",
            "--tun-remcsum",
        ],
        "Illegal 'tun-remcsum' option with the 'gre' tunnel type",
        2,
    );
    parse_err(
        &[
            "-a",
            "-t",
            "10.0.0.1:80",
            "-r",
            "10.0.0.2",
            "-i",
            "--tun-type",
            "gue",
            "--tun-port",
            "1",
            "--tun-csum",
            "--tun-nocsum",
        ],
        "The option 'tun-csum' conflicts with the 'tun-nocsum' option in the 'gue' tunnel type",
        2,
    );
    parse_err(
        &["-a", "-t", "1.2.3.4:80"],
        "You need to supply the 'real-server' option for the 'add-server' command",
        2,
    );
    parse_err(
        &["-L", "-w", "1"],
        "Illegal 'weight' option with the 'list' command",
        2,
    );
    parse_err(
        &["-S", "--nosort"],
        "Illegal 'nosort' option with the 'save' command",
        2,
    );
    parse_err(
        &["-C", "-n"],
        "Illegal 'numeric' option with the 'flush' command",
        2,
    );
    parse_err(
        &["-R", "-n"],
        "Illegal 'numeric' option with the 'restore' command",
        2,
    );
    parse_err(
        &["-Z", "-n"],
        "Illegal 'numeric' option with the 'zero' command",
        2,
    );
    parse_err(
        &["--set", "1", "2", "3", "-n"],
        "Illegal 'numeric' option with the 'set' command",
        2,
    );
    parse_err(
        &["--set", "1", "2", "2678401"],
        "invalid timeout value `2678401' specified",
        2,
    );
    parse_err(
        &["-L", "--timeout", "--daemon"],
        "The option 'daemon' conflicts with the 'timeout' option in the 'list' command",
        2,
    );
    parse_err(
        &["-L", "--daemon", "--persistent-conn"],
        "options conflicts in the list command",
        2,
    );
    // Index order, not command-line order: 'scheduler' (3) before 'numeric'? no:
    // numeric (0) is checked first.
    parse_err(
        &["-D", "-s", "rr", "-n", "-t", "1.2.3.4:80"],
        "Illegal 'numeric' option with the 'delete-service' command",
        2,
    );
}

fn api(code: ErrorCode) -> BackendError {
    BackendError::Api(ApiError::new(code, "detail"))
}

#[test]
fn kernel_errors_exit_255() {
    let mut be = FakeBackend::default();
    ok(&mut be, &["-A", "-t", "10.0.0.1:80"]);
    check(
        &mut be,
        &["-A", "-t", "10.0.0.1:80"],
        "Service already exists\n",
        255,
    );
    check(
        &mut be,
        &["-A", "-t", "10.0.0.2:80", "-s", "foo"],
        "Scheduler or persistence engine not found\n",
        255,
    );
    check(
        &mut be,
        &["-A", "-t", "10.0.0.2:80", "--pe", "foo"],
        "Scheduler or persistence engine not found\n",
        255,
    );
    check(
        &mut be,
        &["-E", "-t", "10.0.0.1:80", "-s", "foo"],
        "Scheduler or persistence engine not found\n",
        255,
    );
    check(
        &mut be,
        &["-E", "-t", "10.0.0.9:80"],
        "No such service\n",
        255,
    );
    check(
        &mut be,
        &["-D", "-t", "10.0.0.9:80"],
        "No such service\n",
        255,
    );
    check(
        &mut be,
        &["-Z", "-t", "10.0.0.9:80"],
        "No such service\n",
        255,
    );
    check(
        &mut be,
        &["-a", "-t", "10.0.0.9:80", "-r", "10.0.0.2"],
        "Service not defined\n",
        255,
    );
    check(
        &mut be,
        &["-e", "-t", "10.0.0.9:80", "-r", "10.0.0.2"],
        "Service not defined\n",
        255,
    );
    check(
        &mut be,
        &["-d", "-t", "10.0.0.9:80", "-r", "10.0.0.2"],
        "Service not defined\n",
        255,
    );
    ok(&mut be, &["-a", "-t", "10.0.0.1:80", "-r", "10.0.0.2"]);
    check(
        &mut be,
        &["-a", "-t", "10.0.0.1:80", "-r", "10.0.0.2"],
        "Destination already exists\n",
        255,
    );
    check(
        &mut be,
        &["-e", "-t", "10.0.0.1:80", "-r", "10.0.0.3"],
        "No such destination\n",
        255,
    );
    check(
        &mut be,
        &["-d", "-t", "10.0.0.1:80", "-r", "10.0.0.3"],
        "No such destination\n",
        255,
    );
    check(
        &mut be,
        &[
            "-a",
            "-t",
            "10.0.0.1:80",
            "-r",
            "10.0.0.4",
            "-x",
            "5",
            "-y",
            "10",
        ],
        "Invalid operation.  Possibly wrong module version, address not unicast, ...\n",
        255,
    );
    ok(&mut be, &["--start-daemon", "master"]);
    check(
        &mut be,
        &["--start-daemon", "master"],
        "Daemon has already run\n",
        255,
    );
    check(
        &mut be,
        &["--stop-daemon", "backup"],
        "No daemon is running\n",
        255,
    );

    // "any operation" rows and the strerror fallback.
    for (code, msg) in [
        (ErrorCode::Perm, "Permission denied (you must be root)"),
        (ErrorCode::NoMem, "Memory allocation problem"),
        (ErrorCode::OpNotSupp, "Operation not supported with IPv6"),
        (
            ErrorCode::AfNoSupport,
            "Operation not supported with specified address family",
        ),
        (ErrorCode::Exist, "File exists"),
    ] {
        let mut be = FakeBackend {
            fail_all: Some(api(code)),
            ..Default::default()
        };
        check(&mut be, &["-C"], &format!("{msg}\n"), 255);
    }
}

#[test]
fn listing_failures_exit_1() {
    let mut be = FakeBackend {
        fail_all: Some(api(ErrorCode::Perm)),
        ..Default::default()
    };
    check(&mut be, &["-L", "--timeout"], "", 1);
    check(&mut be, &["-L", "--daemon"], "", 1);
    check(
        &mut be,
        &["-Ln", "-t", "1.2.3.4:80"],
        "Permission denied (you must be root)\n",
        1,
    );
    let o = run(&mut be, &["-Lnc"]);
    assert_eq!(
        (o.code, o.stderr.as_str()),
        (1, "Permission denied (you must be root)\n")
    );
    let o = run(&mut be, &["-Sn"]);
    assert_eq!(
        (o.code, o.stderr.as_str()),
        (1, "Permission denied (you must be root)\n")
    );
    // A transport failure after connecting names rvsd.
    let mut be = FakeBackend {
        fail_all: Some(BackendError::Transport(
            "control socket /x: broken pipe".into(),
        )),
        ..Default::default()
    };
    check(
        &mut be,
        &["-C"],
        "rvsadm: control socket /x: broken pipe\n",
        255,
    );
}

#[test]
fn commands_sent_to_the_backend() {
    let mut be = FakeBackend::default();
    ok(&mut be, &["-A", "-t", "10.0.0.1:80", "-p"]);
    ok(&mut be, &["-a", "-t", "10.0.0.1:80", "-r", "10.0.0.2:8080"]);
    ok(&mut be, &["-E", "-t", "10.0.0.1:80"]);
    let s = &be.services[0];
    // -p alone = 360; -E without -s resets to wlc and clears persistence.
    assert_eq!(s.spec.scheduler, "wlc");
    assert_eq!(s.spec.flags, 0);
    assert_eq!(
        s.dests[0].spec.port, 80,
        "DR destination port forced to the service port"
    );
    match &be.log[0] {
        Command::AddService { spec } => {
            assert_eq!(
                (spec.timeout, spec.flags, spec.netmask),
                (360, 1, 0xffff_ffff)
            );
        }
        c => panic!("{c:?}"),
    }
    ok(
        &mut be,
        &["-a", "-t", "10.0.0.1:80", "-r", "10.0.0.3:8080", "-m"],
    );
    assert_eq!(be.services[0].dests[0].spec.port, 8080);
    ok(&mut be, &["-d", "-t", "10.0.0.1:80", "-r", "10.0.0.3:8080"]);
    ok(&mut be, &["-A", "-t", "10.0.0.1:81", "-p", "-M", "24"]);
    assert_eq!(be.services[1].spec.netmask, 24, "-M 24 is 0.0.0.24");
    ok(&mut be, &["-Z"]);
    assert_eq!(be.log.last(), Some(&Command::Zero { service: None }));
    ok(&mut be, &["-C"]);
    assert!(be.services.is_empty());
}
