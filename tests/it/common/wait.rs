//! Bounded waits: every one fails the test, saying what it waited for, once its deadline has
//! passed, so a hang can never stall the suite.
//!
//! [`within`] waits for a signal (a notification, a task's end, a log line). The `eventually`
//! family polls, for state that settles by itself (a dropped request's guards, a connection
//! task ending, a node coming back): never instead of a signal a test can wait on.

use std::future::Future;
use std::time::Duration;

/// How often [`eventually_async`] and [`eventually_get`] ask again: each asking costs a request
/// or a file read, so less often than [`eventually`] looks.
const POLL_INTERVAL: Duration = Duration::from_millis(5);

/// Waits until `condition` holds, looking every few milliseconds; fails the test, naming
/// `what`, once `deadline` has passed. For state that settles by itself (a dropped request's
/// guards, a connection task ending), never instead of a signal a test can wait on.
pub async fn eventually(what: &str, deadline: Duration, mut condition: impl FnMut() -> bool) {
    let start = tokio::time::Instant::now();
    while !condition() {
        assert!(
            start.elapsed() < deadline,
            "not within {deadline:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// [`eventually`] for a condition that has to ask (a request, a file read): awaited afresh
/// every [`POLL_INTERVAL`] (see [`eventually_get`] for the bound).
pub async fn eventually_async<F, Fut>(what: &str, deadline: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    eventually_get(what, deadline, || {
        let holds = condition();
        async move { holds.await.then_some(()).ok_or_else(String::new) }
    })
    .await;
}

/// Waits until `check` gives a value and returns it; `Err` says what it saw instead, and the
/// last one is in the failure once `deadline` has passed. Asked afresh every
/// [`POLL_INTERVAL`]. An attempt begun before the deadline may still succeed after it, as in a
/// hand-written loop that checks the time after asking; one that takes longer than `deadline`
/// by itself fails, so the wait is over within twice `deadline` whatever happens.
pub async fn eventually_get<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let start = tokio::time::Instant::now();
    loop {
        let seen = match tokio::time::timeout(deadline, check()).await {
            Ok(Ok(value)) => return value,
            Ok(Err(seen)) => seen,
            Err(_) => format!("an attempt unanswered after {deadline:?}"),
        };
        assert!(
            start.elapsed() < deadline,
            "not within {deadline:?}: {what}{}{seen}",
            if seen.is_empty() { "" } else { "; last: " }
        );
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// `future`'s output, failing the test (naming `what`) if it takes longer than `deadline`: for
/// a wait on a signal (a notification, a task's end, a log line) that must not hang the suite.
pub async fn within<F: Future>(what: &str, deadline: Duration, future: F) -> F::Output {
    tokio::time::timeout(deadline, future)
        .await
        .unwrap_or_else(|_| panic!("not within {deadline:?}: {what}"))
}
