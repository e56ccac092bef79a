//! `<data_dir>/tokengate.pid`: how `tokengate reload` finds the gateway to signal. A stale file
//! (a gateway that was killed) misleads no one: the data directory's lock tells whether a
//! gateway runs, and only then is the file believed.

use std::path::{Path, PathBuf};

/// The file's name in the data directory.
pub const FILE_NAME: &str = "tokengate.pid";

pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(FILE_NAME)
}

/// Records this process as the data directory's gateway. A failure costs only `reload`, so it
/// is logged, not fatal.
pub fn write(data_dir: &Path) {
    let line = format!("{}\n", std::process::id());
    if let Err(error) = crate::atomic_file::replace(&path(data_dir), line.as_bytes()) {
        tracing::warn!(%error, path = %path(data_dir).display(), "cannot write the pid file; `tokengate reload` will not find this gateway");
    }
}

/// Removes the file at a clean stop, if it is still this process's.
pub fn remove(data_dir: &Path) {
    if read(data_dir).ok() == Some(std::process::id()) {
        let _ = std::fs::remove_file(path(data_dir));
    }
}

/// The process id the file names.
pub fn read(data_dir: &Path) -> std::io::Result<u32> {
    let text = std::fs::read_to_string(path(data_dir))?;
    text.trim()
        .parse()
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "not a process id"))
}
