//! Elasticsearch's file realm: `users` (`name:bcrypt-hash`) and `users_roles` (`role:u1,u2`).
//!
//! These users manage tokens (Basic credentials) and, when allowed, are forwarded too. bcrypt is
//! deliberately slow, so a verified password is remembered as a salted SHA-256 (as Elasticsearch's
//! realm cache does), and so, briefly, is a failed user+password pair; both caches are dropped
//! whenever the files change. Every bcrypt runs in a bounded [`pool`], and the answers that need
//! none (unknown user, repeated failure) take a pool slot for as long as one, so time does not
//! tell which users exist.

use std::collections::HashMap;
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use dashmap::DashMap;
use rand::rngs::OsRng;
use rand::RngCore;

mod failures;
mod files;
mod flights;
mod pool;
mod rules;
mod secret;

use crate::atomic_file;
use crate::config::AuthThrottle;
pub(crate) use failures::FailureCache;
use files::hash_password;
#[doc(hidden)]
pub use files::list_texts;
pub use files::{add, change_roles, delete, list, ownership_warning, passwd, set_password};
pub(crate) use flights::Flights;
pub use pool::{Busy, PasswordPool};
pub use rules::{parse_roles, validate_password, validate_username, EditError, MIN_PASSWORD_LEN};
use secret::SecretHash;

/// bcrypt cost Elasticsearch uses for the file realm.
const BCRYPT_COST: u32 = 10;
/// Longest Basic credential considered, encoded.
const MAX_BASIC_LEN: usize = 1024;
/// The user created on first start.
pub const BOOTSTRAP_USER: &str = "elastic";

/// A user authenticated by the file realm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub roles: Vec<String>,
}

/// Why Basic credentials did not authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// Malformed, unknown user or wrong password; which one is never told.
    BadCredentials,
    /// The password pool is full; nothing was checked.
    Busy,
}

impl From<Busy> for Denied {
    fn from(_: Busy) -> Self {
        Denied::Busy
    }
}

/// Why the realm's files could not be used.
#[derive(Debug, thiserror::Error)]
pub enum RealmError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {reason}")]
    Format {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("user [{0}] does not exist in the users file")]
    UnknownUser(String),
    #[error("password hashing failed: {0}")]
    Hash(#[from] bcrypt::BcryptError),
    #[error("passwords must be at least [{MIN_PASSWORD_LEN}] characters long")]
    ShortPassword,
    #[error("cannot start the password threads: {0}")]
    Threads(std::io::Error),
}

/// The parsed files.
#[derive(Debug, Default)]
struct Users {
    hashes: HashMap<String, String>,
    roles: HashMap<String, Vec<String>>,
    /// The bcrypt cost most users' hashes have: what a check is imitated at before any real
    /// one was timed.
    cost: u32,
}

impl Users {
    /// `name` as an authenticated user, with its roles.
    fn user(&self, name: &str) -> User {
        User {
            name: name.to_owned(),
            roles: self.roles.get(name).cloned().unwrap_or_default(),
        }
    }
}

/// A cheap-clone handle on the realm.
#[derive(Clone)]
pub struct UserRealm {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    users: RwLock<Arc<Users>>,
    /// Passwords already verified with bcrypt, by user; valid for `generation` only.
    cache: DashMap<String, SecretHash>,
    /// User+password pairs bcrypt refused recently; valid for `generation` only.
    failures: FailureCache,
    /// Where every password check, real or imitated, takes its turn.
    pool: PasswordPool,
    /// Checks in progress, so the same pair arriving again joins instead of queueing.
    flights: Flights,
    /// Bumped on every reload so an in-flight verification cannot cache a stale password.
    generation: AtomicU64,
    /// Modification times the loaded files had.
    stamp: RwLock<(Option<SystemTime>, Option<SystemTime>)>,
}

fn users_path(dir: &Path) -> PathBuf {
    dir.join("users")
}

fn roles_path(dir: &Path) -> PathBuf {
    dir.join("users_roles")
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> RealmError + '_ {
    move |source| RealmError::Io {
        path: path.to_owned(),
        source,
    }
}

impl UserRealm {
    /// Whether `other` is this very instance (a reload shares it, never reopens it).
    pub fn same_as(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// Loads the realm from `dir`, creating `elastic` (superuser) first when there is no users
    /// file. Returns the generated password when one had to be made up (`password` was `None`),
    /// for the caller to show once. `limits` sizes the password pool and the failure cache.
    pub fn open(
        dir: &Path,
        password: Option<&str>,
        limits: &AuthThrottle,
    ) -> Result<(UserRealm, Option<String>), RealmError> {
        atomic_file::create_private_dir(dir).map_err(io_error(dir))?;
        let mut generated = None;
        if !users_path(dir).exists() {
            let password = match password {
                Some(p) => p.to_owned(),
                None => generated.insert(generate_password()).clone(),
            };
            bootstrap(dir, &password)?;
        } else if password.is_some() {
            // Only the first start sets it; saying so spares an operator a login that fails.
            tracing::warn!(
                users = %users_path(dir).display(),
                "ELASTIC_PASSWORD ignored: the users file already exists \
                 (set elastic's password with `tokengate reset-password -u elastic -i`)"
            );
        }
        for path in [users_path(dir), roles_path(dir)] {
            if let Ok(meta) = fs::metadata(&path) {
                atomic_file::warn_if_shared(&path, &meta);
            }
        }
        let realm = UserRealm {
            inner: Arc::new(Inner {
                dir: dir.to_owned(),
                users: RwLock::new(Arc::new(Users::default())),
                cache: DashMap::new(),
                failures: FailureCache::new(
                    limits.failed_password_cache,
                    limits.failed_password_ttl,
                ),
                pool: PasswordPool::new(limits.workers(), limits.queue())
                    .map_err(RealmError::Threads)?,
                flights: Flights::default(),
                generation: AtomicU64::new(0),
                stamp: RwLock::new((None, None)),
            }),
        };
        realm.reload()?;
        Ok((realm, generated))
    }

    /// The pool this realm's checks run in, for the other slow checks of credentials (file
    /// service tokens): one bound on such work for the whole gateway.
    pub fn password_pool(&self) -> PasswordPool {
        self.inner.pool.clone()
    }

    /// Re-reads the files when their modification times changed. Bad files are reported and the
    /// previous users stay in force.
    pub fn reload_if_changed(&self) -> Result<bool, RealmError> {
        let current = stamps(&self.inner.dir);
        let known = *self.inner.stamp.read().unwrap_or_else(|e| e.into_inner());
        if current == known {
            return Ok(false);
        }
        self.reload()?;
        Ok(true)
    }

    /// Re-reads both files unconditionally.
    pub fn reload(&self) -> Result<(), RealmError> {
        let stamp = stamps(&self.inner.dir);
        let users = load(&self.inner.dir)?;
        *self.inner.users.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(users);
        *self.inner.stamp.write().unwrap_or_else(|e| e.into_inner()) = stamp;
        self.inner.generation.fetch_add(1, Ordering::SeqCst);
        self.inner.cache.clear();
        self.inner.failures.clear();
        Ok(())
    }

    /// One step of the users watcher: re-reads the files when they changed, or in any case when
    /// `forced` (SIGHUP). A bad file is logged and the previous users stay in force. `None`
    /// when nothing was re-read; otherwise the outcome, for the audit log.
    pub fn refresh(&self, forced: bool) -> Option<Result<(), RealmError>> {
        let outcome = if forced {
            self.reload().map(|()| true)
        } else {
            self.reload_if_changed()
        };
        match outcome {
            Ok(true) => {
                tracing::info!(dir = %self.inner.dir.display(), "users reloaded");
                Some(Ok(()))
            }
            Ok(false) => None,
            Err(error) => {
                tracing::error!(%error, "users files not reloaded; previous users stay in force");
                Some(Err(error))
            }
        }
    }

    /// Authenticates the encoded part of a Basic header.
    pub async fn authenticate(&self, encoded: &[u8]) -> Result<User, Denied> {
        use Denied::BadCredentials;
        let mut buf = [0u8; MAX_BASIC_LEN];
        let (decoded, name, password) = decode_basic(encoded, &mut buf).ok_or(BadCredentials)?;
        let users = self.users();
        let Some(hash) = users.hashes.get(name) else {
            // As long as a wrong password takes, in the same slots, without the CPU.
            let key = self.inner.failures.key(decoded);
            let imitation = async { self.inner.pool.imitate(users.cost).await.map(|()| false) };
            self.inner.flights.share(key, imitation).await?;
            return Err(BadCredentials);
        };
        if !self.verified(name, password)
            && !self
                .verify_slow(name, decoded, password, hash, users.cost)
                .await?
        {
            return Err(BadCredentials);
        }
        Ok(users.user(name))
    }

    /// The user of a Basic credential whose pair was already verified since the files were
    /// last read, without the pool: what an address over its failure limit may still use.
    pub fn authenticate_verified(&self, encoded: &[u8]) -> Option<User> {
        let mut buf = [0u8; MAX_BASIC_LEN];
        let (_, name, password) = decode_basic(encoded, &mut buf)?;
        let users = self.users();
        (users.hashes.contains_key(name) && self.verified(name, password)).then(|| users.user(name))
    }

    /// Password checks under way or waited for now, by pair.
    pub fn checks_in_flight(&self) -> usize {
        self.inner.flights.len()
    }

    fn users(&self) -> Arc<Users> {
        Arc::clone(&*self.inner.users.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Whether `password` is the one bcrypt last accepted for `name`.
    fn verified(&self, name: &str, password: &str) -> bool {
        self.inner
            .cache
            .get(name)
            .is_some_and(|h| h.verify(password.as_bytes()))
    }

    /// bcrypt in the pool, unless this very pair failed recently (then only its imitation),
    /// shared with every request for the same pair meanwhile. Remembers the outcome unless the
    /// files changed meanwhile.
    async fn verify_slow(
        &self,
        name: &str,
        credential: &str,
        password: &str,
        hash: &str,
        cost: u32,
    ) -> Result<bool, Busy> {
        let key = self.inner.failures.key(credential);
        let check = async {
            if self.inner.failures.contains(&key) {
                self.inner.pool.imitate(cost).await?;
                return Ok(false);
            }
            let generation = self.inner.generation.load(Ordering::SeqCst);
            let ok = self.inner.pool.verify(password, hash).await?;
            if self.inner.generation.load(Ordering::SeqCst) == generation {
                if ok {
                    self.inner
                        .cache
                        .insert(name.to_owned(), SecretHash::new(password.as_bytes()));
                } else {
                    self.inner.failures.insert(key);
                }
            }
            Ok(ok)
        };
        self.inner.flights.share(key, check).await
    }
}

/// The encoded part of a Basic header as `(user:password, user, password)`, decoded into `buf`;
/// `None` for anything too long, not base64, not UTF-8 or without a colon.
fn decode_basic<'b>(
    encoded: &[u8],
    buf: &'b mut [u8; MAX_BASIC_LEN],
) -> Option<(&'b str, &'b str, &'b str)> {
    if encoded.len() > MAX_BASIC_LEN {
        return None;
    }
    let len = STANDARD.decode_slice(encoded, &mut buf[..]).ok()?;
    let buf: &'b [u8] = buf;
    let decoded = std::str::from_utf8(buf.get(..len)?).ok()?;
    let (name, password) = decoded.split_once(':')?;
    Some((decoded, name, password))
}

/// Modification times of both files; a missing file has none.
fn stamps(dir: &Path) -> (Option<SystemTime>, Option<SystemTime>) {
    let time = |p: PathBuf| fs::metadata(p).and_then(|m| m.modified()).ok();
    (time(users_path(dir)), time(roles_path(dir)))
}

fn read_optional(path: &Path) -> Result<String, RealmError> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(text),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(io_error(path)(e)),
    }
}

/// Meaningful lines with their 1-based numbers: blank lines and `#` comments skipped.
fn lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
}

fn load(dir: &Path) -> Result<Users, RealmError> {
    let mut users = Users::default();
    let path = users_path(dir);
    read_users(&path, &read_optional(&path)?, &mut users)?;
    let path = roles_path(dir);
    read_roles(&path, &read_optional(&path)?, &mut users)?;
    Ok(users)
}

/// Takes in the `users` file's text; `path` names it in a problem.
fn read_users(path: &Path, text: &str, users: &mut Users) -> Result<(), RealmError> {
    for (line, text) in lines(text) {
        let format = |reason: &str| RealmError::Format {
            path: path.to_owned(),
            line,
            reason: reason.to_owned(),
        };
        let (name, hash) = text
            .split_once(':')
            .ok_or_else(|| format("expected user:hash"))?;
        // Trimmed as Elasticsearch and `tokengate users` read them: `bob : $2a$…` is `bob`.
        let (name, hash) = (name.trim(), hash.trim());
        if !hash.starts_with("$2") {
            // Elasticsearch's other hashers are not supported; say so rather than lock the user out silently.
            tracing::warn!(path = %path.display(), line, user = name, "only bcrypt hashes are supported; user skipped");
            continue;
        }
        users.hashes.insert(name.to_owned(), hash.to_owned());
    }
    users.cost = usual_cost(users.hashes.values());
    Ok(())
}

/// Takes in the `users_roles` file's text; `path` names it in a problem.
fn read_roles(path: &Path, text: &str, users: &mut Users) -> Result<(), RealmError> {
    for (line, text) in lines(text) {
        let (role, names) = text.split_once(':').ok_or_else(|| RealmError::Format {
            path: path.to_owned(),
            line,
            reason: "expected role:user1,user2".to_owned(),
        })?;
        let role = role.trim();
        for name in names.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            users
                .roles
                .entry(name.to_owned())
                .or_default()
                .push(role.to_owned());
        }
    }
    Ok(())
}

/// The realm's reading of a `users` and a `users_roles` text: every user it would authenticate,
/// by name, with its roles in file order. For the fuzz targets and their corpus replay, which
/// feed it any text.
#[doc(hidden)]
pub fn read_texts(users: &str, roles: &str) -> Result<Vec<User>, RealmError> {
    let mut read = Users::default();
    read_users(Path::new("users"), users, &mut read)?;
    read_roles(Path::new("users_roles"), roles, &mut read)?;
    let mut out: Vec<User> = read
        .hashes
        .into_keys()
        .map(|name| User {
            roles: read.roles.get(&name).cloned().unwrap_or_default(),
            name,
        })
        .collect();
    out.sort_unstable_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// The cost most hashes have (`$2b$10$…` has 10), the higher one on a tie; [`BCRYPT_COST`] when
/// there are none.
fn usual_cost<'a>(hashes: impl Iterator<Item = &'a String>) -> u32 {
    let mut counts: HashMap<u32, usize> = HashMap::new();
    for cost in hashes.filter_map(|h| h.split('$').nth(2)?.parse::<u32>().ok()) {
        *counts.entry(cost).or_default() += 1;
    }
    counts
        .into_iter()
        .max_by_key(|&(cost, count)| (count, cost))
        .map_or(BCRYPT_COST, |(cost, _)| cost)
}

/// A random 20-character password from the URL-safe base64 alphabet.
pub fn generate_password() -> String {
    let mut bytes = [0u8; 15];
    OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Writes the first user's files: `elastic` with `password`, role `superuser`.
fn bootstrap(dir: &Path, password: &str) -> Result<(), RealmError> {
    let users = format!("{BOOTSTRAP_USER}:{}\n", hash_password(password)?);
    let roles_file = roles_path(dir);
    if !roles_file.exists() {
        atomic_file::replace(
            &roles_file,
            format!("superuser:{BOOTSTRAP_USER}\n").as_bytes(),
        )
        .map_err(io_error(&roles_file))?;
    }
    let path = users_path(dir);
    atomic_file::replace(&path, users.as_bytes()).map_err(io_error(&path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user: &str, password: &str) -> String {
        STANDARD.encode(format!("{user}:{password}"))
    }

    #[tokio::test]
    async fn bootstrap_creates_elastic_superuser() {
        let dir = tempfile::tempdir().unwrap();
        let (realm, generated) =
            UserRealm::open(dir.path(), Some("changeme"), &AuthThrottle::default()).unwrap();
        assert!(generated.is_none());
        let user = realm
            .authenticate(basic("elastic", "changeme").as_bytes())
            .await
            .unwrap();
        assert_eq!(user.roles, ["superuser"]);
        assert!(realm
            .authenticate(basic("elastic", "wrong").as_bytes())
            .await
            .is_err());
        // Second time from the cache.
        assert!(realm
            .authenticate(basic("elastic", "changeme").as_bytes())
            .await
            .is_ok());
        assert!(fs::read_to_string(dir.path().join("users"))
            .unwrap()
            .starts_with("elastic:$2a$10$"));
    }

    #[tokio::test]
    async fn generated_password_works_and_reset_replaces_it() {
        let dir = tempfile::tempdir().unwrap();
        let (realm, generated) =
            UserRealm::open(dir.path(), None, &AuthThrottle::default()).unwrap();
        let first = generated.unwrap();
        assert!(realm
            .authenticate(basic("elastic", &first).as_bytes())
            .await
            .is_ok());
        set_password(dir.path(), "elastic", "another-one").unwrap();
        realm.reload().unwrap();
        assert!(realm
            .authenticate(basic("elastic", &first).as_bytes())
            .await
            .is_err());
        assert!(realm
            .authenticate(basic("elastic", "another-one").as_bytes())
            .await
            .is_ok());
        assert!(matches!(
            set_password(dir.path(), "nobody", "123456"),
            Err(RealmError::UnknownUser(_))
        ));
        assert!(matches!(
            set_password(dir.path(), "elastic", "12"),
            Err(RealmError::ShortPassword)
        ));
    }

    #[cfg(unix)]
    #[test]
    fn first_start_files_are_owner_only_and_shared_ones_reported_not_changed() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("data");
        let (_realm, _) =
            UserRealm::open(&dir, Some("changeme"), &AuthThrottle::default()).unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&users_path(&dir)), 0o600);
        assert_eq!(mode(&roles_path(&dir)), 0o600);
        set_password(&dir, "elastic", "another-one").unwrap();
        assert_eq!(mode(&users_path(&dir)), 0o600);

        fs::set_permissions(roles_path(&dir), fs::Permissions::from_mode(0o644)).unwrap();
        let (opened, log) =
            atomic_file::logged_during(|| UserRealm::open(&dir, None, &AuthThrottle::default()));
        let (_realm, generated) = opened.unwrap();
        assert!(generated.is_none());
        assert_eq!(mode(&roles_path(&dir)), 0o644);
        let warnings: Vec<&str> = log.lines().filter(|l| l.contains("WARN")).collect();
        assert_eq!(warnings.len(), 1, "{log}");
        assert!(warnings[0].contains(&roles_path(&dir).display().to_string()));
        assert!(warnings[0].contains("0644"), "{log}");
    }

    /// A realm holding `bob` (cheap hash) with a pool of one worker and `queue` places.
    fn realm_with_bob(queue: usize) -> (tempfile::TempDir, UserRealm) {
        let dir = tempfile::tempdir().unwrap();
        let hash = bcrypt::hash("bob-password", 4).unwrap();
        fs::write(dir.path().join("users"), format!("bob:{hash}\n")).unwrap();
        fs::write(dir.path().join("users_roles"), "viewer:bob\n").unwrap();
        let limits = AuthThrottle {
            password_workers: Some(1),
            password_queue: Some(queue),
            ..AuthThrottle::default()
        };
        let (realm, _) = UserRealm::open(dir.path(), None, &limits).unwrap();
        (dir, realm)
    }

    fn counts(realm: &UserRealm) -> (usize, usize) {
        realm.inner.pool.counts()
    }

    #[tokio::test]
    async fn a_repeated_wrong_password_reaches_bcrypt_once() {
        let (_dir, realm) = realm_with_bob(2);
        let wrong = basic("bob", "guess-1");
        for _ in 0..5 {
            assert_eq!(
                realm.authenticate(wrong.as_bytes()).await,
                Err(Denied::BadCredentials)
            );
        }
        assert_eq!(counts(&realm), (1, 4), "one bcrypt, then imitations");
        // Another guess is another pair; the right password still works and is cached.
        let other = basic("bob", "guess-2");
        assert!(realm.authenticate(other.as_bytes()).await.is_err());
        let right = basic("bob", "bob-password");
        assert_eq!(
            realm.authenticate(right.as_bytes()).await.unwrap().roles,
            ["viewer"]
        );
        assert!(realm.authenticate(right.as_bytes()).await.is_ok());
        assert_eq!(counts(&realm), (3, 4));
    }

    #[tokio::test]
    async fn the_same_pair_arriving_together_costs_one_check() {
        // One worker and no queue: 16 separate checks would be 15 refusals.
        let (_dir, realm) = realm_with_bob(0);
        let right = basic("bob", "bob-password");
        let wrong = basic("bob", "guess");
        let unknown = basic("nobody", "guess");
        let rights =
            futures_util::future::join_all((0..16).map(|_| realm.authenticate(right.as_bytes())));
        assert!(rights.await.iter().all(Result::is_ok));
        let wrongs =
            futures_util::future::join_all((0..16).map(|_| realm.authenticate(wrong.as_bytes())));
        assert!(wrongs
            .await
            .iter()
            .all(|r| *r == Err(Denied::BadCredentials)));
        let unknowns =
            futures_util::future::join_all((0..16).map(|_| realm.authenticate(unknown.as_bytes())));
        assert!(unknowns
            .await
            .iter()
            .all(|r| *r == Err(Denied::BadCredentials)));
        assert_eq!(counts(&realm), (2, 1));
        assert_eq!(realm.inner.flights.len(), 0);
    }

    #[tokio::test]
    async fn a_reload_forgets_failures() {
        let (dir, realm) = realm_with_bob(2);
        let wrong = basic("bob", "new-password");
        assert!(realm.authenticate(wrong.as_bytes()).await.is_err());
        let hash = bcrypt::hash("new-password", 4).unwrap();
        fs::write(dir.path().join("users"), format!("bob:{hash}\n")).unwrap();
        realm.reload().unwrap();
        assert!(realm.authenticate(wrong.as_bytes()).await.is_ok());
        assert_eq!(counts(&realm).0, 2);
    }

    #[tokio::test]
    async fn an_unknown_user_is_refused_through_the_pool_without_bcrypt() {
        let (_dir, realm) = realm_with_bob(0);
        let unknown = basic("nobody", "bob-password");
        assert_eq!(
            realm.authenticate(unknown.as_bytes()).await,
            Err(Denied::BadCredentials)
        );
        assert_eq!(
            realm.authenticate(b"%%%").await,
            Err(Denied::BadCredentials)
        );
        assert_eq!(counts(&realm), (0, 1));

        // With the one slot taken, an unknown user meets the same full pool a real check does.
        let (stalled, release_tx) = pool::Stalled::start(&realm.inner.pool).await;
        assert_eq!(
            realm.authenticate(unknown.as_bytes()).await,
            Err(Denied::Busy)
        );
        let wrong = basic("bob", "guess");
        assert_eq!(
            realm.authenticate(wrong.as_bytes()).await,
            Err(Denied::Busy)
        );
        assert_eq!(pool::Stalled::release(stalled, release_tx).await, Ok(true));
        assert_eq!(counts(&realm), (0, 1));
    }

    #[test]
    fn the_usual_cost_is_the_most_common_one() {
        let hashes = ["$2b$10$x", "$2a$12$y", "$2b$10$z", "junk"].map(String::from);
        assert_eq!(usual_cost(hashes.iter()), 10);
        assert_eq!(usual_cost(["$2b$04$x".to_owned()].iter()), 4);
        assert_eq!(usual_cost([].iter()), BCRYPT_COST);
    }

    /// Found by the `users` fuzz check (on a seed of its corpus): the realm kept the spaces
    /// around a role, a user name and a hash, which Elasticsearch and `tokengate users list`
    /// trim, so `ops : erin` listed `ops` but granted `ops `.
    #[test]
    fn names_roles_and_hashes_are_trimmed_as_elasticsearch_reads_them() {
        let read = read_texts("  erin :  $2a$04$x  \n", " ops : erin\n").unwrap();
        assert_eq!(
            read,
            [User {
                name: "erin".to_owned(),
                roles: vec!["ops".to_owned()]
            }]
        );
        assert_eq!(
            list_texts("  erin :  $2a$04$x  \n", " ops : erin\n"),
            [("erin".to_owned(), vec!["ops".to_owned()])]
        );
    }

    #[test]
    fn malformed_files_name_path_and_line() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("users"), "# comment\n\nno-colon-here\n").unwrap();
        let error = UserRealm::open(dir.path(), None, &AuthThrottle::default())
            .err()
            .unwrap()
            .to_string();
        assert!(error.ends_with("users:3: expected user:hash"), "{error}");
    }
}
