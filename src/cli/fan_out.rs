//! Flags for UDP clients that address many responders at once: a broadcast
//! address or a multicast group.

use std::net::SocketAddr;

use anyhow::{Context, Result};
use clap::Args;

use sockets::transport::multicast::{FanOut, Interface, is_group};
use sockets::transport::{Endpoint, resolve, strip_brackets};

use super::args::whole;

#[derive(Debug, Args)]
pub struct FanOutArgs {
    /// With --udp: allow sending to a broadcast address (SO_BROADCAST),
    /// and hear every responder.
    #[arg(long, requires = "udp")]
    pub broadcast: bool,
    /// With --udp to a multicast group: hops the datagram may take (1 to
    /// 255; 1 keeps it on this network).
    #[arg(long, value_name = "N", requires = "udp", default_value_t = 1, value_parser = whole(1, 255))]
    pub multicast_ttl: u64,
    /// With --udp to a multicast group: whether members on this host hear it too.
    #[arg(long, value_name = "BOOL", requires = "udp", default_value_t = true, action = clap::ArgAction::Set)]
    pub multicast_loop: bool,
    /// With --udp to a multicast group: send from this interface (an IPv4
    /// address, or a name such as eth0) [default: the route to the group].
    #[arg(long, value_name = "IFACE", requires = "udp")]
    pub multicast_interface: Option<Interface>,
}

impl FanOutArgs {
    /// The target and settings when datagrams go to many responders (a
    /// group, or `--broadcast`); `None` for one peer.
    pub async fn target(&self, endpoint: &Endpoint) -> Result<Option<(SocketAddr, FanOut)>> {
        let Endpoint::Inet { host, port } = endpoint else {
            return Ok(None);
        };
        let host = strip_brackets(host);
        let addr = *resolve::lookup(host, *port, libc::SOCK_DGRAM)
            .await
            .with_context(|| format!("cannot resolve {host:?}"))?
            .first()
            .with_context(|| format!("{host:?} resolved to no addresses"))?;
        if !self.broadcast && !is_group(&addr) {
            return Ok(None);
        }
        Ok(Some((
            addr,
            FanOut {
                broadcast: self.broadcast,
                ttl: self.multicast_ttl as u32,
                loopback: self.multicast_loop,
                interface: self.multicast_interface.clone().unwrap_or(Interface::Default),
            },
        )))
    }
}
