//! Reloading the configuration, as nginx does on SIGHUP: the file is read again with the
//! command-line overrides the gateway started with; an invalid one is refused whole and the
//! running configuration stays; a valid one is applied for what can change while connections
//! are open, and what cannot (listeners, data directory, threads) is named and left as it was.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::watch;

use crate::accounts::Accounts;
use crate::config::{AccountCredential, Config, ConfigError, Env, Overrides};
use crate::state::{Live, State};
use crate::status::Reloads;

/// Where the running configuration came from, to read it again the same way.
#[derive(Debug, Clone, Default)]
pub struct ConfigSource {
    /// The file; `None`: the embedded defaults.
    pub path: Option<PathBuf>,
    /// The command line's replacements, which keep winning over the file.
    pub overrides: Overrides,
    /// The `TOKENGATE_*` variables as the process started with them.
    pub env: Env,
}

impl ConfigSource {
    pub fn load(&self) -> Result<Config, ConfigError> {
        Config::load(self.path.as_deref(), &self.overrides, &self.env)
    }
}

/// Reloads on every change of `hangups` (SIGHUP), forever; `applied` changes after every
/// reload that replaced the state, for the tasks that follow it. Each outcome is kept in
/// `reloads` for the status page.
pub async fn on_hangups(
    source: ConfigSource,
    live: Live,
    mut hangups: watch::Receiver<u64>,
    applied: watch::Sender<u64>,
    reloads: Arc<Reloads>,
) {
    while hangups.changed().await.is_ok() {
        match apply(&source, &live) {
            Ok(_) => {
                reloads.applied();
                applied.send_modify(|count| *count += 1);
            }
            Err(problems) => reloads.refused(problems),
        }
    }
}

/// Reads the configuration again and applies it; logs the outcome in one line (and the keys
/// that wait for a restart in another). `Err` says why it was refused.
fn apply(source: &ConfigSource, live: &Live) -> Result<State, String> {
    let current = live.load();
    let mut config = match source.load() {
        Ok(config) => config,
        Err(error) => return Err(refused(error.problems.join("; "))),
    };
    // What a restart would load (certificates, keys) is checked now too, as nginx does: a file
    // that could not start the gateway is not half applied.
    if let Err(error) = super::Gateway::check(&config) {
        return Err(refused(error.to_string()));
    }
    let mut restart = keep_restart_only(&current.config, &mut config);
    match Accounts::new(&config.service_accounts) {
        Ok(accounts) if format!("{accounts:?}") != format!("{:?}", current.accounts) => {
            restart.push("service_accounts (accounts added or removed, role descriptors)");
        }
        Ok(_) => {}
        Err(error) => return Err(refused(error.to_string())),
    }
    let changed = live_changes(&current.config, &config);
    let level = (config.log.level != current.config.log.level).then(|| config.log.level.clone());
    let state = match current.reload(config) {
        Ok(state) => state,
        Err(error) => return Err(refused(error.to_string())),
    };
    if let Some(level) = level {
        if let Err(error) = super::set_log_level(&level) {
            tracing::warn!(%error, "log.level not applied");
        }
    }
    live.store(&state);
    if !restart.is_empty() {
        tracing::warn!(keys = %restart.join(", "), "restart needed to apply");
    }
    let changed = if changed.is_empty() {
        "nothing".to_owned()
    } else {
        changed.join(", ")
    };
    tracing::info!(source = %state.config.source, %changed, upstream = %state.upstream.describe(), "configuration reloaded");
    Ok(state)
}

/// Logs a refused reload; returns `problems`.
fn refused(problems: String) -> String {
    tracing::error!(%problems, "configuration reload refused; the running configuration stays");
    problems
}

/// Puts back in `new` what only a restart can change, and names each such key that differed.
fn keep_restart_only(old: &Config, new: &mut Config) -> Vec<&'static str> {
    let mut restart = Vec::new();
    macro_rules! keep {
        ($($key:literal => $($field:ident).+;)*) => {$(
            if format!("{:?}", old.$($field).+) != format!("{:?}", new.$($field).+) {
                restart.push($key);
                new.$($field).+ = old.$($field).+.clone();
            }
        )*};
    }
    keep! {
        "server.listen" => server.listen;
        "server.data_dir" => server.data_dir;
        "server.workers" => server.workers;
        "server.max_connections" => server.max_connections;
        "server.max_connections_per_ip" => server.connections.per_ip;
        "server.first_request_timeout" => server.connections.first_request_timeout;
        "server.header_timeout" => server.header_timeout;
        "server.shutdown_grace" => server.shutdown_grace;
        "server.trusted_proxies" => server.trusted_proxies;
        "tls" => tls;
        "admin.listen" => admin.listen;
        "admin.client_ca" => admin.client_ca;
        "log.format" => log.format;
        "audit" => audit;
        "access_log" => access_log;
        "security.users_reload_interval" => security.users_reload_interval;
        "security.throttle" => security.throttle;
        "store" => store;
    }
    restart
}

/// The keys applied live that differ, for the reload's summary line.
fn live_changes(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut changed = Vec::new();
    macro_rules! compare {
        ($($key:literal => $($field:ident).+;)*) => {$(
            if format!("{:?}", old.$($field).+) != format!("{:?}", new.$($field).+) {
                changed.push($key);
            }
        )*};
    }
    if old.upstream.nodes != new.upstream.nodes {
        // Named as the operator most likely wrote it.
        let one = old.upstream.nodes.len() == 1 && new.upstream.nodes.len() == 1;
        changed.push(if one {
            "upstream.url"
        } else {
            "upstream.nodes"
        });
    }
    // Compared apart: `Debug` redacts credentials.
    if old.upstream.authorization != new.upstream.authorization {
        changed.push("upstream.authorization");
    }
    compare! {
        "upstream.connect_timeout" => upstream.connect_timeout;
        "upstream.timeout" => upstream.timeout;
        "upstream.pool_idle_timeout" => upstream.pool_idle_timeout;
        "upstream.pool_max_idle" => upstream.pool_max_idle;
        "upstream.tls" => upstream.tls;
        "upstream.max_connections" => upstream.max_connections;
        "upstream.max_pending" => upstream.max_pending;
        "upstream.body_timeout" => upstream.body_timeout;
        "upstream.service_credentials" => upstream.service_credentials;
        "upstream node health" => upstream.health;
        "upstream retries" => upstream.retry;
        "upstream sniffing" => upstream.sniff;
        "server.http" => server.http;
        "server.cluster_name" => server.cluster_name;
        "server.node_name" => server.node_name;
        "security.admin_roles" => security.admin_roles;
        "security.forward_users" => security.forward_users;
        "security.pass_through" => security.pass_through;
        "admin.ready_requires_upstream" => admin.ready_requires_upstream;
        "admin.require_auth" => admin.require_auth;
        "admin.metrics_require_auth" => admin.metrics_require_auth;
        "log.level" => log.level;
    }
    let configured = |c: &Config| {
        c.service_accounts
            .iter()
            .map(|a| match &a.credential {
                Some(AccountCredential::Configured(value)) => Some(value.clone()),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    if format!("{:?}", old.service_accounts) != format!("{:?}", new.service_accounts)
        || configured(old) != configured(new)
    {
        changed.push("service_accounts");
    }
    changed
}

/// Runs the current API key maker (`auto` credentials) for as long as the gateway runs. A
/// reload that replaced it stops the old one's loop here and starts the new one's, so there is
/// never more than one writing the keys file.
pub async fn api_keys(live: Live, mut applied: watch::Receiver<u64>) {
    loop {
        let keys = live.load().upstream_auth.keys().cloned();
        let run = async {
            match &keys {
                Some(keys) => Arc::clone(keys).run().await,
                None => std::future::pending().await,
            }
        };
        let replaced = async {
            loop {
                if applied.changed().await.is_err() {
                    // No more reloads: the current one runs for good.
                    std::future::pending::<()>().await;
                }
                let now = live.load();
                let same = match (now.upstream_auth.keys(), &keys) {
                    (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                    (None, None) => true,
                    _ => false,
                };
                if !same {
                    return;
                }
            }
        };
        tokio::select! {
            () = run => return,
            () = replaced => tracing::info!("upstream API keys: the reloaded credentials take over"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        Config::from_toml("test", text, &Overrides::default()).unwrap()
    }

    #[test]
    fn restart_only_keys_are_named_and_put_back() {
        let old = config("[server]\nlisten = \"127.0.0.1:1001\"\n");
        let mut new = config(
            "[server]\nlisten = \"127.0.0.1:1002\"\n[security]\nforward_users = false\n[log]\nlevel = \"debug\"\n",
        );
        assert_eq!(keep_restart_only(&old, &mut new), ["server.listen"]);
        assert_eq!(new.server.listen, old.server.listen);
        assert_eq!(
            live_changes(&old, &new),
            ["security.forward_users", "log.level"]
        );
    }
}
