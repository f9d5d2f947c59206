//! C-library-compatible number and address parsing/printing helpers.
//!
//! ipvsadm parses numbers with `strtol`, addresses with `inet_aton` /
//! `inet_pton` and prints IPv6 with glibc's `inet_ntop`; the small
//! differences between those and Rust's own parsers are visible to users
//! (`-M 0x8`, `-w +1`, `::1.2.3.4`), so they are reimplemented here.

use std::net::{Ipv4Addr, Ipv6Addr};

fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// `strtol(s, &end, 10)`: returns the (saturated) value, the number of bytes
/// consumed (0 if no digits) and whether the value overflowed (`ERANGE`).
pub fn strtol(s: &str) -> (i64, usize, bool) {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() && is_c_space(b[i]) {
        i += 1;
    }
    let mut neg = false;
    if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
        neg = b[i] == b'-';
        i += 1;
    }
    let start = i;
    let mut val: i128 = 0;
    let mut overflow = false;
    while i < b.len() && b[i].is_ascii_digit() {
        if !overflow {
            val = val * 10 + i128::from(b[i] - b'0');
            if val > i128::from(i64::MAX) + 1 {
                overflow = true;
            }
        }
        i += 1;
    }
    if i == start {
        return (0, 0, false);
    }
    let v = if neg { -val } else { val };
    if overflow || v > i128::from(i64::MAX) || v < i128::from(i64::MIN) {
        let sat = if neg { i64::MIN } else { i64::MAX };
        return (sat, i, true);
    }
    (v as i64, i, false)
}

/// ipvsadm's `string_to_number`: base 10, whole string, in `[min, max]`.
pub fn string_to_number(s: &str, min: i64, max: i64) -> Option<i64> {
    let (v, end, overflow) = strtol(s);
    if end != 0 && end == s.len() && !overflow && min <= v && v <= max {
        Some(v)
    } else {
        None
    }
}

/// `atoi` (glibc: `(int) strtol(s, NULL, 10)`).
pub fn atoi(s: &str) -> i32 {
    strtol(s).0 as i32
}

/// ipvsadm's `str_is_digit`: true for strings made only of digits,
/// including the empty string.
pub fn str_is_digit(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_digit())
}

/// `strtoul(cp, &end, 0)` on a string starting with a digit.
fn strtoul0(b: &[u8]) -> Option<(u64, usize)> {
    let (base, mut i) = if b.len() >= 2 && b[0] == b'0' && (b[1] == b'x' || b[1] == b'X') {
        if b.len() > 2 && b[2].is_ascii_hexdigit() {
            (16u32, 2)
        } else {
            return Some((0, 1));
        }
    } else if b.first() == Some(&b'0') {
        (8, 0)
    } else {
        (10, 0)
    };
    let mut val: u64 = 0;
    let mut overflow = false;
    while i < b.len() {
        let d = match (b[i] as char).to_digit(base) {
            Some(d) => d,
            None => break,
        };
        match val
            .checked_mul(u64::from(base))
            .and_then(|v| v.checked_add(u64::from(d)))
        {
            Some(v) => val = v,
            None => overflow = true,
        }
        i += 1;
    }
    if overflow {
        None
    } else {
        Some((val, i))
    }
}

/// glibc `inet_aton`: accepts `a`, `a.b`, `a.b.c`, `a.b.c.d` with decimal,
/// octal (`0`) and hex (`0x`) parts and trailing whitespace. Returns the
/// address in host order.
pub fn inet_aton(s: &str) -> Option<u32> {
    let b = s.as_bytes();
    let mut parts: Vec<u64> = Vec::with_capacity(4);
    let mut i = 0;
    let val;
    loop {
        if i >= b.len() || !b[i].is_ascii_digit() {
            return None;
        }
        let (v, n) = strtoul0(&b[i..])?;
        i += n;
        if i < b.len() && b[i] == b'.' {
            if parts.len() > 2 || v > 0xff {
                return None;
            }
            parts.push(v);
            i += 1;
        } else {
            val = v;
            break;
        }
    }
    if i < b.len() && !(b[i].is_ascii() && is_c_space(b[i])) {
        return None;
    }
    let limit: u64 = match parts.len() {
        0 => u64::MAX,
        1 => 0xff_ffff,
        2 => 0xffff,
        _ => 0xff,
    };
    if val > limit {
        return None;
    }
    let mut word: u32 = val as u32;
    for (k, p) in parts.iter().enumerate() {
        word |= (*p as u32) << (24 - 8 * k as u32);
    }
    Some(word)
}

/// glibc `inet_pton(AF_INET, ...)`: strict dotted quad.
pub fn inet_pton4(s: &str) -> Option<Ipv4Addr> {
    let b = s.as_bytes();
    let mut octets = [0u8; 4];
    let mut n = 0;
    let mut saw_digit = false;
    let mut cur: u32 = 0;
    for &c in b {
        if c.is_ascii_digit() {
            if saw_digit && cur == 0 {
                return None;
            }
            cur = cur * 10 + u32::from(c - b'0');
            if cur > 255 {
                return None;
            }
            if !saw_digit {
                n += 1;
                if n > 4 {
                    return None;
                }
                saw_digit = true;
            }
        } else if c == b'.' && saw_digit {
            if n == 4 {
                return None;
            }
            octets[n - 1] = cur as u8;
            cur = 0;
            saw_digit = false;
        } else {
            return None;
        }
    }
    if n < 4 || !saw_digit {
        return None;
    }
    octets[3] = cur as u8;
    Some(Ipv4Addr::from(octets))
}

/// `inet_pton(AF_INET6, ...)`.
pub fn inet_pton6(s: &str) -> Option<Ipv6Addr> {
    // Rust's parser accepts the same RFC 4291 text forms as glibc for the
    // inputs that matter here (hex groups, `::`, embedded dotted quad).
    if s.contains('%') {
        return None;
    }
    s.parse::<Ipv6Addr>().ok()
}

/// glibc `inet_ntop(AF_INET6, ...)`: RFC 5952-style compression of the
/// first longest run of at least two zero groups, plus the
/// `::a.b.c.d` / `::ffff:a.b.c.d` forms.
pub fn inet_ntop6(a: &Ipv6Addr) -> String {
    let w = a.segments();
    let (mut best_base, mut best_len) = (None::<usize>, 0usize);
    let mut cur: Option<(usize, usize)> = None;
    for (i, &seg) in w.iter().enumerate() {
        if seg == 0 {
            cur = Some(match cur {
                Some((b, l)) => (b, l + 1),
                None => (i, 1),
            });
        } else if let Some((b, l)) = cur.take() {
            if best_base.is_none() || l > best_len {
                best_base = Some(b);
                best_len = l;
            }
        }
    }
    if let Some((b, l)) = cur {
        if best_base.is_none() || l > best_len {
            best_base = Some(b);
            best_len = l;
        }
    }
    if best_len < 2 {
        best_base = None;
    }
    let mut out = String::new();
    let mut i = 0;
    while i < 8 {
        if let Some(b) = best_base {
            if i >= b && i < b + best_len {
                if i == b {
                    out.push(':');
                }
                i += 1;
                continue;
            }
        }
        if i != 0 {
            out.push(':');
        }
        if i == 6 && best_base == Some(0) && (best_len == 6 || (best_len == 5 && w[5] == 0xffff)) {
            let o = a.octets();
            out.push_str(&format!("{}.{}.{}.{}", o[12], o[13], o[14], o[15]));
            break;
        }
        out.push_str(&format!("{:x}", w[i]));
        i += 1;
    }
    if let Some(b) = best_base {
        if b + best_len == 8 {
            out.push(':');
        }
    }
    out
}

/// Format a dotted quad from a host-order word (`inet_ntoa`).
pub fn ntoa(word: u32) -> String {
    Ipv4Addr::from(word).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strtol_like_c() {
        assert_eq!(string_to_number("65535", 0, 65535), Some(65535));
        assert_eq!(string_to_number("65536", 0, 65535), None);
        assert_eq!(string_to_number(" +7", 0, 65535), Some(7));
        assert_eq!(string_to_number("-1", 0, 65535), None);
        assert_eq!(string_to_number("", 0, 65535), None);
        assert_eq!(string_to_number("1x", 0, 65535), None);
        assert_eq!(string_to_number("99999999999999999999", 0, i64::MAX), None);
        assert_eq!(atoi("64abc"), 64);
        assert_eq!(atoi("x"), 0);
    }

    #[test]
    fn inet_aton_forms() {
        assert_eq!(inet_aton("10.0.0.1"), Some(0x0a00_0001));
        assert_eq!(inet_aton("24"), Some(24));
        assert_eq!(inet_aton("10.1"), Some(0x0a00_0001));
        assert_eq!(inet_aton("0x7f.1"), Some(0x7f00_0001));
        assert_eq!(inet_aton("010.0.0.1"), Some(0x0800_0001));
        assert_eq!(inet_aton("255.255.255.0 junk"), Some(0xffff_ff00));
        assert_eq!(inet_aton("256.0.0.1"), None);
        assert_eq!(inet_aton("1.2.3.4.5"), None);
        assert_eq!(inet_aton("08"), None);
        assert_eq!(inet_aton("a.b"), None);
        assert_eq!(inet_aton(""), None);
    }

    #[test]
    fn ntop6_matches_glibc() {
        let f = |s: &str| inet_ntop6(&s.parse().unwrap());
        assert_eq!(f("2001:db8::1"), "2001:db8::1");
        assert_eq!(f("::1"), "::1");
        assert_eq!(f("::"), "::");
        assert_eq!(f("::ffff:1.2.3.4"), "::ffff:1.2.3.4");
        assert_eq!(f("::1.2.3.4"), "::1.2.3.4");
        assert_eq!(f("2001:db8:0:1:1:1:1:1"), "2001:db8:0:1:1:1:1:1");
        assert_eq!(f("2001:0:0:1:0:0:0:1"), "2001:0:0:1::1");
        assert_eq!(f("fe80::"), "fe80::");
        assert_eq!(f("1:0:0:2:0:0:3:4"), "1::2:0:0:3:4");
    }

    #[test]
    fn pton4_strict() {
        assert!(inet_pton4("224.0.0.81").is_some());
        assert!(inet_pton4("224.0.0").is_none());
        assert!(inet_pton4("224.0.0.081").is_none());
        assert!(inet_pton4("224.0.0.1 ").is_none());
    }
}
