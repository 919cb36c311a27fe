//! Ctrl-C and SIGTERM: the first asks for a graceful stop, the second exits
//! at once. SIGHUP reloads what can be reloaded. Here, not in the library,
//! because only the binary may exit.

use std::time::Duration;

use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// `--drain-delay`: how long to keep serving after the first signal, and
/// the token that says draining has begun.
pub struct Drain {
    pub delay: Duration,
    pub started: CancellationToken,
}

/// Cancels `token` on the first SIGINT or SIGTERM (after draining for
/// `drain`'s delay, when given); exits with status 130 on the second. The
/// handlers are in place when this returns, so a signal sent right after
/// the server announced its address is not lost.
pub fn cancel_on_signal(token: CancellationToken, drain: Option<Drain>) {
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("installing a SIGINT handler");
    tokio::spawn(async move {
        let first = next_signal(&mut term, &mut int).await;
        let second = match drain {
            Some(drain) => {
                let delay = sockets::display_duration(drain.delay);
                info!("Received {first}; draining for {delay} (the balancer's health checks fail meanwhile)");
                drain.started.cancel();
                tokio::select! {
                    () = tokio::time::sleep(drain.delay) => {
                        info!("Drained for {delay}; shutting down gracefully (send {first} again to exit at once)");
                        None
                    }
                    second = next_signal(&mut term, &mut int) => Some(second),
                }
            }
            None => {
                info!("Received {first}; shutting down gracefully (send it again to exit at once)");
                None
            }
        };
        if second.is_none() {
            token.cancel();
        }
        let second = match second {
            Some(second) => second,
            None => next_signal(&mut term, &mut int).await,
        };
        warn!("Received {second} again; exiting now");
        // 128 + the signal's number, as a shell reports a process it killed.
        std::process::exit(if second == "SIGINT" { 130 } else { 143 });
    });
}

/// SIGHUP, caught from the moment this is called (a SIGHUP before then
/// would end the process): install it before announcing the server, and
/// give it to [`reload_on_hangup`] once there is something to reload.
pub fn catch_hangup() -> Signal {
    signal(SignalKind::hangup()).expect("installing a SIGHUP handler")
}

/// Runs every one of `reloaders` on each SIGHUP, off the async workers
/// (they read files). Without any, SIGHUP is logged and ignored rather
/// than ending the process as it would by default.
pub fn reload_on_hangup(mut hangup: Signal, reloaders: Vec<Box<dyn Fn() + Send + Sync>>, reloadable: &'static str) {
    let reloaders = std::sync::Arc::new(reloaders);
    tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            if reloaders.is_empty() {
                info!("Received SIGHUP; nothing to reload (it reloads {reloadable}, none given)");
                continue;
            }
            info!("Received SIGHUP; reloading");
            let reloaders = std::sync::Arc::clone(&reloaders);
            let _ = tokio::task::spawn_blocking(move || reloaders.iter().for_each(|reload| reload())).await;
        }
    });
}

async fn next_signal(term: &mut Signal, int: &mut Signal) -> &'static str {
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}
