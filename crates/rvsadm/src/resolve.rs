//! Host and service name resolution, behind a trait so that tests are
//! deterministic.
//!
//! ipvsadm uses `gethostbyname` / `inet_aton` for input host names,
//! `getservbyname` for input port names, and, without `-n`,
//! `gethostbyaddr` + `getservbyport` for output. [`LibcResolver`] does the
//! same through the C library (nsswitch: `/etc/hosts`, DNS, `/etc/services`).
//! [`NumericResolver`] resolves nothing (every lookup fails), and
//! [`MapResolver`] answers from fixed tables.

use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::net::{IpAddr, Ipv4Addr};

/// Protocol numbers as ipvsadm uses them for service-name lookups.
pub const IPPROTO_TCP: u16 = 6;
pub const IPPROTO_UDP: u16 = 17;
pub const IPPROTO_SCTP: u16 = 132;

fn proto_name(proto: u16) -> Option<&'static str> {
    match proto {
        IPPROTO_TCP => Some("tcp"),
        IPPROTO_UDP => Some("udp"),
        IPPROTO_SCTP => Some("sctp"),
        _ => None,
    }
}

/// Name lookups used by the parser and the formatter.
pub trait Resolver {
    /// IPv4 host-name lookup (`gethostbyname`), first address.
    fn host_to_ipv4(&self, name: &str) -> Option<Ipv4Addr>;
    /// Reverse lookup (`gethostbyaddr`), first name.
    fn addr_to_host(&self, addr: IpAddr) -> Option<String>;
    /// `getservbyname(name, tcp|udp|sctp)`; other protocols never match.
    fn service_to_port(&self, name: &str, proto: u16) -> Option<u16>;
    /// `getservbyport(port, tcp|udp|sctp)`; other protocols never match.
    fn port_to_service(&self, port: u16, proto: u16) -> Option<String>;
}

/// Resolves nothing: every lookup fails, so output stays numeric and
/// only numeric input is accepted.
#[derive(Debug, Default, Clone, Copy)]
pub struct NumericResolver;

impl Resolver for NumericResolver {
    fn host_to_ipv4(&self, _: &str) -> Option<Ipv4Addr> {
        None
    }
    fn addr_to_host(&self, _: IpAddr) -> Option<String> {
        None
    }
    fn service_to_port(&self, _: &str, _: u16) -> Option<u16> {
        None
    }
    fn port_to_service(&self, _: u16, _: u16) -> Option<String> {
        None
    }
}

/// Fixed tables, for tests.
#[derive(Debug, Default, Clone)]
pub struct MapResolver {
    /// name → IPv4 address (forward).
    pub hosts: HashMap<String, Ipv4Addr>,
    /// address → name (reverse).
    pub names: HashMap<IpAddr, String>,
    /// (name, proto) → port and back.
    pub services: Vec<(String, u16, u16)>,
}

impl MapResolver {
    /// A small `/etc/hosts` + `/etc/services` like Debian's.
    pub fn typical() -> Self {
        let mut r = MapResolver::default();
        r.hosts
            .insert("localhost".into(), Ipv4Addr::new(127, 0, 0, 1));
        r.names
            .insert(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)), "localhost".into());
        for (name, port) in [
            ("http", 80u16),
            ("https", 443),
            ("domain", 53),
            ("http-alt", 8080),
            ("sip", 5060),
        ] {
            for proto in [IPPROTO_TCP, IPPROTO_UDP] {
                r.services.push((name.into(), port, proto));
            }
        }
        r.services.push(("www".into(), 80, IPPROTO_TCP));
        r
    }
}

impl Resolver for MapResolver {
    fn host_to_ipv4(&self, name: &str) -> Option<Ipv4Addr> {
        self.hosts.get(name).copied()
    }
    fn addr_to_host(&self, addr: IpAddr) -> Option<String> {
        self.names.get(&addr).cloned()
    }
    fn service_to_port(&self, name: &str, proto: u16) -> Option<u16> {
        proto_name(proto)?;
        self.services
            .iter()
            .find(|(n, _, p)| n == name && *p == proto)
            .map(|(_, port, _)| *port)
    }
    fn port_to_service(&self, port: u16, proto: u16) -> Option<String> {
        proto_name(proto)?;
        self.services
            .iter()
            .find(|(_, po, p)| *po == port && *p == proto)
            .map(|(n, _, _)| n.clone())
    }
}

/// The C library's resolver (nsswitch), as ipvsadm uses it.
#[derive(Debug, Default, Clone, Copy)]
pub struct LibcResolver;

impl Resolver for LibcResolver {
    fn host_to_ipv4(&self, name: &str) -> Option<Ipv4Addr> {
        let c = CString::new(name).ok()?;
        // SAFETY: zeroed addrinfo is a valid "no hints" value; we set family.
        let mut hints: libc::addrinfo = unsafe { std::mem::zeroed() };
        hints.ai_family = libc::AF_INET;
        hints.ai_socktype = libc::SOCK_STREAM;
        let mut res: *mut libc::addrinfo = std::ptr::null_mut();
        // SAFETY: valid C string, hints and out pointer.
        let rc = unsafe { libc::getaddrinfo(c.as_ptr(), std::ptr::null(), &hints, &mut res) };
        if rc != 0 || res.is_null() {
            return None;
        }
        let mut out = None;
        // SAFETY: res is a list returned by getaddrinfo, freed below.
        unsafe {
            let ai = &*res;
            if ai.ai_family == libc::AF_INET && !ai.ai_addr.is_null() {
                let sin = &*(ai.ai_addr as *const libc::sockaddr_in);
                out = Some(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)));
            }
            libc::freeaddrinfo(res);
        }
        out
    }

    fn addr_to_host(&self, addr: IpAddr) -> Option<String> {
        let mut host = [0 as libc::c_char; 1025];
        let rc = match addr {
            IpAddr::V4(a) => {
                // SAFETY: plain-old-data struct.
                let mut sin: libc::sockaddr_in = unsafe { std::mem::zeroed() };
                sin.sin_family = libc::AF_INET as libc::sa_family_t;
                sin.sin_addr.s_addr = u32::from(a).to_be();
                // SAFETY: valid sockaddr and buffers.
                unsafe {
                    libc::getnameinfo(
                        &sin as *const _ as *const libc::sockaddr,
                        std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
                        host.as_mut_ptr(),
                        host.len() as libc::socklen_t,
                        std::ptr::null_mut(),
                        0,
                        libc::NI_NAMEREQD,
                    )
                }
            }
            IpAddr::V6(a) => {
                // SAFETY: plain-old-data struct.
                let mut sin6: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
                sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                sin6.sin6_addr.s6_addr = a.octets();
                // SAFETY: valid sockaddr and buffers.
                unsafe {
                    libc::getnameinfo(
                        &sin6 as *const _ as *const libc::sockaddr,
                        std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
                        host.as_mut_ptr(),
                        host.len() as libc::socklen_t,
                        std::ptr::null_mut(),
                        0,
                        libc::NI_NAMEREQD,
                    )
                }
            }
        };
        if rc != 0 {
            return None;
        }
        // SAFETY: getnameinfo NUL-terminates on success.
        let s = unsafe { CStr::from_ptr(host.as_ptr()) };
        Some(s.to_string_lossy().into_owned())
    }

    fn service_to_port(&self, name: &str, proto: u16) -> Option<u16> {
        let p = CString::new(proto_name(proto)?).ok()?;
        let n = CString::new(name).ok()?;
        // SAFETY: valid C strings; the result points to static storage that
        // we copy out before any other netdb call.
        unsafe {
            let s = libc::getservbyname(n.as_ptr(), p.as_ptr());
            if s.is_null() {
                return None;
            }
            Some(u16::from_be((*s).s_port as u16))
        }
    }

    fn port_to_service(&self, port: u16, proto: u16) -> Option<String> {
        let p = CString::new(proto_name(proto)?).ok()?;
        // SAFETY: as above.
        unsafe {
            let s = libc::getservbyport(libc::c_int::from(port.to_be()), p.as_ptr());
            if s.is_null() || (*s).s_name.is_null() {
                return None;
            }
            Some(CStr::from_ptr((*s).s_name).to_string_lossy().into_owned())
        }
    }
}
