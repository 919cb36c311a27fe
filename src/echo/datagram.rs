//! Datagram echo (UDP, Unix datagram): each datagram goes back whole to
//! its sender, from one receive loop for every peer.
//!
//! A datagram's source address is whatever the sender wrote in it, so an
//! echo server is a classic tool for attacks (CVE-1999-0103): a datagram
//! "from" another echo server, or from ourselves, starts a loop that burns a
//! core on both ends until someone kills one. So before echoing, we drop
//! datagrams that no client sends:
//!
//! - from this server's own port (itself, or another echo server on the same
//!   port on another host);
//! - from a privileged port (below 1024): that is a service, never a client
//!   (clients get ephemeral ports). Every reflecting UDP service listens on one:
//!   echo 7, daytime 13, qotd 17, chargen 19, time 37, DNS 53, NTP 123 ...
//!   (inetd drops echo requests from 7, 13, 19 and 37 for the same reason);
//! - past a per-sender allowance (`--peer-rate`): a loop with any other echo
//!   server is one datagram bouncing back and forth, so dropping one ends it.
//!
//! Replies are never waited for: a peer whose receive queue is full (a Unix
//! datagram client that never reads) would otherwise stall the one loop that
//! serves everyone. A reply that cannot be sent at once is dropped, as a
//! network would drop it, and counted.
//!
//! Unix datagrams have a second trap: a reply stays charged to *our* send
//! buffer until its receiver reads it, and the kernel does not cap the queue
//! of a client connected to us. One client that never reads fills our buffer
//! (about 170 small replies), and then no reply to anyone can be sent. So
//! while more than half of our buffer is unread (`SendBufferGuard`), the
//! peers that took the most since it was last nearly empty are not answered;
//! the other half stays for everyone else.

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::io;
use std::time::Instant;

use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::limited;
use crate::server::log_limit::{self, PEER_WARNINGS, REQUEST_LINES};
use crate::transport::datagram::DatagramSocket;

/// Largest datagram we receive (UDP's maximum payload is 65,507 bytes).
pub const MAX_DATAGRAM: usize = 64 * 1024;
/// Default datagrams echoed per second to one sender (address and port).
pub const DEFAULT_PEER_RATE: u32 = 1000;
/// Senders whose rate is tracked within one second; past this, new senders
/// that second go untracked rather than growing memory without bound.
const MAX_TRACKED_PEERS: usize = 65_536;

/// Why a datagram was not echoed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// From this server's own port.
    OwnPort,
    /// From a privileged port: a service, never a client.
    PrivilegedPort(u16),
    /// From this server's own address (a Unix socket's own path).
    OwnAddress,
    /// The sender is over its allowance this second.
    OverRate,
    /// Larger than [`MAX_DATAGRAM`].
    TooLarge(usize),
    /// From an unnamed Unix socket: there is no address to answer.
    Unnamed,
    /// The reply could not be sent at once (the peer's queue is full).
    ReplyNotSent,
    /// The sender holds much of our send buffer with replies it has not read.
    NotReading,
}

impl fmt::Display for Dropped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dropped::OwnPort => f.write_str("it comes from this server's own port (an echo loop)"),
            Dropped::PrivilegedPort(port) => write!(
                f,
                "it comes from privileged port {port}, a service rather than a client (an echo loop)"
            ),
            Dropped::OwnAddress => f.write_str("it comes from this server's own address (an echo loop)"),
            Dropped::OverRate => f.write_str("the sender is over its --peer-rate allowance"),
            Dropped::TooLarge(len) => write!(f, "its {len} bytes are more than the {MAX_DATAGRAM}-byte buffer"),
            Dropped::Unnamed => f.write_str("there is no address to answer"),
            Dropped::ReplyNotSent => f.write_str(
                "the reply could not be sent at once (the sender's queue, or our buffer of replies not yet read, is full)",
            ),
            Dropped::NotReading => f.write_str("the sender has not read the replies it was sent"),
        }
    }
}

/// Settings of the datagram echo loop.
#[derive(Debug, Clone, Copy)]
pub struct DatagramConfig {
    /// Datagrams echoed per second to one sender; `None`: no limit.
    pub peer_rate: Option<u32>,
}

impl Default for DatagramConfig {
    fn default() -> Self {
        DatagramConfig {
            peer_rate: Some(DEFAULT_PEER_RATE),
        }
    }
}

/// What the loop did, reported when it ends.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DatagramStats {
    pub echoed: u64,
    /// Dropped datagrams, by reason.
    pub dropped: Vec<(String, u64)>,
}

/// Echoes every datagram to its sender until `shutdown` is cancelled.
///
/// # Errors
/// Only if the socket's own address cannot be read at the start.
pub async fn serve<D: DatagramSocket>(
    socket: &D,
    config: DatagramConfig,
    shutdown: CancellationToken,
) -> io::Result<DatagramStats> {
    log_limit::start_reporter();
    let local = socket.local()?;
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut rate = PeerRate::new(config.peer_rate);
    let mut guard = SendBufferGuard::new();
    let mut echoed = 0u64;
    let mut dropped: HashMap<DropKind, u64> = HashMap::new();
    let started = Instant::now();
    loop {
        let received = tokio::select! {
            received = socket.recv_from(&mut buf) => received,
            () = shutdown.cancelled() => break,
        };
        let received = match received {
            Ok(received) => received,
            Err(error) => {
                // An ICMP error from an earlier reply, for instance: not fatal.
                debug!("receiving a datagram failed: {error}");
                continue;
            }
        };
        let verdict = check_source::<D>(&received.from, &local)
            .or_else(|| received.truncated().then_some(Dropped::TooLarge(received.full_len)))
            .or_else(|| {
                let second = started.elapsed().as_secs();
                (!rate.allow(&received.from, second)).then_some(Dropped::OverRate)
            })
            .or_else(|| {
                let unread = socket.unread_replies();
                (!guard.allow(&received.from, unread)).then_some(Dropped::NotReading)
            })
            .map_or_else(
                || match socket.try_send_to(&buf[..received.len], &received.from) {
                    Ok(_) => {
                        guard.sent(&received.from, received.len);
                        None
                    }
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => Some(Dropped::ReplyNotSent),
                    Err(error) => {
                        debug!("echo to {:?} failed: {error}", D::peer(&received.from));
                        Some(Dropped::ReplyNotSent)
                    }
                },
                Some,
            );
        let peer = D::peer(&received.from).map_or_else(|| "an unnamed socket".to_owned(), |peer| peer.to_string());
        match verdict {
            None => {
                echoed += 1;
                limited!(REQUEST_LINES, INFO, "Echoed {} bytes to {peer}", received.len);
            }
            Some(reason) => {
                *dropped.entry(DropKind::of(reason)).or_default() += 1;
                limited!(
                    PEER_WARNINGS,
                    WARN,
                    "Dropped a {}-byte datagram from {peer}: {reason}",
                    received.full_len
                );
            }
        }
    }
    let mut dropped: Vec<(String, u64)> = dropped
        .into_iter()
        .map(|(kind, count)| (kind.label().to_owned(), count))
        .collect();
    dropped.sort();
    let summary: Vec<String> = dropped.iter().map(|(label, n)| format!("{n} {label}")).collect();
    info!(
        "Echoed {echoed} datagram(s); dropped {}",
        if summary.is_empty() {
            "none".to_owned()
        } else {
            summary.join(", ")
        }
    );
    Ok(DatagramStats { echoed, dropped })
}

/// Whether `from` is a source no client uses (see the module docs).
fn check_source<D: DatagramSocket>(from: &D::Addr, local: &D::Addr) -> Option<Dropped> {
    if from == local {
        return Some(Dropped::OwnAddress);
    }
    match (D::port(from), D::port(local)) {
        (Some(port), Some(own)) if port == own => Some(Dropped::OwnPort),
        (Some(port), _) if port < 1024 => Some(Dropped::PrivilegedPort(port)),
        _ if D::peer(from).is_none() => Some(Dropped::Unnamed),
        _ => None,
    }
}

/// [`Dropped`] without its details, to count by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum DropKind {
    Loop,
    OverRate,
    TooLarge,
    Unnamed,
    ReplyNotSent,
}

impl DropKind {
    fn of(reason: Dropped) -> DropKind {
        match reason {
            Dropped::OwnPort | Dropped::PrivilegedPort(_) | Dropped::OwnAddress => DropKind::Loop,
            Dropped::OverRate => DropKind::OverRate,
            Dropped::TooLarge(_) => DropKind::TooLarge,
            Dropped::Unnamed => DropKind::Unnamed,
            Dropped::ReplyNotSent | Dropped::NotReading => DropKind::ReplyNotSent,
        }
    }

    fn label(self) -> &'static str {
        match self {
            DropKind::Loop => "from loop-prone sources",
            DropKind::OverRate => "over --peer-rate",
            DropKind::TooLarge => "too large",
            DropKind::Unnamed => "from unnamed senders",
            DropKind::ReplyNotSent => "with replies not sent",
        }
    }
}

/// Keeps peers that do not read their replies from taking the whole send
/// buffer (see the module docs). Bytes sent to each peer are counted from
/// the last time the buffer was nearly empty; when more than half of it is
/// unread, the peer that took the most is suspected and not answered until
/// the buffer drains; a second suspect is taken only past three quarters.
/// A heavy reader is never suspected while the buffer stays below half.
#[derive(Debug)]
struct SendBufferGuard<A> {
    sent: HashMap<A, usize>,
    suspects: Vec<A>,
}

impl<A: Hash + Eq + Clone> SendBufferGuard<A> {
    fn new() -> SendBufferGuard<A> {
        SendBufferGuard {
            sent: HashMap::new(),
            suspects: Vec::new(),
        }
    }

    /// Whether `peer` may be answered, given (unread bytes, buffer size).
    fn allow(&mut self, peer: &A, unread: Option<(usize, usize)>) -> bool {
        let Some((unread, capacity)) = unread else { return true };
        if unread < capacity / 8 {
            self.sent.clear();
            self.suspects.clear();
            return true;
        }
        let threshold = if self.suspects.is_empty() {
            capacity / 2
        } else {
            capacity * 3 / 4
        };
        if unread >= threshold {
            let top = self
                .sent
                .iter()
                .filter(|(candidate, _)| !self.suspects.contains(candidate))
                .max_by_key(|(_, bytes)| **bytes)
                .map(|(candidate, _)| candidate.clone());
            self.suspects.extend(top);
        }
        !self.suspects.contains(peer)
    }

    /// Counts a reply of `len` bytes sent to `peer`.
    fn sent(&mut self, peer: &A, len: usize) {
        if let Some(bytes) = self.sent.get_mut(peer) {
            *bytes += len;
        } else if self.sent.len() < MAX_TRACKED_PEERS {
            self.sent.insert(peer.clone(), len);
        }
    }
}

/// Datagrams echoed per sender in the current second.
#[derive(Debug)]
struct PeerRate<A> {
    limit: Option<u32>,
    second: u64,
    counts: HashMap<A, u32>,
}

impl<A: Hash + Eq + Clone> PeerRate<A> {
    fn new(limit: Option<u32>) -> PeerRate<A> {
        PeerRate {
            limit,
            second: 0,
            counts: HashMap::new(),
        }
    }

    /// Counts one datagram from `peer` in `second`; `false` once over the limit.
    fn allow(&mut self, peer: &A, second: u64) -> bool {
        let Some(limit) = self.limit else { return true };
        if second != self.second {
            self.second = second;
            self.counts.clear();
        }
        if let Some(count) = self.counts.get_mut(peer) {
            *count += 1;
            return *count <= limit;
        }
        if self.counts.len() < MAX_TRACKED_PEERS {
            self.counts.insert(peer.clone(), 1);
        }
        limit >= 1
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use tokio::net::UdpSocket;

    use super::*;

    #[test]
    fn loop_prone_sources_are_recognised() {
        let local: SocketAddr = "127.0.0.1:65432".parse().unwrap();
        let check = |from: &str| check_source::<UdpSocket>(&from.parse().unwrap(), &local);
        assert_eq!(check("127.0.0.1:65432"), Some(Dropped::OwnAddress));
        assert_eq!(check("10.1.2.3:65432"), Some(Dropped::OwnPort));
        assert_eq!(check("10.1.2.3:7"), Some(Dropped::PrivilegedPort(7)));
        assert_eq!(check("10.1.2.3:19"), Some(Dropped::PrivilegedPort(19)));
        assert_eq!(check("127.0.0.1:50000"), None);
        assert_eq!(check("[::1]:1024"), None);
    }

    #[test]
    fn the_peer_holding_the_send_buffer_is_not_answered_until_it_drains() {
        let mut guard = SendBufferGuard::new();
        let capacity = 1000;
        for _ in 0..10 {
            assert!(guard.allow(&"hog", Some((100, capacity))));
            guard.sent(&"hog", 50);
        }
        guard.sent(&"reader", 20);
        // Half the buffer is unread: the top taker is suspected, others are answered.
        assert!(!guard.allow(&"hog", Some((600, capacity))));
        assert!(guard.allow(&"reader", Some((600, capacity))));
        assert!(
            !guard.allow(&"hog", Some((550, capacity))),
            "stays suspected until the buffer drains"
        );
        // Drained: everyone is answered again.
        assert!(guard.allow(&"hog", Some((50, capacity))));
        // Without a shared buffer (UDP), nothing is ever held back.
        assert!(guard.allow(&"hog", None));
    }

    #[test]
    fn each_sender_gets_its_allowance_per_second() {
        let mut rate = PeerRate::new(Some(3));
        let (a, b) = ("a", "b");
        assert_eq!(
            (0..5).map(|_| rate.allow(&a, 1)).collect::<Vec<_>>(),
            [true, true, true, false, false]
        );
        assert!(rate.allow(&b, 1), "another sender has its own allowance");
        assert!(rate.allow(&a, 2), "a new second starts afresh");
        let mut unlimited = PeerRate::new(None);
        assert!((0..10_000).all(|_| unlimited.allow(&a, 1)));
    }
}
