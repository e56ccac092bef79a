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

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

use crate::state::State;

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

/// How long the tokens per account are reused: counting them walks the whole token set, so
/// however many pages are open, the walk happens at most once per this. Every other figure is
/// read afresh for each document.
pub const TOKEN_COUNTS_REUSE: Duration = Duration::from_secs(1);

/// Tokens per account (`namespace/service`).
pub type TokenCounts = HashMap<String, usize>;

/// The status document's maker: the sources, and the token counts last taken.
pub struct Status {
    sources: Sources,
    token_counts: Mutex<Option<(Instant, Arc<TokenCounts>)>>,
}

impl Status {
    pub fn new(sources: Sources) -> Status {
        Status {
            sources,
            token_counts: Mutex::new(None),
        }
    }

    /// The document as of now.
    pub fn document(&self) -> Value {
        let state = self.sources.live.load();
        let counts = self.token_counts(&state);
        document::build(&self.sources, &state, &counts)
    }

    fn token_counts(&self, state: &State) -> Arc<TokenCounts> {
        let mut last = self
            .token_counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some((at, counts)) = last.as_ref() {
            if at.elapsed() < TOKEN_COUNTS_REUSE {
                return Arc::clone(counts);
            }
        }
        let counts = Arc::new(state.store.counts_by_account());
        *last = Some((Instant::now(), Arc::clone(&counts)));
        counts
    }
}
