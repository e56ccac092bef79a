//! The status document: every figure of the page as one JSON value, built from what the
//! gateway already holds. `GET /status` sends it as it is; the page renders it (on the server,
//! and again in the browser after each refresh). Its fields are described in docs/status.md:
//! scripts rely on them, so a change there is a change of interface.

use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use super::history::{self, Sample};
use super::{Sources, TokenCounts};
use crate::config::StoreBackend;
use crate::proxy::nodes::Node;
use crate::state::State;

/// Throttled addresses listed by name; the rest are only counted.
const TOP_THROTTLED: usize = 5;
/// The window `auth_failures_per_minute` is measured over.
const AUTH_FAILURE_WINDOW: Duration = Duration::from_secs(60);

/// The whole document, from `state` and the tokens per account counted in it.
pub fn build(sources: &Sources, state: &State, tokens: &TokenCounts) -> Value {
    let samples = sources.history.samples();
    json!({
        "generated_at": unix(SystemTime::now()),
        "gateway": gateway(sources, state),
        "nodes": nodes(state),
        "accounts": accounts(sources, state, tokens),
        "store": store(state),
        "security": security(state, &samples),
        "history": history(&samples),
    })
}

fn gateway(sources: &Sources, state: &State) -> Value {
    let reload = sources.reloads.last().map(|r| {
        json!({
            "at": unix(r.at),
            "outcome": if r.refused.is_some() { "refused" } else { "applied" },
            "problems": r.refused,
        })
    });
    let listeners: Vec<Value> = sources
        .listeners
        .iter()
        .map(|(name, addr)| json!({ "name": name, "address": addr.to_string() }))
        .collect();
    let tls = sources.tls.as_ref().map(|tls| {
        let not_after = tls.not_after();
        let days = not_after.map(|t| (t - unix(SystemTime::now()) as i64).div_euclid(86_400));
        json!({ "subject": tls.subject(), "not_after": not_after, "days_to_expiry": days })
    });
    let requests: serde_json::Map<String, Value> = state
        .metrics
        .requests_by_outcome()
        .into_iter()
        .map(|(label, n)| (label.to_owned(), json!(n)))
        .collect();
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "started_at": unix(sources.started_at),
        "uptime_seconds": sources.started.elapsed().as_secs(),
        "config_source": state.config.source,
        "last_reload": reload,
        "listeners": listeners,
        "tls": tls,
        "client_connections": sources.connections.open.load(Ordering::Relaxed),
        "requests_total": requests,
    })
}

fn nodes(state: &State) -> Vec<Value> {
    let configured = &state.config.upstream.nodes;
    let checks = state.config.upstream.health.check.is_some();
    state
        .upstream
        .nodes()
        .iter()
        .map(|node| {
            let seed = configured.iter().any(|url| *url == node.url);
            node_entry(node, seed, checks)
        })
        .collect()
}

fn node_entry(node: &Node, configured: bool, checks: bool) -> Value {
    let health = node.health_view();
    let active_check = checks.then(|| {
        json!({
            "passing": !health.checked_down,
            "streak": health.check_streak,
        })
    });
    let last_error = health
        .last_failure
        .map(|(at, what)| json!({ "at": unix(at), "error": what }));
    json!({
        "node": node.label,
        "state": if health.up { "in" } else { "out" },
        "reason": health.reason,
        "back_in_seconds": health.back_in.map(|d| d.as_secs_f64().ceil() as u64),
        "in_flight": node.outstanding(),
        "idle_connections": node.pool.idle(),
        "ejections": node.ejections_total(),
        "last_error": last_error,
        "active_check": active_check,
        "source": if configured { "configured" } else { "sniffed" },
    })
}

fn accounts(sources: &Sources, state: &State, tokens: &TokenCounts) -> Vec<Value> {
    state
        .accounts
        .matching(None, None)
        .map(|(account, _)| {
            let figures = state.limits.figures_of(account.as_str());
            json!({
                "account": account.as_str(),
                "tokens": tokens.get(account.as_str()).copied().unwrap_or(0),
                "credential": state.upstream_auth.credential_state(account),
                "requests_per_second": sources.history.account_rate(account.as_str()).map(round),
                "requests": figures.map(|f| f.admitted),
                "in_flight": figures.map(|f| f.in_flight),
                // Statuses are not counted per account: that would cost the request path.
                "errors_4xx": Value::Null,
                "errors_5xx": Value::Null,
                "limited": figures.map_or(0, |f| f.refused_rate + f.refused_in_flight),
            })
        })
        .collect()
}

fn store(state: &State) -> Value {
    let config = &state.config.store;
    let location = state.store.location();
    let (backend, journal_bytes, endpoints) = match config.backend {
        StoreBackend::Journal => (
            "journal",
            std::fs::metadata(location).ok().map(|m| m.len()),
            None,
        ),
        StoreBackend::Etcd => ("etcd", None, Some(config.etcd.endpoints.clone())),
    };
    json!({
        "backend": backend,
        "location": location.display().to_string(),
        "tokens": state.store.len(),
        "journal_bytes": journal_bytes,
        "etcd_endpoints": endpoints,
        "staleness_seconds": state.store.staleness().map(|d| d.as_secs_f64()),
        "max_staleness_seconds": config.max_staleness.map(|d| d.as_secs_f64()),
    })
}

fn security(state: &State, samples: &[Sample]) -> Value {
    let throttle = state.auth.throttle();
    let (tracked, _) = throttle.tracked();
    let (blocked, top) = throttle.most_blocked(TOP_THROTTLED);
    let top: Vec<Value> = top
        .into_iter()
        .map(|(ip, wait)| {
            json!({ "address": ip.to_string(), "retry_after_seconds": wait.as_secs_f64().ceil() as u64 })
        })
        .collect();
    let window = (AUTH_FAILURE_WINDOW.as_secs() / history::INTERVAL.as_secs()).max(1) as usize;
    let per_minute: u64 = samples
        .iter()
        .rev()
        .take(window)
        .map(|s| s.auth_failures)
        .sum();
    let pool = state.users.password_pool();
    json!({
        "auth_failures_per_minute": per_minute,
        "auth_failures_total": state.metrics.auth_failures_total(),
        "throttled_addresses": blocked,
        "tracked_addresses": tracked,
        "throttled_top": top,
        "password_pool": { "in_use": pool.in_use(), "capacity": pool.capacity() },
    })
}

fn history(samples: &[Sample]) -> Value {
    let samples: Vec<Value> = samples
        .iter()
        .map(|s| {
            let requests: serde_json::Map<String, Value> = s
                .requests
                .iter()
                .map(|(label, rate)| ((*label).to_owned(), json!(round(*rate))))
                .collect();
            json!({
                "at": s.at,
                "requests_per_second": requests,
                "p50_ms": s.p50_ms.map(round),
                "p99_ms": s.p99_ms.map(round),
                "upstream_errors_per_second": round(s.upstream_errors),
            })
        })
        .collect();
    json!({
        "interval_seconds": history::INTERVAL.as_secs(),
        "capacity": history::CAPACITY,
        "samples": samples,
    })
}

/// Three decimals are plenty for a chart and keep the document short.
fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn unix(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
