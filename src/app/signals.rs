//! Process signals: SIGTERM/SIGINT stop the gateway (it drains first), SIGHUP asks it to re-read
//! its configuration file, certificate, users and service tokens file. No signal the gateway listens for may end it abruptly.

use std::future::Future;

use tokio::sync::watch;

/// Takes over SIGINT and SIGTERM now, so from this call on they drain instead of killing the
/// process (a signal sent right after the `listening` line must not find the default action),
/// and returns what resolves on the first of them.
pub fn terminate() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    let signals = {
        use tokio::signal::unix::{signal, SignalKind};
        (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        )
    };
    async move {
        #[cfg(unix)]
        match signals {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => tracing::info!("sigterm received, shutting down"),
                    _ = int.recv() => tracing::info!("sigint received, shutting down"),
                }
            }
            _ => {
                tracing::error!("cannot install signal handlers; stop with ctrl-c only");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Takes over SIGHUP now, so from this call on it can no longer terminate the process (its
/// default action), and returns a receiver that changes on every SIGHUP together with the task
/// that feeds it.
pub fn hangups() -> (
    watch::Receiver<u64>,
    impl Future<Output = ()> + Send + 'static,
) {
    let (tx, rx) = watch::channel(0u64);
    #[cfg(unix)]
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .map_err(|error| {
            tracing::error!(%error, "cannot take over SIGHUP; reload by file change only");
        });
    let feed = async move {
        #[cfg(unix)]
        if let Ok(signal) = &mut hangup {
            while signal.recv().await.is_some() {
                tracing::info!("sighup received, reloading");
                tx.send_modify(|count| *count += 1);
            }
        }
        // Nothing to feed: keep the sender, so receivers wait instead of seeing it gone.
        let _keep = tx;
        std::future::pending::<()>().await;
    };
    (rx, feed)
}
