//! Service accounts: Elasticsearch's three built-in ones plus those the configuration declares.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::config::AccountConfig;

/// Accounts known to the gateway, keyed `namespace/service`, in name order (as listings show them).
#[derive(Debug, Clone)]
pub struct Accounts {
    by_name: BTreeMap<String, Value>,
}

impl Accounts {
    /// The built-in accounts, then configured ones (a configured account may replace a built-in
    /// account's role descriptor).
    pub fn new(configured: &[AccountConfig]) -> Self {
        let mut by_name = BTreeMap::new();
        for (name, descriptor) in builtin() {
            by_name.insert(name.to_owned(), descriptor);
        }
        for account in configured {
            by_name.insert(account.account.clone(), account.role_descriptor.clone());
        }
        Accounts { by_name }
    }

    pub fn contains(&self, account: &str) -> bool {
        self.by_name.contains_key(account)
    }

    /// Accounts whose namespace (and service, when given) match, with their role descriptors.
    pub fn matching<'a>(
        &'a self,
        namespace: Option<&'a str>,
        service: Option<&'a str>,
    ) -> impl Iterator<Item = (&'a str, &'a Value)> + 'a {
        self.by_name.iter().filter_map(move |(name, descriptor)| {
            let (ns, svc) = name.split_once('/')?;
            let wanted = namespace.is_none_or(|n| n == ns) && service.is_none_or(|s| s == svc);
            wanted.then_some((name.as_str(), descriptor))
        })
    }
}

/// A namespace or service name: what Elasticsearch accepts in the path (non-empty, no `/`,
/// printable ASCII without spaces).
pub fn is_valid_account_part(part: &str) -> bool {
    !part.is_empty() && part.bytes().all(|b| b.is_ascii_graphic() && b != b'/')
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
            account: "acme/ingest".into(),
            role_descriptor: json!({"cluster": ["monitor"]}),
        }]);
        assert!(accounts.contains("elastic/fleet-server"));
        assert!(accounts.contains("acme/ingest"));
        assert!(!accounts.contains("elastic/nope"));
        let elastic: Vec<&str> = accounts
            .matching(Some("elastic"), None)
            .map(|(n, _)| n)
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
