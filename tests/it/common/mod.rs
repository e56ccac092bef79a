//! The shared harness: a `TestGateway` running the real gateway (`tokengate::app::Gateway`, as
//! the binary does) in-process on ephemeral ports, plain HTTP, HTTPS or both, a `FakeUpstream`
//! cluster behind it, and helpers to talk to both.
//!
//! One gateway per test, no fixed ports, nothing global; every wait is bounded.
#![allow(dead_code)]

pub mod browser;
pub mod cancel;
pub mod cli;
pub mod cluster;
mod es;
#[cfg(feature = "etcd")]
pub mod etcd;
pub mod journal;
pub mod process;
pub mod raw;
pub mod tls;
pub mod upstream;
mod wait;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use tempfile::TempDir;
use tokengate::app::Gateway;
use tokengate::config::{Config, Overrides};
use tokengate::state::State;
use tokengate::tls::server::ServerTls;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use es::{assert_response, es_error, es_forbidden, es_forbidden_service, json_of};
pub use es::{es_rejection_reason, es_unauthorized, BAD_CREDENTIALS, CHALLENGES};
pub use upstream::FakeUpstream;
pub use wait::{eventually, eventually_async, eventually_get, within};

/// The `elastic` superuser's password in every test gateway.
pub const ELASTIC_PASSWORD: &str = "elastic-test-pw";
/// The account most tests issue tokens for.
pub const FLEET: &str = "elastic/fleet-server";
/// Bound on every wait for the gateway itself (stop, join), so a hang fails instead of stalling.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// A loopback address that refuses connections while this is held: its port is bound, so no
/// other test's listener can be given it, but never listened on. (A listener bound and dropped
/// frees the port for the next test that binds port 0, which then answers in its place.)
pub struct Refusing {
    pub addr: SocketAddr,
    _socket: tokio::net::TcpSocket,
}

pub fn refusing() -> Refusing {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    Refusing {
        addr: socket.local_addr().unwrap(),
        _socket: socket,
    }
}
/// Cheap bcrypt cost for the users tests write (the gateway's own default is deliberately slow).
const TEST_BCRYPT_COST: u32 = 4;

/// A file-realm user a test wants besides `elastic`.
struct TestUser {
    name: String,
    password: String,
    roles: Vec<String>,
}

/// Configures a [`TestGateway`].
#[derive(Default)]
pub struct TestGatewayBuilder {
    upstream: Vec<String>,
    config: String,
    data_dir: Option<PathBuf>,
    users: Vec<TestUser>,
    bootstrap: bool,
    https_only: bool,
}

/// A gateway serving on `127.0.0.1:<ephemeral>` inside the test's runtime.
pub struct TestGateway {
    /// The plain-HTTP listener, or the HTTPS one for a gateway built with
    /// [`TestGatewayBuilder::https_only`].
    pub addr: SocketAddr,
    /// The HTTPS listener, when the configuration has a `[tls]` section.
    pub https_addr: Option<SocketAddr>,
    /// The admin listener (`/livez`, `/readyz`, `/metrics`), unless configured off.
    pub admin_addr: Option<SocketAddr>,
    pub state: State,
    tls: Option<ServerTls>,
    /// A client without proxies, so the environment cannot reroute test traffic.
    pub client: reqwest::Client,
    pub data_dir: PathBuf,
    /// Keeps the data directory alive when the harness made it.
    _tmp: Option<TempDir>,
    stop_tx: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl TestGatewayBuilder {
    /// The fake (or unreachable) cluster requests are forwarded to.
    pub fn upstream(mut self, addr: SocketAddr) -> Self {
        self.upstream = vec![format!("http://{addr}")];
        self
    }

    /// Several nodes of one cluster, as `--upstream` repeated.
    pub fn upstreams(mut self, addrs: &[SocketAddr]) -> Self {
        self.upstream = addrs.iter().map(|a| format!("http://{a}")).collect();
        self
    }

    /// The upstream as a full URL (scheme, authority, optional path prefix).
    pub fn upstream_url(mut self, url: &str) -> Self {
        self.upstream = vec![url.to_owned()];
        self
    }

    /// Extra configuration TOML, e.g. `[upstream]\ntimeout = "300ms"\n`.
    pub fn config(mut self, toml: &str) -> Self {
        self.config = toml.to_owned();
        self
    }

    /// Uses `dir` (kept by the test, e.g. to restart over it) instead of a fresh temporary one.
    pub fn data_dir(mut self, dir: &Path) -> Self {
        self.data_dir = Some(dir.to_owned());
        self
    }

    /// Adds a file-realm user with `roles`.
    pub fn user(mut self, name: &str, password: &str, roles: &[&str]) -> Self {
        self.users.push(TestUser {
            name: name.to_owned(),
            password: password.to_owned(),
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        });
        self
    }

    /// Serves HTTPS only (the configuration must hold a `[tls]` section); `addr` is then the
    /// HTTPS listener.
    pub fn https_only(mut self) -> Self {
        self.https_only = true;
        self
    }

    /// Lets `State::open` create `elastic` itself, as on a first start, instead of the harness
    /// writing a cheaply hashed users file.
    pub fn bootstrap(mut self) -> Self {
        self.bootstrap = true;
        self
    }

    pub async fn build(self) -> TestGateway {
        let (tmp, data_dir) = match self.data_dir {
            Some(dir) => (None, dir),
            None => {
                let tmp = tempfile::tempdir().unwrap();
                let dir = tmp.path().to_owned();
                (Some(tmp), dir)
            }
        };
        if !self.bootstrap && !data_dir.join("users").exists() {
            write_users(&data_dir, &self.users);
        }
        let listen = if self.https_only { "" } else { "127.0.0.1:0" };
        let overrides = Overrides {
            listen: Some(listen.into()),
            admin_listen: Some("127.0.0.1:0".into()),
            upstream: self.upstream,
            data_dir: Some(data_dir.clone()),
        };
        let config = Config::from_toml("test", &self.config, &overrides).unwrap();
        let gateway = Gateway::start(config, Some(ELASTIC_PASSWORD))
            .await
            .unwrap();
        let https_addr = gateway.https_addr();
        let admin_addr = gateway.admin_addr();
        let addr = gateway.http_addr().or(https_addr).unwrap();
        let (state, tls) = (gateway.state(), gateway.tls().cloned());
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let task = tokio::spawn(gateway.run(async move {
            let _ = stop_rx.await;
        }));
        TestGateway {
            addr,
            https_addr,
            admin_addr,
            state,
            tls,
            client: client(),
            data_dir,
            _tmp: tmp,
            stop_tx: Some(stop_tx),
            task: Some(task),
        }
    }
}

/// Writes `users` and `users_roles` with `elastic` (superuser) and `extra`.
fn write_users(dir: &Path, extra: &[TestUser]) {
    std::fs::create_dir_all(dir).unwrap();
    let hash = |pw: &str| bcrypt::hash(pw, TEST_BCRYPT_COST).unwrap();
    let mut users = format!("elastic:{}\n", hash(ELASTIC_PASSWORD));
    let mut roles = String::from("superuser:elastic\n");
    for user in extra {
        users.push_str(&format!("{}:{}\n", user.name, hash(&user.password)));
        for role in &user.roles {
            roles.push_str(&format!("{role}:{}\n", user.name));
        }
    }
    // Owner-only, as the gateway writes them itself (it warns about anything wider).
    for (name, text) in [("users", users), ("users_roles", roles)] {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
    }
}

/// Bound on a whole request (answer and body) of the harness's clients: far above what any test
/// needs, so that a gateway that never answers fails the test instead of stalling the suite.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(60);

/// An HTTP client that never goes through a proxy.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(REQUEST_DEADLINE)
        .build()
        .unwrap()
}

/// A client speaking HTTP/2 over plain TCP from the first byte (h2c, prior knowledge).
pub fn h2c_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(REQUEST_DEADLINE)
        .http2_prior_knowledge()
        .build()
        .unwrap()
}

/// Body sizes around each size the HTTP/2 codec and the listener's write gathering treat
/// differently: empty, under and over the codec's copy threshold (1 KiB), a frame (16 KiB),
/// the gathering's limit, and many frames.
pub const H2_BODY_SIZES: [usize; 14] = [
    0, 1, 255, 256, 1_000, 1_023, 1_024, 1_025, 5_000, 16_375, 16_384, 16_393, 70_000, 1_000_000,
];

/// POSTs a distinct body of every size in [`H2_BODY_SIZES`] to `url` at once (one connection's
/// streams, with an HTTP/2 `client`), through a gateway in front of an echoing upstream, and
/// checks that each answer is its own body, byte for byte.
pub async fn h2_bodies_come_back_whole(client: &reqwest::Client, url: &str, token: &str) {
    let sends = H2_BODY_SIZES.iter().enumerate().map(|(i, &size)| {
        let body: Vec<u8> = (0..size).map(|n| (n * 31 + i * 7) as u8).collect();
        let request = client
            .post(url)
            .bearer_auth(token)
            .header("content-type", "application/octet-stream")
            .body(body.clone());
        async move {
            let response = request.send().await.unwrap();
            assert_eq!(response.version(), reqwest::Version::HTTP_2);
            assert_eq!(response.status(), 200, "{size} bytes");
            let answer = response.bytes().await.unwrap();
            assert!(
                answer[..] == body[..],
                "the {size}-byte body came back altered"
            );
        }
    });
    futures_util::future::join_all(sends).await;
}

impl TestGateway {
    pub fn builder() -> TestGatewayBuilder {
        TestGatewayBuilder::default()
    }

    /// An HTTPS-only gateway from `toml` (which holds the `[tls]` section) in front of the
    /// upstream at `upstream_url`.
    pub async fn https(toml: &str, upstream_url: &str) -> TestGateway {
        Self::builder()
            .upstream_url(upstream_url)
            .config(toml)
            .https_only()
            .build()
            .await
    }

    /// The HTTPS listener's certificate holder, to reload it by hand.
    pub fn tls(&self) -> &ServerTls {
        self.tls
            .as_ref()
            .expect("this gateway has no [tls] listener")
    }

    /// A gateway in front of `upstream` with the default configuration.
    pub async fn start(upstream: &FakeUpstream) -> TestGateway {
        Self::builder().upstream(upstream.addr).build().await
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// A request as `elastic` (Basic).
    pub fn as_elastic(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, self.url(path))
            .header("authorization", basic_elastic())
    }

    /// A request presenting a service token.
    pub fn with_token(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
    ) -> reqwest::RequestBuilder {
        self.client
            .request(method, self.url(path))
            .header("authorization", format!("Bearer {token}"))
    }

    /// Creates token `name` of `account` through the API as `elastic` and returns its value.
    pub async fn create_token(&self, account: &str, name: &str) -> String {
        let path = format!("/_security/service/{account}/credential/token/{name}");
        let response = self.as_elastic(reqwest::Method::POST, &path).send().await;
        let (status, body) = json_of(response.unwrap()).await;
        assert_eq!(status, 200, "creating {account}/{name}: {body}");
        assert_eq!(body["created"], true);
        body["token"]["value"].as_str().unwrap().to_owned()
    }

    /// Starts a graceful stop without waiting for it (see [`TestGateway::stop`]).
    pub fn begin_stop(&mut self) {
        if let Some(stop) = self.stop_tx.take() {
            let _ = stop.send(());
        }
    }

    /// `GET` on the admin listener: status and body text.
    pub async fn admin_get(&self, path: &str) -> (u16, String) {
        let addr = self
            .admin_addr
            .expect("the admin listener is configured off");
        let response = self
            .client
            .get(format!("http://{addr}{path}"))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.text().await.unwrap())
    }

    /// Stops gracefully as the binary does on SIGTERM: drain, stop the tasks, close the store
    /// (its journal writer thread flushes and exits), so the data directory can be reopened.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop_tx.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(DEADLINE, task)
                .await
                .expect("gateway did not stop in time")
                .unwrap();
        }
    }
}

impl Drop for TestGateway {
    /// A test that ends without `stop` (or panics) must not leave the server running.
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// `Basic base64(user:password)`.
pub fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{user}:{password}")))
}

pub fn basic_elastic() -> String {
    basic("elastic", ELASTIC_PASSWORD)
}

/// Reports a test (or part of one) that did not run, where `cargo test` shows it: the harness
/// keeps a passing test's `eprintln!` output to itself, a write to the stderr handle it does not.
pub fn skipped(test: &str, why: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED: {test}: {why}");
}
