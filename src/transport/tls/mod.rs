//! TLS on any stream (TCP or Unix), with rustls and its ring provider:
//! server and client configurations read from PEM files, and handshake
//! failures explained in words a user can act on ("unknown issuer: pass
//! its CA with --tls-ca"), never a bare alert code.
//!
//! Nothing here touches a socket: [`crate::server::stage`] runs the server
//! handshake inside each connection's task, and
//! [`crate::transport::connect::Connector`] the client's.
//! [`cert`] makes certificates for development and tests.

pub mod cert;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    AlertDescription, CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig,
    SignatureScheme,
};
use tracing::debug;

pub use tokio_rustls::{TlsAcceptor, TlsConnector};

/// The oldest TLS version a side accepts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MinVersion {
    /// TLS 1.2 and 1.3.
    #[default]
    Tls12,
    /// TLS 1.3 only.
    Tls13,
}

impl MinVersion {
    fn versions(self) -> &'static [&'static rustls::SupportedProtocolVersion] {
        static TLS13_ONLY: [&rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
        match self {
            MinVersion::Tls12 => rustls::DEFAULT_VERSIONS,
            MinVersion::Tls13 => &TLS13_ONLY,
        }
    }
}

/// A server's TLS settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTls {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// When set, clients must present a certificate signed by one of these CAs.
    pub client_ca: Option<PathBuf>,
    pub min_version: MinVersion,
}

/// A client's TLS settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientTls {
    /// Trust these certificates (a CA, or a self-signed server certificate)
    /// instead of the system's roots.
    pub ca: Option<PathBuf>,
    /// The name to ask for (SNI) and to verify; default: the host connected to.
    pub server_name: Option<String>,
    /// A certificate chain and key to present to servers that ask for one.
    pub identity: Option<(PathBuf, PathBuf)>,
    /// Accept any server certificate. For tests against throwaway servers only.
    pub insecure: bool,
    pub min_version: MinVersion,
    /// Offer to resume earlier sessions (on by default).
    pub resume: bool,
}

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read certificates from {}", .path.display())]
    ReadCertificates {
        path: PathBuf,
        source: rustls::pki_types::pem::Error,
    },
    #[error("{} holds no PEM certificate (a \"BEGIN CERTIFICATE\" block)", .path.display())]
    NoCertificates { path: PathBuf },
    #[error("cannot read a private key from {} (PEM: PKCS#8, PKCS#1 or SEC1, unencrypted)", .path.display())]
    ReadKey {
        path: PathBuf,
        source: rustls::pki_types::pem::Error,
    },
    #[error("the certificate in {} cannot be used", .path.display())]
    BadCertificate { path: PathBuf, source: rustls::Error },
    #[error("the key in {} does not belong to the certificate in {}", .key.display(), .cert.display())]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("cannot verify client certificates with {}", .path.display())]
    ClientCa {
        path: PathBuf,
        source: rustls::server::VerifierBuilderError,
    },
    #[error("no trusted certificates found on this system (pass the server's CA with --tls-ca FILE)")]
    NoSystemRoots,
    #[error("{0:?} is not a valid TLS server name (a DNS name or an IP address)")]
    ServerName(String),
    #[error("cannot set up TLS")]
    Config(#[source] rustls::Error),
}

/// The ring provider, made once.
fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: std::sync::OnceLock<Arc<CryptoProvider>> = std::sync::OnceLock::new();
    Arc::clone(PROVIDER.get_or_init(|| Arc::new(rustls::crypto::ring::default_provider())))
}

/// Reads every certificate in a PEM file.
///
/// # Errors
/// [`TlsError::ReadCertificates`], or [`TlsError::NoCertificates`] for a file without any.
pub fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let read_error = |source| TlsError::ReadCertificates {
        path: path.to_owned(),
        source,
    };
    let certificates = CertificateDer::pem_file_iter(path)
        .map_err(read_error)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(read_error)?;
    if certificates.is_empty() {
        return Err(TlsError::NoCertificates { path: path.to_owned() });
    }
    Ok(certificates)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|source| TlsError::ReadKey {
        path: path.to_owned(),
        source,
    })
}

fn roots_from(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for certificate in read_certificates(path)? {
        roots.add(certificate).map_err(|source| TlsError::BadCertificate {
            path: path.to_owned(),
            source,
        })?;
    }
    Ok(roots)
}

fn key_error(source: rustls::Error, cert: &Path, key: &Path) -> TlsError {
    match source {
        rustls::Error::InconsistentKeys(_) => TlsError::KeyMismatch {
            cert: cert.to_owned(),
            key: key.to_owned(),
        },
        other => TlsError::BadCertificate {
            path: cert.to_owned(),
            source: other,
        },
    }
}

impl ServerTls {
    /// The acceptor for these settings. Session resumption is on: TLS 1.3
    /// tickets (stateless, keys rotated by rustls) and a session cache.
    ///
    /// # Errors
    /// [`TlsError`] when a file cannot be read or does not fit.
    pub fn acceptor(&self) -> Result<TlsAcceptor, TlsError> {
        self.acceptor_after(None)
    }

    /// A new acceptor from the files as they are now, for a reload. With
    /// `previous`, session tickets and the session cache carry over, so
    /// clients resume sessions across the reload instead of all doing full
    /// handshakes at once.
    ///
    /// # Errors
    /// As [`ServerTls::acceptor`].
    pub fn acceptor_after(&self, previous: Option<&TlsAcceptor>) -> Result<TlsAcceptor, TlsError> {
        let chain = read_certificates(&self.cert)?;
        let key = read_key(&self.key)?;
        let builder = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(self.min_version.versions())
            .map_err(TlsError::Config)?;
        let builder = match &self.client_ca {
            None => builder.with_no_client_auth(),
            Some(path) => {
                let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots_from(path)?), provider())
                    .build()
                    .map_err(|source| TlsError::ClientCa {
                        path: path.clone(),
                        source,
                    })?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder
            .with_single_cert(chain, key)
            .map_err(|source| key_error(source, &self.cert, &self.key))?;
        match previous {
            Some(previous) => {
                config.ticketer = Arc::clone(&previous.config().ticketer);
                config.session_storage = Arc::clone(&previous.config().session_storage);
            }
            None => config.ticketer = rustls::crypto::ring::Ticketer::new().map_err(TlsError::Config)?,
        }
        Ok(TlsAcceptor::from(Arc::new(config)))
    }
}

impl ClientTls {
    /// The connector for these settings, and the name to verify when
    /// connecting to `host` (the `--tls-server-name` if given).
    ///
    /// # Errors
    /// [`TlsError`] when a file cannot be read, no root is trusted, or the
    /// name is not a DNS name or IP address.
    pub fn connector(&self, host: &str) -> Result<(TlsConnector, ServerName<'static>), TlsError> {
        let builder = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(self.min_version.versions())
            .map_err(TlsError::Config)?;
        let builder = if self.insecure {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnything(provider())))
        } else {
            let roots = match &self.ca {
                Some(path) => roots_from(path)?,
                None => system_roots()?,
            };
            builder.with_root_certificates(roots)
        };
        let mut config = match &self.identity {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => builder
                .with_client_auth_cert(read_certificates(cert)?, read_key(key)?)
                .map_err(|source| key_error(source, cert, key))?,
        };
        if !self.resume {
            config.resumption = rustls::client::Resumption::disabled();
        }
        let name = self.server_name.as_deref().unwrap_or(host);
        let name = crate::transport::strip_brackets(name);
        let server_name = ServerName::try_from(name.to_owned()).map_err(|_| TlsError::ServerName(name.to_owned()))?;
        Ok((TlsConnector::from(Arc::new(config)), server_name))
    }
}

/// The system's trusted roots, as `rustls-native-certs` finds them
/// (`SSL_CERT_FILE` and `SSL_CERT_DIR` override).
fn system_roots() -> Result<RootCertStore, TlsError> {
    let found = rustls_native_certs::load_native_certs();
    for error in &found.errors {
        debug!("reading the system's certificates: {error}");
    }
    let mut roots = RootCertStore::empty();
    let (added, ignored) = roots.add_parsable_certificates(found.certs);
    debug!("trusting {added} system certificates ({ignored} unusable)");
    if roots.is_empty() {
        return Err(TlsError::NoSystemRoots);
    }
    Ok(roots)
}

/// `--insecure`: accepts any certificate, still checking the handshake's
/// signatures (so the connection is encrypted, just not authenticated).
#[derive(Debug)]
struct AcceptAnything(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnything {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Which end of a handshake is explaining a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Server,
}

/// Says why a handshake failed, from `side`'s point of view, in words that
/// point at the fix.
pub fn explain(error: &io::Error, side: Side) -> String {
    let Some(tls) = error.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) else {
        return match error.kind() {
            io::ErrorKind::UnexpectedEof => "the peer closed the connection during the handshake".to_owned(),
            _ => error.to_string(),
        };
    };
    let (peer, us) = match side {
        Side::Client => ("the server", "client"),
        Side::Server => ("the client", "server"),
    };
    match tls {
        rustls::Error::InvalidCertificate(certificate) => {
            let whose = format!("{peer}'s certificate");
            match certificate {
                CertificateError::UnknownIssuer => match side {
                    Side::Client => format!(
                        "{whose} is not signed by an authority we trust (unknown issuer): pass its CA or the certificate itself with --tls-ca FILE"
                    ),
                    Side::Server => format!("{whose} is not signed by a CA in --tls-client-ca (unknown issuer)"),
                },
                CertificateError::NotValidForNameContext { expected, presented } => format!(
                    "{whose} is for {}, not {} (name mismatch): connect by one of its names, or set --tls-server-name",
                    presented
                        .iter()
                        .map(|name| plain_name(name))
                        .collect::<Vec<_>>()
                        .join(", "),
                    expected.to_str()
                ),
                CertificateError::NotValidForName => {
                    format!("{whose} is not for the name we asked for (name mismatch): set --tls-server-name")
                }
                CertificateError::ExpiredContext { not_after, .. } => {
                    format!("{whose} has expired (it was valid until {})", date_of(*not_after))
                }
                CertificateError::Expired => format!("{whose} has expired"),
                CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                    format!("{whose} is not valid yet (check the clocks)")
                }
                CertificateError::UnsupportedSignatureAlgorithmContext { .. }
                | CertificateError::UnsupportedSignatureAlgorithmForPublicKeyContext { .. }
                | CertificateError::BadSignature => format!(
                    "{whose} is not signed by an authority we trust (its signature does not check against the \
                     certificates we trust): pass its CA or the certificate itself with --tls-ca FILE"
                ),
                other => format!("{whose} is not acceptable ({other:?})"),
            }
        }
        rustls::Error::NoCertificatesPresented => {
            "the client presented no certificate, and --tls-client-ca requires one".to_owned()
        }
        rustls::Error::AlertReceived(alert) => match alert {
            AlertDescription::CertificateRequired => {
                format!("{peer} requires a {us} certificate (give one with --tls-cert and --tls-key)")
            }
            AlertDescription::UnknownCA | AlertDescription::BadCertificate | AlertDescription::CertificateUnknown => {
                format!("{peer} does not accept our certificate ({alert:?})")
            }
            AlertDescription::CertificateExpired => format!("{peer} says our certificate has expired"),
            AlertDescription::ProtocolVersion => {
                format!("{peer} and we have no TLS version in common (see --tls-min-version)")
            }
            AlertDescription::HandshakeFailure => {
                format!("{peer} refused the handshake (no TLS version or cipher in common?)")
            }
            other => format!("{peer} ended the handshake ({other:?})"),
        },
        rustls::Error::PeerIncompatible(why) => {
            format!("{peer} and we have no TLS version or cipher in common ({why:?}; see --tls-min-version)")
        }
        rustls::Error::InvalidMessage(_) => format!("{peer} does not speak TLS"),
        other => other.to_string(),
    }
}

/// `localhost` for the `DnsName("localhost")` rustls reports, `::1` for
/// its `IpAddress(0::1)`.
fn plain_name(presented: &str) -> String {
    let inner = presented
        .split_once('(')
        .map_or(presented, |(_, inner)| inner.trim_end_matches(')').trim_matches('"'));
    inner
        .parse::<std::net::IpAddr>()
        .map_or_else(|_| inner.to_owned(), |ip| ip.to_string())
}

/// Whether an I/O error carries a TLS failure (a handshake, or an alert
/// the peer sent later: with TLS 1.3 a refused client certificate shows up
/// on the first read, not during the handshake).
pub fn is_tls_error(error: &io::Error) -> bool {
    error
        .get_ref()
        .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some())
}

/// An I/O error for a person: [`explain`]ed when it is a TLS failure.
pub fn describe_io(error: &io::Error, side: Side) -> String {
    if is_tls_error(error) {
        explain(error, side)
    } else {
        error.to_string()
    }
}

/// `2026-11-22` for a moment.
fn date_of(moment: UnixTime) -> String {
    let seconds = i64::try_from(moment.as_secs()).unwrap_or(i64::MAX);
    time::OffsetDateTime::from_unix_timestamp(seconds)
        .map_or_else(|_| format!("{seconds} seconds after 1970"), |at| at.date().to_string())
}

/// The subject of a DER certificate (`CN=client, O=...`), for logs.
pub fn subject_of(certificate: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(certificate.as_ref()).ok()?;
    Some(parsed.subject().to_string())
}
