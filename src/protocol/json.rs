//! JSON text written byte-for-byte like Python's `json.dumps(obj, ensure_ascii=False)`.
//!
//! The guide's peers compare nothing byte-wise, but our test vectors do, and a
//! byte-identical encoding is the simplest proof of compatibility. serde_json
//! already escapes exactly the characters Python escapes (`"`, `\`, and the
//! C0 controls, with the same short forms and lowercase `\u00xx`) and writes
//! other characters raw; only the separators differ (`", "` and `": "` in
//! Python, `","` and `":"` in serde_json's compact form). The formatter below
//! changes just that. Key order is the order of the struct's fields.

use std::io;

use serde::Serialize;
use serde_json::ser::Formatter;

/// A serde_json formatter with Python's default separators.
#[derive(Debug, Clone, Copy, Default)]
pub struct PythonFormatter;

impl Formatter for PythonFormatter {
    fn begin_array_value<W: ?Sized + io::Write>(&mut self, writer: &mut W, first: bool) -> io::Result<()> {
        if first { Ok(()) } else { writer.write_all(b", ") }
    }

    fn begin_object_key<W: ?Sized + io::Write>(&mut self, writer: &mut W, first: bool) -> io::Result<()> {
        if first { Ok(()) } else { writer.write_all(b", ") }
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        writer.write_all(b": ")
    }
}

/// Serializes `value` into `writer` the way Python's `json.dumps(value, ensure_ascii=False)` would.
///
/// # Errors
/// Fails only if `writer` fails or `value` cannot be represented as JSON
/// (a map with non-string keys, for instance).
pub fn write_python_json<W: io::Write, T: Serialize + ?Sized>(writer: W, value: &T) -> serde_json::Result<()> {
    let mut serializer = serde_json::Serializer::with_formatter(writer, PythonFormatter);
    value.serialize(&mut serializer)
}

/// Returns `value` as Python-style JSON bytes.
///
/// # Errors
/// As [`write_python_json`].
pub fn to_python_json<T: Serialize + ?Sized>(value: &T) -> serde_json::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(64);
    write_python_json(&mut out, value)?;
    Ok(out)
}

/// The text of a JSON string whose opening quote has been consumed, if it
/// has no escapes or control characters, and what follows its closing quote.
/// Fast paths for the canonical messages use it; anything else returns `None`
/// and goes to serde_json.
pub fn plain_json_string(bytes: &[u8]) -> Option<(&str, &[u8])> {
    let end = bytes.iter().position(|&b| b == b'"' || b == b'\\' || b < 0x20)?;
    if bytes[end] != b'"' {
        return None;
    }
    Some((std::str::from_utf8(&bytes[..end]).ok()?, &bytes[end + 1..]))
}

/// [`plain_json_string`] for text already known to be UTF-8: the same
/// answer without checking the encoding again (the quote that ends the
/// string is ASCII, so the split falls on a character boundary).
pub fn plain_json_str(text: &str) -> Option<(&str, &str)> {
    let end = text.bytes().position(|b| b == b'"' || b == b'\\' || b < 0x20)?;
    if text.as_bytes()[end] != b'"' {
        return None;
    }
    Some((&text[..end], &text[end + 1..]))
}

/// Whether JSON text starts as an object. serde accepts a JSON array for a
/// struct (fields by position); the protocol wants objects, so callers check.
pub fn starts_as_object(text: &str) -> bool {
    text.trim_start().starts_with('{')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Sample<'a> {
        action: &'a str,
        value: &'a str,
        list: [u32; 2],
    }

    #[test]
    fn separators_match_python() {
        let json = to_python_json(&Sample {
            action: "search",
            value: "x",
            list: [1, 2],
        })
        .unwrap();
        assert_eq!(json, br#"{"action": "search", "value": "x", "list": [1, 2]}"#);
    }

    #[test]
    fn escapes_match_python() {
        // json.dumps('say "hi"\\ back\nnow\t\x01\x7f🐶', ensure_ascii=False)
        let json = to_python_json("say \"hi\"\\ back\nnow\t\u{1}\u{7f}\u{8}\u{c}\r🐶").unwrap();
        assert_eq!(
            String::from_utf8(json).unwrap(),
            "\"say \\\"hi\\\"\\\\ back\\nnow\\t\\u0001\u{7f}\\b\\f\\r🐶\""
        );
    }
}
