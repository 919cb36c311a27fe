//! The floor every performance figure in BENCHMARKS.md is measured against:
//! the least a server of this protocol can do on one thread of tokio. It
//! frames requests by the header's `content-length` alone (no JSON parse,
//! no checks, no limits, no timeouts, no logs) and answers every request
//! with one response computed at start-up. It is not a server to run: a
//! hostile client can make it hold any amount of memory.
//!
//! ```text
//! cargo run --release --example minimal_server -- app [PORT]          # persistent
//! cargo run --release --example minimal_server -- app-oneshot [PORT]  # one request per connection
//! cargo run --release --example minimal_server -- echo [PORT]         # a plain copy loop
//! cargo run --release --example minimal_server -- app-oneshot 0 2     # two threads
//! ```
//!
//! An optional third argument runs that many threads (`cores`: one per
//! core, as `sockets` servers do by default), each a runtime of its own
//! accepting from one shared listener: the floor for comparing thread
//! counts with each other.
//!
//! Like `sockets` servers, it prints its address on the first line of
//! stdout, so scripts can start it on port 0. It answers `sockets bench`'s
//! default request (search "morpheus") correctly, and every other request
//! with the same bytes.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::thread;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

mod floor;
use floor::{canned_response, whole_request};

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    App,
    AppOneshot,
    Echo,
}

fn main() -> std::io::Result<()> {
    let usage = || -> ! {
        eprintln!("usage: minimal_server app|app-oneshot|echo [PORT [THREADS|cores]]");
        std::process::exit(2);
    };
    let mut args = std::env::args().skip(1);
    let mode = match args.next().as_deref() {
        Some("app") => Mode::App,
        Some("app-oneshot") => Mode::AppOneshot,
        Some("echo") => Mode::Echo,
        _ => usage(),
    };
    let port: u16 = args.next().map_or(Ok(0), |p| p.parse()).unwrap_or_else(|_| usage());
    let threads = match args.next().as_deref() {
        None => 1,
        // As many as `sockets` servers run by default.
        Some("cores") => thread::available_parallelism().map_or(1, usize::from),
        Some(count) => count.parse().ok().filter(|&n| n > 0).unwrap_or_else(|| usage()),
    };
    if args.next().is_some() {
        usage();
    }
    let response: &'static [u8] = Box::leak(canned_response().into_boxed_slice());
    let listener = std::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port)))?;
    listener.set_nonblocking(true)?;
    let address = listener.local_addr()?;
    for _ in 1..threads {
        let listener = listener.try_clone()?;
        thread::spawn(move || serve_or_exit(listener, mode, response));
    }
    // Announced once every thread exists (they accept as soon as each runtime is up).
    println!("{address}");
    serve_or_exit(listener, mode, response)
}

/// Serves on this thread until an error, which ends the whole process: a
/// floor quietly running on fewer threads would measure the wrong thing.
fn serve_or_exit(listener: std::net::TcpListener, mode: Mode, response: &'static [u8]) -> ! {
    let Err(error) = serve(listener, mode, response);
    eprintln!("minimal_server: {error}");
    std::process::exit(1);
}

/// Accepts and serves connections on this thread's own runtime, until an error.
fn serve(listener: std::net::TcpListener, mode: Mode, response: &'static [u8]) -> std::io::Result<Infallible> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async move {
        let listener = TcpListener::from_std(listener)?;
        loop {
            let (stream, _) = listener.accept().await?;
            stream.set_nodelay(true)?;
            tokio::spawn(async move {
                let _ = match mode {
                    Mode::App => serve_app(stream, response, false).await,
                    Mode::AppOneshot => serve_app(stream, response, true).await,
                    Mode::Echo => serve_echo(stream).await,
                };
            });
        }
    })
}

/// Reads whatever has arrived, answers every whole request in it with one
/// write, and keeps the partial rest for the next read.
async fn serve_app(mut stream: TcpStream, response: &[u8], oneshot: bool) -> std::io::Result<()> {
    let mut input = BytesMut::with_capacity(16 * 1024);
    let mut output = Vec::with_capacity(16 * 1024);
    loop {
        if stream.read_buf(&mut input).await? == 0 {
            return Ok(());
        }
        let mut answered = 0;
        while let Some(length) = whole_request(&input) {
            let _ = input.split_to(length);
            output.extend_from_slice(response);
            answered += 1;
            if oneshot {
                break;
            }
        }
        if answered > 0 {
            stream.write_all(&output).await?;
            output.clear();
            if oneshot {
                return Ok(());
            }
        }
        if input.capacity() - input.len() < 4096 {
            input.reserve(16 * 1024);
        }
    }
}

/// Writes back what it reads, one buffer at a time.
async fn serve_echo(mut stream: TcpStream) -> std::io::Result<()> {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let n = stream.read(&mut buffer).await?;
        if n == 0 {
            return Ok(());
        }
        stream.write_all(&buffer[..n]).await?;
    }
}
