//! Ctrl-C and SIGTERM: the first asks for a graceful stop, the second exits
//! at once. Here, not in the library, because only the binary may exit.

use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Cancels `token` on the first SIGINT or SIGTERM; exits with status 130 on
/// the second. The handlers are in place when this returns, so a signal
/// sent right after the server announced its address is not lost.
pub fn cancel_on_signal(token: CancellationToken) {
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("installing a SIGINT handler");
    tokio::spawn(async move {
        let first = next_signal(&mut term, &mut int).await;
        info!("Received {first}; shutting down gracefully (send it again to exit at once)");
        token.cancel();
        let second = next_signal(&mut term, &mut int).await;
        warn!("Received {second} again; exiting now");
        std::process::exit(130);
    });
}

async fn next_signal(term: &mut Signal, int: &mut Signal) -> &'static str {
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}
