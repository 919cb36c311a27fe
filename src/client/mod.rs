//! Clients: the application request/response exchange (here), the echo
//! round trip ([`echo`]), the guide's multi-connection client ([`multiconn`])
//! and the interactive relay behind `sockets connect` ([`relay`]). All are
//! generic over the stream or socket, so every transport shares them.

pub mod echo;
pub mod multiconn;
pub mod relay;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::codec::Framed;

use crate::display_duration;
use crate::protocol::{Message, MessageCodec, ProtocolError};

/// Why a request got no usable response.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("sending the request failed: {0}")]
    Send(ProtocolError),
    #[error("reading the response failed: {0}")]
    Receive(ProtocolError),
    #[error("the server closed the connection without responding")]
    ClosedEarly,
    #[error("no response within {}", display_duration(*.0))]
    Timeout(Duration),
}

/// Sends `request` on `stream` and returns the first message that comes back.
/// Responses larger than `max_content_len` are refused without being read.
///
/// # Errors
/// [`ClientError`] when the request cannot be written, the response is
/// malformed or truncated, the server closes first, or `timeout` passes.
pub async fn exchange<S>(
    stream: S,
    request: &Message,
    max_content_len: usize,
    timeout: Duration,
) -> Result<Message, ClientError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut framed = Framed::new(stream, MessageCodec::new().with_max_content_len(max_content_len));
    let exchange = async {
        framed.send(request).await.map_err(ClientError::Send)?;
        match framed.next().await {
            Some(Ok(response)) => Ok(response),
            Some(Err(error)) => Err(ClientError::Receive(error)),
            None => Err(ClientError::ClosedEarly),
        }
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| ClientError::Timeout(timeout))?
}
