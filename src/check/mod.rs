//! `sockets check`: a conformance checker for any server of the application
//! protocol — ours, the guide's, anyone's.
//!
//! A catalogue of cases ([`cases`]) each opens its own connections, sends
//! bytes, and compares what comes back with what the protocol requires.
//! Two profiles: [`Profile::Guide`] asks only what the guide's own server
//! does (one request per connection, byte-exact answers); [`Profile::Robust`]
//! asks what `docs/PROTOCOL.md` specifies on top (pipelining, half-close,
//! error answers, limits, isolation). Every wait is bounded; a server that
//! misbehaves gets a verdict, never a hung or crashed checker.

pub mod cases;

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::codec::Decoder;

use crate::app::{Reply, SearchTable, respond};
use crate::protocol::{Message, MessageCodec};
use crate::transport::{ClientStream, Connector};

/// Which behaviour a server is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// What the guide's server does: one request per connection, answered
    /// byte-exact, whatever the segmentation.
    Guide,
    /// `docs/PROTOCOL.md`: the guide's cases and pipelining, half-close,
    /// error answers, limits and isolation.
    Robust,
}

/// A case's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    Fail,
    /// An advisory case failed: reported, not counted against the server.
    Warn,
    /// Not run (it needs an option that was not given).
    Skip,
}

/// What a case observed: whether it is what the protocol requires, and
/// what happened, in words.
#[derive(Debug, Clone)]
pub struct Observed {
    pub ok: bool,
    pub happened: String,
}

impl Observed {
    pub fn pass(happened: impl Into<String>) -> Observed {
        Observed {
            ok: true,
            happened: happened.into(),
        }
    }

    pub fn fail(happened: impl Into<String>) -> Observed {
        Observed {
            ok: false,
            happened: happened.into(),
        }
    }
}

/// A case's future.
pub type CaseFuture<'a> = Pin<Box<dyn Future<Output = Observed> + Send + 'a>>;

/// One case of the catalogue.
pub struct Case {
    pub name: &'static str,
    /// The profiles it belongs to.
    pub profiles: &'static [Profile],
    /// Failing it fails the run (otherwise it is advisory: a warning).
    pub required: bool,
    /// What is sent, in words.
    pub sent: &'static str,
    /// What the protocol requires, in words.
    pub expected: &'static str,
    pub run: for<'a> fn(&'a Checker) -> CaseFuture<'a>,
}

/// A case's line in the report.
#[derive(Debug, Clone, Serialize)]
pub struct CaseReport {
    pub case: &'static str,
    pub sent: &'static str,
    pub expected: &'static str,
    pub happened: String,
    pub verdict: Verdict,
    pub required: bool,
    pub milliseconds: f64,
    /// The server's CPU time during the case, with `--pid`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_cpu_ms: Option<f64>,
}

/// The checker's settings.
pub struct CheckConfig {
    pub connector: Connector,
    pub profile: Profile,
    /// The longest any one wait may take.
    pub wait: Duration,
    /// A server process whose CPU time to report per case.
    pub pid: Option<u32>,
    /// The server's idle timeout, when known: enables the `idle-timeout` case.
    pub idle_timeout: Option<Duration>,
    /// Run only the cases with these names (all when empty).
    pub only: Vec<String>,
}

/// Runs cases against one server.
pub struct Checker {
    pub config: CheckConfig,
    table: SearchTable,
}

/// The largest response a case reads: far above anything a case asks for,
/// so a server that streams garbage costs bounded memory.
const MAX_RESPONSE: usize = 4 * 1024 * 1024;

impl Checker {
    pub fn new(config: CheckConfig) -> Checker {
        Checker {
            config,
            table: SearchTable::builtin(),
        }
    }

    /// The cases this run will consider (its profile's, or those named).
    pub fn selected(&self) -> Vec<&'static Case> {
        cases::CATALOGUE
            .iter()
            .filter(|case| case.profiles.contains(&self.config.profile))
            .filter(|case| self.config.only.is_empty() || self.config.only.iter().any(|name| name == case.name))
            .collect()
    }

    /// Runs every selected case, one after the other (so a CPU reading
    /// belongs to one case), and reports each.
    pub async fn run(&self) -> Vec<CaseReport> {
        let mut reports = Vec::new();
        for case in self.selected() {
            let cpu_before = self.config.pid.and_then(cpu_time);
            let started = Instant::now();
            // Every case is bounded as a whole too: a few waits at most
            // (and the idle timeout, for the case that waits for it).
            let bound = self.config.wait * 4 + self.config.idle_timeout.unwrap_or_default() + Duration::from_secs(3);
            let observed = match tokio::time::timeout(bound, (case.run)(self)).await {
                Ok(observed) => observed,
                Err(_) => Observed::fail("the case did not finish in time"),
            };
            let elapsed = started.elapsed();
            let server_cpu_ms = match (cpu_before, self.config.pid.and_then(cpu_time)) {
                (Some(before), Some(after)) => Some(after.saturating_sub(before).as_secs_f64() * 1e3),
                _ => None,
            };
            let verdict = match (observed.ok, case.required, observed.happened.starts_with(SKIPPED)) {
                (_, _, true) => Verdict::Skip,
                (true, _, _) => Verdict::Pass,
                (false, true, _) => Verdict::Fail,
                (false, false, _) => Verdict::Warn,
            };
            reports.push(CaseReport {
                case: case.name,
                sent: case.sent,
                expected: case.expected,
                happened: observed.happened,
                verdict,
                required: case.required,
                milliseconds: elapsed.as_secs_f64() * 1e3,
                server_cpu_ms,
            });
        }
        reports
    }

    /// The response our server gives `request` (the guide's built-in table).
    pub fn expected_response(&self, request: &Message) -> Message {
        respond(&self.table, request).0
    }

    /// Opens a connection.
    pub async fn connect(&self) -> Result<ClientStream, String> {
        self.config
            .connector
            .connect()
            .await
            .map_err(|error| format!("cannot connect: {error:#}"))
    }

    /// Writes `bytes`, within the wait.
    pub async fn send(&self, stream: &mut ClientStream, bytes: &[u8]) -> Result<(), String> {
        match tokio::time::timeout(self.config.wait, async {
            stream.write_all(bytes).await?;
            stream.flush().await
        })
        .await
        {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(format!("sending failed: {error}")),
            Err(_) => Err("the server took nothing for the whole wait".into()),
        }
    }

    /// Writes `bytes` in pieces cut at `cuts`, pausing between them so
    /// that each arrives as a segment of its own.
    pub async fn send_in_pieces(&self, stream: &mut ClientStream, bytes: &[u8], cuts: &[usize]) -> Result<(), String> {
        let mut start = 0;
        for &cut in cuts.iter().chain(std::iter::once(&bytes.len())) {
            let cut = cut.clamp(start, bytes.len());
            if cut > start {
                self.send(stream, &bytes[start..cut]).await?;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            start = cut;
        }
        Ok(())
    }

    /// Reads the next whole message, within the wait; an error says what
    /// came instead (nothing, a close, a reset, bytes that are not a message).
    pub async fn read_message(&self, stream: &mut ClientStream, buf: &mut BytesMut) -> Result<Message, String> {
        let mut codec = MessageCodec::new().with_max_content_len(MAX_RESPONSE);
        let deadline = tokio::time::Instant::now() + self.config.wait;
        loop {
            match codec.decode(buf) {
                Ok(Some(message)) => return Ok(message),
                Ok(None) => {}
                Err(error) => return Err(format!("the response is not a valid message: {error}")),
            }
            match tokio::time::timeout_at(deadline, stream.read_buf(buf)).await {
                Err(_) if buf.is_empty() => {
                    return Err(format!(
                        "no response within {}",
                        crate::display_duration(self.config.wait)
                    ));
                }
                Err(_) => return Err(format!("a response stopped after {} bytes", buf.len())),
                Ok(Ok(0)) if buf.is_empty() => return Err("the server closed the connection without answering".into()),
                Ok(Ok(0)) => {
                    return Err(format!(
                        "the server closed the connection mid-response ({} bytes)",
                        buf.len()
                    ));
                }
                Ok(Ok(_)) => {}
                Ok(Err(error)) if buf.is_empty() => {
                    return Err(format!("the connection failed without an answer: {error}"));
                }
                Ok(Err(error)) => return Err(format!("reading failed mid-response: {error}")),
            }
        }
    }

    /// Waits for the server to close the connection, with nothing more sent.
    pub async fn expect_close(&self, stream: &mut ClientStream, buf: &mut BytesMut) -> Result<(), String> {
        if !buf.is_empty() {
            return Err(format!("{} unexpected bytes followed", buf.len()));
        }
        match tokio::time::timeout(self.config.wait, stream.read_buf(buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => Ok(()),
            Ok(Ok(n)) => Err(format!("{n} more bytes came instead of a close")),
            Err(_) => Err(format!(
                "the connection stayed open for {}",
                crate::display_duration(self.config.wait)
            )),
        }
    }

    /// Compares a response with the one the protocol requires: byte for
    /// byte when the server writes our byte order, by content otherwise.
    pub fn compare(&self, got: &Message, expected: &Message) -> Result<(), String> {
        let same = if got.byteorder == expected.byteorder {
            encode(got) == encode(expected)
        } else {
            got.content_type == expected.content_type && got.content == expected.content
        };
        if same {
            Ok(())
        } else {
            Err(format!("expected {}, got {}", describe(expected), describe(got)))
        }
    }
}

/// Marks an observation as a case that did not run.
pub const SKIPPED: &str = "skipped: ";

/// A message's bytes on the wire (the checker's own messages all encode).
pub fn encode(message: &Message) -> bytes::Bytes {
    crate::protocol::codec::encode_message(message).expect("a message encodes")
}

/// A message in words: its `result`, or its content type and bytes, cut
/// to a bounded length. Not escaped: whoever prints it escapes it for
/// where it goes (the table for a terminal; JSON escapes by itself).
pub fn describe(message: &Message) -> String {
    match Reply::from_message(message) {
        Ok(Reply::Result(text)) => format!("result \"{}\"", clip(&text, DESCRIBED_CHARS)),
        Ok(Reply::Binary(bytes)) => format!(
            "{} bytes of {}: {}",
            bytes.len(),
            clip(&message.content_type, DESCRIBED_CHARS),
            crate::python_repr::BytesRepr(&bytes[..bytes.len().min(60)])
        ),
        Err(error) => format!("an unreadable response ({})", clip(&error.to_string(), DESCRIBED_CHARS)),
    }
}

/// The most characters of server-chosen text a description quotes.
const DESCRIBED_CHARS: usize = 200;

/// `text` cut to `max` characters, with `…` when cut.
fn clip(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

/// The `result` text of a response, if it has one.
pub fn result_text(message: &Message) -> Option<String> {
    match Reply::from_message(message) {
        Ok(Reply::Result(text)) => Some(text),
        _ => None,
    }
}

/// User plus system CPU time of process `pid`, from `/proc`.
fn cpu_time(pid: u32) -> Option<Duration> {
    crate::bench::cpu::CpuTime::of(pid)
        .ok()
        .map(crate::bench::cpu::CpuTime::total)
}

/// The run's totals.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Summary {
    pub passed: usize,
    pub failed: usize,
    pub warned: usize,
    pub skipped: usize,
}

impl Summary {
    pub fn of(reports: &[CaseReport]) -> Summary {
        let count = |verdict| reports.iter().filter(|r| r.verdict == verdict).count();
        Summary {
            passed: count(Verdict::Pass),
            failed: count(Verdict::Fail),
            warned: count(Verdict::Warn),
            skipped: count(Verdict::Skip),
        }
    }
}
