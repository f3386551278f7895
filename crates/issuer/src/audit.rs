//! The key activity log for auditors: list with stable pagination, and watch
//! (history, then the live tail).

use chrono::{DateTime, Utc};
use gatehouse_domain::activity::ActivityKind;
use gatehouse_domain::ids::{AccountId, KeyId};
use gatehouse_domain::scope;
use gatehouse_domain::usage::KeyUsageRecorded;
use gatehouse_projections::key_activity::{self, ActivityFilter, ActivityRow};

use crate::error::IssuerError;
use crate::service::{Issuer, Principal};

/// Live tails open at once per credential (a console tab or two, a script).
pub const MAX_WATCHES_PER_CREDENTIAL: usize = 8;
/// Live tails open at once per account, however many credentials it mints.
pub const MAX_WATCHES_PER_ACCOUNT: usize = 100;
/// Live tails open at once in one process.
pub const MAX_WATCHES: usize = 1000;
/// The longest a live tail goes without checking its credential again
/// (a logout or password change, which adds no activity entry, ends it
/// within this; a key's revocation at once).
pub const REAUTHENTICATE_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// The one reader of the activity log behind every live tail of a process:
/// it wakes on appends (or every poll interval), reads new entries of every
/// account once, and broadcasts them; each tail filters in memory. So 300
/// open tails cost one query per change, not 300 every poll. It also keeps
/// the caps on open tails.
#[derive(Default)]
pub struct ActivityHub {
    sender: std::sync::OnceLock<tokio::sync::broadcast::Sender<std::sync::Arc<Batch>>>,
    /// Open tails by credential (SHA-256) and by account.
    open: std::sync::Mutex<OpenTails>,
}

#[derive(Default)]
struct OpenTails {
    total: usize,
    by_credential: std::collections::HashMap<[u8; 32], usize>,
    by_account: std::collections::HashMap<AccountId, usize>,
}

/// A tail's place under the caps, given back when the tail ends.
pub struct WatchSlot {
    hub: std::sync::Arc<ActivityHub>,
    credential: [u8; 32],
    account: AccountId,
}

fn release<K: std::hash::Hash + Eq>(counts: &mut std::collections::HashMap<K, usize>, key: &K) {
    if let Some(count) = counts.get_mut(key) {
        *count -= 1;
        if *count == 0 {
            counts.remove(key);
        }
    }
}

impl Drop for WatchSlot {
    fn drop(&mut self) {
        if let Ok(mut open) = self.hub.open.lock() {
            open.total = open.total.saturating_sub(1);
            release(&mut open.by_credential, &self.credential);
            release(&mut open.by_account, &self.account);
        }
    }
}

impl ActivityHub {
    /// Takes a slot for a tail of `credential`, or says which cap is full.
    fn admit(
        self: &std::sync::Arc<Self>,
        credential: &str,
        account: AccountId,
    ) -> Result<WatchSlot, IssuerError> {
        use sha2::Digest as _;
        let key: [u8; 32] = sha2::Sha256::digest(credential.as_bytes()).into();
        let mut open = self
            .open
            .lock()
            .map_err(|_| IssuerError::Internal("watch registry poisoned".into()))?;
        if open.total >= MAX_WATCHES {
            return Err(IssuerError::TooManyWatches(" in this process"));
        }
        if open.by_account.get(&account).copied().unwrap_or(0) >= MAX_WATCHES_PER_ACCOUNT {
            return Err(IssuerError::TooManyWatches(" for this account"));
        }
        if open.by_credential.get(&key).copied().unwrap_or(0) >= MAX_WATCHES_PER_CREDENTIAL {
            return Err(IssuerError::TooManyWatches(" for this credential"));
        }
        open.total += 1;
        *open.by_credential.entry(key).or_default() += 1;
        *open.by_account.entry(account).or_default() += 1;
        Ok(WatchSlot {
            hub: self.clone(),
            credential: key,
            account,
        })
    }

    /// Subscribes to the shared reader, starting it on first use.
    fn subscribe(
        &self,
        issuer: &Issuer,
        poll: std::time::Duration,
    ) -> tokio::sync::broadcast::Receiver<std::sync::Arc<Batch>> {
        self.sender
            .get_or_init(|| {
                let (sender, _) = tokio::sync::broadcast::channel(1024);
                tokio::spawn(read_for_everyone(issuer.clone(), sender.clone(), poll));
                sender
            })
            .subscribe()
    }
}

/// What the shared reader found: every entry in `(from, upto]`. A tail that
/// has not seen everything up to `from` (it subscribed late, or lagged)
/// reads the gap itself, so no entry is ever skipped.
pub struct Batch {
    from: i64,
    upto: i64,
    rows: Vec<ActivityRow>,
}

/// The shared reader's loop, for the life of the process: after each append
/// it hears of (or each poll), brings the projection up to date and
/// broadcasts the new entries — or, with nobody listening, only notes the head.
async fn read_for_everyone(
    issuer: Issuer,
    sender: tokio::sync::broadcast::Sender<std::sync::Arc<Batch>>,
    poll: std::time::Duration,
) {
    let mut changes = issuer.store().changes();
    let mut position = None;
    loop {
        if let Err(error) = broadcast_new(&issuer, &sender, &mut position).await {
            tracing::warn!(%error, "the shared activity reader failed; retrying");
        }
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return },
            () = tokio::time::sleep(poll) => {}
        }
    }
}

async fn broadcast_new(
    issuer: &Issuer,
    sender: &tokio::sync::broadcast::Sender<std::sync::Arc<Batch>>,
    position: &mut Option<i64>,
) -> Result<(), IssuerError> {
    issuer.key_activity_runner().run_until_caught_up().await?;
    let Some(mut from) = *position else {
        // Tails read their own history and any gap before a batch's `from`.
        *position = Some(key_activity::head(issuer.store()).await?);
        return Ok(());
    };
    if sender.receiver_count() == 0 {
        *position = Some(key_activity::head(issuer.store()).await?);
        return Ok(());
    }
    loop {
        let rows = key_activity::after(issuer.store(), from, MAX_PAGE_SIZE).await?;
        let Some(upto) = rows.last().map(|r| r.position) else {
            return Ok(());
        };
        let full = rows.len() as i64 == MAX_PAGE_SIZE;
        *position = Some(upto);
        let _ = sender.send(std::sync::Arc::new(Batch { from, upto, rows }));
        from = upto;
        if !full {
            return Ok(());
        }
    }
}

/// One entry of an account's activity log as its reader sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivityEntry {
    /// Its place in the reader's account's log (opaque; see `cursor_context`).
    pub cursor: String,
    /// Empty for a deployment-wide entry (a catalogue change).
    pub account_id: String,
    /// Empty for a catalogue change.
    pub key_id: String,
    pub kind: ActivityKind,
    /// Redacted (`None`) on deployment-wide entries of another account.
    pub actor: Option<String>,
    pub client_address: Option<String>,
    pub occurred_at: DateTime<Utc>,
    pub reason: Option<String>,
    pub scope: Option<String>,
    /// For a usage entry: the verifier's summary.
    pub usage: Option<KeyUsageRecorded>,
}

/// What an activity cursor is bound to: one account's log. Positions are
/// global (every account's events move them), so a reader gets opaque
/// cursors that are valid for its own account only.
fn cursor_context(account: AccountId) -> String {
    format!("activity:{account}")
}

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
    /// A page of activity in log order; the page token is the cursor of its last entry.
    pub async fn list_activity(
        &self,
        principal: &Principal,
        query: &ActivityQuery,
        page_size: i32,
        page_token: &str,
    ) -> Result<(Vec<ActivityEntry>, String), IssuerError> {
        principal.require(scope::ACTIVITY_READ, query.account_id)?;
        let size = crate::service::page_size(page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)?;
        let after = self
            .activity_position(query.account_id, page_token)
            .ok_or_else(|| IssuerError::InvalidArgument("invalid page_token".into()))?;
        // Read your writes: whatever the log holds is in the answer.
        self.key_activity_runner().run_until_caught_up().await?;
        let mut rows = key_activity::list(self.store(), &query.filter(after), size + 1).await?;
        let more = rows.len() as i64 > size;
        rows.truncate(usize::try_from(size).unwrap_or(0));
        // The next page starts after the last row read, even one of a kind
        // this build does not show, so a page of those ends no listing.
        let next = match rows.last().filter(|_| more) {
            Some(last) => self.cursor_of(query.account_id, last.position),
            None => String::new(),
        };
        let entries: Vec<ActivityEntry> = rows
            .into_iter()
            .filter_map(|row| self.for_reader(query, row))
            .collect();
        Ok((entries, next))
    }

    /// The live tail of `query` after log position `after`, as a channel:
    /// the history first (read for this tail), then entries as the one
    /// shared reader of the process ([`ActivityHub`]) finds them, filtered in
    /// memory. The credential is checked again whenever entries for this
    /// tail arrive (a key's revocation is one) and at least every
    /// [`REAUTHENTICATE_EVERY`], so a revoked key, an ended session or an
    /// expired token ends the tail with its error (the last item). At most
    /// [`MAX_WATCHES_PER_CREDENTIAL`] tails per credential and
    /// [`MAX_WATCHES`] per process; beyond them, `TOO_MANY_WATCHES`. The
    /// task stops when the receiver is dropped.
    pub fn tail_activity(
        &self,
        principal: &Principal,
        bearer: Option<String>,
        query: ActivityQuery,
        after: &str,
        poll: std::time::Duration,
    ) -> Result<tokio::sync::mpsc::Receiver<Result<ActivityEntry, IssuerError>>, IssuerError> {
        // `principal` is `bearer` authenticated by the caller; the task
        // authenticates `bearer` again as it goes.
        principal.require(scope::ACTIVITY_READ, query.account_id)?;
        let mut after = self
            .activity_position(query.account_id, after)
            .ok_or_else(|| IssuerError::InvalidArgument("invalid Last-Event-ID".into()))?;
        let hub = self.activity_hub();
        let slot = hub.admit(bearer.as_deref().unwrap_or_default(), query.account_id)?;
        let mut shared = hub.subscribe(self, poll);
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        let issuer = self.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let allowed = async |issuer: &Issuer| match issuer.authenticate(bearer.as_deref()).await
            {
                Ok(p) => p.require(scope::ACTIVITY_READ, query.account_id),
                Err(e) => Err(e),
            };
            // Everything up to `covered` has been read (here or shared).
            let mut covered = 0;
            let mut read_own = true;
            let mut checked = tokio::time::Instant::now();
            loop {
                let mut rows = Vec::new();
                if read_own {
                    // The history, or a gap the shared batches do not cover:
                    // everything after `after`, read for this tail alone,
                    // one page at a time into the bounded channel.
                    if let Err(error) = allowed(&issuer).await {
                        let _ = tx.send(Err(error)).await;
                        return;
                    }
                    checked = tokio::time::Instant::now();
                    let read = async {
                        let head = issuer.activity_head().await?;
                        loop {
                            let page = issuer.activity_after(&query, after).await?;
                            if page.is_empty() {
                                return Ok::<_, IssuerError>(Some(head));
                            }
                            for row in page {
                                after = row.position;
                                let Some(entry) = issuer.for_reader(&query, row) else {
                                    continue;
                                };
                                if tx.send(Ok(entry)).await.is_err() {
                                    return Ok(None);
                                }
                            }
                        }
                    };
                    match read.await {
                        Ok(Some(head)) => {
                            covered = covered.max(head);
                            read_own = false;
                        }
                        Ok(None) => return,
                        Err(error) => {
                            tracing::warn!(%error, "activity tail read failed; retrying");
                            tokio::select! {
                                () = tx.closed() => return,
                                () = tokio::time::sleep(poll) => {}
                            }
                        }
                    }
                    continue;
                } else {
                    tokio::select! {
                        () = tx.closed() => return,
                        batch = shared.recv() => match batch {
                            Ok(batch) if batch.from > covered => read_own = true,
                            Ok(batch) => {
                                let filter = query.filter(after);
                                rows = batch
                                    .rows
                                    .iter()
                                    .filter(|row| filter.matches(row))
                                    .cloned()
                                    .collect();
                                covered = covered.max(batch.upto);
                            }
                            // Too slow for the shared reader: read what was missed.
                            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                                read_own = true;
                            }
                            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                        },
                        () = tokio::time::sleep_until(checked + REAUTHENTICATE_EVERY) => {}
                    }
                    if read_own {
                        continue;
                    }
                }
                if !rows.is_empty() || checked.elapsed() >= REAUTHENTICATE_EVERY {
                    if let Err(error) = allowed(&issuer).await {
                        let _ = tx.send(Err(error)).await;
                        return;
                    }
                    checked = tokio::time::Instant::now();
                }
                for row in rows {
                    after = row.position;
                    let Some(entry) = issuer.for_reader(&query, row) else {
                        continue;
                    };
                    if tx.send(Ok(entry)).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(rx)
    }

    /// `row` as the reader of `query` sees it: another account's actor and
    /// address redacted, the cursor of its own account's log, the usage
    /// summary decoded. `None` for a row of a kind this build does not know.
    fn for_reader(&self, query: &ActivityQuery, row: ActivityRow) -> Option<ActivityEntry> {
        let row = query.redact(row);
        let kind = row.kind()?;
        let position = u64::try_from(row.position).unwrap_or(0);
        let cursor = self.cursor_of(query.account_id, row.position);
        let usage = match row
            .usage
            .as_deref()
            .map(serde_json::from_str::<KeyUsageRecorded>)
        {
            Some(Ok(usage)) => Some(usage),
            Some(Err(error)) => {
                tracing::warn!(position, %error, "an unreadable usage summary in the activity log");
                None
            }
            None => None,
        };
        Some(ActivityEntry {
            cursor,
            account_id: row.account_id,
            key_id: row.key_id,
            kind,
            actor: row.actor,
            client_address: row.client_address,
            occurred_at: row.occurred_at,
            reason: row.reason,
            scope: row.scope,
            usage,
        })
    }

    /// The cursor of log position `position` in `account`'s log.
    fn cursor_of(&self, account: AccountId, position: i64) -> String {
        self.keyring().master().seal_cursor(
            u64::try_from(position).unwrap_or(0),
            &cursor_context(account),
        )
    }

    /// The log position behind an account's cursor (`""`: the start);
    /// `None` for anything that is not one of this account's cursors.
    fn activity_position(&self, account: AccountId, cursor: &str) -> Option<i64> {
        if cursor.is_empty() {
            return Some(0);
        }
        let position = self
            .keyring()
            .master()
            .open_cursor(cursor, &cursor_context(account))?;
        i64::try_from(position).ok()
    }

    /// The activity head, the projection caught up first: every entry up to
    /// it can be read now.
    async fn activity_head(&self) -> Result<i64, IssuerError> {
        self.key_activity_runner().run_until_caught_up().await?;
        Ok(key_activity::head(self.store()).await?)
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
