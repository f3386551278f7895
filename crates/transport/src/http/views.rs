//! The JSON shapes of the HTTP API: snake_case fields, durations in integer
//! seconds, times in RFC 3339.

use chrono::{DateTime, SecondsFormat, Utc};
use gatehouse_domain::apikey::{ApiKey, KeyState};
use gatehouse_issuer::scopes::ScopeView;
use gatehouse_projections::api_keys::KeyRow;
use gatehouse_projections::key_activity::ActivityRow;
use gatehouse_verifier::{Kind, Verified};
use serde::Serialize;

pub fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn state(state: KeyState) -> &'static str {
    match state {
        KeyState::Active => "active",
        KeyState::Rotating => "rotating",
        KeyState::Revoked => "revoked",
        KeyState::Expired => "expired",
        KeyState::Deleted => "deleted",
    }
}

/// A key's metadata; never its secret.
#[derive(Debug, Serialize)]
pub struct KeyJson {
    pub key_id: String,
    pub name: String,
    pub scopes: Vec<String>,
    pub retired_scopes: Vec<String>,
    pub hint: String,
    pub state: &'static str,
    pub created_at: String,
    pub rotated_at: Option<String>,
    pub expires_at: Option<String>,
    pub last_used_at: Option<String>,
    pub previous_secret_valid_until: Option<String>,
    pub revoked_at: Option<String>,
    pub deleted_at: Option<String>,
}

impl KeyJson {
    pub fn of_key(
        key: &ApiKey,
        retired_scopes: Vec<String>,
        last_used_at: Option<DateTime<Utc>>,
    ) -> Self {
        let now = Utc::now();
        Self {
            key_id: key.id.to_string(),
            name: key.name.clone(),
            scopes: key.scopes.to_vec(),
            retired_scopes,
            hint: key.hint.clone(),
            state: state(key.state(now)),
            created_at: rfc3339(key.created_at),
            rotated_at: key.rotated_at.map(rfc3339),
            expires_at: key.expires_at.map(rfc3339),
            last_used_at: last_used_at.map(rfc3339),
            previous_secret_valid_until: key.previous_valid_until(now).map(rfc3339),
            revoked_at: key.revoked_at.map(rfc3339),
            deleted_at: key.deleted_at.map(rfc3339),
        }
    }

    pub fn of_row(row: &KeyRow, retired_scopes: Vec<String>) -> Self {
        let now = Utc::now();
        Self {
            key_id: row.key_id.clone(),
            name: row.name.clone(),
            scopes: row.scope_list(),
            retired_scopes,
            hint: row.hint.clone(),
            state: state(row.state(now)),
            created_at: rfc3339(row.created_at),
            rotated_at: row.rotated_at.map(rfc3339),
            expires_at: row.expires_at.map(rfc3339),
            last_used_at: row.last_used_at.map(rfc3339),
            previous_secret_valid_until: row
                .previous_valid_until
                .filter(|until| now < *until)
                .map(rfc3339),
            revoked_at: row.revoked_at.map(rfc3339),
            deleted_at: row.deleted_at.map(rfc3339),
        }
    }
}

/// A verified caller.
#[derive(Debug, Serialize)]
pub struct PrincipalJson {
    pub account_id: String,
    pub subject: String,
    /// `user`, `sdk` or `api_key`.
    pub kind: &'static str,
    pub key_id: Option<String>,
    pub scopes: Vec<String>,
    pub expires_at: Option<String>,
}

impl From<Verified> for PrincipalJson {
    fn from(v: Verified) -> Self {
        Self {
            account_id: v.account_id,
            subject: v.subject,
            kind: match v.kind {
                Kind::User => "user",
                Kind::Sdk => "sdk",
                Kind::ApiKey => "api_key",
            },
            key_id: v.key_id,
            scopes: v.scopes.to_vec(),
            expires_at: v.expires_at.map(rfc3339),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct ScopeJson {
    pub name: String,
    pub description: String,
    pub retired: bool,
    pub built_in: bool,
}

impl From<ScopeView> for ScopeJson {
    fn from(v: ScopeView) -> Self {
        Self {
            name: v.name,
            description: v.description,
            retired: v.retired,
            built_in: v.built_in,
        }
    }
}

/// One activity entry: `{kind, key_id, at, actor, details}`.
#[derive(Debug, Serialize)]
pub struct ActivityJson {
    pub position: i64,
    pub kind: String,
    pub key_id: Option<String>,
    pub at: String,
    pub actor: Option<String>,
    pub details: serde_json::Value,
}

impl From<&ActivityRow> for ActivityJson {
    fn from(row: &ActivityRow) -> Self {
        let mut details = serde_json::Map::new();
        if let Some(reason) = row.reason.as_ref().filter(|r| !r.is_empty()) {
            details.insert("reason".into(), reason.clone().into());
        }
        if let Some(scope) = &row.scope {
            details.insert("scope".into(), scope.clone().into());
        }
        if let Some(address) = &row.client_address {
            details.insert("client_address".into(), address.clone().into());
        }
        if let Some(usage) = row
            .usage
            .as_deref()
            .and_then(|u| serde_json::from_str::<serde_json::Value>(u).ok())
        {
            details.insert("usage".into(), usage);
        }
        Self {
            position: row.position,
            kind: row.kind.clone(),
            key_id: (!row.key_id.is_empty()).then(|| row.key_id.clone()),
            at: rfc3339(row.occurred_at),
            actor: row.actor.clone(),
            details: details.into(),
        }
    }
}
