//! The admin and auditor command line over `gatehouse_client::AdminClient`,
//! one module per command group (`keys`, `scopes`, `activity`, `accounts`
//! and `users`, `verify`); this module holds the connection, the failure
//! type and the output helpers they share.
//!
//! Reads `GATEHOUSE_ADDR` and `GATEHOUSE_TOKEN` (or `--token-file`); prints
//! aligned tables for people and `--json` for scripts; prints a new secret
//! once, on standard output, with a warning on standard error. Exit codes:
//! 0 ok, 2 usage, 3 unauthenticated, 4 permission denied, 5 not found,
//! 6 rejected (invalid argument, failed precondition, already exists,
//! conflict), 7 unreachable, 1 anything else. Errors are one line on stderr.

mod accounts;
mod activity;
mod keys;
mod scopes;
mod verify;

pub use accounts::{create_account, create_user};
pub use activity::{ActivityArgs, activity};
pub use keys::{KeysCommand, keys};
pub use scopes::{ScopesCommand, read_scope_file, scopes};
pub use verify::{VerifyArgs, verify};

use std::path::PathBuf;

use clap::Args;
use gatehouse_client::{AdminClient, AdminError};
use tonic::{Code, Status};

/// Where and as whom to connect.
#[derive(Debug, Clone, Args)]
pub struct Connection {
    /// The Gatehouse gRPC address.
    #[arg(
        long,
        env = "GATEHOUSE_ADDR",
        default_value = "http://127.0.0.1:50051",
        global = true
    )]
    pub addr: String,
    /// Bearer credential: an access token or an API key secret.
    #[arg(long, env = "GATEHOUSE_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// Read the bearer credential from this file instead.
    #[arg(long, env = "GATEHOUSE_TOKEN_FILE", global = true)]
    pub token_file: Option<PathBuf>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
}
/// A failure, with the exit code scripts can rely on.
pub struct Failure {
    pub code: i32,
    pub message: String,
}

impl From<Status> for Failure {
    fn from(status: Status) -> Self {
        AdminError::from(status).into()
    }
}

impl From<AdminError> for Failure {
    fn from(error: AdminError) -> Self {
        let message = error.to_string();
        let code = match error {
            AdminError::Unreachable { .. } => return Self { code: 7, message },
            AdminError::Config(_) => return Self { code: 2, message },
            AdminError::Refused { code, .. } => code,
        };
        let code = match code {
            Code::Unauthenticated => 3,
            Code::PermissionDenied => 4,
            Code::NotFound => 5,
            Code::InvalidArgument
            | Code::FailedPrecondition
            | Code::AlreadyExists
            | Code::Aborted
            | Code::OutOfRange => 6,
            Code::Unavailable => 7,
            _ => 1,
        };
        Self { code, message }
    }
}

fn usage(message: impl Into<String>) -> Failure {
    Failure {
        code: 2,
        message: message.into(),
    }
}

impl Connection {
    fn bearer(&self) -> Result<String, Failure> {
        if let Some(path) = &self.token_file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| usage(format!("cannot read {}: {e}", path.display())))?;
            return Ok(text.trim().to_string());
        }
        self.token
            .clone()
            .filter(|t| !t.trim().is_empty())
            .ok_or_else(|| usage("no credential: set GATEHOUSE_TOKEN or --token-file"))
    }

    /// The typed admin client, connected, acting with the credential.
    async fn client(&self) -> Result<AdminClient, Failure> {
        let bearer = self.bearer()?;
        Ok(AdminClient::connect(&self.addr, &bearer).await?)
    }
}

fn timestamp(at: &str, what: &str) -> Result<prost_types::Timestamp, Failure> {
    let at = chrono::DateTime::parse_from_rfc3339(at)
        .map_err(|e| usage(format!("invalid {what}: {e}")))?;
    Ok(prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: i32::try_from(at.timestamp_subsec_nanos()).unwrap_or(0),
    })
}

fn time_text(ts: &Option<prost_types::Timestamp>) -> String {
    ts.as_ref()
        .and_then(|t| {
            chrono::DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).unwrap_or(0))
        })
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// `24h`, `90m`, `30s`, `2d`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<prost_types::Duration, Failure> {
    let text = text.trim();
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let n: i64 = number
        .parse()
        .map_err(|_| usage(format!("invalid duration {text:?}")))?;
    let unit = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => {
            return Err(usage(format!(
                "invalid duration {text:?}: use s, m, h or d"
            )));
        }
    };
    let seconds = n
        .checked_mul(unit)
        .ok_or_else(|| usage(format!("invalid duration {text:?}: too long")))?;
    Ok(prost_types::Duration { seconds, nanos: 0 })
}
/// Prints rows as an aligned table with a header.
fn table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let text: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<width$}", width = widths[i]))
            .collect();
        println!("{}", text.join("  ").trim_end());
    };
    line(headers.iter().map(|h| h.to_string()).collect());
    for row in rows {
        line(row.clone());
    }
}
