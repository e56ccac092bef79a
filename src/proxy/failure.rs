//! Why an upstream request failed, in words an operator can act on, and a log that a dead
//! cluster cannot flood: one line per cause per [`UpstreamConfig::FAILURE_LOG_INTERVAL`], the
//! lines held back counted into the next.

use std::error::Error as StdError;
use std::sync::Mutex;
use std::time::Instant;

use crate::config::UpstreamConfig;

/// What went wrong on the way to the cluster, as far as the error chain tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    ConnectionRefused,
    /// The upstream's host name did not resolve.
    Dns,
    /// The upstream's certificate was not accepted (unknown CA, wrong name, expired, pin).
    TlsVerification,
    /// The TLS handshake failed for another reason (versions, ciphers, alerts).
    Tls,
    /// Connecting took longer than `upstream.connect_timeout`.
    ConnectTimeout,
    /// No response headers within `upstream.timeout`.
    ResponseTimeout,
    /// The connection was reset or closed before a response arrived.
    Reset,
    /// Every node was out of rotation and each one's probe was taken.
    NoNode,
    Other,
}

impl Cause {
    const ALL: usize = 9;

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ConnectionRefused => "connection refused",
            Self::Dns => "dns lookup failed",
            Self::TlsVerification => "tls certificate verification failed",
            Self::Tls => "tls handshake failed",
            Self::ConnectTimeout => "connect timeout",
            Self::ResponseTimeout => "response timeout",
            Self::Reset => "connection reset",
            Self::NoNode => "every upstream node is out of rotation",
            Self::Other => "request failed",
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    /// Walks the source chain of a pooled-client error. `io::Error::source` skips the error it
    /// wraps, so each one's inner error is looked at too: that is where rustls's is.
    pub fn of(error: &(dyn StdError + 'static)) -> Cause {
        let mut next: Option<&(dyn StdError + 'static)> = Some(error);
        while let Some(cause) = next {
            // hyper-util's connector error is private; its message is the only handle on it.
            if cause.to_string() == "dns error" {
                return Cause::Dns;
            }
            if let Some(tls) = cause.downcast_ref::<rustls::Error>() {
                return tls_cause(tls);
            }
            if let Some(io) = cause.downcast_ref::<std::io::Error>() {
                if let Some(tls) = io
                    .get_ref()
                    .and_then(|inner| inner.downcast_ref::<rustls::Error>())
                {
                    return tls_cause(tls);
                }
                use std::io::ErrorKind as Kind;
                match io.kind() {
                    Kind::ConnectionRefused => return Cause::ConnectionRefused,
                    Kind::TimedOut => return Cause::ConnectTimeout,
                    Kind::ConnectionReset
                    | Kind::ConnectionAborted
                    | Kind::BrokenPipe
                    | Kind::UnexpectedEof => return Cause::Reset,
                    _ => {}
                }
            }
            if let Some(hyper) = cause.downcast_ref::<hyper::Error>() {
                if hyper.is_incomplete_message() || hyper.is_closed() || hyper.is_canceled() {
                    return Cause::Reset;
                }
            }
            next = cause.source();
        }
        Cause::Other
    }
}

fn tls_cause(error: &rustls::Error) -> Cause {
    match error {
        rustls::Error::InvalidCertificate(_) => Cause::TlsVerification,
        _ => Cause::Tls,
    }
}

/// Per cause: when its last line was written and how many were held back since.
#[derive(Debug, Default)]
pub struct FailureLog {
    windows: Mutex<[(Option<Instant>, u64); Cause::ALL]>,
}

impl FailureLog {
    /// Logs `cause` at `warn` naming `upstream` (`scheme://host:port`), unless a line for the
    /// same cause was written within the interval; then it is only counted.
    pub fn report(&self, cause: Cause, upstream: &str, error: &dyn std::fmt::Display) {
        let suppressed = {
            let mut windows = self
                .windows
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let (last, held) = &mut windows[cause.index()];
            let now = Instant::now();
            match last {
                Some(at) if now.duration_since(*at) < UpstreamConfig::FAILURE_LOG_INTERVAL => {
                    *held += 1;
                    return;
                }
                _ => {
                    *last = Some(now);
                    std::mem::take(held)
                }
            }
        };
        tracing::warn!(
            cause = cause.as_str(),
            %upstream,
            %error,
            suppressed,
            "upstream request failed: {}",
            cause.as_str()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_kinds_name_their_cause() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(Cause::of(&refused), Cause::ConnectionRefused);
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert_eq!(Cause::of(&reset), Cause::Reset);
        let other = std::io::Error::other("weird");
        assert_eq!(Cause::of(&other), Cause::Other);
    }

    #[test]
    fn a_rustls_error_inside_an_io_error_is_found() {
        let bad_cert = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        assert_eq!(Cause::of(&bad_cert), Cause::TlsVerification);
        let alert = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::HandshakeNotComplete,
        );
        assert_eq!(Cause::of(&alert), Cause::Tls);
    }

    #[test]
    fn repeats_within_the_interval_are_counted_not_logged() {
        let log = FailureLog::default();
        log.report(Cause::Reset, "http://x:1", &"first");
        log.report(Cause::Reset, "http://x:1", &"second");
        log.report(Cause::Reset, "http://x:1", &"third");
        log.report(Cause::Dns, "http://x:1", &"other cause");
        let windows = log.windows.lock().unwrap();
        assert_eq!(windows[Cause::Reset.index()].1, 2);
        assert_eq!(windows[Cause::Dns.index()].1, 0);
    }
}
