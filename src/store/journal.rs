//! On-disk journal format: record encoding, replay with torn-tail recovery,
//! and writing a compacted copy.
//!
//! Layout: a 24-byte header (`TGJ1`, u32 LE version, the store's 16-byte
//! pepper), then records `[len: u32 LE][crc32(payload): u32 LE][payload]`,
//! where the payload is an op byte, a u16 LE name length, the UTF-8 name and,
//! for puts, the token's 32-byte fingerprint.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use super::fingerprint::{self, Fingerprint, Pepper, FINGERPRINT_LEN, PEPPER_LEN};
use super::loading::{LoadObserver, Loading, Source};
use super::maps::Maps;
use super::StoreError;
use crate::atomic_file;

pub(crate) const JOURNAL_FILE: &str = "tokens.journal";
pub(crate) const TMP_FILE: &str = "tokens.journal.tmp";

const MAGIC: &[u8; 4] = b"TGJ1";
/// Version 1 stored a salted hash of each token's secret; version 2 stores a
/// fingerprint of the whole value under a per-store pepper.
const VERSION: u32 = 2;
/// Magic and version: the part of the header that is the same in every journal.
const FIXED_LEN: usize = 8;
pub(crate) const HEADER_LEN: u64 = (FIXED_LEN + PEPPER_LEN) as u64;
const RECORD_HEADER: usize = 8;
const MAX_RECORD: usize = 4096;
/// Records replayed between two words to the load's observer (which may then read the clock).
const REPORT_EVERY: usize = 4096;
const OP_PUT: u8 = 1;
const OP_DELETE: u8 = 2;
/// Longest qualified name whose put record still fits in `MAX_RECORD`.
pub(crate) const MAX_NAME_LEN: usize = MAX_RECORD - 3 - FINGERPRINT_LEN;

fn fixed_header() -> [u8; FIXED_LEN] {
    let mut h = [0u8; FIXED_LEN];
    h[..4].copy_from_slice(MAGIC);
    h[4..].copy_from_slice(&VERSION.to_le_bytes());
    h
}

fn header(pepper: &Pepper) -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[..FIXED_LEN].copy_from_slice(&fixed_header());
    h[FIXED_LEN..].copy_from_slice(pepper);
    h
}

/// On-disk size of a put record, used to estimate the live journal size.
pub(crate) fn put_record_len(name_len: usize) -> u64 {
    (RECORD_HEADER + 3 + name_len + FINGERPRINT_LEN) as u64
}

pub(crate) fn encode_put(buf: &mut Vec<u8>, name: &str, fp: &Fingerprint) {
    encode(buf, OP_PUT, name, Some(fp));
}

pub(crate) fn encode_delete(buf: &mut Vec<u8>, name: &str) {
    encode(buf, OP_DELETE, name, None);
}

fn encode(buf: &mut Vec<u8>, op: u8, name: &str, fp: Option<&Fingerprint>) {
    // Callers reject longer names up front, so the casts cannot truncate.
    debug_assert!(name.len() <= MAX_NAME_LEN);
    let payload_len = 3 + name.len() + fp.map_or(0, |_| FINGERPRINT_LEN);
    let start = buf.len();
    buf.extend_from_slice(&(payload_len as u32).to_le_bytes());
    buf.extend_from_slice(&[0u8; 4]);
    buf.push(op);
    buf.extend_from_slice(&(name.len() as u16).to_le_bytes());
    buf.extend_from_slice(name.as_bytes());
    if let Some(fp) = fp {
        buf.extend_from_slice(fp);
    }
    let crc = crc32fast::hash(&buf[start + RECORD_HEADER..]);
    buf[start + 4..start + RECORD_HEADER].copy_from_slice(&crc.to_le_bytes());
}

enum Record<'a> {
    Put(&'a str, Fingerprint),
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
        (OP_PUT, FINGERPRINT_LEN) => {
            let mut fp = [0u8; FINGERPRINT_LEN];
            fp.copy_from_slice(rest);
            Ok(Record::Put(name, fp))
        }
        (OP_DELETE, 0) => Ok(Record::Delete(name)),
        (OP_PUT | OP_DELETE, n) => Err(format!("op {op} has {n} trailing bytes")),
        _ => Err(format!("unknown op {op}")),
    }
}

/// Which file a handle or a path refers to. Device and inode number suffice: the kernel does not
/// reuse an inode while a handle keeps it open, so an open file that still matches the path is the
/// one the path names, and an unlinked one can never match.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FileId(u64, u64);

impl FileId {
    pub fn of(meta: &fs::Metadata) -> FileId {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            FileId(meta.dev(), meta.ino())
        }
        // Without inode numbers only a removed journal is noticed, not a replaced one.
        #[cfg(not(unix))]
        {
            let _ = meta;
            FileId(0, 0)
        }
    }
}

/// The replayed state handed to the writer.
pub(crate) struct Replayed {
    pub maps: Maps,
    pub pepper: Pepper,
    /// Appending handle positioned at the end of the valid data.
    pub file: File,
    pub file_id: FileId,
    pub file_len: u64,
    pub live_bytes: u64,
}

/// A journal written from the maps and renamed into place.
pub(crate) struct Rewritten {
    /// Appending handle at its end.
    pub file: File,
    pub file_id: FileId,
    pub len: u64,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Opens or creates the journal in `dir` and replays it into memory, telling `progress` how far
/// the replay got every few thousand records.
pub(crate) fn open(dir: &Path, progress: &LoadObserver) -> Result<Replayed, StoreError> {
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
    if is_unfinished_creation(&data) {
        return create_fresh(dir, &path);
    }
    let pepper = read_header(&data).map_err(|(offset, reason)| corrupt(&path, offset, reason))?;
    let maps = Maps::with_capacity(count_live(&data));
    let scan = replay(&data, &maps, progress)
        .map_err(|(offset, reason)| corrupt(&path, offset, reason))?;
    let file = OpenOptions::new()
        .append(true)
        .open(&path)
        .map_err(io_err(&path))?;
    let meta = file.metadata().map_err(io_err(&path))?;
    atomic_file::warn_if_shared(&path, &meta);
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
        maps,
        pepper,
        file,
        file_id: FileId::of(&meta),
        file_len: scan.end as u64,
        live_bytes: scan.live_bytes,
    })
}

/// A file no longer than the header, whose fixed part is a prefix of ours or zeros, is a crash
/// during creation: no record can exist yet, so starting afresh (with a new pepper) loses
/// nothing. A complete header with a non-zero pepper is an empty journal and is kept.
fn is_unfinished_creation(data: &[u8]) -> bool {
    if data.len() as u64 > HEADER_LEN {
        return false;
    }
    let fixed = fixed_header();
    if !data.iter().zip(fixed).all(|(&b, h)| b == h || b == 0) {
        return false;
    }
    let complete = data.len() as u64 == HEADER_LEN
        && data[..FIXED_LEN] == fixed
        && data[FIXED_LEN..].iter().any(|&b| b != 0);
    !complete
}

/// Checks magic and version; returns the pepper or the offset and reason of the problem.
fn read_header(data: &[u8]) -> Result<Pepper, (u64, String)> {
    if data.get(..4) != Some(&MAGIC[..]) {
        return Err((0, "bad magic".into()));
    }
    let version = data
        .get(4..FIXED_LEN)
        .map(|v| u32::from_le_bytes([v[0], v[1], v[2], v[3]]));
    match version {
        Some(VERSION) => {}
        Some(1) => {
            return Err((
                4,
                "journal version 1 holds hashes of token secrets, which this version cannot \
                 check; move the file aside and re-import the token values with \
                 `tokengate tokens import`, or issue new tokens"
                    .into(),
            ))
        }
        Some(version) => return Err((4, format!("unsupported version {version}"))),
        None => return Err((4, "header cut short".into())),
    }
    let pepper = data
        .get(FIXED_LEN..HEADER_LEN as usize)
        .ok_or((FIXED_LEN as u64, "header cut short".to_owned()))?;
    let mut out = [0u8; PEPPER_LEN];
    out.copy_from_slice(pepper);
    Ok(out)
}

fn corrupt(path: &Path, offset: u64, reason: String) -> StoreError {
    StoreError::Corrupt {
        path: path.to_path_buf(),
        offset,
        reason,
    }
}

fn create_fresh(dir: &Path, path: &Path) -> Result<Replayed, StoreError> {
    let pepper = fingerprint::new_pepper().map_err(io_err(path))?;
    let mut file = atomic_file::private_file(OpenOptions::new().write(true).create(true))
        .truncate(true)
        .open(path)
        .map_err(io_err(path))?;
    // A half-created journal is reused, and keeps the mode it was created with.
    let meta = file.metadata().map_err(io_err(path))?;
    atomic_file::warn_if_shared(path, &meta);
    file.write_all(&header(&pepper)).map_err(io_err(path))?;
    file.sync_all().map_err(io_err(path))?;
    atomic_file::sync_dir(dir).map_err(io_err(dir))?;
    let file = OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(io_err(path))?;
    Ok(Replayed {
        maps: Maps::with_capacity(0),
        pepper,
        file,
        file_id: FileId::of(&meta),
        file_len: HEADER_LEN,
        live_bytes: 0,
    })
}

/// Live tokens in a journal (puts minus deletes, as the writer never writes a put of a present
/// name nor a delete of an absent one), from the record headers and op bytes alone. Used to size
/// the maps; stops quietly at anything odd, which `replay` then judges.
fn count_live(data: &[u8]) -> usize {
    let (mut puts, mut deletes) = (0usize, 0usize);
    let mut off = HEADER_LEN as usize;
    while let Some(head) = data.get(off..off + RECORD_HEADER + 1) {
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        if len == 0 || len > MAX_RECORD {
            break;
        }
        match head[RECORD_HEADER] {
            OP_PUT => puts += 1,
            OP_DELETE => deletes += 1,
            _ => break,
        }
        off += RECORD_HEADER + len;
    }
    puts.saturating_sub(deletes)
}

struct Scan {
    /// Offset just past the last complete record.
    end: usize,
    live_bytes: u64,
}

/// Applies every record to `maps`. Returns where the valid data ends, or the
/// offset and reason of corruption that cannot be explained by a torn write.
fn replay(data: &[u8], maps: &Maps, progress: &LoadObserver) -> Result<Scan, (u64, String)> {
    let mut off = HEADER_LEN as usize;
    let mut live_bytes = 0u64;
    let mut records = 0usize;
    while off < data.len() {
        records += 1;
        if records.is_multiple_of(REPORT_EVERY) {
            progress.tell(&Loading {
                source: Source::Journal,
                tokens: maps.len() as u64,
                done: off as u64,
                total: data.len() as u64,
            });
        }
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
            Record::Put(name, fp) => {
                let added = maps.insert(Box::from(name), &fp).map_err(|_| {
                    let reason = format!("token [{name}] has the fingerprint of another token");
                    (off as u64, reason)
                })?;
                if added {
                    live_bytes += put_record_len(name.len());
                }
            }
            Record::Delete(name) => {
                if maps.remove(name) {
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

/// The live token names, sorted, and the offset where a journal's valid records end.
type Kept = (Vec<String>, usize);

/// What [`open`] makes of a journal's bytes, without a file: `Ok(None)` for an unfinished
/// creation (which a fresh journal replaces), else the live token names, sorted, and where the
/// valid records end (the rest is a torn tail, cut off); `Err` is the offset and reason of
/// corruption. For the fuzz targets and their corpus replay, which feed it any bytes.
#[doc(hidden)]
pub fn replay_bytes(data: &[u8]) -> Result<Option<Kept>, (u64, String)> {
    if is_unfinished_creation(data) {
        return Ok(None);
    }
    read_header(data)?;
    let maps = Maps::with_capacity(count_live(data));
    let scan = replay(data, &maps, &LoadObserver::silent())?;
    Ok(Some((maps.names(), scan.end)))
}

/// A journal as the writer lays it out: the header with `pepper`, then a put for each op with a
/// fingerprint and a delete for each without. Names must fit [`MAX_NAME_LEN`]. For the fuzz
/// targets and their corpus replay, which cut and corrupt it.
#[doc(hidden)]
pub fn write_bytes(
    pepper: &[u8; PEPPER_LEN],
    ops: &[(&str, Option<[u8; FINGERPRINT_LEN]>)],
) -> Vec<u8> {
    let mut out = header(pepper).to_vec();
    for (name, fp) in ops {
        match fp {
            Some(fp) => encode_put(&mut out, name, fp),
            None => encode_delete(&mut out, name),
        }
    }
    out
}

/// Writes every live entry to the tmp file and renames it over the journal, whatever is at that
/// path now: compaction replaces the journal this way, and so does the writer when the journal it
/// holds open was removed or replaced. On error the old journal is untouched unless the rename
/// already happened, in which case the new file is complete and still the right one to use.
///
/// The rename is durable only once the directory is synced, which is left to the caller: a
/// compaction can afford to lose it (the old journal is complete), a rewrite of a removed journal
/// cannot.
pub(crate) fn compact(
    dir: &Path,
    pepper: &Pepper,
    maps: &Maps,
) -> Result<Rewritten, (PathBuf, io::Error)> {
    let tmp = dir.join(TMP_FILE);
    let path = dir.join(JOURNAL_FILE);
    let file = write_snapshot(&tmp, pepper, maps).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        (tmp.clone(), e)
    })?;
    let meta = file.metadata().map_err(|e| (tmp.clone(), e))?;
    fs::rename(&tmp, &path).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        (path.clone(), e)
    })?;
    Ok(Rewritten {
        file,
        file_id: FileId::of(&meta),
        len: meta.len(),
    })
}

/// The pepper is copied: every stored fingerprint was made with it.
fn write_snapshot(tmp: &Path, pepper: &Pepper, maps: &Maps) -> io::Result<File> {
    // Append mode so that later batches go to the end without explicit seeks.
    let file =
        atomic_file::private_file(OpenOptions::new().append(true).create_new(true)).open(tmp)?;
    let mut out = BufWriter::with_capacity(1 << 20, &file);
    out.write_all(&header(pepper))?;
    let mut buf = Vec::with_capacity(MAX_RECORD);
    maps.try_for_each(|name, fp| {
        buf.clear();
        encode_put(&mut buf, name, fp);
        out.write_all(&buf)
    })?;
    out.flush()?;
    drop(out);
    file.sync_all()?;
    Ok(file)
}
