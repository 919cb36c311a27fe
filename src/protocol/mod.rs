//! The application tier's wire format (`PROTOCOL.md`): message types, limits
//! and errors. Nothing here knows about sockets; [`codec`] turns bytes into
//! [`Message`]s and back on any byte stream.
//!
//! ```text
//! +---------+---------------------------+------------------------+
//! | u16 BE  | JSON header (UTF-8)       | content                |
//! | hdr len | {"byteorder": ..., ...}   | content-length bytes   |
//! +---------+---------------------------+------------------------+
//! ```

pub mod codec;
pub mod json;
pub mod json_str;

use std::borrow::Cow;

use bytes::Bytes;
use serde::Serialize;

use crate::escape::clip;

pub use codec::MessageCodec;

/// Size of the proto-header: the big-endian length of the JSON header.
pub const PROTO_HEADER_LEN: usize = 2;

/// The largest JSON header the proto-header can announce.
pub const MAX_JSON_HEADER_LEN: usize = u16::MAX as usize;

/// Default limit on `content-length`. Large enough for any request the
/// guide's application makes, small enough that ten thousand connections
/// each sending a maximal message stay within a few GiB.
pub const DEFAULT_MAX_CONTENT_LEN: usize = 1024 * 1024;

/// `content-type` of JSON text content.
pub const TEXT_JSON: &str = "text/json";

/// `content-encoding` of the JSON content we produce.
pub const UTF_8: &str = "utf-8";

/// `content-encoding` of binary content.
pub const BINARY: &str = "binary";

/// `content-type` of the guide client's binary requests.
pub const CLIENT_BINARY_TYPE: &str = "binary/custom-client-binary-type";

/// `content-type` of the guide server's binary responses.
pub const SERVER_BINARY_TYPE: &str = "binary/custom-server-binary-type";

/// The header values nearly every message uses, shared rather than allocated.
const WELL_KNOWN: [&str; 5] = [TEXT_JSON, UTF_8, BINARY, CLIENT_BINARY_TYPE, SERVER_BINARY_TYPE];

/// A header string as a `Cow`: static when it is one of the well-known values.
pub fn intern(value: &str) -> Cow<'static, str> {
    match WELL_KNOWN.iter().find(|known| **known == value) {
        Some(known) => Cow::Borrowed(known),
        None => Cow::Owned(value.to_owned()),
    }
}

/// The sender's native byte order, carried in every header. Informational only:
/// the proto-header is always big-endian whatever this says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ByteOrder {
    Little,
    Big,
}

impl ByteOrder {
    /// This machine's byte order, as Python's `sys.byteorder` reports it.
    pub const NATIVE: ByteOrder = if cfg!(target_endian = "big") {
        ByteOrder::Big
    } else {
        ByteOrder::Little
    };

    /// Parses the header value (`"little"` or `"big"`).
    pub fn from_name(name: &str) -> Option<ByteOrder> {
        match name {
            "little" => Some(ByteOrder::Little),
            "big" => Some(ByteOrder::Big),
            _ => None,
        }
    }
}

/// One protocol message: the header fields and the content. The header's
/// `content-length` is not stored; it is always `content.len()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub byteorder: ByteOrder,
    /// Well-known values (`text/json`, the guide's binary types) are static,
    /// so the common messages cost no allocation for their header strings.
    pub content_type: Cow<'static, str>,
    pub content_encoding: Cow<'static, str>,
    pub content: Bytes,
}

impl Message {
    /// A `text/json`, `utf-8` message whose content is `value` encoded as Python would.
    ///
    /// # Panics
    /// Never for the plain structs and strings this crate serializes; a value
    /// that serde_json cannot encode (a map with non-string keys) is a bug.
    pub fn json<T: Serialize + ?Sized>(value: &T) -> Message {
        let content = json::to_python_json(value).expect("value serializes to JSON");
        Message::json_content(Bytes::from(content))
    }

    /// A `text/json`, `utf-8` message with content already encoded.
    pub fn json_content(content: Bytes) -> Message {
        Message {
            byteorder: ByteOrder::NATIVE,
            content_type: Cow::Borrowed(TEXT_JSON),
            content_encoding: Cow::Borrowed(UTF_8),
            content,
        }
    }

    /// A message with encoding `binary` and the given content type.
    pub fn binary(content_type: impl Into<Cow<'static, str>>, content: impl Into<Bytes>) -> Message {
        Message {
            byteorder: ByteOrder::NATIVE,
            content_type: content_type.into(),
            content_encoding: Cow::Borrowed(BINARY),
            content: content.into(),
        }
    }

    /// Whether the content is JSON text (`content-type: text/json`). Anything
    /// else is treated as binary, as the guide does.
    pub fn is_json(&self) -> bool {
        self.content_type == TEXT_JSON
    }

    /// The content as text, decoded with the declared `content-encoding`.
    ///
    /// # Errors
    /// [`ProtocolError::UnsupportedEncoding`] for an encoding we do not know,
    /// [`ProtocolError::ContentNotDecodable`] for bytes that are not valid in it.
    pub fn text(&self) -> Result<Cow<'_, str>, ProtocolError> {
        decode_text(&self.content, &self.content_encoding)
    }
}

/// The text encodings accepted for `text/json` content: the guide always uses
/// UTF-8; ASCII and Latin-1 are the other codecs Python peers commonly name.
fn decode_text<'a>(bytes: &'a [u8], encoding: &str) -> Result<Cow<'a, str>, ProtocolError> {
    // The guide always says "utf-8": answer that without normalizing (which allocates).
    let normalized = if encoding == UTF_8 {
        Cow::Borrowed(UTF_8)
    } else {
        Cow::Owned(encoding.trim().to_ascii_lowercase().replace('_', "-"))
    };
    let not_decodable = |reason: String| ProtocolError::ContentNotDecodable {
        encoding: clip(encoding),
        reason,
    };
    match normalized.as_ref() {
        "utf-8" | "utf8" | "u8" => std::str::from_utf8(bytes)
            .map(Cow::Borrowed)
            .map_err(|e| not_decodable(e.to_string())),
        "ascii" | "us-ascii" => match bytes.iter().position(|b| !b.is_ascii()) {
            None => Ok(Cow::Borrowed(std::str::from_utf8(bytes).expect("ASCII is UTF-8"))),
            Some(at) => Err(not_decodable(format!(
                "byte 0x{:02x} at offset {at} is not ASCII",
                bytes[at]
            ))),
        },
        "latin-1" | "latin1" | "iso-8859-1" | "iso8859-1" => {
            Ok(Cow::Owned(bytes.iter().map(|&b| char::from(b)).collect()))
        }
        _ => Err(ProtocolError::UnsupportedEncoding(clip(encoding))),
    }
}

/// Everything that can be wrong with a byte stream that claims to carry messages.
/// Each variant names the offending value and, for limits, the limit.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("JSON header is not valid UTF-8 JSON: {0}")]
    HeaderNotJson(String),
    #[error("JSON header is not an object")]
    HeaderNotObject,
    #[error("JSON header lacks required key \"{0}\"")]
    MissingHeaderKey(&'static str),
    #[error("JSON header key \"{key}\" must be {expected}, got {got}")]
    BadHeaderValue {
        key: &'static str,
        expected: &'static str,
        got: String,
    },
    #[error("content-length {len} is above the limit of {max} bytes")]
    ContentTooLarge { len: u64, max: usize },
    #[error("JSON header of {len} bytes is above the limit of {max} bytes")]
    HeaderTooLarge { len: usize, max: usize },
    #[error("unsupported content-encoding \"{0}\" for text/json content (use \"utf-8\")")]
    UnsupportedEncoding(String),
    #[error("content does not decode as {encoding}: {reason}")]
    ContentNotDecodable { encoding: String, reason: String },
    #[error("stream ended in the middle of a message ({buffered} bytes of it left unread)")]
    Truncated { buffered: usize },
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_decodes_declared_encodings() {
        let msg = |bytes: &'static [u8], enc: &'static str| Message {
            byteorder: ByteOrder::Little,
            content_type: TEXT_JSON.into(),
            content_encoding: enc.into(),
            content: Bytes::from_static(bytes),
        };
        assert_eq!(msg("🐶".as_bytes(), "UTF-8").text().unwrap(), "🐶");
        assert_eq!(msg(b"\xe9", "latin-1").text().unwrap(), "é");
        assert!(matches!(
            msg(b"\xff", "utf-8").text(),
            Err(ProtocolError::ContentNotDecodable { .. })
        ));
        assert!(matches!(
            msg(b"\xe9", "ascii").text(),
            Err(ProtocolError::ContentNotDecodable { .. })
        ));
        let err = msg(b"{}", "utf-16").text().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unsupported content-encoding \"utf-16\" for text/json content (use \"utf-8\")"
        );
    }

    #[test]
    fn json_message_uses_python_encoding() {
        #[derive(Serialize)]
        struct R<'a> {
            result: &'a str,
        }
        let msg = Message::json(&R {
            result: "🐾 Playing ball! 🏐",
        });
        assert!(msg.is_json());
        assert_eq!(&msg.content[..], "{\"result\": \"🐾 Playing ball! 🏐\"}".as_bytes());
    }
}
