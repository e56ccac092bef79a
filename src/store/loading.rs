//! How far opening a store has got. Replaying the journal or reading etcd takes seconds for a
//! million tokens; the loader tells a [`LoadObserver`] every few thousand tokens, and without
//! one the store says it in the main log every few seconds. The line at the end (with the count
//! and the time taken) is the store's own, observer or not.

use std::sync::{Arc, Mutex};

use crate::observe::progress::Pace;

/// Where a load reads from, and so what [`Loading::done`] counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The journal: `done` and `total` are bytes.
    Journal,
    /// etcd: `done` and `total` are key ranges (a token's range is a hash of its name, so each
    /// holds about the same share).
    Etcd,
}

/// A load under way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Loading {
    pub source: Source,
    /// Tokens read so far.
    pub tokens: u64,
    /// How much of the source is read, in its unit.
    pub done: u64,
    /// All of the source, in its unit.
    pub total: u64,
}

impl Loading {
    /// What the unit of `done` and `total` is called.
    pub fn unit(&self) -> &'static str {
        match self.source {
            Source::Journal => "bytes",
            Source::Etcd => "key ranges",
        }
    }
}

/// Hears of a load every few thousand tokens, on the loading thread: it must be quick.
#[derive(Clone)]
pub struct LoadObserver(pub Arc<dyn Fn(&Loading) + Send + Sync>);

impl std::fmt::Debug for LoadObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LoadObserver")
    }
}

impl LoadObserver {
    /// `observer`, else a log line every few seconds.
    pub(crate) fn or_log(observer: Option<&LoadObserver>) -> LoadObserver {
        observer.cloned().unwrap_or_else(LoadObserver::log)
    }

    /// Hears nothing.
    pub fn silent() -> LoadObserver {
        LoadObserver(Arc::new(|_| {}))
    }

    /// A line in the main log when a report is due.
    fn log() -> LoadObserver {
        let pace = Mutex::new(Pace::default());
        LoadObserver(Arc::new(move |loading| {
            let mut pace = pace.lock().unwrap_or_else(|e| e.into_inner());
            if pace.due() {
                log_line(loading, &pace);
            }
        }))
    }

    pub(crate) fn tell(&self, loading: &Loading) {
        (self.0)(loading);
    }
}

fn log_line(loading: &Loading, pace: &Pace) {
    let Loading {
        tokens,
        done,
        total,
        ..
    } = *loading;
    let speed = pace.speed(tokens, done, Some(total));
    let (tokens_per_s, left_s) = (speed.per_second, speed.left_s);
    match loading.source {
        Source::Journal => tracing::info!(
            tokens,
            bytes = done,
            of_bytes = total,
            tokens_per_s,
            left_s,
            "replaying the token journal"
        ),
        Source::Etcd => tracing::info!(
            tokens,
            ranges = done,
            of_ranges = total,
            tokens_per_s,
            left_s,
            "reading the tokens from etcd"
        ),
    }
}
