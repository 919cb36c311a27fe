//! Client positionals: `HOST PORT ...`, or just `...` with `--unix PATH`.
//!
//! clap cannot make two leading positionals disappear when a flag is given,
//! so clients declare them all as optional strings and split them here.

use std::path::PathBuf;

use clap::Args;
use sockets::transport::Endpoint;

use super::UsageError;

/// Where a client connects: HOST PORT, or a Unix socket.
#[derive(Debug, Args)]
pub struct TargetArgs {
    /// Server host name or address (omit with --unix).
    pub host: Option<String>,
    /// Server port (omit with --unix).
    pub port: Option<String>,
    /// Connect to this Unix socket path instead of HOST PORT.
    #[arg(long, value_name = "PATH")]
    pub unix: Option<PathBuf>,
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
            let host = positionals
                .pop_front()
                .ok_or_else(|| UsageError("HOST and PORT are required (or --unix PATH)".into()))?;
            let port = positionals
                .pop_front()
                .ok_or_else(|| UsageError("PORT is required after HOST".into()))?;
            let port = port
                .parse()
                .map_err(|_| UsageError(format!("PORT must be a number from 0 to 65535, got {port:?}")))?;
            Endpoint::Inet { host, port }
        }
    };
    if positionals.len() > max_rest {
        let extra: Vec<String> = positionals.into_iter().skip(max_rest).collect();
        return Err(UsageError(format!("unexpected argument(s): {}", extra.join(" "))));
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
                .contains("HOST and PORT are required")
        );
        assert!(
            split_endpoint(None, some(&["h", "http"]), 1)
                .unwrap_err()
                .0
                .contains("got \"http\"")
        );
        assert!(
            split_endpoint(Some("/s".into()), some(&["a", "b"]), 1)
                .unwrap_err()
                .0
                .contains("unexpected argument(s): b")
        );
    }
}
