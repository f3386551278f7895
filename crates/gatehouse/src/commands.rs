//! The one-shot commands: migrate, projections, bootstrap, signing keys.

use std::io::Read as _;

use anyhow::{Context, bail};
use gatehouse_eventstore::{EventStore, ProjectionRunner};
use gatehouse_server::{DatabaseArgs, IssuerArgs};

/// Opens and migrates the store.
pub async fn open(database: &DatabaseArgs) -> anyhow::Result<EventStore> {
    let store = EventStore::connect(&database.url(), database.store_options())
        .await
        .context("cannot open the event store")?;
    store.migrate().await.context("cannot apply migrations")?;
    Ok(store)
}

/// `gatehouse migrate`.
pub async fn migrate(database: &DatabaseArgs) -> anyhow::Result<()> {
    open(database).await?;
    eprintln!("migrations applied");
    Ok(())
}

pub async fn rebuild(name: &str, database: &DatabaseArgs) -> anyhow::Result<()> {
    // Run by hand and watched: a bar on a terminal rather than log lines
    // (which admin commands' default `warn` filter hides anyway).
    gatehouse_eventstore::progress::show_bars();
    let store = open(database).await?;
    let checkpoint = match name {
        gatehouse_projections::StreamIndex::NAME => {
            ProjectionRunner::new(store, gatehouse_projections::StreamIndex)
                .rebuild()
                .await?
        }
        gatehouse_projections::ApiKeys::NAME => {
            ProjectionRunner::new(store, gatehouse_projections::ApiKeys)
                .rebuild()
                .await?
        }
        gatehouse_projections::KeyActivity::NAME => {
            ProjectionRunner::new(store, gatehouse_projections::KeyActivity)
                .rebuild()
                .await?
        }
        other => bail!(
            "unknown projection {other:?}; known: {}",
            gatehouse_projections::NAMES.join(", ")
        ),
    };
    println!("rebuilt {name} up to position {checkpoint}");
    Ok(())
}

pub async fn bootstrap(
    account_name: &str,
    username: &str,
    scopes: Option<&std::path::Path>,
    database: &DatabaseArgs,
    args: &IssuerArgs,
) -> anyhow::Result<()> {
    let definitions = match scopes {
        Some(path) => crate::admin::read_scope_file(path).map_err(anyhow::Error::msg)?,
        None => Vec::new(),
    };
    let password = match std::env::var("GATEHOUSE_BOOTSTRAP_PASSWORD") {
        Ok(password) if !password.is_empty() => password,
        _ => {
            let mut input = String::new();
            std::io::stdin()
                .read_to_string(&mut input)
                .context("cannot read the owner password from standard input")?;
            input.trim_end_matches(['\r', '\n']).to_string()
        }
    };
    let store = open(database).await?;
    let issuer = gatehouse_server::compose::build(
        &store,
        database,
        args,
        gatehouse_domain::clock::system(),
        None,
    )
    .await?;
    let result = issuer
        .bootstrap(account_name, username, password, &definitions)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    println!("{}", serde_json::to_string_pretty(&result)?);
    eprintln!("warning: the secret above is shown once; store it now");
    Ok(())
}

pub async fn rotate_signing_key(database: &DatabaseArgs, args: &IssuerArgs) -> anyhow::Result<()> {
    let store = open(database).await?;
    let issuer = gatehouse_server::compose::build(
        &store,
        database,
        args,
        gatehouse_domain::clock::system(),
        None,
    )
    .await?;
    let settings = issuer.settings();
    let lead = chrono::Duration::from_std(settings.signing_key_publish_lead)?;
    let max_ttl =
        chrono::Duration::from_std(settings.access_token_ttl.max(settings.sdk_token_ttl))?
            + chrono::Duration::from_std(settings.leeway)?;
    let created = issuer
        .keyring()
        .rotate(&store, chrono::Utc::now(), lead, max_ttl)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    println!(
        "{}",
        serde_json::json!({ "kid": created.kid, "alg": created.alg.as_str(), "signs_from": created.activates_at })
    );
    Ok(())
}
