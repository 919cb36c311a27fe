//! The relay behind `sockets connect`: standard input to the socket and the
//! socket to standard output, at the same time, like netcat.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use tracing::trace;

use super::{lenient_eof, shown};
use crate::deadline::within_io;
use crate::transport::datagram::{AsyncDatagramIo, recv_truncating};

/// Largest datagram read from input or the socket.
const DATAGRAM_MAX: usize = 64 * 1024;

/// Copies `input` to `stream` and `stream` to `output` concurrently. When
/// `input` ends, our side is half-closed and output continues until the peer
/// closes, each wait for it bounded by `timeout` (while the user is still
/// typing, the server may stay quiet as long as it likes). Each write to
/// the peer is bounded by `timeout` too: a peer that stops reading fails
/// the relay rather than stalling it. The relay ends
/// when the peer closes, whether or not input has ended. Returns (bytes
/// sent, bytes received).
///
/// # Errors
/// The first I/O error on either direction; `TimedOut` when the peer sends
/// nothing for `timeout` after input ended, or takes none of our bytes for
/// `timeout`.
pub async fn relay_stream<S, I, O>(
    stream: S,
    mut input: I,
    mut output: O,
    timeout: Option<Duration>,
) -> std::io::Result<(u64, u64)>
where
    S: AsyncRead + AsyncWrite + Unpin,
    I: AsyncRead + Unpin,
    O: AsyncWrite + Unpin,
{
    let (mut from_peer, mut to_peer) = tokio::io::split(stream);
    // Not tokio::io::copy: its writes wait forever for a peer that stopped
    // reading (or whose host vanished). Reading input may take as long as
    // the user likes; each write to the peer gets `timeout`.
    let upload = async {
        let mut chunk = vec![0u8; 16 * 1024];
        let mut sent = 0u64;
        loop {
            let n = input.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            within_io(timeout, to_peer.write_all(&chunk[..n])).await?;
            sent += n as u64;
        }
        within_io(timeout, to_peer.shutdown()).await?;
        Ok::<u64, std::io::Error>(sent)
    };
    tokio::pin!(upload);
    let mut sent = None;
    let mut received = 0u64;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let wait = if sent.is_some() { timeout } else { None };
        tokio::select! {
            result = &mut upload, if sent.is_none() => sent = Some(result?),
            read = within_io(wait, from_peer.read(&mut buf)) => {
                let n = lenient_eof(read)?;
                if n == 0 {
                    return Ok((sent.unwrap_or(0), received));
                }
                trace!("Received {}", shown(&buf[..n]));
                // Flush every chunk: an interactive user wants to see replies at once.
                output.write_all(&buf[..n]).await?;
                output.flush().await?;
                received += n as u64;
            }
        }
    }
}

/// Sends each chunk read from `input` as one datagram on a connected socket
/// and writes each datagram received to `output`. After `input` ends, waits
/// for replies until none has come for `linger`. Returns (datagrams sent,
/// datagrams received).
///
/// # Errors
/// The first I/O error; a reply larger than 64 KiB is reported as truncated.
pub async fn relay_datagrams<D, I, O>(
    socket: &D,
    mut input: I,
    mut output: O,
    linger: Duration,
) -> std::io::Result<(u64, u64)>
where
    D: AsyncDatagramIo,
    I: AsyncRead + Unpin,
    O: AsyncWrite + Unpin,
{
    let mut in_buf = vec![0u8; DATAGRAM_MAX];
    let mut out_buf = vec![0u8; DATAGRAM_MAX];
    let (mut sent, mut received) = (0u64, 0u64);
    let mut input_open = true;
    loop {
        tokio::select! {
            read = input.read(&mut in_buf), if input_open => match read? {
                0 => input_open = false,
                n => {
                    socket.send(&in_buf[..n]).await?;
                    sent += 1;
                }
            },
            reply = recv_truncating(socket, &mut out_buf) => {
                let (len, full_len) = reply?;
                if full_len > len {
                    return Err(std::io::Error::other(format!("a {full_len}-byte datagram was larger than the {DATAGRAM_MAX}-byte buffer")));
                }
                output.write_all(&out_buf[..len]).await?;
                output.flush().await?;
                received += 1;
            },
            () = tokio::time::sleep(linger), if !input_open => return Ok((sent, received)),
        }
    }
}
