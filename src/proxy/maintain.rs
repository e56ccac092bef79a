//! The background work on the nodes: active health checks and sniffing (the loop that runs
//! them lives with the gateway's other tasks).

use std::sync::Arc;

use tokio::task::JoinSet;

use super::nodes::Node;
use super::{sniff, Upstream};
use crate::config::{ActiveCheck, Sniff};

/// Most of a health check's answer read (so its connection can be reused); a longer one costs
/// the connection, not the verdict.
const CHECK_BODY_LIMIT: usize = 64 << 10;
/// Most of a `_nodes/http` answer read: a thousand-node cluster's is well under this.
const SNIFF_BODY_LIMIT: usize = 16 << 20;

impl Upstream {
    /// A handle on this upstream's node set that does not keep it alive: a reload that
    /// rebuilds the upstream makes a new set.
    pub fn node_set(&self) -> std::sync::Weak<super::nodes::NodeSet> {
        Arc::downgrade(&self.nodes)
    }

    /// Resolves when a node is ejected next.
    pub async fn ejection(&self) {
        self.nodes.ejected.notified().await;
    }

    /// One active check of every node, all at once. A node passes when it answers below 500:
    /// a 401 still shows a node that serves.
    pub async fn check(&self, check: &ActiveCheck) {
        let mut checks = JoinSet::new();
        for node in self.nodes.all().iter() {
            let (upstream, node, check) = (self.clone(), Arc::clone(node), check.clone());
            checks.spawn(async move {
                let answer = upstream
                    .get(&node, &check.path, check.timeout, CHECK_BODY_LIMIT)
                    .await;
                let passed = match answer {
                    Ok((status, _)) => status.as_u16() < 500,
                    Err(error) => {
                        tracing::debug!(node = %node.label, %error, "health check failed");
                        false
                    }
                };
                node.checked(passed, check.unhealthy_threshold, check.healthy_threshold);
            });
        }
        while checks.join_next().await.is_some() {}
    }

    /// Reads the node list from the first node that answers — nodes in rotation, then the
    /// others, then the configured seeds — and makes it the set requests go to.
    pub async fn sniff(&self, sniff: &Sniff) -> Result<usize, String> {
        let current = self.nodes.all();
        let mut asked: Vec<Arc<Node>> = current.iter().filter(|n| n.is_up()).cloned().collect();
        asked.extend(current.iter().filter(|n| !n.is_up()).cloned());
        for seed in self.seeds.iter() {
            if !asked.iter().any(|n| &n.url == seed) {
                if let Ok(node) = Node::detached(seed.clone()) {
                    asked.push(Arc::new(node));
                }
            }
        }
        let mut last_error = String::from("no node to ask");
        for node in asked {
            let answer = self
                .get(&node, sniff::PATH, sniff.timeout, SNIFF_BODY_LIMIT)
                .await;
            let body = match answer {
                Ok((status, Some(body))) if status.is_success() => body,
                Ok((status, None)) if status.is_success() => {
                    last_error = format!(
                        "{}: the answer broke off or exceeded {SNIFF_BODY_LIMIT} bytes",
                        node.label
                    );
                    continue;
                }
                Ok((status, _)) => {
                    last_error = format!("{} answered {status}", node.label);
                    continue;
                }
                Err(error) => {
                    last_error = format!("{}: {error}", node.label);
                    continue;
                }
            };
            let found = sniff::parse(&body, self.seeds.first())
                .map_err(|e| format!("{}: {e}", node.label))?;
            if found.is_empty() {
                return Err(format!("{} listed no usable HTTP node", node.label));
            }
            let count = found.len();
            self.nodes.replace(found);
            return Ok(count);
        }
        Err(last_error)
    }
}
