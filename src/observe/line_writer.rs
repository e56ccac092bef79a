//! A log file's writer: a bounded queue in front of one thread that appends lines and flushes.
//! The audit log and the access log each have one.
//!
//! A request never waits for the disk: [`Writer::write`] appends its line to the queue's bytes
//! under a lock held for that copy alone, or is told the queue is full, and then the line is
//! dropped and counted, with a main-log warning at most once per interval. The thread takes the
//! whole queue at once (its bytes swapped for the last batch's emptied buffer), so a line costs
//! a copy, not an allocation and a message of its own. Lines go out in batches of whole lines,
//! one `write` each, so another process appending to the same file (`reset-password`) never
//! splits one.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::config::LogOutput;

/// Bytes gathered into one write when lines queue up faster than they are written.
const MAX_BATCH: usize = 64 * 1024;
/// What a batch buffer keeps of its room after a burst. A flood of audited 401s queues about
/// 200 KiB between two of the thread's turns: a buffer kept at that size takes the next
/// flood's lines without growing again (a reallocation and a copy of everything queued, on
/// the request's thread). Two buffers a log, so at most 2 MiB stay after the largest burst.
const KEEP_BUFFER: usize = 16 * MAX_BATCH;
/// `Counters::warned_at` before the first warning.
const NEVER: u64 = u64::MAX;

/// The sending side, shared by every clone of the log's handle.
pub struct Writer {
    shared: Arc<Shared>,
    /// Signalled by the thread when everything it was given is written.
    done: Mutex<Option<Receiver<()>>>,
}

/// What the requests and the thread share.
struct Shared {
    queue: Mutex<Queue>,
    /// Signalled when a line arrives while the thread waits for one, and on close.
    arrived: Condvar,
    counters: Counters,
}

/// The lines waiting for the thread, as the bytes they will be written as.
struct Queue {
    bytes: Vec<u8>,
    lines: usize,
    /// Lines that may wait; a line past them is dropped.
    capacity: usize,
    /// The thread waits on `arrived`: the next line wakes it (and only that one, so a line
    /// costs no system call while the thread gathers or writes).
    waiting: bool,
    /// Cleared by [`Writer::close`]: later lines are dropped.
    open: bool,
}

impl Shared {
    fn new(capacity: usize, counters: Counters) -> Shared {
        Shared {
            queue: Mutex::new(Queue {
                bytes: Vec::new(),
                lines: 0,
                capacity: capacity.max(1),
                waiting: false,
                open: true,
            }),
            arrived: Condvar::new(),
            counters,
        }
    }

    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
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
    fn new(name: &'static str, warn_interval: Duration) -> Counters {
        Counters {
            dropped: AtomicU64::new(0),
            warned_at: AtomicU64::new(NEVER),
            started: Instant::now(),
            warn_interval,
            name,
        }
    }

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
        let shared = Arc::new(Shared::new(capacity, Counters::new(name, warn_interval)));
        let (done_tx, done) = mpsc::channel();
        let thread_shared = Arc::clone(&shared);
        std::thread::Builder::new()
            .name(format!("{name} writer"))
            .spawn(move || {
                drain(&thread_shared, sink, || std::thread::sleep(GATHER));
                let _ = done_tx.send(());
            })?;
        Ok(Writer {
            shared,
            done: Mutex::new(Some(done)),
        })
    }

    /// Queues one line (ending in `\n`) without waiting; counts it as dropped when the queue is
    /// full or the writer closed. Bytes, not `str`: a line built as JSON is UTF-8 already and
    /// is not validated again on its way out.
    pub fn write(&self, line: &[u8]) {
        let mut queue = self.shared.queue();
        let refused = if !queue.open {
            "writer closed"
        } else if queue.lines >= queue.capacity {
            "queue full"
        } else {
            queue.bytes.extend_from_slice(line);
            queue.lines += 1;
            let wake = std::mem::take(&mut queue.waiting);
            drop(queue);
            if wake {
                self.shared.arrived.notify_one();
            }
            return;
        };
        drop(queue);
        self.shared.counters.lost(1, refused);
    }

    /// Lines lost so far (queue full, output failing); for a metrics endpoint.
    pub fn dropped(&self) -> u64 {
        self.shared.counters.dropped.load(Ordering::Relaxed)
    }

    /// Stops taking lines and waits up to `deadline` for the queued ones to be written and
    /// flushed. `false`: the output did not finish in time (the thread carries on alone).
    pub fn close(&self, deadline: Duration) -> bool {
        self.shared.queue().open = false;
        self.shared.arrived.notify_one();
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

/// The thread: waits for a line, gathers for [`GATHER`] (`gather`), takes the whole queue and
/// writes it in batches of whole lines, flushing after each; ends once the writer is closed and
/// the queue is empty. It does not gather when the queue holds a batch already or is half full:
/// a flood faster than one batch per interval would otherwise fill the queue and lose lines the
/// disk could take.
fn drain(shared: &Shared, mut sink: Box<dyn Write + Send>, mut gather: impl FnMut()) {
    let counters = &shared.counters;
    let mut batch = Vec::new();
    loop {
        let mut queue = shared.queue();
        while queue.lines == 0 {
            if !queue.open {
                return;
            }
            queue.waiting = true;
            queue = shared
                .arrived
                .wait(queue)
                .unwrap_or_else(PoisonError::into_inner);
        }
        let backlog = queue.bytes.len() >= MAX_BATCH || queue.lines >= queue.capacity / 2;
        if !backlog && queue.open {
            drop(queue);
            gather();
            queue = shared.queue();
        }
        std::mem::swap(&mut batch, &mut queue.bytes);
        queue.lines = 0;
        drop(queue);
        if let Err((error, unwritten)) = write_batches(&mut *sink, &batch) {
            // Every line ends with its newline.
            let count = memchr::memchr_iter(b'\n', unwritten).count() as u64;
            tracing::error!(%error, log = counters.name, lines = count, "log lines not written");
            counters.lost(count, "output failed");
        }
        recycle(&mut batch);
    }
}

/// Empties a written batch for the queue to fill again, keeping its room up to [`KEEP_BUFFER`].
fn recycle(batch: &mut Vec<u8>) {
    batch.clear();
    batch.shrink_to(KEEP_BUFFER);
}

/// Writes `bytes` (whole lines) in pieces of at most [`MAX_BATCH`] that end at a line's end (a
/// longer line alone), each flushed. On a failure, the error and the bytes not written.
fn write_batches<'b>(
    sink: &mut dyn Write,
    mut bytes: &'b [u8],
) -> Result<(), (std::io::Error, &'b [u8])> {
    while !bytes.is_empty() {
        let end = if bytes.len() <= MAX_BATCH {
            bytes.len()
        } else {
            match memchr::memrchr(b'\n', &bytes[..MAX_BATCH]) {
                Some(at) => at + 1,
                None => memchr::memchr(b'\n', bytes).map_or(bytes.len(), |at| at + 1),
            }
        };
        let (piece, rest) = bytes.split_at(end);
        if let Err(error) = sink.write_all(piece).and_then(|()| sink.flush()) {
            return Err((error, bytes));
        }
        bytes = rest;
    }
    Ok(())
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
    fn a_written_batch_keeps_its_room_up_to_the_bound() {
        let mut flood = vec![b'x'; 200 * 1024];
        let room = flood.capacity();
        recycle(&mut flood);
        assert!(flood.is_empty());
        assert_eq!(
            flood.capacity(),
            room,
            "a flood's usual batch is taken again without growing"
        );

        let mut burst = vec![b'x'; 4 * KEEP_BUFFER];
        recycle(&mut burst);
        assert!(burst.is_empty());
        assert!(burst.capacity() >= MAX_BATCH && burst.capacity() <= KEEP_BUFFER);
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
        writer.write(b"one\n");
        // The thread holds "one" inside the blocked output: the queue is empty again.
        entered.recv_timeout(Duration::from_secs(10)).unwrap();
        writer.write(b"two\n");
        let started = Instant::now();
        for n in 0..1000 {
            writer.write(format!("extra {n}\n").as_bytes());
        }
        assert!(started.elapsed() < Duration::from_secs(5), "a write waited");
        assert_eq!(writer.dropped(), 1000);

        release.send(()).unwrap();
        entered.recv_timeout(Duration::from_secs(10)).unwrap();
        release.send(()).unwrap();
        assert!(writer.close(Duration::from_secs(10)));
        assert_eq!(&*written.lock().unwrap(), b"one\ntwo\n");
        writer.write(b"late\n");
        assert_eq!(writer.dropped(), 1001);
    }

    /// An output that records each write, or fails every write once `fail` is set.
    struct Writes {
        writes: Arc<Mutex<Vec<Vec<u8>>>>,
        fail: bool,
    }

    impl Write for Writes {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if self.fail {
                return Err(std::io::Error::other("disk gone"));
            }
            self.writes.lock().unwrap().push(buf.to_vec());
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// A closed queue holding `lines`, as the thread finds it after a burst.
    fn queued(lines: &[Vec<u8>], capacity: usize) -> Shared {
        let shared = Shared::new(capacity, Counters::new("test", Duration::from_secs(1)));
        {
            let mut queue = shared.queue();
            for line in lines {
                queue.bytes.extend_from_slice(line);
                queue.lines += 1;
            }
            queue.open = false;
        }
        shared
    }

    #[test]
    fn a_backlog_is_written_in_whole_line_batches_without_gathering() {
        let mut line = vec![b'x'; 99];
        line.push(b'\n');
        // Five batches' worth waiting at once, as after a burst of failed logins.
        let count = 5 * MAX_BATCH / line.len();
        let mut lines = vec![line.clone(); count];
        // A line longer than a batch goes out whole, on its own.
        let mut long = vec![b'y'; MAX_BATCH + 10];
        long.push(b'\n');
        lines.insert(count / 2, long.clone());
        let shared = queued(&lines, 100_000);
        let writes = Arc::new(Mutex::new(Vec::new()));
        let sink = Writes {
            writes: Arc::clone(&writes),
            fail: false,
        };
        let mut gathered = 0;
        drain(&shared, Box::new(sink), || gathered += 1);
        let writes = writes.lock().unwrap();
        assert_eq!(writes.concat(), lines.concat());
        assert!(writes.len() >= 6, "batches: {}", writes.len());
        assert!(
            writes.iter().all(|w| w.ends_with(b"\n")),
            "a line was split"
        );
        assert!(writes.contains(&long), "the long line shared a write");
        assert!(writes.iter().all(|w| w.len() <= MAX_BATCH || *w == long));
        assert_eq!(gathered, 0, "waited while a batch was queued");
        assert_eq!(shared.counters.dropped.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_failing_output_counts_the_lines_it_lost() {
        let lines = vec![b"a\n".to_vec(), b"b\n".to_vec(), b"c\n".to_vec()];
        let shared = queued(&lines, 10);
        let sink = Writes {
            writes: Arc::default(),
            fail: true,
        };
        drain(&shared, Box::new(sink), || {});
        assert_eq!(shared.counters.dropped.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn queued_lines_are_batched_whole_and_flushed_on_close() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.json");
        let file = std::fs::File::create(&path).unwrap();
        let writer = Writer::start("test", Box::new(file), 100, Duration::from_secs(1)).unwrap();
        for n in 0..50 {
            writer.write(format!("{{\"n\":{n}}}\n").as_bytes());
        }
        assert!(writer.close(Duration::from_secs(10)));
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 50);
        assert_eq!(writer.dropped(), 0);
    }
}
