//! Operations the proxy engine needs beyond the kernel's packet path.

use super::Ipvs;
use crate::{Dir, Packet, Protocol, TcpFlags, Time};
use std::net::SocketAddr;

impl Ipvs {
    /// Expire the connection `client -> vip` now, as `ip_vs_conn_expire_now`
    /// does. The proxy engine calls this when `connect()` to the scheduled
    /// real server failed, so that its next attempt for the same client is
    /// scheduled afresh (with the failed destination excluded) instead of
    /// reusing the dead entry. Its template, if it controls nothing else and
    /// was never assured, goes with it. Returns true if an entry was removed.
    pub fn expire_conn(
        &mut self,
        now: Time,
        proto: Protocol,
        client: SocketAddr,
        vip: SocketAddr,
    ) -> bool {
        let pkt = Packet {
            fwmark: 0,
            proto,
            src: client,
            dst: vip,
            tcp_flags: TcpFlags::NONE,
            len: 0,
            dir: Dir::In,
        };
        match self.lookup_in(now, &pkt) {
            Some(idx) => self.expire_entry(now, idx, true),
            None => false,
        }
    }
}
