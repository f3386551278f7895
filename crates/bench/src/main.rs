//! `gatehouse-bench`: the performance targets of BENCHMARKS.md, measured as ratios in one run.
//!
//! It starts the real `gatehouse` binary (an issuer and two verifiers on one
//! Postgres) and measures, with the same client and server:
//! - the throughput of an empty unary RPC (`grpc.health.v1.Health/Check`), the
//!   baseline;
//! - `Verify` of an API key, and of a repeated EdDSA access token;
//! - over HTTP/1.1 JSON: `POST /api/v1/verify` with an API key against an
//!   empty JSON handler of the same server (`GET /healthz`), and the SDK-token
//!   exchange (`POST /v1/auth/sdk-token`) against the in-process signing rate
//!   of this machine's cores;
//! - how long a revocation made through the issuer takes to be seen by both
//!   verifiers (p50, p99);
//! - the other target ratios ([`figures`]): never-seen EdDSA JWTs against the
//!   in-process verification rate, refresh against raw single-insert
//!   transactions, Verify p99 during a login flood against idle, and event
//!   appends by 1, 4 and 16 writers on both backends.
//!
//! - cold start ([`coldstart`]): a verifier started on a log of many keys
//!   with a realistic history, written straight into SQLite — time to
//!   `SERVING` and peak resident memory, replaying the log and from a
//!   snapshot; `--plot` draws them ([`plot`]).
//!
//! Run: `cargo build --release -p gatehouse && cargo run --release -p gatehouse-bench`
//! (Postgres from `DATABASE_URL` or a throwaway cluster, as in the tests).
//! `--quick` is a smoke run of everything in well under a minute (CI runs it,
//! with no thresholds); `--cold-start 10000,100000,1000000` measures only
//! cold starts, at those sizes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a measurement program, not the service: it stops at the first failure

mod coldstart;
mod figures;
mod pinned;
mod plot;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use gatehouse_api::v1 as pb;
use gatehouse_api::v1::auth_service_client::AuthServiceClient;
use gatehouse_api::v1::key_service_client::KeyServiceClient;
use gatehouse_api::v1::verifier_service_client::VerifierServiceClient;
use gatehouse_testkit::Gatehouse;
use tonic::Request;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

const MASTER_KEY: &str = "q9gI8yYHkC1bJ8m0m3xqk2Yw8p3X7Zl9cH0vV4r2sT8=";

#[derive(Parser)]
struct Args {
    /// The gatehouse binary to measure.
    #[arg(long, default_value = "target/release/gatehouse")]
    gatehouse: String,
    /// Rounds of throughput measurement (each: 1 s of every kind of call).
    #[arg(long, default_value_t = 9)]
    seconds: u64,
    /// Calls in flight during throughput measurements.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Rounds of the HTTP measurements (each: 1 s of every kind of call).
    #[arg(long, default_value_t = 5)]
    http_seconds: u64,
    /// Revocations to time.
    #[arg(long, default_value_t = 200)]
    revocations: usize,
    /// A smoke run of every measurement (one round each, 20 revocations, a
    /// cold start on 2,000 keys): it checks the program works, not the figures.
    #[arg(long)]
    quick: bool,
    /// Only measure cold starts, on logs of these many keys (comma-separated).
    #[arg(long, value_delimiter = ',')]
    cold_start: Vec<u64>,
    /// Keep each generated cold-start log here and reuse it in later runs
    /// (a million keys take minutes to write); default: a temporary directory.
    #[arg(long)]
    log_cache: Option<std::path::PathBuf>,
    /// With --cold-start: also draw time and memory against keys as an SVG here.
    #[arg(long)]
    plot: Option<std::path::PathBuf>,
    /// With --cold-start: generate the log in Postgres (`DATABASE_URL` or a
    /// throwaway cluster) instead of SQLite; not cached.
    #[arg(long)]
    cold_start_postgres: bool,
}

fn authed<T>(message: T, bearer: &str) -> anyhow::Result<Request<T>> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {bearer}").parse()?);
    Ok(request)
}

/// Calls per second of `call`, with `concurrency` calls in flight on one channel.
async fn throughput<F, Fut>(seconds: u64, concurrency: usize, call: F) -> f64
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let call = Arc::new(call);
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    // Warm up.
    for _ in 0..50 {
        call().await;
    }
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (call, done, failed) = (call.clone(), done.clone(), failed.clone());
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    if call().await {
                        done.fetch_add(1, Ordering::Relaxed);
                    } else {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        let _ = worker.await;
    }
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "calls failed during the measurement"
    );
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

/// Access tokens signed per second in this process on `cores` threads:
/// the ceiling of any token-issuing endpoint on those cores.
async fn signing_rate(seconds: u64, cores: usize) -> anyhow::Result<f64> {
    use gatehouse_crypto::jwt::{AccessClaims, sign};
    use gatehouse_crypto::keys::{Signer, generate};
    use gatehouse_crypto::master::MasterKey;
    let master = MasterKey::from_base64(MASTER_KEY)?;
    let key = generate(&master, gatehouse_domain::signing::SigningAlg::EdDSA)?;
    let signer = Signer::unseal(
        &master,
        &key.kid,
        gatehouse_domain::signing::SigningAlg::EdDSA,
        &key.sealed_private_key,
    )?;
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let threads: Vec<_> = (0..cores)
        .map(|_| {
            let signer = signer.clone();
            tokio::task::spawn_blocking(move || {
                let mut signed = 0u64;
                while Instant::now() < deadline {
                    let now = chrono_now();
                    // The claims of an SDK token (new ids each time, as the
                    // exchange makes them).
                    let claims = AccessClaims {
                        iss: "http://gatehouse.test".into(),
                        sub: format!("{:032x}", u128::from(signed) << 7),
                        aud: "gatehouse".into(),
                        exp: now + 3600,
                        iat: now,
                        nbf: now,
                        jti: format!("{:032x}", u128::from(signed)),
                        acc: "01a2203e-52bd-7b8e-a3b5-b0a1b5f0a5c1".into(),
                        scope: "keys:read".into(),
                        sid: None,
                        ksv: Some(0),
                    };
                    if sign(&claims, &signer).is_ok() {
                        signed += 1;
                    }
                }
                signed
            })
        })
        .collect();
    let mut total = 0;
    for thread in threads {
        total += thread.await?;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    if args.quick {
        args.seconds = 1;
        args.http_seconds = 1;
        args.revocations = 20;
    }
    if !std::path::Path::new(&args.gatehouse).is_file() {
        bail!(
            "{} not found: run `cargo build --release -p gatehouse` first",
            args.gatehouse
        );
    }
    // The servers run in another working directory.
    args.gatehouse = std::fs::canonicalize(&args.gatehouse)?
        .to_string_lossy()
        .into_owned();
    if !args.cold_start.is_empty() {
        return cold_starts(
            &args.gatehouse,
            &args.cold_start,
            args.log_cache.as_deref(),
            args.plot.as_deref(),
            args.cold_start_postgres,
        )
        .await;
    }
    let url = gatehouse_testkit::fresh_database().await;
    let output = tokio::process::Command::new(&args.gatehouse)
        .args([
            "bootstrap",
            "--username",
            "bench@example.com",
            "--database-url",
            &url,
        ])
        .env("GATEHOUSE_BOOTSTRAP_PASSWORD", "a bench password")
        .env("GATEHOUSE_MASTER_KEY", MASTER_KEY)
        .output()
        .await?;
    if !output.status.success() {
        bail!(
            "bootstrap failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let boot: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    let account_id = boot["account_id"]
        .as_str()
        .context("account_id")?
        .to_string();
    let admin = boot["secret"].as_str().context("secret")?.to_string();
    // The first three: every process; the rest: all but the log-growth one.
    let envs = [
        ("GATEHOUSE_MASTER_KEY", MASTER_KEY),
        // Processes on different ports are one deployment: one `iss`.
        ("GATEHOUSE_ISSUER_URL", "http://gatehouse.test"),
        ("GATEHOUSE_LOG", "warn,gatehouse_server=info"),
        // Concurrent logins of one user count as attempts until they
        // succeed; the login flood and the refresh sessions are one user's.
        ("GATEHOUSE_LOGIN_FREE_ATTEMPTS", "1000000"),
        ("GATEHOUSE_LOGIN_FREE_ATTEMPTS_PER_USERNAME", "1000000"),
        ("GATEHOUSE_LOGIN_FREE_ATTEMPTS_PER_ADDRESS", "1000000"),
    ];
    let issuer = Gatehouse::spawn(
        &args.gatehouse,
        &["serve", "issuer", "--database-url", &url],
        &envs,
    )
    .await;
    let verifiers = [
        Gatehouse::spawn(
            &args.gatehouse,
            &["serve", "verifier", "--database-url", &url],
            &envs,
        )
        .await,
        Gatehouse::spawn(
            &args.gatehouse,
            &["serve", "verifier", "--database-url", &url],
            &envs,
        )
        .await,
    ];
    let mut keys = KeyServiceClient::new(issuer.channel().await);
    let create = |keys: &mut KeyServiceClient<Channel>| {
        let request = authed(
            pb::CreateApiKeyRequest {
                account_id: account_id.clone(),
                name: "bench".into(),
                scopes: vec!["keys:read".into()],
                expires_at: None,
            },
            &admin,
        );
        let mut keys = keys.clone();
        async move { anyhow::Ok(keys.create_api_key(request?).await?.into_inner()) }
    };
    let key = create(&mut keys).await?;
    let secret = key.secret.clone();
    let token = AuthServiceClient::new(issuer.channel().await)
        .login(pb::LoginRequest {
            username: "bench@example.com".into(),
            password: "a bench password".into(),
        })
        .await?
        .into_inner()
        .access_token;

    // Throughput against the first verifier, one channel, same client code.
    // The three measurements alternate in one-second rounds, so drift of a
    // shared 2-core machine hits them alike; ratios are per round, medians
    // reported.
    let channel = verifiers[0].channel().await;
    let health = HealthClient::new(channel.clone());
    let empty = move || {
        let mut health = health.clone();
        async move {
            health
                .check(HealthCheckRequest {
                    service: String::new(),
                })
                .await
                .is_ok()
        }
    };
    let verifier = VerifierServiceClient::new(channel.clone());
    let verify = |credential: String| {
        let verifier = verifier.clone();
        move || {
            let mut verifier = verifier.clone();
            let credential = credential.clone();
            async move {
                verifier
                    .verify(pb::VerifyRequest {
                        credential,
                        required_scopes: vec!["keys:read".into()],
                        audience: String::new(),
                    })
                    .await
                    .is_ok()
            }
        }
    };
    let (empty, by_key, by_jwt) = (
        Arc::new(empty),
        Arc::new(verify(secret.clone())),
        Arc::new(verify(token.clone())),
    );
    eprintln!("measuring: Verify over gRPC against the empty RPC");
    let mut rounds = Vec::new();
    for _ in 0..args.seconds {
        let e = empty.clone();
        let baseline = throughput(1, args.concurrency, move || e()).await;
        let k = by_key.clone();
        let api_key = throughput(1, args.concurrency, move || k()).await;
        let j = by_jwt.clone();
        let jwt = throughput(1, args.concurrency, move || j()).await;
        rounds.push((baseline, api_key, jwt));
    }
    let median = |mut values: Vec<f64>| {
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    let baseline = median(rounds.iter().map(|r| r.0).collect());
    let api_key = median(rounds.iter().map(|r| r.1).collect());
    let jwt = median(rounds.iter().map(|r| r.2).collect());
    let api_key_ratio = median(rounds.iter().map(|r| r.1 / r.0).collect());
    let jwt_ratio = median(rounds.iter().map(|r| r.2 / r.0).collect());

    // Over HTTP/1.1 JSON: Verify (API key) on the first verifier against the
    // cheapest JSON handler of the same server, and the SDK exchange on the
    // issuer against in-process signing. Alternating rounds, medians.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()?;
    let verifier_base = format!("http://{}", verifiers[0].addr);
    let issuer_base = format!("http://{}", issuer.addr);
    let http_empty = {
        let (http, url) = (http.clone(), format!("{verifier_base}/healthz"));
        Arc::new(move || {
            let request = http.get(&url);
            async move { request.send().await.is_ok_and(|r| r.status().is_success()) }
        })
    };
    let http_verify = {
        let (http, url) = (http.clone(), format!("{verifier_base}/api/v1/verify"));
        let body = serde_json::json!({ "required_scopes": ["keys:read"] });
        let secret = secret.clone();
        Arc::new(move || {
            let request = http.post(&url).bearer_auth(&secret).json(&body);
            async move { request.send().await.is_ok_and(|r| r.status().is_success()) }
        })
    };
    let http_exchange = {
        let (http, url) = (http.clone(), format!("{issuer_base}/v1/auth/sdk-token"));
        let body = serde_json::json!({
            "account_id": boot["account_id"],
            "key_id": boot["key_id"],
            "key_secret": boot["secret"],
        });
        Arc::new(move || {
            let request = http.post(&url).json(&body);
            async move { request.send().await.is_ok_and(|r| r.status().is_success()) }
        })
    };
    eprintln!("measuring: Verify and the SDK exchange over HTTP");
    let mut http_rounds = Vec::new();
    for _ in 0..args.http_seconds {
        let e = http_empty.clone();
        let empty = throughput(1, args.concurrency, move || e()).await;
        let v = http_verify.clone();
        let verify = throughput(1, args.concurrency, move || v()).await;
        let x = http_exchange.clone();
        let exchange = throughput(1, args.concurrency, move || x()).await;
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let signing = signing_rate(1, cores).await?;
        http_rounds.push((empty, verify, exchange, signing));
    }
    let http_empty = median(http_rounds.iter().map(|r| r.0).collect());
    let http_verify = median(http_rounds.iter().map(|r| r.1).collect());
    let http_exchange = median(http_rounds.iter().map(|r| r.2).collect());
    let signing = median(http_rounds.iter().map(|r| r.3).collect());
    let http_verify_ratio = median(http_rounds.iter().map(|r| r.1 / r.0).collect());
    let exchange_ratio = median(http_rounds.iter().map(|r| r.2 / r.3).collect());

    // Key creation over HTTP on the issuer (argon2-free: a secret, its
    // SHA-256, one append and the wait for this process's readers).
    eprintln!("measuring: key creation over HTTP");
    let http_create = {
        let url = format!("{issuer_base}/api/v1/accounts/{account_id}/keys");
        let (http, admin) = (http.clone(), admin.clone());
        let body = serde_json::json!({ "name": "bench", "scopes": ["keys:read"] });
        Arc::new(move || {
            let request = http.post(&url).bearer_auth(&admin).json(&body);
            async move {
                request
                    .send()
                    .await
                    .is_ok_and(|r| r.status().as_u16() == 201)
            }
        })
    };
    let mut create_rounds = Vec::new();
    for _ in 0..args.http_seconds {
        let c = http_create.clone();
        create_rounds.push(throughput(1, args.concurrency, move || c()).await);
    }
    let key_creation = median(create_rounds.clone());

    // Revocation propagation to both verifiers.
    eprintln!("measuring: revocation seen by both verifiers");
    let mut clients = Vec::new();
    for verifier in &verifiers {
        clients.push(VerifierServiceClient::new(verifier.channel().await));
    }
    let mut latencies = Vec::with_capacity(args.revocations);
    for _ in 0..args.revocations {
        let key = create(&mut keys).await?;
        let key_id = key.key.context("key")?.key_id;
        for client in clients.iter_mut() {
            client
                .verify(pb::VerifyRequest {
                    credential: key.secret.clone(),
                    ..Default::default()
                })
                .await?;
        }
        let started = Instant::now();
        keys.revoke_api_key(authed(
            pb::RevokeApiKeyRequest {
                account_id: account_id.clone(),
                key_id,
                reason: "bench".into(),
            },
            &admin,
        )?)
        .await?;
        let mut seen = Duration::ZERO;
        for client in clients.iter_mut() {
            loop {
                let accepted = client
                    .verify(pb::VerifyRequest {
                        credential: key.secret.clone(),
                        ..Default::default()
                    })
                    .await
                    .is_ok();
                if !accepted {
                    break;
                }
                if started.elapsed() > Duration::from_secs(10) {
                    bail!("a verifier still accepts a key revoked 10 s ago");
                }
                tokio::time::sleep(Duration::from_micros(500)).await;
            }
            seen = seen.max(started.elapsed());
        }
        latencies.push(seen);
    }
    latencies.sort();

    // Never-seen EdDSA JWTs over gRPC against the in-process signature
    // check on every core: each round a fresh pool of distinct tokens for
    // each side, so neither ever sees a token twice.
    eprintln!("measuring: never-seen EdDSA JWTs");
    let signing_key = figures::signing_key(&url).await?;
    let pool = if args.quick { 2_000 } else { 20_000 };
    let mut fresh_rounds = Vec::new();
    for _ in 0..args.seconds.min(5) {
        let tokens = Arc::new(figures::fresh_tokens(&signing_key, &account_id, pool)?);
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let in_process = figures::verify_rate(&signing_key, tokens, cores).await?;
        let tokens = Arc::new(figures::fresh_tokens(&signing_key, &account_id, pool)?);
        let over_grpc = figures::never_seen_rate(channel.clone(), tokens, args.concurrency).await?;
        fresh_rounds.push((in_process, over_grpc));
    }
    let in_process_verify = median(fresh_rounds.iter().map(|r| r.0).collect());
    let never_seen = median(fresh_rounds.iter().map(|r| r.1).collect());
    let never_seen_ratio = median(fresh_rounds.iter().map(|r| r.1 / r.0).collect());

    // Refresh (rotation + append) on the issuer against raw single-insert
    // transactions on the same Postgres, same concurrency, alternating.
    eprintln!("measuring: refresh against raw inserts");
    let refresh_concurrency = 16;
    let mut refresh_rounds = Vec::new();
    for _ in 0..args.seconds.min(5) {
        let refresh = figures::refresh_rate(
            issuer.channel().await,
            "bench@example.com",
            "a bench password",
            refresh_concurrency,
        )
        .await?;
        let raw = figures::raw_insert_rate(&url, refresh_concurrency).await?;
        refresh_rounds.push((refresh, raw));
    }
    let refresh = median(refresh_rounds.iter().map(|r| r.0).collect());
    let raw_insert = median(refresh_rounds.iter().map(|r| r.1).collect());
    let refresh_ratio = median(refresh_rounds.iter().map(|r| r.0 / r.1).collect());

    // Verify p99 on one combined process (issuer and verifier), idle and
    // while 16 clients log in as fast as argon2 lets them.
    eprintln!("measuring: Verify p99 during a login flood");
    let combined =
        Gatehouse::spawn(&args.gatehouse, &["serve", "--database-url", &url], &envs).await;
    let flood_window = Duration::from_secs(if args.quick { 1 } else { 5 });
    let flooded = figures::p99_under_login_flood(
        combined.channel().await,
        combined.channel().await,
        &secret,
        "bench@example.com",
        "a bench password",
        16,
        flood_window,
    )
    .await;
    let (idle_p99, flood_p99, login_rate) = flooded.inspect_err(|_| {
        eprintln!("the combined server's log:\n{}", combined.logs());
    })?;
    drop(combined);

    // Event-log growth under a flood of one wrong password, on an issuer
    // with the default throttle (the bench's others have it out of the way).
    eprintln!("measuring: event-log growth under a flood of one wrong password");
    let growth_window = Duration::from_secs(if args.quick { 1 } else { 5 });
    let guarded = Gatehouse::spawn(
        &args.gatehouse,
        &["serve", "issuer", "--database-url", &url],
        &envs[..3],
    )
    .await;
    let growth = figures::log_growth_under_wrong_password(
        guarded.channel().await,
        &url,
        "bench@example.com",
        16,
        growth_window,
    )
    .await?;
    drop(guarded);

    // Event appends by 1, 4 and 16 writers, on both backends.
    eprintln!("measuring: event appends");
    let append_window = Duration::from_millis(if args.quick { 300 } else { 2_000 });
    let mut appends = Vec::new();
    let sqlite_dir = tempfile::tempdir()?;
    for (backend, store_url) in [
        ("Postgres", gatehouse_testkit::fresh_database().await),
        (
            "SQLite",
            format!("sqlite:{}", sqlite_dir.path().join("appends.db").display()),
        ),
    ] {
        let store = gatehouse_eventstore::EventStore::connect(
            &store_url,
            gatehouse_eventstore::StoreOptions {
                max_connections: 16,
                ..Default::default()
            },
        )
        .await?;
        store.migrate().await?;
        for writers in [1, 4, 16] {
            let rate = figures::append_rate(&store, writers, append_window).await?;
            appends.push((backend, writers, rate));
        }
        store.close().await;
    }

    // The deployment §5 describes, for the two figures that depend on the
    // verifier having a core: pinned with `taskset`.
    eprintln!("measuring: never-seen JWTs and the login flood, verifier pinned to core 0");
    let pinned = pinned::measure(pinned::Setup {
        gatehouse: &args.gatehouse,
        url: &url,
        envs: &envs,
        keys: &signing_key,
        account_id: &account_id,
        secret: &secret,
        username: "bench@example.com",
        password: "a bench password",
        exchange: serde_json::json!({
            "account_id": boot["account_id"],
            "key_id": boot["key_id"],
            "key_secret": boot["secret"],
        }),
        pool,
        rounds: args.seconds.min(5),
        flood_window,
    })
    .await?;

    println!("| measurement | result | target |");
    println!("|---|---|---|");
    println!("| empty unary RPC (health Check), baseline | {baseline:.0} calls/s | — |");
    println!(
        "| Verify, API key | {api_key:.0} calls/s; **{api_key_ratio:.2} ×** baseline (median of {} rounds) | ≥ 0.85 × |",
        rounds.len()
    );
    println!(
        "| Verify, repeated EdDSA JWT | {jwt:.0} calls/s; **{jwt_ratio:.2} ×** baseline (median of {} rounds) | ≥ 0.85 × |",
        rounds.len()
    );
    println!(
        "| empty JSON handler over HTTP/1.1 (`GET /healthz`), baseline | {http_empty:.0} calls/s | — |"
    );
    println!(
        "| Verify over HTTP (`POST /api/v1/verify`, API key) | {http_verify:.0} calls/s; **{http_verify_ratio:.2} ×** baseline (median of {} rounds) | ≥ 0.8 × |",
        http_rounds.len()
    );
    println!("| in-process EdDSA signing, every core, baseline | {signing:.0} tokens/s | — |");
    println!(
        "| SDK-token exchange over HTTP (`POST /v1/auth/sdk-token`) | {http_exchange:.0} calls/s; **{exchange_ratio:.2} ×** signing (median of {} rounds) | ≥ 0.6 × |",
        http_rounds.len()
    );
    println!(
        "| key creation over HTTP (`POST /api/v1/accounts/{{id}}/keys`), {} clients | {key_creation:.0} calls/s (median of {} rounds) | — |",
        args.concurrency,
        create_rounds.len()
    );
    println!(
        "| revocation seen by both verifiers ({} revocations) | p50 {:.1} ms, **p99 {:.1} ms**, max {:.1} ms | p99 ≤ 250 ms |",
        latencies.len(),
        percentile(&latencies, 0.5).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );
    println!(
        "| in-process EdDSA verification of distinct tokens, every core, baseline | {in_process_verify:.0} tokens/s | — |"
    );
    println!(
        "| Verify of never-seen EdDSA JWTs | {never_seen:.0} calls/s; **{never_seen_ratio:.2} ×** in-process (median of {} rounds) | ≥ 0.85 × |",
        fresh_rounds.len()
    );
    if let Some(p) = &pinned {
        println!(
            "| pinned: in-process EdDSA verification of distinct tokens, one core, baseline | {:.0} tokens/s | — |",
            p.in_process
        );
        println!(
            "| pinned: Verify of never-seen EdDSA JWTs, verifier on core 0, load on cores {} | {:.0} calls/s; **{:.2} ×** in-process on one core (median of {} rounds) | ≥ 0.85 × |",
            p.others, p.never_seen, p.never_seen_ratio, p.rounds
        );
    }
    println!(
        "| raw single-insert transactions on the same Postgres ({refresh_concurrency} connections), baseline | {raw_insert:.0} tx/s | — |"
    );
    println!(
        "| refresh (rotation + append), {refresh_concurrency} sessions at once | {refresh:.0} calls/s; **{refresh_ratio:.2} ×** raw inserts (median of {} rounds) | ≥ 0.5 × |",
        refresh_rounds.len()
    );
    println!(
        "| Verify p99, one combined process: idle → during a login flood (16 clients, {login_rate:.0} logins/s) | {:.2} ms → {:.2} ms = **{:.2} ×** | ≤ 2 × |",
        idle_p99.as_secs_f64() * 1e3,
        flood_p99.as_secs_f64() * 1e3,
        flood_p99.as_secs_f64() / idle_p99.as_secs_f64().max(1e-9)
    );
    if let Some(p) = &pinned {
        println!(
            "| pinned: Verify p99, verifier on core 0, issuer and load on cores {}: idle → during a login flood (16 clients, {:.0} logins/s) | {:.2} ms → {:.2} ms = **{:.2} ×** | ≤ 2 × |",
            p.others,
            p.login_rate,
            p.idle_p99.as_secs_f64() * 1e3,
            p.flood_p99.as_secs_f64() * 1e3,
            p.flood_p99.as_secs_f64() / p.idle_p99.as_secs_f64().max(1e-9)
        );
        println!(
            "| pinned: in-process EdDSA signing, one core, baseline | {:.0} tokens/s | — |",
            p.signing
        );
        println!(
            "| pinned: SDK-token exchange over HTTP, issuer alone on core 0, load on cores {} | {:.0} calls/s; **{:.2} ×** signing on one core (median of {} rounds) | ≥ 0.6 × |",
            p.others, p.exchange, p.exchange_ratio, p.rounds
        );
    }
    println!(
        "| event-log growth, 16 clients sending one wrong password for {} s (default throttle) | {} attempts ({} refused by a running delay) → **{} events** ({} `LoginFailed.v1`) | O(1) per throttle window |",
        growth_window.as_secs(),
        growth.attempts,
        growth.refused,
        growth.events,
        growth.failures,
    );
    for (backend, writers, rate) in &appends {
        println!(
            "| event appends, {backend}, {writers} writer(s), one event per append | {rate:.0} events/s | — |"
        );
    }
    drop((issuer, verifiers));
    if args.quick {
        // The cold start's smoke run; its real figures come from --cold-start.
        let plot = tempfile::tempdir()?;
        cold_starts(
            &args.gatehouse,
            &[2_000],
            args.log_cache.as_deref(),
            Some(&plot.path().join("cold-start.svg")),
            false,
        )
        .await?;
    }
    Ok(())
}

/// Cold starts at each size, as a table.
async fn cold_starts(
    gatehouse: &str,
    sizes: &[u64],
    cache: Option<&std::path::Path>,
    plot: Option<&std::path::Path>,
    postgres: bool,
) -> anyhow::Result<()> {
    let mut rows = Vec::new();
    for &keys in sizes {
        let backend = if postgres { "Postgres" } else { "SQLite" };
        eprintln!("cold start on {keys} keys ({backend}):");
        let measured = coldstart::measure(gatehouse, keys, cache, postgres).await?;
        eprintln!(
            "  replaying the log: SERVING after {:.2} s, peak RSS {:.0} MiB; from a snapshot: {:.2} s, {:.0} MiB; an issuer from the snapshot: {:.2} s, {:.0} MiB",
            measured.replay.0.as_secs_f64(),
            measured.replay.1 as f64 / 1048576.0,
            measured.from_snapshot.0.as_secs_f64(),
            measured.from_snapshot.1 as f64 / 1048576.0,
            measured.issuer.0.as_secs_f64(),
            measured.issuer.1 as f64 / 1048576.0,
        );
        rows.push(measured);
    }
    println!();
    println!(
        "| keys | events | log on disk | snapshot | replaying the log: to `SERVING` / peak RSS | from the snapshot: to `SERVING` / peak RSS | RSS per key | issuer from the snapshot: to `SERVING` / peak RSS |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let mib = |b: u64| b as f64 / 1048576.0;
    for r in &rows {
        println!(
            "| {} | {} | {:.0} MB | {:.0} MB | {:.2} s / {:.0} MiB | {:.2} s / {:.0} MiB | {:.0} B | {:.2} s / {:.0} MiB |",
            r.keys,
            r.events,
            r.log_bytes as f64 / 1e6,
            r.snapshot_bytes as f64 / 1e6,
            r.replay.0.as_secs_f64(),
            mib(r.replay.1),
            r.from_snapshot.0.as_secs_f64(),
            mib(r.from_snapshot.1),
            r.from_snapshot.1 as f64 / r.keys.max(1) as f64,
            r.issuer.0.as_secs_f64(),
            mib(r.issuer.1),
        );
    }
    if let Some(path) = plot {
        plot::cold_starts(&rows, path)?;
        eprintln!("plot written to {}", path.display());
    }
    Ok(())
}
