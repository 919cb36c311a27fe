//! Client-side connection set-up: resolve a name, try its addresses.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;

use super::TransportError;

/// Resolves `host` and connects to `port` on each of its addresses in turn,
/// giving each attempt up to `timeout`. Returns the first connection made,
/// or an error that lists every address tried and why it failed.
///
/// # Errors
/// [`TransportError::Resolve`]/[`TransportError::NoAddresses`] when the name
/// does not resolve; [`TransportError::Connect`] when no address accepted.
pub async fn connect_tcp(
    host: &str,
    port: u16,
    timeout: Duration,
) -> Result<TcpStream, TransportError> {
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let addrs: Vec<SocketAddr> =
        tokio::time::timeout(timeout, tokio::net::lookup_host((host, port)))
            .await
            .map_err(|_| TransportError::Resolve {
                host: host.to_owned(),
                source: std::io::ErrorKind::TimedOut.into(),
            })?
            .map_err(|source| TransportError::Resolve {
                host: host.to_owned(),
                source,
            })?
            .collect();
    if addrs.is_empty() {
        return Err(TransportError::NoAddresses {
            host: host.to_owned(),
        });
    }
    let mut failures = Vec::new();
    for addr in addrs {
        match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => {
                stream.set_nodelay(true).ok();
                return Ok(stream);
            }
            Ok(Err(error)) => failures.push((addr, error)),
            Err(_) => failures.push((
                addr,
                std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("timed out after {}", crate::display_duration(timeout)),
                ),
            )),
        }
    }
    Err(TransportError::Connect {
        target: format!("{host} port {port}"),
        failures,
    })
}
