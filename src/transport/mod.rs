//! Addresses, listening and connecting: everything that turns a host and a
//! port into a socket. The protocol and the services never see these details;
//! they get a stream that is `AsyncRead + AsyncWrite`.

pub mod activation;
pub mod connect;
pub mod datagram;
pub mod listen;
pub mod multicast;
pub mod proxy;
pub mod resolve;
pub mod splice;
pub mod tls;
pub mod unix;

use std::fmt;
use std::net::SocketAddr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::time::Duration;

use crate::escape::Escaped;

pub use connect::{ClientStream, Connector, connect_stream, connect_tcp};
pub use listen::{Acceptor, ListenOptions, Listener, bind_tcp};

/// The port the guide uses for every example.
pub const DEFAULT_PORT: u16 = 65432;

/// The host the guide's servers listen on: loopback only.
pub const DEFAULT_HOST: &str = "127.0.0.1";

/// Who is on the other end of a connection, for logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerAddr {
    Tcp(SocketAddr),
    /// A Unix socket peer; clients usually have no path (they are unnamed).
    Unix(Option<PathBuf>),
    /// A Unix socket peer bound to an abstract name (Linux).
    UnixAbstract(Vec<u8>),
}

impl fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerAddr::Tcp(addr) => write!(f, "{addr}"),
            // A client chooses its own socket's path: it is peer-supplied text.
            PeerAddr::Unix(Some(path)) => write!(f, "unix:{}", Escaped(path.as_os_str().as_bytes())),
            PeerAddr::Unix(None) => f.write_str("unix:(unnamed)"),
            PeerAddr::UnixAbstract(name) => write!(f, "unix:@{}", Escaped(name)),
        }
    }
}

/// Where a stream server listens, parsed once from the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    /// A host (address or name; "" for every IPv4 interface, "::" for every
    /// interface) and port (0 picks a free one).
    Tcp { host: String, port: u16 },
    /// A Unix socket file, and how to create it.
    Unix {
        path: PathBuf,
        options: unix::SocketFileOptions,
    },
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Tcp { host, port } => write!(f, "{host} port {port}"),
            ListenAddr::Unix { path, .. } => write!(f, "unix:{}", path.display()),
        }
    }
}

/// Where a client connects or a server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A host (name or address) and port, over TCP or UDP.
    Inet { host: String, port: u16 },
    /// A Unix domain socket's path.
    Unix(PathBuf),
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Inet { host, port } => write!(f, "{host} port {port}"),
            Endpoint::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// TCP keepalive that notices a peer gone without a word (its host
/// crashed, its link cut) on a connection with nothing to send: after
/// `idle` of silence a probe every `idle`, and after three unanswered the
/// connection fails with "timed out". Data waiting for an ACK is not
/// covered (the retransmission timeout is); a quiet connection is.
pub fn keepalive(idle: Duration) -> socket2::TcpKeepalive {
    socket2::TcpKeepalive::new()
        .with_time(idle)
        .with_interval(idle)
        .with_retries(KEEPALIVE_PROBES)
}

/// Unanswered keepalive probes after which a peer is taken for gone.
pub const KEEPALIVE_PROBES: u32 = 3;

/// `[::1]` → `::1`: users paste bracketed IPv6 addresses from URLs and logs.
pub fn strip_brackets(host: &str) -> &str {
    host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host)
}

/// Turns an IPv4 client seen through a dual-stack IPv6 socket
/// (`[::ffff:127.0.0.1]:5000`) back into the address users know (`127.0.0.1:5000`).
pub fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// Why a socket could not be set up.
///
/// Where an I/O error is the `source`, the message does not repeat it:
/// `{:#}` (as `main` prints errors) shows each cause once. `Bind` keeps its
/// cause in the message instead, because the hint must follow it.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("cannot resolve {host:?}")]
    Resolve { host: String, source: std::io::Error },
    #[error("{host:?} resolved to no addresses")]
    NoAddresses { host: String },
    #[error("cannot listen on {addr}: {error}{hint}", hint = bind_hint(.error))]
    Bind { addr: SocketAddr, error: std::io::Error },
    #[error("cannot connect to {target}: {}", describe_failures(.target, .failures))]
    Connect {
        target: String,
        failures: Vec<(SocketAddr, std::io::Error)>,
    },
    #[error("cannot connect to unix:{}", .path.display())]
    ConnectUnix { path: PathBuf, source: std::io::Error },
    #[error("cannot listen on unix:{}", .path.display())]
    BindUnix { path: PathBuf, source: std::io::Error },
    #[error("another server is already listening on unix:{} (stop it, or pick another path)", .path.display())]
    UnixPathInUse { path: PathBuf },
    #[error(
        "cannot tell whether a server owns unix:{}, so it is left alone (remove it if it is stale, or pick another path)",
        .path.display()
    )]
    UnixPathUnknown { path: PathBuf, source: std::io::Error },
    #[error("unix:{} exists and is not a socket (remove it, or pick another path)", .path.display())]
    UnixPathNotSocket { path: PathBuf },
    #[error("cannot send {what} to {target}")]
    Send {
        target: String,
        what: &'static str,
        source: std::io::Error,
    },
    #[error("TLS with {target} failed: {reason}")]
    Tls { target: String, reason: String },
}

fn bind_hint(error: &std::io::Error) -> &'static str {
    match error.kind() {
        std::io::ErrorKind::AddrInUse => " (another program is using that port: stop it or pick another port)",
        std::io::ErrorKind::PermissionDenied => " (ports below 1024 need privileges: pick a higher port)",
        std::io::ErrorKind::AddrNotAvailable => " (that address is not on this machine)",
        _ => "",
    }
}

/// Each address's failure; the address is left out when it is the only one
/// and the target already names it (`127.0.0.1 port 1`).
fn describe_failures(target: &str, failures: &[(SocketAddr, std::io::Error)]) -> String {
    if let [(addr, error)] = failures
        && target == format!("{} port {}", addr.ip(), addr.port())
    {
        return error.to_string();
    }
    failures
        .iter()
        .map(|(addr, error)| format!("{addr}: {error}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Raises this process's open-file limit to the hard limit, so a server can
/// hold as many connections as the administrator allows. Returns the new limit.
pub fn raise_open_file_limit() -> std::io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
    }
    Ok(limit.rlim_cur)
}
