//! `sockets resolve`: what getaddrinfo (or getnameinfo) says.

use std::net::IpAddr;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};

use sockets::escape::Escaped;
use sockets::transport::resolve::{Hints, getaddrinfo, getnameinfo};
use sockets::transport::strip_brackets;

use super::{UsageError, print_line};

#[derive(Debug, Args)]
#[command(
    override_usage = "sockets resolve [OPTIONS] <HOST> [PORT]\n       sockets resolve [OPTIONS] --reverse <ADDR>"
)]
pub struct ResolveArgs {
    /// Name or address to look up.
    #[arg(required_unless_present = "reverse")]
    pub host: Option<String>,
    /// Port to put in the addresses.
    #[arg(value_parser = super::args::parse_port)]
    pub port: Option<u16>,
    /// Reverse lookup: the name of this address (getnameinfo).
    #[arg(long, value_name = "ADDR", conflicts_with_all = ["host", "port"])]
    pub reverse: Option<String>,
    /// Only this address family.
    #[arg(long, value_enum, default_value_t = Family::Any)]
    pub family: Family,
    /// Only this socket type.
    #[arg(long = "type", value_enum, default_value_t = SocketType::Any)]
    pub socktype: SocketType,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Family {
    Any,
    Inet,
    Inet6,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SocketType {
    Any,
    Stream,
    Dgram,
}

pub async fn run(args: ResolveArgs) -> Result<ExitCode> {
    if let Some(addr) = args.reverse {
        let ip: IpAddr = strip_brackets(&addr)
            .parse()
            .map_err(|_| UsageError(format!("--reverse needs an IP address, got {addr:?}")))?;
        let info = tokio::task::spawn_blocking(move || getnameinfo(ip, 0))
            .await?
            .with_context(|| format!("cannot find a name for {ip}"))?;
        // Names come from DNS, which anyone can write: escape them.
        print_line(&Escaped::str(&info.host).to_string())?;
        return Ok(ExitCode::SUCCESS);
    }
    let host = args.host.expect("clap requires HOST without --reverse");
    let hints = Hints {
        family: match args.family {
            Family::Any => libc::AF_UNSPEC,
            Family::Inet => libc::AF_INET,
            Family::Inet6 => libc::AF_INET6,
        },
        socktype: match args.socktype {
            SocketType::Any => 0,
            SocketType::Stream => libc::SOCK_STREAM,
            SocketType::Dgram => libc::SOCK_DGRAM,
        },
    };
    let port = args.port;
    let lookup = strip_brackets(&host).to_owned();
    let results = tokio::task::spawn_blocking(move || getaddrinfo(&lookup, port, hints))
        .await?
        .with_context(|| format!("cannot resolve {host:?}"))?;
    for info in results {
        print_line(&format!(
            "{:<9} {:<12} {:<12} {:<20} {}",
            info.family_name(),
            info.socktype_name(),
            info.protocol_name(),
            info.canonical_name
                .as_deref()
                .map_or_else(|| "''".to_string(), |n| format!("'{}'", Escaped::str(n))),
            info.addr
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}
