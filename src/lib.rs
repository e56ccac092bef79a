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
//! | start | [`cli`], [`config`] | command line, typed and validated configuration |
//! | listen | [`server`], [`shutdown`] | accept loop, connection limit, HTTP/1.1 + HTTP/2, drain |
//! | route | [`service`] | security-path rule, API vs. forwarding, errors to responses |
//! | authenticate | [`auth`] | `Authorization` parsing, token wire format, users, privileges |
//! | answer | [`api`] | the `/_security/service/…` endpoints and `_authenticate` |
//! | forward | [`proxy`] | header rewriting, pooled upstream client, 502/504 |
//! | remember | [`store`] | the token journal: group commit, replay, compaction |
//! | render | [`error`], [`response`] | Elasticsearch's error JSON, response bodies |
//!
//! [`state`] ties them together in one cheap-clone handle; [`atomic_file`] replaces small files
//! crash-safely.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod api;
pub mod atomic_file;
pub mod auth;
pub mod cli;
pub mod config;
pub mod error;
pub mod proxy;
pub mod response;
pub mod server;
pub mod service;
pub mod shutdown;
pub mod state;
pub mod store;
pub mod tls;
