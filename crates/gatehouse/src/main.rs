//! `gatehouse`: one binary for serving, migrating and administering.

mod admin;
mod cli;
mod commands;

use clap::Parser;
use cli::{AccountsCommand, Cli, Command, ProjectionsCommand, SigningKeysCommand, UsersCommand};
use gatehouse_server::{Application, Role, shutdown_signal, telemetry};

fn role_name(role: Role) -> &'static str {
    match role {
        Role::All => "all",
        Role::Issuer => "issuer",
        Role::Verifier => "verifier",
    }
}

/// Runs the command; an error is one line on standard error (its causes
/// joined, each once) and exit status 1 — never a backtrace, which anyhow
/// would print for `main`'s own error whenever `RUST_BACKTRACE` is set.
fn main() -> std::process::ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", one_line(&error));
            std::process::ExitCode::FAILURE
        }
    }
}

/// `error`'s message and causes, each once (a cause's text is often part
/// of the message already).
fn one_line(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let cause = cause.to_string();
        if text.contains(&cause) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&cause);
    }
    text
}

async fn run() -> anyhow::Result<()> {
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
