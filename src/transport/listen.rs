//! Listening sockets and the [`Acceptor`] trait the server's accept loop uses.

use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream, UdpSocket, UnixStream};
use tokio_util::either::Either;

use super::splice::Splice;
use super::unix::{PortableUnixListener, UnixSocketListener};
use super::{ListenAddr, PeerAddr, TransportError, canonical};

/// Default listen backlog. The kernel caps it at `net.core.somaxconn`.
pub const DEFAULT_BACKLOG: u32 = 1024;

/// How a stream listener is set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenOptions {
    /// Connections the kernel queues before they are accepted.
    pub backlog: u32,
    /// TCP: `SO_REUSEPORT`, so several sockets (in this process or others)
    /// share the port and the kernel spreads new connections among them.
    pub reuse_port: bool,
    /// TCP keepalive after this much silence ([`super::keepalive`]).
    pub keepalive: Option<Duration>,
}

impl Default for ListenOptions {
    fn default() -> Self {
        ListenOptions {
            backlog: DEFAULT_BACKLOG,
            reuse_port: false,
            keepalive: None,
        }
    }
}

/// A listening socket that hands out connected streams.
pub trait Acceptor: Send + 'static {
    /// The connected stream type.
    type Stream: AsyncRead + AsyncWrite + Splice + Unpin + Send + 'static;

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
    /// Binds `addr` with the given options.
    ///
    /// # Errors
    /// As [`bind_tcp`] or [`UnixSocketListener::bind`].
    pub async fn bind(addr: &ListenAddr, options: ListenOptions) -> Result<Listener, TransportError> {
        match addr {
            ListenAddr::Tcp { host, port } => bind_tcp(host, *port, options).await.map(Listener::Tcp),
            ListenAddr::Unix { path, options: file } => {
                UnixSocketListener::bind(path, options.backlog, *file).map(Listener::Unix)
            }
        }
    }

    /// Binds a listener for each of `count` cores. For TCP these are one
    /// `SO_REUSEPORT` group on one port (port 0: the port the first got),
    /// so that each core has a queue of its own and the kernel can hand it
    /// the connections that arrive on its CPU. Unless `options.reuse_port`
    /// says to share, a port another socket listens on is refused first,
    /// as a plain bind refuses it, so a second server started by mistake
    /// fails as it always did. The group's sockets carry `SO_REUSEPORT`,
    /// though: a later process of the same user that asks to share can
    /// still join it. Anything else binds one listener.
    ///
    /// # Errors
    /// As [`Listener::bind`].
    pub async fn bind_per_core(
        addr: &ListenAddr,
        options: ListenOptions,
        count: usize,
    ) -> Result<Vec<Listener>, TransportError> {
        let ListenAddr::Tcp { host, port } = addr else {
            return Ok(vec![Listener::bind(addr, options).await?]);
        };
        // Resolved once: every member of the group, and the probe, must be
        // on the same address.
        let addr = resolve_listen_addr(host, *port).await?;
        if count <= 1 {
            return Ok(vec![Listener::Tcp(bind_tcp_at(addr, options)?)]);
        }
        if !options.reuse_port && addr.port() != 0 {
            refuse_a_used_port(addr)?;
        }
        let group = ListenOptions {
            reuse_port: true,
            ..options
        };
        let first = bind_tcp_at(addr, group)?;
        let bound = first
            .local_addr()
            .map_err(|error| TransportError::Bind { addr, error })?;
        let mut listeners = vec![Listener::Tcp(first)];
        for _ in 1..count {
            listeners.push(Listener::Tcp(bind_tcp_at(bound, group)?));
        }
        Ok(listeners)
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

/// A [`Listener`] not registered with any runtime's reactor, so that it
/// can move to another thread and be registered there: each share-nothing
/// core registers its own listeners with its own runtime.
#[derive(Debug)]
pub enum PortableListener {
    Tcp(std::net::TcpListener),
    Unix(PortableUnixListener),
}

impl Listener {
    /// Takes the socket off the runtime it is registered with.
    ///
    /// # Errors
    /// When the socket cannot be taken off the runtime.
    pub fn into_portable(self) -> io::Result<PortableListener> {
        Ok(match self {
            Listener::Tcp(tcp) => PortableListener::Tcp(tcp.into_std()?),
            Listener::Unix(unix) => PortableListener::Unix(unix.into_portable()?),
        })
    }
}

impl PortableListener {
    /// Another handle on the same listening socket (`dup`): cores that
    /// share one socket each accept from it.
    ///
    /// # Errors
    /// When the descriptor cannot be duplicated.
    pub fn try_clone(&self) -> io::Result<PortableListener> {
        Ok(match self {
            PortableListener::Tcp(tcp) => PortableListener::Tcp(tcp.try_clone()?),
            PortableListener::Unix(unix) => PortableListener::Unix(unix.try_clone()?),
        })
    }

    /// The address it listens on, to tell copies of one port (bound with
    /// `SO_REUSEPORT`) from different addresses.
    pub fn local_address(&self) -> Option<String> {
        match self {
            PortableListener::Tcp(tcp) => tcp.local_addr().ok().map(|addr| addr.to_string()),
            PortableListener::Unix(unix) => Some(format!("unix:{}", unix.path().display())),
        }
    }

    /// Registers the socket with the calling thread's runtime.
    ///
    /// # Errors
    /// When there is no runtime here or it refuses the socket.
    pub fn into_listener(self) -> io::Result<Listener> {
        Ok(match self {
            PortableListener::Tcp(tcp) => Listener::Tcp(TcpListener::from_std(tcp)?),
            PortableListener::Unix(unix) => Listener::Unix(unix.into_listener()?),
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

/// Opens a TCP listener on `host:port` with `SO_REUSEADDR`, the given
/// backlog, and `SO_REUSEPORT` when asked.
///
/// An empty host listens on every IPv4 interface, as in the guide; `::`
/// listens on every interface and, where the OS allows, accepts IPv4 clients
/// too (as v4-mapped addresses). A name is resolved and its first address used.
///
/// # Errors
/// [`TransportError::Resolve`] or [`TransportError::NoAddresses`] for a host
/// that does not resolve, [`TransportError::Bind`] when the socket cannot be
/// set up (port in use, address not local, no permission).
pub async fn bind_tcp(host: &str, port: u16, options: ListenOptions) -> Result<TcpListener, TransportError> {
    bind_tcp_at(resolve_listen_addr(host, port).await?, options)
}

/// [`bind_tcp`] on an address already resolved.
fn bind_tcp_at(addr: SocketAddr, options: ListenOptions) -> Result<TcpListener, TransportError> {
    let bind_error = |error| TransportError::Bind { addr, error };
    let socket = bound_socket(addr, Type::STREAM, Protocol::TCP, options.reuse_port).map_err(bind_error)?;
    // Responses are written whole, so Nagle's delay only ever adds latency.
    // Set on the listener, accepted sockets inherit it: one system call per
    // server instead of one per connection.
    socket.set_tcp_nodelay(true).map_err(bind_error)?;
    // Keepalive settings are inherited the same way.
    if let Some(idle) = options.keepalive {
        socket.set_tcp_keepalive(&super::keepalive(idle)).map_err(bind_error)?;
    }
    let backlog = i32::try_from(options.backlog).unwrap_or(i32::MAX);
    socket.listen(backlog).map_err(bind_error)?;
    TcpListener::from_std(socket.into()).map_err(bind_error)
}

/// Fails as a plain bind of `addr` would, with no `SO_REUSEPORT`: when
/// another socket listens there (in a group of its own or not). The probe
/// is never listened on, so it leaves nothing behind. (Two servers started
/// at the same instant can both pass it before either binds.)
fn refuse_a_used_port(addr: SocketAddr) -> Result<(), TransportError> {
    bound_socket(addr, Type::STREAM, Protocol::TCP, false)
        .map(drop)
        .map_err(|error| TransportError::Bind { addr, error })
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
    let socket = bound_socket(addr, Type::DGRAM, Protocol::UDP, false).map_err(bind_error)?;
    UdpSocket::from_std(socket.into()).map_err(bind_error)
}

/// A non-blocking socket bound to `addr`, dual-stack when `addr` is the
/// IPv6 wildcard; with `SO_REUSEADDR` for TCP only.
fn bound_socket(addr: SocketAddr, kind: Type, protocol: Protocol, reuse_port: bool) -> std::io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), kind, Some(protocol))?;
    if kind == Type::STREAM {
        // Lets a restarted server bind while old connections sit in TIME_WAIT.
        socket.set_reuse_address(true)?;
    }
    if reuse_port {
        socket.set_reuse_port(true)?;
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
        let listener = bind_tcp("127.0.0.1", 0, ListenOptions::default()).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        assert_ne!(port, 0);
        let err = bind_tcp("127.0.0.1", port, ListenOptions::default()).await.unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with(&format!("cannot listen on 127.0.0.1:{port}: ")),
            "{text}"
        );
        assert!(text.contains("another program is using that port"), "{text}");
    }

    #[tokio::test]
    async fn accepted_sockets_inherit_nodelay() {
        let mut listener = bind_tcp("127.0.0.1", 0, ListenOptions::default()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = TcpStream::connect(addr).await.unwrap();
        let (accepted, _) = Acceptor::accept(&mut listener).await.unwrap();
        assert!(
            accepted.nodelay().unwrap(),
            "TCP_NODELAY was not inherited from the listener"
        );
    }

    #[tokio::test]
    async fn accepted_sockets_inherit_keepalive() {
        let options = ListenOptions {
            keepalive: Some(Duration::from_secs(7)),
            ..ListenOptions::default()
        };
        let mut listener = bind_tcp("127.0.0.1", 0, options).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = TcpStream::connect(addr).await.unwrap();
        let (accepted, _) = Acceptor::accept(&mut listener).await.unwrap();
        let socket = socket2::SockRef::from(&accepted);
        assert!(socket.keepalive().unwrap(), "SO_KEEPALIVE was not inherited");
        assert_eq!(socket.tcp_keepalive_time().unwrap(), Duration::from_secs(7));
        assert_eq!(socket.tcp_keepalive_interval().unwrap(), Duration::from_secs(7));
        assert_eq!(
            socket.tcp_keepalive_retries().unwrap(),
            crate::transport::KEEPALIVE_PROBES
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
    async fn shared_listeners_take_one_port_and_all_receive() {
        let options = ListenOptions {
            reuse_port: true,
            ..ListenOptions::default()
        };
        let addr = ListenAddr::Tcp {
            host: "127.0.0.1".into(),
            port: 0,
        };
        let listeners = Listener::bind_per_core(&addr, options, 2).await.unwrap();
        let ports: Vec<String> = listeners.iter().map(|l| l.shown().unwrap()).collect();
        assert_eq!(ports.len(), 2);
        assert_eq!(ports[0], ports[1]);
        let mut clients = Vec::new();
        for _ in 0..64 {
            clients.push(TcpStream::connect(ports[0].as_str()).await.unwrap());
        }
        // The kernel hashes connections over the group: 64 all in one queue
        // would be a 1 in 2^63 chance.
        let mut listeners = listeners;
        for listener in &mut listeners {
            let accepted = tokio::time::timeout(std::time::Duration::from_secs(5), Acceptor::accept(listener)).await;
            assert!(matches!(accepted, Ok(Ok(_))), "a listener got no connection");
        }
        // Without SO_REUSEPORT the port is refused, as before.
        let port: u16 = ports[0].rsplit(':').next().unwrap().parse().unwrap();
        assert!(bind_tcp("127.0.0.1", port, ListenOptions::default()).await.is_err());
    }

    #[tokio::test]
    async fn a_listener_per_core_keeps_its_port_exclusive_unless_told_to_share() {
        let addr = |port| ListenAddr::Tcp {
            host: "127.0.0.1".into(),
            port,
        };
        let ours = Listener::bind_per_core(&addr(0), ListenOptions::default(), 3)
            .await
            .unwrap();
        let shown: Vec<String> = ours.iter().map(|l| l.shown().unwrap()).collect();
        assert_eq!(shown.len(), 3);
        assert!(shown.iter().all(|s| *s == shown[0]), "{shown:?}");
        let port: u16 = shown[0].rsplit(':').next().unwrap().parse().unwrap();
        // A second group, or a plain listener, is refused the port...
        let err = Listener::bind_per_core(&addr(port), ListenOptions::default(), 2)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("another program is using that port"), "{err}");
        assert!(bind_tcp("127.0.0.1", port, ListenOptions::default()).await.is_err());
        // ... as is a group on a port a plain listener holds.
        let plain = bind_tcp("127.0.0.1", 0, ListenOptions::default()).await.unwrap();
        let held = plain.local_addr().unwrap().port();
        assert!(
            Listener::bind_per_core(&addr(held), ListenOptions::default(), 2)
                .await
                .is_err()
        );
        // Told to share, a group joins the port.
        let sharing = ListenOptions {
            reuse_port: true,
            ..ListenOptions::default()
        };
        let joined = Listener::bind_per_core(&addr(port), sharing, 2).await.unwrap();
        assert!(joined.iter().all(|l| l.shown().unwrap() == shown[0]));
        // One core: one plain listener, no group.
        let single = Listener::bind_per_core(&addr(0), ListenOptions::default(), 1)
            .await
            .unwrap();
        assert_eq!(single.len(), 1);
        let Listener::Tcp(tcp) = &single[0] else {
            panic!("not TCP")
        };
        assert!(!socket2::SockRef::from(tcp).reuse_port().unwrap());
    }

    #[tokio::test]
    async fn empty_host_is_every_ipv4_interface() {
        let listener = bind_tcp("", 0, ListenOptions::default()).await.unwrap();
        assert_eq!(listener.local_addr().unwrap().ip(), IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    }
}
