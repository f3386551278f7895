//! The admin and auditor command line over `gatehouse_client::AdminClient`
//! (`keys`, `scopes`, `activity`, `accounts`, `users`, `verify`).
//!
//! Reads `GATEHOUSE_ADDR` and `GATEHOUSE_TOKEN` (or `--token-file`); prints
//! aligned tables for people and `--json` for scripts; prints a new secret
//! once, on standard output, with a warning on standard error. Exit codes:
//! 0 ok, 2 usage, 3 unauthenticated, 4 permission denied, 5 not found,
//! 6 rejected (invalid argument, failed precondition, already exists,
//! conflict), 7 unreachable, 1 anything else. Errors are one line on stderr.

use std::io::Read as _;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use gatehouse_api::v1 as pb;
use gatehouse_client::{AdminClient, AdminError};
use serde_json::{Value, json};
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

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key; prints its secret once.
    Create {
        #[arg(long, env = "GATEHOUSE_ACCOUNT")]
        account: String,
        #[arg(long)]
        name: String,
        /// A scope to grant (repeat for several): `resource:action`,
        /// `resource:*` or `*`; see `gatehouse scopes list`.
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
        /// RFC 3339 time after which the key is refused.
        #[arg(long)]
        expires_at: Option<String>,
    },
    /// List the account's keys, newest first.
    List {
        #[arg(long, env = "GATEHOUSE_ACCOUNT")]
        account: String,
        /// Also list deleted keys.
        #[arg(long)]
        include_deleted: bool,
    },
    /// Show one key.
    Get {
        #[arg(long, env = "GATEHOUSE_ACCOUNT")]
        account: String,
        key_id: String,
    },
    /// Issue a new secret; the old one stays valid for the grace period.
    Rotate {
        #[arg(long, env = "GATEHOUSE_ACCOUNT")]
        account: String,
        key_id: String,
        /// e.g. `24h`, `90m`, `30s`, `0` (default 24h).
        #[arg(long)]
        grace: Option<String>,
    },
    /// Revoke a key at once.
    Revoke {
        #[arg(long, env = "GATEHOUSE_ACCOUNT")]
        account: String,
        key_id: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Revoke a key if it is still in service and remove it from the key
    /// list for good; its history stays in the activity log.
    Delete {
        #[arg(long, env = "GATEHOUSE_ACCOUNT")]
        account: String,
        key_id: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ScopesCommand {
    /// Define a catalogue scope (or bring back a retired one, or change its
    /// description). Needs platform:admin.
    Define {
        /// `resource:action`, e.g. `claws:read`.
        name: String,
        #[arg(long)]
        description: String,
    },
    /// List the built-in scopes and the catalogue.
    List,
    /// Retire a catalogue scope: nobody holds it from now on. Needs platform:admin.
    Retire { name: String },
    /// Make the catalogue hold what a TOML file names (`[[scope]]` tables with
    /// `name` and `description`); a second import writes nothing. Needs
    /// platform:admin.
    Import {
        file: PathBuf,
        /// Also retire catalogue scopes the file does not name.
        #[arg(long)]
        prune: bool,
    },
}

/// `gatehouse verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// A scope the credential must hold (repeat for several).
    #[arg(long = "scope")]
    pub scopes: Vec<String>,
}

/// `gatehouse activity`.
#[derive(Debug, Args)]
pub struct ActivityArgs {
    #[arg(long, env = "GATEHOUSE_ACCOUNT")]
    pub account: String,
    /// One key only.
    #[arg(long = "key")]
    pub key_id: Option<String>,
    /// RFC 3339 time; only activity from then on.
    #[arg(long)]
    pub since: Option<String>,
    /// Keep printing new activity as it happens.
    #[arg(long)]
    pub follow: bool,
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
    let seconds = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => {
            return Err(usage(format!(
                "invalid duration {text:?}: use s, m, h or d"
            )));
        }
    };
    Ok(prost_types::Duration { seconds, nanos: 0 })
}

fn state(state: i32) -> &'static str {
    match pb::KeyState::try_from(state) {
        Ok(pb::KeyState::Active) => "active",
        Ok(pb::KeyState::Rotating) => "rotating",
        Ok(pb::KeyState::Revoked) => "revoked",
        Ok(pb::KeyState::Expired) => "expired",
        Ok(pb::KeyState::Deleted) => "deleted",
        _ => "unknown",
    }
}

fn key_json(key: &pb::ApiKey) -> Value {
    json!({
        "key_id": key.key_id,
        "account_id": key.account_id,
        "name": key.name,
        "scopes": key.scopes,
        "retired_scopes": key.retired_scopes,
        "hint": key.hint,
        "state": state(key.state),
        "created_at": time_text(&key.created_at),
        "rotated_at": time_text(&key.rotated_at),
        "expires_at": time_text(&key.expires_at),
        "last_used_at": time_text(&key.last_used_at),
        "previous_secret_valid_until": time_text(&key.previous_secret_valid_until),
    })
}

/// `grace_expired` for `ACTIVITY_KIND_GRACE_EXPIRED`: the wire name, as the
/// server stores it.
fn kind(kind: i32) -> String {
    pb::ActivityKind::try_from(kind)
        .ok()
        .and_then(|k| {
            k.as_str_name()
                .strip_prefix("ACTIVITY_KIND_")
                .map(str::to_ascii_lowercase)
        })
        .filter(|k| k != "unspecified")
        .unwrap_or_else(|| "unknown".into())
}

fn activity_json(a: &pb::KeyActivity) -> Value {
    json!({
        "cursor": a.cursor,
        "occurred_at": time_text(&a.occurred_at),
        "key_id": a.key_id,
        "kind": kind(a.kind),
        "actor": a.actor,
        "client_address": a.client_address,
        "reason": a.reason,
        "scope": a.scope,
        "uses": a.usage.as_ref().map(|u| u.uses),
        "denials": a.usage.as_ref().map(|u| u.denials),
    })
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

/// The key's grants, each retired one marked so.
fn scope_text(key: &pb::ApiKey) -> String {
    key.scopes
        .iter()
        .map(|s| {
            if key.retired_scopes.contains(s) {
                format!("{s}(retired)")
            } else {
                s.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn key_row(key: &pb::ApiKey) -> Vec<String> {
    vec![
        key.key_id.clone(),
        key.name.clone(),
        state(key.state).to_string(),
        scope_text(key),
        format!("…{}", key.hint),
        time_text(&key.created_at),
        time_text(&key.expires_at),
        time_text(&key.last_used_at),
    ]
}

const KEY_HEADERS: [&str; 8] = [
    "KEY ID",
    "NAME",
    "STATE",
    "SCOPES",
    "HINT",
    "CREATED",
    "EXPIRES",
    "LAST USED",
];

fn print_keys(json_out: bool, keys: &[pb::ApiKey]) {
    if json_out {
        println!("{}", Value::Array(keys.iter().map(key_json).collect()));
    } else {
        table(&KEY_HEADERS, &keys.iter().map(key_row).collect::<Vec<_>>());
    }
}

fn print_secret(json_out: bool, key: &pb::ApiKey, secret: &str, extra: Value) {
    if json_out {
        let mut out = key_json(key);
        out["secret"] = json!(secret);
        if let (Some(out), Some(extra)) = (out.as_object_mut(), extra.as_object()) {
            out.extend(extra.clone());
        }
        println!("{out}");
    } else {
        table(&KEY_HEADERS, &[key_row(key)]);
        println!("secret: {secret}");
    }
    eprintln!("warning: this secret is shown once and cannot be retrieved again; store it now");
}

/// `gatehouse keys …`.
pub async fn keys(conn: &Connection, command: KeysCommand) -> Result<(), Failure> {
    let client = conn.client().await?;
    match command {
        KeysCommand::Create {
            account,
            name,
            scopes,
            expires_at,
        } => {
            let expires_at = expires_at
                .as_deref()
                .map(|t| timestamp(t, "--expires-at"))
                .transpose()?;
            let (key, secret) = client
                .create_key(&account, &name, scopes, expires_at)
                .await?;
            print_secret(conn.json, &key, &secret, json!({}));
        }
        KeysCommand::List {
            account,
            include_deleted,
        } => {
            let keys = client.list_keys(&account, include_deleted).await?;
            print_keys(conn.json, &keys);
        }
        KeysCommand::Get { account, key_id } => {
            let key = client.get_key(&account, &key_id).await?;
            if conn.json {
                println!("{}", key_json(&key));
            } else {
                print_keys(false, &[key]);
            }
        }
        KeysCommand::Rotate {
            account,
            key_id,
            grace,
        } => {
            let grace_period = grace.as_deref().map(parse_duration).transpose()?;
            let rotated = client.rotate_key(&account, &key_id, grace_period).await?;
            let until = time_text(&rotated.previous_secret_valid_until);
            let key = rotated.key.unwrap_or_default();
            print_secret(
                conn.json,
                &key,
                &rotated.secret,
                json!({ "previous_secret_valid_until": until }),
            );
            if !conn.json {
                println!("previous secret valid until: {until}");
            }
        }
        KeysCommand::Revoke {
            account,
            key_id,
            reason,
        } => {
            let key = client.revoke_key(&account, &key_id, &reason).await?;
            if conn.json {
                println!("{}", key_json(&key));
            } else {
                print_keys(false, &[key]);
            }
        }
        KeysCommand::Delete {
            account,
            key_id,
            reason,
        } => {
            client.delete_key(&account, &key_id, &reason).await?;
            if conn.json {
                println!("{}", json!({ "key_id": key_id, "deleted": true }));
            } else {
                println!("deleted {key_id}");
            }
        }
    }
    Ok(())
}

fn scope_json(scope: &pb::ScopeInfo) -> Value {
    json!({
        "name": scope.name,
        "description": scope.description,
        "retired": scope.retired,
        "built_in": scope.built_in,
    })
}

fn print_scopes(json_out: bool, scopes: &[pb::ScopeInfo]) {
    if json_out {
        println!("{}", Value::Array(scopes.iter().map(scope_json).collect()));
        return;
    }
    let rows: Vec<Vec<String>> = scopes
        .iter()
        .map(|s| {
            let state = match (s.built_in, s.retired) {
                (true, _) => "built-in",
                (false, true) => "retired",
                (false, false) => "live",
            };
            vec![s.name.clone(), state.to_string(), s.description.clone()]
        })
        .collect();
    table(&["SCOPE", "STATE", "DESCRIPTION"], &rows);
}

/// A scope catalogue file: `[[scope]]` tables of `name` and `description`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ScopeFile {
    #[serde(default)]
    scope: Vec<gatehouse_domain::catalogue::Definition>,
}

/// Reads a scope catalogue file (TOML).
pub fn read_scope_file(
    path: &std::path::Path,
) -> Result<Vec<gatehouse_domain::catalogue::Definition>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let file: ScopeFile = toml::from_str(&text).map_err(|e| {
        format!(
            "{} is not a scope file ([[scope]] tables with name and description): {}",
            path.display(),
            e.message()
        )
    })?;
    Ok(file.scope)
}

/// `gatehouse scopes …`.
pub async fn scopes(conn: &Connection, command: ScopesCommand) -> Result<(), Failure> {
    let client = conn.client().await?;
    match command {
        ScopesCommand::Define { name, description } => {
            let (scope, changed) = client.define_scope(&name, &description).await?;
            if !changed {
                eprintln!("{} already stands as asked; nothing written", scope.name);
            }
            print_scopes(conn.json, &[scope]);
        }
        ScopesCommand::List => {
            let scopes = client.list_scopes().await?;
            print_scopes(conn.json, &scopes);
        }
        ScopesCommand::Retire { name } => {
            let scope = client.retire_scope(&name).await?;
            print_scopes(conn.json, &[scope]);
        }
        ScopesCommand::Import { file, prune } => {
            let definitions = read_scope_file(&file).map_err(usage)?;
            let imported = client
                .import_scopes(
                    definitions
                        .into_iter()
                        .map(|d| (d.name, d.description))
                        .collect(),
                    prune,
                )
                .await?;
            if conn.json {
                println!(
                    "{}",
                    json!({
                        "defined": imported.defined,
                        "described": imported.described,
                        "retired": imported.retired,
                    })
                );
            } else {
                println!(
                    "defined {}, described {}, retired {}",
                    imported.defined.len(),
                    imported.described.len(),
                    imported.retired.len()
                );
                for (what, names) in [
                    ("defined", &imported.defined),
                    ("described", &imported.described),
                    ("retired", &imported.retired),
                ] {
                    for name in names {
                        println!("  {what} {name}");
                    }
                }
            }
        }
    }
    Ok(())
}

/// `gatehouse verify`: asks the verifier whether the credential in
/// GATEHOUSE_TOKEN (or --token-file) holds the given scopes.
pub async fn verify(conn: &Connection, args: VerifyArgs) -> Result<(), Failure> {
    let principal = conn.client().await?.verify_self(args.scopes).await?;
    let kind = pb::PrincipalKind::try_from(principal.kind)
        .ok()
        .and_then(|k| {
            k.as_str_name()
                .strip_prefix("PRINCIPAL_KIND_")
                .map(str::to_ascii_lowercase)
        })
        .unwrap_or_default();
    if conn.json {
        println!(
            "{}",
            json!({
                "account_id": principal.account_id,
                "subject": principal.subject,
                "kind": kind,
                "key_id": principal.key_id,
                "scopes": principal.scopes,
                "expires_at": time_text(&principal.expires_at),
            })
        );
    } else {
        table(
            &["ACCOUNT ID", "SUBJECT", "KIND", "SCOPES", "EXPIRES"],
            &[vec![
                principal.account_id,
                principal.subject,
                kind,
                principal.scopes.join(" "),
                time_text(&principal.expires_at),
            ]],
        );
    }
    Ok(())
}

fn activity_row(a: &pb::KeyActivity) -> Vec<String> {
    let detail = match &a.usage {
        Some(u) => format!(
            "{} uses, {} denials, {} callers",
            u.uses, u.denials, u.distinct_callers
        ),
        None if !a.scope.is_empty() => a.scope.clone(),
        None => a.reason.clone(),
    };
    vec![
        time_text(&a.occurred_at),
        a.key_id.clone(),
        kind(a.kind),
        a.actor.clone(),
        a.client_address.clone(),
        detail,
    ]
}

const ACTIVITY_HEADERS: [&str; 6] = ["TIME", "KEY ID", "KIND", "ACTOR", "CLIENT", "DETAIL"];

/// `gatehouse activity`.
pub async fn activity(conn: &Connection, args: ActivityArgs) -> Result<(), Failure> {
    let client = conn.client().await?;
    let since = args
        .since
        .as_deref()
        .map(|t| timestamp(t, "--since"))
        .transpose()?;
    if args.follow {
        let mut stream = client
            .watch_activity(&args.account, args.key_id.as_deref(), since)
            .await?;
        if !conn.json {
            println!("{}", ACTIVITY_HEADERS.join("  "));
        }
        while let Some(entry) = stream.message().await? {
            if conn.json {
                println!("{}", activity_json(&entry));
            } else {
                println!("{}", activity_row(&entry).join("  "));
            }
        }
        return Ok(());
    }
    let entries = client
        .list_activity(&args.account, args.key_id.as_deref(), since)
        .await?;
    if conn.json {
        println!(
            "{}",
            Value::Array(entries.iter().map(activity_json).collect())
        );
    } else {
        table(
            &ACTIVITY_HEADERS,
            &entries.iter().map(activity_row).collect::<Vec<_>>(),
        );
    }
    Ok(())
}

fn password_from(var: &str) -> Result<String, Failure> {
    match std::env::var(var) {
        Ok(password) if !password.is_empty() => Ok(password),
        _ => {
            let mut input = String::new();
            std::io::stdin()
                .read_to_string(&mut input)
                .map_err(|e| usage(format!("cannot read the password from standard input: {e}")))?;
            Ok(input.trim_end_matches(['\r', '\n']).to_string())
        }
    }
}

/// `gatehouse accounts create`.
pub async fn create_account(
    conn: &Connection,
    name: String,
    owner: Option<String>,
) -> Result<(), Failure> {
    let owner = match owner {
        Some(username) => Some((username, password_from("GATEHOUSE_OWNER_PASSWORD")?)),
        None => None,
    };
    let created = conn.client().await?.create_account(&name, owner).await?;
    let account = created.account.unwrap_or_default();
    let owner = created
        .owner
        .map(|o| json!({ "user_id": o.user_id, "username": o.username, "scopes": o.scopes }));
    if conn.json {
        println!(
            "{}",
            json!({ "account_id": account.account_id, "name": account.name, "owner": owner })
        );
    } else {
        table(
            &["ACCOUNT ID", "NAME"],
            &[vec![account.account_id, account.name]],
        );
    }
    Ok(())
}

/// `gatehouse users create`.
pub async fn create_user(
    conn: &Connection,
    account: String,
    username: String,
    scopes: Vec<String>,
) -> Result<(), Failure> {
    let password = password_from("GATEHOUSE_USER_PASSWORD")?;
    let user = conn
        .client()
        .await?
        .create_user(&account, &username, password, scopes)
        .await?;
    if conn.json {
        println!(
            "{}",
            json!({ "user_id": user.user_id, "account_id": user.account_id, "username": user.username, "scopes": user.scopes })
        );
    } else {
        table(
            &["USER ID", "USERNAME", "SCOPES"],
            &[vec![user.user_id, user.username, user.scopes.join(" ")]],
        );
    }
    Ok(())
}
