//! Peer-supplied text made safe for a log line or a terminal.
//!
//! Everything a peer sends is hostile, including what ends up in our own
//! output: a newline in a search value forges a whole log line, a carriage
//! return overwrites one, an escape sequence reprograms the reader's terminal,
//! a megabyte value floods the log. [`Escaped`] shows such text with every
//! control character spelled out (`\n`, `\r`, `\t`, `\0`, `\x1b`, `\u{202e}`)
//! and cuts it after [`LOG_VALUE_LIMIT`] bytes, noting the full length.
//! [`Terminal`] escapes the same characters but never cuts: it is for
//! results a user asked to see whole.

use std::fmt::{self, Write};

/// Bytes of a peer-supplied value shown in a log line; the rest is counted.
pub const LOG_VALUE_LIMIT: usize = 200;

/// Displays peer-supplied bytes escaped and cut to [`LOG_VALUE_LIMIT`] bytes.
/// Valid UTF-8 shows as text; invalid bytes show as `\xHH`.
#[derive(Debug, Clone, Copy)]
pub struct Escaped<'a>(pub &'a [u8]);

impl<'a> Escaped<'a> {
    /// Escapes a string.
    pub fn str(text: &'a str) -> Escaped<'a> {
        Escaped(text.as_bytes())
    }
}

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut shown = &self.0[..self.0.len().min(LOG_VALUE_LIMIT)];
        // Cut before a character the limit would split, not through it.
        if let Err(error) = std::str::from_utf8(shown)
            && error.error_len().is_none()
            && shown.len() < self.0.len()
        {
            shown = &shown[..error.valid_up_to()];
        }
        write_escaped(f, shown)?;
        if shown.len() < self.0.len() {
            write!(f, "…({} bytes in all)", self.0.len())?;
        }
        Ok(())
    }
}

/// Displays peer-supplied bytes escaped like [`Escaped`] but whole: for a
/// debug line whose point is the full value (a PROXY TLV), bounded by the
/// protocol rather than by us.
#[derive(Debug, Clone, Copy)]
pub struct Unclipped<'a>(pub &'a [u8]);

impl fmt::Display for Unclipped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_escaped(f, self.0)
    }
}

/// Displays text escaped like [`Escaped`] but whole: for a result the user
/// asked for, printed on their terminal.
#[derive(Debug, Clone, Copy)]
pub struct Terminal<'a>(pub &'a str);

impl fmt::Display for Terminal<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_escaped(f, self.0.as_bytes())
    }
}

/// Writes `bytes` with control characters escaped. A UTF-8 sequence cut by
/// the length limit shows as `\xHH` bytes, never as a replacement character
/// that would hide what was sent.
fn write_escaped(f: &mut fmt::Formatter<'_>, mut bytes: &[u8]) -> fmt::Result {
    while !bytes.is_empty() {
        let (valid, rest) = match std::str::from_utf8(bytes) {
            Ok(text) => (text, &[][..]),
            Err(error) => {
                let (valid, rest) = bytes.split_at(error.valid_up_to());
                (std::str::from_utf8(valid).expect("checked valid"), rest)
            }
        };
        for c in valid.chars() {
            write_char(f, c)?;
        }
        if let Some((&bad, rest)) = rest.split_first() {
            write!(f, "\\x{bad:02x}")?;
            bytes = rest;
        } else {
            bytes = rest;
        }
    }
    Ok(())
}

fn write_char(f: &mut fmt::Formatter<'_>, c: char) -> fmt::Result {
    match c {
        '\n' => f.write_str("\\n"),
        '\r' => f.write_str("\\r"),
        '\t' => f.write_str("\\t"),
        '\0' => f.write_str("\\0"),
        '\\' => f.write_str("\\\\"),
        c if is_unsafe(c) => {
            if (c as u32) < 0x100 {
                write!(f, "\\x{:02x}", c as u32)
            } else {
                write!(f, "\\u{{{:x}}}", c as u32)
            }
        }
        c => f.write_char(c),
    }
}

/// Characters that move the cursor, change the terminal's state, or reorder
/// what is shown: C0 and C1 controls, DEL, and the Unicode bidirectional
/// overrides and isolates ("Trojan Source", CVE-2021-42574), line and
/// paragraph separators.
pub(crate) fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}'
        )
}

/// Cuts a peer-supplied value kept inside an error (which may be sent back to
/// the peer and logged) to [`LOG_VALUE_LIMIT`] bytes at a character boundary,
/// noting the full length.
pub fn clip(text: &str) -> String {
    if text.len() <= LOG_VALUE_LIMIT {
        return text.to_owned();
    }
    let mut end = LOG_VALUE_LIMIT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…({} bytes in all)", &text[..end], text.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_cannot_forge_or_repaint_lines() {
        let forged = "x\n2026-11-22T00:00:00Z  INFO Accepted connection from 10.0.0.1\r\x1b[2J\0\x7f";
        assert_eq!(
            Escaped::str(forged).to_string(),
            "x\\n2026-11-22T00:00:00Z  INFO Accepted connection from 10.0.0.1\\r\\x1b[2J\\0\\x7f"
        );
        assert_eq!(Escaped::str("a\u{202e}b\u{85}c").to_string(), "a\\u{202e}b\\x85c");
        assert_eq!(Escaped::str("back\\slash").to_string(), "back\\\\slash");
    }

    #[test]
    fn ordinary_text_and_emoji_are_untouched() {
        let text = "Follow the white rabbit. 🐰 «ça va»";
        assert_eq!(Escaped::str(text).to_string(), text);
        assert_eq!(Terminal(text).to_string(), text);
    }

    #[test]
    fn invalid_utf8_shows_as_hex_bytes() {
        assert_eq!(Escaped(b"ok\xff\xfe!").to_string(), "ok\\xff\\xfe!");
    }

    #[test]
    fn long_values_are_cut_with_their_length() {
        let long = "a".repeat(1000);
        let shown = Escaped::str(&long).to_string();
        assert_eq!(shown, format!("{}…(1000 bytes in all)", "a".repeat(LOG_VALUE_LIMIT)));
        // The cut falls before a character the limit would split.
        let emoji = format!("{}🐰", "a".repeat(LOG_VALUE_LIMIT - 1));
        let shown = Escaped::str(&emoji).to_string();
        assert_eq!(shown, format!("{}…(203 bytes in all)", "a".repeat(LOG_VALUE_LIMIT - 1)));
        // Invalid bytes at the cut still show as bytes.
        let mut bytes = vec![b'a'; LOG_VALUE_LIMIT - 1];
        bytes.extend_from_slice(b"\xff\xff");
        assert!(Escaped(&bytes).to_string().ends_with("\\xff…(201 bytes in all)"));
        // The terminal form never cuts.
        assert_eq!(Terminal(&long).to_string(), long);
    }

    #[test]
    fn clip_keeps_short_values_and_cuts_at_a_character_boundary() {
        assert_eq!(clip("short"), "short");
        let value = "é".repeat(150); // 300 bytes
        let clipped = clip(&value);
        assert!(clipped.starts_with(&"é".repeat(100)), "{clipped}");
        assert!(clipped.ends_with("…(300 bytes in all)"), "{clipped}");
    }
}
