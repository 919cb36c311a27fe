//! The accept loop every server shares: connection limit, accept-error
//! back-off, one task per connection, graceful shutdown.
//!
//! What a connection does is a [`Service`]'s business; this module only
//! decides when connections start and how the server stops:
//!
//! 1. Shutdown is requested (the token is cancelled): stop accepting and
//!    close the listening socket, so new clients are refused by the kernel.
//! 2. Each connection sees the same token, answers every request it has
//!    already received, flushes, and closes.
//! 3. The server waits for them up to [`ServerConfig::shutdown_timeout`], then
//!    returns whatever is left, so a stuck client cannot hold the process.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, warn};

use crate::display_duration;
use crate::protocol::ProtocolError;
use crate::transport::{Acceptor, PeerAddr};

/// Default cap on concurrently open connections.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Default time a connection may go without completing a request.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default time open connections get to finish after shutdown is requested.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause after `accept` fails for lack of file descriptors or memory: long
/// enough not to spin, short enough to resume quickly when a connection closes.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Limits shared by every server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub max_connections: usize,
    pub idle_timeout: Duration,
    pub shutdown_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
        }
    }
}

/// One accepted connection, as a [`Service`] receives it.
#[derive(Debug)]
pub struct Connection<S> {
    pub stream: S,
    pub peer: PeerAddr,
    /// Cancelled when the server shuts down: finish what was received, then close.
    pub shutdown: CancellationToken,
    pub idle_timeout: Duration,
}

/// What a server does with each connection.
pub trait Service: Send + Sync + 'static {
    /// Serves one connection until it ends, and says why it ended.
    fn serve<S>(&self, connection: Connection<S>) -> impl Future<Output = CloseReason> + Send
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static;
}

/// Why a connection was closed, for the `Closing connection` log line.
#[derive(Debug)]
pub enum CloseReason {
    /// The client closed its side and every request was answered.
    PeerClosed,
    /// `--one-shot`: the one response was sent.
    ResponseSent,
    /// No complete request within the idle timeout.
    Idle(Duration),
    /// The client did not read its responses within the idle timeout.
    WriteStalled(Duration),
    /// The server is shutting down and the connection had nothing pending.
    Shutdown,
    /// The client sent bytes that are not a valid message; it was told why.
    BadStream(ProtocolError),
    /// The connection failed (reset, broken pipe, ...).
    Io(std::io::Error),
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::PeerClosed => f.write_str("client closed the connection"),
            CloseReason::ResponseSent => f.write_str("response sent"),
            CloseReason::Idle(after) => write!(f, "idle for {}", display_duration(*after)),
            CloseReason::WriteStalled(after) => {
                write!(f, "client read nothing for {}", display_duration(*after))
            }
            CloseReason::Shutdown => f.write_str("server shutting down"),
            CloseReason::BadStream(error) => write!(f, "bad message: {error}"),
            CloseReason::Io(error) => write!(f, "connection error: {error}"),
        }
    }
}

/// Accepts connections and serves each on its own task until `shutdown` is
/// cancelled, then drains as described in the module docs.
pub async fn run<A, S>(mut acceptor: A, config: ServerConfig, service: Arc<S>, shutdown: CancellationToken)
where
    A: Acceptor,
    S: Service,
{
    let permits = Arc::new(Semaphore::new(config.max_connections.max(1)));
    let tracker = TaskTracker::new();
    let mut at_limit = false;
    loop {
        let permit = match permits.clone().try_acquire_owned() {
            Ok(permit) => {
                at_limit = false;
                permit
            }
            Err(_) => {
                if !at_limit {
                    warn!(
                        "Connection limit of {} reached; new clients wait in the listen backlog until a connection closes",
                        config.max_connections
                    );
                    at_limit = true;
                }
                tokio::select! {
                    permit = permits.clone().acquire_owned() => permit.expect("semaphore is never closed"),
                    () = shutdown.cancelled() => break,
                }
            }
        };
        let accepted = tokio::select! {
            accepted = acceptor.accept() => accepted,
            () = shutdown.cancelled() => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) if is_resource_exhaustion(&error) => {
                error!(
                    "accept failed: {error}; pausing accepts for {}",
                    display_duration(ACCEPT_BACKOFF)
                );
                tokio::select! {
                    () = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                    () = shutdown.cancelled() => break,
                }
            }
            Err(error) => {
                // Typically ECONNABORTED: that client gave up before we got to it.
                debug!("accept failed: {error}");
                continue;
            }
        };
        info!("Accepted connection from {peer}");
        let connection = Connection {
            stream,
            peer,
            shutdown: shutdown.clone(),
            idle_timeout: config.idle_timeout,
        };
        let service = Arc::clone(&service);
        tracker.spawn(async move {
            let peer = connection.peer.clone();
            let reason = service.serve(connection).await;
            info!("Closing connection to {peer} ({reason})");
            drop(permit);
        });
    }
    drop(acceptor);
    tracker.close();
    let open = tracker.len();
    info!("Stopped accepting; waiting for {open} open connection(s) to finish");
    if tokio::time::timeout(config.shutdown_timeout, tracker.wait())
        .await
        .is_err()
    {
        warn!(
            "{} connection(s) still open after {}; closing them",
            tracker.len(),
            display_duration(config.shutdown_timeout)
        );
    }
}

/// `accept` errors that mean "not now" for the whole process rather than
/// "that one client failed".
fn is_resource_exhaustion(error: &std::io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// Resolves when the process is asked to stop (Ctrl-C or SIGTERM) and
/// cancels `token`. A second signal exits at once with status 130.
pub fn cancel_on_signal(token: CancellationToken) {
    tokio::spawn(async move {
        let first = wait_for_signal().await;
        info!("Received {first}; shutting down gracefully (send it again to exit at once)");
        token.cancel();
        let second = wait_for_signal().await;
        warn!("Received {second} again; exiting now");
        std::process::exit(130);
    });
}

async fn wait_for_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("installing a SIGINT handler");
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}
