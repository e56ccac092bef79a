//! HTTP messages as the gateway reads and writes them: the client connection's context, the
//! request shapes refused before routing, guarded bodies, the gateway's own responses, and
//! Elasticsearch's error document that every failure becomes.

pub mod body;
mod client;
pub mod error;
pub mod response;
pub mod shape;

pub use client::{BearerMemo, Claimed, ClientInfo, Recalled};
