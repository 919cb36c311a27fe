//! The io_uring counterpart of `minimal_server` (issue 12): the same floor —
//! requests framed by the header's `content-length` alone, every request
//! answered with one response computed at start-up — on one thread with no
//! runtime, driven by io_uring instead of epoll. It exists to measure
//! whether io_uring lowers that floor; like `minimal_server`, it is not a
//! server to run (no limits, no timeouts, no logs).
//!
//! ```text
//! cargo run --release --example uring_floor -- app [PORT]          # persistent
//! cargo run --release --example uring_floor -- app-oneshot [PORT]  # one request per connection
//! ```
//!
//! It prints its address on the first line of stdout. The techniques: one
//! multishot accept for the life of the server, a recv into each
//! connection's own buffer, a send of every answer a read completed, and
//! (one-shot) a close through the ring; everything queued while handling a
//! batch of completions goes to the kernel in the one `io_uring_enter` that
//! also waits for the next batch. It ends on SIGTERM or SIGINT (the default
//! dispositions).

#[cfg(target_os = "linux")]
mod floor;

#[cfg(target_os = "linux")]
fn main() {
    if let Err(err) = uring::run() {
        eprintln!("error: {err}");
        std::process::exit(1);
    }
}

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("error: uring_floor needs Linux (io_uring)");
    std::process::exit(1);
}

#[cfg(target_os = "linux")]
mod uring {
    use std::io::{self, Write};
    use std::net::{SocketAddr, TcpListener};
    use std::os::fd::{AsRawFd, RawFd};

    use io_uring::types::Fd;
    use io_uring::{IoUring, SubmissionQueue, Submitter, cqueue, opcode, squeue};

    use crate::floor::{canned_response, whole_request};

    // What a completion is for: the low byte of its user data. The rest is
    // the connection's slot.
    const ACCEPT: u64 = 0;
    const RECV: u64 = 1;
    const SEND: u64 = 2;
    const CLOSE: u64 = 3;

    /// Submission queue size. A connection has at most one operation in
    /// flight, so this is plenty for a benchmark's connections; when a batch
    /// queues more, [`Queue::push`] submits early instead of failing.
    const RING_ENTRIES: u32 = 1024;

    /// Read buffers as `minimal_server` sizes them: 16 KiB, grown by 16 KiB
    /// whenever less than 4 KiB is free before a read.
    const BUFFER: usize = 16 * 1024;
    const LOW_WATER: usize = 4096;

    const USAGE: &str = "usage: uring_floor app|app-oneshot [PORT]";

    /// One connection. Its buffers belong to the kernel while a recv or send
    /// on them is in flight, and this program touches them only once that
    /// operation has completed: that is what makes the pointers handed to
    /// the ring valid (see [`Queue::push`]). Moving a `Conn` (when `slots`
    /// grows) does not move the bytes its `Vec`s point to.
    struct Conn {
        fd: RawFd,
        input: Vec<u8>,
        output: Vec<u8>,
        sent: usize,
    }

    struct Server {
        oneshot: bool,
        response: Vec<u8>,
        listener: RawFd,
        /// Connections by slot; a closed slot keeps its buffers for the next
        /// connection, so accepting allocates nothing in the steady state.
        slots: Vec<Conn>,
        free: Vec<usize>,
    }

    /// The submission side of the ring while a batch of completions is handled.
    struct Queue<'a> {
        submitter: Submitter<'a>,
        sq: SubmissionQueue<'a>,
    }

    impl Queue<'_> {
        /// Queues `entry` for the next `io_uring_enter`; if the queue is full,
        /// submits what is queued first.
        fn push(&mut self, entry: squeue::Entry) -> io::Result<()> {
            // SAFETY: every entry points either at nothing (accept, close),
            // at the response (never changed once serving starts), or into a
            // connection's buffer, which is neither touched nor freed until
            // the entry completes (see `Conn`).
            while unsafe { self.sq.push(&entry) }.is_err() {
                self.sq.sync();
                self.submitter.submit()?;
                self.sq.sync();
            }
            Ok(())
        }
    }

    pub fn run() -> io::Result<()> {
        let mut args = std::env::args().skip(1);
        let oneshot = match args.next().as_deref() {
            Some("app") => false,
            Some("app-oneshot") => true,
            _ => usage(),
        };
        let port: u16 = args.next().map_or(Ok(0), |p| p.parse()).unwrap_or_else(|_| usage());
        // The same socket as tokio's bind (SO_REUSEADDR, backlog 128).
        // Accepted sockets inherit TCP_NODELAY from the listener on Linux:
        // one setsockopt here instead of one per connection.
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port)))?;
        socket2::SockRef::from(&listener).set_tcp_nodelay(true)?;
        let mut ring = new_ring()?;
        println!("{}", listener.local_addr()?);
        io::stdout().flush()?;

        let mut server = Server {
            oneshot,
            response: canned_response(),
            listener: listener.as_raw_fd(),
            slots: Vec::new(),
            free: Vec::new(),
        };
        {
            let (submitter, sq, _) = ring.split();
            Queue { submitter, sq }.push(server.accept())?;
        }
        loop {
            match ring.submit_and_wait(1) {
                Ok(_) => {}
                // Interrupted, or completions waiting for room in the
                // completion queue: drain it, then enter again.
                Err(e) if matches!(e.raw_os_error(), Some(libc::EINTR | libc::EBUSY)) => {}
                Err(e) => return Err(e),
            }
            let (submitter, sq, cq) = ring.split();
            let mut queue = Queue { submitter, sq };
            for cqe in cq {
                server.complete(&mut queue, cqe.user_data(), cqe.result(), cqe.flags())?;
            }
        }
    }

    fn usage() -> ! {
        eprintln!("{USAGE}");
        std::process::exit(2);
    }

    /// A ring for one thread. Since Linux 6.1, DEFER_TASKRUN runs the
    /// kernel's completion work only inside our `io_uring_enter`, not by
    /// interrupting us at random points, and SINGLE_ISSUER (which it needs)
    /// lets the kernel skip locking; older kernels get a plain ring.
    fn new_ring() -> io::Result<IoUring> {
        IoUring::builder()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .build(RING_ENTRIES)
            .or_else(|_| IoUring::new(RING_ENTRIES))
    }

    impl Server {
        /// Handles one completion, queuing whatever comes next for it.
        fn complete(&mut self, queue: &mut Queue, user_data: u64, result: i32, flags: u32) -> io::Result<()> {
            let slot = (user_data >> 8) as usize;
            match user_data & 0xff {
                ACCEPT => {
                    if result >= 0 {
                        let slot = self.open(result);
                        queue.push(self.recv(slot))?;
                    } else if result == -libc::EINVAL {
                        // Multishot accept needs Linux 5.19: re-arming would spin.
                        return Err(io::Error::other("this kernel has no multishot accept (Linux 5.19+)"));
                    } else {
                        eprintln!("accept: {}", io::Error::from_raw_os_error(-result));
                    }
                    // The kernel ends a multishot accept on an error (or
                    // when it cannot post completions); start another.
                    if !cqueue::more(flags) {
                        queue.push(self.accept())?;
                    }
                }
                // EOF, or an error (ECONNRESET, EPIPE...): this connection only.
                RECV | SEND if result <= 0 => self.close(queue, slot)?,
                RECV => self.received(queue, slot, result as usize)?,
                SEND => self.sent(queue, slot, result as usize)?,
                // CLOSE: nothing waits on a closed descriptor.
                _ => {}
            }
            Ok(())
        }

        fn accept(&self) -> squeue::Entry {
            opcode::AcceptMulti::new(Fd(self.listener))
                .flags(libc::SOCK_CLOEXEC)
                .build()
                .user_data(ACCEPT)
        }

        /// Takes a free slot (or a new one) for an accepted descriptor.
        fn open(&mut self, fd: RawFd) -> usize {
            if let Some(slot) = self.free.pop() {
                self.slots[slot].fd = fd;
                return slot;
            }
            self.slots.push(Conn {
                fd,
                input: Vec::with_capacity(BUFFER),
                output: Vec::with_capacity(BUFFER),
                sent: 0,
            });
            self.slots.len() - 1
        }

        /// A recv into the free end of the connection's input buffer.
        fn recv(&mut self, slot: usize) -> squeue::Entry {
            let conn = &mut self.slots[slot];
            if conn.input.capacity() - conn.input.len() < LOW_WATER {
                conn.input.reserve(BUFFER);
            }
            let spare = conn.input.spare_capacity_mut();
            opcode::Recv::new(Fd(conn.fd), spare.as_mut_ptr().cast(), spare.len() as u32)
                .build()
                .user_data(tag(slot, RECV))
        }

        /// A send of what is left of the connection's output.
        fn send(&self, slot: usize) -> squeue::Entry {
            let conn = &self.slots[slot];
            let rest = &conn.output[conn.sent..];
            opcode::Send::new(Fd(conn.fd), rest.as_ptr(), rest.len() as u32)
                .flags(libc::MSG_NOSIGNAL)
                .build()
                .user_data(tag(slot, SEND))
        }

        /// Answers every whole request that has arrived (the first only, one-shot)
        /// with one send, keeping a partial one for the next read.
        fn received(&mut self, queue: &mut Queue, slot: usize, n: usize) -> io::Result<()> {
            let conn = &mut self.slots[slot];
            // SAFETY: the kernel wrote `n` bytes into the spare capacity the recv was given.
            unsafe { conn.input.set_len(conn.input.len() + n) };
            let mut consumed = 0;
            while let Some(length) = whole_request(&conn.input[consumed..]) {
                consumed += length;
                conn.output.extend_from_slice(&self.response);
                if self.oneshot {
                    break;
                }
            }
            conn.input.drain(..consumed);
            if conn.output.is_empty() {
                return queue.push(self.recv(slot));
            }
            conn.sent = 0;
            queue.push(self.send(slot))
        }

        /// Sends the rest after a short send; then closes (one-shot) or reads again.
        fn sent(&mut self, queue: &mut Queue, slot: usize, n: usize) -> io::Result<()> {
            let conn = &mut self.slots[slot];
            conn.sent += n;
            if conn.sent < conn.output.len() {
                return queue.push(self.send(slot));
            }
            if self.oneshot {
                return self.close(queue, slot);
            }
            conn.output.clear();
            queue.push(self.recv(slot))
        }

        /// Closes through the ring and frees the slot at once: nothing else
        /// is in flight on it, and the descriptor's number cannot be handed
        /// out again before the close has run.
        fn close(&mut self, queue: &mut Queue, slot: usize) -> io::Result<()> {
            let conn = &mut self.slots[slot];
            let entry = opcode::Close::new(Fd(conn.fd)).build().user_data(tag(slot, CLOSE));
            conn.fd = -1;
            conn.input.clear();
            conn.output.clear();
            self.free.push(slot);
            queue.push(entry)
        }
    }

    fn tag(slot: usize, kind: u64) -> u64 {
        (slot as u64) << 8 | kind
    }
}
