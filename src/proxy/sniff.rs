//! Reading the cluster's nodes from `GET /_nodes/http`, as Elasticsearch's clients sniff them.

use http::uri::Authority;
use serde_json::Value;

use crate::config::NodeUrl;

/// The path asked; every node answers for the whole cluster.
pub const PATH: &str = "/_nodes/http";

/// The HTTP nodes of a `_nodes/http` answer, reached with `seed`'s scheme and path prefix.
/// Dedicated master nodes (only `master`, and `voting_only`, roles) are skipped, as the
/// clients' default filter does: they should not serve searches.
pub fn parse(body: &[u8], seed: &NodeUrl) -> Result<Vec<NodeUrl>, String> {
    let answer: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let nodes = answer
        .get("nodes")
        .and_then(Value::as_object)
        .ok_or("no \"nodes\" object")?;
    let mut found = Vec::with_capacity(nodes.len());
    for node in nodes.values() {
        if master_only(node) {
            continue;
        }
        let Some(address) = node
            .pointer("/http/publish_address")
            .and_then(Value::as_str)
        else {
            continue;
        };
        let Some(authority) = authority(address) else {
            tracing::warn!(%address, "skipping a node whose publish address cannot be used");
            continue;
        };
        let url = NodeUrl {
            scheme: seed.scheme.clone(),
            authority,
            path_prefix: seed.path_prefix.clone(),
        };
        if !found.contains(&url) {
            found.push(url);
        }
    }
    Ok(found)
}

fn master_only(node: &Value) -> bool {
    match node.get("roles").and_then(Value::as_array) {
        Some(roles) if !roles.is_empty() => roles
            .iter()
            .all(|r| matches!(r.as_str(), Some("master" | "voting_only"))),
        _ => false,
    }
}

/// `host/ip:port` (the host name when the node was bound by name: certificates name it) or
/// `ip:port`, IPv6 in brackets.
fn authority(address: &str) -> Option<Authority> {
    let (name, address) = match address.split_once('/') {
        Some((name, address)) => (name, address),
        None => ("", address),
    };
    let (ip, port) = address.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    let host = if name.is_empty() { ip } else { name };
    format!("{host}:{port}").parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::uri::Scheme;

    fn seed() -> NodeUrl {
        NodeUrl {
            scheme: Scheme::HTTPS,
            authority: Authority::from_static("es0:9200"),
            path_prefix: "/es".into(),
        }
    }

    #[test]
    fn publish_addresses_become_nodes_and_dedicated_masters_are_skipped() {
        let body = br#"{"_nodes":{"total":5},"cluster_name":"c","nodes":{
            "a":{"name":"a","roles":["data","master"],"http":{"publish_address":"10.0.0.1:9200"}},
            "b":{"name":"b","roles":["ingest"],"http":{"publish_address":"es-b.internal/10.0.0.2:9201"}},
            "c":{"name":"c","roles":["master"],"http":{"publish_address":"10.0.0.3:9200"}},
            "d":{"name":"d","roles":["master","voting_only"],"http":{"publish_address":"10.0.0.4:9200"}},
            "e":{"name":"e","roles":["data"],"http":{"publish_address":"[::1]:9202"}},
            "f":{"name":"f","roles":["data"]},
            "g":{"name":"g","http":{"publish_address":"nonsense"}}
        }}"#;
        let nodes: Vec<String> = parse(body, &seed())
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            nodes,
            [
                "https://10.0.0.1:9200/es",
                "https://es-b.internal:9201/es",
                "https://[::1]:9202/es"
            ]
        );
    }

    #[test]
    fn an_answer_without_nodes_is_an_error() {
        assert!(parse(b"{}", &seed()).is_err());
        assert!(parse(b"<html>", &seed()).is_err());
    }
}
