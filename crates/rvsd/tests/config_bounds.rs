//! `rvsd -t -f FILE` whose includes keepalived would not read (a FIFO,
//! `/dev/zero`) or that never end (`/proc/self/*`): it returns promptly
//! with keepalived's warning or a size diagnostic, instead of blocking or
//! growing without bound.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `rvsd -t -f main` where main is `text`: (exit status, stderr). Killed
/// (and the test failed) if it has not finished after 60 s.
fn config_test(dir: &Path, text: &str) -> (i32, String) {
    let main = dir.join("keepalived.conf");
    std::fs::write(&main, text).expect("write config");
    let err = dir.join("stderr");
    let mut child = Command::new(env!("CARGO_BIN_EXE_rvsd"))
        .args(["-t", "-f"])
        .arg(&main)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err).expect("stderr file"))
        .spawn()
        .expect("spawn rvsd -t");
    let end = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait rvsd") {
            break st;
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("rvsd -t did not return within 60 s for:\n{text}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stderr = std::fs::read_to_string(&err).unwrap_or_default();
    (status.code().unwrap_or(-1), stderr)
}

const VRRP: &str = "vrrp_instance VI_1 {\n interface lo\n virtual_router_id 51\n priority 100\n}\n";

#[test]
fn include_of_dev_zero_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let (rc, err) = config_test(dir.path(), &format!("include /dev/zero\n{VRRP}"));
    assert!(
        err.contains(
            "Configuration file '/dev/zero' is not a regular non-executable file - skipping"
        ),
        "{err}"
    );
    assert_eq!(rc, 0, "a warning, as in keepalived: {err}");
}

#[test]
fn include_of_a_fifo_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe.conf");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo on a NUL-terminated path in our temp dir.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let (rc, err) = config_test(dir.path(), &format!("include pipe.conf\n{VRRP}"));
    assert!(
        err.contains(&format!(
            "Configuration file '{}' is not a regular non-executable file - skipping",
            fifo.display()
        )),
        "{err}"
    );
    assert_eq!(rc, 0, "{err}");
}

#[test]
fn include_of_proc_self_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let (rc, err) = config_test(dir.path(), &format!("include /proc/self/*\n{VRRP}"));
    assert!(
        err.contains("/proc/self/pagemap' is larger than 16 MiB - skipping"),
        "{err}"
    );
    assert_ne!(rc, 0, "an over-long file is a configuration error: {err}");
}

#[test]
fn main_file_that_is_a_device_is_refused() {
    let o = Command::new(env!("CARGO_BIN_EXE_rvsd"))
        .args(["-t", "-f", "/dev/zero"])
        .output()
        .expect("rvsd -t");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(
            "Configuration file '/dev/zero' is not a regular non-executable file - skipping"
        ),
        "{err}"
    );
}
