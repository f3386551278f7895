//! API keys: scoped, hashed at rest, shown once; rotated with a grace period,
//! revoked, expired, deleted.
//!
//! A key has one current secret and at most one previous secret, valid until
//! `valid_until`. The cut-off is decided here from the clock, so a verifier
//! rejects the old secret from `valid_until` on whether or not the scheduler
//! has written `GracePeriodExpired.v1` yet. Rotating again during a grace period
//! ends the earlier grace at once (one `GracePeriodExpired.v1` per rotation,
//! always).

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::DomainError;
use crate::domain_events;
use crate::ids::{AccountId, KeyId};
use crate::keysecrets::KeySecrets;
use crate::scope::Scopes;
use crate::secret::SecretHash;

/// Longest key name.
pub const MAX_NAME_CHARS: usize = 100;
/// Longest revocation reason.
pub const MAX_REASON_CHARS: usize = 500;
/// Grace period when the caller gives none.
pub const DEFAULT_GRACE: Duration = Duration::hours(24);
/// Longest grace period accepted.
pub const MAX_GRACE: Duration = Duration::days(30);

/// How long a rotated-away secret stays valid: 0 to [`MAX_GRACE`], by
/// default [`DEFAULT_GRACE`]. Parsed once, so a rotation never clamps a
/// value it was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GracePeriod(Duration);

impl GracePeriod {
    /// The caller's grace (`None`: the default), refused outside 0 to 30 days.
    pub fn parse(requested: Option<Duration>) -> Result<Self, DomainError> {
        let grace = requested.unwrap_or(DEFAULT_GRACE);
        if grace < Duration::zero() || grace > MAX_GRACE {
            return Err(DomainError::invalid(
                "grace_period",
                format!("must be between 0 and {} days", MAX_GRACE.num_days()),
            ));
        }
        Ok(Self(grace))
    }

    pub fn duration(self) -> Duration {
        self.0
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiKeyCreated {
    pub key_id: KeyId,
    pub account_id: AccountId,
    pub name: String,
    pub scopes: Scopes,
    pub secret_hash: SecretHash,
    /// The last 4 characters of the secret.
    pub hint: String,
    pub expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiKeyRotated {
    pub key_id: KeyId,
    pub account_id: AccountId,
    /// 1 for the first rotation of the key, then 2, …
    pub rotation: u32,
    pub secret_hash: SecretHash,
    pub hint: String,
    /// The secret replaced; accepted until `previous_valid_until`.
    pub previous_hash: SecretHash,
    pub previous_valid_until: DateTime<Utc>,
    pub rotated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GracePeriodExpired {
    pub key_id: KeyId,
    pub account_id: AccountId,
    /// The rotation whose grace ended.
    pub rotation: u32,
    pub expired_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiKeyRevoked {
    pub key_id: KeyId,
    pub account_id: AccountId,
    pub reason: String,
    pub revoked_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiKeyExpired {
    pub key_id: KeyId,
    pub account_id: AccountId,
    pub expired_at: DateTime<Utc>,
}

/// The key leaves the key list for good; its history stays in the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiKeyDeleted {
    pub key_id: KeyId,
    pub account_id: AccountId,
    pub reason: String,
    pub deleted_at: DateTime<Utc>,
}

domain_events!(
    /// Events of the `apikey-<id>` stream.
    ApiKeyEvent {
        Created(ApiKeyCreated) = "ApiKeyCreated.v1",
        Rotated(ApiKeyRotated) = "ApiKeyRotated.v1",
        GraceExpired(GracePeriodExpired) = "GracePeriodExpired.v1",
        Revoked(ApiKeyRevoked) = "ApiKeyRevoked.v1",
        Expired(ApiKeyExpired) = "ApiKeyExpired.v1",
        Deleted(ApiKeyDeleted) = "ApiKeyDeleted.v1",
    }
);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SecretIssued {
    pub key_id: KeyId,
}

domain_events!(
    /// Events of the `apikeyhash-<sha256>` stream: which key a secret belongs
    /// to, so a secret presented as a bearer finds its key without a read model.
    SecretIndexEvent {
        Issued(SecretIssued) = "ApiKeySecretIssued.v1",
    }
);

/// The stream that maps a secret's hash to its key.
pub fn secret_stream(hash: &SecretHash) -> String {
    format!("apikeyhash-{}", hash.as_str())
}

/// Why a presented key secret or a command is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("the key was revoked")]
    Revoked,
    #[error("the key expired")]
    Expired,
    #[error("the secret was rotated and its grace period is over")]
    Rotated,
    #[error("the secret does not match the key")]
    WrongSecret,
}

impl KeyError {
    /// The `google.rpc.ErrorInfo.reason` of this failure.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Revoked => "KEY_REVOKED",
            Self::Expired => "KEY_EXPIRED",
            Self::Rotated => "KEY_ROTATED",
            Self::WrongSecret => "KEY_UNKNOWN",
        }
    }
}

/// What a key's listing shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyState {
    Active,
    /// A previous secret is inside its grace period.
    Rotating,
    Revoked,
    Expired,
    Deleted,
}

/// A key's lifecycle times, as the aggregate and the read models keep them.
#[derive(Debug, Clone, Copy, Default)]
pub struct Lifecycle {
    pub revoked_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    pub previous_valid_until: Option<DateTime<Utc>>,
    pub deleted_at: Option<DateTime<Utc>>,
}

impl KeyState {
    /// The state at `now` of a key with these lifecycle times — one rule for
    /// the aggregate and for read models that keep only the times.
    pub fn at(times: Lifecycle, now: DateTime<Utc>) -> Self {
        let Lifecycle {
            revoked_at,
            expires_at,
            previous_valid_until,
            deleted_at,
        } = times;
        if deleted_at.is_some() {
            Self::Deleted
        } else if revoked_at.is_some() {
            Self::Revoked
        } else if expires_at.is_some_and(|at| now >= at) {
            Self::Expired
        } else if previous_valid_until.is_some_and(|until| now < until) {
            Self::Rotating
        } else {
            Self::Active
        }
    }
}

/// The previous secret of a rotation still in (or past) its grace period.
#[derive(Debug, Clone, PartialEq)]
pub struct PreviousSecret {
    pub rotation: u32,
    hash: SecretHash,
    pub valid_until: DateTime<Utc>,
    /// Whether `GracePeriodExpired.v1` has been written for it.
    pub expiry_recorded: bool,
}

/// A key as folded from its stream.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiKey {
    pub id: KeyId,
    pub account_id: AccountId,
    pub name: String,
    pub scopes: Scopes,
    pub hint: String,
    secret_hash: SecretHash,
    pub previous: Option<PreviousSecret>,
    pub rotations: u32,
    pub expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub rotated_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub expiry_recorded: bool,
    /// Deleted keys are gone from listings and refuse every command.
    pub deleted_at: Option<DateTime<Utc>>,
}

fn check_text(
    what: &'static str,
    text: &str,
    max: usize,
    allow_empty: bool,
) -> Result<String, DomainError> {
    let text = text.trim();
    if (!allow_empty && text.is_empty())
        || text.chars().count() > max
        || text.chars().any(char::is_control)
    {
        let min = if allow_empty { 0 } else { 1 };
        return Err(DomainError::invalid(
            what,
            format!("{min} to {max} printable characters"),
        ));
    }
    Ok(text.to_string())
}

/// What a new key is made of (its secret only as a hash and a hint).
#[derive(Debug, Clone)]
pub struct NewApiKey<'a> {
    pub id: KeyId,
    pub account_id: AccountId,
    pub name: &'a str,
    pub scopes: Scopes,
    pub secret_hash: SecretHash,
    pub hint: String,
    pub expires_at: Option<DateTime<Utc>>,
}

impl ApiKey {
    /// Decides the creation of a key whose secret hashes to `secret_hash`.
    pub fn create(new: NewApiKey<'_>, now: DateTime<Utc>) -> Result<ApiKeyEvent, DomainError> {
        let NewApiKey {
            id,
            account_id,
            name,
            scopes,
            secret_hash,
            hint,
            expires_at,
        } = new;
        let name = check_text("name", name, MAX_NAME_CHARS, false)?;
        if scopes.is_empty() {
            return Err(DomainError::invalid(
                "scopes",
                "a key needs at least one scope",
            ));
        }
        if expires_at.is_some_and(|at| at <= now) {
            return Err(DomainError::invalid("expires_at", "must be in the future"));
        }
        let expires_at = expires_at
            .map(|at| crate::check_time("expires_at", at))
            .transpose()?;
        Ok(ApiKeyEvent::Created(ApiKeyCreated {
            key_id: id,
            account_id,
            name,
            scopes,
            secret_hash,
            hint,
            expires_at,
            created_at: now,
        }))
    }

    pub fn fold<'a>(events: impl IntoIterator<Item = &'a ApiKeyEvent>) -> Option<Self> {
        let mut key: Option<Self> = None;
        for event in events {
            Self::apply(&mut key, event);
        }
        key
    }

    /// Folds one event into `key` (the verifier keeps keys this way, one event
    /// at a time, instead of re-reading streams).
    pub fn apply(key: &mut Option<Self>, event: &ApiKeyEvent) {
        match (event, key.as_mut()) {
            (ApiKeyEvent::Created(e), _) => {
                *key = Some(Self {
                    id: e.key_id,
                    account_id: e.account_id,
                    name: e.name.clone(),
                    scopes: e.scopes.clone(),
                    hint: e.hint.clone(),
                    secret_hash: e.secret_hash.clone(),
                    previous: None,
                    rotations: 0,
                    expires_at: e.expires_at,
                    created_at: e.created_at,
                    rotated_at: None,
                    revoked_at: None,
                    expiry_recorded: false,
                    deleted_at: None,
                })
            }
            (_, Some(k)) => k.record(event),
            (_, None) => {}
        }
    }

    /// Folds a later event (anything but `Created`) into this key.
    fn record(&mut self, event: &ApiKeyEvent) {
        match event {
            ApiKeyEvent::Created(_) => {}
            ApiKeyEvent::Rotated(e) => {
                self.secret_hash = e.secret_hash.clone();
                self.hint = e.hint.clone();
                self.rotations = e.rotation;
                self.rotated_at = Some(e.rotated_at);
                self.previous = Some(PreviousSecret {
                    rotation: e.rotation,
                    hash: e.previous_hash.clone(),
                    valid_until: e.previous_valid_until,
                    expiry_recorded: false,
                });
            }
            ApiKeyEvent::GraceExpired(e) => {
                if let Some(previous) = self.previous.as_mut().filter(|p| p.rotation == e.rotation)
                {
                    previous.expiry_recorded = true;
                }
            }
            ApiKeyEvent::Revoked(e) => self.revoked_at = Some(e.revoked_at),
            ApiKeyEvent::Expired(_) => self.expiry_recorded = true,
            ApiKeyEvent::Deleted(e) => self.deleted_at = Some(e.deleted_at),
        }
    }

    /// This key with whatever was due by `now` recorded, and those due
    /// events. Every command decides on it and appends the due events first,
    /// so the log reads in the order things happened (a grace that ended
    /// before a revocation is recorded before it), whether or not the
    /// scheduler has run.
    fn caught_up(&self, now: DateTime<Utc>) -> (Self, Vec<ApiKeyEvent>) {
        let due = self.due(now);
        let mut key = self.clone();
        for event in &due {
            key.record(event);
        }
        (key, due)
    }

    /// Ends a grace period still running at `now` (a rotation or revocation
    /// ends it early), so nothing falls due after the command.
    fn end_grace(&self, now: DateTime<Utc>) -> Option<ApiKeyEvent> {
        let previous = self.previous.as_ref().filter(|p| !p.expiry_recorded)?;
        Some(ApiKeyEvent::GraceExpired(GracePeriodExpired {
            key_id: self.id,
            account_id: self.account_id,
            rotation: previous.rotation,
            expired_at: now.min(previous.valid_until),
        }))
    }

    /// Whether a concurrent `event` is the system's bookkeeping (a grace or
    /// expiry falling due) rather than a person's change: a command that
    /// meets one decides again instead of failing.
    pub fn is_bookkeeping(event: &ApiKeyEvent) -> bool {
        matches!(
            event,
            ApiKeyEvent::GraceExpired(_) | ApiKeyEvent::Expired(_)
        )
    }

    /// The hashes that may authenticate this key: the current secret's and, if
    /// any, the previous one's (valid or not — `authenticate` decides).
    pub fn secret_hashes(&self) -> impl Iterator<Item = &SecretHash> {
        std::iter::once(&self.secret_hash).chain(self.previous.as_ref().map(|p| &p.hash))
    }

    /// The state shown in listings at `now`.
    pub fn state(&self, now: DateTime<Utc>) -> KeyState {
        KeyState::at(
            Lifecycle {
                revoked_at: self.revoked_at,
                expires_at: self.expires_at,
                previous_valid_until: self.previous.as_ref().map(|p| p.valid_until),
                deleted_at: self.deleted_at,
            },
            now,
        )
    }

    /// When the previous secret stops being accepted, while it still is.
    pub fn previous_valid_until(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.previous
            .as_ref()
            .map(|p| p.valid_until)
            .filter(|until| now < *until)
    }

    /// Whether `presented` is a valid secret of this key at `now`. The secret is
    /// matched first, so a wrong secret learns nothing of the key's state.
    pub fn authenticate(&self, presented: &SecretHash, now: DateTime<Utc>) -> Result<(), KeyError> {
        match presented.digest() {
            Some(digest) => self.secrets().authenticate(&digest, now),
            None => Err(KeyError::WrongSecret),
        }
    }

    /// What deciding on a presented secret needs: the rule the aggregate
    /// and the verifier's compact index share.
    pub fn secrets(&self) -> KeySecrets {
        KeySecrets::from_parts(
            &self.secret_hash,
            self.previous
                .as_ref()
                .map(|p| (p.rotation, &p.hash, p.valid_until)),
            self.rotations,
            self.expires_at,
            self.revoked_at.is_some(),
        )
    }

    /// Which secret of the key `presented` is: 0 for the key's first, n for
    /// the n-th rotation's (what an SDK token records as `ksv`).
    pub fn secret_version(&self, presented: &SecretHash) -> Option<u32> {
        if self.secret_hash.matches(presented) {
            return Some(self.rotations);
        }
        self.previous
            .as_ref()
            .filter(|p| p.hash.matches(presented))
            .and_then(|p| p.rotation.checked_sub(1))
    }

    /// Whether the secret numbered `version` (see [`Self::secret_version`])
    /// still authenticates at `now`: the current one while the key is in
    /// service, the previous one until its grace ends, older ones never.
    pub fn secret_alive(&self, version: u32, now: DateTime<Utc>) -> Result<(), KeyError> {
        self.secrets().secret_alive(version, now)
    }

    /// Whether the key is in service at `now` (neither revoked nor expired).
    pub fn usable(&self, now: DateTime<Utc>) -> Result<(), KeyError> {
        self.secrets().usable(now)
    }

    /// Decides a rotation to a secret hashing to `next`; the old secret stays
    /// valid for `grace` (zero: not at all). A rotation during an earlier grace
    /// period ends that grace now.
    pub fn rotate(
        &self,
        next: SecretHash,
        hint: String,
        grace: GracePeriod,
        now: DateTime<Utc>,
    ) -> Result<Vec<ApiKeyEvent>, KeyError> {
        let (key, mut events) = self.caught_up(now);
        key.usable(now)?;
        events.extend(key.end_grace(now));
        events.push(ApiKeyEvent::Rotated(ApiKeyRotated {
            key_id: key.id,
            account_id: key.account_id,
            rotation: key.rotations + 1,
            secret_hash: next,
            hint,
            previous_hash: key.secret_hash.clone(),
            previous_valid_until: now + grace.duration(),
            rotated_at: now,
        }));
        Ok(events)
    }

    /// Decides a revocation, after what was due and ending a running grace
    /// period. Revoking a revoked key is refused (and writes nothing).
    pub fn revoke(
        &self,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<ApiKeyEvent>, RevokeError> {
        let (key, mut events) = self.caught_up(now);
        if key.deleted_at.is_some() {
            return Err(RevokeError::Deleted);
        }
        if key.revoked_at.is_some() {
            return Err(RevokeError::AlreadyRevoked);
        }
        let reason =
            check_text("reason", reason, MAX_REASON_CHARS, true).map_err(RevokeError::Invalid)?;
        events.extend(key.end_grace(now));
        events.push(ApiKeyEvent::Revoked(ApiKeyRevoked {
            key_id: key.id,
            account_id: key.account_id,
            reason,
            revoked_at: now,
        }));
        Ok(events)
    }

    /// Decides a deletion: a key still in service is revoked first, in the
    /// same batch, so no verifier accepts it a moment longer. The caller
    /// treats a deleted key as not found; this refuses it all the same.
    pub fn delete(
        &self,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<ApiKeyEvent>, RevokeError> {
        if self.deleted_at.is_some() {
            return Err(RevokeError::Deleted);
        }
        let reason =
            check_text("reason", reason, MAX_REASON_CHARS, true).map_err(RevokeError::Invalid)?;
        let (key, due) = self.caught_up(now);
        let mut events = if key.usable(now).is_ok() {
            self.revoke(&reason, now)?
        } else {
            due
        };
        events.push(ApiKeyEvent::Deleted(ApiKeyDeleted {
            key_id: self.id,
            account_id: self.account_id,
            reason,
            deleted_at: now,
        }));
        Ok(events)
    }

    /// What the scheduler owes this key at `now`: the grace expiry of the last
    /// rotation and the key's own expiry, each written once.
    pub fn due(&self, now: DateTime<Utc>) -> Vec<ApiKeyEvent> {
        let mut events = Vec::new();
        // A deleted key owes nothing: it was taken out of service when deleted.
        if self.deleted_at.is_some() {
            return events;
        }
        if let Some(previous) = self
            .previous
            .as_ref()
            .filter(|p| !p.expiry_recorded && now >= p.valid_until)
        {
            events.push(ApiKeyEvent::GraceExpired(GracePeriodExpired {
                key_id: self.id,
                account_id: self.account_id,
                rotation: previous.rotation,
                expired_at: previous.valid_until,
            }));
        }
        // A revoked key owes no expiry: it is already out of service.
        if let Some(at) = self
            .expires_at
            .filter(|at| !self.expiry_recorded && self.revoked_at.is_none() && now >= *at)
        {
            events.push(ApiKeyEvent::Expired(ApiKeyExpired {
                key_id: self.id,
                account_id: self.account_id,
                expired_at: at,
            }));
        }
        // In the order they happened (a key may expire before its grace ends).
        events.sort_by_key(|e| match e {
            ApiKeyEvent::GraceExpired(g) => g.expired_at,
            ApiKeyEvent::Expired(x) => x.expired_at,
            _ => now,
        });
        events
    }
}

/// Why a revocation is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RevokeError {
    #[error("the key is already revoked")]
    AlreadyRevoked,
    #[error("the key is deleted")]
    Deleted,
    #[error(transparent)]
    Invalid(DomainError),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn given(now: DateTime<Utc>, expires_at: Option<DateTime<Utc>>) -> Vec<ApiKeyEvent> {
        vec![
            ApiKey::create(
                NewApiKey {
                    id: KeyId::from_uuid(uuid::Uuid::now_v7()),
                    account_id: AccountId::from_uuid(uuid::Uuid::now_v7()),
                    name: "ci",
                    scopes: Scopes::parse(&["keys:read"]).unwrap(),
                    secret_hash: SecretHash::of("s1"),
                    hint: "ab12".into(),
                    expires_at,
                },
                now,
            )
            .unwrap(),
        ]
    }

    fn key(events: &[ApiKeyEvent]) -> ApiKey {
        ApiKey::fold(events).unwrap()
    }

    #[test]
    fn a_key_authenticates_until_revoked_or_expired() {
        let now = Utc::now();
        let mut events = given(now, Some(now + Duration::hours(1)));
        assert_eq!(
            key(&events).authenticate(&SecretHash::of("s1"), now),
            Ok(())
        );
        assert_eq!(
            key(&events).authenticate(&SecretHash::of("x"), now),
            Err(KeyError::WrongSecret)
        );
        assert_eq!(
            key(&events).authenticate(&SecretHash::of("s1"), now + Duration::hours(1)),
            Err(KeyError::Expired)
        );
        events.extend(key(&events).revoke("leaked", now).unwrap());
        assert_eq!(
            key(&events).authenticate(&SecretHash::of("s1"), now),
            Err(KeyError::Revoked)
        );
        assert_eq!(
            key(&events).revoke("again", now),
            Err(RevokeError::AlreadyRevoked)
        );
        assert_eq!(key(&events).state(now), KeyState::Revoked);
    }

    #[test]
    fn both_secrets_work_during_the_grace_period_and_the_cut_off_is_exact() {
        let now = Utc::now();
        let mut events = given(now, None);
        let grace = Duration::seconds(10);
        events.extend(
            key(&events)
                .rotate(SecretHash::of("s2"), "cd34".into(), grace_of(grace), now)
                .unwrap(),
        );
        let k = key(&events);
        assert_eq!(k.state(now), KeyState::Rotating);
        assert_eq!(k.hint, "cd34");
        assert_eq!(
            k.authenticate(
                &SecretHash::of("s1"),
                now + grace - Duration::milliseconds(1)
            ),
            Ok(())
        );
        assert_eq!(k.authenticate(&SecretHash::of("s2"), now), Ok(()));
        // From valid_until on, without any GracePeriodExpired event written.
        assert_eq!(
            k.authenticate(&SecretHash::of("s1"), now + grace),
            Err(KeyError::Rotated)
        );
        assert_eq!(k.state(now + grace), KeyState::Active);
        // The scheduler owes exactly one GracePeriodExpired, then nothing.
        assert!(k.due(now).is_empty());
        let due = k.due(now + grace);
        assert!(matches!(due.as_slice(), [ApiKeyEvent::GraceExpired(g)] if g.rotation == 1));
        events.extend(due);
        assert!(key(&events).due(now + grace * 2).is_empty());
    }

    #[test]
    fn rotating_during_a_grace_period_ends_it_and_records_it_once() {
        let now = Utc::now();
        let mut events = given(now, Some(now + Duration::days(7)));
        events.extend(
            key(&events)
                .rotate(
                    SecretHash::of("s2"),
                    "x".into(),
                    GracePeriod::parse(None).unwrap(),
                    now,
                )
                .unwrap(),
        );
        let second = key(&events)
            .rotate(
                SecretHash::of("s3"),
                "y".into(),
                GracePeriod::parse(Some(Duration::zero())).unwrap(),
                now,
            )
            .unwrap();
        assert!(
            matches!(second.as_slice(), [ApiKeyEvent::GraceExpired(_), ApiKeyEvent::Rotated(r)] if r.rotation == 2)
        );
        events.extend(second);
        let k = key(&events);
        assert_eq!(
            k.authenticate(&SecretHash::of("s1"), now),
            Err(KeyError::WrongSecret)
        );
        assert_eq!(
            k.authenticate(&SecretHash::of("s2"), now),
            Err(KeyError::Rotated),
            "grace 0 = immediately"
        );
        assert_eq!(k.authenticate(&SecretHash::of("s3"), now), Ok(()));
        assert_eq!(
            k.expires_at,
            Some(now + Duration::days(7)),
            "rotation keeps expires_at"
        );
        assert_eq!(k.scopes, Scopes::parse(&["keys:read"]).unwrap());
        assert!(matches!(k.due(now).as_slice(), [ApiKeyEvent::GraceExpired(g)] if g.rotation == 2));
    }

    #[test]
    fn deleting_revokes_a_live_key_in_the_same_batch_and_happens_once() {
        let now = Utc::now();
        let mut events = given(now, None);
        let deleted = key(&events).delete("no longer needed", now).unwrap();
        assert!(matches!(
            deleted.as_slice(),
            [ApiKeyEvent::Revoked(r), ApiKeyEvent::Deleted(d)]
                if r.reason == "no longer needed" && d.deleted_at == now
        ));
        events.extend(deleted);
        let k = key(&events);
        assert_eq!(
            k.authenticate(&SecretHash::of("s1"), now),
            Err(KeyError::Revoked)
        );
        assert_eq!(k.delete("again", now), Err(RevokeError::Deleted));
        // A key already out of service is deleted without another revocation
        // (its due expiry recorded first).
        let mut expiring = given(now, Some(now + Duration::seconds(1)));
        let later = now + Duration::seconds(2);
        assert!(matches!(
            key(&expiring).delete("", later).unwrap().as_slice(),
            [ApiKeyEvent::Expired(_), ApiKeyEvent::Deleted(_)]
        ));
        expiring.extend(key(&expiring).delete("", later).unwrap());
        assert!(
            key(&expiring).due(later).is_empty(),
            "a deleted key owes nothing"
        );
    }

    #[test]
    fn a_command_records_what_fell_due_first_so_the_log_keeps_time_order() {
        let now = Utc::now();
        let grace = Duration::seconds(10);
        let mut events = given(now, None);
        events.extend(
            key(&events)
                .rotate(SecretHash::of("s2"), "cd34".into(), grace_of(grace), now)
                .unwrap(),
        );
        // Revoked after the grace ended, before the scheduler ran: the grace
        // expiry comes first, at its own time, and nothing is owed after.
        let later = now + grace * 2;
        let revoked = key(&events).revoke("leaked", later).unwrap();
        assert!(matches!(
            revoked.as_slice(),
            [ApiKeyEvent::GraceExpired(g), ApiKeyEvent::Revoked(r)]
                if g.expired_at == now + grace && r.revoked_at == later
        ));
        let mut revoked_events = events.clone();
        revoked_events.extend(revoked);
        assert!(key(&revoked_events).due(later + grace).is_empty());

        // Revoked inside the grace period: the grace ends with the revocation,
        // so no expiry falls due after it.
        let inside = now + Duration::seconds(1);
        let revoked = key(&events).revoke("leaked", inside).unwrap();
        assert!(matches!(
            revoked.as_slice(),
            [ApiKeyEvent::GraceExpired(g), ApiKeyEvent::Revoked(_)] if g.expired_at == inside
        ));
        events.extend(revoked);
        assert!(key(&events).due(later).is_empty(), "exactly one expiry");

        // What fell due is recorded in the order it happened.
        let mut both = given(now, Some(now + Duration::seconds(5)));
        both.extend(
            key(&both)
                .rotate(SecretHash::of("s2"), "x".into(), grace_of(grace), now)
                .unwrap(),
        );
        assert!(matches!(
            key(&both).due(later).as_slice(),
            [ApiKeyEvent::Expired(_), ApiKeyEvent::GraceExpired(_)]
        ));
        // A key that expired before it was deleted records its expiry first.
        let expiring = given(now, Some(now + Duration::seconds(5)));
        assert!(matches!(
            key(&expiring).delete("done", later).unwrap().as_slice(),
            [ApiKeyEvent::Expired(e), ApiKeyEvent::Deleted(_)] if e.expired_at == now + Duration::seconds(5)
        ));
        // A rotation after a grace ended records that expiry at its own time.
        let mut rotated = given(now, None);
        rotated.extend(
            key(&rotated)
                .rotate(SecretHash::of("s2"), "x".into(), grace_of(grace), now)
                .unwrap(),
        );
        assert!(matches!(
            key(&rotated)
                .rotate(SecretHash::of("s3"), "y".into(), grace_of(grace), later)
                .unwrap()
                .as_slice(),
            [ApiKeyEvent::GraceExpired(g), ApiKeyEvent::Rotated(r)]
                if g.expired_at == now + grace && r.rotation == 2
        ));
        assert!(ApiKey::is_bookkeeping(&ApiKeyEvent::GraceExpired(
            GracePeriodExpired {
                key_id: key(&rotated).id,
                account_id: key(&rotated).account_id,
                rotation: 1,
                expired_at: now,
            }
        )));
    }

    #[test]
    fn an_sdk_tokens_secret_lives_as_long_as_that_secret_does() {
        let now = Utc::now();
        let mut events = given(now, None);
        assert_eq!(key(&events).secret_version(&SecretHash::of("s1")), Some(0));
        assert_eq!(key(&events).secret_version(&SecretHash::of("x")), None);
        let grace = Duration::seconds(10);
        events.extend(
            key(&events)
                .rotate(SecretHash::of("s2"), "b".into(), grace_of(grace), now)
                .unwrap(),
        );
        let k = key(&events);
        assert_eq!(k.secret_version(&SecretHash::of("s1")), Some(0));
        assert_eq!(k.secret_version(&SecretHash::of("s2")), Some(1));
        assert_eq!(k.secret_alive(0, now), Ok(()));
        assert_eq!(k.secret_alive(0, now + grace), Err(KeyError::Rotated));
        assert_eq!(k.secret_alive(1, now + grace), Ok(()));
        assert_eq!(
            k.secret_alive(2, now),
            Err(KeyError::Rotated),
            "not issued yet"
        );
        assert_eq!(k.secret_alive(u32::MAX, now), Err(KeyError::Rotated));
        events.extend(
            key(&events)
                .rotate(SecretHash::of("s3"), "c".into(), grace_of(grace), now)
                .unwrap(),
        );
        let k = key(&events);
        assert_eq!(
            k.secret_alive(0, now),
            Err(KeyError::Rotated),
            "two rotations old"
        );
        assert_eq!(k.secret_alive(1, now), Ok(()));
        events.extend(key(&events).revoke("leaked", now).unwrap());
        assert_eq!(key(&events).secret_alive(2, now), Err(KeyError::Revoked));
    }

    #[test]
    fn expiry_is_due_once_and_bad_input_is_refused() {
        let now = Utc::now();
        let mut events = given(now, Some(now + Duration::seconds(5)));
        assert!(key(&events).due(now).is_empty());
        let due = key(&events).due(now + Duration::seconds(5));
        assert!(matches!(due.as_slice(), [ApiKeyEvent::Expired(_)]));
        events.extend(due);
        assert!(key(&events).due(now + Duration::seconds(60)).is_empty());
        assert_eq!(
            key(&events).rotate(
                SecretHash::of("n"),
                "n".into(),
                GracePeriod::parse(None).unwrap(),
                now + Duration::seconds(6)
            ),
            Err(KeyError::Expired)
        );
        let k = key(&events);
        assert!(
            ApiKey::create(
                NewApiKey {
                    id: k.id,
                    account_id: k.account_id,
                    name: "",
                    scopes: k.scopes.clone(),
                    secret_hash: SecretHash::of("s"),
                    hint: "x".into(),
                    expires_at: None
                },
                now
            )
            .is_err()
        );
        assert!(
            ApiKey::create(
                NewApiKey {
                    id: k.id,
                    account_id: k.account_id,
                    name: "n",
                    scopes: Scopes::default(),
                    secret_hash: SecretHash::of("s"),
                    hint: "x".into(),
                    expires_at: None
                },
                now
            )
            .is_err()
        );
        assert!(
            ApiKey::create(
                NewApiKey {
                    id: k.id,
                    account_id: k.account_id,
                    name: "n",
                    scopes: k.scopes.clone(),
                    secret_hash: SecretHash::of("s"),
                    hint: "x".into(),
                    expires_at: Some(now)
                },
                now
            )
            .is_err()
        );
        assert!(matches!(
            k.revoke(&"r".repeat(MAX_REASON_CHARS + 1), now),
            Err(RevokeError::Invalid(_))
        ));
    }

    fn grace_of(duration: Duration) -> GracePeriod {
        GracePeriod::parse(Some(duration)).unwrap()
    }

    #[test]
    fn a_grace_period_is_zero_to_thirty_days_and_never_clamped() {
        assert_eq!(GracePeriod::parse(None).unwrap().duration(), DEFAULT_GRACE);
        assert_eq!(
            GracePeriod::parse(Some(Duration::zero()))
                .unwrap()
                .duration(),
            Duration::zero()
        );
        assert_eq!(
            GracePeriod::parse(Some(MAX_GRACE)).unwrap().duration(),
            MAX_GRACE
        );
        for refused in [Duration::seconds(-1), MAX_GRACE + Duration::seconds(1)] {
            let error = GracePeriod::parse(Some(refused)).unwrap_err();
            assert!(error.to_string().contains("grace_period"), "{error}");
        }
    }
}
