//! UDP_CHECK.

use super::net::new_udp;
use crate::config::{fmt_trio, CheckerConfig, Protocol, UdpCheck};
use crate::machine::ProbeResult;

/// keepalived's `check_udp_reply`: length bounds, then prefix compare with mask.
pub fn udp_reply_ok(reply: &[u8], u: &UdpCheck) -> bool {
    if u.reply_data.is_empty() {
        return true;
    }
    if reply.len() < u.min_reply_length || reply.len() > u.max_reply_length {
        return false;
    }
    reply
        .iter()
        .zip(&u.reply_data)
        .enumerate()
        .all(|(i, (r, d))| {
            let mask = u.reply_mask.get(i).copied().unwrap_or(0);
            (r ^ d) & !mask == 0
        })
}

/// UDP_CHECK: send the payload; with `require_reply` a (matching) reply within
/// connect_timeout is needed, otherwise only an ICMP error (ECONNREFUSED) fails.
pub async fn probe_udp(cfg: &CheckerConfig, u: &UdpCheck) -> ProbeResult {
    let label = fmt_trio(cfg.connect, Protocol::Udp);
    let sock = match new_udp(cfg) {
        Ok(s) => s,
        Err(_) => return ProbeResult::failure("UDP connect fail to create socket."),
    };
    if sock.connect(cfg.connect).await.is_err() || sock.send(&u.payload).await.is_err() {
        return ProbeResult::failure(format!("UDP connection to {label} failed."));
    }
    let mut buf = vec![0u8; u.max_reply_length.max(u.reply_data.len()) + 1];
    match tokio::time::timeout(cfg.connect_timeout, sock.recv(&mut buf)).await {
        Ok(Ok(n)) => {
            if udp_reply_ok(&buf[..n], u) {
                ProbeResult::success()
            } else {
                ProbeResult::failure(format!("UDP check to {label} reply data mismatch."))
            }
        }
        Ok(Err(_)) => ProbeResult::failure(format!("UDP connection to {label} failed.")),
        Err(_) if u.require_reply => {
            ProbeResult::failure(format!("UDP connection to {label} failed."))
        }
        Err(_) => ProbeResult::success(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn udp_reply_mask() {
        let u = UdpCheck {
            reply_data: vec![0xab, 0xcd],
            reply_mask: vec![0x00, 0x0f],
            ..Default::default()
        };
        assert!(udp_reply_ok(&[0xab, 0xc0, 0x99], &u));
        assert!(!udp_reply_ok(&[0xab, 0x0d], &u));
        assert!(udp_reply_ok(&[0xab], &u)); // only the shorter length is compared
    }
}
