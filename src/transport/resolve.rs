//! Name resolution as the C library does it: `getaddrinfo` and `getnameinfo`,
//! with everything they return (family, socket type, protocol, canonical
//! name), like Python's `socket.getaddrinfo`. The standard library's
//! resolver keeps only the addresses.

use std::ffi::{CStr, CString};
use std::fmt;
use std::net::{IpAddr, SocketAddr};

use socket2::SockAddr;

/// One `getaddrinfo` result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddrInfo {
    pub family: i32,
    pub socktype: i32,
    pub protocol: i32,
    /// Set on the first result only, as getaddrinfo reports it.
    pub canonical_name: Option<String>,
    pub addr: SocketAddr,
}

impl AddrInfo {
    /// `AF_INET`, `AF_INET6`, or the number.
    pub fn family_name(&self) -> String {
        match self.family {
            libc::AF_INET => "AF_INET".into(),
            libc::AF_INET6 => "AF_INET6".into(),
            other => other.to_string(),
        }
    }

    /// `SOCK_STREAM`, `SOCK_DGRAM`, `SOCK_RAW`, or the number.
    pub fn socktype_name(&self) -> String {
        match self.socktype {
            libc::SOCK_STREAM => "SOCK_STREAM".into(),
            libc::SOCK_DGRAM => "SOCK_DGRAM".into(),
            libc::SOCK_RAW => "SOCK_RAW".into(),
            other => other.to_string(),
        }
    }

    /// `IPPROTO_TCP`, `IPPROTO_UDP`, or the number.
    pub fn protocol_name(&self) -> String {
        match self.protocol {
            libc::IPPROTO_TCP => "IPPROTO_TCP".into(),
            libc::IPPROTO_UDP => "IPPROTO_UDP".into(),
            other => other.to_string(),
        }
    }
}

/// A resolver failure, with the C library's own explanation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ResolveError {
    pub code: i32,
    pub message: String,
}

impl ResolveError {
    fn from_gai(code: i32) -> ResolveError {
        let message = if code == libc::EAI_SYSTEM {
            std::io::Error::last_os_error().to_string()
        } else {
            // SAFETY: gai_strerror returns a pointer to a static string.
            unsafe { CStr::from_ptr(libc::gai_strerror(code)) }
                .to_string_lossy()
                .into_owned()
        };
        ResolveError { code, message }
    }
}

/// What to ask `getaddrinfo` for.
#[derive(Debug, Clone, Copy, Default)]
pub struct Hints {
    /// `AF_INET`, `AF_INET6`, or 0 for either.
    pub family: i32,
    /// `SOCK_STREAM`, `SOCK_DGRAM`, or 0 for every type.
    pub socktype: i32,
}

/// Calls `getaddrinfo(host, port)` with `AI_CANONNAME`. Blocking: call it
/// from a blocking thread in async code.
///
/// # Errors
/// [`ResolveError`] with the resolver's message (`Name or service not known`, ...).
pub fn getaddrinfo(host: &str, port: Option<u16>, hints: Hints) -> Result<Vec<AddrInfo>, ResolveError> {
    let host = CString::new(host).map_err(|_| ResolveError {
        code: libc::EAI_NONAME,
        message: "host name contains a NUL byte".into(),
    })?;
    let service = port.map(|p| CString::new(p.to_string()).expect("digits have no NUL"));
    // SAFETY: a zeroed addrinfo is the documented way to start hints.
    let mut c_hints: libc::addrinfo = unsafe { std::mem::zeroed() };
    c_hints.ai_flags = libc::AI_CANONNAME;
    c_hints.ai_family = hints.family;
    c_hints.ai_socktype = hints.socktype;
    let mut list: *mut libc::addrinfo = std::ptr::null_mut();
    // SAFETY: valid C strings and hints; on success `list` is freed below.
    let code = unsafe {
        libc::getaddrinfo(
            host.as_ptr(),
            service.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
            &c_hints,
            &mut list,
        )
    };
    if code != 0 {
        return Err(ResolveError::from_gai(code));
    }
    let mut results = Vec::new();
    let mut cursor = list;
    while !cursor.is_null() {
        // SAFETY: cursor walks the list getaddrinfo returned, which stays valid until freeaddrinfo.
        let info = unsafe { &*cursor };
        let canonical_name = (!info.ai_canonname.is_null()).then(|| {
            unsafe { CStr::from_ptr(info.ai_canonname) }
                .to_string_lossy()
                .into_owned()
        });
        // SAFETY: ai_addr points to ai_addrlen bytes of a socket address.
        let addr = unsafe {
            SockAddr::try_init(|storage, len| {
                std::ptr::copy_nonoverlapping(
                    info.ai_addr.cast::<u8>(),
                    storage.cast::<u8>(),
                    info.ai_addrlen as usize,
                );
                *len = info.ai_addrlen;
                Ok(())
            })
        }
        .ok()
        .and_then(|((), addr)| addr.as_socket());
        if let Some(addr) = addr {
            results.push(AddrInfo {
                family: info.ai_family,
                socktype: info.ai_socktype,
                protocol: info.ai_protocol,
                canonical_name,
                addr,
            });
        }
        cursor = info.ai_next;
    }
    // SAFETY: list came from a successful getaddrinfo and is freed once.
    unsafe { libc::freeaddrinfo(list) };
    Ok(results)
}

/// The addresses of `host` for `port`, in the resolver's order, without
/// repeats: an IP address as it is, a name through [`getaddrinfo`] on a
/// blocking thread. Servers and clients resolve through this one function,
/// so a name that does not resolve reads the same everywhere.
///
/// # Errors
/// The resolver's error, as an I/O error with its message.
pub async fn lookup(host: &str, port: u16, socktype: i32) -> std::io::Result<Vec<SocketAddr>> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let host = host.to_owned();
    let hints = Hints { family: 0, socktype };
    let found = tokio::task::spawn_blocking(move || getaddrinfo(&host, Some(port), hints))
        .await
        .map_err(std::io::Error::other)?
        .map_err(|error| std::io::Error::other(error.message))?;
    let mut addrs: Vec<SocketAddr> = Vec::with_capacity(found.len());
    for info in found {
        if !addrs.contains(&info.addr) {
            addrs.push(info.addr);
        }
    }
    Ok(addrs)
}

/// A `getnameinfo` answer: host name and service name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameInfo {
    pub host: String,
    pub service: String,
}

impl fmt::Display for NameInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.host, self.service)
    }
}

/// Calls `getnameinfo` on `ip:port` without `NI_NAMEREQD`: an address with
/// no name comes back in numeric form, as Python's `socket.getnameinfo`
/// gives it. Blocking.
///
/// # Errors
/// [`ResolveError`] with the resolver's message.
pub fn getnameinfo(ip: IpAddr, port: u16) -> Result<NameInfo, ResolveError> {
    let addr = SockAddr::from(SocketAddr::new(ip, port));
    let mut host = [0 as libc::c_char; 1025];
    let mut service = [0 as libc::c_char; 32];
    // SAFETY: addr is a valid socket address of the given length; the buffers' lengths are passed.
    let code = unsafe {
        libc::getnameinfo(
            addr.as_ptr().cast(),
            addr.len(),
            host.as_mut_ptr(),
            host.len() as libc::socklen_t,
            service.as_mut_ptr(),
            service.len() as libc::socklen_t,
            0,
        )
    };
    if code != 0 {
        return Err(ResolveError::from_gai(code));
    }
    // SAFETY: on success both buffers hold NUL-terminated strings.
    let text = |buf: &[libc::c_char]| unsafe { CStr::from_ptr(buf.as_ptr()) }.to_string_lossy().into_owned();
    Ok(NameInfo {
        host: text(&host),
        service: text(&service),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_literals_resolve_with_every_socket_type() {
        let results = getaddrinfo("127.0.0.1", Some(65432), Hints::default()).unwrap();
        assert!(
            results
                .iter()
                .any(|r| r.socktype == libc::SOCK_STREAM && r.protocol == libc::IPPROTO_TCP)
        );
        assert!(
            results
                .iter()
                .any(|r| r.socktype == libc::SOCK_DGRAM && r.protocol == libc::IPPROTO_UDP)
        );
        assert!(
            results
                .iter()
                .all(|r| r.addr == "127.0.0.1:65432".parse().unwrap() && r.family_name() == "AF_INET")
        );
        assert_eq!(results[0].canonical_name.as_deref(), Some("127.0.0.1"));
    }

    #[test]
    fn unknown_names_fail_with_the_resolvers_message() {
        let err = getaddrinfo("no-such-host.invalid", None, Hints::default()).unwrap_err();
        assert!(!err.message.is_empty());
    }

    #[test]
    fn reverse_lookup_of_loopback() {
        let info = getnameinfo("127.0.0.1".parse().unwrap(), 0).unwrap();
        assert_eq!(info.host, "localhost");
    }

    #[test]
    fn an_address_without_a_name_comes_back_numeric() {
        // 192.0.2.0/24 is TEST-NET-1: documentation only, never named.
        let info = getnameinfo("192.0.2.55".parse().unwrap(), 0).unwrap();
        assert_eq!(info.host, "192.0.2.55");
    }
}
