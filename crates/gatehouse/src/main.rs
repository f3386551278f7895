//! `gatehouse`: one binary for serving, migrating and administering.

mod cli;
mod commands;

use clap::Parser;
use cli::{Cli, Command, ProjectionsCommand, SigningKeysCommand};
use gatehouse_server::{Application, shutdown_signal, telemetry};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let default_filter = if matches!(cli.command, Command::Serve { .. }) {
        "info"
    } else {
        "warn"
    };
    telemetry::init(cli.log_format, default_filter);
    match cli.command {
        Command::Serve { role, args } => {
            let app = Application::build(&args, role).await?;
            app.run_until_stopped(shutdown_signal()).await?;
        }
        Command::Migrate { database } => {
            commands::open(&database).await?;
            eprintln!("migrations applied");
        }
        Command::Projections {
            command: ProjectionsCommand::Rebuild { name, database },
        } => commands::rebuild(&name, &database).await?,
        Command::Bootstrap {
            account_name,
            username,
            database,
            issuer,
        } => commands::bootstrap(&account_name, &username, &database, &issuer).await?,
        Command::SigningKeys {
            command: SigningKeysCommand::Rotate { database, issuer },
        } => commands::rotate_signing_key(&database, &issuer).await?,
    }
    Ok(())
}
