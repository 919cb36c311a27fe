//! A cap on per-request log lines.
//!
//! A line per request is what a person at a terminal wants (the guide prints
//! one), but under load it costs more than the request: formatting plus a
//! write to stderr per line cut pipelined throughput by three quarters when
//! measured. So per-request lines are capped per second; past the cap they
//! are counted, and the count is logged when the next second's first line is.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Per-request log lines written per second at most.
pub const REQUEST_LINES_PER_SECOND: u64 = 100;

/// What to do with one log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Write it; first report this many lines suppressed since the last one written.
    Write { suppressed_before: u64 },
    /// Over the cap: skip it (it has been counted).
    Suppress,
}

/// A per-second allowance of log lines, shared by every connection.
#[derive(Debug)]
pub struct LineBudget {
    per_second: u64,
    window: AtomicU64,
    used: AtomicU64,
    suppressed: AtomicU64,
}

impl LineBudget {
    /// A budget of `per_second` lines.
    pub const fn new(per_second: u64) -> LineBudget {
        LineBudget {
            per_second,
            window: AtomicU64::new(0),
            used: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// Decides about one line now.
    pub fn admit(&self) -> Admit {
        static START: OnceLock<Instant> = OnceLock::new();
        self.admit_in(START.get_or_init(Instant::now).elapsed().as_secs())
    }

    /// Decides about one line in the given second. Counting is approximate
    /// across threads at a window's edge, which is fine for a log.
    pub fn admit_in(&self, second: u64) -> Admit {
        let window = self.window.load(Ordering::Relaxed);
        if second != window
            && self
                .window
                .compare_exchange(window, second, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.used.store(0, Ordering::Relaxed);
        }
        if self.used.fetch_add(1, Ordering::Relaxed) < self.per_second {
            Admit::Write {
                suppressed_before: self.suppressed.swap(0, Ordering::Relaxed),
            }
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            Admit::Suppress
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_past_the_cap_are_counted_and_reported_next_second() {
        let budget = LineBudget::new(3);
        let first: Vec<Admit> = (0..5).map(|_| budget.admit_in(7)).collect();
        assert_eq!(first[..3], [Admit::Write { suppressed_before: 0 }; 3]);
        assert_eq!(first[3..], [Admit::Suppress; 2]);
        assert_eq!(budget.admit_in(8), Admit::Write { suppressed_before: 2 });
        assert_eq!(budget.admit_in(8), Admit::Write { suppressed_before: 0 });
    }
}
