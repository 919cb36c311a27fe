//! Unix domain sockets: listeners that own their socket file.
//!
//! A server that crashes leaves its socket file behind, and `bind` then fails
//! with "address in use" although nobody is listening. So before binding we
//! look: a file nobody answers on is stale and replaced; a live one is refused
//! (two servers on one path would steal each other's clients); anything that
//! is not a socket is never deleted. On clean shutdown the file is removed.

use std::io;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::net::{UnixDatagram, UnixListener, UnixStream};
use tracing::info;

use super::listen::Acceptor;
use super::{PeerAddr, TransportError};

/// A Unix stream listener that removes its socket file when dropped.
#[derive(Debug)]
pub struct UnixSocketListener {
    listener: UnixListener,
    path: PathBuf,
}

impl UnixSocketListener {
    /// Binds `path`, replacing a stale socket file.
    ///
    /// # Errors
    /// [`TransportError::UnixPathInUse`] when a server is listening there,
    /// [`TransportError::UnixPathNotSocket`] when the path is some other file,
    /// [`TransportError::BindUnix`] when binding fails.
    pub fn bind(path: &Path) -> Result<UnixSocketListener, TransportError> {
        clear_stale_socket(path)?;
        let listener = UnixListener::bind(path).map_err(|source| TransportError::BindUnix {
            path: path.to_owned(),
            source,
        })?;
        Ok(UnixSocketListener {
            listener,
            path: path.to_owned(),
        })
    }

    /// The socket file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for UnixSocketListener {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
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
    path: PathBuf,
}

impl BoundUnixDatagram {
    /// Binds a server's datagram socket at `path`, replacing a stale file.
    ///
    /// # Errors
    /// As [`UnixSocketListener::bind`].
    pub fn bind(path: &Path) -> Result<BoundUnixDatagram, TransportError> {
        clear_stale_socket(path)?;
        let socket = UnixDatagram::bind(path).map_err(|source| TransportError::BindUnix {
            path: path.to_owned(),
            source,
        })?;
        Ok(BoundUnixDatagram {
            socket,
            path: path.to_owned(),
        })
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
        let socket = UnixDatagram::bind(&path).map_err(|source| TransportError::BindUnix {
            path: path.clone(),
            source,
        })?;
        let bound = BoundUnixDatagram { socket, path };
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
        &self.path
    }
}

impl Drop for BoundUnixDatagram {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Removes `path` if it is a socket file nobody is listening on.
fn clear_stale_socket(path: &Path) -> Result<(), TransportError> {
    let metadata = match std::fs::symlink_metadata(path) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(TransportError::BindUnix {
                path: path.to_owned(),
                source,
            });
        }
    };
    if !metadata.file_type().is_socket() {
        return Err(TransportError::UnixPathNotSocket { path: path.to_owned() });
    }
    // A stream or a datagram server may own it: either answering means live.
    let live = std::os::unix::net::UnixStream::connect(path).is_ok()
        || std::os::unix::net::UnixDatagram::unbound()
            .and_then(|probe| probe.connect(path))
            .is_ok();
    if live {
        return Err(TransportError::UnixPathInUse { path: path.to_owned() });
    }
    std::fs::remove_file(path).map_err(|source| TransportError::BindUnix {
        path: path.to_owned(),
        source,
    })?;
    info!("Removed stale socket file {}", path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stale_files_are_replaced_live_ones_refused_and_removed_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("echo.sock");
        // A socket file whose server is gone (std's listener does not unlink on drop).
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let listener = UnixSocketListener::bind(&path).unwrap();
        let err = UnixSocketListener::bind(&path).unwrap_err();
        assert!(matches!(err, TransportError::UnixPathInUse { .. }), "{err}");
        let err = BoundUnixDatagram::bind(&path).unwrap_err();
        assert!(matches!(err, TransportError::UnixPathInUse { .. }), "{err}");
        drop(listener);
        assert!(!path.exists(), "socket file removed on drop");
    }

    #[tokio::test]
    async fn other_files_are_never_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notes.txt");
        std::fs::write(&path, "keep me").unwrap();
        let err = UnixSocketListener::bind(&path).unwrap_err();
        assert!(err.to_string().contains("exists and is not a socket"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "keep me");
    }
}
