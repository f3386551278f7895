//! API key administration: create, list, get, rotate with a grace period,
//! revoke, delete — and the scheduler that records grace and key expiry
//! exactly once. Every change follows the catalogue's grant rule.

use chrono::{DateTime, Duration, Utc};
use gatehouse_crypto::random;
use gatehouse_domain::apikey::{
    ApiKey, ApiKeyEvent, GracePeriod, KeyError, KeyState, NewApiKey, RevokeError, SecretIndexEvent,
    SecretIssued, secret_stream,
};
use gatehouse_domain::catalogue::{Catalogue, Grant};
use gatehouse_domain::ids::{AccountId, KeyId};
use gatehouse_domain::scope::{self, Scopes};
use gatehouse_domain::secret::{SecretHash, hint};
use gatehouse_eventstore::{ExpectedVersion, Metadata, NewEvent, StoreError, StreamId};
use gatehouse_projections::api_keys::{self, KeyRow};
use gatehouse_verifier::index::Index;
use uuid::Uuid;

use crate::decide::{Step, decide_and_append, decide_and_append_within};
use crate::error::IssuerError;
use crate::service::{CallContext, Issuer, Principal};

/// Default and largest page of `ListApiKeys`.
pub const DEFAULT_PAGE_SIZE: i64 = 50;
pub const MAX_PAGE_SIZE: i64 = 500;

/// How often a key command decides again after losing a race.
const KEY_CHANGE_ATTEMPTS: usize = 5;

/// Which concurrent changes a key command decides again over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Concurrent {
    /// Any: the caller's intent holds whatever landed (revoke, delete).
    Redecide,
    /// Only the system's bookkeeping; a person's change wins (rotate: two
    /// rotations must not both win, or one caller holds a dead secret).
    RedecideOverBookkeeping,
}

/// A change to one key, as the caller read it.
pub(crate) struct KeyChange<'a> {
    pub key: ApiKey,
    /// The key stream's version at that read.
    pub version: u64,
    pub concurrent: Concurrent,
    /// Appended in the same transaction (a rotation's secret-index entry).
    pub also: Option<(StreamId, ExpectedVersion, Vec<NewEvent>)>,
    pub ctx: &'a CallContext,
    pub actor: &'a str,
}

/// A mutex's value even if a panic poisoned it (the value is a plain read).
fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A key and the secret that was just issued for it (shown once).
pub struct IssuedKey {
    pub key: KeyView,
    pub secret: String,
    /// Until when the secret it replaced works (a rotation); as set, even
    /// when that is now (a grace of 0).
    pub previous_secret_valid_until: Option<DateTime<Utc>>,
}

/// A key as an administrator sees it, decided here at one reading of the
/// clock (its state, whether its previous secret still works), so no
/// adapter reads the clock or filters a field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyView {
    pub key_id: KeyId,
    pub account_id: AccountId,
    pub name: String,
    pub scopes: Vec<String>,
    /// Those of its grants that the catalogue has retired.
    pub retired_scopes: Vec<String>,
    pub hint: String,
    pub state: KeyState,
    pub created_at: DateTime<Utc>,
    pub rotated_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    /// Until when the previous secret still works; `None` once it does not.
    pub previous_secret_valid_until: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub deleted_at: Option<DateTime<Utc>>,
}

impl KeyView {
    fn of_key(
        key: &ApiKey,
        catalogue: &Catalogue,
        last_used_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            key_id: key.id,
            account_id: key.account_id,
            name: key.name.clone(),
            scopes: key.scopes.to_vec(),
            retired_scopes: catalogue.retired_among(&key.scopes),
            hint: key.hint.clone(),
            state: key.state(now),
            created_at: key.created_at,
            rotated_at: key.rotated_at,
            expires_at: key.expires_at,
            last_used_at,
            previous_secret_valid_until: key.previous_valid_until(now),
            revoked_at: key.revoked_at,
            deleted_at: key.deleted_at,
        }
    }

    /// A listing's row; `None` for one that does not name a key (never
    /// written so).
    fn of_row(row: &KeyRow, catalogue: &Catalogue, now: DateTime<Utc>) -> Option<Self> {
        let retired_scopes = Scopes::parse(&row.scope_list())
            .map(|grants| catalogue.retired_among(&grants))
            .unwrap_or_default();
        Some(Self {
            key_id: KeyId::parse(&row.key_id).ok()?,
            account_id: AccountId::parse(&row.account_id).ok()?,
            name: row.name.clone(),
            scopes: row.scope_list(),
            retired_scopes,
            hint: row.hint.clone(),
            state: row.state(now),
            created_at: row.created_at,
            rotated_at: row.rotated_at,
            expires_at: row.expires_at,
            last_used_at: row.last_used_at,
            previous_secret_valid_until: row.previous_valid_until.filter(|until| now < *until),
            revoked_at: row.revoked_at,
            deleted_at: row.deleted_at,
        })
    }
}

/// A page of keys.
pub struct KeyPage {
    pub keys: Vec<KeyView>,
    pub next_page_token: String,
}

fn new_event(event: &ApiKeyEvent, ctx: &CallContext, actor: &str) -> NewEvent {
    NewEvent::new(event.event_type(), event.payload()).with_metadata(Metadata {
        actor: Some(actor.to_string()),
        request_id: ctx.request_id.clone(),
        client_address: ctx.client_address.clone(),
        causation_id: None,
    })
}

fn stream(id: String) -> Result<StreamId, IssuerError> {
    Ok(StreamId::parse(id)?)
}

fn refused(error: RevokeError) -> IssuerError {
    match error {
        RevokeError::AlreadyRevoked => {
            IssuerError::FailedPrecondition("the key is already revoked".into())
        }
        RevokeError::Deleted => IssuerError::NotFound("key"),
        RevokeError::Invalid(e) => e.into(),
    }
}

fn conflict(error: StoreError) -> IssuerError {
    match error {
        StoreError::WrongExpectedVersion { .. } => IssuerError::Conflict,
        other => other.into(),
    }
}

impl Issuer {
    /// Loads a key of `account_id`; a key of another account, or a deleted
    /// one, is "not found".
    async fn load_key(
        &self,
        account_id: AccountId,
        key_id: KeyId,
    ) -> Result<(ApiKey, u64), IssuerError> {
        let (events, version) = self.load(&key_id.stream(), ApiKeyEvent::decode).await?;
        match ApiKey::fold(&events) {
            Some(key) if key.account_id == account_id && key.deleted_at.is_none() => {
                Ok((key, version))
            }
            _ => Err(IssuerError::NotFound("key")),
        }
    }

    /// The key a presented secret belongs to, if it is one of ours and valid now.
    pub(crate) async fn authenticate_key(&self, secret: &str) -> Result<Principal, IssuerError> {
        let digest = SecretHash::digest_of(secret);
        let now = self.now();
        let decide = |index: &Index| {
            index.key_by_digest(&digest).map(|(record, grants)| {
                record
                    .secrets
                    .authenticate(&digest, now)
                    .map(|()| Principal {
                        account_id: record.account_id,
                        subject: record.id.to_string(),
                        grants: grants.clone(),
                        session: None,
                    })
            })
        };
        let found = self.decide_in_memory(decide).await?;
        found
            .unwrap_or(Err(KeyError::WrongSecret))
            .map_err(|e| IssuerError::Unauthenticated { reason: e.reason() })
    }

    /// Creates a key with `scopes`, following the grant rule.
    pub async fn create_key(
        &self,
        principal: &Principal,
        account_id: AccountId,
        name: &str,
        scopes: Scopes,
        expires_at: Option<DateTime<Utc>>,
        ctx: &CallContext,
    ) -> Result<IssuedKey, IssuerError> {
        principal.require(scope::KEYS_WRITE, account_id)?;
        let (catalogue, _) = self.catalogue().await?;
        catalogue.check_grant(&principal.grants, &scopes, Grant::New)?;
        let now = self.now();
        let key_id = KeyId::from_uuid(Uuid::now_v7());
        let secret = self
            .settings()
            .key_format
            .api_key_secret(&random::bytes::<24>()?);
        let hash = SecretHash::of(&secret);
        let created = ApiKey::create(
            NewApiKey {
                id: key_id,
                account_id,
                name,
                scopes,
                secret_hash: hash.clone(),
                hint: hint(&secret),
                expires_at,
            },
            now,
        )?;
        let issued = SecretIndexEvent::Issued(SecretIssued { key_id });
        let actor = principal.subject.as_str();
        self.store()
            .append_all(vec![
                (
                    stream(key_id.stream())?,
                    ExpectedVersion::NoStream,
                    vec![new_event(&created, ctx, actor)],
                ),
                (
                    stream(secret_stream(&hash))?,
                    ExpectedVersion::NoStream,
                    vec![NewEvent::new(issued.event_type(), issued.payload())],
                ),
            ])
            .await
            .map_err(conflict)?;
        let key =
            ApiKey::fold([&created]).ok_or_else(|| IssuerError::Internal("key fold".into()))?;
        Ok(IssuedKey {
            key: KeyView::of_key(&key, &catalogue, None, self.now()),
            secret,
            previous_secret_valid_until: None,
        })
    }

    /// A key of the account, and when it was last used.
    pub async fn get_key(
        &self,
        principal: &Principal,
        account_id: AccountId,
        key_id: KeyId,
    ) -> Result<KeyView, IssuerError> {
        principal.require(scope::KEYS_READ, account_id)?;
        let key = self.load_key(account_id, key_id).await?.0;
        self.api_keys_runner().run_until_caught_up().await?;
        let last_used_at = api_keys::last_used_at(self.store(), &key_id.to_string()).await?;
        let (catalogue, _) = self.catalogue().await?;
        Ok(KeyView::of_key(&key, &catalogue, last_used_at, self.now()))
    }

    /// A page of the account's keys, newest first, and the next page's
    /// token. Deleted keys only with `include_deleted`.
    pub async fn list_keys(
        &self,
        principal: &Principal,
        account_id: AccountId,
        page_size: i32,
        page_token: &str,
        include_deleted: bool,
    ) -> Result<KeyPage, IssuerError> {
        principal.require(scope::KEYS_READ, account_id)?;
        let size = crate::service::page_size(page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)?;
        let after = if page_token.is_empty() {
            None
        } else {
            Some(
                KeyId::parse(page_token)
                    .map_err(|_| IssuerError::InvalidArgument("invalid page_token".into()))?,
            )
        };
        // Read your writes: apply whatever the log holds before answering.
        self.api_keys_runner().run_until_caught_up().await?;
        let after = after.map(|k| k.to_string());
        let mut rows = api_keys::list(
            self.store(),
            &account_id.to_string(),
            after.as_deref(),
            include_deleted,
            size + 1,
        )
        .await?;
        let next_page_token = if rows.len() as i64 > size {
            rows.truncate(usize::try_from(size).unwrap_or(0));
            rows.last().map(|r| r.key_id.clone()).unwrap_or_default()
        } else {
            String::new()
        };
        let (catalogue, _) = self.catalogue().await?;
        let now = self.now();
        let keys = rows
            .iter()
            .filter_map(|row| KeyView::of_row(row, &catalogue, now))
            .collect();
        Ok(KeyPage {
            keys,
            next_page_token,
        })
    }

    /// Rotates a key; the old secret stays valid for `grace` (default 24 h).
    pub async fn rotate_key(
        &self,
        principal: &Principal,
        account_id: AccountId,
        key_id: KeyId,
        grace: Option<Duration>,
        ctx: &CallContext,
    ) -> Result<IssuedKey, IssuerError> {
        principal.require(scope::KEYS_WRITE, account_id)?;
        let grace = GracePeriod::parse(grace)?;
        let (key, version) = self.load_key(account_id, key_id).await?;
        // The new secret carries the key's grants: only a caller who could
        // give them may mint it (retired ones grant nothing and are carried).
        let (catalogue, _) = self.catalogue().await?;
        catalogue.check_grant(&principal.grants, &key.scopes, Grant::Existing)?;
        let secret = self
            .settings()
            .key_format
            .api_key_secret(&random::bytes::<24>()?);
        let hash = SecretHash::of(&secret);
        let issued = SecretIndexEvent::Issued(SecretIssued { key_id });
        let index = (
            stream(secret_stream(&hash))?,
            ExpectedVersion::NoStream,
            vec![NewEvent::new(issued.event_type(), issued.payload())],
        );
        // Two people's rotations must not both win; a grace or expiry the
        // scheduler recorded meanwhile is no reason to fail.
        let key = self
            .change_key(
                KeyChange {
                    key,
                    version,
                    concurrent: Concurrent::RedecideOverBookkeeping,
                    also: Some(index),
                    ctx,
                    actor: &principal.subject,
                },
                |key, now| {
                    key.rotate(hash.clone(), hint(&secret), grace, now)
                        .map_err(|e| IssuerError::FailedPrecondition(format!("cannot rotate: {e}")))
                },
            )
            .await?;
        Ok(IssuedKey {
            key: KeyView::of_key(&key, &catalogue, None, self.now()),
            secret,
            previous_secret_valid_until: key.previous.as_ref().map(|p| p.valid_until),
        })
    }

    /// Loads the key of a revocation or deletion, if `principal` may take it
    /// out of service: with `keys:write` and every scope the key holds, so a
    /// narrow key cannot take down a stronger one — or, with `itself`, a key
    /// acting on itself whatever it holds (the "I leaked it" path).
    async fn load_for_take_down(
        &self,
        principal: &Principal,
        account_id: AccountId,
        key_id: KeyId,
        itself: bool,
    ) -> Result<(ApiKey, u64, Catalogue), IssuerError> {
        let is_self = itself && principal.subject == key_id.to_string();
        if !is_self {
            principal.require(scope::KEYS_WRITE, account_id)?;
        } else if principal.account_id != account_id {
            return Err(IssuerError::PermissionDenied {
                scope: scope::KEYS_WRITE.into(),
            });
        }
        let (key, version) = self.load_key(account_id, key_id).await?;
        let (catalogue, _) = self.catalogue().await?;
        if !is_self {
            catalogue.check_grant(&principal.grants, &key.scopes, Grant::Existing)?;
        }
        Ok((key, version, catalogue))
    }

    /// Revokes a key at once.
    pub async fn revoke_key(
        &self,
        principal: &Principal,
        account_id: AccountId,
        key_id: KeyId,
        reason: &str,
        ctx: &CallContext,
    ) -> Result<KeyView, IssuerError> {
        let (key, version, catalogue) = self
            .load_for_take_down(principal, account_id, key_id, true)
            .await?;
        // Whatever landed meanwhile, the caller still wants the key out of
        // service; deciding again says "already revoked" if it already is.
        let key = self
            .change_key(
                KeyChange {
                    key,
                    version,
                    concurrent: Concurrent::Redecide,
                    also: None,
                    ctx,
                    actor: &principal.subject,
                },
                |key, now| key.revoke(reason, now).map_err(refused),
            )
            .await?;
        Ok(KeyView::of_key(&key, &catalogue, None, self.now()))
    }

    /// Deletes a key: revoked first if still in service, then gone from the
    /// key list for good; its history stays in the activity log.
    pub async fn delete_key(
        &self,
        principal: &Principal,
        account_id: AccountId,
        key_id: KeyId,
        reason: &str,
        ctx: &CallContext,
    ) -> Result<(), IssuerError> {
        let (key, version, _) = self
            .load_for_take_down(principal, account_id, key_id, false)
            .await?;
        self.change_key(
            KeyChange {
                key,
                version,
                concurrent: Concurrent::Redecide,
                also: None,
                ctx,
                actor: &principal.subject,
            },
            |key, now| key.delete(reason, now).map_err(refused),
        )
        .await?;
        Ok(())
    }

    /// Appends what `decide` makes of the change's key (read at its
    /// version), with `also` in the same transaction, through the one
    /// decide-and-append path. When another change landed first, the key is
    /// read again and decided again — up to [`KEY_CHANGE_ATTEMPTS`] times —
    /// unless `concurrent` says that change wins (`ABORTED`). Returns the key
    /// as changed, from the events applied in memory: once committed, the
    /// answer (a new secret) must reach the caller even if the database then
    /// stops answering.
    pub(crate) async fn change_key(
        &self,
        change: KeyChange<'_>,
        decide: impl Fn(&ApiKey, DateTime<Utc>) -> Result<Vec<ApiKeyEvent>, IssuerError>,
    ) -> Result<ApiKey, IssuerError> {
        let KeyChange {
            key,
            version,
            concurrent,
            also,
            ctx,
            actor,
        } = change;
        let key_stream = &stream(key.id.stream())?;
        // The first attempt decides on the caller's read; each later one
        // reads again and judges what landed after the previous read.
        let first = &std::sync::atomic::AtomicBool::new(true);
        let last = &std::sync::Mutex::new((key, version));
        let (decide, also) = (&decide, &also);
        let (changed, written) =
            decide_and_append_within(self.store(), KEY_CHANGE_ATTEMPTS, || async move {
                let (mut key, mut version) = lock(last).clone();
                if !first.swap(false, std::sync::atomic::Ordering::Relaxed) {
                    (key, version) = self
                        .reread_key(key_stream, &key, version, concurrent)
                        .await?;
                    *lock(last) = (key.clone(), version);
                }
                let events = decide(&key, self.now())?;
                let mut batches = vec![(
                    key_stream.clone(),
                    ExpectedVersion::Exact(version),
                    events.iter().map(|e| new_event(e, ctx, actor)).collect(),
                )];
                batches.extend(also.clone());
                let mut changed = Some(key);
                for event in &events {
                    ApiKey::apply(&mut changed, event);
                }
                let changed = changed.ok_or_else(|| IssuerError::Internal("key fold".into()))?;
                Ok(Step::Append(batches, changed))
            })
            .await?;
        // Revoked, rotated away or deleted: refused by this process's
        // verifier before the caller hears back.
        crate::decide::applied_here(self.store(), &written).await;
        Ok(changed)
    }

    /// The key as the log holds it now, after `previous` (read at
    /// `version`) lost a race: `ABORTED` if what landed meanwhile wins over
    /// the caller under `concurrent`, `NOT_FOUND` if the key is gone.
    async fn reread_key(
        &self,
        key_stream: &StreamId,
        previous: &ApiKey,
        version: u64,
        concurrent: Concurrent,
    ) -> Result<(ApiKey, u64), IssuerError> {
        let recorded = self.store().read_stream(key_stream).await?;
        let mut events = Vec::with_capacity(recorded.len());
        let mut landed = Vec::new();
        for e in &recorded {
            let Some(event) = ApiKeyEvent::decode(&e.event_type, &e.payload)
                .map_err(|e| IssuerError::Internal(e.to_string()))?
            else {
                continue;
            };
            if e.stream_version > version {
                landed.push(event.clone());
            }
            events.push(event);
        }
        if concurrent == Concurrent::RedecideOverBookkeeping
            && !landed.iter().all(ApiKey::is_bookkeeping)
        {
            return Err(IssuerError::Conflict);
        }
        let version = recorded.last().map_or(0, |e| e.stream_version);
        match ApiKey::fold(&events) {
            Some(k) if k.account_id == previous.account_id && k.deleted_at.is_none() => {
                Ok((k, version))
            }
            _ => Err(IssuerError::NotFound("key")),
        }
    }

    /// One scheduler step: writes the grace and key expiries that are due.
    /// Several issuers may run it at once; the stream's expected version lets
    /// exactly one write each event. Returns how many events it wrote.
    pub async fn run_due(&self, now: DateTime<Utc>) -> Result<usize, IssuerError> {
        self.api_keys_runner().run_until_caught_up().await?;
        let mut written = 0;
        for row in api_keys::pending(self.store(), now, 500).await? {
            let Ok(key_id) = KeyId::parse(&row.key_id) else {
                continue;
            };
            let key_stream = &stream(key_id.stream())?;
            // Decided again after a lost race: another issuer (or a
            // person's change) may have recorded it, or changed what is due.
            let count = decide_and_append(self.store(), || async move {
                let (events, version) = self.load(key_stream.as_str(), ApiKeyEvent::decode).await?;
                let due = ApiKey::fold(&events)
                    .map(|key| key.due(now))
                    .unwrap_or_default();
                if due.is_empty() {
                    return Ok(Step::Done(0));
                }
                let ctx = CallContext::default();
                let count = due.len();
                Ok(Step::Append(
                    vec![(
                        key_stream.clone(),
                        ExpectedVersion::Exact(version),
                        due.iter().map(|e| new_event(e, &ctx, "system")).collect(),
                    )],
                    count,
                ))
            })
            .await;
            match count {
                Ok((count, _)) => written += count,
                // Lost every race for this key: the next pass decides it
                // again; the other keys due now are not held up.
                Err(IssuerError::Conflict) => {
                    tracing::warn!(key = %key_id, "an expiry lost every race; retried next pass");
                }
                Err(other) => return Err(other),
            }
        }
        Ok(written)
    }
}

#[cfg(test)]
mod tests {
    //! Races decided deterministically: the "other writer" appends between
    //! the command's read and its append, by handing `change_key` a stale read.
    use super::*;

    use crate::testing::issuer;

    fn owner(account_id: AccountId) -> Principal {
        Principal {
            account_id,
            subject: "owner".into(),
            grants: Scopes::parse(&["*"]).unwrap(),
            session: None,
        }
    }

    /// A key rotated with `grace`, and the issuer that holds it.
    async fn rotated_key(dir: &tempfile::TempDir, grace: Duration) -> (Issuer, Principal, KeyId) {
        let issuer = issuer(dir).await;
        let account_id = AccountId::from_uuid(Uuid::now_v7());
        let owner = owner(account_id);
        let ctx = CallContext::default();
        let scopes = Scopes::parse(&["keys:read"]).unwrap();
        let created = issuer
            .create_key(&owner, account_id, "raced", scopes, None, &ctx)
            .await
            .unwrap();
        let key_id = created.key.key_id;
        issuer
            .rotate_key(&owner, account_id, key_id, Some(grace), &ctx)
            .await
            .unwrap();
        (issuer, owner, key_id)
    }

    async fn types(issuer: &Issuer, key_id: KeyId) -> Vec<String> {
        let recorded = issuer
            .store()
            .read_stream(&stream(key_id.stream()).unwrap())
            .await
            .unwrap();
        recorded.into_iter().map(|e| e.event_type).collect()
    }

    #[tokio::test]
    async fn a_revocation_that_meets_the_schedulers_grace_expiry_decides_again() {
        let dir = tempfile::tempdir().unwrap();
        let (issuer, owner, key_id) = rotated_key(&dir, Duration::zero()).await;
        let (stale, version) = issuer.load_key(owner.account_id, key_id).await.unwrap();
        // The scheduler records the grace expiry after the command read the key.
        assert_eq!(issuer.run_due(Utc::now()).await.unwrap(), 1);
        let revoked = issuer
            .change_key(
                KeyChange {
                    key: stale,
                    version,
                    concurrent: Concurrent::Redecide,
                    also: None,
                    ctx: &CallContext::default(),
                    actor: "owner",
                },
                |key, now| key.revoke("leaked", now).map_err(refused),
            )
            .await
            .expect("a system event never fails a person's command");
        assert!(revoked.revoked_at.is_some());
        assert_eq!(
            types(&issuer, key_id).await,
            [
                "ApiKeyCreated.v1",
                "ApiKeyRotated.v1",
                "GracePeriodExpired.v1",
                "ApiKeyRevoked.v1"
            ],
            "one grace expiry, before the revocation"
        );
    }

    #[tokio::test]
    async fn a_rotation_decides_again_over_bookkeeping_but_not_over_another_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let (issuer, owner, key_id) = rotated_key(&dir, Duration::zero()).await;
        let rotate = |key: &ApiKey, now| {
            key.rotate(
                SecretHash::of("next"),
                "next".into(),
                GracePeriod::parse(Some(Duration::zero())).unwrap(),
                now,
            )
            .map_err(|e| IssuerError::FailedPrecondition(e.to_string()))
        };
        let (stale, version) = issuer.load_key(owner.account_id, key_id).await.unwrap();
        assert_eq!(issuer.run_due(Utc::now()).await.unwrap(), 1);
        let ctx = CallContext::default();
        let key = issuer
            .change_key(
                KeyChange {
                    key: stale,
                    version,
                    concurrent: Concurrent::RedecideOverBookkeeping,
                    also: None,
                    ctx: &ctx,
                    actor: "owner",
                },
                rotate,
            )
            .await
            .expect("bookkeeping is no conflict");
        assert_eq!(key.rotations, 2);

        let (stale, version) = issuer.load_key(owner.account_id, key_id).await.unwrap();
        issuer
            .rotate_key(&owner, owner.account_id, key_id, None, &ctx)
            .await
            .unwrap();
        let before = types(&issuer, key_id).await;
        let lost = issuer
            .change_key(
                KeyChange {
                    key: stale,
                    version,
                    concurrent: Concurrent::RedecideOverBookkeeping,
                    also: None,
                    ctx: &ctx,
                    actor: "owner",
                },
                rotate,
            )
            .await;
        assert!(matches!(lost, Err(IssuerError::Conflict)), "{lost:?}");
        assert_eq!(
            types(&issuer, key_id).await,
            before,
            "the loser wrote nothing"
        );
    }

    #[tokio::test]
    async fn a_revocation_that_meets_another_revocation_says_already_revoked() {
        let dir = tempfile::tempdir().unwrap();
        let (issuer, owner, key_id) = rotated_key(&dir, Duration::hours(1)).await;
        let (stale, version) = issuer.load_key(owner.account_id, key_id).await.unwrap();
        let ctx = CallContext::default();
        issuer
            .revoke_key(&owner, owner.account_id, key_id, "first", &ctx)
            .await
            .unwrap();
        let second = issuer
            .change_key(
                KeyChange {
                    key: stale,
                    version,
                    concurrent: Concurrent::Redecide,
                    also: None,
                    ctx: &ctx,
                    actor: "owner",
                },
                |key, now| key.revoke("second", now).map_err(refused),
            )
            .await;
        assert!(
            matches!(second, Err(IssuerError::FailedPrecondition(_))),
            "{second:?}"
        );
    }
}
