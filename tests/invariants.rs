//! The invariants the fuzz targets assert (`sockets::invariants`), run on
//! stable with every `cargo test`: on the test vectors, whole and cut at
//! every point, and on every input saved under `fuzz/seeds/` (the fuzzers'
//! starting corpus) and `fuzz/regressions/` (inputs that once broke a check;
//! each is named for what it broke).

mod common;

use std::fs;

use sockets::invariants::{self, TARGETS};

use common::{Vector, repo_path, vectors, vectors_from};

#[test]
fn every_vector_stream_decodes_the_same_at_every_cut_and_round_trips() {
    let all_vectors: Vec<Vector> = vectors()
        .into_iter()
        .chain(vectors_from("tests/vectors/broker.json"))
        .collect();
    let all: Vec<u8> = all_vectors.iter().flat_map(|v| v.wire.clone()).collect();
    for cut in 0..all.len() {
        for third in [cut / 2, cut + 1, cut + 7] {
            invariants::decoding_ignores_segmentation(&all, &[cut, third], 1 << 20).unwrap();
        }
    }
    let whole = invariants::decode_in_pieces(&all, &[], 1 << 20).unwrap();
    assert_eq!(whole.messages.len(), all_vectors.len(), "every vector is one message");
    for (message, vector) in whole.messages.iter().zip(&all_vectors) {
        assert_eq!(message.content[..], vector.content[..], "{}", vector.name);
    }
    assert_eq!(whole.error, None);
}

#[test]
fn the_checks_catch_what_they_are_for() {
    // A stream cut mid-message ends in a typed error, the same whole or cut.
    let one = vectors()[0].wire.clone();
    let truncated = &one[..one.len() - 1];
    let decoded = invariants::decode_in_pieces(truncated, &[3, 50], 1 << 20).unwrap();
    assert!(decoded.messages.is_empty());
    assert!(
        decoded
            .error
            .unwrap()
            .contains("stream ended in the middle of a message")
    );
    // A huge announced length is refused without holding memory for it.
    let header = br#"{"byteorder": "big", "content-type": "a", "content-encoding": "b", "content-length": 4000000000}"#;
    let mut huge = (header.len() as u16).to_be_bytes().to_vec();
    huge.extend_from_slice(header);
    let decoded = invariants::decode_in_pieces(&huge, &[1, 2, 9], 1 << 20).unwrap();
    assert!(decoded.error.unwrap().contains("above the limit"));
    // The Python literal reader refuses what repr would never write.
    assert!(invariants::python_repr_round_trips(b"it's \"quoted\"\n\xff").is_ok());
    // Headers the fast path reads and ones it leaves to serde_json.
    for header in [
        &b"{\"byteorder\": \"little\", \"content-type\": \"text/json\", \"content-encoding\": \"utf-8\", \"content-length\": 0}"[..],
        b"{\"byteorder\": \"big\", \"content-type\": \"\", \"content-encoding\": \"\", \"content-length\": 18446744073709551615}",
        b"{\"byteorder\":\"big\"}",
    ] {
        invariants::header_parsers_agree(header).unwrap();
    }
    invariants::request_parsers_agree("{\"action\": \"search\", \"value\": \"\u{1f436}\"}").unwrap();
    invariants::request_parsers_agree("{\"action\": \"find\", \"value\": \"x\"}").unwrap();
    invariants::proxy_headers_round_trip(&[127, 0, 0, 1, 0x30, 0x39, 10, 0, 0, 1, 0, 80]).unwrap();
    invariants::proxy_parse_ignores_segmentation(b"PROXY TCP4 192.0.2.1 192.0.2.2 5000 80\r\nhello").unwrap();
}

#[test]
fn every_saved_fuzz_input_passes_its_target() {
    for target in TARGETS {
        let mut seeds = 0;
        for dir in ["fuzz/seeds", "fuzz/regressions"] {
            // Regressions exist only for targets that have failed once.
            let Ok(entries) = fs::read_dir(repo_path(&format!("{dir}/{target}"))) else {
                continue;
            };
            for entry in entries {
                let path = entry.unwrap().path();
                let data = fs::read(&path).unwrap();
                if let Err(broken) = invariants::check(target, &data) {
                    panic!("{} ({target}): {broken}", path.display());
                }
                seeds += usize::from(dir == "fuzz/seeds");
            }
        }
        assert!(
            seeds > 0,
            "no seeds for {target} under fuzz/seeds (fuzz/make_seeds.py makes them)"
        );
    }
}
