//! `gatehouse`: one binary for serving, migrating and administering.

mod cli;

use anyhow::{Context, bail};
use clap::Parser;
use cli::{Cli, Command, ProjectionsCommand};
use gatehouse_eventstore::{EventStore, ProjectionRunner};
use gatehouse_server::{Application, DatabaseArgs, shutdown_signal, telemetry};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    telemetry::init(cli.log_format, "info");
    match cli.command {
        Command::Serve { role, args } => {
            let app = Application::build(&args, role).await?;
            app.run_until_stopped(shutdown_signal()).await?;
        }
        Command::Migrate { database } => {
            open(&database).await?;
            tracing::info!("migrations applied");
        }
        Command::Projections {
            command: ProjectionsCommand::Rebuild { name, database },
        } => {
            let store = open(&database).await?;
            let checkpoint = match name.as_str() {
                gatehouse_projections::StreamIndex::NAME => {
                    ProjectionRunner::new(store, gatehouse_projections::StreamIndex)
                        .rebuild()
                        .await?
                }
                other => bail!(
                    "unknown projection {other:?}; known: {}",
                    gatehouse_projections::NAMES.join(", ")
                ),
            };
            println!("rebuilt {name} up to position {checkpoint}");
        }
    }
    Ok(())
}

async fn open(database: &DatabaseArgs) -> anyhow::Result<EventStore> {
    let store = EventStore::connect(&database.url(), database.store_options())
        .await
        .context("cannot open the event store")?;
    store.migrate().await.context("cannot apply migrations")?;
    Ok(store)
}
