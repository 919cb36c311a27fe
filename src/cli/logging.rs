//! Log set-up: human-readable lines on stderr, level from `-v`/`-q` or `RUST_LOG`.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. `RUST_LOG`, when set and valid, wins over
/// the flags; when it is set but invalid, that is said on stderr (a typo
/// must not silently change what a server logs) and the flags decide.
pub fn init(verbose: u8, quiet: u8) {
    let level = match (verbose, quiet) {
        (0, 0) => "info",
        (1, _) => "debug",
        (2.., _) => "trace",
        (_, 1) => "warn",
        (_, _) => "error",
    };
    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.trim().is_empty() => match EnvFilter::builder().parse(&directives) {
            Ok(filter) => filter,
            Err(error) => {
                super::say(&format!(
                    "warning: ignoring RUST_LOG={directives:?} ({error}); logging at level {level}"
                ));
                EnvFilter::new(level)
            }
        },
        _ => EnvFilter::new(level),
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        // A log line that cannot be written is dropped: by default the
        // subscriber reports it with eprintln!, which panics, and a server
        // whose log pipe broke must keep serving (and heed SIGTERM).
        .log_internal_errors(false)
        .init();
}
