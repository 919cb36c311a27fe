//! Clients: the application request/response exchange (here), the echo
//! round trip ([`echo`]), the guide's multi-connection client ([`multiconn`])
//! and the interactive relay behind `sockets connect` ([`relay`]). All are
//! generic over the stream or socket, so every transport shares them.

pub mod chat;
pub mod echo;
pub mod multiconn;
pub mod relay;

use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::codec::{Decoder, Encoder};
use tracing::trace;

use crate::deadline::{within, within_io};
use crate::display_duration;
use crate::protocol::{Message, MessageCodec, ProtocolError};
use crate::python_repr::BytesRepr;
use crate::transport::tls::{Side, explain, is_tls_error};

/// Default limit on each wait for the server, in every client.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Bytes of a request or response shown by a trace line.
const TRACE_BYTES: usize = 1024;

/// Why a request got no usable response.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("sending the request failed: {0}")]
    Send(ProtocolError),
    #[error("reading the response failed: {0}")]
    Receive(ProtocolError),
    #[error("the server closed the connection without responding")]
    ClosedEarly,
    #[error("the server sent nothing for {}", display_duration(*.0))]
    Timeout(Duration),
    #[error("the server answered with TLS: connect with --tls (and --tls-ca FILE for a private CA)")]
    ServerSpeaksTls,
    #[error("TLS failed: {0}")]
    Tls(String),
}

impl ClientError {
    /// A read error: a TLS failure explained, anything else as it is.
    fn receiving(error: std::io::Error) -> ClientError {
        if is_tls_error(&error) {
            ClientError::Tls(explain(&error, Side::Client))
        } else {
            ClientError::Receive(error.into())
        }
    }
}

/// Sends `request` on `stream` and returns the first message that comes back.
/// Responses larger than `max_content_len` are refused without being read.
/// `timeout` bounds each wait: the write, and each read of the response.
///
/// # Errors
/// [`ClientError`] when the request cannot be written, the response is
/// malformed or truncated, the server closes first, or a wait runs out.
pub async fn exchange<S>(
    mut stream: S,
    request: &Message,
    max_content_len: usize,
    timeout: Option<Duration>,
) -> Result<Message, ClientError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut codec = MessageCodec::new().with_max_content_len(max_content_len);
    let mut wire = BytesMut::new();
    codec.encode(request, &mut wire).map_err(ClientError::Send)?;
    trace!("Sending request: {}", shown(&wire));
    within_io(timeout, stream.write_all(&wire))
        .await
        .map_err(|error| ClientError::Send(error.into()))?;
    let mut buf = BytesMut::with_capacity(1024);
    let response = loop {
        if let Some(response) = codec.decode(&mut buf).map_err(ClientError::Receive)? {
            break response;
        }
        match within(timeout, stream.read_buf(&mut buf)).await.map(lenient_eof) {
            None => return Err(ClientError::Timeout(timeout.unwrap_or_default())),
            Some(Ok(0)) if looks_like_tls(&buf) => return Err(ClientError::ServerSpeaksTls),
            Some(Ok(0)) => {
                match codec.decode_eof(&mut buf) {
                    Ok(Some(response)) => break response,
                    Ok(None) => return Err(ClientError::ClosedEarly),
                    Err(error) => return Err(ClientError::Receive(error)),
                };
            }
            Some(Ok(_)) => {}
            Some(Err(error)) => return Err(ClientError::receiving(error)),
        }
    };
    trace!(
        "Received response: {} {}",
        BytesRepr(response.content_type.as_bytes()),
        shown(&response.content)
    );
    // Done: close our side (with TLS, that is a close_notify, which a TLS
    // server expects before the connection ends).
    let _ = within(timeout, stream.shutdown()).await;
    Ok(response)
}

/// Whether a reply is a TLS record (a handshake or an alert) rather than a
/// message: what a TLS server sends a client that spoke plain bytes to it.
fn looks_like_tls(reply: &[u8]) -> bool {
    matches!(reply, [0x15 | 0x16, 0x03, 0x00..=0x04, ..])
}

/// A read result where a TLS peer that closed without `close_notify` counts
/// as an ordinary end of stream: many servers end that way, and every
/// client here knows how much it expects, so a truncation still shows.
pub fn lenient_eof(read: std::io::Result<usize>) -> std::io::Result<usize> {
    match read {
        Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => Ok(0),
        other => other,
    }
}

/// Bytes for a trace line: Python's repr of the first `TRACE_BYTES`, and the length.
pub fn shown(bytes: &[u8]) -> String {
    let head = &bytes[..bytes.len().min(TRACE_BYTES)];
    if head.len() == bytes.len() {
        BytesRepr(head).to_string()
    } else {
        format!("{}… ({} bytes in all)", BytesRepr(head), bytes.len())
    }
}
