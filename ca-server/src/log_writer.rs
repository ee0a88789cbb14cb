//! Log lines collected in memory and written to stderr by a background
//! thread, many per `write(2)`.
//!
//! Under load the CA logs one line per certificate. Writing each line itself
//! costs a system call and the stderr lock per certificate; handing each to
//! a thread through a queue (tracing-appender) costs a thread wake-up per
//! line (docs/benchmarks.md has what each cost). Here a line is appended
//! to a buffer under a short lock, and only the first line into an empty
//! buffer wakes the writer thread, which lets lines gather for
//! `GATHER` before it writes them all: a few wake-ups a second at any load.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

/// How long lines gather before they are written.
const GATHER: Duration = Duration::from_millis(20);
/// Lines beyond this many buffered bytes are dropped (and counted) while the
/// output is blocked, so that a stalled stderr cannot grow memory.
const MAX_BUFFERED: usize = 4 << 20;
/// What an idle buffer keeps of its capacity after a burst.
const KEPT_CAPACITY: usize = 1 << 20;

struct Shared {
    buffer: Mutex<Vec<u8>>,
    dropped: AtomicU64,
    stopping: AtomicBool,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<u8>> {
        // Appending bytes cannot leave the buffer half-changed.
        self.buffer.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The `MakeWriter` for tracing-subscriber; cheap to clone.
#[derive(Clone)]
pub struct GatheredLines {
    shared: Arc<Shared>,
    writer: std::thread::Thread,
}

/// Stops the writer thread and writes what is left, when dropped.
pub struct FlushOnDrop {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// Starts the writer thread over `out`.
pub fn gathered_lines(
    out: impl Write + Send + 'static,
) -> std::io::Result<(GatheredLines, FlushOnDrop)> {
    let shared = Arc::new(Shared {
        buffer: Mutex::new(Vec::new()),
        dropped: AtomicU64::new(0),
        stopping: AtomicBool::new(false),
    });
    let thread = std::thread::Builder::new()
        .name("jit-ssh-ca-log".into())
        .spawn({
            let shared = shared.clone();
            move || write_gathered(&shared, out)
        })?;
    Ok((
        GatheredLines {
            shared: shared.clone(),
            writer: thread.thread().clone(),
        },
        FlushOnDrop {
            shared,
            thread: Some(thread),
        },
    ))
}

fn write_gathered(shared: &Shared, mut out: impl Write) {
    // Two buffers take turns, keeping their capacity: with a fresh buffer
    // every round, the serving threads would grow it again as they log, and
    // this thread would free what they allocated.
    let mut lines = Vec::new();
    loop {
        let stopping = shared.stopping.load(Ordering::Acquire);
        if !stopping {
            std::thread::park();
            std::thread::sleep(GATHER);
        }
        lines.clear();
        lines.shrink_to(KEPT_CAPACITY);
        std::mem::swap(&mut *shared.lock(), &mut lines);
        // Nowhere to report a failed write of the log itself.
        let _ = out.write_all(&lines);
        let dropped = shared.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            let _ = writeln!(
                out,
                "jit-ssh-ca: {dropped} log lines dropped: stderr was blocked"
            );
        }
        let _ = out.flush();
        if stopping {
            return;
        }
    }
}

impl Drop for FlushOnDrop {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

/// Appends one formatted event.
pub struct LineWriter<'a>(&'a GatheredLines);

impl Write for LineWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let lines = self.0;
        let was_empty = {
            let mut buffer = lines.shared.lock();
            if buffer.len() + bytes.len() > MAX_BUFFERED {
                lines.shared.dropped.fetch_add(1, Ordering::Relaxed);
                return Ok(bytes.len());
            }
            let was_empty = buffer.is_empty();
            buffer.extend_from_slice(bytes);
            was_empty
        };
        if was_empty {
            lines.writer.unpark();
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for GatheredLines {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("sink").extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_are_written_soon_and_all_of_them_by_the_guard() {
        let sink = Sink::default();
        let (lines, guard) = gathered_lines(sink.clone()).expect("thread");
        lines.make_writer().write_all(b"first\n").expect("write");
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while sink.0.lock().expect("sink").is_empty() {
            assert!(std::time::Instant::now() < deadline, "never written");
            std::thread::sleep(Duration::from_millis(5));
        }
        for i in 0..1000 {
            writeln!(lines.make_writer(), "line {i}").expect("write");
        }
        drop(guard);
        let written = String::from_utf8(sink.0.lock().expect("sink").clone()).expect("utf-8");
        assert!(written.starts_with("first\nline 0\n"), "{written:.40}");
        assert!(written.ends_with("line 999\n"));
        assert_eq!(written.lines().count(), 1001);
    }

    #[test]
    fn a_blocked_output_drops_lines_beyond_the_cap_and_says_so() {
        let sink = Sink::default();
        let held = sink.0.lock().expect("sink");
        let (lines, guard) = gathered_lines(sink.clone()).expect("thread");
        let line = vec![b'x'; 1 << 16];
        let mut written = 0;
        // The writer thread takes at most one buffer and then blocks on the
        // held sink, so at most twice the cap is kept.
        for _ in 0..3 * (MAX_BUFFERED >> 16) {
            lines.make_writer().write_all(&line).expect("write");
            written += 1;
        }
        std::thread::sleep(GATHER * 3);
        drop(held);
        drop(guard);
        let out = sink.0.lock().expect("sink").clone();
        let kept = out.iter().filter(|&&b| b == b'x').count() >> 16;
        assert!(kept < written, "kept {kept} of {written}");
        assert!(String::from_utf8_lossy(&out).contains("log lines dropped"));
    }
}
