//! Service accounts: Elasticsearch's three built-in ones plus those the configuration declares.

use std::cmp::Ordering;

use serde_json::Value;

use crate::config::AccountConfig;
use crate::identity::AccountId;

/// Accounts known to the gateway, in principal order (as listings show them).
///
/// A handful of entries: a sorted vector searched in place beats any map, and lookups by the
/// parts of a path or token never build the `namespace/service` string.
#[derive(Debug, Clone)]
pub struct Accounts {
    sorted: Vec<(AccountId, Value)>,
}

impl Accounts {
    /// The built-in accounts, then configured ones (a configured account may replace a built-in
    /// account's role descriptor).
    pub fn new(configured: &[AccountConfig]) -> Result<Self, BuiltinError> {
        let mut accounts = Accounts { sorted: Vec::new() };
        for (id, descriptor) in builtin()? {
            accounts.insert(id, descriptor);
        }
        for account in configured {
            let known = accounts.contains(account.account.namespace(), account.account.service());
            match &account.role_descriptor {
                Some(descriptor) => accounts.insert(account.account.clone(), descriptor.clone()),
                // Settings for a built-in account keep its descriptor; a new account without
                // one has no privileges.
                None if known => {}
                None => accounts.insert(account.account.clone(), Value::Object(Default::default())),
            }
        }
        Ok(accounts)
    }

    fn insert(&mut self, id: AccountId, descriptor: Value) {
        match self.position(id.namespace(), id.service()) {
            Ok(i) => {
                if let Some(slot) = self.sorted.get_mut(i) {
                    slot.1 = descriptor;
                }
            }
            Err(i) => self.sorted.insert(i, (id, descriptor)),
        }
    }

    fn position(&self, namespace: &str, service: &str) -> Result<usize, usize> {
        self.sorted
            .binary_search_by(|(id, _)| principal_order(id.as_str(), namespace, service))
    }

    /// The registry's own id of `namespace/service`: cloning it does not allocate.
    pub fn get(&self, namespace: &str, service: &str) -> Option<&AccountId> {
        let i = self.position(namespace, service).ok()?;
        self.sorted.get(i).map(|(id, _)| id)
    }

    /// The registry's own id of `principal` (`namespace/service` as one string, as a token
    /// value carries it): one comparison of whole strings per step, for the per-request check.
    pub fn get_principal(&self, principal: &str) -> Option<&AccountId> {
        let i = self
            .sorted
            .binary_search_by(|(id, _)| id.as_str().cmp(principal))
            .ok()?;
        self.sorted.get(i).map(|(id, _)| id)
    }

    pub fn contains(&self, namespace: &str, service: &str) -> bool {
        self.position(namespace, service).is_ok()
    }

    /// Accounts whose namespace (and service, when given) match, with their role descriptors.
    pub fn matching<'a>(
        &'a self,
        namespace: Option<&'a str>,
        service: Option<&'a str>,
    ) -> impl Iterator<Item = (&'a AccountId, &'a Value)> + 'a {
        self.sorted.iter().filter_map(move |(id, descriptor)| {
            let wanted = namespace.is_none_or(|n| n == id.namespace())
                && service.is_none_or(|s| s == id.service());
            wanted.then_some((id, descriptor))
        })
    }
}

/// Orders `principal` against `namespace/service` as strings, without joining them.
fn principal_order(principal: &str, namespace: &str, service: &str) -> Ordering {
    let wanted = namespace
        .bytes()
        .chain(std::iter::once(b'/'))
        .chain(service.bytes());
    principal.bytes().cmp(wanted)
}

/// Why the built-in accounts could not be loaded. Only a broken build can cause it, but a gateway
/// that cannot describe the accounts it serves must refuse to start rather than serve a guess.
#[derive(Debug, thiserror::Error)]
pub enum BuiltinError {
    #[error("built-in service accounts: {0}")]
    Json(#[from] serde_json::Error),
    #[error("built-in service accounts: [{0}] is not a namespace/service account")]
    BadAccount(String),
    #[error("built-in service accounts: the document is not an object of accounts")]
    NotAnObject,
}

// The role descriptors of Elasticsearch's own service accounts, rendered as `GET
// /_security/service` shows them (`RoleDescriptor.toXContent` field order). They reflect the
// 8.9/8.10 line of `ElasticServiceAccounts.java` (`enterprise-search-server`, `fleet-server`) and
// of the `kibana_system` descriptor (`KibanaOwnedReservedRoleDescriptors.kibanaSystemRoleDescriptor`,
// the version that still grants `.fleet*` as one pattern and keeps `remote_indices` behind the
// untrusted-remote-cluster feature flag, so it is absent). Kept as data, so an update is a diff
// of JSON against Elasticsearch's source.
const BUILTIN_JSON: &str = include_str!("builtin.json");

/// The built-in accounts with their role descriptors, parsed from [`BUILTIN_JSON`] in file order.
fn builtin() -> Result<Vec<(AccountId, Value)>, BuiltinError> {
    let Value::Object(accounts) = serde_json::from_str::<Value>(BUILTIN_JSON)? else {
        return Err(BuiltinError::NotAnObject);
    };
    accounts
        .into_iter()
        .map(|(name, descriptor)| match AccountId::parse(&name) {
            Some(id) => Ok((id, descriptor)),
            None => Err(BuiltinError::BadAccount(name)),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn builtin_descriptors_parse_and_match_elasticsearch() {
        let builtin = builtin().unwrap();
        let names: Vec<&str> = builtin.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(
            names,
            [
                "elastic/enterprise-search-server",
                "elastic/fleet-server",
                "elastic/kibana"
            ]
        );
        let kibana = &builtin[2].1;
        let cluster = kibana["cluster"].as_array().unwrap();
        assert!(!cluster.contains(&json!("all")));
        assert_eq!(cluster[0], "monitor");
        assert!(cluster.contains(&json!(
            "cluster:admin/xpack/security/profile/has_privileges"
        )));
        assert_eq!(
            kibana["global"]["application"]["manage"]["applications"],
            json!(["kibana-*"])
        );
        assert_eq!(kibana["metadata"], json!({"_reserved": true}));
        let keys: Vec<&str> = kibana
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            [
                "cluster",
                "global",
                "indices",
                "applications",
                "run_as",
                "metadata",
                "transient_metadata"
            ]
        );
        let fleet = &builtin[1].1;
        assert_eq!(fleet["cluster"], json!(["monitor", "manage_own_api_key"]));
        assert_eq!(fleet["indices"][4]["names"], json!([".fleet-*"]));
        assert_eq!(fleet["indices"][4]["allow_restricted_indices"], true);
        assert_eq!(
            builtin[0].1["cluster"],
            json!(["manage", "manage_security"])
        );
    }

    #[test]
    fn builtins_and_configured_accounts_are_known() {
        let accounts = Accounts::new(&[AccountConfig {
            account: AccountId::parse("acme/ingest").unwrap(),
            role_descriptor: Some(json!({"cluster": ["monitor"]})),
            credential: None,
            access: None,
        }])
        .unwrap();
        assert!(accounts.contains("elastic", "fleet-server"));
        assert!(accounts.contains("acme", "ingest"));
        assert!(!accounts.contains("elastic", "nope"));
        assert!(!accounts.contains("elastic/fleet-server", ""));
        let id = accounts.get("elastic", "kibana").unwrap();
        assert_eq!(id.as_str(), "elastic/kibana");
        assert_eq!(accounts.get_principal("elastic/kibana"), Some(id));
        assert_eq!(
            accounts.get_principal("acme/ingest").unwrap().service(),
            "ingest"
        );
        assert!(accounts.get_principal("elastic/kibana/x").is_none());
        let elastic: Vec<&str> = accounts
            .matching(Some("elastic"), None)
            .map(|(id, _)| id.as_str())
            .collect();
        assert_eq!(
            elastic,
            [
                "elastic/enterprise-search-server",
                "elastic/fleet-server",
                "elastic/kibana"
            ]
        );
        assert_eq!(accounts.matching(None, Some("ingest")).count(), 1);
    }
}
