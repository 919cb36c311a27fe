//! Optional time limits, written once. Every timeout flag allows 0 for "no
//! limit", so limits are `Option<Duration>` throughout, and these helpers
//! are the one place that turns "ran out of time" into a value or an error.

use std::future::Future;
use std::io;
use std::time::Duration;

use tokio::time::Instant;

use crate::display_duration;

/// Runs `future` within `limit`; `None` when time ran out first.
pub async fn within<T>(limit: Option<Duration>, future: impl Future<Output = T>) -> Option<T> {
    match limit {
        Some(limit) => tokio::time::timeout(limit, future).await.ok(),
        None => Some(future.await),
    }
}

/// Runs I/O within `limit`; running out of time is an I/O error of kind
/// `TimedOut` that says how long was waited.
///
/// # Errors
/// The I/O's own error, or [`timed_out`].
pub async fn within_io<T>(limit: Option<Duration>, io: impl Future<Output = io::Result<T>>) -> io::Result<T> {
    match within(limit, io).await {
        Some(result) => result,
        None => Err(timed_out(limit.unwrap_or_default())),
    }
}

/// The error for a wait that ran out after `limit`.
pub fn timed_out(limit: Duration) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!("timed out after {}", display_duration(limit)),
    )
}

/// Sleeps for `limit`, or forever for `None`.
pub async fn sleep_for(limit: Option<Duration>) {
    match limit {
        Some(limit) => tokio::time::sleep(limit).await,
        None => std::future::pending().await,
    }
}

/// Sleeps until `deadline`, or forever for `None`.
pub async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn limits_apply_and_none_means_no_limit() {
        let slow = tokio::time::sleep(Duration::from_secs(5));
        assert_eq!(within(Some(Duration::from_secs(1)), slow).await, None);
        assert_eq!(within(None, async { 7 }).await, Some(7));
        let error = within_io(
            Some(Duration::from_millis(250)),
            std::future::pending::<io::Result<()>>(),
        )
        .await
        .unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert_eq!(error.to_string(), "timed out after 250ms");
    }
}
