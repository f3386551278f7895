//! What deciding on a presented API-key secret needs, and nothing else.
//!
//! The verifier keeps one of these per key (about a hundred bytes: two raw
//! SHA-256 digests and three times) instead of the whole aggregate, and the
//! aggregate decides through it too, so there is one rule for both.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::apikey::{ApiKeyCreated, ApiKeyEvent, KeyError};
use crate::secret::SecretHash;

/// A key's secrets and the times that decide whether they authenticate.
/// Times are Unix nanoseconds (saturating), exact for every time chrono
/// reads from the log between 1677 and 2262.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeySecrets {
    /// SHA-256 of the current secret; all zeros for a hash the log holds
    /// in a spelling no secret hashes to (it then matches nothing).
    current: [u8; 32],
    previous: Option<PreviousDigest>,
    /// How many times the key was rotated: the current secret's number.
    pub rotations: u32,
    expires_at: Option<i64>,
    revoked: bool,
}

/// The secret a rotation replaced, and the end of its grace period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct PreviousDigest {
    /// The rotation that replaced it.
    rotation: u32,
    hash: [u8; 32],
    valid_until: i64,
}

/// `at` as Unix nanoseconds, saturating outside what an `i64` holds (the
/// comparisons against a present-day clock stay exact).
pub fn nanos(at: DateTime<Utc>) -> i64 {
    at.timestamp_nanos_opt().unwrap_or(if at.timestamp() < 0 {
        i64::MIN
    } else {
        i64::MAX
    })
}

impl KeySecrets {
    pub fn created(event: &ApiKeyCreated) -> Self {
        Self {
            current: event.secret_hash.digest().unwrap_or_default(),
            previous: None,
            rotations: 0,
            expires_at: event.expires_at.map(nanos),
            revoked: false,
        }
    }

    /// The same from an aggregate's fields.
    pub(crate) fn from_parts(
        current: &SecretHash,
        previous: Option<(u32, &SecretHash, DateTime<Utc>)>,
        rotations: u32,
        expires_at: Option<DateTime<Utc>>,
        revoked: bool,
    ) -> Self {
        Self {
            current: current.digest().unwrap_or_default(),
            previous: previous.map(|(rotation, hash, valid_until)| PreviousDigest {
                rotation,
                hash: hash.digest().unwrap_or_default(),
                valid_until: nanos(valid_until),
            }),
            rotations,
            expires_at: expires_at.map(nanos),
            revoked,
        }
    }

    /// Folds a later event in; `Created` starts a new value instead.
    pub fn record(&mut self, event: &ApiKeyEvent) {
        match event {
            ApiKeyEvent::Created(e) => *self = Self::created(e),
            ApiKeyEvent::Rotated(e) => {
                self.current = e.secret_hash.digest().unwrap_or_default();
                self.rotations = e.rotation;
                self.previous = Some(PreviousDigest {
                    rotation: e.rotation,
                    hash: e.previous_hash.digest().unwrap_or_default(),
                    valid_until: nanos(e.previous_valid_until),
                });
            }
            ApiKeyEvent::Revoked(_) => self.revoked = true,
            // Decided from the clock, or (deletion) only after a revocation
            // or expiry: nothing here changes what authenticates.
            ApiKeyEvent::GraceExpired(_) | ApiKeyEvent::Expired(_) | ApiKeyEvent::Deleted(_) => {}
        }
    }

    /// The digests a presented secret may match: current, then previous.
    pub fn digests(&self) -> impl Iterator<Item = [u8; 32]> + '_ {
        std::iter::once(self.current)
            .chain(self.previous.map(|p| p.hash))
            .filter(|d| *d != [0; 32])
    }

    /// The key's expiry, if it has one.
    pub fn expires_at(&self) -> Option<DateTime<Utc>> {
        self.expires_at.map(DateTime::from_timestamp_nanos)
    }

    /// Whether `presented` (a secret's SHA-256) authenticates at `now`.
    /// Constant-time in the digests.
    pub fn authenticate(&self, presented: &[u8; 32], now: DateTime<Utc>) -> Result<(), KeyError> {
        let real = |d: &[u8; 32]| *d != [0; 32] && bool::from(d.ct_eq(presented));
        let current = real(&self.current);
        let previous = self.previous.filter(|p| real(&p.hash));
        if !current && previous.is_none() {
            return Err(KeyError::WrongSecret);
        }
        self.usable(now)?;
        match previous {
            Some(p) if !current && nanos(now) >= p.valid_until => Err(KeyError::Rotated),
            _ => Ok(()),
        }
    }

    /// The number of the secret `presented` (a SHA-256) is: the current
    /// one's, or the one before it (0 for the key's first, n for the n-th
    /// rotation's); `None` for any other. Constant-time in the digests.
    pub fn version_of(&self, presented: &[u8; 32]) -> Option<u32> {
        let real = |d: &[u8; 32]| *d != [0; 32] && bool::from(d.ct_eq(presented));
        if real(&self.current) {
            return Some(self.rotations);
        }
        self.previous
            .filter(|p| real(&p.hash))
            .and_then(|p| p.rotation.checked_sub(1))
    }

    /// Whether the secret numbered `version` (0 for the key's first, n for
    /// the n-th rotation's) still authenticates at `now`: the current one
    /// while the key is in service, the previous one until its grace ends.
    pub fn secret_alive(&self, version: u32, now: DateTime<Utc>) -> Result<(), KeyError> {
        self.usable(now)?;
        if version == self.rotations {
            return Ok(());
        }
        match &self.previous {
            Some(p) if version.checked_add(1) == Some(p.rotation) && nanos(now) < p.valid_until => {
                Ok(())
            }
            _ => Err(KeyError::Rotated),
        }
    }

    /// Whether the key is in service at `now` (neither revoked nor expired).
    pub fn usable(&self, now: DateTime<Utc>) -> Result<(), KeyError> {
        if self.revoked {
            return Err(KeyError::Revoked);
        }
        if self.expires_at.is_some_and(|at| nanos(now) >= at) {
            return Err(KeyError::Expired);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;
    use crate::apikey::{ApiKey, NewApiKey};
    use crate::ids::{AccountId, KeyId};
    use crate::scope::Scopes;

    /// Folded from events, the compact value is exactly what the aggregate
    /// derives, and decides alike for every secret at every moment around
    /// each cut-off.
    #[test]
    fn the_fold_and_the_aggregate_decide_alike() {
        let t0 = DateTime::from_timestamp(1_800_000_000, 123_456_789).unwrap();
        let secrets: Vec<String> = (0..4).map(|n| format!("secret-{n}")).collect();
        let created = ApiKey::create(
            NewApiKey {
                id: KeyId::from_uuid(uuid::Uuid::now_v7()),
                account_id: AccountId::from_uuid(uuid::Uuid::now_v7()),
                name: "k",
                scopes: Scopes::parse(&["keys:read"]).unwrap(),
                secret_hash: SecretHash::of(&secrets[0]),
                hint: "hint".into(),
                expires_at: Some(t0 + Duration::hours(10)),
            },
            t0,
        )
        .unwrap();
        let ApiKeyEvent::Created(c) = &created else {
            unreachable!()
        };
        let mut folded = KeySecrets::created(c);
        // Two rotations with graces, then a revocation, each decided on the
        // key as it then stood.
        let mut history = vec![created.clone()];
        let fold = |history: &[ApiKeyEvent]| {
            let mut key = None;
            history.iter().for_each(|e| ApiKey::apply(&mut key, e));
            key.unwrap()
        };
        for (n, at) in [(1, t0 + Duration::hours(1)), (2, t0 + Duration::hours(3))] {
            let next = fold(&history)
                .rotate(
                    SecretHash::of(&secrets[n]),
                    "h".into(),
                    crate::apikey::GracePeriod::parse(Some(Duration::hours(1))).unwrap(),
                    at,
                )
                .unwrap();
            history.extend(next);
        }
        let revoked = fold(&history)
            .revoke("done", t0 + Duration::hours(5))
            .unwrap();
        history.extend(revoked);
        let mut key = None;
        ApiKey::apply(&mut key, &created);
        for event in &history[1..] {
            ApiKey::apply(&mut key, event);
            folded.record(event);
            let aggregate = key.as_ref().unwrap();
            assert_eq!(aggregate.secrets(), folded, "after {}", event.event_type());
            for minutes in (0..12 * 60).step_by(15) {
                let now = t0 + Duration::minutes(minutes);
                for secret in &secrets {
                    let digest = SecretHash::digest_of(secret);
                    assert_eq!(
                        aggregate.authenticate(&SecretHash::of(secret), now),
                        folded.authenticate(&digest, now),
                        "{secret} at +{minutes} min"
                    );
                }
                for version in 0..4 {
                    assert_eq!(
                        aggregate.secret_alive(version, now),
                        folded.secret_alive(version, now)
                    );
                }
            }
            for secret in &secrets {
                assert_eq!(
                    aggregate.secret_version(&SecretHash::of(secret)),
                    folded.version_of(&SecretHash::digest_of(secret)),
                    "{secret}'s number after {}",
                    event.event_type()
                );
            }
        }
        // The exact nanosecond of a cut-off: still valid one before, not at it.
        let before_revocation = fold(&history[..history.len() - 1]).secrets();
        let until = history
            .iter()
            .rev()
            .find_map(|e| match e {
                ApiKeyEvent::Rotated(r) => Some(r.previous_valid_until),
                _ => None,
            })
            .unwrap();
        let previous = SecretHash::digest_of(&secrets[1]);
        assert_eq!(
            before_revocation.authenticate(&previous, until - Duration::nanoseconds(1)),
            Ok(())
        );
        assert_eq!(
            before_revocation.authenticate(&previous, until),
            Err(KeyError::Rotated)
        );
        assert_eq!(
            before_revocation.authenticate(&SecretHash::digest_of("other"), until),
            Err(KeyError::WrongSecret)
        );
    }
}
