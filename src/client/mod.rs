//! Clients: the application request/response exchange (here), the echo
//! round trip ([`echo`]), the guide's multi-connection client ([`multiconn`])
//! and the interactive relay behind `sockets connect` ([`relay`]). All are
//! generic over the stream or socket, so every transport shares them.

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
    loop {
        if let Some(response) = codec.decode(&mut buf).map_err(ClientError::Receive)? {
            trace!(
                "Received response: {} {}",
                BytesRepr(response.content_type.as_bytes()),
                shown(&response.content)
            );
            return Ok(response);
        }
        match within(timeout, stream.read_buf(&mut buf)).await {
            None => return Err(ClientError::Timeout(timeout.unwrap_or_default())),
            Some(Ok(0)) => {
                return match codec.decode_eof(&mut buf) {
                    Ok(Some(response)) => Ok(response),
                    Ok(None) => Err(ClientError::ClosedEarly),
                    Err(error) => Err(ClientError::Receive(error)),
                };
            }
            Some(Ok(_)) => {}
            Some(Err(error)) => return Err(ClientError::Receive(error.into())),
        }
    }
}

/// Bytes for a trace line: Python's repr of the first [`TRACE_BYTES`], and the length.
pub fn shown(bytes: &[u8]) -> String {
    let head = &bytes[..bytes.len().min(TRACE_BYTES)];
    if head.len() == bytes.len() {
        BytesRepr(head).to_string()
    } else {
        format!("{}… ({} bytes in all)", BytesRepr(head), bytes.len())
    }
}
