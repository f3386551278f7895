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

use crate::decide::{Step, decide_and_append};
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
        // A new key's stream: nothing to race on but the store itself.
        let event = &SigningKeyEvent::Created(self.new_key(now)?);
        let (created, _) = decide_and_append(store, || async move {
            Ok(Step::Append(vec![batch(event)?], event.clone()))
        })
        .await?;
        if let SigningKeyEvent::Created(c) = &created {
            tracing::info!(kid = %c.kid, "created the first signing key");
        }
        self.observe_event(&created);
        Ok(())
    }

    /// Rotates: a new key that signs after `publish_lead`, the current ones
    /// retired then and published for `max_token_ttl` more. Decided on this
    /// keyring; a rotation that loses the race to another process's (both
    /// retire the same key) reads the log again and decides once more.
    pub async fn rotate(
        &self,
        store: &EventStore,
        now: DateTime<Utc>,
        publish_lead: chrono::Duration,
        max_token_ttl: chrono::Duration,
    ) -> Result<SigningKeyCreated, IssuerError> {
        let attempts = &std::sync::atomic::AtomicUsize::new(0);
        // Made once: a lost attempt wrote nothing, so its key is still new.
        let next = &self.new_key(now)?;
        let (events, _) = decide_and_append(store, || async move {
            if attempts.fetch_add(1, std::sync::atomic::Ordering::Relaxed) > 0 {
                self.load(store).await?;
            }
            let next = next.clone();
            let events = self
                .state
                .read()
                .map_err(|_| IssuerError::Internal("keyring lock poisoned".into()))?
                .ring
                .rotate(next, now, publish_lead, max_token_ttl);
            let batches = events.iter().map(batch).collect::<Result<_, _>>()?;
            Ok(Step::Append(batches, events))
        })
        .await?;
        for event in &events {
            self.observe_event(event);
        }
        events
            .into_iter()
            .find_map(|event| match event {
                SigningKeyEvent::Created(created) => Some(created),
                SigningKeyEvent::Retired(_) => None,
            })
            .ok_or_else(|| IssuerError::Internal("rotation created no key".into()))
    }

    /// A new key of this keyring's algorithm, sealed under the master key.
    fn new_key(&self, now: DateTime<Utc>) -> Result<SigningKeyCreated, IssuerError> {
        let generated = generate(&self.master, self.alg)?;
        Ok(SigningKeyCreated {
            kid: generated.kid,
            alg: generated.alg,
            public_key: generated.public_key,
            sealed_private_key: generated.sealed_private_key,
            created_at: now,
            activates_at: now,
        })
    }

    /// Folds a signing-key event in (one read elsewhere: the index's).
    pub fn observe_event(&self, event: &SigningKeyEvent) {
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

/// A signing-key event as its stream's batch: a key's stream starts with its
/// creation, and its retirement is the one event after it.
fn batch(
    event: &SigningKeyEvent,
) -> Result<(StreamId, ExpectedVersion, Vec<NewEvent>), IssuerError> {
    let (kid, expected) = match event {
        SigningKeyEvent::Created(c) => (&c.kid, ExpectedVersion::NoStream),
        SigningKeyEvent::Retired(r) => (&r.kid, ExpectedVersion::Exact(1)),
    };
    let stream = StreamId::parse(format!("signingkey-{kid}"))?;
    Ok((
        stream,
        expected,
        vec![NewEvent::new(event.event_type(), event.payload())],
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_eventstore::StoreOptions;

    /// Two issuers rotate from the same keyring state: the one that loses
    /// (both would retire the same key) reads the log again and retires the
    /// winner's new key instead, so each key is retired once and one key
    /// signs after both.
    #[tokio::test]
    async fn a_rotation_that_loses_the_race_decides_again_on_the_winners_keys() {
        let dir = tempfile::tempdir().unwrap();
        let store = EventStore::open_sqlite(&dir.path().join("g.db"), StoreOptions::default())
            .await
            .unwrap();
        store.migrate().await.unwrap();
        let master =
            Arc::new(MasterKey::from_base64(&MasterKey::generate_base64().unwrap()).unwrap());
        let ring = || LiveKeyring::new(master.clone(), SigningAlg::EdDSA, "http://t", "t", 30);
        let (first, second) = (ring(), ring());
        let now = Utc::now();
        first.ensure_key(&store, now).await.unwrap();
        second.load(&store).await.unwrap();
        let original = first.signer(now).unwrap().kid.clone();

        let (lead, ttl) = (chrono::Duration::zero(), chrono::Duration::hours(1));
        let won = first.rotate(&store, now, lead, ttl).await.unwrap();
        // `second` still holds the keys as they were before that rotation.
        let again = second.rotate(&store, now, lead, ttl).await.unwrap();
        assert_ne!(won.kid, again.kid);

        for kid in [&original, &won.kid] {
            let stream = StreamId::parse(format!("signingkey-{kid}")).unwrap();
            assert_eq!(
                store.stream_version(&stream).await.unwrap(),
                2,
                "{kid}: created, then retired once"
            );
        }
        let fresh = ring();
        fresh.load(&store).await.unwrap();
        let later = now + chrono::Duration::seconds(1);
        assert_eq!(fresh.signer(later).unwrap().kid, again.kid);
        assert_eq!(second.signer(later).unwrap().kid, again.kid);
    }
}
