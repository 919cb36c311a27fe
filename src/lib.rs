//! `sockets`: the client/server socket system of the classic socket-programming
//! guides, as production software.
//!
//! How a connection flows through the crate, from the socket to the answer:
//!
//! ```text
//! transport       listen: one ListenAddr (TCP | Unix), parsed once
//!    ↓
//! server          accept loop: accept, count against --max-connections, spawn
//!    ↓              (nothing a client does can stall it)
//! server::stage   in the connection's task: PROXY header → allow/deny →
//!    ↓              TLS handshake (one deadline) → peer identity
//! server::driver  buffers, idle and request deadlines, backpressure,
//!    ↓              the server-wide input budget, shutdown
//! app             request → response + outcome (no I/O)
//! ```
//!
//! Clients mirror it: a [`transport::Connector`] (endpoint, timeout, TLS)
//! gives every client its connection.
//!
//! The modules, from the wire up (dependencies point downwards only):
//!
//! - [`protocol`]: the application tier's message format and its codec. No I/O.
//! - [`app`]: the guide's application: [`app::Request`], the search table,
//!   [`app::respond`], the `Error: ...` texts; [`app::serve`] runs it on a
//!   connection. Clients, bench and tests take the schema from here.
//! - [`echo`]: the echo tier, on streams and datagrams (with echo-loop protection).
//! - [`transport`]: addresses, listening and connecting sockets, TLS
//!   configuration, name resolution.
//! - [`server`]: what every server shares: the accept loop, the
//!   per-connection stage, the connection driver, the input budget,
//!   log-line caps.
//! - [`client`]: the clients: app request/response, echo, multi-connection, relay.
//! - [`bench`](mod@bench): the load generator: app and echo load, reports, plots.
//! - [`broker`]: publish/subscribe over the protocol, with bounded
//!   subscriber outboxes.
//! - [`check`]: the conformance checker: a catalogue of cases any server of
//!   the protocol can be run against.
//! - [`proxy`]: a relay that decodes the protocol both ways, records
//!   (for replay) and writes pcaps.
//! - [`escape`]: peer-supplied text made safe for logs and terminals.
//! - [`deadline`]: optional time limits (every timeout allows "no limit").
//! - [`python_repr`]: Python's `repr(bytes)`, which the guide's programs print.
//! - `invariants` (hidden): the properties the fuzz targets and their
//!   regression tests assert.
//!
//! The command-line interface lives in the binary (`src/cli`), which is the
//! only place that knows about clap, signals or exit codes.

pub mod app;
pub mod bench;
pub mod broker;
pub mod check;
pub mod client;
pub mod deadline;
pub mod echo;
pub mod escape;
#[doc(hidden)]
pub mod invariants;
pub mod protocol;
pub mod proxy;
pub mod python_repr;
pub mod server;
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
