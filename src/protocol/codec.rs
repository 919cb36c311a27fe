//! [`MessageCodec`]: a tokio-util [`Decoder`]/[`Encoder`] for [`Message`]s.
//!
//! ```text
//!  0      2                    2+H                  2+H+C
//!  +------+--------------------+--------------------+
//!  |  H   |  JSON header       |  content           |
//!  | u16BE|  H bytes, UTF-8    |  C = content-length|
//!  +------+--------------------+--------------------+
//! ```
//!
//! The decoder is a two-state machine (waiting for a header, waiting for
//! content) so a header is parsed once however the bytes trickle in. Every
//! length read off the wire is checked before any memory is reserved for it:
//! the header length is bounded by the `u16`, the content length by
//! [`MessageCodec::max_content_len`]; content memory grows with what actually
//! arrives, never with what the peer announced.

use std::borrow::Cow;

use bytes::{Buf, BufMut, BytesMut};
use serde::Deserialize;
use serde_json::Value;
use tokio_util::codec::{Decoder, Encoder};

use crate::escape::clip;

use super::json::{plain_json_string, starts_as_object, write_python_json};
use super::json_str::JsonStr;
use super::{
    ByteOrder, DEFAULT_MAX_CONTENT_LEN, MAX_JSON_HEADER_LEN, Message, PROTO_HEADER_LEN, ProtocolError, TEXT_JSON,
    UTF_8, intern,
};

/// Encodes and decodes [`Message`]s on a byte stream.
#[derive(Debug, Clone)]
pub struct MessageCodec {
    max_content_len: usize,
    state: DecodeState,
}

/// A parsed header whose content has not fully arrived yet.
#[derive(Debug, Clone)]
struct PendingHeader {
    byteorder: ByteOrder,
    content_type: Cow<'static, str>,
    content_encoding: Cow<'static, str>,
    content_len: usize,
}

#[derive(Debug, Clone)]
enum DecodeState {
    Header,
    /// Boxed: only a message whose content comes in a later read waits
    /// here, and inline the header would be in every connection's memory
    /// (56 bytes of it) for its whole life.
    Content(Box<PendingHeader>),
}

impl Default for MessageCodec {
    fn default() -> Self {
        MessageCodec::new()
    }
}

impl MessageCodec {
    /// A codec with the default limits.
    pub fn new() -> MessageCodec {
        MessageCodec {
            max_content_len: DEFAULT_MAX_CONTENT_LEN,
            state: DecodeState::Header,
        }
    }

    /// Sets the largest `content-length` the decoder accepts. A message
    /// announcing more is rejected as soon as its header is read.
    pub fn with_max_content_len(mut self, max: usize) -> MessageCodec {
        self.max_content_len = max;
        self
    }

    /// The largest `content-length` the decoder accepts.
    pub fn max_content_len(&self) -> usize {
        self.max_content_len
    }

    /// Whether the decoder holds the header of a message whose content has
    /// not arrived. Together with an empty read buffer, `false` means the
    /// stream is between messages.
    pub fn is_mid_message(&self) -> bool {
        matches!(self.state, DecodeState::Content(_))
    }

    /// How many more bytes complete the message begun in `buffered`, when
    /// the decoder knows: the rest of a header whose length has arrived, or
    /// the rest of the content. A reader can size its buffer to fit the
    /// message exactly instead of doubling past it.
    pub fn bytes_to_complete(&self, buffered: &[u8]) -> Option<usize> {
        match &self.state {
            DecodeState::Content(header) => Some(header.content_len.saturating_sub(buffered.len())),
            DecodeState::Header if buffered.len() >= PROTO_HEADER_LEN => {
                let header_len = usize::from(u16::from_be_bytes([buffered[0], buffered[1]]));
                Some((PROTO_HEADER_LEN + header_len).saturating_sub(buffered.len()))
            }
            DecodeState::Header => None,
        }
    }

    fn parse_header(&self, json: &[u8]) -> Result<PendingHeader, ProtocolError> {
        let (byteorder, content_type, content_encoding, content_len) = match parse_canonical_header(json) {
            Some(fields) => fields,
            None => parse_any_header(json)?,
        };
        let content_len = usize::try_from(content_len)
            .ok()
            .filter(|&len| len <= self.max_content_len)
            .ok_or(ProtocolError::ContentTooLarge {
                len: content_len,
                max: self.max_content_len,
            })?;
        Ok(PendingHeader {
            byteorder,
            content_type,
            content_encoding,
            content_len,
        })
    }
}

/// Header fields: byte order, content type, content encoding, content length.
type HeaderFields = (ByteOrder, Cow<'static, str>, Cow<'static, str>, u64);

/// What follows the byte order in the canonical header of a JSON message,
/// up to the content length.
const GUIDE_JSON_TYPES: &[u8] = b"text/json\", \"content-encoding\": \"utf-8\"";

/// Reads a header exactly as Python's `json.dumps` writes the guide's dict
/// (and as we write it): that key order, those separators, strings without
/// escapes. Nearly every header is in this form, and reading it directly
/// costs a fraction of a JSON parse. Anything else returns `None` and goes
/// through [`parse_any_header`], which gives the same answer for this form.
fn parse_canonical_header(json: &[u8]) -> Option<HeaderFields> {
    let rest = json.strip_prefix(b"{\"byteorder\": \"")?;
    let (byteorder, rest) = match rest.strip_prefix(b"little\", \"content-type\": \"") {
        Some(rest) => (ByteOrder::Little, rest),
        None => (ByteOrder::Big, rest.strip_prefix(b"big\", \"content-type\": \"")?),
    };
    // The guide's JSON type and encoding are matched whole, with no scan
    // and no UTF-8 check: most messages carry them.
    let (content_type, content_encoding, rest) = if let Some(rest) = rest.strip_prefix(GUIDE_JSON_TYPES) {
        (Cow::Borrowed(TEXT_JSON), Cow::Borrowed(UTF_8), rest)
    } else {
        let (content_type, rest) = plain_json_string(rest)?;
        let rest = rest.strip_prefix(b", \"content-encoding\": \"")?;
        let (content_encoding, rest) = plain_json_string(rest)?;
        (intern(content_type), intern(content_encoding), rest)
    };
    let digits = rest.strip_prefix(b", \"content-length\": ")?.strip_suffix(b"}")?;
    // JSON integers: digits only, no leading zero; 19 digits always fit a u64.
    let valid = !digits.is_empty() && digits.len() <= 19 && digits.iter().all(u8::is_ascii_digit);
    if !valid || (digits.len() > 1 && digits[0] == b'0') {
        return None;
    }
    let len = digits.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
    Some((byteorder, content_type, content_encoding, len))
}

/// Reads any header the protocol allows, with errors that name what is wrong.
fn parse_any_header(json: &[u8]) -> Result<HeaderFields, ProtocolError> {
    let json = std::str::from_utf8(json).map_err(|e| ProtocolError::HeaderNotJson(e.to_string()))?;
    if !json.trim_start().is_empty() && !starts_as_object(json) {
        return match serde_json::from_str::<serde::de::IgnoredAny>(json) {
            Ok(_) => Err(ProtocolError::HeaderNotObject),
            Err(e) => Err(ProtocolError::HeaderNotJson(e.to_string())),
        };
    }
    let wire: WireHeaderIn<'_> = serde_json::from_str(json).map_err(|e| ProtocolError::HeaderNotJson(e.to_string()))?;
    let content_len = match wire.content_length {
        None => return Err(ProtocolError::MissingHeaderKey("content-length")),
        Some(value) => value.as_u64().ok_or_else(|| ProtocolError::BadHeaderValue {
            key: "content-length",
            expected: "a non-negative integer",
            got: clip(&value.to_string()),
        })?,
    };
    let byteorder = required_str("byteorder", wire.byteorder)?;
    let byteorder = ByteOrder::from_name(&byteorder).ok_or_else(|| ProtocolError::BadHeaderValue {
        key: "byteorder",
        expected: "\"little\" or \"big\"",
        // Quoted, not Debug-formatted: logs and terminals escape it themselves.
        got: format!("\"{}\"", clip(&byteorder)),
    })?;
    let content_type = intern(&required_str("content-type", wire.content_type)?);
    let content_encoding = intern(&required_str("content-encoding", wire.content_encoding)?);
    Ok((byteorder, content_type, content_encoding, content_len))
}

/// For [`crate::invariants`]: where [`parse_canonical_header`] answers,
/// [`parse_any_header`] gives the same fields.
pub(crate) fn header_parsers_agree(json: &[u8]) -> Result<(), String> {
    let Some(fast) = parse_canonical_header(json) else {
        return Ok(());
    };
    match parse_any_header(json) {
        Ok(any) if any == fast => Ok(()),
        any => Err(format!(
            "header {:?}: fast path {fast:?}, serde_json {any:?}",
            String::from_utf8_lossy(json)
        )),
    }
}

/// The header as it arrives; unknown keys are ignored. Values are kept loose
/// so that a wrong type gets an error naming the key.
#[derive(Deserialize)]
struct WireHeaderIn<'a> {
    #[serde(borrow)]
    byteorder: Option<JsonStr<'a>>,
    #[serde(rename = "content-type", borrow)]
    content_type: Option<JsonStr<'a>>,
    #[serde(rename = "content-encoding", borrow)]
    content_encoding: Option<JsonStr<'a>>,
    #[serde(rename = "content-length")]
    content_length: Option<Value>,
}

fn required_str<'a>(key: &'static str, value: Option<JsonStr<'a>>) -> Result<Cow<'a, str>, ProtocolError> {
    match value {
        None => Err(ProtocolError::MissingHeaderKey(key)),
        Some(JsonStr::Str(s)) => Ok(s),
        Some(JsonStr::NotStr(got)) => Err(ProtocolError::BadHeaderValue {
            key,
            expected: "a string",
            got,
        }),
    }
}

/// Writes the JSON header as Python's `json.dumps` writes the guide's dict:
/// keys in its order, its separators. The layout is fixed, so it is written
/// directly; only strings that need escaping go through serde_json.
fn write_header(dst: &mut BytesMut, message: &Message) -> Result<(), ProtocolError> {
    dst.put_slice(match message.byteorder {
        ByteOrder::Little => b"{\"byteorder\": \"little\", \"content-type\": ",
        ByteOrder::Big => b"{\"byteorder\": \"big\", \"content-type\": ",
    });
    write_json_str(dst, &message.content_type)?;
    dst.put_slice(b", \"content-encoding\": ");
    write_json_str(dst, &message.content_encoding)?;
    dst.put_slice(b", \"content-length\": ");
    dst.put_slice(itoa::Buffer::new().format(message.content.len()).as_bytes());
    dst.put_u8(b'}');
    Ok(())
}

/// A JSON string literal: copied as is when nothing in it needs escaping.
fn write_json_str(dst: &mut BytesMut, value: &str) -> Result<(), ProtocolError> {
    if value.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        dst.put_u8(b'"');
        dst.put_slice(value.as_bytes());
        dst.put_u8(b'"');
        Ok(())
    } else {
        write_python_json(dst.writer(), value).map_err(|e| ProtocolError::Io(e.into()))
    }
}

impl Decoder for MessageCodec {
    type Item = Message;
    type Error = ProtocolError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Message>, ProtocolError> {
        if let DecodeState::Content(waiting) = &self.state
            && src.len() < waiting.content_len
        {
            return Ok(None);
        }
        let header = match std::mem::replace(&mut self.state, DecodeState::Header) {
            DecodeState::Content(waiting) => *waiting,
            DecodeState::Header => {
                if src.len() < PROTO_HEADER_LEN {
                    return Ok(None);
                }
                let header_len = usize::from(u16::from_be_bytes([src[0], src[1]]));
                let frame_start = PROTO_HEADER_LEN + header_len;
                if src.len() < frame_start {
                    // Bounded by u16::MAX, so reserving the rest of the header is safe.
                    src.reserve(frame_start - src.len());
                    return Ok(None);
                }
                let header = self.parse_header(&src[PROTO_HEADER_LEN..frame_start])?;
                src.advance(frame_start);
                if src.len() < header.content_len {
                    self.state = DecodeState::Content(Box::new(header));
                    return Ok(None);
                }
                header
            }
        };
        let content = src.split_to(header.content_len).freeze();
        let message = Message {
            byteorder: header.byteorder,
            content_type: header.content_type,
            content_encoding: header.content_encoding,
            content,
        };
        if message.content_type == TEXT_JSON {
            message.text()?;
        }
        Ok(Some(message))
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Message>, ProtocolError> {
        match self.decode(src)? {
            Some(message) => Ok(Some(message)),
            None if src.is_empty() && !self.is_mid_message() => Ok(None),
            None => Err(ProtocolError::Truncated { buffered: src.len() }),
        }
    }
}

/// Room reserved for an encoded JSON header: the canonical header of a
/// `text/json` answer is 103 bytes, of a `binary/custom-server-binary-type`
/// one with a ten-digit length 133. Reserving less cost a reallocation per
/// message (found with callgrind: one `realloc` per request).
const HEADER_ROOM: usize = 160;

/// `message`'s bytes on the wire, for a message made once and sent as it
/// is (a request a client repeats, a push sent to many).
///
/// # Errors
/// [`ProtocolError::HeaderTooLarge`] for a header over the 2-byte length.
pub fn encode_message(message: &Message) -> Result<bytes::Bytes, ProtocolError> {
    let mut wire = BytesMut::new();
    MessageCodec::new().encode(message, &mut wire)?;
    Ok(wire.freeze())
}

/// A whole message already encoded by this codec (header length, header,
/// content): a server answering the same message again and again encodes
/// it once and copies the bytes after that.
#[derive(Debug, Clone, Copy)]
pub struct Encoded<'a>(pub &'a [u8]);

impl Encoder<Encoded<'_>> for MessageCodec {
    type Error = ProtocolError;

    fn encode(&mut self, frame: Encoded<'_>, dst: &mut BytesMut) -> Result<(), ProtocolError> {
        dst.extend_from_slice(frame.0);
        Ok(())
    }
}

impl Encoder<&Message> for MessageCodec {
    type Error = ProtocolError;

    fn encode(&mut self, message: &Message, dst: &mut BytesMut) -> Result<(), ProtocolError> {
        let start = dst.len();
        dst.reserve(PROTO_HEADER_LEN + HEADER_ROOM + message.content.len());
        dst.put_u16(0); // patched below, once the header's length is known
        write_header(dst, message)?;
        let header_len = dst.len() - start - PROTO_HEADER_LEN;
        let Ok(header_len_u16) = u16::try_from(header_len) else {
            dst.truncate(start);
            return Err(ProtocolError::HeaderTooLarge {
                len: header_len,
                max: MAX_JSON_HEADER_LEN,
            });
        };
        dst[start..start + PROTO_HEADER_LEN].copy_from_slice(&header_len_u16.to_be_bytes());
        dst.extend_from_slice(&message.content);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use crate::protocol::{BINARY, SERVER_BINARY_TYPE};

    use super::*;

    fn search(value: &str) -> Message {
        #[derive(serde::Serialize)]
        struct Search<'a> {
            action: &'a str,
            value: &'a str,
        }
        Message::json(&Search {
            action: "search",
            value,
        })
    }

    #[test]
    fn the_headers_we_send_fit_the_room_reserved_for_them() {
        // A text/json answer and a binary answer, each with the longest
        // content-length a message can have: no reallocation mid-encode.
        let content = Bytes::from_static(b"x");
        for content_type in [TEXT_JSON, SERVER_BINARY_TYPE] {
            let message = Message {
                byteorder: ByteOrder::Little,
                content_type: content_type.into(),
                content_encoding: if content_type == TEXT_JSON { UTF_8 } else { BINARY }.into(),
                content: content.clone(),
            };
            let mut header = BytesMut::new();
            write_header(&mut header, &message).unwrap();
            // The length field as written, grown to ten digits.
            let longest = header.len() - 1 + 10;
            assert!(longest <= HEADER_ROOM, "{content_type}: {longest} bytes");
        }
    }

    fn encode(message: &Message) -> BytesMut {
        let mut out = BytesMut::new();
        MessageCodec::new().encode(message, &mut out).unwrap();
        out
    }

    fn frame(header: &str, content: &[u8]) -> BytesMut {
        let mut out = BytesMut::new();
        out.put_u16(header.len() as u16);
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(content);
        out
    }

    #[test]
    fn one_byte_at_a_time() {
        let message = search("morpheus");
        let wire = encode(&message);
        let mut codec = MessageCodec::new();
        let mut buf = BytesMut::new();
        for (i, byte) in wire.iter().enumerate() {
            buf.put_u8(*byte);
            let decoded = codec.decode(&mut buf).unwrap();
            if i + 1 < wire.len() {
                assert_eq!(decoded, None, "message complete too early at byte {i}");
            } else {
                assert_eq!(decoded, Some(message.clone()));
            }
        }
        assert!(buf.is_empty());
    }

    #[test]
    fn two_messages_in_one_read() {
        let first = search("ring");
        let second = Message::binary(
            "binary/custom-client-binary-type",
            Bytes::from_static(b"binary \xf0\x9f\x98\x83"),
        );
        let mut buf = encode(&first);
        buf.extend_from_slice(&encode(&second));
        let mut codec = MessageCodec::new();
        assert_eq!(codec.decode(&mut buf).unwrap(), Some(first));
        assert_eq!(codec.decode(&mut buf).unwrap(), Some(second));
        assert_eq!(codec.decode(&mut buf).unwrap(), None);
    }

    #[test]
    fn empty_content_is_a_message() {
        let message = Message::binary("binary/x", Bytes::new());
        let mut buf = encode(&message);
        assert_eq!(MessageCodec::new().decode(&mut buf).unwrap(), Some(message));
    }

    #[test]
    fn oversize_content_length_rejected_before_content_arrives() {
        let header = r#"{"byteorder": "little", "content-type": "binary/x", "content-encoding": "binary", "content-length": 4294967296000}"#;
        let mut buf = frame(header, b"");
        let capacity_before = buf.capacity();
        let err = MessageCodec::new()
            .with_max_content_len(1000)
            .decode(&mut buf)
            .unwrap_err();
        assert!(
            matches!(
                err,
                ProtocolError::ContentTooLarge {
                    len: 4294967296000,
                    max: 1000
                }
            ),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            "content-length 4294967296000 is above the limit of 1000 bytes"
        );
        assert_eq!(
            buf.capacity(),
            capacity_before,
            "nothing reserved for the announced content"
        );
    }

    #[test]
    fn content_memory_grows_with_arrivals_not_announcements() {
        let header = r#"{"byteorder": "little", "content-type": "binary/x", "content-encoding": "binary", "content-length": 1000000}"#;
        let mut buf = frame(header, b"abc");
        let mut codec = MessageCodec::new();
        assert_eq!(codec.decode(&mut buf).unwrap(), None);
        assert!(codec.is_mid_message());
        assert!(
            buf.capacity() < 10_000,
            "capacity {} follows the announcement",
            buf.capacity()
        );
    }

    #[test]
    fn header_not_json() {
        let mut buf = frame("{not json", b"");
        let err = MessageCodec::new().decode(&mut buf).unwrap_err();
        assert!(matches!(err, ProtocolError::HeaderNotJson(_)), "{err}");
        let mut buf = frame("\u{0}", b"");
        assert!(matches!(
            MessageCodec::new().decode(&mut buf),
            Err(ProtocolError::HeaderNotJson(_))
        ));
        let mut buf = frame("", b"");
        assert!(matches!(
            MessageCodec::new().decode(&mut buf),
            Err(ProtocolError::HeaderNotJson(_))
        ));
        let mut invalid_utf8 = BytesMut::from(&b"\x00\x03\"\xff\""[..]);
        assert!(matches!(
            MessageCodec::new().decode(&mut invalid_utf8),
            Err(ProtocolError::HeaderNotJson(_))
        ));
    }

    #[test]
    fn header_not_an_object() {
        let mut buf = frame(r#"["little", "text/json", "utf-8", 0]"#, b"");
        assert!(matches!(
            MessageCodec::new().decode(&mut buf),
            Err(ProtocolError::HeaderNotObject)
        ));
    }

    #[test]
    fn a_required_key_given_twice_is_rejected() {
        let header = r#"{"byteorder": "little", "content-type": "binary/x", "content-encoding": "binary", "content-length": 1, "content-length": 100}"#;
        let err = MessageCodec::new().decode(&mut frame(header, b"x")).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("JSON header is not valid UTF-8 JSON: duplicate field `content-length`"),
            "{err}"
        );
    }

    #[test]
    fn header_key_errors_name_the_key() {
        let cases = [
            (
                r#"{"content-type": "text/json", "content-encoding": "utf-8", "content-length": 0}"#,
                "JSON header lacks required key \"byteorder\"",
            ),
            (
                r#"{"byteorder": "little", "content-encoding": "utf-8", "content-length": 0}"#,
                "JSON header lacks required key \"content-type\"",
            ),
            (
                r#"{"byteorder": "little", "content-type": "x", "content-length": 0}"#,
                "JSON header lacks required key \"content-encoding\"",
            ),
            (
                r#"{"byteorder": "little", "content-type": "x", "content-encoding": "binary"}"#,
                "JSON header lacks required key \"content-length\"",
            ),
            (
                r#"{"byteorder": "little", "content-type": "x", "content-encoding": "binary", "content-length": -1}"#,
                "JSON header key \"content-length\" must be a non-negative integer, got -1",
            ),
            (
                r#"{"byteorder": "little", "content-type": "x", "content-encoding": "binary", "content-length": "5"}"#,
                "JSON header key \"content-length\" must be a non-negative integer, got \"5\"",
            ),
            (
                r#"{"byteorder": "little", "content-type": "x", "content-encoding": "binary", "content-length": 1.5}"#,
                "JSON header key \"content-length\" must be a non-negative integer, got 1.5",
            ),
            (
                r#"{"byteorder": "middle", "content-type": "x", "content-encoding": "binary", "content-length": 0}"#,
                "JSON header key \"byteorder\" must be \"little\" or \"big\", got \"middle\"",
            ),
            (
                r#"{"byteorder": "big", "content-type": 7, "content-encoding": "binary", "content-length": 0}"#,
                "JSON header key \"content-type\" must be a string, got 7",
            ),
        ];
        for (header, expected) in cases {
            let err = MessageCodec::new().decode(&mut frame(header, b"")).unwrap_err();
            assert_eq!(err.to_string(), expected, "header {header}");
        }
    }

    #[test]
    fn extra_header_keys_are_ignored_and_escapes_decoded() {
        let header = r#"{"x-trace": [1, {"a": null}], "byteorder": "big", "content-type": "binary\/x", "content-encoding": "binary", "content-length": 2}"#;
        let message = MessageCodec::new().decode(&mut frame(header, b"hi")).unwrap().unwrap();
        assert_eq!(message.byteorder, ByteOrder::Big);
        assert_eq!(message.content_type, "binary/x");
        assert_eq!(&message.content[..], b"hi");
    }

    #[test]
    fn text_json_content_must_decode() {
        let header =
            r#"{"byteorder": "little", "content-type": "text/json", "content-encoding": "utf-8", "content-length": 2}"#;
        let err = MessageCodec::new().decode(&mut frame(header, b"\xff\xfe")).unwrap_err();
        assert!(matches!(err, ProtocolError::ContentNotDecodable { .. }), "{err}");
    }

    #[test]
    fn eof_mid_message_is_truncation() {
        let wire = encode(&search("ring"));
        for cut in [1, 2, 10, wire.len() - 1] {
            let mut buf = BytesMut::from(&wire[..cut]);
            let mut codec = MessageCodec::new();
            assert_eq!(codec.decode(&mut buf).unwrap(), None);
            let err = codec.decode_eof(&mut buf).unwrap_err();
            assert!(matches!(err, ProtocolError::Truncated { .. }), "cut at {cut}: {err}");
        }
        let mut empty = BytesMut::new();
        assert_eq!(MessageCodec::new().decode_eof(&mut empty).unwrap(), None);
    }

    #[test]
    fn canonical_headers_read_directly_agree_with_the_json_parser() {
        let canonical = [
            r#"{"byteorder": "little", "content-type": "text/json", "content-encoding": "utf-8", "content-length": 41}"#,
            r#"{"byteorder": "big", "content-type": "binary/custom-client-binary-type", "content-encoding": "binary", "content-length": 0}"#,
            r#"{"byteorder": "little", "content-type": "é/ü", "content-encoding": "", "content-length": 9999999999999999999}"#,
            // Near the guide's JSON pair, which is matched whole.
            r#"{"byteorder": "big", "content-type": "text/json", "content-encoding": "utf-8", "content-length": 0}"#,
            r#"{"byteorder": "little", "content-type": "text/json", "content-encoding": "utf-8-sig", "content-length": 3}"#,
            r#"{"byteorder": "little", "content-type": "text/jsonl", "content-encoding": "utf-8", "content-length": 3}"#,
        ];
        for header in canonical {
            let fast = parse_canonical_header(header.as_bytes()).expect(header);
            let parsed = parse_any_header(header.as_bytes()).unwrap();
            assert_eq!(fast, parsed, "{header}");
        }
        let other_forms = [
            r#"{"byteorder":"little","content-type":"text/json","content-encoding":"utf-8","content-length":41}"#,
            r#"{"byteorder": "little", "content-type": "a\"b", "content-encoding": "utf-8", "content-length": 1}"#,
            r#"{"byteorder": "little", "content-type": "x", "content-encoding": "utf-8", "content-length": 01}"#,
            r#"{"byteorder": "little", "content-type": "x", "content-encoding": "utf-8", "content-length": -1}"#,
            r#"{"byteorder": "little", "content-type": "x", "content-encoding": "utf-8", "content-length": 18446744073709551615}"#,
            r#"{"byteorder": "little", "content-type": "x", "content-encoding": "utf-8", "content-length": 1, "extra": 2}"#,
            r#"{"byteorder": "middle", "content-type": "x", "content-encoding": "utf-8", "content-length": 1}"#,
            r#"{"byteorder": "little", "content-type": "text/json", "content-encoding": "utf-8", "content-length": 1 }"#,
            r#"{"byteorder": "little", "content-type": "text/json", "content-encoding": "utf-8","content-length": 1}"#,
        ];
        for header in other_forms {
            assert_eq!(parse_canonical_header(header.as_bytes()), None, "{header}");
        }
        let invalid_utf8 = b"{\"byteorder\": \"little\", \"content-type\": \"\xff\", \"content-encoding\": \"x\", \"content-length\": 1}";
        assert_eq!(parse_canonical_header(invalid_utf8), None);
    }

    #[test]
    fn header_strings_are_escaped_like_python() {
        let message = Message::binary("a\"b\\c\u{1}é", Bytes::from_static(b"xy"));
        let wire = encode(&message);
        let header = std::str::from_utf8(&wire[2..wire.len() - 2]).unwrap();
        // json.dumps({..., "content-type": 'a"b\\c\x01é', ...}, ensure_ascii=False)
        let expected = "{\"byteorder\": \"little\", \"content-type\": \"a\\\"b\\\\c\\u0001é\", \"content-encoding\": \"binary\", \"content-length\": 2}";
        if cfg!(target_endian = "little") {
            assert_eq!(header, expected);
        }
    }

    #[test]
    fn oversize_header_is_not_encoded() {
        let message = Message::binary("x".repeat(70_000), Bytes::new());
        let mut out = BytesMut::from(&b"keep"[..]);
        let err = MessageCodec::new().encode(&message, &mut out).unwrap_err();
        assert!(matches!(err, ProtocolError::HeaderTooLarge { max: 65535, .. }), "{err}");
        assert_eq!(&out[..], b"keep", "a failed encode leaves the buffer as it was");
    }
}
