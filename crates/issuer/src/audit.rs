//! The key activity log for auditors: list with stable pagination, and watch
//! (history, then the live tail).

use chrono::{DateTime, Utc};
use gatehouse_domain::activity::ActivityKind;
use gatehouse_domain::ids::{AccountId, KeyId};
use gatehouse_domain::scope;
use gatehouse_projections::key_activity::{self, ActivityFilter, ActivityRow};

use crate::error::IssuerError;
use crate::flows::{Issuer, Principal};

/// Default and largest page of `ListKeyActivity`.
pub const DEFAULT_PAGE_SIZE: i64 = 100;
pub const MAX_PAGE_SIZE: i64 = 1000;

/// A parsed activity query.
#[derive(Debug, Clone)]
pub struct ActivityQuery {
    pub account_id: AccountId,
    pub key_id: Option<KeyId>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// Empty = every kind.
    pub kinds: Vec<ActivityKind>,
}

impl ActivityQuery {
    /// A query with its times checked (a time no backend can store is the
    /// caller's mistake, 400, not a database error).
    pub fn new(
        account_id: AccountId,
        key_id: Option<KeyId>,
        since: Option<DateTime<Utc>>,
        until: Option<DateTime<Utc>>,
        kinds: Vec<ActivityKind>,
    ) -> Result<Self, IssuerError> {
        let check = |what, at: Option<DateTime<Utc>>| {
            at.map(|at| gatehouse_domain::check_time(what, at))
                .transpose()
        };
        Ok(Self {
            account_id,
            key_id,
            since: check("since", since)?,
            until: check("until", until)?,
            kinds,
        })
    }

    /// A deployment-wide entry (a catalogue change) is shown to every
    /// account, but who made it and from where belongs to the operator's
    /// account alone.
    fn redact(&self, mut row: ActivityRow) -> ActivityRow {
        if row.account_id != self.account_id.to_string() {
            row.actor = None;
            row.client_address = None;
        }
        row
    }

    fn filter(&self, after: i64) -> ActivityFilter {
        ActivityFilter {
            account_id: self.account_id.to_string(),
            key_id: self.key_id.map(|k| k.to_string()),
            since: self.since,
            until: self.until,
            kinds: self.kinds.clone(),
            after,
        }
    }
}

impl Issuer {
    /// A page of activity in log order; the page token is the last position.
    pub async fn list_activity(
        &self,
        principal: &Principal,
        query: &ActivityQuery,
        page_size: i32,
        page_token: &str,
    ) -> Result<(Vec<ActivityRow>, String), IssuerError> {
        principal.require(scope::ACTIVITY_READ, query.account_id)?;
        let size = crate::flows::page_size(page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)?;
        let after = if page_token.is_empty() {
            0
        } else {
            page_token
                .parse::<i64>()
                .ok()
                .filter(|p| *p >= 0)
                .ok_or_else(|| IssuerError::InvalidArgument("invalid page_token".into()))?
        };
        // Read your writes: whatever the log holds is in the answer.
        self.key_activity_runner().run_until_caught_up().await?;
        let mut rows: Vec<ActivityRow> =
            key_activity::list(self.store(), &query.filter(after), size + 1)
                .await?
                .into_iter()
                .map(|row| query.redact(row))
                .collect();
        let next = if rows.len() as i64 > size {
            rows.truncate(usize::try_from(size).unwrap_or(0));
            rows.last()
                .map(|r| r.position.to_string())
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok((rows, next))
    }

    /// The live tail of `query` after log position `after`, as a channel: a
    /// task re-authenticates `bearer` and re-checks `activity:read` before
    /// every read, so a revoked key, an ended session or an expired token
    /// ends the tail with its error (the last item) within one `poll`. The
    /// task stops when the receiver is dropped.
    pub fn tail_activity(
        &self,
        bearer: Option<String>,
        query: ActivityQuery,
        mut after: i64,
        poll: std::time::Duration,
    ) -> tokio::sync::mpsc::Receiver<Result<ActivityRow, IssuerError>> {
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        let issuer = self.clone();
        tokio::spawn(async move {
            loop {
                let still_allowed = match issuer.authenticate(bearer.as_deref()).await {
                    Ok(p) => p.require(scope::ACTIVITY_READ, query.account_id),
                    Err(e) => Err(e),
                };
                if let Err(error) = still_allowed {
                    let _ = tx.send(Err(error)).await;
                    return;
                }
                match issuer.activity_after(&query, after).await {
                    Ok(rows) => {
                        let caught_up = rows.is_empty();
                        for row in rows {
                            after = row.position;
                            if tx.send(Ok(row)).await.is_err() {
                                return;
                            }
                        }
                        if !caught_up {
                            continue;
                        }
                    }
                    Err(error) => tracing::warn!(%error, "activity tail read failed; retrying"),
                }
                tokio::select! {
                    () = tx.closed() => return,
                    () = tokio::time::sleep(poll) => {}
                }
            }
        });
        rx
    }

    /// Entries after `after` (for the live tail), caught up first.
    pub async fn activity_after(
        &self,
        query: &ActivityQuery,
        after: i64,
    ) -> Result<Vec<ActivityRow>, IssuerError> {
        self.key_activity_runner().run_until_caught_up().await?;
        Ok(
            key_activity::list(self.store(), &query.filter(after), MAX_PAGE_SIZE)
                .await?
                .into_iter()
                .map(|row| query.redact(row))
                .collect(),
        )
    }
}
