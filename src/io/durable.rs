//! Making writes durable: `fsync` of files and of the directories that
//! name them (a file's directory entry is only on disk once its directory
//! is synced), and the error type for file operations.

use std::path::Path;

use crate::error::Error;

/// An [`Error::Io`] for `path`.
pub(crate) fn io_err(path: &Path, message: impl std::fmt::Display) -> Error {
    Error::Io {
        path: path.display().to_string(),
        message: message.to_string(),
    }
}

/// Flushes `file`'s data to the device (`fdatasync`).
pub(crate) fn sync_file(file: &Path) -> crate::Result<()> {
    std::fs::File::open(file)
        .and_then(|f| f.sync_data())
        .map_err(|e| io_err(file, format!("fsync failed: {e}")))
}

/// Flushes the directory `dir` (its entries: files created or renamed in
/// it) to the device.
pub(crate) fn sync_dir(dir: &Path) -> crate::Result<()> {
    std::fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| io_err(dir, format!("fsync of the directory failed: {e}")))
}

/// Writes `bytes` to `file` (created or truncated) and syncs it.
pub(crate) fn write_synced(file: &Path, bytes: &[u8]) -> crate::Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(file).map_err(|e| io_err(file, e))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(|e| io_err(file, e))
}
