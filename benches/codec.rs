//! Codec microbenchmarks: decode and encode of the test-vector messages
//! per message, and the allocations each one makes (counted by a wrapping
//! global allocator and printed before the timings).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::BytesMut;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sockets::app::{SearchTable, respond};
use sockets::protocol::{Message, MessageCodec};
use tokio_util::codec::{Decoder, Encoder};

/// Counts allocations so the report can say how many each operation makes.
struct CountingAllocator;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts calls.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

fn allocations_of(mut op: impl FnMut()) -> f64 {
    const ROUNDS: u64 = 1000;
    op(); // warm up lazily grown buffers
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for _ in 0..ROUNDS {
        op();
    }
    (ALLOCATIONS.load(Ordering::Relaxed) - before) as f64 / ROUNDS as f64
}

fn vectors() -> Vec<(String, Vec<u8>)> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/messages.json");
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(path).expect("the vendored vectors (tests/vectors/messages.json)"),
    )
    .unwrap();
    json["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| {
            [
                "search-morpheus.request",
                "search-morpheus.response",
                "binary-long.request",
            ]
            .contains(&v["name"].as_str().unwrap())
        })
        .map(|v| {
            let hex = v["hex"].as_str().unwrap();
            let bytes = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect();
            (v["name"].as_str().unwrap().to_owned(), bytes)
        })
        .collect()
}

fn decode(wire: &[u8]) -> Message {
    let mut buf = BytesMut::from(wire);
    MessageCodec::new().decode(&mut buf).unwrap().unwrap()
}

fn codec(c: &mut Criterion) {
    let table = SearchTable::builtin();
    let mut group = c.benchmark_group("codec");
    for (name, wire) in vectors() {
        let message = decode(&wire);
        let mut out = BytesMut::with_capacity(4096);
        let decode_allocs = allocations_of(|| {
            std::hint::black_box(decode(&wire));
        });
        let encode_allocs = allocations_of(|| {
            out.clear();
            MessageCodec::new().encode(&message, &mut out).unwrap();
        });
        let respond_allocs = allocations_of(|| {
            std::hint::black_box(respond(&table, &message));
        });
        println!(
            "allocations per message, {name}: decode {decode_allocs:.1}, encode {encode_allocs:.1}, respond {respond_allocs:.1}"
        );

        group.throughput(Throughput::Elements(1));
        group.bench_function(format!("decode/{name}"), |b| {
            b.iter(|| decode(std::hint::black_box(&wire)))
        });
        group.bench_function(format!("encode/{name}"), |b| {
            b.iter(|| {
                out.clear();
                MessageCodec::new()
                    .encode(std::hint::black_box(&message), &mut out)
                    .unwrap();
            })
        });
        if name.ends_with(".request") {
            group.bench_function(format!("respond/{name}"), |b| {
                b.iter(|| respond(&table, std::hint::black_box(&message)))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
