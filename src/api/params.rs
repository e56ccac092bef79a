//! Query parameters as Elasticsearch's REST layer treats them: every parameter must be consumed,
//! the rest is an `illegal_argument_exception` with "did you mean" suggestions.

use std::borrow::Cow;

use percent_encoding::percent_decode_str;

use crate::message::error::ApiError;

/// Accepted on every endpoint (response formatting), as Elasticsearch's `BaseRestHandler` does.
const ALWAYS_SUPPORTED: [&str; 5] = ["pretty", "human", "error_trace", "filter_path", "format"];

/// Decoded `key=value` pairs of a query string.
#[derive(Debug, Default)]
pub struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    pub fn parse(query: Option<&str>) -> Self {
        let decode = |s: &str| -> String {
            let s: Cow<str> = if s.contains('+') {
                Cow::Owned(s.replace('+', " "))
            } else {
                Cow::Borrowed(s)
            };
            percent_decode_str(&s).decode_utf8_lossy().into_owned()
        };
        let pairs = query
            .unwrap_or("")
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| match p.split_once('=') {
                Some((k, v)) => (decode(k), decode(v)),
                None => (decode(p), String::new()),
            })
            .collect();
        Params { pairs }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// `?pretty` (or `?pretty=true`) asks for indented JSON.
    pub fn pretty(&self) -> bool {
        matches!(self.get("pretty"), Some("" | "true"))
    }

    /// Refuses parameters outside `supported` and the always-supported ones, with
    /// Elasticsearch's message for `path`.
    pub fn check(&self, path: &str, supported: &[&str]) -> Result<(), ApiError> {
        let known = |k: &str| supported.contains(&k) || ALWAYS_SUPPORTED.contains(&k);
        let mut unknown: Vec<&str> = Vec::new();
        for (key, _) in &self.pairs {
            if !known(key) && !unknown.contains(&key.as_str()) {
                unknown.push(key);
            }
        }
        if unknown.is_empty() {
            return Ok(());
        }
        unknown.sort_unstable();
        let candidates: Vec<&str> = supported
            .iter()
            .chain(ALWAYS_SUPPORTED.iter())
            .copied()
            .collect();
        let listed: Vec<String> = unknown.iter().map(|u| describe(u, &candidates)).collect();
        let plural = if unknown.len() > 1 { "s" } else { "" };
        Err(ApiError::IllegalArgument(format!(
            "request [{path}] contains unrecognized parameter{plural}: {}",
            listed.join(", ")
        )))
    }

    /// The `refresh` parameter, validated as Elasticsearch's `RefreshPolicy.parse` does. Writes
    /// here are visible at once, so every policy is already satisfied.
    pub fn check_refresh(&self) -> Result<(), ApiError> {
        match self.get("refresh") {
            None | Some("" | "true" | "false" | "wait_for") => Ok(()),
            Some(other) => Err(ApiError::IllegalArgument(format!(
                "Unknown value for refresh: [{other}]."
            ))),
        }
    }
}

/// `[name]`, followed by suggestions whose similarity is above one half.
fn describe(unknown: &str, candidates: &[&str]) -> String {
    let mut scored: Vec<(f64, &str)> = candidates
        .iter()
        .map(|c| (similarity(unknown, c), *c))
        .filter(|(score, _)| *score > 0.5)
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(b.1)));
    let mut out = format!("[{unknown}]");
    match scored.as_slice() {
        [] => {}
        [(_, one)] => out.push_str(&format!(" -> did you mean [{one}]?")),
        many => {
            let names: Vec<&str> = many.iter().map(|(_, n)| *n).collect();
            out.push_str(&format!(" -> did you mean any of [{}]?", names.join(", ")));
        }
    }
    out
}

/// 1 − edit distance / longer length, the measure Elasticsearch uses for suggestions.
fn similarity(a: &str, b: &str) -> f64 {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let longest = a.len().max(b.len());
    if longest == 0 {
        return 1.0;
    }
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    1.0 - previous[b.len()] as f64 / longest as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_parameter_message_matches_elasticsearch() {
        let params = Params::parse(Some("foo=1&refresh=true"));
        let error = params.check("/_security/x", &["refresh"]).unwrap_err();
        assert_eq!(
            error,
            ApiError::IllegalArgument(
                "request [/_security/x] contains unrecognized parameter: [foo]".into()
            )
        );
    }

    #[test]
    fn suggests_close_names_and_lists_several() {
        let params = Params::parse(Some("refrsh&zzz"));
        let reason = params.check("/p", &["refresh"]).unwrap_err().reason();
        assert_eq!(reason, "request [/p] contains unrecognized parameters: [refrsh] -> did you mean [refresh]?, [zzz]");
    }

    #[test]
    fn pretty_and_friends_are_always_accepted() {
        let params = Params::parse(Some("pretty&error_trace=true&human"));
        assert!(params.check("/p", &[]).is_ok());
        assert!(params.pretty());
    }

    #[test]
    fn refresh_values() {
        for ok in [
            "",
            "refresh=true",
            "refresh=false",
            "refresh=wait_for",
            "refresh",
        ] {
            assert!(Params::parse(Some(ok)).check_refresh().is_ok(), "{ok}");
        }
        assert!(Params::parse(Some("refresh=sometimes"))
            .check_refresh()
            .is_err());
    }
}
