//! The command line: servers and one-shot commands, and the admin client
//! commands (`keys`, `scopes`, `activity`, `accounts`, `users`, `verify`).

use clap::{Parser, Subcommand};
use gatehouse_server::telemetry::LogFormat;
use gatehouse_server::{DatabaseArgs, IssuerArgs, Role, ServeArgs};

use crate::admin::{ActivityArgs, Connection, KeysCommand, ScopesCommand, VerifyArgs};

/// Gatehouse: an event-sourced authentication service.
#[derive(Debug, Parser)]
#[command(name = "gatehouse", version, about)]
pub struct Cli {
    /// Log line format.
    #[arg(
        long,
        global = true,
        env = "GATEHOUSE_LOG_FORMAT",
        default_value = "text"
    )]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve gRPC: issuer and verifier in one process unless a role is given.
    Serve {
        /// `all` (default), `issuer` or `verifier`.
        #[arg(value_enum, default_value = "all")]
        role: Role,
        #[command(flatten)]
        args: ServeArgs,
    },
    /// Check the settings `serve` would start with (the same flags and
    /// GATEHOUSE_* variables) without serving: exit 0, or print every problem
    /// and exit 2. Opens no database and no port; `serve` runs the same check
    /// before it listens.
    CheckConfig {
        /// `all` (default), `issuer` or `verifier`.
        #[arg(value_enum, default_value = "all")]
        role: Role,
        #[command(flatten)]
        args: ServeArgs,
    },
    /// Apply the schema migrations and exit (`serve` also applies them).
    Migrate {
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Operate on projections.
    Projections {
        #[command(subcommand)]
        command: ProjectionsCommand,
    },
    /// Create the first account, its owner and an admin API key (both hold
    /// `*` and platform:admin); prints them as JSON once. The password comes
    /// from GATEHOUSE_BOOTSTRAP_PASSWORD or standard input, never a flag.
    Bootstrap {
        /// Name of the first account.
        #[arg(long, env = "GATEHOUSE_BOOTSTRAP_ACCOUNT", default_value = "default")]
        account_name: String,
        /// The owner's email address.
        #[arg(long, env = "GATEHOUSE_BOOTSTRAP_USERNAME")]
        username: String,
        /// A scope catalogue file (TOML, `[[scope]]` tables) to import in the
        /// same step, e.g. examples/workclaw-scopes.toml.
        #[arg(long = "scopes", env = "GATEHOUSE_BOOTSTRAP_SCOPES")]
        scopes: Option<std::path::PathBuf>,
        #[command(flatten)]
        database: DatabaseArgs,
        #[command(flatten)]
        issuer: IssuerArgs,
    },
    /// Operate on signing keys.
    SigningKeys {
        #[command(subcommand)]
        command: SigningKeysCommand,
    },
    /// Manage API keys of a running Gatehouse (GATEHOUSE_ADDR, GATEHOUSE_TOKEN).
    Keys {
        #[command(flatten)]
        conn: Connection,
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Manage the scope catalogue (the product's own scopes).
    Scopes {
        #[command(flatten)]
        conn: Connection,
        #[command(subcommand)]
        command: ScopesCommand,
    },
    /// Ask a running verifier whether the credential in GATEHOUSE_TOKEN (or
    /// --token-file) is valid and holds the given scopes; exit 3 or 4 if not.
    Verify {
        #[command(flatten)]
        conn: Connection,
        #[command(flatten)]
        args: VerifyArgs,
    },
    /// Read the key activity log.
    Activity {
        #[command(flatten)]
        conn: Connection,
        #[command(flatten)]
        args: ActivityArgs,
    },
    /// Manage accounts.
    Accounts {
        #[command(flatten)]
        conn: Connection,
        #[command(subcommand)]
        command: AccountsCommand,
    },
    /// Manage users.
    Users {
        #[command(flatten)]
        conn: Connection,
        #[command(subcommand)]
        command: UsersCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum AccountsCommand {
    /// Create an account (needs platform:admin); with --owner, also its owner,
    /// whose password comes from GATEHOUSE_OWNER_PASSWORD or standard input.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        owner: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Create a user; the password comes from GATEHOUSE_USER_PASSWORD or
    /// standard input, never a flag.
    Create {
        #[arg(long, env = "GATEHOUSE_ACCOUNT")]
        account: String,
        #[arg(long)]
        username: String,
        /// A scope to grant (repeat for several): `resource:action`,
        /// `resource:*` or `*`, each one the caller holds.
        #[arg(long = "scope")]
        scopes: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum SigningKeysCommand {
    /// Publish a new signing key now; it signs after the publish lead, and the
    /// current key stays published until its last token expires.
    Rotate {
        #[command(flatten)]
        database: DatabaseArgs,
        #[command(flatten)]
        issuer: IssuerArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum ProjectionsCommand {
    /// Delete a projection's read model and replay the whole log into it.
    Rebuild {
        /// The projection, e.g. `stream_index`.
        name: String,
        #[command(flatten)]
        database: DatabaseArgs,
    },
}
