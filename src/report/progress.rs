//! Live progress while tables are compared.
//!
//! On a TTY: an indicatif overall bar of tables done plus one bar (or spinner, when the
//! chunk count is unknown) per table in flight, and a permanent line per finished table.
//! Otherwise: plain lines on stderr, one per finished table (`[3/10] db.t: equal (12 chunks,
//! 1.2s)`) and an occasional `still running` line for long tables, so CI logs stay
//! readable and free of escape codes.
//!
//! Both handles are `Clone + Send + Sync` (an `Arc` inside) because many tasks update
//! them concurrently; every update is a few atomics, plus a bar tick on a TTY.

use super::format::duration_ms;
use super::TableResult;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often a long table gets a `still running` line in plain mode.
const PLAIN_PERIOD: Duration = Duration::from_secs(60);
/// Spinner redraw interval on a TTY.
const TICK: Duration = Duration::from_millis(120);

/// Run-wide progress display. Clone it into every task.
#[derive(Clone)]
pub struct Progress {
    inner: Arc<Inner>,
}

struct Inner {
    total: AtomicU64,
    done: AtomicU64,
    finished: AtomicBool,
    period: Duration,
    sink: Sink,
}

enum Sink {
    Hidden,
    Bars {
        multi: MultiProgress,
        overall: ProgressBar,
    },
    Lines(Mutex<Box<dyn Write + Send>>),
}

impl Progress {
    /// Bars on stderr when `is_tty`, plain stderr lines otherwise.
    pub fn new(total_tables: u64, is_tty: bool) -> Self {
        if !is_tty {
            return Self::to_writer(total_tables, io::stderr());
        }
        let multi = MultiProgress::new();
        let overall = multi.add(ProgressBar::new(total_tables).with_style(style(
            "{spinner:.green} [{bar:30.cyan/blue}] {pos}/{len} tables, {elapsed}",
        )));
        overall.enable_steady_tick(TICK);
        Self::with_sink(total_tables, Sink::Bars { multi, overall })
    }

    /// Plain lines written to `out`, as in non-TTY mode (for logs and tests).
    pub fn to_writer(total_tables: u64, out: impl Write + Send + 'static) -> Self {
        Self::with_sink(total_tables, Sink::Lines(Mutex::new(Box::new(out))))
    }

    /// Shows nothing (quiet mode, tests); counting still works.
    pub fn hidden() -> Self {
        Self::with_sink(0, Sink::Hidden)
    }

    fn with_sink(total: u64, sink: Sink) -> Self {
        Self {
            inner: Arc::new(Inner {
                total: AtomicU64::new(total),
                done: AtomicU64::new(0),
                finished: AtomicBool::new(false),
                period: PLAIN_PERIOD,
                sink,
            }),
        }
    }

    /// Corrects the table count once discovery knows it.
    pub fn set_total(&self, total_tables: u64) {
        self.inner.total.store(total_tables, Ordering::Relaxed);
        if let Sink::Bars { overall, .. } = &self.inner.sink {
            overall.set_length(total_tables);
        }
    }

    /// Tables finished so far.
    pub fn done(&self) -> u64 {
        self.inner.done.load(Ordering::Relaxed)
    }

    /// Starts tracking one table; `estimated_chunks` turns its spinner into a bar.
    pub fn table_started(&self, name: &str, estimated_chunks: Option<u64>) -> TableProgress {
        let bar = match &self.inner.sink {
            Sink::Bars { multi, overall } => {
                let bar = match estimated_chunks.filter(|&n| n > 0) {
                    Some(n) => ProgressBar::new(n).with_style(style(
                        "  {spinner:.green} {prefix} [{bar:20.cyan/blue}] {pos}/{len} chunks, \
                         {elapsed}",
                    )),
                    None => ProgressBar::new_spinner()
                        .with_style(style("  {spinner:.green} {prefix} {pos} chunks, {elapsed}")),
                };
                let bar = multi.insert_before(overall, bar.with_prefix(name.to_string()));
                bar.enable_steady_tick(TICK);
                Some(bar)
            }
            Sink::Hidden | Sink::Lines(_) => None,
        };
        TableProgress {
            inner: Arc::new(TableInner {
                progress: self.clone(),
                name: name.to_string(),
                estimated: estimated_chunks,
                started: Instant::now(),
                chunks: AtomicU64::new(0),
                last_line_ms: AtomicU64::new(0),
                finished: AtomicBool::new(false),
                bar,
            }),
        }
    }

    /// Prints a line without breaking the bars (above them on a TTY).
    pub fn println(&self, line: &str) {
        match &self.inner.sink {
            Sink::Hidden => {}
            Sink::Bars { multi, .. } => {
                let _ = multi.println(line);
            }
            Sink::Lines(out) => self.write_line(out, line),
        }
    }

    /// Runs `f` with the bars hidden, for output that does not go through [`Self::println`]
    /// (e.g. a log writer).
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        match &self.inner.sink {
            Sink::Bars { multi, .. } => multi.suspend(f),
            Sink::Hidden | Sink::Lines(_) => f(),
        }
    }

    /// Ends the display (clears the bars); later calls do nothing.
    pub fn finish(&self) {
        if self.inner.finished.swap(true, Ordering::Relaxed) {
            return;
        }
        if let Sink::Bars { multi, overall } = &self.inner.sink {
            overall.finish_and_clear();
            let _ = multi.clear();
        }
    }

    fn write_line(&self, out: &Mutex<Box<dyn Write + Send>>, line: &str) {
        // A poisoned lock only means another writer panicked mid-line; keep going.
        let mut w = out.lock().unwrap_or_else(|e| e.into_inner());
        let _ = writeln!(w, "{line}");
        let _ = w.flush();
    }
}

/// Progress of one table. Clone it into the tasks working on the table's chunks.
#[derive(Clone)]
pub struct TableProgress {
    inner: Arc<TableInner>,
}

struct TableInner {
    progress: Progress,
    name: String,
    estimated: Option<u64>,
    started: Instant,
    chunks: AtomicU64,
    /// Milliseconds after `started` of the last plain `still running` line.
    last_line_ms: AtomicU64,
    finished: AtomicBool,
    bar: Option<ProgressBar>,
}

impl TableProgress {
    /// Records one compared chunk.
    pub fn chunk_done(&self) {
        let t = &self.inner;
        let chunks = t.chunks.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(bar) = &t.bar {
            bar.inc(1);
            return;
        }
        let Sink::Lines(out) = &t.progress.inner.sink else {
            return;
        };
        let now = t.started.elapsed().as_millis() as u64;
        let last = t.last_line_ms.load(Ordering::Relaxed);
        let due = now.saturating_sub(last) >= t.progress.inner.period.as_millis() as u64;
        // Only the thread that wins the exchange prints, so one line per period.
        if due
            && t.last_line_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let of = t.estimated.map(|n| format!("/~{n}")).unwrap_or_default();
            let line = format!(
                "[{}/{}] {}: still running ({chunks}{of} chunks, {})",
                t.progress.done(),
                t.progress.inner.total.load(Ordering::Relaxed),
                t.name,
                duration_ms(now),
            );
            t.progress.write_line(out, &line);
        }
    }

    /// Chunks recorded so far.
    pub fn chunks(&self) -> u64 {
        self.inner.chunks.load(Ordering::Relaxed)
    }

    /// Records the table's outcome and prints its line; later calls do nothing.
    pub fn finish(&self, result: TableResult) {
        self.finish_with(result, None);
    }

    /// As [`Self::finish`] for a table whose `chunks` results were all taken from a
    /// checkpoint (`check --resume`): the line says so instead of `0 chunks, 0.0s`.
    pub fn finish_resumed(&self, result: TableResult, chunks: u64) {
        self.finish_with(result, Some(chunks));
    }

    fn finish_with(&self, result: TableResult, resumed: Option<u64>) {
        let t = &self.inner;
        if t.finished.swap(true, Ordering::Relaxed) {
            return;
        }
        let p = &t.progress.inner;
        let done = p.done.fetch_add(1, Ordering::Relaxed) + 1;
        let plural = |n: u64| if n == 1 { "chunk" } else { "chunks" };
        let detail = match resumed {
            Some(n) => format!("{n} {} from the checkpoint", plural(n)),
            None => {
                let chunks = t.chunks.load(Ordering::Relaxed);
                format!(
                    "{chunks} {}, {}",
                    plural(chunks),
                    duration_ms(t.started.elapsed().as_millis() as u64)
                )
            }
        };
        let line = format!(
            "[{done}/{}] {}: {result} ({detail})",
            p.total.load(Ordering::Relaxed),
            t.name,
        );
        match &p.sink {
            Sink::Hidden => {}
            Sink::Bars { multi, overall } => {
                if let Some(bar) = &t.bar {
                    bar.finish_and_clear();
                    multi.remove(bar);
                }
                let _ = multi.println(line);
                overall.inc(1);
            }
            Sink::Lines(out) => t.progress.write_line(out, &line),
        }
    }
}

impl Drop for TableInner {
    /// A table abandoned without `finish` (cancelled task) must not leave a spinner behind.
    fn drop(&mut self) {
        if let (false, Some(bar), Sink::Bars { multi, .. }) = (
            *self.finished.get_mut(),
            &self.bar,
            &self.progress.inner.sink,
        ) {
            bar.finish_and_clear();
            multi.remove(bar);
        }
    }
}

/// Templates are constants, so a parse failure is a bug; fall back to the default style
/// rather than panicking mid-run.
fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A shared buffer standing in for stderr.
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Buf {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    fn assert_send_sync<T: Send + Sync + Clone + 'static>() {}

    #[test]
    fn handles_are_send_sync_clone() {
        assert_send_sync::<Progress>();
        assert_send_sync::<TableProgress>();
    }

    #[test]
    fn plain_lines_from_many_threads() {
        let buf = Buf::default();
        let p = Progress::to_writer(8, buf.clone());
        std::thread::scope(|s| {
            for i in 0..8 {
                let p = p.clone();
                s.spawn(move || {
                    let t = p.table_started(&format!("db.t{i}"), Some(4));
                    std::thread::scope(|s| {
                        for _ in 0..4 {
                            let t = t.clone();
                            s.spawn(move || {
                                for _ in 0..3 {
                                    t.chunk_done();
                                }
                            });
                        }
                    });
                    let r = if i % 2 == 0 {
                        TableResult::Equal
                    } else {
                        TableResult::Different
                    };
                    t.finish(r);
                    t.finish(r); // second call is ignored
                });
            }
        });
        p.finish();
        p.finish();
        assert_eq!(p.done(), 8);
        let text = buf.text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 8, "{text}");
        assert!(!text.contains('\x1b'), "no escape codes: {text:?}");
        for i in 0..8 {
            let line = lines
                .iter()
                .find(|l| l.contains(&format!(" db.t{i}: ")))
                .unwrap_or_else(|| panic!("no line for db.t{i}: {text}"));
            assert!(line.contains("(12 chunks, "), "{line}");
            let want = if i % 2 == 0 { "equal" } else { "different" };
            assert!(line.contains(&format!(": {want} (")), "{line}");
        }
        // Every [k/8] prefix appears exactly once.
        for k in 1..=8 {
            let prefix = format!("[{k}/8] ");
            assert_eq!(lines.iter().filter(|l| l.starts_with(&prefix)).count(), 1);
        }
    }

    #[test]
    fn plain_line_format() {
        let buf = Buf::default();
        let p = Progress::to_writer(10, buf.clone());
        let t = p.table_started("sbtest.sbtest1", None);
        t.chunk_done();
        t.finish(TableResult::Skipped);
        let text = buf.text();
        assert!(
            text.starts_with("[1/10] sbtest.sbtest1: skipped (1 chunk, 0."),
            "{text}"
        );
        assert!(text.ends_with("s)\n"), "{text}");
    }

    #[test]
    fn periodic_line_for_long_tables() {
        let buf = Buf::default();
        let mut p = Progress::to_writer(2, buf.clone());
        Arc::get_mut(&mut p.inner).unwrap().period = Duration::ZERO;
        let t = p.table_started("db.big", Some(100));
        t.chunk_done();
        t.finish(TableResult::Equal);
        let text = buf.text();
        assert!(
            text.contains("[0/2] db.big: still running (1/~100 chunks, "),
            "{text}"
        );
        assert!(text.contains("[1/2] db.big: equal (1 chunk, "), "{text}");
    }

    #[test]
    fn hidden_counts_and_stays_quiet() {
        let p = Progress::hidden();
        p.set_total(3);
        let t = p.table_started("db.t", Some(2));
        t.chunk_done();
        t.chunk_done();
        assert_eq!(t.chunks(), 2);
        t.finish(TableResult::Equal);
        p.println("ignored");
        assert_eq!(p.suspend(|| 7), 7);
        p.finish();
        assert_eq!(p.done(), 1);
    }

    #[test]
    fn bars_with_hidden_target_do_not_panic() {
        // The TTY code path, drawn nowhere.
        let p = Progress::new(3, true);
        if let Sink::Bars { multi, .. } = &p.inner.sink {
            multi.set_draw_target(indicatif::ProgressDrawTarget::hidden());
        }
        std::thread::scope(|s| {
            for i in 0..3 {
                let p = p.clone();
                s.spawn(move || {
                    let est = if i == 0 { None } else { Some(5) };
                    let t = p.table_started(&format!("db.t{i}"), est);
                    for _ in 0..5 {
                        t.chunk_done();
                    }
                    if i != 2 {
                        t.finish(TableResult::Equal);
                    } // table 2 is dropped unfinished
                });
            }
        });
        p.finish();
        assert_eq!(p.done(), 2);
    }
}
