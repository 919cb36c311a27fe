//! Datagram sockets (UDP and Unix datagram) behind one small trait, so the
//! echo server's loop is written once, and receives that report truncation.
//!
//! A datagram larger than the receive buffer is cut silently by `recv`. With
//! `MSG_TRUNC`, Linux returns the datagram's real length instead, which lets
//! us tell the user "truncated" rather than hand them a short reply as if it
//! were whole.

use std::fmt::Debug;
use std::future::Future;
use std::hash::Hash;
use std::io;
use std::mem::MaybeUninit;
use std::net::SocketAddr;

use socket2::{SockAddr, SockRef};
use tokio::io::Interest;
use tokio::net::{UdpSocket, UnixDatagram};

use super::{PeerAddr, canonical};

/// One received datagram: `len` bytes are in the buffer; the datagram had `full_len`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received<A> {
    pub len: usize,
    pub full_len: usize,
    pub from: A,
}

impl<A> Received<A> {
    /// Whether the datagram was larger than the buffer.
    pub fn truncated(&self) -> bool {
        self.full_len > self.len
    }
}

/// What the echo server needs from a datagram socket.
pub trait DatagramSocket: Send + Sync {
    /// The sender's address, as the socket hands it back for replies.
    type Addr: Clone + Debug + Eq + Hash + Send + Sync;

    /// Receives one datagram, reporting its real length.
    ///
    /// # Cancel safety
    /// Cancel safe: a datagram is either received whole or left queued.
    fn recv_from(&self, buf: &mut [u8]) -> impl Future<Output = io::Result<Received<Self::Addr>>> + Send;

    /// Sends one datagram to `to` if that can be done at once; a full
    /// queue is `WouldBlock`, never a wait.
    fn try_send_to(&self, buf: &[u8], to: &Self::Addr) -> io::Result<usize>;

    /// The address this socket is bound to.
    fn local(&self) -> io::Result<Self::Addr>;

    /// The sender's address for logs; `None` if it cannot be answered.
    fn peer(addr: &Self::Addr) -> Option<PeerAddr>;

    /// The address's port, for transports that have ports.
    fn port(addr: &Self::Addr) -> Option<u16>;

    /// Bytes sent on this socket that receivers have not yet read, and the
    /// send buffer's size, where unread datagrams stay charged to the sender
    /// (Unix datagrams); `None` where they do not (UDP).
    fn unread_replies(&self) -> Option<(usize, usize)>;
}

/// `SIOCOUTQ` and `SO_SNDBUF` of a socket.
fn send_queue(socket: SockRef<'_>) -> Option<(usize, usize)> {
    let mut unsent: libc::c_int = 0;
    // SAFETY: SIOCOUTQ writes one int through the pointer we pass.
    let result = unsafe { libc::ioctl(std::os::fd::AsRawFd::as_raw_fd(&*socket), libc::TIOCOUTQ, &mut unsent) };
    if result != 0 {
        return None;
    }
    let capacity = socket.send_buffer_size().ok()?;
    Some((usize::try_from(unsent).unwrap_or(0), capacity))
}

/// `recv_from` with `MSG_TRUNC` on a socket2 reference.
fn recv_from_truncating(socket: SockRef<'_>, buf: &mut [u8]) -> io::Result<(usize, usize, SockAddr)> {
    // SAFETY: initialized bytes are valid MaybeUninit bytes, and recv only writes to the slice.
    let uninit = unsafe { &mut *(buf as *mut [u8] as *mut [MaybeUninit<u8>]) };
    let (full_len, addr) = socket.recv_from_with_flags(uninit, libc::MSG_TRUNC)?;
    Ok((full_len.min(buf.len()), full_len, addr))
}

/// Sends one datagram straight to the (non-blocking) socket. Not through
/// tokio's `try_send_to`: that one answers `WouldBlock` from a cached
/// readiness flag, and after one peer's full queue has cleared the flag,
/// replies to every other peer would be refused too until the stuck peer
/// reads. The kernel knows per destination; ask it each time.
fn send_now(socket: SockRef<'_>, buf: &[u8], to: &SockAddr) -> io::Result<usize> {
    socket.send_to(buf, to)
}

/// `recv` with `MSG_TRUNC` on a connected socket: (bytes in `buf`, datagram length).
///
/// # Errors
/// The socket's receive error.
pub async fn recv_truncating<S>(socket: &S, buf: &mut [u8]) -> io::Result<(usize, usize)>
where
    S: AsyncDatagramIo,
{
    socket
        .readable_io(|| {
            let sock = socket.sock_ref();
            // SAFETY: as in recv_from_truncating.
            let uninit = unsafe { &mut *(buf as *mut [u8] as *mut [MaybeUninit<u8>]) };
            let full_len = sock.recv_with_flags(uninit, libc::MSG_TRUNC)?;
            Ok((full_len.min(uninit.len()), full_len))
        })
        .await
}

/// The readiness-driven I/O both tokio datagram sockets offer.
pub trait AsyncDatagramIo: Send + Sync {
    /// Runs `io` when the socket is readable, retrying on `WouldBlock`.
    fn readable_io<R>(&self, io: impl FnMut() -> io::Result<R> + Send) -> impl Future<Output = io::Result<R>> + Send;
    /// A socket2 view of the socket for flags tokio does not expose.
    fn sock_ref(&self) -> SockRef<'_>;
    /// Sends one datagram on a connected socket.
    fn send(&self, buf: &[u8]) -> impl Future<Output = io::Result<usize>> + Send;
}

impl AsyncDatagramIo for UdpSocket {
    async fn readable_io<R>(&self, io: impl FnMut() -> io::Result<R> + Send) -> io::Result<R> {
        self.async_io(Interest::READABLE, io).await
    }

    fn sock_ref(&self) -> SockRef<'_> {
        SockRef::from(self)
    }

    async fn send(&self, buf: &[u8]) -> io::Result<usize> {
        UdpSocket::send(self, buf).await
    }
}

impl AsyncDatagramIo for UnixDatagram {
    async fn readable_io<R>(&self, io: impl FnMut() -> io::Result<R> + Send) -> io::Result<R> {
        self.async_io(Interest::READABLE, io).await
    }

    fn sock_ref(&self) -> SockRef<'_> {
        SockRef::from(self)
    }

    async fn send(&self, buf: &[u8]) -> io::Result<usize> {
        UnixDatagram::send(self, buf).await
    }
}

impl DatagramSocket for UdpSocket {
    type Addr = SocketAddr;

    async fn recv_from(&self, buf: &mut [u8]) -> io::Result<Received<SocketAddr>> {
        let (len, full_len, addr) = self.readable_io(|| recv_from_truncating(self.sock_ref(), buf)).await?;
        let from = addr
            .as_socket()
            .ok_or_else(|| io::Error::other("UDP datagram from a non-IP address"))?;
        Ok(Received { len, full_len, from })
    }

    fn try_send_to(&self, buf: &[u8], to: &SocketAddr) -> io::Result<usize> {
        send_now(self.sock_ref(), buf, &SockAddr::from(*to))
    }

    fn local(&self) -> io::Result<SocketAddr> {
        self.local_addr()
    }

    fn peer(addr: &SocketAddr) -> Option<PeerAddr> {
        Some(PeerAddr::Tcp(canonical(*addr)))
    }

    fn port(addr: &SocketAddr) -> Option<u16> {
        Some(addr.port())
    }

    fn unread_replies(&self) -> Option<(usize, usize)> {
        None
    }
}

impl DatagramSocket for UnixDatagram {
    /// A path, an abstract name (Linux), or unnamed: unnamed senders cannot
    /// be answered.
    type Addr = SockAddr;

    async fn recv_from(&self, buf: &mut [u8]) -> io::Result<Received<SockAddr>> {
        let (len, full_len, from) = self.readable_io(|| recv_from_truncating(self.sock_ref(), buf)).await?;
        Ok(Received { len, full_len, from })
    }

    fn try_send_to(&self, buf: &[u8], to: &SockAddr) -> io::Result<usize> {
        send_now(self.sock_ref(), buf, to)
    }

    fn local(&self) -> io::Result<SockAddr> {
        self.sock_ref().local_addr()
    }

    fn peer(addr: &SockAddr) -> Option<PeerAddr> {
        if let Some(path) = addr.as_pathname() {
            Some(PeerAddr::Unix(Some(path.to_owned())))
        } else {
            addr.as_abstract_namespace()
                .map(|name| PeerAddr::UnixAbstract(name.to_vec()))
        }
    }

    fn port(_: &SockAddr) -> Option<u16> {
        None
    }

    fn unread_replies(&self) -> Option<(usize, usize)> {
        send_queue(self.sock_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn truncation_is_reported_with_the_real_length() {
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        client.connect(server.local_addr().unwrap()).await.unwrap();
        client.send(&[7u8; 3000]).await.unwrap();
        let mut small = [0u8; 1000];
        let received = DatagramSocket::recv_from(&server, &mut small).await.unwrap();
        assert_eq!((received.len, received.full_len), (1000, 3000));
        assert!(received.truncated());
        assert_eq!(received.from, client.local_addr().unwrap());

        DatagramSocket::try_send_to(&server, b"whole", &received.from).unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(recv_truncating(&client, &mut buf).await.unwrap(), (5, 5));
        assert_eq!(&buf[..5], b"whole");
    }
}
