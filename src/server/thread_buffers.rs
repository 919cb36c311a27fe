//! Input buffers that belong to a thread rather than a connection, so that
//! an idle connection holds no buffer at all, yet a busy one neither reads
//! a byte at a time nor asks the allocator for a buffer per request.
//!
//! - **Scratch**: the first read after an idle wait lands in the thread's
//!   scratch array, and only what came is copied into the connection's own
//!   buffer: a burst of pipelined requests is read in one system call.
//! - **Spares**: a connection going idle (or closing) gives its input buffer
//!   back to its thread, and the next read on that thread takes one. A
//!   request–response client made glibc allocate and free a 4 KiB buffer
//!   per request, about 500 instructions each time (callgrind, `-c 1`).
//!
//! Memory: the scratch array plus at most [`SPARES`] buffers of at most
//! [`FIRST_READ`] bytes each, per thread, whatever the clients do.

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::BytesMut;
use tokio::io::{AsyncRead, ReadBuf};

/// Free space ensured in the input buffer before each read while a client is sending.
pub(super) const READ_CHUNK: usize = 4 * 1024;
/// Size of the thread's scratch buffer that takes the first read after an
/// idle wait: a burst of pipelined requests comes in one read (16 search
/// requests are 2.3 KiB).
pub(super) const FIRST_READ: usize = 16 * 1024;
/// Spare buffers a thread keeps: enough for the connections of a busy
/// moment to go idle and wake without the allocator.
const SPARES: usize = 32;

thread_local! {
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; FIRST_READ].into_boxed_slice());
    static SPARE: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
}

/// Polls one read of `stream` into the thread's scratch buffer and copies
/// what came into `input` (an empty buffer, or a spare one if `input` has
/// none, with room for at least [`READ_CHUNK`]).
/// The scratch is borrowed only within this poll, so tasks that share the
/// thread share it: AsyncRead implementations keep no hold on the buffer
/// they were given once they return `Pending`.
pub(super) fn poll_read_via_scratch<S: AsyncRead + Unpin>(
    stream: &mut S,
    cx: &mut Context<'_>,
    input: &mut BytesMut,
) -> Poll<io::Result<usize>> {
    SCRATCH.with_borrow_mut(|scratch| {
        let mut buf = ReadBuf::new(scratch);
        match Pin::new(stream).poll_read(cx, &mut buf) {
            Poll::Ready(Ok(())) => {
                let filled = buf.filled();
                if !filled.is_empty() {
                    if input.capacity() == 0 {
                        *input = take_spare();
                    }
                    input.reserve(filled.len().max(READ_CHUNK));
                    input.extend_from_slice(filled);
                }
                Poll::Ready(Ok(filled.len()))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Pending => Poll::Pending,
        }
    })
}

/// A spare buffer of this thread's, or an empty one (allocated on first use).
fn take_spare() -> BytesMut {
    SPARE.with_borrow_mut(Vec::pop).unwrap_or_default()
}

/// Takes `input` from its connection, leaving it no buffer, and keeps it as
/// a spare for this thread if it is worth keeping: nothing decoded from it
/// is still alive (its memory is all its own again), it holds at least
/// [`READ_CHUNK`] and at most [`FIRST_READ`] bytes (a buffer grown for a
/// large message goes back to the allocator), and the thread has room.
/// Whatever it held is discarded.
pub(super) fn give_back(input: &mut BytesMut) {
    let mut buffer = std::mem::take(input);
    if buffer.capacity() == 0 {
        return;
    }
    buffer.clear();
    // `try_reclaim` succeeds only for a buffer no `Bytes` shares, and says
    // whether its whole allocation can hold that many bytes.
    if !buffer.try_reclaim(READ_CHUNK) || buffer.try_reclaim(FIRST_READ + 1) {
        return;
    }
    SPARE.with_borrow_mut(|spare| {
        if spare.len() < SPARES {
            spare.push(buffer);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spares() -> usize {
        SPARE.with_borrow(Vec::len)
    }

    #[test]
    fn a_buffer_is_kept_only_when_its_memory_is_free_and_of_a_reading_size() {
        // Each test runs on its own thread, so the spares start empty.
        assert_eq!(spares(), 0);
        let mut input = BytesMut::with_capacity(READ_CHUNK);
        input.extend_from_slice(b"a request");
        let decoded = input.split_to(3).freeze();
        give_back(&mut input);
        assert_eq!(input.capacity(), 0, "the connection keeps nothing");
        assert_eq!(spares(), 0, "a message decoded from it still holds its memory");

        let mut input = BytesMut::with_capacity(READ_CHUNK);
        input.extend_from_slice(b"a request");
        let decoded_too = input.split_to(3).freeze();
        drop(decoded_too);
        give_back(&mut input);
        assert_eq!(spares(), 1, "once nothing else holds it, it is kept");

        let mut grown = BytesMut::with_capacity(1 << 20);
        give_back(&mut grown);
        let mut tiny = BytesMut::with_capacity(64);
        give_back(&mut tiny);
        assert_eq!(spares(), 1, "too large or too small for reading: freed");

        let spare = take_spare();
        assert!(spare.is_empty());
        assert!(spare.capacity() >= READ_CHUNK && spare.capacity() <= FIRST_READ);
        assert_eq!(spares(), 0);
        assert_eq!(take_spare().capacity(), 0, "none left: an empty one");
        assert_eq!(&decoded[..], b"a r");
    }

    #[test]
    fn a_thread_keeps_a_bounded_number_of_spares() {
        for _ in 0..SPARES * 3 {
            let mut input = BytesMut::with_capacity(READ_CHUNK);
            give_back(&mut input);
        }
        assert_eq!(spares(), SPARES);
    }
}
