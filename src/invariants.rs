//! The properties that must hold for any bytes a peer can send, written once
//! and asserted in two places: by the fuzz targets in `fuzz/` (which feed
//! them what the fuzzer invents) and by `tests/invariants.rs` (which feeds
//! them the test vectors and every input a fuzzer ever broke, on stable, with
//! every `cargo test`).
//!
//! Each check returns `Err` saying what broke and with which input; a fuzz
//! target panics with it. "No crash" is never the property: each check
//! compares two computations that must agree (whole vs split input, fast
//! path vs serde_json, encode vs decode, output vs the rule it must obey).

use bytes::BytesMut;
use tokio_util::codec::{Decoder, Encoder};

use crate::app::Reply;
use crate::escape::{Escaped, Terminal, is_unsafe};
use crate::protocol::{Message, MessageCodec, ProtocolError};
use crate::python_repr::BytesRepr;
use crate::transport::PeerAddr;
use crate::transport::proxy::{self, ProxyVersion};

/// What decoding a stream gave: its messages, then how it ended.
#[derive(Debug, PartialEq, Eq)]
pub struct Decoded {
    pub messages: Vec<Message>,
    /// `None` when the stream ended between messages; the error's text otherwise.
    pub error: Option<String>,
}

/// The most memory the decoder may hold beyond the bytes it has been given:
/// one header's worth (its length is a `u16`, and the decoder reserves room
/// for the whole header once it knows the length), plus the two length bytes.
pub const DECODER_SLACK: usize = u16::MAX as usize + 2;

/// Decodes `stream` fed in the pieces `cuts` splits it into (offsets,
/// in any order; out-of-range ones ignored), as a server reading a socket
/// would: decode until it asks for more, then read the next piece; at the
/// end, `decode_eof`. Checks on the way that the read buffer never holds
/// more than twice what was fed plus [`DECODER_SLACK`] (amortised growth),
/// whatever the peer announced, and that every error is a protocol error,
/// never an I/O one.
pub fn decode_in_pieces(stream: &[u8], cuts: &[usize], max_content_len: usize) -> Result<Decoded, String> {
    let mut offsets: Vec<usize> = cuts.iter().copied().filter(|&c| c > 0 && c < stream.len()).collect();
    offsets.sort_unstable();
    offsets.dedup();
    offsets.push(stream.len());
    let mut codec = MessageCodec::new().with_max_content_len(max_content_len);
    let mut buffer = BytesMut::new();
    let mut messages = Vec::new();
    let mut start = 0;
    let typed = |error: ProtocolError| match error {
        ProtocolError::Io(io) => Err(format!("the decoder returned an I/O error for bytes: {io}")),
        other => Ok(other.to_string()),
    };
    for end in offsets {
        buffer.extend_from_slice(&stream[start..end]);
        start = end;
        loop {
            let decoded = codec.decode(&mut buffer);
            let bound = 2 * (end + DECODER_SLACK);
            if buffer.capacity() > bound {
                return Err(format!(
                    "after {end} bytes the read buffer holds {} (bound {bound})",
                    buffer.capacity()
                ));
            }
            match decoded {
                Ok(Some(message)) => messages.push(message),
                Ok(None) => break,
                Err(error) => {
                    return Ok(Decoded {
                        messages,
                        error: Some(typed(error)?),
                    });
                }
            }
        }
    }
    let error = match codec.decode_eof(&mut buffer) {
        Ok(None) => None,
        Ok(Some(message)) => return Err(format!("decode_eof found a message decode missed: {message:?}")),
        Err(error) => Some(typed(error)?),
    };
    Ok(Decoded { messages, error })
}

/// The decoder's answer does not depend on how the stream was cut: the
/// same messages and the same error, whole or in pieces. And every message
/// it gives, encoded again and decoded, is the same message.
pub fn decoding_ignores_segmentation(stream: &[u8], cuts: &[usize], max_content_len: usize) -> Result<(), String> {
    let whole = decode_in_pieces(stream, &[], max_content_len)?;
    let split = decode_in_pieces(stream, cuts, max_content_len)?;
    if whole != split {
        return Err(format!("decoded whole: {whole:?}\ndecoded cut at {cuts:?}: {split:?}"));
    }
    for message in &whole.messages {
        message_round_trips(message, max_content_len)?;
    }
    Ok(())
}

/// `decode(encode(message)) == message`.
pub fn message_round_trips(message: &Message, max_content_len: usize) -> Result<(), String> {
    let mut codec = MessageCodec::new().with_max_content_len(max_content_len);
    let mut wire = BytesMut::new();
    codec
        .encode(message, &mut wire)
        .map_err(|error| format!("a decoded message does not encode ({error}): {message:?}"))?;
    match codec.decode(&mut wire) {
        Ok(Some(again)) if again == *message && wire.is_empty() => Ok(()),
        other => Err(format!("{message:?} encoded and decoded again gave {other:?}")),
    }
}

/// The header fast path (for the exact text Python's `json.dumps` writes)
/// and the serde_json path agree wherever the fast path answers.
pub fn header_parsers_agree(json: &[u8]) -> Result<(), String> {
    crate::protocol::codec::header_parsers_agree(json)
}

/// The request fast path and the serde_json path agree wherever the fast
/// path answers.
pub fn request_parsers_agree(text: &str) -> Result<(), String> {
    crate::app::request_parsers_agree(text)
}

/// A PROXY header parse does not depend on how the bytes arrive: a prefix
/// either needs more bytes or gives what the whole gives (a complete
/// header, or the same refusal). And every header we send parses back to
/// the addresses it was made from.
pub fn proxy_parse_ignores_segmentation(bytes: &[u8]) -> Result<(), String> {
    let whole = proxy::parse_for_invariants(bytes);
    for end in 0..bytes.len() {
        let prefix = proxy::parse_for_invariants(&bytes[..end]);
        match (&prefix, &whole) {
            (None, _) => {}
            (Some(p), Some(w)) if p == w => {}
            _ => {
                return Err(format!(
                    "the first {end} bytes parse as {prefix:?}, all {} as {whole:?}",
                    bytes.len()
                ));
            }
        }
    }
    Ok(())
}

/// Every header we send, v1 and v2, for the addresses in `seed`, parses back
/// to the client address it names.
pub fn proxy_headers_round_trip(seed: &[u8]) -> Result<(), String> {
    let mut octets = [0u8; 40];
    for (slot, byte) in octets.iter_mut().zip(seed) {
        *slot = *byte;
    }
    let port = |at: usize| u16::from_be_bytes([octets[at], octets[at + 1]]);
    let v4 = |at: usize| std::net::IpAddr::from([octets[at], octets[at + 1], octets[at + 2], octets[at + 3]]);
    let v6 = |at: usize| {
        let mut ip = [0u8; 16];
        ip.copy_from_slice(&octets[at..at + 16]);
        std::net::IpAddr::from(ip)
    };
    let pairs = [
        (
            std::net::SocketAddr::new(v4(0), port(4)),
            std::net::SocketAddr::new(v4(6), port(10)),
        ),
        (
            std::net::SocketAddr::new(v6(0), port(16)),
            std::net::SocketAddr::new(v6(18), port(34)),
        ),
    ];
    for (source, destination) in pairs {
        for version in [ProxyVersion::V1, ProxyVersion::V2] {
            let header = proxy::encode_header(version, Some((source, destination)));
            let parsed = proxy::parse_for_invariants(&header);
            let client = Some(PeerAddr::Tcp(crate::transport::canonical(source)));
            match &parsed {
                Some(Ok((got, length))) if got.client == client && *length == header.len() => {}
                _ => {
                    return Err(format!(
                        "{version:?} header for {source} -> {destination} parsed as {parsed:?}"
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Python's `repr(bytes)`, as we print it: printable ASCII only, and read
/// back as a Python bytes literal it gives the bytes again.
pub fn python_repr_round_trips(bytes: &[u8]) -> Result<(), String> {
    let repr = BytesRepr(bytes).to_string();
    if let Some(bad) = repr.bytes().find(|b| !(0x20..=0x7e).contains(b)) {
        return Err(format!("repr of {bytes:?} contains byte 0x{bad:02x}: {repr:?}"));
    }
    match read_python_bytes_literal(&repr) {
        Some(back) if back == bytes => Ok(()),
        back => Err(format!("repr {repr:?} of {bytes:?} reads back as {back:?}")),
    }
}

/// Reads the `b'...'`/`b"..."` literals `repr(bytes)` writes (escapes
/// `\\ \' \" \t \n \r \xhh` only); `None` for anything else.
fn read_python_bytes_literal(text: &str) -> Option<Vec<u8>> {
    let rest = text.strip_prefix('b')?;
    let quote = rest.chars().next().filter(|&q| q == '\'' || q == '"')?;
    let body = rest.strip_prefix(quote)?.strip_suffix(quote)?;
    let mut out = Vec::new();
    let mut bytes = body.bytes();
    while let Some(byte) = bytes.next() {
        if byte == quote as u8 {
            return None; // an unescaped quote would have ended the literal
        }
        if byte != b'\\' {
            out.push(byte);
            continue;
        }
        match bytes.next()? {
            b'\\' => out.push(b'\\'),
            b'\'' => out.push(b'\''),
            b'"' => out.push(b'"'),
            b't' => out.push(b'\t'),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b'x' => {
                let hex = [bytes.next()?, bytes.next()?];
                out.push(u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?);
            }
            _ => return None,
        }
    }
    Some(out)
}

/// What we show of peer bytes in a log line or on a terminal holds no
/// character that moves the cursor, changes the terminal's state or
/// reorders text, and a log line's share stays bounded.
pub fn escaping_is_safe(bytes: &[u8]) -> Result<(), String> {
    let logged = Escaped(bytes).to_string();
    let text = String::from_utf8_lossy(bytes);
    let shown = Terminal(&text).to_string();
    for (what, out) in [("Escaped", &logged), ("Terminal", &shown)] {
        if let Some(bad) = out.chars().find(|&c| is_unsafe(c)) {
            return Err(format!("{what} of {bytes:?} shows {bad:?} raw: {out:?}"));
        }
    }
    // 200 bytes shown, each at worst `\u{10ffff}`-sized, and the length note.
    let bound = crate::escape::LOG_VALUE_LIMIT * 10 + 40;
    if logged.len() > bound {
        return Err(format!(
            "Escaped of {} bytes is {} long (bound {bound})",
            bytes.len(),
            logged.len()
        ));
    }
    Ok(())
}

/// A client reading `stream` as responses (with the client's content
/// limit) gets either typed errors or replies that say what the message
/// says: the content of a binary response, the `result` of a JSON one.
pub fn client_reads_replies_faithfully(stream: &[u8], max_content_len: usize) -> Result<(), String> {
    let decoded = decode_in_pieces(stream, &[], max_content_len)?;
    for message in &decoded.messages {
        let reply = Reply::from_message(message);
        let expected: Option<String> = if message.is_json() {
            let text = match message.text() {
                Ok(text) => text,
                Err(_) => continue, // the decoder already refuses undecodable JSON text
            };
            match serde_json::from_str::<serde_json::Value>(&text) {
                Ok(value) => match value.get("result") {
                    Some(serde_json::Value::String(result)) => Some(result.clone()),
                    Some(other) => Some(other.to_string()),
                    None => None,
                },
                Err(_) => None,
            }
        } else {
            match &reply {
                Ok(Reply::Binary(content)) if *content == message.content => continue,
                other => return Err(format!("binary response {message:?} read as {other:?}")),
            }
        };
        match (&reply, expected) {
            (Ok(Reply::Result(got)), Some(want)) if *got == want => {}
            (Err(_), None) => {}
            (got, want) => return Err(format!("response {message:?} read as {got:?}, expected {want:?}")),
        }
    }
    Ok(())
}

/// The fuzz targets, by name: each reads its input as [`check`] says.
pub const TARGETS: [&str; 6] = ["decode", "header", "request", "proxy", "escape", "reply"];

/// Runs the checks of fuzz target `target` on one input, read the way the
/// target reads it. The fuzz targets and the regression tests both come
/// here, so an input a fuzzer saved replays exactly:
///
/// - `decode`: byte 0 = how many cuts (mod 17), byte 1 = the content limit
///   as a power of two (mod 21), then two bytes (big-endian) per cut, then
///   the stream. [`decoding_ignores_segmentation`].
/// - `header`: a JSON header's bytes. [`header_parsers_agree`].
/// - `request`: a request's content (UTF-8; other bytes are not a request
///   the fast path could see). [`request_parsers_agree`].
/// - `proxy`: the first bytes of a connection.
///   [`proxy_parse_ignores_segmentation`] and [`proxy_headers_round_trip`].
/// - `escape`: any bytes. [`escaping_is_safe`] and [`python_repr_round_trips`].
/// - `reply`: a stream of responses. [`client_reads_replies_faithfully`].
///
/// # Panics
/// For a target name not in [`TARGETS`].
pub fn check(target: &str, data: &[u8]) -> Result<(), String> {
    match target {
        "decode" => {
            let (&[count, limit], rest) = data.split_first_chunk::<2>().unwrap_or((&[0, 20], data));
            let cuts_len = (usize::from(count) % 17 * 2).min(rest.len());
            let (cut_bytes, stream) = rest.split_at(cuts_len);
            let cuts: Vec<usize> = cut_bytes
                .chunks_exact(2)
                .map(|pair| usize::from(u16::from_be_bytes([pair[0], pair[1]])))
                .collect();
            decoding_ignores_segmentation(stream, &cuts, 1 << (limit % 21))
        }
        "header" => header_parsers_agree(data),
        "request" => match std::str::from_utf8(data) {
            Ok(text) => request_parsers_agree(text),
            Err(_) => Ok(()),
        },
        "proxy" => {
            proxy_parse_ignores_segmentation(data)?;
            proxy_headers_round_trip(data)
        }
        "escape" => {
            escaping_is_safe(data)?;
            python_repr_round_trips(data)
        }
        "reply" => client_reads_replies_faithfully(data, 1 << 20),
        other => panic!("no fuzz target {other:?}; the targets are {TARGETS:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_python_literal_reader_refuses_what_repr_never_writes() {
        assert_eq!(read_python_bytes_literal(r"b'a\x41\n'"), Some(b"a\x41\n".to_vec()));
        for bad in [r"b'\q'", "b'it's'", "'no prefix'", r"b'\x4'", "b'unterminated"] {
            assert_eq!(read_python_bytes_literal(bad), None, "{bad}");
        }
    }

    #[test]
    fn each_check_reports_a_broken_property() {
        // A stream whose second message is cut: the error names the truncation.
        let whole = decode_in_pieces(b"\x00", &[], 1 << 20).unwrap();
        assert_eq!(
            whole.error.as_deref(),
            Some("stream ended in the middle of a message (1 bytes of it left unread)")
        );
        // A proxy parse that depends on the cut would be reported; a header
        // that is not one is refused the same way whole or cut.
        assert!(proxy_parse_ignores_segmentation(b"GET / HTTP/1.1\r\n").is_ok());
        // An unknown target is a programming error, said loudly.
        assert!(std::panic::catch_unwind(|| check("nonesuch", b"")).is_err());
    }
}
