//! `sockets broker`: publish/subscribe over the application protocol
//! (docs/PROTOCOL.md §9). A client subscribes to channels; a publish to a
//! channel is answered with the number of subscribers it reached, and each
//! of them gets a `{"channel": ..., "message": ...}` frame. Search and
//! binary requests are answered as `app-server` answers them.
//!
//! A published message is encoded once and shared by every subscriber's
//! outbox. Each outbox is bounded the way Redis bounds a pub/sub client's
//! output buffer ([`OutputLimits`]): a subscriber past the hard limit, or
//! past the soft limit for longer than its grace, is disconnected with a
//! reason, so one that never reads costs at most the hard limit and slows
//! nobody.

pub mod command;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Notify;

use crate::app::serve::{AppHandler, queue_farewell};
use crate::app::{REQUEST_LABELS, result_message};
use crate::limited;
use crate::protocol::{Message, MessageCodec};
use crate::server::driver::Driver;
use crate::server::log_limit::REQUEST_LINES;
use crate::server::{CloseReason, Connection, ConnectionHandler};
use crate::transport::splice::Splice;
use command::{Command, Push};

/// How far behind a subscriber may fall (Redis's `client-output-buffer-limit pubsub`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputLimits {
    /// Queued bytes past which a subscriber is disconnected at once (0: none).
    pub hard: usize,
    /// Queued bytes a subscriber may stay above for at most `soft_seconds` (0: none).
    pub soft: usize,
    pub soft_for: Duration,
}

impl Default for OutputLimits {
    /// Redis's defaults: 32 MiB hard, 8 MiB for 60 seconds.
    fn default() -> Self {
        OutputLimits {
            hard: 32 * 1024 * 1024,
            soft: 8 * 1024 * 1024,
            soft_for: Duration::from_secs(60),
        }
    }
}

/// The (action, outcome) labels the broker's requests are counted under:
/// the application's, then the broker's own.
pub const BROKER_LABELS: [(&str, &str); APP_LABELS + 4] = {
    let own = [
        ("subscribe", "ok"),
        ("unsubscribe", "ok"),
        ("publish", "ok"),
        ("broker", "bad_request"),
    ];
    let mut all = [("", ""); APP_LABELS + 4];
    let mut at = 0;
    while at < all.len() {
        all[at] = if at < APP_LABELS {
            REQUEST_LABELS[at]
        } else {
            own[at - APP_LABELS]
        };
        at += 1;
    }
    all
};
/// Where the broker's own labels begin in [`BROKER_LABELS`].
const APP_LABELS: usize = REQUEST_LABELS.len();
/// The label of a pub/sub request that is wrong.
const BAD_COMMAND: usize = APP_LABELS + 3;

impl Command<'_> {
    /// This request's place in [`BROKER_LABELS`].
    fn label(&self) -> usize {
        match self {
            Command::Subscribe { .. } => APP_LABELS,
            Command::Unsubscribe { .. } => APP_LABELS + 1,
            Command::Publish { .. } => APP_LABELS + 2,
        }
    }
}

/// Most channels one connection may subscribe to.
pub const MAX_SUBSCRIPTIONS: usize = 1024;
/// Published bytes moved into a connection's write buffer at a time; the
/// rest waits in its outbox, where the limits count it.
const WRITE_BATCH: usize = 64 * 1024;

/// One subscriber's queue of published frames.
#[derive(Debug, Default)]
struct Outbox {
    state: Mutex<OutboxState>,
    ready: Notify,
}

#[derive(Debug, Default)]
struct OutboxState {
    frames: VecDeque<Bytes>,
    bytes: usize,
    over_soft_since: Option<Instant>,
    /// Set when the subscriber is to be disconnected, with why.
    killed: Option<String>,
}

impl Outbox {
    fn lock(&self) -> std::sync::MutexGuard<'_, OutboxState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `frame`; `false` if the subscriber is (now) over its limits.
    fn push(&self, frame: &Bytes, limits: &OutputLimits) -> bool {
        let mut state = self.lock();
        if state.killed.is_some() {
            return false;
        }
        // The subscriber is woken when its outbox stops being empty; while
        // it is not, the subscriber is still working through it.
        let wake = state.frames.is_empty();
        state.frames.push_back(frame.clone());
        state.bytes += frame.len();
        if limits.hard > 0 && state.bytes > limits.hard {
            state.killed = Some(format!(
                "{} bytes queued, above the hard limit of {}",
                state.bytes, limits.hard
            ));
        } else if limits.soft > 0 && state.bytes > limits.soft {
            // The clock is read only here: most pushes are under the limits.
            let now = Instant::now();
            let since = *state.over_soft_since.get_or_insert(now);
            if now.duration_since(since) > limits.soft_for {
                state.killed = Some(format!(
                    "above the soft limit of {} bytes for more than {}",
                    limits.soft,
                    crate::display_duration(limits.soft_for)
                ));
            }
        } else {
            state.over_soft_since = None;
        }
        let delivered = state.killed.is_none();
        drop(state);
        if wake || !delivered {
            self.ready.notify_one();
        }
        delivered
    }

    /// Takes frames worth up to `budget` bytes (at least one), or why the
    /// subscriber was disconnected.
    fn take(&self, budget: usize) -> Result<Vec<Bytes>, String> {
        let mut state = self.lock();
        if let Some(why) = &state.killed {
            return Err(why.clone());
        }
        let mut taken = Vec::new();
        let mut size = 0;
        while let Some(frame) = state.frames.front() {
            if !taken.is_empty() && size + frame.len() > budget {
                break;
            }
            size += frame.len();
            taken.push(state.frames.pop_front().expect("checked"));
        }
        state.bytes -= size;
        Ok(taken)
    }

    fn is_empty(&self) -> bool {
        let state = self.lock();
        state.frames.is_empty() && state.killed.is_none()
    }

    /// Why the subscriber is to be disconnected, once it is.
    fn killed(&self) -> Option<String> {
        self.lock().killed.clone()
    }
}

/// The channels and their subscribers.
#[derive(Debug, Default)]
pub struct Broker {
    channels: Mutex<HashMap<String, HashMap<u64, Arc<Outbox>>>>,
    limits: OutputLimits,
    next_subscriber: AtomicU64,
}

impl Broker {
    pub fn new(limits: OutputLimits) -> Broker {
        Broker {
            limits,
            ..Broker::default()
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, HashMap<u64, Arc<Outbox>>>> {
        self.channels.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn subscribe(&self, channel: &str, id: u64, outbox: &Arc<Outbox>) {
        self.lock()
            .entry(channel.to_owned())
            .or_default()
            .insert(id, Arc::clone(outbox));
    }

    fn unsubscribe(&self, channel: &str, id: u64) {
        let mut channels = self.lock();
        if let Some(subscribers) = channels.get_mut(channel) {
            subscribers.remove(&id);
            if subscribers.is_empty() {
                channels.remove(channel);
            }
        }
    }

    /// Delivers `message` to `channel`'s subscribers; returns how many got it.
    pub fn publish(&self, channel: &str, message: &str) -> u64 {
        let frame =
            crate::protocol::codec::encode_message(&Message::json(&Push { channel, message })).expect("pushes encode");
        let channels = self.lock();
        let Some(subscribers) = channels.get(channel) else {
            return 0;
        };
        subscribers
            .values()
            .filter(|outbox| outbox.push(&frame, &self.limits))
            .count() as u64
    }

    /// Subscribers of `channel` now.
    pub fn subscribers(&self, channel: &str) -> usize {
        self.lock().get(channel).map_or(0, HashMap::len)
    }
}

/// Serves pub/sub, and search and binary requests as `app-server` does.
#[derive(Debug, Clone)]
pub struct BrokerHandler {
    pub broker: Arc<Broker>,
    /// What answers everything that is not pub/sub (and its limits).
    pub app: AppHandler,
}

/// A connection's subscriptions, dropped from the broker when it ends.
struct Subscriptions<'a> {
    broker: &'a Broker,
    id: u64,
    channels: HashSet<String>,
    outbox: Arc<Outbox>,
}

impl Drop for Subscriptions<'_> {
    fn drop(&mut self) {
        for channel in &self.channels {
            self.broker.unsubscribe(channel, self.id);
        }
    }
}

impl ConnectionHandler for BrokerHandler {
    async fn handle<S>(&self, connection: Connection<S>) -> CloseReason
    where
        S: AsyncRead + AsyncWrite + Splice + Unpin + Send + 'static,
    {
        let codec = MessageCodec::new().with_max_content_len(self.app.max_content_len);
        let (mut driver, peer) = Driver::for_connection(connection, codec);
        let mut subscriptions = Subscriptions {
            broker: &self.broker,
            id: self.broker.next_subscriber.fetch_add(1, Ordering::Relaxed),
            channels: HashSet::new(),
            outbox: Arc::new(Outbox::default()),
        };
        let outbox = Arc::clone(&subscriptions.outbox);
        let reason = loop {
            if let Some(why) = outbox.killed() {
                break CloseReason::OutputLimit(why);
            }
            // Published frames go to the write buffer a batch at a time.
            let room = WRITE_BATCH.saturating_sub(driver.pending_output());
            if room > 0 && !outbox.is_empty() {
                match outbox.take(room) {
                    Ok(frames) => driver.queue_encoded(&frames),
                    Err(why) => break CloseReason::OutputLimit(why),
                }
            }
            if !outbox.is_empty() {
                // More than a batch is waiting: write before taking more. A
                // publish (which may cut a slow subscriber off) interrupts.
                tokio::select! {
                    flushed = driver.flush() => if let Err(end) = flushed {
                        break end.into();
                    },
                    () = outbox.ready.notified() => {}
                }
                continue;
            }
            let request = tokio::select! {
                request = driver.next_request() => request,
                () = outbox.ready.notified(), if !subscriptions.channels.is_empty() => continue,
            };
            let request = match request {
                Ok(request) => request,
                Err(end) => {
                    queue_farewell(&mut driver, &end, &peer);
                    break end.into();
                }
            };
            let (response, label) = match Command::parse(&request) {
                Some(Ok(command)) => {
                    let label = command.label();
                    let response = self.run(command, &mut subscriptions);
                    // A subscriber's own publish reaches it before the answer.
                    if let Ok(frames) = outbox.take(WRITE_BATCH) {
                        driver.queue_encoded(&frames);
                    }
                    (response, label)
                }
                Some(Err(error)) => (error.to_message(), BAD_COMMAND),
                None => {
                    self.app.answer(&mut driver, &request, &peer);
                    continue;
                }
            };
            if let Err(error) = driver.queue_answer(&response, label) {
                limited!(REQUEST_LINES, WARN, "Cannot answer {peer}: {error}");
            }
        };
        driver.close(reason).await
    }
}

impl BrokerHandler {
    fn run(&self, command: Command<'_>, subscriptions: &mut Subscriptions<'_>) -> Message {
        match command {
            Command::Subscribe { channel } => {
                let answer = result_message(&format!("Subscribed to '{}'.", crate::escape::clip(&channel)));
                if !subscriptions.channels.contains(channel.as_ref()) {
                    if subscriptions.channels.len() >= MAX_SUBSCRIPTIONS {
                        return result_message(&format!(
                            "Error: a connection may subscribe to at most {MAX_SUBSCRIPTIONS} channels."
                        ));
                    }
                    self.broker.subscribe(&channel, subscriptions.id, &subscriptions.outbox);
                    subscriptions.channels.insert(channel.into_owned());
                }
                answer
            }
            Command::Unsubscribe { channel } => {
                if subscriptions.channels.remove(channel.as_ref()) {
                    self.broker.unsubscribe(&channel, subscriptions.id);
                }
                result_message(&format!("Unsubscribed from '{}'.", crate::escape::clip(&channel)))
            }
            Command::Publish { channel, message } => {
                let receivers = self.broker.publish(&channel, &message);
                Message::json(&command::Receivers { result: receivers })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_broker_labels_extend_the_applications() {
        assert_eq!(
            BROKER_LABELS[..crate::app::REQUEST_LABELS.len()],
            crate::app::REQUEST_LABELS
        );
    }

    #[test]
    fn an_outbox_past_its_hard_limit_is_cut_off() {
        let limits = OutputLimits {
            hard: 100,
            soft: 0,
            soft_for: Duration::ZERO,
        };
        let outbox = Outbox::default();
        let frame = Bytes::from(vec![0u8; 40]);
        assert!(outbox.push(&frame, &limits));
        assert!(outbox.push(&frame, &limits));
        assert!(!outbox.push(&frame, &limits), "120 bytes queued, limit 100");
        assert!(outbox.take(1000).unwrap_err().contains("above the hard limit of 100"));
    }

    #[test]
    fn an_outbox_over_its_soft_limit_too_long_is_cut_off() {
        let limits = OutputLimits {
            hard: 0,
            soft: 50,
            soft_for: Duration::from_millis(30),
        };
        let outbox = Outbox::default();
        let frame = Bytes::from(vec![0u8; 60]);
        assert!(outbox.push(&frame, &limits), "just over: the grace starts");
        std::thread::sleep(Duration::from_millis(50));
        assert!(!outbox.push(&frame, &limits), "over for longer than the grace");
        // Draining below the soft limit resets the grace.
        let fresh = Outbox::default();
        assert!(fresh.push(&frame, &limits));
        assert_eq!(fresh.take(1000).unwrap().len(), 1);
        std::thread::sleep(Duration::from_millis(50));
        assert!(fresh.push(&Bytes::from(vec![0u8; 10]), &limits));
    }

    #[test]
    fn publish_reaches_each_subscriber_once_and_counts_them() {
        let broker = Broker::new(OutputLimits::default());
        let (a, b) = (Arc::new(Outbox::default()), Arc::new(Outbox::default()));
        broker.subscribe("news", 1, &a);
        broker.subscribe("news", 2, &b);
        broker.subscribe("news", 2, &b);
        assert_eq!(broker.publish("news", "hello"), 2);
        assert_eq!(broker.publish("sport", "goal"), 0);
        let frames = a.take(usize::MAX).unwrap();
        assert_eq!(frames.len(), 1);
        assert!(frames[0].ends_with(br#"{"channel": "news", "message": "hello"}"#));
        broker.unsubscribe("news", 1);
        assert_eq!(broker.subscribers("news"), 1);
    }
}
