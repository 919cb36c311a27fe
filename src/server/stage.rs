//! The per-connection stage: what a connection goes through between accept
//! and its protocol, inside its own task.
//!
//! ```text
//! accepted stream → [PROXY header] → allow/deny → [TLS handshake] → peer identity
//! ```
//!
//! Everything here may wait on the client (a header, a handshake of several
//! round trips), so none of it runs in the accept loop: a client that never
//! finishes costs one task until the handshake deadline, which covers the
//! PROXY header and the TLS handshake together, and no other client waits
//! for it.
//!
//! The PROXY header comes first because a balancer sends it before its
//! client's bytes (TLS included); it replaces the peer's address, so
//! allow/deny, logs and metrics see the real client. Only sources trusted
//! with `--proxy-from` may send one: anyone else could claim any address.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use bytes::{Bytes, BytesMut};
use futures_util::FutureExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tokio_rustls::server::TlsStream;
use tokio_util::either::Either;
use tokio_util::sync::CancellationToken;

use super::access::{AccessList, AddressRange};
use super::log_limit::CONNECTION_LINES;
use super::{CloseReason, metrics};
use crate::deadline::within;
use crate::display_duration;
use crate::escape::Unclipped;
use crate::limited;
use crate::transport::PeerAddr;
use crate::transport::proxy::{ProxyError, ProxyHeader, Rewind, read_header};
use crate::transport::tls::{Side, TlsAcceptor, explain, subject_of};

/// The first read for a PROXY header: a v2 header with the usual TLVs, or
/// any v1 line, and the start of what follows. Longer headers grow the buffer.
const HEADER_READ: usize = 256;

/// Default time a client has for the stage: its PROXY header and its TLS handshake.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection after the stage: plain, or TLS (boxed, so a plain
/// connection's task is no bigger for TLS being possible), reading first
/// whatever followed a PROXY header.
pub type StagedStream<S> = Either<Rewind<S>, Box<TlsStream<Rewind<S>>>>;

/// Who may send a PROXY header.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxyPolicy {
    /// Sources trusted to send one; empty: any source (not for the open internet).
    pub trusted: Vec<AddressRange>,
}

impl ProxyPolicy {
    /// Whether a header from `source` is believed. Unix socket peers are
    /// trusted: the socket file's permissions say who may connect.
    pub fn trusts(&self, source: &PeerAddr) -> bool {
        match source {
            PeerAddr::Tcp(addr) => {
                self.trusted.is_empty() || self.trusted.iter().any(|range| range.contains(addr.ip()))
            }
            _ => true,
        }
    }
}

/// What a connection goes through before its protocol.
#[derive(Clone, Default)]
pub struct Stage {
    /// Read a PROXY header first, from these sources.
    pub proxy: Option<ProxyPolicy>,
    /// Who may connect.
    pub access: AccessList,
    /// Terminate TLS with this acceptor; `None`: plain connections. Swapped
    /// whole on reload: handshakes already begun keep the old one.
    pub tls: Arc<ArcSwapOption<TlsAcceptor>>,
    /// Longest the PROXY header and TLS handshake may take; `None`: no limit.
    pub handshake_timeout: Option<Duration>,
    /// Cancelled when the server starts draining before it stops: from
    /// then on the balancer's own connections (its health checks: PROXY v2
    /// `LOCAL`, v1 `UNKNOWN`) are closed at once, so the balancer marks
    /// this server down and stops sending clients before the listener closes.
    pub draining: CancellationToken,
}

impl fmt::Debug for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stage")
            .field("proxy", &self.proxy)
            .field("access", &self.access)
            .field("tls", &self.tls.load().is_some())
            .field("handshake_timeout", &self.handshake_timeout)
            .field("draining", &self.draining.is_cancelled())
            .finish()
    }
}

/// Who is on the other end, as the stage established it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    /// The client: from the PROXY header when there was one.
    pub addr: PeerAddr,
    /// The balancer that sent the PROXY header, when there was one.
    pub via: Option<ProxyHop>,
    /// The negotiated TLS session, for TLS connections.
    pub tls: Option<TlsSession>,
}

/// The balancer a connection came through, from its PROXY header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyHop {
    pub balancer: PeerAddr,
    /// The header's version, 1 or 2.
    pub version: u8,
    /// The header named no client (v2 `LOCAL`, v1 `UNKNOWN`): the
    /// balancer's own connection, a health check say.
    pub own: bool,
}

impl PeerIdentity {
    /// Whether this is a connection of the balancer's own (a health check):
    /// its PROXY header named no client.
    pub fn is_balancers_own(&self) -> bool {
        self.via.as_ref().is_some_and(|hop| hop.own)
    }
}

/// What a TLS handshake agreed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSession {
    /// `TLSv1_3` or `TLSv1_2`.
    pub version: String,
    pub cipher: String,
    /// Whether an earlier session was resumed (no full handshake).
    pub resumed: bool,
    /// The subject of the client's certificate, with mutual TLS.
    pub client_subject: Option<String>,
}

impl fmt::Display for TlsSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}, {}", self.version, self.cipher)?;
        if self.resumed {
            f.write_str(", resumed")?;
        }
        Ok(())
    }
}

impl Stage {
    /// A stage that terminates TLS with `acceptor` (and nothing else).
    pub fn with_tls(acceptor: Option<TlsAcceptor>) -> Stage {
        Stage {
            tls: Arc::new(ArcSwapOption::from(acceptor.map(Arc::new))),
            ..Stage::default()
        }
    }

    /// Takes an accepted stream through the stage.
    ///
    /// Shutdown does not cut the stage short: the client was accepted and
    /// gets its request answered; the handshake deadline bounds the wait.
    ///
    /// # Errors
    /// The [`CloseReason`] for a connection that did not make it (a bad or
    /// untrusted PROXY header, a denied peer, a failed or late handshake),
    /// with the peer as far as it was known.
    pub async fn prepare<S>(
        &self,
        mut stream: S,
        addr: PeerAddr,
    ) -> Result<(StagedStream<S>, PeerIdentity), (CloseReason, PeerIdentity)>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let deadline = self.handshake_timeout.map(|limit| Instant::now() + limit);
        let late = || {
            format!(
                "not completed within {}",
                display_duration(self.handshake_timeout.unwrap_or_default())
            )
        };
        let mut identity = PeerIdentity {
            addr,
            via: None,
            tls: None,
        };
        let mut rest = Bytes::new();
        if let Some(policy) = &self.proxy {
            let balancer = identity.addr.clone();
            if !policy.trusts(&balancer) {
                let why = format!("{balancer} is not in --proxy-from");
                return Err((CloseReason::ProxyHeader(why), identity));
            }
            // A balancer sends its header as soon as it connects: it is
            // usually here already, and then needs no timer.
            let mut buf = BytesMut::with_capacity(HEADER_READ);
            let read = match read_header(&mut stream, &mut buf).now_or_never() {
                Some(read) => Some(read),
                // Boxed, as the handshake below is: inline, the wait's state
                // would be part of every connection's task for its whole life.
                None => Box::pin(within_until(deadline, read_header(&mut stream, &mut buf))).await,
            };
            let (header, after) = match read {
                None => return Err((CloseReason::ProxyHeader(late()), identity)),
                Some(Err(ProxyError::Io(error))) => return Err((CloseReason::Io(error), identity)),
                Some(Err(error)) => return Err((CloseReason::ProxyHeader(error.to_string()), identity)),
                Some(Ok(read)) => read,
            };
            log_header(&header, &balancer);
            let own = header.client.is_none();
            if let Some(client) = header.client {
                identity.addr = client;
            }
            identity.via = Some(ProxyHop {
                balancer,
                version: header.version,
                own,
            });
            if own && self.draining.is_cancelled() {
                return Err((CloseReason::Draining, identity));
            }
            rest = after;
        }
        // The balancer's own connections were vetted by --proxy-from;
        // allow/deny is about clients.
        if !identity.is_balancers_own() && !self.access.permits(&identity.addr) {
            return Err((CloseReason::Denied, identity));
        }
        let stream = Rewind::new(rest, stream);
        let Some(acceptor) = self.tls.load_full() else {
            return Ok((Either::Left(stream), identity));
        };
        // The balancer's health checks are counted apart, TLS included.
        let count = !identity.is_balancers_own();
        // Boxed: a handshake's state is a few KiB, and inline it would be
        // part of every connection's task for its whole life, TLS or not.
        let stream = match Box::pin(within_until(deadline, acceptor.accept(stream))).await {
            None => {
                if count {
                    metrics::tls_handshake(None);
                }
                return Err((CloseReason::TlsHandshake(late()), identity));
            }
            Some(Err(error)) => {
                if count {
                    metrics::tls_handshake(None);
                }
                return Err((CloseReason::TlsHandshake(explain(&error, Side::Server)), identity));
            }
            Some(Ok(stream)) => stream,
        };
        let (_, connection) = stream.get_ref();
        let session = TlsSession {
            version: connection
                .protocol_version()
                .map_or_else(|| "TLS".to_owned(), |version| format!("{version:?}")),
            cipher: connection
                .negotiated_cipher_suite()
                .map_or_else(String::new, |suite| format!("{:?}", suite.suite())),
            resumed: connection.handshake_kind() == Some(rustls::HandshakeKind::Resumed),
            client_subject: connection
                .peer_certificates()
                .and_then(|chain| chain.first())
                .and_then(subject_of),
        };
        if count {
            metrics::tls_handshake(Some(session.resumed));
        }
        identity.tls = Some(session);
        Ok((Either::Right(Box::new(stream)), identity))
    }
}

/// Runs `future` until `deadline` (`None`: no deadline); `None` when late.
async fn within_until<T>(deadline: Option<Instant>, future: impl Future<Output = T>) -> Option<T> {
    within(
        deadline.map(|deadline| deadline.saturating_duration_since(Instant::now())),
        future,
    )
    .await
}

/// A PROXY header at debug level, every TLV with its whole value (tools
/// that cut values at their first NUL mislead: haproxy#3489).
fn log_header(header: &ProxyHeader, balancer: &PeerAddr) {
    if !tracing::enabled!(tracing::Level::DEBUG) {
        return;
    }
    let client = header.client.as_ref().map_or_else(
        || "none (a connection of the balancer's own)".to_owned(),
        ToString::to_string,
    );
    limited!(
        CONNECTION_LINES,
        DEBUG,
        "PROXY v{} header from {balancer}: client {client}, {} TLV(s)",
        header.version,
        header.tlvs.len()
    );
    for tlv in &header.tlvs {
        limited!(
            CONNECTION_LINES,
            DEBUG,
            "PROXY TLV from {balancer}: type {:#04x} ({}), {} bytes: {}",
            tlv.kind,
            tlv.name(),
            tlv.value.len(),
            Unclipped(&tlv.value)
        );
    }
}
