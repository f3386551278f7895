//! Progress of a long read of the log (a verifier's start-up, a projection
//! rebuild), so an operator watching a slow start knows it is moving and when
//! it will be done.
//!
//! Two ways to show it:
//!
//! - a log line every few seconds with the events folded, the rate, and how
//!   far to the head: the default, and the only way in `serve`, whose standard
//!   error carries log lines (often to a collector) that a bar's redraws would
//!   garble;
//! - a progress bar on standard error, for a command run by hand: only once
//!   the command has opted in with [`show_bars`], and only when standard error
//!   is a terminal (piped or redirected, it gets the log lines).

use std::io::IsTerminal as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How often a line is written.
const EVERY: Duration = Duration::from_secs(5);

/// How often a bar is redrawn while no batch arrives, so its elapsed time
/// and estimate keep moving during a slow batch.
const TICK: Duration = Duration::from_millis(250);

/// Whether this process has asked for bars; see [`show_bars`].
static SHOW_BARS: AtomicBool = AtomicBool::new(false);

/// Opts this process in to progress bars (where standard error is a
/// terminal) instead of log lines. Called by interactive commands such as
/// `gatehouse projections rebuild`; never by `serve`, whose log lines a bar
/// would garble. Process-wide because [`Progress`] is created deep inside
/// the store and the verifier, far from the command that knows who watches.
pub fn show_bars() {
    SHOW_BARS.store(true, Ordering::Relaxed);
}

/// Whether to draw a bar: only when the process opted in and standard error
/// is a terminal. Kept pure so the decision is testable without one.
fn use_bar(opted_in: bool, terminal: bool) -> bool {
    opted_in && terminal
}

/// Counts events read towards `head` and shows progress: every [`EVERY`] as
/// a log line, or as a bar (see the module docs for when).
pub struct Progress {
    what: &'static str,
    head: u64,
    events: u64,
    started: Instant,
    reported: Instant,
    /// The bar drawn instead of log lines, if any; taken when finished.
    bar: Option<ProgressBar>,
}

impl Progress {
    /// Starts counting a read of the log up to `head` (its position when
    /// the read began).
    pub fn new(what: &'static str, head: u64) -> Self {
        let opted_in = SHOW_BARS.load(Ordering::Relaxed);
        Self::start(what, head, opted_in, std::io::stderr().is_terminal())
    }

    /// [`Progress::new`] with the process's opt-in and whether standard
    /// error is a terminal given, for tests.
    fn start(what: &'static str, head: u64, opted_in: bool, terminal: bool) -> Self {
        let bar = use_bar(opted_in, terminal).then(|| {
            let bar = bar(what, head, ProgressDrawTarget::stderr());
            bar.enable_steady_tick(TICK);
            bar
        });
        Self::with_bar(what, head, bar)
    }

    fn with_bar(what: &'static str, head: u64, bar: Option<ProgressBar>) -> Self {
        let now = Instant::now();
        Self {
            what,
            head,
            events: 0,
            started: now,
            reported: now,
            bar,
        }
    }

    /// Records `events` more read, the last at `position`.
    pub fn advance(&mut self, events: usize, position: u64) {
        self.events += events as u64;
        if let Some(bar) = &self.bar {
            // The log may have grown since `head` was read; the bar's end
            // moves with it rather than sitting full while work goes on.
            if position > bar.length().unwrap_or(0) {
                bar.set_length(position);
            }
            bar.set_position(position);
            return;
        }
        if self.reported.elapsed() >= EVERY {
            self.reported = Instant::now();
            let rate = self.events as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
            let left = self.head.saturating_sub(position);
            tracing::info!(
                what = self.what,
                events = self.events,
                position,
                head = self.head,
                percent = format!("{:.0}", 100.0 * position as f64 / self.head.max(1) as f64),
                events_per_sec = format!("{rate:.0}"),
                eta_secs = format!("{:.0}", left as f64 / rate.max(1.0)),
                "reading the log"
            );
        }
    }

    /// Events counted so far.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// Ends the read: clears the bar, if any, so what the command prints next
    /// starts on a clean line (a no-op for log lines). Also done on drop, so
    /// a read that fails half-way does not leave a bar on the terminal.
    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

/// A bar of positions read up to `head`, labelled `what`.
fn bar(what: &'static str, head: u64, target: ProgressDrawTarget) -> ProgressBar {
    let style = ProgressStyle::with_template(
        "{msg} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} ({per_sec:0}, eta {eta})",
    )
    // A constant template; were it ever refused, a plain bar still shows.
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    ProgressBar::with_draw_target(Some(head), target)
        .with_style(style)
        .with_message(what)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bar_only_when_opted_in_on_a_terminal() {
        assert!(use_bar(true, true));
        assert!(!use_bar(true, false), "piped stderr gets log lines");
        assert!(!use_bar(false, true), "serve never opts in");
        assert!(!use_bar(false, false));
    }

    #[test]
    fn without_a_terminal_no_bar_and_events_are_counted() {
        let mut progress = Progress::start("test", 10, true, false);
        assert!(progress.bar.is_none());
        progress.advance(3, 3);
        progress.advance(4, 7);
        assert_eq!(progress.events(), 7);
        progress.finish();
        assert_eq!(progress.events(), 7);
    }

    #[test]
    fn the_bar_follows_positions_and_is_cleared_when_done() {
        let bar = bar("test", 10, ProgressDrawTarget::hidden());
        let mut progress = Progress::with_bar("test", 10, Some(bar.clone()));
        progress.advance(3, 3);
        progress.advance(4, 7);
        assert_eq!((bar.position(), bar.length()), (7, Some(10)));
        assert_eq!(progress.events(), 7);
        // Appended to since the head was read: the end moves.
        progress.advance(5, 12);
        assert_eq!((bar.position(), bar.length()), (12, Some(12)));
        assert!(!bar.is_finished());
        progress.finish();
        assert!(bar.is_finished());
    }

    #[test]
    fn dropping_finishes_the_bar() {
        let bar = bar("test", 10, ProgressDrawTarget::hidden());
        let progress = Progress::with_bar("test", 10, Some(bar.clone()));
        assert!(!bar.is_finished());
        drop(progress);
        assert!(bar.is_finished());
    }
}
