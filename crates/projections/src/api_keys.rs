//! `api_keys`: one row per API key — name, scopes, hint, lifecycle times —
//! for listings and for the scheduler that records grace and key expiry.

use chrono::{DateTime, Utc};
use gatehouse_domain::apikey::{ApiKeyEvent, KeyState, Lifecycle};
use gatehouse_domain::usage::UsageEvent;
use gatehouse_eventstore::{
    EventStore, Projection, RecordedEvent, StoreError, StoreTx, on_backend,
};

/// The projection.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiKeys;

impl ApiKeys {
    pub const NAME: &'static str = "api_keys";
}

fn db(e: sqlx::Error) -> StoreError {
    StoreError::Database(e)
}

impl Projection for ApiKeys {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    async fn apply(&self, tx: &mut StoreTx, event: &RecordedEvent) -> Result<(), StoreError> {
        let decoded = ApiKeyEvent::decode(&event.event_type, &event.payload).map_err(|e| {
            StoreError::Corrupt {
                position: i64::try_from(event.position).unwrap_or(i64::MAX),
                detail: e.to_string(),
            }
        })?;
        let Some(decoded) = decoded else {
            return apply_usage(tx, event).await;
        };
        match decoded {
            ApiKeyEvent::Created(e) => {
                const SQL: &str = "INSERT INTO api_keys (key_id, account_id, name, scopes, hint, created_at, expires_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (key_id) DO NOTHING";
                let scopes =
                    serde_json::to_string(&e.scopes.to_vec()).unwrap_or_else(|_| "[]".into());
                on_backend!(tx, |conn| sqlx::query(SQL)
                    .bind(e.key_id.to_string())
                    .bind(e.account_id.to_string())
                    .bind(&e.name)
                    .bind(&scopes)
                    .bind(&e.hint)
                    .bind(e.created_at)
                    .bind(e.expires_at)
                    .execute(conn)
                    .await
                    .map(|_| ()))
                .map_err(db)?;
            }
            ApiKeyEvent::Rotated(e) => {
                const SQL: &str = "UPDATE api_keys SET hint = $2, rotations = $3, rotated_at = $4, \
                     previous_valid_until = $5, grace_expiry_recorded = FALSE WHERE key_id = $1";
                on_backend!(tx, |conn| sqlx::query(SQL)
                    .bind(e.key_id.to_string())
                    .bind(&e.hint)
                    .bind(i64::from(e.rotation))
                    .bind(e.rotated_at)
                    .bind(e.previous_valid_until)
                    .execute(conn)
                    .await
                    .map(|_| ()))
                .map_err(db)?;
            }
            ApiKeyEvent::GraceExpired(e) => {
                const SQL: &str = "UPDATE api_keys SET grace_expiry_recorded = TRUE WHERE key_id = $1 AND rotations = $2";
                on_backend!(tx, |conn| sqlx::query(SQL)
                    .bind(e.key_id.to_string())
                    .bind(i64::from(e.rotation))
                    .execute(conn)
                    .await
                    .map(|_| ()))
                .map_err(db)?;
            }
            ApiKeyEvent::Revoked(e) => {
                const SQL: &str = "UPDATE api_keys SET revoked_at = $2 WHERE key_id = $1";
                on_backend!(tx, |conn| sqlx::query(SQL)
                    .bind(e.key_id.to_string())
                    .bind(e.revoked_at)
                    .execute(conn)
                    .await
                    .map(|_| ()))
                .map_err(db)?;
            }
            ApiKeyEvent::Expired(e) => {
                const SQL: &str = "UPDATE api_keys SET expiry_recorded = TRUE WHERE key_id = $1";
                on_backend!(tx, |conn| sqlx::query(SQL)
                    .bind(e.key_id.to_string())
                    .execute(conn)
                    .await
                    .map(|_| ()))
                .map_err(db)?;
            }
            ApiKeyEvent::Deleted(e) => {
                const SQL: &str = "UPDATE api_keys SET deleted_at = $2 WHERE key_id = $1";
                on_backend!(tx, |conn| sqlx::query(SQL)
                    .bind(e.key_id.to_string())
                    .bind(e.deleted_at)
                    .execute(conn)
                    .await
                    .map(|_| ()))
                .map_err(db)?;
            }
        }
        Ok(())
    }

    async fn reset(&self, tx: &mut StoreTx) -> Result<(), StoreError> {
        on_backend!(tx, |conn| sqlx::query("DELETE FROM api_keys")
            .execute(conn)
            .await
            .map(|_| ()))
        .map_err(db)?;
        Ok(())
    }
}

/// `last_used_at` from a verifier's usage summary.
async fn apply_usage(tx: &mut StoreTx, event: &RecordedEvent) -> Result<(), StoreError> {
    let Ok(Some(UsageEvent::Recorded(usage))) =
        UsageEvent::decode(&event.event_type, &event.payload)
    else {
        return Ok(());
    };
    let Some(last_used_at) = usage.last_used_at else {
        return Ok(());
    };
    const SQL: &str = "UPDATE api_keys SET last_used_at = $2 \
         WHERE key_id = $1 AND (last_used_at IS NULL OR last_used_at < $2)";
    on_backend!(tx, |conn| sqlx::query(SQL)
        .bind(usage.key_id.to_string())
        .bind(last_used_at)
        .execute(conn)
        .await
        .map(|_| ()))
    .map_err(db)
}

/// One row of the projection.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyRow {
    pub key_id: String,
    pub account_id: String,
    pub name: String,
    pub scopes: String,
    pub hint: String,
    pub created_at: DateTime<Utc>,
    pub rotated_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub previous_valid_until: Option<DateTime<Utc>>,
    pub grace_expiry_recorded: bool,
    pub expiry_recorded: bool,
    pub last_used_at: Option<DateTime<Utc>>,
    pub deleted_at: Option<DateTime<Utc>>,
}

/// Decoded by column name on either backend (by hand: sqlx's derive needs
/// its macros, which compile both drivers again for the build host).
impl<'r, R: sqlx::Row> sqlx::FromRow<'r, R> for KeyRow
where
    &'r str: sqlx::ColumnIndex<R>,
    DateTime<Utc>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    bool: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    fn from_row(row: &'r R) -> Result<Self, sqlx::Error> {
        Ok(Self {
            key_id: row.try_get("key_id")?,
            account_id: row.try_get("account_id")?,
            name: row.try_get("name")?,
            scopes: row.try_get("scopes")?,
            hint: row.try_get("hint")?,
            created_at: row.try_get("created_at")?,
            rotated_at: row.try_get("rotated_at")?,
            expires_at: row.try_get("expires_at")?,
            revoked_at: row.try_get("revoked_at")?,
            previous_valid_until: row.try_get("previous_valid_until")?,
            grace_expiry_recorded: row.try_get("grace_expiry_recorded")?,
            expiry_recorded: row.try_get("expiry_recorded")?,
            last_used_at: row.try_get("last_used_at")?,
            deleted_at: row.try_get("deleted_at")?,
        })
    }
}

impl KeyRow {
    /// The scopes, as stored.
    pub fn scope_list(&self) -> Vec<String> {
        serde_json::from_str(&self.scopes).unwrap_or_default()
    }

    /// The state at `now` (computed, so it is right between scheduler runs).
    pub fn state(&self, now: DateTime<Utc>) -> KeyState {
        KeyState::at(
            Lifecycle {
                revoked_at: self.revoked_at,
                expires_at: self.expires_at,
                previous_valid_until: self.previous_valid_until,
                deleted_at: self.deleted_at,
            },
            now,
        )
    }
}

const COLUMNS: &str = "key_id, account_id, name, scopes, hint, created_at, rotated_at, expires_at, revoked_at, \
     previous_valid_until, grace_expiry_recorded, expiry_recorded, last_used_at, deleted_at";

/// A page of an account's keys, newest first (key ids are UUIDv7, so they sort
/// by creation), starting after `after` (a key id) if given; deleted keys only
/// with `include_deleted`.
pub async fn list(
    store: &EventStore,
    account_id: &str,
    after: Option<&str>,
    include_deleted: bool,
    limit: i64,
) -> Result<Vec<KeyRow>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM api_keys WHERE account_id = $1 AND ($2 IS NULL OR key_id < $2) \
         AND ($3 OR deleted_at IS NULL) ORDER BY key_id DESC LIMIT $4"
    );
    let mut tx = store.begin_read().await?;
    let rows = on_backend!(&mut tx, |conn| sqlx::query_as::<_, KeyRow>(&sql)
        .bind(account_id)
        .bind(after)
        .bind(include_deleted)
        .bind(limit)
        .fetch_all(conn)
        .await)
    .map_err(db)?;
    tx.commit().await?;
    Ok(rows)
}

/// When a key was last used, as the verifiers' usage summaries say.
pub async fn last_used_at(
    store: &EventStore,
    key_id: &str,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    let mut tx = store.begin_read().await?;
    let row: Option<(Option<DateTime<Utc>>,)> = on_backend!(&mut tx, |conn| sqlx::query_as(
        "SELECT last_used_at FROM api_keys WHERE key_id = $1"
    )
    .bind(key_id)
    .fetch_optional(conn)
    .await)
    .map_err(db)?;
    tx.commit().await?;
    Ok(row.and_then(|(at,)| at))
}

/// Keys that owe the scheduler an event at `now`: a grace period or a key
/// that has ended without its event yet, oldest key first. The scheduler
/// re-decides each from the key's stream.
pub async fn pending(
    store: &EventStore,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<KeyRow>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM api_keys \
         WHERE deleted_at IS NULL AND ((grace_expiry_recorded = FALSE AND previous_valid_until <= $1) \
         OR (expires_at <= $1 AND expiry_recorded = FALSE AND revoked_at IS NULL)) \
         ORDER BY key_id LIMIT $2"
    );
    let mut tx = store.begin_read().await?;
    let rows = on_backend!(&mut tx, |conn| sqlx::query_as::<_, KeyRow>(&sql)
        .bind(now)
        .bind(limit)
        .fetch_all(conn)
        .await)
    .map_err(db)?;
    tx.commit().await?;
    Ok(rows)
}
