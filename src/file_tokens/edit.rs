//! The changes `tokengate service-tokens` makes to the file's text, as Elasticsearch's
//! `elasticsearch-service-tokens` does, except that every other line (comments included) is
//! kept as it was and a new token is appended, rather than the file being rewritten sorted.

use std::collections::BTreeSet;

use super::entries;
use super::hash::StoredHash;

/// Why an edit was refused; `Display` is Elasticsearch's CLI message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    #[error("Service token [{0}] already exists")]
    Exists(String),
    #[error("Service token [{0}] does not exist")]
    Missing(String),
}

/// Whether a line defines `qualified` (whatever its hash).
fn defines(text: &str, qualified: &str) -> bool {
    entries(text).flatten().any(|(_, key, _)| key == qualified)
}

/// `text` with the line `qualified:hash` appended.
pub fn add(text: &str, qualified: &str, hash: &str) -> Result<String, EditError> {
    if defines(text, qualified) {
        return Err(EditError::Exists(qualified.to_owned()));
    }
    let mut out = String::with_capacity(text.len() + qualified.len() + hash.len() + 2);
    out.push_str(text);
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(qualified);
    out.push(':');
    out.push_str(hash);
    out.push('\n');
    Ok(out)
}

/// `text` without the lines that define `qualified`.
pub fn remove(text: &str, qualified: &str) -> Result<String, EditError> {
    if !defines(text, qualified) {
        return Err(EditError::Missing(qualified.to_owned()));
    }
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let skipped = line.starts_with('#') || line.trim().is_empty();
        let key = line.trim().split_once(':').map(|(key, _)| key);
        if skipped || key != Some(qualified) {
            out.push_str(line);
            out.push('\n');
        }
    }
    Ok(out)
}

/// The qualified names the file defines with a usable hash, sorted, as the CLI lists them;
/// `account` (`namespace/service`) keeps only that account's.
pub fn names(text: &str, account: Option<&str>) -> BTreeSet<String> {
    entries(text)
        .flatten()
        .filter(|(_, key, hash)| {
            let wanted = account.is_none_or(|a| {
                key.strip_prefix(a)
                    .is_some_and(|rest| rest.starts_with('/'))
            });
            wanted && StoredHash::parse(hash).is_ok()
        })
        .map(|(_, key, _)| key.to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_remove_and_list_keep_other_lines() {
        let hash = bcrypt::hash("x", 4).unwrap();
        let text = format!("# keep me\nelastic/kibana/k1:{hash}");
        let added = add(&text, "elastic/fleet-server/f1", &hash).unwrap();
        assert_eq!(
            added,
            format!("# keep me\nelastic/kibana/k1:{hash}\nelastic/fleet-server/f1:{hash}\n")
        );
        assert_eq!(
            add(&added, "elastic/fleet-server/f1", &hash),
            Err(EditError::Exists("elastic/fleet-server/f1".to_owned()))
        );
        let all: Vec<String> = names(&added, None).into_iter().collect();
        assert_eq!(all, ["elastic/fleet-server/f1", "elastic/kibana/k1"]);
        let fleet: Vec<String> = names(&added, Some("elastic/fleet-server"))
            .into_iter()
            .collect();
        assert_eq!(fleet, ["elastic/fleet-server/f1"]);
        assert!(names(&added, Some("elastic/fleet")).is_empty());

        let removed = remove(&added, "elastic/fleet-server/f1").unwrap();
        assert_eq!(removed, format!("# keep me\nelastic/kibana/k1:{hash}\n"));
        assert_eq!(
            remove(&removed, "elastic/fleet-server/f1")
                .unwrap_err()
                .to_string(),
            "Service token [elastic/fleet-server/f1] does not exist"
        );
        assert_eq!(add("", "a/b/c", &hash).unwrap(), format!("a/b/c:{hash}\n"));
    }

    #[test]
    fn plain_text_lines_are_not_listed() {
        let text = "elastic/fleet-server/plain:{plain}secret\n";
        assert!(names(text, None).is_empty());
    }
}
