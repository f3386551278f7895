//! `key_activity`: the key activity log — per key and per account, every
//! lifecycle event (created, rotated, grace expired, revoked, expired) with
//! actor, client address and time, and the verifiers' usage summaries.

use chrono::{DateTime, Utc};
use gatehouse_domain::apikey::ApiKeyEvent;
use gatehouse_domain::usage::UsageEvent;
use gatehouse_eventstore::{
    EventStore, Projection, RecordedEvent, StoreError, StoreTx, on_backend,
};

/// The projection.
#[derive(Debug, Clone, Copy, Default)]
pub struct KeyActivity;

impl KeyActivity {
    pub const NAME: &'static str = "key_activity";
}

/// Kinds of activity, as stored.
pub const KINDS: [&str; 6] = [
    "created",
    "rotated",
    "grace_expired",
    "revoked",
    "expired",
    "usage",
];

fn db(e: sqlx::Error) -> StoreError {
    StoreError::Database(e)
}

impl Projection for KeyActivity {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    async fn apply(&self, tx: &mut StoreTx, event: &RecordedEvent) -> Result<(), StoreError> {
        let corrupt = |e: gatehouse_domain::DomainError| StoreError::Corrupt {
            position: i64::try_from(event.position).unwrap_or(i64::MAX),
            detail: e.to_string(),
        };
        let stream = event.stream_id.as_str();
        let (account, key, kind, reason, usage) = if stream.starts_with("apikey-") {
            let Some(e) =
                ApiKeyEvent::decode(&event.event_type, &event.payload).map_err(corrupt)?
            else {
                return Ok(());
            };
            match e {
                ApiKeyEvent::Created(e) => (e.account_id, e.key_id, "created", None, None),
                ApiKeyEvent::Rotated(e) => (e.account_id, e.key_id, "rotated", None, None),
                ApiKeyEvent::GraceExpired(e) => {
                    (e.account_id, e.key_id, "grace_expired", None, None)
                }
                ApiKeyEvent::Revoked(e) => {
                    (e.account_id, e.key_id, "revoked", Some(e.reason), None)
                }
                ApiKeyEvent::Expired(e) => (e.account_id, e.key_id, "expired", None, None),
            }
        } else if stream.starts_with("keyusage-") {
            let Some(UsageEvent::Recorded(e)) =
                UsageEvent::decode(&event.event_type, &event.payload).map_err(corrupt)?
            else {
                return Ok(());
            };
            let usage = serde_json::to_string(&e).unwrap_or_default();
            (e.account_id, e.key_id, "usage", None, Some(usage))
        } else {
            return Ok(());
        };
        const SQL: &str = "INSERT INTO key_activity \
             (position, account_id, key_id, kind, actor, client_address, occurred_at, reason, usage) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (position) DO NOTHING";
        let position = i64::try_from(event.position).unwrap_or(i64::MAX);
        on_backend!(tx, |conn| sqlx::query(SQL)
            .bind(position)
            .bind(account.to_string())
            .bind(key.to_string())
            .bind(kind)
            .bind(event.metadata.actor.as_deref())
            .bind(event.metadata.client_address.as_deref())
            .bind(event.occurred_at)
            .bind(reason.as_deref())
            .bind(usage.as_deref())
            .execute(conn)
            .await
            .map(|_| ()))
        .map_err(db)?;
        Ok(())
    }

    async fn reset(&self, tx: &mut StoreTx) -> Result<(), StoreError> {
        on_backend!(tx, |conn| sqlx::query("DELETE FROM key_activity")
            .execute(conn)
            .await
            .map(|_| ()))
        .map_err(db)?;
        Ok(())
    }
}

/// One entry of the activity log.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ActivityRow {
    pub position: i64,
    pub account_id: String,
    pub key_id: String,
    pub kind: String,
    pub actor: Option<String>,
    pub client_address: Option<String>,
    pub occurred_at: DateTime<Utc>,
    pub reason: Option<String>,
    pub usage: Option<String>,
}

/// What to read.
#[derive(Debug, Clone, Default)]
pub struct ActivityFilter {
    pub account_id: String,
    pub key_id: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// Empty = every kind.
    pub kinds: Vec<String>,
    /// Only entries after this position.
    pub after: i64,
}

/// Up to `limit` entries matching `filter`, in log order.
pub async fn list(
    store: &EventStore,
    filter: &ActivityFilter,
    limit: i64,
) -> Result<Vec<ActivityRow>, StoreError> {
    // The kinds are checked against KINDS by the caller; they are bound, not spliced.
    let kinds = serde_json::to_string(&filter.kinds).unwrap_or_else(|_| "[]".into());
    let kinds_clause = match store.backend_name() {
        "postgres" => {
            "($6 = '[]' OR kind IN (SELECT jsonb_array_elements_text(CAST($6 AS JSONB))))"
        }
        _ => "($6 = '[]' OR kind IN (SELECT value FROM json_each($6)))",
    };
    let sql = format!(
        "SELECT position, account_id, key_id, kind, actor, client_address, occurred_at, reason, usage \
         FROM key_activity WHERE account_id = $1 AND position > $2 \
         AND ($3 IS NULL OR key_id = $3) AND ($4 IS NULL OR occurred_at >= $4) AND ($5 IS NULL OR occurred_at < $5) \
         AND {kinds_clause} ORDER BY position LIMIT $7"
    );
    let mut tx = store.begin_read().await?;
    let rows = on_backend!(&mut tx, |conn| sqlx::query_as::<_, ActivityRow>(&sql)
        .bind(&filter.account_id)
        .bind(filter.after)
        .bind(filter.key_id.as_deref())
        .bind(filter.since)
        .bind(filter.until)
        .bind(&kinds)
        .bind(limit)
        .fetch_all(conn)
        .await)
    .map_err(db)?;
    tx.commit().await?;
    Ok(rows)
}

/// Every entry, in order (for comparing a rebuild with incremental processing).
pub async fn all(store: &EventStore) -> Result<Vec<ActivityRow>, StoreError> {
    let mut tx = store.begin_read().await?;
    let rows = on_backend!(&mut tx, |conn| sqlx::query_as::<_, ActivityRow>(
        "SELECT position, account_id, key_id, kind, actor, client_address, occurred_at, reason, usage \
         FROM key_activity ORDER BY position"
    )
    .fetch_all(conn)
    .await)
    .map_err(db)?;
    tx.commit().await?;
    Ok(rows)
}
