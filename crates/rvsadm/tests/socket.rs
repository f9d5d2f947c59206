//! The real binary against a stand-in rvsd: a minimal HTTP/1.1 server on a
//! temporary unix socket that answers the control API from a FakeBackend.
//! (The true end-to-end test with rvsd lives with rvsd.)

use rvs_api::Command;
use rvsadm::backend::{Backend, BackendError, FakeBackend};
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};

fn serve_one(mut s: UnixStream, be: &Mutex<FakeBackend>) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let (head_end, len) = loop {
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..i]).to_ascii_lowercase();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            break (i + 4, len);
        }
    };
    while buf.len() < head_end + len {
        let n = s.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = &buf[head_end..(head_end + len).min(buf.len())];
    let cmd: Command = serde_json::from_slice(body).expect("command JSON");
    let res = be.lock().unwrap().call(&cmd);
    let (status, json) = match res {
        Ok(r) => (200, serde_json::to_vec(&r).unwrap()),
        Err(BackendError::Api(e)) => (400, serde_json::to_vec(&e).unwrap()),
        Err(BackendError::Transport(t)) => (500, t.into_bytes()),
    };
    write!(
        s,
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        json.len()
    )?;
    s.write_all(&json)
}

fn start(dir: &Path) -> (PathBuf, Arc<Mutex<FakeBackend>>) {
    let path = dir.join("rvsd.sock");
    let listener = UnixListener::bind(&path).expect("bind");
    let be = Arc::new(Mutex::new(FakeBackend::default()));
    let be2 = be.clone();
    std::thread::spawn(move || {
        for s in listener.incoming().flatten() {
            let _ = serve_one(s, &be2);
        }
    });
    (path, be)
}

fn rvsadm(sock: &Path, args: &[&str], stdin: &str) -> (i32, String, String) {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_rvsadm"))
        .args(args)
        .env("RVS_SOCKET", sock)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    if let Some(mut i) = child.stdin.take() {
        i.write_all(stdin.as_bytes()).unwrap();
    }
    let o = child.wait_with_output().unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn seed_session_through_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let (sock, be) = start(dir.path());
    let empty = "IP Virtual Server version 1.2.1 (size=4096)\nProt LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n";
    assert_eq!(
        rvsadm(&sock, &["-Ln"], ""),
        (0, empty.to_string(), String::new())
    );
    for a in [
        &["-A", "-t", "192.168.253.150:80", "-s", "rr"][..],
        &[
            "-a",
            "-t",
            "192.168.253.150:80",
            "-r",
            "192.168.253.129:80",
            "-g",
        ],
        &[
            "-a",
            "-t",
            "192.168.253.150:80",
            "-r",
            "192.168.253.148:80",
            "-g",
        ],
        &["-E", "-t", "192.168.253.150:80", "-s", "rr", "-p", "10"],
    ] {
        assert_eq!(
            rvsadm(&sock, a, ""),
            (0, String::new(), String::new()),
            "{a:?}"
        );
    }
    let (code, out, err) = rvsadm(&sock, &["-Ln"], "");
    assert_eq!((code, err.as_str()), (0, ""));
    assert_eq!(
        out,
        format!("{empty}TCP  192.168.253.150:80 rr persistent 10\n  -> 192.168.253.129:80           Route   1      0          0         \n  -> 192.168.253.148:80           Route   1      0          0         \n")
    );
    assert_eq!(
        rvsadm(&sock, &["-A", "-t", "192.168.253.150:80"], ""),
        (255, String::new(), "Service already exists\n".to_string())
    );
    let (code, saved, _) = rvsadm(&sock, &["-Sn"], "");
    assert_eq!(code, 0);
    assert_eq!(
        rvsadm(&sock, &["-C"], ""),
        (0, String::new(), String::new())
    );
    assert!(be.lock().unwrap().services.is_empty());
    assert_eq!(
        rvsadm(&sock, &["-R"], &saved),
        (0, String::new(), String::new())
    );
    assert_eq!(rvsadm(&sock, &["-Sn"], "").1, saved);
    assert_eq!(
        rvsadm(&sock, &["-L", "-n", "-t", "10.9.9.9:80"], ""),
        (1, String::new(), "No such service\n".to_string())
    );
}
