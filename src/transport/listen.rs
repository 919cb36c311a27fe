//! Listening sockets and the [`Acceptor`] trait the server's accept loop uses.

use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream, UdpSocket, UnixStream};
use tokio_util::either::Either;

use super::unix::UnixSocketListener;
use super::{ListenAddr, PeerAddr, TransportError, canonical};

/// Default listen backlog. The kernel caps it at `net.core.somaxconn`.
pub const DEFAULT_BACKLOG: u32 = 1024;

/// A listening socket that hands out connected streams.
pub trait Acceptor: Send + 'static {
    /// The connected stream type.
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    /// Waits for the next connection.
    ///
    /// # Cancel safety
    /// Cancel safe, as the listeners' own `accept` methods are.
    fn accept(&mut self) -> impl Future<Output = io::Result<(Self::Stream, PeerAddr)>> + Send;
}

impl Acceptor for TcpListener {
    type Stream = TcpStream;

    async fn accept(&mut self) -> io::Result<(TcpStream, PeerAddr)> {
        // TCP_NODELAY is inherited from the listening socket (see bind_tcp).
        let (stream, addr) = TcpListener::accept(self).await?;
        Ok((stream, PeerAddr::Tcp(canonical(addr))))
    }
}

/// A bound stream listener of either kind.
#[derive(Debug)]
pub enum Listener {
    Tcp(TcpListener),
    Unix(UnixSocketListener),
}

impl Listener {
    /// Binds `addr` with the given listen backlog.
    ///
    /// # Errors
    /// As [`bind_tcp`] or [`UnixSocketListener::bind`].
    pub async fn bind(addr: &ListenAddr, backlog: u32) -> Result<Listener, TransportError> {
        match addr {
            ListenAddr::Tcp { host, port } => bind_tcp(host, *port, backlog).await.map(Listener::Tcp),
            ListenAddr::Unix { path, options } => UnixSocketListener::bind(path, backlog, *options).map(Listener::Unix),
        }
    }

    /// Where it listens, as users write it: `127.0.0.1:65432`, `[::1]:80`, `unix:/run/app.sock`.
    ///
    /// # Errors
    /// When the bound address cannot be read.
    pub fn shown(&self) -> io::Result<String> {
        Ok(match self {
            Listener::Tcp(tcp) => canonical(tcp.local_addr()?).to_string(),
            Listener::Unix(unix) => format!("unix:{}", unix.path().display()),
        })
    }
}

impl Acceptor for Listener {
    type Stream = Either<TcpStream, UnixStream>;

    async fn accept(&mut self) -> io::Result<(Self::Stream, PeerAddr)> {
        match self {
            Listener::Tcp(tcp) => Acceptor::accept(tcp).await.map(|(s, peer)| (Either::Left(s), peer)),
            Listener::Unix(unix) => unix.accept().await.map(|(s, peer)| (Either::Right(s), peer)),
        }
    }
}

/// Opens a TCP listener on `host:port` with `SO_REUSEADDR` and the given backlog.
///
/// An empty host listens on every IPv4 interface, as in the guide; `::`
/// listens on every interface and, where the OS allows, accepts IPv4 clients
/// too (as v4-mapped addresses). A name is resolved and its first address used.
///
/// # Errors
/// [`TransportError::Resolve`] or [`TransportError::NoAddresses`] for a host
/// that does not resolve, [`TransportError::Bind`] when the socket cannot be
/// set up (port in use, address not local, no permission).
pub async fn bind_tcp(host: &str, port: u16, backlog: u32) -> Result<TcpListener, TransportError> {
    let addr = resolve_listen_addr(host, port).await?;
    let bind_error = |error| TransportError::Bind { addr, error };
    let socket = bound_socket(addr, Type::STREAM, Protocol::TCP).map_err(bind_error)?;
    // Responses are written whole, so Nagle's delay only ever adds latency.
    // Set on the listener, accepted sockets inherit it: one system call per
    // server instead of one per connection.
    socket.set_tcp_nodelay(true).map_err(bind_error)?;
    let backlog = i32::try_from(backlog).unwrap_or(i32::MAX);
    socket.listen(backlog).map_err(bind_error)?;
    TcpListener::from_std(socket.into()).map_err(bind_error)
}

/// Opens a UDP socket on `host:port`; the host is read as for [`bind_tcp`].
/// A port another socket holds is refused, as for TCP: UDP has no
/// TIME_WAIT to step over, and `SO_REUSEADDR` would let a second server
/// bind the port silently and take its traffic.
///
/// # Errors
/// As [`bind_tcp`].
pub async fn bind_udp(host: &str, port: u16) -> Result<UdpSocket, TransportError> {
    let addr = resolve_listen_addr(host, port).await?;
    let bind_error = |error| TransportError::Bind { addr, error };
    let socket = bound_socket(addr, Type::DGRAM, Protocol::UDP).map_err(bind_error)?;
    UdpSocket::from_std(socket.into()).map_err(bind_error)
}

/// A non-blocking socket bound to `addr`, dual-stack when `addr` is the
/// IPv6 wildcard; with `SO_REUSEADDR` for TCP only.
fn bound_socket(addr: SocketAddr, kind: Type, protocol: Protocol) -> std::io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), kind, Some(protocol))?;
    if kind == Type::STREAM {
        // Lets a restarted server bind while old connections sit in TIME_WAIT.
        socket.set_reuse_address(true)?;
    }
    if addr.is_ipv6() && addr.ip().is_unspecified() {
        // Best effort: some systems only do IPv6 on an IPv6 socket.
        let _ = socket.set_only_v6(false);
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket)
}

async fn resolve_listen_addr(host: &str, port: u16) -> Result<SocketAddr, TransportError> {
    if host.is_empty() {
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port));
    }
    let host = super::strip_brackets(host);
    let addrs = super::resolve::lookup(host, port, libc::SOCK_STREAM)
        .await
        .map_err(|source| TransportError::Resolve {
            host: host.to_owned(),
            source,
        })?;
    addrs
        .into_iter()
        .next()
        .ok_or_else(|| TransportError::NoAddresses { host: host.to_owned() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn binds_port_zero_and_reports_port_in_use() {
        let listener = bind_tcp("127.0.0.1", 0, DEFAULT_BACKLOG).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        assert_ne!(port, 0);
        let err = bind_tcp("127.0.0.1", port, DEFAULT_BACKLOG).await.unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with(&format!("cannot listen on 127.0.0.1:{port}: ")),
            "{text}"
        );
        assert!(text.contains("another program is using that port"), "{text}");
    }

    #[tokio::test]
    async fn accepted_sockets_inherit_nodelay() {
        let mut listener = bind_tcp("127.0.0.1", 0, DEFAULT_BACKLOG).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = TcpStream::connect(addr).await.unwrap();
        let (accepted, _) = Acceptor::accept(&mut listener).await.unwrap();
        assert!(
            accepted.nodelay().unwrap(),
            "TCP_NODELAY was not inherited from the listener"
        );
    }

    #[tokio::test]
    async fn a_used_udp_port_is_refused_like_tcp() {
        let first = bind_udp("127.0.0.1", 0).await.unwrap();
        let port = first.local_addr().unwrap().port();
        let err = bind_udp("127.0.0.1", port).await.unwrap_err().to_string();
        assert!(err.contains("another program is using that port"), "{err}");
    }

    #[tokio::test]
    async fn empty_host_is_every_ipv4_interface() {
        let listener = bind_tcp("", 0, DEFAULT_BACKLOG).await.unwrap();
        assert_eq!(listener.local_addr().unwrap().ip(), IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    }
}
