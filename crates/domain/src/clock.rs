//! Where the application layers read "now" from. Decisions still take `now`
//! as an argument; the issuer, the verifier and the server's schedulers ask
//! one [`Clock`], handed down from the composition root, so a test can move
//! time on (a grace period running out, a session reaching its limit, a
//! token expiring) instead of sleeping through it.

use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Utc};

/// A source of the current time.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> DateTime<Utc>;
}

/// The clock a process shares between its parts.
pub type SharedClock = Arc<dyn Clock>;

/// The system's wall clock: what `serve` runs on.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// The system clock as a [`SharedClock`].
pub fn system() -> SharedClock {
    Arc::new(SystemClock)
}

/// A clock that stands still until told to move: for tests of anything
/// that depends on time passing.
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<DateTime<Utc>>,
}

impl ManualClock {
    /// A clock standing at `now`.
    pub fn at(now: DateTime<Utc>) -> Arc<Self> {
        Arc::new(Self {
            now: Mutex::new(now),
        })
    }

    /// A clock standing at the system's current time (so tokens it dates
    /// look ordinary to any other reader of them).
    pub fn starting_now() -> Arc<Self> {
        Self::at(Utc::now())
    }

    /// Moves the clock on by `by` (or back, for a negative duration).
    pub fn advance(&self, by: chrono::Duration) {
        let mut now = self.now.lock().unwrap_or_else(PoisonError::into_inner);
        *now += by;
    }

    /// Sets the clock to `at`.
    pub fn set(&self, at: DateTime<Utc>) {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner) = at;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_stands_still_until_moved() {
        let start = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let clock = ManualClock::at(start);
        assert_eq!(clock.now(), start);
        clock.advance(chrono::Duration::hours(25));
        assert_eq!(clock.now(), start + chrono::Duration::hours(25));
        clock.set(start);
        assert_eq!(clock.now(), start);
        let shared: SharedClock = clock;
        assert_eq!(shared.now(), start);
    }
}
