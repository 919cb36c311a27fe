//! Proxied traffic as a pcap file that Wireshark and tshark open: each
//! relayed connection becomes a TCP conversation (handshake, data
//! segments with their sequence numbers and acknowledgements, FINs) in
//! synthetic Ethernet frames, with the real client and server addresses.
//!
//! A Unix socket peer has no address: it is shown as 10.255.0.1 (client)
//! or 10.255.0.2 (server). When the two sides are of different families,
//! IPv4 addresses are written as IPv4-mapped IPv6.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use etherparse::PacketBuilder;

use super::Direction;
use crate::transport::PeerAddr;

/// `LINKTYPE_ETHERNET`.
const ETHERNET: u32 = 1;
/// Bytes of TCP payload per synthetic segment (well under an IPv4 packet's limit).
const SEGMENT: usize = 16 * 1024;
const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const SERVER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
const WINDOW: u16 = 65535;

/// One conversation's state.
struct Flow {
    client: SocketAddr,
    server: SocketAddr,
    /// Next sequence number of each side: client, server.
    next: [u32; 2],
}

/// Writes a pcap. A failed write is reported once and ends the capture.
pub struct PcapWriter {
    out: Option<BufWriter<File>>,
    flows: HashMap<u64, Flow>,
    /// The wall clock at `started`, to stamp packets.
    epoch: SystemTime,
    started: Instant,
}

impl PcapWriter {
    /// Creates `path` and writes the pcap header.
    ///
    /// # Errors
    /// When the file cannot be created or written.
    pub fn create(path: &Path) -> std::io::Result<PcapWriter> {
        let mut out = BufWriter::new(File::create(path)?);
        // Magic (microsecond timestamps), version 2.4, GMT, accuracy 0,
        // snapshot length, link type; little-endian, as the magic says.
        out.write_all(&0xa1b2_c3d4u32.to_le_bytes())?;
        out.write_all(&2u16.to_le_bytes())?;
        out.write_all(&4u16.to_le_bytes())?;
        out.write_all(&0i32.to_le_bytes())?;
        out.write_all(&0u32.to_le_bytes())?;
        out.write_all(&262_144u32.to_le_bytes())?;
        out.write_all(&ETHERNET.to_le_bytes())?;
        Ok(PcapWriter {
            out: Some(out),
            flows: HashMap::new(),
            epoch: SystemTime::now(),
            started: Instant::now(),
        })
    }

    /// A connection opened: its three-way handshake.
    pub fn open(&mut self, at: Instant, connection: u64, client: &PeerAddr, server: &PeerAddr) {
        let (client, server) = addresses(connection, client, server);
        // Initial sequence numbers that differ per connection, as real ones do.
        let isn = [connection as u32 * 1_000_003, connection as u32 * 7_000_001 + 17];
        let mut flow = Flow {
            client,
            server,
            next: isn,
        };
        self.packet(at, &flow, Direction::Request, Flags::Syn, &[]);
        flow.next[0] = flow.next[0].wrapping_add(1);
        self.packet(at, &flow, Direction::Response, Flags::SynAck, &[]);
        flow.next[1] = flow.next[1].wrapping_add(1);
        self.packet(at, &flow, Direction::Request, Flags::Ack, &[]);
        self.flows.insert(connection, flow);
    }

    /// Bytes relayed one way: data segments, each acknowledged.
    pub fn data(&mut self, at: Instant, connection: u64, direction: Direction, bytes: &[u8]) {
        let Some(mut flow) = self.flows.remove(&connection) else {
            return;
        };
        let side = direction.index();
        for segment in bytes.chunks(SEGMENT) {
            self.packet(at, &flow, direction, Flags::PshAck, segment);
            flow.next[side] = flow.next[side].wrapping_add(segment.len() as u32);
            self.packet(at, &flow, direction.opposite(), Flags::Ack, &[]);
        }
        self.flows.insert(connection, flow);
    }

    /// A connection closed: a FIN each way and the last acknowledgement.
    pub fn close(&mut self, at: Instant, connection: u64) {
        let Some(mut flow) = self.flows.remove(&connection) else {
            return;
        };
        self.packet(at, &flow, Direction::Request, Flags::FinAck, &[]);
        flow.next[0] = flow.next[0].wrapping_add(1);
        self.packet(at, &flow, Direction::Response, Flags::FinAck, &[]);
        flow.next[1] = flow.next[1].wrapping_add(1);
        self.packet(at, &flow, Direction::Request, Flags::Ack, &[]);
        // A finished conversation is on disk, for whoever opens the file now.
        self.flush();
    }

    pub fn flush(&mut self) {
        if let Some(out) = &mut self.out
            && let Err(error) = out.flush()
        {
            tracing::error!("pcap stopped: {error}");
            self.out = None;
        }
    }

    fn packet(&mut self, at: Instant, flow: &Flow, direction: Direction, flags: Flags, payload: &[u8]) {
        let (from, to, macs, seq, ack) = match direction {
            Direction::Request => (
                flow.client,
                flow.server,
                (CLIENT_MAC, SERVER_MAC),
                flow.next[0],
                flow.next[1],
            ),
            Direction::Response => (
                flow.server,
                flow.client,
                (SERVER_MAC, CLIENT_MAC),
                flow.next[1],
                flow.next[0],
            ),
        };
        let link = PacketBuilder::ethernet2(macs.0, macs.1);
        let ip = match (from.ip(), to.ip()) {
            (IpAddr::V4(a), IpAddr::V4(b)) => link.ipv4(a.octets(), b.octets(), 64),
            (a, b) => link.ipv6(v6(a).octets(), v6(b).octets(), 64),
        };
        let tcp = ip.tcp(from.port(), to.port(), seq, WINDOW);
        let tcp = match flags {
            Flags::Syn => tcp.syn(),
            Flags::SynAck => tcp.syn().ack(ack),
            Flags::Ack => tcp.ack(ack),
            Flags::PshAck => tcp.psh().ack(ack),
            Flags::FinAck => tcp.fin().ack(ack),
        };
        let mut frame = Vec::with_capacity(tcp.size(payload.len()));
        if tcp.write(&mut frame, payload).is_err() {
            return;
        }
        let stamp = self.epoch + at.saturating_duration_since(self.started);
        let since = stamp.duration_since(UNIX_EPOCH).unwrap_or_default();
        let length = u32::try_from(frame.len()).unwrap_or(u32::MAX);
        let Some(out) = &mut self.out else { return };
        let written = out
            .write_all(&u32::try_from(since.as_secs()).unwrap_or(u32::MAX).to_le_bytes())
            .and_then(|()| out.write_all(&since.subsec_micros().to_le_bytes()))
            .and_then(|()| out.write_all(&length.to_le_bytes()))
            .and_then(|()| out.write_all(&length.to_le_bytes()))
            .and_then(|()| out.write_all(&frame));
        if let Err(error) = written {
            tracing::error!("pcap stopped: {error}");
            self.out = None;
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Flags {
    Syn,
    SynAck,
    Ack,
    PshAck,
    FinAck,
}

fn v6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

/// The addresses a conversation is drawn with.
fn addresses(connection: u64, client: &PeerAddr, server: &PeerAddr) -> (SocketAddr, SocketAddr) {
    let stand_in = |last: u8, port: u16| SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 255, 0, last)), port);
    let client = match client {
        PeerAddr::Tcp(addr) => *addr,
        _ => stand_in(1, 10_000 + (connection % 50_000) as u16),
    };
    let server = match server {
        PeerAddr::Tcp(addr) => *addr,
        _ => stand_in(2, crate::transport::DEFAULT_PORT),
    };
    (client, server)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_conversation_is_well_formed_packets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.pcap");
        let mut pcap = PcapWriter::create(&path).unwrap();
        let now = Instant::now();
        let client = PeerAddr::Tcp("192.0.2.1:40000".parse().unwrap());
        let server = PeerAddr::Tcp("192.0.2.2:65432".parse().unwrap());
        pcap.open(now, 1, &client, &server);
        pcap.data(now, 1, Direction::Request, &[7u8; 40_000]);
        pcap.data(now, 1, Direction::Response, b"hi");
        pcap.close(now, 1);
        pcap.flush();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[..4], &0xa1b2_c3d4u32.to_le_bytes());
        // Walk the records and parse each frame back.
        let (mut offset, mut payload, mut packets) = (24, 0, 0);
        while offset < bytes.len() {
            let length = u32::from_le_bytes(bytes[offset + 8..offset + 12].try_into().unwrap()) as usize;
            let frame = &bytes[offset + 16..offset + 16 + length];
            let parsed = etherparse::SlicedPacket::from_ethernet(frame).unwrap();
            payload += parsed.transport.map_or(0, |t| match t {
                etherparse::TransportSlice::Tcp(tcp) => tcp.payload().len(),
                _ => 0,
            });
            packets += 1;
            offset += 16 + length;
        }
        assert_eq!(payload, 40_002);
        // 3 handshake, 3 segments + 3 acks, 1 segment + 1 ack, 3 closing.
        assert_eq!(packets, 14);
    }
}
