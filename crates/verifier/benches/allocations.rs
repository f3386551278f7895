//! Heap allocations and time per in-memory `Verify` decision, counted with a
//! counting global allocator: what every call carries before gRPC adds its
//! own (an API key, a repeated EdDSA JWT from the cache, a never-seen one).
//!
//! `cargo bench -p gatehouse-verifier --bench allocations`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests: a failure is a panic

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use chrono::{Duration, Utc};
use gatehouse_crypto::jwt::{AccessClaims, sign};
use gatehouse_crypto::keys::{Signer, generate};
use gatehouse_crypto::master::MasterKey;
use gatehouse_domain::apikey::{ApiKey, NewApiKey};
use gatehouse_domain::ids::{AccountId, KeyId};
use gatehouse_domain::scope::Scopes;
use gatehouse_domain::secret::KeyFormat;
use gatehouse_domain::secret::SecretHash;
use gatehouse_domain::signing::{SigningAlg, SigningKeyCreated, SigningKeyEvent};
use gatehouse_eventstore::{RecordedEvent, StreamId};
use gatehouse_verifier::index::Index;
use gatehouse_verifier::verify::{Outcome, Verifier};

/// Counts every allocation (and reallocation) and the bytes asked for.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(new_size as u64, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const ISSUER: &str = "https://gatehouse.test";
const AUDIENCE: &str = "gatehouse";

fn recorded(
    position: u64,
    stream: &str,
    event_type: &str,
    payload: serde_json::Value,
) -> RecordedEvent {
    RecordedEvent {
        position,
        stream_id: StreamId::parse(stream).expect("stream id"),
        stream_version: 1,
        event_type: event_type.into(),
        payload,
        metadata: Default::default(),
        occurred_at: Utc::now(),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let now = Utc::now();
    let format = KeyFormat::new("wc", "live")?;
    let mut index = Index::new(ISSUER, AUDIENCE, 5);

    // A signing key, as the issuer records it.
    let master = MasterKey::from_base64(&MasterKey::generate_base64()?)?;
    let key = generate(&master, SigningAlg::EdDSA)?;
    let signer = Signer::unseal(
        &master,
        &key.kid,
        SigningAlg::EdDSA,
        &key.sealed_private_key,
    )?;
    let created = SigningKeyEvent::Created(SigningKeyCreated {
        kid: key.kid.clone(),
        alg: SigningAlg::EdDSA,
        public_key: key.public_key.clone(),
        sealed_private_key: key.sealed_private_key.clone(),
        created_at: now - Duration::minutes(1),
        activates_at: now - Duration::minutes(1),
    });
    index.apply(&recorded(
        1,
        &format!("signingkey-{}", key.kid),
        created.event_type(),
        created.payload(),
    ));

    // An API key with two scopes.
    let account = AccountId::from_uuid(uuid::Uuid::now_v7());
    let key_id = KeyId::from_uuid(uuid::Uuid::now_v7());
    let secret = format.api_key_secret(&[7; 24]);
    let created = ApiKey::create(
        NewApiKey {
            id: key_id,
            account_id: account,
            name: "bench",
            scopes: Scopes::parse(&["keys:read", "keys:write"])?,
            secret_hash: SecretHash::of(&secret),
            hint: "hint".into(),
            expires_at: None,
        },
        now,
    )?;
    index.apply(&recorded(
        2,
        &key_id.stream(),
        created.event_type(),
        created.payload(),
    ));

    let claims = |n: u64| AccessClaims {
        iss: ISSUER.into(),
        sub: uuid::Uuid::now_v7().to_string(),
        aud: AUDIENCE.into(),
        exp: now.timestamp() + 900,
        iat: now.timestamp(),
        nbf: now.timestamp(),
        jti: format!("{n}-{}", uuid::Uuid::now_v7()),
        acc: account.to_string(),
        scope: "keys:read keys:write".into(),
        sid: Some(uuid::Uuid::now_v7().to_string()),
        ksv: None,
    };
    let repeated = sign(&claims(0), &signer)?;
    const CALLS: u64 = 20_000;
    let fresh: Vec<String> = (1..=CALLS)
        .map(|n| sign(&claims(n), &signer))
        .collect::<Result<_, _>>()?;

    let verifier = Verifier::new(Arc::new(RwLock::new(index)), format);
    let required = vec!["keys:read".to_string()];
    let verify = |credential: &str| match verifier.verify(
        credential,
        &required,
        Some(AUDIENCE),
        None,
        now,
    ) {
        Outcome::Decided(Ok(_)) => {}
        other => panic!("the bench's credential was refused: {other:?}"),
    };
    // Warm: the repeated token enters the cache, lazy statics are built, and
    // the cache grows past what the never-seen row adds, so no resize of it
    // falls inside the count.
    verify(&secret);
    verify(&repeated);
    for n in 0..30_000u64 {
        verify(&sign(&claims(CALLS + 1 + n), &signer)?);
    }

    println!(
        "| credential | allocations per Verify | bytes allocated per Verify | time per Verify |"
    );
    println!("|---|---|---|---|");
    let measure = |name: &str, call: &mut dyn FnMut(u64)| {
        let (allocations, bytes) = (
            ALLOCATIONS.load(Ordering::Relaxed),
            BYTES.load(Ordering::Relaxed),
        );
        let started = Instant::now();
        for n in 0..CALLS {
            call(n);
        }
        let elapsed = started.elapsed();
        let allocations = ALLOCATIONS.load(Ordering::Relaxed) - allocations;
        let bytes = BYTES.load(Ordering::Relaxed) - bytes;
        println!(
            "| {name} | {:.1} | {:.0} | {:.2} µs |",
            allocations as f64 / CALLS as f64,
            bytes as f64 / CALLS as f64,
            elapsed.as_secs_f64() * 1e6 / CALLS as f64
        );
    };
    measure("API key", &mut |_| verify(&secret));
    measure("repeated EdDSA JWT (cached)", &mut |_| verify(&repeated));
    measure("never-seen EdDSA JWT", &mut |n| verify(&fresh[n as usize]));
    println!();
    println!(
        "API key: {} bytes; user access token: {} bytes (header {} bytes, claims {} bytes, signature {} bytes, base64url)",
        secret.len(),
        repeated.len(),
        repeated.split('.').next().map_or(0, str::len),
        repeated.split('.').nth(1).map_or(0, str::len),
        repeated.split('.').nth(2).map_or(0, str::len),
    );
    Ok(())
}
