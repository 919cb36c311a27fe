//! `sockets connect --chat`: a chat over the broker. Each line of input is
//! published on a channel; every message on the channel is printed, one per
//! line. Unlike netcat's chat mode, the broker is a real server: one client
//! leaving (or misbehaving) never ends it for the others.

use std::io;

use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio_util::codec::{FramedRead, FramedWrite};

use crate::broker::command::{publish_request, subscribe_request};
use crate::escape::Terminal;
use crate::protocol::{MessageCodec, ProtocolError};

/// What arrives from the broker: a published message, or an answer.
#[derive(Debug, Deserialize)]
struct Incoming {
    channel: Option<String>,
    message: Option<String>,
    result: Option<serde_json::Value>,
}

/// Counts of a chat session.
#[derive(Debug, Default, Clone, Copy)]
pub struct ChatSummary {
    pub sent: u64,
    pub received: u64,
}

/// Joins `channel` as `nick`: publishes each line of `input`, prints each
/// message of the channel to `output`. Ends when the input ends (after the
/// broker has answered every line) or the broker closes.
///
/// # Errors
/// A transport failure, or a broker that does not speak the protocol.
pub async fn chat<S, I, O>(stream: S, channel: &str, nick: &str, input: I, mut output: O) -> io::Result<ChatSummary>
where
    S: AsyncRead + AsyncWrite + Unpin,
    I: AsyncRead + Unpin,
    O: AsyncWrite + Unpin,
{
    let (read, write) = tokio::io::split(stream);
    let mut incoming = FramedRead::new(read, MessageCodec::new());
    let mut outgoing = FramedWrite::new(write, MessageCodec::new());
    outgoing.send(&subscribe_request(channel)).await.map_err(to_io)?;
    let mut lines = BufReader::new(input).lines();
    let mut summary = ChatSummary::default();
    let own = format!("{nick}: ");
    let mut input_open = true;
    // Answers owed: one per line published, and the subscription's.
    let mut owed = 1u64;
    loop {
        if !input_open && owed == 0 {
            return Ok(summary);
        }
        tokio::select! {
            line = lines.next_line(), if input_open => match line? {
                Some(line) => {
                    outgoing.send(&publish_request(channel, &format!("{nick}: {line}"))).await.map_err(to_io)?;
                    summary.sent += 1;
                    owed += 1;
                }
                None => input_open = false,
            },
            message = incoming.next() => {
                let Some(message) = message else { return Ok(summary) };
                let message = message.map_err(to_io)?;
                let incoming: Incoming = serde_json::from_slice(&message.content)
                    .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, format!("not a broker: {error}")))?;
                match (incoming.channel, incoming.message, incoming.result) {
                    // Our own lines come back too: the terminal shows them already.
                    (Some(_), Some(text), _) if text.starts_with(&own) => {}
                    (Some(_), Some(text), _) => {
                        summary.received += 1;
                        let line = format!("{}\n", Terminal(&text));
                        output.write_all(line.as_bytes()).await?;
                        output.flush().await?;
                    }
                    (_, _, Some(serde_json::Value::String(text))) if text.starts_with("Error: ") => {
                        return Err(io::Error::other(text));
                    }
                    _ => owed = owed.saturating_sub(1),
                }
            }
        }
    }
}

fn to_io(error: ProtocolError) -> io::Error {
    match error {
        ProtocolError::Io(error) => error,
        other => io::Error::new(io::ErrorKind::InvalidData, other.to_string()),
    }
}
