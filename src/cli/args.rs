//! Value parsers every subcommand shares, so a flag that means the same
//! thing reads, defaults and fails the same way everywhere. Every number has
//! a range, checked by clap before anything runs (exit status 2).

use std::time::Duration;

use clap::ValueEnum;
use sockets::transport::proxy::ProxyVersion;
use sockets::transport::tls::MinVersion;

/// Longest time any flag accepts: a year. Longer is a typo, and would
/// overflow deadlines.
pub const MAX_SECONDS: u64 = 365 * 24 * 3600;

/// A time limit in seconds; 0 means no limit. Every timeout flag uses this,
/// so `--timeout 0` and `--idle-timeout 0` mean the same thing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit(pub Option<Duration>);

impl Limit {
    /// A limit of `duration`, for defaults taken from the library's constants.
    pub const fn of(duration: Duration) -> Limit {
        Limit(Some(duration))
    }
}

/// Shown as clap shows defaults: seconds, `0` for no limit.
impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            None => f.write_str("0"),
            Some(limit) => write!(f, "{}", limit.as_secs_f64()),
        }
    }
}

/// Parses a [`Limit]: seconds with decimals allowed (`60`, `0.5`), 0 = no limit.
pub fn parse_limit(text: &str) -> Result<Limit, String> {
    let seconds = parse_seconds(text)?;
    Ok(Limit((!seconds.is_zero()).then_some(seconds)))
}

/// Largest `--max-content-length` any command accepts: 1 GiB.
pub const MAX_CONTENT_LENGTH: u64 = 1 << 30;

/// The parser of every `--max-content-length`: 0 to [`MAX_CONTENT_LENGTH`].
pub fn content_length() -> impl Fn(&str) -> Result<u64, String> + Clone + Send + Sync + 'static {
    whole(0, MAX_CONTENT_LENGTH)
}

/// Parses a size in bytes, with an optional `k`, `m` or `g` (powers of
/// 1024, as Redis reads them): `32m`, `8192`, `1g`. At most 1 TiB.
pub fn parse_size(text: &str) -> Result<usize, String> {
    let lower = text.trim().to_ascii_lowercase();
    let lower = lower.strip_suffix('b').unwrap_or(&lower);
    let (digits, unit) = match lower.chars().last() {
        Some('k') => (&lower[..lower.len() - 1], 1u64 << 10),
        Some('m') => (&lower[..lower.len() - 1], 1 << 20),
        Some('g') => (&lower[..lower.len() - 1], 1 << 30),
        _ => (lower, 1),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(unit))
        .filter(|n| *n <= 1 << 40)
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| format!("'{text}' is not a size (like 8192, 64k, 32m or 1g; at most 1 TiB)"))
}

/// The parser of every whole-number flag, so each says the same thing when
/// a number is out of its range.
pub fn whole(min: u64, max: u64) -> impl Fn(&str) -> Result<u64, String> + Clone + Send + Sync + 'static {
    move |text: &str| {
        text.trim()
            .parse::<u64>()
            .ok()
            .filter(|n| (min..=max).contains(n))
            .ok_or_else(|| format!("'{text}' is not a whole number from {min} to {max}"))
    }
}

/// `--tls-min-version`: the oldest TLS version accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TlsVersion {
    #[value(name = "1.2")]
    Tls12,
    #[value(name = "1.3")]
    Tls13,
}

impl From<TlsVersion> for MinVersion {
    fn from(version: TlsVersion) -> MinVersion {
        match version {
            TlsVersion::Tls12 => MinVersion::Tls12,
            TlsVersion::Tls13 => MinVersion::Tls13,
        }
    }
}

/// `--send-proxy`: the PROXY protocol version a client sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SendProxy {
    /// The text header (HAProxy's send-proxy).
    V1,
    /// The binary header (HAProxy's send-proxy-v2).
    V2,
}

impl From<SendProxy> for ProxyVersion {
    fn from(version: SendProxy) -> ProxyVersion {
        match version {
            SendProxy::V1 => ProxyVersion::V1,
            SendProxy::V2 => ProxyVersion::V2,
        }
    }
}

/// Parses a duration that must be more than zero (`bench -d`).
pub fn parse_positive_seconds(text: &str) -> Result<Duration, String> {
    parse_seconds(text)
        .ok()
        .filter(|seconds| !seconds.is_zero())
        .ok_or_else(|| format!("'{text}' is not a number of seconds above 0, up to {MAX_SECONDS}"))
}

pub fn parse_seconds(text: &str) -> Result<Duration, String> {
    text.trim()
        .parse::<f64>()
        .ok()
        .filter(|seconds| (0.0..=MAX_SECONDS as f64).contains(seconds))
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("'{text}' is not a number of seconds from 0 to {MAX_SECONDS}"))
}

/// Parses a port: a number from 0 to 65535. Servers and clients share it,
/// so a bad port reads the same everywhere.
pub fn parse_port(text: &str) -> Result<u16, String> {
    text.parse()
        .map_err(|_| format!("'{text}' is not a port number from 0 to 65535"))
}

/// Parses a file mode in octal (`660`, `0o600`, `0600`).
pub fn parse_mode(text: &str) -> Result<u32, String> {
    let digits = text.strip_prefix("0o").unwrap_or(text);
    u32::from_str_radix(digits, 8)
        .ok()
        .filter(|mode| *mode <= 0o777)
        .ok_or_else(|| format!("'{text}' is not a file mode in octal from 0 to 777"))
}

/// Parses a rate in requests per second: more than 0.001 (one request every
/// 17 minutes), at most 100 million.
pub fn parse_rate(text: &str) -> Result<f64, String> {
    text.trim()
        .parse::<f64>()
        .ok()
        .filter(|rate| (0.001..=1e8).contains(rate))
        .ok_or_else(|| format!("'{text}' is not a number of requests per second from 0.001 to 100000000"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_parse_with_decimals_and_reject_nonsense() {
        assert_eq!(parse_limit("60"), Ok(Limit(Some(Duration::from_secs(60)))));
        assert_eq!(parse_limit("0.25"), Ok(Limit(Some(Duration::from_millis(250)))));
        assert_eq!(parse_limit("0"), Ok(Limit(None)), "0 means no limit");
        assert_eq!(Limit::of(Duration::from_secs(60)).to_string(), "60");
        assert_eq!(Limit::of(Duration::from_millis(1500)).to_string(), "1.5");
        assert_eq!(Limit(None).to_string(), "0");
        for bad in ["-1", "1e19", "NaN", "soon"] {
            assert_eq!(
                parse_limit(bad).unwrap_err(),
                format!("'{bad}' is not a number of seconds from 0 to 31536000")
            );
        }
        assert_eq!(
            parse_positive_seconds("0").unwrap_err(),
            "'0' is not a number of seconds above 0, up to 31536000"
        );
        assert_eq!(whole(1, 10)("0").unwrap_err(), "'0' is not a whole number from 1 to 10");
        assert!(whole(1, 10)("99999999999999999999").is_err());
        assert_eq!(whole(1, 10)("7"), Ok(7));
    }

    #[test]
    fn ports_modes_and_rates_have_ranges() {
        assert_eq!(parse_port("65535"), Ok(65535));
        assert_eq!(
            parse_port("70000").unwrap_err(),
            "'70000' is not a port number from 0 to 65535"
        );
        assert_eq!(parse_mode("660"), Ok(0o660));
        assert_eq!(parse_mode("0o600"), Ok(0o600));
        assert!(parse_mode("999").is_err() && parse_mode("1777").is_err());
        assert!(parse_rate("1e-300").is_err());
        assert_eq!(parse_rate("250"), Ok(250.0));
    }
}
