//! A connection run to its end under its deadlines: the first request's, `header_timeout`'s
//! quiet limit, and the registry's word to close. One timer per connection, moved on when it
//! fires; nothing is armed per request.

use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use hyper_util::server::graceful::GracefulConnection;
use tokio::time::Instant;

use super::registry::Slot;
use super::side_wakes::SideWakes;

/// Runs `connection` to its end, closing it at the first-request deadline if its client has
/// not spoken by then, and gracefully when told to close. With `quiet`, the same timer then
/// bounds how long the connection may go without a request in flight: past it, the
/// connection is shut down gracefully (an idle one closes at once, one writing a response
/// finishes it), and closed one period later if nothing was written meanwhile (a head that
/// never completes). Nothing is armed per request: the timer is moved on when it fires.
pub(super) async fn drive<C>(
    mut connection: Pin<&mut C>,
    slot: &Arc<Slot>,
    mut timer: Pin<&mut tokio::time::Sleep>,
    quiet: Option<Duration>,
) where
    C: GracefulConnection,
    C::Error: std::fmt::Display,
{
    let mut timing = Timing {
        first: timer.deadline(),
        waiting: true,
        armed: true,
        closing: false,
        quiet: quiet.map(QuietLimit::new),
    };
    if let Some(quiet) = &timing.quiet {
        timer
            .as_mut()
            .reset(timing.first.min(Instant::now() + quiet.limit));
    }
    let sides = SideWakes::new();
    let mut close = pin!(slot.told_to_close());
    loop {
        let event = poll_fn(|cx| {
            if let Poll::Ready(ended) = connection.as_mut().poll(cx) {
                return Poll::Ready(Event::Ended(ended));
            }
            sides.poll(cx, |cx| {
                if timing.armed && timer.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Event::Timer);
                }
                if !timing.closing && close.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Event::Close);
                }
                Poll::Pending
            })
        })
        .await;
        let open = match event {
            Event::Ended(ended) => {
                if let Err(error) = ended {
                    tracing::debug!(%error, "connection ended with an error");
                }
                false
            }
            Event::Timer => timing.fired(slot, timer.as_mut(), connection.as_mut()),
            Event::Close => {
                timing.closing = true;
                if slot.greeted() {
                    connection.as_mut().graceful_shutdown();
                }
                slot.greeted()
            }
        };
        if !open {
            return;
        }
    }
}

/// What [`drive`] keeps between wake-ups.
struct Timing {
    /// The first-request deadline.
    first: Instant,
    /// No request yet: the timer is the first-request deadline's.
    waiting: bool,
    /// The timer has a deadline to keep (off once the first request came and there is no
    /// `header_timeout`).
    armed: bool,
    /// The connection was asked to close: the close signal is not polled again.
    closing: bool,
    quiet: Option<QuietLimit>,
}

impl Timing {
    /// The timer fired: the connection closed (false), asked to close, or left alone, and the
    /// timer moved on.
    fn fired<C: GracefulConnection>(
        &mut self,
        slot: &Slot,
        mut timer: Pin<&mut tokio::time::Sleep>,
        connection: Pin<&mut C>,
    ) -> bool {
        if self.waiting && !slot.greeted() {
            if Instant::now() >= self.first {
                tracing::debug!("no request within first_request_timeout; closed");
                return false;
            }
            timer.as_mut().reset(self.first);
            return true;
        }
        self.waiting = false;
        let Some(quiet) = self.quiet.as_mut() else {
            self.armed = false;
            return true;
        };
        match quiet.check(slot.quiet_for(), slot.writes()) {
            Quiet::Wait(left) => timer.reset(Instant::now() + left),
            Quiet::Ask(left) => {
                if !std::mem::replace(&mut self.closing, true) {
                    tracing::debug!("no request within header_timeout; closing");
                    connection.graceful_shutdown();
                }
                timer.reset(Instant::now() + left);
            }
            Quiet::Close => {
                tracing::debug!("no complete request within header_timeout; closed");
                return false;
            }
        }
        true
    }
}

/// What woke [`drive`] to act.
enum Event<E> {
    /// The connection ended, with its outcome.
    Ended(Result<(), E>),
    /// The timer fired.
    Timer,
    /// The connection was told to close.
    Close,
}

/// `header_timeout` for one connection, checked when its timer fires.
struct QuietLimit {
    limit: Duration,
    /// The connection's write count when it was asked to close for being quiet.
    asked: Option<u64>,
}

/// What to do when the timer fires.
#[derive(Debug, PartialEq, Eq)]
enum Quiet {
    /// Not quiet for long enough: look again after this.
    Wait(Duration),
    /// Quiet for the whole limit: shut down gracefully, and look again after this.
    Ask(Duration),
    /// Asked a whole period ago and nothing went out since: a head that never completes, not
    /// a response still being written.
    Close,
}

impl QuietLimit {
    fn new(limit: Duration) -> Self {
        QuietLimit { limit, asked: None }
    }

    /// `quiet_for`: how long no request has been in flight (`None`: one is); `writes`: the
    /// connection's writes so far.
    fn check(&mut self, quiet_for: Option<Duration>, writes: u64) -> Quiet {
        let quiet_for = quiet_for.unwrap_or_default();
        if quiet_for < self.limit {
            return Quiet::Wait(self.limit - quiet_for);
        }
        if self.asked.replace(writes) == Some(writes) {
            return Quiet::Close;
        }
        Quiet::Ask(self.limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: Duration = Duration::from_secs(60);

    #[test]
    fn a_connection_in_use_or_quiet_for_less_than_the_limit_is_left_alone() {
        let mut quiet = QuietLimit::new(LIMIT);
        assert_eq!(quiet.check(None, 0), Quiet::Wait(LIMIT));
        let ten = Duration::from_secs(10);
        assert_eq!(quiet.check(Some(ten), 0), Quiet::Wait(LIMIT - ten));
    }

    #[test]
    fn a_quiet_connection_is_asked_to_close_then_closed_if_nothing_went_out() {
        let mut quiet = QuietLimit::new(LIMIT);
        assert_eq!(quiet.check(Some(LIMIT), 3), Quiet::Ask(LIMIT));
        assert_eq!(quiet.check(Some(2 * LIMIT), 3), Quiet::Close);
    }

    #[test]
    fn a_response_still_going_out_is_not_cut() {
        let mut quiet = QuietLimit::new(LIMIT);
        assert_eq!(quiet.check(Some(LIMIT), 3), Quiet::Ask(LIMIT));
        assert_eq!(quiet.check(Some(2 * LIMIT), 9), Quiet::Ask(LIMIT));
        assert_eq!(quiet.check(Some(3 * LIMIT), 9), Quiet::Close);
    }
}
