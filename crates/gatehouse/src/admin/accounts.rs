//! `gatehouse accounts create` and `gatehouse users create`.

use std::io::Read as _;

use serde_json::json;

use super::{Connection, Failure, table, usage};

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
