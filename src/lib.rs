//! `sockets`: the client/server socket system of the classic socket-programming
//! guides, as production software.
//!
//! Map of the crate, from the wire up (dependencies point downwards only):
//!
//! - [`protocol`]: the application tier's message format and its codec. No I/O.
//! - [`handlers`]: request in, response out (the search table, binary replies). No I/O.
//! - [`transport`]: addresses, listening and connecting sockets.
//! - [`services`]: per-connection loops, generic over `AsyncRead + AsyncWrite`.
//! - [`server`]: the accept loop shared by all servers: limits, shutdown.
//! - [`client`]: the clients: app request/response, echo, multi-connection, relay.
//! - [`bench`]: the load generator: app and echo load, reports, plots.
//! - [`python_repr`]: Python's `repr(bytes)`, which the guide's programs print.
//!
//! The command-line interface lives in the binary (`src/cli`), which is the
//! only place that knows about clap or exit codes.

pub mod bench;
pub mod client;
pub mod handlers;
pub mod protocol;
pub mod python_repr;
pub mod server;
pub mod services;
pub mod transport;

use std::time::Duration;

/// Formats a duration the way a person would write it: `60s`, `1.5s`, `250ms`.
pub fn display_duration(duration: Duration) -> String {
    let millis = duration.as_millis();
    if millis < 1000 {
        format!("{millis}ms")
    } else if millis.is_multiple_of(1000) {
        format!("{}s", millis / 1000)
    } else {
        format!("{}s", duration.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(display_duration(Duration::from_secs(60)), "60s");
        assert_eq!(display_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(display_duration(Duration::from_millis(250)), "250ms");
    }
}
