//! Caps on the log lines a remote peer can cause.
//!
//! A line per request or per connection is what a person at a terminal
//! wants (the guide prints one), but a peer controls how many it causes:
//! under load, formatting and writing them cut pipelined throughput by three
//! quarters when measured, and a hostile peer can fill a disk. So every line
//! a peer can cause goes through a [`LineBudget`]: at most so many lines
//! *and* so many bytes a second. Lines past the cap are counted, and a
//! reporter thread logs the count once a second, so a burst's last second
//! is reported even if no further line comes.
//!
//! Use [`limited!`](crate::limited) rather than calling the budget by hand.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Once, OnceLock};
use std::time::{Duration, Instant};

/// Lines a second that one budget lets through.
pub const LINES_PER_SECOND: u64 = 100;
/// Bytes a second that one budget lets through. Peer-supplied values in a
/// line are cut to [`crate::escape::LOG_VALUE_LIMIT`] bytes, so lines are
/// short; this bounds what a flood of the longest ones can write.
pub const BYTES_PER_SECOND: u64 = 64 * 1024;

/// Per-request (and per-datagram) lines.
pub static REQUEST_LINES: LineBudget = LineBudget::new("request", LINES_PER_SECOND, BYTES_PER_SECOND);
/// "Accepted connection" and "Closing connection" lines.
pub static CONNECTION_LINES: LineBudget = LineBudget::new("connection", LINES_PER_SECOND, BYTES_PER_SECOND);
/// Warnings and errors a peer can cause: oversized or unanswerable
/// datagrams, dropped replies, accept failures while descriptors run out.
pub static PEER_WARNINGS: LineBudget = LineBudget::new("warning", 20, 16 * 1024);

/// Every budget, for the reporter.
static ALL: [&LineBudget; 3] = [&REQUEST_LINES, &CONNECTION_LINES, &PEER_WARNINGS];

/// A per-second allowance of log lines and bytes, shared by every connection.
#[derive(Debug)]
pub struct LineBudget {
    name: &'static str,
    lines_per_second: u64,
    bytes_per_second: u64,
    window: AtomicU64,
    lines: AtomicU64,
    bytes: AtomicU64,
    suppressed: AtomicU64,
}

impl LineBudget {
    /// A budget named `name` (for the suppression report).
    pub const fn new(name: &'static str, lines_per_second: u64, bytes_per_second: u64) -> LineBudget {
        LineBudget {
            name,
            lines_per_second,
            bytes_per_second,
            window: AtomicU64::new(0),
            lines: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// Whether one more line fits this second. Cheap: callers format the
    /// line only after this says yes, then call [`LineBudget::admit_bytes`].
    pub fn admit_line(&self) -> bool {
        self.admit_line_in(seconds_since_start())
    }

    /// [`LineBudget::admit_line`] in a given second (for tests). Counting is
    /// approximate across threads at a window's edge, which is fine for a log.
    pub fn admit_line_in(&self, second: u64) -> bool {
        let window = self.window.load(Ordering::Relaxed);
        if second != window
            && self
                .window
                .compare_exchange(window, second, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.lines.store(0, Ordering::Relaxed);
            self.bytes.store(0, Ordering::Relaxed);
        }
        if self.lines.fetch_add(1, Ordering::Relaxed) < self.lines_per_second {
            true
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            false
        }
    }

    /// Whether a formatted line of `len` bytes fits this second's byte allowance.
    pub fn admit_bytes(&self, len: usize) -> bool {
        let before = self.bytes.fetch_add(len as u64, Ordering::Relaxed);
        if before + len as u64 <= self.bytes_per_second {
            true
        } else {
            // Not written, so not counted: a shorter line may still fit.
            self.bytes.fetch_sub(len as u64, Ordering::Relaxed);
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            false
        }
    }

    /// Takes the count of lines suppressed since the last call.
    pub fn take_suppressed(&self) -> u64 {
        self.suppressed.swap(0, Ordering::Relaxed)
    }

    /// The budget's name.
    pub fn name(&self) -> &'static str {
        self.name
    }
}

fn seconds_since_start() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_secs()
}

/// Logs a line through a [`LineBudget`]: formatted only if the budget has
/// room for a line, written only if it also has room for its bytes.
///
/// ```text
/// limited!(CONNECTION_LINES, INFO, "Accepted connection from {peer}");
/// ```
#[macro_export]
macro_rules! limited {
    ($budget:expr, $level:ident, $($arg:tt)+) => {
        if ::tracing::enabled!(::tracing::Level::$level) && $budget.admit_line() {
            let line = ::std::format!($($arg)+);
            if $budget.admit_bytes(line.len()) {
                ::tracing::event!(::tracing::Level::$level, "{line}");
            }
        }
    };
}

/// Starts (once per process) the thread that logs, every second, how many
/// lines each budget suppressed. A thread rather than a task: it must keep
/// reporting whichever runtime the servers run on.
pub fn start_reporter() {
    static STARTED: Once = Once::new();
    STARTED.call_once(|| {
        let spawned = std::thread::Builder::new().name("log-limit".into()).spawn(|| {
            loop {
                std::thread::sleep(Duration::from_secs(1));
                report_suppressed();
            }
        });
        if let Err(error) = spawned {
            tracing::warn!("cannot start the log-limit reporter: {error}");
        }
    });
}

/// Logs the suppressed counts now.
pub fn report_suppressed() {
    for budget in ALL {
        let count = budget.take_suppressed();
        if count > 0 {
            tracing::info!(
                "({count} {} lines not logged in the last second: at most {} lines and {} KiB a second)",
                budget.name,
                budget.lines_per_second,
                budget.bytes_per_second / 1024
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_past_the_cap_are_counted_and_the_window_resets() {
        let budget = LineBudget::new("test", 3, 1_000_000);
        let first: Vec<bool> = (0..5).map(|_| budget.admit_line_in(7)).collect();
        assert_eq!(first, [true, true, true, false, false]);
        assert_eq!(budget.take_suppressed(), 2);
        assert_eq!(budget.take_suppressed(), 0, "taking resets the count");
        assert!(budget.admit_line_in(8), "a new second has a new allowance");
    }

    #[test]
    fn bytes_are_capped_too() {
        let budget = LineBudget::new("test", 100, 1000);
        assert!(budget.admit_line_in(1) && budget.admit_bytes(600));
        assert!(budget.admit_line_in(1) && !budget.admit_bytes(600), "over the byte cap");
        assert!(
            budget.admit_line_in(1) && budget.admit_bytes(300),
            "a short line still fits"
        );
        assert_eq!(budget.take_suppressed(), 1);
        assert!(
            budget.admit_line_in(2) && budget.admit_bytes(900),
            "bytes reset each second"
        );
    }
}
