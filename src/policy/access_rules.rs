//! Local access rules: per service account, the methods and paths the gateway lets through before
//! anything reaches the cluster.
//!
//! They are a first filter for clusters without security of their own, or a cheap one in front
//! of a cluster that enforces the account's privileges anyway. They see the request line only:
//! a `_bulk`, `_msearch` or `_mget` body can still name any index, which only the cluster's own
//! authorization (scoped upstream credentials) can stop.
//!
//! Paths are matched as a normalising hop reads them: percent-decoded, empty segments dropped
//! (dot segments never get here: [`crate::policy::path`] refuses them). In a pattern, `*` stands for any
//! run of characters inside one segment except `,` and `:`, so `/logs-*/_search` cannot be
//! stretched into an index list (`logs-a,secrets`) or a remote cluster (`logs-a:secrets`); a
//! segment `**` stands for any number of segments, none included.

use std::borrow::Cow;

use http::Method;
use percent_encoding::percent_decode_str;

/// An account's rules: a request passes when one rule allows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessRules {
    rules: Vec<Rule>,
}

/// Methods and paths that go together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// `None` allows every method.
    methods: Option<Vec<Method>>,
    paths: Vec<Pattern>,
}

/// One compiled path pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern {
    segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    /// `**`: any number of segments.
    Any,
    /// Literal text with `*` wildcards.
    Glob(String),
}

/// Characters a `*` never stands for: they turn one index name into several.
const EXPRESSION_SEPARATORS: [char; 2] = [',', ':'];

impl Rule {
    /// A rule from its configured methods (`["*"]` or none: every method) and path patterns.
    /// The error says what is wrong with which entry.
    pub fn new(methods: &[String], paths: &[String]) -> Result<Rule, String> {
        let methods = if methods.is_empty() || methods.iter().any(|m| m == "*") {
            None
        } else {
            let mut parsed = Vec::with_capacity(methods.len());
            for text in methods {
                let upper = text.to_ascii_uppercase();
                let method = Method::from_bytes(upper.as_bytes())
                    .map_err(|_| format!("\"{text}\" is not an HTTP method"))?;
                parsed.push(method);
            }
            Some(parsed)
        };
        if paths.is_empty() {
            return Err("a rule needs at least one path pattern".to_owned());
        }
        let paths = paths
            .iter()
            .map(|p| Pattern::new(p))
            .collect::<Result<_, _>>()?;
        Ok(Rule { methods, paths })
    }

    fn allows_method(&self, method: &Method) -> bool {
        match &self.methods {
            None => true,
            // As nginx's `limit_except GET`: a HEAD is a GET without its body.
            Some(methods) => {
                methods.contains(method)
                    || (method == Method::HEAD && methods.contains(&Method::GET))
            }
        }
    }
}

impl AccessRules {
    pub fn new(rules: Vec<Rule>) -> Self {
        AccessRules { rules }
    }

    /// Whether `method` on `path` (the request path, no query) is allowed.
    pub fn allows(&self, method: &Method, path: &str) -> bool {
        let Some(segments) = normalise(path) else {
            return false;
        };
        let segments: Vec<&str> = segments.split('/').filter(|s| !s.is_empty()).collect();
        self.rules.iter().any(|rule| {
            rule.allows_method(method) && rule.paths.iter().any(|p| p.matches(&segments))
        })
    }
}

/// The path percent-decoded; `None` when it does not decode to UTF-8 (no rule can allow what it
/// cannot read).
fn normalise(path: &str) -> Option<Cow<'_, str>> {
    if !path.contains('%') {
        return Some(Cow::Borrowed(path));
    }
    percent_decode_str(path).decode_utf8().ok()
}

impl Pattern {
    fn new(text: &str) -> Result<Pattern, String> {
        let Some(rest) = text.strip_prefix('/') else {
            return Err(format!("path pattern \"{text}\" must start with /"));
        };
        let mut segments = Vec::new();
        for segment in rest.split('/').filter(|s| !s.is_empty()) {
            if segment == "**" {
                segments.push(Segment::Any);
            } else if segment.contains("**") {
                return Err(format!(
                    "path pattern \"{text}\": ** must be a whole segment"
                ));
            } else if segment == "." || segment == ".." {
                return Err(format!("path pattern \"{text}\": dot segments never match"));
            } else {
                segments.push(Segment::Glob(segment.to_owned()));
            }
        }
        Ok(Pattern { segments })
    }

    fn matches(&self, path: &[&str]) -> bool {
        matches_from(&self.segments, path)
    }
}

fn matches_from(pattern: &[Segment], path: &[&str]) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        Some((Segment::Any, rest)) => (0..=path.len()).any(|skip| {
            path.get(skip..)
                .is_some_and(|remaining| matches_from(rest, remaining))
        }),
        Some((Segment::Glob(glob), rest)) => match path.split_first() {
            Some((segment, remaining)) => {
                glob_matches(glob, segment) && matches_from(rest, remaining)
            }
            None => false,
        },
    }
}

/// `*` matches any run of characters other than [`EXPRESSION_SEPARATORS`].
fn glob_matches(glob: &str, text: &str) -> bool {
    let mut parts = glob.split('*');
    let Some(first) = parts.next() else {
        return text.is_empty();
    };
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let tail: Vec<&str> = parts.collect();
    let Some((last, middle)) = tail.split_last() else {
        // No `*` at all: the whole segment is literal.
        return rest.is_empty();
    };
    for part in middle {
        // The earliest occurrence leaves the most room for what follows.
        let Some(at) = rest.find(part) else {
            return false;
        };
        let (skipped, after) = rest.split_at(at);
        if skipped.contains(EXPRESSION_SEPARATORS) {
            return false;
        }
        rest = after.get(part.len()..).unwrap_or("");
    }
    let Some(skipped) = rest.strip_suffix(last) else {
        return false;
    };
    !skipped.contains(EXPRESSION_SEPARATORS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(methods: &[&str], paths: &[&str]) -> AccessRules {
        let methods: Vec<String> = methods.iter().map(|m| m.to_string()).collect();
        let paths: Vec<String> = paths.iter().map(|p| p.to_string()).collect();
        AccessRules::new(vec![Rule::new(&methods, &paths).unwrap()])
    }

    #[test]
    fn globs_stay_inside_one_index_name() {
        let search = rules(&["GET", "POST"], &["/logs-*/_search"]);
        assert!(search.allows(&Method::GET, "/logs-2024/_search"));
        assert!(search.allows(&Method::POST, "/logs-*/_search"));
        assert!(search.allows(&Method::HEAD, "/logs-a/_search"));
        assert!(!search.allows(&Method::DELETE, "/logs-a/_search"));
        for sneaky in [
            "/logs-a,secrets/_search",
            "/logs-a%2Csecrets/_search",
            "/logs-a:secrets/_search",
            "/secrets/_search",
            "/logs-a/_search/extra",
            "/logs-a",
            "/logs-a/_doc/1",
            "/logs-%FF/_search",
        ] {
            assert!(!search.allows(&Method::GET, sneaky), "{sneaky}");
        }
        // Hops collapse empty segments and decode escapes; so does the check.
        assert!(search.allows(&Method::GET, "//logs-a//_search"));
        assert!(search.allows(&Method::GET, "/logs%2Da/_search"));
    }

    #[test]
    fn double_star_spans_segments() {
        let any = rules(&[], &["/_cluster/**"]);
        assert!(any.allows(&Method::PUT, "/_cluster"));
        assert!(any.allows(&Method::PUT, "/_cluster/settings"));
        assert!(any.allows(&Method::GET, "/_cluster/health/logs-a"));
        assert!(!any.allows(&Method::GET, "/_nodes"));
        let middle = rules(&["*"], &["/a/**/z"]);
        assert!(middle.allows(&Method::GET, "/a/z"));
        assert!(middle.allows(&Method::GET, "/a/b/c/z"));
        assert!(!middle.allows(&Method::GET, "/a/b/c"));
    }

    #[test]
    fn globs() {
        assert!(glob_matches("*", "anything-at_all"));
        assert!(glob_matches("a*b*c", "a-b-c"));
        assert!(glob_matches("a*b*c", "abbc"));
        assert!(!glob_matches("a*b*c", "a,b-c"));
        assert!(!glob_matches("a*", "a:b"));
        assert!(glob_matches("exact", "exact"));
        assert!(!glob_matches("exact", "exactly"));
        assert!(glob_matches("*-x", "a-x"));
        assert!(!glob_matches("*-x", "a-y"));
    }

    #[test]
    fn bad_rules_are_explained() {
        let none: [String; 0] = [];
        assert!(Rule::new(&none, &none)
            .unwrap_err()
            .contains("at least one"));
        let bad_method = Rule::new(&["GE T".to_owned()], &["/x".to_owned()]);
        assert!(bad_method.unwrap_err().contains("not an HTTP method"));
        assert!(Rule::new(&none, &["x".to_owned()])
            .unwrap_err()
            .contains("must start with /"));
        assert!(Rule::new(&none, &["/a**".to_owned()])
            .unwrap_err()
            .contains("whole segment"));
    }
}
