//! Shared helpers for rvsd's end-to-end tests: start the daemon on a
//! temporary socket, tiny HTTP backends, and a minimal HTTP client.
#![allow(dead_code)]

use rvs_api::{Client, Command, Reply};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command as Proc, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A running rvsd; killed on drop.
pub struct Rvsd {
    pub child: Child,
    pub socket: PathBuf,
    pub dir: tempfile::TempDir,
}

impl Rvsd {
    pub fn start(extra: &[&str]) -> Rvsd {
        Self::start_with_prefix("exec", extra)
    }

    /// Start rvsd through `sh -c "PREFIX rvsd ..."` (e.g. `ulimit -n 64; exec`).
    pub fn start_with_prefix(prefix: &str, extra: &[&str]) -> Rvsd {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("rvsd.sock");
        let log = std::fs::File::create(dir.path().join("rvsd.log")).expect("log");
        let mut script = format!("{prefix} \"$0\" --socket \"$1\"");
        for (i, _) in extra.iter().enumerate() {
            script += &format!(" \"${}\"", i + 2);
        }
        let child = Proc::new("sh")
            .arg("-c")
            .arg(script)
            .arg(env!("CARGO_BIN_EXE_rvsd"))
            .arg(&socket)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn rvsd");
        let r = Rvsd { child, socket, dir };
        let up = wait_for(Duration::from_secs(10), || {
            r.client().call(&Command::GetInfo).ok().map(|_| ())
        });
        assert!(up.is_some(), "rvsd did not come up: {}", r.log());
        r
    }

    pub fn client(&self) -> Client {
        Client::new(&self.socket)
    }

    pub fn call(&self, c: Command) -> Reply {
        self.client()
            .call(&c)
            .unwrap_or_else(|e| panic!("{c:?}: {e}\n{}", self.log()))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("rvsd.log")).unwrap_or_default()
    }

    /// True while the daemon process runs.
    pub fn child_alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Rvsd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn wait_for<T>(deadline: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let end = Instant::now() + deadline;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// A tiny keep-alive HTTP backend answering its name; stops on drop.
pub struct Backend {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl Backend {
    pub fn start(addr: &str, name: &str) -> Backend {
        let l = TcpListener::bind(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
        let addr = l.local_addr().expect("addr");
        l.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let (s2, name) = (stop.clone(), name.to_string());
        std::thread::spawn(move || {
            while !s2.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((c, _)) => {
                        let name = name.clone();
                        std::thread::spawn(move || serve(c, &name));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Backend { addr, stop }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wait until the listener is really closed.
        let _ = wait_for(Duration::from_secs(2), || {
            TcpStream::connect(self.addr).is_err().then_some(())
        });
    }
}

fn serve(mut c: TcpStream, name: &str) {
    let _ = c.set_nonblocking(false);
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    loop {
        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            buf.drain(..end + 4);
            let body = format!("{name}\n");
            let close = head.contains("connection: close");
            let resp = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n{}\r\n{body}",
                body.len(),
                if close { "Connection: close\r\n" } else { "" }
            );
            if c.write_all(resp.as_bytes()).is_err() || close {
                return;
            }
        }
        match c.read(&mut tmp) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
        }
    }
}

/// One `Connection: close` GET; returns the body (trimmed) or None.
pub fn get(addr: SocketAddr) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).ok()?;
    let text = String::from_utf8_lossy(&out);
    let (_, body) = text.split_once("\r\n\r\n")?;
    Some(body.trim().to_string())
}

/// A keep-alive connection for several requests.
pub struct KeepAlive(TcpStream);

impl KeepAlive {
    pub fn open(addr: SocketAddr) -> KeepAlive {
        let s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        KeepAlive(s)
    }
    pub fn get(&mut self) -> Option<String> {
        self.0
            .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            .ok()?;
        let mut buf = Vec::new();
        let mut tmp = [0u8; 1024];
        loop {
            let n = self.0.read(&mut tmp).ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&tmp[..n]);
            let text = String::from_utf8_lossy(&buf).to_string();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse().unwrap_or(0))
                    })
                    .unwrap_or(0);
                if body.len() >= len {
                    return Some(body[..len].trim().to_string());
                }
            }
        }
    }
}

/// A free TCP port on 127.0.0.1 (bind to 0 and release).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Run an ipvsadm command line through rvsadm (its parser, views and socket
/// client) against the rvsd at `sock`: (exit status, stdout, stderr).
pub fn rvsadm(sock: &std::path::Path, line: &str) -> (i32, String, String) {
    let mut b = rvsadm::backend::ClientBackend::new(Client::new(sock));
    if let Err(e) = b.init() {
        return (2, String::new(), format!("rvsadm: {e}\n"));
    }
    run_rvsadm(&mut b, line)
}

/// Run an ipvsadm command line through rvsadm against any backend, with
/// numeric output: (exit status, stdout, stderr).
pub fn run_rvsadm(backend: &mut dyn rvsadm::backend::Backend, line: &str) -> (i32, String, String) {
    let argv: Vec<String> = std::iter::once("rvsadm".to_string())
        .chain(line.split_whitespace().map(String::from))
        .collect();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut stdin = std::io::BufReader::new(std::io::empty());
    let code = {
        let mut ctx = rvsadm::Ctx {
            backend,
            resolver: &rvsadm::resolve::NumericResolver,
            stdin: &mut stdin,
            stdout: &mut out,
            stderr: &mut err,
        };
        rvsadm::run(&argv, &mut ctx)
    };
    (
        code,
        String::from_utf8_lossy(&out).into_owned(),
        String::from_utf8_lossy(&err).into_owned(),
    )
}
