//! The issuer's live view of the signing keys: folded from the
//! `signingkey-<kid>` streams at start-up and kept current by a subscription,
//! so a rotation made by `gatehouse signing-keys rotate` (another process)
//! takes effect here without a restart.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};
use gatehouse_crypto::jwt::TokenVerifier;
use gatehouse_crypto::keys::{PublicJwk, Signer, generate};
use gatehouse_crypto::master::MasterKey;
use gatehouse_domain::signing::{Keyring, SigningAlg, SigningKeyCreated, SigningKeyEvent};
use gatehouse_eventstore::{EventStore, ExpectedVersion, NewEvent, RecordedEvent, StreamId};

use crate::error::IssuerError;

struct State {
    ring: Keyring,
    signers: HashMap<String, Signer>,
}

/// Shared, cheaply cloned keyring.
#[derive(Clone)]
pub struct LiveKeyring {
    state: Arc<RwLock<State>>,
    master: Arc<MasterKey>,
    /// The algorithm of keys made from now on (the first, and rotations):
    /// switching it takes effect at the next rotation.
    alg: SigningAlg,
    issuer: String,
    audience: String,
    leeway_secs: u64,
}

/// One key of the JWKS.
#[derive(Debug, Clone)]
pub struct PublishedKey {
    pub kid: String,
    pub alg: SigningAlg,
    /// JWK members joined by `.` (see `SigningKeyCreated::public_key`).
    pub public_key: String,
}

impl LiveKeyring {
    pub fn new(
        master: Arc<MasterKey>,
        alg: SigningAlg,
        issuer: &str,
        audience: &str,
        leeway_secs: u64,
    ) -> Self {
        Self {
            state: Arc::new(RwLock::new(State {
                ring: Keyring::default(),
                signers: HashMap::new(),
            })),
            master,
            alg,
            issuer: issuer.to_string(),
            audience: audience.to_string(),
            leeway_secs,
        }
    }

    /// Folds one logged event in, if it is a signing-key event.
    pub fn observe(&self, event: &RecordedEvent) {
        let Ok(Some(event)) = SigningKeyEvent::decode(&event.event_type, &event.payload) else {
            return;
        };
        let Ok(mut state) = self.state.write() else {
            return;
        };
        if let SigningKeyEvent::Created(created) = &event {
            match Signer::unseal(
                &self.master,
                &created.kid,
                created.alg,
                &created.sealed_private_key,
            ) {
                Ok(signer) => {
                    state.signers.insert(created.kid.clone(), signer);
                }
                Err(error) => {
                    tracing::error!(kid = %created.kid, %error, "cannot unseal signing key")
                }
            }
        }
        state.ring.apply(&event);
    }

    /// The master key (which also seals the activity log's cursors).
    pub fn master(&self) -> &MasterKey {
        &self.master
    }

    pub fn is_empty(&self) -> bool {
        self.state.read().map(|s| s.ring.is_empty()).unwrap_or(true)
    }

    /// The signer for `now`.
    pub fn signer(&self, now: DateTime<Utc>) -> Option<Signer> {
        let state = self.state.read().ok()?;
        let kid = state.ring.signer(now)?.kid().to_string();
        state.signers.get(&kid).cloned()
    }

    /// The algorithm of the key that signs at `now`.
    pub fn signing_alg(&self, now: DateTime<Utc>) -> Option<SigningAlg> {
        let state = self.state.read().ok()?;
        state.ring.signer(now).map(|k| k.created.alg)
    }

    /// The algorithm new keys are made with.
    pub fn configured_alg(&self) -> SigningAlg {
        self.alg
    }

    /// Every key published at `now`.
    pub fn published(&self, now: DateTime<Utc>) -> Vec<PublishedKey> {
        self.state
            .read()
            .map(|s| {
                s.ring
                    .published(now)
                    .map(|k| PublishedKey {
                        kid: k.kid().to_string(),
                        alg: k.created.alg,
                        public_key: k.created.public_key.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The JWKS at `now` (RFC 7517): each key with its own `alg`.
    pub fn jwks(&self, now: DateTime<Utc>) -> Vec<PublicJwk> {
        self.published(now)
            .into_iter()
            .filter_map(|k| match PublicJwk::new(&k.kid, k.alg, &k.public_key) {
                Ok(jwk) => Some(jwk),
                Err(error) => {
                    tracing::error!(kid = %k.kid, %error, "unpublishable signing key");
                    None
                }
            })
            .collect()
    }

    /// A token verifier over the keys published at `now`.
    pub fn verifier(&self, now: DateTime<Utc>) -> TokenVerifier {
        let mut verifier = TokenVerifier::new(&self.issuer, &self.audience, self.leeway_secs);
        for key in self.published(now) {
            if let Err(error) = verifier.insert_key(&key.kid, key.alg, &key.public_key) {
                tracing::error!(kid = %key.kid, %error, "unusable published key");
            }
        }
        verifier
    }

    /// Reads the whole log once (start-up).
    pub async fn load(&self, store: &EventStore) -> Result<u64, IssuerError> {
        let next = store
            .read_to_head(1, |batch| {
                batch.iter().for_each(|event| self.observe(event))
            })
            .await?;
        Ok(next)
    }

    /// Creates the first key if there is none.
    pub async fn ensure_key(
        &self,
        store: &EventStore,
        now: DateTime<Utc>,
    ) -> Result<(), IssuerError> {
        if !self.is_empty() {
            return Ok(());
        }
        let generated = generate(&self.master, self.alg)?;
        let created = SigningKeyCreated {
            kid: generated.kid.clone(),
            alg: generated.alg,
            public_key: generated.public_key,
            sealed_private_key: generated.sealed_private_key,
            created_at: now,
            activates_at: now,
        };
        let event = SigningKeyEvent::Created(created);
        append(store, &generated.kid, vec![event.clone()]).await?;
        tracing::info!(kid = %generated.kid, "created the first signing key");
        self.observe_domain(&event);
        Ok(())
    }

    /// Rotates: a new key that signs after `publish_lead`, the current ones
    /// retired then and published for `max_token_ttl` more.
    pub async fn rotate(
        &self,
        store: &EventStore,
        now: DateTime<Utc>,
        publish_lead: chrono::Duration,
        max_token_ttl: chrono::Duration,
    ) -> Result<SigningKeyCreated, IssuerError> {
        let generated = generate(&self.master, self.alg)?;
        let next = SigningKeyCreated {
            kid: generated.kid.clone(),
            alg: generated.alg,
            public_key: generated.public_key,
            sealed_private_key: generated.sealed_private_key,
            created_at: now,
            activates_at: now,
        };
        let events = self
            .state
            .read()
            .map_err(|_| IssuerError::Internal("keyring lock poisoned".into()))?
            .ring
            .rotate(next, now, publish_lead, max_token_ttl);
        let mut batches = Vec::new();
        let mut created = None;
        for event in &events {
            let kid = match event {
                SigningKeyEvent::Created(c) => {
                    created = Some(c.clone());
                    c.kid.clone()
                }
                SigningKeyEvent::Retired(r) => r.kid.clone(),
            };
            let stream = StreamId::parse(format!("signingkey-{kid}"))?;
            let expected = if matches!(event, SigningKeyEvent::Created(_)) {
                ExpectedVersion::NoStream
            } else {
                ExpectedVersion::Exact(1)
            };
            batches.push((
                stream,
                expected,
                vec![NewEvent::new(event.event_type(), event.payload())],
            ));
        }
        store.append_all(batches).await?;
        for event in &events {
            self.observe_domain(event);
        }
        created.ok_or_else(|| IssuerError::Internal("rotation created no key".into()))
    }

    fn observe_domain(&self, event: &SigningKeyEvent) {
        let recorded = RecordedEvent {
            position: 0,
            stream_id: match StreamId::parse("signingkey-local") {
                Ok(id) => id,
                Err(_) => return,
            },
            stream_version: 0,
            event_type: event.event_type().to_string(),
            payload: event.payload(),
            metadata: Default::default(),
            occurred_at: Utc::now(),
        };
        self.observe(&recorded);
    }
}

async fn append(
    store: &EventStore,
    kid: &str,
    events: Vec<SigningKeyEvent>,
) -> Result<(), IssuerError> {
    let stream = StreamId::parse(format!("signingkey-{kid}"))?;
    let events = events
        .iter()
        .map(|e| NewEvent::new(e.event_type(), e.payload()))
        .collect();
    store
        .append(&stream, ExpectedVersion::NoStream, events)
        .await?;
    Ok(())
}
