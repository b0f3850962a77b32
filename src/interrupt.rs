//! Ctrl-C and SIGTERM as a value long-running work can wait on. The binary installs the
//! handlers ([`Interrupt::on_signals`]); library callers that do not care pass
//! [`Interrupt::never`]. Work stops at its next safe point: a check saves its checkpoint
//! and releases what it holds on the servers, then returns `Error::Interrupted` (a
//! [`Signal`] converts into it).

use std::future::Future;
use std::sync::Arc;
use tokio::sync::watch;

/// The signal that stopped the work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGINT (Ctrl-C).
    Interrupt,
    /// SIGTERM.
    Terminate,
    /// The run's time limit (`check --max-runtime`) passed.
    Deadline,
}

impl Signal {
    /// The conventional exit code: 128 + the signal number.
    pub fn exit_code(self) -> i32 {
        match self {
            Signal::Interrupt => crate::exit::SIGINT,
            Signal::Terminate => crate::exit::SIGTERM,
            Signal::Deadline => crate::exit::INCOMPLETE,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Signal::Interrupt => "SIGINT",
            Signal::Terminate => "SIGTERM",
            Signal::Deadline => "the --max-runtime limit",
        }
    }
}

impl std::fmt::Display for Signal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A cheap, cloneable handle on "has the user asked us to stop?".
#[derive(Clone)]
pub struct Interrupt {
    rx: watch::Receiver<Option<Signal>>,
    /// Keeps the channel open for handles with no signal source (`never`, `manual`).
    _tx: Arc<watch::Sender<Option<Signal>>>,
}

impl std::fmt::Debug for Interrupt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Interrupt({:?})", self.fired())
    }
}

impl Default for Interrupt {
    fn default() -> Self {
        Interrupt::never()
    }
}

impl Interrupt {
    /// A handle that never fires.
    pub fn never() -> Interrupt {
        Interrupt::manual().0
    }

    /// A handle fired by calling the returned function (tests, embedding programs).
    pub fn manual() -> (Interrupt, impl Fn(Signal) + Send + Sync + 'static) {
        let (tx, rx) = watch::channel(None);
        let tx = Arc::new(tx);
        let fire = {
            let tx = tx.clone();
            move |s: Signal| {
                tx.send_if_modified(|cur| cur.is_none() && cur.replace(s).is_none());
            }
        };
        (Interrupt { rx, _tx: tx }, fire)
    }

    /// Fire on the first SIGINT or SIGTERM the process receives. Must be called inside a
    /// tokio runtime. A second signal is left to the default handlers' successor: it is
    /// ignored here, so cleanup is not cut short.
    pub fn on_signals() -> std::io::Result<Interrupt> {
        use tokio::signal::unix::{signal, SignalKind};
        let mut int = signal(SignalKind::interrupt())?;
        let mut term = signal(SignalKind::terminate())?;
        let (handle, fire) = Interrupt::manual();
        tokio::spawn(async move {
            let s = tokio::select! {
                _ = int.recv() => Signal::Interrupt,
                _ = term.recv() => Signal::Terminate,
            };
            tracing::warn!("{s} received: stopping at the next safe point");
            fire(s);
        });
        Ok(handle)
    }

    /// This handle, also fired with [`Signal::Deadline`] once `after` has passed (unless a
    /// signal came first). Must be called inside a tokio runtime.
    pub fn with_deadline(&self, after: std::time::Duration) -> Interrupt {
        let (handle, fire) = Interrupt::manual();
        let outer = self.clone();
        tokio::spawn(async move {
            let s = tokio::select! {
                s = outer.wait() => s,
                _ = tokio::time::sleep(after) => {
                    tracing::warn!(
                        "the --max-runtime limit ({after:?}) passed: stopping at the next safe point"
                    );
                    Signal::Deadline
                }
            };
            fire(s);
        });
        handle
    }

    /// This handle, also fired with `signal` once `event` completes (unless a signal came
    /// first): `dr archive` under `dr replicate --with-archive` stops like on SIGTERM when
    /// its parent's end closes its stdin. Must be called inside a tokio runtime.
    pub fn or_when<F>(&self, event: F, signal: Signal, why: &'static str) -> Interrupt
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let (handle, fire) = Interrupt::manual();
        let outer = self.clone();
        tokio::spawn(async move {
            let s = tokio::select! {
                s = outer.wait() => s,
                _ = event => {
                    tracing::warn!("{why}: stopping at the next safe point");
                    signal
                }
            };
            fire(s);
        });
        handle
    }

    /// The signal received so far, if any.
    pub fn fired(&self) -> Option<Signal> {
        *self.rx.borrow()
    }

    /// Wait until a signal arrives (forever for [`Interrupt::never`]).
    pub async fn wait(&self) -> Signal {
        let mut rx = self.rx.clone();
        loop {
            if let Some(s) = *rx.borrow_and_update() {
                return s;
            }
            if rx.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
    }

    /// Run `work` unless a signal arrives first, in which case `work` is dropped (so it
    /// must hold nothing that only an explicit step releases) and the result is the signal.
    pub async fn interruptible<F: Future>(&self, work: F) -> Result<F::Output, Signal> {
        if let Some(signal) = self.fired() {
            return Err(signal);
        }
        tokio::select! {
            out = work => Ok(out),
            signal = self.wait() => Err(signal),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn manual_fires_once_and_stops_work() {
        let (i, fire) = Interrupt::manual();
        assert_eq!(i.fired(), None);
        let clone = i.clone();
        fire(Signal::Terminate);
        fire(Signal::Interrupt);
        assert_eq!(clone.fired(), Some(Signal::Terminate));
        assert_eq!(clone.wait().await, Signal::Terminate);
        let r = i.interruptible(std::future::pending::<()>()).await;
        assert_eq!(r, Err(Signal::Terminate));
    }

    #[tokio::test]
    async fn or_when_fires_on_the_event_unless_a_signal_came_first() {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let i = Interrupt::never().or_when(
            async {
                let _ = rx.await;
            },
            Signal::Terminate,
            "test",
        );
        assert_eq!(i.fired(), None);
        drop(tx);
        assert_eq!(i.wait().await, Signal::Terminate);

        let (outer, fire) = Interrupt::manual();
        let i = outer.or_when(std::future::pending(), Signal::Terminate, "test");
        fire(Signal::Interrupt);
        assert_eq!(i.wait().await, Signal::Interrupt);
    }

    #[tokio::test]
    async fn never_lets_work_finish() {
        let i = Interrupt::never();
        assert_eq!(i.interruptible(async { 7 }).await.unwrap(), 7);
        let waited = tokio::time::timeout(std::time::Duration::from_millis(20), i.wait()).await;
        assert!(waited.is_err(), "never() must not fire");
    }

    #[test]
    fn exit_codes_are_128_plus_signal() {
        assert_eq!(Signal::Interrupt.exit_code(), 130);
        assert_eq!(Signal::Terminate.exit_code(), 143);
        assert_eq!(Signal::Deadline.exit_code(), 3, "incomplete, resumable");
    }

    #[tokio::test(start_paused = true)]
    async fn a_deadline_fires_unless_a_signal_comes_first() {
        let d = std::time::Duration::from_secs(60);
        let i = Interrupt::never().with_deadline(d);
        tokio::task::yield_now().await;
        assert_eq!(i.fired(), None);
        assert_eq!(i.wait().await, Signal::Deadline);

        let (outer, fire) = Interrupt::manual();
        let i = outer.with_deadline(d);
        fire(Signal::Interrupt);
        assert_eq!(i.wait().await, Signal::Interrupt);
    }
}
