//! What the two floor servers (`minimal_server`, `uring_floor`) share, so
//! that they differ only in how they drive their sockets: the one answer
//! they send, and framing by `content-length` alone.

use sockets::app::{SearchTable, client_request, respond};
use sockets::protocol::codec::encode_message;

/// The encoded answer to search "morpheus" from the built-in table: what
/// `sockets bench app` asks by default.
pub fn canned_response() -> Vec<u8> {
    let (answer, _) = respond(&SearchTable::builtin(), &client_request("search", "morpheus"));
    encode_message(&answer).expect("the canned answer encodes").to_vec()
}

/// The length of the request at the start of `input`, if it is all there:
/// two length bytes, the header, and `content-length` bytes of content.
pub fn whole_request(input: &[u8]) -> Option<usize> {
    let header_len = usize::from(u16::from_be_bytes([*input.first()?, *input.get(1)?]));
    let header = input.get(2..2 + header_len)?;
    const KEY: &[u8] = b"\"content-length\": ";
    let at = header.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let content_len = header[at..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .fold(0usize, |n, d| n * 10 + usize::from(d - b'0'));
    let total = 2 + header_len + content_len;
    (input.len() >= total).then_some(total)
}
