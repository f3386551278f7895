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

/// The system clock moved on by however far it was told: time flows as it
/// does for a real server (so times that other processes, or the test
/// itself, read from the system clock stay coherent), and a test jumps over
/// a grace period or a session's lifetime instead of sleeping through it.
#[derive(Debug, Default)]
pub struct ShiftedClock {
    offset: Mutex<chrono::Duration>,
}

impl ShiftedClock {
    /// A clock at the system's time, for now.
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    /// Moves the clock on by `by`.
    pub fn advance(&self, by: chrono::Duration) {
        let mut offset = self.offset.lock().unwrap_or_else(PoisonError::into_inner);
        *offset += by;
    }

    /// Sets the clock to `at`, from where it flows on.
    pub fn set(&self, at: DateTime<Utc>) {
        *self.offset.lock().unwrap_or_else(PoisonError::into_inner) = at - Utc::now();
    }
}

impl Clock for ShiftedClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now() + *self.offset.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shifted_clock_flows_from_where_it_was_moved() {
        let clock = ShiftedClock::new();
        let before = Utc::now();
        clock.advance(chrono::Duration::days(2));
        let moved = clock.now();
        assert!(moved >= before + chrono::Duration::days(2));
        assert!(moved <= Utc::now() + chrono::Duration::days(2));
        let at = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        clock.set(at);
        let now = clock.now();
        assert!(
            now >= at && now < at + chrono::Duration::seconds(5),
            "{now}"
        );
    }
}
