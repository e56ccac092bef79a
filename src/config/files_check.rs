//! What `check-config` looks at besides the text: the files the configuration names and the
//! data directory, each problem naming its key. Nothing is created or changed.

use std::fs;
use std::path::Path;

use super::Config;

impl Config {
    /// Every file key whose file cannot be read, and a data directory that is neither writable
    /// nor creatable, one message each.
    pub fn check_files(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let mut file = |section: &str, key: &str, path: Option<&Path>| {
            let Some(path) = path else { return };
            if let Err(e) = fs::File::open(path) {
                problems.push(format!(
                    "{}: [{section}] {key}: cannot read {}: {e}",
                    self.source,
                    path.display()
                ));
            }
        };
        if let Some(tls) = &self.tls {
            file("tls", "cert", Some(&tls.cert));
            file("tls", "key", Some(&tls.key));
            file("tls", "client_ca", tls.client_ca.as_deref());
        }
        file("admin", "client_ca", self.admin.client_ca.as_deref());
        let upstream = &self.upstream.tls;
        file("upstream", "ca", upstream.ca.as_deref());
        file("upstream", "client_cert", upstream.client_cert.as_deref());
        file("upstream", "client_key", upstream.client_key.as_deref());
        if let Err(why) = usable_dir(&self.server.data_dir) {
            problems.push(format!(
                "{}: [server] data_dir: {}: {why}",
                self.source,
                self.server.data_dir.display()
            ));
        }
        problems
    }
}

/// Whether the gateway could write in `dir`, or create it: the nearest existing ancestor must
/// be a directory it may write in.
fn usable_dir(dir: &Path) -> Result<(), String> {
    let mut at = dir;
    loop {
        match fs::metadata(at) {
            Ok(meta) if !meta.is_dir() => {
                return Err(if at == dir {
                    "is not a directory".to_owned()
                } else {
                    format!("cannot be created: {} is not a directory", at.display())
                });
            }
            Ok(meta) if !may_write(&meta) => {
                return Err(if at == dir {
                    "is not writable".to_owned()
                } else {
                    format!("cannot be created: {} is not writable", at.display())
                });
            }
            Ok(_) => return Ok(()),
            // Below a file the lookup fails with "not a directory": the file is reported.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                ) =>
            {
                at = match at.parent() {
                    Some(parent) if !parent.as_os_str().is_empty() => parent,
                    // A relative path's last ancestor is the working directory.
                    _ => Path::new("."),
                };
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// Judged from the mode bits, for the process's user (the owner of `/proc/self`). Supplementary
/// groups are not known here, so group and other bits are given the benefit of the doubt: only a
/// directory that certainly refuses the writes is reported.
#[cfg(unix)]
fn may_write(meta: &fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    const WRITE_SEARCH: u32 = 0o3;
    let mode = meta.mode();
    match fs::metadata("/proc/self").map(|me| me.uid()) {
        // Root writes anywhere, short of a read-only mount.
        Ok(0) => true,
        Ok(uid) if uid == meta.uid() => (mode >> 6) & WRITE_SEARCH == WRITE_SEARCH,
        Ok(_) => (mode >> 3) & WRITE_SEARCH == WRITE_SEARCH || mode & WRITE_SEARCH == WRITE_SEARCH,
        Err(_) => !meta.permissions().readonly(),
    }
}

#[cfg(not(unix))]
fn may_write(meta: &fs::Metadata) -> bool {
    !meta.permissions().readonly()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_data_dir_under_a_file_cannot_be_created() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plain");
        fs::write(&file, "").unwrap();
        let why = usable_dir(&file.join("data")).unwrap_err();
        assert!(why.contains("is not a directory"), "{why}");
        assert_eq!(usable_dir(&file).unwrap_err(), "is not a directory");
        assert!(usable_dir(&dir.path().join("new/deeper")).is_ok());
        assert!(!dir.path().join("new").exists());
    }
}
