//! `bench broker`: fan-out throughput and delivery latency of a
//! publish/subscribe server — our broker, or redis-server (`--redis`) on
//! the same machine for comparison.
//!
//! N subscribers join one channel; one publisher publishes M messages, up
//! to a window of them unanswered at a time. Each message carries its
//! sequence number and its send time, so each subscriber measures every
//! delivery's latency (publish sent → message received) and notices gaps.

use std::time::Duration;

use bytes::BytesMut;
use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::codec::{Decoder, Encoder};
use tokio_util::sync::CancellationToken;

use super::report::LatencySummary;
use super::resp::{self, Value};
use super::{new_histogram, record};
use crate::broker::command::{Push, publish_request, subscribe_request};
use crate::deadline::within;
use crate::protocol::MessageCodec;
use crate::transport::Connector;

/// Which server is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// `sockets broker`.
    Ours,
    /// redis-server, over RESP.
    Redis,
}

/// A broker run's settings.
pub struct BrokerBench {
    pub connector: Connector,
    pub flavor: Flavor,
    pub subscribers: usize,
    pub messages: u64,
    pub message_size: usize,
    /// Publishes sent and not yet answered, at most.
    pub window: usize,
    pub channel: String,
}

/// What a run measured.
#[derive(Debug, Serialize)]
pub struct BrokerReport {
    pub target: String,
    pub server: &'static str,
    pub subscribers: usize,
    pub published: u64,
    /// Deliveries expected: published × subscribers.
    pub expected: u64,
    pub delivered: u64,
    pub lost: u64,
    pub elapsed_seconds: f64,
    pub published_per_second: f64,
    pub delivered_per_second: f64,
    /// Microseconds from a publish being sent to a subscriber receiving it.
    pub latency_us: Option<LatencySummary>,
    pub interrupted: bool,
}

impl std::fmt::Display for BrokerReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "target      {} ({})", self.target, self.server)?;
        writeln!(
            f,
            "load        {} subscribers, {} messages published",
            self.subscribers, self.published
        )?;
        writeln!(
            f,
            "delivered   {} of {} in {:.2} s: {:.0} messages/s delivered, {:.0} published/s",
            self.delivered, self.expected, self.elapsed_seconds, self.delivered_per_second, self.published_per_second
        )?;
        if let Some(latency) = &self.latency_us {
            writeln!(f, "latency     {}", latency.line())?;
        }
        if self.lost > 0 {
            writeln!(f, "lost        {} deliveries never arrived", self.lost)?;
        }
        if self.interrupted {
            writeln!(f, "interrupted the run was stopped early")?;
        }
        Ok(())
    }
}

/// Why a broker run could not run.
#[derive(Debug, thiserror::Error)]
pub enum BrokerBenchError {
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("{0}")]
    Protocol(String),
    #[error("interrupted before the run started")]
    Interrupted,
}

/// How long subscribers wait for the last deliveries after the last publish.
const DRAIN: Duration = Duration::from_secs(10);

/// Runs the benchmark until every message is published and delivered (or
/// lost: none arrives for [`DRAIN`]), or `stop` is cancelled.
///
/// # Errors
/// When subscribers cannot join or the server is not a broker.
pub async fn run(config: BrokerBench, stop: CancellationToken) -> Result<BrokerReport, BrokerBenchError> {
    let started = Instant::now();
    let mut subscribers = JoinSet::new();
    for _ in 0..config.subscribers {
        let mut stream = config
            .connector
            .connect()
            .await
            .map_err(|error| BrokerBenchError::Connect(format!("{error:#}")))?;
        // One decoder per connection, for its whole life: it keeps the
        // state of a message whose header it has taken off the buffer.
        let mut reader = Reader {
            buf: BytesMut::new(),
            codec: MessageCodec::new(),
            flavor: config.flavor,
        };
        tokio::select! {
            joined = subscribe(&mut stream, &mut reader, &config.channel, config.connector.timeout()) => joined?,
            () = stop.cancelled() => return Err(BrokerBenchError::Interrupted),
        }
        let (expected, stop) = (config.messages, stop.clone());
        subscribers.spawn(async move { receive(stream, reader, expected, started, stop).await });
    }
    let publish_started = Instant::now();
    let mut publisher = config
        .connector
        .connect()
        .await
        .map_err(|error| BrokerBenchError::Connect(format!("{error:#}")))?;
    let published = tokio::select! {
        published = publish(&mut publisher, &config, started) => published?,
        () = stop.cancelled() => 0,
    };
    let mut latency = new_histogram();
    let mut delivered = 0;
    while let Some(joined) = subscribers.join_next().await {
        let (count, histogram) = joined.expect("subscribers do not panic");
        delivered += count;
        latency.add(&histogram).expect("histograms share bounds");
    }
    let elapsed = publish_started.elapsed().as_secs_f64();
    let expected = published * config.subscribers as u64;
    Ok(BrokerReport {
        target: config.connector.endpoint().to_string(),
        server: match config.flavor {
            Flavor::Ours => "sockets broker",
            Flavor::Redis => "redis-server",
        },
        subscribers: config.subscribers,
        published,
        expected,
        delivered,
        lost: expected.saturating_sub(delivered),
        elapsed_seconds: elapsed,
        published_per_second: published as f64 / elapsed,
        delivered_per_second: delivered as f64 / elapsed,
        latency_us: LatencySummary::of(&latency),
        interrupted: stop.is_cancelled(),
    })
}

/// A connection's incoming bytes and how to read them.
struct Reader {
    buf: BytesMut,
    codec: MessageCodec,
    flavor: Flavor,
}

impl Reader {
    /// The next whole frame: our message's content, or a RESP value.
    fn next(&mut self) -> Result<Option<Frame>, String> {
        match self.flavor {
            Flavor::Ours => Ok(self
                .codec
                .decode(&mut self.buf)
                .map_err(|e| format!("not a broker: {e}"))?
                .map(|message| Frame::Ours(message.content))),
            Flavor::Redis => Ok(resp::take(&mut self.buf)?.map(Frame::Redis)),
        }
    }
}

enum Frame {
    Ours(bytes::Bytes),
    Redis(Value),
}

async fn subscribe<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    reader: &mut Reader,
    channel: &str,
    wait: Option<Duration>,
) -> Result<(), BrokerBenchError> {
    let protocol = |why: String| BrokerBenchError::Protocol(why);
    let flavor = reader.flavor;
    let request = match flavor {
        Flavor::Ours => crate::protocol::codec::encode_message(&subscribe_request(channel))
            .expect("requests encode")
            .to_vec(),
        Flavor::Redis => resp::command(&[b"SUBSCRIBE", channel.as_bytes()]),
    };
    stream
        .write_all(&request)
        .await
        .map_err(|e| protocol(format!("subscribing: {e}")))?;
    loop {
        let joined = reader.next().map_err(protocol)?.map(|frame| match frame {
            Frame::Ours(content) => String::from_utf8_lossy(&content).contains("Subscribed"),
            Frame::Redis(value) => {
                matches!(value, Value::Array(items) if items.first() == Some(&Value::Bulk(Some(b"subscribe".to_vec()))))
            }
        });
        match joined {
            Some(true) => return Ok(()),
            Some(false) => return Err(protocol("the server did not confirm the subscription".into())),
            None => {}
        }
        match within(wait, stream.read_buf(&mut reader.buf)).await {
            Some(Ok(n)) if n > 0 => {}
            _ => return Err(protocol("no answer to the subscription".into())),
        }
    }
}

/// The payload of message `seq`: its number and send time (nanoseconds
/// since the run began), padded to `size`.
fn payload(seq: u64, started: Instant, size: usize) -> String {
    let mut text = format!("{seq} {} ", started.elapsed().as_nanos());
    if text.len() < size {
        text.extend(std::iter::repeat_n('x', size - text.len()));
    }
    text
}

async fn publish<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    config: &BrokerBench,
    started: Instant,
) -> Result<u64, BrokerBenchError> {
    let protocol = |why: String| BrokerBenchError::Protocol(why);
    let mut buf = BytesMut::new();
    let mut out = BytesMut::new();
    let (mut sent, mut answered) = (0u64, 0u64);
    let mut codec = MessageCodec::new();
    while answered < config.messages {
        while sent < config.messages && sent - answered < config.window as u64 {
            let data = payload(sent, started, config.message_size);
            match config.flavor {
                Flavor::Ours => codec
                    .encode(&publish_request(&config.channel, &data), &mut out)
                    .expect("requests encode"),
                Flavor::Redis => out.extend_from_slice(&resp::command(&[
                    b"PUBLISH",
                    config.channel.as_bytes(),
                    data.as_bytes(),
                ])),
            }
            sent += 1;
        }
        if !out.is_empty() {
            stream
                .write_all(&out)
                .await
                .map_err(|e| protocol(format!("publishing: {e}")))?;
            out.clear();
        }
        match within(config.connector.timeout(), stream.read_buf(&mut buf)).await {
            Some(Ok(n)) if n > 0 => {}
            _ => {
                return Err(protocol(format!(
                    "the server stopped answering publishes after {answered}"
                )));
            }
        }
        loop {
            let answer = match config.flavor {
                Flavor::Ours => codec.decode(&mut buf).map_err(|e| protocol(e.to_string()))?.map(drop),
                Flavor::Redis => resp::take(&mut buf).map_err(protocol)?.map(drop),
            };
            match answer {
                Some(()) => answered += 1,
                None => break,
            }
        }
    }
    Ok(answered)
}

/// One subscriber: reads deliveries until it has `expected`, none comes
/// for [`DRAIN`], or the run stops. Returns the count and latencies.
async fn receive<S: AsyncRead + Unpin>(
    mut stream: S,
    mut reader: Reader,
    expected: u64,
    started: Instant,
    stop: CancellationToken,
) -> (u64, Histogram<u64>) {
    let mut latency = new_histogram();
    let mut received = 0u64;
    while received < expected {
        loop {
            let sent = match reader.next() {
                Ok(Some(Frame::Ours(content))) => serde_json::from_slice::<Push<'_>>(&content)
                    .ok()
                    .and_then(|push| sent_at(push.message.as_bytes())),
                Ok(Some(Frame::Redis(Value::Array(items)))) if items.len() == 3 => match &items[2] {
                    Value::Bulk(Some(data)) => sent_at(data),
                    _ => None,
                },
                Ok(Some(_)) => None,
                _ => break,
            };
            if let Some(sent_ns) = sent {
                received += 1;
                let now_ns = started.elapsed().as_nanos() as u64;
                record(&mut latency, Duration::from_nanos(now_ns.saturating_sub(sent_ns)));
            }
        }
        if received >= expected {
            break;
        }
        let read = tokio::select! {
            read = tokio::time::timeout(DRAIN, stream.read_buf(&mut reader.buf)) => read,
            () = stop.cancelled() => break,
        };
        match read {
            Ok(Ok(n)) if n > 0 => {}
            _ => break,
        }
    }
    (received, latency)
}

/// The send time a payload carries.
fn sent_at(data: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(data).ok()?;
    let mut words = text.split(' ');
    let _seq = words.next()?;
    words.next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_carry_their_send_time_and_size() {
        let started = Instant::now();
        let data = payload(7, started, 64);
        assert_eq!(data.len(), 64);
        assert!(data.starts_with("7 "));
        assert!(sent_at(data.as_bytes()).is_some());
        assert_eq!(sent_at(b"garbage"), None);
    }
}
