//! The status page of the admin listener: `GET /` (HTML, readable without JavaScript),
//! `GET /status` (the same figures as JSON, for scripts) and the page's script and style.
//!
//! Everything here reads what the gateway already counts (metrics counters, node atomics, the
//! store's maps, the throttle's table) when a page is asked for, and a background task samples
//! a few counters every [`history::INTERVAL`] into a fixed ring for the charts: the request
//! path does no work for it.
//!
//! One document, two renderings: [`document::build`] makes the JSON value, and both the server
//! ([`html::render`]) and the page's script (`status.js`) render that same value, so the page
//! without JavaScript and the page after a refresh show the same tables.

pub mod assets;
mod charts;
pub mod document;
mod escape;
pub mod history;
pub mod html;
pub mod reloads;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use crate::listen::Stats;
use crate::state::Live;
use crate::tls::server::ServerTls;

pub use history::History;
pub use reloads::Reloads;

/// What the status page is made from: the live state and what only the running gateway knows.
#[derive(Clone)]
pub struct Sources {
    /// The current state, read afresh for every page.
    pub live: Live,
    /// When the gateway started, for the uptime.
    pub started: Instant,
    pub started_at: SystemTime,
    /// Every listener, named (`http`, `https`, `admin`), as bound.
    pub listeners: Vec<(&'static str, SocketAddr)>,
    /// The HTTPS listener's certificate, for its subject and expiry.
    pub tls: Option<ServerTls>,
    /// The last configuration reload and its outcome.
    pub reloads: Arc<Reloads>,
    /// The sampled figures the charts draw.
    pub history: Arc<History>,
    /// The client listeners' connection counts.
    pub connections: Arc<Stats>,
}
