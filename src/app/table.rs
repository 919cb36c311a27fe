//! The search table: query → answer, with each answer's response content
//! encoded once at load time, so a hit costs no serialization and no allocation.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::Answer;
use crate::protocol::Message;
use crate::protocol::codec::encode_message;
use crate::protocol::json::to_python_json;

/// The search table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchTable {
    entries: HashMap<String, Entry>,
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
