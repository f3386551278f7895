//! Cold start: a log of many keys with a realistic history, written straight
//! into the store through the domain's own decisions (so it is a log the
//! issuer could have written), then a verifier started on it: time to
//! `SERVING` and peak resident memory.
//!
//! Keys are created between 90 and 30 days ago; 30 % are rotated once (with a
//! 24 h grace that has run out), 10 % are revoked, 5 % have expired; every
//! secret has its index stream; one login session per five keys, refreshed
//! twice, a third of them logged out, the rest long expired. Not written: the
//! events' metadata (actor, request id, client address), the user and login
//! streams a real login also appends to; and the log is in generation order,
//! not time order. So a real log of as many keys is larger, and slower to read.

use std::io::IsTerminal as _;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};
use gatehouse_domain::apikey::{
    ApiKey, ApiKeyEvent, NewApiKey, SecretIndexEvent, SecretIssued, secret_stream,
};
use gatehouse_domain::ids::{AccountId, KeyId, SessionId, UserId};
use gatehouse_domain::scope::Scopes;
use gatehouse_domain::secret::SecretHash;
use gatehouse_domain::session::{
    RefreshTokenRotated, RevocationReason, SessionEvent, SessionRevoked, SessionStarted,
};
use gatehouse_eventstore::{EventStore, ExpectedVersion, NewEvent, StreamId};
use indicatif::{ProgressBar, ProgressFinish, ProgressStyle};
use uuid::Uuid;

/// Keys per bulk load (one transaction).
const KEYS_PER_BATCH: u64 = 2_000;
/// Keys share accounts as a SaaS's customers would.
const KEYS_PER_ACCOUNT: u64 = 20;

/// A stable, distinct UUID for entity `n` of kind `kind`.
fn id(kind: u8, n: u64) -> Uuid {
    let mut bytes = [0u8; 16];
    bytes[0] = kind;
    bytes[8..].copy_from_slice(&n.to_be_bytes());
    // Version 7 and the RFC 4122 variant, so every id parses as Gatehouse's.
    bytes[6] = 0x70;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    bytes[1] = 1;
    Uuid::from_bytes(bytes)
}

fn encode<E>(
    events: &[E],
    event_type: impl Fn(&E) -> &'static str,
    payload: impl Fn(&E) -> serde_json::Value,
) -> Vec<NewEvent> {
    events
        .iter()
        .map(|e| NewEvent::new(event_type(e), payload(e)))
        .collect()
}

fn index_entry(
    hash: &SecretHash,
    key_id: KeyId,
) -> anyhow::Result<(StreamId, ExpectedVersion, Vec<NewEvent>)> {
    let issued = SecretIndexEvent::Issued(SecretIssued { key_id });
    Ok((
        StreamId::parse(secret_stream(hash))?,
        ExpectedVersion::NoStream,
        vec![NewEvent::new(issued.event_type(), issued.payload())],
    ))
}

/// The streams of key `n` and, every fifth key, of a session.
fn key_history(
    n: u64,
    keys: u64,
    now: DateTime<Utc>,
    scopes: &Scopes,
) -> anyhow::Result<Vec<(StreamId, ExpectedVersion, Vec<NewEvent>)>> {
    let day = chrono::Duration::days(1);
    let span = chrono::Duration::days(60).num_seconds() as f64;
    let created = now - chrono::Duration::days(90)
        + chrono::Duration::seconds((span * n as f64 / keys.max(1) as f64) as i64);
    let account = AccountId::from_uuid(id(1, n / KEYS_PER_ACCOUNT));
    let key_id = KeyId::from_uuid(id(2, n));
    let secret = format!("wc_live_{:0>39}", n);
    let hash = SecretHash::of(&secret);
    let expires = (n % 20 == 4).then(|| created + day * 7);
    let mut streams = vec![index_entry(&hash, key_id)?];
    let first = ApiKey::create(
        NewApiKey {
            id: key_id,
            account_id: account,
            name: &format!("integration {n}"),
            scopes: scopes.clone(),
            secret_hash: hash,
            hint: secret[secret.len() - 4..].to_string(),
            expires_at: expires,
        },
        created,
    )?;
    let mut events = vec![first.clone()];
    let mut key = None;
    ApiKey::apply(&mut key, &first);
    let mut state = key.context("a created key")?;
    let fold = |state: &mut ApiKey, more: Vec<ApiKeyEvent>, events: &mut Vec<ApiKeyEvent>| {
        let mut key = Some(state.clone());
        for event in &more {
            ApiKey::apply(&mut key, event);
        }
        if let Some(key) = key {
            *state = key;
        }
        events.extend(more);
    };
    if n % 10 < 3 {
        let next = format!("wc_live_r{:0>38}", n);
        let next_hash = SecretHash::of(&next);
        streams.push(index_entry(&next_hash, key_id)?);
        let rotated = state
            .rotate(
                next_hash,
                next[next.len() - 4..].to_string(),
                gatehouse_domain::apikey::GracePeriod::parse(Some(day))?,
                created + day,
            )
            .map_err(|e| anyhow::anyhow!("rotate: {e}"))?;
        fold(&mut state, rotated, &mut events);
    }
    if n % 10 == 3 {
        let revoked = state
            .revoke("generated", created + day * 2)
            .map_err(|e| anyhow::anyhow!("revoke: {e:?}"))?;
        fold(&mut state, revoked, &mut events);
    }
    // What fell due since: graces that ran out, expiries.
    let due = state.due(now);
    fold(&mut state, due, &mut events);
    streams.push((
        StreamId::parse(key_id.stream())?,
        ExpectedVersion::NoStream,
        encode(&events, ApiKeyEvent::event_type, ApiKeyEvent::payload),
    ));

    if n.is_multiple_of(5) {
        let session_id = SessionId::from_uuid(id(3, n));
        let user_id = UserId::from_uuid(id(4, n / KEYS_PER_ACCOUNT));
        let hashes: Vec<SecretHash> = (0..3)
            .map(|r| SecretHash::of(&format!("wc_rt_{n}_{r}")))
            .collect();
        let mut session = vec![SessionEvent::Started(SessionStarted {
            session_id,
            user_id,
            account_id: account,
            scopes: scopes.clone(),
            refresh_hash: hashes[0].clone(),
            refresh_expires_at: created + day * 30,
            started_at: created,
        })];
        for r in 1..3 {
            session.push(SessionEvent::Rotated(RefreshTokenRotated {
                session_id,
                previous_hash: hashes[r - 1].clone(),
                refresh_hash: hashes[r].clone(),
                refresh_expires_at: created + day * 30,
                rotated_at: created + chrono::Duration::minutes(15 * r as i64),
            }));
        }
        if n.is_multiple_of(15) {
            session.push(SessionEvent::Revoked(SessionRevoked {
                session_id,
                user_id,
                account_id: account,
                reason: RevocationReason::Logout,
                revoked_at: created + chrono::Duration::hours(1),
            }));
        }
        streams.push((
            StreamId::parse(session_id.stream())?,
            ExpectedVersion::NoStream,
            encode(&session, SessionEvent::event_type, SessionEvent::payload),
        ));
    }
    Ok(streams)
}

/// Writes the history of `keys` keys into `store`, reporting progress (keys
/// written, events/s): as a bar when standard error is a terminal, else as a
/// line every few seconds (a bar's redraws would fill a log file). Either
/// way a last line records the totals. Returns the number of events.
pub async fn generate(store: &EventStore, keys: u64) -> anyhow::Result<u64> {
    let now = Utc::now();
    let scopes = Scopes::parse(&["keys:read", "activity:read"])?;
    let started = Instant::now();
    let mut last_report = Instant::now();
    let bar = std::io::stderr().is_terminal().then(|| generator_bar(keys));
    let mut written = 0u64;
    let mut n = 0;
    while n < keys {
        let upto = (n + KEYS_PER_BATCH).min(keys);
        let mut batch = Vec::new();
        for k in n..upto {
            batch.extend(key_history(k, keys, now, &scopes)?);
        }
        written += store
            .load_new_streams(batch.into_iter().map(|(s, _, e)| (s, e)).collect())
            .await?;
        n = upto;
        if let Some(bar) = &bar {
            let rate = written as f64 / started.elapsed().as_secs_f64();
            bar.set_position(n);
            bar.set_message(format!("{written} events, {rate:.0} events/s"));
            if n == keys {
                bar.finish_and_clear();
            }
        }
        if (bar.is_none() && last_report.elapsed() > Duration::from_secs(5)) || n == keys {
            let rate = written as f64 / started.elapsed().as_secs_f64();
            eprintln!(
                "  generated {n}/{keys} keys ({:.0} %), {written} events, {rate:.0} events/s",
                100.0 * n as f64 / keys as f64
            );
            last_report = Instant::now();
        }
    }
    Ok(written)
}

/// The generator's bar of keys written; its message carries events and rate.
fn generator_bar(keys: u64) -> ProgressBar {
    let style = ProgressStyle::with_template(
        "  generating [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} keys, eta {eta}, {msg}",
    )
    .expect("the template is valid")
    .progress_chars("=> ");
    // Cleared however the generator ends (an error returned early included).
    let bar = ProgressBar::new(keys)
        .with_style(style)
        .with_finish(ProgressFinish::AndClear);
    // Redrawn between batches too, so elapsed and eta keep moving.
    bar.enable_steady_tick(Duration::from_millis(250));
    bar
}

/// What a verifier's start on a log costs, replaying it all and from a
/// snapshot: each (from spawning the process to `SERVING` on the health
/// service, peak resident memory (VmHWM) in bytes).
pub struct ColdStart {
    pub keys: u64,
    pub events: u64,
    /// The log's size on disk (SQLite), bytes.
    pub log_bytes: u64,
    pub replay: (Duration, u64),
    pub from_snapshot: (Duration, u64),
    /// `serve issuer` from the same snapshot (the index with session
    /// heads, the keyring from the index's signing keys): to `SERVING`, peak RSS.
    pub issuer: (Duration, u64),
    pub snapshot_bytes: u64,
}

fn peak_rss(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Generates a log of `keys` keys in a new SQLite database (or reuses the
/// one generated before in `cache`), then starts `serve verifier` on it and
/// measures it.
pub async fn measure(
    gatehouse: &str,
    keys: u64,
    cache: Option<&std::path::Path>,
    postgres: bool,
) -> anyhow::Result<ColdStart> {
    let scratch = tempfile::tempdir()?;
    if postgres {
        // A fresh database each time: a generated log is not kept there.
        let url = gatehouse_testkit::fresh_database().await;
        let store = EventStore::connect(&url, Default::default()).await?;
        store.migrate().await?;
        let events = generate(&store, keys).await?;
        store.close().await;
        let pool = sqlx::PgPool::connect(&url).await?;
        let log_bytes: i64 = sqlx::query_scalar("SELECT pg_total_relation_size('events')")
            .fetch_one(&pool)
            .await?;
        pool.close().await;
        return starts(
            gatehouse,
            &url,
            scratch.path(),
            keys,
            events,
            log_bytes as u64,
        )
        .await;
    }
    let dir = match cache {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            // The generator's version: a log of an older shape is not reused.
            dir.join(format!("v1-{keys}-keys"))
        }
        None => scratch.path().join("log"),
    };
    let path = dir.join("gatehouse.db");
    let url = format!("sqlite:{}", path.display());
    let count = dir.join("events");
    let events = match std::fs::read_to_string(&count)
        .ok()
        .and_then(|c| c.trim().parse().ok())
    {
        Some(events) => {
            eprintln!("  reusing the log in {}", dir.display());
            events
        }
        None => {
            // Whatever a broken run left is started over.
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir)?;
            let store = EventStore::connect(&url, Default::default()).await?;
            store.migrate().await?;
            let events = generate(&store, keys).await?;
            drop(store);
            std::fs::write(&count, events.to_string())?;
            events
        }
    };
    let log_bytes = std::fs::metadata(&path).map_or(0, |m| m.len())
        + std::fs::metadata(dir.join("gatehouse.db-wal")).map_or(0, |m| m.len());
    starts(gatehouse, &url, &dir, keys, events, log_bytes).await
}

/// The three starts on a generated log at `url`: a verifier replaying it
/// (and storing a snapshot), a verifier from that snapshot, an issuer from it.
async fn starts(
    gatehouse: &str,
    url: &str,
    dir: &std::path::Path,
    keys: u64,
    events: u64,
    log_bytes: u64,
) -> anyhow::Result<ColdStart> {
    // A snapshot left by an earlier run (perhaps of an older format) is
    // dropped: the first start replays the log and writes a fresh one.
    {
        let store = EventStore::connect(url, Default::default()).await?;
        store.migrate().await?;
        store
            .delete_snapshot(gatehouse_verifier::snapshot::NAME)
            .await?;
        store.close().await;
    }
    let replay = start(
        "verifier",
        gatehouse,
        url,
        dir,
        keys,
        &["--ignore-snapshot", "--snapshot-every-events", "1"],
        "verifier index snapshot",
    )
    .await?;
    anyhow::ensure!(
        replay.logs.contains("stored=true"),
        "the first start stored no snapshot"
    );
    let snapshot_bytes = replay
        .logs
        .lines()
        .find(|l| l.contains("verifier index snapshot"))
        .and_then(|l| l.split("bytes=").nth(1))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let from_snapshot = start(
        "verifier",
        gatehouse,
        url,
        dir,
        keys,
        &["--snapshot-every-events", "0"],
        "",
    )
    .await?;
    anyhow::ensure!(
        from_snapshot
            .logs
            .contains("verifier index snapshot loaded"),
        "the second start did not load the snapshot"
    );
    let issuer = start(
        "issuer",
        gatehouse,
        url,
        dir,
        keys,
        &["--snapshot-every-events", "0"],
        "",
    )
    .await?;
    anyhow::ensure!(
        issuer.logs.contains("verifier index snapshot loaded"),
        "the issuer did not load the snapshot"
    );
    Ok(ColdStart {
        keys,
        events,
        log_bytes,
        replay: (replay.to_serving, replay.peak_rss),
        from_snapshot: (from_snapshot.to_serving, from_snapshot.peak_rss),
        issuer: (issuer.to_serving, issuer.peak_rss),
        snapshot_bytes,
    })
}

struct Started {
    to_serving: Duration,
    peak_rss: u64,
    logs: String,
}

/// Starts `serve <role>` on `url`, measures the time to `SERVING` and
/// peak RSS, waits for a log line containing `wait_for` (if not empty),
/// and stops it.
async fn start(
    role: &str,
    gatehouse: &str,
    url: &str,
    dir: &std::path::Path,
    keys: u64,
    extra: &[&str],
    wait_for: &str,
) -> anyhow::Result<Started> {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;

    let mut args = vec![
        "serve",
        role,
        "--database-url",
        url,
        "--issuer-url",
        "http://gatehouse.bench",
    ];
    args.extend_from_slice(extra);
    let started = Instant::now();
    let server = gatehouse_testkit::Gatehouse::spawn_waiting(
        gatehouse,
        &args,
        &[],
        dir,
        Duration::from_secs(600),
    )
    .await;
    let mut health = HealthClient::new(server.channel().await);
    loop {
        let serving = health
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .is_ok_and(|r| r.into_inner().status == ServingStatus::Serving as i32);
        if serving {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(600),
            "the verifier did not serve within 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let to_serving = started.elapsed();
    let peak_rss = peak_rss(server.pid());
    // A fast start that skipped what it could not read would be no result.
    let loaded = format!("keys={keys} ");
    anyhow::ensure!(
        server.logs().contains(&loaded),
        "the verifier did not load {keys} keys: {}",
        server
            .logs()
            .lines()
            .find(|l| l.contains("index loaded"))
            .unwrap_or("no \"index loaded\" line")
    );
    while !wait_for.is_empty() && !server.logs().contains(wait_for) {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(600),
            "no {wait_for:?} within 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let logs = server.logs();
    server.terminate().await;
    Ok(Started {
        to_serving,
        peak_rss,
        logs,
    })
}
