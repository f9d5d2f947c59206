//! RFC 1071 Internet checksum, pseudo-headers, and RFC 1624 incremental update.
//!
//! The functions work on one's-complement *sums* (`u32`, not yet folded) and
//! on final checksums (`u16`, the complement of the folded sum, as stored in
//! headers). A buffer whose stored checksum is right sums (with [`sum`] and
//! [`fold`]) to `0xffff`.
//!
//! Incremental update (RFC 1624, equation 3): `HC' = ~(~HC + ~m + m')`, where
//! `m` is the old 16-bit field value and `m'` the new one. For a header whose
//! data is not all zeros the result is bit-for-bit what a full recomputation
//! gives (both produce the unique non-`0xffff` representative).

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// One's-complement sum of `data` as big-endian 16-bit words (an odd final
/// byte is padded with zero), not folded.
pub fn sum(data: &[u8]) -> u32 {
    let mut acc: u64 = 0;
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        acc += u64::from(u16::from_be_bytes([c[0], c[1]]))
            + u64::from(u16::from_be_bytes([c[2], c[3]]))
            + u64::from(u16::from_be_bytes([c[4], c[5]]))
            + u64::from(u16::from_be_bytes([c[6], c[7]]));
    }
    let rest = chunks.remainder();
    let mut pairs = rest.chunks_exact(2);
    for c in &mut pairs {
        acc += u64::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = pairs.remainder() {
        acc += u64::from(*last) << 8;
    }
    fold64(acc)
}

fn fold64(mut acc: u64) -> u32 {
    while acc > 0xffff_ffff {
        acc = (acc & 0xffff_ffff) + (acc >> 32);
    }
    acc as u32
}

/// Add two unfolded sums.
#[inline]
pub fn add(a: u32, b: u32) -> u32 {
    let (s, carry) = a.overflowing_add(b);
    s + u32::from(carry)
}

/// Fold a 32-bit sum to 16 bits with end-around carry (not complemented).
#[inline]
pub fn fold(mut s: u32) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

/// Final checksum of a sum: `!fold(s)`.
#[inline]
pub fn finish(s: u32) -> u16 {
    !fold(s)
}

/// RFC 1071 checksum of `data` (the value to store in a header whose
/// checksum field is zero in `data`).
pub fn checksum(data: &[u8]) -> u16 {
    finish(sum(data))
}

/// `true` if `data` (which includes its stored checksum field) verifies.
pub fn verify(data: &[u8]) -> bool {
    fold(sum(data)) == 0xffff
}

/// Sum of the IPv4 pseudo-header (RFC 793/768).
pub fn pseudo_header_v4(src: &Ipv4Addr, dst: &Ipv4Addr, proto: u8, len: u32) -> u32 {
    let s = src.octets();
    let d = dst.octets();
    let mut acc = u32::from(u16::from_be_bytes([s[0], s[1]]))
        + u32::from(u16::from_be_bytes([s[2], s[3]]))
        + u32::from(u16::from_be_bytes([d[0], d[1]]))
        + u32::from(u16::from_be_bytes([d[2], d[3]]))
        + u32::from(proto);
    acc = add(acc, (len >> 16) + (len & 0xffff));
    acc
}

/// Sum of the IPv6 pseudo-header (RFC 8200 §8.1).
pub fn pseudo_header_v6(src: &Ipv6Addr, dst: &Ipv6Addr, next_header: u8, len: u32) -> u32 {
    let mut acc = add(sum(&src.octets()), sum(&dst.octets()));
    acc = add(acc, (len >> 16) + (len & 0xffff));
    add(acc, u32::from(next_header))
}

/// Pseudo-header sum for either family. With mixed families the result is
/// meaningless (but computing it never panics).
pub fn pseudo_header(src: &IpAddr, dst: &IpAddr, proto: u8, len: u32) -> u32 {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => pseudo_header_v4(s, d, proto, len),
        (IpAddr::V6(s), IpAddr::V6(d)) => pseudo_header_v6(s, d, proto, len),
        (s, d) => {
            let a = match s {
                IpAddr::V4(a) => sum(&a.octets()),
                IpAddr::V6(a) => sum(&a.octets()),
            };
            let b = match d {
                IpAddr::V4(a) => sum(&a.octets()),
                IpAddr::V6(a) => sum(&a.octets()),
            };
            add(
                add(a, b),
                add(u32::from(proto), (len >> 16) + (len & 0xffff)),
            )
        }
    }
}

/// RFC 1624 eq. 3: update checksum `csum` for a 16-bit field changing from
/// `old` to `new`.
#[inline]
pub fn update_u16(csum: u16, old: u16, new: u16) -> u16 {
    let s = u32::from(!csum) + u32::from(!old) + u32::from(new);
    !fold(s)
}

/// RFC 1624 update for a 32-bit field (e.g. an IPv4 address).
#[inline]
pub fn update_u32(csum: u16, old: u32, new: u32) -> u16 {
    let s = u32::from(!csum)
        + u32::from(!(old >> 16) as u16)
        + u32::from(!(old as u16))
        + (new >> 16)
        + (new & 0xffff);
    !fold(s)
}

/// RFC 1624 update for a field of any even length changing from `old` to
/// `new` (e.g. an IPv6 address). If the lengths differ or are odd, the
/// shorter/odd part is treated as zero-padded, which is what a full
/// recomputation would see for a 16-bit aligned field.
pub fn update_bytes(csum: u16, old: &[u8], new: &[u8]) -> u16 {
    // ~m summed == complement of sum(m) in one's complement arithmetic.
    let s = add(add(u32::from(!csum), u32::from(!fold(sum(old)))), sum(new));
    !fold(s)
}

/// Update for an address change, either family (mixed families: treated as
/// byte strings).
pub fn update_addr(csum: u16, old: &IpAddr, new: &IpAddr) -> u16 {
    match (old, new) {
        (IpAddr::V4(o), IpAddr::V4(n)) => update_u32(csum, u32::from(*o), u32::from(*n)),
        (IpAddr::V6(o), IpAddr::V6(n)) => update_bytes(csum, &o.octets(), &n.octets()),
        (IpAddr::V4(o), IpAddr::V6(n)) => update_bytes(csum, &o.octets(), &n.octets()),
        (IpAddr::V6(o), IpAddr::V4(n)) => update_bytes(csum, &o.octets(), &n.octets()),
    }
}

#[cfg(test)]
mod test {
    use super::*;

    /// Straightforward reference: sum of words as a big integer, then
    /// reduce modulo 0xffff (one's complement), complement.
    fn reference(data: &[u8]) -> u16 {
        let mut total: u128 = 0;
        let mut i = 0;
        while i < data.len() {
            let hi = u128::from(data[i]);
            let lo = if i + 1 < data.len() {
                u128::from(data[i + 1])
            } else {
                0
            };
            total += (hi << 8) | lo;
            i += 2;
        }
        let r = if total == 0 {
            0
        } else {
            ((total - 1) % 0xffff) + 1
        } as u16;
        !r
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3 example: 00 01 f2 03 f4 f5 f6 f7 -> sum ddf2, cksum 220d
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum(&data)), 0xddf2);
        assert_eq!(checksum(&data), 0x220d);
        assert_eq!(reference(&data), 0x220d);
    }

    #[test]
    fn odd_length() {
        let data = [0x01, 0x02, 0x03];
        assert_eq!(fold(sum(&data)), 0x0402);
        assert_eq!(checksum(&data), reference(&data));
    }

    #[test]
    fn against_reference_many_lengths() {
        let mut data = [0u8; 300];
        let mut x: u32 = 12345;
        for b in data.iter_mut() {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            *b = (x >> 16) as u8;
        }
        for n in 0..data.len() {
            assert_eq!(checksum(&data[..n]), reference(&data[..n]), "len {n}");
        }
        let ff = [0xffu8; 64];
        for n in 0..ff.len() {
            assert_eq!(checksum(&ff[..n]), reference(&ff[..n]), "ff len {n}");
        }
    }

    #[test]
    fn incremental_matches_full() {
        // IPv4 header from RFC 1071-style example (Wikipedia's).
        let mut h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        let c = checksum(&h);
        assert_eq!(c, 0xb861);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        assert!(verify(&h));
        let old = u32::from_be_bytes([h[16], h[17], h[18], h[19]]);
        let new = 0xc612_0015u32;
        let c2 = update_u32(c, old, new);
        h[16..20].copy_from_slice(&new.to_be_bytes());
        h[10..12].copy_from_slice(&[0, 0]);
        assert_eq!(c2, checksum(&h));
        let c3 = update_bytes(c, &old.to_be_bytes(), &new.to_be_bytes());
        assert_eq!(c3, c2);
    }

    #[test]
    fn pseudo_v4() {
        let s = pseudo_header_v4(
            &Ipv4Addr::new(192, 168, 0, 1),
            &Ipv4Addr::new(192, 168, 0, 199),
            17,
            0x5f,
        );
        let mut buf = [0u8; 12];
        buf[0..4].copy_from_slice(&[192, 168, 0, 1]);
        buf[4..8].copy_from_slice(&[192, 168, 0, 199]);
        buf[9] = 17;
        buf[10..12].copy_from_slice(&0x5fu16.to_be_bytes());
        assert_eq!(fold(s), fold(sum(&buf)));
    }

    #[test]
    fn pseudo_v6() {
        let src: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let dst: Ipv6Addr = "2001:db8::2".parse().unwrap();
        let s = pseudo_header_v6(&src, &dst, 6, 70000);
        let mut buf = [0u8; 40];
        buf[0..16].copy_from_slice(&src.octets());
        buf[16..32].copy_from_slice(&dst.octets());
        buf[32..36].copy_from_slice(&70000u32.to_be_bytes());
        buf[39] = 6;
        assert_eq!(fold(s), fold(sum(&buf)));
    }
}
