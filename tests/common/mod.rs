//! Helpers for integration tests: run the real `sockets` binary, find the
//! address it bound, talk to it over loopback, and report what it logged
//! when an assertion fails.

#![allow(dead_code)] // each test crate uses a different subset

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use sockets::protocol::{Message, MessageCodec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::codec::{Decoder, Encoder};

/// Every await in a test is bounded by this, so a hang fails instead of stalling CI.
pub const STEP: Duration = Duration::from_secs(10);

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_sockets")
}

/// Bounds a future by [`STEP`], naming what timed out.
pub async fn step<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(STEP, future)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// A server process started for one test; killed when dropped.
pub struct ServerProcess {
    child: Child,
    /// The server's first stdout line: `127.0.0.1:41234`, `[::1]:41234` or `unix:/path`.
    pub listening: String,
    stderr: Arc<Mutex<String>>,
    /// Every stdout line so far.
    stdout: Arc<Mutex<Vec<String>>>,
    pub args: Vec<String>,
}

impl ServerProcess {
    /// Starts `sockets <args>` and waits for the address on its first stdout line.
    pub fn start(args: &[&str]) -> ServerProcess {
        ServerProcess::start_command(binary(), args)
    }

    /// Starts `program <args>` (a wrapper that execs the server, say) and
    /// waits for the address on its first stdout line.
    pub fn start_command(program: &str, args: &[&str]) -> ServerProcess {
        let mut command = Command::new(program);
        command.args(args);
        ServerProcess::spawn(command)
    }

    /// Starts `command` (set up as the caller needs: environment,
    /// descriptors) and waits for the address on its first stdout line.
    pub fn spawn(mut command: Command) -> ServerProcess {
        // Tests open a thousand or more client sockets; the default soft limit may be 1024.
        let _ = sockets::transport::raise_open_file_limit();
        let args: Vec<String> = command.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting the sockets binary");
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut stderr_pipe = child.stderr.take().unwrap();
        let sink = Arc::clone(&stderr);
        std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n) = stderr_pipe.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().push_str(&String::from_utf8_lossy(&chunk[..n]));
            }
        });
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let stdout_lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&stdout_lines);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let mut lines = sink.lock().unwrap();
                if lines.is_empty() {
                    let _ = tx.send(line.clone());
                }
                lines.push(line);
            }
        });
        let line = match rx.recv_timeout(STEP) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "server {args:?} printed no address; stderr:\n{}",
                    stderr.lock().unwrap()
                );
            }
        };
        ServerProcess {
            child,
            listening: line,
            stderr,
            stdout: stdout_lines,
            args,
        }
    }

    /// What the process has printed on stdout so far, a line each.
    pub fn stdout(&self) -> String {
        self.stdout.lock().unwrap().join("\n")
    }

    /// Waits until stdout contains `needle`, or fails showing it.
    pub fn wait_for_stdout(&self, needle: &str) -> String {
        let deadline = Instant::now() + STEP;
        loop {
            let text = self.stdout();
            if text.contains(needle) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "{:?} never printed {needle:?}; stdout:\n{text}\nstderr:\n{}",
                self.args,
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The URL of `--metrics`, from the `metrics: URL` line on stdout.
    pub fn metrics_url(&self) -> String {
        let deadline = Instant::now() + STEP;
        loop {
            let found = self
                .stdout
                .lock()
                .unwrap()
                .iter()
                .find_map(|line| line.strip_prefix("metrics: ").map(str::to_owned));
            if let Some(url) = found {
                return url;
            }
            assert!(
                Instant::now() < deadline,
                "no metrics line on stdout; stderr:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The bound IP address and port.
    pub fn addr(&self) -> SocketAddr {
        self.listening
            .parse()
            .unwrap_or_else(|_| panic!("first stdout line {:?} is not an address", self.listening))
    }

    /// The bound port, as a command-line argument.
    pub fn port(&self) -> String {
        self.addr().port().to_string()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the server has logged so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits until the log contains `needle`, or fails showing the log.
    pub fn wait_for_log(&self, needle: &str) {
        let deadline = Instant::now() + STEP;
        while Instant::now() < deadline {
            if self.stderr().contains(needle) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "server {:?} never logged {needle:?}; stderr:\n{}",
            self.args,
            self.stderr()
        );
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
    }

    /// Waits for the process to exit, failing after [`STEP`].
    pub fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + STEP;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                panic!("server {:?} did not exit; stderr:\n{}", self.args, self.stderr());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// CPU time (user + system) the server has used so far.
    pub fn cpu_time(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
        let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        // SAFETY: sysconf only reads a configuration value.
        let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
        Duration::from_millis(ticks * 1000 / per_second)
    }

    /// Resident memory of the server process, in bytes. From `smaps_rollup`,
    /// a walk of the page tables: `/proc/PID/status` uses per-CPU counters
    /// that can lag by tens of megabytes right after memory is freed.
    pub fn rss_bytes(&self) -> u64 {
        let rollup = std::fs::read_to_string(format!("/proc/{}/smaps_rollup", self.child.id()))
            .unwrap_or_else(|e| panic!("reading the server's memory: {e}; stderr:\n{}", self.stderr()));
        let line = rollup
            .lines()
            .find(|l| l.starts_with("Rss:"))
            .expect("Rss in smaps_rollup");
        let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        kib * 1024
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `sockets app-server` on a free loopback port, with `extra` flags.
pub fn start_app_server(extra: &[&str]) -> ServerProcess {
    let mut args = vec!["app-server", "127.0.0.1", "0"];
    args.extend_from_slice(extra);
    ServerProcess::start(&args)
}

/// The `result` of a JSON response.
pub fn result_of(message: &Message) -> String {
    assert!(message.is_json(), "expected a JSON response, got {message:?}");
    let answer: sockets::app::Answer<'_> =
        serde_json::from_slice(&message.content).expect("a {\"result\": ...} object");
    answer.result.into_owned()
}

/// An encoded search request, as the guide's client sends it.
pub fn search(value: &str) -> Vec<u8> {
    encode(&sockets::app::client_request("search", value))
}

/// Starts `sockets echo-server` on a free loopback port (or on `--unix PATH`
/// when the arguments give one).
pub fn start_echo_server(extra: &[&str]) -> ServerProcess {
    let mut args = vec!["echo-server"];
    if !extra.contains(&"--unix") {
        args.extend(["127.0.0.1", "0"]);
    }
    args.extend_from_slice(extra);
    ServerProcess::start(&args)
}

/// Runs `sockets <args>` to completion (bounded by a timeout) and returns its output.
pub fn run_cli(args: &[&str]) -> Output {
    run_cli_with_input(args, None)
}

/// Runs `sockets <args>` with `input` on its standard input (closed after it),
/// or no standard input at all for `None`.
pub fn run_cli_with_input(args: &[&str], input: Option<&[u8]>) -> Output {
    let mut child = Command::new(binary())
        .args(args)
        .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting the sockets binary");
    if let Some(input) = input {
        let mut stdin = child.stdin.take().unwrap();
        let input = input.to_vec();
        std::thread::spawn(move || {
            let _ = std::io::Write::write_all(&mut stdin, &input);
        });
    }
    wait_output(child, &format!("sockets {args:?}"))
}

/// Collects a child's standard output and error and waits for it to exit,
/// killing it (and failing) if it has not within `3 × STEP`. The child's
/// stdout and stderr must be piped.
pub fn wait_output(mut child: Child, what: &str) -> Output {
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let collect = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut all = Vec::new();
            let _ = pipe.read_to_end(&mut all);
            all
        })
    };
    let (out, err) = (collect(Box::new(stdout)), collect(Box::new(stderr)));
    let deadline = Instant::now() + STEP * 3;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{what} did not finish within {:?}", STEP * 3);
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// Runs `sockets bench <args> --json`; its report, and the whole output
/// (a report that does not parse fails with the output described).
pub fn bench_json(args: &[&str]) -> (serde_json::Value, Output) {
    let mut all = vec!["bench"];
    all.extend_from_slice(args);
    all.push("--json");
    let output = run_cli(&all);
    let json = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{e}: {}", describe(&all, &output)));
    (json, output)
}

/// Runs `sockets <args>`, asserts it succeeded, and returns its stdout.
pub fn run_ok(args: &[&str]) -> String {
    let output = run_cli(args);
    assert!(output.status.success(), "{}", describe(args, &output));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Runs `sockets <args>`, asserts it failed with `code` and that stderr says `expected`.
pub fn run_fails(args: &[&str], code: i32, expected: &str) -> String {
    let output = run_cli(args);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(code), "{}", describe(args, &output));
    assert!(
        stderr.contains(expected),
        "expected {expected:?} on stderr\n{}",
        describe(args, &output)
    );
    assert!(!stderr.contains("panicked"), "{}", describe(args, &output));
    stderr
}

/// Describes a finished command for assertion messages.
pub fn describe(args: &[&str], output: &Output) -> String {
    format!(
        "sockets {args:?} exited {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The vendored test vectors, relative to the repository.
pub const VECTORS: &str = "tests/vectors/messages.json";

/// Path of a file in the repository.
pub fn repo_path(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// The encoded bytes of `message`.
pub fn encode(message: &Message) -> Vec<u8> {
    let mut out = BytesMut::new();
    MessageCodec::new().encode(message, &mut out).unwrap();
    out.to_vec()
}

/// Reads one message from `stream`, with a timeout. `None` at a clean EOF.
pub async fn read_message(stream: &mut TcpStream, buf: &mut BytesMut) -> Option<Message> {
    let mut codec = MessageCodec::new();
    step("reading a message", async {
        loop {
            if let Some(message) = codec.decode(buf).expect("a valid message from the server") {
                return Some(message);
            }
            if stream.read_buf(buf).await.expect("reading from the server") == 0 {
                assert!(
                    buf.is_empty() && !codec.is_mid_message(),
                    "EOF in the middle of a message"
                );
                return None;
            }
        }
    })
    .await
}

/// Reads until EOF and returns everything received.
pub async fn read_to_end(stream: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    step("reading to EOF", stream.read_to_end(&mut all))
        .await
        .expect("reading to EOF");
    all
}

/// Connects to the server.
pub async fn connect(addr: SocketAddr) -> TcpStream {
    step("connecting", TcpStream::connect(addr))
        .await
        .expect("connecting to the server")
}

/// Writes all of `bytes`.
pub async fn send(stream: &mut TcpStream, bytes: &[u8]) {
    step("writing", stream.write_all(bytes))
        .await
        .expect("writing to the server");
}

/// Whether the tests run as root (CI does): some cases need it, and say so
/// when they cannot run.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Sends a UDP datagram whose source address is `from`, whoever owns it,
/// through a raw socket (root only): how an attacker starts an echo loop.
pub fn send_spoofed_udp(
    from: std::net::SocketAddrV4,
    to: std::net::SocketAddrV4,
    payload: &[u8],
) -> std::io::Result<()> {
    use socket2::{Domain, Protocol, SockAddr, Socket, Type};
    // IPPROTO_RAW implies IP_HDRINCL: we write the IP header; the kernel
    // fills in its checksum and total length.
    let socket = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(libc::IPPROTO_RAW)))?;
    let total = 20 + 8 + payload.len();
    let mut packet = Vec::with_capacity(total);
    packet.extend_from_slice(&[0x45, 0]);
    packet.extend_from_slice(&(total as u16).to_be_bytes());
    packet.extend_from_slice(&[0, 0, 0x40, 0, 64, libc::IPPROTO_UDP as u8, 0, 0]);
    packet.extend_from_slice(&from.ip().octets());
    packet.extend_from_slice(&to.ip().octets());
    packet.extend_from_slice(&from.port().to_be_bytes());
    packet.extend_from_slice(&to.port().to_be_bytes());
    packet.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    packet.extend_from_slice(&[0, 0]); // no UDP checksum
    packet.extend_from_slice(payload);
    socket.send_to(&packet, &SockAddr::from(std::net::SocketAddr::V4(to)))?;
    Ok(())
}

/// Decodes a hex string (test vectors are stored as hex).
pub fn hex(text: &str) -> Vec<u8> {
    assert!(text.len().is_multiple_of(2), "odd-length hex");
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex digit"))
        .collect()
}

/// One entry of the test vectors.
pub struct Vector {
    pub name: String,
    pub wire: Vec<u8>,
    pub header: serde_json::Value,
    pub content: Vec<u8>,
}

/// The byte-exact test vectors, vendored in `tests/vectors/messages.json`
/// (`tests/vectors.rs` checks the copy against the shared original).
pub fn vectors() -> Vec<Vector> {
    vectors_from(VECTORS)
}

/// The vectors of a file in the same format (`tests/vectors/broker.json`).
pub fn vectors_from(relative: &str) -> Vec<Vector> {
    let path = repo_path(relative);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let vectors: Vec<Vector> = json["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| Vector {
            name: v["name"].as_str().unwrap().to_owned(),
            wire: hex(v["hex"].as_str().unwrap()),
            header: v["header"].clone(),
            content: hex(v["content_hex"].as_str().unwrap()),
        })
        .collect();
    assert!(
        vectors.len() >= 10,
        "expected a vector set in {relative}, found {}",
        vectors.len()
    );
    vectors
}

/// The response vector that answers the request vector `request`. The
/// big-endian client's request has the same answer as search-morpheus.
pub fn response_vector<'a>(vectors: &'a [Vector], request: &Vector) -> &'a Vector {
    let stem = request
        .name
        .trim_end_matches(".request")
        .replace("-bigendian-client", "");
    vector(vectors, &format!("{stem}.response"))
}

/// The vector named `name`.
pub fn vector<'a>(vectors: &'a [Vector], name: &str) -> &'a Vector {
    vectors
        .iter()
        .find(|v| v.name == name)
        .unwrap_or_else(|| panic!("no vector {name}"))
}

/// The guide-style Python server of `tests/python/guide_server.py`, killed when dropped.
pub struct PythonGuideServer {
    child: Child,
    /// `None` once handed to a thread that discards it ([`PythonGuideServer::discard_output`]).
    stdout: Option<BufReader<std::process::ChildStdout>>,
    pub port: u16,
}

impl PythonGuideServer {
    /// Starts it on a free loopback port.
    pub fn start() -> PythonGuideServer {
        let mut child = Command::new("python3")
            .args(["guide_server.py", "127.0.0.1", "0"])
            .current_dir(repo_path("tests/python"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 must be installed (.ci/run installs it)");
        let stdout = Some(BufReader::new(child.stdout.take().unwrap()));
        let mut server = PythonGuideServer { child, stdout, port: 0 };
        let line = server.read_line();
        let addr: SocketAddr = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("the guide server printed {line:?}"));
        server.port = addr.port();
        server
    }

    /// The next line the server printed (it prints `request-hex ...` per request).
    pub fn read_line(&mut self) -> String {
        let mut line = String::new();
        self.stdout
            .as_mut()
            .expect("output not discarded")
            .read_line(&mut line)
            .unwrap();
        line
    }

    /// Reads and drops what the server prints from now on, so that many
    /// requests (a line of hex each) never fill the pipe and stall it.
    pub fn discard_output(mut self) -> PythonGuideServer {
        if let Some(mut stdout) = self.stdout.take() {
            std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        }
        self
    }
}

impl Drop for PythonGuideServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a script of `tests/netns/` (hosts made of network namespaces; it
/// needs root, as CI has) against our binary, and returns what it printed
/// once it passed: exit 0 and its `PASS: {passed}` line. Each check it
/// made is an `ok ...` line, for the caller to look for by name.
pub fn run_netns_script(script: &str, passed: &str) -> String {
    assert!(
        is_root(),
        "network namespaces need root: run the tests as root, as CI does"
    );
    let output = Command::new("bash")
        .arg(repo_path(&format!("tests/netns/{script}")))
        .arg(binary())
        .output()
        .unwrap_or_else(|e| panic!("running tests/netns/{script}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains(&format!("PASS: {passed}")),
        "tests/netns/{script} failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    stdout
}

/// Asserts that a netns script's output has an `ok` line saying each check.
pub fn assert_checks_passed(stdout: &str, checks: &[&str]) {
    for check in checks {
        assert!(
            stdout
                .lines()
                .any(|line| line.starts_with("ok ") && line.contains(check)),
            "no ok line saying {check:?} in:\n{stdout}"
        );
    }
}
