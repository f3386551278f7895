//! The target ratios beyond raw throughput: never-seen tokens against the
//! in-process signature check, Verify latency under a login flood, refresh
//! against raw Postgres transactions, and append throughput by writers.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use gatehouse_api::v1 as pb;
use gatehouse_api::v1::auth_service_client::AuthServiceClient;
use gatehouse_api::v1::verifier_service_client::VerifierServiceClient;
use gatehouse_crypto::jwt::{AccessClaims, TokenVerifier, sign};
use gatehouse_crypto::keys::Signer;
use gatehouse_crypto::master::MasterKey;
use gatehouse_domain::signing::SigningAlg;
use gatehouse_eventstore::{EventStore, ExpectedVersion, NewEvent, StreamId};
use tonic::transport::Channel;

use crate::{MASTER_KEY, percentile};

/// The deployment's signing key and its public half, read from the log.
pub struct Keys {
    signer: Signer,
    kid: String,
    public_key: String,
}

pub async fn signing_key(url: &str) -> anyhow::Result<Keys> {
    let store = EventStore::connect(url, Default::default()).await?;
    let created = store
        .read_all(1, 10_000)
        .await?
        .into_iter()
        .find(|e| e.event_type == "SigningKeyCreated.v1")
        .context("no signing key in the log")?;
    store.close().await;
    let kid = created.payload["kid"].as_str().context("kid")?.to_string();
    let master = MasterKey::from_base64(MASTER_KEY)?;
    let signer = Signer::unseal(
        &master,
        &kid,
        SigningAlg::EdDSA,
        created.payload["sealed_private_key"]
            .as_str()
            .context("sealed key")?,
    )?;
    Ok(Keys {
        signer,
        kid,
        public_key: created.payload["public_key"]
            .as_str()
            .context("public key")?
            .to_string(),
    })
}

/// `count` distinct, valid user access tokens (each its own session), as
/// the issuer would sign them.
pub fn fresh_tokens(keys: &Keys, account_id: &str, count: usize) -> anyhow::Result<Vec<String>> {
    let now = chrono::Utc::now().timestamp();
    (0..count)
        .map(|_| {
            let claims = AccessClaims {
                iss: "http://gatehouse.test".into(),
                sub: uuid::Uuid::now_v7().to_string(),
                aud: "gatehouse".into(),
                exp: now + 900,
                iat: now,
                nbf: now,
                jti: uuid::Uuid::now_v7().to_string(),
                acc: account_id.into(),
                scope: "keys:read".into(),
                sid: Some(uuid::Uuid::now_v7().to_string()),
                ksv: None,
            };
            Ok(sign(&claims, &keys.signer)?)
        })
        .collect()
}

/// Tokens verified per second in this process on `cores` threads (the
/// same check the verifier makes on a first sight): the whole pool, each once.
pub async fn verify_rate(
    keys: &Keys,
    tokens: Arc<Vec<String>>,
    cores: usize,
) -> anyhow::Result<f64> {
    let mut verifier = TokenVerifier::new("http://gatehouse.test", "gatehouse", 30);
    verifier.insert_key(&keys.kid, SigningAlg::EdDSA, &keys.public_key)?;
    let verifier = Arc::new(verifier);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let threads: Vec<_> = (0..cores)
        .map(|_| {
            let (verifier, tokens, next) = (verifier.clone(), tokens.clone(), next.clone());
            tokio::task::spawn_blocking(move || {
                let mut verified = 0u64;
                while let Some(token) = tokens.get(next.fetch_add(1, Ordering::Relaxed)) {
                    if verifier
                        .verify(token, None, chrono::Utc::now().timestamp())
                        .is_ok()
                    {
                        verified += 1;
                    }
                }
                verified
            })
        })
        .collect();
    let mut total = 0;
    for thread in threads {
        total += thread.await?;
    }
    anyhow::ensure!(total == tokens.len() as u64, "a valid token was refused");
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

/// `Verify` calls per second over gRPC, `concurrency` in flight, each with a
/// token the verifier has never seen: the whole pool, each once.
pub async fn never_seen_rate(
    channel: Channel,
    tokens: Arc<Vec<String>>,
    concurrency: usize,
) -> anyhow::Result<f64> {
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let mut client = VerifierServiceClient::new(channel.clone());
            let (tokens, next, done) = (tokens.clone(), next.clone(), done.clone());
            tokio::spawn(async move {
                while let Some(token) = tokens.get(next.fetch_add(1, Ordering::Relaxed)) {
                    client
                        .verify(pb::VerifyRequest {
                            credential: token.clone(),
                            required_scopes: vec!["keys:read".into()],
                            audience: String::new(),
                        })
                        .await?;
                    done.fetch_add(1, Ordering::Relaxed);
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for worker in workers {
        worker.await??;
    }
    Ok(done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64())
}

/// Latencies of `Verify` (API key) over `duration`, 4 calls in flight.
pub async fn verify_latencies(
    channel: Channel,
    secret: &str,
    duration: Duration,
) -> anyhow::Result<Vec<Duration>> {
    let deadline = Instant::now() + duration;
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let mut client = VerifierServiceClient::new(channel.clone());
            let secret = secret.to_string();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while Instant::now() < deadline {
                    let started = Instant::now();
                    client
                        .verify(pb::VerifyRequest {
                            credential: secret.clone(),
                            required_scopes: vec!["keys:read".into()],
                            audience: String::new(),
                        })
                        .await?;
                    latencies.push(started.elapsed());
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                anyhow::Ok(latencies)
            })
        })
        .collect();
    let mut all = Vec::new();
    for worker in workers {
        all.extend(worker.await??);
    }
    all.sort();
    Ok(all)
}

/// Verify p99 on `channel` idle, then while `flooders` tasks log in (right
/// password: argon2 every time) on `issuer` — the same combined process,
/// or an issuer on another core. Returns (idle p99, flood p99, logins/s
/// during the flood).
pub async fn p99_under_login_flood(
    channel: Channel,
    issuer: Channel,
    secret: &str,
    username: &str,
    password: &str,
    flooders: usize,
    duration: Duration,
) -> anyhow::Result<(Duration, Duration, f64)> {
    let idle = verify_latencies(channel.clone(), secret, duration).await?;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let logins = Arc::new(AtomicU64::new(0));
    let flood: Vec<_> = (0..flooders)
        .map(|_| {
            let mut auth = AuthServiceClient::new(issuer.clone());
            let (stop, logins) = (stop.clone(), logins.clone());
            let (username, password) = (username.to_string(), password.to_string());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    auth.login(pb::LoginRequest {
                        username: username.clone(),
                        password: password.clone(),
                    })
                    .await?;
                    logins.fetch_add(1, Ordering::Relaxed);
                }
                anyhow::Ok(())
            })
        })
        .collect();
    // Let the flood fill the argon2 pool before measuring.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    let before = logins.load(Ordering::Relaxed);
    let flooded = verify_latencies(channel, secret, duration).await?;
    let rate = (logins.load(Ordering::Relaxed) - before) as f64 / started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for task in flood {
        task.await??;
    }
    anyhow::ensure!(rate > 0.0, "no login completed during the flood");
    Ok((percentile(&idle, 0.99), percentile(&flooded, 0.99), rate))
}

/// Refreshes per second over gRPC: `concurrency` sessions, each rotating its
/// own refresh token in a loop.
pub async fn refresh_rate(
    channel: Channel,
    username: &str,
    password: &str,
    concurrency: usize,
) -> anyhow::Result<f64> {
    let mut sessions = Vec::new();
    for _ in 0..concurrency {
        let mut auth = AuthServiceClient::new(channel.clone());
        let login = auth
            .login(pb::LoginRequest {
                username: username.into(),
                password: password.into(),
            })
            .await?
            .into_inner();
        sessions.push((auth, login.refresh_token));
    }
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(1);
    let started = Instant::now();
    let workers: Vec<_> = sessions
        .into_iter()
        .map(|(mut auth, mut token)| {
            let done = done.clone();
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    token = auth
                        .refresh(pb::RefreshRequest {
                            refresh_token: token.clone(),
                        })
                        .await?
                        .into_inner()
                        .refresh_token;
                    done.fetch_add(1, Ordering::Relaxed);
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for worker in workers {
        worker.await??;
    }
    Ok(done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64())
}

/// What a flood of one wrong password did: attempts answered, how many a
/// running delay refused, and the events the log grew by meanwhile.
pub struct Growth {
    pub attempts: u64,
    pub refused: u64,
    pub events: u64,
    pub failures: u64,
}

/// `clients` tasks send `username` with a wrong password as fast as they
/// are answered, for `duration`; the log is read before and after.
pub async fn log_growth_under_wrong_password(
    channel: Channel,
    url: &str,
    username: &str,
    clients: usize,
    duration: Duration,
) -> anyhow::Result<Growth> {
    let store = EventStore::connect(url, Default::default()).await?;
    let before = store.head().await?;
    let (attempts, refused) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let deadline = Instant::now() + duration;
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let mut auth = AuthServiceClient::new(channel.clone());
            let (attempts, refused) = (attempts.clone(), refused.clone());
            let username = username.to_string();
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    let answer = auth
                        .login(pb::LoginRequest {
                            username: username.clone(),
                            password: "not the password at all".into(),
                        })
                        .await;
                    match answer {
                        // Cut off by the request deadline while argon2 was
                        // queued (debug builds): answered all the same.
                        Err(status)
                            if matches!(
                                status.code(),
                                tonic::Code::Unauthenticated | tonic::Code::DeadlineExceeded
                            ) => {}
                        Err(status) if status.code() == tonic::Code::ResourceExhausted => {
                            refused.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(status) => anyhow::bail!("a wrong password got {status:?}"),
                        Ok(_) => anyhow::bail!("a wrong password logged in"),
                    }
                    attempts.fetch_add(1, Ordering::Relaxed);
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    let (mut events, mut failures, mut from) = (0, 0, before + 1);
    loop {
        let page = store
            .read_all(from, gatehouse_eventstore::MAX_READ_LIMIT)
            .await?;
        let Some(last) = page.last() else { break };
        from = last.position + 1;
        events += page.len() as u64;
        failures += page
            .iter()
            .filter(|e| e.event_type == "LoginFailed.v1")
            .count() as u64;
    }
    store.close().await;
    Ok(Growth {
        attempts: attempts.load(Ordering::Relaxed),
        refused: refused.load(Ordering::Relaxed),
        events,
        failures,
    })
}

/// Single-row insert transactions per second on the same Postgres,
/// `concurrency` connections, each `BEGIN; INSERT; COMMIT` in a loop.
pub async fn raw_insert_rate(url: &str, concurrency: usize) -> anyhow::Result<f64> {
    use sqlx::postgres::PgPoolOptions;
    let pool = PgPoolOptions::new()
        .max_connections(concurrency as u32)
        .connect(url)
        .await?;
    sqlx::query("CREATE TABLE IF NOT EXISTS bench_inserts (id BIGSERIAL PRIMARY KEY, body TEXT NOT NULL, at TIMESTAMPTZ NOT NULL DEFAULT now())")
        .execute(&pool)
        .await?;
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(1);
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (pool, done) = (pool.clone(), done.clone());
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    let mut tx = pool.begin().await?;
                    sqlx::query("INSERT INTO bench_inserts (body) VALUES ($1)")
                        .bind("{\"session_id\":\"0190\",\"refresh_hash\":\"ab\"}")
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    done.fetch_add(1, Ordering::Relaxed);
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for worker in workers {
        worker.await??;
    }
    let rate = done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    pool.close().await;
    Ok(rate)
}

/// Events appended per second by `writers` concurrent writers, one event per
/// append, each writer on its own stream, for `duration`.
pub async fn append_rate(
    store: &EventStore,
    writers: usize,
    duration: Duration,
) -> anyhow::Result<f64> {
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + duration;
    let started = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|_| {
            let (store, done) = (store.clone(), done.clone());
            tokio::spawn(async move {
                let stream = StreamId::parse(format!("bench-{}", uuid::Uuid::now_v7()))?;
                let mut version = 0;
                while Instant::now() < deadline {
                    store
                        .append(
                            &stream,
                            ExpectedVersion::Exact(version),
                            vec![NewEvent::new(
                                "BenchAppended.v1",
                                serde_json::json!({ "n": version }),
                            )],
                        )
                        .await?;
                    version += 1;
                    done.fetch_add(1, Ordering::Relaxed);
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    Ok(done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64())
}
