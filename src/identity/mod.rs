//! Who a service token belongs to: typed account ids and token names, the one place their
//! spelling rules live, and the token's wire format ([`token`]).
//!
//! The configuration (declaring accounts), the router (reading them from the path), the token
//! store (keying tokens by `namespace/service/name`) and the authenticator (naming the caller) all
//! speak of the same things; these types keep them from each building and splitting strings of
//! their own.

pub mod token;

use std::fmt;
use std::sync::Arc;

/// A service account, `namespace/service`.
///
/// Cloning is a reference-count increment: the account registry hands out its own copy, so the
/// per-request identity of a token never allocates for its account.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AccountId {
    /// `namespace/service`, as Elasticsearch prints the principal.
    principal: Arc<str>,
    /// Where the namespace ends (the separating `/`).
    split: usize,
}

impl AccountId {
    /// The account `namespace/service` as a request names it, existing or not. A part may hold
    /// a `/` (a percent-encoded one in a path): the split position is kept, never re-derived.
    /// Declared accounts come from [`AccountId::parse`], so such an id never matches one.
    pub fn new(namespace: &str, service: &str) -> AccountId {
        AccountId {
            principal: Arc::from(format!("{namespace}/{service}")),
            split: namespace.len(),
        }
    }

    /// Reads `namespace/service` as the configuration and token values spell it: exactly one
    /// `/`, and each part printable ASCII without spaces.
    pub fn parse(text: &str) -> Option<AccountId> {
        let (namespace, service) = text.split_once('/')?;
        if !is_valid_account_part(namespace) || !is_valid_account_part(service) {
            return None;
        }
        Some(AccountId::new(namespace, service))
    }

    pub fn namespace(&self) -> &str {
        self.principal.get(..self.split).unwrap_or_default()
    }

    pub fn service(&self) -> &str {
        self.principal.get(self.split + 1..).unwrap_or_default()
    }

    /// `namespace/service`.
    pub fn as_str(&self) -> &str {
        &self.principal
    }

    /// The store's key for token `name` of this account: `namespace/service/name`.
    pub fn qualify(&self, name: &TokenName) -> String {
        format!("{}/{}", self.principal, name.as_str())
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.principal)
    }
}

impl fmt::Debug for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AccountId({})", self.principal)
    }
}

/// A namespace or service name in the configuration or a token value: non-empty printable ASCII
/// without spaces or `/`.
pub fn is_valid_account_part(part: &str) -> bool {
    !part.is_empty() && part.bytes().all(|b| b.is_ascii_graphic() && b != b'/')
}

/// Longest token name Elasticsearch accepts.
pub const MAX_TOKEN_NAME_LEN: usize = 256;

/// A token name that satisfies Elasticsearch's rule: 1–256 characters of `[A-Za-z0-9_-]`, not
/// starting with `_`.
///
/// Shared, not owned: a connection's memo hands a clone of its token's identity to every
/// request, and a clone is then a count, not an allocation and a copy.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TokenName(Arc<str>);

impl TokenName {
    /// `Err` carries Elasticsearch's validation message for `name`, verbatim.
    pub fn new(name: &str) -> Result<TokenName, InvalidTokenName> {
        if is_valid_token_name(name) {
            Ok(TokenName(Arc::from(name)))
        } else {
            Err(InvalidTokenName(name.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TokenName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for TokenName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenName({})", self.0)
    }
}

/// Elasticsearch's token name rule.
pub fn is_valid_token_name(name: &str) -> bool {
    let ok = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
    (1..=MAX_TOKEN_NAME_LEN).contains(&name.len()) && !name.starts_with('_') && name.bytes().all(ok)
}

/// A name that broke the rule; its `Display` is Elasticsearch's validation reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidTokenName(pub String);

impl InvalidTokenName {
    /// The bare message, as Elasticsearch's `Validation.formatInvalidServiceTokenNameErrorMessage`
    /// words it: what an `IllegalArgumentException` carries, one numbered line of a validation
    /// failure, and what the service-tokens CLI prints.
    pub fn reason(&self) -> String {
        format!(
            "invalid service token name [{}]. service account token name must have at least 1 \
             character and at most 256 characters that are alphanumeric (A-Z, a-z, 0-9) or hyphen (-) or underscore \
             (_). It must not begin with an underscore (_).",
            self.0
        )
    }
}

impl fmt::Display for InvalidTokenName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Validation Failed: 1: {};", self.reason())
    }
}

impl std::error::Error for InvalidTokenName {}

/// Where a token is defined, as `_authenticate` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenSource {
    /// Created through the token API and kept in the gateway's journal (Elasticsearch keeps
    /// these in its security index, hence the name it reports).
    Index,
    /// Defined in the `service_tokens` file of the data directory.
    File,
}

impl TokenSource {
    /// The `token.type` Elasticsearch reports for this source.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenSource::Index => "_service_account_index",
            TokenSource::File => "_service_account_file",
        }
    }
}

/// The service token a request authenticated with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenIdentity {
    pub account: AccountId,
    pub name: TokenName,
    pub source: TokenSource,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_parts_are_kept_apart() {
        let id = AccountId::parse("elastic/fleet-server").unwrap();
        assert_eq!(
            (id.namespace(), id.service(), id.as_str()),
            ("elastic", "fleet-server", "elastic/fleet-server")
        );
        // From a path, a part may hold a decoded `/`: the split stays where it was.
        let odd = AccountId::new("a/b", "c");
        assert_eq!((odd.namespace(), odd.service()), ("a/b", "c"));
        for bad in ["", "a", "a/", "/b", "a/b/c", "a b/c", "é/c"] {
            assert!(AccountId::parse(bad).is_none(), "{bad}");
        }
        let name = TokenName::new("t1").unwrap();
        assert_eq!(id.qualify(&name), "elastic/fleet-server/t1");
    }

    #[test]
    fn token_name_rule_edges() {
        assert!(is_valid_token_name("a"));
        assert!(is_valid_token_name(&"a".repeat(256)));
        assert!(!is_valid_token_name(&"a".repeat(257)));
        assert!(!is_valid_token_name(""));
        assert!(!is_valid_token_name("_a"));
        assert!(is_valid_token_name("-a_b"));
        assert!(!is_valid_token_name("é"));
        assert!(!is_valid_token_name("a/b"));
        let error = TokenName::new("_x").unwrap_err().to_string();
        assert!(error.starts_with("Validation Failed: 1: invalid service token name [_x]."));
    }
}
