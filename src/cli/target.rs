//! What every client shares: where to connect (`HOST PORT`, or `--unix
//! PATH`) and how long to wait (`--timeout`).
//!
//! clap cannot make two leading positionals disappear when a flag is given,
//! so clients declare them as optional strings and split them here; each
//! client's usage line (`override_usage`) shows both forms, with HOST and
//! PORT as required. A bad port reads as it does for servers (same parser).

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use sockets::transport::Endpoint;

use super::UsageError;
use super::args::{Limit, parse_limit, parse_port};

/// Where a client connects, and its time limit.
#[derive(Debug, Args)]
pub struct TargetArgs {
    /// Server host name or address (left out with --unix).
    #[arg(value_name = "HOST")]
    pub host: Option<String>,
    /// Server port (left out with --unix).
    #[arg(value_name = "PORT")]
    pub port: Option<String>,
    /// Connect to this Unix socket path instead of HOST PORT.
    #[arg(short = 'U', long, value_name = "PATH")]
    pub unix: Option<PathBuf>,
    /// Limit on each wait for the server: connecting, and each wait for a
    /// reply or for more of one (0 = no limit).
    #[arg(short = 'w', long, value_name = "SECONDS", default_value = "10", value_parser = parse_limit, allow_negative_numbers = true)]
    pub timeout: Limit,
}

impl TargetArgs {
    /// The endpoint, and the positionals after HOST PORT (at most `max_rest`).
    pub fn split(
        &self,
        rest: impl IntoIterator<Item = Option<String>>,
        max_rest: usize,
    ) -> Result<(Endpoint, Vec<String>), UsageError> {
        let positionals = [self.host.clone(), self.port.clone()].into_iter().chain(rest);
        split_endpoint(self.unix.clone(), positionals, max_rest)
    }

    /// The time limit (`None`: no limit).
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout.0
    }
}

/// Takes `HOST PORT` off the front of `positionals` unless `unix` is given,
/// and returns the endpoint and what is left, which must be at most `max_rest`.
pub fn split_endpoint(
    unix: Option<PathBuf>,
    positionals: impl IntoIterator<Item = Option<String>>,
    max_rest: usize,
) -> Result<(Endpoint, Vec<String>), UsageError> {
    let mut positionals: std::collections::VecDeque<String> = positionals.into_iter().flatten().collect();
    let endpoint = match unix {
        Some(path) => Endpoint::Unix(path),
        None => {
            let host = positionals.pop_front().ok_or_else(|| {
                UsageError(
                    "the following required arguments were not provided: <HOST> <PORT> (or --unix <PATH>)".into(),
                )
            })?;
            let port = positionals
                .pop_front()
                .ok_or_else(|| UsageError("the following required arguments were not provided: <PORT>".into()))?;
            let port = parse_port(&port)
                .map_err(|reason| UsageError(format!("invalid value '{port}' for '<PORT>': {reason}")))?;
            Endpoint::Inet { host, port }
        }
    };
    if positionals.len() > max_rest {
        let extra: Vec<String> = positionals.into_iter().skip(max_rest).collect();
        return Err(UsageError(format!("unexpected argument '{}' found", extra.join(" "))));
    }
    Ok((endpoint, positionals.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn some(items: &[&str]) -> Vec<Option<String>> {
        let mut v: Vec<Option<String>> = items.iter().map(|s| Some(s.to_string())).collect();
        v.resize(3, None);
        v
    }

    #[test]
    fn host_and_port_come_first_unless_unix() {
        let (endpoint, rest) = split_endpoint(None, some(&["::1", "80", "hi"]), 1).unwrap();
        assert_eq!(
            endpoint,
            Endpoint::Inet {
                host: "::1".into(),
                port: 80
            }
        );
        assert_eq!(rest, ["hi"]);
        let (endpoint, rest) = split_endpoint(Some("/tmp/s".into()), some(&["hi"]), 1).unwrap();
        assert_eq!(endpoint, Endpoint::Unix("/tmp/s".into()));
        assert_eq!(rest, ["hi"]);
    }

    #[test]
    fn mistakes_are_usage_errors() {
        assert!(
            split_endpoint(None, some(&[]), 1)
                .unwrap_err()
                .0
                .contains("<HOST> <PORT> (or --unix <PATH>)")
        );
        assert_eq!(
            split_endpoint(None, some(&["h", "http"]), 1).unwrap_err().0,
            "invalid value 'http' for '<PORT>': 'http' is not a port number (0 to 65535)"
        );
        assert!(
            split_endpoint(Some("/s".into()), some(&["a", "b"]), 1)
                .unwrap_err()
                .0
                .contains("unexpected argument 'b' found")
        );
    }
}
