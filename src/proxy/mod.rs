//! `sockets proxy`: a relay between clients and a server that shows the
//! traffic — each message of the protocol decoded, or a hex dump of any
//! protocol — and can record it ([`record`]) for `sockets replay`
//! ([`replay`]) or write it as a pcap ([`pcap`]) for Wireshark.
//!
//! ```text
//! client ⇄ [stage: TLS?] ⇄ ProxyHandler ⇄ [Connector: TLS?] ⇄ server
//!                              │ events (bounded channel)
//!                              ↓
//!                          Observer thread: decode, print, record, pcap
//! ```
//!
//! Bytes are forwarded as they come, whatever they are: decoding is a side
//! view, so a peer that does not speak the protocol is still relayed (its
//! direction is shown raw from the first undecodable byte). Memory is
//! bounded: one 64 KiB buffer per direction, a bounded channel to the
//! observer, and a decoder that gives up on a message over the content limit.
//! With nothing to show or write, plain sockets are relayed with
//! `splice(2)`, and the bytes never enter this process's memory.

pub mod observe;
pub mod pcap;
pub mod record;
pub mod replay;

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::server::log_limit::PEER_WARNINGS;
use crate::server::{CloseReason, Connection, ConnectionHandler, Descriptors};
use crate::transport::ClientStream;
use crate::transport::splice::{Splice, SplicePair};
use crate::transport::{Connector, PeerAddr};
use tokio_util::either::Either;

/// The largest read relayed at once.
const CHUNK: usize = 64 * 1024;
/// Events waiting for the observer; a slow terminal slows the relay (it
/// does not grow memory).
pub const EVENT_QUEUE: usize = 256;

/// Which way bytes went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Client to server: requests.
    Request,
    /// Server to client: responses.
    Response,
}

impl Direction {
    pub fn index(self) -> usize {
        match self {
            Direction::Request => 0,
            Direction::Response => 1,
        }
    }

    /// `request` or `response`: in the view and in recordings.
    pub fn name(self) -> &'static str {
        match self {
            Direction::Request => "request",
            Direction::Response => "response",
        }
    }

    /// The way back.
    pub fn opposite(self) -> Direction {
        match self {
            Direction::Request => Direction::Response,
            Direction::Response => Direction::Request,
        }
    }
}

/// What the relay tells the observer.
#[derive(Debug)]
pub enum Event {
    Open {
        connection: u64,
        at: Instant,
        client: PeerAddr,
        /// The server's address as connected (a Unix path, or host and port).
        server: PeerAddr,
    },
    Data {
        connection: u64,
        at: Instant,
        direction: Direction,
        bytes: Bytes,
    },
    Close {
        connection: u64,
        at: Instant,
        /// Bytes relayed: requests (client to server), responses.
        bytes: [u64; 2],
        /// Why the relay ended, when it failed.
        error: Option<String>,
    },
}

/// Relays each connection to the target.
pub struct ProxyHandler {
    pub connector: Connector,
    /// Where events go.
    pub events: mpsc::Sender<Event>,
    /// Whether the observer needs the bytes; without, plain sockets are
    /// spliced and only openings and closings are reported.
    pub watch_data: bool,
    next_connection: AtomicU64,
}

impl ProxyHandler {
    pub fn new(connector: Connector, events: mpsc::Sender<Event>, watch_data: bool) -> ProxyHandler {
        ProxyHandler {
            connector,
            events,
            watch_data,
            next_connection: AtomicU64::new(1),
        }
    }

    async fn tell(&self, event: Event) {
        // The observer only stops when the process does.
        let _ = self.events.send(event).await;
    }
}

impl ConnectionHandler for ProxyHandler {
    async fn handle<S>(&self, connection: Connection<S>) -> CloseReason
    where
        S: AsyncRead + AsyncWrite + Splice + Unpin + Send + 'static,
    {
        let Connection {
            stream: client,
            peer,
            shutdown,
            descriptors,
            ..
        } = connection;
        let id = self.next_connection.fetch_add(1, Ordering::Relaxed);
        let server = match self.connector.connect().await {
            Ok(server) => server,
            Err(error) => {
                let error = io::Error::other(format!("the target is unreachable: {error:#}"));
                return CloseReason::Io(error);
            }
        };
        let server_addr = server_address(&server, &self.connector);
        self.tell(Event::Open {
            connection: id,
            at: Instant::now(),
            client: peer,
            server: server_addr,
        })
        .await;
        let counts = [AtomicU64::new(0), AtomicU64::new(0)];
        let relayed = tokio::select! {
            relayed = relay(client, server, self.watch_data.then_some(&self.events), &descriptors, id, &counts) => relayed,
            () = shutdown.cancelled() => Err(io::Error::other("the proxy is shutting down")),
        };
        self.tell(Event::Close {
            connection: id,
            at: Instant::now(),
            bytes: counts.map(AtomicU64::into_inner),
            error: relayed.as_ref().err().map(ToString::to_string),
        })
        .await;
        match relayed {
            Ok(()) => CloseReason::PeerClosed,
            Err(error) => CloseReason::Io(error),
        }
    }
}

/// Where a connection to the target went (under TLS too).
fn server_address(server: &ClientStream, connector: &Connector) -> PeerAddr {
    let socket = match server {
        Either::Left(plain) => plain,
        Either::Right(tls) => tls.get_ref().0,
    };
    match socket {
        Either::Left(tcp) => match tcp.peer_addr() {
            Ok(addr) => PeerAddr::Tcp(crate::transport::canonical(addr)),
            Err(_) => PeerAddr::Unix(None),
        },
        Either::Right(_) => match connector.endpoint() {
            crate::transport::Endpoint::Unix(path) => PeerAddr::Unix(Some(path.clone())),
            crate::transport::Endpoint::Inet { .. } => PeerAddr::Unix(None),
        },
    }
}

/// Relays both ways until both sides have closed, counting the bytes
/// each way in `counts`; spliced when nothing needs to see the bytes, both
/// ends are plain sockets, and the connection limit has room for the two
/// pipes' descriptors and the process can make them; copied otherwise.
async fn relay<C, T>(
    client: C,
    server: T,
    events: Option<&mpsc::Sender<Event>>,
    descriptors: &Descriptors,
    id: u64,
    counts: &[AtomicU64; 2],
) -> io::Result<()>
where
    C: AsyncRead + AsyncWrite + Splice + Unpin,
    T: AsyncRead + AsyncWrite + Splice + Unpin,
{
    let count = |direction: Direction| {
        move |n: usize| {
            counts[direction.index()].fetch_add(n as u64, Ordering::Relaxed);
        }
    };
    if events.is_none()
        && let (Some(a), Some(b)) = (client.socket(), server.socket())
        && let Some(_held) = descriptors.try_take(SplicePair::DESCRIPTORS)
    {
        // The limit counts connections, not every descriptor the process
        // holds: a full descriptor table still leaves copying.
        match SplicePair::new() {
            Ok(pipes) => {
                pipes
                    .relay(a, b, count(Direction::Request), count(Direction::Response))
                    .await?;
                return Ok(());
            }
            Err(error) => crate::limited!(
                PEER_WARNINGS,
                WARN,
                "No pipes for splice ({error}); relaying #{id} by copy"
            ),
        }
    }
    let (client_read, client_write) = tokio::io::split(client);
    let (server_read, server_write) = tokio::io::split(server);
    tokio::try_join!(
        pump(
            client_read,
            server_write,
            events,
            id,
            Direction::Request,
            count(Direction::Request)
        ),
        pump(
            server_read,
            client_write,
            events,
            id,
            Direction::Response,
            count(Direction::Response)
        ),
    )
    .map(drop)
}

/// Copies one direction, telling the observer about each chunk; a
/// half-close is passed on.
async fn pump<R, W>(
    mut from: R,
    mut to: W,
    events: Option<&mpsc::Sender<Event>>,
    connection: u64,
    direction: Direction,
    mut count: impl FnMut(usize),
) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            return to.shutdown().await;
        }
        to.write_all(&buf[..n]).await?;
        to.flush().await?;
        count(n);
        if let Some(events) = events {
            let event = Event::Data {
                connection,
                at: Instant::now(),
                direction,
                bytes: Bytes::copy_from_slice(&buf[..n]),
            };
            let _ = events.send(event).await;
        }
    }
}
