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
//! Memory: the scratch array plus at most [`SPARES`] buffers of
//! [`READ_CHUNK`] bytes each, per thread, whatever the clients do. A spare
//! is the size a connection's first read reserves anyway, so a connection
//! holding one is charged to the input budget what it was charged before.
//! (The connection's buffer, being its input, stays charged to the budget;
//! the spares, being no connection's, are not.)

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

/// One read of `stream` into the thread's scratch buffer, copied into
/// `input` (see [`poll_read_via_scratch`]).
pub(super) fn read_via_scratch<'a, S: AsyncRead + Unpin>(
    stream: &'a mut S,
    input: &'a mut BytesMut,
) -> impl Future<Output = io::Result<usize>> + 'a {
    std::future::poll_fn(move |cx| poll_read_via_scratch(stream, cx, input))
}

/// Polls one read of `stream` into the thread's scratch buffer and copies
/// what came into `input` (an empty buffer, or a spare one if `input` has
/// none, with room for at least [`READ_CHUNK`]).
/// The scratch is borrowed only within this poll, so tasks that share the
/// thread share it: AsyncRead implementations keep no hold on the buffer
/// they were given once they return `Pending`.
fn poll_read_via_scratch<S: AsyncRead + Unpin>(
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
/// is still alive (its whole allocation is its own again), the allocation
/// is exactly [`READ_CHUNK`] bytes (one grown for a burst or a large
/// message goes back to the allocator), and the thread has room.
/// Whatever it held is discarded.
pub(super) fn give_back(input: &mut BytesMut) {
    let buffer = std::mem::take(input);
    if buffer.capacity() == 0 {
        return;
    }
    // Only a buffer no `Bytes` shares may be kept: a shared one could pin
    // an allocation as large as a message, outside every budget.
    let Ok(mut buffer) = buffer.freeze().try_into_mut() else {
        return;
    };
    buffer.clear();
    // On a buffer of its own, `try_reclaim(n)` says whether the whole
    // allocation holds `n` bytes (taking back what was consumed).
    if !buffer.try_reclaim(READ_CHUNK) || buffer.try_reclaim(READ_CHUNK + 1) {
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
    fn a_buffer_still_shared_with_a_message_is_never_kept_whatever_its_room() {
        // Room to spare beyond the split, so a check of room alone would pass.
        for capacity in [READ_CHUNK, FIRST_READ, 1 << 20] {
            let mut input = BytesMut::with_capacity(capacity);
            input.extend_from_slice(b"a request");
            let decoded = input.split_to(3).freeze();
            give_back(&mut input);
            assert_eq!(spares(), 0, "capacity {capacity}: a live message shares its memory");
            assert_eq!(&decoded[..], b"a r");
        }
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

        for capacity in [64, READ_CHUNK + 1, FIRST_READ, 1 << 20] {
            let mut other = BytesMut::with_capacity(capacity);
            give_back(&mut other);
        }
        assert_eq!(spares(), 1, "any other size: freed");

        let spare = take_spare();
        assert!(spare.is_empty());
        assert_eq!(spare.capacity(), READ_CHUNK);
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
