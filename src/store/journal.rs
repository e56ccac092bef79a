//! On-disk journal format: record encoding, replay with torn-tail recovery,
//! and writing a compacted copy.
//!
//! Layout: an 8-byte header (`TGJ1` + u32 LE version), then records
//! `[len: u32 LE][crc32(payload): u32 LE][payload]`, where the payload is an
//! op byte, a u16 LE name length, the UTF-8 name and, for puts, salt + digest.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use dashmap::DashMap;

use super::StoreError;
use crate::auth::secret::SecretHash;

pub(crate) const JOURNAL_FILE: &str = "tokens.journal";
pub(crate) const TMP_FILE: &str = "tokens.journal.tmp";

const MAGIC: &[u8; 4] = b"TGJ1";
const VERSION: u32 = 1;
pub(crate) const HEADER_LEN: u64 = 8;
const RECORD_HEADER: usize = 8;
const MAX_RECORD: usize = 4096;
const OP_PUT: u8 = 1;
const OP_DELETE: u8 = 2;
const HASH_LEN: usize = 16 + 32;
/// Longest qualified name whose put record still fits in `MAX_RECORD`.
pub(crate) const MAX_NAME_LEN: usize = MAX_RECORD - 3 - HASH_LEN;
/// Typical put record size, used only to pre-size the map before replay.
const TYPICAL_RECORD: u64 = 96;

fn header() -> [u8; 8] {
    let mut h = [0u8; 8];
    h[..4].copy_from_slice(MAGIC);
    h[4..].copy_from_slice(&VERSION.to_le_bytes());
    h
}

/// On-disk size of a put record, used to estimate the live journal size.
pub(crate) fn put_record_len(name_len: usize) -> u64 {
    (RECORD_HEADER + 3 + name_len + HASH_LEN) as u64
}

pub(crate) fn encode_put(buf: &mut Vec<u8>, name: &str, hash: &SecretHash) {
    encode(buf, OP_PUT, name, Some(hash));
}

pub(crate) fn encode_delete(buf: &mut Vec<u8>, name: &str) {
    encode(buf, OP_DELETE, name, None);
}

fn encode(buf: &mut Vec<u8>, op: u8, name: &str, hash: Option<&SecretHash>) {
    // Callers reject longer names up front, so the casts cannot truncate.
    debug_assert!(name.len() <= MAX_NAME_LEN);
    let payload_len = 3 + name.len() + hash.map_or(0, |_| HASH_LEN);
    let start = buf.len();
    buf.extend_from_slice(&(payload_len as u32).to_le_bytes());
    buf.extend_from_slice(&[0u8; 4]);
    buf.push(op);
    buf.extend_from_slice(&(name.len() as u16).to_le_bytes());
    buf.extend_from_slice(name.as_bytes());
    if let Some(hash) = hash {
        buf.extend_from_slice(hash.salt());
        buf.extend_from_slice(hash.digest());
    }
    let crc = crc32fast::hash(&buf[start + RECORD_HEADER..]);
    buf[start + 4..start + RECORD_HEADER].copy_from_slice(&crc.to_le_bytes());
}

enum Record<'a> {
    Put(&'a str, SecretHash),
    Delete(&'a str),
}

fn decode(payload: &[u8]) -> Result<Record<'_>, String> {
    let (&op, rest) = payload.split_first().ok_or("empty payload")?;
    let (len_bytes, rest) = rest.split_at_checked(2).ok_or("payload too short")?;
    let name_len = usize::from(u16::from_le_bytes([len_bytes[0], len_bytes[1]]));
    let (name, rest) = rest
        .split_at_checked(name_len)
        .ok_or("name runs past payload")?;
    let name = std::str::from_utf8(name).map_err(|e| format!("name is not UTF-8: {e}"))?;
    match (op, rest.len()) {
        (OP_PUT, HASH_LEN) => {
            let mut salt = [0u8; 16];
            let mut digest = [0u8; 32];
            salt.copy_from_slice(&rest[..16]);
            digest.copy_from_slice(&rest[16..]);
            Ok(Record::Put(name, SecretHash::from_parts(salt, digest)))
        }
        (OP_DELETE, 0) => Ok(Record::Delete(name)),
        (OP_PUT | OP_DELETE, n) => Err(format!("op {op} has {n} trailing bytes")),
        _ => Err(format!("unknown op {op}")),
    }
}

/// The replayed state handed to the writer.
pub(crate) struct Replayed {
    pub map: DashMap<Box<str>, SecretHash>,
    /// Appending handle positioned at the end of the valid data.
    pub file: File,
    pub file_len: u64,
    pub live_bytes: u64,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Opens or creates the journal in `dir` and replays it into memory.
pub(crate) fn open(dir: &Path) -> Result<Replayed, StoreError> {
    let path = dir.join(JOURNAL_FILE);
    let tmp = dir.join(TMP_FILE);
    // A leftover tmp is an unfinished compaction; the journal is still complete.
    match fs::remove_file(&tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(io_err(&tmp)(e)),
        _ => {}
    }
    let data = match fs::read(&path) {
        Ok(data) => data,
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(io_err(&path)(e)),
    };
    let header = header();
    // A short file that is a prefix of the header (or zeros) is a crash during
    // creation: no record can exist yet, so start fresh.
    let fresh =
        (data.len() as u64) < HEADER_LEN && data.iter().zip(header).all(|(&b, h)| b == h || b == 0);
    if fresh {
        return create_fresh(dir, &path);
    }
    if data.len() < HEADER_LEN as usize || data[..4] != MAGIC[..] {
        return Err(corrupt(&path, 0, "bad magic".into()));
    }
    let version = u32::from_le_bytes([data[4], data[5], data[6], data[7]]);
    if version != VERSION {
        return Err(corrupt(&path, 4, format!("unsupported version {version}")));
    }
    let map = DashMap::with_capacity((data.len() as u64 / TYPICAL_RECORD) as usize);
    let scan = replay(&data, &map).map_err(|(offset, reason)| corrupt(&path, offset, reason))?;
    let file = OpenOptions::new()
        .append(true)
        .open(&path)
        .map_err(io_err(&path))?;
    if scan.end < data.len() {
        let dropped = data.len() - scan.end;
        tracing::warn!(
            file = %path.display(),
            offset = scan.end,
            bytes_dropped = dropped,
            "dropping torn tail of token journal left by an interrupted write"
        );
        file.set_len(scan.end as u64).map_err(io_err(&path))?;
        file.sync_all().map_err(io_err(&path))?;
    }
    Ok(Replayed {
        map,
        file,
        file_len: scan.end as u64,
        live_bytes: scan.live_bytes,
    })
}

fn corrupt(path: &Path, offset: u64, reason: String) -> StoreError {
    StoreError::Corrupt {
        path: path.to_path_buf(),
        offset,
        reason,
    }
}

fn create_fresh(dir: &Path, path: &Path) -> Result<Replayed, StoreError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(io_err(path))?;
    file.write_all(&header()).map_err(io_err(path))?;
    file.sync_all().map_err(io_err(path))?;
    sync_dir(dir).map_err(io_err(dir))?;
    let file = OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(io_err(path))?;
    Ok(Replayed {
        map: DashMap::new(),
        file,
        file_len: HEADER_LEN,
        live_bytes: 0,
    })
}

struct Scan {
    /// Offset just past the last complete record.
    end: usize,
    live_bytes: u64,
}

/// Applies every record to `map`. Returns where the valid data ends, or the
/// offset and reason of corruption that cannot be explained by a torn write.
fn replay(data: &[u8], map: &DashMap<Box<str>, SecretHash>) -> Result<Scan, (u64, String)> {
    let mut off = HEADER_LEN as usize;
    let mut live_bytes = 0u64;
    while off < data.len() {
        let rest = &data[off..];
        let torn = || {
            Ok(Scan {
                end: off,
                live_bytes,
            })
        };
        // Zero-filled space is what a filesystem leaves for a write that never
        // reached the disk; checked only on anomalies to keep replay linear.
        let all_zero = || rest.iter().all(|&b| b == 0);
        if rest.len() < RECORD_HEADER {
            return torn();
        }
        let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let crc = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
        if len == 0 || len > MAX_RECORD {
            if all_zero() {
                return torn();
            }
            return Err((off as u64, format!("invalid record length {len}")));
        }
        let Some(payload) = rest.get(RECORD_HEADER..RECORD_HEADER + len) else {
            return torn();
        };
        if crc32fast::hash(payload) != crc {
            let after = &rest[RECORD_HEADER + len..];
            if after.iter().all(|&b| b == 0) {
                return torn();
            }
            return Err((off as u64, "checksum mismatch".into()));
        }
        match decode(payload).map_err(|reason| (off as u64, reason))? {
            Record::Put(name, hash) => {
                if map.insert(Box::from(name), hash).is_none() {
                    live_bytes += put_record_len(name.len());
                }
            }
            Record::Delete(name) => {
                if map.remove(name).is_some() {
                    live_bytes = live_bytes.saturating_sub(put_record_len(name.len()));
                }
            }
        }
        off += RECORD_HEADER + len;
    }
    Ok(Scan {
        end: off,
        live_bytes,
    })
}

/// Writes every live entry to the tmp file and renames it over the journal.
/// Returns the new appending handle and its length. On error the old journal
/// is untouched unless the rename already happened, in which case the new
/// file is complete and still the right one to use.
pub(crate) fn compact(
    dir: &Path,
    map: &DashMap<Box<str>, SecretHash>,
) -> Result<(File, u64), (PathBuf, io::Error)> {
    let tmp = dir.join(TMP_FILE);
    let path = dir.join(JOURNAL_FILE);
    let file = write_snapshot(&tmp, map).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        (tmp.clone(), e)
    })?;
    let len = file.metadata().map_err(|e| (tmp.clone(), e))?.len();
    fs::rename(&tmp, &path).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        (path.clone(), e)
    })?;
    // Without this the rename may be lost on power failure, which is harmless
    // (the old journal is complete), so failure here is only reported.
    if let Err(e) = sync_dir(dir) {
        tracing::error!(dir = %dir.display(), error = %e, "fsync of directory after compaction failed");
    }
    Ok((file, len))
}

fn write_snapshot(tmp: &Path, map: &DashMap<Box<str>, SecretHash>) -> io::Result<File> {
    // Append mode so that later batches go to the end without explicit seeks.
    let file = OpenOptions::new().append(true).create_new(true).open(tmp)?;
    let mut out = BufWriter::with_capacity(1 << 20, &file);
    out.write_all(&header())?;
    let mut buf = Vec::with_capacity(MAX_RECORD);
    for entry in map.iter() {
        buf.clear();
        encode_put(&mut buf, entry.key(), entry.value());
        out.write_all(&buf)?;
    }
    out.flush()?;
    drop(out);
    file.sync_all()?;
    Ok(file)
}

pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}
