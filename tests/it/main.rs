//! The integration tests, one module per subject, built as one binary: the harness in
//! [`common`] compiles once and the suite links once, instead of once per file.
//!
//! Every test here runs in-process with the others: none sets process-wide state (the
//! environment, signal dispositions, the working directory); the ones that need that run the
//! built binary as a child process and set it there.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

mod access_log;
mod account_limits;
mod admin;
mod admin_access;
mod audit;
mod authentication;
mod binary;
mod boundary;
mod cancellation;
mod config_sources;
mod connections;
mod create_token;
mod durability;
mod es_shapes;
#[cfg(feature = "etcd")]
mod etcd_replicas;
#[cfg(feature = "etcd")]
mod etcd_store;
mod file_tokens;
mod first_run;
mod forwarding;
mod fuzz_corpus;
mod gateway_header;
mod kubernetes;
mod layout;
mod node_answers;
mod progress;
mod python_client;
#[cfg(unix)]
mod readiness;
mod reload;
mod scoped_credentials;
mod service_tokens_cli;
mod signals;
mod status;
mod status_page;
mod streaming;
mod testssl;
mod throttling;
mod tls_listener;
mod tls_startup;
mod tls_upstream;
mod token_family;
mod tokens_cli;
mod upstream_failures;
mod upstream_nodes;
mod users_cli;
