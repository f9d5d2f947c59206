//! Binary upgrade of rvsd (`kill -USR2`): handing the packet path from one
//! process to the next without a lost or mis-scheduled frame.
//!
//! Both processes have their own AF_PACKET sockets on the interface while
//! the handover runs, and each socket receives every frame (AF_PACKET taps
//! each get a copy). The successor does **not** join the predecessor's
//! PACKET_FANOUT group (its group id comes from its own pid, as always):
//! in one group the kernel would split the flows between the two
//! processes by hash, so each would see only part of the traffic with a
//! table that lacks the other's newest entries, and the split moves again
//! when the predecessor's sockets close (the hash picks a member by
//! index). Frames still queued in the predecessor's ring would be lost
//! with it. In separate groups both see everything, and a gate decides who
//! forwards:
//!
//! 1. The successor starts in [`Handover::Discard`]: its rings are read
//!    and emptied, nothing is forwarded, and its nftables table is not
//!    installed (the predecessor's stays in force: no window in which the
//!    kernel answers VIP traffic, and no partial rule set while the
//!    successor is still loading its table).
//!    The predecessor arms its gate when the handover starts
//!    ([`crate::PacketEngine::arm_handover`]): its RX threads then look at
//!    the mode every millisecond instead of every 50 ms.
//! 2. When it has loaded everything, the successor switches to
//!    [`Handover::Hold`] (its rings now keep every new frame) and tells the
//!    predecessor it is ready.
//! 3. The predecessor switches to `Hold` too: each RX thread first forwards
//!    what is in its ring, flushes its flow cache to the table, and stops.
//!    It then sends its connection table (as it is now) and counters.
//! 4. The successor takes them and switches to [`Handover::Forward`]: it
//!    forwards its rings' backlog (the frames since step 2) and installs
//!    the nftables table (one atomic `nft -f` transaction replacing the
//!    predecessor's rules). The predecessor exits without removing it.
//!
//! Frames that arrived between steps 2 and 3 are forwarded by both, to the
//! same real server (the successor has the predecessor's entries by then):
//! a duplicate TCP segment or UDP datagram, which the real server's stack
//! absorbs; never two real servers for one connection, never a lost
//! frame as long as the ring holds the backlog (4096 slots by default; the
//! window is a few milliseconds). If the handover fails after step 2, the
//! predecessor goes back to `Forward` and re-installs its table.

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// What the RX threads do with received frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handover {
    /// Forward them (normal operation).
    Forward,
    /// Drop them: a successor whose predecessor still forwards.
    Discard,
    /// Leave them in the rings until `Forward`.
    Hold,
}

/// The mode, shared by the RX threads, and how many of them are parked.
#[derive(Debug)]
pub(crate) struct Gate {
    mode: AtomicU8,
    parked: AtomicUsize,
    /// A handover is under way: RX threads wait for frames in short slices,
    /// so that they see a change of mode at once.
    armed: AtomicBool,
}

impl Gate {
    pub(crate) fn new() -> Gate {
        Gate {
            mode: AtomicU8::new(0),
            parked: AtomicUsize::new(0),
            armed: AtomicBool::new(false),
        }
    }

    pub(crate) fn mode(&self) -> Handover {
        match self.mode.load(Ordering::Acquire) {
            1 => Handover::Discard,
            2 => Handover::Hold,
            _ => Handover::Forward,
        }
    }

    pub(crate) fn set(&self, h: Handover) {
        let v = match h {
            Handover::Forward => 0,
            Handover::Discard => 1,
            Handover::Hold => 2,
        };
        self.mode.store(v, Ordering::Release);
    }

    pub(crate) fn arm(&self, on: bool) {
        self.armed.store(on, Ordering::Release);
    }

    /// How long an RX thread may wait for frames before it looks at the
    /// mode again.
    pub(crate) fn poll_timeout(&self) -> Duration {
        if self.armed.load(Ordering::Acquire) || self.mode() != Handover::Forward {
            Duration::from_millis(1)
        } else {
            Duration::from_millis(50)
        }
    }

    /// An RX thread stopped reading (ring emptied, flow cache flushed).
    pub(crate) fn park(&self) {
        self.parked.fetch_add(1, Ordering::AcqRel);
    }

    pub(crate) fn unpark(&self) {
        self.parked.fetch_sub(1, Ordering::AcqRel);
    }

    /// Wait until `threads` RX threads are parked.
    pub(crate) fn wait_parked(&self, threads: usize, deadline: Duration) -> bool {
        let end = Instant::now() + deadline;
        while self.parked.load(Ordering::Acquire) < threads {
            if Instant::now() >= end {
                return false;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        true
    }
}
