//! The gateway's periodic work, each on its interval and on every SIGHUP: the users files, the
//! `service_tokens` file and the certificate re-read when they changed, the failed-login
//! notices' window closed, the failure throttle swept.

use std::fmt::Display;
use std::sync::Arc;

use tokio::sync::watch;

use super::tasks::{self, Tasks};
use crate::config::{AuthThrottle, LogConfig};
use crate::state::State;
use crate::tls::server::ServerTls;

/// Spawns every watcher into `tasks`; `hangups` changes on each SIGHUP.
pub(super) fn spawn(
    tasks: &mut Tasks,
    state: &State,
    tls: Option<&ServerTls>,
    hangups: &watch::Receiver<u64>,
) {
    let config = &state.config;
    let (users, audit) = (state.users.clone(), state.audit.clone());
    let dir = config.server.data_dir.clone();
    let users_watcher = tasks::every_blocking(
        config.security.users_reload_interval,
        hangups.clone(),
        move |forced| {
            if let Some(outcome) = users.refresh(forced) {
                let error = outcome.as_ref().err().map(|e| e as &dyn Display);
                audit.users_reloaded(&dir, forced, error);
            }
        },
    );
    tasks.spawn("users watcher", users_watcher);
    let audit = state.audit.clone();
    let notices = tasks::every(
        LogConfig::FAILURE_NOTICE_INTERVAL,
        hangups.clone(),
        move |forced| {
            // A SIGHUP is no window's end.
            if !forced {
                audit.sweep();
            }
        },
    );
    tasks.spawn("failure notices", notices);
    let file_tokens = state.file_tokens.clone();
    let tokens_watcher = tasks::every_blocking(
        config.security.users_reload_interval,
        hangups.clone(),
        move |forced| file_tokens.refresh(forced),
    );
    tasks.spawn("service tokens watcher", tokens_watcher);
    let throttle = Arc::clone(state.auth.throttle());
    let sweeper = tasks::every(AuthThrottle::SWEEP_INTERVAL, hangups.clone(), move |_| {
        throttle.sweep()
    });
    tasks.spawn("failed-authentication sweeper", sweeper);
    if let (Some(settings), Some(tls)) = (&config.tls, tls) {
        let (tls, audit, cert) = (tls.clone(), state.audit.clone(), settings.cert.clone());
        let certificate =
            tasks::every_blocking(settings.reload_interval, hangups.clone(), move |forced| {
                if let Some(outcome) = tls.refresh(forced) {
                    let error = outcome.as_ref().err().map(|e| e as &dyn Display);
                    audit.certificate_reloaded(&cert, forced, error);
                }
            });
        tasks.spawn("certificate watcher", certificate);
    }
}
