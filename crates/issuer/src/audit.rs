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
        let mut rows = key_activity::list(self.store(), &query.filter(after), size + 1).await?;
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

    /// Entries after `after` (for the live tail), caught up first.
    pub async fn activity_after(
        &self,
        query: &ActivityQuery,
        after: i64,
    ) -> Result<Vec<ActivityRow>, IssuerError> {
        self.key_activity_runner().run_until_caught_up().await?;
        Ok(key_activity::list(self.store(), &query.filter(after), MAX_PAGE_SIZE).await?)
    }
}
