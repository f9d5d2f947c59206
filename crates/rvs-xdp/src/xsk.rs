//! AF_XDP sockets over raw `libc`: one UMEM per socket, fill / completion /
//! RX / TX rings, copy mode (works on veth and any driver with generic XDP).
//!
//! Frame ownership is tracked with a free list: a frame is either in the
//! free list, on the fill ring (owned by the kernel until it comes back on
//! RX), in user space being processed, or on the TX ring (until it comes
//! back on the completion ring).
//!
//! Multi-buffer (`XDP_USE_SG`, kernel ≥ 6.6): a packet larger than one
//! frame ([`RX_FRAME_LEN`] bytes in copy mode) arrives as a chain of
//! descriptors, all but the last with `XDP_PKT_CONTD` ([`Desc::contd`]).
//! [`Xsk::recv`] hands out whole chains only. Without it the kernel drops
//! such packets before the socket (`XDP_STATISTICS` `rx_dropped`,
//! [`Xsk::kernel_stats`]). TX is one descriptor per packet.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr;
use std::sync::atomic::{AtomicU32, Ordering};

/// UMEM frame size.
pub const FRAME_SIZE: u32 = 2048;
/// Bytes of packet data one RX descriptor holds in copy mode: the kernel
/// keeps `XDP_PACKET_HEADROOM` (256) at the start of every frame.
pub const RX_FRAME_LEN: u32 = FRAME_SIZE - 256;

/// Socket geometry.
#[derive(Debug, Clone, Copy)]
pub struct XskConf {
    /// UMEM frames (power of two).
    pub frames: u32,
    /// Entries of each ring (power of two, ≤ frames / 2).
    pub ring: u32,
    /// Bind in zero-copy mode (driver support needed) instead of copy mode.
    pub zero_copy: bool,
    /// Ask for multi-buffer RX (`XDP_USE_SG`); if the kernel or driver
    /// refuses it (`EINVAL` / `EOPNOTSUPP`) the socket is opened without
    /// it ([`Xsk::multi_buffer`] tells).
    pub multi_buffer: bool,
}

impl Default for XskConf {
    fn default() -> XskConf {
        XskConf {
            frames: 4096,
            ring: 2048,
            zero_copy: false,
            multi_buffer: true,
        }
    }
}

struct Mmap {
    ptr: *mut u8,
    len: usize,
}

impl Mmap {
    fn new(fd: Option<RawFd>, len: usize, off: i64) -> io::Result<Mmap> {
        let (flags, fd) = match fd {
            Some(fd) => (libc::MAP_SHARED | libc::MAP_POPULATE, fd),
            None => (
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
            ),
        };
        // SAFETY: a fresh mapping; checked for MAP_FAILED.
        let p = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                fd,
                off,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mmap { ptr: p.cast(), len })
    }
}

impl Drop for Mmap {
    fn drop(&mut self) {
        // SAFETY: unmapping our own mapping once.
        unsafe {
            libc::munmap(self.ptr.cast(), self.len);
        }
    }
}

/// One mmapped ring (producer/consumer indices shared with the kernel).
struct Ring {
    _map: Mmap,
    prod: *const AtomicU32,
    cons: *const AtomicU32,
    flags: *const AtomicU32,
    desc: *mut u8,
    mask: u32,
    size: u32,
}

impl Ring {
    fn map(
        fd: RawFd,
        off: &libc::xdp_ring_offset,
        n: u32,
        esz: usize,
        pg: i64,
    ) -> io::Result<Ring> {
        let len = off.desc as usize + n as usize * esz;
        let m = Mmap::new(Some(fd), len, pg)?;
        let b = m.ptr;
        // SAFETY: offsets come from XDP_MMAP_OFFSETS and lie inside the map.
        unsafe {
            Ok(Ring {
                prod: b.add(off.producer as usize).cast(),
                cons: b.add(off.consumer as usize).cast(),
                flags: b.add(off.flags as usize).cast(),
                desc: b.add(off.desc as usize),
                mask: n - 1,
                size: n,
                _map: m,
            })
        }
    }
    fn prod(&self) -> &AtomicU32 {
        // SAFETY: points into the live mapping, u32-aligned.
        unsafe { &*self.prod }
    }
    fn cons(&self) -> &AtomicU32 {
        // SAFETY: as above.
        unsafe { &*self.cons }
    }
    fn needs_wakeup(&self) -> bool {
        // SAFETY: as above.
        unsafe { &*self.flags }.load(Ordering::Relaxed) & libc::XDP_RING_NEED_WAKEUP != 0
    }
    /// Entries ready to consume (consumer side).
    fn ready(&self) -> (u32, u32) {
        let p = self.prod().load(Ordering::Acquire);
        let c = self.cons().load(Ordering::Relaxed);
        (c, p.wrapping_sub(c))
    }
    /// Free entries (producer side).
    fn free(&self) -> (u32, u32) {
        let p = self.prod().load(Ordering::Relaxed);
        let c = self.cons().load(Ordering::Acquire);
        (p, self.size - p.wrapping_sub(c))
    }
    fn u64_at(&self, i: u32) -> *mut u64 {
        // SAFETY: index masked into the ring.
        unsafe { self.desc.cast::<u64>().add((i & self.mask) as usize) }
    }
    fn desc_at(&self, i: u32) -> *mut libc::xdp_desc {
        // SAFETY: index masked into the ring.
        unsafe {
            self.desc
                .cast::<libc::xdp_desc>()
                .add((i & self.mask) as usize)
        }
    }
}

/// A received frame: UMEM address and length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Desc {
    pub addr: u64,
    pub len: u32,
    /// `XDP_PKT_CONTD`: the packet continues in the next descriptor.
    pub contd: bool,
}

/// An AF_XDP socket bound to one queue of an interface, with its own UMEM.
pub struct Xsk {
    fd: OwnedFd,
    umem: Mmap,
    fill: Ring,
    comp: Ring,
    rx: Ring,
    tx: Ring,
    free: Vec<u64>,
    /// Frames queued for TX since the last kick.
    pending_tx: u32,
    /// TX frames in flight (on the TX ring or not yet completed).
    pub in_flight: u32,
    /// Bound with `XDP_USE_SG`.
    sg: bool,
}

// SAFETY: the raw pointers point into mappings owned by the struct; the
// socket is used by one thread at a time (moved into its worker).
unsafe impl Send for Xsk {}

fn setopt<T>(fd: RawFd, name: i32, v: &T) -> io::Result<()> {
    // SAFETY: v is a valid T of the size passed.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_XDP,
            name,
            (v as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

impl Xsk {
    /// Create the socket, register the UMEM, map the rings and bind to
    /// `ifindex` / `queue`. The fill ring is primed with half the frames.
    /// With `conf.multi_buffer`, a bind refused with `EINVAL` (kernel
    /// before 6.6) or `EOPNOTSUPP` (driver without zero-copy multi-buffer)
    /// is retried on a new socket without `XDP_USE_SG`.
    pub fn open(ifindex: u32, queue: u32, conf: XskConf) -> io::Result<Xsk> {
        match Xsk::open_once(ifindex, queue, conf) {
            Err(e)
                if conf.multi_buffer
                    && matches!(
                        e.raw_os_error(),
                        Some(libc::EINVAL) | Some(libc::EOPNOTSUPP)
                    ) =>
            {
                tracing::debug!(error = %e, queue, "AF_XDP bind with XDP_USE_SG refused");
                Xsk::open_once(
                    ifindex,
                    queue,
                    XskConf {
                        multi_buffer: false,
                        ..conf
                    },
                )
            }
            r => r,
        }
    }

    fn open_once(ifindex: u32, queue: u32, conf: XskConf) -> io::Result<Xsk> {
        let frames = conf.frames.next_power_of_two();
        let n = conf.ring.next_power_of_two().min(frames / 2);
        // SAFETY: plain socket(2).
        let raw = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a new descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let f = fd.as_raw_fd();
        let umem = Mmap::new(None, (frames * FRAME_SIZE) as usize, 0)?;
        let reg = libc::xdp_umem_reg {
            addr: umem.ptr as u64,
            len: umem.len as u64,
            chunk_size: FRAME_SIZE,
            headroom: 0,
            flags: 0,
            tx_metadata_len: 0,
        };
        setopt(f, libc::XDP_UMEM_REG, &reg)?;
        setopt(f, libc::XDP_UMEM_FILL_RING, &n)?;
        setopt(f, libc::XDP_UMEM_COMPLETION_RING, &n)?;
        setopt(f, libc::XDP_RX_RING, &n)?;
        setopt(f, libc::XDP_TX_RING, &n)?;
        // SAFETY: zeroed plain-data struct filled by getsockopt.
        let mut off: libc::xdp_mmap_offsets = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::xdp_mmap_offsets>() as libc::socklen_t;
        // SAFETY: off/len valid for writing.
        let r = unsafe {
            libc::getsockopt(
                f,
                libc::SOL_XDP,
                libc::XDP_MMAP_OFFSETS,
                (&mut off as *mut libc::xdp_mmap_offsets).cast(),
                &mut len,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        let dsz = std::mem::size_of::<libc::xdp_desc>();
        let rx = Ring::map(f, &off.rx, n, dsz, libc::XDP_PGOFF_RX_RING)?;
        let tx = Ring::map(f, &off.tx, n, dsz, libc::XDP_PGOFF_TX_RING)?;
        let fill = Ring::map(f, &off.fr, n, 8, libc::XDP_UMEM_PGOFF_FILL_RING as i64)?;
        let comp = Ring::map(
            f,
            &off.cr,
            n,
            8,
            libc::XDP_UMEM_PGOFF_COMPLETION_RING as i64,
        )?;
        // SAFETY: zeroed plain-data struct.
        let mut sa: libc::sockaddr_xdp = unsafe { std::mem::zeroed() };
        sa.sxdp_family = libc::AF_XDP as u16;
        sa.sxdp_ifindex = ifindex;
        sa.sxdp_queue_id = queue;
        sa.sxdp_flags = libc::XDP_USE_NEED_WAKEUP
            | if conf.multi_buffer {
                libc::XDP_USE_SG
            } else {
                0
            }
            | if conf.zero_copy {
                libc::XDP_ZEROCOPY
            } else {
                libc::XDP_COPY
            };
        // SAFETY: sa is a valid sockaddr_xdp.
        let r = unsafe {
            libc::bind(
                f,
                (&sa as *const libc::sockaddr_xdp).cast(),
                std::mem::size_of::<libc::sockaddr_xdp>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut x = Xsk {
            fd,
            umem,
            fill,
            comp,
            rx,
            tx,
            free: (0..frames)
                .rev()
                .map(|i| u64::from(i * FRAME_SIZE))
                .collect(),
            pending_tx: 0,
            in_flight: 0,
            sg: conf.multi_buffer,
        };
        x.refill();
        Ok(x)
    }

    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Bound with `XDP_USE_SG`: packets larger than a frame arrive as
    /// descriptor chains instead of being dropped by the kernel.
    pub fn multi_buffer(&self) -> bool {
        self.sg
    }

    /// The kernel's counters for this socket (`XDP_STATISTICS`).
    pub fn kernel_stats(&self) -> io::Result<libc::xdp_statistics> {
        // SAFETY: zeroed plain-data struct filled by getsockopt.
        let mut st: libc::xdp_statistics = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::xdp_statistics>() as libc::socklen_t;
        // SAFETY: st/len valid for writing.
        let r = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_XDP,
                libc::XDP_STATISTICS,
                (&mut st as *mut libc::xdp_statistics).cast(),
                &mut len,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(st)
    }

    /// Give free frames to the kernel, keeping `reserve` for TX.
    pub fn refill(&mut self) {
        let reserve = self.fill.size as usize / 2;
        if self.free.len() <= reserve {
            return;
        }
        let (p, room) = self.fill.free();
        let k = (room as usize).min(self.free.len() - reserve);
        for i in 0..k {
            let a = self.free.pop().unwrap_or_default();
            // SAFETY: slot owned by the producer (us) until published.
            unsafe { *self.fill.u64_at(p.wrapping_add(i as u32)) = a };
        }
        if k > 0 {
            self.fill
                .prod()
                .store(p.wrapping_add(k as u32), Ordering::Release);
            if self.fill.needs_wakeup() {
                self.kick_rx();
            }
        }
    }

    /// Take up to `max` received packets: descriptors, a packet larger
    /// than a frame being a chain whose last descriptor has `contd` unset.
    /// Only whole chains are taken (the kernel publishes a chain at once; a
    /// partial one is left on the ring). Returns the number of descriptors
    /// thrown away: an unterminated chain filling the whole ring, which
    /// the kernel never produces, is released rather than stalling RX.
    pub fn recv(&mut self, out: &mut Vec<Desc>, max: usize) -> usize {
        out.clear();
        let (c, n) = self.rx.ready();
        let (mut taken, mut pkts, mut i) = (0u32, 0usize, 0u32);
        while i < n && pkts < max {
            // SAFETY: slot published by the kernel.
            let d = unsafe { *self.rx.desc_at(c.wrapping_add(i)) };
            let contd = d.options & libc::XDP_PKT_CONTD != 0;
            out.push(Desc {
                addr: d.addr,
                len: d.len,
                contd,
            });
            i += 1;
            if !contd {
                pkts += 1;
                taken = i;
            }
        }
        let mut dropped = 0;
        if taken == 0 && n >= self.rx.size {
            dropped = out.len();
            for d in std::mem::take(out) {
                self.release(d.addr);
            }
            taken = i;
        }
        out.truncate(taken as usize);
        if taken > 0 {
            self.rx
                .cons()
                .store(c.wrapping_add(taken), Ordering::Release);
        }
        dropped
    }

    /// The bytes of frame `addr` (`len` long), read-only.
    pub fn frame(&self, addr: u64, len: u32) -> &[u8] {
        let a = addr as usize;
        let l = (len as usize).min(FRAME_SIZE as usize);
        assert!(a + l <= self.umem.len);
        // SAFETY: inside the UMEM; the frame is owned by user space now.
        unsafe { std::slice::from_raw_parts(self.umem.ptr.add(a), l) }
    }

    /// The bytes of frame `addr` (`len` long).
    pub fn frame_mut(&mut self, addr: u64, len: u32) -> &mut [u8] {
        let a = addr as usize;
        let l = (len as usize).min(FRAME_SIZE as usize);
        assert!(a + l <= self.umem.len);
        // SAFETY: inside the UMEM; the frame is owned by user space now.
        unsafe { std::slice::from_raw_parts_mut(self.umem.ptr.add(a), l) }
    }

    /// Return a frame to the free list.
    pub fn release(&mut self, addr: u64) {
        self.free.push(addr - addr % u64::from(FRAME_SIZE));
    }

    /// Queue frame `addr` (owned by user space) for transmission. On a
    /// full TX ring the frame is released and `false` returned.
    pub fn send(&mut self, addr: u64, len: u32) -> bool {
        let (p, room) = self.tx.free();
        if room == 0 {
            self.kick_tx();
            self.reclaim();
            let (_, room) = self.tx.free();
            if room == 0 {
                self.release(addr);
                return false;
            }
        }
        // SAFETY: slot owned by the producer (us) until published.
        unsafe {
            *self.tx.desc_at(p) = libc::xdp_desc {
                addr,
                len,
                options: 0,
            }
        };
        self.tx.prod().store(p.wrapping_add(1), Ordering::Release);
        self.pending_tx += 1;
        self.in_flight += 1;
        true
    }

    /// Copy `bytes` into a free frame and queue it for transmission.
    pub fn send_copy(&mut self, bytes: &[u8]) -> bool {
        if bytes.len() > FRAME_SIZE as usize {
            return false;
        }
        self.reclaim();
        let Some(a) = self.free.pop() else {
            return false;
        };
        self.frame_mut(a, bytes.len() as u32).copy_from_slice(bytes);
        self.send(a, bytes.len() as u32)
    }

    /// Frames queued since the last flush.
    pub fn pending(&self) -> u32 {
        self.pending_tx
    }

    /// Wake the kernel to transmit what was queued (copy mode needs a
    /// `sendto` for every batch). One `sendto` sends at most 32 frames in
    /// copy mode (`TX_BATCH_SIZE`, then `EAGAIN`), so kick until the kernel
    /// has taken everything off the TX ring (bounded).
    pub fn flush(&mut self) {
        if self.pending_tx > 0 {
            for _ in 0..(self.tx.size / 32 + 2) {
                self.kick_tx();
                self.reclaim();
                if self.tx.free().1 >= self.tx.size {
                    break;
                }
            }
            self.pending_tx = 0;
        }
        self.reclaim();
    }

    fn kick_tx(&self) {
        // SAFETY: sendto with no data on our socket.
        unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                ptr::null(),
                0,
                libc::MSG_DONTWAIT,
                ptr::null(),
                0,
            );
        }
    }

    fn kick_rx(&self) {
        // SAFETY: recvfrom with no buffer on our socket.
        unsafe {
            libc::recvfrom(
                self.fd.as_raw_fd(),
                ptr::null_mut(),
                0,
                libc::MSG_DONTWAIT,
                ptr::null_mut(),
                ptr::null_mut(),
            );
        }
    }

    /// Take completed TX frames back into the free list.
    pub fn reclaim(&mut self) {
        let (c, n) = self.comp.ready();
        for i in 0..n {
            // SAFETY: slot published by the kernel.
            let a = unsafe { *self.comp.u64_at(c.wrapping_add(i)) };
            self.release(a);
        }
        if n > 0 {
            self.comp.cons().store(c.wrapping_add(n), Ordering::Release);
            self.in_flight = self.in_flight.saturating_sub(n);
        }
    }

    /// Wait for RX (or `timeout_ms`).
    pub fn wait(&self, extra: Option<RawFd>, timeout_ms: i32) -> io::Result<bool> {
        let mut p = [
            libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: extra.unwrap_or(-1),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        let (_, n) = self.rx.ready();
        if n > 0 {
            return Ok(true);
        }
        // SAFETY: two valid pollfds (a negative fd is ignored).
        let r = unsafe { libc::poll(p.as_mut_ptr(), 2, timeout_ms) };
        if r < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted {
                Ok(false)
            } else {
                Err(e)
            };
        }
        Ok(r > 0)
    }
}

/// A non-blocking AF_PACKET socket receiving only ARP frames (the XDP
/// program passes ARP to the kernel; this socket sees a copy, so the
/// engine's ARP cache learns replies to its own requests).
pub struct ArpSocket {
    fd: OwnedFd,
}

impl ArpSocket {
    pub fn open(ifindex: u32) -> io::Result<ArpSocket> {
        let proto = (libc::ETH_P_ARP as u16).to_be();
        // SAFETY: plain socket(2).
        let raw = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                i32::from(proto),
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a new descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: zeroed plain-data struct.
        let mut sa: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sa.sll_family = libc::AF_PACKET as u16;
        sa.sll_protocol = proto;
        sa.sll_ifindex = ifindex as i32;
        // SAFETY: sa is a valid sockaddr_ll.
        let r = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sa as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(ArpSocket { fd })
    }

    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Next incoming (not outgoing) frame, if any.
    pub fn recv(&self, buf: &mut [u8]) -> Option<usize> {
        loop {
            // SAFETY: zeroed plain-data struct.
            let mut sa: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            let mut sl = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
            // SAFETY: buf and sa valid for writing.
            let r = unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    0,
                    (&mut sa as *mut libc::sockaddr_ll).cast(),
                    &mut sl,
                )
            };
            if r < 0 {
                return None;
            }
            if sa.sll_pkttype != libc::PACKET_OUTGOING {
                return Some(r as usize);
            }
        }
    }
}
