//! DNS_CHECK.

use super::net::new_udp;
use crate::config::{CheckerConfig, DnsCheck};
use crate::machine::ProbeResult;

/// Build keepalived's DNS query (RD set, one question, class IN).
pub fn dns_query(id: u16, dns: &DnsCheck) -> Vec<u8> {
    let mut q = Vec::with_capacity(32 + dns.name.len());
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&0x0100u16.to_be_bytes()); // RD
    q.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    for label in dns.name.split('.').filter(|l| !l.is_empty()) {
        let l = &label.as_bytes()[..label.len().min(63)];
        q.push(l.len() as u8);
        q.extend_from_slice(l);
    }
    q.push(0);
    q.extend_from_slice(&dns.qtype.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes());
    q
}

/// DNS_CHECK: any response with our id, QR set and RCODE 0 is a success.
pub async fn probe_dns(cfg: &CheckerConfig, dns: &DnsCheck) -> ProbeResult {
    let sock = match new_udp(cfg) {
        Ok(s) => s,
        Err(_) => return ProbeResult::failure("failed to create socket."),
    };
    if sock.connect(cfg.connect).await.is_err() {
        return ProbeResult::failure(format!("network unreachable for {}", cfg.connect));
    }
    let id: u16 = rand::random();
    let q = dns_query(id, dns);
    if sock.send(&q).await.map(|n| n != q.len()).unwrap_or(true) {
        return ProbeResult::failure("failed to write socket.");
    }
    let deadline = tokio::time::Instant::now() + cfg.connect_timeout;
    let mut buf = [0u8; 1024];
    loop {
        let n = match tokio::time::timeout_at(deadline, sock.recv(&mut buf)).await {
            Err(_) => return ProbeResult::failure("read timeout from socket"),
            Ok(Err(e)) => return ProbeResult::failure(format!("failed to read socket; {e}")),
            Ok(Ok(n)) => n,
        };
        if n < 12 || buf[0..2] != id.to_be_bytes() || buf[2] & 0x80 == 0 {
            continue;
        }
        let rcode = buf[3] & 0x0f;
        if rcode != 0 {
            return ProbeResult::failure(format!("read error occurred. (rcode = {rcode})"));
        }
        return ProbeResult::success();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_query_bytes() {
        let q = dns_query(
            0x1234,
            &DnsCheck {
                qtype: 1,
                name: "a.bc".into(),
            },
        );
        assert_eq!(&q[..12], &[0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&q[12..], &[1, b'a', 2, b'b', b'c', 0, 0, 1, 0, 1]);
        let root = dns_query(1, &DnsCheck::default());
        assert_eq!(&root[12..], &[0, 0, 6, 0, 1]);
    }
}
