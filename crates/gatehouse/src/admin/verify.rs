//! `gatehouse verify`: ask the verifier about a credential.

use clap::Args;
use gatehouse_api::v1 as pb;
use serde_json::json;

use super::{Connection, Failure, table, time_text};

/// `gatehouse verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// A scope the credential must hold (repeat for several).
    #[arg(long = "scope")]
    pub scopes: Vec<String>,
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
