//! `key_activity`: the key activity log — per key and per account, every
//! lifecycle event (created, rotated, grace expired, revoked, expired,
//! deleted) with actor, client address and time, the verifiers' usage
//! summaries, and the deployment-wide scope catalogue changes, which every
//! account's log shows (they change what every key holds).

use chrono::{DateTime, Utc};
use gatehouse_domain::activity::ActivityKind;
use gatehouse_domain::apikey::ApiKeyEvent;
use gatehouse_domain::catalogue::{self, ScopeEvent};
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

/// The `account_id` of deployment-wide rows (catalogue changes).
const EVERY_ACCOUNT: &str = "";

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
        let row = if stream.starts_with("apikey-") {
            let Some(e) =
                ApiKeyEvent::decode(&event.event_type, &event.payload).map_err(corrupt)?
            else {
                return Ok(());
            };
            let kind = ActivityKind::of_key_event(&e);
            let (account, key, reason) = match e {
                ApiKeyEvent::Created(e) => (e.account_id, e.key_id, None),
                ApiKeyEvent::Rotated(e) => (e.account_id, e.key_id, None),
                ApiKeyEvent::GraceExpired(e) => (e.account_id, e.key_id, None),
                ApiKeyEvent::Revoked(e) => (e.account_id, e.key_id, Some(e.reason)),
                ApiKeyEvent::Expired(e) => (e.account_id, e.key_id, None),
                ApiKeyEvent::Deleted(e) => (e.account_id, e.key_id, Some(e.reason)),
            };
            Row {
                account: account.to_string(),
                key: key.to_string(),
                kind,
                reason,
                usage: None,
                scope: None,
            }
        } else if stream.starts_with("keyusage-") {
            let Some(UsageEvent::Recorded(e)) =
                UsageEvent::decode(&event.event_type, &event.payload).map_err(corrupt)?
            else {
                return Ok(());
            };
            Row {
                account: e.account_id.to_string(),
                key: e.key_id.to_string(),
                kind: ActivityKind::Usage,
                reason: None,
                usage: Some(serde_json::to_string(&e).unwrap_or_default()),
                scope: None,
            }
        } else if stream == catalogue::STREAM {
            let Some(e) = ScopeEvent::decode(&event.event_type, &event.payload).map_err(corrupt)?
            else {
                return Ok(());
            };
            Row {
                account: EVERY_ACCOUNT.into(),
                key: String::new(),
                kind: ActivityKind::of_scope_event(&e),
                reason: None,
                usage: None,
                scope: Some(e.name().to_string()),
            }
        } else {
            return Ok(());
        };
        const SQL: &str = "INSERT INTO key_activity \
             (position, account_id, key_id, kind, actor, client_address, occurred_at, reason, usage, scope) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (position) DO NOTHING";
        let position = i64::try_from(event.position).unwrap_or(i64::MAX);
        let Row {
            account,
            key,
            kind,
            reason,
            usage,
            scope,
        } = row;
        on_backend!(tx, |conn| sqlx::query(SQL)
            .bind(position)
            .bind(&account)
            .bind(&key)
            .bind(kind.as_str())
            .bind(event.metadata.actor.as_deref())
            .bind(event.metadata.client_address.as_deref())
            .bind(event.occurred_at)
            .bind(reason.as_deref())
            .bind(usage.as_deref())
            .bind(scope.as_deref())
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

/// What one event adds to the log.
struct Row {
    account: String,
    key: String,
    kind: ActivityKind,
    reason: Option<String>,
    usage: Option<String>,
    scope: Option<String>,
}

/// One entry of the activity log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivityRow {
    pub position: i64,
    /// Empty for a deployment-wide entry (a catalogue change).
    pub account_id: String,
    /// Empty for a catalogue change.
    pub key_id: String,
    /// [`ActivityKind::as_str`].
    pub kind: String,
    pub actor: Option<String>,
    pub client_address: Option<String>,
    pub occurred_at: DateTime<Utc>,
    pub reason: Option<String>,
    pub usage: Option<String>,
    pub scope: Option<String>,
}

/// Decoded by column name on either backend (by hand: sqlx's derive needs
/// its macros, which compile both drivers again for the build host).
impl<'r, R: sqlx::Row> sqlx::FromRow<'r, R> for ActivityRow
where
    &'r str: sqlx::ColumnIndex<R>,
    DateTime<Utc>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    fn from_row(row: &'r R) -> Result<Self, sqlx::Error> {
        Ok(Self {
            position: row.try_get("position")?,
            account_id: row.try_get("account_id")?,
            key_id: row.try_get("key_id")?,
            kind: row.try_get("kind")?,
            actor: row.try_get("actor")?,
            client_address: row.try_get("client_address")?,
            occurred_at: row.try_get("occurred_at")?,
            reason: row.try_get("reason")?,
            usage: row.try_get("usage")?,
            scope: row.try_get("scope")?,
        })
    }
}

impl ActivityRow {
    pub fn kind(&self) -> Option<ActivityKind> {
        ActivityKind::parse(&self.kind).ok()
    }
}

const COLUMNS: &str =
    "position, account_id, key_id, kind, actor, client_address, occurred_at, reason, usage, scope";

/// What to read.
#[derive(Debug, Clone, Default)]
pub struct ActivityFilter {
    pub account_id: String,
    pub key_id: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// Empty = every kind.
    pub kinds: Vec<ActivityKind>,
    /// Only entries after this position.
    pub after: i64,
}

impl ActivityFilter {
    /// Whether `row` is one [`list`] would return: the same rule, in memory,
    /// for rows read once and shared by many live tails.
    pub fn matches(&self, row: &ActivityRow) -> bool {
        let account = row.account_id == self.account_id
            || (self.key_id.is_none() && row.account_id == EVERY_ACCOUNT);
        account
            && row.position > self.after
            && self.key_id.as_ref().is_none_or(|k| *k == row.key_id)
            && self.since.is_none_or(|since| row.occurred_at >= since)
            && self.until.is_none_or(|until| row.occurred_at < until)
            && (self.kinds.is_empty() || self.kinds.iter().any(|k| k.as_str() == row.kind))
    }
}

/// Up to `limit` entries of every account after `after`, in log order (the
/// one shared read behind every live tail).
pub async fn after(
    store: &EventStore,
    after: i64,
    limit: i64,
) -> Result<Vec<ActivityRow>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM key_activity WHERE position > $1 ORDER BY position LIMIT $2"
    );
    let mut tx = store.begin_read().await?;
    let rows = on_backend!(&mut tx, |conn| sqlx::query_as::<_, ActivityRow>(&sql)
        .bind(after)
        .bind(limit)
        .fetch_all(conn)
        .await)
    .map_err(db)?;
    tx.commit().await?;
    Ok(rows)
}

/// The position of the newest entry (0 when there is none).
pub async fn head(store: &EventStore) -> Result<i64, StoreError> {
    let mut tx = store.begin_read().await?;
    let head: Option<i64> = on_backend!(&mut tx, |conn| sqlx::query_scalar(
        "SELECT MAX(position) FROM key_activity"
    )
    .fetch_one(conn)
    .await)
    .map_err(db)?;
    tx.commit().await?;
    Ok(head.unwrap_or(0))
}

/// Up to `limit` entries matching `filter`, in log order. Without a key
/// filter, the deployment-wide entries (catalogue changes) are included.
pub async fn list(
    store: &EventStore,
    filter: &ActivityFilter,
    limit: i64,
) -> Result<Vec<ActivityRow>, StoreError> {
    // The kinds are bound as a JSON list, not spliced.
    let kinds: Vec<&str> = filter.kinds.iter().map(|k| k.as_str()).collect();
    let kinds = serde_json::to_string(&kinds).unwrap_or_else(|_| "[]".into());
    let kinds_clause = match store.backend_name() {
        "postgres" => {
            "($6 = '[]' OR kind IN (SELECT jsonb_array_elements_text(CAST($6 AS JSONB))))"
        }
        _ => "($6 = '[]' OR kind IN (SELECT value FROM json_each($6)))",
    };
    let sql = format!(
        "SELECT {COLUMNS} FROM key_activity \
         WHERE (account_id = $1 OR ($3 IS NULL AND account_id = '{EVERY_ACCOUNT}')) AND position > $2 \
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
    let sql = format!("SELECT {COLUMNS} FROM key_activity ORDER BY position");
    let rows = on_backend!(&mut tx, |conn| sqlx::query_as::<_, ActivityRow>(&sql)
        .fetch_all(conn)
        .await)
    .map_err(db)?;
    tx.commit().await?;
    Ok(rows)
}
