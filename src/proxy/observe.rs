//! The proxy's observer: takes the relay's events on a thread of its own
//! (it writes to a terminal and to files, which block), decodes each
//! direction's messages, prints them, and hands them to the recorder and
//! the pcap writer.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::sync::mpsc;
use tokio_util::codec::Decoder;

use super::pcap::PcapWriter;
use super::record::Recorder;
use super::{Direction, Event};
use crate::escape::Terminal;
use crate::protocol::{Message, MessageCodec};
use crate::transport::PeerAddr;

/// What the observer prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// Each message decoded: header, content (JSON pretty, binary as a dump).
    Decode,
    /// Each chunk as a hex dump, whatever the protocol.
    Raw,
    /// Connections only (opened, closed, bytes each way).
    Quiet,
}

/// A decoded message, with its exact bytes.
#[derive(Debug, Clone)]
pub struct Frame {
    pub message: Message,
    /// The header's JSON text as sent (a slice of `wire`).
    pub header: Bytes,
    /// The whole message as it crossed the wire.
    pub wire: Bytes,
}

/// What one [`FrameDecoder::feed`] found.
#[derive(Debug, Default)]
pub struct Fed {
    /// The messages completed by these bytes.
    pub frames: Vec<Frame>,
    /// The stream turned out not to be the protocol: why, and every byte
    /// from the end of the last whole message on (shown and recorded raw).
    pub broken: Option<(String, Bytes)>,
}

/// Cuts one direction's byte stream into messages.
#[derive(Debug)]
pub struct FrameDecoder {
    /// What the codec has not yet decoded (it takes a message's header off
    /// as soon as the header is whole).
    buf: BytesMut,
    /// Every byte since the end of the last whole message, as it came: a
    /// message's exact bytes are cut from here, and so are the bytes a
    /// stream that is not the protocol sent.
    raw: BytesMut,
    codec: MessageCodec,
    /// Set once the stream stops being the protocol; later bytes are raw.
    broken: Option<String>,
}

impl FrameDecoder {
    pub fn new(max_content_len: usize) -> FrameDecoder {
        FrameDecoder {
            buf: BytesMut::new(),
            raw: BytesMut::new(),
            codec: MessageCodec::new().with_max_content_len(max_content_len),
            broken: None,
        }
    }

    /// Why this direction stopped decoding, if it did.
    pub fn broken(&self) -> Option<&str> {
        self.broken.as_deref()
    }

    /// Adds `bytes`: the messages now complete, and (once) whether the
    /// stream turned out not to be the protocol. After that, nothing more
    /// is decoded; the caller shows later bytes raw.
    pub fn feed(&mut self, bytes: &[u8]) -> Fed {
        let mut fed = Fed::default();
        if self.broken.is_some() {
            return fed;
        }
        self.buf.extend_from_slice(bytes);
        self.raw.extend_from_slice(bytes);
        loop {
            match self.codec.decode(&mut self.buf) {
                Ok(Some(message)) => {
                    let header_len = usize::from(u16::from_be_bytes([self.raw[0], self.raw[1]]));
                    let wire = self.raw.split_to(2 + header_len + message.content.len()).freeze();
                    let header = wire.slice(2..2 + header_len);
                    fed.frames.push(Frame { message, header, wire });
                }
                Ok(None) => return fed,
                Err(error) => {
                    let why = error.to_string();
                    self.broken = Some(why.clone());
                    self.buf = BytesMut::new();
                    fed.broken = Some((why, std::mem::take(&mut self.raw).freeze()));
                    return fed;
                }
            }
        }
    }

    /// Bytes held for a message not yet complete.
    pub fn pending(&self) -> usize {
        self.raw.len()
    }

    /// Takes the bytes held (at the end of a stream: an unfinished message).
    pub fn take_pending(&mut self) -> Bytes {
        self.buf.clear();
        std::mem::take(&mut self.raw).freeze()
    }
}

struct ConnectionView {
    client: PeerAddr,
    server: PeerAddr,
    decoders: [FrameDecoder; 2],
    frames: [u64; 2],
    /// When the last request arrived, for a response's "after".
    last_request_at: Option<Instant>,
}

/// Decodes, prints and records what the relay reports.
pub struct Observer {
    pub view: View,
    pub out: Box<dyn Write + Send>,
    pub record: Option<Recorder>,
    pub pcap: Option<PcapWriter>,
    pub max_content_len: usize,
    pub started: Instant,
    connections: HashMap<u64, ConnectionView>,
}

impl Observer {
    pub fn new(view: View, out: Box<dyn Write + Send>, max_content_len: usize) -> Observer {
        Observer {
            view,
            out,
            record: None,
            pcap: None,
            max_content_len,
            started: Instant::now(),
            connections: HashMap::new(),
        }
    }

    /// Takes events until every sender is gone. Output errors (a closed
    /// stdout, a full disk) end the printing or writing, never the relay.
    pub fn run(mut self, mut events: mpsc::Receiver<Event>) {
        while let Some(event) = events.blocking_recv() {
            self.observe(event);
        }
        if let Some(record) = &mut self.record {
            record.flush();
        }
        if let Some(pcap) = &mut self.pcap {
            pcap.flush();
        }
    }

    fn seconds(&self, at: Instant) -> f64 {
        at.saturating_duration_since(self.started).as_secs_f64()
    }

    /// Handles one event.
    pub fn observe(&mut self, event: Event) {
        match event {
            Event::Open {
                connection,
                at,
                client,
                server,
            } => {
                let t = self.seconds(at);
                self.print(&format!("{t:.6} #{connection} open {client} → {server}\n"));
                if let Some(record) = &mut self.record {
                    record.open(t, connection, &client, &server);
                }
                if let Some(pcap) = &mut self.pcap {
                    pcap.open(at, connection, &client, &server);
                }
                let decoder = || FrameDecoder::new(self.max_content_len);
                self.connections.insert(
                    connection,
                    ConnectionView {
                        client,
                        server,
                        decoders: [decoder(), decoder()],
                        frames: [0; 2],
                        last_request_at: None,
                    },
                );
            }
            Event::Data {
                connection,
                at,
                direction,
                bytes,
            } => {
                if let Some(pcap) = &mut self.pcap {
                    pcap.data(at, connection, direction, &bytes);
                }
                self.data(connection, at, direction, &bytes);
            }
            Event::Close {
                connection,
                at,
                bytes,
                error,
            } => {
                let t = self.seconds(at);
                let Some(mut view) = self.connections.remove(&connection) else {
                    return;
                };
                for direction in [Direction::Request, Direction::Response] {
                    let left = view.decoders[direction.index()].take_pending();
                    if !left.is_empty() {
                        self.print(&format!(
                            "{t:.6} #{connection} {} ended in the middle of a message ({} bytes)\n",
                            direction.name(),
                            left.len()
                        ));
                        if let Some(record) = &mut self.record {
                            record.raw(t, connection, direction, &left);
                        }
                    }
                }
                let how = error.map_or_else(String::new, |error| format!(": {error}"));
                self.print(&format!(
                    "{t:.6} #{connection} closed ({} requests in {} bytes, {} responses in {} bytes){}\n",
                    view.frames[0],
                    bytes[0],
                    view.frames[1],
                    bytes[1],
                    Terminal(&how)
                ));
                if let Some(record) = &mut self.record {
                    record.close(t, connection);
                }
                if let Some(pcap) = &mut self.pcap {
                    pcap.close(at, connection);
                }
            }
        }
    }

    fn data(&mut self, connection: u64, at: Instant, direction: Direction, bytes: &[u8]) {
        let t = self.seconds(at);
        let view_kind = self.view;
        let Some(view) = self.connections.get_mut(&connection) else {
            return;
        };
        let side = direction.index();
        let arrow = arrow(&view.client, &view.server, direction);
        if view_kind == View::Raw {
            let text = format!(
                "{t:.6} #{connection} {arrow} {} bytes\n{}\n",
                bytes.len(),
                indent(&dump(bytes))
            );
            self.print(&text);
            return;
        }
        if view_kind == View::Quiet && self.record.is_none() {
            return;
        }
        let was_broken = view.decoders[side].broken().is_some();
        let fed = view.decoders[side].feed(bytes);
        let mut text = String::new();
        let mut recorded = Vec::new();
        for frame in fed.frames {
            view.frames[side] += 1;
            let after = match direction {
                Direction::Request => {
                    view.last_request_at = Some(at);
                    String::new()
                }
                Direction::Response => view
                    .last_request_at
                    .map(|request| format!(", {} after the request", millis(at.saturating_duration_since(request))))
                    .unwrap_or_default(),
            };
            if view_kind == View::Decode {
                let _ = write!(
                    text,
                    "{t:.6} #{connection} {arrow} {} {}, {} bytes{after}\n{}",
                    direction.name(),
                    view.frames[side],
                    frame.wire.len(),
                    describe_frame(&frame)
                );
            }
            recorded.push(frame.wire);
        }
        // Not the protocol: from where it broke, shown once and recorded
        // raw; later bytes are recorded raw and counted in the closing line
        // rather than dumped (--raw dumps all).
        let raw = match &fed.broken {
            Some((why, rest)) => {
                if view_kind == View::Decode {
                    let _ = writeln!(
                        text,
                        "{t:.6} #{connection} {arrow} not the protocol ({}); the rest of this direction is relayed without decoding\n{}",
                        Terminal(why),
                        indent(&dump(rest))
                    );
                }
                Some(&rest[..])
            }
            None => was_broken.then_some(bytes),
        };
        if let Some(record) = &mut self.record {
            for wire in &recorded {
                record.frame(t, connection, direction, wire);
            }
            if let Some(raw) = raw {
                record.raw(t, connection, direction, raw);
            }
        }
        if !text.is_empty() {
            self.print(&text);
        }
    }

    fn print(&mut self, text: &str) {
        // A closed stdout stops the printing, not the relay.
        let _ = self.out.write_all(text.as_bytes()).and_then(|()| self.out.flush());
    }
}

fn arrow(client: &PeerAddr, server: &PeerAddr, direction: Direction) -> String {
    match direction {
        Direction::Request => format!("{client} → {server}"),
        Direction::Response => format!("{client} ← {server}"),
    }
}

fn millis(duration: Duration) -> String {
    format!("{:.3} ms", duration.as_secs_f64() * 1e3)
}

/// A message as indented lines: its header as sent, its content pretty
/// (JSON) or dumped (anything else). Every line escaped for a terminal.
pub fn describe_frame(frame: &Frame) -> String {
    let mut text = String::new();
    let header = String::from_utf8_lossy(&frame.header);
    let _ = writeln!(text, "    header   {}", Terminal(&header));
    let content = &frame.message.content;
    let pretty = frame
        .message
        .is_json()
        .then(|| serde_json::from_slice::<serde_json::Value>(content).ok())
        .flatten()
        .and_then(|value| serde_json::to_string_pretty(&value).ok());
    match pretty {
        Some(json) => {
            for (i, line) in json.lines().enumerate() {
                let label = if i == 0 { "content  " } else { "         " };
                let _ = writeln!(text, "    {label}{}", Terminal(line));
            }
        }
        None if content.is_empty() => {
            let _ = writeln!(text, "    content  (empty)");
        }
        None => {
            let _ = writeln!(text, "    content  {} bytes", content.len());
            let _ = writeln!(text, "{}", indent(&dump(content)));
        }
    }
    text
}

/// A hex and ASCII dump (the ASCII column shows only printable ASCII).
pub fn dump(bytes: &[u8]) -> String {
    let config = pretty_hex::HexConfig {
        title: false,
        ascii: true,
        width: 16,
        group: 8,
        chunk: 1,
        max_bytes: 4096,
        ..pretty_hex::HexConfig::default()
    };
    pretty_hex::config_hex(&bytes, config)
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|line| format!("    {line}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::client_request;

    fn wire(message: &Message) -> Vec<u8> {
        crate::protocol::codec::encode_message(message).unwrap().to_vec()
    }

    #[test]
    fn frames_are_cut_whatever_the_chunks() {
        let one = wire(&client_request("search", "morpheus"));
        let two = wire(&client_request("upload", "\u{1b}[31mred"));
        let stream: Vec<u8> = [one.clone(), two.clone()].concat();
        for cut in 0..stream.len() {
            let mut decoder = FrameDecoder::new(1024);
            let mut frames = decoder.feed(&stream[..cut]).frames;
            assert_eq!(decoder.pending(), cut - frames.len() * one.len(), "cut at {cut}");
            frames.extend(decoder.feed(&stream[cut..]).frames);
            assert_eq!(frames.len(), 2, "cut at {cut}");
            assert_eq!(frames[0].wire, one);
            assert_eq!(frames[1].wire, two);
            assert_eq!(&frames[1].header[..], &two[2..frames[1].header.len() + 2]);
            assert_eq!(decoder.pending(), 0);
        }
    }

    #[test]
    fn a_stream_that_is_not_the_protocol_is_said_once() {
        let mut decoder = FrameDecoder::new(1024);
        let fed = decoder.feed(b"\x00\x05hello world");
        let (why, rest) = fed.broken.expect("broken");
        assert!(why.contains("JSON header"), "{why}");
        assert_eq!(&rest[..], b"\x00\x05hello world");
        let later = decoder.feed(b"more");
        assert!(later.frames.is_empty() && later.broken.is_none());
        assert!(decoder.broken().is_some());
    }

    /// Garbage after whole messages in the same read: the messages are
    /// decoded, and the garbage is handed back whole (from the end of the
    /// last message), not dropped.
    #[test]
    fn what_follows_the_last_message_of_a_broken_read_is_kept() {
        let one = wire(&client_request("search", "morpheus"));
        let mut decoder = FrameDecoder::new(1024);
        decoder.feed(&one[..10]);
        let fed = decoder.feed(&[&one[10..], b"\x00\x05hello world".as_slice()].concat());
        assert_eq!(fed.frames.len(), 1);
        assert_eq!(fed.frames[0].wire, one);
        let (_, rest) = fed.broken.expect("broken");
        assert_eq!(&rest[..], b"\x00\x05hello world");
    }

    #[test]
    fn described_frames_escape_what_the_peer_chose() {
        let mut decoder = FrameDecoder::new(1024);
        let frames = decoder.feed(&wire(&client_request("search", "\u{1b}[2Jgone"))).frames;
        let text = describe_frame(&frames[0]);
        assert!(!text.contains('\u{1b}'), "{text}");
        assert!(text.contains("\"action\": \"search\""), "{text}");
        let binary = decoder.feed(&wire(&client_request("upload", "\u{7}bell"))).frames;
        let text = describe_frame(&binary[0]);
        assert!(!text.contains('\u{7}') && text.contains("content  "), "{text}");
    }
}
