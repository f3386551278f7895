//! Signing keys: the keyring that signs access tokens and is published as JWKS.
//!
//! Rotation publishes the next key before it signs (`activates_at` in the
//! future, so verifiers that cache the JWKS learn it first) and keeps the old
//! key published until every token it signed has expired.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::domain_events;

/// The JWS algorithm of a signing key. A deployment picks one
/// (`--signing-alg`); each key keeps its own, so a token is checked only with
/// the algorithm of the key its `kid` names, across a switch too.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SigningAlg {
    /// Ed25519.
    #[default]
    EdDSA,
    /// ECDSA on P-256 with SHA-256.
    ES256,
    /// RSASSA-PKCS1-v1_5 with SHA-256, 2048-bit keys.
    RS256,
}

impl SigningAlg {
    /// The JWS `alg` name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EdDSA => "EdDSA",
            Self::ES256 => "ES256",
            Self::RS256 => "RS256",
        }
    }
}

impl std::fmt::Display for SigningAlg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct SigningKeyCreated {
    pub kid: String,
    /// Absent in keys recorded before algorithms were selectable: EdDSA.
    #[serde(default)]
    pub alg: SigningAlg,
    /// The public key as its JWK members, base64url, joined by `.`: `x`
    /// (EdDSA), `x.y` (ES256) or `n.e` (RS256).
    pub public_key: String,
    /// The PKCS#8 private key sealed with the master key (AES-256-GCM), base64.
    pub sealed_private_key: String,
    pub created_at: DateTime<Utc>,
    /// Published from creation; signs from here on.
    pub activates_at: DateTime<Utc>,
}

impl std::fmt::Debug for SigningKeyCreated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeyCreated")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("activates_at", &self.activates_at)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SigningKeyRetired {
    pub kid: String,
    /// Signs nothing from here on.
    pub signs_until: DateTime<Utc>,
    /// Dropped from the JWKS from here on: every token it signed has expired.
    pub published_until: DateTime<Utc>,
}

domain_events!(
    /// Events of the `signingkey-<kid>` streams.
    SigningKeyEvent {
        Created(SigningKeyCreated) = "SigningKeyCreated.v1",
        Retired(SigningKeyRetired) = "SigningKeyRetired.v1",
    }
);

/// One key as folded from its stream.
#[derive(Debug, Clone, PartialEq)]
pub struct SigningKey {
    pub created: SigningKeyCreated,
    pub retired: Option<SigningKeyRetired>,
}

impl SigningKey {
    pub fn kid(&self) -> &str {
        &self.created.kid
    }

    /// Whether it may sign at `now`.
    pub fn signs_at(&self, now: DateTime<Utc>) -> bool {
        self.created.activates_at <= now
            && self.retired.as_ref().is_none_or(|r| now < r.signs_until)
    }

    /// Whether it is in the JWKS at `now`.
    pub fn published_at(&self, now: DateTime<Utc>) -> bool {
        self.retired
            .as_ref()
            .is_none_or(|r| now < r.published_until)
    }
}

/// Every signing key, in creation order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Keyring {
    keys: Vec<SigningKey>,
}

impl Keyring {
    /// Folds one event in.
    pub fn apply(&mut self, event: &SigningKeyEvent) {
        match event {
            SigningKeyEvent::Created(created) => {
                if !self.keys.iter().any(|k| k.kid() == created.kid) {
                    self.keys.push(SigningKey {
                        created: created.clone(),
                        retired: None,
                    });
                }
            }
            SigningKeyEvent::Retired(retired) => {
                if let Some(key) = self.keys.iter_mut().find(|k| k.kid() == retired.kid) {
                    key.retired = Some(retired.clone());
                }
            }
        }
    }

    /// The key to sign with at `now`: the newest active one.
    pub fn signer(&self, now: DateTime<Utc>) -> Option<&SigningKey> {
        self.keys
            .iter()
            .filter(|k| k.signs_at(now))
            .max_by_key(|k| k.created.activates_at)
    }

    /// Keys to publish at `now`.
    pub fn published(&self, now: DateTime<Utc>) -> impl Iterator<Item = &SigningKey> {
        self.keys.iter().filter(move |k| k.published_at(now))
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Decides a rotation to `next` (already created, not yet appended):
    /// `next` activates after `publish_lead`; every key signing now retires at
    /// that instant and stays published for `max_token_ttl` more.
    pub fn rotate(
        &self,
        mut next: SigningKeyCreated,
        now: DateTime<Utc>,
        publish_lead: Duration,
        max_token_ttl: Duration,
    ) -> Vec<SigningKeyEvent> {
        next.activates_at = now + publish_lead;
        let cut_over = next.activates_at;
        let mut events = vec![SigningKeyEvent::Created(next)];
        for key in self.keys.iter().filter(|k| k.retired.is_none()) {
            events.push(SigningKeyEvent::Retired(SigningKeyRetired {
                kid: key.kid().to_string(),
                signs_until: cut_over,
                published_until: cut_over + max_token_ttl,
            }));
        }
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(kid: &str, at: DateTime<Utc>) -> SigningKeyCreated {
        SigningKeyCreated {
            kid: kid.into(),
            alg: SigningAlg::EdDSA,
            public_key: "x".into(),
            sealed_private_key: "sealed".into(),
            created_at: at,
            activates_at: at,
        }
    }

    #[test]
    fn rotation_publishes_before_signing_and_keeps_the_old_key_until_its_tokens_expire() {
        let t0 = Utc::now();
        let mut ring = Keyring::default();
        ring.apply(&SigningKeyEvent::Created(key("k1", t0)));
        assert_eq!(ring.signer(t0).unwrap().kid(), "k1");

        let lead = Duration::seconds(60);
        let ttl = Duration::seconds(3600);
        for event in ring.rotate(key("k2", t0), t0, lead, ttl) {
            ring.apply(&event);
        }
        // Before the cut-over: k1 signs, both are published.
        assert_eq!(ring.signer(t0).unwrap().kid(), "k1");
        assert_eq!(ring.published(t0).count(), 2);
        // After: k2 signs; k1 still published for the last k1 token's lifetime.
        let after = t0 + lead;
        assert_eq!(ring.signer(after).unwrap().kid(), "k2");
        assert_eq!(
            ring.published(after + ttl - Duration::seconds(1)).count(),
            2
        );
        assert_eq!(
            ring.published(after + ttl)
                .map(|k| k.kid().to_string())
                .collect::<Vec<_>>(),
            ["k2"]
        );
    }

    #[test]
    fn keys_recorded_before_algorithms_were_selectable_are_eddsa() {
        let old = serde_json::json!({
            "kid": "k1",
            "public_key": "x",
            "sealed_private_key": "s",
            "created_at": "2026-01-01T00:00:00Z",
            "activates_at": "2026-01-01T00:00:00Z",
        });
        let created: SigningKeyCreated = serde_json::from_value(old).unwrap();
        assert_eq!(created.alg, SigningAlg::EdDSA);
        let es: SigningAlg = serde_json::from_value(serde_json::json!("ES256")).unwrap();
        assert_eq!(es.as_str(), "ES256");
    }
}
