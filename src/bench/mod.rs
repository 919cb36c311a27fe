//! The load generator behind `sockets bench`: many connections driving a
//! server, every response checked, latencies in an HDR histogram, errors
//! counted by kind, the rate sampled over time.
//!
//! - [`app`]: request/response load for the application protocol.
//! - [`echo`]: bulk echo throughput with every byte verified.
//! - [`report`]: the numbers, as text, JSON, and an SVG plot.
//! - [`cpu`]: the server's CPU per unit of work, when its pid is given.

pub mod app;
pub mod broker;
pub mod cpu;
pub mod echo;
pub mod plot;
pub mod report;
pub mod resp;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

/// When a run ends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Limit {
    /// After this many requests (or, for echo, bytes) in all.
    Count(u64),
    /// After this long.
    Duration(Duration),
}

/// What went wrong with one request or connection. Every error is counted
/// under one of these; none is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    Refused,
    Reset,
    Timeout,
    BadFrame,
    WrongAnswer,
    /// The server closed the connection while responses were outstanding.
    Closed,
    Other,
}

impl ErrorKind {
    /// Every kind, in report order.
    pub const ALL: [ErrorKind; 7] = [
        ErrorKind::Refused,
        ErrorKind::Reset,
        ErrorKind::Timeout,
        ErrorKind::BadFrame,
        ErrorKind::WrongAnswer,
        ErrorKind::Closed,
        ErrorKind::Other,
    ];

    /// The kind of an I/O error.
    pub fn of(error: &std::io::Error) -> ErrorKind {
        use std::io::ErrorKind as K;
        match error.kind() {
            K::ConnectionRefused => ErrorKind::Refused,
            K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe => ErrorKind::Reset,
            K::TimedOut => ErrorKind::Timeout,
            K::UnexpectedEof => ErrorKind::Closed,
            _ => ErrorKind::Other,
        }
    }

    /// Human-readable name.
    pub fn label(self) -> &'static str {
        match self {
            ErrorKind::Refused => "refused",
            ErrorKind::Reset => "reset",
            ErrorKind::Timeout => "timeout",
            ErrorKind::BadFrame => "bad frame",
            ErrorKind::WrongAnswer => "wrong answer",
            ErrorKind::Closed => "closed",
            ErrorKind::Other => "other",
        }
    }
}

/// Error counts by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorCounts([u64; 7]);

impl ErrorCounts {
    /// Counts one error.
    pub fn add(&mut self, kind: ErrorKind) {
        self.0[kind as usize] += 1;
    }

    /// The count for `kind`.
    pub fn get(&self, kind: ErrorKind) -> u64 {
        self.0[kind as usize]
    }

    /// All errors.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// Adds another worker's counts.
    pub fn merge(&mut self, other: &ErrorCounts) {
        for (mine, theirs) in self.0.iter_mut().zip(other.0) {
            *mine += theirs;
        }
    }
}

/// Live counters the workers bump and the progress line and timeline read.
#[derive(Debug, Default)]
pub struct Counters {
    pub completed: AtomicU64,
    pub errors: AtomicU64,
    pub bytes: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> (u64, u64, u64) {
        (
            self.completed.load(Ordering::Relaxed),
            self.errors.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
        )
    }
}

/// The run's rate over time: completions and bytes per sampling interval.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Timeline {
    /// Seconds since the start, at the end of each interval.
    pub at: Vec<f64>,
    /// Completions per second in each interval.
    pub per_second: Vec<f64>,
    /// Bytes per second in each interval.
    pub bytes_per_second: Vec<f64>,
}

/// How often the sampler looks at the counters.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(250);

/// Samples `counters` every [`SAMPLE_EVERY`] until `done` resolves, calling
/// `tick` with (elapsed, completed, errors, bytes) for a progress display.
pub async fn sample(
    counters: Arc<Counters>,
    started: Instant,
    done: impl Future<Output = ()>,
    mut tick: impl FnMut(Duration, u64, u64, u64),
) -> Timeline {
    let mut timeline = Timeline::default();
    let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + SAMPLE_EVERY, SAMPLE_EVERY);
    let (mut last_at, mut last_completed, mut last_bytes) = (0.0, 0, 0);
    tokio::pin!(done);
    loop {
        let finished = tokio::select! {
            () = &mut done => true,
            _ = interval.tick() => false,
        };
        let elapsed = started.elapsed();
        let (completed, errors, bytes) = counters.snapshot();
        let at = elapsed.as_secs_f64();
        let span = at - last_at;
        if span > 0.01 {
            timeline.at.push(at);
            timeline.per_second.push((completed - last_completed) as f64 / span);
            timeline.bytes_per_second.push((bytes - last_bytes) as f64 / span);
            (last_at, last_completed, last_bytes) = (at, completed, bytes);
        }
        tick(elapsed, completed, errors, bytes);
        if finished {
            return timeline;
        }
    }
}

/// A token cancelled when `stop` is, or, for a run with a duration and a
/// timeout, one timeout after the duration: however the server behaves (a
/// trickle of bytes resets every per-read timeout), the run ends.
pub fn halt_token(stop: &CancellationToken, limit: Limit, timeout: Option<Duration>) -> CancellationToken {
    let halt = stop.child_token();
    if let (Limit::Duration(duration), Some(timeout)) = (limit, timeout) {
        let halt = halt.clone();
        tokio::spawn(async move {
            tokio::time::sleep(duration + timeout).await;
            halt.cancel();
        });
    }
    halt
}

/// A new latency histogram in nanoseconds, 1 ns to 1 hour, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000_000, 3).expect("valid histogram bounds")
}

/// Records a latency, clamping to the histogram's range rather than failing.
pub fn record(histogram: &mut Histogram<u64>, latency: Duration) {
    histogram.saturating_record(u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX).max(1));
}

/// A shared allowance of work: `take` succeeds `total` times in all, across
/// every worker (or always, when unlimited).
#[derive(Debug)]
pub struct Budget {
    remaining: Option<AtomicU64>,
    deadline: Option<Instant>,
}

impl Budget {
    /// A budget for `limit`, counting time from `started`.
    pub fn new(limit: Limit, started: Instant) -> Budget {
        match limit {
            Limit::Count(n) => Budget {
                remaining: Some(AtomicU64::new(n)),
                deadline: None,
            },
            Limit::Duration(d) => Budget {
                remaining: None,
                deadline: Some(started + d),
            },
        }
    }

    /// Takes one unit of work; `false` once the budget is spent or time is up.
    pub fn take(&self) -> bool {
        if self.deadline.is_some_and(|deadline| Instant::now() >= deadline) {
            return false;
        }
        match &self.remaining {
            None => true,
            Some(remaining) => remaining
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok(),
        }
    }

    /// Whether time is up, or the count is spent.
    pub fn expired(&self) -> bool {
        self.deadline.is_some_and(|deadline| Instant::now() >= deadline)
            || self
                .remaining
                .as_ref()
                .is_some_and(|remaining| remaining.load(Ordering::Relaxed) == 0)
    }

    /// When time is up, if the limit is a duration.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_counts_across_takers() {
        let budget = Budget::new(Limit::Count(3), Instant::now());
        assert!(!budget.expired());
        assert_eq!((0..5).filter(|_| budget.take()).count(), 3);
        assert!(budget.expired(), "a spent count is expired");
        let timed = Budget::new(Limit::Duration(Duration::ZERO), Instant::now());
        assert!(!timed.take());
        assert!(timed.expired());
    }

    #[test]
    fn errors_are_classified_and_counted() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(ErrorKind::of(&refused), ErrorKind::Refused);
        assert_eq!(
            ErrorKind::of(&std::io::Error::from(std::io::ErrorKind::BrokenPipe)),
            ErrorKind::Reset
        );
        let mut counts = ErrorCounts::default();
        counts.add(ErrorKind::WrongAnswer);
        counts.add(ErrorKind::WrongAnswer);
        let mut total = ErrorCounts::default();
        total.add(ErrorKind::Timeout);
        total.merge(&counts);
        assert_eq!(
            (
                total.get(ErrorKind::WrongAnswer),
                total.get(ErrorKind::Timeout),
                total.total()
            ),
            (2, 1, 3)
        );
    }

    #[test]
    fn latencies_are_recorded_in_nanoseconds() {
        let mut histogram = new_histogram();
        record(&mut histogram, Duration::from_micros(50));
        record(&mut histogram, Duration::ZERO);
        assert_eq!(histogram.len(), 2);
        assert!((49_900..=50_100).contains(&histogram.max()));
        assert_eq!(histogram.min(), 1);
    }
}
