//! The loop that keeps the upstream's nodes current: active health checks, sniffing and the
//! closing of connections idle too long, as the configuration of the moment says. It follows [`Live`]: after a reload it works on the
//! new upstream with the new settings.

use std::sync::Weak;
use std::time::Duration;

use tokio::time::Instant;

use crate::config::Sniff;
use crate::proxy::nodes::NodeSet;
use crate::state::Live;

/// How often the loop looks at the settings when nothing is due sooner.
const IDLE_TICK: Duration = Duration::from_secs(1);

/// Runs until cancelled: checks and sniffs as the current configuration says.
pub async fn maintain(live: Live) {
    let mut checked: Option<Instant> = None;
    let mut sniffed: Option<Instant> = None;
    // Sniffing on start belongs to each upstream built (a reload that changes the nodes builds
    // a new one): remembered by the node set it was done for.
    let mut started_for: Weak<NodeSet> = Weak::new();
    let mut failed = false;
    loop {
        let state = live.load();
        let upstream = state.upstream.clone();
        let config = &state.config.upstream;
        upstream.sweep_idle();
        if let Some(check) = &config.health.check {
            if due(checked, check.interval) {
                checked = Some(Instant::now());
                upstream.check(check).await;
            }
        }
        if let Some(sniff) = &config.sniff {
            let fresh = !started_for.ptr_eq(&upstream.node_set());
            let periodic = sniff.interval.is_some_and(|i| due(sniffed, i));
            let on_failure = failed && due(sniffed, Sniff::MIN_SPACING);
            if (fresh && sniff.on_start) || periodic || on_failure {
                sniffed = Some(Instant::now());
                failed = false;
                match upstream.sniff(sniff).await {
                    Ok(count) => tracing::debug!(nodes = count, "sniffed the cluster's nodes"),
                    Err(error) => {
                        tracing::warn!(%error, "sniffing the cluster's nodes failed; keeping the current ones")
                    }
                }
            }
            if fresh {
                started_for = upstream.node_set();
            }
        }
        let tick = [
            config.health.check.as_ref().map(|c| c.interval),
            config.sniff.as_ref().and_then(|s| s.interval),
        ]
        .into_iter()
        .flatten()
        .fold(IDLE_TICK, Duration::min);
        let on_failure = config.sniff.as_ref().is_some_and(|s| s.on_failure);
        drop(state);
        tokio::select! {
            () = tokio::time::sleep(tick) => {}
            () = upstream.ejection(), if on_failure => failed = true,
        }
    }
}

fn due(last: Option<Instant>, every: Duration) -> bool {
    last.is_none_or(|at| at.elapsed() >= every)
}
