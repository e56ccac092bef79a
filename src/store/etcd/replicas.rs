//! This gateway's entry among the gateways that share the prefix, and how many of them are live.
//!
//! Each gateway puts `<prefix>replicas/<id>` (16 random hex digits chosen at start; its value a
//! small JSON record for operators: host, process id, start time, version) under a lease of its
//! own of [`TTL`], renewed every [`RENEW_EVERY`]. It watches `<prefix>replicas/` and counts the
//! other gateways' keys again on every change and at every renewal; the count, plus itself, is
//! what [`Replicas`] holds. A gateway that closes its store revokes its lease, which deletes its
//! key at once; one that is killed, or cut off from etcd, loses its key when the lease expires.
//!
//! A lost lease (etcd unreachable for longer than [`TTL`]) is granted again and the same key put
//! under it. While etcd cannot be reached the count stays where it was.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{
    Client, GetOptions, LeaseKeepAliveStream, LeaseKeeper, PutOptions, WatchOptions,
};
use rand::rngs::OsRng;
use rand::RngCore;
use serde::Serialize;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::conn::{self, Backoff, Conn, ATTEMPT_TIMEOUT};
use super::keys::{self, Layout};
use crate::store::replicas::Replicas;

/// The lease's life without renewal: how long a killed gateway is still counted. Short enough
/// that the survivors take over its share within seconds; long enough that a renewal lost to
/// one member's failure is retried at the next member (each attempt is bounded by
/// [`ATTEMPT_TIMEOUT`]) before the lease runs out.
pub(crate) const TTL: Duration = Duration::from_secs(6);
/// Three renewals per lease life, so one or two lost ones cost nothing.
const RENEW_EVERY: Duration = Duration::from_secs(2);
/// A member that has not confirmed a renewal for this long is given up for the next, while the
/// lease still has [`TTL`] less this to live.
const RENEW_SILENCE: Duration = Duration::from_secs(4);
/// How long a starting gateway waits for its first count before it serves: etcd has just
/// answered the token read, so this takes milliseconds, and it bounds the wait when it does not.
const FIRST_COUNT_WAIT: Duration = Duration::from_secs(2);
/// How long a closing store tries to revoke its lease; past it, the lease expires by itself.
const REVOKE_WAIT: Duration = Duration::from_secs(1);
// One or two renewals may be lost, and a silent member given up, before the lease runs out.
const _: () = assert!(RENEW_EVERY.as_secs() * 3 <= TTL.as_secs());
const _: () = assert!(RENEW_SILENCE.as_secs() + ATTEMPT_TIMEOUT.as_secs() < TTL.as_secs());

/// Hex digits of a gateway's id.
const ID_LEN: usize = 16;

/// Registers this gateway and keeps `replicas` counting the live ones until `stop` flips; the
/// returned task then revokes the lease and ends. Waits (at most [`FIRST_COUNT_WAIT`]) for the
/// first count, so a gateway that starts serving already divides by the others. Without
/// `replicas` (a store that serves no gateway) nothing is registered and the count stays 1.
pub(crate) async fn start(
    conn: &Arc<Conn>,
    layout: &Layout,
    replicas: Option<Replicas>,
    stop: watch::Receiver<bool>,
) -> Option<JoinHandle<()>> {
    let replicas = replicas?;
    let member = Member {
        conn: Arc::clone(conn),
        prefix: layout.replicas(),
        id: new_id(),
        replicas,
    };
    let (counted, first) = oneshot::channel();
    let task = tokio::spawn(member.run(stop, counted));
    if tokio::time::timeout(FIRST_COUNT_WAIT, first).await.is_err() {
        tracing::warn!("this gateway is not counted among the gateways on etcd yet; retrying");
    }
    Some(task)
}

/// One gateway's membership.
struct Member {
    conn: Arc<Conn>,
    /// `<prefix>replicas/`.
    prefix: Vec<u8>,
    /// This gateway's key is the prefix and this.
    id: String,
    replicas: Replicas,
}

/// What outlives one connection to etcd.
struct Held {
    /// The lease this gateway's key lives under, once granted: kept here, outside any future
    /// that may be dropped, so a closing store can still revoke it.
    lease: Option<i64>,
    /// Told once, after the first count.
    counted: Option<oneshot::Sender<()>>,
}

impl Member {
    async fn run(self, mut stop: watch::Receiver<bool>, counted: oneshot::Sender<()>) {
        let mut held = Held {
            lease: None,
            counted: Some(counted),
        };
        let mut backoff = Backoff::new();
        loop {
            let step = async {
                let Err(ended) = Box::pin(self.session(&mut held, &mut backoff)).await;
                tracing::warn!(
                    reason = %ended,
                    "gateway registration in etcd interrupted; renewing"
                );
                backoff.wait(None).await;
            };
            tokio::select! {
                () = step => {}
                // A dropped sender is a store gone as well.
                _ = stop.wait_for(|&stop| stop) => break,
            }
        }
        self.leave(held.lease).await;
    }

    /// Registers, then renews and recounts on one member until something fails; says what.
    async fn session(&self, held: &mut Held, backoff: &mut Backoff) -> Result<Infallible, String> {
        let (index, mut client) = match self.conn.watch_client().await {
            Ok(pair) => pair,
            Err((index, error)) => {
                self.conn.failed(index, &error).await;
                return Err(error.to_string());
            }
        };
        let (mut keeper, mut renewed) = self.lease(index, &mut client, held).await?;
        let lease = keeper.id();
        let options = PutOptions::new().with_lease(lease);
        let put = client.put(self.key(), entry(), Some(options));
        self.ask(index, put)
            .await
            .map_err(|e| format!("put: {e}"))?;
        let watched = client.watch(self.prefix.clone(), Some(WatchOptions::new().with_prefix()));
        let mut watch = self
            .ask(index, watched)
            .await
            .map_err(|e| format!("watch: {e}"))?;
        // After the watch opened: a gateway that joins later is one of its events.
        self.recount(index, &mut client, held).await?;
        backoff.reset();
        let mut confirmed = Instant::now();
        let mut renew = tokio::time::interval_at(Instant::now() + RENEW_EVERY, RENEW_EVERY);
        renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = renew.tick() => {
                    if confirmed.elapsed() > RENEW_SILENCE {
                        self.conn.failed(index, &"lease renewals unanswered").await;
                        return Err("lease renewals unanswered".to_owned());
                    }
                    keeper.keep_alive().await.map_err(|e| format!("renewal: {e}"))?;
                    self.recount(index, &mut client, held).await?;
                }
                answer = renewed.message() => match answer {
                    Ok(Some(answer)) if answer.ttl() > 0 => confirmed = Instant::now(),
                    Ok(Some(_)) => {
                        held.lease = None;
                        return Err(format!("lease {lease:x} expired"));
                    }
                    Ok(None) => return Err(self.broken(index, &"renewal stream closed").await),
                    Err(error) => return Err(self.broken(index, &error).await),
                },
                message = watch.message() => match message {
                    Ok(Some(response)) if response.canceled() => {
                        return Err(self.broken(index, &response.cancel_reason()).await);
                    }
                    Ok(Some(response)) if !response.events().is_empty() => {
                        self.recount(index, &mut client, held).await?;
                    }
                    Ok(Some(_)) => {}
                    Ok(None) => return Err(self.broken(index, &"watch stream closed").await),
                    Err(error) => return Err(self.broken(index, &error).await),
                },
            }
        }
    }

    /// The held lease, renewed now, or a new one when etcd no longer has it.
    async fn lease(
        &self,
        index: usize,
        client: &mut Client,
        held: &mut Held,
    ) -> Result<(LeaseKeeper, LeaseKeepAliveStream), String> {
        // A lease granted just now and already unknown is not asked for a third time.
        for _ in 0..2 {
            let lease = match held.lease {
                Some(lease) => lease,
                None => {
                    let ttl = i64::try_from(TTL.as_secs()).unwrap_or(i64::MAX);
                    let granted = self.ask(index, client.lease_grant(ttl, None)).await;
                    let lease = granted.map_err(|e| format!("lease grant: {e}"))?.id();
                    held.lease = Some(lease);
                    lease
                }
            };
            match self.ask(index, client.lease_keep_alive(lease)).await {
                Ok(pair) => return Ok(pair),
                Err(etcd_client::Error::LeaseKeepAliveError(_)) => {
                    tracing::info!(
                        lease = %format!("{lease:x}"),
                        "gateway lease expired; registering again"
                    );
                    held.lease = None;
                }
                Err(error) => return Err(format!("lease renewal: {error}")),
            }
        }
        Err("a lease granted just now was unknown to etcd".to_owned())
    }

    /// Counts the other gateways' keys and publishes the count with this gateway added.
    async fn recount(
        &self,
        index: usize,
        client: &mut Client,
        held: &mut Held,
    ) -> Result<(), String> {
        let options = GetOptions::new().with_prefix().with_keys_only();
        let listed = client.get(self.prefix.clone(), Some(options));
        let listed = self
            .ask(index, listed)
            .await
            .map_err(|e| format!("list: {e}"))?;
        let others = listed
            .kvs()
            .iter()
            .filter_map(|kv| id_of(&self.prefix, kv.key()))
            .filter(|&id| id != self.id)
            .count();
        let count = u32::try_from(others).unwrap_or(u32::MAX).saturating_add(1);
        let before = self.replicas.get();
        self.replicas.set(count);
        if before != count {
            tracing::info!(from = before, to = count, "replicas changed");
        }
        if let Some(counted) = held.counted.take() {
            let _ = counted.send(());
        }
        Ok(())
    }

    /// Revokes the lease, which deletes this gateway's key: the others count one fewer at once
    /// instead of after [`TTL`].
    async fn leave(&self, lease: Option<i64>) {
        let Some(lease) = lease else { return };
        let deadline = Instant::now() + REVOKE_WAIT;
        let revoke = self.conn.call(deadline, |mut client| async move {
            client.lease_revoke(lease).await
        });
        match tokio::time::timeout(REVOKE_WAIT, revoke).await {
            Ok(Ok(_)) => tracing::debug!("gateway lease revoked"),
            Ok(Err(error)) => {
                tracing::warn!(
                    %error,
                    "gateway lease not revoked; the others count this gateway until it expires"
                );
            }
            Err(_) => tracing::warn!(
                "gateway lease not revoked in time; the others count this gateway until it expires"
            ),
        }
    }

    fn key(&self) -> Vec<u8> {
        [self.prefix.as_slice(), self.id.as_bytes()].concat()
    }

    /// One request to member `index`, bounded by [`ATTEMPT_TIMEOUT`]; a failure another member
    /// may not share gives this one up. A lease etcd no longer holds is the caller's to handle.
    async fn ask<T>(
        &self,
        index: usize,
        request: impl Future<Output = Result<T, etcd_client::Error>>,
    ) -> Result<T, etcd_client::Error> {
        let answer = match tokio::time::timeout(ATTEMPT_TIMEOUT, request).await {
            Ok(answer) => answer,
            Err(_) => Err(etcd_client::Error::EndpointError(
                "no answer in time".to_owned(),
            )),
        };
        if let Err(error) = &answer {
            let lease_gone = matches!(error, etcd_client::Error::LeaseKeepAliveError(_));
            if !lease_gone && conn::retryable(error) {
                self.conn.failed(index, error).await;
            }
        }
        answer
    }

    /// Gives member `index` up for a stream that broke; returns why, for the log.
    async fn broken(&self, index: usize, why: &(dyn std::fmt::Display + Sync)) -> String {
        self.conn.failed(index, why).await;
        why.to_string()
    }
}

/// A new gateway id: random, so gateways need no coordination to choose one.
fn new_id() -> String {
    let mut bytes = [0u8; ID_LEN / 2];
    if OsRng.try_fill_bytes(&mut bytes).is_err() {
        // Unique enough without randomness: the process and the moment it started.
        let seed = (u64::from(std::process::id()) << 32) ^ keys::now_ms();
        bytes = seed.to_be_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The gateway id in a key under `prefix` (`<prefix>replicas/`); `None` for a key that is not a
/// gateway's.
fn id_of<'a>(prefix: &[u8], key: &'a [u8]) -> Option<&'a str> {
    let id = key.strip_prefix(prefix)?;
    let hex = |b: &u8| b.is_ascii_digit() || (b'a'..=b'f').contains(b);
    if id.len() != ID_LEN || !id.iter().all(hex) {
        return None;
    }
    std::str::from_utf8(id).ok()
}

/// What a gateway's key holds: for operators (`etcdctl get --prefix <prefix>replicas/`), read by
/// no gateway.
#[derive(Serialize)]
struct Entry {
    host: String,
    pid: u32,
    /// Milliseconds since the Unix epoch.
    started: u64,
    version: &'static str,
}

fn entry() -> Vec<u8> {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    let entry = Entry {
        host: host.trim().to_owned(),
        pid: std::process::id(),
        started: keys::now_ms(),
        version: env!("CARGO_PKG_VERSION"),
    };
    // Strings and numbers always serialize.
    serde_json::to_vec(&entry).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gateway_key_is_the_prefix_and_sixteen_hex_digits() {
        let prefix = Layout::new("/gw/").replicas();
        assert_eq!(prefix, b"/gw/replicas/");
        let id = new_id();
        assert_eq!(id.len(), ID_LEN);
        let key = [prefix.as_slice(), id.as_bytes()].concat();
        assert_eq!(id_of(&prefix, &key), Some(id.as_str()));
        assert_eq!(
            id_of(&prefix, b"/gw/replicas/00112233445566ff"),
            Some("00112233445566ff")
        );
        for stray in [
            b"/gw/replicas/".as_slice(),
            b"/gw/replicas/00112233445566f",
            b"/gw/replicas/00112233445566ff0",
            b"/gw/replicas/00112233445566FF",
            b"/gw/replicas/0011223344556/ff",
            b"/gw/tokens/00/a/b/c",
            b"/other/replicas/00112233445566ff",
        ] {
            assert_eq!(id_of(&prefix, stray), None, "{}", stray.escape_ascii());
        }
        assert_ne!(new_id(), new_id());
    }

    #[test]
    fn an_entry_tells_operators_which_process_it_is() {
        let entry: serde_json::Value = serde_json::from_slice(&entry()).unwrap();
        assert_eq!(entry["pid"], std::process::id());
        assert_eq!(entry["version"], env!("CARGO_PKG_VERSION"));
        assert!(
            entry["host"].is_string() && entry["started"].as_u64() > Some(0),
            "{entry}"
        );
    }
}
