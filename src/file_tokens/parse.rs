//! Reading `service_tokens`: `<namespace>/<service>/<name>:<hash>` per line.
//!
//! Lines are told apart as Elasticsearch's `FileLineParser` does (a line starting with `#` or
//! holding only whitespace is skipped; the rest is trimmed and split at its first `:`), so a
//! file copied from a node reads the same here. Unlike Elasticsearch, which drops every token
//! of a file with one bad line, a bad line costs only itself: it is reported with its number and
//! the other lines stay in force.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::hash::StoredHash;
use crate::accounts::Accounts;
use crate::identity::{AccountId, TokenName};

/// A token the file defines, for an account the gateway knows.
#[derive(Debug, Clone)]
pub struct FileToken {
    /// The registry's own id of the account, so naming a caller never allocates for it.
    pub account: AccountId,
    pub name: TokenName,
    /// Shared with the verification job that runs on the password pool.
    pub hash: Arc<StoredHash>,
}

/// A line that defines no token, and why; `line` is 1-based.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub line: usize,
    pub reason: String,
}

/// What one reading of the file gave.
#[derive(Debug, Default)]
pub struct Parsed {
    /// By qualified name, `namespace/service/name`, the key a token value carries.
    pub tokens: BTreeMap<String, FileToken>,
    pub problems: Vec<Problem>,
}

/// The meaningful lines of `text`, numbered from 1, as `(number, key, hash)`, or the number and
/// reason for a line without a `:`.
pub fn entries(text: &str) -> impl Iterator<Item = Result<(usize, &str, &str), Problem>> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.starts_with('#') && !line.trim().is_empty())
        .map(|(i, line)| {
            line.trim().split_once(':').map_or_else(
                || {
                    Err(Problem {
                        line: i + 1,
                        reason: "missing ':' character".to_owned(),
                    })
                },
                |(key, hash)| Ok((i + 1, key, hash)),
            )
        })
}

/// Parses the whole file against the accounts the gateway knows. A later line for the same
/// token replaces an earlier one, as in Elasticsearch (which also warns about it).
///
/// Public (hidden) for the fuzz targets and their corpus replay, which feed it any text.
pub fn parse(text: &str, accounts: &Accounts) -> Parsed {
    let mut parsed = Parsed::default();
    // Where each token was defined, to name the line a later one overrides.
    let mut defined_at: HashMap<String, usize> = HashMap::new();
    for entry in entries(text) {
        let outcome = entry.and_then(|(line, key, hash)| {
            let token = token(key, hash, accounts).map_err(|reason| Problem { line, reason })?;
            Ok((line, key, token))
        });
        match outcome {
            Ok((line, key, token)) => {
                parsed.tokens.insert(key.to_owned(), token);
                if let Some(earlier) = defined_at.insert(key.to_owned(), line) {
                    parsed.problems.push(Problem {
                        line: earlier,
                        reason: format!("duplicated token [{key}]; overridden by line {line}"),
                    });
                }
            }
            Err(problem) => parsed.problems.push(problem),
        }
    }
    parsed
}

fn token(key: &str, hash: &str, accounts: &Accounts) -> Result<FileToken, String> {
    let invalid = || format!("invalid token key [{key}]; expected namespace/service/name");
    let (account, name) = key.rsplit_once('/').ok_or_else(invalid)?;
    let parsed = AccountId::parse(account).ok_or_else(invalid)?;
    // Elasticsearch keeps such a line, and no request can use it (the account does not exist).
    let account = accounts
        .get(parsed.namespace(), parsed.service())
        .ok_or_else(|| format!("service account [{account}] does not exist; token ignored"))?
        .clone();
    let name = TokenName::new(name).map_err(|_| format!("invalid token name [{name}]"))?;
    let hash = StoredHash::parse(hash).map_err(|error| error.to_string())?;
    Ok(FileToken {
        account,
        name,
        hash: Arc::new(hash),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_lines_survive_bad_ones_and_every_bad_one_is_numbered() {
        let bcrypt = bcrypt::hash("x", 4).unwrap();
        let text = format!(
            "# comment\n\
             \n\
             elastic/fleet-server/t1:{bcrypt}\n\
             no-colon-here\n\
             elastic/fleet-server/plain:{{plain}}secret\n\
             nobody/here/t2:{bcrypt}\n\
             elastic/fleet-server/_bad:{bcrypt}\n\
             elastic/fleet-server:{bcrypt}\n\
             \x20 elastic/kibana/t3:{bcrypt}  \n\
             elastic/fleet-server/t1:{bcrypt}\n"
        );
        let parsed = parse(&text, &Accounts::new(&[]).unwrap());
        let names: Vec<&str> = parsed.tokens.keys().map(String::as_str).collect();
        assert_eq!(names, ["elastic/fleet-server/t1", "elastic/kibana/t3"]);
        let token = &parsed.tokens["elastic/kibana/t3"];
        assert_eq!(
            (token.account.as_str(), token.name.as_str()),
            ("elastic/kibana", "t3")
        );
        let lines: Vec<usize> = parsed.problems.iter().map(|p| p.line).collect();
        assert_eq!(lines, [4, 5, 6, 7, 8, 3]);
        assert_eq!(parsed.problems[0].reason, "missing ':' character");
        assert!(parsed.problems[1]
            .reason
            .starts_with("unsupported hash format"));
        assert_eq!(
            parsed.problems[2].reason,
            "service account [nobody/here] does not exist; token ignored"
        );
        assert_eq!(
            parsed.problems[5].reason,
            "duplicated token [elastic/fleet-server/t1]; overridden by line 10"
        );
    }

    #[test]
    fn an_indented_comment_is_a_line_as_in_elasticsearch() {
        let parsed = parse("  # not a comment\n", &Accounts::new(&[]).unwrap());
        assert_eq!(parsed.problems.len(), 1);
        assert_eq!(parsed.problems[0].line, 1);
    }
}
