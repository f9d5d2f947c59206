//! Thin, audited wrappers over the Linux syscalls the engine needs:
//! an AF_PACKET socket with a TPACKET_V2 mmap RX ring, frame transmit,
//! per-firewall-mark AF_PACKET sockets with a classic BPF filter
//! ([`MarkSocket`]),
//! interface facts (index, MAC, MTU, IPv4 addresses) and a TUN device.
//!
//! Every `unsafe` block is here, each with its reason.

use rvs_wire::ethernet::Address as Mac;
use std::ffi::CString;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{fence, Ordering};
use std::time::Duration;

const ETH_P_ALL: u16 = 0x0003;
const PACKET_RX_RING: libc::c_int = 5;
const PACKET_VERSION: libc::c_int = 10;
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;
const TP_STATUS_KERNEL: u32 = 0;
const TP_STATUS_USER: u32 = 1;
/// The transport checksum is not computed yet (CHECKSUM_PARTIAL, e.g. a
/// locally generated packet on veth): it must be completed before the
/// frame leaves through a packet socket.
const TP_STATUS_CSUMNOTREADY: u32 = 1 << 3;
/// Packet type of frames we sent ourselves (sockaddr_ll.sll_pkttype).
pub const PACKET_OUTGOING: u8 = 4;
/// Packet type: addressed to another host (seen in promiscuous mode).
pub const PACKET_OTHERHOST: u8 = 3;

/// Ring geometry (TPACKET_V2). Frames that do not fit a slot (GSO
/// super-packets from virtual NICs, up to 64 KiB) are not lost: with
/// `PACKET_COPY_THRESH` the kernel also queues a full copy on the socket
/// (the slot is marked `TP_STATUS_COPY`), which [`PacketSocket`] reads in
/// order. V2 rather than V3 because V3 hands a block to user space only
/// when it is full or after its retire timeout (≥ 1 ms), which adds up to
/// a millisecond to every packet at moderate rates; V2 slots are ready at
/// once.
#[derive(Debug, Clone, Copy)]
pub struct RingConf {
    /// Bytes per slot (header + frame): 2048 holds a 1500-byte MTU frame.
    pub frame_size: u32,
    /// Bytes per block (power-of-two pages, multiple of `frame_size`).
    pub block_size: u32,
    /// Number of blocks.
    pub block_nr: u32,
}

impl Default for RingConf {
    fn default() -> Self {
        // 4096 slots of 2 KiB (8 MiB).
        RingConf {
            frame_size: 2048,
            block_size: 1 << 16,
            block_nr: 128,
        }
    }
}

const TPACKET_V2: libc::c_int = 1;
const PACKET_COPY_THRESH: libc::c_int = 7;
const PACKET_QDISC_BYPASS: libc::c_int = 20;
const TP_STATUS_COPY: u32 = 1 << 1;

/// `struct tpacket_req`.
#[repr(C)]
struct TpacketReq {
    tp_block_size: u32,
    tp_block_nr: u32,
    tp_frame_size: u32,
    tp_frame_nr: u32,
}

// struct tpacket2_hdr.
const P_STATUS: usize = 0;
const P_LEN: usize = 4;
const P_SNAPLEN: usize = 8;
const P_MAC: usize = 12;
/// sockaddr_ll follows the 32-byte tpacket2_hdr; sll_pkttype is at +10.
const P_PKTTYPE: usize = 32 + 10;

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn setsockopt<T>(fd: RawFd, level: libc::c_int, name: libc::c_int, v: &T) -> io::Result<()> {
    // SAFETY: `v` is a valid reference to a `T` for the duration of the
    // call and we pass its exact size.
    cvt(unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (v as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    })
    .map(|_| ())
}

/// Interface index of `name`.
pub fn if_index(name: &str) -> io::Result<u32> {
    let c = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `c` is a valid NUL-terminated string.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if i == 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(i)
    }
}

/// MAC address of `name` (from sysfs).
pub fn if_mac(name: &str) -> io::Result<Mac> {
    let s = std::fs::read_to_string(format!("/sys/class/net/{name}/address"))?;
    parse_mac(s.trim()).ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad MAC"))
}

/// Parse `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Option<Mac> {
    let mut m = [0u8; 6];
    let mut it = s.split(':');
    for b in m.iter_mut() {
        *b = u8::from_str_radix(it.next()?, 16).ok()?;
    }
    it.next().is_none().then_some(Mac(m))
}

/// MTU of `name` (from sysfs).
pub fn if_mtu(name: &str) -> io::Result<u32> {
    std::fs::read_to_string(format!("/sys/class/net/{name}/mtu"))?
        .trim()
        .parse()
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad MTU"))
}

/// IPv4 addresses (with prefix length) configured on `name`, in kernel
/// order (primary addresses first).
pub fn if_ipv4_addrs(name: &str) -> io::Result<Vec<(Ipv4Addr, u8)>> {
    let mut out = Vec::new();
    let mut ifap: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `ifap` with a list we free below.
    cvt(unsafe { libc::getifaddrs(&mut ifap) })?;
    let mut p = ifap;
    while !p.is_null() {
        // SAFETY: `p` is a node of the list returned by getifaddrs.
        let ifa = unsafe { &*p };
        p = ifa.ifa_next;
        if ifa.ifa_addr.is_null() || ifa.ifa_name.is_null() {
            continue;
        }
        // SAFETY: ifa_name is a NUL-terminated string owned by the list.
        let n = unsafe { std::ffi::CStr::from_ptr(ifa.ifa_name) };
        if n.to_bytes() != name.as_bytes() {
            continue;
        }
        // SAFETY: ifa_addr is non-null and points to a sockaddr.
        if i32::from(unsafe { (*ifa.ifa_addr).sa_family }) != libc::AF_INET {
            continue;
        }
        // SAFETY: sa_family is AF_INET, so it is a sockaddr_in.
        let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
        let addr = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
        let plen = if ifa.ifa_netmask.is_null() {
            32
        } else {
            // SAFETY: the netmask of an AF_INET address is a sockaddr_in.
            let m = unsafe { &*(ifa.ifa_netmask as *const libc::sockaddr_in) };
            u32::from_be(m.sin_addr.s_addr).count_ones() as u8
        };
        out.push((addr, plen));
    }
    // SAFETY: `ifap` came from getifaddrs.
    unsafe { libc::freeifaddrs(ifap) };
    Ok(out)
}

/// IPv6 addresses (with prefix length) configured on `name`.
pub fn if_ipv6_addrs(name: &str) -> io::Result<Vec<(std::net::Ipv6Addr, u8)>> {
    let mut out = Vec::new();
    let mut ifap: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `ifap` with a list we free below.
    cvt(unsafe { libc::getifaddrs(&mut ifap) })?;
    let mut p = ifap;
    while !p.is_null() {
        // SAFETY: `p` is a node of the list returned by getifaddrs.
        let ifa = unsafe { &*p };
        p = ifa.ifa_next;
        if ifa.ifa_addr.is_null() || ifa.ifa_name.is_null() {
            continue;
        }
        // SAFETY: ifa_name is a NUL-terminated string owned by the list.
        let n = unsafe { std::ffi::CStr::from_ptr(ifa.ifa_name) };
        // SAFETY: ifa_addr is non-null and points to a sockaddr.
        if n.to_bytes() != name.as_bytes()
            || i32::from(unsafe { (*ifa.ifa_addr).sa_family }) != libc::AF_INET6
        {
            continue;
        }
        // SAFETY: sa_family is AF_INET6, so it is a sockaddr_in6.
        let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in6) };
        let plen = if ifa.ifa_netmask.is_null() {
            128
        } else {
            // SAFETY: the netmask of an AF_INET6 address is a sockaddr_in6.
            let m = unsafe { &*(ifa.ifa_netmask as *const libc::sockaddr_in6) };
            m.sin6_addr
                .s6_addr
                .iter()
                .map(|b| b.count_ones())
                .sum::<u32>() as u8
        };
        out.push((std::net::Ipv6Addr::from(sin.sin6_addr.s6_addr), plen));
    }
    // SAFETY: `ifap` came from getifaddrs.
    unsafe { libc::freeifaddrs(ifap) };
    Ok(out)
}

/// An AF_PACKET socket bound to one interface, with a TPACKET_V2 mmap RX
/// ring. Frames are transmitted with `send` on the same socket.
pub struct PacketSocket {
    fd: OwnedFd,
    ring: *mut u8,
    ring_len: usize,
    conf: RingConf,
    frames: usize,
    /// First slot not yet handed out.
    next: usize,
    /// Slots handed out by the last `recv_block`.
    taken: Vec<usize>,
    /// Full copies of truncated frames (`TP_STATUS_COPY`).
    copies: Vec<Vec<u8>>,
    /// Batch size limit.
    max: usize,
}

// SAFETY: the ring mapping is owned by this value and only touched through
// its methods; the kernel side synchronises through tp_status.
unsafe impl Send for PacketSocket {}

/// One received frame, valid until [`PacketSocket::release_block`].
#[derive(Debug, Clone, Copy)]
pub struct RxFrame {
    off: usize,
    copy: Option<usize>,
    /// Captured length.
    pub len: usize,
    /// Original length on the wire (> `len` if truncated).
    pub wire_len: usize,
    /// sll_pkttype.
    pub pkttype: u8,
    /// The L4 checksum is partial (see `fwd::complete_l4_checksum`).
    pub csum_not_ready: bool,
}

fn rd32(p: *const u8) -> u32 {
    // SAFETY: callers pass pointers inside the mapping; unaligned read.
    unsafe { std::ptr::read_unaligned(p.cast::<u32>()) }
}

impl PacketSocket {
    /// Open, bind to `ifindex`, set TPACKET_V2 (+ copy of large frames) and
    /// map the RX ring.
    pub fn open(ifindex: u32, conf: RingConf) -> io::Result<PacketSocket> {
        // SAFETY: plain socket(2).
        let raw = cvt(unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                i32::from(ETH_P_ALL.to_be()),
            )
        })?;
        // SAFETY: `raw` is a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        setsockopt(raw, libc::SOL_PACKET, PACKET_VERSION, &TPACKET_V2)?;
        let one: libc::c_int = 1;
        // Best effort (Linux >= 4.20): don't see our own transmissions.
        let _ = setsockopt(raw, libc::SOL_PACKET, PACKET_IGNORE_OUTGOING, &one);
        setsockopt(raw, libc::SOL_PACKET, PACKET_COPY_THRESH, &one)?;
        // Our frames are complete: skip the qdisc layer (best effort).
        let _ = setsockopt(raw, libc::SOL_PACKET, PACKET_QDISC_BYPASS, &one);
        let rcvbuf: libc::c_int = 4 << 20;
        let _ = setsockopt(raw, libc::SOL_SOCKET, libc::SO_RCVBUF, &rcvbuf);
        let fpb = conf.block_size / conf.frame_size;
        let req = TpacketReq {
            tp_block_size: conf.block_size,
            tp_block_nr: conf.block_nr,
            tp_frame_size: conf.frame_size,
            tp_frame_nr: fpb * conf.block_nr,
        };
        setsockopt(raw, libc::SOL_PACKET, PACKET_RX_RING, &req)?;
        let ring_len = (conf.block_size as usize) * (conf.block_nr as usize);
        // SAFETY: mapping the ring the kernel just allocated for this fd.
        let ring = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                ring_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                raw,
                0,
            )
        };
        if ring == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let s = PacketSocket {
            fd,
            ring: ring.cast(),
            ring_len,
            conf,
            frames: (fpb * conf.block_nr) as usize,
            next: 0,
            taken: Vec::new(),
            copies: Vec::new(),
            max: 256,
        };
        s.bind(ifindex)?;
        Ok(s)
    }

    fn bind(&self, ifindex: u32) -> io::Result<()> {
        // SAFETY: zeroed sockaddr_ll is a valid value.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = ETH_P_ALL.to_be();
        sll.sll_ifindex = ifindex as i32;
        // SAFETY: `sll` is a valid sockaddr_ll of the size we pass.
        cvt(unsafe {
            libc::bind(
                self.fd.as_raw_fd(),
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        })
        .map(|_| ())
    }

    fn slot_off(&self, slot: usize) -> usize {
        let fpb = (self.conf.block_size / self.conf.frame_size) as usize;
        (slot / fpb) * self.conf.block_size as usize + (slot % fpb) * self.conf.frame_size as usize
    }

    fn status_ptr(&self, slot: usize) -> *mut u32 {
        // SAFETY: slot < frames, so the header is inside the mapping.
        unsafe { self.ring.add(self.slot_off(slot) + P_STATUS).cast() }
    }

    fn status(&self, slot: usize) -> u32 {
        // SAFETY: valid header; volatile because the kernel writes it.
        let st = unsafe { std::ptr::read_volatile(self.status_ptr(slot)) };
        fence(Ordering::Acquire);
        st
    }

    fn ready(&self) -> bool {
        self.status(self.next) & TP_STATUS_USER != 0
    }

    /// Wait until a frame is ready or `timeout` passes.
    pub fn wait(&self, timeout: Duration) -> io::Result<bool> {
        if self.ready() {
            return Ok(true);
        }
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&mut pfd, 1, timeout.as_millis() as libc::c_int) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                return Ok(false);
            }
            return Err(e);
        }
        Ok(self.ready())
    }

    /// Like [`PacketSocket::wait`], also polling `pfds[1..]` (their
    /// `revents` are set; with the ring already ready they are polled
    /// without waiting). `pfds[0]` is the ring's slot, filled in here, so
    /// the caller's array is polled as it is, without a copy. Returns
    /// whether the ring has a frame.
    pub fn wait_any(&self, pfds: &mut [libc::pollfd], timeout: Duration) -> io::Result<bool> {
        if pfds.len() <= 1 {
            return self.wait(timeout);
        }
        let ready = self.ready();
        pfds[0] = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        for p in pfds[1..].iter_mut() {
            p.revents = 0;
        }
        let ms = if ready {
            0
        } else {
            timeout.as_millis() as libc::c_int
        };
        // SAFETY: `pfds` is a valid array of pollfds of the given length.
        let r = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, ms) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                return Ok(ready || self.ready());
            }
            return Err(e);
        }
        Ok(ready || self.ready())
    }

    /// Take the ready frames (up to a batch) into `out`; `false` if none.
    /// They stay valid until [`PacketSocket::release_block`].
    pub fn recv_block(&mut self, out: &mut Vec<RxFrame>) -> bool {
        out.clear();
        self.copies.clear();
        while out.len() < self.max {
            let slot = self.next;
            let st = self.status(slot);
            if st & TP_STATUS_USER == 0 {
                break;
            }
            let base = self.slot_off(slot);
            let send = base + self.conf.frame_size as usize;
            // SAFETY: the slot belongs to user space (TP_STATUS_USER).
            let p = unsafe { self.ring.add(base) };
            let wire_len = rd32(unsafe { p.add(P_LEN) }) as usize;
            let snaplen = rd32(unsafe { p.add(P_SNAPLEN) }) as usize;
            // SAFETY: inside the slot header.
            let mac = usize::from(unsafe { std::ptr::read_unaligned(p.add(P_MAC).cast::<u16>()) });
            let pkttype = unsafe { *p.add(P_PKTTYPE) };
            let start = (base + mac).min(send);
            let mut f = RxFrame {
                off: start,
                copy: None,
                len: snaplen.min(send - start),
                wire_len,
                pkttype,
                csum_not_ready: st & TP_STATUS_CSUMNOTREADY != 0,
            };
            if st & TP_STATUS_COPY != 0 {
                // The full frame waits on the socket queue, in ring order.
                let mut buf = vec![0u8; wire_len.max(64)];
                // SAFETY: valid buffer of the given length.
                let n = unsafe {
                    libc::recv(
                        self.fd.as_raw_fd(),
                        buf.as_mut_ptr().cast(),
                        buf.len(),
                        libc::MSG_DONTWAIT | libc::MSG_TRUNC,
                    )
                };
                if n > 0 && n as usize <= buf.len() {
                    buf.truncate(n as usize);
                    f.len = buf.len();
                    f.copy = Some(self.copies.len());
                    self.copies.push(buf);
                }
            }
            out.push(f);
            self.taken.push(slot);
            self.next = (self.next + 1) % self.frames;
        }
        !out.is_empty()
    }

    /// Bytes of a received frame.
    pub fn frame(&self, f: &RxFrame) -> &[u8] {
        if let Some(i) = f.copy {
            return self.copies.get(i).map(Vec::as_slice).unwrap_or(&[]);
        }
        debug_assert!(f.off + f.len <= self.ring_len);
        // SAFETY: `recv_block` clamped the frame to its slot, which belongs
        // to user space until `release_block`.
        unsafe { std::slice::from_raw_parts(self.ring.add(f.off), f.len) }
    }

    /// Give the slots of the last `recv_block` back to the kernel.
    pub fn release_block(&mut self) {
        fence(Ordering::Release);
        for &slot in &self.taken {
            // SAFETY: header of a valid slot we own.
            unsafe { std::ptr::write_volatile(self.status_ptr(slot), TP_STATUS_KERNEL) };
        }
        self.taken.clear();
    }

    /// Transmit one Ethernet frame on the bound interface.
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        // SAFETY: `frame` is a valid buffer of the given length.
        let r = unsafe { libc::send(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// Transmit several frames with one `sendmmsg(2)` (retrying the rest
    /// after a partial send). Returns how many were sent.
    pub fn send_many(&self, frames: &[&[u8]]) -> usize {
        let mut iov: Vec<libc::iovec> = frames
            .iter()
            .map(|f| libc::iovec {
                iov_base: f.as_ptr() as *mut libc::c_void,
                iov_len: f.len(),
            })
            .collect();
        // SAFETY: zeroed mmsghdr is valid; each points at one iovec below.
        let mut msgs: Vec<libc::mmsghdr> = iov
            .iter_mut()
            .map(|v| {
                let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
                m.msg_hdr.msg_iov = v;
                m.msg_hdr.msg_iovlen = 1;
                m
            })
            .collect();
        let mut done = 0;
        let mut tries = 0;
        while done < msgs.len() && tries < 4 {
            tries += 1;
            // SAFETY: `msgs[done..]` are valid mmsghdrs whose iovecs point
            // into `frames`, alive for the call.
            let r = unsafe {
                libc::sendmmsg(
                    self.fd.as_raw_fd(),
                    msgs[done..].as_mut_ptr(),
                    (msgs.len() - done) as libc::c_uint,
                    0,
                )
            };
            if r <= 0 {
                // Skip the frame that failed (e.g. too big) and go on.
                done += 1;
                continue;
            }
            done += r as usize;
        }
        msgs.iter().filter(|m| m.msg_len > 0).count()
    }

    /// Join fanout group `group` in hash mode: the kernel spreads frames
    /// over the group's sockets by flow hash (one flow, one socket).
    pub fn join_fanout(&self, group: u16) -> io::Result<()> {
        const PACKET_FANOUT: libc::c_int = 18;
        const PACKET_FANOUT_HASH: libc::c_int = 0;
        let v: libc::c_int = libc::c_int::from(group) | (PACKET_FANOUT_HASH << 16);
        setsockopt(self.fd.as_raw_fd(), libc::SOL_PACKET, PACKET_FANOUT, &v)
    }

    /// Raw descriptor.
    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl Drop for PacketSocket {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what we mapped.
        unsafe { libc::munmap(self.ring.cast(), self.ring_len) };
    }
}

const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86DD;
const PACKET_AUXDATA: libc::c_int = 8;
/// `SKF_AD_OFF` (−0x1000): classic BPF loads from here on read skb
/// fields instead of packet bytes.
const SKF_AD_OFF: u32 = 0xffff_f000;
const SKF_AD_PKTTYPE: u32 = 4;
const SKF_AD_MARK: u32 = 20;
const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JMP_JEQ_K: u16 = 0x15;
const BPF_RET_K: u16 = 0x06;

/// The classic BPF socket filter of a [`MarkSocket`]: accept (whole
/// frame) only frames with `skb->mark == mark` that are not our own
/// transmissions.
///
/// ```text
/// 0: ld  [SKF_AD_OFF + SKF_AD_PKTTYPE]
/// 1: jeq #PACKET_OUTGOING, 5, 2
/// 2: ld  [SKF_AD_OFF + SKF_AD_MARK]
/// 3: jeq #mark, 4, 5
/// 4: ret #262144
/// 5: ret #0
/// ```
pub fn mark_filter(mark: u32) -> [libc::sock_filter; 6] {
    let i = |code: u16, jt: u8, jf: u8, k: u32| libc::sock_filter { code, jt, jf, k };
    [
        i(BPF_LD_W_ABS, 0, 0, SKF_AD_OFF + SKF_AD_PKTTYPE),
        i(BPF_JMP_JEQ_K, 3, 0, u32::from(PACKET_OUTGOING)),
        i(BPF_LD_W_ABS, 0, 0, SKF_AD_OFF + SKF_AD_MARK),
        i(BPF_JMP_JEQ_K, 0, 1, mark),
        i(BPF_RET_K, 0, 0, 0x40000),
        i(BPF_RET_K, 0, 0, 0),
    ]
}

/// Frames one [`MarkSocket::recv_batch`] takes at most.
const MARK_BATCH: usize = 16;
/// Receive buffer per frame: a 64 KiB GSO super-packet and its Ethernet
/// header.
const MARK_BUF: usize = 65536 + 128;

/// An AF_PACKET `SOCK_RAW` socket without a ring, bound to one interface
/// and to ETH_P_IP (or ETH_P_IPV6), with [`mark_filter`] attached:
/// it receives the frames an nftables `netdev` ingress rule (or tc)
/// marked with `mark`. Sockets bound to a protocol are served after the
/// tc and netdev ingress hooks (`__netif_receive_skb_core`: ETH_P_ALL
/// taps, `sch_handle_ingress`, `nf_ingress`, then the protocol
/// handlers), so the mark is visible to them, unlike the ETH_P_ALL ring
/// of [`PacketSocket`], which sees every frame before.
pub struct MarkSocket {
    fd: OwnedFd,
    /// The firewall mark the filter accepts.
    pub mark: u32,
    /// Bound to ETH_P_IPV6 (else ETH_P_IP).
    pub v6: bool,
    bufs: Vec<Vec<u8>>,
    /// Control buffers (PACKET_AUXDATA), u64 for cmsghdr alignment.
    ctrl: Vec<[u64; 8]>,
    names: Vec<libc::sockaddr_ll>,
}

// SAFETY: plain owned buffers and a descriptor.
unsafe impl Send for MarkSocket {}

impl MarkSocket {
    /// Open on `ifindex` for IPv4 (or IPv6 with `v6`) frames marked `mark`.
    pub fn open(ifindex: u32, mark: u32, v6: bool) -> io::Result<MarkSocket> {
        // Protocol 0: nothing is queued before the filter is attached
        // and the socket bound.
        // SAFETY: plain socket(2).
        let raw = cvt(unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                0,
            )
        })?;
        // SAFETY: `raw` is a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let mut prog = mark_filter(mark);
        let fprog = libc::sock_fprog {
            len: prog.len() as libc::c_ushort,
            filter: prog.as_mut_ptr(),
        };
        setsockopt(raw, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &fprog)?;
        let one: libc::c_int = 1;
        setsockopt(raw, libc::SOL_PACKET, PACKET_AUXDATA, &one)?;
        let rcvbuf: libc::c_int = 4 << 20;
        let _ = setsockopt(raw, libc::SOL_SOCKET, libc::SO_RCVBUF, &rcvbuf);
        let ethertype = if v6 { ETH_P_IPV6 } else { ETH_P_IP };
        // SAFETY: zeroed sockaddr_ll is a valid value.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = ethertype.to_be();
        sll.sll_ifindex = ifindex as i32;
        // SAFETY: `sll` is a valid sockaddr_ll of the size we pass.
        cvt(unsafe {
            libc::bind(
                raw,
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        })?;
        Ok(MarkSocket {
            fd,
            mark,
            v6,
            bufs: (0..MARK_BATCH).map(|_| vec![0u8; MARK_BUF]).collect(),
            ctrl: vec![[0u64; 8]; MARK_BATCH],
            // SAFETY: zeroed sockaddr_ll is a valid value.
            names: vec![unsafe { std::mem::zeroed() }; MARK_BATCH],
        })
    }

    /// Take the queued frames (up to a batch, one `recvmmsg`, not
    /// waiting) into `out`; they stay valid until the next call.
    pub fn recv_batch(&mut self, out: &mut Vec<RxFrame>) -> io::Result<usize> {
        out.clear();
        let mut iov: Vec<libc::iovec> = self
            .bufs
            .iter_mut()
            .map(|b| libc::iovec {
                iov_base: b.as_mut_ptr().cast(),
                iov_len: b.len(),
            })
            .collect();
        let mut msgs: Vec<libc::mmsghdr> = Vec::with_capacity(MARK_BATCH);
        for ((v, c), n) in iov
            .iter_mut()
            .zip(self.ctrl.iter_mut())
            .zip(self.names.iter_mut())
        {
            // SAFETY: zeroed mmsghdr is a valid value.
            let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
            m.msg_hdr.msg_name = (n as *mut libc::sockaddr_ll).cast();
            m.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
            m.msg_hdr.msg_iov = v;
            m.msg_hdr.msg_iovlen = 1;
            m.msg_hdr.msg_control = c.as_mut_ptr().cast();
            m.msg_hdr.msg_controllen = std::mem::size_of_val(c) as _;
            msgs.push(m);
        }
        // SAFETY: `msgs` are valid mmsghdrs whose name, iovec and control
        // pointers refer to buffers of `self` alive for the call.
        let r = unsafe {
            libc::recvmmsg(
                self.fd.as_raw_fd(),
                msgs.as_mut_ptr(),
                msgs.len() as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
                _ => Err(e),
            };
        }
        for (i, m) in msgs.iter().take(r as usize).enumerate() {
            let len = (m.msg_len as usize).min(MARK_BUF);
            let mut f = RxFrame {
                off: 0,
                copy: Some(i),
                len,
                wire_len: len,
                pkttype: self.names.get(i).map_or(0, |n| n.sll_pkttype),
                csum_not_ready: false,
            };
            if m.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
                f.wire_len = len + 1;
            }
            // SAFETY: the kernel filled msg_control up to msg_controllen;
            // CMSG_FIRSTHDR/NXTHDR stay inside it.
            unsafe {
                let mut c = libc::CMSG_FIRSTHDR(&m.msg_hdr);
                while !c.is_null() {
                    if (*c).cmsg_level == libc::SOL_PACKET
                        && (*c).cmsg_type == PACKET_AUXDATA
                        && (*c).cmsg_len as usize
                            >= libc::CMSG_LEN(std::mem::size_of::<libc::tpacket_auxdata>() as u32)
                                as usize
                    {
                        let aux = std::ptr::read_unaligned(
                            libc::CMSG_DATA(c).cast::<libc::tpacket_auxdata>(),
                        );
                        f.csum_not_ready = aux.tp_status & TP_STATUS_CSUMNOTREADY != 0;
                        f.wire_len = f.wire_len.max(aux.tp_len as usize);
                    }
                    c = libc::CMSG_NXTHDR(&m.msg_hdr, c);
                }
            }
            out.push(f);
        }
        Ok(out.len())
    }

    /// Bytes of a frame of the last [`MarkSocket::recv_batch`].
    pub fn frame(&self, f: &RxFrame) -> &[u8] {
        f.copy
            .and_then(|i| self.bufs.get(i))
            .and_then(|b| b.get(..f.len))
            .unwrap_or(&[])
    }

    /// Raw descriptor (for `poll`).
    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// A TUN device (IFF_TUN | IFF_NO_PI): writes inject IP packets into the
/// local stack as if received on it. Deleted when dropped (not persistent).
pub struct Tun {
    fd: OwnedFd,
    /// Device name.
    pub name: String,
}

impl Tun {
    /// Create the device `name`.
    pub fn create(name: &str) -> io::Result<Tun> {
        let path = CString::new("/dev/net/tun")
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: opening a path with a valid C string.
        let raw = cvt(unsafe { libc::open(path.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) })?;
        // SAFETY: fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: zeroed ifreq is valid.
        let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
        for (d, s) in ifr
            .ifr_name
            .iter_mut()
            .zip(name.bytes().take(libc::IFNAMSIZ - 1))
        {
            *d = s as libc::c_char;
        }
        ifr.ifr_ifru.ifru_flags = (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short;
        // SAFETY: TUNSETIFF takes a pointer to an ifreq.
        cvt(unsafe { libc::ioctl(raw, libc::TUNSETIFF as _, &mut ifr as *mut libc::ifreq) })?;
        Ok(Tun {
            fd,
            name: name.to_string(),
        })
    }

    /// Inject one IP packet.
    pub fn write(&self, pkt: &[u8]) -> io::Result<()> {
        // SAFETY: valid buffer.
        let r = unsafe { libc::write(self.fd.as_raw_fd(), pkt.as_ptr().cast(), pkt.len()) };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }
}

/// A plain AF_PACKET `SOCK_DGRAM` socket (link header stripped) bound to
/// one interface and one ethertype, with a receive timeout. Used by the
/// real-server decapsulator, where a ring is not worth it.
pub struct DgramSocket {
    fd: OwnedFd,
}

impl DgramSocket {
    /// Open for `ethertype` on `ifindex`, with `timeout` on receive.
    pub fn open(ifindex: u32, ethertype: u16, timeout: Duration) -> io::Result<DgramSocket> {
        // SAFETY: plain socket(2).
        let raw = cvt(unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                i32::from(ethertype.to_be()),
            )
        })?;
        // SAFETY: fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let tv = libc::timeval {
            tv_sec: timeout.as_secs() as libc::time_t,
            tv_usec: timeout.subsec_micros() as libc::suseconds_t,
        };
        setsockopt(raw, libc::SOL_SOCKET, libc::SO_RCVTIMEO, &tv)?;
        // SAFETY: zeroed sockaddr_ll is valid.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = ethertype.to_be();
        sll.sll_ifindex = ifindex as i32;
        // SAFETY: valid sockaddr_ll of the size passed.
        cvt(unsafe {
            libc::bind(
                raw,
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        })?;
        Ok(DgramSocket { fd })
    }

    /// Receive one packet: `Ok(None)` on timeout, else `(len, pkttype)`.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Option<(usize, u8)>> {
        // SAFETY: zeroed sockaddr_ll is valid.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        let mut alen = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        // SAFETY: buffers valid for the lengths given.
        let r = unsafe {
            libc::recvfrom(
                self.fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                0,
                (&mut sll as *mut libc::sockaddr_ll).cast(),
                &mut alen,
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock
                | io::ErrorKind::TimedOut
                | io::ErrorKind::Interrupted => Ok(None),
                _ => Err(e),
            };
        }
        Ok(Some((r as usize, sll.sll_pkttype)))
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn mac_parse() {
        assert_eq!(
            parse_mac("02:00:00:00:00:0b"),
            Some(Mac([2, 0, 0, 0, 0, 0x0b]))
        );
        assert_eq!(parse_mac("02:00:00:00:00"), None);
        assert_eq!(parse_mac("02:00:00:00:00:0b:01"), None);
        assert_eq!(parse_mac("zz:00:00:00:00:0b"), None);
    }

    #[test]
    fn mark_filter_program() {
        let p: Vec<(u16, u8, u8, u32)> = mark_filter(0x2a)
            .iter()
            .map(|i| (i.code, i.jt, i.jf, i.k))
            .collect();
        assert_eq!(
            p,
            [
                (0x20, 0, 0, 0xffff_f004),
                (0x15, 3, 0, 4),
                (0x20, 0, 0, 0xffff_f014),
                (0x15, 0, 1, 0x2a),
                (0x06, 0, 0, 0x40000),
                (0x06, 0, 0, 0),
            ]
        );
        // The ancillary offsets are the kernel's (SKF_AD_OFF = -0x1000).
        assert_eq!(SKF_AD_OFF as i32, -0x1000);
        assert_eq!(SKF_AD_MARK as libc::c_int, libc::SKF_AD_MARK);
        assert_eq!(SKF_AD_PKTTYPE as libc::c_int, libc::SKF_AD_PKTTYPE);
        // Jumps stay inside the program.
        for (k, (code, jt, jf, _)) in p.iter().enumerate() {
            if *code == 0x15 {
                assert!(k + 1 + usize::from(*jt) < p.len());
                assert!(k + 1 + usize::from(*jf) < p.len());
            }
        }
    }

    #[test]
    fn req_layout() {
        assert_eq!(std::mem::size_of::<TpacketReq>(), 16);
    }
}
