//! Client-side connection set-up: resolve a name, race its addresses
//! (Happy Eyeballs, RFC 8305), or open a Unix socket. Every limit is an
//! `Option<Duration>`: `None` waits as long as the system does.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::net::{TcpStream, UdpSocket, UnixStream};
use tokio_util::either::Either;

use rustls::pki_types::ServerName;
use tokio_rustls::client::TlsStream;

use tokio::io::AsyncWriteExt;

use super::datagram::AsyncDatagramIo;
use super::proxy::{ProxyVersion, encode_header};
use super::tls::{ClientTls, Side, TlsConnector, TlsError, explain};
use super::unix::BoundUnixDatagram;
use super::{Endpoint, TransportError, strip_brackets};
use crate::deadline::within_io;

/// How long an attempt runs alone before the next address is tried alongside
/// it (RFC 8305 §5 recommends 250 ms).
pub const ATTEMPT_DELAY: Duration = Duration::from_millis(250);

/// A connected stream of either kind: clients are written once for both.
pub type Stream = Either<TcpStream, UnixStream>;

/// A client's connection: plain, or TLS (boxed: its state is large).
pub type ClientStream = Either<Stream, Box<TlsStream<Stream>>>;

/// How a client reaches its server: where, how long each wait may take, and
/// whether to speak TLS. Every client connects through one, so TLS (and
/// anything else a connection needs before the protocol) is set up in one
/// place.
#[derive(Clone)]
pub struct Connector {
    endpoint: Endpoint,
    timeout: Option<Duration>,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    proxy_header: Option<ProxyVersion>,
    keepalive: Option<Duration>,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("endpoint", &self.endpoint)
            .field("timeout", &self.timeout)
            .field("tls", &self.tls.as_ref().map(|(_, name)| name))
            .field("proxy_header", &self.proxy_header)
            .field("keepalive", &self.keepalive)
            .finish()
    }
}

impl Connector {
    /// Plain connections to `endpoint`, each wait bounded by `timeout`.
    pub fn new(endpoint: Endpoint, timeout: Option<Duration>) -> Connector {
        Connector {
            endpoint,
            timeout,
            tls: None,
            proxy_header: None,
            keepalive: None,
        }
    }

    /// Turns TCP keepalive on for every connection ([`super::keepalive`]).
    pub fn with_keepalive(mut self, idle: Duration) -> Connector {
        self.keepalive = Some(idle);
        self
    }

    /// Begins every connection with a PROXY protocol header, as a balancer
    /// would, naming this end of the connection as the client (a Unix
    /// socket: v1 `UNKNOWN`, v2 `LOCAL`).
    pub fn with_proxy_header(mut self, version: ProxyVersion) -> Connector {
        self.proxy_header = Some(version);
        self
    }

    /// TLS connections with `tls`. The name verified is `tls.server_name`,
    /// or the host connected to (`localhost` for a Unix socket).
    ///
    /// # Errors
    /// [`TlsError`] when the settings' files cannot be read or the name is not valid.
    pub fn with_tls(mut self, tls: &ClientTls) -> Result<Connector, TlsError> {
        let host = match &self.endpoint {
            Endpoint::Inet { host, .. } => host.as_str(),
            Endpoint::Unix(_) => "localhost",
        };
        self.tls = Some(tls.connector(host)?);
        Ok(self)
    }

    /// Where connections go.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The limit on each wait.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// Whether connections speak TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Opens a connection, and does the TLS handshake when asked to.
    ///
    /// # Errors
    /// As [`connect_stream`], or [`TransportError::Tls`] saying why the
    /// handshake failed (unknown issuer, name mismatch, expired, ...).
    pub async fn connect(&self) -> Result<ClientStream, TransportError> {
        let mut stream = connect_stream(&self.endpoint, self.timeout).await?;
        if let (Some(idle), Either::Left(tcp)) = (self.keepalive, &stream) {
            socket2::SockRef::from(tcp)
                .set_tcp_keepalive(&super::keepalive(idle))
                .map_err(|source| TransportError::Send {
                    target: self.endpoint.to_string(),
                    what: "TCP keepalive settings",
                    source,
                })?;
        }
        if let Some(version) = self.proxy_header {
            let addresses = match &stream {
                Either::Left(tcp) => tcp.local_addr().and_then(|local| Ok((local, tcp.peer_addr()?))).ok(),
                Either::Right(_) => None,
            };
            let header = encode_header(version, addresses);
            within_io(self.timeout, stream.write_all(&header))
                .await
                .map_err(|source| TransportError::Send {
                    target: self.endpoint.to_string(),
                    what: "the PROXY header",
                    source,
                })?;
        }
        let Some((connector, name)) = &self.tls else {
            return Ok(Either::Left(stream));
        };
        within_io(self.timeout, connector.connect(name.clone(), stream))
            .await
            .map(|tls| Either::Right(Box::new(tls)))
            .map_err(|error| TransportError::Tls {
                target: self.endpoint.to_string(),
                reason: explain(&error, Side::Client),
            })
    }
}

/// Connects to a TCP or Unix stream endpoint.
///
/// # Errors
/// As [`connect_tcp`], or [`TransportError::ConnectUnix`].
pub async fn connect_stream(endpoint: &Endpoint, timeout: Option<Duration>) -> Result<Stream, TransportError> {
    match endpoint {
        Endpoint::Inet { host, port } => connect_tcp(host, *port, timeout).await.map(Either::Left),
        Endpoint::Unix(path) => connect_unix(path, timeout).await.map(Either::Right),
    }
}

/// Connects to a Unix stream socket.
///
/// # Errors
/// [`TransportError::ConnectUnix`] when nothing listens at `path` or time runs out.
pub async fn connect_unix(path: &Path, timeout: Option<Duration>) -> Result<UnixStream, TransportError> {
    within_io(timeout, UnixStream::connect(path))
        .await
        .map_err(|source| TransportError::ConnectUnix {
            path: path.to_owned(),
            source,
        })
}

/// Resolves `host` and connects to `port`, racing its addresses as RFC 8305
/// describes: addresses alternate between families, and each attempt gets
/// [`ATTEMPT_DELAY`] alone before the next one starts beside it. The first
/// connection made wins; every attempt is bounded by `timeout`.
///
/// # Errors
/// [`TransportError::Resolve`]/[`TransportError::NoAddresses`] when the name
/// does not resolve; [`TransportError::Connect`] listing each address and its
/// failure when none accepted.
pub async fn connect_tcp(host: &str, port: u16, timeout: Option<Duration>) -> Result<TcpStream, TransportError> {
    let host = strip_brackets(host);
    let addrs = resolve(host, port, timeout).await?;
    connect_any(&addrs, timeout)
        .await
        .map_err(|failures| TransportError::Connect {
            target: format!("{host} port {port}"),
            failures,
        })
}

/// Races connections to `addrs` (in [`interleave_families`] order) and returns
/// the first that succeeds, or every address's failure.
pub async fn connect_any(
    addrs: &[SocketAddr],
    timeout: Option<Duration>,
) -> Result<TcpStream, Vec<(SocketAddr, std::io::Error)>> {
    let mut waiting = interleave_families(addrs).into_iter();
    let mut attempts = FuturesUnordered::new();
    let mut failures = Vec::new();
    let mut started = Vec::new();
    let mut attempt = |addr: SocketAddr| {
        started.push(addr);
        async move { (addr, within_io(timeout, TcpStream::connect(addr)).await) }
    };
    loop {
        if attempts.is_empty() {
            match waiting.next() {
                Some(addr) => attempts.push(attempt(addr)),
                None => return Err(failures),
            }
        }
        tokio::select! {
            Some((addr, result)) = attempts.next() => match result {
                Ok(stream) => {
                    stream.set_nodelay(true).ok();
                    report_fallback(addr, &failures, &started);
                    return Ok(stream);
                }
                Err(error) => {
                    failures.push((addr, error));
                    // A failure frees the slot at once rather than after the delay.
                    if let Some(next) = waiting.next() {
                        attempts.push(attempt(next));
                    }
                }
            },
            () = tokio::time::sleep(ATTEMPT_DELAY), if waiting.len() > 0 => {
                attempts.push(attempt(waiting.next().expect("checked non-empty")));
            }
        }
    }
}

/// Says, once per process at info level (then at debug: a load generator
/// makes thousands of connections), that an address other than the first
/// was used and why: a broken IPv6 route otherwise goes unnoticed,
/// costing every connection the attempt delay.
fn report_fallback(connected: SocketAddr, failures: &[(SocketAddr, std::io::Error)], started: &[SocketAddr]) {
    if started.len() == 1 {
        return;
    }
    static REPORTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    let mut why: Vec<String> = failures
        .iter()
        .map(|(addr, error)| format!("{addr}: {error}"))
        .collect();
    // Started, not failed, not the winner: still waiting for an answer.
    for addr in started {
        if *addr != connected && !failures.iter().any(|(failed, _)| failed == addr) {
            why.push(format!(
                "{addr}: no answer yet (waited at least {} ms)",
                ATTEMPT_DELAY.as_millis()
            ));
        }
    }
    let line = format!("connected to {connected} after: {}", why.join("; "));
    if REPORTED.swap(true, std::sync::atomic::Ordering::Relaxed) {
        tracing::debug!("{line}");
    } else {
        tracing::info!("{line}");
    }
}

/// Resolves `host` and opens a UDP socket connected to its first address, so
/// that only that peer's datagrams are received.
///
/// # Errors
/// As [`connect_tcp`] for names; [`TransportError::Connect`] when no socket
/// can be opened toward any address.
pub async fn connect_udp(host: &str, port: u16, timeout: Option<Duration>) -> Result<UdpSocket, TransportError> {
    let host = strip_brackets(host);
    let mut failures = Vec::new();
    for addr in resolve(host, port, timeout).await? {
        let local: SocketAddr = if addr.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let socket = match UdpSocket::bind(local).await {
            Ok(socket) => socket,
            Err(error) => {
                failures.push((addr, error));
                continue;
            }
        };
        match socket.connect(addr).await {
            Ok(()) => return Ok(socket),
            // What the system says for a broadcast address without SO_BROADCAST.
            Err(error) if error.kind() == std::io::ErrorKind::PermissionDenied => failures.push((
                addr,
                std::io::Error::new(
                    error.kind(),
                    "permission denied (for a broadcast address, add --broadcast)",
                ),
            )),
            Err(error) => failures.push((addr, error)),
        }
    }
    Err(TransportError::Connect {
        target: format!("{host} port {port}"),
        failures,
    })
}

/// Orders addresses as RFC 8305 §4 asks: the resolver's first family first,
/// then alternating families, each family keeping the resolver's order.
pub fn interleave_families(addrs: &[SocketAddr]) -> Vec<SocketAddr> {
    let Some(first) = addrs.first() else { return Vec::new() };
    let (mut preferred, mut other): (Vec<SocketAddr>, Vec<SocketAddr>) =
        addrs.iter().partition(|a| a.is_ipv6() == first.is_ipv6());
    preferred.reverse();
    other.reverse();
    let mut ordered = Vec::with_capacity(addrs.len());
    while !preferred.is_empty() || !other.is_empty() {
        ordered.extend(preferred.pop());
        ordered.extend(other.pop());
    }
    ordered
}

async fn resolve(host: &str, port: u16, timeout: Option<Duration>) -> Result<Vec<SocketAddr>, TransportError> {
    let addrs = within_io(timeout, super::resolve::lookup(host, port, libc::SOCK_STREAM))
        .await
        .map_err(|source| TransportError::Resolve {
            host: host.to_owned(),
            source,
        })?;
    if addrs.is_empty() {
        return Err(TransportError::NoAddresses { host: host.to_owned() });
    }
    Ok(addrs)
}

/// A connected datagram socket of either kind: UDP, or a Unix datagram
/// socket bound at a temporary path so the server can answer it.
#[derive(Debug)]
pub enum DatagramConnection {
    Udp(UdpSocket),
    Unix(BoundUnixDatagram),
}

/// Opens a datagram socket connected to `endpoint`.
///
/// # Errors
/// As [`connect_udp`] or [`BoundUnixDatagram::connect_from_temp`].
pub async fn connect_datagram(
    endpoint: &Endpoint,
    timeout: Option<Duration>,
) -> Result<DatagramConnection, TransportError> {
    match endpoint {
        Endpoint::Inet { host, port } => connect_udp(host, *port, timeout).await.map(DatagramConnection::Udp),
        Endpoint::Unix(path) => BoundUnixDatagram::connect_from_temp(path).map(DatagramConnection::Unix),
    }
}

impl AsyncDatagramIo for DatagramConnection {
    async fn readable_io<R>(&self, io: impl FnMut() -> std::io::Result<R> + Send) -> std::io::Result<R> {
        match self {
            DatagramConnection::Udp(socket) => socket.readable_io(io).await,
            DatagramConnection::Unix(bound) => bound.socket.readable_io(io).await,
        }
    }

    fn sock_ref(&self) -> socket2::SockRef<'_> {
        match self {
            DatagramConnection::Udp(socket) => socket.sock_ref(),
            DatagramConnection::Unix(bound) => bound.socket.sock_ref(),
        }
    }

    async fn send(&self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            DatagramConnection::Udp(socket) => socket.send(buf).await,
            DatagramConnection::Unix(bound) => bound.socket.send(buf).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_alternate_starting_with_the_first() {
        let a: SocketAddr = "[::1]:1".parse().unwrap();
        let b: SocketAddr = "[::2]:1".parse().unwrap();
        let c: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let d: SocketAddr = "127.0.0.2:1".parse().unwrap();
        assert_eq!(interleave_families(&[a, b, c, d]), vec![a, c, b, d]);
        assert_eq!(interleave_families(&[c, a, b]), vec![c, a, b]);
        assert_eq!(interleave_families(&[]), Vec::<SocketAddr>::new());
    }

    #[tokio::test]
    async fn a_refusing_first_address_falls_through_to_the_next() {
        let refusing = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap(); // closed at once
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let open = listener.local_addr().unwrap();
        let stream = connect_any(&[refusing, open], Some(Duration::from_secs(5)))
            .await
            .unwrap();
        assert_eq!(stream.peer_addr().unwrap(), open);
    }

    #[tokio::test]
    async fn a_silent_first_address_is_overtaken_after_the_attempt_delay() {
        // A listener that never accepts, with its backlog filled, leaves further
        // handshakes unanswered: a loopback stand-in for an unreachable address.
        let silent_socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        silent_socket
            .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
            .unwrap();
        silent_socket.listen(0).unwrap();
        let silent = silent_socket.local_addr().unwrap().as_socket().unwrap();
        let mut fillers = Vec::new();
        for _ in 0..8 {
            match tokio::time::timeout(Duration::from_millis(200), TcpStream::connect(silent)).await {
                Ok(Ok(stream)) => fillers.push(stream),
                _ => break, // the backlog is full: connects now hang
            }
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let open = listener.local_addr().unwrap();
        let stream = connect_any(&[silent, open], Some(Duration::from_secs(5)))
            .await
            .unwrap();
        assert_eq!(stream.peer_addr().unwrap(), open);
    }

    #[tokio::test]
    async fn every_failure_is_reported() {
        let a = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let b = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let failures = connect_any(&[a, b], Some(Duration::from_secs(5))).await.unwrap_err();
        let tried: Vec<SocketAddr> = failures.iter().map(|(addr, _)| *addr).collect();
        assert_eq!(tried, vec![a, b]);
        assert!(
            failures
                .iter()
                .all(|(_, e)| e.kind() == std::io::ErrorKind::ConnectionRefused)
        );
    }
}
