//! Service accounts: Elasticsearch's three built-in ones plus those the configuration declares.

use std::cmp::Ordering;

use serde_json::{json, Value};

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
    pub fn new(configured: &[AccountConfig]) -> Self {
        let mut accounts = Accounts { sorted: Vec::new() };
        for (name, descriptor) in builtin() {
            if let Some(id) = AccountId::parse(name) {
                accounts.insert(id, descriptor);
            }
        }
        for account in configured {
            let known = accounts.contains(account.account.namespace(), account.account.service());
            match &account.role_descriptor {
                Some(descriptor) => accounts.insert(account.account.clone(), descriptor.clone()),
                // Settings for a built-in account keep its descriptor; a new account without
                // one has no privileges.
                None if known => {}
                None => accounts.insert(account.account.clone(), json!({})),
            }
        }
        accounts
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

/// The role descriptors Elasticsearch gives its built-in service accounts (abridged to the
/// privileges that matter to a reader of `GET /_security/service`).
fn builtin() -> [(&'static str, Value); 3] {
    [
        (
            "elastic/enterprise-search-server",
            json!({
                "cluster": ["manage", "manage_security"],
                "indices": [{
                    "names": [".ent-search-*", ".monitoring-ent-search-*", "metricbeat-ent-search-*",
                              "enterprise-search-*", "logs-app_search.analytics-default",
                              "logs-elastic_analytics.events-*", "logs-app_search.search_relevance_suggestions-default",
                              "logs-crawler-default", "logs-elastic_crawler-default",
                              "logs-workplace_search.analytics-default", "logs-workplace_search.content_events-default",
                              ".elastic-connectors*"],
                    "privileges": ["manage", "read", "write"],
                    "allow_restricted_indices": false
                }],
                "applications": [], "run_as": [], "metadata": {}, "transient_metadata": {"enabled": true}
            }),
        ),
        (
            "elastic/fleet-server",
            json!({
                "cluster": ["monitor", "manage_own_api_key", "read_fleet_secrets"],
                "indices": [
                    {"names": ["logs-*", "metrics-*", "traces-*", ".logs-endpoint.diagnostic.collection-*",
                               ".logs-endpoint.action.responses-*", ".logs-endpoint.heartbeat-*"],
                     "privileges": ["write", "create_index", "auto_configure"], "allow_restricted_indices": false},
                    {"names": ["profiling-*"], "privileges": ["read", "write"], "allow_restricted_indices": false},
                    {"names": [".fleet-secrets*"], "privileges": ["read"], "allow_restricted_indices": true},
                    {"names": [".fleet-actions"], "privileges": ["read", "auto_configure"], "allow_restricted_indices": true},
                    {"names": [".fleet-agents", ".fleet-actions-results", ".fleet-servers", ".fleet-policies",
                               ".fleet-policies-leader", ".fleet-enrollment-api-keys", ".fleet-artifacts"],
                     "privileges": ["read", "write", "monitor", "create_index", "auto_configure", "maintenance"],
                     "allow_restricted_indices": true}
                ],
                "applications": [{"application": "kibana-*", "privileges": ["reserved_fleet-setup"], "resources": ["*"]}],
                "run_as": [], "metadata": {}, "transient_metadata": {"enabled": true}
            }),
        ),
        (
            "elastic/kibana",
            json!({
                "cluster": ["all"],
                "indices": [
                    {"names": [".kibana*", ".reporting-*"], "privileges": ["all"], "allow_restricted_indices": true},
                    {"names": [".monitoring-*"], "privileges": ["read", "read_cross_cluster"], "allow_restricted_indices": false},
                    {"names": [".management-beats"], "privileges": ["create_index", "read", "write"], "allow_restricted_indices": false},
                    {"names": [".ml-anomalies*", ".ml-stats-*"], "privileges": ["read"], "allow_restricted_indices": false},
                    {"names": [".ml-annotations*", ".ml-notifications*"], "privileges": ["read", "write"], "allow_restricted_indices": false},
                    {"names": ["apm-*", "logs-apm*", "metrics-apm*", "traces-apm*"], "privileges": ["read", "read_cross_cluster"], "allow_restricted_indices": false},
                    {"names": [".apm-agent-configuration", ".apm-custom-link", ".apm-source-map"], "privileges": ["all"], "allow_restricted_indices": false},
                    {"names": [".fleet-*"], "privileges": ["all"], "allow_restricted_indices": true}
                ],
                "applications": [{"application": "kibana-*", "privileges": ["all"], "resources": ["*"]}],
                "run_as": [], "metadata": {}, "transient_metadata": {"enabled": true}
            }),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_and_configured_accounts_are_known() {
        let accounts = Accounts::new(&[AccountConfig {
            account: AccountId::parse("acme/ingest").unwrap(),
            role_descriptor: Some(json!({"cluster": ["monitor"]})),
            credential: None,
            access: None,
        }]);
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
