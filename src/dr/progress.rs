//! Progress of long transfers: a byte counter on stderr when it is a terminal, nothing
//! otherwise (logs say what happened).

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// A spinner showing the bytes counted by `bytes`, refreshed until finished.
pub struct BytesProgress {
    bar: ProgressBar,
    ticker: tokio::task::JoinHandle<()>,
}

impl BytesProgress {
    pub fn finish_and_clear(&self) {
        self.ticker.abort();
        self.bar.finish_and_clear();
    }
}

impl Drop for BytesProgress {
    fn drop(&mut self) {
        self.ticker.abort();
    }
}

/// Show `label` with the running count of `bytes` (and the rate).
pub fn bytes(label: &str, bytes: Arc<AtomicU64>) -> BytesProgress {
    let bar = if std::io::stderr().is_terminal() {
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg} {bytes} ({bytes_per_sec}, {elapsed})")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_message(label.to_string());
        bar
    } else {
        ProgressBar::hidden()
    };
    let shown = bar.clone();
    let ticker = tokio::spawn(async move {
        loop {
            shown.set_position(bytes.load(Ordering::Relaxed));
            shown.tick();
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    BytesProgress { bar, ticker }
}
