//! Progress of a long read of the log (a verifier's start-up, a projection
//! rebuild): a log line every few seconds with the events folded, the rate,
//! and how far to the head, so an operator watching a slow start knows it is
//! moving and when it will be done.

use std::time::{Duration, Instant};

/// How often a line is written.
const EVERY: Duration = Duration::from_secs(5);

/// Counts events read towards `head` and reports every [`EVERY`].
pub struct Progress {
    what: &'static str,
    head: u64,
    events: u64,
    started: Instant,
    reported: Instant,
}

impl Progress {
    /// Starts counting a read of the log up to `head` (its position when
    /// the read began).
    pub fn new(what: &'static str, head: u64) -> Self {
        let now = Instant::now();
        Self {
            what,
            head,
            events: 0,
            started: now,
            reported: now,
        }
    }

    /// Records `events` more read, the last at `position`.
    pub fn advance(&mut self, events: usize, position: u64) {
        self.events += events as u64;
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
}
