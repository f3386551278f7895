//! Key administration, the scope catalogue, accounts, users and the activity
//! log — each a few lines over the application layer.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use gatehouse_domain::activity::ActivityKind;
use gatehouse_domain::catalogue::Definition;
use gatehouse_domain::ids::{AccountId, KeyId};
use gatehouse_domain::scope::Scopes;
use gatehouse_issuer::IssuerError;
use gatehouse_issuer::audit::ActivityQuery;
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::ApiError;
use super::extract::{Authed, Body, OptionalBody, Path, Query};
use super::state::AppState;
use super::views::{ActivityJson, KeyJson, ScopeJson, rfc3339};

fn ids(account_id: &str, key_id: &str) -> Result<(AccountId, KeyId), ApiError> {
    Ok((
        account(account_id)?,
        KeyId::parse(key_id).map_err(IssuerError::from)?,
    ))
}

fn account(account_id: &str) -> Result<AccountId, ApiError> {
    Ok(AccountId::parse(account_id).map_err(IssuerError::from)?)
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct ListQuery {
    page_token: String,
    page_size: i32,
    include_deleted: bool,
}

/// `GET /api/v1/accounts/{account_id}/keys`.
pub async fn list_keys(
    State(state): State<AppState>,
    auth: Authed,
    Path(account_id): Path<String>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let page = state
        .issuer()?
        .list_keys(
            &auth.principal,
            account(&account_id)?,
            q.page_size,
            &q.page_token,
            q.include_deleted,
        )
        .await?;
    let keys: Vec<KeyJson> = page
        .keys
        .iter()
        .map(|(row, retired)| KeyJson::of_row(row, retired.clone()))
        .collect();
    Ok(Json(
        json!({ "keys": keys, "next_page_token": page.next_page_token }),
    ))
}

#[derive(Deserialize)]
pub struct CreateKeyBody {
    name: String,
    scopes: Vec<String>,
    #[serde(default)]
    expires_at: Option<DateTime<Utc>>,
}

/// `POST /api/v1/accounts/{account_id}/keys`: 201 `{key, secret}`.
pub async fn create_key(
    State(state): State<AppState>,
    auth: Authed,
    Path(account_id): Path<String>,
    Body(body): Body<CreateKeyBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let scopes = Scopes::parse(&body.scopes).map_err(IssuerError::from)?;
    let issued = state
        .issuer()?
        .create_key(
            &auth.principal,
            account(&account_id)?,
            &body.name,
            scopes,
            body.expires_at,
            &auth.ctx,
        )
        .await?;
    let key = KeyJson::of_key(&issued.key, issued.retired_scopes, None);
    Ok((
        StatusCode::CREATED,
        Json(json!({ "key": key, "secret": issued.secret })),
    ))
}

/// `GET /api/v1/accounts/{account_id}/keys/{key_id}`.
pub async fn get_key(
    State(state): State<AppState>,
    auth: Authed,
    Path((account_id, key_id)): Path<(String, String)>,
) -> Result<Json<KeyJson>, ApiError> {
    let (account_id, key_id) = ids(&account_id, &key_id)?;
    let view = state
        .issuer()?
        .get_key(&auth.principal, account_id, key_id)
        .await?;
    Ok(Json(KeyJson::of_key(
        &view.key,
        view.retired_scopes,
        view.last_used_at,
    )))
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct RotateBody {
    grace_period_seconds: Option<i64>,
}

/// `POST /api/v1/accounts/{account_id}/keys/{key_id}/rotate`: `{key, secret}`.
pub async fn rotate_key(
    State(state): State<AppState>,
    auth: Authed,
    Path((account_id, key_id)): Path<(String, String)>,
    OptionalBody(body): OptionalBody<RotateBody>,
) -> Result<Json<Value>, ApiError> {
    let (account_id, key_id) = ids(&account_id, &key_id)?;
    let grace = match body.grace_period_seconds {
        Some(seconds) if seconds < 0 => {
            return Err(ApiError::bad_request(
                "grace_period_seconds must not be negative",
            ));
        }
        Some(seconds) => Some(
            chrono::Duration::try_seconds(seconds)
                .ok_or_else(|| ApiError::bad_request("grace_period_seconds is too large"))?,
        ),
        None => None,
    };
    let issued = state
        .issuer()?
        .rotate_key(&auth.principal, account_id, key_id, grace, &auth.ctx)
        .await?;
    let valid_until = issued.key.previous.as_ref().map(|p| rfc3339(p.valid_until));
    let key = KeyJson::of_key(&issued.key, issued.retired_scopes, None);
    Ok(Json(json!({
        "key": key,
        "secret": issued.secret,
        "previous_secret_valid_until": valid_until,
    })))
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct ReasonBody {
    reason: String,
}

/// `POST /api/v1/accounts/{account_id}/keys/{key_id}/revoke`: `{key}`.
pub async fn revoke_key(
    State(state): State<AppState>,
    auth: Authed,
    Path((account_id, key_id)): Path<(String, String)>,
    OptionalBody(body): OptionalBody<ReasonBody>,
) -> Result<Json<Value>, ApiError> {
    let (account_id, key_id) = ids(&account_id, &key_id)?;
    let view = state
        .issuer()?
        .revoke_key(&auth.principal, account_id, key_id, &body.reason, &auth.ctx)
        .await?;
    let key = KeyJson::of_key(&view.key, view.retired_scopes, None);
    Ok(Json(json!({ "key": key })))
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct DeleteQuery {
    reason: String,
}

/// `DELETE /api/v1/accounts/{account_id}/keys/{key_id}`: 204.
pub async fn delete_key(
    State(state): State<AppState>,
    auth: Authed,
    Path((account_id, key_id)): Path<(String, String)>,
    Query(q): Query<DeleteQuery>,
) -> Result<StatusCode, ApiError> {
    let (account_id, key_id) = ids(&account_id, &key_id)?;
    state
        .issuer()?
        .delete_key(&auth.principal, account_id, key_id, &q.reason, &auth.ctx)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct ActivityParams {
    key_id: String,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    /// Comma-separated kinds, e.g. `created,revoked`.
    kinds: String,
    page_token: String,
    page_size: i32,
}

impl ActivityParams {
    /// The parsed query for `account_id`.
    fn query(&self, account_id: &str) -> Result<ActivityQuery, ApiError> {
        let kinds = self
            .kinds
            .split(',')
            .filter(|k| !k.is_empty())
            .map(ActivityKind::parse)
            .collect::<Result<Vec<_>, _>>()
            .map_err(IssuerError::from)?;
        Ok(ActivityQuery::new(
            account(account_id)?,
            (!self.key_id.is_empty())
                .then(|| KeyId::parse(&self.key_id))
                .transpose()
                .map_err(IssuerError::from)?,
            self.since,
            self.until,
            kinds,
        )?)
    }
}

/// `GET /api/v1/accounts/{account_id}/activity`: `{events, next_page_token}`.
pub async fn activity(
    State(state): State<AppState>,
    auth: Authed,
    Path(account_id): Path<String>,
    Query(q): Query<ActivityParams>,
) -> Result<Json<Value>, ApiError> {
    let query = q.query(&account_id)?;
    let (rows, next_page_token) = state
        .issuer()?
        .list_activity(&auth.principal, &query, q.page_size, &q.page_token)
        .await?;
    let events: Vec<ActivityJson> = rows.iter().map(ActivityJson::from).collect();
    Ok(Json(
        json!({ "events": events, "next_page_token": next_page_token }),
    ))
}

/// `GET /api/v1/scopes`: the built-in scopes and the catalogue.
pub async fn list_scopes(
    State(state): State<AppState>,
    auth: Authed,
) -> Result<Json<Value>, ApiError> {
    let scopes: Vec<ScopeJson> = state
        .issuer()?
        .list_scopes(&auth.principal)
        .await?
        .into_iter()
        .map(ScopeJson::from)
        .collect();
    Ok(Json(json!({ "scopes": scopes })))
}

#[derive(Deserialize)]
pub struct DefineBody {
    name: String,
    description: String,
}

/// `POST /api/v1/scopes`: 201 `{scope, changed}`.
pub async fn define_scope(
    State(state): State<AppState>,
    auth: Authed,
    Body(body): Body<DefineBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let (scope, changed) = state
        .issuer()?
        .define_scope(&auth.principal, &body.name, &body.description, &auth.ctx)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "scope": ScopeJson::from(scope), "changed": changed })),
    ))
}

/// `POST /api/v1/scopes/{name}/retire`: `{scope}`.
pub async fn retire_scope(
    State(state): State<AppState>,
    auth: Authed,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let scope = state
        .issuer()?
        .retire_scope(&auth.principal, &name, &auth.ctx)
        .await?;
    Ok(Json(json!({ "scope": ScopeJson::from(scope) })))
}

#[derive(Deserialize)]
pub struct ImportBody {
    scopes: Vec<Definition>,
    #[serde(default)]
    prune: bool,
}

/// `POST /api/v1/scopes/import`: `{defined, described, retired}`.
pub async fn import_scopes(
    State(state): State<AppState>,
    auth: Authed,
    Body(body): Body<ImportBody>,
) -> Result<Json<Value>, ApiError> {
    let imported = state
        .issuer()?
        .import_scopes(&auth.principal, &body.scopes, body.prune, &auth.ctx)
        .await?;
    Ok(Json(json!({
        "defined": imported.defined,
        "described": imported.described,
        "retired": imported.retired,
    })))
}

#[derive(Deserialize)]
pub struct AccountBody {
    name: String,
    #[serde(default)]
    owner_username: Option<String>,
    #[serde(default)]
    owner_password: Option<String>,
}

fn user_json(user: &gatehouse_domain::user::User) -> Value {
    json!({
        "id": user.id.to_string(),
        "account_id": user.account_id.to_string(),
        "username": user.username.to_string(),
        "scopes": user.scopes.to_vec(),
        "created_at": rfc3339(user.created_at),
    })
}

/// `POST /api/v1/accounts`: 201 `{account, owner}` (`platform:admin`).
pub async fn create_account(
    State(state): State<AppState>,
    auth: Authed,
    Body(body): Body<AccountBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let (account, owner) = state
        .issuer()?
        .create_account(
            &auth.principal,
            &body.name,
            body.owner_username.as_deref(),
            body.owner_password,
            &auth.ctx,
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "account": {
                "id": account.id.to_string(),
                "name": account.name,
                "created_at": rfc3339(account.created_at),
            },
            "owner": owner.as_ref().map(user_json),
        })),
    ))
}

#[derive(Deserialize)]
pub struct UserBody {
    username: String,
    password: String,
    #[serde(default)]
    scopes: Vec<String>,
}

/// `POST /api/v1/accounts/{account_id}/users`: 201 `{user}` (`users:write`).
pub async fn create_user(
    State(state): State<AppState>,
    auth: Authed,
    Path(account_id): Path<String>,
    Body(body): Body<UserBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let scopes = Scopes::parse(&body.scopes).map_err(IssuerError::from)?;
    let user = state
        .issuer()?
        .create_user(
            &auth.principal,
            account(&account_id)?,
            &body.username,
            body.password,
            scopes,
            &auth.ctx,
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "user": user_json(&user) })),
    ))
}

/// `GET /api/v1/accounts/{account_id}/activity/stream`: the live tail as
/// Server-Sent Events (`event: activity`, `id:` the log position, so a
/// reconnecting client sends `Last-Event-ID` and misses nothing). The
/// credential is checked again on every poll: the stream ends with an
/// `event: error` carrying the error body once it is revoked or logged out.
pub async fn activity_stream(
    State(state): State<AppState>,
    parts: axum::http::request::Parts,
    Path(account_id): Path<String>,
    Query(q): Query<ActivityParams>,
) -> Result<
    axum::response::Sse<
        impl futures::Stream<Item = Result<axum::response::sse::Event, std::convert::Infallible>>,
    >,
    ApiError,
> {
    use axum::response::sse::{Event, KeepAlive, Sse};
    let issuer = state.issuer()?.clone();
    let bearer = super::extract::bearer(&parts);
    let principal = issuer.authenticate(bearer.as_deref()).await?;
    let query = q.query(&account_id)?;
    principal.require(gatehouse_domain::scope::ACTIVITY_READ, query.account_id)?;
    let after = parts
        .headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i64>().ok())
        .unwrap_or(0);
    // Each entry is an `activity` event (its id the log position, for
    // `Last-Event-ID`); the tail ends with an `error` event carrying the §7
    // body once the credential is no longer good.
    let rx = issuer.tail_activity(bearer, query, after, state.poll);
    let stream = futures::StreamExt::map(tokio_stream::wrappers::ReceiverStream::new(rx), |item| {
        Ok::<_, std::convert::Infallible>(match item {
            Ok(row) => Event::default()
                .event("activity")
                .id(row.position.to_string())
                .json_data(ActivityJson::from(&row))
                .unwrap_or_default(),
            Err(error) => Event::default()
                .event("error")
                .data(ApiError::from(error).body().to_string()),
        })
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
