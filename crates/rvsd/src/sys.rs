//! Small host queries.

use std::net::IpAddr;

/// True if `addr` is configured on one of this host's interfaces
/// (getifaddrs(3)).
pub fn is_local_addr(addr: &IpAddr) -> bool {
    let mut ifap: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills ifap with a list we free below.
    if unsafe { libc::getifaddrs(&mut ifap) } != 0 {
        return false;
    }
    let mut found = false;
    let mut p = ifap;
    while !p.is_null() {
        // SAFETY: p is a valid node of the list returned by getifaddrs.
        let ifa = unsafe { &*p };
        if !ifa.ifa_addr.is_null() {
            // SAFETY: ifa_addr points to a sockaddr of the family it names.
            let fam = unsafe { (*ifa.ifa_addr).sa_family } as i32;
            let a = match fam {
                libc::AF_INET => {
                    // SAFETY: family AF_INET means a sockaddr_in.
                    let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
                    Some(IpAddr::from(
                        u32::from_be(sin.sin_addr.s_addr).to_be_bytes(),
                    ))
                }
                libc::AF_INET6 => {
                    // SAFETY: family AF_INET6 means a sockaddr_in6.
                    let sin6 = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in6) };
                    Some(IpAddr::from(sin6.sin6_addr.s6_addr))
                }
                _ => None,
            };
            if a.as_ref() == Some(addr) {
                found = true;
                break;
            }
        }
        p = ifa.ifa_next;
    }
    // SAFETY: ifap came from getifaddrs.
    unsafe { libc::freeifaddrs(ifap) };
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_local() {
        assert!(is_local_addr(&"127.0.0.1".parse().unwrap()));
        assert!(!is_local_addr(&"198.18.255.254".parse().unwrap()));
    }
}
