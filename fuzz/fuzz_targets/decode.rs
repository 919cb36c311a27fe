//! Fuzz target `decode`: the message decoder on arbitrary bytes cut at
//! fuzzer-chosen points (see `sockets::invariants::check`), plus what only
//! a whole program can see: the heap. A global allocator counts live bytes,
//! and the peak while decoding must stay linear in the input, whatever
//! lengths the input announces.
#![no_main]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use sockets::invariants::{self, DECODER_SLACK};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(live, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Err(broken) = invariants::check("decode", data) {
        panic!("{broken}");
    }
    // The heap while decoding in pieces: the read buffer (at most twice what
    // arrived plus one header's worth) and the decoded messages (each
    // smaller than the bytes it came from, with its bookkeeping).
    let cuts: Vec<usize> = (1..data.len()).step_by(7).collect();
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let decoded = invariants::decode_in_pieces(data, &cuts, 1 << 20);
    let peak = PEAK.load(Ordering::Relaxed) - before;
    let bound = 2 * (data.len() + DECODER_SLACK) + 8 * data.len() + 4096;
    assert!(
        peak <= bound,
        "decoding {} bytes took {peak} bytes of heap at its peak (bound {bound})",
        data.len()
    );
    drop(decoded);
});
