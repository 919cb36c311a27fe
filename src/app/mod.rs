//! The guide's application (docs/PROTOCOL.md §4): what a request means and
//! what answers it. A `search` action is answered from a [`SearchTable`],
//! any other content type with its first 10 bytes, and everything wrong
//! with an [`AppError`] whose text is the `Error: ...` result.
//!
//! This module is the schema every side shares: the server answers with
//! [`respond`], clients build requests with [`Request`] and
//! [`client_request`] and read answers with [`Reply`], the load generator
//! computes the answer it expects with [`respond`]. No I/O here;
//! [`serve`] runs the application on a connection.

pub mod serve;
pub mod table;

use std::borrow::Cow;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};

use crate::display_duration;
use crate::escape::clip;
use crate::protocol::json::{plain_json_str, starts_as_object};
use crate::protocol::json_str::JsonStr;
use crate::protocol::{Message, ProtocolError};
use crate::server::budget::Evicted;

pub use crate::protocol::{CLIENT_BINARY_TYPE, SERVER_BINARY_TYPE};
pub use table::{SearchTable, TableError};

/// What a binary response starts with, before the request's first bytes.
pub const BINARY_RESPONSE_PREFIX: &[u8] = b"First 10 bytes of request: ";
/// How many bytes of a binary request the response repeats.
pub const BINARY_ECHO_LEN: usize = 10;
/// The only action a `text/json` request may name.
pub const SEARCH: &str = "search";

/// A request, as the application understands it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request<'a> {
    /// `{"action": "search", "value": ...}` in `text/json` content.
    Search { value: Cow<'a, str> },
    /// Content of any other type.
    Binary { content_type: Cow<'a, str>, content: Bytes },
}

impl<'a> Request<'a> {
    /// Reads a well-framed message as a request.
    ///
    /// # Errors
    /// An [`AppError`] naming what is wrong with the content (a semantic
    /// error: the connection stays usable).
    pub fn parse(message: &'a Message) -> Result<Request<'a>, AppError> {
        if !message.is_json() {
            return Ok(Request::Binary {
                content_type: Cow::Borrowed(&message.content_type),
                content: message.content.clone(),
            });
        }
        match message
            .text()
            .map_err(|error| AppError::Undecodable(error.to_string()))?
        {
            Cow::Borrowed(text) => parse_search(text).map(|value| Request::Search { value }),
            Cow::Owned(text) => parse_search(&text).map(|value| Request::Search {
                value: Cow::Owned(value.into_owned()),
            }),
        }
    }

    /// The message a client sends for this request.
    pub fn to_message(&self) -> Message {
        match self {
            Request::Search { value } => Message::json(&SearchRequest { action: SEARCH, value }),
            Request::Binary { content_type, content } => {
                Message::binary(Cow::Owned(content_type.clone().into_owned()), content.clone())
            }
        }
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

/// Everything the application answers with `Error: ...`. The `Display` text
/// is the `result` sent to the client. Values quoted from the request are
/// cut (see [`clip`]), so an error never grows with what the client sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppError {
    #[error("Error: request content is not valid JSON: {0}.")]
    NotJson(String),
    #[error("Error: request content must be a JSON object.")]
    NotObject,
    #[error("Error: request has no \"action\".")]
    NoAction,
    #[error("Error: action must be a string, got {0}.")]
    ActionNotString(String),
    #[error("Error: invalid action '{0}'.")]
    InvalidAction(String),
    #[error("Error: search request has no \"value\".")]
    NoValue,
    #[error("Error: search value must be a string, got {0}.")]
    ValueNotString(String),
    #[error("Error: {0}.")]
    Undecodable(String),
    /// The stream is not valid messages; the connection closes after this.
    #[error("Error: {0}.")]
    BadFrame(String),
    /// A request took too long to arrive; the connection closes after this.
    #[error("Error: request not completed within {}.", display_duration(*.0))]
    RequestTimeout(Duration),
    /// The server ran short of memory for unfinished requests; the
    /// connection closes after this.
    #[error(
        "Error: the server's buffer for unfinished requests is full (limit {} bytes); this connection held {} bytes.",
        .0.limit,
        .0.held
    )]
    OverBudget(Evicted),
}

impl AppError {
    /// The error kind, for logs and metrics.
    pub fn kind(&self) -> ErrorKind {
        match self {
            AppError::NotJson(_) => ErrorKind::NotJson,
            AppError::NotObject => ErrorKind::NotObject,
            AppError::NoAction => ErrorKind::NoAction,
            AppError::ActionNotString(_) => ErrorKind::ActionNotString,
            AppError::InvalidAction(_) => ErrorKind::InvalidAction,
            AppError::NoValue => ErrorKind::NoValue,
            AppError::ValueNotString(_) => ErrorKind::ValueNotString,
            AppError::Undecodable(_) => ErrorKind::Undecodable,
            AppError::BadFrame(_) => ErrorKind::BadFrame,
            AppError::RequestTimeout(_) => ErrorKind::RequestTimeout,
            AppError::OverBudget(_) => ErrorKind::OverBudget,
        }
    }

    /// The `text/json` response carrying this error.
    pub fn to_message(&self) -> Message {
        result_message(&self.to_string())
    }
}

/// The kinds of [`AppError`], as a closed set of labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    NotJson,
    NotObject,
    NoAction,
    ActionNotString,
    InvalidAction,
    NoValue,
    ValueNotString,
    Undecodable,
    BadFrame,
    RequestTimeout,
    OverBudget,
}

impl ErrorKind {
    /// A short label (`invalid_action`).
    pub fn label(self) -> &'static str {
        match self {
            ErrorKind::NotJson => "not_json",
            ErrorKind::NotObject => "not_object",
            ErrorKind::NoAction => "no_action",
            ErrorKind::ActionNotString => "action_not_string",
            ErrorKind::InvalidAction => "invalid_action",
            ErrorKind::NoValue => "no_value",
            ErrorKind::ValueNotString => "value_not_string",
            ErrorKind::Undecodable => "undecodable",
            ErrorKind::BadFrame => "bad_frame",
            ErrorKind::RequestTimeout => "request_timeout",
            ErrorKind::OverBudget => "over_budget",
        }
    }
}

/// The (action, outcome) labels requests are counted under, indexed by
/// [`Outcome::index`].
pub const REQUEST_LABELS: [(&str, &str); 14] = [
    (SEARCH, "hit"),
    (SEARCH, "miss"),
    ("binary", "binary"),
    ("other", "not_json"),
    ("other", "not_object"),
    ("other", "no_action"),
    ("other", "action_not_string"),
    ("other", "invalid_action"),
    (SEARCH, "no_value"),
    (SEARCH, "value_not_string"),
    ("other", "undecodable"),
    ("other", "bad_frame"),
    ("other", "request_timeout"),
    ("other", "over_budget"),
];

/// How a request was answered, for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// A search the table knew.
    Hit,
    /// A search the table did not know (`No match for ...`).
    Miss,
    /// A binary request, answered with its first bytes.
    Binary,
    /// An `Error: ...` result.
    Error(ErrorKind),
}

impl Outcome {
    /// The request's action: `search`, `binary`, or `other` when the request
    /// named none we know (bounded, so it can label a metric).
    pub fn action(self) -> &'static str {
        match self {
            Outcome::Hit | Outcome::Miss | Outcome::Error(ErrorKind::NoValue | ErrorKind::ValueNotString) => SEARCH,
            Outcome::Binary => "binary",
            Outcome::Error(_) => "other",
        }
    }

    /// This outcome's place in [`REQUEST_LABELS`].
    pub fn index(self) -> usize {
        match self {
            Outcome::Hit => 0,
            Outcome::Miss => 1,
            Outcome::Binary => 2,
            Outcome::Error(kind) => 3 + kind as usize,
        }
    }

    /// `hit`, `miss`, `binary`, or the error kind's label.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Hit => "hit",
            Outcome::Miss => "miss",
            Outcome::Binary => "binary",
            Outcome::Error(kind) => kind.label(),
        }
    }
}

/// A response as the server sends it.
#[derive(Debug)]
pub enum Response<'t> {
    /// A search the table answers: its message, encoded when the table was
    /// loaded, and the message's content (a slice of it).
    Encoded { frame: &'t Bytes, content: &'t Bytes },
    /// Anything else, to encode.
    Message(Message),
}

/// [`respond`], with a table hit given as the encoded message the table
/// keeps, so that answering it costs a copy instead of an encoding.
pub fn respond_encoded<'t>(table: &'t SearchTable, request: &Message) -> (Response<'t>, Outcome) {
    let parsed = Request::parse(request);
    if let Ok(Request::Search { value }) = &parsed
        && let Some((frame, content)) = table.encoded_response(value)
    {
        return (Response::Encoded { frame, content }, Outcome::Hit);
    }
    let (message, outcome) = answer(table, parsed);
    (Response::Message(message), outcome)
}

/// Answers one well-framed request.
pub fn respond(table: &SearchTable, request: &Message) -> (Message, Outcome) {
    answer(table, Request::parse(request))
}

/// The response to a request as parsed (or the error it is).
fn answer(table: &SearchTable, parsed: Result<Request<'_>, AppError>) -> (Message, Outcome) {
    match parsed {
        Ok(Request::Search { value }) => match table.encoded_answer(&value) {
            Some(content) => (Message::json_content(content.clone()), Outcome::Hit),
            None => (result_message(&format!("No match for '{value}'.")), Outcome::Miss),
        },
        Ok(Request::Binary { content, .. }) => (binary_response(&content), Outcome::Binary),
        Err(error) => (error.to_message(), Outcome::Error(error.kind())),
    }
}

/// `First 10 bytes of request: ` and the first 10 bytes of `content`.
fn binary_response(content: &[u8]) -> Message {
    let echoed = &content[..content.len().min(BINARY_ECHO_LEN)];
    let mut response = BytesMut::with_capacity(BINARY_RESPONSE_PREFIX.len() + echoed.len());
    response.put_slice(BINARY_RESPONSE_PREFIX);
    response.put_slice(echoed);
    Message::binary(SERVER_BINARY_TYPE, response.freeze())
}

/// The request the guide's client sends for `ACTION VALUE`: a search
/// request when the action is `search`, otherwise a binary request whose
/// content is the action and value as UTF-8.
pub fn client_request(action: &str, value: &str) -> Message {
    if action == SEARCH {
        Request::Search {
            value: Cow::Borrowed(value),
        }
        .to_message()
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

/// A response as a client reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// A `text/json` response's `result`. A result that is not a string is
    /// given as its JSON text.
    Result(String),
    /// A binary response's content.
    Binary(Bytes),
}

/// Why a response could not be read as a reply.
#[derive(Debug, thiserror::Error)]
pub enum ReplyError {
    #[error("the response does not decode: {0}")]
    Undecodable(ProtocolError),
    #[error("the response is not valid JSON: {0}")]
    NotJson(String),
    #[error("the response has no \"result\"")]
    NoResult,
}

impl Reply {
    /// Reads `response`.
    ///
    /// # Errors
    /// [`ReplyError`] when a `text/json` response is not a JSON object with a `result`.
    pub fn from_message(response: &Message) -> Result<Reply, ReplyError> {
        if !response.is_json() {
            return Ok(Reply::Binary(response.content.clone()));
        }
        let text = response.text().map_err(ReplyError::Undecodable)?;
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|error| ReplyError::NotJson(error.to_string()))?;
        match value.get("result") {
            Some(serde_json::Value::String(result)) => Ok(Reply::Result(result.clone())),
            Some(other) => Ok(Reply::Result(other.to_string())),
            None => Err(ReplyError::NoResult),
        }
    }

    /// Whether this is an `Error: ...` result.
    pub fn is_error(&self) -> bool {
        matches!(self, Reply::Result(result) if result.starts_with("Error: "))
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

/// The search value of a JSON request, or what is wrong with it.
fn parse_search(text: &str) -> Result<Cow<'_, str>, AppError> {
    match parse_canonical_request(text) {
        Some((action, value)) if action == SEARCH => Ok(Cow::Borrowed(value)),
        Some((action, _)) => Err(AppError::InvalidAction(clip(action))),
        None => parse_any_search(text),
    }
}

/// For [`crate::invariants`]: where [`parse_canonical_request`] answers,
/// [`parse_any_search`] gives the same request or the same error.
pub(crate) fn request_parsers_agree(text: &str) -> Result<(), String> {
    if parse_canonical_request(text).is_none() {
        return Ok(());
    }
    let (fast, any) = (parse_search(text), parse_any_search(text));
    let same = match (&fast, &any) {
        (Ok(a), Ok(b)) => a == b,
        (Err(a), Err(b)) => a.to_string() == b.to_string(),
        _ => false,
    };
    if same {
        Ok(())
    } else {
        Err(format!("request {text:?}: fast path {fast:?}, serde_json {any:?}"))
    }
}

/// Reads any `search` request the protocol allows, with errors that name
/// what is wrong.
fn parse_any_search(text: &str) -> Result<Cow<'_, str>, AppError> {
    if !starts_as_object(text) {
        return Err(match serde_json::from_str::<IgnoredAny>(text) {
            Ok(_) => AppError::NotObject,
            Err(error) => AppError::NotJson(error.to_string()),
        });
    }
    let request: IncomingRequest<'_> =
        serde_json::from_str(text).map_err(|error| AppError::NotJson(error.to_string()))?;
    let action = match request.action {
        None => return Err(AppError::NoAction),
        Some(JsonStr::NotStr(got)) => return Err(AppError::ActionNotString(got)),
        Some(JsonStr::Str(action)) => action,
    };
    if action != SEARCH {
        return Err(AppError::InvalidAction(clip(&action)));
    }
    match request.value {
        None => Err(AppError::NoValue),
        Some(JsonStr::NotStr(got)) => Err(AppError::ValueNotString(got)),
        Some(JsonStr::Str(value)) => Ok(value),
    }
}

/// Reads `{"action": "...", "value": "..."}` exactly as the guide's client
/// writes it, strings without escapes; `None` for any other form, which
/// then goes through serde_json with the same result.
fn parse_canonical_request(text: &str) -> Option<(&str, &str)> {
    let rest = text.strip_prefix("{\"action\": \"")?;
    let (action, rest) = plain_json_str(rest)?;
    let (value, rest) = plain_json_str(rest.strip_prefix(", \"value\": \"")?)?;
    (rest == "}").then_some((action, value))
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

    #[test]
    fn an_encoded_hit_is_the_encoding_of_the_answer() {
        use tokio_util::codec::Encoder;
        let table = SearchTable::builtin();
        for query in ["morpheus", "ring", "\u{1f436}"] {
            let request = client_request(SEARCH, query);
            let (Response::Encoded { frame, content }, Outcome::Hit) = respond_encoded(&table, &request) else {
                panic!("{query} is a hit");
            };
            let answer = respond(&table, &request).0;
            let mut expected = bytes::BytesMut::new();
            crate::protocol::MessageCodec::new()
                .encode(&answer, &mut expected)
                .unwrap();
            assert_eq!(&frame[..], &expected[..], "{query}");
            assert_eq!(content, &answer.content, "{query}");
        }
        let miss = client_request(SEARCH, "nobody");
        assert!(matches!(
            respond_encoded(&table, &miss),
            (Response::Message(_), Outcome::Miss)
        ));
    }

    fn result_of(response: &Message) -> String {
        match Reply::from_message(response).unwrap() {
            Reply::Result(result) => result,
            Reply::Binary(_) => panic!("expected a JSON response"),
        }
    }

    fn answer(table: &SearchTable, request: &Message) -> String {
        result_of(&respond(table, request).0)
    }

    #[test]
    fn search_answers_from_table() {
        let table = SearchTable::builtin();
        let (response, outcome) = respond(&table, &client_request("search", "morpheus"));
        assert_eq!(result_of(&response), "Follow the white rabbit. 🐰");
        assert_eq!(
            (outcome, outcome.action(), outcome.label()),
            (Outcome::Hit, "search", "hit")
        );
        assert_eq!(answer(&table, &client_request("search", "🐶")), "🐾 Playing ball! 🏐");
        let (response, outcome) = respond(&table, &client_request("search", "needle"));
        assert_eq!(result_of(&response), "No match for 'needle'.");
        assert_eq!(outcome, Outcome::Miss);
    }

    #[test]
    fn semantic_errors_say_what_is_wrong() {
        let table = SearchTable::builtin();
        let cases = [
            (
                r#"{"action": "find", "value": "x"}"#,
                "Error: invalid action 'find'.",
                ErrorKind::InvalidAction,
            ),
            (
                r#"{"action": "find", "value": 5}"#,
                "Error: invalid action 'find'.",
                ErrorKind::InvalidAction,
            ),
            (
                r#"{"value": "x"}"#,
                "Error: request has no \"action\".",
                ErrorKind::NoAction,
            ),
            (
                r#"{"action": "search"}"#,
                "Error: search request has no \"value\".",
                ErrorKind::NoValue,
            ),
            (
                r#"{"action": "search", "value": 42}"#,
                "Error: search value must be a string, got 42.",
                ErrorKind::ValueNotString,
            ),
            (
                r#"{"action": ["search"], "value": "x"}"#,
                "Error: action must be a string, got an array.",
                ErrorKind::ActionNotString,
            ),
            (
                r#"[1, 2]"#,
                "Error: request content must be a JSON object.",
                ErrorKind::NotObject,
            ),
            (
                r#"["search", "morpheus"]"#,
                "Error: request content must be a JSON object.",
                ErrorKind::NotObject,
            ),
        ];
        for (content, expected, kind) in cases {
            let (response, outcome) = respond(&table, &json_request(content));
            assert_eq!(result_of(&response), expected, "request {content}");
            assert_eq!(outcome, Outcome::Error(kind), "request {content}");
        }
        let not_json = answer(&table, &json_request("{nope"));
        assert!(
            not_json.starts_with("Error: request content is not valid JSON: "),
            "{not_json}"
        );
    }

    #[test]
    fn a_huge_invalid_action_is_quoted_cut() {
        let table = SearchTable::builtin();
        let action = "x".repeat(100_000);
        let request = json_request(&format!(r#"{{"action": "{action}", "value": ""}}"#));
        let result = answer(&table, &request);
        assert!(result.len() < 300, "{} bytes", result.len());
        assert!(result.ends_with("…(100000 bytes in all)'."), "{result}");
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
        let (response, outcome) = respond(&table, &client_request("binary", "😃"));
        assert_eq!((outcome, outcome.action()), (Outcome::Binary, "binary"));
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
        assert_eq!(
            &respond(&table, &short).0.content[..],
            b"First 10 bytes of request: abc"
        );
    }

    #[test]
    fn requests_round_trip_through_messages() {
        let search = Request::Search {
            value: Cow::Borrowed("🐶"),
        };
        let message = search.to_message();
        assert_eq!(message, client_request("search", "🐶"));
        assert_eq!(Request::parse(&message).unwrap(), search);
        let binary = client_request("binary", "x");
        assert_eq!(
            Request::parse(&binary).unwrap(),
            Request::Binary {
                content_type: Cow::Borrowed(CLIENT_BINARY_TYPE),
                content: Bytes::from_static(b"binaryx")
            }
        );
    }

    #[test]
    fn every_outcome_has_its_metric_label() {
        let kinds = [
            ErrorKind::NotJson,
            ErrorKind::NotObject,
            ErrorKind::NoAction,
            ErrorKind::ActionNotString,
            ErrorKind::InvalidAction,
            ErrorKind::NoValue,
            ErrorKind::ValueNotString,
            ErrorKind::Undecodable,
            ErrorKind::BadFrame,
            ErrorKind::RequestTimeout,
            ErrorKind::OverBudget,
        ];
        let outcomes = [Outcome::Hit, Outcome::Miss, Outcome::Binary]
            .into_iter()
            .chain(kinds.into_iter().map(Outcome::Error));
        for outcome in outcomes {
            assert_eq!(
                REQUEST_LABELS[outcome.index()],
                (outcome.action(), outcome.label()),
                "{outcome:?}"
            );
        }
    }

    #[test]
    fn replies_are_read_and_errors_recognised() {
        let error = AppError::InvalidAction("find".into()).to_message();
        let reply = Reply::from_message(&error).unwrap();
        assert_eq!(reply, Reply::Result("Error: invalid action 'find'.".into()));
        assert!(reply.is_error());
        let miss = Reply::from_message(&result_message("No match for 'x'.")).unwrap();
        assert!(!miss.is_error());
        assert!(matches!(
            Reply::from_message(&json_request("{}")),
            Err(ReplyError::NoResult)
        ));
    }
}
