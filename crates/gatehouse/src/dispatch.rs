//! From the parsed command line to the command that runs it.

use clap::Parser;
use gatehouse_server::{Application, Role, shutdown_signal, telemetry};

use crate::cli::{
    AccountsCommand, Cli, Command, ProjectionsCommand, SigningKeysCommand, UsersCommand,
};
use crate::{admin, commands};

fn role_name(role: Role) -> &'static str {
    match role {
        Role::All => "all",
        Role::Issuer => "issuer",
        Role::Verifier => "verifier",
    }
}

/// Parses the command line and runs the command it names.
pub async fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let default_filter = if matches!(cli.command, Command::Serve { .. }) {
        "info"
    } else {
        "warn"
    };
    telemetry::init(cli.log_format, default_filter);
    let admin = match cli.command {
        Command::Serve { role, args } => {
            let app = Application::build(&args, role).await?;
            return Ok(app.run_until_stopped(shutdown_signal()).await?);
        }
        Command::CheckConfig { role, args } => {
            return match gatehouse_server::config::check(&args, role) {
                Ok(_) => {
                    println!("configuration ok for `serve {}`", role_name(role));
                    Ok(())
                }
                Err(problems) => {
                    for problem in &problems.0 {
                        eprintln!("error: {problem}");
                    }
                    std::process::exit(2);
                }
            };
        }
        Command::Migrate { database } => return commands::migrate(&database).await,
        Command::Projections {
            command: ProjectionsCommand::Rebuild { name, database },
        } => return commands::rebuild(&name, &database).await,
        Command::Bootstrap {
            account_name,
            username,
            scopes,
            database,
            issuer,
        } => {
            let scopes = scopes.as_deref();
            return commands::bootstrap(&account_name, &username, scopes, &database, &issuer).await;
        }
        Command::SigningKeys {
            command: SigningKeysCommand::Rotate { database, issuer },
        } => return commands::rotate_signing_key(&database, &issuer).await,
        Command::Keys { conn, command } => admin::keys(&conn, command).await,
        Command::Scopes { conn, command } => admin::scopes(&conn, command).await,
        Command::Verify { conn, args } => admin::verify(&conn, args).await,
        Command::Activity { conn, args } => admin::activity(&conn, args).await,
        Command::Accounts {
            conn,
            command: AccountsCommand::Create { name, owner },
        } => admin::create_account(&conn, name, owner).await,
        Command::Users {
            conn,
            command:
                UsersCommand::Create {
                    account,
                    username,
                    scopes,
                },
        } => admin::create_user(&conn, account, username, scopes).await,
    };
    if let Err(failure) = admin {
        eprintln!("error: {}", failure.message);
        std::process::exit(failure.code);
    }
    Ok(())
}
