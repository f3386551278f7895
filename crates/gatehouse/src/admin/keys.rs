//! `gatehouse keys`: create, list, get, rotate, revoke, delete.

use clap::Subcommand;
use gatehouse_api::v1 as pb;
use serde_json::{Value, json};

use super::{Connection, Failure, parse_duration, table, time_text, timestamp};

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
