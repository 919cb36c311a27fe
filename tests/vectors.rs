//! The byte-exact test vectors (`tests/vectors/messages.json`, a copy of
//! the shared spec's): every message decodes to its stated header and
//! content, encodes back to the same bytes, and every request gets exactly
//! its vector's response. The copy is checked against the original whenever
//! the shared folder sits beside the repository, so the two cannot drift.

mod common;

use bytes::{Bytes, BytesMut};
use sockets::app::{SearchTable, respond};
use sockets::protocol::{ByteOrder, Message, MessageCodec};
use tokio_util::codec::Decoder;

use common::{VECTORS, encode, repo_path, response_vector, vectors as load};

/// Issue 7, item 19: a clone alone passes its tests, and the vendored
/// vectors are byte-identical to the shared ones wherever both exist.
#[test]
fn issue_7_the_vendored_vectors_match_the_shared_original() {
    let vendored = std::fs::read(repo_path(VECTORS)).expect("the vectors are in the repository");
    let shared = repo_path("..").join("shared").join("vectors").join("messages.json");
    match std::fs::read(&shared) {
        Ok(original) => assert!(
            original == vendored,
            "{VECTORS} differs from {}: copy the shared file again",
            shared.display()
        ),
        Err(error) => eprintln!(
            "{} not found ({error}); checked the vendored copy only",
            shared.display()
        ),
    }
    assert!(load().len() >= 20);
}

fn decode_one(wire: &[u8]) -> Message {
    let mut buf = BytesMut::from(wire);
    let message = MessageCodec::new().decode(&mut buf).unwrap().expect("a whole message");
    assert!(buf.is_empty(), "bytes left after the message");
    message
}

#[test]
fn every_vector_decodes_to_its_header_and_content() {
    for v in load() {
        let message = decode_one(&v.wire);
        let byteorder = match message.byteorder {
            ByteOrder::Little => "little",
            ByteOrder::Big => "big",
        };
        assert_eq!(byteorder, v.header["byteorder"], "{}", v.name);
        assert_eq!(message.content_type.as_ref(), v.header["content-type"], "{}", v.name);
        assert_eq!(
            message.content_encoding.as_ref(),
            v.header["content-encoding"],
            "{}",
            v.name
        );
        assert_eq!(
            message.content.len() as u64,
            v.header["content-length"].as_u64().unwrap(),
            "{}",
            v.name
        );
        assert_eq!(&message.content[..], &v.content[..], "{}", v.name);
    }
}

#[test]
fn every_vector_encodes_to_its_exact_bytes() {
    for v in load() {
        let message = decode_one(&v.wire);
        let rebuilt = Message {
            byteorder: message.byteorder,
            content_type: message.content_type.clone(),
            content_encoding: message.content_encoding.clone(),
            content: Bytes::from(v.content.clone()),
        };
        assert_eq!(encode(&rebuilt), v.wire, "{}", v.name);
    }
}

#[test]
fn every_request_gets_its_vector_response() {
    let vectors = load();
    let table = SearchTable::builtin();
    let mut checked = 0;
    for request in vectors.iter().filter(|v| v.name.ends_with(".request")) {
        let expected = response_vector(&vectors, request);
        let (mut response, _) = respond(&table, &decode_one(&request.wire));
        response.byteorder = ByteOrder::Little; // the vectors show responses from a little-endian sender
        assert_eq!(encode(&response), expected.wire, "response to {}", request.name);
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} requests checked");
}

#[test]
fn all_vectors_back_to_back_decode_at_every_split() {
    let vectors = load();
    let stream: Vec<u8> = vectors.iter().flat_map(|v| v.wire.iter().copied()).collect();
    let expected: Vec<Message> = vectors.iter().map(|v| decode_one(&v.wire)).collect();
    for split in 0..=stream.len() {
        let mut codec = MessageCodec::new();
        let mut buf = BytesMut::new();
        let mut decoded = Vec::new();
        for part in [&stream[..split], &stream[split..]] {
            buf.extend_from_slice(part);
            while let Some(message) = codec.decode(&mut buf).unwrap() {
                decoded.push(message);
            }
        }
        assert_eq!(decoded, expected, "split at {split}");
    }
}
