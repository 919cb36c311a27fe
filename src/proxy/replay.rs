//! `sockets replay`: sends the client side of a recording to a server and
//! reports every response that differs from the recorded one.
//!
//! Connections are replayed one after the other, in the order they opened;
//! within one, each recorded request is sent when the responses recorded
//! before it have arrived, so the server sees the same conversation. Raw
//! (undecodable) client bytes are sent as they are; raw server bytes cannot
//! be compared and are skipped. With `realtime`, requests keep the
//! recording's timing (from the first line).

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::BytesMut;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;
use tokio_util::codec::Decoder;

use super::record::Line;
use crate::check::describe;
use crate::deadline::within;
use crate::protocol::{Message, MessageCodec};
use crate::transport::Connector;

/// How to replay.
pub struct ReplayConfig {
    pub connector: Connector,
    /// Keep the recording's timing.
    pub realtime: bool,
    /// The largest response read.
    pub max_content_len: usize,
}

/// What a replay found.
#[derive(Debug, Default, Serialize)]
pub struct ReplayReport {
    pub connections: u64,
    pub requests: u64,
    pub responses: u64,
    pub matched: u64,
    /// Each difference, in words (the first 1,000).
    pub differences: Vec<String>,
    /// Differences past the first 1,000.
    pub more_differences: u64,
}

const MAX_LISTED: usize = 1000;

impl ReplayReport {
    fn differ(&mut self, what: String) {
        if self.differences.len() < MAX_LISTED {
            self.differences.push(what);
        } else {
            self.more_differences += 1;
        }
    }

    /// Whether every response matched.
    pub fn all_matched(&self) -> bool {
        self.differences.is_empty()
    }
}

/// Replays `lines` (a recording) against the connector's server.
///
/// # Errors
/// A malformed recording (a data line whose bytes do not parse).
pub async fn replay(lines: &[Line], config: &ReplayConfig) -> Result<ReplayReport, String> {
    let mut connections: BTreeMap<u64, Vec<&Line>> = BTreeMap::new();
    let mut order = Vec::new();
    for line in lines {
        if !connections.contains_key(&line.connection) {
            order.push(line.connection);
        }
        connections.entry(line.connection).or_default().push(line);
    }
    let first_t = lines.first().map_or(0.0, |line| line.t);
    let started = Instant::now();
    let mut report = ReplayReport::default();
    for id in order {
        report.connections += 1;
        let lines = &connections[&id];
        if let Err(why) = replay_connection(id, lines, config, started, first_t, &mut report).await {
            report.differ(format!("connection {id}: {why}"));
        }
    }
    Ok(report)
}

async fn replay_connection(
    id: u64,
    lines: &[&Line],
    config: &ReplayConfig,
    started: Instant,
    first_t: f64,
    report: &mut ReplayReport,
) -> Result<(), String> {
    let wait = config.connector.timeout();
    let mut stream = config
        .connector
        .connect()
        .await
        .map_err(|error| format!("cannot connect: {error:#}"))?;
    let mut codec = MessageCodec::new().with_max_content_len(config.max_content_len);
    let mut buf = BytesMut::new();
    let mut responses = 0u64;
    for line in lines {
        let Some(is_request) = line.is_request() else { continue };
        let bytes = line.bytes().map_err(|why| format!("the recording: {why}"))?;
        if is_request {
            if config.realtime {
                let due = started + Duration::from_secs_f64((line.t - first_t).max(0.0));
                tokio::time::sleep_until(due).await;
            }
            within(wait, stream.write_all(&bytes))
                .await
                .ok_or("the server took nothing for the whole wait")?
                .map_err(|error| format!("sending failed: {error}"))?;
            if !line.raw {
                report.requests += 1;
            }
            continue;
        }
        if line.raw {
            continue;
        }
        responses += 1;
        report.responses += 1;
        let expected = codec
            .decode(&mut BytesMut::from(&bytes[..]))
            .ok()
            .flatten()
            .ok_or_else(|| format!("response {responses} in the recording is not a message"))?;
        match read_message(&mut stream, &mut buf, &mut codec, wait).await {
            Ok(got) if same(&got, &expected) => report.matched += 1,
            Ok(got) => report.differ(format!(
                "connection {id}, response {responses}: expected {}, got {}",
                describe(&expected),
                describe(&got)
            )),
            Err(why) => {
                report.differ(format!("connection {id}, response {responses}: {why}"));
                return Ok(());
            }
        }
    }
    let _ = stream.shutdown().await;
    Ok(())
}

/// The same response: the same bytes, or, from a server of the other byte
/// order, the same content.
fn same(got: &Message, expected: &Message) -> bool {
    if got.byteorder == expected.byteorder {
        got == expected
    } else {
        got.content_type == expected.content_type && got.content == expected.content
    }
}

async fn read_message<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
    codec: &mut MessageCodec,
    wait: Option<Duration>,
) -> Result<Message, String> {
    loop {
        match codec.decode(buf) {
            Ok(Some(message)) => return Ok(message),
            Ok(None) => {}
            Err(error) => return Err(format!("the response is not a valid message: {error}")),
        }
        match within(wait, stream.read_buf(buf)).await {
            None => return Err("no response in time".into()),
            Some(Ok(0)) => return Err("the server closed the connection".into()),
            Some(Ok(_)) => {}
            Some(Err(error)) => return Err(format!("reading failed: {error}")),
        }
    }
}
