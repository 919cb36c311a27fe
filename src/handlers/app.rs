//! The guide's application: a `search` action answered from a lookup table,
//! binary requests answered with their first 10 bytes (PROTOCOL.md §3), and
//! the `Error: ...` results of §5.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use bytes::{BufMut, Bytes, BytesMut};
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};

use crate::protocol::json::{plain_json_string, starts_as_object, to_python_json};
use crate::protocol::json_str::JsonStr;
use crate::protocol::{Message, ProtocolError};

pub use crate::protocol::{CLIENT_BINARY_TYPE, SERVER_BINARY_TYPE};
/// What a binary response starts with, before the request's first bytes.
pub const BINARY_RESPONSE_PREFIX: &[u8] = b"First 10 bytes of request: ";
/// How many bytes of a binary request the response repeats.
pub const BINARY_ECHO_LEN: usize = 10;

/// The search table: query to answer, with each answer's response content
/// encoded once up front, so a hit costs no serialization and no allocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchTable {
    entries: HashMap<String, Entry>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    answer: String,
    /// `{"result": "<answer>"}` as Python would write it.
    response_content: Bytes,
}

impl Entry {
    fn new(answer: String) -> Entry {
        let response_content = Bytes::from(
            to_python_json(&Answer {
                result: Cow::Borrowed(&answer),
            })
            .expect("strings serialize"),
        );
        Entry {
            answer,
            response_content,
        }
    }
}

/// Why a `--data` file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("cannot read search table {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("search table {path} is not a JSON object of string to string: {source}")]
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

    fn from_pairs(pairs: impl IntoIterator<Item = (String, String)>) -> SearchTable {
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

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the table has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The JSON content of a search request.
#[derive(Debug, Serialize)]
struct SearchRequest<'a> {
    action: &'a str,
    value: &'a str,
}

/// The JSON content of every `text/json` response.
#[derive(Debug, Serialize, Deserialize)]
pub struct Answer<'a> {
    #[serde(borrow)]
    pub result: Cow<'a, str>,
}

/// The request the guide's client sends for `ACTION VALUE`: a JSON search
/// request when the action is `search`, otherwise a binary request whose
/// content is the action and value as UTF-8.
pub fn client_request(action: &str, value: &str) -> Message {
    if action == "search" {
        Message::json(&SearchRequest { action, value })
    } else {
        Message::binary(CLIENT_BINARY_TYPE, format!("{action}{value}").into_bytes())
    }
}

/// A `text/json` response carrying `{"result": text}`.
pub fn result_message(text: &str) -> Message {
    Message::json(&Answer {
        result: Cow::Borrowed(text),
    })
}

/// The response sent before closing a connection whose stream could not be decoded.
pub fn framing_error_response(error: &ProtocolError) -> Message {
    result_message(&format!("Error: {error}."))
}

/// Answers one well-framed request.
pub fn respond(table: &SearchTable, request: &Message) -> Message {
    if !request.is_json() {
        let echoed = &request.content[..request.content.len().min(BINARY_ECHO_LEN)];
        let mut content = BytesMut::with_capacity(BINARY_RESPONSE_PREFIX.len() + echoed.len());
        content.put_slice(BINARY_RESPONSE_PREFIX);
        content.put_slice(echoed);
        return Message::binary(SERVER_BINARY_TYPE, content.freeze());
    }
    let text = match request.text() {
        Ok(text) => text,
        Err(error) => return result_message(&format!("Error: {error}.")),
    };
    match answer_json(table, &text) {
        Ok(hit) => Message {
            content: hit.clone(),
            ..Message::json_content(Bytes::new())
        },
        Err(answer) => result_message(&answer),
    }
}

/// Fields of a JSON request; strings without escapes are borrowed.
#[derive(Deserialize)]
struct IncomingRequest<'a> {
    #[serde(borrow, default)]
    action: Option<JsonStr<'a>>,
    #[serde(borrow, default)]
    value: Option<JsonStr<'a>>,
}

/// The pre-encoded content for a table hit, or the text of any other result.
fn answer_json<'t>(table: &'t SearchTable, text: &str) -> Result<&'t Bytes, String> {
    if let Some((action, query)) = parse_canonical_request(text) {
        return answer(table, action, query);
    }
    if !starts_as_object(text) {
        return Err(match serde_json::from_str::<IgnoredAny>(text) {
            Ok(_) => "Error: request content must be a JSON object.".to_owned(),
            Err(error) => format!("Error: request content is not valid JSON: {error}."),
        });
    }
    let request: IncomingRequest<'_> =
        serde_json::from_str(text).map_err(|error| format!("Error: request content is not valid JSON: {error}."))?;
    let action = match request.action {
        None => return Err("Error: request has no \"action\".".to_owned()),
        Some(JsonStr::NotStr(got)) => return Err(format!("Error: action must be a string, got {got}.")),
        Some(JsonStr::Str(action)) => action,
    };
    if action != "search" {
        return Err(format!("Error: invalid action '{action}'."));
    }
    match request.value {
        None => Err("Error: search request has no \"value\".".to_owned()),
        Some(JsonStr::NotStr(got)) => Err(format!("Error: search value must be a string, got {got}.")),
        Some(JsonStr::Str(query)) => answer(table, &action, &query),
    }
}

/// The answer to a well-formed request with string action and value.
fn answer<'t>(table: &'t SearchTable, action: &str, query: &str) -> Result<&'t Bytes, String> {
    if action != "search" {
        return Err(format!("Error: invalid action '{action}'."));
    }
    match table.entries.get(query) {
        Some(entry) => Ok(&entry.response_content),
        None => Err(format!("No match for '{query}'.")),
    }
}

/// Reads `{"action": "...", "value": "..."}` exactly as the guide's client
/// writes it, strings without escapes; `None` for any other form, which
/// then goes through serde_json with the same result.
fn parse_canonical_request(text: &str) -> Option<(&str, &str)> {
    let rest = text.as_bytes().strip_prefix(b"{\"action\": \"")?;
    let (action, rest) = plain_json_string(rest)?;
    let (value, rest) = plain_json_string(rest.strip_prefix(b", \"value\": \"")?)?;
    (rest == b"}").then_some((action, value))
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::protocol::ByteOrder;

    fn json_request(content: &str) -> Message {
        Message {
            content: Bytes::copy_from_slice(content.as_bytes()),
            ..Message::json(&())
        }
    }

    fn result_of(response: &Message) -> String {
        assert!(response.is_json());
        let answer: Answer<'_> = serde_json::from_slice(&response.content).unwrap();
        answer.result.into_owned()
    }

    #[test]
    fn search_answers_from_table() {
        let table = SearchTable::builtin();
        assert_eq!(
            result_of(&respond(&table, &client_request("search", "morpheus"))),
            "Follow the white rabbit. 🐰"
        );
        assert_eq!(
            result_of(&respond(&table, &client_request("search", "🐶"))),
            "🐾 Playing ball! 🏐"
        );
        assert_eq!(
            result_of(&respond(&table, &client_request("search", "needle"))),
            "No match for 'needle'."
        );
    }

    #[test]
    fn semantic_errors_say_what_is_wrong() {
        let table = SearchTable::builtin();
        let cases = [
            (r#"{"action": "find", "value": "x"}"#, "Error: invalid action 'find'."),
            (r#"{"action": "find", "value": 5}"#, "Error: invalid action 'find'."),
            (r#"{"value": "x"}"#, "Error: request has no \"action\"."),
            (r#"{"action": "search"}"#, "Error: search request has no \"value\"."),
            (
                r#"{"action": "search", "value": 42}"#,
                "Error: search value must be a string, got 42.",
            ),
            (
                r#"{"action": ["search"], "value": "x"}"#,
                "Error: action must be a string, got an array.",
            ),
            (r#"[1, 2]"#, "Error: request content must be a JSON object."),
            (
                r#"["search", "morpheus"]"#,
                "Error: request content must be a JSON object.",
            ),
        ];
        for (content, expected) in cases {
            assert_eq!(
                result_of(&respond(&table, &json_request(content))),
                expected,
                "request {content}"
            );
        }
        let not_json = result_of(&respond(&table, &json_request("{nope")));
        assert!(
            not_json.starts_with("Error: request content is not valid JSON: "),
            "{not_json}"
        );
    }

    #[test]
    fn canonical_requests_are_read_directly() {
        assert_eq!(
            parse_canonical_request(r#"{"action": "search", "value": "🐶"}"#),
            Some(("search", "🐶"))
        );
        assert_eq!(
            parse_canonical_request(r#"{"action": "find", "value": ""}"#),
            Some(("find", ""))
        );
        for other in [
            r#"{"action":"search","value":"x"}"#,
            r#"{"action": "search", "value": "a\"b"}"#,
            r#"{"value": "x", "action": "search"}"#,
            r#"{"action": "search", "value": "x"} "#,
        ] {
            assert_eq!(parse_canonical_request(other), None, "{other}");
        }
        // Both paths answer alike.
        let table = SearchTable::builtin();
        let compact = json_request(r#"{"action":"search","value":"morpheus"}"#);
        assert_eq!(
            respond(&table, &compact),
            respond(&table, &client_request("search", "morpheus"))
        );
    }

    #[test]
    fn binary_requests_get_first_ten_bytes() {
        let table = SearchTable::builtin();
        let response = respond(&table, &client_request("binary", "😃"));
        assert_eq!(response.content_type, SERVER_BINARY_TYPE);
        assert_eq!(response.content_encoding, "binary");
        assert_eq!(
            &response.content[..],
            b"First 10 bytes of request: binary\xf0\x9f\x98\x83"
        );
        let short = Message {
            byteorder: ByteOrder::Big,
            ..Message::binary("application/octet-stream", &b"abc"[..])
        };
        assert_eq!(&respond(&table, &short).content[..], b"First 10 bytes of request: abc");
    }

    #[test]
    fn table_loads_from_file_with_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.json");
        std::fs::write(&good, r#"{"neo": "the one", "🐶": "woof"}"#).unwrap();
        let table = SearchTable::load(&good).unwrap();
        assert_eq!(table.len(), 2);
        assert_eq!(table.lookup("neo"), Some("the one"));

        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, r#"{"neo": 1}"#).unwrap();
        let err = SearchTable::load(&bad).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!(
                "search table {} is not a JSON object of string to string",
                bad.display()
            )),
            "{err}"
        );

        let missing = dir.path().join("missing.json");
        let err = SearchTable::load(&missing).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("cannot read search table {}", missing.display())),
            "{err}"
        );
    }
}
