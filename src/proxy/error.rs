//! Why a request could not be forwarded. The service renders each as Elasticsearch's error
//! document (`service::rescue`); here they only say what went wrong, and where.

/// A forwarding failure, as the client is to be told of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// No node took the request: refused or reset connections, every node out, a node that
    /// misbehaved (502).
    #[error("the upstream cluster could not be reached")]
    Unavailable,
    /// The node did not answer within `upstream.timeout` (504).
    #[error("the upstream cluster did not answer in time")]
    Timeout,
    /// No upstream slot: the wait queue was full or the wait ran out (503).
    #[error("no upstream connection free")]
    Busy,
    /// The client's request body stalled past `client_body_timeout` (408).
    #[error("the request body stopped arriving")]
    ClientTimeout,
    /// The client's request body broke off (400).
    #[error("the request body could not be read")]
    ClientBody,
    /// A request target the node's path prefix cannot be joined with (500).
    #[error("the request target could not be built")]
    Target,
}
