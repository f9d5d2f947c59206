//! `rvsd --demo`: a virtual service on 127.0.0.1 with two built-in HTTP
//! backends, so rvs can be seen balancing real traffic on any machine,
//! without root.

use crate::state::Daemon;
use rvs_api::{Command, DestSpec, FwdMethod, Protocol, ServiceKey, ServiceSpec};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Start one tiny HTTP backend answering `hello from backend NAME`.
pub async fn start_backend(name: String) -> std::io::Result<SocketAddr> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
    let addr = l.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                continue;
            };
            let body = format!("hello from backend {name} ({addr})\n");
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut have = 0usize;
                loop {
                    let n = match s.read(&mut buf[have..]).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    have += n;
                    // Answer each complete request head (keep-alive aware).
                    while let Some(end) = find(&buf[..have], b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                        let close = head.contains("connection: close");
                        let resp = format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n{}\r\n{}",
                            body.len(),
                            if close { "Connection: close\r\n" } else { "" },
                            body
                        );
                        if s.write_all(resp.as_bytes()).await.is_err() || close {
                            return;
                        }
                        buf.copy_within(end + 4..have, 0);
                        have -= end + 4;
                    }
                    if have == buf.len() {
                        return; // request head too large
                    }
                }
            });
        }
    });
    Ok(addr)
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

/// Build the demo table and print what to try.
pub async fn start(d: &Arc<Daemon>, port: u16, socket: &Path) -> anyhow::Result<()> {
    let b1 = start_backend("1".into()).await?;
    let b2 = start_backend("2".into()).await?;
    let vip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let key = ServiceKey::Addr {
        protocol: Protocol::Tcp,
        addr: vip,
        port,
    };
    d.handle(Command::AddService {
        spec: ServiceSpec::new(key, "rr"),
    })
    .map_err(|e| anyhow::anyhow!("demo service: {}", e.message))?;
    for b in [b1, b2] {
        d.handle(Command::AddDest {
            service: key,
            dest: DestSpec::new(b.ip(), b.port(), FwdMethod::Masq, 1),
        })
        .map_err(|e| anyhow::anyhow!("demo backend: {}", e.message))?;
    }
    let sock = socket.display();
    println!(
        "rvs demo: virtual service TCP 127.0.0.1:{port} (rr) -> backends {b1} and {b2}

  curl http://127.0.0.1:{port}/            # run it twice: the backends alternate

In another terminal (rvsadm speaks ipvsadm):
  export RVS_SOCKET={sock}
  cargo run --release --bin rvsadm -- -Ln
  cargo run --release --bin rvsadm -- -Ln --stats
  cargo run --release --bin rvsadm -- -Lnc
  cargo run --release --bin rvsadm -- -E -t 127.0.0.1:{port} -s rr -p 5   # persistence, as in the course

Ctrl-C stops rvsd."
    );
    Ok(())
}
