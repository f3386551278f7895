//! `gatehouse activity`: the key activity log, listed or followed.

use clap::Args;
use gatehouse_api::v1 as pb;
use serde_json::{Value, json};

use super::{Connection, Failure, table, time_text, timestamp};

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
