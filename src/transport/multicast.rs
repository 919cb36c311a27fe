//! UDP to many: servers that join a multicast group, and clients that send
//! to a group or a broadcast address and hear every responder.
//!
//! A group member binds the wildcard address on the port (sharing it with
//! `SO_REUSEADDR`, so several responders on one host each get a copy) and
//! joins the group on an interface; it answers each sender from its own
//! unicast address. A client sends from an unconnected socket, because the
//! answers come from many addresses, and collects them for a while.

use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tokio::net::UdpSocket;

use super::TransportError;

/// The interface a group is joined on or sent from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Interface {
    /// The system's choice (the route to the group).
    Default,
    /// IPv4: the interface with this address.
    Address(Ipv4Addr),
    /// IPv6 (or IPv4): the interface of this name or index.
    Named(String),
}

impl std::str::FromStr for Interface {
    type Err = String;

    fn from_str(text: &str) -> Result<Interface, String> {
        match text.parse::<Ipv4Addr>() {
            Ok(address) => Ok(Interface::Address(address)),
            Err(_) if !text.is_empty() => Ok(Interface::Named(text.to_owned())),
            Err(_) => Err("an interface is an IPv4 address or a name like eth0".into()),
        }
    }
}

impl Interface {
    /// The interface's index (0: the system's choice).
    fn index(&self) -> io::Result<u32> {
        match self {
            Interface::Default | Interface::Address(_) => Ok(0),
            Interface::Named(name) => {
                if let Ok(index) = name.parse::<u32>() {
                    return Ok(index);
                }
                let name = std::ffi::CString::new(name.as_str()).map_err(|_| io::ErrorKind::InvalidInput)?;
                // SAFETY: if_nametoindex reads the NUL-terminated name only.
                match unsafe { libc::if_nametoindex(name.as_ptr()) } {
                    0 => Err(io::Error::new(io::ErrorKind::NotFound, "no such interface")),
                    index => Ok(index),
                }
            }
        }
    }
}

/// Binds `port` on every interface and joins `group` there.
///
/// # Errors
/// [`TransportError::Bind`] when the socket cannot be set up or the group
/// joined (not a multicast address, no route to it, no such interface).
pub fn join_group(group: IpAddr, port: u16, interface: &Interface) -> Result<UdpSocket, TransportError> {
    let wildcard = match group {
        IpAddr::V4(_) => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port),
        IpAddr::V6(_) => SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port),
    };
    let addr = SocketAddr::new(group, port);
    let bind_error = |error| TransportError::Bind { addr, error };
    if !group.is_multicast() {
        return Err(bind_error(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{group} is not a multicast group (IPv4 224.0.0.0/4, IPv6 ff00::/8)"),
        )));
    }
    let socket = Socket::new(Domain::for_address(wildcard), Type::DGRAM, Some(Protocol::UDP)).map_err(bind_error)?;
    // Several responders on one host share the port; each gets every datagram to the group.
    socket.set_reuse_address(true).map_err(bind_error)?;
    if group.is_ipv6() {
        socket.set_only_v6(true).map_err(bind_error)?;
    }
    socket.bind(&wildcard.into()).map_err(bind_error)?;
    match (group, interface) {
        (IpAddr::V4(group), Interface::Address(address)) => socket.join_multicast_v4(&group, address),
        (IpAddr::V4(group), other) => other
            .index()
            .and_then(|index| socket.join_multicast_v4_n(&group, &socket2::InterfaceIndexOrAddress::Index(index))),
        (IpAddr::V6(group), other) => other.index().and_then(|index| socket.join_multicast_v6(&group, index)),
    }
    .map_err(bind_error)?;
    socket.set_nonblocking(true).map_err(bind_error)?;
    UdpSocket::from_std(socket.into()).map_err(bind_error)
}

/// How a client reaches many responders.
#[derive(Debug, Clone)]
pub struct FanOut {
    /// Allow sending to a broadcast address (`SO_BROADCAST`).
    pub broadcast: bool,
    /// Hops a multicast datagram may take (1: this network only).
    pub ttl: u32,
    /// Whether our own multicast datagrams come back to this host's members.
    pub loopback: bool,
    /// The interface to send multicast from.
    pub interface: Interface,
}

impl Default for FanOut {
    fn default() -> Self {
        FanOut {
            broadcast: false,
            ttl: 1,
            loopback: true,
            interface: Interface::Default,
        }
    }
}

/// Whether datagrams to `addr` reach many responders (a multicast group).
pub fn is_group(addr: &SocketAddr) -> bool {
    addr.ip().is_multicast()
}

/// An unconnected socket set up to send to `target` (a group, or a
/// broadcast address when `fan_out.broadcast`).
///
/// # Errors
/// When the socket cannot be set up.
pub fn open_sender(target: SocketAddr, fan_out: &FanOut) -> io::Result<UdpSocket> {
    let local = match target {
        SocketAddr::V4(_) => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
        SocketAddr::V6(_) => SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0),
    };
    let socket = Socket::new(Domain::for_address(local), Type::DGRAM, Some(Protocol::UDP))?;
    socket.bind(&SockAddr::from(local))?;
    socket.set_broadcast(fan_out.broadcast)?;
    match target {
        SocketAddr::V4(_) => {
            socket.set_multicast_ttl_v4(fan_out.ttl)?;
            socket.set_multicast_loop_v4(fan_out.loopback)?;
            if let Interface::Address(address) = &fan_out.interface {
                socket.set_multicast_if_v4(address)?;
            }
        }
        SocketAddr::V6(_) => {
            socket.set_multicast_hops_v6(fan_out.ttl)?;
            socket.set_multicast_loop_v6(fan_out.loopback)?;
            let index = fan_out.interface.index()?;
            if index != 0 {
                socket.set_multicast_if_v6(index)?;
            }
        }
    }
    socket.set_nonblocking(true)?;
    UdpSocket::from_std(socket.into())
}

/// What each responder sent back.
pub type Responses = BTreeMap<SocketAddr, Vec<Vec<u8>>>;

/// Sends `payload` to `target` once, then collects every reply for
/// `linger` (at most `max_replies` of up to `buffer_size` bytes each).
///
/// # Errors
/// When sending fails (for broadcast without `--broadcast`: permission denied).
pub async fn ask_all(
    socket: &UdpSocket,
    target: SocketAddr,
    payload: &[u8],
    linger: Duration,
    buffer_size: usize,
    max_replies: usize,
) -> io::Result<Responses> {
    socket.send_to(payload, target).await?;
    let mut responses = Responses::new();
    let mut buf = vec![0u8; buffer_size];
    let deadline = tokio::time::Instant::now() + linger;
    let mut count = 0;
    while count < max_replies {
        match tokio::time::timeout_at(deadline, socket.recv_from(&mut buf)).await {
            Err(_) => break,
            Ok(Ok((n, from))) => {
                responses
                    .entry(super::canonical(from))
                    .or_default()
                    .push(buf[..n].to_vec());
                count += 1;
            }
            // An ICMP refusal from one host says nothing of the others.
            Ok(Err(error)) if error.kind() == io::ErrorKind::ConnectionRefused => {}
            Ok(Err(error)) => return Err(error),
        }
    }
    Ok(responses)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_unicast_group_is_refused_clearly() {
        let error = join_group("127.0.0.1".parse().unwrap(), 0, &Interface::Default)
            .unwrap_err()
            .to_string();
        assert!(error.contains("is not a multicast group"), "{error}");
    }

    #[test]
    fn interfaces_parse_as_addresses_or_names() {
        assert_eq!(
            "10.0.0.1".parse::<Interface>().unwrap(),
            Interface::Address(Ipv4Addr::new(10, 0, 0, 1))
        );
        assert_eq!("lo".parse::<Interface>().unwrap(), Interface::Named("lo".into()));
        assert!(Interface::Named("lo".into()).index().unwrap() > 0);
        assert!(Interface::Named("no-such-if0".into()).index().is_err());
    }
}
