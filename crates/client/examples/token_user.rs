//! A script-style user of an API key: exchange it for SDK tokens (refreshed
//! ahead of expiry without the script noticing) and call a guarded service in
//! a loop across several token lifetimes.
//!
//! ```sh
//! GATEHOUSE_URL=http://127.0.0.1:50051 GATEHOUSE_ACCOUNT=… GATEHOUSE_KEY_ID=… \
//!   GATEHOUSE_KEY_SECRET=wc_live_… SERVICE_URL=http://127.0.0.1:8080/claws \
//!   cargo run -p gatehouse-client --example token_user
//! ```
//! To watch it refresh across several lifetimes, run the server with
//! `--sdk-token-ttl-secs 5` and set `CALLS=20`: the exchange count grows by
//! one every few seconds, not once per call.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests: a failure is a panic

use std::time::Duration;

use gatehouse_client::{Credentials, Error, TokenSource};

fn env(name: &str) -> Result<String, Box<dyn std::error::Error>> {
    std::env::var(name).map_err(|_| format!("set {name}").into())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let tokens = TokenSource::new(
        &env("GATEHOUSE_URL")?,
        Credentials::new(
            env("GATEHOUSE_ACCOUNT")?,
            env("GATEHOUSE_KEY_ID")?,
            env("GATEHOUSE_KEY_SECRET")?,
        ),
    )?;
    let service = env("SERVICE_URL")?;
    let calls: u32 = std::env::var("CALLS")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(10);
    let http = reqwest::Client::new();
    for call in 1..=calls {
        match tokens.authorize(http.get(&service)).await {
            Ok(request) => {
                let answer = request.send().await?;
                println!(
                    "call {call}: {} (exchanges so far: {})",
                    answer.status(),
                    tokens.exchanges()
                );
            }
            // The key was revoked or rotated past its grace: stop.
            Err(error @ Error::Unauthorized { .. }) => return Err(error.into()),
            // Gatehouse is away and the token expired: try again later.
            Err(error) => eprintln!("call {call}: no token yet ({error})"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Ok(())
}
