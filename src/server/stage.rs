//! The per-connection stage: what a connection goes through between accept
//! and its protocol, inside its own task.
//!
//! ```text
//! accepted stream → [TLS handshake] → peer identity → connection handler
//! ```
//!
//! Everything here may wait on the client (a handshake is several round
//! trips), so none of it runs in the accept loop: a client that never
//! finishes its handshake costs one task until the handshake deadline, and
//! no other client waits for it. The PROXY protocol header and allow/deny
//! rules belong here too, ahead of TLS.

use std::fmt;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::server::TlsStream;
use tokio_util::either::Either;
use tokio_util::sync::CancellationToken;

use super::CloseReason;
use crate::deadline::within;
use crate::display_duration;
use crate::transport::PeerAddr;
use crate::transport::tls::{Side, TlsAcceptor, explain, subject_of};

/// Default time a client has to complete its TLS handshake.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection after the stage: plain, or TLS. The TLS state is boxed, so
/// a plain connection's task is no bigger for TLS being possible.
pub type StagedStream<S> = Either<S, Box<TlsStream<S>>>;

/// What a connection goes through before its protocol.
#[derive(Clone, Default)]
pub struct Stage {
    /// Terminate TLS with this acceptor; `None`: plain connections.
    pub tls: Option<TlsAcceptor>,
    /// Longest a handshake may take; `None`: no limit.
    pub handshake_timeout: Option<Duration>,
}

impl fmt::Debug for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stage")
            .field("tls", &self.tls.is_some())
            .field("handshake_timeout", &self.handshake_timeout)
            .finish()
    }
}

/// Who is on the other end, as the stage established it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    pub addr: PeerAddr,
    /// The negotiated TLS session, for TLS connections.
    pub tls: Option<TlsSession>,
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
    /// Takes an accepted stream through the stage.
    ///
    /// # Errors
    /// The [`CloseReason`] for a connection that did not make it: a failed
    /// or timed-out handshake, or shutdown during one.
    pub async fn prepare<S>(
        &self,
        stream: S,
        addr: PeerAddr,
        shutdown: &CancellationToken,
    ) -> Result<(StagedStream<S>, PeerIdentity), CloseReason>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let Some(acceptor) = &self.tls else {
            return Ok((Either::Left(stream), PeerIdentity { addr, tls: None }));
        };
        let handshake = within(self.handshake_timeout, acceptor.accept(stream));
        let accepted = tokio::select! {
            accepted = handshake => accepted,
            () = shutdown.cancelled() => return Err(CloseReason::Shutdown),
        };
        let stream = match accepted {
            None => {
                return Err(CloseReason::TlsHandshake(format!(
                    "not completed within {}",
                    display_duration(self.handshake_timeout.unwrap_or_default())
                )));
            }
            Some(Err(error)) => return Err(CloseReason::TlsHandshake(explain(&error, Side::Server))),
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
        Ok((
            Either::Right(Box::new(stream)),
            PeerIdentity {
                addr,
                tls: Some(session),
            },
        ))
    }
}
