//! The real binary: behaviour without a reachable rvsd.

use std::process::Command;

fn rvsadm(args: &[&str]) -> (i32, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_rvsadm"))
        .args(args)
        .env("RVS_SOCKET", "/nonexistent/rvs-test/rvsd.sock")
        .output()
        .expect("run rvsadm");
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn no_daemon_is_one_line_and_exit_2() {
    for args in [
        &[][..],
        &["-Ln"],
        &["-A", "-t", "10.0.0.1:80"],
        &["--bogus"],
    ] {
        let (code, out, err) = rvsadm(args);
        assert_eq!(code, 2, "{args:?}");
        assert_eq!(out, "");
        assert!(
            err.starts_with("rvsadm: cannot connect to rvsd at /nonexistent/rvs-test/rvsd.sock (is rvsd running? start it with: rvsd -f FILE)"),
            "{err}"
        );
        assert!(err.ends_with('\n') && err.lines().count() == 1, "{err:?}");
    }
}

#[test]
fn help_and_version_work_without_daemon() {
    let (code, out, err) = rvsadm(&["-h"]);
    assert_eq!((code, err.as_str()), (0, ""));
    assert_eq!(out.lines().count(), 82);
    assert!(out
        .starts_with("ipvsadm v1.31 2019/12/24 (compiled with popt and IPVS v1.2.1)\nUsage:\n  "));
    let (code, out, _) = rvsadm(&["--version"]);
    assert_eq!(
        (code, out.as_str()),
        (
            0,
            "ipvsadm v1.31 2019/12/24 (compiled with popt and IPVS v1.2.1)\n"
        )
    );
}
