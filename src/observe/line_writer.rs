//! A log file's writer: a bounded queue in front of one thread that appends lines and flushes.
//! The audit log and the access log each have one.
//!
//! A request never waits for the disk: [`Writer::write`] hands its line over without blocking
//! or is told the queue is full, and then the line is dropped and counted, with a main-log
//! warning at most once per interval. Lines go out in batches of whole lines, one `write` each,
//! so another process appending to the same file (`reset-password`) never splits one.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use crate::config::LogOutput;

/// Bytes gathered into one write when lines queue up faster than they are written.
const MAX_BATCH: usize = 64 * 1024;
/// `Counters::warned_at` before the first warning.
const NEVER: u64 = u64::MAX;

/// The sending side, shared by every clone of the log's handle.
pub struct Writer {
    /// `None` once closed; read-locked per line, so senders never wait on each other.
    sender: RwLock<Option<SyncSender<Vec<u8>>>>,
    counters: Arc<Counters>,
    /// Signalled by the thread when everything it was given is written.
    done: Mutex<Option<Receiver<()>>>,
}

/// What the requests and the thread both count.
struct Counters {
    /// Lines lost: refused by a full queue, or not written by a failing output.
    dropped: AtomicU64,
    /// Milliseconds after `started` of the last warning about lost lines.
    warned_at: AtomicU64,
    started: Instant,
    warn_interval: Duration,
    /// Which log, for the warnings.
    name: &'static str,
}

impl Counters {
    /// Counts `n` lost lines and warns, unless a warning went out within the interval.
    fn lost(&self, n: u64, cause: &'static str) {
        let total = self
            .dropped
            .fetch_add(n, Ordering::Relaxed)
            .saturating_add(n);
        let now = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let last = self.warned_at.load(Ordering::Relaxed);
        let interval = u64::try_from(self.warn_interval.as_millis()).unwrap_or(u64::MAX);
        if last != NEVER && now.saturating_sub(last) < interval {
            return;
        }
        if self
            .warned_at
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            tracing::warn!(log = self.name, dropped = total, cause, "log lines dropped");
        }
    }
}

impl Writer {
    /// Starts the thread writing to `sink`; `capacity` lines may wait for it. A full queue is
    /// reported at most once per `warn_interval`.
    pub fn start(
        name: &'static str,
        sink: Box<dyn Write + Send>,
        capacity: usize,
        warn_interval: Duration,
    ) -> std::io::Result<Writer> {
        let (sender, lines) = mpsc::sync_channel(capacity.max(1));
        let (done_tx, done) = mpsc::channel();
        let counters = Arc::new(Counters {
            dropped: AtomicU64::new(0),
            warned_at: AtomicU64::new(NEVER),
            started: Instant::now(),
            warn_interval,
            name,
        });
        let thread_counters = Arc::clone(&counters);
        std::thread::Builder::new()
            .name(format!("{name} writer"))
            .spawn(move || {
                drain(&lines, sink, &thread_counters, || {
                    std::thread::sleep(GATHER)
                });
                let _ = done_tx.send(());
            })?;
        Ok(Writer {
            sender: RwLock::new(Some(sender)),
            counters,
            done: Mutex::new(Some(done)),
        })
    }

    /// Queues one line (ending in `\n`) without waiting; counts it as dropped when the queue is
    /// full or the writer closed. Bytes, not `String`: a line built as JSON is UTF-8 already and
    /// is not validated again on its way out.
    pub fn write(&self, line: impl Into<Vec<u8>>) {
        let line = line.into();
        let sender = self.sender.read().unwrap_or_else(|e| e.into_inner());
        let refused = match sender.as_ref() {
            Some(sender) => match sender.try_send(line) {
                Ok(()) => return,
                Err(TrySendError::Full(_)) => "queue full",
                Err(TrySendError::Disconnected(_)) => "writer stopped",
            },
            None => "writer closed",
        };
        drop(sender);
        self.counters.lost(1, refused);
    }

    /// Lines lost so far (queue full, output failing); for a metrics endpoint.
    pub fn dropped(&self) -> u64 {
        self.counters.dropped.load(Ordering::Relaxed)
    }

    /// Stops taking lines and waits up to `deadline` for the queued ones to be written and
    /// flushed. `false`: the output did not finish in time (the thread carries on alone).
    pub fn close(&self, deadline: Duration) -> bool {
        self.sender
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let done = self.done.lock().unwrap_or_else(|e| e.into_inner()).take();
        match done {
            Some(done) => done.recv_timeout(deadline).is_ok(),
            None => true,
        }
    }
}

/// Opens where a log's lines go: a file is created owner-only and appended to (several
/// processes may append whole lines to it). The error names the file.
pub fn open_output(
    output: &LogOutput,
) -> Result<(Box<dyn Write + Send>, PathBuf), (PathBuf, std::io::Error)> {
    Ok(match output {
        LogOutput::Stdout => (Box::new(std::io::stdout()), PathBuf::from("<stdout>")),
        LogOutput::Stderr => (Box::new(std::io::stderr()), PathBuf::from("<stderr>")),
        LogOutput::File(path) => {
            let mut options = std::fs::OpenOptions::new();
            options.create(true).append(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let file = options.open(path).map_err(|e| (path.clone(), e))?;
            let meta = file.metadata().map_err(|e| (path.clone(), e))?;
            crate::atomic_file::warn_if_shared(path, &meta);
            (Box::new(file), path.clone())
        }
    })
}

/// How long the thread waits, once a line has arrived after a quiet spell, for others to join
/// it. Under load this turns a wake-up per line (a context switch on the core serving the
/// requests) into one per interval; a quiet gateway's lines are written this much later.
const GATHER: Duration = Duration::from_millis(5);

/// The thread: takes what is queued, up to a batch, writes it in one go and flushes; ends when
/// every sender is gone and the queue is empty. `gather` (a [`GATHER`] sleep) runs only when
/// the queue had been emptied: a backlog is written batch after batch at once, or a flood
/// faster than one batch per interval would fill the queue and lose lines the disk could take.
fn drain(
    lines: &Receiver<Vec<u8>>,
    mut sink: Box<dyn Write + Send>,
    counters: &Counters,
    mut gather: impl FnMut(),
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut backlog = false;
    while let Ok(first) = lines.recv() {
        // Senders only wake a receiver that waits in `recv`: while this sleeps, they don't.
        if !backlog {
            gather();
        }
        batch.clear();
        batch.extend_from_slice(&first);
        let mut count = 1u64;
        backlog = loop {
            if batch.len() >= MAX_BATCH {
                break true;
            }
            let Ok(line) = lines.try_recv() else {
                break false;
            };
            batch.extend_from_slice(&line);
            count += 1;
        };
        if let Err(error) = sink.write_all(&batch).and_then(|()| sink.flush()) {
            tracing::error!(%error, log = counters.name, lines = count, "log lines not written");
            counters.lost(count, "output failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::Sender;

    /// An output that reports each write and then blocks until the test lets it go on.
    struct Blocked {
        entered: Sender<()>,
        release: Receiver<()>,
        written: Arc<Mutex<Vec<u8>>>,
    }

    impl Write for Blocked {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let _ = self.entered.send(());
            let _ = self.release.recv();
            self.written.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_blocking() {
        let (entered_tx, entered) = mpsc::channel();
        let (release, release_rx) = mpsc::channel();
        let written = Arc::new(Mutex::new(Vec::new()));
        let sink = Blocked {
            entered: entered_tx,
            release: release_rx,
            written: Arc::clone(&written),
        };
        let writer = Writer::start("test", Box::new(sink), 1, Duration::from_secs(3600)).unwrap();
        writer.write(b"one\n".to_vec());
        // The thread holds "one" inside the blocked output: the queue is empty again.
        entered.recv_timeout(Duration::from_secs(10)).unwrap();
        writer.write(b"two\n".to_vec());
        let started = Instant::now();
        for n in 0..1000 {
            writer.write(format!("extra {n}\n"));
        }
        assert!(started.elapsed() < Duration::from_secs(5), "a write waited");
        assert_eq!(writer.dropped(), 1000);

        release.send(()).unwrap();
        entered.recv_timeout(Duration::from_secs(10)).unwrap();
        release.send(()).unwrap();
        assert!(writer.close(Duration::from_secs(10)));
        assert_eq!(&*written.lock().unwrap(), b"one\ntwo\n");
        writer.write(b"late\n".to_vec());
        assert_eq!(writer.dropped(), 1001);
    }

    /// An output that records the size of each write.
    struct Sizes(Arc<Mutex<Vec<usize>>>);

    impl Write for Sizes {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().push(buf.len());
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_backlog_is_written_batch_after_batch_without_gathering_again() {
        let (sender, lines) = mpsc::sync_channel(10_000);
        let mut line = vec![b'x'; 99];
        line.push(b'\n');
        // Five batches' worth waiting at once, as after a burst of failed logins.
        let queued = 5 * MAX_BATCH / line.len();
        for _ in 0..queued {
            sender.send(line.clone()).unwrap();
        }
        drop(sender);
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let counters = Counters {
            dropped: AtomicU64::new(0),
            warned_at: AtomicU64::new(NEVER),
            started: Instant::now(),
            warn_interval: Duration::from_secs(1),
            name: "test",
        };
        let mut gathered = 0;
        drain(
            &lines,
            Box::new(Sizes(Arc::clone(&sizes))),
            &counters,
            || gathered += 1,
        );
        let sizes = sizes.lock().unwrap();
        assert_eq!(sizes.iter().sum::<usize>(), queued * line.len());
        assert!(sizes.len() >= 5, "batches: {sizes:?}");
        assert!(
            sizes.iter().all(|n| n % line.len() == 0),
            "a line was split"
        );
        assert_eq!(gathered, 1, "waited again while lines were queued");
        assert_eq!(counters.dropped.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn queued_lines_are_batched_whole_and_flushed_on_close() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.json");
        let file = std::fs::File::create(&path).unwrap();
        let writer = Writer::start("test", Box::new(file), 100, Duration::from_secs(1)).unwrap();
        for n in 0..50 {
            writer.write(format!("{{\"n\":{n}}}\n"));
        }
        assert!(writer.close(Duration::from_secs(10)));
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 50);
        assert_eq!(writer.dropped(), 0);
    }
}
