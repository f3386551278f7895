//! The JSON shapes of the HTTP API: snake_case fields, durations in integer
//! seconds, times in RFC 3339. Every handler answers one of these types, and
//! `/openapi.json` is generated from the same types (utoipa), so the
//! description cannot drift from what is served.

use chrono::{DateTime, SecondsFormat, Utc};
use gatehouse_domain::apikey::KeyState;
use gatehouse_issuer::audit::ActivityEntry;
use gatehouse_issuer::keys::KeyView;
use gatehouse_issuer::scopes::ScopeView;
use gatehouse_verifier::{Kind, Verified};
use serde::Serialize;
use utoipa::ToSchema;

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
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyJson {
    pub key_id: String,
    pub name: String,
    pub scopes: Vec<String>,
    pub retired_scopes: Vec<String>,
    /// The secret's last four characters.
    pub hint: String,
    /// `active`, `rotating`, `revoked`, `expired` or `deleted`.
    pub state: &'static str,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub rotated_at: Option<String>,
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
    #[schema(format = DateTime)]
    pub last_used_at: Option<String>,
    #[schema(format = DateTime)]
    pub previous_secret_valid_until: Option<String>,
    #[schema(format = DateTime)]
    pub revoked_at: Option<String>,
    #[schema(format = DateTime)]
    pub deleted_at: Option<String>,
}

impl From<&KeyView> for KeyJson {
    fn from(key: &KeyView) -> Self {
        Self {
            key_id: key.key_id.to_string(),
            name: key.name.clone(),
            scopes: key.scopes.clone(),
            retired_scopes: key.retired_scopes.clone(),
            hint: key.hint.clone(),
            state: state(key.state),
            created_at: rfc3339(key.created_at),
            rotated_at: key.rotated_at.map(rfc3339),
            expires_at: key.expires_at.map(rfc3339),
            last_used_at: key.last_used_at.map(rfc3339),
            previous_secret_valid_until: key.previous_secret_valid_until.map(rfc3339),
            revoked_at: key.revoked_at.map(rfc3339),
            deleted_at: key.deleted_at.map(rfc3339),
        }
    }
}

/// A verified caller.
#[derive(Debug, Serialize, ToSchema)]
pub struct PrincipalJson {
    pub account_id: String,
    pub subject: String,
    /// `user`, `sdk` or `api_key`.
    pub kind: &'static str,
    pub key_id: Option<String>,
    pub scopes: Vec<String>,
    #[schema(format = DateTime)]
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

#[derive(Debug, Serialize, ToSchema)]
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
#[derive(Debug, Serialize, ToSchema)]
pub struct ActivityJson {
    /// The entry's place in this account's log: opaque, stable, the
    /// `next_page_token` and SSE `id` (`Last-Event-ID`) of this account only.
    pub cursor: String,
    pub kind: String,
    pub key_id: Option<String>,
    #[schema(format = DateTime)]
    pub at: String,
    pub actor: Option<String>,
    /// `reason`, `scope`, `client_address`, `usage`, as the kind has them.
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
}

impl From<&ActivityEntry> for ActivityJson {
    fn from(entry: &ActivityEntry) -> Self {
        let mut details = serde_json::Map::new();
        if let Some(reason) = entry.reason.as_ref().filter(|r| !r.is_empty()) {
            details.insert("reason".into(), reason.clone().into());
        }
        if let Some(scope) = &entry.scope {
            details.insert("scope".into(), scope.clone().into());
        }
        if let Some(address) = &entry.client_address {
            details.insert("client_address".into(), address.clone().into());
        }
        if let Some(usage) = entry
            .usage
            .as_ref()
            .and_then(|u| serde_json::to_value(u).ok())
        {
            details.insert("usage".into(), usage);
        }
        Self {
            cursor: entry.cursor.clone(),
            kind: entry.kind.as_str().to_string(),
            key_id: (!entry.key_id.is_empty()).then(|| entry.key_id.clone()),
            at: rfc3339(entry.occurred_at),
            actor: entry.actor.clone(),
            details: details.into(),
        }
    }
}

/// Every non-2xx body: `code` + `message` for Scope's clients, `statusCode`
/// + `message` for Claude Scope's.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// `invalid_request`, `unauthorized`, `forbidden`, `not_found`,
    /// `conflict`, `payload_too_large`, `unsupported_media_type`,
    /// `too_many_requests`, `internal`, ….
    pub code: &'static str,
    pub message: String,
    #[serde(rename = "statusCode")]
    pub status_code: u16,
    /// The stable machine-readable reason (gRPC `ErrorInfo.reason`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AccountRef {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LoginUser {
    pub id: String,
    pub username: String,
    pub scopes: Vec<String>,
}

/// `POST /api/auth/login`.
#[derive(Debug, Serialize, ToSchema)]
pub struct LoginResponse {
    pub access_token: String,
    pub refresh_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds.
    pub expires_in: i64,
    /// Seconds.
    pub refresh_expires_in: i64,
    pub account: AccountRef,
    pub user: LoginUser,
}

/// `POST /api/token/refresh`.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    pub refresh_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
    pub refresh_expires_in: i64,
}

/// `POST /v1/auth/sdk-token`.
#[derive(Debug, Serialize, ToSchema)]
pub struct SdkTokenResponse {
    pub access_token: String,
    /// 3600.
    pub expires_in: i64,
    pub token_type: &'static str,
}

/// One published signing key (RFC 7517); members a key type lacks are absent.
#[derive(Debug, Serialize, ToSchema)]
pub struct JwkJson {
    /// `OKP`, `EC` or `RSA`.
    pub kty: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crv: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub x: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub e: Option<String>,
    pub kid: String,
    /// `EdDSA`, `ES256` or `RS256`: the one algorithm this key verifies.
    pub alg: &'static str,
    #[serde(rename = "use")]
    pub use_: &'static str,
}

impl From<gatehouse_crypto::keys::PublicJwk> for JwkJson {
    fn from(k: gatehouse_crypto::keys::PublicJwk) -> Self {
        Self {
            kty: k.kty,
            crv: k.crv,
            x: k.x,
            y: k.y,
            n: k.n,
            e: k.e,
            kid: k.kid,
            alg: k.alg,
            use_: k.use_,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Jwks {
    pub keys: Vec<JwkJson>,
}

/// `GET /.well-known/openid-configuration`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Discovery {
    pub issuer: String,
    pub jwks_uri: String,
    pub token_endpoint: String,
    pub refresh_endpoint: String,
    pub sdk_token_endpoint: String,
    pub response_types_supported: Vec<&'static str>,
    pub subject_types_supported: Vec<&'static str>,
    pub id_token_signing_alg_values_supported: Vec<&'static str>,
    pub token_endpoint_auth_methods_supported: Vec<&'static str>,
}

/// `GET /healthz`, `GET /readyz`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Probe {
    /// `ok` (alive) or `ready`.
    pub status: &'static str,
    /// What works less than it should without making the process unready
    /// (e.g. key usage that cannot be recorded); absent when nothing.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<&'static str>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct KeyList {
    pub keys: Vec<KeyJson>,
    /// Empty on the last page.
    pub next_page_token: String,
}

/// A key and its secret, shown once (create, rotate).
#[derive(Debug, Serialize, ToSchema)]
pub struct IssuedKeyJson {
    pub key: KeyJson,
    pub secret: String,
    /// Rotate: until when the previous secret still works.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub previous_secret_valid_until: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct KeyEnvelope {
    pub key: KeyJson,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ActivityPage {
    pub events: Vec<ActivityJson>,
    /// Empty on the last page.
    pub next_page_token: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ScopeList {
    pub scopes: Vec<ScopeJson>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ScopeDefined {
    pub scope: ScopeJson,
    /// False when the scope already existed with this description.
    pub changed: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ScopeEnvelope {
    pub scope: ScopeJson,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ImportedJson {
    pub defined: Vec<String>,
    pub described: Vec<String>,
    pub retired: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AccountJson {
    pub id: String,
    pub name: String,
    #[schema(format = DateTime)]
    pub created_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserJson {
    pub id: String,
    pub account_id: String,
    pub username: String,
    pub scopes: Vec<String>,
    #[schema(format = DateTime)]
    pub created_at: String,
}

impl From<&gatehouse_domain::user::User> for UserJson {
    fn from(user: &gatehouse_domain::user::User) -> Self {
        Self {
            id: user.id.to_string(),
            account_id: user.account_id.to_string(),
            username: user.username.to_string(),
            scopes: user.scopes.to_vec(),
            created_at: rfc3339(user.created_at),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AccountCreated {
    pub account: AccountJson,
    pub owner: Option<UserJson>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserEnvelope {
    pub user: UserJson,
}
