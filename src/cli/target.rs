//! What every client shares: where to connect (`HOST PORT`, or `--unix
//! PATH`) and how long to wait (`--timeout`).
//!
//! clap cannot make two leading positionals disappear when a flag is given,
//! so clients declare them as optional strings and split them here; each
//! client's usage line (`override_usage`) shows both forms, with HOST and
//! PORT as required. A bad port reads as it does for servers (same parser).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::Args;
use sockets::client::DEFAULT_TIMEOUT;
use sockets::transport::tls::ClientTls;
use sockets::transport::{Connector, Endpoint};

use super::UsageError;
use super::args::{Limit, SendProxy, TlsVersion, parse_limit, parse_port, whole};

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
    #[arg(short = 'w', long, value_name = "SECONDS", default_value_t = Limit::of(DEFAULT_TIMEOUT), value_parser = parse_limit, allow_negative_numbers = true)]
    pub timeout: Limit,
    /// Begin each connection with a PROXY protocol header naming this
    /// client, as a balancer does (for servers run with --proxy-protocol).
    #[arg(long, value_enum, value_name = "VERSION")]
    pub send_proxy: Option<SendProxy>,
    /// TCP keepalive (1 to 32767): after this long with nothing received,
    /// probe the server every SECONDS and fail after 3 unanswered probes,
    /// so that a server whose host vanished is noticed even with --timeout
    /// 0 (default: off). Covers quiet connections; unacknowledged writes
    /// are bounded by --timeout.
    #[arg(long, value_name = "SECONDS", value_parser = whole(1, 32767))]
    pub keepalive: Option<u64>,
    /// (Each TLS flag names its heading itself: a `next_help_heading` here
    /// would carry over to every option the command declares after it.)
    #[command(flatten)]
    pub tls: ClientTlsArgs,
}

/// A client's TLS flags. Any of them but `--tls-min-version` and
/// `--tls-no-resume` turns TLS on.
#[derive(Debug, Args)]
pub struct ClientTlsArgs {
    /// Speak TLS, verifying the server against the system's trusted certificates.
    #[arg(long, help_heading = "TLS")]
    pub tls: bool,
    /// Trust this CA, or the server's self-signed certificate (PEM), instead
    /// of the system's; implies --tls.
    #[arg(long, value_name = "FILE", help_heading = "TLS")]
    pub tls_ca: Option<PathBuf>,
    /// The name to ask for (SNI) and verify [default: HOST, or localhost with
    /// --unix]; an IP address is checked against the certificate's IP
    /// addresses; implies --tls.
    #[arg(long, value_name = "NAME", help_heading = "TLS")]
    pub tls_server_name: Option<String>,
    /// Present this certificate chain (PEM) to servers that require one;
    /// with --tls-key; implies --tls.
    #[arg(long, value_name = "FILE", requires = "tls_key", help_heading = "TLS")]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert", help_heading = "TLS")]
    pub tls_key: Option<PathBuf>,
    /// Do not verify the server's certificate: the connection is encrypted
    /// but anyone on the way can pose as the server. For tests only; implies --tls.
    #[arg(long, conflicts_with = "tls_ca", help_heading = "TLS")]
    pub insecure: bool,
    /// The oldest TLS version to accept.
    #[arg(
        long,
        value_enum,
        value_name = "VERSION",
        default_value = "1.2",
        help_heading = "TLS"
    )]
    pub tls_min_version: TlsVersion,
    /// Do not offer to resume earlier TLS sessions: every handshake is a full one.
    #[arg(long, help_heading = "TLS")]
    pub tls_no_resume: bool,
}

impl ClientTlsArgs {
    /// The TLS settings, when any flag asks for TLS.
    pub fn settings(&self) -> Option<ClientTls> {
        let wanted = self.tls
            || self.tls_ca.is_some()
            || self.tls_server_name.is_some()
            || self.tls_cert.is_some()
            || self.insecure;
        wanted.then(|| ClientTls {
            ca: self.tls_ca.clone(),
            server_name: self.tls_server_name.clone(),
            identity: self.tls_cert.clone().zip(self.tls_key.clone()),
            insecure: self.insecure,
            min_version: self.tls_min_version.into(),
            resume: !self.tls_no_resume,
        })
    }
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

    /// How to reach `endpoint`: with the time limit, and TLS if asked for.
    /// `--insecure` is said loudly on stderr.
    pub fn connector(&self, endpoint: Endpoint) -> Result<Connector> {
        let mut connector = Connector::new(endpoint, self.timeout());
        if let Some(version) = self.send_proxy {
            connector = connector.with_proxy_header(version.into());
        }
        if let Some(seconds) = self.keepalive {
            connector = connector.with_keepalive(Duration::from_secs(seconds));
        }
        match self.tls.settings() {
            None => Ok(connector),
            Some(tls) => {
                if tls.insecure {
                    super::say(
                        "warning: --insecure: the server's certificate is not verified; anyone on the way can pose as the server",
                    );
                }
                Ok(connector.with_tls(&tls)?)
            }
        }
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
            "invalid value 'http' for '<PORT>': 'http' is not a port number from 0 to 65535"
        );
        assert!(
            split_endpoint(Some("/s".into()), some(&["a", "b"]), 1)
                .unwrap_err()
                .0
                .contains("unexpected argument 'b' found")
        );
    }
}
