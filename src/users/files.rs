//! Editing the realm's two files from the command line, as Elasticsearch's `elasticsearch-users`
//! does: adding and deleting users, changing passwords and roles, listing.
//!
//! Every change is a whole-file replacement through [`atomic_file::replace`], so a running
//! gateway, which polls the files and reloads them, reads either the old file or the new one,
//! never half of one. Lines this module does not change (comments, other users, their order) are
//! kept as they were. Two editors racing each other can still lose one change, as with
//! Elasticsearch's tool: the files are read, edited and replaced without a lock.

use std::path::Path;

use super::rules::{validate_password, validate_username, EditError, MIN_PASSWORD_LEN};
use super::{io_error, read_optional, roles_path, users_path, RealmError, BCRYPT_COST};
use crate::atomic_file;

/// bcrypt in Elasticsearch's `$2a$` spelling, at the realm's cost.
pub(super) fn hash_password(password: &str) -> Result<String, RealmError> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(RealmError::ShortPassword);
    }
    Ok(bcrypt::hash_with_result(password, BCRYPT_COST)?.format_for_version(bcrypt::Version::TwoA))
}

/// The user a `users` line defines, if it defines one.
fn user_of(line: &str) -> Option<&str> {
    let line = line.trim();
    if line.starts_with('#') {
        return None;
    }
    line.split_once(':').map(|(name, _)| name.trim())
}

/// Replaces the password of an existing user, keeping every other line as it was.
pub fn set_password(dir: &Path, user: &str, password: &str) -> Result<(), RealmError> {
    let path = users_path(dir);
    let text = read_optional(&path)?;
    let hash = hash_password(password)?;
    let mut found = false;
    let mut out = String::with_capacity(text.len() + 64);
    for line in text.lines() {
        if user_of(line) == Some(user) {
            found = true;
            out.push_str(&format!("{user}:{hash}"));
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    if !found {
        return Err(RealmError::UnknownUser(user.to_owned()));
    }
    atomic_file::replace(&path, out.as_bytes()).map_err(io_error(&path))
}

/// Users in the order of the `users` file.
fn user_names(dir: &Path) -> Result<Vec<String>, RealmError> {
    let text = read_optional(&users_path(dir))?;
    Ok(text
        .lines()
        .filter_map(user_of)
        .map(str::to_owned)
        .collect())
}

/// A `users_roles` line read: the role and its users.
type RoleLine = (String, Vec<String>);

/// `role: users` lines as (role, users), in file order; comments and blank lines are `None`.
fn role_lines(text: &str) -> Vec<(&str, Option<RoleLine>)> {
    text.lines()
        .map(|line| {
            let parsed = (!line.trim().starts_with('#'))
                .then(|| line.split_once(':'))
                .flatten()
                .map(|(role, users)| {
                    let users = users
                        .split(',')
                        .map(str::trim)
                        .filter(|u| !u.is_empty())
                        .map(str::to_owned)
                        .collect();
                    (role.trim().to_owned(), users)
                });
            (line, parsed)
        })
        .collect()
}

/// The roles of `user` in `users_roles`, in file order.
fn roles_of(text: &str, user: &str) -> Vec<String> {
    let mut roles = Vec::new();
    for (_, parsed) in role_lines(text) {
        if let Some((role, users)) = parsed {
            if users.iter().any(|u| u == user) && !roles.contains(&role) {
                roles.push(role);
            }
        }
    }
    roles
}

/// Rewrites `users_roles` so that `user` has exactly `roles`: the user leaves every other role's
/// line, joins the first line of each of its roles (or a new line at the end), and a line left
/// without users goes. Other lines stay as they were.
fn write_roles(dir: &Path, user: &str, roles: &[String]) -> Result<(), RealmError> {
    let path = roles_path(dir);
    let text = read_optional(&path)?;
    let mut pending: Vec<&String> = roles.iter().collect();
    let mut out = String::with_capacity(text.len() + 64);
    for (line, parsed) in role_lines(&text) {
        let Some((role, mut users)) = parsed else {
            out.push_str(line);
            out.push('\n');
            continue;
        };
        let had = users.iter().any(|u| u == user);
        let wanted = match pending.iter().position(|r| **r == role) {
            Some(at) => {
                pending.remove(at);
                true
            }
            None => false,
        };
        if had == wanted {
            out.push_str(line);
            out.push('\n');
            continue;
        }
        if wanted {
            users.push(user.to_owned());
        } else {
            users.retain(|u| u != user);
            if users.is_empty() {
                continue;
            }
        }
        out.push_str(&format!("{role}:{}\n", users.join(",")));
    }
    for role in pending {
        out.push_str(&format!("{role}:{user}\n"));
    }
    if out == text {
        return Ok(());
    }
    atomic_file::replace(&path, out.as_bytes()).map_err(io_error(&path))
}

/// Adds `user` with `password` and `roles`; refuses a user that exists. Creates the data
/// directory and the files when there are none yet (a gateway started on that directory then
/// does not create `elastic`).
pub fn add(dir: &Path, user: &str, password: &str, roles: &[String]) -> Result<(), EditError> {
    validate_username(user)?;
    validate_password(password)?;
    atomic_file::create_private_dir(dir).map_err(io_error(dir))?;
    let path = users_path(dir);
    let mut text = read_optional(&path)?;
    if text.lines().any(|l| user_of(l) == Some(user)) {
        return Err(EditError::Exists(user.to_owned()));
    }
    let hash = hash_password(password)?;
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&format!("{user}:{hash}\n"));
    // Roles first: a gateway that reloads in between sees no user rather than a user with
    // fewer roles than asked for.
    if !roles.is_empty() {
        write_roles(dir, user, roles)?;
    }
    atomic_file::replace(&path, text.as_bytes()).map_err(io_error(&path))?;
    Ok(())
}

/// Changes the password of an existing user.
pub fn passwd(dir: &Path, user: &str, password: &str) -> Result<(), EditError> {
    validate_username(user)?;
    validate_password(password)?;
    set_password(dir, user, password).map_err(|error| match error {
        RealmError::UnknownUser(user) => EditError::NoUser(user),
        other => EditError::Realm(other),
    })
}

/// Adds and removes roles of an existing user; returns the roles it has afterwards (a role both
/// added and removed is removed, as in Elasticsearch's tool).
pub fn change_roles(
    dir: &Path,
    user: &str,
    add: &[String],
    remove: &[String],
) -> Result<Vec<String>, EditError> {
    validate_username(user)?;
    if !user_names(dir)?.iter().any(|u| u == user) {
        return Err(EditError::NoUser(user.to_owned()));
    }
    let mut roles = roles_of(&read_optional(&roles_path(dir))?, user);
    for role in add {
        if !roles.contains(role) {
            roles.push(role.clone());
        }
    }
    roles.retain(|r| !remove.contains(r));
    write_roles(dir, user, &roles)?;
    Ok(roles)
}

/// Removes a user and its roles. The password line goes first, so a gateway reloading in
/// between can no longer authenticate the user at all.
pub fn delete(dir: &Path, user: &str) -> Result<(), EditError> {
    validate_username(user)?;
    let path = users_path(dir);
    let text = read_optional(&path)?;
    let mut out = String::with_capacity(text.len());
    let mut found = false;
    for line in text.lines() {
        if user_of(line) == Some(user) {
            found = true;
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    if !found {
        return Err(EditError::NoUser(user.to_owned()));
    }
    atomic_file::replace(&path, out.as_bytes()).map_err(io_error(&path))?;
    write_roles(dir, user, &[])?;
    Ok(())
}

/// Every user (or only `only`) with its roles, in the order of the `users` file.
pub fn list(dir: &Path, only: Option<&str>) -> Result<Vec<(String, Vec<String>)>, EditError> {
    let users = read_optional(&users_path(dir))?;
    let listed = list_texts(&users, &read_optional(&roles_path(dir))?);
    if let Some(user) = only {
        if !listed.iter().any(|(n, _)| n == user) {
            return Err(EditError::NoUser(user.to_owned()));
        }
    }
    Ok(listed
        .into_iter()
        .filter(|(n, _)| only.is_none_or(|o| o == n.as_str()))
        .collect())
}

/// What [`list`] reads in a `users` and a `users_roles` text: every user line's name with its
/// roles. For the fuzz targets and their corpus replay, which hold it against the realm's
/// reading of the same text.
#[doc(hidden)]
pub fn list_texts(users: &str, roles: &str) -> Vec<(String, Vec<String>)> {
    users
        .lines()
        .filter_map(user_of)
        .map(|n| (n.to_owned(), roles_of(roles, n)))
        .collect()
}

/// A warning when the files now belong to someone other than the data directory's owner: they
/// are owner-only, so a gateway running as the directory's owner could no longer read them
/// (typically an edit run as root on a service's directory).
pub fn ownership_warning(dir: &Path) -> Option<String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let owner = std::fs::metadata(dir).ok()?.uid();
        for path in [users_path(dir), roles_path(dir)] {
            let uid = std::fs::metadata(&path).ok()?.uid();
            if uid != owner {
                return Some(format!(
                    "{} belongs to uid {uid} but the data directory to uid {owner}: a gateway \
                     running as uid {owner} cannot read it; run this command as that user, or \
                     chown the file",
                    path.display()
                ));
            }
        }
        None
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn dir_with(users: &str, roles: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("users"), users).unwrap();
        fs::write(dir.path().join("users_roles"), roles).unwrap();
        dir
    }

    fn roles_file(dir: &tempfile::TempDir) -> String {
        fs::read_to_string(dir.path().join("users_roles")).unwrap()
    }

    #[test]
    fn role_edits_keep_comments_and_other_users() {
        let dir = dir_with(
            "# users\nann:$2a$04$x\nbob:$2a$04$y\n",
            "# roles\nviewer:ann,bob\nadmin:ann\n",
        );
        let roles = change_roles(dir.path(), "bob", &["admin".into(), "ops".into()], &[]).unwrap();
        assert_eq!(roles, ["viewer", "admin", "ops"]);
        assert_eq!(
            roles_file(&dir),
            "# roles\nviewer:ann,bob\nadmin:ann,bob\nops:bob\n"
        );
        let roles = change_roles(dir.path(), "bob", &[], &["viewer".into(), "ops".into()]).unwrap();
        assert_eq!(roles, ["admin"]);
        assert_eq!(roles_file(&dir), "# roles\nviewer:ann\nadmin:ann,bob\n");
        delete(dir.path(), "ann").unwrap();
        assert_eq!(roles_file(&dir), "# roles\nadmin:bob\n");
        assert_eq!(
            fs::read_to_string(dir.path().join("users")).unwrap(),
            "# users\nbob:$2a$04$y\n"
        );
        assert!(matches!(
            change_roles(dir.path(), "ann", &["x".into()], &[]),
            Err(EditError::NoUser(_))
        ));
        assert_eq!(
            list(dir.path(), None).unwrap(),
            [("bob".to_owned(), vec!["admin".to_owned()])]
        );
    }

    #[test]
    fn add_refuses_an_existing_user_and_starts_missing_files() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("data");
        add(&dir, "carol", "carol-pw", &["viewer".into()]).unwrap();
        let users = fs::read_to_string(dir.join("users")).unwrap();
        assert!(users.starts_with("carol:$2a$10$"), "{users}");
        assert!(bcrypt::verify("carol-pw", users.trim().split_once(':').unwrap().1).unwrap());
        assert_eq!(
            fs::read_to_string(dir.join("users_roles")).unwrap(),
            "viewer:carol\n"
        );
        assert!(matches!(
            add(&dir, "carol", "another", &[]),
            Err(EditError::Exists(_))
        ));
        assert!(matches!(
            passwd(&dir, "dave", "another"),
            Err(EditError::NoUser(_))
        ));
        assert!(matches!(delete(&dir, "dave"), Err(EditError::NoUser(_))));
    }

    #[cfg(unix)]
    #[test]
    fn files_owned_by_another_user_than_the_directory_are_pointed_out() {
        use std::os::unix::fs::MetadataExt;
        let dir = dir_with("bob:$2a$04$y\n", "");
        assert_eq!(ownership_warning(dir.path()), None);
        if fs::metadata(dir.path().join("users")).unwrap().uid() != 0 {
            eprintln!("skipped: changing a directory's owner needs root");
            return;
        }
        std::os::unix::fs::chown(dir.path(), Some(4242), None).unwrap();
        let warning = ownership_warning(dir.path()).unwrap();
        assert!(
            warning.contains("belongs to uid 0 but the data directory to uid 4242"),
            "{warning}"
        );
    }
}
