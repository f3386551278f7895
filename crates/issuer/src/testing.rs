//! An issuer on a fresh SQLite file, for the unit tests of the flows.

use std::sync::{Arc, RwLock};

use gatehouse_crypto::master::MasterKey;
use gatehouse_crypto::password::PasswordHasher;
use gatehouse_domain::secret::KeyFormat;
use gatehouse_domain::signing::SigningAlg;
use gatehouse_eventstore::{EventStore, StoreOptions};
use gatehouse_verifier::follower::{Follower, SnapshotPolicy};
use gatehouse_verifier::index::Index;

use crate::keyring::LiveKeyring;
use crate::memory::LogView;
use crate::service::Issuer;
use crate::settings::{IssuerSettings, ThrottleSettings};

/// An issuer with a first signing key and its index followed from the log
/// (until the test's runtime ends).
pub(crate) async fn issuer(dir: &tempfile::TempDir) -> Issuer {
    let store = EventStore::open_sqlite(&dir.path().join("g.db"), StoreOptions::default())
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let master = Arc::new(MasterKey::from_base64(&MasterKey::generate_base64().unwrap()).unwrap());
    let keyring = LiveKeyring::new(master, SigningAlg::EdDSA, "http://test", "test", 30);
    keyring
        .ensure_key(&store, chrono::Utc::now())
        .await
        .unwrap();
    let settings = IssuerSettings {
        issuer: "http://test".into(),
        audience: "test".into(),
        access_token_ttl: std::time::Duration::from_secs(900),
        sdk_token_ttl: std::time::Duration::from_secs(3600),
        refresh_token_ttl: std::time::Duration::from_secs(86400),
        session_max_lifetime: std::time::Duration::from_secs(30 * 86400),
        leeway: std::time::Duration::from_secs(30),
        key_format: KeyFormat::new("wc", "live").unwrap(),
        throttle: ThrottleSettings::default(),
        signing_key_publish_lead: std::time::Duration::ZERO,
        max_user_token_lifetime: std::time::Duration::from_secs(86_400),
    };
    let index = Arc::new(RwLock::new(
        Index::new("http://test", "test", 30).keeping_session_heads(),
    ));
    let policy = SnapshotPolicy {
        every_events: 0,
        ..SnapshotPolicy::default()
    };
    let follower = Follower::start(store.clone(), index.clone(), policy, std::future::pending())
        .await
        .unwrap();
    Issuer::new(
        store,
        PasswordHasher::new(1).unwrap(),
        keyring,
        settings,
        gatehouse_domain::clock::system(),
    )
    .with_view(LogView::new(index, follower))
}
