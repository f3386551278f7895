//! Fuzz target bodies. Each takes arbitrary bytes, must never panic, and
//! asserts the invariants its parser promises; `fuzz/` wraps them for
//! libFuzzer (`cargo +nightly fuzz run <target>`), and `tests/smoke.rs` runs
//! them on seeds and seeded random mutations on stable.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a fuzz target's panic is its finding

use std::sync::{Arc, OnceLock, RwLock};

use gatehouse_domain::apikey::NewApiKey;
use gatehouse_domain::ids::{AccountId, KeyId};
use gatehouse_domain::scope::{Scope, Scopes};
use gatehouse_domain::secret::{KeyFormat, SecretHash};
use gatehouse_verifier::Verifier;
use gatehouse_verifier::index::Index;
use gatehouse_verifier::routes::{Route, RouteDecision, RoutePolicy, normalize_path};
use gatehouse_verifier::verify::Outcome;

/// A fuzz target's body.
pub type Target = fn(&[u8]);

/// Every target, by name, for the smoke run and the harness.
pub const TARGETS: &[(&str, Target)] = &[
    ("api_key", api_key),
    ("bearer", bearer),
    ("scopes", scopes),
    ("requests", requests),
];

fn text(data: &[u8]) -> String {
    String::from_utf8_lossy(data).into_owned()
}

fn format() -> KeyFormat {
    KeyFormat::new("wc", "live").expect("a valid key format")
}

/// The API key parser: the checksum check implies the shape check, a
/// secret made from any 24 bytes passes both, and a hash is always 64 hex.
pub fn api_key(data: &[u8]) {
    let format = format();
    let candidate = text(data);
    if format.is_api_key_secret(&candidate) {
        assert!(format.looks_like_api_key(&candidate), "{candidate:?}");
    }
    let mut random = [0u8; 24];
    for (slot, byte) in random.iter_mut().zip(data) {
        *slot = *byte;
    }
    let minted = format.api_key_secret(&random);
    assert!(format.is_api_key_secret(&minted), "{minted:?}");
    // One changed character breaks the checksum (or the alphabet).
    if let Some(last) = minted.chars().last() {
        let flipped = if last == 'a' { 'b' } else { 'a' };
        let mut typo = minted[..minted.len() - last.len_utf8()].to_string();
        typo.push(flipped);
        assert!(!format.is_api_key_secret(&typo), "{typo:?}");
    }
    let hash = SecretHash::of(&candidate);
    assert_eq!(hash.as_str().len(), 64);
    let _ = format.refresh_token_session(&candidate);
}

fn verifier() -> &'static Verifier {
    static VERIFIER: OnceLock<Verifier> = OnceLock::new();
    VERIFIER.get_or_init(|| {
        let index = Arc::new(RwLock::new(Index::new(
            "https://gatehouse.test",
            "gatehouse",
            30,
        )));
        Verifier::new(index, format())
    })
}

/// The bearer path: the `Authorization` parser and `Verify` on an index
/// that knows no key refuse everything — never panic, never accept.
pub fn bearer(data: &[u8]) {
    let credential = gatehouse_transport::credential_of(Some(data));
    let raw = text(data);
    let now = chrono::Utc::now();
    for presented in [credential.as_deref().unwrap_or(""), raw.as_str()] {
        match verifier().verify(presented, &[], None, None, now) {
            Outcome::Decided(Ok(verified)) => panic!("accepted {presented:?}: {verified:?}"),
            Outcome::Decided(Err(denial)) => assert!(!denial.reason().is_empty()),
            Outcome::UnknownKey => assert!(format().is_api_key_secret(presented)),
        }
    }
    let tokens =
        gatehouse_crypto::jwt::TokenVerifier::new("https://gatehouse.test", "gatehouse", 30);
    assert!(
        tokens
            .verify(&raw, None, chrono::Utc::now().timestamp())
            .is_err(),
        "no key, no token"
    );
}

/// Scopes, route tables and path normalisation.
pub fn scopes(data: &[u8]) {
    let raw = text(data);
    if let Ok(scope) = Scope::parse(&raw) {
        assert_eq!(Scope::parse(scope.as_str()).ok().as_ref(), Some(&scope));
    }
    let words: Vec<&str> = raw.split_whitespace().collect();
    if let Ok(parsed) = Scopes::parse(&words) {
        let claim = parsed.to_claim();
        assert_eq!(Scopes::from_claim(&claim).ok().as_ref(), Some(&parsed));
    }
    if let Some(path) = normalize_path(&raw) {
        assert!(path.starts_with('/'), "{path:?}");
        assert!(!path.contains("//"), "{path:?}");
        assert!(!path.split('/').any(|s| s == "." || s == ".."), "{path:?}");
        assert_eq!(
            normalize_path(&path).as_deref(),
            Some(path.as_str()),
            "idempotent"
        );
    }
    if let Ok(policy) = Route::parse_table(&raw).and_then(|routes| RoutePolicy::new(routes, true)) {
        for (method, path) in [("GET", "/"), ("HEAD", raw.as_str()), ("POST", "/a/../b")] {
            match policy.decide(method, path) {
                RouteDecision::Require(scopes) => {
                    assert!(scopes.iter().all(|s| Scope::is_concrete(s)), "{scopes:?}")
                }
                RouteDecision::Unmatched | RouteDecision::Unsafe => {}
            }
        }
    }
}

/// The HTTP request bodies and the domain's validation of what they carry.
pub fn requests(data: &[u8]) {
    use gatehouse_transport::http::{accounts, auth, keys, scopes, verifier};
    let _ = serde_json::from_slice::<auth::LoginBody>(data);
    let _ = serde_json::from_slice::<auth::RefreshBody>(data);
    let _ = serde_json::from_slice::<auth::PasswordBody>(data);
    let _ = serde_json::from_slice::<auth::SdkTokenBody>(data);
    let _ = serde_json::from_slice::<verifier::VerifyBody>(data);
    let _ = serde_json::from_slice::<keys::CreateKeyBody>(data);
    let _ = serde_json::from_slice::<keys::RotateBody>(data);
    let _ = serde_json::from_slice::<keys::ReasonBody>(data);
    let _ = serde_json::from_slice::<scopes::ImportBody>(data);
    let _ = serde_json::from_slice::<accounts::UserBody>(data);
    let raw = text(data);
    let _ = gatehouse_domain::email::Email::parse(&raw);
    let short: String = raw.chars().take(300).collect();
    let _ = gatehouse_domain::password::check_new_password(&short, &[&short]);
    if let Ok(at) = serde_json::from_slice::<chrono::DateTime<chrono::Utc>>(data) {
        let _ = gatehouse_domain::check_time("expires_at", at);
    }
    let now = chrono::Utc::now();
    let scopes = Scopes::parse(&["keys:read"]).expect("a valid scope");
    let created = gatehouse_domain::apikey::ApiKey::create(
        NewApiKey {
            id: KeyId::from_uuid(uuid::Uuid::nil()),
            account_id: AccountId::from_uuid(uuid::Uuid::nil()),
            name: &raw,
            scopes,
            secret_hash: SecretHash::of("s"),
            hint: "hint".into(),
            expires_at: None,
        },
        now,
    );
    if let Ok(gatehouse_domain::apikey::ApiKeyEvent::Created(c)) = created {
        assert!(!c.name.trim().is_empty() && c.name.chars().count() <= 100);
    }
}
