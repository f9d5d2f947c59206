//! Loopback integration tests: real probes against tiny tokio servers on
//! 127.0.0.1, and the driver end to end. State is awaited with deadlines,
//! never with bare sleeps.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use md5::{Digest, Md5};
use rvs_check::config::*;
use rvs_check::driver::{run_virtual_server, DriverOptions};
use rvs_check::machine::{Action, Probe, ProbeResult, VirtualServerStatus};
use rvs_check::probe::run_probe;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const DEADLINE: Duration = Duration::from_secs(10);

fn probe0() -> Probe {
    Probe {
        id: rvs_check::machine::CheckerId { rs: 0, checker: 0 },
        url_index: Some(0),
    }
}

fn fast(kind: CheckKind, a: SocketAddr) -> CheckerConfig {
    let mut c = CheckerConfig::new(kind, a);
    c.delay_loop = Duration::from_millis(100);
    c.delay_before_retry = Duration::from_millis(50);
    c.connect_timeout = Duration::from_millis(500);
    c.warmup = Some(Duration::ZERO);
    c.retry = 0;
    c
}

/// A tiny HTTP server answering every request with `status` and `body`;
/// requests are recorded.
async fn http_server(status: u16, body: &'static str) -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let seen = seen2.clone();
            tokio::spawn(async move {
                let mut req = Vec::new();
                let mut b = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut b).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&b[..n]),
                    }
                }
                seen.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&req).into_owned());
                let resp = format!(
                    "HTTP/1.0 {status} X\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    (a, seen)
}

fn http_kind(url: Url) -> CheckKind {
    CheckKind::Http(HttpCheck {
        urls: vec![url],
        ..Default::default()
    })
}

#[tokio::test]
async fn http_probe_status_and_digest() {
    let (a, seen) = http_server(200, "hello world").await;
    let good: [u8; 16] = Md5::digest(b"hello world").into();
    let mut u = Url::new("/health");
    u.digest = Some(good);
    let c = fast(http_kind(u.clone()), a);
    let r = run_probe(&c, &probe0()).await;
    assert!(r.ok, "{r:?}");
    assert_eq!(r.detail, "MD5 digest");
    let req = seen.lock().unwrap()[0].clone();
    assert!(
        req.starts_with("GET /health HTTP/1.0\r\nUser-Agent: KeepAliveClient\r\n"),
        "{req}"
    );
    assert!(
        req.contains(&format!("Host: 127.0.0.1:{}\r\n", a.port())),
        "{req}"
    );

    u.digest = Some([0u8; 16]);
    let r = run_probe(&fast(http_kind(u.clone()), a), &probe0()).await;
    assert!(!r.ok && r.detail == "MD5 digest error to", "{r:?}");

    u.digest = None;
    u.status = vec![201..=204];
    let r = run_probe(&fast(http_kind(u), a), &probe0()).await;
    assert!(
        !r.ok && r.detail.starts_with("HTTP status code error to"),
        "{r:?}"
    );

    // virtualhost goes into Host:
    let mut u = Url::new("/");
    u.virtualhost = Some("www.example.com".into());
    let r = run_probe(&fast(http_kind(u), a), &probe0()).await;
    assert!(r.ok);
    assert!(seen
        .lock()
        .unwrap()
        .last()
        .unwrap()
        .contains("Host: www.example.com\r\n"));
}

#[tokio::test]
async fn http_probe_connection_refused_and_ssl_to_plain_server() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap();
    drop(l);
    let r = run_probe(&fast(http_kind(Url::new("/")), a), &probe0()).await;
    assert!(!r.ok && r.detail == "Error connecting", "{r:?}");

    let (a, _) = http_server(200, "x").await;
    let kind = CheckKind::Ssl(SslCheck {
        http: HttpCheck {
            urls: vec![Url::new("/")],
            ..Default::default()
        },
        ..Default::default()
    });
    let r = run_probe(&fast(kind, a), &probe0()).await;
    assert!(!r.ok, "{r:?}");
}

#[tokio::test]
async fn misc_probe_exit_codes_and_timeout() {
    let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
    let misc = |path: &str, timeout: Option<Duration>| {
        fast(
            CheckKind::Misc(MiscCheck {
                path: path.into(),
                timeout,
                dynamic: true,
                user: None,
            }),
            a,
        )
    };
    assert_eq!(
        run_probe(&misc("exit 0", None), &probe0()).await.exit_code,
        Some(0)
    );
    assert_eq!(
        run_probe(&misc("exit 1", None), &probe0()).await.exit_code,
        Some(1)
    );
    assert_eq!(
        run_probe(&misc("sh -c 'exit 7'", None), &probe0())
            .await
            .exit_code,
        Some(7)
    );
    assert_eq!(
        run_probe(&misc("/bin/true", None), &probe0())
            .await
            .exit_code,
        Some(0)
    );
    assert_eq!(
        run_probe(&misc("false", None), &probe0()).await.exit_code,
        Some(1)
    );
    let t = std::time::Instant::now();
    let r = run_probe(
        &misc("sleep 30", Some(Duration::from_millis(200))),
        &probe0(),
    )
    .await;
    assert!(r.timed_out && r.exit_code.is_none(), "{r:?}");
    // Fault threshold: the 200 ms timeout killed `sleep 30` (not its end).
    assert!(t.elapsed() < Duration::from_secs(15), "{:?}", t.elapsed());
}

#[tokio::test]
async fn udp_probe_reply_and_refused() {
    let srv = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let a = srv.local_addr().unwrap();
    tokio::spawn(async move {
        let mut b = [0u8; 512];
        while let Ok((n, from)) = srv.recv_from(&mut b).await {
            if &b[..n] == b"PING" {
                let _ = srv.send_to(b"PONG!", from).await;
            }
        }
    });
    let mut u = UdpCheck {
        payload: b"PING".to_vec(),
        require_reply: true,
        reply_data: b"PONG".to_vec(),
        ..Default::default()
    };
    let r = run_probe(&fast(CheckKind::Udp(u.clone()), a), &probe0()).await;
    assert!(r.ok, "{r:?}");
    u.reply_data = b"NOPE".to_vec();
    let r = run_probe(&fast(CheckKind::Udp(u.clone()), a), &probe0()).await;
    assert!(!r.ok && r.detail.ends_with("reply data mismatch."), "{r:?}");
    // no reply to other payloads: fails with require_reply, passes without
    u.payload = b"other".to_vec();
    u.reply_data.clear();
    let mut c = fast(CheckKind::Udp(u.clone()), a);
    c.connect_timeout = Duration::from_millis(200);
    assert!(!run_probe(&c, &probe0()).await.ok);
    u.require_reply = false;
    let mut c = fast(CheckKind::Udp(u.clone()), a);
    c.connect_timeout = Duration::from_millis(200);
    assert!(run_probe(&c, &probe0()).await.ok);
    // closed port: ICMP port unreachable -> failure
    let closed = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let ca = closed.local_addr().unwrap();
    drop(closed);
    let r = run_probe(&fast(CheckKind::Udp(u), ca), &probe0()).await;
    assert!(!r.ok, "{r:?}");
}

async fn smtp_server(banner: &'static str) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                if s.write_all(banner.as_bytes()).await.is_err() {
                    return;
                }
                let mut buf = Vec::new();
                let mut b = [0u8; 256];
                loop {
                    let n = match s.read(&mut b).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    buf.extend_from_slice(&b[..n]);
                    while let Some(p) = buf.iter().position(|&c| c == b'\n') {
                        let line: Vec<u8> = buf.drain(..=p).collect();
                        let reply: &[u8] = if line.starts_with(b"HELO ") {
                            b"250 pleased to meet you\r\n"
                        } else if line.starts_with(b"QUIT") {
                            b"221 bye\r\n"
                        } else {
                            b"500 what\r\n"
                        };
                        if s.write_all(reply).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    a
}

#[tokio::test]
async fn smtp_probe() {
    let a = smtp_server("220 mail.test ESMTP\r\n").await;
    let r = run_probe(
        &fast(
            CheckKind::Smtp {
                helo_name: "rvs.test".into(),
            },
            a,
        ),
        &probe0(),
    )
    .await;
    assert!(r.ok, "{r:?}");
    let a = smtp_server("554 go away\r\n").await;
    let r = run_probe(
        &fast(
            CheckKind::Smtp {
                helo_name: "rvs.test".into(),
            },
            a,
        ),
        &probe0(),
    )
    .await;
    assert!(
        !r.ok && r.detail.starts_with("Bad greeting banner from server"),
        "{r:?}"
    );
}

/// Fake DNS responder: answers with the query id and the given RCODE; with
/// `wrong_id` it answers with a different id.
async fn dns_server(rcode: u8, wrong_id: bool) -> SocketAddr {
    let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let a = s.local_addr().unwrap();
    tokio::spawn(async move {
        let mut b = [0u8; 512];
        while let Ok((n, from)) = s.recv_from(&mut b).await {
            if n < 12 {
                continue;
            }
            let mut resp = b[..n].to_vec();
            if wrong_id {
                resp[0] ^= 0xff;
            }
            resp[2] |= 0x80; // QR
            resp[3] = (resp[3] & 0xf0) | rcode;
            let _ = s.send_to(&resp, from).await;
        }
    });
    a
}

#[tokio::test]
async fn dns_probe() {
    let kind = CheckKind::Dns(DnsCheck {
        qtype: 1,
        name: "www.example.com".into(),
    });
    let a = dns_server(0, false).await;
    assert!(run_probe(&fast(kind.clone(), a), &probe0()).await.ok);
    let a = dns_server(2, false).await;
    let r = run_probe(&fast(kind.clone(), a), &probe0()).await;
    assert_eq!(r.detail, "read error occurred. (rcode = 2)");
    let a = dns_server(0, true).await;
    let mut c = fast(kind, a);
    c.connect_timeout = Duration::from_millis(200);
    let r = run_probe(&c, &probe0()).await;
    assert_eq!(r.detail, "read timeout from socket");
}

#[tokio::test]
async fn file_probe() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("w");
    std::fs::write(&p, "  -12\n").unwrap();
    let kind = CheckKind::File(FileCheck {
        path: p.clone(),
        weight: 1,
        reverse: false,
    });
    let r = run_probe(&fast(kind, "127.0.0.1:1".parse().unwrap()), &probe0()).await;
    assert_eq!(r.file_value, Some(-12));
}

#[tokio::test]
async fn ping_probe_loopback() {
    let r = run_probe(
        &fast(CheckKind::Ping, "127.0.0.1:0".parse().unwrap()),
        &probe0(),
    )
    .await;
    if r.detail.contains("cannot create ICMP socket") {
        rvs_lab::skip(
            "rvs-check ping_probe_loopback",
            rvs_lab::need::ICMP_SOCKET,
            &r.detail,
        );
        return;
    }
    assert!(r.ok, "{r:?}");
}

// ===== driver end to end =====

struct Driver {
    rx: mpsc::Receiver<(String, Action)>,
    cancel: CancellationToken,
    status: Arc<Mutex<VirtualServerStatus>>,
    task: tokio::task::JoinHandle<()>,
}

fn start(v: VirtualServerConfig) -> Driver {
    let (tx, rx) = mpsc::channel(64);
    let cancel = CancellationToken::new();
    let status = Arc::new(Mutex::new(VirtualServerStatus::default()));
    let opts = DriverOptions {
        seed: Some(1),
        ..Default::default()
    };
    let task = tokio::spawn(run_virtual_server(
        v,
        opts,
        tx,
        cancel.clone(),
        status.clone(),
    ));
    Driver {
        rx,
        cancel,
        status,
        task,
    }
}

impl Driver {
    async fn expect(&mut self, want: Action) {
        let fut = async {
            while let Some((_, a)) = self.rx.recv().await {
                if a == want {
                    return;
                }
            }
            panic!("channel closed waiting for {want:?}");
        };
        tokio::time::timeout(DEADLINE, fut)
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {want:?}"));
    }

    async fn stop(self) -> Vec<Action> {
        self.cancel.cancel();
        self.task.await.unwrap();
        let mut rx = self.rx;
        let mut out = Vec::new();
        while let Ok((_, a)) = rx.try_recv() {
            out.push(a);
        }
        out
    }
}

fn vs_one(a: SocketAddr, c: CheckerConfig, weight: u32) -> VirtualServerConfig {
    let mut r = RealServerConfig::new(a);
    r.weight = weight;
    r.checkers = vec![c];
    let mut v = VirtualServerConfig::new("[198.18.9.9]:tcp:80");
    v.real_servers = vec![r];
    v
}

#[tokio::test]
async fn driver_tcp_up_down_up() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap();
    let mut d = start(vs_one(a, fast(CheckKind::Tcp, a), 3));
    d.expect(Action::AddDest { rs: a, weight: 3 }).await;
    // wait until a successful check has run
    tokio::time::timeout(DEADLINE, async {
        loop {
            let ok = d
                .status
                .lock()
                .unwrap()
                .real_servers
                .first()
                .is_some_and(|r| r.checkers[0].counters.successes > 0);
            if ok {
                break;
            }
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("a successful check");
    drop(l);
    d.expect(Action::RemoveDest { rs: a }).await;
    let st = d.status.lock().unwrap().clone();
    assert!(!st.real_servers[0].alive);
    assert!(st.real_servers[0].checkers[0]
        .last_error
        .as_deref()
        .unwrap_or("")
        .contains("failed"));
    let _l = TcpListener::bind(a).await.unwrap();
    d.expect(Action::AddDest { rs: a, weight: 3 }).await;
    let rest = d.stop().await;
    assert!(
        rest.contains(&Action::RemoveDest { rs: a }),
        "shutdown removes: {rest:?}"
    );
}

#[tokio::test]
async fn driver_http_wrong_status_goes_down() {
    let (a, _) = http_server(503, "busy").await;
    let mut d = start(vs_one(a, fast(http_kind(Url::new("/")), a), 1));
    d.expect(Action::AddDest { rs: a, weight: 1 }).await;
    d.expect(Action::RemoveDest { rs: a }).await;
    let st = d.status.lock().unwrap().clone();
    assert!(st.real_servers[0].checkers[0]
        .last_error
        .as_deref()
        .unwrap_or("")
        .starts_with("HTTP status code error"));
    d.stop().await;
}

#[tokio::test]
async fn driver_misc_dynamic_weight() {
    let a: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("code");
    std::fs::write(&f, "7").unwrap();
    let cmd = format!("sh -c 'exit $(cat {})'", f.display());
    let c = fast(
        CheckKind::Misc(MiscCheck {
            path: cmd,
            timeout: Some(Duration::from_secs(5)),
            dynamic: true,
            user: None,
        }),
        a,
    );
    let mut d = start(vs_one(a, c, 10));
    d.expect(Action::AddDest { rs: a, weight: 10 }).await;
    d.expect(Action::SetWeight { rs: a, weight: 5 }).await;
    std::fs::write(&f, "1").unwrap();
    d.expect(Action::RemoveDest { rs: a }).await;
    std::fs::write(&f, "0").unwrap();
    d.expect(Action::AddDest { rs: a, weight: 10 }).await;
    d.stop().await;
}

#[tokio::test]
async fn driver_runs_notify_scripts() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("down");
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap();
    drop(l);
    let mut v = vs_one(a, fast(CheckKind::Tcp, a), 1);
    v.real_servers[0].notify_down = Some(ScriptConfig::new(format!("touch {}", marker.display())));
    let mut d = start(v);
    d.expect(Action::RemoveDest { rs: a }).await;
    tokio::time::timeout(DEADLINE, async {
        while !marker.exists() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("notify_down ran");
    d.stop().await;
}

#[test]
fn probe_result_is_serializable() {
    let s = serde_json::to_string(&ProbeResult::failure("x")).unwrap();
    assert!(s.contains("\"ok\":false"));
    let a = serde_json::to_string(&Action::SetWeight {
        rs: "127.0.0.1:80".parse().unwrap(),
        weight: 0,
    })
    .unwrap();
    assert_eq!(
        a,
        r#"{"action":"set_weight","rs":"127.0.0.1:80","weight":0}"#
    );
}

// ===== SSL_GET (certificate made with the openssl CLI at test time) =====

fn make_cert(
    dir: &std::path::Path,
    name: &str,
) -> Option<(std::path::PathBuf, std::path::PathBuf)> {
    let cert = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    let st = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
        ])
        .args([
            "-subj",
            "/CN=www.example.com",
            "-addext",
            "subjectAltName=DNS:www.example.com",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .ok()?;
    st.success().then_some((cert, key))
}

/// TLS server answering HTTP 200 "secure"; records the SNI it saw.
async fn tls_server(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> (SocketAddr, Arc<Mutex<Vec<Option<String>>>>) {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(key).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap();
    let snis = Arc::new(Mutex::new(Vec::new()));
    let snis2 = snis.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let acceptor = acceptor.clone();
            let snis = snis2.clone();
            tokio::spawn(async move {
                let Ok(mut s) = acceptor.accept(s).await else {
                    return;
                };
                snis.lock()
                    .unwrap()
                    .push(s.get_ref().1.server_name().map(str::to_string));
                let mut req = Vec::new();
                let mut b = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut b).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&b[..n]),
                    }
                }
                let _ = s
                    .write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 6\r\n\r\nsecure")
                    .await;
                let _ = s.shutdown().await;
            });
        }
    });
    (a, snis)
}

#[tokio::test]
async fn ssl_probe_unverified_with_and_without_sni() {
    let dir = tempfile::tempdir().unwrap();
    let Some((cert, key)) = make_cert(dir.path(), "srv") else {
        rvs_lab::skip(
            "rvs-check ssl_probe_unverified_with_and_without_sni",
            rvs_lab::need::OPENSSL,
            "openssl req failed or is not installed",
        );
        return;
    };
    let (a, snis) = tls_server(&cert, &key).await;
    let mut u = Url::new("/");
    u.digest = Some(Md5::digest(b"secure").into());
    let http = HttpCheck {
        urls: vec![u],
        virtualhost: Some("www.example.com".into()),
        ..Default::default()
    };
    let ssl = SslCheck {
        http: http.clone(),
        ..Default::default()
    };
    let r = run_probe(&fast(CheckKind::Ssl(ssl), a), &probe0()).await;
    assert!(r.ok, "{r:?}");
    let ssl = SslCheck {
        http: http.clone(),
        enable_sni: true,
        ..Default::default()
    };
    let r = run_probe(&fast(CheckKind::Ssl(ssl), a), &probe0()).await;
    assert!(r.ok, "{r:?}");
    let ssl = SslCheck {
        http: http.clone(),
        enable_sni: true,
        sni_name: Some("sni.test".into()),
        ..Default::default()
    };
    assert!(run_probe(&fast(CheckKind::Ssl(ssl), a), &probe0()).await.ok);
    assert_eq!(
        *snis.lock().unwrap(),
        vec![
            None,
            Some("www.example.com".to_string()),
            Some("sni.test".to_string())
        ]
    );
    // verifying against an unrelated CA fails the handshake
    let (other, _) = make_cert(dir.path(), "other").unwrap();
    let ssl = SslCheck {
        http,
        enable_sni: true,
        ca_file: Some(other),
        ..Default::default()
    };
    let r = run_probe(&fast(CheckKind::Ssl(ssl), a), &probe0()).await;
    assert!(!r.ok && r.detail.starts_with("SSL handshake"), "{r:?}");
}

async fn next(rx: &mut mpsc::Receiver<(String, Action)>) -> Action {
    tokio::time::timeout(DEADLINE, rx.recv())
        .await
        .expect("an action")
        .expect("open")
        .1
}

#[tokio::test]
async fn driver_reload_and_suspend() {
    let l1 = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a1 = l1.local_addr().unwrap();
    let l2 = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a2 = l2.local_addr().unwrap();
    let v = vs_one(a1, fast(CheckKind::Tcp, a1), 1);
    let (tx, mut rx) = mpsc::channel(64);
    let (reload_tx, reload_rx) = mpsc::channel(1);
    let (suspend_tx, suspend_rx) = tokio::sync::watch::channel(false);
    let cancel = CancellationToken::new();
    let status = Arc::new(Mutex::new(VirtualServerStatus::default()));
    let opts = DriverOptions {
        seed: Some(1),
        reload: Some(reload_rx),
        suspend: Some(suspend_rx),
        ..Default::default()
    };
    let task = tokio::spawn(run_virtual_server(
        v.clone(),
        opts,
        tx,
        cancel.clone(),
        status.clone(),
    ));
    assert_eq!(next(&mut rx).await, Action::AddDest { rs: a1, weight: 1 });
    let mut v2 = v.clone();
    let mut r2 = RealServerConfig::new(a2);
    r2.checkers = vec![fast(CheckKind::Tcp, a2)];
    v2.real_servers.push(r2);
    reload_tx.send(v2).await.unwrap();
    assert_eq!(next(&mut rx).await, Action::AddDest { rs: a2, weight: 1 });
    // suspended: a dead server is not noticed
    suspend_tx.send(true).unwrap();
    tokio::time::timeout(DEADLINE, async {
        while !status.lock().unwrap().suspended {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
    drop(l2);
    assert!(
        tokio::time::timeout(Duration::from_millis(400), rx.recv())
            .await
            .is_err(),
        "no action while suspended"
    );
    suspend_tx.send(false).unwrap();
    assert_eq!(next(&mut rx).await, Action::RemoveDest { rs: a2 });
    cancel.cancel();
    task.await.unwrap();
    drop(l1);
}
