//! Key administration, the scope catalogue, accounts, users and the activity
//! log — each a few lines over the application layer, each described for
//! `/openapi.json` by its `#[utoipa::path]`.

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
use utoipa::{IntoParams, ToSchema};

use super::error::ApiError;
use super::extract::{Authed, Body, OptionalBody, Path, Query};
use super::state::AppState;
use super::views::{
    AccountCreated, AccountJson, ActivityJson, ActivityPage, ErrorBody, ImportedJson,
    IssuedKeyJson, KeyEnvelope, KeyJson, KeyList, ScopeDefined, ScopeEnvelope, ScopeJson,
    ScopeList, UserEnvelope, UserJson, rfc3339,
};

fn ids(account_id: &str, key_id: &str) -> Result<(AccountId, KeyId), ApiError> {
    Ok((
        account(account_id)?,
        KeyId::parse(key_id).map_err(IssuerError::from)?,
    ))
}

fn account(account_id: &str) -> Result<AccountId, ApiError> {
    Ok(AccountId::parse(account_id).map_err(IssuerError::from)?)
}

#[derive(Deserialize, Default, IntoParams)]
#[serde(default)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// From the previous page's `next_page_token`.
    page_token: String,
    /// 1 to 500; 0 or absent: 50.
    page_size: i32,
    /// List deleted keys too.
    include_deleted: bool,
}

/// One account's keys, newest first.
#[utoipa::path(
    get, path = "/api/v1/accounts/{account_id}/keys", tag = "keys",
    params(("account_id" = uuid::Uuid, Path), ListQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, body = KeyList),
        (status = "default", description = "An error", body = ErrorBody),
    ),
)]
pub async fn list_keys(
    State(state): State<AppState>,
    auth: Authed,
    Path(account_id): Path<String>,
    Query(q): Query<ListQuery>,
) -> Result<Json<KeyList>, ApiError> {
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
    Ok(Json(KeyList {
        keys: page.keys.iter().map(KeyJson::from).collect(),
        next_page_token: page.next_page_token,
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKeyBody {
    /// 1 to 100 characters.
    #[schema(min_length = 1, max_length = 100, pattern = r"\S")]
    name: String,
    /// Catalogue scopes, `resource:*` or `*`, within the caller's own grants.
    scopes: Vec<String>,
    #[serde(default)]
    expires_at: Option<DateTime<Utc>>,
}

/// Creates a key; its secret is in this answer and nowhere else, ever.
#[utoipa::path(
    post, path = "/api/v1/accounts/{account_id}/keys", tag = "keys",
    params(("account_id" = uuid::Uuid, Path)),
    request_body = CreateKeyBody,
    security(("bearer" = [])),
    responses(
        (status = 201, body = IssuedKeyJson),
        (status = "default", description = "An error", body = ErrorBody),
    ),
)]
pub async fn create_key(
    State(state): State<AppState>,
    auth: Authed,
    Path(account_id): Path<String>,
    Body(body): Body<CreateKeyBody>,
) -> Result<(StatusCode, Json<IssuedKeyJson>), ApiError> {
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
    Ok((
        StatusCode::CREATED,
        Json(IssuedKeyJson {
            key: KeyJson::from(&issued.key),
            secret: issued.secret,
            previous_secret_valid_until: None,
        }),
    ))
}

/// One key's metadata (never its secret).
#[utoipa::path(
    get, path = "/api/v1/accounts/{account_id}/keys/{key_id}", tag = "keys",
    params(("account_id" = uuid::Uuid, Path), ("key_id" = uuid::Uuid, Path)),
    security(("bearer" = [])),
    responses(
        (status = 200, body = KeyJson),
        (status = "default", description = "An error", body = ErrorBody),
    ),
)]
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
    Ok(Json(KeyJson::from(&view)))
}

#[derive(Deserialize, Default, ToSchema)]
#[serde(default)]
#[serde(deny_unknown_fields)]
pub struct RotateBody {
    /// How long the old secret keeps working: 0 to 30 days; absent: 24 h.
    grace_period_seconds: Option<i64>,
}

/// A new secret; the old one works until the grace period ends. The body
/// may be left out.
#[utoipa::path(
    post, path = "/api/v1/accounts/{account_id}/keys/{key_id}/rotate", tag = "keys",
    params(("account_id" = uuid::Uuid, Path), ("key_id" = uuid::Uuid, Path)),
    request_body(content = Option<RotateBody>, description = "May be left out"),
    security(("bearer" = [])),
    responses(
        (status = 200, body = IssuedKeyJson),
        (status = "default", description = "An error", body = ErrorBody),
    ),
)]
pub async fn rotate_key(
    State(state): State<AppState>,
    auth: Authed,
    Path((account_id, key_id)): Path<(String, String)>,
    OptionalBody(body): OptionalBody<RotateBody>,
) -> Result<Json<IssuedKeyJson>, ApiError> {
    let (account_id, key_id) = ids(&account_id, &key_id)?;
    // The range (0 to 30 days) is the domain's rule; here only the unit.
    let grace = match body.grace_period_seconds {
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
    let valid_until = issued.previous_secret_valid_until.map(rfc3339);
    Ok(Json(IssuedKeyJson {
        key: KeyJson::from(&issued.key),
        secret: issued.secret,
        previous_secret_valid_until: valid_until,
    }))
}

#[derive(Deserialize, Default, ToSchema)]
#[serde(default)]
#[serde(deny_unknown_fields)]
pub struct ReasonBody {
    /// Recorded in the activity log.
    reason: String,
}

/// Revokes a key at once. The body may be left out.
#[utoipa::path(
    post, path = "/api/v1/accounts/{account_id}/keys/{key_id}/revoke", tag = "keys",
    params(("account_id" = uuid::Uuid, Path), ("key_id" = uuid::Uuid, Path)),
    request_body(content = Option<ReasonBody>, description = "May be left out"),
    security(("bearer" = [])),
    responses(
        (status = 200, body = KeyEnvelope),
        (status = "default", description = "An error", body = ErrorBody),
    ),
)]
pub async fn revoke_key(
    State(state): State<AppState>,
    auth: Authed,
    Path((account_id, key_id)): Path<(String, String)>,
    OptionalBody(body): OptionalBody<ReasonBody>,
) -> Result<Json<KeyEnvelope>, ApiError> {
    let (account_id, key_id) = ids(&account_id, &key_id)?;
    let view = state
        .issuer()?
        .revoke_key(&auth.principal, account_id, key_id, &body.reason, &auth.ctx)
        .await?;
    Ok(Json(KeyEnvelope {
        key: KeyJson::from(&view),
    }))
}

#[derive(Deserialize, Default, IntoParams)]
#[serde(default)]
#[into_params(parameter_in = Query)]
pub struct DeleteQuery {
    /// Recorded in the activity log.
    reason: String,
}

/// Deletes a key: revoked if still live, gone from the list, its history kept.
#[utoipa::path(
    delete, path = "/api/v1/accounts/{account_id}/keys/{key_id}", tag = "keys",
    params(("account_id" = uuid::Uuid, Path), ("key_id" = uuid::Uuid, Path), DeleteQuery),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = "default", description = "An error", body = ErrorBody),
    ),
)]
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

#[derive(Deserialize, Default, IntoParams)]
#[serde(default)]
#[into_params(parameter_in = Query)]
pub struct ActivityParams {
    /// Only this key's entries.
    #[param(format = Uuid)]
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

/// The key activity log, in log order.
#[utoipa::path(
    get, path = "/api/v1/accounts/{account_id}/activity", tag = "activity",
    params(("account_id" = uuid::Uuid, Path), ActivityParams),
    security(("bearer" = [])),
    responses(
        (status = 200, body = ActivityPage),
        (status = "default", description = "An error", body = ErrorBody),
    ),
)]
pub async fn activity(
    State(state): State<AppState>,
    auth: Authed,
    Path(account_id): Path<String>,
    Query(q): Query<ActivityParams>,
) -> Result<Json<ActivityPage>, ApiError> {
    let query = q.query(&account_id)?;
    let (rows, next_page_token) = state
        .issuer()?
        .list_activity(&auth.principal, &query, q.page_size, &q.page_token)
        .await?;
    Ok(Json(ActivityPage {
        events: rows.iter().map(ActivityJson::from).collect(),
        next_page_token,
    }))
}

/// The built-in scopes and the catalogue.
#[utoipa::path(
    get, path = "/api/v1/scopes", tag = "scopes",
    security(("bearer" = [])),
    responses(
        (status = 200, body = ScopeList),
        (status = "default", description = "An error", body = ErrorBody),
    ),
)]
pub async fn list_scopes(
    State(state): State<AppState>,
    auth: Authed,
) -> Result<Json<ScopeList>, ApiError> {
    let scopes = state
        .issuer()?
        .list_scopes(&auth.principal)
        .await?
        .into_iter()
        .map(ScopeJson::from)
        .collect();
    Ok(Json(ScopeList { scopes }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DefineBody {
    /// `resource:action`, lower case.
    #[schema(min_length = 3)]
    name: String,
    /// 1 to 500 characters.
    #[schema(min_length = 1, max_length = 500, pattern = r"\S")]
    description: String,
}

/// Defines a scope (or redescribes it): `platform:admin`.
#[utoipa::path(
    post, path = "/api/v1/scopes", tag = "scopes",
    request_body = DefineBody,
    security(("bearer" = [])),
    responses(
        (status = 201, body = ScopeDefined),
        (status = "default", description = "An error", body = ErrorBody),
    ),
)]
pub async fn define_scope(
    State(state): State<AppState>,
    auth: Authed,
    Body(body): Body<DefineBody>,
) -> Result<(StatusCode, Json<ScopeDefined>), ApiError> {
    let (scope, changed) = state
        .issuer()?
        .define_scope(&auth.principal, &body.name, &body.description, &auth.ctx)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(ScopeDefined {
            scope: ScopeJson::from(scope),
            changed,
        }),
    ))
}

/// Retires a scope: it grants nothing from now on (`platform:admin`).
#[utoipa::path(
    post, path = "/api/v1/scopes/{name}/retire", tag = "scopes",
    params(("name" = String, Path)),
    security(("bearer" = [])),
    responses(
        (status = 200, body = ScopeEnvelope),
        (status = "default", description = "An error", body = ErrorBody),
    ),
)]
pub async fn retire_scope(
    State(state): State<AppState>,
    auth: Authed,
    Path(name): Path<String>,
) -> Result<Json<ScopeEnvelope>, ApiError> {
    let scope = state
        .issuer()?
        .retire_scope(&auth.principal, &name, &auth.ctx)
        .await?;
    Ok(Json(ScopeEnvelope {
        scope: ScopeJson::from(scope),
    }))
}

/// One scope of an import.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DefinitionBody {
    name: String,
    description: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportBody {
    scopes: Vec<DefinitionBody>,
    /// Retire catalogue scopes the file does not name.
    #[serde(default)]
    prune: bool,
}

/// Imports a scope file in one transaction (`platform:admin`).
#[utoipa::path(
    post, path = "/api/v1/scopes/import", tag = "scopes",
    request_body = ImportBody,
    security(("bearer" = [])),
    responses(
        (status = 200, body = ImportedJson),
        (status = "default", description = "An error", body = ErrorBody),
    ),
)]
pub async fn import_scopes(
    State(state): State<AppState>,
    auth: Authed,
    Body(body): Body<ImportBody>,
) -> Result<Json<ImportedJson>, ApiError> {
    let definitions: Vec<Definition> = body
        .scopes
        .into_iter()
        .map(|d| Definition {
            name: d.name,
            description: d.description,
        })
        .collect();
    let imported = state
        .issuer()?
        .import_scopes(&auth.principal, &definitions, body.prune, &auth.ctx)
        .await?;
    Ok(Json(ImportedJson {
        defined: imported.defined,
        described: imported.described,
        retired: imported.retired,
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountBody {
    /// 1 to 100 characters.
    #[schema(min_length = 1, max_length = 100, pattern = r"\S")]
    name: String,
    /// With `owner_password`: the account's first user, holding `*`.
    #[serde(default)]
    owner_username: Option<String>,
    #[serde(default)]
    owner_password: Option<String>,
}

/// Creates an account and, optionally, its owner (`platform:admin`).
#[utoipa::path(
    post, path = "/api/v1/accounts", tag = "accounts",
    request_body = AccountBody,
    security(("bearer" = [])),
    responses(
        (status = 201, body = AccountCreated),
        (status = "default", description = "An error", body = ErrorBody),
    ),
)]
pub async fn create_account(
    State(state): State<AppState>,
    auth: Authed,
    Body(body): Body<AccountBody>,
) -> Result<(StatusCode, Json<AccountCreated>), ApiError> {
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
        Json(AccountCreated {
            account: AccountJson {
                id: account.id.to_string(),
                name: account.name,
                created_at: rfc3339(account.created_at),
            },
            owner: owner.as_ref().map(UserJson::from),
        }),
    ))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserBody {
    /// An email address.
    #[schema(format = Email)]
    username: String,
    /// 12 to 256 characters.
    #[schema(min_length = 12, max_length = 256, pattern = r"\S")]
    password: String,
    #[serde(default)]
    scopes: Vec<String>,
}

/// Creates a user with scopes in the account (`users:write`).
#[utoipa::path(
    post, path = "/api/v1/accounts/{account_id}/users", tag = "accounts",
    params(("account_id" = uuid::Uuid, Path)),
    request_body = UserBody,
    security(("bearer" = [])),
    responses(
        (status = 201, body = UserEnvelope),
        (status = "default", description = "An error", body = ErrorBody),
    ),
)]
pub async fn create_user(
    State(state): State<AppState>,
    auth: Authed,
    Path(account_id): Path<String>,
    Body(body): Body<UserBody>,
) -> Result<(StatusCode, Json<UserEnvelope>), ApiError> {
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
        Json(UserEnvelope {
            user: UserJson::from(&user),
        }),
    ))
}

/// The live tail as Server-Sent Events (`event: activity`, `id:` the entry's
/// cursor, so a reconnecting client sends `Last-Event-ID` and misses
/// nothing). The credential is checked again on every poll: the stream ends
/// with an `event: error` carrying the error body once it is revoked or
/// logged out.
#[utoipa::path(
    get, path = "/api/v1/accounts/{account_id}/activity/stream", tag = "activity",
    params(("account_id" = uuid::Uuid, Path), ActivityParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "`event: activity` entries (each an ActivityJson), then `event: error` when the credential ends", content_type = "text/event-stream", body = String),
        (status = "default", description = "An error", body = ErrorBody),
    ),
)]
pub async fn activity_stream(
    State(state): State<AppState>,
    auth: Authed,
    parts: axum::http::request::Parts,
    Path(account_id): Path<String>,
) -> Result<
    axum::response::Sse<
        impl futures::Stream<Item = Result<axum::response::sse::Event, std::convert::Infallible>>,
    >,
    ApiError,
> {
    use axum::response::sse::{Event, KeepAlive, Sse};
    let issuer = state.issuer()?.clone();
    let axum::extract::Query(q) = axum::extract::Query::<ActivityParams>::try_from_uri(&parts.uri)
        .map_err(|rejection| {
            ApiError::bad_request(rejection.body_text().replace(
                "Failed to deserialize query string: ",
                "invalid query parameter ",
            ))
        })?;
    let mut query = q.query(&account_id)?;
    // A tail has no end: `until` does not apply (as over gRPC).
    query.until = None;
    let after = parts
        .headers
        .get("last-event-id")
        .map(|v| v.to_str().unwrap_or("-"))
        .unwrap_or_default();
    let rx = issuer.tail_activity(&auth.principal, auth.bearer, query, after, state.poll)?;
    let stream = futures::StreamExt::map(tokio_stream::wrappers::ReceiverStream::new(rx), |item| {
        Ok::<_, std::convert::Infallible>(match item {
            Ok(row) => Event::default()
                .event("activity")
                .id(row.cursor.clone())
                .json_data(ActivityJson::from(&row))
                .unwrap_or_default(),
            Err(error) => Event::default()
                .event("error")
                .data(ApiError::from(error).body().to_string()),
        })
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
