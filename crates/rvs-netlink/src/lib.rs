//! # rvs-netlink — the one task that owns rtnetlink
//!
//! holo-interface's southbound pattern: a single tokio task owns the
//! `rtnetlink` [`Handle`](rtnetlink::Handle); every other part of rvs (VRRP
//! VIPs, the real-server helper, the packet engine) sends it a [`Request`]
//! over an unbounded channel and awaits the answer on a oneshot. Requests are
//! executed strictly in arrival order, so an `AddressDel` queued after an
//! `AddressAdd` can never overtake it, and tests can stub the channel
//! ([`NetlinkHandle::from_sender`]) to record requests without root.
//!
//! Supported requests:
//! - [`Request::AddressAdd`]: `ip addr add ADDR/PLEN dev IF [label L] [scope S]
//!   [valid_lft N preferred_lft M]`. With `replace` the request uses
//!   `NLM_F_REPLACE`, which is how a VRRP master *renews* the lifetime of a
//!   VIP it already holds. Finite lifetimes are sent as `IFA_CACHEINFO`; the
//!   kernel then deletes the address by itself when nobody renews it.
//! - [`Request::AddressDel`]: `ip addr del ADDR/PLEN dev IF`.
//! - [`Request::AddressList`]: addresses, optionally of one link.
//! - [`Request::LinkByName`] / [`Request::LinkByIndex`]: index, MAC, flags.
//!
//! ```no_run
//! # async fn demo() -> Result<(), rvs_netlink::Error> {
//! let (nl, _task) = rvs_netlink::spawn()?;
//! let link = nl.link_by_name("eth0").await?;
//! nl.address_add(rvs_netlink::AddressSpec::new(link.index.into(), "198.18.0.100/24".parse().unwrap())
//!     .label("eth0:1")
//!     .lifetime(std::time::Duration::from_secs(3)))
//!     .await?;
//! # Ok(()) }
//! ```

use std::net::IpAddr;
use std::time::Duration;

use futures::TryStreamExt;
use ipnet::IpNet;
use netlink_packet_route::address::{
    AddressAttribute, AddressHeaderFlags, AddressMessage, AddressScope, CacheInfo,
};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// Errors returned to requesters.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Opening the netlink socket failed.
    #[error("netlink socket: {0}")]
    Io(#[from] std::io::Error),
    /// The kernel refused (errno kept for callers that ignore EEXIST etc.).
    #[error("netlink: {message} (errno {errno})")]
    Kernel {
        /// Positive errno.
        errno: i32,
        /// Text.
        message: String,
    },
    /// Any other rtnetlink error.
    #[error("netlink: {0}")]
    Other(String),
    /// No such interface.
    #[error("no such interface: {0}")]
    NoSuchLink(String),
    /// The netlink task is gone.
    #[error("netlink task stopped")]
    Closed,
}

impl Error {
    /// errno if the kernel answered with an error.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Kernel { errno, .. } => Some(*errno),
            _ => None,
        }
    }

    /// The address was not there (EADDRNOTAVAIL / ENOENT / ESRCH).
    pub fn is_not_found(&self) -> bool {
        matches!(self.errno(), Some(e) if e == 99 || e == 2 || e == 3)
    }

    /// The address was already there (EEXIST).
    pub fn is_exists(&self) -> bool {
        self.errno() == Some(17)
    }
}

impl From<rtnetlink::Error> for Error {
    fn from(e: rtnetlink::Error) -> Error {
        match &e {
            rtnetlink::Error::NetlinkError(m) => Error::Kernel {
                errno: m.raw_code().abs(),
                message: m.to_io().to_string(),
            },
            _ => Error::Other(e.to_string()),
        }
    }
}

/// A link, by index or by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkRef {
    /// ifindex.
    Index(u32),
    /// ifname.
    Name(String),
}

impl From<u32> for LinkRef {
    fn from(i: u32) -> LinkRef {
        LinkRef::Index(i)
    }
}

impl From<&str> for LinkRef {
    fn from(s: &str) -> LinkRef {
        LinkRef::Name(s.to_owned())
    }
}

/// Address scope (`ip addr ... scope`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scope {
    /// global / universe (0).
    #[default]
    Global,
    /// site (200).
    Site,
    /// link (253).
    Link,
    /// host (254).
    Host,
    /// nowhere (255).
    Nowhere,
}

impl From<Scope> for AddressScope {
    fn from(s: Scope) -> AddressScope {
        match s {
            Scope::Global => AddressScope::Universe,
            Scope::Site => AddressScope::Site,
            Scope::Link => AddressScope::Link,
            Scope::Host => AddressScope::Host,
            Scope::Nowhere => AddressScope::Nowhere,
        }
    }
}

/// Everything `ip addr add` needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressSpec {
    /// Interface.
    pub link: LinkRef,
    /// Address and prefix length.
    pub addr: IpNet,
    /// IFA_LABEL (IPv4 only; must start with the interface name).
    pub label: Option<String>,
    /// Scope.
    pub scope: Scope,
    /// valid_lft; `None` = forever.
    pub valid_lft: Option<Duration>,
    /// preferred_lft; `None` = same as valid_lft.
    pub preferred_lft: Option<Duration>,
    /// Use NLM_F_REPLACE (create or update, e.g. to renew the lifetime).
    pub replace: bool,
    /// IFA_F_NODAD (IPv6: usable at once, no duplicate address detection).
    pub nodad: bool,
}

impl AddressSpec {
    /// Permanent address, global scope, no label.
    pub fn new(link: LinkRef, addr: IpNet) -> AddressSpec {
        AddressSpec {
            link,
            addr,
            label: None,
            scope: Scope::Global,
            valid_lft: None,
            preferred_lft: None,
            replace: false,
            nodad: false,
        }
    }
    /// Set the label.
    pub fn label(mut self, l: impl Into<String>) -> Self {
        self.label = Some(l.into());
        self
    }
    /// Set the scope.
    pub fn scope(mut self, s: Scope) -> Self {
        self.scope = s;
        self
    }
    /// Finite lifetime (valid = preferred = `d`, whole seconds, min 1).
    pub fn lifetime(mut self, d: Duration) -> Self {
        self.valid_lft = Some(d);
        self.preferred_lft = Some(d);
        self
    }
    /// IFA_F_NODAD.
    pub fn nodad(mut self) -> Self {
        self.nodad = true;
        self
    }
    /// NLM_F_REPLACE.
    pub fn replace(mut self) -> Self {
        self.replace = true;
        self
    }
}

/// A link as reported by the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// ifindex.
    pub index: u32,
    /// ifname.
    pub name: String,
    /// Hardware address (6 bytes for Ethernet).
    pub mac: Option<Vec<u8>>,
    /// IFF_UP.
    pub up: bool,
    /// IFF_RUNNING / IFF_LOWER_UP.
    pub running: bool,
}

/// An address as reported by the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressInfo {
    /// ifindex.
    pub index: u32,
    /// Address/prefix.
    pub addr: IpNet,
    /// IFA_LABEL.
    pub label: Option<String>,
    /// Raw scope.
    pub scope: u8,
    /// valid_lft in seconds (`None` = forever).
    pub valid_lft: Option<u32>,
    /// preferred_lft in seconds (`None` = forever).
    pub preferred_lft: Option<u32>,
}

/// A request to the netlink task.
#[derive(Debug)]
pub enum Request {
    /// `ip addr add` / `ip addr replace`.
    AddressAdd(AddressSpec, oneshot::Sender<Result<(), Error>>),
    /// `ip addr del`.
    AddressDel(LinkRef, IpNet, oneshot::Sender<Result<(), Error>>),
    /// `ip addr show [dev]`.
    AddressList(
        Option<LinkRef>,
        oneshot::Sender<Result<Vec<AddressInfo>, Error>>,
    ),
    /// `ip link show NAME`.
    LinkByName(String, oneshot::Sender<Result<Link, Error>>),
    /// `ip link show` by index.
    LinkByIndex(u32, oneshot::Sender<Result<Link, Error>>),
}

/// Cheap, clonable sender side.
#[derive(Debug, Clone)]
pub struct NetlinkHandle {
    tx: mpsc::UnboundedSender<Request>,
}

impl NetlinkHandle {
    /// Wrap a sender (tests: stub the task with your own receiver).
    pub fn from_sender(tx: mpsc::UnboundedSender<Request>) -> NetlinkHandle {
        NetlinkHandle { tx }
    }

    async fn call<T>(
        &self,
        f: impl FnOnce(oneshot::Sender<Result<T, Error>>) -> Request,
    ) -> Result<T, Error> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(f(tx)).map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)?
    }

    /// Add (or with `replace`, add-or-update) an address.
    pub async fn address_add(&self, spec: AddressSpec) -> Result<(), Error> {
        self.call(|tx| Request::AddressAdd(spec, tx)).await
    }
    /// Delete an address.
    pub async fn address_del(&self, link: LinkRef, addr: IpNet) -> Result<(), Error> {
        self.call(|tx| Request::AddressDel(link, addr, tx)).await
    }
    /// List addresses.
    pub async fn address_list(&self, link: Option<LinkRef>) -> Result<Vec<AddressInfo>, Error> {
        self.call(|tx| Request::AddressList(link, tx)).await
    }
    /// Look up a link by name.
    pub async fn link_by_name(&self, name: &str) -> Result<Link, Error> {
        let n = name.to_owned();
        self.call(|tx| Request::LinkByName(n, tx)).await
    }
    /// Look up a link by index.
    pub async fn link_by_index(&self, index: u32) -> Result<Link, Error> {
        self.call(|tx| Request::LinkByIndex(index, tx)).await
    }
}

/// Open an rtnetlink socket and spawn the owning task (needs a tokio runtime).
/// The task ends when every [`NetlinkHandle`] is dropped.
pub fn spawn() -> Result<(NetlinkHandle, JoinHandle<()>), Error> {
    let (conn, handle, _) = rtnetlink::new_connection()?;
    let conn_task = tokio::spawn(conn);
    let (tx, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        serve(handle, rx).await;
        conn_task.abort();
    });
    Ok((NetlinkHandle { tx }, task))
}

async fn serve(handle: rtnetlink::Handle, mut rx: mpsc::UnboundedReceiver<Request>) {
    while let Some(req) = rx.recv().await {
        match req {
            Request::AddressAdd(spec, reply) => {
                let _ = reply.send(address_add(&handle, spec).await);
            }
            Request::AddressDel(link, addr, reply) => {
                let _ = reply.send(address_del(&handle, link, addr).await);
            }
            Request::AddressList(link, reply) => {
                let _ = reply.send(address_list(&handle, link).await);
            }
            Request::LinkByName(name, reply) => {
                let _ = reply.send(link_get(&handle, LinkRef::Name(name)).await);
            }
            Request::LinkByIndex(i, reply) => {
                let _ = reply.send(link_get(&handle, LinkRef::Index(i)).await);
            }
        }
    }
}

fn to_link(msg: LinkMessage) -> Link {
    let mut l = Link {
        index: msg.header.index,
        name: String::new(),
        mac: None,
        up: msg.header.flags.contains(LinkFlags::Up),
        running: msg.header.flags.contains(LinkFlags::Running)
            || msg.header.flags.contains(LinkFlags::LowerUp),
    };
    for a in msg.attributes {
        match a {
            LinkAttribute::IfName(n) => l.name = n,
            LinkAttribute::Address(m) => l.mac = Some(m),
            _ => {}
        }
    }
    l
}

async fn link_get(handle: &rtnetlink::Handle, link: LinkRef) -> Result<Link, Error> {
    let req = handle.link().get();
    let req = match &link {
        LinkRef::Index(i) => req.match_index(*i),
        LinkRef::Name(n) => req.match_name(n.clone()),
    };
    let mut s = req.execute();
    match s.try_next().await {
        Ok(Some(m)) => Ok(to_link(m)),
        Ok(None) => Err(Error::NoSuchLink(format!("{link:?}"))),
        Err(e) => {
            let e = Error::from(e);
            if matches!(e.errno(), Some(19)) {
                Err(Error::NoSuchLink(match link {
                    LinkRef::Index(i) => i.to_string(),
                    LinkRef::Name(n) => n,
                }))
            } else {
                Err(e)
            }
        }
    }
}

async fn resolve(handle: &rtnetlink::Handle, link: LinkRef) -> Result<u32, Error> {
    match link {
        LinkRef::Index(i) => Ok(i),
        LinkRef::Name(n) => Ok(link_get(handle, LinkRef::Name(n)).await?.index),
    }
}

fn lft_secs(d: Option<Duration>) -> u32 {
    match d {
        None => u32::MAX, // INFINITY_LIFE_TIME
        Some(d) => (d.as_secs_f64().ceil() as u64).clamp(1, u64::from(u32::MAX - 1)) as u32,
    }
}

async fn address_add(handle: &rtnetlink::Handle, spec: AddressSpec) -> Result<(), Error> {
    let index = resolve(handle, spec.link.clone()).await?;
    let mut req = handle
        .address()
        .add(index, spec.addr.addr(), spec.addr.prefix_len());
    {
        let msg = req.message_mut();
        msg.header.scope = spec.scope.into();
        if spec.nodad {
            msg.header.flags |= AddressHeaderFlags::Nodad;
        }
        if let (Some(l), IpAddr::V4(_)) = (&spec.label, spec.addr.addr()) {
            msg.attributes.push(AddressAttribute::Label(l.clone()));
        }
        if spec.valid_lft.is_some() || spec.preferred_lft.is_some() {
            let valid = lft_secs(spec.valid_lft);
            let preferred = lft_secs(spec.preferred_lft.or(spec.valid_lft)).min(valid);
            let mut ci = CacheInfo::default();
            ci.ifa_valid = valid;
            ci.ifa_preferred = preferred;
            msg.attributes.push(AddressAttribute::CacheInfo(ci));
        }
    }
    let req = if spec.replace { req.replace() } else { req };
    req.execute().await.map_err(Error::from)
}

async fn address_del(handle: &rtnetlink::Handle, link: LinkRef, addr: IpNet) -> Result<(), Error> {
    let index = resolve(handle, link).await?;
    // Build the same message `ip addr del` sends: header + IFA_LOCAL/ADDRESS.
    let mut msg = AddressMessage::default();
    msg.header.family = match addr {
        IpNet::V4(_) => netlink_packet_route::AddressFamily::Inet,
        IpNet::V6(_) => netlink_packet_route::AddressFamily::Inet6,
    };
    msg.header.prefix_len = addr.prefix_len();
    msg.header.index = index;
    msg.attributes.push(AddressAttribute::Local(addr.addr()));
    msg.attributes.push(AddressAttribute::Address(addr.addr()));
    handle
        .address()
        .del(msg)
        .execute()
        .await
        .map_err(Error::from)
}

async fn address_list(
    handle: &rtnetlink::Handle,
    link: Option<LinkRef>,
) -> Result<Vec<AddressInfo>, Error> {
    let mut req = handle.address().get();
    if let Some(l) = link {
        req = req.set_link_index_filter(resolve(handle, l).await?);
    }
    let mut s = req.execute();
    let mut out = Vec::new();
    while let Some(m) = s.try_next().await? {
        let mut addr = None;
        let mut local = None;
        let mut label = None;
        let mut valid = None;
        let mut preferred = None;
        for a in &m.attributes {
            match a {
                AddressAttribute::Address(a) => addr = Some(*a),
                AddressAttribute::Local(a) => local = Some(*a),
                AddressAttribute::Label(l) => label = Some(l.clone()),
                AddressAttribute::CacheInfo(c) => {
                    valid = (c.ifa_valid != u32::MAX).then_some(c.ifa_valid);
                    preferred = (c.ifa_preferred != u32::MAX).then_some(c.ifa_preferred);
                }
                _ => {}
            }
        }
        let Some(a) = local.or(addr) else { continue };
        let Ok(net) = IpNet::new(a, m.header.prefix_len) else {
            continue;
        };
        out.push(AddressInfo {
            index: m.header.index,
            addr: net,
            label,
            scope: u8::from(m.header.scope),
            valid_lft: valid,
            preferred_lft: preferred,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetimes() {
        assert_eq!(lft_secs(None), u32::MAX);
        assert_eq!(lft_secs(Some(Duration::from_millis(200))), 1);
        assert_eq!(lft_secs(Some(Duration::from_millis(2500))), 3);
    }

    #[tokio::test]
    async fn stubbed_channel_keeps_order() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let h = NetlinkHandle::from_sender(tx);
        let stub = tokio::spawn(async move {
            let mut seen = Vec::new();
            while let Some(r) = rx.recv().await {
                match r {
                    Request::AddressAdd(s, reply) => {
                        seen.push(format!("add {}", s.addr));
                        let _ = reply.send(Ok(()));
                    }
                    Request::AddressDel(_, a, reply) => {
                        seen.push(format!("del {a}"));
                        let _ = reply.send(Err(Error::Kernel {
                            errno: 99,
                            message: "x".into(),
                        }));
                    }
                    _ => {}
                }
            }
            seen
        });
        let net: IpNet = "198.18.0.100/24".parse().unwrap();
        h.address_add(AddressSpec::new(LinkRef::Index(1), net).lifetime(Duration::from_secs(3)))
            .await
            .unwrap();
        let e = h.address_del(LinkRef::Index(1), net).await.unwrap_err();
        assert!(e.is_not_found());
        drop(h);
        assert_eq!(
            stub.await.unwrap(),
            vec!["add 198.18.0.100/24", "del 198.18.0.100/24"]
        );
    }
}
