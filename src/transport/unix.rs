//! Unix domain sockets: listeners that own their socket file, and nothing else.
//!
//! A server that crashes leaves its socket file behind, and `bind` then
//! fails with "address in use" although nobody listens. So before binding we
//! knock: only a file whose socket refuses us with `ECONNREFUSED` (nobody
//! bound to it) is stale and replaced. A file that answers, or refuses for
//! any other reason (`EACCES`: a live server of another user; `EAGAIN`: a
//! live server with a full backlog), is not ours to touch, and neither is
//! anything that is not a socket.
//!
//! On shutdown the file is removed only if it is still the one we bound
//! (same device and inode): a file someone put there since, or another
//! server's socket, is left alone.
//!
//! With a mode (`--unix-mode`, like Redis's `unixsocketperm`), the socket is
//! bound under a temporary name in the same directory, given its
//! permissions, and only then renamed into place (as HAProxy does), so no
//! client can connect while it is still open to everyone. The rename never
//! replaces a file that appeared meanwhile.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use socket2::{Domain, SockAddr, Socket, Type};
use tokio::net::{UnixDatagram, UnixListener, UnixStream};
use tracing::{debug, info};

use super::listen::Acceptor;
use super::{PeerAddr, TransportError};

/// How a Unix socket file is created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SocketFileOptions {
    /// Permissions for the socket file (`0o660`); `None`: what the umask gives.
    pub mode: Option<u32>,
}

/// The file a socket was bound to, identified by device and inode.
#[derive(Debug)]
struct OwnedSocketFile {
    path: PathBuf,
    device: u64,
    inode: u64,
}

impl OwnedSocketFile {
    fn new(path: &Path) -> io::Result<OwnedSocketFile> {
        let metadata = std::fs::symlink_metadata(path)?;
        Ok(OwnedSocketFile {
            path: path.to_owned(),
            device: metadata.dev(),
            inode: metadata.ino(),
        })
    }
}

impl Drop for OwnedSocketFile {
    fn drop(&mut self) {
        match std::fs::symlink_metadata(&self.path) {
            Ok(metadata) if metadata.dev() == self.device && metadata.ino() == self.inode => {
                let _ = std::fs::remove_file(&self.path);
            }
            Ok(_) => info!(
                "Left {} in place: it is no longer the socket this server bound",
                self.path.display()
            ),
            Err(_) => debug!("{} is already gone", self.path.display()),
        }
    }
}

/// A Unix stream listener that removes its socket file when dropped (when
/// it bound the file itself).
#[derive(Debug)]
pub struct UnixSocketListener {
    listener: UnixListener,
    path: PathBuf,
    /// Held for its `Drop`, which removes the file once the last handle on
    /// the socket (one per share-nothing core) is gone; `None` for a socket
    /// someone else bound (socket activation).
    file: Option<Arc<OwnedSocketFile>>,
}

impl UnixSocketListener {
    /// Binds `path` with the given listen backlog, replacing a stale socket file.
    ///
    /// # Errors
    /// [`TransportError::UnixPathInUse`] when a server is listening there,
    /// [`TransportError::UnixPathUnknown`] when the file's owner cannot be
    /// told, [`TransportError::UnixPathNotSocket`] when the path is some
    /// other file, [`TransportError::BindUnix`] when binding fails.
    pub fn bind(path: &Path, backlog: u32, options: SocketFileOptions) -> Result<UnixSocketListener, TransportError> {
        let backlog = i32::try_from(backlog).unwrap_or(i32::MAX);
        let (socket, file) = bind_socket_file(path, Type::STREAM, Some(backlog), options)?;
        let std_listener: std::os::unix::net::UnixListener = socket.into();
        let listener = UnixListener::from_std(std_listener).map_err(|source| bind_error(path, source))?;
        Ok(UnixSocketListener {
            listener,
            path: path.to_owned(),
            file: Some(Arc::new(file)),
        })
    }

    /// Serves a listening socket bound by someone else (a service manager),
    /// whose file is theirs to remove.
    ///
    /// # Errors
    /// When the socket cannot be registered with the runtime.
    pub fn adopt(listener: std::os::unix::net::UnixListener) -> io::Result<UnixSocketListener> {
        let path = listener
            .local_addr()?
            .as_pathname()
            .map_or_else(|| PathBuf::from("(unnamed)"), Path::to_owned);
        Ok(UnixSocketListener {
            listener: UnixListener::from_std(listener)?,
            path,
            file: None,
        })
    }

    /// The socket file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Takes the socket off this runtime, to be registered with another
    /// (a share-nothing core's) by [`PortableUnixListener::into_listener`].
    ///
    /// # Errors
    /// When the socket cannot be taken off the runtime.
    pub fn into_portable(self) -> io::Result<PortableUnixListener> {
        Ok(PortableUnixListener {
            listener: self.listener.into_std()?,
            path: self.path,
            file: self.file,
        })
    }
}

/// A [`UnixSocketListener`] not registered with any runtime.
#[derive(Debug)]
pub struct PortableUnixListener {
    listener: std::os::unix::net::UnixListener,
    path: PathBuf,
    file: Option<Arc<OwnedSocketFile>>,
}

impl PortableUnixListener {
    /// Another handle on the same listening socket (`dup`); the file is
    /// removed when the last one is dropped.
    ///
    /// # Errors
    /// When the descriptor cannot be duplicated.
    pub fn try_clone(&self) -> io::Result<PortableUnixListener> {
        Ok(PortableUnixListener {
            listener: self.listener.try_clone()?,
            path: self.path.clone(),
            file: self.file.clone(),
        })
    }

    /// The socket file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Registers the socket with the calling thread's runtime.
    ///
    /// # Errors
    /// When there is no runtime here or it refuses the socket.
    pub fn into_listener(self) -> io::Result<UnixSocketListener> {
        Ok(UnixSocketListener {
            listener: UnixListener::from_std(self.listener)?,
            path: self.path,
            file: self.file,
        })
    }
}

impl Acceptor for UnixSocketListener {
    type Stream = UnixStream;

    async fn accept(&mut self) -> io::Result<(UnixStream, PeerAddr)> {
        let (stream, addr) = self.listener.accept().await?;
        Ok((stream, PeerAddr::Unix(addr.as_pathname().map(Path::to_owned))))
    }
}

/// A bound Unix datagram socket that removes its file when dropped. Servers
/// bind one at their path; clients bind one at a private temporary path,
/// because a server can only answer a datagram whose sender has an address.
#[derive(Debug)]
pub struct BoundUnixDatagram {
    pub socket: UnixDatagram,
    file: OwnedSocketFile,
}

impl BoundUnixDatagram {
    /// Binds a server's datagram socket at `path`, replacing a stale file.
    ///
    /// # Errors
    /// As [`UnixSocketListener::bind`].
    pub fn bind(path: &Path, options: SocketFileOptions) -> Result<BoundUnixDatagram, TransportError> {
        let (socket, file) = bind_socket_file(path, Type::DGRAM, None, options)?;
        let std_socket: std::os::unix::net::UnixDatagram = socket.into();
        let socket = UnixDatagram::from_std(std_socket).map_err(|source| bind_error(path, source))?;
        Ok(BoundUnixDatagram { socket, file })
    }

    /// Binds a client socket at a fresh path in the temporary directory and
    /// connects it to `server`.
    ///
    /// # Errors
    /// [`TransportError::BindUnix`] if the temporary socket cannot be made,
    /// [`TransportError::ConnectUnix`] if nothing is bound at `server`.
    pub fn connect_from_temp(server: &Path) -> Result<BoundUnixDatagram, TransportError> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "sockets-client-{}-{}.sock",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let path = std::env::temp_dir().join(name);
        let _ = std::fs::remove_file(&path);
        let socket = UnixDatagram::bind(&path).map_err(|source| bind_error(&path, source))?;
        let file = OwnedSocketFile::new(&path).map_err(|source| bind_error(&path, source))?;
        let bound = BoundUnixDatagram { socket, file };
        bound
            .socket
            .connect(server)
            .map_err(|source| TransportError::ConnectUnix {
                path: server.to_owned(),
                source,
            })?;
        Ok(bound)
    }

    /// The socket file's path.
    pub fn path(&self) -> &Path {
        &self.file.path
    }
}

fn bind_error(path: &Path, source: io::Error) -> TransportError {
    TransportError::BindUnix {
        path: path.to_owned(),
        source,
    }
}

/// Binds (and, for streams, listens on) a socket at `path`, as the module
/// docs describe. Returns the non-blocking socket and the file it owns.
fn bind_socket_file(
    path: &Path,
    kind: Type,
    backlog: Option<i32>,
    options: SocketFileOptions,
) -> Result<(Socket, OwnedSocketFile), TransportError> {
    clear_stale_socket(path)?;
    let socket = Socket::new(Domain::UNIX, kind, None).map_err(|source| bind_error(path, source))?;
    socket
        .set_nonblocking(true)
        .map_err(|source| bind_error(path, source))?;
    match options.mode {
        None => {
            let addr = SockAddr::unix(path).map_err(|source| bind_error(path, source))?;
            socket.bind(&addr).map_err(|source| bind_error(path, source))?;
            if let Some(backlog) = backlog {
                socket.listen(backlog).map_err(|source| bind_error(path, source))?;
            }
        }
        Some(mode) => {
            let temporary = temporary_name(path);
            let result = (|| {
                let _ = std::fs::remove_file(&temporary);
                socket.bind(&SockAddr::unix(&temporary)?)?;
                std::fs::set_permissions(&temporary, std::fs::Permissions::from_mode(mode))?;
                if let Some(backlog) = backlog {
                    socket.listen(backlog)?;
                }
                rename_no_replace(&temporary, path)
            })();
            if let Err(source) = result {
                let _ = std::fs::remove_file(&temporary);
                if source.kind() == io::ErrorKind::AlreadyExists {
                    return Err(TransportError::UnixPathInUse { path: path.to_owned() });
                }
                return Err(bind_error(path, source));
            }
        }
    }
    let file = OwnedSocketFile::new(path).map_err(|source| bind_error(path, source))?;
    Ok((socket, file))
}

/// A short temporary name beside `path` (socket paths are limited to 107 bytes).
fn temporary_name(path: &Path) -> PathBuf {
    let name = format!(".sockets-{}.tmp", std::process::id());
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.join(name),
        _ => PathBuf::from(name),
    }
}

/// `rename(from, to)` that fails with `AlreadyExists` instead of replacing `to`.
fn rename_no_replace(from: &Path, to: &Path) -> io::Result<()> {
    let c_path = |path: &Path| {
        CString::new(path.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
    };
    let (from, to) = (c_path(from)?, c_path(to)?);
    // SAFETY: two valid NUL-terminated paths; renameat2 only reads them.
    let result = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// What knocking on a socket file found.
#[derive(Debug)]
enum Knock {
    /// Something answered: a live server.
    Answered,
    /// `ECONNREFUSED`: no socket is bound to the file any more.
    Stale,
    /// Anything else: we cannot tell, so the file is not ours to remove.
    Unknown(io::Error),
}

/// Knocks with a non-blocking connect of each socket type: a live stream
/// server with a full backlog answers `EAGAIN` rather than making us wait.
fn knock(path: &Path) -> Knock {
    let mut refused = None;
    for kind in [Type::STREAM, Type::DGRAM] {
        let attempt = Socket::new(Domain::UNIX, kind, None).and_then(|probe| {
            probe.set_nonblocking(true)?;
            probe.connect(&SockAddr::unix(path)?)
        });
        match attempt {
            Ok(()) => return Knock::Answered,
            // A live stream server whose backlog is full.
            Err(error) if error.raw_os_error() == Some(libc::EAGAIN) => return Knock::Answered,
            Err(error) if error.raw_os_error() == Some(libc::ECONNREFUSED) => refused = Some(error),
            // A live socket of the other type: try that type.
            Err(error) if error.raw_os_error() == Some(libc::EPROTOTYPE) => {}
            Err(error) => return Knock::Unknown(error),
        }
    }
    match refused {
        Some(_) => Knock::Stale,
        None => Knock::Answered,
    }
}

/// Removes `path` if it is a socket file nobody is bound to.
fn clear_stale_socket(path: &Path) -> Result<(), TransportError> {
    let metadata = match std::fs::symlink_metadata(path) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => return Err(bind_error(path, source)),
    };
    if !metadata.file_type().is_socket() {
        return Err(TransportError::UnixPathNotSocket { path: path.to_owned() });
    }
    match knock(path) {
        Knock::Answered => Err(TransportError::UnixPathInUse { path: path.to_owned() }),
        Knock::Unknown(source) => Err(TransportError::UnixPathUnknown {
            path: path.to_owned(),
            source,
        }),
        Knock::Stale => {
            std::fs::remove_file(path).map_err(|source| bind_error(path, source))?;
            info!("Removed stale socket file {}", path.display());
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULT: SocketFileOptions = SocketFileOptions { mode: None };

    #[tokio::test]
    async fn stale_files_are_replaced_live_ones_refused_and_removed_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("echo.sock");
        // A socket file whose server is gone (std's listener does not unlink on drop).
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let listener = UnixSocketListener::bind(&path, 16, DEFAULT).unwrap();
        let err = UnixSocketListener::bind(&path, 16, DEFAULT).unwrap_err();
        assert!(matches!(err, TransportError::UnixPathInUse { .. }), "{err}");
        let err = BoundUnixDatagram::bind(&path, DEFAULT).unwrap_err();
        assert!(matches!(err, TransportError::UnixPathInUse { .. }), "{err}");
        drop(listener);
        assert!(!path.exists(), "socket file removed on drop");
    }

    #[tokio::test]
    async fn a_live_datagram_socket_is_recognised_as_live() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dgram.sock");
        let _live = BoundUnixDatagram::bind(&path, DEFAULT).unwrap();
        let err = UnixSocketListener::bind(&path, 16, DEFAULT).unwrap_err();
        assert!(matches!(err, TransportError::UnixPathInUse { .. }), "{err}");
    }

    #[tokio::test]
    async fn other_files_are_never_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notes.txt");
        std::fs::write(&path, "keep me").unwrap();
        let err = UnixSocketListener::bind(&path, 16, DEFAULT).unwrap_err();
        assert!(err.to_string().contains("exists and is not a socket"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "keep me");
    }

    #[tokio::test]
    async fn a_replaced_file_is_left_alone_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.sock");
        let listener = UnixSocketListener::bind(&path, 16, DEFAULT).unwrap();
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, "someone else's").unwrap();
        drop(listener);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "someone else's");
    }

    #[tokio::test]
    async fn a_mode_is_set_before_the_file_appears() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("private.sock");
        let listener = UnixSocketListener::bind(&path, 16, SocketFileOptions { mode: Some(0o600) }).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(
            std::fs::read_dir(dir.path()).unwrap().count() == 1,
            "no temporary file left"
        );
        UnixStream::connect(&path).await.expect("the renamed socket accepts");
        drop(listener);
        assert!(!path.exists());
    }
}
