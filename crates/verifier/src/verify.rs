//! One verification: credential in, principal or a reasoned denial out.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};
use gatehouse_crypto::jwt::{AccessClaims, MAX_TOKEN_LEN};
use gatehouse_domain::ids::{AccountId, KeyId, SessionId};
use gatehouse_domain::scope::{Scope, Scopes};
use gatehouse_domain::secret::{KeyFormat, SecretHash};
use gatehouse_domain::token::TokenSubject;
use sha2::{Digest as _, Sha256};

use crate::index::Index;
use crate::usage::UsageRecorder;

/// What kind of credential was presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    User,
    Sdk,
    ApiKey,
}

/// A verified credential.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    pub account_id: String,
    pub subject: String,
    pub kind: Kind,
    pub key_id: Option<String>,
    pub scopes: Scopes,
    pub expires_at: Option<DateTime<Utc>>,
    pub session_id: Option<String>,
}

/// A refusal with its stable reason (`google.rpc.ErrorInfo.reason`) and
/// its message, the same over every transport.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denial {
    /// UNAUTHENTICATED. One message whatever the reason: the reason says
    /// the rest.
    #[error("invalid credential")]
    Unauthenticated(&'static str),
    /// PERMISSION_DENIED: the scopes that were missing.
    #[error("insufficient scope: missing {}", .0.join(" "))]
    InsufficientScope(Vec<String>),
    /// INVALID_ARGUMENT: a required scope that is malformed or a wildcard
    /// (required scopes are always concrete). Decided before the credential.
    #[error(
        "invalid required scope {0:?}: required scopes are concrete resource:action, never wildcards"
    )]
    InvalidScope(String),
    /// INVALID_ARGUMENT: more required scopes than [`MAX_REQUIRED_SCOPES`]
    /// (so no answer echoes an unbounded list back).
    #[error("{0} required scopes: at most {MAX_REQUIRED_SCOPES}")]
    TooManyScopes(usize),
}

/// The marker of an SDK token whose key the index does not know.
const UNKNOWN_TOKEN_KEY: &str = "KEY_UNKNOWN";

/// Most required scopes one `Verify` may ask for: the catalogue's size.
pub const MAX_REQUIRED_SCOPES: usize = 64;

impl Denial {
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Unauthenticated(reason) => reason,
            Self::InsufficientScope(_) => "INSUFFICIENT_SCOPE",
            Self::InvalidScope(_) => "INVALID_SCOPE",
            Self::TooManyScopes(_) => "TOO_MANY_SCOPES",
        }
    }
}

/// Most tokens remembered as verified; past this, expired ones are dropped
/// and, if that is not enough, the shard starts over.
const TOKEN_CACHE_CAPACITY: usize = 100_000;
/// The token cache's shards (by the fingerprint's first byte): a first
/// sight takes one shard's write lock, so concurrent first sights and the
/// repeat presentations of other shards do not queue behind it.
const TOKEN_CACHE_SHARDS: usize = 16;

type TokenCache = Arc<[RwLock<HashMap<[u8; 32], CachedToken>>]>;

struct CachedToken {
    verified: Verified,
    revocable: Revocable,
    /// The signing key: a retired key's tokens stop at its retirement, cached or not.
    kid: String,
    exp: i64,
}

/// Verifies credentials against the shared index.
#[derive(Clone)]
pub struct Verifier {
    index: Arc<RwLock<Index>>,
    key_format: KeyFormat,
    /// Where uses of keys (API keys and SDK tokens) are counted, if anywhere.
    usage: Option<Arc<UsageRecorder>>,
    /// SHA-256 of (audience, token) → claims, until the token's `exp`: a
    /// repeat presentation costs a hash instead of an Ed25519 check.
    cache: TokenCache,
    /// Longest a user token may live (`exp - iat`, seconds): the index
    /// forgets a revoked session after that long, so a longer-lived token
    /// could outlive the memory of its revocation; it is refused instead.
    max_user_token_secs: i64,
}

/// What [`Verifier::verify`] could not decide without the log.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    Decided(Result<Verified, Denial>),
    /// A well-formed key secret this index does not know (yet).
    UnknownKey,
}

impl Verifier {
    pub fn new(index: Arc<RwLock<Index>>, key_format: KeyFormat) -> Self {
        Self {
            index,
            key_format,
            usage: None,
            max_user_token_secs: i64::MAX,
            cache: (0..TOKEN_CACHE_SHARDS)
                .map(|_| RwLock::new(HashMap::new()))
                .collect(),
        }
    }

    /// Refuses user tokens that live longer than the index remembers a
    /// revoked session (see [`crate::follower::SnapshotPolicy`]).
    pub fn with_session_retention(mut self, retention: std::time::Duration) -> Self {
        self.max_user_token_secs = i64::try_from(retention.as_secs()).unwrap_or(i64::MAX);
        self
    }

    /// Counts key uses in `usage`.
    pub fn with_usage(mut self, usage: Arc<UsageRecorder>) -> Self {
        self.usage = Some(usage);
        self
    }

    /// Where key uses are counted, if anywhere.
    pub fn usage(&self) -> Option<&Arc<UsageRecorder>> {
        self.usage.as_ref()
    }

    /// Decides from memory.
    pub fn verify(
        &self,
        credential: &str,
        required: &[String],
        audience: Option<&str>,
        caller: Option<&str>,
        now: DateTime<Utc>,
    ) -> Outcome {
        if required.len() > MAX_REQUIRED_SCOPES {
            return Outcome::Decided(Err(Denial::TooManyScopes(required.len())));
        }
        if let Some(bad) = required.iter().find(|r| !Scope::is_concrete(r)) {
            return Outcome::Decided(Err(Denial::InvalidScope(bad.chars().take(80).collect())));
        }
        let credential = strip_bearer(credential);
        if credential.is_empty() {
            return Outcome::Decided(Err(Denial::Unauthenticated("CREDENTIAL_MISSING")));
        }
        if credential.len() > MAX_TOKEN_LEN {
            return Outcome::Decided(Err(Denial::Unauthenticated("CREDENTIAL_MALFORMED")));
        }
        let looks_like_key = self.key_format.looks_like_api_key(credential);
        let Ok(index) = self.index.read() else {
            return Outcome::Decided(Err(Denial::Unauthenticated("CREDENTIAL_MALFORMED")));
        };
        let (verified, key) = if looks_like_key {
            if !self.key_format.is_api_key_secret(credential) {
                return Outcome::Decided(Err(Denial::Unauthenticated("BAD_CHECKSUM")));
            }
            match self.verify_key(&index, credential, now) {
                Some((result, key)) => (result, Some(key)),
                None => return Outcome::UnknownKey,
            }
        } else if credential.bytes().filter(|b| *b == b'.').count() == 2 {
            self.verify_token(&index, credential, audience, now)
        } else {
            (Err(Denial::Unauthenticated("CREDENTIAL_MALFORMED")), None)
        };
        if matches!(verified, Err(Denial::Unauthenticated(UNKNOWN_TOKEN_KEY))) {
            return Outcome::UnknownKey;
        }
        // Grants are resolved against the live catalogue on every call: a
        // retired scope stops being held at once, cached token or not.
        let catalogue = index.catalogue();
        let result = verified.and_then(|mut v| {
            let missing: Vec<String> = required
                .iter()
                .filter(|r| !catalogue.holds(&v.scopes, r))
                .cloned()
                .collect();
            if !missing.is_empty() {
                return Err(Denial::InsufficientScope(missing));
            }
            if catalogue.needs_resolving(&v.scopes) {
                v.scopes = catalogue.resolve(&v.scopes);
            }
            Ok(v)
        });
        drop(index);
        if let (Some(usage), Some((key_id, account_id))) = (&self.usage, key) {
            let denial = result.as_ref().err().map(Denial::reason);
            usage.record(key_id, account_id, caller, denial, now);
        }
        Outcome::Decided(result)
    }

    /// `None` if the secret is unknown; otherwise the decision and the key.
    fn verify_key(
        &self,
        index: &Index,
        secret: &str,
        now: DateTime<Utc>,
    ) -> Option<(Result<Verified, Denial>, KeyRef)> {
        let digest = SecretHash::digest_of(secret);
        let (key, scopes) = index.key_by_digest(&digest)?;
        Some((
            key.secrets
                .authenticate(&digest, now)
                .map(|()| Verified {
                    account_id: key.account_id.to_string(),
                    subject: key.id.to_string(),
                    kind: Kind::ApiKey,
                    key_id: Some(key.id.to_string()),
                    scopes: scopes.clone(),
                    expires_at: key.secrets.expires_at(),
                    session_id: None,
                })
                .map_err(|e| Denial::Unauthenticated(e.reason())),
            (key.id, key.account_id),
        ))
    }

    fn verify_token(
        &self,
        index: &Index,
        token: &str,
        audience: Option<&str>,
        now: DateTime<Utc>,
    ) -> (Result<Verified, Denial>, Option<KeyRef>) {
        let mut hasher = Sha256::new();
        hasher.update(audience.unwrap_or("").as_bytes());
        hasher.update([0]);
        hasher.update(token.as_bytes());
        let fingerprint: [u8; 32] = hasher.finalize().into();
        let cached = self.shard(&fingerprint).read().ok().and_then(|cache| {
            cache
                .get(&fingerprint)
                .filter(|c| {
                    c.exp > now.timestamp() && index.tokens().is_published(&c.kid, now.timestamp())
                })
                .map(|c| (c.verified.clone(), c.revocable))
        });
        let (verified, revocable) = match cached {
            Some(hit) => hit,
            None => {
                let parsed = index
                    .tokens()
                    .verify(token, audience, now.timestamp())
                    .map_err(|e| Denial::Unauthenticated(e.reason()))
                    .and_then(|claims| parse_claims(claims, self.max_user_token_secs));
                match parsed {
                    Ok(parsed) => {
                        self.remember(fingerprint, &parsed, token_kid(token), now);
                        parsed
                    }
                    Err(denial) => return (Err(denial), None),
                }
            }
        };
        // Revocation is checked on every call, cached or not.
        match revocable {
            Revocable::Session(session) if index.session_revoked(&session) => {
                (Err(Denial::Unauthenticated("SESSION_REVOKED")), None)
            }
            Revocable::Session(_) => (Ok(verified), None),
            // An SDK token lives no longer than its key, nor than the
            // secret it was exchanged with.
            Revocable::Key(key_id, secret) => match index.key(&key_id) {
                // A secret newer than this index knows: it is behind, not
                // the token wrong — catch up and ask again, as for a key.
                Some((key, _)) if secret > key.secrets.rotations => {
                    (Err(Denial::Unauthenticated(UNKNOWN_TOKEN_KEY)), None)
                }
                Some((key, _)) => (
                    key.secrets
                        .secret_alive(secret, now)
                        .map(|()| verified)
                        .map_err(|e| Denial::Unauthenticated(e.reason())),
                    Some((key.id, key.account_id)),
                ),
                // A token of a key this index does not know (yet): never
                // let it through on the signature alone; the decider catches
                // up once and asks again.
                None => (Err(Denial::Unauthenticated(UNKNOWN_TOKEN_KEY)), None),
            },
        }
    }

    fn shard(&self, fingerprint: &[u8; 32]) -> &RwLock<HashMap<[u8; 32], CachedToken>> {
        &self.cache[usize::from(fingerprint[0]) % self.cache.len()]
    }

    fn remember(
        &self,
        fingerprint: [u8; 32],
        parsed: &(Verified, Revocable),
        kid: String,
        now: DateTime<Utc>,
    ) {
        let Ok(mut cache) = self.shard(&fingerprint).write() else {
            return;
        };
        if cache.len() >= TOKEN_CACHE_CAPACITY / TOKEN_CACHE_SHARDS {
            cache.retain(|_, c| c.exp > now.timestamp());
            if cache.len() >= TOKEN_CACHE_CAPACITY / TOKEN_CACHE_SHARDS {
                cache.clear();
            }
        }
        let exp = parsed.0.expires_at.map_or(0, |at| at.timestamp());
        cache.insert(
            fingerprint,
            CachedToken {
                verified: parsed.0.clone(),
                revocable: parsed.1,
                kid,
                exp,
            },
        );
    }
}

/// The `kid` of a token whose signature has been verified.
fn token_kid(token: &str) -> String {
    jsonwebtoken::decode_header(token)
        .ok()
        .and_then(|h| h.kid)
        .unwrap_or_default()
}

/// A key and its account, for usage counting.
type KeyRef = (KeyId, AccountId);

/// What can revoke a token before its `exp`.
#[derive(Debug, Clone, Copy)]
enum Revocable {
    /// A user token: its login session.
    Session(SessionId),
    /// An SDK token: its API key, and which of the key's secrets it was
    /// exchanged with (it dies with that secret).
    Key(KeyId, u32),
}

/// Turns verified claims into the principal, parsed once per token.
fn parse_claims(
    claims: AccessClaims,
    max_user_token_secs: i64,
) -> Result<(Verified, Revocable), Denial> {
    let malformed = || Denial::Unauthenticated("CREDENTIAL_MALFORMED");
    let scopes = Scopes::from_claim(&claims.scope).map_err(|_| malformed())?;
    let expires_at = DateTime::from_timestamp(claims.exp, 0);
    let subject = claims
        .subject(max_user_token_secs)
        .map_err(|e| Denial::Unauthenticated(e.reason()))?;
    Ok(match subject {
        TokenSubject::User { session, .. } => (
            Verified {
                account_id: claims.acc,
                subject: claims.sub,
                kind: Kind::User,
                key_id: None,
                scopes,
                expires_at,
                session_id: claims.sid,
            },
            Revocable::Session(session),
        ),
        TokenSubject::Sdk { key, secret, .. } => (
            Verified {
                account_id: claims.acc,
                subject: claims.sub.clone(),
                kind: Kind::Sdk,
                key_id: Some(claims.sub),
                scopes,
                expires_at,
                session_id: None,
            },
            Revocable::Key(key, secret),
        ),
    })
}

/// Accepts `Bearer <credential>` (any case) or the bare credential.
pub fn strip_bearer(raw: &str) -> &str {
    let raw = raw.trim();
    match raw.split_once(' ') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
        _ => raw,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_prefixes_are_stripped() {
        assert_eq!(strip_bearer("Bearer abc"), "abc");
        assert_eq!(strip_bearer("bearer  abc "), "abc");
        assert_eq!(strip_bearer("abc"), "abc");
        assert_eq!(strip_bearer(""), "");
    }

    #[test]
    fn garbage_and_huge_credentials_are_refused_from_memory() {
        let index = Arc::new(RwLock::new(Index::new("iss", "aud", 5)));
        let verifier = Verifier::new(index, KeyFormat::new("wc", "live").unwrap());
        let now = Utc::now();
        let refused = |c: &str| match verifier.verify(c, &[], None, None, now) {
            Outcome::Decided(Err(denial)) => denial.reason(),
            other => panic!("{other:?}"),
        };
        assert_eq!(refused(""), "CREDENTIAL_MISSING");
        assert_eq!(refused("garbage"), "CREDENTIAL_MALFORMED");
        assert_eq!(refused(&"a".repeat(1 << 20)), "CREDENTIAL_MALFORMED");
        assert_eq!(refused("wc_live_typo"), "BAD_CHECKSUM");
        assert_eq!(refused("a.b.c"), "CREDENTIAL_MALFORMED");
        let well_formed = KeyFormat::new("wc", "live")
            .unwrap()
            .api_key_secret(&[1; 24]);
        assert_eq!(
            verifier.verify(&well_formed, &[], None, None, now),
            Outcome::UnknownKey
        );
    }
}
