//! Python's `repr()` of a `bytes` value, which the guide's programs print
//! (`Received b'Hello, world'`, `Got response: b'First 10 bytes ...'`).
//! Users compare our output with the guide's, so it matches to the byte.

use std::fmt;

/// Displays bytes as Python's `repr(bytes)` does: `b'...'`, printable ASCII
/// as is, `\t \n \r \\` and the quote escaped, everything else as `\xhh`.
/// The quote is `'` unless the bytes contain `'` and no `"`, as in Python.
#[derive(Debug, Clone, Copy)]
pub struct BytesRepr<'a>(pub &'a [u8]);

impl fmt::Display for BytesRepr<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let quote = if self.0.contains(&b'\'') && !self.0.contains(&b'"') {
            b'"'
        } else {
            b'\''
        };
        write!(f, "b{}", char::from(quote))?;
        for &byte in self.0 {
            match byte {
                b'\\' => f.write_str("\\\\")?,
                b'\t' => f.write_str("\\t")?,
                b'\n' => f.write_str("\\n")?,
                b'\r' => f.write_str("\\r")?,
                _ if byte == quote => write!(f, "\\{}", char::from(byte))?,
                0x20..=0x7e => write!(f, "{}", char::from(byte))?,
                _ => write!(f, "\\x{byte:02x}")?,
            }
        }
        write!(f, "{}", char::from(quote))
    }
}

#[cfg(test)]
mod tests {
    use super::BytesRepr;

    #[test]
    fn matches_python_repr() {
        // Expected strings are what CPython 3.11 prints for repr(b).
        let cases: [(&[u8], &str); 7] = [
            (b"Hello, world", "b'Hello, world'"),
            (b"", "b''"),
            (
                "First 10 bytes of request: binary😃".as_bytes(),
                "b'First 10 bytes of request: binary\\xf0\\x9f\\x98\\x83'",
            ),
            (b"it's", "b\"it's\""),
            (b"it's \"x\"", "b'it\\'s \"x\"'"),
            (b"a\\b\t\n\r\x00\x7f\xff", "b'a\\\\b\\t\\n\\r\\x00\\x7f\\xff'"),
            (b"\"", "b'\"'"),
        ];
        for (bytes, expected) in cases {
            assert_eq!(BytesRepr(bytes).to_string(), expected);
        }
    }
}
