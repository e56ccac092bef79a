//! File service tokens: Elasticsearch's `service_tokens` file in the data directory, read and
//! reloaded as its `FileServiceAccountTokenStore` does, and checked without a KDF per request.
//!
//! The file holds slow hashes (PBKDF2 with 10 000 iterations by default). A bearer value reaches
//! this store only after the token journal did not know it, and costs nothing more unless its
//! decoded `namespace/service/name` is a file token. Such a value is verified once, on the
//! users realm's bounded password pool (a full pool is the caller's 429), and the outcome is
//! remembered by the value's salted fingerprint: successes until the file changes, failures
//! briefly and boundedly, so guessing one token's secret never costs a KDF per attempt.
//!
//! The file is re-read when its modification time (or size, or inode) changes, on the users
//! files' cadence, and at once on SIGHUP. A bad line is reported with its number and costs only
//! itself; a file that cannot be read leaves the previous tokens in force.

pub mod edit;
pub mod hash;
mod parse;
mod verdicts;

use std::collections::BTreeMap;
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use crate::accounts::Accounts;
use crate::atomic_file;
use crate::config::AuthThrottle;
use crate::identity::token;
use crate::identity::{AccountId, TokenIdentity, TokenSource};
use crate::users::{Busy, Flights, PasswordPool};
use hash::StoredHash;
pub use parse::{entries, Problem};
#[doc(hidden)]
pub use parse::{parse, FileToken, Parsed};
use verdicts::{Key, Verdicts};

/// The file's name, in the data directory (Elasticsearch's config directory).
pub const FILE_NAME: &str = "service_tokens";

/// The file of `data_dir`.
pub fn path_in(data_dir: &Path) -> PathBuf {
    data_dir.join(FILE_NAME)
}

/// A cheap-clone handle on the file's tokens.
#[derive(Clone)]
pub struct FileTokens {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    /// The accounts a line may name; others are ignored with a warning.
    accounts: Accounts,
    /// The tokens of the last good reading, by qualified name.
    tokens: RwLock<Arc<BTreeMap<String, FileToken>>>,
    /// What the file looked like when last read; a change means read it again.
    stamp: Mutex<Option<Stamp>>,
    verdicts: Verdicts,
    /// Checks in progress, so a value arriving on many connections at once costs one.
    flights: Flights,
    /// Shared with the users realm: one bound on slow credential checks.
    pool: PasswordPool,
}

/// Modification time, size and (on Unix) inode: a whole-file replacement within the clock's
/// resolution still changes one of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    let meta = fs::metadata(path).ok()?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&meta);
    #[cfg(not(unix))]
    let inode = 0;
    Some(Stamp {
        modified: meta.modified().ok(),
        len: meta.len(),
        inode,
    })
}

impl FileTokens {
    /// Reads `service_tokens` under `data_dir` (none is no tokens). Checks run on `pool`;
    /// `limits` bound the failure cache as they bound the users realm's.
    pub fn open(
        data_dir: &Path,
        accounts: &Accounts,
        pool: PasswordPool,
        limits: &AuthThrottle,
    ) -> FileTokens {
        let tokens = FileTokens {
            inner: Arc::new(Inner {
                path: path_in(data_dir),
                accounts: accounts.clone(),
                tokens: RwLock::new(Arc::new(BTreeMap::new())),
                stamp: Mutex::new(None),
                verdicts: Verdicts::new(limits),
                flights: Flights::default(),
                pool,
            }),
        };
        if let Ok(meta) = fs::metadata(&tokens.inner.path) {
            atomic_file::warn_if_shared(&tokens.inner.path, &meta);
        }
        tokens.refresh(true);
        tokens
    }

    /// One step of the file watcher: re-reads the file when it changed, or in any case when
    /// `forced` (SIGHUP).
    pub fn refresh(&self, forced: bool) {
        let path = &self.inner.path;
        let current = stamp(path);
        {
            let known = self.inner.stamp.lock().unwrap_or_else(|e| e.into_inner());
            if !forced && *known == current {
                return;
            }
        }
        let text = match fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == ErrorKind::NotFound => String::new(),
            Err(error) => {
                tracing::error!(file = %path.display(), %error, "service tokens file not read; previous tokens stay in force");
                return;
            }
        };
        let parsed = parse(&text, &self.inner.accounts);
        for problem in &parsed.problems {
            tracing::warn!(file = %path.display(), line = problem.line, reason = %problem.reason, "service tokens line skipped");
        }
        let count = parsed.tokens.len();
        *self.inner.tokens.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(parsed.tokens);
        *self.inner.stamp.lock().unwrap_or_else(|e| e.into_inner()) = current;
        self.inner.verdicts.clear();
        crate::store::version::changed();
        if current.is_some() {
            tracing::info!(file = %path.display(), tokens = count, "service tokens loaded");
        }
    }

    fn current(&self) -> Arc<BTreeMap<String, FileToken>> {
        Arc::clone(&self.inner.tokens.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Names of `account`'s file tokens, sorted.
    pub fn names_of(&self, account: &AccountId) -> Vec<String> {
        let tokens = self.current();
        let prefix = format!("{}/", account.as_str());
        tokens
            .range(prefix.clone()..)
            .take_while(|(key, _)| key.starts_with(&prefix))
            .map(|(_, token)| token.name.as_str().to_owned())
            .collect()
    }

    /// Forgets every remembered outcome (Elasticsearch's `_clear_cache` for service tokens).
    pub fn clear_cache(&self) {
        self.inner.verdicts.clear();
    }

    /// How many tokens the file defines.
    pub fn len(&self) -> usize {
        self.current().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The token `value` authenticates as, if it is a file token's and its secret matches.
    /// `Ok(None)` for anything else, without touching the pool unless the value names a file
    /// token whose outcome is not remembered yet; `Err(Busy)` when that check found the pool full.
    ///
    /// The slow check's future (the password pool's, kilobytes) is boxed, and built only when a
    /// check runs: every wrong bearer value comes this way, and this future stays a few words.
    pub async fn verify(&self, value: &[u8]) -> Result<Option<TokenIdentity>, Busy> {
        match self.verify_known(value) {
            Ok(known) => Ok(known),
            Err(unchecked) => Box::pin(self.check_slowly(unchecked)).await,
        }
    }

    /// [`verify`](Self::verify)'s answer where it needs no slow check: a value that names no file
    /// token (always so without a file), or one whose outcome is remembered. `Err` carries the
    /// check to run.
    fn verify_known(&self, value: &[u8]) -> Result<Option<TokenIdentity>, Unchecked> {
        let tokens = self.current();
        let mut buf = [0u8; token::MAX_DECODED_LEN];
        let Some((file_token, secret)) = lookup(&tokens, value, &mut buf) else {
            return Ok(None);
        };
        let key = self.inner.verdicts.key(value);
        match self.inner.verdicts.get(&key) {
            Some(ok) => Ok(ok.then(|| file_token.identity())),
            None => Err(Unchecked {
                key,
                token: file_token.clone(),
                secret: secret.to_vec(),
            }),
        }
    }

    /// Runs the slow check [`verify_known`](Self::verify_known) left to do.
    async fn check_slowly(&self, unchecked: Unchecked) -> Result<Option<TokenIdentity>, Busy> {
        let Unchecked { key, token, secret } = unchecked;
        let ok = self.check(key, &token.hash, secret).await?;
        Ok(ok.then(|| token.identity()))
    }

    /// The token `value` authenticates as when its check already passed since the file was
    /// last read, without the pool: what an address over its failure limit may still use.
    pub fn verify_remembered(&self, value: &[u8]) -> Option<TokenIdentity> {
        let tokens = self.current();
        let mut buf = [0u8; token::MAX_DECODED_LEN];
        let (file_token, _) = lookup(&tokens, value, &mut buf)?;
        let key = self.inner.verdicts.key(value);
        (self.inner.verdicts.get(&key) == Some(true)).then(|| file_token.identity())
    }

    /// Slow checks under way or waited for now, by value.
    pub fn checks_in_flight(&self) -> usize {
        self.inner.flights.len()
    }

    /// The slow check on the pool, shared with every request for the same value meanwhile.
    async fn check(&self, key: Key, hash: &Arc<StoredHash>, secret: Vec<u8>) -> Result<bool, Busy> {
        let verdicts = &self.inner.verdicts;
        let generation = verdicts.generation();
        let hash = Arc::clone(hash);
        let check = async move {
            let ok = self.inner.pool.check(move || hash.verify(&secret)).await?;
            verdicts.record(key, generation, ok);
            Ok(ok)
        };
        self.inner.flights.share(key, check).await
    }

    /// Real checks the pool ran so far (for tests that count KDFs).
    #[cfg(test)]
    fn checks(&self) -> usize {
        self.inner.pool.counts().0
    }
}

/// The file token `value` names, and the secret it presents; `None` when it names none.
fn lookup<'t, 'b>(
    tokens: &'t BTreeMap<String, FileToken>,
    value: &[u8],
    buf: &'b mut [u8; token::MAX_DECODED_LEN],
) -> Option<(&'t FileToken, &'b [u8])> {
    // No file (the usual case): nothing to decode for. An address over its failure limit is
    // checked here on every request, and decoding was most of a 429's own work.
    if tokens.is_empty() {
        return None;
    }
    let decoded = token::decode(value, buf)?;
    Some((tokens.get(decoded.qualified)?, decoded.secret))
}

/// A file token whose outcome for a presented secret is not known yet: the slow check to run.
struct Unchecked {
    key: Key,
    token: FileToken,
    secret: Vec<u8>,
}

impl FileToken {
    fn identity(&self) -> TokenIdentity {
        TokenIdentity {
            account: self.account.clone(),
            name: self.name.clone(),
            source: TokenSource::File,
        }
    }
}

#[cfg(test)]
mod tests;
