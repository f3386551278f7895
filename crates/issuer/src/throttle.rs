//! The login throttle: counters per username and per client address, shared
//! by every issuer through the database.
//!
//! An attempt is counted *before* the password is checked, under a row lock
//! (Postgres `FOR UPDATE`; SQLite's single writer), so parallel guesses are
//! counted one by one and cannot slip past the limit together (the bypass of
//! GHSA-7h8m-vrxx-vr4m). A successful login clears the username's counter.

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

#[derive(Clone)]
pub struct Throttle {
    store: EventStore,
    settings: ThrottleSettings,
}

impl Throttle {
    pub fn new(store: EventStore, settings: ThrottleSettings) -> Self {
        Self { store, settings }
    }

    fn username_key(username: &str) -> String {
        let digest = Sha256::digest(username.trim().to_lowercase().as_bytes());
        let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
        format!("user:{hex}")
    }

    /// Counts an attempt at `username` from `address`, or refuses it with the
    /// time until the next attempt is allowed.
    pub async fn reserve(
        &self,
        username: &str,
        address: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(), IssuerError> {
        let mut counters = vec![Counter {
            key: Self::username_key(username),
            free: self.settings.free_per_username,
        }];
        if let Some(address) = address {
            counters.push(Counter {
                key: format!("addr:{address}"),
                free: self.settings.free_per_address,
            });
        }
        let mut tx = self.store.begin().await?;
        let mut updates = Vec::with_capacity(counters.len());
        for counter in &counters {
            let (failures, locked_until, updated_at) = lock_row(&mut tx, &counter.key, now).await?;
            if let Some(until) = locked_until.filter(|until| *until > now) {
                let retry_after = (until - now).to_std().unwrap_or(Duration::from_secs(1));
                return Err(IssuerError::Throttled { retry_after });
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
            const UPDATE: &str = "UPDATE login_throttle SET failures = $2, locked_until = $3, updated_at = $4 WHERE key = $1";
            on_backend!(&mut tx, |conn| sqlx::query(UPDATE)
                .bind(key)
                .bind(failures)
                .bind(locked_until)
                .bind(now)
                .execute(conn)
                .await
                .map(|_| ()))
            .map_err(|e| IssuerError::Internal(e.to_string()))?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// After a successful login: clears the username's counter and refunds
    /// the attempt counted against the address, so a busy address (a NAT, a
    /// proxy) is not locked by its own successful logins, while its failures
    /// still count.
    pub async fn succeeded(
        &self,
        username: &str,
        address: Option<&str>,
    ) -> Result<(), IssuerError> {
        let internal = |e: sqlx::Error| IssuerError::Internal(e.to_string());
        let key = Self::username_key(username);
        let mut tx = self.store.begin().await?;
        on_backend!(&mut tx, |conn| sqlx::query(
            "DELETE FROM login_throttle WHERE key = $1"
        )
        .bind(&key)
        .execute(conn)
        .await
        .map(|_| ()))
        .map_err(internal)?;
        if let Some(address) = address {
            const REFUND: &str = "UPDATE login_throttle SET failures = \
                 CASE WHEN failures > 0 THEN failures - 1 ELSE 0 END WHERE key = $1";
            let key = format!("addr:{address}");
            on_backend!(&mut tx, |conn| sqlx::query(REFUND)
                .bind(&key)
                .execute(conn)
                .await
                .map(|_| ()))
            .map_err(internal)?;
        }
        tx.commit().await?;
        Ok(())
    }
}

type Row = (i64, Option<DateTime<Utc>>, DateTime<Utc>);

async fn lock_row(tx: &mut StoreTx, key: &str, now: DateTime<Utc>) -> Result<Row, IssuerError> {
    const INSERT: &str = "INSERT INTO login_throttle (key, failures, locked_until, updated_at) \
                          VALUES ($1, 0, NULL, $2) ON CONFLICT (key) DO NOTHING";
    let internal = |e: sqlx::Error| IssuerError::Internal(e.to_string());
    on_backend!(&mut *tx, |conn| sqlx::query(INSERT)
        .bind(key)
        .bind(now)
        .execute(conn)
        .await
        .map(|_| ()))
    .map_err(internal)?;
    let row: Row = match tx {
        StoreTx::Postgres(tx) => sqlx::query_as(
            "SELECT failures, locked_until, updated_at FROM login_throttle WHERE key = $1 FOR UPDATE",
        )
        .bind(key)
        .fetch_one(&mut **tx)
        .await
        .map_err(internal)?,
        StoreTx::Sqlite(tx) => {
            sqlx::query_as("SELECT failures, locked_until, updated_at FROM login_throttle WHERE key = $1")
                .bind(key)
                .fetch_one(&mut **tx)
                .await
                .map_err(internal)?
        }
    };
    Ok(row)
}
