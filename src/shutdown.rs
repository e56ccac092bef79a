//! Turning SIGINT/SIGTERM into the shutdown future the server drains on.

/// Resolves on the first SIGINT or SIGTERM.
pub async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
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
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
