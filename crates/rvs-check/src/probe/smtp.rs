//! SMTP_CHECK.

use std::time::Duration;

use tokio::io::AsyncRead;

use super::net::{read_some, tcp_connect, write_all, ConnectError};
use crate::config::{fmt_trio, CheckerConfig, Protocol};
use crate::machine::ProbeResult;

async fn smtp_line<S: AsyncRead + Unpin>(s: &mut S, t: Duration) -> Result<String, &'static str> {
    let mut buf = Vec::new();
    let mut b = [0u8; 512];
    loop {
        let n = read_some(s, &mut b, t).await.map_err(|e| {
            if e == "timeout" {
                "Read timeout from server"
            } else {
                "Read failure from server"
            }
        })?;
        if n == 0 {
            return Err("Read failure from server");
        }
        buf.extend_from_slice(&b[..n]);
        if let Some(pos) = buf.iter().position(|&c| c == b'\n') {
            buf.truncate(pos);
            return Ok(String::from_utf8_lossy(&buf).into_owned());
        }
        if buf.len() > 4096 {
            buf.clear(); // keepalived wraps its buffer when full
        }
    }
}

/// keepalived's `smtp_get_status`: exactly 3 digits followed by end or space.
pub fn smtp_status(line: &str) -> Option<u16> {
    let digits: String = line.chars().take_while(|c| c.is_ascii_digit()).collect();
    if digits.len() != 3 {
        return None;
    }
    match line[3..].chars().next() {
        None | Some(' ') => digits.parse().ok(),
        _ => None,
    }
}

/// SMTP_CHECK: banner 220, `HELO name` -> 250, `QUIT` -> any line.
pub async fn probe_smtp(cfg: &CheckerConfig, helo: &str) -> ProbeResult {
    let label = fmt_trio(cfg.connect, Protocol::Tcp);
    let mut s = match tcp_connect(cfg).await {
        Ok(s) => s,
        Err(ConnectError::Timeout) => {
            return ProbeResult::failure(format!("Connection timeout to server {label}"))
        }
        Err(ConnectError::Failed(_)) => {
            return ProbeResult::failure(format!("Error connecting to server {label}"))
        }
        Err(ConnectError::Socket(e)) => {
            return ProbeResult::failure(format!("Could not connect to server {label} ({e})"))
        }
    };
    let t = cfg.connect_timeout;
    let fail = |m: &str| ProbeResult::failure(format!("{m} {label}"));
    match smtp_line(&mut s, t).await {
        Ok(l) if smtp_status(&l) == Some(220) => {}
        Ok(_) => return fail("Bad greeting banner from server"),
        Err(e) => return fail(e),
    }
    if !write_all(&mut s, format!("HELO {helo}\r\n").as_bytes(), t).await {
        return fail("Write failure to server");
    }
    match smtp_line(&mut s, t).await {
        Ok(l) if smtp_status(&l) == Some(250) => {}
        Ok(_) => return fail("Bad HELO response from server"),
        Err(e) => return fail(e),
    }
    if !write_all(&mut s, b"QUIT\r\n", t).await {
        return fail("Write failure to server");
    }
    match smtp_line(&mut s, t).await {
        Ok(_) => ProbeResult::success(),
        Err(e) => fail(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smtp_status_rules() {
        assert_eq!(smtp_status("220 mail ESMTP\r"), Some(220));
        assert_eq!(smtp_status("250"), Some(250));
        assert_eq!(smtp_status("220-multi"), None);
        assert_eq!(smtp_status("22"), None);
        assert_eq!(smtp_status("2200 x"), None);
    }
}
