//! The PROXY protocol (HAProxy's, v1 text and v2 binary): how a load
//! balancer tells the server who the client really is, in a header ahead of
//! the connection's own bytes.
//!
//! Parsing is the `ppp` crate's; here is what it leaves to us: reading a
//! header off a stream without losing the bytes that follow it (they are the
//! client's, and go to TLS or the protocol through [`Rewind`]), what the
//! header means for the peer's identity, its TLVs with their full values,
//! and writing a header for clients that stand in for a balancer.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use ppp::PartialResult;
use ppp::v2::{self, TypeLengthValues};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

use super::PeerAddr;

/// The v2 signature; the v1 header begins `PROXY`.
const V2_SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";
/// The longest v1 line, CRLF included.
const V1_MAX: usize = 107;
/// The longest header read: v2's 16 fixed bytes and a 16-bit length.
const MAX_HEADER: usize = 16 + u16::MAX as usize;

/// What a PROXY header says about the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyHeader {
    /// 1 or 2.
    pub version: u8,
    /// The client the balancer is speaking for, or `None` for a connection
    /// of the balancer's own (v2 LOCAL, e.g. a health check; v1 UNKNOWN;
    /// an unspecified family): that one is served as a direct connection.
    pub client: Option<PeerAddr>,
    /// Type-length-values (v2), each value whole.
    pub tlvs: Vec<Tlv>,
}

/// One v2 type-length-value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tlv {
    pub kind: u8,
    pub value: Vec<u8>,
}

impl Tlv {
    /// The type's name in the specification, when it has one.
    pub fn name(&self) -> &'static str {
        match self.kind {
            0x01 => "ALPN",
            0x02 => "authority",
            0x03 => "CRC32C",
            0x04 => "noop",
            0x05 => "unique ID",
            0x20 => "SSL",
            0x30 => "netns",
            0xe0..=0xef => "custom",
            _ => "other",
        }
    }
}

/// Why a connection's PROXY header was refused.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("the connection does not begin with a PROXY header")]
    Missing,
    #[error("malformed PROXY header: {0}")]
    Malformed(String),
    #[error("the connection closed before its PROXY header was complete")]
    Closed,
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Reads a PROXY header (v1 or v2, told apart by their first bytes) off
/// `stream`, into `buf`. Returns it with the bytes read past it, which
/// belong to what follows. Memory is bounded by the largest header the
/// protocol allows.
///
/// # Cancel safety
/// Cancel safe: what was read stays in `buf`, and a new call with the same
/// buffer continues from it. (The stage first tries without a deadline, so
/// a header that has already arrived costs no timer.)
///
/// # Errors
/// [`ProxyError`]: no header, a malformed one, or the stream ended or failed.
pub async fn read_header<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
) -> Result<(ProxyHeader, Bytes), ProxyError> {
    loop {
        if let Some((header, length)) = parse_prefix(buf)? {
            // What followed the header, if anything, without copying it.
            buf.advance(length);
            let rest = if buf.is_empty() {
                Bytes::new()
            } else {
                std::mem::take(buf).freeze()
            };
            return Ok((header, rest));
        }
        if buf.capacity() == buf.len() {
            buf.reserve(buf.len().min(MAX_HEADER - buf.len()).max(256));
        }
        if stream.read_buf(buf).await? == 0 {
            return Err(if buf.is_empty() {
                ProxyError::Missing
            } else {
                ProxyError::Closed
            });
        }
    }
}

/// What the bytes read so far say: a header and its length, `None` while
/// more bytes are needed to tell, or why the connection is refused.
fn parse_prefix(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyError> {
    if !could_be_header(buf) {
        return Err(ProxyError::Missing);
    }
    try_parse(buf)
}

/// [`read_header`]'s parse of the bytes read so far, for
/// [`crate::invariants`]: `None` while more are needed, the header and
/// its length, or the refusal's text.
#[doc(hidden)]
pub fn parse_for_invariants(buf: &[u8]) -> Option<Result<(ProxyHeader, usize), String>> {
    parse_prefix(buf).map_err(|error| error.to_string()).transpose()
}

/// The header at the start of `buf` and its length; `None` while more
/// bytes are needed to tell. A header that is complete but wrong is an
/// error at once, saying what is wrong, rather than a wait for bytes
/// that would not make it right.
fn try_parse(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyError> {
    if buf.first() == Some(&b'P') {
        try_parse_v1(buf)
    } else {
        try_parse_v2(buf)
    }
}

fn try_parse_v1(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyError> {
    let window = &buf[..buf.len().min(V1_MAX)];
    let Some(end) = window.iter().position(|&b| b == b'\n') else {
        if buf.len() >= V1_MAX {
            return Err(ProxyError::Malformed(format!(
                "a v1 header is one line of at most {V1_MAX} bytes"
            )));
        }
        return Ok(None);
    };
    if end == 0 || window[end - 1] != b'\r' {
        return Err(ProxyError::Malformed("a v1 header line must end with CR LF".into()));
    }
    let line = &buf[..=end];
    let parsed = ppp::HeaderResult::parse(line);
    if !parsed.is_complete() {
        return Err(ProxyError::Malformed(format!(
            "incomplete v1 header {}",
            String::from_utf8_lossy(&line[..end - 1])
        )));
    }
    interpret(parsed).map(Some)
}

fn try_parse_v2(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyError> {
    if buf.len() < 16 {
        return Ok(None);
    }
    let (version, command) = (buf[12] >> 4, buf[12] & 0x0f);
    if version != 2 {
        return Err(ProxyError::Malformed(format!(
            "the v2 signature is followed by version {version}, not 2"
        )));
    }
    if command > 1 {
        return Err(ProxyError::Malformed(format!(
            "unknown v2 command {command} (0 is LOCAL, 1 is PROXY)"
        )));
    }
    let length = 16 + usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    if buf.len() < length {
        return Ok(None);
    }
    // v2 alone: ppp's own detection would fall back to v1 and report v1's error.
    match v2::Header::try_from(&buf[..length]) {
        Err(error) if error.is_incomplete() => Err(ProxyError::Malformed(format!(
            "the v2 header's length ({} bytes) is too short for its addresses",
            length - 16
        ))),
        parsed => interpret(ppp::HeaderResult::V2(parsed)).map(Some),
    }
}

/// Whether `bytes` may still become a header: they are a prefix of either
/// signature, or begin with one. Anything else (a TLS ClientHello, a
/// message) is refused at once rather than read further.
fn could_be_header(bytes: &[u8]) -> bool {
    let starts = |signature: &[u8]| {
        let n = bytes.len().min(signature.len());
        bytes[..n] == signature[..n]
    };
    starts(V2_SIGNATURE) || starts(b"PROXY")
}

fn interpret(parsed: ppp::HeaderResult<'_>) -> Result<(ProxyHeader, usize), ProxyError> {
    match parsed {
        ppp::HeaderResult::V1(Ok(header)) => {
            let client = match header.addresses {
                ppp::v1::Addresses::Tcp4(ip) => Some(client(ip.source_address.into(), ip.source_port)),
                ppp::v1::Addresses::Tcp6(ip) => Some(client(ip.source_address.into(), ip.source_port)),
                ppp::v1::Addresses::Unknown => None,
            };
            let header_len = header.header.len();
            Ok((
                ProxyHeader {
                    version: 1,
                    client,
                    tlvs: Vec::new(),
                },
                header_len,
            ))
        }
        ppp::HeaderResult::V2(Ok(header)) => {
            let client = match (header.command, header.addresses) {
                (v2::Command::Local, _) => None,
                (_, v2::Addresses::IPv4(ip)) => Some(client(ip.source_address.into(), ip.source_port)),
                (_, v2::Addresses::IPv6(ip)) => Some(client(ip.source_address.into(), ip.source_port)),
                (_, v2::Addresses::Unix(unix)) => Some(PeerAddr::Unix(unix_path(&unix.source))),
                (_, v2::Addresses::Unspecified) => None,
            };
            // ppp treats an unspecified family's whole payload as addresses,
            // which hides its TLVs: read them from the payload ourselves.
            let tlv_bytes = match header.addresses {
                v2::Addresses::Unspecified => &header.as_bytes()[16..],
                _ => header.tlv_bytes(),
            };
            let tlvs = TypeLengthValues::from(tlv_bytes)
                .map(|tlv| {
                    tlv.map(|tlv| Tlv {
                        kind: tlv.kind,
                        value: tlv.value.into_owned(),
                    })
                    .map_err(|error| ProxyError::Malformed(format!("bad TLV: {error}")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok((
                ProxyHeader {
                    version: 2,
                    client,
                    tlvs,
                },
                header.as_bytes().len(),
            ))
        }
        ppp::HeaderResult::V1(Err(error)) => Err(ProxyError::Malformed(error.to_string())),
        ppp::HeaderResult::V2(Err(error)) => Err(ProxyError::Malformed(error.to_string())),
    }
}

/// A client address from a header, IPv4-mapped IPv6 shown as the IPv4 it is.
fn client(ip: std::net::IpAddr, port: u16) -> PeerAddr {
    PeerAddr::Tcp(super::canonical(SocketAddr::new(ip, port)))
}

/// A NUL-padded AF_UNIX path from a v2 header; `None` when empty (unnamed).
fn unix_path(raw: &[u8; 108]) -> Option<PathBuf> {
    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    (end > 0).then(|| PathBuf::from(std::ffi::OsStr::from_bytes(&raw[..end])))
}

/// The PROXY protocol version a client sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyVersion {
    V1,
    V2,
}

impl fmt::Display for ProxyVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProxyVersion::V1 => "v1",
            ProxyVersion::V2 => "v2",
        })
    }
}

/// The header a balancer would send for a connection from `source` to
/// `destination`; `None` addresses (a Unix socket) give a header that says
/// so (v1 `UNKNOWN`, v2 `LOCAL`).
pub fn encode_header(version: ProxyVersion, addresses: Option<(SocketAddr, SocketAddr)>) -> Vec<u8> {
    let same_family = addresses.filter(|(source, destination)| source.is_ipv4() == destination.is_ipv4());
    match (version, same_family) {
        (ProxyVersion::V1, Some(pair)) => ppp::v1::Addresses::from(pair).to_string().into_bytes(),
        (ProxyVersion::V1, None) => b"PROXY UNKNOWN\r\n".to_vec(),
        (ProxyVersion::V2, Some(pair)) => {
            v2::Builder::with_addresses(v2::Version::Two | v2::Command::Proxy, v2::Protocol::Stream, pair)
                .build()
                .expect("a header of two addresses fits")
        }
        (ProxyVersion::V2, None) => v2::Builder::new(v2::Version::Two | v2::Command::Local, 0x00)
            .build()
            .expect("a LOCAL header fits"),
    }
}

/// A stream with bytes put back in front: what was read past a PROXY
/// header is read again by whatever comes next.
#[derive(Debug)]
pub struct Rewind<S> {
    /// Boxed, and only when there is something to read again (rarely):
    /// a `Rewind` is part of every connection's memory while it is idle.
    prefix: Option<Box<Bytes>>,
    inner: S,
}

impl<S> Rewind<S> {
    /// `inner`, to be read after `prefix`.
    pub fn new(prefix: Bytes, inner: S) -> Rewind<S> {
        let prefix = (!prefix.is_empty()).then(|| Box::new(prefix));
        Rewind { prefix, inner }
    }
}

impl<S: super::splice::Splice> super::splice::Splice for Rewind<S> {
    /// The socket, once nothing is left to read again first.
    fn socket(&self) -> Option<super::splice::SocketRef<'_>> {
        if self.prefix.is_none() {
            self.inner.socket()
        } else {
            None
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if let Some(prefix) = &mut self.prefix {
            let n = prefix.len().min(buf.remaining());
            buf.put_slice(&prefix[..n]);
            prefix.advance(n);
            if prefix.is_empty() {
                self.prefix = None;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;

    async fn read_from(bytes: &[u8]) -> Result<(ProxyHeader, Bytes), ProxyError> {
        let mut stream = bytes;
        read_header(&mut stream, &mut BytesMut::new()).await
    }

    #[tokio::test]
    async fn v1_gives_the_client_and_keeps_what_follows() {
        let (header, rest) = read_from(b"PROXY TCP4 192.0.2.7 127.0.0.1 51234 65432\r\nhello")
            .await
            .unwrap();
        assert_eq!(header.version, 1);
        assert_eq!(header.client, Some(PeerAddr::Tcp("192.0.2.7:51234".parse().unwrap())));
        assert_eq!(&rest[..], b"hello");
        let (header, _) = read_from(b"PROXY UNKNOWN\r\n").await.unwrap();
        assert_eq!(header.client, None, "UNKNOWN is served as a direct connection");
    }

    #[tokio::test]
    async fn v2_addresses_local_unix_and_tlvs_with_nuls() {
        let source: SocketAddr = "[2001:db8::1]:4000".parse().unwrap();
        let destination: SocketAddr = "[::1]:65432".parse().unwrap();
        let wire = v2::Builder::with_addresses(
            v2::Version::Two | v2::Command::Proxy,
            v2::Protocol::Stream,
            (source, destination),
        )
        .write_tlv(0x02, b"example.com")
        .unwrap()
        .write_tlv(0xe1, b"a\0b\0c")
        .unwrap()
        .build()
        .unwrap();
        let mut input = wire.clone();
        input.extend_from_slice(b"\x16\x03\x01rest");
        let (header, rest) = read_from(&input).await.unwrap();
        assert_eq!((header.version, header.client), (2, Some(PeerAddr::Tcp(source))));
        assert_eq!(
            header.tlvs,
            [
                Tlv {
                    kind: 0x02,
                    value: b"example.com".to_vec()
                },
                Tlv {
                    kind: 0xe1,
                    value: b"a\0b\0c".to_vec()
                }
            ],
            "TLV values are whole, NULs included"
        );
        assert_eq!(&rest[..], b"\x16\x03\x01rest");

        let local = encode_header(ProxyVersion::V2, None);
        assert_eq!(read_from(&local).await.unwrap().0.client, None);

        let mut unix = v2::Builder::with_addresses(
            v2::Version::Two | v2::Command::Proxy,
            v2::Protocol::Stream,
            v2::Unix::new(
                {
                    let mut path = [0u8; 108];
                    path[..14].copy_from_slice(b"/run/lb/c.sock");
                    path
                },
                [0u8; 108],
            ),
        )
        .build()
        .unwrap();
        unix.extend_from_slice(b"x");
        let (header, _) = read_from(&unix).await.unwrap();
        assert_eq!(header.client, Some(PeerAddr::Unix(Some("/run/lb/c.sock".into()))));
    }

    #[tokio::test]
    async fn headers_arriving_a_byte_at_a_time_are_read_whole() {
        let wire = encode_header(
            ProxyVersion::V1,
            Some(("10.1.2.3:1111".parse().unwrap(), "10.0.0.1:65432".parse().unwrap())),
        );
        let (client, mut server) = tokio::io::duplex(1);
        let writer = tokio::spawn(async move {
            let mut client = client;
            for byte in wire.iter().chain(b"next") {
                tokio::io::AsyncWriteExt::write_all(&mut client, &[*byte])
                    .await
                    .unwrap();
            }
            client
        });
        let (header, rest) = read_header(&mut server, &mut BytesMut::new()).await.unwrap();
        assert_eq!(header.client, Some(PeerAddr::Tcp("10.1.2.3:1111".parse().unwrap())));
        let mut rewound = Rewind::new(rest, server);
        let mut next = [0u8; 4];
        rewound.read_exact(&mut next).await.unwrap();
        assert_eq!(&next, b"next");
        drop(writer.await.unwrap());
    }

    #[tokio::test]
    async fn anything_else_is_refused_at_once() {
        assert!(matches!(
            read_from(b"\x16\x03\x01\x02\x00").await,
            Err(ProxyError::Missing)
        ));
        assert!(matches!(
            read_from(b"\x00\x62{\"byteorder\"").await,
            Err(ProxyError::Missing)
        ));
        assert!(matches!(read_from(b"").await, Err(ProxyError::Missing)));
        assert!(matches!(read_from(b"PROXY TCP4 1.2.3").await, Err(ProxyError::Closed)));
        assert!(matches!(
            read_from(b"PROXY TCP4 1.2.3.4 5.6.7.8 99999 1\r\n").await,
            Err(ProxyError::Malformed(_))
        ));
    }

    #[tokio::test]
    async fn a_complete_but_wrong_header_is_refused_at_once_saying_why() {
        let v2 = |byte12: u8, family: u8, length: u16| {
            let mut header = V2_SIGNATURE.to_vec();
            header.extend([byte12, family]);
            header.extend(length.to_be_bytes());
            header.extend([0u8; 4]);
            header
        };
        let mut long_line = b"PROXY TCP4 ".to_vec();
        long_line.resize(120, b'1');
        let cases: [(Vec<u8>, &str); 7] = [
            (
                b"PROXY TCP4 1.2.3.4\r\n".to_vec(),
                "incomplete v1 header PROXY TCP4 1.2.3.4",
            ),
            (b"PROXY\r\n".to_vec(), "invalid protocol"),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n".to_vec(), "must end with CR LF"),
            (long_line, "one line of at most 107 bytes"),
            (v2(0x31, 0x11, 12), "followed by version 3, not 2"),
            (v2(0x22, 0x11, 12), "unknown v2 command 2"),
            (v2(0x21, 0x11, 4), "cannot store the 12 bytes"),
        ];
        for (bytes, reason) in cases {
            // The writer stays open: a parser waiting for more would hang here.
            let (mut client, mut server) = tokio::io::duplex(1024);
            tokio::io::AsyncWriteExt::write_all(&mut client, &bytes).await.unwrap();
            let read = tokio::time::timeout(
                std::time::Duration::from_secs(5),
                read_header(&mut server, &mut BytesMut::new()),
            )
            .await
            .unwrap_or_else(|_| panic!("waited on {bytes:?}"));
            match read {
                Err(ProxyError::Malformed(why)) => assert!(why.contains(reason), "{bytes:?}: {why}"),
                other => panic!("{bytes:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn clients_write_headers_a_parser_reads_back() {
        let pair: (SocketAddr, SocketAddr) = ("127.0.0.2:5000".parse().unwrap(), "127.0.0.1:65432".parse().unwrap());
        assert_eq!(
            encode_header(ProxyVersion::V1, Some(pair)),
            b"PROXY TCP4 127.0.0.2 127.0.0.1 5000 65432\r\n"
        );
        assert_eq!(encode_header(ProxyVersion::V1, None), b"PROXY UNKNOWN\r\n");
        let v2 = encode_header(ProxyVersion::V2, Some(pair));
        assert!(v2.starts_with(V2_SIGNATURE));
    }
}
