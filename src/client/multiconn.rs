//! The guide's multi-connection client: N connections opened at once, each
//! sending the same messages and reading back every byte it sent.

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinSet;

use crate::deadline::within_io;
use crate::python_repr::BytesRepr;
use crate::transport::Connector;
use crate::transport::tls::{Side, describe_io};

/// The messages each of the guide's connections sends.
pub const GUIDE_MESSAGES: [&[u8]; 2] = [b"Message 1 from client.", b"Message 2 from client."];

/// How one connection ended: bytes echoed, or what went wrong.
#[derive(Debug)]
pub struct Outcome {
    /// 1-based, as the guide numbers connections.
    pub id: usize,
    pub result: Result<usize, String>,
}

/// Opens `count` connections through `connector` concurrently; each sends
/// every message, reads until it has as many bytes back as it sent, checks
/// they are the same bytes, and closes. `say` receives the guide's progress
/// lines. Outcomes are returned in connection order.
pub async fn run(
    connector: &Connector,
    count: usize,
    messages: &[Vec<u8>],
    say: Arc<dyn Fn(String) + Send + Sync>,
) -> Vec<Outcome> {
    let messages: Arc<[Vec<u8>]> = messages.into();
    let mut tasks = JoinSet::new();
    for id in 1..=count {
        let (connector, messages, say) = (connector.clone(), Arc::clone(&messages), Arc::clone(&say));
        tasks.spawn(async move {
            let result = one_connection(id, &connector, &messages, say.as_ref()).await;
            Outcome { id, result }
        });
    }
    let mut outcomes = Vec::with_capacity(count);
    while let Some(joined) = tasks.join_next().await {
        outcomes.push(joined.expect("connection tasks do not panic"));
    }
    outcomes.sort_by_key(|outcome| outcome.id);
    outcomes
}

async fn one_connection(
    id: usize,
    connector: &Connector,
    messages: &[Vec<u8>],
    say: &(dyn Fn(String) + Send + Sync),
) -> Result<usize, String> {
    say(format!("Starting connection {id} to {}", connector.endpoint()));
    let timeout = connector.timeout();
    let mut stream = connector.connect().await.map_err(|e| e.to_string())?;
    let expected: Vec<u8> = messages.concat();
    // Each wait on the server is bounded by `timeout`.
    let exchange = async {
        for message in messages {
            say(format!("Sending {} to connection {id}", BytesRepr(message)));
            within_io(timeout, stream.write_all(message)).await?;
        }
        let mut received = Vec::with_capacity(expected.len());
        let mut buf = [0u8; 1024];
        while received.len() < expected.len() {
            let n = within_io(timeout, stream.read(&mut buf)).await?;
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!(
                        "the server closed the connection after echoing {} of {} bytes",
                        received.len(),
                        expected.len()
                    ),
                ));
            }
            say(format!("Received {} from connection {id}", BytesRepr(&buf[..n])));
            received.extend_from_slice(&buf[..n]);
        }
        Ok(received)
    };
    let received = exchange.await.map_err(|error| describe_io(&error, Side::Client))?;
    let _ = within_io(timeout, stream.shutdown()).await;
    say(format!("Closing connection {id}"));
    if received != expected {
        return Err(format!(
            "echo differs: sent {}, got back {}",
            BytesRepr(&expected),
            BytesRepr(&received)
        ));
    }
    Ok(received.len())
}
