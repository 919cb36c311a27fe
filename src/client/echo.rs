//! The echo round trip: send bytes, read the same number back.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use tracing::trace;

use super::{lenient_eof, shown};
use crate::deadline::within;
use crate::display_duration;
use crate::transport::datagram::{AsyncDatagramIo, recv_truncating};
use crate::transport::tls::{Side, explain, is_tls_error};

/// Bytes written or read per system call on streams.
const CHUNK: usize = 64 * 1024;

/// Why an echo did not come back whole.
#[derive(Debug, thiserror::Error)]
pub enum EchoError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("no progress for {}", display_duration(*.0))]
    Stalled(Duration),
    #[error("the server closed the connection after echoing {received} of {expected} bytes")]
    ClosedEarly { received: usize, expected: usize },
    #[error("no reply after {attempts} attempt(s) of {} each", display_duration(*.timeout))]
    NoReply { attempts: u32, timeout: Duration },
    #[error("the reply of {len} bytes was truncated to the {buffer}-byte buffer (raise --buffer-size)")]
    Truncated { len: usize, buffer: usize },
    #[error("TLS failed: {0}")]
    Tls(String),
}

/// Sends `payload` on `stream`, reads back as many bytes as were sent, and
/// closes. Writing and reading run together, so payloads larger than the
/// socket buffers cannot deadlock. `timeout` bounds each step without
/// progress, not the whole transfer. The write side is closed only once the
/// echo is complete: TLS peers (OpenSSL's, for one) end the whole
/// connection when the client closes its side.
///
/// # Errors
/// [`EchoError::Io`], [`EchoError::Stalled`], or [`EchoError::ClosedEarly`]
/// when the server stops before echoing everything.
pub async fn echo_stream<S>(stream: S, payload: &[u8], timeout: Option<Duration>) -> Result<Vec<u8>, EchoError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut reader, mut writer) = tokio::io::split(stream);
    trace!("Sending {}", shown(payload));
    let send = async {
        for chunk in payload.chunks(CHUNK) {
            progress(timeout, writer.write_all(chunk)).await?;
        }
        progress(timeout, writer.flush()).await
    };
    let receive = async {
        let mut received = Vec::with_capacity(payload.len());
        let mut buf = vec![0u8; CHUNK.min(payload.len().max(1))];
        while received.len() < payload.len() {
            let wanted = (payload.len() - received.len()).min(buf.len());
            match progress(timeout, async { lenient_eof(reader.read(&mut buf[..wanted]).await) }).await? {
                0 => {
                    return Err(EchoError::ClosedEarly {
                        received: received.len(),
                        expected: payload.len(),
                    });
                }
                n => received.extend_from_slice(&buf[..n]),
            }
        }
        Ok(received)
    };
    let ((), received) = tokio::try_join!(send, receive)?;
    trace!("Received {}", shown(&received));
    let _ = progress(timeout, writer.shutdown()).await;
    Ok(received)
}

/// Sends `payload` as one datagram on a connected socket and waits up to
/// `timeout` for the reply, sending again up to `attempts` times in all
/// (datagrams can be lost). Replies larger than `buffer` are reported as
/// truncated, never returned cut short.
///
/// # Errors
/// [`EchoError::NoReply`] after the last attempt, [`EchoError::Truncated`],
/// or [`EchoError::Io`] (a refused port shows up here on the next receive).
pub async fn echo_datagram<S>(
    socket: &S,
    payload: &[u8],
    timeout: Option<Duration>,
    attempts: u32,
    buffer: usize,
) -> Result<Vec<u8>, EchoError>
where
    S: AsyncDatagramIo,
{
    let mut buf = vec![0u8; buffer];
    for attempt in 1..=attempts.max(1) {
        trace!("Sending datagram {}", shown(payload));
        socket.send(payload).await?;
        match within(timeout, recv_truncating(socket, &mut buf)).await {
            Some(Ok((len, full_len))) if full_len > len => return Err(EchoError::Truncated { len: full_len, buffer }),
            Some(Ok((len, _))) => {
                trace!("Received datagram {}", shown(&buf[..len]));
                return Ok(buf[..len].to_vec());
            }
            Some(Err(error)) => return Err(EchoError::Io(error)),
            None => tracing::debug!(
                "no reply to attempt {attempt} within {}",
                display_duration(timeout.unwrap_or_default())
            ),
        }
    }
    Err(EchoError::NoReply {
        attempts: attempts.max(1),
        timeout: timeout.unwrap_or_default(),
    })
}

/// Runs stream I/O that must make progress within `timeout`.
async fn progress<T>(timeout: Option<Duration>, io: impl Future<Output = std::io::Result<T>>) -> Result<T, EchoError> {
    match within(timeout, io).await {
        Some(Ok(value)) => Ok(value),
        Some(Err(error)) if is_tls_error(&error) => Err(EchoError::Tls(explain(&error, Side::Client))),
        Some(Err(error)) => Err(EchoError::Io(error)),
        None => Err(EchoError::Stalled(timeout.unwrap_or_default())),
    }
}
