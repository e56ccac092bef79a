//! tokengate: an authentication gateway in front of Elasticsearch.
//!
//! It answers Elasticsearch's service-account token API itself, authenticates every other request
//! by its `Authorization: Bearer` token, and forwards what passes to the cluster.
//!
//! # Layout
//! The modules follow a request's path:
//!
//! | step | module | owns |
//! |---|---|---|
//! | start | [`cli`] → [`app`] | command line (run, reload, users, tokens); the gateway as one value: state, listeners, background tasks, signals, configuration reload, pid file, service-manager notification |
//! | configure | [`config`] | typed and validated configuration from a file, `TOKENGATE_*` variables and the command line, every default as a named constant; the files it names checked |
//! | listen | [`server`], [`tls`] | accept loop over any [`server::Handler`], connection limit, TLS, drain |
//! | route | [`service`], [`framing`], [`path`] | the gateway's handler: API vs. forwarding, errors to responses; the path as a normalising hop reads it |
//! | authenticate | [`auth`], [`throttle`] | `Authorization` parsing, the bearer check naming its token, privileges; failed attempts per client address |
//! | answer | [`api`] | the `/_security/service/…` endpoints and `_authenticate`; the security actions and the privileges that grant them |
//! | forward | [`proxy`] | node choice (power of two choices), node health, safe retries, sniffing, header rewriting, pooled upstream clients, 502/504 and their causes in the log |
//! | remember | [`store`], [`file_tokens`], [`users`], [`accounts`] | the token store (the journal, or etcd shared by several gateways); the `service_tokens` file; the file realm and its password pool; the service accounts and Elasticsearch's built-in descriptors |
//! | name | [`identity`], [`token`] | account ids and token names with their rules; the token wire format |
//! | render | [`error`], [`response`] | Elasticsearch's error JSON, response bodies, `?pretty` as a node lays it out |
//! | record | [`audit`], [`metrics`], [`admin`] | security events as JSON lines, off the request path; failed logins in the main log; Prometheus metrics; the admin listener |
//!
//! [`state`] owns the parts a request needs (store, file tokens, users, accounts, upstream, configuration) in
//! one cheap-clone handle, and the cell a reload swaps it in; [`atomic_file`] replaces small files crash-safely and keeps the data
//! directory owner-only. Dependencies point down this table and never back: `tests/layout.rs`
//! fails on an import cycle.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod access;
pub mod access_log;
pub mod accounts;
pub mod admin;
pub mod api;
pub mod app;
pub mod atomic_file;
pub mod audit;
pub mod auth;
pub mod body;
pub mod cli;
pub mod config;
pub mod error;
pub mod file_tokens;
pub mod framing;
pub mod identity;
pub mod line_writer;
pub mod log_fields;
pub mod metrics;
pub mod path;
pub mod proxy;
pub mod response;
pub mod server;
pub mod service;
pub mod state;
pub mod store;
pub mod throttle;
pub mod tls;
pub mod token;
pub mod upstream_auth;
pub mod users;
