//! Moving bytes between two sockets without copying them through our
//! memory: `splice(2)` from a socket into a pipe, and from the pipe into the
//! other socket. The kernel moves page references; we never see the bytes.
//!
//! Only plain sockets can do this: a TLS stream must be decrypted here, and
//! bytes already read into a buffer (after a PROXY header) must be written
//! first. [`Splice::socket`] says whether a stream is one.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use tokio::io::Interest;
use tokio::net::{TcpStream, UnixStream};
use tokio_util::either::Either;

/// The most moved by one `splice` call: the size of a pipe's buffer.
const CHUNK: usize = 64 * 1024;

/// Descriptors a [`Splicer`]'s pipe holds: what a server counts against
/// its limits before making one.
pub const PIPE_DESCRIPTORS: u32 = 2;

/// A plain socket under a stream.
#[derive(Debug, Clone, Copy)]
pub enum SocketRef<'a> {
    Tcp(&'a TcpStream),
    Unix(&'a UnixStream),
}

impl SocketRef<'_> {
    /// Whether the kernel holds bytes received on this socket that nobody
    /// has read (asked of the kernel: a runtime's cached readiness can be
    /// stale). Closing a socket with unread bytes sends a reset.
    pub fn has_unread(&self) -> bool {
        // The socket is non-blocking (tokio's): an empty queue is an error, not a wait.
        let mut byte = [std::mem::MaybeUninit::uninit()];
        self.sock().peek(&mut byte).is_ok_and(|n| n > 0)
    }

    /// The socket for socket2's system calls.
    fn sock(&self) -> socket2::SockRef<'_> {
        match self {
            SocketRef::Tcp(tcp) => socket2::SockRef::from(*tcp),
            SocketRef::Unix(unix) => socket2::SockRef::from(*unix),
        }
    }

    fn fd(&self) -> RawFd {
        match self {
            SocketRef::Tcp(tcp) => tcp.as_raw_fd(),
            SocketRef::Unix(unix) => unix.as_raw_fd(),
        }
    }

    async fn ready(&self, interest: Interest) -> io::Result<()> {
        match self {
            SocketRef::Tcp(tcp) => tcp.ready(interest).await.map(drop),
            SocketRef::Unix(unix) => unix.ready(interest).await.map(drop),
        }
    }

    fn try_io<R>(&self, interest: Interest, f: impl FnOnce() -> io::Result<R>) -> io::Result<R> {
        match self {
            SocketRef::Tcp(tcp) => tcp.try_io(interest, f),
            SocketRef::Unix(unix) => unix.try_io(interest, f),
        }
    }

    /// Ends our sending side (FIN), as `shutdown(SHUT_WR)`.
    fn shutdown_write(&self) -> io::Result<()> {
        self.sock().shutdown(std::net::Shutdown::Write)
    }
}

/// Streams that may have a plain socket under them.
pub trait Splice {
    /// The socket, when bytes can be moved to and from it directly.
    fn socket(&self) -> Option<SocketRef<'_>>;
}

impl Splice for TcpStream {
    fn socket(&self) -> Option<SocketRef<'_>> {
        Some(SocketRef::Tcp(self))
    }
}

impl Splice for UnixStream {
    fn socket(&self) -> Option<SocketRef<'_>> {
        Some(SocketRef::Unix(self))
    }
}

impl<L: Splice, R: Splice> Splice for Either<L, R> {
    fn socket(&self) -> Option<SocketRef<'_>> {
        match self {
            Either::Left(left) => left.socket(),
            Either::Right(right) => right.socket(),
        }
    }
}

impl<S> Splice for Box<tokio_rustls::server::TlsStream<S>> {
    fn socket(&self) -> Option<SocketRef<'_>> {
        None
    }
}

impl<S> Splice for Box<tokio_rustls::client::TlsStream<S>> {
    fn socket(&self) -> Option<SocketRef<'_>> {
        None
    }
}

/// A pipe whose ends are closed when it is dropped.
struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
}

impl Pipe {
    fn new() -> io::Result<Pipe> {
        let mut fds = [0; 2];
        // SAFETY: pipe2 writes two descriptors into the array we pass.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: both descriptors were just created and are ours alone.
        Ok(unsafe {
            Pipe {
                read: OwnedFd::from_raw_fd(fds[0]),
                write: OwnedFd::from_raw_fd(fds[1]),
            }
        })
    }
}

fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    // SAFETY: splice only reads and writes the descriptors it is given.
    let n = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

/// A pipe to move bytes through: from a socket into the pipe, from the
/// pipe into a socket (the same one, for an echo). Holds two descriptors
/// and, while bytes are in it, at most [`CHUNK`] of kernel memory.
pub struct Splicer {
    pipe: Pipe,
}

impl Splicer {
    /// Makes the pipe.
    ///
    /// # Errors
    /// When the process is out of descriptors (or the kernel of pipes).
    pub fn new() -> io::Result<Splicer> {
        Ok(Splicer { pipe: Pipe::new()? })
    }

    /// Waits until `from` has bytes and moves up to a pipe's worth of them
    /// into the pipe, which must be empty; `Ok(0)` when `from` has ended
    /// its side. Cancel safe: bytes move only in the poll that returns them.
    ///
    /// # Errors
    /// The socket's failure.
    pub async fn fill(&self, from: SocketRef<'_>) -> io::Result<usize> {
        loop {
            from.ready(Interest::READABLE).await?;
            // The pipe is empty here: a would-block can only be the socket's.
            match from.try_io(Interest::READABLE, || {
                splice(from.fd(), self.pipe.write.as_raw_fd(), CHUNK)
            }) {
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                moved => return moved,
            }
        }
    }

    /// Moves `len` bytes from the pipe into `to`, waiting while its send
    /// buffer is full; `written` is told each count.
    ///
    /// # Errors
    /// The socket's failure.
    pub async fn drain(&self, to: SocketRef<'_>, len: usize, mut written: impl FnMut(usize)) -> io::Result<()> {
        let mut left = len;
        while left > 0 {
            to.ready(Interest::WRITABLE).await?;
            match to.try_io(Interest::WRITABLE, || splice(self.pipe.read.as_raw_fd(), to.fd(), left)) {
                // A splice that moves nothing out of a non-empty pipe would
                // spin here: a socket that takes nothing is an error.
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(moved) => {
                    left -= moved;
                    written(moved);
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }

    /// Ends `to`'s sending side (a half-close passed on).
    ///
    /// # Errors
    /// The socket's failure.
    pub fn finish(to: SocketRef<'_>) -> io::Result<()> {
        to.shutdown_write()
    }
}

/// Moves everything `from` sends to `to` through `splicer` until `from`
/// ends its side, then ends `to`'s sending side too (a half-close passes
/// through). Returns the bytes moved. `written` is called with each count,
/// for progress.
async fn splice_one_way(
    splicer: &Splicer,
    from: SocketRef<'_>,
    to: SocketRef<'_>,
    mut written: impl FnMut(usize),
) -> io::Result<u64> {
    let mut total = 0u64;
    loop {
        let n = splicer.fill(from).await?;
        if n == 0 {
            Splicer::finish(to)?;
            return Ok(total);
        }
        splicer.drain(to, n, &mut written).await?;
        total += n as u64;
    }
}

/// A pipe each way between two sockets. Both are made before any byte
/// moves, so a caller that cannot have them (the process is out of
/// descriptors) can still relay by copying. Made lazily, the second could
/// fail after the first direction had begun splicing, and the connection
/// would then have to be dropped.
pub struct SplicePair {
    forward: Splicer,
    backward: Splicer,
}

impl SplicePair {
    /// The descriptors a pair holds: what a server counts against its
    /// limits before making one.
    pub const DESCRIPTORS: u32 = 2 * PIPE_DESCRIPTORS;

    /// Makes both pipes.
    ///
    /// # Errors
    /// When the process is out of descriptors (or the kernel of pipes).
    pub fn new() -> io::Result<SplicePair> {
        Ok(SplicePair {
            forward: Splicer::new()?,
            backward: Splicer::new()?,
        })
    }

    /// Relays both ways between `a` and `b` until both directions have
    /// ended, each half-close passed on. `a_to_b` and `b_to_a` are told
    /// each count moved that way. Returns the bytes moved each way.
    ///
    /// # Errors
    /// The first failure of either direction.
    ///
    /// # Cancel safety
    /// Not cancel safe: up to a pipe's worth each way may be in the pipes,
    /// and is lost with them. Drop it only to close the connection.
    pub async fn relay(
        &self,
        a: SocketRef<'_>,
        b: SocketRef<'_>,
        a_to_b: impl FnMut(usize),
        b_to_a: impl FnMut(usize),
    ) -> io::Result<(u64, u64)> {
        tokio::try_join!(
            splice_one_way(&self.forward, a, b, a_to_b),
            splice_one_way(&self.backward, b, a, b_to_a)
        )
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// A connected pair of TCP sockets on loopback.
    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (client, server)
    }

    #[tokio::test]
    async fn spliced_bytes_arrive_whole_and_half_closes_pass_through() {
        // client ⇄ [proxy_in ⇄ splice ⇄ proxy_out] ⇄ backend
        let (mut client, proxy_in) = pair().await;
        let (proxy_out, mut backend) = pair().await;
        let relay = tokio::spawn(async move {
            let pipes = SplicePair::new().unwrap();
            let (mut told_forward, mut told_backward) = (0u64, 0u64);
            let moved = pipes
                .relay(
                    proxy_in.socket().unwrap(),
                    proxy_out.socket().unwrap(),
                    |n| told_forward += n as u64,
                    |n| told_backward += n as u64,
                )
                .await
                .unwrap();
            (moved, told_forward, told_backward)
        });
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let sent = data.clone();
        let writer = tokio::spawn(async move {
            client.write_all(&sent).await.unwrap();
            client.shutdown().await.unwrap();
            let mut back = Vec::new();
            client.read_to_end(&mut back).await.unwrap();
            back
        });
        let mut received = Vec::new();
        backend.read_to_end(&mut received).await.unwrap();
        assert!(received == data, "the bytes differ");
        backend.write_all(b"and back").await.unwrap();
        backend.shutdown().await.unwrap();
        assert_eq!(writer.await.unwrap(), b"and back");
        let ((forward, backward), told_forward, told_backward) = relay.await.unwrap();
        assert_eq!((forward, backward), (data.len() as u64, 8));
        assert_eq!((told_forward, told_backward), (forward, backward), "the counts told");
    }
}
