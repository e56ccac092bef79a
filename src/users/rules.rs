//! What a user name, a role name and a password may be, by Elasticsearch's `Validation.Users`
//! and `Validation.Roles`, and why an edit of the realm's files is refused, in the words of
//! Elasticsearch's `elasticsearch-users`.

use std::fmt;

use super::RealmError;

/// Shortest password Elasticsearch accepts (`Validation.Users`).
pub const MIN_PASSWORD_LEN: usize = 6;
/// Longest user or role name Elasticsearch accepts.
const MAX_NAME_LEN: usize = 1024;

/// Why an edit was refused; the messages are Elasticsearch's command's.
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    #[error("Invalid username [{0}]... {rule}", rule = NameRule("User"))]
    InvalidUsername(String),
    #[error("Invalid password...passwords must be at least [{MIN_PASSWORD_LEN}] characters long")]
    InvalidPassword,
    #[error("Invalid role [{0}]... {rule}", rule = NameRule("Role"))]
    InvalidRole(String),
    #[error("Password mismatch")]
    Mismatch,
    #[error("User [{0}] already exists")]
    Exists(String),
    #[error("User [{0}] doesn't exist")]
    NoUser(String),
    #[error(transparent)]
    Realm(#[from] RealmError),
}

/// Elasticsearch's description of a valid user or role name.
struct NameRule(&'static str);

impl fmt::Display for NameRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} names must be at least 1 and no more than {MAX_NAME_LEN} characters. They can contain \
             alphanumeric characters (a-z, A-Z, 0-9), spaces, punctuation, and printable symbols in the \
             Basic Latin (ASCII) block. Leading or trailing whitespace is not allowed.",
            self.0
        )
    }
}

/// Elasticsearch's rule for user and role names (printable ASCII, 1–1024 characters, no leading
/// or trailing space), narrowed by what the files themselves cannot hold: `:` ends the name on a
/// line (and in a Basic credential), `,` separates the users of a role, and a leading `#` would
/// turn the line into a comment. Elasticsearch accepts such names and then cannot read them back.
fn is_valid_name(name: &str) -> bool {
    (1..=MAX_NAME_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| (b' '..=b'~').contains(&b) && b != b':' && b != b',')
        && !name.starts_with([' ', '#'])
        && !name.ends_with(' ')
}

pub fn validate_username(name: &str) -> Result<(), EditError> {
    if is_valid_name(name) {
        Ok(())
    } else {
        Err(EditError::InvalidUsername(name.to_owned()))
    }
}

/// Counts characters, as Elasticsearch counts a password's length.
pub fn validate_password(password: &str) -> Result<(), EditError> {
    if password.chars().count() >= MIN_PASSWORD_LEN {
        Ok(())
    } else {
        Err(EditError::InvalidPassword)
    }
}

/// Splits `-r a,b` into checked role names; empty parts are skipped, as an empty option is.
pub fn parse_roles(list: &str) -> Result<Vec<String>, EditError> {
    let mut roles = Vec::new();
    for role in list.split(',').filter(|r| !r.is_empty()) {
        if !is_valid_name(role) {
            return Err(EditError::InvalidRole(role.to_owned()));
        }
        if !roles.iter().any(|r| r == role) {
            roles.push(role.to_owned());
        }
    }
    Ok(roles)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_elasticsearch_and_the_file_format() {
        for good in ["bob", "a b", "x@y.z", "_system", "~!$%", &"n".repeat(1024)] {
            assert!(is_valid_name(good), "{good}");
        }
        let long = "n".repeat(1025);
        for bad in [
            "",
            " bob",
            "bob ",
            "bö",
            "a:b",
            "a,b",
            "#bob",
            "tab\tname",
            &long,
        ] {
            assert!(!is_valid_name(bad), "{bad:?}");
        }
        assert_eq!(
            validate_username("a:b").unwrap_err().to_string(),
            "Invalid username [a:b]... User names must be at least 1 and no more than 1024 \
             characters. They can contain alphanumeric characters (a-z, A-Z, 0-9), spaces, \
             punctuation, and printable symbols in the Basic Latin (ASCII) block. Leading or \
             trailing whitespace is not allowed."
        );
        assert!(validate_password("123456").is_ok());
        assert_eq!(
            validate_password("12345").unwrap_err().to_string(),
            "Invalid password...passwords must be at least [6] characters long"
        );
        assert_eq!(parse_roles("a,,b,a").unwrap(), ["a", "b"]);
        assert!(parse_roles("").unwrap().is_empty());
        assert!(matches!(parse_roles("a,b:c"), Err(EditError::InvalidRole(r)) if r == "b:c"));
    }
}
