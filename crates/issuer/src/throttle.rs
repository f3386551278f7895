//! The login throttle: counters per (username, client address), per username
//! and per address, shared by every issuer through the database.
//!
//! An attempt is counted *before* the password is checked, under a row lock
//! (Postgres `FOR UPDATE`; SQLite's single writer), so parallel guesses are
//! counted one by one and cannot slip past the limit together (the bypass of
//! GHSA-7h8m-vrxx-vr4m). The pair counter is the tight one, so an attacker's
//! guesses delay the attacker, not the account's owner elsewhere; the
//! per-username and per-address counters are looser ceilings. Past a
//! counter's free attempts, each failure doubles the delay (no hard lock).
//! Refusals during a delay only count in the row: the first of each delay is
//! reported to the caller, to be audited once. Rows untouched for a window
//! are pruned, so random usernames cannot grow the table for good.

use std::time::Duration;

use chrono::{DateTime, Utc};
use gatehouse_eventstore::{EventStore, StoreTx, on_backend};
use sha2::{Digest as _, Sha256};

use crate::error::IssuerError;
use crate::settings::ThrottleSettings;

/// One counter to check and bump.
struct Counter {
    key: String,
    free: u32,
}

/// An attempt refused because a delay is running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    pub retry_after: Duration,
    /// The first refusal of this delay: the one to audit.
    pub first: bool,
}

/// A counted attempt whose password has not been checked yet. If the call is
/// dropped before that (the request deadline while argon2 is queued, a
/// client gone), the attempt is refunded on its own task: a flood that
/// lengthens the hash queue must not turn an owner's correct logins into
/// failures that delay the owner.
#[must_use = "settle the attempt once the password was checked"]
pub struct Attempt {
    pending: Option<(Throttle, String, Option<String>)>,
}

impl Attempt {
    /// The password was checked. A wrong one counts as it is; a right one
    /// clears the counters (see [`Throttle::succeeded`]) on a task of its
    /// own, so a caller that leaves from here on (a deadline, a reset) cannot
    /// turn a correct password into a counted failure.
    pub async fn settle(mut self, correct: bool) -> Result<(), IssuerError> {
        let Some((throttle, username, address)) = self.pending.take() else {
            return Ok(());
        };
        if !correct {
            return Ok(());
        }
        tokio::spawn(async move { throttle.succeeded(&username, address.as_deref()).await })
            .await
            .map_err(|e| IssuerError::Internal(format!("the throttle's task failed: {e}")))?
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        let Some((throttle, username, address)) = self.pending.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            if let Err(error) = throttle.refund(&username, address.as_deref()).await {
                tracing::warn!(%error, "could not refund an abandoned login attempt");
            }
        });
    }
}

/// How often stale rows are pruned, at most.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

#[derive(Clone)]
pub struct Throttle {
    store: EventStore,
    settings: ThrottleSettings,
    /// When rows were last pruned (Unix seconds).
    pruned_at: std::sync::Arc<std::sync::atomic::AtomicI64>,
}

impl Throttle {
    pub fn new(store: EventStore, settings: ThrottleSettings) -> Self {
        Self {
            store,
            settings,
            pruned_at: Default::default(),
        }
    }

    /// The address as the throttle counts it: an IPv6 client by its /64
    /// (one subscriber's whole network), anything else as given.
    fn address_key(address: &str) -> String {
        match address.parse::<std::net::IpAddr>() {
            Ok(std::net::IpAddr::V6(v6)) => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
            _ => address.to_string(),
        }
    }

    fn counters(&self, username: &str, address: Option<&str>) -> Vec<Counter> {
        let user = Self::username_key(username);
        let address = address.map(Self::address_key);
        let address = address.as_deref();
        let mut counters = vec![
            Counter {
                key: format!("pair:{}:{}", &user[5..], address.unwrap_or("-")),
                free: self.settings.free_per_pair,
            },
            Counter {
                key: user,
                free: self.settings.free_per_username,
            },
        ];
        if let Some(address) = address {
            counters.push(Counter {
                key: format!("addr:{address}"),
                free: self.settings.free_per_address,
            });
        }
        counters
    }

    fn username_key(username: &str) -> String {
        let digest = Sha256::digest(username.trim().to_lowercase().as_bytes());
        let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
        format!("user:{hex}")
    }

    /// Counts an attempt at `username` from `address`, or refuses it with the
    /// time until the next attempt is allowed (writing only the refusal count).
    pub async fn reserve(
        &self,
        username: &str,
        address: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Result<(), Refused>, IssuerError> {
        self.prune_now_and_then(now);
        let counters = self.counters(username, address);
        let mut tx = self.store.begin().await?;
        // A running delay refuses before anything is inserted, the address's
        // first: refused attempts with ever new usernames add no rows.
        for counter in counters.iter().rev() {
            const DELAYED: &str = "SELECT locked_until, refused FROM login_throttle WHERE key = $1";
            let row: Option<(Option<DateTime<Utc>>, i64)> =
                on_backend!(&mut tx, |conn| sqlx::query_as(DELAYED)
                    .bind(&counter.key)
                    .fetch_optional(conn)
                    .await)
                .map_err(db)?;
            if let Some((Some(until), refused)) =
                row.filter(|(until, _)| until.is_some_and(|u| u > now))
            {
                return refuse(tx, &counter.key, until, refused, now).await.map(Err);
            }
        }
        let mut updates = Vec::with_capacity(counters.len());
        for counter in &counters {
            let (failures, locked_until, updated_at, refused) =
                lock_row(&mut tx, &counter.key, now).await?;
            if let Some(until) = locked_until.filter(|until| *until > now) {
                return refuse(tx, &counter.key, until, refused, now).await.map(Err);
            }
            let stale = (now - updated_at)
                .to_std()
                .is_ok_and(|age| age > self.settings.window);
            let failures = if stale { 1 } else { failures + 1 };
            let locked_until = (failures > i64::from(counter.free)).then(|| {
                let exponent = u32::try_from(failures - i64::from(counter.free) - 1)
                    .unwrap_or(u32::MAX)
                    .min(20);
                let delay = self
                    .settings
                    .base_delay
                    .saturating_mul(2u32.saturating_pow(exponent));
                now + chrono::Duration::from_std(delay.min(self.settings.max_delay))
                    .unwrap_or_default()
            });
            updates.push((counter.key.as_str(), failures, locked_until));
        }
        for (key, failures, locked_until) in updates {
            // A new delay starts its own count of refusals.
            const UPDATE: &str = "UPDATE login_throttle SET failures = $2, locked_until = $3, \
                                  updated_at = $4, refused = 0 WHERE key = $1";
            on_backend!(&mut tx, |conn| sqlx::query(UPDATE)
                .bind(key)
                .bind(failures)
                .bind(locked_until)
                .bind(now)
                .execute(conn)
                .await
                .map(|_| ()))
            .map_err(db)?;
        }
        tx.commit().await?;
        Ok(Ok(()))
    }

    /// Deletes rows untouched for a window and not delaying anyone, at most
    /// once a minute per issuer; best effort, on its own task, so an attempt
    /// never waits for it.
    fn prune_now_and_then(&self, now: DateTime<Utc>) {
        use std::sync::atomic::Ordering;
        let last = self.pruned_at.load(Ordering::Relaxed);
        let every = i64::try_from(PRUNE_EVERY.as_secs()).unwrap_or(60);
        if now.timestamp() - last < every
            || self
                .pruned_at
                .compare_exchange(last, now.timestamp(), Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let cutoff = now - chrono::Duration::from_std(self.settings.window).unwrap_or_default();
        const PRUNE: &str = "DELETE FROM login_throttle WHERE updated_at < $1 \
                             AND (locked_until IS NULL OR locked_until < $2)";
        let store = self.store.clone();
        tokio::spawn(async move {
            let pruned = async {
                let mut tx = store.begin().await?;
                on_backend!(&mut tx, |conn| sqlx::query(PRUNE)
                    .bind(cutoff)
                    .bind(now)
                    .execute(conn)
                    .await
                    .map(|_| ()))
                .map_err(db)?;
                tx.commit().await?;
                Ok::<_, IssuerError>(())
            };
            if let Err(error) = pruned.await {
                tracing::warn!(%error, "could not prune the login throttle");
            }
        });
    }

    /// The guard of an attempt just reserved (see [`Attempt`]).
    pub fn attempt(&self, username: &str, address: Option<&str>) -> Attempt {
        Attempt {
            pending: Some((
                self.clone(),
                username.to_string(),
                address.map(str::to_string),
            )),
        }
    }

    /// Takes back one attempt from every counter of `username` at
    /// `address`, and a delay that attempt started.
    pub async fn refund(&self, username: &str, address: Option<&str>) -> Result<(), IssuerError> {
        let mut tx = self.store.begin().await?;
        for counter in self.counters(username, address) {
            refund_one(&mut tx, &counter).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// After a successful login: clears the pair's and the username's
    /// counters and refunds the attempt counted against the address, so a
    /// busy address (a NAT, a proxy) is not delayed by its own successful
    /// logins, while its failures still count.
    pub async fn succeeded(
        &self,
        username: &str,
        address: Option<&str>,
    ) -> Result<(), IssuerError> {
        let mut tx = self.store.begin().await?;
        for counter in self.counters(username, address) {
            if counter.key.starts_with("addr:") {
                // The refund also lifts a delay this very attempt started.
                refund_one(&mut tx, &counter).await?;
            } else {
                execute(
                    &mut tx,
                    "DELETE FROM login_throttle WHERE key = $1",
                    &counter.key,
                )
                .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }
}

/// Takes one failure off a counter (`$1`), and lifts its delay when that
/// brings it back within its free attempts (`$2`).
const REFUND: &str = "UPDATE login_throttle SET \
     failures = CASE WHEN failures > 0 THEN failures - 1 ELSE 0 END, \
     locked_until = CASE WHEN failures - 1 <= $2 THEN NULL ELSE locked_until END \
     WHERE key = $1";

/// Takes one attempt back from `counter` (see [`REFUND`]).
async fn refund_one(tx: &mut StoreTx, counter: &Counter) -> Result<(), IssuerError> {
    on_backend!(&mut *tx, |conn| sqlx::query(REFUND)
        .bind(&counter.key)
        .bind(i64::from(counter.free))
        .execute(conn)
        .await
        .map(|_| ()))
    .map_err(db)
}

/// Refuses an attempt while `key`'s delay runs until `until`: counts the
/// refusal in the row (only the first of a delay is audited) and commits.
async fn refuse(
    mut tx: StoreTx,
    key: &str,
    until: DateTime<Utc>,
    refused: i64,
    now: DateTime<Utc>,
) -> Result<Refused, IssuerError> {
    execute(
        &mut tx,
        "UPDATE login_throttle SET refused = refused + 1 WHERE key = $1",
        key,
    )
    .await?;
    tx.commit().await?;
    Ok(Refused {
        retry_after: (until - now).to_std().unwrap_or(Duration::from_secs(1)),
        first: refused == 0,
    })
}

/// A database error as the issuer reports it (unavailable or internal).
fn db(error: sqlx::Error) -> IssuerError {
    gatehouse_eventstore::StoreError::Database(error).into()
}

/// Runs `sql` with `key` as its one parameter.
async fn execute(tx: &mut StoreTx, sql: &'static str, key: &str) -> Result<(), IssuerError> {
    on_backend!(&mut *tx, |conn| sqlx::query(sql)
        .bind(key)
        .execute(conn)
        .await
        .map(|_| ()))
    .map_err(db)
}

type Row = (i64, Option<DateTime<Utc>>, DateTime<Utc>, i64);

/// The row of `key`, created if missing, locked for the transaction. One
/// statement: an insert-then-select lost the row to a concurrent success
/// that deleted it in between (concurrent logins of one user got INTERNAL);
/// `ON CONFLICT DO UPDATE` locks and returns the row that is there, and on
/// Postgres inserts anew if the conflicting row was deleted meanwhile.
async fn lock_row(tx: &mut StoreTx, key: &str, now: DateTime<Utc>) -> Result<Row, IssuerError> {
    const UPSERT: &str = "INSERT INTO login_throttle (key, failures, locked_until, updated_at) \
                          VALUES ($1, 0, NULL, $2) \
                          ON CONFLICT (key) DO UPDATE SET key = excluded.key \
                          RETURNING failures, locked_until, updated_at, refused";
    let row: Row = on_backend!(&mut *tx, |conn| sqlx::query_as(UPSERT)
        .bind(key)
        .bind(now)
        .fetch_one(conn)
        .await)
    .map_err(db)?;
    Ok(row)
}
