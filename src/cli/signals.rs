//! Ctrl-C and SIGTERM: the first asks for a graceful stop, the second exits
//! at once. Here, not in the library, because only the binary may exit.

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Cancels `token` on the first SIGINT or SIGTERM; exits with status 130 on
/// the second.
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
