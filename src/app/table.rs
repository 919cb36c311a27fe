//! The search table: query → answer, with each answer's response content
//! encoded once at load time, so a hit costs no serialization and no allocation.

use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::Answer;
use crate::protocol::Message;
use crate::protocol::codec::encode_message;
use crate::protocol::json::to_python_json;

/// The search table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchTable {
    entries: HashMap<String, Entry, BuildHasherDefault<Fnv1a>>,
}

/// FNV-1a, the table's hash. std's default (SipHash, keyed per process) is
/// there to stop clients from flooding a map with keys that collide; here
/// only the operator adds keys, and a client can only look one up, so no
/// client can lengthen a probe. SipHash cost about 180 instructions a
/// search (callgrind, `bench app -c 1`); this, about 40 for a short query.
#[derive(Debug, Clone, Copy)]
struct Fnv1a(u64);

impl Default for Fnv1a {
    fn default() -> Fnv1a {
        Fnv1a(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv1a {
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0 ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    answer: String,
    /// `{"result": "<answer>"}` as Python would write it: the tail of
    /// `response_frame`, not a copy.
    response_content: Bytes,
    /// The whole response message, encoded: what a hit sends.
    response_frame: Bytes,
}

impl Entry {
    fn new(answer: String) -> Entry {
        let content = Bytes::from(
            to_python_json(&Answer {
                result: Cow::Borrowed(&answer),
            })
            .expect("strings serialize"),
        );
        let frame = encode_message(&Message::json_content(content.clone())).expect("an answer's message encodes");
        Entry {
            answer,
            response_content: frame.slice(frame.len() - content.len()..),
            response_frame: frame,
        }
    }
}

/// Why a `--data` file could not be used. The I/O or JSON error is the
/// source, not part of the message, so `{:#}` shows it once.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("cannot read search table {}", .path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("search table {} is not a JSON object of string to string", .path.display())]
    Malformed { path: PathBuf, source: serde_json::Error },
}

impl SearchTable {
    /// The guide's three entries.
    pub fn builtin() -> SearchTable {
        let entries = [
            ("morpheus", "Follow the white rabbit. \u{1f430}"),
            ("ring", "In the caves beneath the Misty Mountains. \u{1f48d}"),
            ("\u{1f436}", "\u{1f43e} Playing ball! \u{1f3d0}"),
        ];
        SearchTable::from_pairs(entries.into_iter().map(|(q, a)| (q.to_owned(), a.to_owned())))
    }

    /// Loads a JSON object of query to answer. The file is read whole and
    /// parsed from memory, which keeps a million-entry table to about a second.
    ///
    /// # Errors
    /// [`TableError::Read`] if the file cannot be read, [`TableError::Malformed`]
    /// if it is not a JSON object whose values are all strings.
    pub fn load(path: &Path) -> Result<SearchTable, TableError> {
        let text = std::fs::read(path).map_err(|source| TableError::Read {
            path: path.to_owned(),
            source,
        })?;
        let entries: HashMap<String, String> =
            serde_json::from_slice(&text).map_err(|source| TableError::Malformed {
                path: path.to_owned(),
                source,
            })?;
        Ok(SearchTable::from_pairs(entries))
    }

    /// A table of the given query → answer pairs.
    pub fn from_pairs(pairs: impl IntoIterator<Item = (String, String)>) -> SearchTable {
        SearchTable {
            entries: pairs
                .into_iter()
                .map(|(query, answer)| (query, Entry::new(answer)))
                .collect(),
        }
    }

    /// The answer for `query`, if the table has one.
    pub fn lookup(&self, query: &str) -> Option<&str> {
        self.entries.get(query).map(|entry| entry.answer.as_str())
    }

    /// The encoded `{"result": ...}` content for `query`, if the table has one.
    pub fn encoded_answer(&self, query: &str) -> Option<&Bytes> {
        self.entries.get(query).map(|entry| &entry.response_content)
    }

    /// The whole encoded response message for `query`, and its content
    /// (a slice of it), if the table has one.
    pub fn encoded_response(&self, query: &str) -> Option<(&Bytes, &Bytes)> {
        self.entries
            .get(query)
            .map(|entry| (&entry.response_frame, &entry.response_content))
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the table has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_fnv_1a_and_every_key_is_found() {
        let fnv = |bytes: &[u8]| {
            let mut hasher = Fnv1a::default();
            hasher.write(bytes);
            hasher.finish()
        };
        // The reference vectors of FNV-1a, 64-bit.
        assert_eq!(fnv(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv(b"foobar"), 0x8594_4171_f739_67e8);
        let table = SearchTable::from_pairs((0..20_000).map(|i| (format!("key{i}"), format!("answer {i}"))));
        for i in (0..20_000).step_by(7) {
            assert_eq!(table.lookup(&format!("key{i}")), Some(format!("answer {i}").as_str()));
            assert_eq!(table.lookup(&format!("key{}", i + 20_000)), None);
        }
    }

    #[test]
    fn table_loads_from_file_with_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.json");
        std::fs::write(&good, r#"{"neo": "the one", "🐶": "woof"}"#).unwrap();
        let table = SearchTable::load(&good).unwrap();
        assert_eq!(table.len(), 2);
        assert_eq!(table.lookup("neo"), Some("the one"));
        assert_eq!(&table.encoded_answer("neo").unwrap()[..], br#"{"result": "the one"}"#);

        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, r#"{"neo": 1}"#).unwrap();
        let err = SearchTable::load(&bad).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "search table {} is not a JSON object of string to string",
                bad.display()
            )
        );
        assert!(
            std::error::Error::source(&err).is_some(),
            "the JSON error is the source"
        );

        let missing = dir.path().join("missing.json");
        let err = SearchTable::load(&missing).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("cannot read search table {}", missing.display())
        );
    }
}
