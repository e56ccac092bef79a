//! Connections per client address, and the answer a refused connection gets.

use std::io::{Read, Write};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use dashmap::DashMap;
use tokio::net::TcpStream;

use crate::message::error::ApiError;
use crate::message::response;

/// Live connections per client address, across every listener.
///
/// Sharded, so connection tasks ending on other threads rarely wait for the accept loop; a
/// shard is locked only inside `admit` and a guard's drop, never across an `.await`.
pub(super) struct PerAddress {
    limit: usize,
    counts: DashMap<IpAddr, usize>,
}

/// One admitted connection's share of its address's count; gives it back when dropped.
pub(super) struct AddressGuard {
    owner: Arc<PerAddress>,
    ip: IpAddr,
}

impl PerAddress {
    pub(super) fn new(limit: usize) -> Arc<Self> {
        Arc::new(PerAddress {
            limit,
            counts: DashMap::new(),
        })
    }

    /// Counts a new connection from `ip`, or `None` when the address already holds `limit`.
    pub(super) fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<AddressGuard> {
        // A dual-stack listener sees IPv4 clients as `::ffff:a.b.c.d`: one client, one count.
        let ip = ip.to_canonical();
        let mut count = self.counts.entry(ip).or_insert(0);
        if *count >= self.limit {
            return None;
        }
        *count += 1;
        drop(count);
        Some(AddressGuard {
            owner: self.clone(),
            ip,
        })
    }

    /// Connections currently counted for `ip`.
    #[cfg(test)]
    fn count(&self, ip: IpAddr) -> usize {
        self.counts.get(&ip).map_or(0, |count| *count)
    }
}

impl Drop for AddressGuard {
    fn drop(&mut self) {
        // Zero entries go, so the map holds only addresses with open connections.
        self.owner.counts.remove_if_mut(&self.ip, |_, count| {
            *count = count.saturating_sub(1);
            *count == 0
        });
    }
}

/// Why a connection is turned away as soon as it is accepted.
#[derive(Debug, Clone, Copy)]
pub(super) enum Refusal {
    /// Its address already holds `max_connections_per_ip`.
    PerAddress,
    /// Every slot is taken and none is idle enough to give up.
    Full,
}

/// The HTTP/1.1 answers written to refused plain-HTTP connections, built once per server.
pub(super) struct Refusals {
    per_address: Vec<u8>,
    full: Vec<u8>,
    /// Refusals so far; logged at powers of two, so a flood costs a few log lines, not one each.
    refused: AtomicU64,
}

/// Seconds a refused client is asked to wait: a slot frees as soon as any request ends.
const RETRY_AFTER_SECS: u64 = 1;
/// Reads of what a refused client already sent, at most, before closing (see [`Refusals::refuse`]).
const DRAIN_READS: usize = 4;

impl Refusals {
    pub(super) fn new(per_ip: usize, max_connections: usize) -> Self {
        Refusals {
            per_address: answer(format!(
                "too many connections from this client address: at most [{per_ip}] are served \
                 at once (server.max_connections_per_ip)"
            )),
            full: answer(format!(
                "the gateway serves its limit of [{max_connections}] connections and none of them \
                 is idle (server.max_connections)"
            )),
            refused: AtomicU64::new(0),
        }
    }

    /// Closes `stream` at once. A plain-HTTP client first gets a 429 in Elasticsearch's shape,
    /// the answer its client library already retries with backoff; a TLS client is only closed,
    /// since answering it would mean a handshake, the very work being refused.
    ///
    /// Never waits: what the client already sent is read (so the close is a FIN, not an RST
    /// that could destroy the answer in flight) and the answer written without blocking, both
    /// straight on the socket.
    pub(super) fn refuse(&self, stream: TcpStream, tls: bool, why: Refusal, ip: IpAddr) {
        let refused = self.refused.fetch_add(1, Ordering::Relaxed) + 1;
        if refused.is_power_of_two() {
            tracing::warn!(%ip, ?why, refused, "connection refused at a limit (logged at powers of two)");
        } else {
            tracing::debug!(%ip, ?why, "connection refused at a limit");
        }
        if tls {
            return;
        }
        // Tokio only reads a socket it has seen become ready; this one is brand new.
        let Ok(mut stream) = stream.into_std() else {
            return;
        };
        let mut scratch = [0u8; 1024];
        for _ in 0..DRAIN_READS {
            match stream.read(&mut scratch) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        let answer = match why {
            Refusal::PerAddress => &self.per_address,
            Refusal::Full => &self.full,
        };
        let _ = stream.write(answer);
    }
}

/// A complete `429 Too Many Requests` response that closes the connection.
fn answer(reason: String) -> Vec<u8> {
    let error = ApiError::TooManyRequests {
        reason,
        retry_after: RETRY_AFTER_SECS,
    };
    let body = response::to_bytes(&error.to_json(), false);
    let mut bytes = format!(
        "HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\n\
         x-elastic-product: Elasticsearch\r\nx-tokengate: gateway\r\nretry-after: {RETRY_AFTER_SECS}\r\n\
         connection: close\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    bytes.extend_from_slice(&body);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_holds_at_most_its_limit_and_gets_slots_back() {
        let limits = PerAddress::new(2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let first = limits.admit(a).unwrap();
        let _second = limits.admit(a).unwrap();
        assert!(limits.admit(a).is_none());
        let _other = limits.admit(b).unwrap();
        drop(first);
        assert_eq!(limits.count(a), 1);
        assert!(limits.admit(a).is_some());
    }

    #[test]
    fn empty_entries_are_removed() {
        let limits = PerAddress::new(2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        drop(limits.admit(a).unwrap());
        assert!(limits.counts.is_empty());
    }

    #[test]
    fn mapped_ipv4_counts_as_ipv4() {
        let limits = PerAddress::new(1);
        let _v4 = limits.admit("10.0.0.1".parse().unwrap()).unwrap();
        assert!(limits.admit("::ffff:10.0.0.1".parse().unwrap()).is_none());
    }

    #[test]
    fn the_answer_is_a_complete_429() {
        let bytes = answer("slow down".into());
        let text = String::from_utf8(bytes).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 429 Too Many Requests\r\n"));
        assert!(head.contains("\r\nconnection: close"));
        assert!(head.contains(&format!("\r\ncontent-length: {}", body.len())));
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["status"], 429);
        assert_eq!(json["error"]["type"], "es_rejected_execution_exception");
    }
}
