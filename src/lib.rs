//! tokengate: an authentication gateway in front of Elasticsearch.
//!
//! It answers Elasticsearch's service-account token API itself, authenticates every other request
//! by its `Authorization: Bearer` token, and forwards what passes to the cluster.
//!
//! # Layout
//! The folders follow a request's path, top to bottom; each depends only on rows below its own
//! (and on `config`), never back up:
//!
//! | step | module | owns |
//! |---|---|---|
//! | start | [`cli`] → [`app`] | command line (run, reload, users, tokens); the gateway as one value: state, listeners, background tasks, signals, configuration reload, pid file, service-manager notification, the admin listener (`app::admin`) |
//! | show | [`status`] | the admin listener's status page: the JSON document, its HTML rendering, the sampled history the charts draw, the page's script and style |
//! | configure | [`config`] | typed and validated configuration from a file, `TOKENGATE_*` variables and the command line, every default as a named constant; the files it names checked |
//! | listen | [`listen`], [`tls`] | accept loop over any [`listen::Handler`], connection limits and registry, the first-request greeting, the protocol picked from the first bytes, the raw-byte framing scan, TLS, each connection's deadlines and close (`listen::drive`, its timer woken apart from the connection: `listen::side_wakes`), drain |
//! | handle | [`service`] | the pipeline every request goes through: classify → authenticate → decide → act → record; the one rescue point where every layer's error becomes Elasticsearch's document |
//! | judge | [`policy`] | the path as a normalising hop reads it; the accounts' local access rules |
//! | authenticate | [`auth`] | `Authorization` parsing, the [`auth::Authenticator`] over every realm, privileges, the per-address failure throttle |
//! | answer | [`api`] | the `/_security/service/…` endpoints and `_authenticate`; the security actions and the privileges that grant them |
//! | share | [`limits`] | each account's rate and requests in flight, the admission a forwarded request holds until its body ends, its lane in the nodes' fair queues; divided among the gateways that share the store |
//! | forward | [`proxy`], [`upstream_auth`] | node choice (power of two choices), node health, safe retries, sniffing, header rewriting, pooled upstream clients; what each account's requests carry upstream |
//! | remember | [`store`], [`file_tokens`], [`users`], [`accounts`] | the token store (the journal, or etcd shared by several gateways, which count each other); the `service_tokens` file; the file realm and its password pool; the service accounts and Elasticsearch's built-in descriptors |
//! | record | [`observe`] | metrics, the access log, the audit log and failed logins in the main log, written off the request path; the pace of progress reports on long work |
//! | speak | [`message`] | the client connection's context, request-shape checks, guarded bodies, responses, Elasticsearch's error JSON |
//! | wire | [`h1_client`] | HTTP/1.1 to a node in the request's own task: the request written, the response head read with httparse and its body's framing decided (`h1_client::codec`), the body read from the connection, which goes back to its pool at the body's end |
//! | name | [`identity`] | account ids and token names with their rules; the token wire format |
//!
//! [`state`] owns the parts a request needs (configuration, stores, realms, authenticator,
//! upstream, recorders) in one cheap-clone handle, and the cell a reload swaps it in;
//! [`atomic_file`] replaces small files crash-safely and keeps the data directory owner-only.
//! `tests/it/layout.rs` fails on an import cycle between the modules of any folder.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod accounts;
pub mod api;
pub mod app;
pub mod atomic_file;
pub mod auth;
pub mod cli;
pub mod config;
pub mod file_tokens;
pub mod h1_client;
pub mod identity;
pub mod limits;
pub mod listen;
pub mod message;
pub mod observe;
pub mod policy;
pub mod proxy;
pub mod service;
pub mod state;
pub mod status;
pub mod store;
pub mod tls;
pub mod upstream_auth;
pub mod users;
