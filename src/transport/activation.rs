//! Socket activation: listening sockets handed over by systemd (or any
//! manager that follows its `LISTEN_FDS` convention) instead of bound here.
//!
//! The manager binds the sockets, so the service can restart without
//! refusing a single client (connections wait in the kernel's queue) and
//! can listen on privileged ports without privileges. The convention:
//! descriptors 3, 4, … are the sockets, `LISTEN_FDS` says how many, and
//! `LISTEN_PID` names the process they are for (so a child that inherits
//! the environment does not take them too).

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;

use socket2::{Domain, Socket, Type};

use super::listen::Listener;
use super::unix::UnixSocketListener;

/// The first passed descriptor (`SD_LISTEN_FDS_START`).
const FIRST_FD: RawFd = 3;
/// More than any real unit passes; a larger count is a broken environment.
const MAX_FDS: usize = 1024;

/// Why passed sockets cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ActivationError {
    #[error("LISTEN_FDS={0:?} is not a count of sockets")]
    BadCount(String),
    #[error("descriptor {fd} passed by the service manager cannot be used")]
    Unusable { fd: RawFd, source: io::Error },
    #[error(
        "descriptor {fd} passed by the service manager is not a listening stream socket (the .socket unit needs ListenStream= and Accept=no)"
    )]
    NotStreamListener { fd: RawFd },
}

/// Takes the sockets passed to this process, if any, and removes the
/// variables that announced them, so no child process takes them again.
///
/// Call it once, before any thread starts: it changes the environment.
///
/// # Errors
/// [`ActivationError::BadCount`] for a malformed `LISTEN_FDS`.
pub fn take_passed_fds() -> Result<Vec<OwnedFd>, ActivationError> {
    let pid = std::env::var("LISTEN_PID").ok();
    let count = std::env::var("LISTEN_FDS").ok();
    for name in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        // SAFETY: called before any other thread exists (see above), so
        // nothing reads the environment concurrently.
        unsafe { std::env::remove_var(name) };
    }
    let Some(count) = count else { return Ok(Vec::new()) };
    if pid.is_some_and(|pid| pid.trim() != std::process::id().to_string()) {
        // Meant for another process (our parent): not ours to use.
        return Ok(Vec::new());
    }
    let n: usize = count
        .trim()
        .parse()
        .ok()
        .filter(|n| *n <= MAX_FDS)
        .ok_or_else(|| ActivationError::BadCount(count.clone()))?;
    Ok((0..n)
        .map(|i| {
            let fd = FIRST_FD + RawFd::try_from(i).expect("at most MAX_FDS");
            // SAFETY: by the convention, descriptors 3..3+n are open and
            // given to this process; nothing else in it owns them.
            unsafe { OwnedFd::from_raw_fd(fd) }
        })
        .collect())
}

/// Turns a passed descriptor into a listener: TCP (IPv4 or IPv6) or Unix
/// stream. The socket file of a Unix listener belongs to the manager and is
/// left in place on shutdown.
///
/// # Errors
/// [`ActivationError`] when the descriptor is not a listening stream socket.
pub fn listener_from_fd(fd: OwnedFd) -> Result<Listener, ActivationError> {
    use std::os::fd::AsRawFd;
    let raw = fd.as_raw_fd();
    let unusable = |source| ActivationError::Unusable { fd: raw, source };
    let socket = Socket::from(fd);
    let is_stream = socket.r#type().map_err(unusable)? == Type::STREAM;
    let listening = socket.is_listener().map_err(unusable)?;
    if !is_stream || !listening {
        return Err(ActivationError::NotStreamListener { fd: raw });
    }
    socket.set_nonblocking(true).map_err(unusable)?;
    if socket.domain().map_err(unusable)? == Domain::UNIX {
        let std_listener: UnixListener = socket.into();
        return UnixSocketListener::adopt(std_listener)
            .map(Listener::Unix)
            .map_err(unusable);
    }
    // Accepted sockets inherit TCP_NODELAY from the listener, as with ours.
    socket.set_tcp_nodelay(true).map_err(unusable)?;
    tokio::net::TcpListener::from_std(socket.into())
        .map(Listener::Tcp)
        .map_err(unusable)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::IntoRawFd;

    #[tokio::test]
    async fn a_passed_tcp_listener_accepts() {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = std_listener.local_addr().unwrap();
        // SAFETY: the descriptor was just taken out of its owner.
        let fd = unsafe { OwnedFd::from_raw_fd(std_listener.into_raw_fd()) };
        let mut listener = listener_from_fd(fd).unwrap();
        assert_eq!(listener.shown().unwrap(), addr.to_string());
        let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (_, peer) = crate::transport::Acceptor::accept(&mut listener).await.unwrap();
        assert!(peer.to_string().starts_with("127.0.0.1:"), "{peer}");
    }

    #[tokio::test]
    async fn a_socket_that_does_not_listen_is_refused() {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        // SAFETY: as above.
        let fd = unsafe { OwnedFd::from_raw_fd(socket.into_raw_fd()) };
        let error = listener_from_fd(fd).unwrap_err().to_string();
        assert!(error.contains("is not a listening stream socket"), "{error}");
    }
}
