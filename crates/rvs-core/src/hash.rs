//! Small hash functions: a fast non-cryptographic hasher for internal maps,
//! the kernel's SipHash-1-3 (`hsiphash` on 64-bit) used by `mh`, and IP
//! address folding helpers shared by the hashing schedulers.

use std::hash::{BuildHasher, Hasher};
use std::net::IpAddr;

/// Multiply-rotate hasher (FxHash family) for internal maps whose keys are
/// not attacker-chosen in bulk (services, lblc entries).
#[derive(Default, Clone, Copy)]
pub(crate) struct FxHasher {
    h: u64,
}

const FX_K: u64 = 0xf135_7aea_2e62_a9c5;

impl FxHasher {
    #[inline]
    fn add(&mut self, w: u64) {
        self.h = (self.h.rotate_left(26) ^ w).wrapping_mul(FX_K);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn finish(&self) -> u64 {
        self.h.rotate_left(20)
    }
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut b = [0u8; 8];
            b.copy_from_slice(c);
            self.add(u64::from_le_bytes(b));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut b = [0u8; 8];
            b[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(b));
        }
    }
    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(i as u64)
    }
    #[inline]
    fn write_u16(&mut self, i: u16) {
        self.add(i as u64)
    }
    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(i as u64)
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i)
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64)
    }
}

/// BuildHasher for [`FxHasher`].
#[derive(Default, Clone, Copy)]
pub(crate) struct FxBuild;

impl BuildHasher for FxBuild {
    type Hasher = FxHasher;
    fn build_hasher(&self) -> FxHasher {
        FxHasher::default()
    }
}

pub(crate) type FxHashMap<K, V> = std::collections::HashMap<K, V, FxBuild>;

/// 16-byte address representation used inside connection entries.
#[inline]
pub(crate) fn addr16(a: IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V4(v4) => {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&v4.octets());
            b
        }
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// Inverse of [`addr16`].
#[inline]
pub(crate) fn ip_from16(b: &[u8; 16], v6: bool) -> IpAddr {
    if v6 {
        IpAddr::from(*b)
    } else {
        IpAddr::from([b[0], b[1], b[2], b[3]])
    }
}

/// The kernel's address fold: IPv4 address as host-order u32, IPv6 = xor of
/// its four 32-bit words (in host order after ntohl, which commutes with xor).
#[inline]
pub(crate) fn addr_fold(a: IpAddr) -> u32 {
    match a {
        IpAddr::V4(v4) => u32::from(v4),
        IpAddr::V6(v6) => {
            let o = v6.octets();
            let w = |i: usize| u32::from_be_bytes([o[i], o[i + 1], o[i + 2], o[i + 3]]);
            w(0) ^ w(4) ^ w(8) ^ w(12)
        }
    }
}

/// Mixer used for the connection index (keys: proto, client addr, client port).
#[inline]
pub(crate) fn conn_hash(seed: u64, proto: u8, v6: bool, addr: &[u8; 16], port: u16) -> u64 {
    let mut lo = [0u8; 8];
    let mut hi = [0u8; 8];
    lo.copy_from_slice(&addr[..8]);
    hi.copy_from_slice(&addr[8..]);
    let a = u64::from_le_bytes(lo);
    let b = u64::from_le_bytes(hi);
    let c = ((proto as u64) << 24) | ((v6 as u64) << 40) | (port as u64);
    // wyhash-style folded multiplies
    let m1 = fold_mul(a ^ seed ^ 0xa076_1d64_78bd_642f, b ^ 0xe703_7ed1_a0b4_28db);
    fold_mul(m1 ^ c, seed ^ 0x8ebc_6af0_9c88_c6e3)
}

#[inline]
fn fold_mul(a: u64, b: u64) -> u64 {
    let r = (a as u128).wrapping_mul(b as u128);
    (r as u64) ^ ((r >> 64) as u64)
}

/// SipHash-1-3 of one little-endian u32 with key (k0, k1), truncated to
/// 32 bits: exactly the 64-bit kernel's `hsiphash(&v, 4, key)`.
pub fn hsiphash_u32(v: u32, k0: u64, k1: u64) -> u32 {
    let mut v0: u64 = 0x736f_6d65_7073_6575 ^ k0;
    let mut v1: u64 = 0x646f_7261_6e64_6f6d ^ k1;
    let mut v2: u64 = 0x6c79_6765_6e65_7261 ^ k0;
    let mut v3: u64 = 0x7465_6462_7974_6573 ^ k1;
    let b: u64 = (4u64 << 56) | v as u64;
    macro_rules! sipround {
        () => {
            v0 = v0.wrapping_add(v1);
            v1 = v1.rotate_left(13);
            v1 ^= v0;
            v0 = v0.rotate_left(32);
            v2 = v2.wrapping_add(v3);
            v3 = v3.rotate_left(16);
            v3 ^= v2;
            v0 = v0.wrapping_add(v3);
            v3 = v3.rotate_left(21);
            v3 ^= v0;
            v2 = v2.wrapping_add(v1);
            v1 = v1.rotate_left(17);
            v1 ^= v2;
            v2 = v2.rotate_left(32);
        };
    }
    v3 ^= b;
    sipround!();
    v0 ^= b;
    v2 ^= 0xff;
    sipround!();
    sipround!();
    sipround!();
    ((v0 ^ v1) ^ (v2 ^ v3)) as u32
}

/// Small deterministic PRNG (splitmix64) for `twos`; seeded by the caller.
#[derive(Clone, Debug)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub(crate) fn next_u32(&mut self) -> u32 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) >> 32) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference SipHash-1-3 written from the paper's description with a
    /// generic message loop, to cross-check the specialised version.
    fn siphash13_generic(k0: u64, k1: u64, msg: &[u8]) -> u64 {
        let mut v = [
            0x736f_6d65_7073_6575u64 ^ k0,
            0x646f_7261_6e64_6f6du64 ^ k1,
            0x6c79_6765_6e65_7261u64 ^ k0,
            0x7465_6462_7974_6573u64 ^ k1,
        ];
        fn round(v: &mut [u64; 4]) {
            v[0] = v[0].wrapping_add(v[1]);
            v[1] = v[1].rotate_left(13) ^ v[0];
            v[0] = v[0].rotate_left(32);
            v[2] = v[2].wrapping_add(v[3]);
            v[3] = v[3].rotate_left(16) ^ v[2];
            v[0] = v[0].wrapping_add(v[3]);
            v[3] = v[3].rotate_left(21) ^ v[0];
            v[2] = v[2].wrapping_add(v[1]);
            v[1] = v[1].rotate_left(17) ^ v[2];
            v[2] = v[2].rotate_left(32);
        }
        let mut chunks = msg.chunks_exact(8);
        for c in &mut chunks {
            let mut b = [0u8; 8];
            b.copy_from_slice(c);
            let m = u64::from_le_bytes(b);
            v[3] ^= m;
            round(&mut v);
            v[0] ^= m;
        }
        let mut last = [0u8; 8];
        let rest = chunks.remainder();
        last[..rest.len()].copy_from_slice(rest);
        let b = u64::from_le_bytes(last) | ((msg.len() as u64) << 56);
        v[3] ^= b;
        round(&mut v);
        v[0] ^= b;
        v[2] ^= 0xff;
        round(&mut v);
        round(&mut v);
        round(&mut v);
        v[0] ^ v[1] ^ v[2] ^ v[3]
    }

    #[test]
    fn hsiphash_matches_generic_siphash13() {
        for &(v, k) in &[
            (0u32, 2654435761u64),
            (1, 2654435761),
            (0xc0a8_0001, 2654446892),
            (u32::MAX, 2654446892),
        ] {
            let g = siphash13_generic(k, k, &v.to_le_bytes()) as u32;
            assert_eq!(hsiphash_u32(v, k, k), g);
        }
    }

    #[test]
    fn fold() {
        assert_eq!(addr_fold("10.0.0.1".parse().unwrap()), 0x0a00_0001);
        assert_eq!(addr_fold("::1".parse().unwrap()), 1);
        assert_eq!(
            addr_fold("1:2:3:4::".parse().unwrap()),
            0x0001_0002 ^ 0x0003_0004
        );
    }
}
