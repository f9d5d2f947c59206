//! A minimal `bpf()` syscall loader and the hard-coded XDP program.
//!
//! No ELF, no BTF, no libbpf: the program is built here as raw
//! `bpf_insn`s ([`program`]) with the map file descriptors patched in as
//! `BPF_PSEUDO_MAP_FD` immediates, loaded with `BPF_PROG_LOAD` and attached
//! with a `BPF_LINK_CREATE` XDP link (released — so the program detached —
//! when the link fd is closed, including when the process dies).
//!
//! The program (see [`program`]) redirects to the AF_XDP socket of the
//! receiving queue only
//! * unfragmented IPv4 TCP/UDP/SCTP whose `(daddr, dport, proto, 0)` is in
//!   the `svc` hash map (client → VIP:vport), and
//! * unfragmented IPv4 TCP/UDP/SCTP whose `(saddr, sport, proto, 1)` is in
//!   `svc` (a NAT real server's reply) unless `daddr` is in `local`
//!   (the director's own addresses: health checks stay with the kernel);
//!
//! everything else (ARP, ICMP, IPv6, other hosts' traffic) gets `XDP_PASS`.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

const BPF_MAP_CREATE: i32 = 0;
const BPF_MAP_UPDATE_ELEM: i32 = 2;
const BPF_MAP_DELETE_ELEM: i32 = 3;
const BPF_PROG_LOAD: i32 = 5;
const BPF_LINK_CREATE: i32 = 28;

const BPF_MAP_TYPE_HASH: u32 = 1;
const BPF_MAP_TYPE_XSKMAP: u32 = 17;
const BPF_PROG_TYPE_XDP: u32 = 6;
const BPF_XDP: u32 = 37;

/// `XDP_FLAGS_SKB_MODE`: generic XDP (works on every device, veth included).
pub const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
/// `XDP_FLAGS_DRV_MODE`: native XDP (driver support needed).
pub const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;
/// `BPF_F_XDP_HAS_FRAGS` (`prog_flags` of `BPF_PROG_LOAD`, "xdp.frags"):
/// the program accepts multi-buffer packets (kernel ≥ 5.18). Only its
/// first buffer is reachable through `data`/`data_end`, which is all this
/// program reads (headers).
pub const BPF_F_XDP_HAS_FRAGS: u32 = 1 << 5;

/// The `svc` map key: addresses and port in network byte order, as in the
/// packet.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SvcKey {
    pub addr: [u8; 4],
    pub port: [u8; 2],
    pub proto: u8,
    /// 0: destination (VIP) match, 1: source (NAT real server) match.
    pub dir: u8,
}

impl SvcKey {
    fn bytes(&self) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[..4].copy_from_slice(&self.addr);
        b[4..6].copy_from_slice(&self.port);
        b[6] = self.proto;
        b[7] = self.dir;
        b
    }
}

fn sys_bpf(cmd: i32, attr: &mut [u8]) -> io::Result<i64> {
    // SAFETY: attr is a valid, initialised buffer of the given size; the
    // kernel reads (and for some commands writes) at most that many bytes.
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), attr.len()) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn put32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_ne_bytes());
}
fn put64(b: &mut [u8], off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_ne_bytes());
}

fn fd_from(r: i64) -> OwnedFd {
    // SAFETY: the kernel just returned this new descriptor to us.
    unsafe { OwnedFd::from_raw_fd(r as RawFd) }
}

/// A BPF map.
#[derive(Debug)]
pub struct Map {
    fd: OwnedFd,
}

impl Map {
    fn create(kind: u32, key: u32, value: u32, max: u32) -> io::Result<Map> {
        let mut a = [0u8; 20];
        put32(&mut a, 0, kind);
        put32(&mut a, 4, key);
        put32(&mut a, 8, value);
        put32(&mut a, 12, max);
        Ok(Map {
            fd: fd_from(sys_bpf(BPF_MAP_CREATE, &mut a)?),
        })
    }

    /// A hash map.
    pub fn hash(key: u32, value: u32, max: u32) -> io::Result<Map> {
        Map::create(BPF_MAP_TYPE_HASH, key, value, max)
    }

    /// An XSKMAP (queue id → AF_XDP socket).
    pub fn xsk(max: u32) -> io::Result<Map> {
        Map::create(BPF_MAP_TYPE_XSKMAP, 4, 4, max)
    }

    /// `map[key] = value`.
    pub fn update(&self, key: &[u8], value: &[u8]) -> io::Result<()> {
        let mut a = [0u8; 32];
        put32(&mut a, 0, self.fd.as_raw_fd() as u32);
        put64(&mut a, 8, key.as_ptr() as u64);
        put64(&mut a, 16, value.as_ptr() as u64);
        sys_bpf(BPF_MAP_UPDATE_ELEM, &mut a).map(|_| ())
    }

    /// Remove `key` (missing keys are not an error).
    pub fn delete(&self, key: &[u8]) -> io::Result<()> {
        let mut a = [0u8; 32];
        put32(&mut a, 0, self.fd.as_raw_fd() as u32);
        put64(&mut a, 8, key.as_ptr() as u64);
        match sys_bpf(BPF_MAP_DELETE_ELEM, &mut a) {
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
            r => r.map(|_| ()),
        }
    }

    /// Insert a service key (value unused).
    pub fn put_svc(&self, k: &SvcKey) -> io::Result<()> {
        self.update(&k.bytes(), &[1u8])
    }

    /// Remove a service key.
    pub fn del_svc(&self, k: &SvcKey) -> io::Result<()> {
        self.delete(&k.bytes())
    }

    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

// ---- instruction encoding ----

/// One `struct bpf_insn`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    pub code: u8,
    /// dst_reg (low nibble) | src_reg (high nibble).
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

const R0: u8 = 0;
const R1: u8 = 1;
const R2: u8 = 2;
const R3: u8 = 3;
const R4: u8 = 4;
const R5: u8 = 5;
const R6: u8 = 6;
const R7: u8 = 7;
const R8: u8 = 8;
const R10: u8 = 10;

// classes
const LD: u8 = 0x00;
const LDX: u8 = 0x01;
const ST: u8 = 0x02;
const STX: u8 = 0x03;
const JMP: u8 = 0x05;
const ALU64: u8 = 0x07;
// sizes
const W: u8 = 0x00;
const H: u8 = 0x08;
const B: u8 = 0x10;
const DW: u8 = 0x18;
const MEM: u8 = 0x60;
const IMM: u8 = 0x00;
// ops
const ADD: u8 = 0x00;
const AND: u8 = 0x50;
const LSH: u8 = 0x60;
const MOV: u8 = 0xb0;
const K: u8 = 0x00;
const X: u8 = 0x08;
const JA: u8 = 0x00;
const JEQ: u8 = 0x10;
const JGT: u8 = 0x20;
const JNE: u8 = 0x50;
const JLT: u8 = 0xa0;
const CALL: u8 = 0x80;
const EXIT: u8 = 0x90;

const fn ins(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: dst | (src << 4),
        off,
        imm,
    }
}
fn mov_r(d: u8, s: u8) -> Insn {
    ins(ALU64 | MOV | X, d, s, 0, 0)
}
fn mov_k(d: u8, k: i32) -> Insn {
    ins(ALU64 | MOV | K, d, 0, 0, k)
}
fn add_k(d: u8, k: i32) -> Insn {
    ins(ALU64 | ADD | K, d, 0, 0, k)
}
fn add_r(d: u8, s: u8) -> Insn {
    ins(ALU64 | ADD | X, d, s, 0, 0)
}
fn and_k(d: u8, k: i32) -> Insn {
    ins(ALU64 | AND | K, d, 0, 0, k)
}
fn lsh_k(d: u8, k: i32) -> Insn {
    ins(ALU64 | LSH | K, d, 0, 0, k)
}
fn ldx(size: u8, d: u8, s: u8, off: i16) -> Insn {
    ins(LDX | MEM | size, d, s, off, 0)
}
fn stx(size: u8, d: u8, s: u8, off: i16) -> Insn {
    ins(STX | MEM | size, d, s, off, 0)
}
fn st(size: u8, d: u8, off: i16, k: i32) -> Insn {
    ins(ST | MEM | size, d, 0, off, k)
}
fn call(f: i32) -> Insn {
    ins(JMP | CALL, 0, 0, 0, f)
}
fn exit() -> Insn {
    ins(JMP | EXIT, 0, 0, 0, 0)
}
/// `ld_imm64 d, map_fd` (two instructions).
fn ld_map(d: u8, fd: RawFd) -> [Insn; 2] {
    [ins(LD | DW | IMM, d, 1, 0, fd), ins(0, 0, 0, 0, 0)]
}

/// Builder with forward jumps resolved by label.
struct Prog {
    insns: Vec<Insn>,
    /// (instruction index, label)
    fixups: Vec<(usize, usize)>,
    labels: Vec<Option<usize>>,
}

impl Prog {
    fn new() -> Prog {
        Prog {
            insns: Vec::new(),
            fixups: Vec::new(),
            labels: Vec::new(),
        }
    }
    fn label(&mut self) -> usize {
        self.labels.push(None);
        self.labels.len() - 1
    }
    fn here(&mut self, l: usize) {
        self.labels[l] = Some(self.insns.len());
    }
    fn i(&mut self, x: Insn) {
        self.insns.push(x)
    }
    fn i2(&mut self, x: [Insn; 2]) {
        self.insns.extend_from_slice(&x)
    }
    /// Conditional jump `if d OP k goto l`.
    fn jk(&mut self, op: u8, d: u8, k: i32, l: usize) {
        self.fixups.push((self.insns.len(), l));
        self.i(ins(JMP | op | K, d, 0, 0, k));
    }
    /// Conditional jump `if d OP s goto l`.
    fn jr(&mut self, op: u8, d: u8, s: u8, l: usize) {
        self.fixups.push((self.insns.len(), l));
        self.i(ins(JMP | op | X, d, s, 0, 0));
    }
    fn finish(mut self) -> Vec<Insn> {
        for (at, l) in &self.fixups {
            let target = self.labels[*l].expect("label placed");
            self.insns[*at].off = (target as isize - *at as isize - 1) as i16;
        }
        self.insns
    }
}

/// The XDP program for the given `svc` (8-byte [`SvcKey`] → u8),
/// `local` (IPv4 address, network order → u8) and XSKMAP maps.
pub fn program(svc: RawFd, local: RawFd, xsks: RawFd) -> Vec<Insn> {
    const XDP_PASS: i32 = 2;
    const MAP_LOOKUP: i32 = 1;
    const REDIRECT_MAP: i32 = 51;
    let mut p = Prog::new();
    let pass = p.label();
    let l4 = p.label();
    let redir = p.label();
    let try_src = p.label();
    // r6 = ctx; r2 = data; r3 = data_end
    p.i(mov_r(R6, R1));
    p.i(ldx(W, R2, R6, 0));
    p.i(ldx(W, R3, R6, 4));
    // Ethernet + minimal IPv4 header present?
    p.i(mov_r(R4, R2));
    p.i(add_k(R4, 34));
    p.jr(JGT, R4, R3, pass);
    // ethertype == IPv4 (0x0800, loaded little-endian as 0x0008)
    p.i(ldx(H, R5, R2, 12));
    p.jk(JNE, R5, 0x0008, pass);
    // r5 = IHL * 4, at least 20
    p.i(ldx(B, R5, R2, 14));
    p.i(and_k(R5, 0x0f));
    p.i(lsh_k(R5, 2));
    p.jk(JLT, R5, 20, pass);
    // fragments (MF or offset) stay with the kernel
    p.i(ldx(H, R7, R2, 20));
    p.i(and_k(R7, 0xff3f));
    p.jk(JNE, R7, 0, pass);
    // r8 = protocol: TCP, UDP, SCTP
    p.i(ldx(B, R8, R2, 23));
    p.jk(JEQ, R8, 6, l4);
    p.jk(JEQ, R8, 17, l4);
    p.jk(JNE, R8, 132, pass);
    p.here(l4);
    // r4 = transport header; ports present?
    p.i(mov_r(R4, R2));
    p.i(add_k(R4, 14));
    p.i(add_r(R4, R5));
    p.i(mov_r(R0, R4));
    p.i(add_k(R0, 4));
    p.jr(JGT, R0, R3, pass);
    // key1 at fp-8: daddr, dport, proto, 0
    p.i(ldx(W, R7, R2, 30));
    p.i(stx(W, R10, R7, -8));
    p.i(ldx(H, R7, R4, 2));
    p.i(stx(H, R10, R7, -4));
    p.i(stx(B, R10, R8, -2));
    p.i(st(B, R10, -1, 0));
    // key2 at fp-16: saddr, sport, proto, 1
    p.i(ldx(W, R7, R2, 26));
    p.i(stx(W, R10, R7, -16));
    p.i(ldx(H, R7, R4, 0));
    p.i(stx(H, R10, R7, -12));
    p.i(stx(B, R10, R8, -10));
    p.i(st(B, R10, -9, 1));
    // local key at fp-24: daddr
    p.i(ldx(W, R7, R2, 30));
    p.i(stx(W, R10, R7, -24));
    // svc[key1]?
    p.i2(ld_map(R1, svc));
    p.i(mov_r(R2, R10));
    p.i(add_k(R2, -8));
    p.i(call(MAP_LOOKUP));
    p.jk(JEQ, R0, 0, try_src);
    p.i(ins(JMP | JA, 0, 0, 0, 0));
    p.fixups.push((p.insns.len() - 1, redir));
    p.here(try_src);
    // svc[key2] and daddr not local?
    p.i2(ld_map(R1, svc));
    p.i(mov_r(R2, R10));
    p.i(add_k(R2, -16));
    p.i(call(MAP_LOOKUP));
    p.jk(JEQ, R0, 0, pass);
    p.i2(ld_map(R1, local));
    p.i(mov_r(R2, R10));
    p.i(add_k(R2, -24));
    p.i(call(MAP_LOOKUP));
    p.jk(JNE, R0, 0, pass);
    p.here(redir);
    // bpf_redirect_map(xsks, rx_queue_index, XDP_PASS)
    p.i2(ld_map(R1, xsks));
    p.i(ldx(W, R2, R6, 16));
    p.i(mov_k(R3, XDP_PASS));
    p.i(call(REDIRECT_MAP));
    p.i(exit());
    p.here(pass);
    p.i(mov_k(R0, XDP_PASS));
    p.i(exit());
    p.finish()
}

/// A loaded program.
#[derive(Debug)]
pub struct Program {
    fd: OwnedFd,
}

impl Program {
    /// `BPF_PROG_LOAD` an XDP program. On a verifier error the log is in
    /// the error message.
    pub fn load_xdp(insns: &[Insn]) -> io::Result<Program> {
        Program::load_xdp_flags(insns, 0)
    }

    /// [`Program::load_xdp`] with `prog_flags` (e.g.
    /// [`BPF_F_XDP_HAS_FRAGS`]; an older kernel answers `EINVAL`).
    pub fn load_xdp_flags(insns: &[Insn], prog_flags: u32) -> io::Result<Program> {
        let license = b"GPL\0";
        let mut log = vec![0u8; 1 << 16];
        let mut a = [0u8; 48];
        put32(&mut a, 0, BPF_PROG_TYPE_XDP);
        put32(&mut a, 4, insns.len() as u32);
        put64(&mut a, 8, insns.as_ptr() as u64);
        put64(&mut a, 16, license.as_ptr() as u64);
        put32(&mut a, 24, 1);
        put32(&mut a, 28, log.len() as u32);
        put64(&mut a, 32, log.as_mut_ptr() as u64);
        // kern_version at 40, prog_flags at 44
        put32(&mut a, 44, prog_flags);
        match sys_bpf(BPF_PROG_LOAD, &mut a) {
            Ok(fd) => Ok(Program { fd: fd_from(fd) }),
            Err(e) => {
                let end = log.iter().position(|&b| b == 0).unwrap_or(0);
                let text = String::from_utf8_lossy(&log[..end]);
                Err(io::Error::new(
                    e.kind(),
                    format!("BPF_PROG_LOAD: {e}; verifier log:\n{text}"),
                ))
            }
        }
    }

    /// Attach to `ifindex` with an XDP link (`flags`: [`XDP_FLAGS_SKB_MODE`]
    /// or [`XDP_FLAGS_DRV_MODE`]). Detached when the returned link is
    /// dropped.
    pub fn attach_xdp(&self, ifindex: u32, flags: u32) -> io::Result<Link> {
        let mut a = [0u8; 16];
        put32(&mut a, 0, self.fd.as_raw_fd() as u32);
        put32(&mut a, 4, ifindex);
        put32(&mut a, 8, BPF_XDP);
        put32(&mut a, 12, flags);
        Ok(Link {
            _fd: fd_from(sys_bpf(BPF_LINK_CREATE, &mut a)?),
        })
    }
}

/// An attached XDP link: dropping it detaches the program.
#[derive(Debug)]
pub struct Link {
    _fd: OwnedFd,
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn program_shape() {
        let p = program(3, 4, 5);
        assert!(p.len() < 80);
        assert_eq!(p.last().map(|i| i.code), Some(JMP | EXIT));
        // every jump lands inside the program
        for (i, x) in p.iter().enumerate() {
            if x.code & 0x07 == JMP && x.code & 0xf0 != CALL && x.code & 0xf0 != EXIT {
                let t = i as isize + 1 + x.off as isize;
                assert!(t > 0 && (t as usize) < p.len(), "insn {i}");
            }
        }
    }

    #[test]
    fn key_layout() {
        let k = SvcKey {
            addr: [198, 18, 0, 100],
            port: 80u16.to_be_bytes(),
            proto: 6,
            dir: 0,
        };
        assert_eq!(k.bytes(), [198, 18, 0, 100, 0, 80, 6, 0]);
    }
}
