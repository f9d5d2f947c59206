//! Attach an XDP program that drops IPv4 UDP (optionally only to one
//! address) and passes everything else, so ARP, ICMP and TCP keep working:
//! the XDP-drop ceiling of a benchmark path.
//!
//! ```text
//! rvs-xdp-drop --interface eth0 [--vip 198.18.0.100] [--native]
//! ```
//!
//! Generic (SKB) XDP unless `--native`. Stays attached until SIGINT/SIGTERM,
//! then detaches (the XDP link is closed; it is also released if the
//! process dies).

use std::ffi::CString;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rvs_xdp::bpf::{self, Insn, Program};

const USAGE: &str = "usage: rvs-xdp-drop --interface IF [--vip ADDR] [--native]";

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

const fn ins(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: dst | (src << 4),
        off,
        imm,
    }
}

// opcode bytes (class | size/op | source)
const LDX_W: u8 = 0x01 | 0x60; // BPF_LDX | BPF_MEM | BPF_W
const LDX_H: u8 = 0x01 | 0x60 | 0x08;
const LDX_B: u8 = 0x01 | 0x60 | 0x10;
const MOV64_K: u8 = 0x07 | 0xb0;
const MOV64_X: u8 = 0x07 | 0xb0 | 0x08;
const ADD64_K: u8 = 0x07;
const JGT_X: u8 = 0x05 | 0x20 | 0x08;
const JNE_K: u8 = 0x05 | 0x50;
const JNE32_K: u8 = 0x06 | 0x50; // BPF_JMP32: 32-bit compare
const EXIT: u8 = 0x05 | 0x90;

/// `r0 = XDP_PASS`; IPv4 UDP (to `vip`, if given) → `r0 = XDP_DROP`.
fn program(vip: Option<Ipv4Addr>) -> Vec<Insn> {
    const XDP_DROP: i32 = 1;
    const XDP_PASS: i32 = 2;
    // Jumps with off = 0 go to the final `exit` (patched below).
    let mut p = vec![
        ins(LDX_W, 2, 1, 0, 0), // r2 = ctx->data
        ins(LDX_W, 3, 1, 4, 0), // r3 = ctx->data_end
        ins(MOV64_K, 0, 0, 0, XDP_PASS),
        ins(MOV64_X, 4, 2, 0, 0),
        ins(ADD64_K, 4, 0, 0, 34), // Ethernet + 20-byte IPv4 header
        ins(JGT_X, 4, 3, 0, 0),
        ins(LDX_H, 5, 2, 12, 0),
        ins(JNE_K, 5, 0, 0, 0x0008), // ethertype 0x0800 (loaded LE)
        ins(LDX_B, 5, 2, 23, 0),
        ins(JNE_K, 5, 0, 0, 17), // protocol UDP
    ];
    if let Some(v) = vip {
        p.push(ins(LDX_W, 5, 2, 30, 0)); // daddr, network order
        p.push(ins(JNE32_K, 5, 0, 0, i32::from_ne_bytes(v.octets())));
    }
    p.push(ins(MOV64_K, 0, 0, 0, XDP_DROP));
    p.push(ins(EXIT, 0, 0, 0, 0));
    let end = p.len() - 1;
    for (i, x) in p.iter_mut().enumerate() {
        if matches!(x.code, JGT_X | JNE_K | JNE32_K) {
            x.off = (end - i - 1) as i16;
        }
    }
    p
}

fn die(msg: &str) -> ! {
    eprintln!("rvs-xdp-drop: {msg}");
    std::process::exit(1)
}

fn main() {
    let mut iface = None;
    let mut vip = None;
    let mut native = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--interface" => iface = args.next(),
            "--vip" => {
                let v = args.next().and_then(|s| s.parse::<Ipv4Addr>().ok());
                vip = Some(v.unwrap_or_else(|| die(USAGE)));
            }
            "--native" => native = true,
            _ => die(USAGE),
        }
    }
    let iface = iface.unwrap_or_else(|| die(USAGE));
    let cname = CString::new(iface.as_str()).unwrap_or_else(|_| die(USAGE));
    // SAFETY: cname is a valid NUL-terminated string.
    let ifindex = unsafe { libc::if_nametoindex(cname.as_ptr()) };
    if ifindex == 0 {
        die(&format!("no interface {iface}"));
    }
    let prog = Program::load_xdp(&program(vip)).unwrap_or_else(|e| die(&e.to_string()));
    let (flags, mode) = if native {
        (bpf::XDP_FLAGS_DRV_MODE, "native")
    } else {
        (bpf::XDP_FLAGS_SKB_MODE, "generic")
    };
    // SAFETY: installing a handler that only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    let link = prog
        .attach_xdp(ifindex, flags)
        .unwrap_or_else(|e| die(&format!("cannot attach XDP ({mode}) to {iface}: {e}")));
    let what = vip.map_or("IPv4 UDP".to_string(), |v| format!("IPv4 UDP to {v}"));
    eprintln!("rvs-xdp-drop: attached ({mode}) to {iface}: dropping {what}");
    while !STOP.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(link);
    eprintln!("rvs-xdp-drop: detached from {iface}");
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn jumps_land_on_exit() {
        for vip in [None, Some(Ipv4Addr::new(198, 18, 0, 100))] {
            let p = program(vip);
            let end = p.len() - 1;
            assert_eq!(p[end].code, EXIT);
            for (i, x) in p.iter().enumerate() {
                if matches!(x.code, JGT_X | JNE_K | JNE32_K) {
                    assert_eq!(i as isize + 1 + x.off as isize, end as isize);
                }
            }
        }
    }
}
