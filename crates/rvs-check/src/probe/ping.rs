//! PING_CHECK.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use rvs_wire::{icmpv4, icmpv6};
use socket2::{Domain, Socket, Type};

use crate::config::CheckerConfig;
use crate::machine::ProbeResult;

/// An ICMP echo request carrying `data`. IPv4: with its checksum; IPv6:
/// checksum 0, since the kernel fills it in for ICMPv6 sockets (it needs the
/// source address).
fn echo_request(v6: bool, ident: u16, seq: u16, data: &[u8]) -> Vec<u8> {
    let mut pkt = vec![0u8; icmpv4::HEADER_LEN + data.len()];
    pkt[icmpv4::HEADER_LEN..].copy_from_slice(data);
    let rest = (u32::from(ident) << 16) | u32::from(seq);
    if v6 {
        let mut p = icmpv6::Packet::new_unchecked(&mut pkt[..]);
        p.set_msg_type(icmpv6::msg_type::ECHO_REQUEST);
        p.set_rest(rest);
    } else {
        icmpv4::Repr {
            msg_type: icmpv4::msg_type::ECHO_REQUEST,
            code: 0,
            rest,
        }
        .emit(&mut icmpv4::Packet::new_unchecked(&mut pkt[..]));
    }
    pkt
}

fn ping_blocking(target: IpAddr, timeout: Duration, cfg: &CheckerConfig) -> Result<(), String> {
    let v6 = target.is_ipv6();
    let (domain, proto) = if v6 {
        (Domain::IPV6, socket2::Protocol::ICMPV6)
    } else {
        (Domain::IPV4, socket2::Protocol::ICMPV4)
    };
    let (sock, raw) = match Socket::new(domain, Type::DGRAM, Some(proto)) {
        Ok(s) => (s, false),
        Err(_) => (
            Socket::new(domain, Type::RAW, Some(proto))
                .map_err(|e| format!("cannot create ICMP socket: {e}"))?,
            true,
        ),
    };
    if let Some(dev) = &cfg.bind_if {
        sock.bind_device(Some(dev.as_bytes()))
            .map_err(|e| e.to_string())?;
    }
    if let Some(mark) = cfg.fwmark {
        sock.set_mark(mark).map_err(|e| e.to_string())?;
    }
    if let Some(b) = cfg.bind {
        sock.bind(&SocketAddr::new(b.ip(), 0).into())
            .map_err(|e| e.to_string())?;
    }
    let ident: u16 = rand::random();
    let seq: u16 = rand::random();
    let pkt = echo_request(v6, ident, seq, b"rvs-check ping");
    let dst: SocketAddr = SocketAddr::new(target, 0);
    sock.send_to(&pkt, &dst.into())
        .map_err(|e| format!("send failed: {e}"))?;
    let deadline = Instant::now() + timeout;
    let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 2048];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err("timeout".into());
        }
        sock.set_read_timeout(Some(left))
            .map_err(|e| e.to_string())?;
        let (n, from) = match sock.recv_from(&mut buf) {
            Ok(x) => x,
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::TimedOut =>
            {
                return Err("timeout".into())
            }
            Err(e) => return Err(e.to_string()),
        };
        // SAFETY: recv_from initialised the first n bytes.
        let data: Vec<u8> = buf[..n]
            .iter()
            .map(|b| unsafe { b.assume_init() })
            .collect();
        if from.as_socket().map(|a| a.ip()) != Some(target) {
            continue;
        }
        let icmp = if raw && !v6 {
            let ihl = data.first().map(|b| ((b & 0x0f) as usize) * 4).unwrap_or(0);
            data.get(ihl..).unwrap_or(&[]).to_vec()
        } else {
            data
        };
        if icmp.len() < 8 {
            continue;
        }
        let reply_type = if v6 { 129 } else { 0 };
        // DGRAM ICMP sockets rewrite the identifier; match on sequence then.
        let id_ok = !raw || icmp[4..6] == ident.to_be_bytes();
        if icmp[0] == reply_type && id_ok && icmp[6..8] == seq.to_be_bytes() {
            return Ok(());
        }
    }
}

/// PING_CHECK: one ICMP echo, reply within connect_timeout. Uses an unprivileged
/// ICMP datagram socket, falling back to a raw socket (root).
pub async fn probe_ping(cfg: &CheckerConfig) -> ProbeResult {
    let cfg2 = cfg.clone();
    let target = cfg.connect.ip();
    let t = cfg.connect_timeout;
    match tokio::task::spawn_blocking(move || ping_blocking(target, t, &cfg2)).await {
        Ok(Ok(())) => ProbeResult::success(),
        Ok(Err(e)) => ProbeResult::failure(format!("ICMP echo to {target} failed: {e}")),
        Err(_) => ProbeResult::failure("ICMP probe task failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum() {
        // echo request id 0 seq 0 no data: checksum 0xf7ff
        assert_eq!(
            echo_request(false, 0, 0, b""),
            [8, 0, 0xf7, 0xff, 0, 0, 0, 0]
        );
        assert_eq!(
            echo_request(false, 0x1234, 0x5678, b"ab"),
            [8, 0, 0x2d, 0xf1, 0x12, 0x34, 0x56, 0x78, b'a', b'b']
        );
        assert_eq!(
            echo_request(true, 0x1234, 0x5678, b"ab"),
            [128, 0, 0, 0, 0x12, 0x34, 0x56, 0x78, b'a', b'b']
        );
    }
}
