//! Optional time limits, written once. Every timeout flag allows 0 for "no
//! limit", so limits are `Option<Duration>` throughout, and these helpers
//! are the one place that turns "ran out of time" into a value or an error.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::time::Duration;

use tokio::time::{Instant, Sleep};

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

/// One timer for many waits in turn, such as a connection's idle, request
/// and write-stall deadlines: made at the first wait that needs it, then
/// moved. Moving tokio's (default) timer later is one atomic store (it is
/// re-filed only when the old time comes), whereas a timer made per wait
/// is filed in tokio's wheel and taken out again each time: about 300
/// instructions a request from a client that waits for each answer
/// (callgrind, `bench app -c 1`). Moving it earlier (a request deadline
/// inside an idle one) re-files it. Boxed, so that its owner need not be
/// pinned.
#[derive(Debug, Default)]
pub struct ReusableTimer(Option<Pin<Box<Sleep>>>);

impl ReusableTimer {
    /// The timer, set to `deadline`.
    pub fn until(&mut self, deadline: Instant) -> Pin<&mut Sleep> {
        let mut made = false;
        let timer = self.0.get_or_insert_with(|| {
            made = true;
            Box::pin(tokio::time::sleep_until(deadline))
        });
        if !made {
            timer.as_mut().reset(deadline);
        }
        timer.as_mut()
    }

    /// Completes at `deadline`; never for `None` (and then the timer is
    /// left alone). The timer is set when this is called, not when polled.
    pub fn expiry(&mut self, deadline: Option<Instant>) -> impl Future<Output = ()> + '_ {
        let timer = deadline.map(|deadline| self.until(deadline));
        async move {
            match timer {
                Some(timer) => timer.await,
                None => std::future::pending().await,
            }
        }
    }

    /// Runs `future` within `limit` (`None`: no limit); `None` when time ran out first.
    pub async fn within<F: Future>(&mut self, limit: Option<Duration>, future: F) -> Option<F::Output> {
        let Some(limit) = limit else {
            return Some(future.await);
        };
        tokio::select! {
            biased;
            output = future => Some(output),
            () = self.until(Instant::now() + limit) => None,
        }
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

    #[tokio::test(start_paused = true)]
    async fn one_timer_serves_waits_in_turn_moved_later_or_earlier() {
        let mut timer = ReusableTimer::default();
        let started = Instant::now();
        // A wait that ends first leaves the timer set; the next moves it later.
        assert_eq!(timer.within(Some(Duration::from_secs(5)), async { 1 }).await, Some(1));
        let slow = tokio::time::sleep(Duration::from_secs(10));
        assert_eq!(timer.within(Some(Duration::from_secs(8)), slow).await, None);
        assert_eq!(started.elapsed(), Duration::from_secs(8), "timed from the second wait");
        // Moved earlier than where it stands (re-filed), then fired.
        let at = Instant::now();
        timer.until(at + Duration::from_secs(60));
        timer.expiry(Some(at + Duration::from_secs(2))).await;
        assert_eq!(at.elapsed(), Duration::from_secs(2));
        // After firing, it is set again and fires again.
        let again = Instant::now();
        timer.expiry(Some(again + Duration::from_millis(300))).await;
        assert_eq!(again.elapsed(), Duration::from_millis(300));
        // No deadline: never, and no limit: the future's own time.
        let never = timer.expiry(None);
        assert!(tokio::time::timeout(Duration::from_secs(3600), never).await.is_err());
        let unlimited = tokio::time::sleep(Duration::from_secs(100));
        assert_eq!(timer.within(None, unlimited).await, Some(()));
    }
}
