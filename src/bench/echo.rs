//! Bulk echo throughput: each connection writes blocks as fast as the
//! server takes them while reading the echo back at the same time, and every
//! byte that returns is compared with what was sent.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use super::{Budget, Counters, ErrorCounts, ErrorKind, Limit, halt_token};
use crate::deadline::within_io;
use crate::transport::Connector;

/// One echo run's settings.
#[derive(Debug, Clone)]
pub struct EchoBench {
    /// Where to connect, each wait's limit, TLS.
    pub connector: Connector,
    pub connections: usize,
    /// Bytes per write.
    pub block_size: usize,
    /// A duration, or a total number of bytes across all connections.
    pub limit: Limit,
}

/// What an echo run measured.
#[derive(Debug)]
pub struct EchoOutcome {
    /// Bytes that came back and matched.
    pub echoed: u64,
    pub errors: ErrorCounts,
    pub elapsed: Duration,
    /// Ended early by the caller (Ctrl-C).
    pub interrupted: bool,
}

/// Runs the echo load, adding echoed bytes to `counters.bytes` as they
/// arrive, until the limit is reached or `stop` is cancelled. A run with a
/// duration ends one timeout after it, whatever the server does.
pub async fn run(config: EchoBench, counters: Arc<Counters>, stop: CancellationToken) -> EchoOutcome {
    let block_size = config.block_size.max(1);
    let pattern: Arc<[u8]> = pattern(block_size).into();
    let started = Instant::now();
    let limit = match config.limit {
        Limit::Count(bytes) => Limit::Count(bytes.div_ceil(block_size as u64)),
        duration => duration,
    };
    let budget = Arc::new(Budget::new(limit, started));
    let halt = halt_token(&stop, config.limit, config.connector.timeout());
    let mut tasks = JoinSet::new();
    for _ in 0..config.connections.max(1) {
        let (config, pattern, budget, counters, halt) = (
            config.clone(),
            Arc::clone(&pattern),
            Arc::clone(&budget),
            Arc::clone(&counters),
            halt.clone(),
        );
        tasks.spawn(async move {
            tokio::select! {
                outcome = one_connection(&config, &pattern, &budget, &counters) => outcome,
                // What was echoed so far is in the counters; a stop is not an error.
                () = halt.cancelled() => (0, None),
            }
        });
    }
    let mut outcome = EchoOutcome {
        echoed: 0,
        errors: ErrorCounts::default(),
        elapsed: Duration::ZERO,
        interrupted: false,
    };
    while let Some(joined) = tasks.join_next().await {
        let (_, error) = joined.expect("echo workers do not panic");
        if let Some(kind) = error {
            outcome.errors.add(kind);
            counters.errors.fetch_add(1, Ordering::Relaxed);
        }
    }
    halt.cancel();
    // Every verified byte was counted as it arrived, including on connections cut short.
    outcome.echoed = counters.bytes.load(Ordering::Relaxed);
    outcome.elapsed = started.elapsed();
    outcome.interrupted = stop.is_cancelled();
    outcome
}

/// A block of pseudo-random bytes (xorshift), so that misplaced or repeated
/// data does not compare equal by accident.
fn pattern(len: usize) -> Vec<u8> {
    let mut state = 0x9e37_79b9_u32;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state as u8
        })
        .collect()
}

/// Whether `data`, received at stream offset `offset`, is the repeating `pattern`.
fn matches_pattern(pattern: &[u8], offset: u64, data: &[u8]) -> bool {
    let mut at = (offset % pattern.len() as u64) as usize;
    let mut rest = data;
    while !rest.is_empty() {
        let n = rest.len().min(pattern.len() - at);
        if rest[..n] != pattern[at..at + n] {
            return false;
        }
        rest = &rest[n..];
        at = 0;
    }
    true
}

/// Returns the bytes echoed correctly, and the error that ended the connection early, if any.
async fn one_connection(
    config: &EchoBench,
    pattern: &Arc<[u8]>,
    budget: &Arc<Budget>,
    counters: &Counters,
) -> (u64, Option<ErrorKind>) {
    let stream = match config.connector.connect().await {
        Ok(stream) => stream,
        Err(_) => return (0, Some(ErrorKind::Refused)),
    };
    let timeout = config.connector.timeout();
    let (mut reader, mut writer) = tokio::io::split(stream);
    // The sender is a task of its own, so that with --threads 2 writing and
    // reading (each a copy through the kernel) run on different cores.
    let (send_pattern, send_budget) = (Arc::clone(pattern), Arc::clone(budget));
    // Aborted if this connection is dropped (a stopped run), so it never outlives it.
    let send = AbortOnDropHandle::new(tokio::spawn(async move {
        let mut sent = 0u64;
        while send_budget.take() {
            match within_io(timeout, writer.write_all(&send_pattern)).await {
                Err(error) => return Err(ErrorKind::of(&error)),
                Ok(()) => sent += send_pattern.len() as u64,
            }
        }
        writer.shutdown().await.map_err(|e| ErrorKind::of(&e))?;
        Ok(sent)
    }));
    let send = async { send.await.unwrap_or(Err(ErrorKind::Other)) };
    let receive = async {
        let mut buf = vec![0u8; 256 * 1024];
        let mut received = 0u64;
        loop {
            let n = match within_io(timeout, reader.read(&mut buf)).await {
                Err(error) => return (received, Some(ErrorKind::of(&error))),
                Ok(0) => return (received, None),
                Ok(n) => n,
            };
            if !matches_pattern(pattern, received, &buf[..n]) {
                return (received, Some(ErrorKind::WrongAnswer));
            }
            received += n as u64;
            counters.bytes.fetch_add(n as u64, Ordering::Relaxed);
        }
    };
    let (sent, (received, read_error)) = tokio::join!(send, receive);
    match (sent, read_error) {
        (_, Some(kind)) | (Err(kind), None) => (received, Some(kind)),
        (Ok(sent), None) if received < sent => (received, Some(ErrorKind::Closed)),
        (Ok(_), None) => (received, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_checks_follow_the_stream_offset() {
        let block = pattern(100);
        let stream: Vec<u8> = block.iter().copied().cycle().take(350).collect();
        assert!(matches_pattern(&block, 0, &stream));
        assert!(matches_pattern(&block, 130, &stream[130..260]));
        assert!(!matches_pattern(&block, 131, &stream[130..260]));
        let mut corrupt = stream.clone();
        corrupt[299] ^= 1;
        assert!(!matches_pattern(&block, 0, &corrupt));
    }
}
