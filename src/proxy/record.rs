//! Recordings of proxied traffic: one JSON object per line.
//!
//! ```text
//! {"t":0.000123,"connection":1,"event":"open","client":"127.0.0.1:40312","server":"127.0.0.1:65432"}
//! {"t":0.000410,"connection":1,"direction":"request","hex":"00677b2262..."}
//! {"t":0.000688,"connection":1,"direction":"response","hex":"00687b2262..."}
//! {"t":0.001002,"connection":1,"direction":"request","raw":true,"hex":"474554202f"}
//! {"t":0.001350,"connection":1,"event":"close"}
//! ```
//!
//! `t` is seconds since the proxy started; `hex` is a whole message as it
//! crossed the wire, or, with `"raw": true`, bytes that were not a message
//! of the protocol (sent as they are on replay, never compared). Lines come
//! in the order the proxy saw them. The format is documented in
//! `docs/RECORDING.md`.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::Direction;
use crate::transport::PeerAddr;

/// One line of a recording.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Line {
    pub t: f64,
    pub connection: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub raw: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hex: Option<String>,
}

impl Line {
    /// The bytes of a data line.
    ///
    /// # Errors
    /// When `hex` is missing or not hexadecimal.
    pub fn bytes(&self) -> Result<Vec<u8>, String> {
        let hex = self.hex.as_deref().ok_or("a data line without \"hex\"")?;
        if hex.len() % 2 != 0 {
            return Err("\"hex\" has an odd number of digits".into());
        }
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).map_err(|_| format!("\"hex\" is not hexadecimal near {i}")))
            .collect()
    }

    /// Whether this line carries a request (`Some(true)`), a response
    /// (`Some(false)`), or no data.
    pub fn is_request(&self) -> Option<bool> {
        match self.direction.as_deref() {
            Some("request") => Some(true),
            Some("response") => Some(false),
            _ => None,
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut text, byte| {
            use std::fmt::Write as _;
            let _ = write!(text, "{byte:02x}");
            text
        })
}

/// Writes a recording. A failed write is reported once on stderr and ends
/// the recording, not the proxy.
pub struct Recorder {
    out: Option<BufWriter<File>>,
}

impl Recorder {
    /// Creates (or truncates) `path`.
    ///
    /// # Errors
    /// When the file cannot be created.
    pub fn create(path: &Path) -> std::io::Result<Recorder> {
        Ok(Recorder {
            out: Some(BufWriter::new(File::create(path)?)),
        })
    }

    fn write(&mut self, line: &Line) {
        let Some(out) = &mut self.out else { return };
        let written = serde_json::to_writer(&mut *out, line)
            .map_err(std::io::Error::from)
            .and_then(|()| out.write_all(b"\n"));
        if let Err(error) = written {
            tracing::error!("recording stopped: {error}");
            self.out = None;
        }
    }

    fn data_line(t: f64, connection: u64, direction: Direction, bytes: &[u8], raw: bool) -> Line {
        Line {
            t,
            connection,
            event: None,
            client: None,
            server: None,
            direction: Some(direction.name().to_owned()),
            raw,
            hex: Some(hex(bytes)),
        }
    }

    pub fn open(&mut self, t: f64, connection: u64, client: &PeerAddr, server: &PeerAddr) {
        self.write(&Line {
            t,
            connection,
            event: Some("open".into()),
            client: Some(client.to_string()),
            server: Some(server.to_string()),
            direction: None,
            raw: false,
            hex: None,
        });
    }

    pub fn frame(&mut self, t: f64, connection: u64, direction: Direction, wire: &[u8]) {
        self.write(&Self::data_line(t, connection, direction, wire, false));
    }

    pub fn raw(&mut self, t: f64, connection: u64, direction: Direction, bytes: &[u8]) {
        self.write(&Self::data_line(t, connection, direction, bytes, true));
    }

    pub fn close(&mut self, t: f64, connection: u64) {
        self.write(&Line {
            t,
            connection,
            event: Some("close".into()),
            client: None,
            server: None,
            direction: None,
            raw: false,
            hex: None,
        });
        self.flush();
    }

    pub fn flush(&mut self) {
        if let Some(out) = &mut self.out
            && let Err(error) = out.flush()
        {
            tracing::error!("recording stopped: {error}");
            self.out = None;
        }
    }
}

/// Reads a recording.
///
/// # Errors
/// A message naming the line that is not a recording line.
pub fn read(path: &Path) -> Result<Vec<Line>, String> {
    let file = File::open(path).map_err(|error| format!("cannot read {}: {error}", path.display()))?;
    BufReader::new(file)
        .lines()
        .enumerate()
        .filter(|(_, line)| line.as_ref().map_or(true, |line| !line.trim().is_empty()))
        .map(|(number, line)| {
            let line = line.map_err(|error| format!("{}: {error}", path.display()))?;
            serde_json::from_str(&line).map_err(|error| format!("{} line {}: {error}", path.display(), number + 1))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip_through_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.jsonl");
        let mut recorder = Recorder::create(&path).unwrap();
        let client = PeerAddr::Tcp("127.0.0.1:5000".parse().unwrap());
        let server = PeerAddr::Tcp("127.0.0.1:65432".parse().unwrap());
        recorder.open(0.5, 1, &client, &server);
        recorder.frame(0.6, 1, Direction::Request, b"\x00\x01{");
        recorder.raw(0.7, 1, Direction::Response, b"\xff");
        recorder.close(0.8, 1);
        let lines = read(&path).unwrap();
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[0].client.as_deref(), Some("127.0.0.1:5000"));
        assert_eq!(lines[1].bytes().unwrap(), b"\x00\x01{");
        assert_eq!(lines[1].is_request(), Some(true));
        assert!(lines[2].raw && lines[2].is_request() == Some(false));
        assert_eq!(lines[3].event.as_deref(), Some("close"));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.lines()
                .nth(1)
                .unwrap()
                .starts_with(r#"{"t":0.6,"connection":1,"direction":"request","hex":"00017b"}"#),
            "{text}"
        );
    }

    #[test]
    fn a_bad_line_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.jsonl");
        std::fs::write(&path, "{\"t\":0,\"connection\":1,\"event\":\"open\"}\nnot json\n").unwrap();
        assert!(read(&path).unwrap_err().contains("line 2"));
    }
}
