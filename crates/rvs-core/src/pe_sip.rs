//! The SIP persistence engine (`ip_vs_pe_sip.c`): with `--pe sip`, a
//! persistent UDP service keys its templates on the SIP Call-ID as well as
//! the client network, so every message of one call reaches the same real
//! server while different calls from one client may be spread.
//!
//! The Call-ID is found as the kernel's `get_callid` finds it with
//! nf_conntrack_sip's `ct_sip_get_header(SIP_HDR_CALL_ID)`: a header line
//! `Call-ID:` (or the compact `i:`), case-insensitive, not a continuation
//! line; its value is a "word" optionally followed by `@` and an IP address
//! (`[v6]` in brackets) with an optional `:port` (`callid_len`: a domain
//! name after `@` does not match, as in the kernel); at most 255 bytes, and
//! followed by CR or LF.

/// IP_VS_PEDATA_MAXLEN.
pub const PEDATA_MAXLEN: usize = 255;

/// The Call-ID of a SIP message (the UDP payload), or None when the packet
/// carries none the kernel would use (then the service ignores it).
pub fn sip_callid(msg: &[u8]) -> Option<&[u8]> {
    let limit = msg.len();
    let mut i = 0;
    // ct_sip_get_header scans for a line start, then matches the header
    while i < limit {
        let c = msg[i];
        i += 1;
        if c != b'\r' && c != b'\n' {
            continue;
        }
        if i >= limit {
            return None;
        }
        if c == b'\r' && msg[i] == b'\n' {
            i += 1;
            if i >= limit {
                return None;
            }
        }
        // continuation lines
        if msg[i] == b' ' || msg[i] == b'\t' {
            continue;
        }
        let rest = &msg[i..];
        let mut p = if rest.len() >= 7 && rest[..7].eq_ignore_ascii_case(b"Call-ID") {
            i + 7
        } else if rest.len() >= 2
            && rest[0].eq_ignore_ascii_case(&b'i')
            && !rest[1].is_ascii_alphabetic()
        {
            i + 1
        } else {
            continue;
        };
        p = skip_ws(msg, p)?;
        if msg[p] != b':' {
            return None;
        }
        p += 1;
        if p >= limit {
            return None;
        }
        p = skip_ws(msg, p)?;
        let len = callid_len(&msg[p..]);
        if len == 0 {
            // ct_sip_get_header returned -1: get_callid searches on
            i = p;
            continue;
        }
        let end = p + len;
        if len > PEDATA_MAXLEN || end == limit {
            return None;
        }
        if msg[end] != b'\r' && msg[end] != b'\n' {
            return None;
        }
        return Some(&msg[p..end]);
    }
    None
}

/// sip_skip_whitespace: the first byte that is not a space or tab (a
/// CR/LF ends the header: None), None at the end of the message.
fn skip_ws(m: &[u8], mut p: usize) -> Option<usize> {
    while p < m.len() {
        match m[p] {
            b' ' | b'\t' => p += 1,
            b'\r' | b'\n' => return None,
            _ => return Some(p),
        }
    }
    None
}

/// iswordc of nf_conntrack_sip.
fn is_word(c: u8) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(c, b'!' | b'"' | b'%' | b'(' ..=b'/' | b':' | b'<' | b'>' | b'?' | b'['..=b']' | b'_' | b'`' | b'{' | b'}' | b'~')
}

/// callid_len: a word, optionally `@` and an endpoint address.
fn callid_len(s: &[u8]) -> usize {
    let len = s.iter().take_while(|&&c| is_word(c)).count();
    if len == 0 || len == s.len() || s[len] != b'@' {
        return len;
    }
    match epaddr_len(&s[len + 1..]) {
        0 => 0,
        d => len + 1 + d,
    }
}

/// epaddr_len: an IPv4 address or a bracketed IPv6 address, then an
/// optional `:port`; 0 if there is no address.
fn epaddr_len(s: &[u8]) -> usize {
    let addr = if s.first() == Some(&b'[') {
        let Some(close) = s.iter().position(|&c| c == b']') else {
            return 0;
        };
        let ok = std::str::from_utf8(&s[1..close])
            .ok()
            .and_then(|t| t.parse::<std::net::Ipv6Addr>().ok())
            .is_some();
        if !ok {
            return 0;
        }
        close + 1
    } else {
        let n = s
            .iter()
            .take_while(|c| c.is_ascii_digit() || **c == b'.')
            .count();
        let ok = std::str::from_utf8(&s[..n])
            .ok()
            .and_then(|t| t.parse::<std::net::Ipv4Addr>().ok())
            .is_some();
        if !ok {
            return 0;
        }
        n
    };
    if s.get(addr) == Some(&b':') {
        let digits = s[addr + 1..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count();
        let port = std::str::from_utf8(&s[addr + 1..addr + 1 + digits])
            .ok()
            .and_then(|t| t.parse::<u16>().ok());
        if digits > 0 && port.is_some_and(|p| p != 0) {
            return addr + 1 + digits;
        }
    }
    addr
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &[u8] = b"INVITE sip:service@198.18.0.100:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP 198.18.0.2:5061;branch=z9hG4bK-1\r\n\
From: sipp <sip:sipp@198.18.0.2:5061>;tag=1\r\n\
To: sut <sip:service@198.18.0.100:5060>\r\n\
Call-ID: 1-4242@198.18.0.2\r\n\
CSeq: 1 INVITE\r\n\
Content-Length: 0\r\n\r\n";

    #[test]
    fn finds_the_call_id_like_the_kernel() {
        assert_eq!(sip_callid(INVITE), Some(&b"1-4242@198.18.0.2"[..]));
        let compact = b"BYE sip:x SIP/2.0\r\ni: abc.def\r\nCSeq: 2 BYE\r\n\r\n";
        assert_eq!(sip_callid(compact), Some(&b"abc.def"[..]));
        let lower = b"OPTIONS sip:x SIP/2.0\ncall-id :  zz9@[2001:2::2]:5060\n\n";
        assert_eq!(sip_callid(lower), Some(&b"zz9@[2001:2::2]:5060"[..]));
    }

    #[test]
    fn what_the_kernel_does_not_take() {
        // no Call-ID, Call-ID on the first line, a continuation line
        assert_eq!(sip_callid(b"INVITE sip:x SIP/2.0\r\nCSeq: 1\r\n\r\n"), None);
        assert_eq!(sip_callid(b"Call-ID: abc\r\n"), None);
        assert_eq!(sip_callid(b"X\r\n Call-ID: abc\r\n"), None);
        // a domain name after '@' (epaddr_len needs an address)
        assert_eq!(sip_callid(b"X\r\nCall-ID: abc@example.com\r\n\r\n"), None);
        // not followed by a line end, at the end of the message, too long
        assert_eq!(sip_callid(b"X\r\nCall-ID: abc def\r\n"), None);
        assert_eq!(sip_callid(b"X\r\nCall-ID: abc"), None);
        let long = format!("X\r\nCall-ID: {}\r\n", "a".repeat(256));
        assert_eq!(sip_callid(long.as_bytes()), None);
        let max = format!("X\r\nCall-ID: {}\r\n", "a".repeat(255));
        assert_eq!(sip_callid(max.as_bytes()).map(<[u8]>::len), Some(255));
        // compact form must not be a prefix of another header
        assert_eq!(sip_callid(b"X\r\nid: abc\r\n"), None);
        assert_eq!(sip_callid(b""), None);
        assert_eq!(sip_callid(b"\r\n"), None);
    }
}
