//! Progress of a long command (importing, migrating or listing a million tokens takes seconds to
//! minutes): a bar with rate and time left on a terminal, a plain line every few seconds
//! otherwise (logs, CI), nothing with `--quiet`. Always on standard error, so standard output
//! keeps only the result.

use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use crate::observe::progress::{speed, Pace};
use crate::store::{LoadObserver, LoadSource, Loading};

/// One command's progress over `total` items.
pub struct Progress {
    what: &'static str,
    total: u64,
    /// What is counted, after the numbers of a plain line: empty for items.
    unit: &'static str,
    shown: Shown,
}

enum Shown {
    Bar(ProgressBar),
    Lines(Mutex<Lines>),
    Quiet,
}

/// Where the plain lines are.
struct Lines {
    pace: Pace,
    done: u64,
}

impl Progress {
    /// Progress of `what` (e.g. "importing") over `total` items.
    pub fn new(what: &'static str, total: u64, quiet: bool) -> Progress {
        Progress::counting(what, total, "", quiet)
    }

    /// Progress of `what` over `total` of `unit` ("bytes" shows as KiB, MiB, …).
    pub fn counting(what: &'static str, total: u64, unit: &'static str, quiet: bool) -> Progress {
        let shown = if quiet {
            Shown::Quiet
        } else if std::io::stderr().is_terminal() {
            Shown::Bar(bar(what, total, unit))
        } else {
            Shown::Lines(Mutex::new(Lines {
                pace: Pace::default(),
                done: 0,
            }))
        };
        Progress {
            what,
            total,
            unit,
            shown,
        }
    }

    /// `n` more done.
    pub fn advance(&self, n: u64) {
        self.update(|done| *done += n);
    }

    /// `done` of the total done now.
    pub fn set(&self, done: u64) {
        self.update(|now| *now = done);
    }

    fn update(&self, change: impl FnOnce(&mut u64)) {
        match &self.shown {
            Shown::Bar(bar) => {
                let mut done = bar.position();
                change(&mut done);
                bar.set_position(done);
            }
            Shown::Lines(lines) => {
                let mut lines = lines.lock().unwrap_or_else(|e| e.into_inner());
                change(&mut lines.done);
                if lines.pace.due() {
                    let elapsed = lines.pace.elapsed();
                    let text = line(self.what, lines.done, self.total, self.unit, elapsed);
                    eprintln!("{text}");
                }
            }
            Shown::Quiet => {}
        }
    }

    /// The work is over: the bar is cleared (the command prints its result).
    pub fn finish(self) {
        if let Shown::Bar(bar) = self.shown {
            bar.finish_and_clear();
        }
    }
}

fn bar(what: &'static str, total: u64, unit: &'static str) -> ProgressBar {
    let bar = ProgressBar::new(total);
    let template = match unit {
        "bytes" => {
            "{msg} [{bar:30}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} {eta} left"
                .to_owned()
        }
        _ => format!(
            "{{msg}} [{{bar:30}}] {{human_pos}}/{{human_len}} {unit} {{per_sec}} {{eta}} left"
        ),
    };
    // A fixed template: a bad one is a programming error, and the default still shows.
    if let Ok(style) = ProgressStyle::with_template(&template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what);
    bar
}

/// `importing: 250000/1000000 (25000/s, about 30 s left)`.
fn line(what: &str, done: u64, total: u64, unit: &str, elapsed: Duration) -> String {
    let speed = speed(elapsed, done, done, Some(total));
    let left = speed
        .left_s
        .map_or_else(String::new, |s| format!(", about {s} s left"));
    let unit = if unit.is_empty() {
        String::new()
    } else {
        format!(" {unit}")
    };
    format!(
        "{what}: {done}/{total}{unit} ({}/s{left})",
        speed.per_second
    )
}

/// Progress of opening the token store for a command, shown once the store tells how much
/// there is to read.
pub struct Loads {
    shown: Arc<Mutex<Option<Progress>>>,
    quiet: bool,
}

impl Loads {
    pub fn new(quiet: bool) -> Loads {
        Loads {
            shown: Arc::new(Mutex::new(None)),
            quiet,
        }
    }

    /// What the store is given to tell how far it got.
    pub fn observer(&self) -> LoadObserver {
        if self.quiet {
            return LoadObserver::silent();
        }
        let shown = Arc::clone(&self.shown);
        LoadObserver(Arc::new(move |loading: &Loading| {
            let mut shown = shown.lock().unwrap_or_else(|e| e.into_inner());
            let what = match loading.source {
                LoadSource::Journal => "reading the token journal",
                LoadSource::Etcd => "reading the tokens from etcd",
            };
            shown
                .get_or_insert_with(|| {
                    Progress::counting(what, loading.total, loading.unit(), false)
                })
                .set(loading.done);
        }))
    }

    /// The store is open: the bar, if any, goes.
    pub fn finish(&self) {
        let shown = self.shown.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(progress) = shown {
            progress.finish();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_line_says_how_far_how_fast_and_how_long_still() {
        let ten = Duration::from_secs(10);
        assert_eq!(
            line("importing", 250_000, 1_000_000, "", ten),
            "importing: 250000/1000000 (25000/s, about 30 s left)"
        );
        assert_eq!(
            line("reading the token journal", 500, 1_000, "bytes", ten),
            "reading the token journal: 500/1000 bytes (50/s, about 10 s left)"
        );
        assert_eq!(
            line("copying", 0, 5, "", Duration::ZERO),
            "copying: 0/5 (0/s)"
        );
    }
}
