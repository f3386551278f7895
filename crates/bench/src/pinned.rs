//! The deployment DESIGN §5 describes, for the figures that depend on the
//! verifier having a core (DESIGN §6): a verifier process pinned to core 0
//! with `taskset`, and the issuer and this load generator on the others.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use gatehouse_testkit::Gatehouse;

use crate::figures;

/// What the pinned deployment measured.
pub struct Pinned {
    /// The cores the issuer and the load ran on.
    pub others: String,
    pub in_process: f64,
    pub never_seen: f64,
    pub never_seen_ratio: f64,
    pub rounds: usize,
    pub idle_p99: Duration,
    pub flood_p99: Duration,
    pub login_rate: f64,
    /// Signing on one core, and the exchange of an issuer alone on core 0.
    pub signing: f64,
    pub exchange: f64,
    pub exchange_ratio: f64,
}

/// Pins every thread of this process to `cores` (a `taskset` list).
fn pin_self(cores: &str) -> anyhow::Result<()> {
    let status = std::process::Command::new("taskset")
        .args(["-a", "-cp", cores, &std::process::id().to_string()])
        .stdout(std::process::Stdio::null())
        .status()
        .context("taskset not found: install util-linux (Debian: `apt install util-linux`)")?;
    if !status.success() {
        bail!("taskset could not pin the bench to cores {cores}");
    }
    Ok(())
}

/// Starts `gatehouse <args>` on `cores`.
async fn spawn_on(cores: &str, gatehouse: &str, args: &[&str], envs: &[(&str, &str)]) -> Gatehouse {
    let mut pinned = vec!["-c", cores, gatehouse];
    pinned.extend_from_slice(args);
    Gatehouse::spawn("taskset", &pinned, envs).await
}

/// What the pinned processes are started with and measured by.
pub struct Setup<'a> {
    pub gatehouse: &'a str,
    pub url: &'a str,
    pub envs: &'a [(&'a str, &'a str)],
    pub keys: &'a figures::Keys,
    pub account_id: &'a str,
    /// An API key's secret, verified during the flood.
    pub secret: &'a str,
    /// The user who logs in during the flood.
    pub username: &'a str,
    pub password: &'a str,
    /// The body of an SDK-token exchange that succeeds.
    pub exchange: serde_json::Value,
    /// Distinct tokens per round, rounds, and the flood's window.
    pub pool: usize,
    pub rounds: u64,
    pub flood_window: Duration,
}

/// Measures never-seen JWTs and the login flood with the verifier pinned,
/// then lets this process use every core again. `None` on one core.
pub async fn measure(setup: Setup<'_>) -> anyhow::Result<Option<Pinned>> {
    let Setup {
        gatehouse,
        url,
        envs,
        keys,
        account_id,
        secret,
        username,
        password,
        exchange,
        pool,
        rounds,
        flood_window,
    } = setup;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cores < 2 {
        eprintln!("one core: the pinned deployment cannot be measured here");
        return Ok(None);
    }
    let others = format!("1-{}", cores - 1);
    let all = format!("0-{}", cores - 1);
    pin_self(&others)?;
    let measured = async {
        let verifier = spawn_on(
            "0",
            gatehouse,
            &["serve", "verifier", "--database-url", url],
            envs,
        )
        .await;
        let issuer = spawn_on(
            &others,
            gatehouse,
            &["serve", "issuer", "--database-url", url],
            envs,
        )
        .await;
        let channel = verifier.channel().await;
        // The verifier has one core: so has the in-process baseline.
        let mut fresh = Vec::new();
        for _ in 0..rounds {
            let tokens = Arc::new(figures::fresh_tokens(keys, account_id, pool)?);
            let in_process = figures::verify_rate(keys, tokens, 1).await?;
            let tokens = Arc::new(figures::fresh_tokens(keys, account_id, pool)?);
            let over_grpc = figures::never_seen_rate(channel.clone(), tokens, 64).await?;
            fresh.push((in_process, over_grpc));
        }
        let median = |mut values: Vec<f64>| {
            values.sort_by(f64::total_cmp);
            values[values.len() / 2]
        };
        let (idle_p99, flood_p99, login_rate) = figures::p99_under_login_flood(
            channel,
            issuer.channel().await,
            secret,
            username,
            password,
            16,
            flood_window,
        )
        .await?;
        drop((verifier, issuer));

        // The exchange: an issuer alone on core 0 against signing on one core.
        let issuer = spawn_on(
            "0",
            gatehouse,
            &["serve", "issuer", "--database-url", url],
            envs,
        )
        .await;
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .build()?;
        let exchange_url = format!("http://{}/v1/auth/sdk-token", issuer.addr);
        let call = Arc::new(move || {
            let request = http.post(&exchange_url).json(&exchange);
            async move { request.send().await.is_ok_and(|r| r.status().is_success()) }
        });
        let mut exchanges = Vec::new();
        for _ in 0..rounds {
            let c = call.clone();
            let exchanged = crate::throughput(1, 64, move || c()).await;
            exchanges.push((exchanged, crate::signing_rate(1, 1).await?));
        }
        drop(issuer);
        anyhow::Ok(Pinned {
            signing: median(exchanges.iter().map(|r| r.1).collect()),
            exchange: median(exchanges.iter().map(|r| r.0).collect()),
            exchange_ratio: median(exchanges.iter().map(|r| r.0 / r.1).collect()),
            others: others.clone(),
            in_process: median(fresh.iter().map(|r| r.0).collect()),
            never_seen: median(fresh.iter().map(|r| r.1).collect()),
            never_seen_ratio: median(fresh.iter().map(|r| r.1 / r.0).collect()),
            rounds: fresh.len(),
            idle_p99,
            flood_p99,
            login_rate,
        })
    }
    .await;
    pin_self(&all)?;
    measured.map(Some)
}
