//! Progress of a long command (importing or migrating a million tokens takes minutes): a bar
//! with rate and time left on a terminal, a plain line every few seconds otherwise (logs, CI),
//! nothing with `--quiet`. Always on standard error, so standard output keeps only the result.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// How often a plain line is written when standard error is no terminal.
const LINE_INTERVAL: Duration = Duration::from_secs(5);

/// One command's progress over `total` items.
pub struct Progress {
    what: &'static str,
    total: u64,
    shown: Shown,
}

enum Shown {
    Bar(ProgressBar),
    Lines(Mutex<Lines>),
    Quiet,
}

/// Where the plain lines are.
struct Lines {
    started: Instant,
    last: Instant,
    done: u64,
}

impl Progress {
    /// Progress of `what` (e.g. "importing") over `total` items.
    pub fn new(what: &'static str, total: u64, quiet: bool) -> Progress {
        let shown = if quiet {
            Shown::Quiet
        } else if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new(total);
            // A fixed template: a bad one is a programming error, and the default still shows.
            if let Ok(style) = ProgressStyle::with_template(
                "{msg} [{bar:30}] {human_pos}/{human_len} {per_sec} {eta} left",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_message(what);
            Shown::Bar(bar)
        } else {
            let now = Instant::now();
            Shown::Lines(Mutex::new(Lines {
                started: now,
                last: now,
                done: 0,
            }))
        };
        Progress { what, total, shown }
    }

    /// `n` more items done.
    pub fn advance(&self, n: u64) {
        match &self.shown {
            Shown::Bar(bar) => bar.inc(n),
            Shown::Lines(lines) => {
                let mut lines = lines.lock().unwrap_or_else(|e| e.into_inner());
                lines.done += n;
                if lines.last.elapsed() >= LINE_INTERVAL {
                    lines.last = Instant::now();
                    eprintln!("{}", line(self.what, lines.done, self.total, lines.started));
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

/// `importing: 250000/1000000 (83000/s, about 9 s left)`.
fn line(what: &str, done: u64, total: u64, started: Instant) -> String {
    let secs = started.elapsed().as_secs_f64();
    let rate = if secs > 0.0 { done as f64 / secs } else { 0.0 };
    let left = if rate > 0.0 {
        format!(
            ", about {:.0} s left",
            total.saturating_sub(done) as f64 / rate
        )
    } else {
        String::new()
    };
    format!("{what}: {done}/{total} ({rate:.0}/s{left})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_line_says_how_far_how_fast_and_how_long_still() {
        let started = Instant::now() - Duration::from_secs(10);
        let text = line("importing", 250_000, 1_000_000, started);
        assert!(text.starts_with("importing: 250000/1000000 ("), "{text}");
        assert!(text.contains("/s, about 30 s left)"), "{text}");
        assert_eq!(line("copying", 0, 5, Instant::now()), "copying: 0/5 (0/s)");
    }
}
